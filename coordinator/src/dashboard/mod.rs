//! The dashboard of a run (docs/dashboard.md): a page with live curves, progress, one row per
//! worker and the event log, `/api/status` and Prometheus `/metrics`. A run started with
//! `--dashboard` feeds its [`Board`] as it goes; `sovereign dashboard RUN_DIR` feeds one from
//! the run's metrics.jsonl and events.jsonl ([`follow_run_dir`]).

pub mod board;
pub mod prometheus;
pub mod server;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use sovereign_common::train::events::{EVENTS_FILE, Event, Watcher};
use sovereign_common::train::jsonl::{Followed, JsonlFollower};
use sovereign_common::train::record::METRICS_FILE;

pub use board::Board;

use crate::cluster::serve::{new_token, write_secret};

/// The run token's file in a run directory.
pub const TOKEN_FILE: &str = "token";

/// Starts the dashboard of a run in `run_dir` on `bind` when asked (`--dashboard [ADDR]`): a
/// non-loopback address uses the run's token, `token` or else RUN_DIR/token (written when
/// missing). Prints the page's address. Returns the board to feed.
pub fn start_for_run(
    bind: Option<&str>,
    run_dir: &Path,
    token: Option<&str>,
) -> Result<Option<Arc<Board>>> {
    let Some(bind) = bind else {
        return Ok(None);
    };
    let board = Board::new();
    serve(bind, run_dir, token, board.clone())?;
    Ok(Some(board))
}

/// The board as the run's watcher.
pub fn watcher(board: &Option<Arc<Board>>) -> Option<Arc<dyn Watcher>> {
    board.clone().map(|b| b as Arc<dyn Watcher>)
}

/// Serves `board` on `bind`, with the run's token when the address is not loopback; prints
/// the address.
fn serve(bind: &str, run_dir: &Path, token: Option<&str>, board: Arc<Board>) -> Result<()> {
    let bind: SocketAddr = bind
        .parse()
        .with_context(|| format!("--dashboard {bind}: not an address (host:port)"))?;
    let token = if bind.ip().is_loopback() {
        None
    } else {
        Some(match token {
            Some(token) => token.to_string(),
            None => run_token(run_dir)?,
        })
    };
    let addr = server::start(bind, token.clone(), board)?;
    match token {
        Some(_) => tracing::info!(
            "dashboard: http://{addr}/ (add ?token= with the token in {})",
            run_dir.join(TOKEN_FILE).display()
        ),
        None => tracing::info!("dashboard: http://{addr}/"),
    }
    Ok(())
}

/// The token in RUN_DIR/token, written first when there is none.
fn run_token(run_dir: &Path) -> Result<String> {
    let path = run_dir.join(TOKEN_FILE);
    if let Ok(token) = std::fs::read_to_string(&path)
        && !token.trim().is_empty()
    {
        return Ok(token.trim().to_string());
    }
    std::fs::create_dir_all(run_dir)?;
    let token = new_token()?;
    write_secret(&path, &token)?;
    Ok(token)
}

/// `sovereign dashboard RUN_DIR`: serves the run's page from its files, following what is added
/// to them every half second, until interrupted.
pub fn follow_run_dir(run_dir: &Path, bind: &str) -> Result<()> {
    if !run_dir.join(METRICS_FILE).exists() && !run_dir.join(EVENTS_FILE).exists() {
        anyhow::bail!(
            "{}: no {METRICS_FILE} or {EVENTS_FILE}; give the directory a run wrote (its --out)",
            run_dir.display()
        );
    }
    let board = Board::new();
    let mut files = RunFiles::new(run_dir);
    files.read_changes(&board)?;
    serve(bind, run_dir, None, board.clone())?;
    loop {
        std::thread::sleep(Duration::from_millis(500));
        files.read_changes(&board)?;
    }
}

/// A run directory's metrics and events files, each followed from where it was last read.
struct RunFiles {
    metrics: JsonlFollower,
    events: JsonlFollower,
}

impl RunFiles {
    fn new(run_dir: &Path) -> Self {
        Self {
            metrics: JsonlFollower::new(&run_dir.join(METRICS_FILE), "a metrics"),
            events: JsonlFollower::new(&run_dir.join(EVENTS_FILE), "an event"),
        }
    }

    /// Hands the board what was added since the last look: the new events, then the new steps,
    /// or every step when the metrics file was replaced (a rollback replaces it).
    fn read_changes(&mut self, board: &Board) -> Result<()> {
        let (Followed::Appended(events) | Followed::Replaced(events)) =
            self.events.look::<Event>().map_err(anyhow::Error::msg)?;
        for event in &events {
            board.replay_event(event);
        }
        match self.metrics.look().map_err(anyhow::Error::msg)? {
            Followed::Appended(records) => records.iter().for_each(|r| board.replay_step(r)),
            Followed::Replaced(records) => board.reload(&records),
        }
        Ok(())
    }
}

//! The dashboard of a run (docs/dashboard.md): a page with live curves, progress, one row per
//! worker and the event log, `/api/status` and Prometheus `/metrics`. A run started with
//! `--dashboard` feeds its [`Board`] as it goes; `sovereign dashboard RUN_DIR` feeds one from
//! the run's metrics.jsonl and events.jsonl ([`follow_run_dir`]).

pub mod board;
pub mod prometheus;
pub mod server;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::Result;
use sovereign_common::train::events::{EVENTS_FILE, Event, Watcher};
use sovereign_common::train::record::{Lines, METRICS_FILE, read_jsonl};

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
    let loopback = bind
        .parse::<std::net::SocketAddr>()
        .is_ok_and(|a| a.ip().is_loopback());
    let token = if loopback {
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

/// `sovereign dashboard RUN_DIR`: serves the run's page from its files, read again whenever
/// they change, until interrupted.
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

/// A run directory's metrics and events files, and how far they were read.
struct RunFiles {
    metrics: PathBuf,
    events: PathBuf,
    metrics_seen: Option<(u64, SystemTime)>,
    events_read: usize,
}

impl RunFiles {
    fn new(run_dir: &Path) -> Self {
        Self {
            metrics: run_dir.join(METRICS_FILE),
            events: run_dir.join(EVENTS_FILE),
            metrics_seen: None,
            events_read: 0,
        }
    }

    /// Hands the board what changed since the last look: new events, and the metrics when
    /// the file changed (a rollback replaces it).
    fn read_changes(&mut self, board: &Board) -> Result<()> {
        let events: Vec<Event> =
            read_jsonl(&self.events, "an event", Lines::Whole).map_err(anyhow::Error::msg)?;
        let new_events = events.get(self.events_read..).unwrap_or_default();
        self.events_read = events.len();
        let seen = std::fs::metadata(&self.metrics)
            .and_then(|m| Ok((m.len(), m.modified()?)))
            .ok();
        if new_events.is_empty() && seen == self.metrics_seen {
            return Ok(());
        }
        self.metrics_seen = seen;
        let records = if seen.is_some() {
            read_jsonl(&self.metrics, "a metrics", Lines::Whole).map_err(anyhow::Error::msg)?
        } else {
            Vec::new()
        };
        board.load(&records, new_events);
        Ok(())
    }
}

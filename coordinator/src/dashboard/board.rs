//! What the dashboard knows of a run ([`Board`]): the curve points of its steps, its events, one
//! row per worker and the progress, built from the same step records and events that
//! metrics.jsonl and events.jsonl hold, whether they arrive live from the run or are read back
//! from its files. Every change goes out to the page's live connections as one message.

use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use sovereign_common::sync::lock;
use sovereign_common::train::events::{Event, EventKind, Watcher};
use sovereign_common::train::record::StepRecord;
use tokio::sync::broadcast;

/// Messages a slow page may fall behind by before its connection is closed (it reconnects
/// and starts from a snapshot).
const BACKLOG: usize = 1024;

/// One step on the curves.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Point {
    /// The step.
    pub step: u64,
    /// Training loss.
    pub loss: f64,
    /// Validation loss, on evaluation steps.
    pub val_loss: Option<f64>,
    /// Learning rate.
    pub lr: f64,
    /// Training tokens per second.
    pub tokens_per_s: f64,
    /// The share of the step spent in the all-reduce (0 to 1).
    pub allreduce_share: f64,
}

impl From<&StepRecord> for Point {
    fn from(record: &StepRecord) -> Self {
        Point {
            step: record.step,
            loss: record.loss,
            val_loss: record.val_loss,
            lr: record.lr,
            tokens_per_s: record.tokens_per_s,
            allreduce_share: record.allreduce_share(),
        }
    }
}

/// Where a worker stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WorkerState {
    /// Started, not yet part of the running group.
    Joining,
    /// Working.
    Training,
    /// Not heard from for longer than the stall timeout.
    Stalled,
    /// Its process died.
    Dead,
    /// Back after its process died or stalled and the group restarted.
    Restarted,
    /// The run ended.
    Finished,
}

/// One row of the workers table.
#[derive(Clone, Debug, Serialize)]
pub struct WorkerRow {
    /// Rank (or prep worker number).
    pub rank: u32,
    /// Host.
    pub host: String,
    /// Process id (0 until it joined).
    pub pid: u32,
    /// Device.
    pub device: String,
    /// The last step it finished.
    pub step: u64,
    /// Its tokens per second in that step.
    pub tokens_per_s: f64,
    /// Where it stands.
    pub state: WorkerState,
    /// Times it died or stalled and was restarted.
    pub restarts: u32,
    /// Seconds since it was last heard from (live runs only).
    pub heartbeat_age_s: Option<f64>,
    #[serde(skip)]
    heard: Option<Instant>,
}

impl WorkerRow {
    fn empty(rank: u32) -> Self {
        WorkerRow {
            rank,
            host: String::new(),
            pid: 0,
            device: String::new(),
            step: 0,
            tokens_per_s: 0.0,
            state: WorkerState::Joining,
            restarts: 0,
            heartbeat_age_s: None,
            heard: None,
        }
    }
}

/// The run's state as the page, `/api/status` and `/metrics` show it.
#[derive(Clone, Debug, Serialize)]
pub struct Status {
    /// `train`, or the data-prep stage.
    pub job: String,
    /// What the progress counts: "steps" or "tasks".
    pub unit: &'static str,
    /// The model, in words.
    pub model: String,
    /// Ranks (or prep workers).
    pub world: u32,
    /// Steps (or tasks) done.
    pub step: u64,
    /// Steps (or tasks) in the run.
    pub steps: u64,
    /// Training tokens seen.
    pub tokens_seen: u64,
    /// Seconds since the run (or its resume) started.
    pub elapsed_s: f64,
    /// Seconds to the end at the rate so far.
    pub eta_s: Option<f64>,
    /// The last step's training loss.
    pub loss: Option<f64>,
    /// The last validation loss.
    pub val_loss: Option<f64>,
    /// The last step's learning rate.
    pub lr: Option<f64>,
    /// The last step's tokens per second.
    pub tokens_per_s: Option<f64>,
    /// The last step's all-reduce share.
    pub allreduce_share: Option<f64>,
    /// Group restarts so far.
    pub restarts: u32,
    /// Worker deaths and stalls so far.
    pub failures: u32,
    /// "running", "finished" or "failed".
    pub state: &'static str,
    /// One row per worker.
    pub workers: Vec<WorkerRow>,
}

/// What the board holds.
#[derive(Default)]
struct State {
    job: String,
    model: String,
    world: u32,
    steps: u64,
    from_step: u64,
    tokens_per_step: u64,
    /// When the run (or its resume) started, seconds since the Unix epoch.
    started: f64,
    /// When it ended, if it did.
    ended: Option<(f64, &'static str)>,
    /// Prep jobs: tasks done (training counts its points).
    tasks_done: u64,
    points: Vec<Point>,
    events: Vec<Event>,
    workers: Vec<WorkerRow>,
    restarts: u32,
    failures: u32,
    /// Whether ranks report their own steps (cluster runs); otherwise the world's step stands
    /// for every rank.
    rank_reports: bool,
}

/// A message to the live pages: its SSE event name and its JSON.
#[derive(Clone, Debug)]
pub struct Update {
    /// "snapshot", "step", "event" or "status".
    pub name: &'static str,
    /// The JSON body.
    pub data: Arc<str>,
}

/// See the module documentation.
pub struct Board {
    state: Mutex<State>,
    updates: broadcast::Sender<Update>,
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

impl Default for Board {
    fn default() -> Self {
        Self {
            state: Mutex::new(State::default()),
            updates: broadcast::channel(BACKLOG).0,
        }
    }
}

impl Board {
    /// An empty board (it learns the run from its `started` event).
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// The run's state now.
    pub fn status(&self) -> Status {
        status_of(&lock(&self.state))
    }

    /// Every point and event so far with the status, as one "snapshot" message, and a receiver
    /// of every message after it.
    pub fn subscribe(&self) -> (Update, broadcast::Receiver<Update>) {
        let state = lock(&self.state);
        (snapshot(&state), self.updates.subscribe())
    }

    /// Sends the status to the live pages (heartbeat ages and elapsed time move on their own).
    pub fn tick(&self) {
        let state = lock(&self.state);
        self.send(
            "status",
            &serde_json::json!({ "status": status_of(&state) }),
        );
    }

    /// A prep job's worker `rank` delivered `done` tasks and was last heard from at `heard`.
    pub fn worker_progress(&self, rank: u32, done: u64, heard: Instant) {
        if let Some(row) = lock(&self.state).workers.get_mut(rank as usize) {
            row.step = done;
            row.heard = Some(heard);
        }
    }

    /// A prep job: `done` tasks of its total are folded in.
    pub fn tasks_done(&self, done: u64) {
        let mut state = lock(&self.state);
        if state.tasks_done != done {
            state.tasks_done = done;
            self.send(
                "status",
                &serde_json::json!({ "status": status_of(&state) }),
            );
        }
    }

    /// A step read back from the run's files: as [`Watcher::step`], without a heartbeat.
    pub fn replay_step(&self, record: &StepRecord) {
        self.add_step(record, false);
    }

    /// An event read back from the run's files: as [`Watcher::event`], without a heartbeat.
    pub fn replay_event(&self, event: &Event) {
        self.add_event(event, false);
    }

    /// Replaces the curve with `records`, every step of a metrics file read back whole (its first
    /// reading, or after a rollback replaced it), and sends a snapshot.
    pub fn reload(&self, records: &[StepRecord]) {
        let mut state = lock(&self.state);
        state.points = records.iter().map(Point::from).collect();
        if let Some(last) = state.points.last().cloned() {
            let rate = (!state.rank_reports).then_some(last.tokens_per_s);
            step_rows(&mut state, &last, rate, false);
        }
        let _ = self.updates.send(snapshot(&state));
    }

    /// A step of the world, as it happens when `live`.
    fn add_step(&self, record: &StepRecord, live: bool) {
        let mut state = lock(&self.state);
        let point = Point::from(record);
        state.points.retain(|p| p.step < point.step);
        state.points.push(point.clone());
        let rate = (!state.rank_reports).then_some(record.tokens_per_s);
        step_rows(&mut state, &point, rate, live);
        self.send(
            "step",
            &serde_json::json!({ "point": point, "status": status_of(&state) }),
        );
    }

    /// An event, as it happens when `live`: a start or restart rewinds the curve and goes out
    /// as a snapshot.
    fn add_event(&self, event: &Event, live: bool) {
        let mut state = lock(&self.state);
        let rewinds = apply_event(&mut state, event, live);
        if rewinds {
            let _ = self.updates.send(snapshot(&state));
        } else {
            self.send(
                "event",
                &serde_json::json!({ "event": event, "status": status_of(&state) }),
            );
        }
    }

    fn send(&self, name: &'static str, body: &serde_json::Value) {
        let _ = self.updates.send(Update {
            name,
            data: body.to_string().into(),
        });
    }
}

impl Watcher for Board {
    fn step(&self, record: &StepRecord) {
        self.add_step(record, true);
    }

    fn rank_step(&self, rank: u32, record: &StepRecord) {
        let mut state = lock(&self.state);
        state.rank_reports = true;
        if let Some(row) = state.workers.get_mut(rank as usize) {
            row.step = record.step;
            row.tokens_per_s = record.tokens_per_s;
            row.heard = Some(Instant::now());
        }
    }

    fn event(&self, event: &Event) {
        self.add_event(event, true);
    }

    fn heard(&self, rank: u32) {
        if let Some(row) = lock(&self.state).workers.get_mut(rank as usize) {
            row.heard = Some(Instant::now());
        }
    }
}

/// A step of the world: without reports of their own, every rank's row is at it (heard from
/// now when `live`) and shares its `rate`.
fn step_rows(state: &mut State, point: &Point, rate: Option<f64>, live: bool) {
    let world = state.workers.len().max(1) as f64;
    for row in &mut state.workers {
        if !state.rank_reports {
            row.step = point.step;
            if live {
                row.heard = Some(Instant::now());
            }
        }
        if let Some(rate) = rate {
            row.tokens_per_s = rate / world;
        }
    }
}

/// Folds `event` into the state (as it happens when `live`); true when it rewinds the curve (a
/// start or a restart).
fn apply_event(state: &mut State, event: &Event, live: bool) -> bool {
    state.events.push(event.clone());
    fn row(state: &mut State, rank: u32) -> Option<&mut WorkerRow> {
        state.workers.get_mut(rank as usize)
    }
    match &event.what {
        EventKind::Started {
            job,
            steps,
            from_step,
            world,
            tokens_per_step,
            model,
        } => {
            state.job.clone_from(job);
            state.model.clone_from(model);
            state.world = *world;
            state.steps = *steps;
            state.from_step = *from_step;
            state.tokens_per_step = *tokens_per_step;
            state.started = event.time;
            state.ended = None;
            state.workers = (0..*world).map(WorkerRow::empty).collect();
            state.points.retain(|p| p.step <= *from_step);
            return true;
        }
        EventKind::Joined {
            rank,
            host,
            pid,
            device,
        } => {
            if let Some(row) = row(state, *rank) {
                row.host.clone_from(host);
                row.pid = *pid;
                row.device.clone_from(device);
                row.heard = live.then(Instant::now);
                if row.state != WorkerState::Restarted {
                    row.state = WorkerState::Training;
                }
            }
        }
        EventKind::Stalled { rank, .. } => {
            state.failures += 1;
            if let Some(row) = row(state, *rank) {
                row.state = WorkerState::Stalled;
            }
        }
        EventKind::Died { rank, .. } => {
            state.failures += 1;
            if let Some(row) = rank.and_then(|rank| row(state, rank)) {
                row.state = WorkerState::Dead;
            }
        }
        EventKind::Restarted { from_step, .. } => {
            state.restarts += 1;
            for row in &mut state.workers {
                row.state = match row.state {
                    WorkerState::Dead | WorkerState::Stalled | WorkerState::Restarted => {
                        row.restarts += 1;
                        WorkerState::Restarted
                    }
                    _ => WorkerState::Joining,
                };
                row.step = row.step.min(*from_step);
            }
            state.points.retain(|p| p.step <= *from_step);
            return true;
        }
        EventKind::Checkpoint { .. } | EventKind::Evaluation { .. } => {}
        EventKind::Finished { .. } => {
            state.ended = Some((event.time, "finished"));
            for row in &mut state.workers {
                row.state = WorkerState::Finished;
            }
        }
        EventKind::Failed { .. } => state.ended = Some((event.time, "failed")),
    }
    false
}

fn snapshot(state: &State) -> Update {
    let body = serde_json::json!({
        "points": state.points,
        "events": state.events,
        "status": status_of(state),
    });
    Update {
        name: "snapshot",
        data: body.to_string().into(),
    }
}

fn status_of(state: &State) -> Status {
    let training = state.job == "train";
    let step = if training {
        state.points.last().map_or(state.from_step, |p| p.step)
    } else {
        state.tasks_done
    };
    let end = state.ended.map_or_else(unix_now, |(time, _)| time);
    let elapsed_s = if state.started > 0.0 {
        (end - state.started).max(0.0)
    } else {
        0.0
    };
    let done_here = step.saturating_sub(if training { state.from_step } else { 0 });
    let eta_s = (state.ended.is_none() && done_here > 0)
        .then(|| elapsed_s / done_here as f64 * state.steps.saturating_sub(step) as f64);
    let last = state.points.last();
    let workers = state
        .workers
        .iter()
        .map(|row| WorkerRow {
            heartbeat_age_s: row.heard.map(|at| at.elapsed().as_secs_f64()),
            ..row.clone()
        })
        .collect();
    Status {
        job: state.job.clone(),
        unit: if training { "steps" } else { "tasks" },
        model: state.model.clone(),
        world: state.world,
        step,
        steps: state.steps,
        tokens_seen: if training {
            step * state.tokens_per_step
        } else {
            0
        },
        elapsed_s,
        eta_s,
        loss: last.map(|p| p.loss),
        val_loss: state.points.iter().rev().find_map(|p| p.val_loss),
        lr: last.map(|p| p.lr),
        tokens_per_s: last.map(|p| p.tokens_per_s),
        allreduce_share: last.map(|p| p.allreduce_share),
        restarts: state.restarts,
        failures: state.failures,
        state: state.ended.map_or("running", |(_, how)| how),
        workers,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(step: u64, val_loss: Option<f64>) -> StepRecord {
        StepRecord {
            step,
            loss: 5.0 - step as f64 * 0.1,
            val_loss,
            lr: 1e-3,
            grad_norm: 1.0,
            tokens_per_s: 1000.0,
            elapsed: 0.0,
            tokens: 512,
            compute_s: 0.4,
            allreduce_s: 0.1,
            sample: None,
        }
    }

    fn event(what: EventKind) -> Event {
        Event { time: 100.0, what }
    }

    fn started() -> EventKind {
        EventKind::Started {
            job: "train".into(),
            steps: 10,
            from_step: 0,
            world: 2,
            tokens_per_step: 1024,
            model: "m".into(),
        }
    }

    fn joined(rank: u32) -> EventKind {
        EventKind::Joined {
            rank,
            host: "h".into(),
            pid: 10 + rank,
            device: "cpu".into(),
        }
    }

    #[test]
    fn a_killed_worker_is_dead_then_restarted_and_the_curve_rewinds_to_the_checkpoint() {
        let board = Board::new();
        board.event(&event(started()));
        board.event(&event(joined(0)));
        board.event(&event(joined(1)));
        let (_, mut updates) = board.subscribe();
        for step in 1..=4 {
            board.rank_step(0, &record(step, None));
            board.rank_step(1, &record(step, None));
            board.step(&record(step, (step == 4).then_some(3.0)));
        }
        let status = board.status();
        assert_eq!((status.step, status.tokens_seen), (4, 4096));
        assert_eq!(status.val_loss, Some(3.0));
        assert_eq!(status.allreduce_share, Some(0.2));
        assert!(
            status
                .workers
                .iter()
                .all(|w| w.state == WorkerState::Training)
        );
        board.event(&event(EventKind::Died {
            rank: Some(1),
            pid: 11,
            cause: "signal: 9 (SIGKILL)".into(),
        }));
        assert_eq!(board.status().workers[1].state, WorkerState::Dead);
        board.event(&event(EventKind::Restarted {
            generation: 1,
            from_step: 2,
            checkpoint: None,
        }));
        let status = board.status();
        assert_eq!(status.step, 2);
        assert_eq!(status.workers[0].state, WorkerState::Joining);
        assert_eq!(status.workers[1].state, WorkerState::Restarted);
        board.event(&event(joined(0)));
        board.event(&event(joined(1)));
        let status = board.status();
        assert_eq!(status.workers[0].state, WorkerState::Training);
        assert_eq!(
            (status.workers[1].state, status.workers[1].restarts),
            (WorkerState::Restarted, 1)
        );
        assert_eq!((status.restarts, status.failures), (1, 1));
        let names: Vec<&str> = std::iter::from_fn(|| updates.try_recv().ok())
            .map(|u| u.name)
            .collect();
        assert_eq!(
            names,
            [
                "step", "step", "step", "step", "event", "snapshot", "event", "event"
            ]
        );
    }

    #[test]
    fn files_read_back_extend_the_curve_or_replace_it() {
        let board = Board::new();
        board.replay_event(&event(started()));
        let (_, mut updates) = board.subscribe();
        board.reload(&[record(1, None), record(2, None)]);
        board.replay_step(&record(3, None));
        let status = board.status();
        assert_eq!(status.step, 3);
        assert!(status.workers.iter().all(|w| w.heartbeat_age_s.is_none()));
        board.replay_event(&event(joined(0)));
        board.reload(&[record(1, None)]);
        assert_eq!(board.status().step, 1);
        let names: Vec<&str> = std::iter::from_fn(|| updates.try_recv().ok())
            .map(|u| u.name)
            .collect();
        assert_eq!(names, ["snapshot", "step", "event", "snapshot"]);
    }
}

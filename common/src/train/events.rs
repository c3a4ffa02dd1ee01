//! What happens to a run besides its steps: workers joining, stalling and dying, restarts,
//! checkpoints, evaluations with a sample of the model's text. Each is an [`Event`], one line of
//! `events.jsonl` beside `metrics.jsonl` (docs/formats.md), written by the process that writes
//! the metrics, and handed to a [`Watcher`] (the dashboard) as it happens.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::TrainError;
use super::jsonl::read_jsonl;
use super::record::StepRecord;

/// The name of the event log in a run directory.
pub const EVENTS_FILE: &str = "events.jsonl";

/// One event: when (seconds since the Unix epoch) and what.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Seconds since the Unix epoch.
    pub time: f64,
    /// What happened.
    #[serde(flatten)]
    pub what: EventKind,
}

impl Event {
    /// `what`, happening now.
    pub fn now(what: EventKind) -> Self {
        let time = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        Self { time, what }
    }
}

/// What an [`Event`] says. Serialized with a `kind` field naming the variant in snake case.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum EventKind {
    /// A run (or a resume of one) began.
    Started {
        /// `train` or the data-prep stage's name.
        job: String,
        /// The last step (or task) of the run.
        steps: u64,
        /// The step it starts after (0 for a new run).
        from_step: u64,
        /// Ranks (or prep workers) in the run.
        world: u32,
        /// Training tokens of one step, over the world (0 for prep jobs).
        tokens_per_step: u64,
        /// The model, in words (empty for prep jobs).
        model: String,
    },
    /// A worker joined (in a single process: the process's ranks).
    Joined {
        /// Its rank (or prep worker number).
        rank: u32,
        /// Its host.
        host: String,
        /// Its process id.
        pid: u32,
        /// Its device ("cpu", "cuda:0").
        device: String,
    },
    /// A worker sent no heartbeat for longer than the stall timeout.
    Stalled {
        /// Its rank.
        rank: u32,
        /// Why it counts as stalled.
        cause: String,
    },
    /// A worker process died (or was dropped).
    Died {
        /// Its rank, when it had one.
        rank: Option<u32>,
        /// Its process id.
        pid: u32,
        /// How it ended.
        cause: String,
    },
    /// The group of workers started again from a checkpoint (or from the start).
    Restarted {
        /// Restarts so far.
        generation: u32,
        /// The step it continues after.
        from_step: u64,
        /// The checkpoint it continues from, if any.
        checkpoint: Option<String>,
    },
    /// A checkpoint was written.
    Checkpoint {
        /// Its step.
        step: u64,
        /// Its directory.
        path: String,
    },
    /// The model was evaluated on the validation data.
    Evaluation {
        /// The step.
        step: u64,
        /// Validation loss (nats per token).
        val_loss: f64,
        /// What the model writes after the fixed prompt, when the run knows its tokenizer.
        sample: Option<String>,
    },
    /// The run reached its last step.
    Finished {
        /// The step.
        step: u64,
    },
    /// The run stopped on an error.
    Failed {
        /// The error.
        cause: String,
    },
}

impl EventKind {
    /// How a job of `steps` steps (or tasks) ended: finished, or failed with `failure`.
    pub fn ended(steps: u64, failure: Option<String>) -> Self {
        match failure {
            None => EventKind::Finished { step: steps },
            Some(cause) => EventKind::Failed { cause },
        }
    }
}

/// What a live view of a run (the dashboard) is told as the run goes.
pub trait Watcher: Send + Sync {
    /// The world's step `record`, as metrics.jsonl has it.
    fn step(&self, record: &StepRecord);
    /// One rank's own record of a step (cluster runs: its loss, tokens and timings), which also
    /// means the rank was heard from.
    fn rank_step(&self, rank: u32, record: &StepRecord);
    /// An event, as events.jsonl has it.
    fn event(&self, event: &Event);
    /// Rank `rank` was heard from (a heartbeat or a report).
    fn heard(&self, rank: u32);
}

/// `events.jsonl` of a run, open for appending.
pub struct EventLog {
    path: PathBuf,
    file: File,
}

impl EventLog {
    /// Opens `RUN_DIR/events.jsonl` for appending, created when missing.
    pub fn open(run_dir: &Path) -> Result<Self, TrainError> {
        let path = run_dir.join(EVENTS_FILE);
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| TrainError::Metrics(format!("{}: {e}", path.display())))?;
        Ok(Self { path, file })
    }

    /// Appends `event` as one line.
    pub fn write(&mut self, event: &Event) -> Result<(), TrainError> {
        let text = serde_json::to_string(event)
            .map_err(|e| TrainError::Metrics(format!("an event as JSON: {e}")))?;
        writeln!(self.file, "{text}")
            .map_err(|e| TrainError::Metrics(format!("{}: {e}", self.path.display())))
    }
}

/// Every event of an events file (none when it does not exist); a line that is not one is an
/// error naming it.
pub fn read_events(path: &Path) -> Result<Vec<Event>, TrainError> {
    read_jsonl(path, "an event")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_round_trip_through_their_file_with_a_kind_field() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = EventLog::open(dir.path()).unwrap();
        let died = Event {
            time: 1.5,
            what: EventKind::Died {
                rank: Some(1),
                pid: 42,
                cause: "signal: 9 (SIGKILL)".into(),
            },
        };
        let eval = Event::now(EventKind::Evaluation {
            step: 4,
            val_loss: 2.5,
            sample: Some("O Brasil é".into()),
        });
        log.write(&died).unwrap();
        log.write(&eval).unwrap();
        let text = std::fs::read_to_string(dir.path().join(EVENTS_FILE)).unwrap();
        assert!(
            text.starts_with(r#"{"time":1.5,"kind":"died","rank":1,"pid":42,"#),
            "{text}"
        );
        assert_eq!(
            read_events(&dir.path().join(EVENTS_FILE)).unwrap(),
            [died, eval]
        );
        assert!(
            read_events(&dir.path().join("none.jsonl"))
                .unwrap()
                .is_empty()
        );
        std::fs::write(dir.path().join("bad.jsonl"), "{}\n").unwrap();
        let err = read_events(&dir.path().join("bad.jsonl")).unwrap_err();
        assert!(err.to_string().contains("bad.jsonl:1"), "{err}");
    }
}

//! What a training run leaves behind: its [`StepRecord`]s, one line of `metrics.jsonl` per step,
//! and its events in `events.jsonl` ([`MetricsLog`]), written by the process that sees the whole
//! world's step (a single process, or the coordinator from its ranks' records).

use super::TrainError;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use super::events::{Event, EventKind, EventLog, Watcher};
use super::jsonl::read_jsonl;
use crate::output::AtomicFile;
use crate::progress::StepBar;

/// The name of the per-step metrics file in a run directory.
pub const METRICS_FILE: &str = "metrics.jsonl";

/// One step, as a process (one rank, or a whole world in one process) saw it. Serialized, it is
/// one line of `metrics.jsonl` (docs/formats.md); the per-process timings and token count stay off
/// that line, which gives their result, `tokens_per_s`, instead.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StepRecord {
    /// Step number (1-based).
    pub step: u64,
    /// Mean training loss of the step.
    pub loss: f64,
    /// Validation loss, on evaluation steps.
    pub val_loss: Option<f64>,
    /// Learning rate used.
    pub lr: f64,
    /// Global gradient norm before clipping.
    pub grad_norm: f64,
    /// Training tokens per second over the step.
    pub tokens_per_s: f64,
    /// Seconds since the run (or the resume) started: set by the [`MetricsLog`] that writes the
    /// line (0 until then).
    pub elapsed: f64,
    /// Training tokens of the step (on this process's ranks).
    #[serde(skip)]
    pub tokens: u64,
    /// Seconds in forward, backward and the optimizer.
    #[serde(skip)]
    pub compute_s: f64,
    /// Seconds averaging the gradients over the ranks.
    #[serde(skip)]
    pub allreduce_s: f64,
    /// What the model wrote after the fixed prompt at this step's evaluation, if it did (it goes
    /// to events.jsonl with the evaluation).
    #[serde(skip)]
    pub sample: Option<String>,
}

impl StepRecord {
    /// Tokens per second of `tokens` trained in `seconds`.
    pub fn rate(tokens: u64, seconds: f64) -> f64 {
        tokens as f64 / seconds.max(1e-9)
    }

    /// The world's step from every rank's record of it (in rank order): the mean loss, the
    /// validation loss rank 0 measured, the tokens of all ranks over the slowest rank's time.
    /// `None` for no records.
    pub fn merge(ranks: &[StepRecord]) -> Option<StepRecord> {
        let first = ranks.first()?;
        let n = ranks.len() as f64;
        let slowest = ranks
            .iter()
            .map(|r| r.compute_s + r.allreduce_s)
            .fold(0.0, f64::max);
        let tokens: u64 = ranks.iter().map(|r| r.tokens).sum();
        Some(StepRecord {
            step: first.step,
            loss: ranks.iter().map(|r| r.loss).sum::<f64>() / n,
            val_loss: ranks.iter().find_map(|r| r.val_loss),
            lr: first.lr,
            grad_norm: first.grad_norm,
            tokens_per_s: Self::rate(tokens, slowest),
            elapsed: 0.0,
            tokens,
            compute_s: ranks.iter().map(|r| r.compute_s).sum::<f64>() / n,
            allreduce_s: ranks.iter().map(|r| r.allreduce_s).sum::<f64>() / n,
            sample: ranks.iter().find_map(|r| r.sample.clone()),
        })
    }

    /// The share of the step spent averaging gradients, 0 to 1.
    pub fn allreduce_share(&self) -> f64 {
        self.allreduce_s / (self.compute_s + self.allreduce_s).max(1e-9)
    }
}

/// `metrics.jsonl` and `events.jsonl` of a run, open for appending, the [`Watcher`] told of
/// both (the dashboard), and each step's progress on standard error: a bar on a terminal, a log
/// line otherwise.
pub struct MetricsLog {
    path: PathBuf,
    file: File,
    events: EventLog,
    watcher: Option<Arc<dyn Watcher>>,
    bar: Option<StepBar>,
    steps: u64,
    started: Instant,
}

/// `path` opened for appending, created when missing.
fn append_to(path: &Path) -> Result<File, TrainError> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| TrainError::Metrics(format!("{}: {e}", path.display())))
}

impl MetricsLog {
    /// Opens `RUN_DIR/metrics.jsonl` and `RUN_DIR/events.jsonl` for appending, for a run of
    /// `steps` steps. Open it again after a rollback, which replaces the metrics file.
    pub fn open(run_dir: &Path, steps: u64) -> Result<Self, TrainError> {
        let path = run_dir.join(METRICS_FILE);
        let file = append_to(&path)?;
        Ok(Self {
            path,
            file,
            events: EventLog::open(run_dir)?,
            watcher: None,
            bar: StepBar::on_terminal(steps),
            steps,
            started: Instant::now(),
        })
    }

    /// Tells `watcher` of every step and event from now on.
    pub fn watched_by(mut self, watcher: Option<Arc<dyn Watcher>>) -> Self {
        self.watcher = watcher;
        self
    }

    /// Opens the file again, keeping the clock: after a rollback, which replaces the file.
    pub fn reopen(&mut self) -> Result<(), TrainError> {
        self.file = append_to(&self.path)?;
        Ok(())
    }

    /// Appends `record` (its `elapsed` set to the time since this log was opened), shows it, and
    /// on an evaluation step appends the evaluation (with the record's sample) to the events.
    pub fn write(&mut self, mut record: StepRecord) -> Result<(), TrainError> {
        record.elapsed = self.started.elapsed().as_secs_f64();
        let text = serde_json::to_string(&record)
            .map_err(|e| TrainError::Metrics(format!("a step record as JSON: {e}")))?;
        writeln!(self.file, "{text}")
            .map_err(|e| TrainError::Metrics(format!("{}: {e}", self.path.display())))?;
        self.show(&record);
        if let Some(watcher) = &self.watcher {
            watcher.step(&record);
        }
        if let Some(val_loss) = record.val_loss {
            self.event(EventKind::Evaluation {
                step: record.step,
                val_loss,
                sample: record.sample,
            })?;
        }
        Ok(())
    }

    /// Appends an event happening now to events.jsonl and tells the watcher.
    pub fn event(&mut self, what: EventKind) -> Result<(), TrainError> {
        let event = Event::now(what);
        self.events.write(&event)?;
        if let Some(watcher) = &self.watcher {
            watcher.event(&event);
        }
        Ok(())
    }

    /// Tells the watcher of rank `rank`'s own record of a step.
    pub fn rank_step(&self, rank: u32, record: &StepRecord) {
        if let Some(watcher) = &self.watcher {
            watcher.rank_step(rank, record);
        }
    }

    /// Tells the watcher that rank `rank` was heard from.
    pub fn heard(&self, rank: u32) {
        if let Some(watcher) = &self.watcher {
            watcher.heard(rank);
        }
    }

    /// Shows a step: the bar on a terminal (evaluations and samples printed above it), a log
    /// line otherwise.
    fn show(&self, record: &StepRecord) {
        let share = record.allreduce_share();
        let val = record
            .val_loss
            .map_or(String::new(), |v| format!(" val {v:.4}"));
        let share = if share > 0.0 {
            format!(", all-reduce {:.0}% of the step", share * 100.0)
        } else {
            String::new()
        };
        let line = format!(
            "loss {:.4}{val} lr {:.2e} grad norm {:.3} {:.0} tok/s{share}",
            record.loss, record.lr, record.grad_norm, record.tokens_per_s
        );
        let sample = record
            .sample
            .as_ref()
            .map(|s| format!("step {}: sample: {s:?}", record.step));
        match &self.bar {
            Some(bar) => {
                if record.val_loss.is_some() {
                    bar.println(&format!("step {}/{}: {line}", record.step, self.steps));
                }
                if let Some(sample) = &sample {
                    bar.println(sample);
                }
                bar.update(record.step, &line);
            }
            None => {
                tracing::info!("step {}/{}: {line}", record.step, self.steps);
                if let Some(sample) = sample {
                    tracing::info!("{sample}");
                }
            }
        }
    }
}

/// Every step of a metrics file; a missing file or a line that is not a step is an error naming
/// it.
pub fn read_metrics(path: &Path) -> Result<Vec<StepRecord>, TrainError> {
    if !path.exists() {
        return Err(TrainError::Metrics(format!(
            "{}: no such file",
            path.display()
        )));
    }
    read_jsonl(path, "a metrics")
}

/// Keeps the metrics lines of steps up to `step` (a resume rewrites what came after); the file
/// is replaced whole, never cut in place.
pub fn truncate_metrics(path: &Path, step: u64) -> Result<(), TrainError> {
    let Ok(text) = fs::read_to_string(path) else {
        return Ok(());
    };
    let kept: String = text
        .lines()
        .filter(|line| serde_json::from_str::<StepRecord>(line).is_ok_and(|m| m.step <= step))
        .map(|line| format!("{line}\n"))
        .collect();
    if kept.len() == text.len() {
        return Ok(());
    }
    let error = |e: std::io::Error| TrainError::Metrics(format!("{}: {e}", path.display()));
    let mut file = AtomicFile::create(path).map_err(error)?;
    file.write_all(kept.as_bytes()).map_err(error)?;
    file.commit().map_err(error)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rank(loss: f64, val_loss: Option<f64>, compute_s: f64, allreduce_s: f64) -> StepRecord {
        StepRecord {
            step: 7,
            loss,
            val_loss,
            lr: 1e-3,
            grad_norm: 0.5,
            tokens_per_s: 0.0,
            elapsed: compute_s,
            tokens: 100,
            compute_s,
            allreduce_s,
            sample: None,
        }
    }

    #[test]
    fn ranks_merge_into_the_worlds_step() {
        let world = StepRecord::merge(&[rank(2.0, Some(1.5), 1.0, 1.0), rank(4.0, None, 3.0, 1.0)])
            .unwrap();
        assert_eq!(world.loss, 3.0);
        assert_eq!(world.val_loss, Some(1.5));
        assert_eq!(world.tokens, 200);
        assert_eq!(world.tokens_per_s, 200.0 / 4.0);
        assert_eq!(world.allreduce_share(), 1.0 / 3.0);
        assert!(StepRecord::merge(&[]).is_none());
    }

    #[test]
    fn a_metrics_line_holds_the_documented_fields_only() {
        let line = serde_json::to_value(rank(2.0, None, 1.0, 0.0)).unwrap();
        let mut keys: Vec<&String> = line.as_object().unwrap().keys().collect();
        keys.sort();
        assert_eq!(
            keys,
            [
                "elapsed",
                "grad_norm",
                "loss",
                "lr",
                "step",
                "tokens_per_s",
                "val_loss"
            ]
        );
    }
}

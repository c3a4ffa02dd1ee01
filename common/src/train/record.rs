//! What a training step leaves behind: its [`StepRecord`], one line of `metrics.jsonl` per step
//! ([`MetricsLog`]), written by the process that sees the whole world's step (a single process,
//! or the coordinator from its ranks' records).

use super::TrainError;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::output::AtomicFile;

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
        })
    }

    /// The share of the step spent averaging gradients, 0 to 1.
    pub fn allreduce_share(&self) -> f64 {
        self.allreduce_s / (self.compute_s + self.allreduce_s).max(1e-9)
    }
}

/// `metrics.jsonl` of a run, open for appending, and the log line of every step written to it.
pub struct MetricsLog {
    path: PathBuf,
    file: File,
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
    /// Opens `RUN_DIR/metrics.jsonl` for appending, for a run of `steps` steps. Open it again
    /// after a rollback, which replaces the file.
    pub fn open(run_dir: &Path, steps: u64) -> Result<Self, TrainError> {
        let path = run_dir.join(METRICS_FILE);
        let file = append_to(&path)?;
        Ok(Self {
            path,
            file,
            steps,
            started: Instant::now(),
        })
    }

    /// Opens the file again, keeping the clock: after a rollback, which replaces the file.
    pub fn reopen(&mut self) -> Result<(), TrainError> {
        self.file = append_to(&self.path)?;
        Ok(())
    }

    /// Appends `record` (its `elapsed` set to the time since this log was opened) and logs it.
    pub fn write(&mut self, mut record: StepRecord) -> Result<(), TrainError> {
        record.elapsed = self.started.elapsed().as_secs_f64();
        let text = serde_json::to_string(&record)
            .map_err(|e| TrainError::Metrics(format!("a step record as JSON: {e}")))?;
        writeln!(self.file, "{text}")
            .map_err(|e| TrainError::Metrics(format!("{}: {e}", self.path.display())))?;
        let share = record.allreduce_share();
        tracing::info!(
            "step {}/{}: loss {:.4}{} lr {:.2e} grad norm {:.3} {:.0} tok/s{}",
            record.step,
            self.steps,
            record.loss,
            record
                .val_loss
                .map_or(String::new(), |v| format!(" val {v:.4}")),
            record.lr,
            record.grad_norm,
            record.tokens_per_s,
            if share > 0.0 {
                format!(", all-reduce {:.0}% of the step", share * 100.0)
            } else {
                String::new()
            }
        );
        Ok(())
    }
}

/// Every step of a metrics file; a line that is not one is an error naming it.
pub fn read_metrics(path: &Path) -> Result<Vec<StepRecord>, TrainError> {
    let text = fs::read_to_string(path)
        .map_err(|e| TrainError::Metrics(format!("{}: {e}", path.display())))?;
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(i, line)| {
            serde_json::from_str(line).map_err(|e| {
                TrainError::Metrics(format!(
                    "{}:{}: not a metrics line ({e})",
                    path.display(),
                    i + 1
                ))
            })
        })
        .collect()
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

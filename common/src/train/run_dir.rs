//! The run directory's guards: one writer at a time ([`RunLock`]), the temporaries of a killed
//! writer removed at the next start, a new run that never overwrites an old one
//! ([`start_fresh`]), and a rollback to an earlier checkpoint that a kill at any
//! moment cannot half-undo ([`roll_back`]).

use super::TrainError;
use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

use super::checkpoint::{LATEST, newest_whole_checkpoint, set_latest};
use super::record::{METRICS_FILE, truncate_metrics};
use crate::output::remove_stale_temps;

/// The lock file's name inside a run directory.
pub const LOCK_FILE: &str = "lock";

/// Holds the run directory's advisory lock (`flock` on `<run>/lock`, which also records the
/// holder's host and pid) until dropped. The kernel releases it when the holder dies, so a lock
/// left by a killed run is recognised as stale and taken over.
#[derive(Debug)]
pub struct RunLock {
    file: File,
    path: PathBuf,
}

impl Drop for RunLock {
    /// Clears the holder's line before the lock goes, so that a line found at the next start
    /// means its writer died holding the lock.
    fn drop(&mut self) {
        let _ = self.file.set_len(0);
    }
}

/// This machine's host name, for the lock file and messages.
pub fn host_name() -> String {
    fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

impl RunLock {
    /// Creates `run_dir` if needed, takes its lock, and removes the temporaries that a writer
    /// which is gone left behind. A second writer is refused, naming the holder.
    pub fn acquire(run_dir: &Path) -> Result<Self, TrainError> {
        fs::create_dir_all(run_dir)
            .map_err(|e| TrainError::RunDir(format!("cannot create {}: {e}", run_dir.display())))?;
        let path = run_dir.join(LOCK_FILE);
        let io = |e: std::io::Error| TrainError::RunDir(format!("{}: {e}", path.display()));
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io)?;
        let mut holder = String::new();
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let _ = file.read_to_string(&mut holder);
                return Err(TrainError::RunDir(format!(
                    "{} is in use: another `sovereign` ({}) is writing it and holds {}; wait for \
                     it to finish or stop it (two writers would interleave checkpoints and \
                     metrics)",
                    run_dir.display(),
                    holder.trim(),
                    path.display()
                )));
            }
            Err(TryLockError::Error(e)) => return Err(io(e)),
        }
        file.read_to_string(&mut holder).map_err(io)?;
        if !holder.trim().is_empty() {
            tracing::warn!(
                "{}: the previous holder ({}) died holding it; lock taken over",
                path.display(),
                holder.trim()
            );
        }
        file.set_len(0).map_err(io)?;
        file.rewind().map_err(io)?;
        writeln!(file, "host {} pid {}", host_name(), std::process::id()).map_err(io)?;
        let lock = Self { file, path };
        lock.remove_stale_temps(run_dir)?;
        Ok(lock)
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Removes checkpoint, `latest` and metrics temporaries of writers that are gone.
    fn remove_stale_temps(&self, run_dir: &Path) -> Result<(), TrainError> {
        for prefix in [".ckpt-", &format!(".{LATEST}"), ".metrics.jsonl"] {
            remove_stale_temps(run_dir, prefix, ".tmp-")
                .map_err(|e| TrainError::RunDir(format!("cleaning {}: {e}", run_dir.display())))?;
        }
        Ok(())
    }
}

/// Prepares `run_dir` (locked by the caller) for a new run: one that already has a checkpoint
/// is refused (resume it instead); the metrics of an attempt that stopped before its first
/// checkpoint are cleared, so a failed start is never a dead end.
pub fn start_fresh(run_dir: &Path) -> Result<(), TrainError> {
    let has_checkpoint =
        run_dir.join(LATEST).exists() || newest_whole_checkpoint(run_dir).is_some();
    if has_checkpoint {
        return Err(TrainError::RunDir(format!(
            "{} already holds a run; use `sovereign resume --run {}` or another --out",
            run_dir.display(),
            run_dir.display()
        )));
    }
    let metrics = run_dir.join(METRICS_FILE);
    if metrics.exists() {
        tracing::warn!(
            "{}: an earlier attempt stopped before its first checkpoint; starting over",
            run_dir.display()
        );
        truncate_metrics(&metrics, 0)?;
    }
    Ok(())
}

/// Makes `checkpoint` (a `ckpt-<step>` directory of `run_dir`) the point the run continues from:
/// first `latest` names it, then metrics.jsonl loses the lines after `step`. Killed between the
/// two, a plain `resume` continues from `latest` and cuts the metrics itself, so the rollback is
/// never undone.
pub fn roll_back(run_dir: &Path, checkpoint: &Path, step: u64) -> Result<(), TrainError> {
    let inside = match (checkpoint.parent(), fs::canonicalize(run_dir)) {
        (Some(parent), Ok(run)) => fs::canonicalize(parent).is_ok_and(|p| p == run),
        _ => false,
    };
    if inside {
        set_latest(run_dir, checkpoint)
            .map_err(|e| TrainError::RunDir(format!("{}: {e}", run_dir.join(LATEST).display())))?;
    }
    truncate_metrics(&run_dir.join(METRICS_FILE), step)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_writer_is_refused_naming_the_holder_and_a_released_lock_is_taken_over() {
        let dir = tempfile::tempdir().unwrap();
        let first = RunLock::acquire(dir.path()).unwrap();
        let err = RunLock::acquire(dir.path()).unwrap_err().to_string();
        assert!(err.contains("is in use"), "{err}");
        assert!(
            err.contains(&format!("pid {}", std::process::id())),
            "{err}"
        );
        drop(first);
        assert_eq!(fs::read_to_string(dir.path().join(LOCK_FILE)).unwrap(), "");
        let again = RunLock::acquire(dir.path()).unwrap();
        let text = fs::read_to_string(again.path()).unwrap();
        assert_eq!(text.matches("pid").count(), 1, "{text}");
    }

    #[test]
    fn temporaries_of_a_gone_writer_are_removed_at_the_next_start() {
        let dir = tempfile::tempdir().unwrap();
        let stale_dir = dir.path().join(".ckpt-000004.tmp-4999999");
        fs::create_dir(&stale_dir).unwrap();
        fs::write(stale_dir.join("model.safetensors"), "half").unwrap();
        let stale_latest = dir.path().join(".latest.tmp-4999998");
        fs::write(&stale_latest, "ckpt").unwrap();
        let _lock = RunLock::acquire(dir.path()).unwrap();
        assert!(!stale_dir.exists());
        assert!(!stale_latest.exists());
    }
}

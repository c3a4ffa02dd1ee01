//! Where a resumed run continues: its checkpoint, the settings stored in it, and data that moved
//! since the run started ([`MovedData`]).

use super::TrainError;
use std::path::{Path, PathBuf};

use super::checkpoint::{CheckpointMeta, latest_checkpoint, read_meta};
use super::settings::RunConfig;
use crate::data::dataset::Sidecar;

/// Where a resume finds data that moved since the run started: `--data`/`--val-data`, each
/// accepted when its sha256 is the one the run was checked against.
#[derive(Clone, Debug, Default)]
pub struct MovedData {
    /// The training data's new path.
    pub data: Option<PathBuf>,
    /// The validation data's new path.
    pub val_data: Option<PathBuf>,
    /// Skip the checksum checks (resume's `--skip-checksum`).
    pub skip_checksum: bool,
}

impl MovedData {
    /// Points `config` at the moved files after checking each: its sidecar's sha256 must be the
    /// one the checkpoint recorded (or, for checkpoints without it, the original's sidecar's,
    /// while that is still there).
    fn apply(&self, config: &mut RunConfig, meta: &CheckpointMeta) -> Result<(), TrainError> {
        config.skip_checksum |= self.skip_checksum;
        if let Some(new) = &self.data {
            config.data = moved(new, &config.data, meta.data_sha256.as_deref())?;
        }
        if let Some(new) = &self.val_data {
            config.val_data = Some(match &config.val_data {
                Some(old) => moved(new, old, meta.val_data_sha256.as_deref())?,
                None => {
                    return Err(TrainError::Checkpoint(format!(
                        "--val-data {}: the run had no validation data to move",
                        new.display()
                    )));
                }
            });
        }
        Ok(())
    }
}

/// The absolute path of `new`, a moved copy of `old` whose sidecar's sha256 must be `recorded`
/// (or `old`'s sidecar's when nothing was recorded).
fn moved(new: &Path, old: &Path, recorded: Option<&str>) -> Result<PathBuf, TrainError> {
    let new = std::path::absolute(new)
        .map_err(|e| TrainError::Checkpoint(format!("{}: {e}", new.display())))?;
    let new_sum = Sidecar::read(&new)?.data_sha256;
    let expected = match recorded {
        Some(sum) => Some(sum.to_string()),
        None => Sidecar::read(old).ok().map(|meta| meta.data_sha256),
    };
    if let Some(expected) = expected
        && expected != new_sum
    {
        return Err(TrainError::Checkpoint(format!(
            "{} is not the data this run trained on: its sidecar's sha256 {new_sum} differs \
             from the run's {expected} ({})",
            new.display(),
            old.display()
        )));
    }
    tracing::info!("data moved: {} → {}", old.display(), new.display());
    Ok(new)
}

/// Where a resumed run continues: the checkpoint (`from`, or the run's `latest`) and the run
/// config stored in it, with `out` set to `run_dir` (the directory may have moved since).
pub fn resume_point(
    run_dir: &Path,
    from: Option<&Path>,
    moved: &MovedData,
) -> Result<(RunConfig, PathBuf), TrainError> {
    let checkpoint = match from {
        Some(dir) => dir.to_path_buf(),
        None => latest_checkpoint(run_dir)?,
    };
    let meta = read_meta(&checkpoint)?;
    let mut config = stored_config(&checkpoint, &meta)?;
    config.out = std::path::absolute(run_dir)
        .map_err(|e| TrainError::Checkpoint(format!("{}: {e}", run_dir.display())))?;
    moved.apply(&mut config, &meta)?;
    Ok((config, checkpoint))
}

/// The run settings that `checkpoint`'s meta.json (`meta`) stored.
pub fn stored_config(checkpoint: &Path, meta: &CheckpointMeta) -> Result<RunConfig, TrainError> {
    serde_json::from_value(meta.config.clone()).map_err(|e| {
        TrainError::Checkpoint(format!(
            "{}: the run settings (\"config\") are not a run's: {e}",
            checkpoint.join("meta.json").display()
        ))
    })
}

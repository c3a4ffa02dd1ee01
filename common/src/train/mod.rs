//! Training: the run settings ([`settings`]) and what they mean ([`config`]), the learning-rate
//! schedule ([`schedule`]), the optimizer with its gradients ([`optimizer`]) and its
//! per-parameter update ([`adamw`]), one step's gradients and update ([`step`]), the loop every
//! run goes through ([`run`]) with its step records ([`record`]) and events ([`events`]) (read
//! back by [`jsonl`]), checkpoints ([`checkpoint`]), the run directory's guards ([`run_dir`])
//! and resuming ([`resume`]).

pub mod adamw;
pub mod backend;
pub mod checkpoint;
pub mod config;
pub mod events;
pub mod jsonl;
pub mod optimizer;
pub mod record;
pub mod resume;
pub mod run;
pub mod run_dir;
pub mod schedule;
pub mod settings;
pub mod step;

use crate::collective::CollectiveError;
use crate::data::dataset::DataError;
use crate::hashing::ChecksumError;
use crate::model::ModelError;
use crate::tokenizer::TokenizerError;

/// What stops a training run, by where it went wrong. Each says which setting, file, directory
/// or step, and what to do.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// A run setting (its flag or run.toml key) that the run cannot use.
    #[error("{0}")]
    Setting(String),
    /// A checkpoint that cannot be read, verified or written.
    #[error("{0}")]
    Checkpoint(String),
    /// The run directory is held by another writer or is not what the command expects.
    #[error("{0}")]
    RunDir(String),
    /// metrics.jsonl could not be read or written.
    #[error("{0}")]
    Metrics(String),
    /// A step's loss, gradient norm or learning rate is not finite.
    #[error("{0}")]
    Diverged(String),
    /// The loop could not go on (a weights file of another shape, a step record not taken).
    #[error("{0}")]
    Run(String),
    /// The all-reduce of a step failed.
    #[error("step {step}: all-reduce: {source}")]
    AllReduce {
        /// The step (1-based).
        step: u64,
        /// Why.
        source: CollectiveError,
    },
    /// The token data cannot be used.
    #[error(transparent)]
    Data(#[from] DataError),
    /// The tokenizer cannot be used.
    #[error(transparent)]
    Tokenizer(#[from] TokenizerError),
    /// The model cannot be made or loaded.
    #[error(transparent)]
    Model(#[from] ModelError),
    /// A checksum could not be computed.
    #[error(transparent)]
    Checksum(#[from] ChecksumError),
}

//! Training: the run settings ([`settings`]) and what they mean ([`config`]), the learning-rate
//! schedule ([`schedule`]), the optimizer with its gradients ([`optimizer`]) and its
//! per-parameter update ([`adamw`]), one step's gradients and update ([`step`]), the loop every
//! run goes through ([`run`]) with its step records ([`record`]), checkpoints ([`checkpoint`]),
//! the run directory's guards ([`run_dir`]) and resuming ([`resume`]).

pub mod adamw;
pub mod backend;
pub mod checkpoint;
pub mod config;
pub mod optimizer;
pub mod record;
pub mod resume;
pub mod run;
pub mod run_dir;
pub mod schedule;
pub mod settings;
pub mod step;

//! Training: the learning-rate schedule ([`schedule`]), the optimizer with its gradients
//! ([`optimizer`]) and its per-parameter update ([`adamw`]), one training step ([`step`]), checkpoints ([`checkpoint`]) and the run loop
//! with resume ([`run`]), and one rank of a data-parallel run ([`replica`]).

pub mod adamw;
pub mod checkpoint;
pub mod optimizer;
pub mod replica;
pub mod run;
pub mod run_dir;
pub mod schedule;
pub mod settings;
pub mod step;

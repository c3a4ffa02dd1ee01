//! Training: the learning-rate schedule ([`schedule`]), the optimizer with its gradients
//! ([`optimizer`]) and one training step ([`step`]).

pub mod optimizer;
pub mod schedule;
pub mod step;

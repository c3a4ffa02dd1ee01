//! What the model's six own operations share on `Autodiff<B>` (each op's `tracked` function,
//! behind [`RwkvBackend`](super::RwkvBackend)): the forward runs on the inner backend's tensors,
//! and [`finish`] records the op's backward step with the state it needs.

use burn::backend::Autodiff;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::ops::{Backward, OpsKind};
use burn::prelude::*;
use burn::tensor::TensorPrimitive;
use burn::tensor::ops::FloatTensor;

/// A tensor of rank `D` on `Autodiff<B, C>`: what an operation's `tracked` form takes and gives.
pub type Tracked<B, C, const D: usize> = Tensor<Autodiff<B, C>, D>;

/// A float primitive as a tensor of rank `D`.
pub fn float_tensor<B: Backend, const D: usize>(primitive: FloatTensor<B>) -> Tensor<B, D> {
    Tensor::from_primitive(TensorPrimitive::Float(primitive))
}

/// The output of an operation whose backward step `kind` was prepared for: recorded with `state`
/// when a gradient is wanted, untracked otherwise.
pub fn finish<BO, B, S, C, const N: usize>(
    kind: OpsKind<BO, B, S, C, N>,
    state: S,
    output: FloatTensor<B>,
) -> FloatTensor<Autodiff<B, C>>
where
    B: Backend,
    C: CheckpointStrategy,
    S: Clone + Send + std::fmt::Debug + 'static,
    BO: Backward<B, N, State = S>,
{
    match kind {
        OpsKind::Tracked(prep) => prep.finish(state, output),
        OpsKind::UnTracked(prep) => prep.finish(output),
    }
}

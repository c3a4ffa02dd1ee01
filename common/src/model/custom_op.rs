//! What the model's own autodiff operations share ([`activation`](super::activation),
//! [`token_shift`](super::token_shift), [`wkv`](super::wkv), [`wkv_out`](super::wkv_out),
//! [`loss`](super::loss), [`linear`](super::linear)): each runs its forward on the inner
//! backend's tensors and records a backward step that gets Burn's float primitives back.

use burn::backend::Autodiff;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::ops::{Backward, OpsKind};
use burn::prelude::*;
use burn::tensor::TensorPrimitive;
use burn::tensor::ops::FloatTensor;

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

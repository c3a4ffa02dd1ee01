//! The output head and the training loss as one operation: logits `x · headᵀ`, their mean
//! cross-entropy against the targets, and L2Wrap.
//!
//! L2Wrap (RWKV-LM) leaves the loss value alone and adds a gradient of `l2wrap / N · max` at each
//! position's largest logit (N positions, `l2wrap` = [`L2WRAP`] in training), which keeps logits
//! from drifting upward.
//!
//! Built from tensor ops under autodiff, the `[N, V]` logits would be kept, softmaxed, gathered
//! and differentiated op by op, several passes over N × V floats each (V = 32000). This operation
//! instead computes the loss and, when a gradient is wanted, `∂loss/∂x` and `∂loss/∂head` in its
//! forward, as fused cross-entropy kernels do: the logits' gradient is `(softmax − onehot) / N`
//! plus L2Wrap's term, and only the two small gradients are kept for the backward, which scales
//! them by the incoming gradient.
//!
//! Backends: [`LossKernel`] is the operation on a plain backend; its provided methods build it
//! from tensor ops ([`tensor_ops`], the GPU backends' form and the tests' reference); the CPU
//! backend runs it on raw slices a block of rows at a time ([`cpu`]). [`RwkvBackend::head_loss`](super::RwkvBackend::head_loss)
//! is what the model calls: on a plain backend it computes the value, on `Autodiff<B>` it also
//! records the backward ([`autodiff`]).

mod autodiff;
pub(crate) use autodiff::tracked;
pub mod cpu;
pub mod tensor_ops;
#[cfg(test)]
mod tests;

use burn::prelude::*;

/// L2Wrap's factor in training (RWKV-LM's `1e-4`).
pub const L2WRAP: f64 = 1e-4;

/// The inputs (first T tokens) and targets (last T tokens) of windows of T + 1 tokens, as
/// `[B, T]` tensors.
pub fn window_tensors<B: Backend>(
    windows: &[Vec<u16>],
    device: &B::Device,
) -> (Tensor<B, 2, Int>, Tensor<B, 2, Int>) {
    let (b, t) = (windows.len(), windows.first().map_or(1, Vec::len) - 1);
    let input: Vec<i64> = windows
        .iter()
        .flat_map(|w| w[..t].iter().map(|&x| i64::from(x)))
        .collect();
    let target: Vec<i64> = windows
        .iter()
        .flat_map(|w| w[1..].iter().map(|&x| i64::from(x)))
        .collect();
    (
        Tensor::from_data(TensorData::new(input, [b, t]), device),
        Tensor::from_data(TensorData::new(target, [b, t]), device),
    )
}

/// The loss and its gradients, as the operation's forward computes them.
#[derive(Clone, Debug)]
pub struct HeadLossGrads<B: Backend> {
    /// Mean cross-entropy, `[1]`.
    pub loss: Tensor<B, 1>,
    /// `∂loss/∂x`, `[N, C]` (with L2Wrap's term).
    pub x: Tensor<B, 2>,
    /// `∂loss/∂head`, `[V, C]` (with L2Wrap's term).
    pub head: Tensor<B, 2>,
}

/// The head and loss on a plain (non-autodiff) backend. `x` is `[N, C]` (the final norm's
/// output, one row per position), `head` is `[V, C]`, `targets` is `[N]` with every id below V.
/// The provided methods are the tensor-op form.
pub trait LossKernel: Backend {
    /// The mean cross-entropy of the logits `x · headᵀ` against `targets`, `[1]`.
    fn head_loss_value(
        x: Tensor<Self, 2>,
        head: Tensor<Self, 2>,
        targets: Tensor<Self, 1, Int>,
    ) -> Tensor<Self, 1> {
        tensor_ops::value(x, head, targets)
    }

    /// The same loss with its gradients, L2Wrap's term at factor `l2wrap` included.
    fn head_loss_grads(
        x: Tensor<Self, 2>,
        head: Tensor<Self, 2>,
        targets: Tensor<Self, 1, Int>,
        l2wrap: f64,
    ) -> HeadLossGrads<Self> {
        tensor_ops::grads(x, head, targets, l2wrap)
    }
}

impl LossKernel for burn::backend::Flex {
    fn head_loss_value(
        x: Tensor<Self, 2>,
        head: Tensor<Self, 2>,
        targets: Tensor<Self, 1, Int>,
    ) -> Tensor<Self, 1> {
        cpu::value_tensors(x, head, targets)
    }

    fn head_loss_grads(
        x: Tensor<Self, 2>,
        head: Tensor<Self, 2>,
        targets: Tensor<Self, 1, Int>,
        l2wrap: f64,
    ) -> HeadLossGrads<Self> {
        cpu::grads_tensors(x, head, targets, l2wrap)
    }
}

#[cfg(any(feature = "cuda", feature = "wgpu"))]
impl<R: burn_cubecl::CubeRuntime, BT: burn_cubecl::BoolElement> LossKernel
    for burn_cubecl::CubeBackend<R, f32, i32, BT>
{
}

//! The token shift with its mix, as one operation: `x + (shift(x) - x)·μ`, where `shift(x)` is the
//! sequence moved one step later with `prev` (the last input of the previous call) in front
//! (docs/model.md). The time mix takes six of these from one `x`, the channel mix one.
//!
//! In tensor ops this is a concatenation, a slice, a subtraction, a broadcast product and a sum,
//! each with its backward; on the CPU it is one pass each way.
//!
//! Backends: [`TokenShiftKernel`] is the operation on a plain backend; its provided methods are
//! the tensor-op form ([`tensor_ops`], the GPU backends' form and the tests' reference); the CPU
//! backend runs it on raw slices a block of rows at a time ([`cpu`]).
//! [`RwkvBackend::token_shift`](super::RwkvBackend::token_shift) is what the model calls: on a plain backend it computes the
//! value, on `Autodiff<B>` it also records the backward ([`autodiff`]).

mod autodiff;
pub(crate) use autodiff::tracked;
pub mod cpu;
pub mod tensor_ops;
#[cfg(test)]
mod tests;

use burn::prelude::*;

/// The operation's inputs (also used for their gradients).
#[derive(Clone, Debug)]
pub struct TokenShiftInputs<B: Backend> {
    /// The sequence, `[B, T, C]`.
    pub x: Tensor<B, 3>,
    /// What stands before its first step, `[B, C]`.
    pub prev: Tensor<B, 2>,
    /// The mix μ, `[C]`.
    pub mix: Tensor<B, 1>,
}

/// The operation on a plain (non-autodiff) backend. The provided methods are the tensor-op form.
pub trait TokenShiftKernel: Backend {
    /// `x + (shift(x) - x)·μ`, `[B, T, C]`.
    fn token_shift_forward(x: &TokenShiftInputs<Self>) -> Tensor<Self, 3> {
        tensor_ops::forward(x)
    }

    /// Every input's gradient given `dout`, the gradient of the output.
    fn token_shift_backward(
        x: &TokenShiftInputs<Self>,
        dout: Tensor<Self, 3>,
    ) -> TokenShiftInputs<Self> {
        tensor_ops::backward(x, dout)
    }
}

impl TokenShiftKernel for burn::backend::Flex {
    fn token_shift_forward(x: &TokenShiftInputs<Self>) -> Tensor<Self, 3> {
        cpu::forward(x)
    }

    fn token_shift_backward(
        x: &TokenShiftInputs<Self>,
        dout: Tensor<Self, 3>,
    ) -> TokenShiftInputs<Self> {
        cpu::backward(x, dout)
    }
}

#[cfg(any(feature = "cuda", feature = "wgpu"))]
impl<R: burn_cubecl::CubeRuntime, BT: burn_cubecl::BoolElement> TokenShiftKernel
    for burn_cubecl::CubeBackend<R, f32, i32, BT>
{
}

//! What the time mix makes of the WKV output, as one operation: a GroupNorm per head with the
//! affine of `ln_x`, plus the bonus `(Σ_head r·k·r_k)·v`, times the gate `g` (docs/model.md):
//!
//! ```text
//! out = (GN(y)·weight + bias + (Σ_n r_n k_n r_k[h, n])·v) · g        per head h of every row
//! ```
//!
//! Written in tensor ops this is sixteen element-wise operations and their backwards, each a pass
//! over `[B, T, C]` with its own allocation; on the CPU it is one pass each way.
//!
//! Backends: [`WkvOutKernel`] is the operation on a plain backend; its provided methods are the
//! tensor-op form ([`tensor_ops`], the GPU backends' form and the tests' reference); the CPU
//! backend runs it on raw slices a block of rows at a time ([`cpu`]). [`RwkvBackend::wkv_out`](super::RwkvBackend::wkv_out)
//! is what the model calls: on a plain backend it computes the value, on `Autodiff<B>` it also
//! records the backward ([`autodiff`]).

mod autodiff;
pub(crate) use autodiff::tracked;
pub mod cpu;
pub mod tensor_ops;
#[cfg(test)]
mod tests;

use burn::prelude::*;

/// Epsilon of the per-head GroupNorm (RWKV-LM's `64e-5`, head size 64 × 1e-5).
pub const GN_EPS: f64 = 64e-5;

/// The operation's inputs (also used for their gradients). Rows are `[B, T, C]` with head `h`
/// in channels `h·N..(h+1)·N`.
#[derive(Clone, Debug)]
pub struct WkvOutInputs<B: Backend> {
    /// The WKV output y, `[B, T, C]`.
    pub y: Tensor<B, 3>,
    /// Receptance r, `[B, T, C]`.
    pub r: Tensor<B, 3>,
    /// Key k (rescaled, as the WKV read it), `[B, T, C]`.
    pub k: Tensor<B, 3>,
    /// Value v, `[B, T, C]`.
    pub v: Tensor<B, 3>,
    /// The gate g, `[B, T, C]`.
    pub g: Tensor<B, 3>,
    /// Bonus weights r_k, `[H, N]`.
    pub r_k: Tensor<B, 2>,
    /// The GroupNorm's scale (`ln_x.weight`), `[C]`.
    pub weight: Tensor<B, 1>,
    /// The GroupNorm's shift (`ln_x.bias`), `[C]`.
    pub bias: Tensor<B, 1>,
}

/// The operation on a plain (non-autodiff) backend. The provided methods are the tensor-op form.
pub trait WkvOutKernel: Backend {
    /// `out`, `[B, T, C]`.
    fn wkv_out_forward(x: &WkvOutInputs<Self>) -> Tensor<Self, 3> {
        tensor_ops::forward(x)
    }

    /// Every input's gradient given `dout`, the gradient of `out`.
    fn wkv_out_backward(x: &WkvOutInputs<Self>, dout: Tensor<Self, 3>) -> WkvOutInputs<Self> {
        tensor_ops::backward(x, dout)
    }
}

impl WkvOutKernel for burn::backend::Flex {
    fn wkv_out_forward(x: &WkvOutInputs<Self>) -> Tensor<Self, 3> {
        cpu::forward(x)
    }

    fn wkv_out_backward(x: &WkvOutInputs<Self>, dout: Tensor<Self, 3>) -> WkvOutInputs<Self> {
        cpu::backward(x, dout)
    }
}

#[cfg(any(feature = "cuda", feature = "wgpu"))]
impl<R: burn_cubecl::CubeRuntime, BT: burn_cubecl::BoolElement> WkvOutKernel
    for burn_cubecl::CubeBackend<R, f32, i32, BT>
{
}

//! The WKV-7 recurrence as one operation with its own backward.
//!
//! Per head, with the state `S ∈ R^{N×N}` indexed `[value, key]`, every time step does
//!
//! ```text
//! S_t = S_{t-1} diag(w_t) + (S_{t-1} a_t) b_t^T + v_t k_t^T        y_t = S_t r_t
//! ```
//!
//! which is docs/model.md's update with the official kernel's naming: `a = -κ`, `b = κ * a_rwkv`.
//! Built from tensor ops, autodiff would keep every step's `S` (T × N² floats per head). This
//! operation instead keeps a snapshot of `S` at the start of every chunk of [`CHUNK`] steps, and
//! its backward recomputes the chunk's states from the snapshot, as the official CUDA kernel
//! does: memory grows with T / 16 snapshots, not T states.
//!
//! Two forms. The model calls the *layer* form ([`WkvLayerInputs`]): the tensors as the time mix
//! produces them, `[B, T, C]` with head `h` in channels `h·N..(h+1)·N`, before the per-step
//! preparation (the decay from its logit, κ from the unnormalized removal key, `a` and `b`),
//! which the operation does itself; `y` comes back `[B, T, C]`. Underneath is the *core* form
//! ([`WkvInputs`]): prepared inputs, one head per row of `[BH, T, N]` (batch and head folded
//! together, time, channel), the state `[BH, N, N]` and the snapshots `[BH, chunks, N·N]`.
//!
//! Backends: [`WkvKernel`] is the operation on a plain backend. Its provided core methods build
//! the recurrence from tensor ops ([`tensor_ops`]), and its provided layer methods prepare the
//! inputs and move heads in tensor ops around the core ([`layer`]); that runs on any Burn backend
//! and is the tests' reference. The CubeCL backends (CUDA, wgpu) replace the core with one GPU
//! kernel per direction ([`cube`], with those features); the CPU backend (`Flex`) replaces the
//! layer form with one pass over raw slices that also prepares and moves the heads ([`cpu`]).
//! [`RwkvBackend::wkv`](super::RwkvBackend::wkv) is what the model calls: on a plain backend it runs the forward, on
//! `Autodiff<B>` it also records the backward ([`autodiff`]). The starting state is an input
//! without gradient, and the final state is returned untracked: training starts every window from
//! zeros and discards the final state.

mod autodiff;
pub(crate) use autodiff::tracked;
pub mod cpu;
#[cfg(any(feature = "cuda", feature = "wgpu"))]
pub mod cube;
pub mod layer;
pub mod tensor_ops;

use burn::prelude::*;

use crate::model::config::HEAD_SIZE as N;

/// Time steps per chunk: the backward keeps one state snapshot per chunk.
pub const CHUNK: usize = 16;

/// `e^{-1/2}`: the decay is `exp(-DECAY_SCALE · σ(w_logit))`, in (0.545, 1) (docs/model.md).
pub const DECAY_SCALE: f64 = 0.606_530_659_712_633_4;

/// Below this norm the removal key is divided by it instead (PyTorch's `normalize` eps).
pub const KAPPA_EPS: f64 = 1e-12;

/// The recurrence's inputs as a time-mix layer produces them, each `[B, T, C]` with head `h` in
/// channels `h·N..(h+1)·N` (also used for their gradients).
#[derive(Clone, Debug)]
pub struct WkvLayerInputs<B: Backend> {
    /// Receptance r.
    pub r: Tensor<B, 3>,
    /// The decay's logit: `w = exp(-DECAY_SCALE · σ(w_logit))`.
    pub w_logit: Tensor<B, 3>,
    /// Key k (already rescaled by `a`).
    pub k: Tensor<B, 3>,
    /// Value v.
    pub v: Tensor<B, 3>,
    /// The removal key before normalization (`k * k_k`): `κ` is it divided by its norm per head.
    pub kk: Tensor<B, 3>,
    /// The in-context learning rate `a` in (0, 1): the replacement key is `b = κ * a`.
    pub a: Tensor<B, 3>,
}

impl<B: Backend> WkvLayerInputs<B> {
    /// Random inputs `[b, t, heads·N]` in the ranges the model produces, for tests and benchmarks.
    pub fn random(b: usize, t: usize, heads: usize, device: &B::Device) -> Self {
        let uniform = |lo: f64, hi: f64| {
            Tensor::<B, 3>::random(
                [b, t, heads * N],
                burn::tensor::Distribution::Uniform(lo, hi),
                device,
            )
        };
        WkvLayerInputs {
            r: uniform(-1.0, 1.0),
            w_logit: uniform(-4.0, 4.0),
            k: uniform(-1.0, 1.0),
            v: uniform(-1.0, 1.0),
            kk: uniform(-1.0, 1.0),
            a: uniform(0.0, 1.0),
        }
    }
}

/// What a forward pass of the layer form produces.
#[derive(Clone, Debug)]
pub struct WkvLayerForward<B: Backend> {
    /// The outputs `y`, `[B, T, C]`.
    pub y: Tensor<B, 3>,
    /// The state after the last step, `[B, H, N, N]`.
    pub state: Tensor<B, 4>,
    /// The state at the start of every chunk, `[B·H, chunks, N·N]`.
    pub snapshots: Tensor<B, 3>,
}

/// The core form's per-step inputs, prepared, each `[BH, T, N]` (also used for their gradients).
#[derive(Clone, Debug)]
pub struct WkvInputs<B: Backend> {
    /// Receptance r: what each step reads out of the state.
    pub r: Tensor<B, 3>,
    /// Decay w in (0, 1), applied to the key columns of the state.
    pub w: Tensor<B, 3>,
    /// Key k.
    pub k: Tensor<B, 3>,
    /// Value v.
    pub v: Tensor<B, 3>,
    /// Removal direction a (`-κ`).
    pub a: Tensor<B, 3>,
    /// Replacement key b (`κ * a`).
    pub b: Tensor<B, 3>,
}

/// What a forward pass of the core form produces.
#[derive(Clone, Debug)]
pub struct WkvForward<B: Backend> {
    /// The outputs `y`, `[BH, T, N]`.
    pub y: Tensor<B, 3>,
    /// The state after the last step, `[BH, N, N]`.
    pub state: Tensor<B, 3>,
    /// The state at the start of every chunk, `[BH, chunks, N·N]`.
    pub snapshots: Tensor<B, 3>,
}

/// The recurrence on a plain (non-autodiff) backend: a forward that keeps chunk snapshots and a
/// backward that recomputes from them, in both forms. The provided methods are the tensor-op
/// core and the tensor-op layer form around [`Self::wkv_forward`] and [`Self::wkv_backward`].
pub trait WkvKernel: Backend {
    /// The core form: runs the recurrence from `state` over prepared `inputs`.
    fn wkv_forward(inputs: &WkvInputs<Self>, state: Tensor<Self, 3>) -> WkvForward<Self> {
        tensor_ops::forward(inputs, state)
    }

    /// The gradients of the inputs given `dy`, the gradient of `y` (the final state carries none).
    fn wkv_backward(
        inputs: &WkvInputs<Self>,
        snapshots: Tensor<Self, 3>,
        dy: Tensor<Self, 3>,
    ) -> WkvInputs<Self> {
        tensor_ops::backward(inputs, snapshots, dy)
    }

    /// The layer form: runs the recurrence from `state` (`[B, H, N, N]`) over `inputs`.
    fn wkv_layer_forward(
        inputs: &WkvLayerInputs<Self>,
        state: Tensor<Self, 4>,
    ) -> WkvLayerForward<Self> {
        layer::forward(inputs, state)
    }

    /// The layer form's input gradients given `dy` (`[B, T, C]`), from the forward's snapshots.
    fn wkv_layer_backward(
        inputs: &WkvLayerInputs<Self>,
        snapshots: Tensor<Self, 3>,
        dy: Tensor<Self, 3>,
    ) -> WkvLayerInputs<Self> {
        layer::backward(inputs, snapshots, dy)
    }
}

impl WkvKernel for burn::backend::Flex {
    fn wkv_layer_forward(
        inputs: &WkvLayerInputs<Self>,
        state: Tensor<Self, 4>,
    ) -> WkvLayerForward<Self> {
        cpu::layer_forward(inputs, state)
    }

    fn wkv_layer_backward(
        inputs: &WkvLayerInputs<Self>,
        snapshots: Tensor<Self, 3>,
        dy: Tensor<Self, 3>,
    ) -> WkvLayerInputs<Self> {
        cpu::layer_backward(inputs, snapshots, dy)
    }
}

#[cfg(any(feature = "cuda", feature = "wgpu"))]
impl<R: burn_cubecl::CubeRuntime, BT: burn_cubecl::BoolElement> WkvKernel
    for burn_cubecl::CubeBackend<R, f32, i32, BT>
{
    fn wkv_forward(inputs: &WkvInputs<Self>, state: Tensor<Self, 3>) -> WkvForward<Self> {
        cube::forward(inputs, state)
    }

    fn wkv_backward(
        inputs: &WkvInputs<Self>,
        snapshots: Tensor<Self, 3>,
        dy: Tensor<Self, 3>,
    ) -> WkvInputs<Self> {
        cube::backward(inputs, snapshots, dy)
    }
}

/// How many chunks a sequence of `t` steps has.
pub fn chunks(t: usize) -> usize {
    t.div_ceil(CHUNK).max(1)
}

#[cfg(test)]
mod tests;

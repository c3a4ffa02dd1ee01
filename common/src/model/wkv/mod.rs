//! The WKV-7 recurrence as one operation with its own backward.
//!
//! Per head, with the state `S ∈ R^{N×N}` indexed `[value, key]`, every time step does
//!
//! ```text
//! S_t = S_{t-1} diag(w_t) + (S_{t-1} a_t) b_t^T + v_t k_t^T        y_t = S_t r_t
//! ```
//!
//! which is DESIGN §4's update with the official kernel's naming: `a = -κ`, `b = κ * a_rwkv`.
//! Built from tensor ops, autodiff would keep every step's `S` (T × N² floats per head). This
//! operation instead keeps a snapshot of `S` at the start of every chunk of [`CHUNK`] steps, and
//! its backward recomputes the chunk's states from the snapshot, as the official CUDA kernel
//! does: memory grows with T / 16 snapshots, not T states.
//!
//! Layout: every per-step input and `y` is `[BH, T, N]` (batch and head folded together, time,
//! channel), the state is `[BH, N, N]`, and the snapshots are `[BH, chunks, N·N]`.
//!
//! Backends: [`WkvKernel`] is the operation on a plain backend. Its provided methods build it
//! from tensor ops ([`tensor_ops`]), which runs on any Burn backend and is the tests' reference;
//! the CPU backend (`Flex`) runs it on raw slices instead ([`cpu`]), the CubeCL backends (CUDA,
//! wgpu) as one GPU kernel per direction ([`cube`], with those features). [`WkvBackend::wkv`] is what the model
//! calls: on a plain backend it runs the forward, on `Autodiff<B>` it also records the backward
//! ([`autodiff`]). The starting state is an input without gradient, and the final state is
//! returned untracked: training starts every window from zeros and discards the final state.

mod autodiff;
pub mod cpu;
#[cfg(any(feature = "cuda", feature = "wgpu"))]
pub mod cube;
pub mod tensor_ops;

use burn::prelude::*;

/// Time steps per chunk: the backward keeps one state snapshot per chunk.
pub const CHUNK: usize = 16;

/// The per-step inputs of the recurrence, each `[BH, T, N]` (also used for their gradients).
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

impl<B: Backend> WkvInputs<B> {
    /// Random inputs `[bh, t, N]` in the ranges the model produces (w in (0.55, 1), κ of unit
    /// norm per step, a in (0, 1)), for tests and benchmarks.
    pub fn random(bh: usize, t: usize, device: &B::Device) -> Self {
        let uniform = |lo: f64, hi: f64| {
            Tensor::<B, 3>::random(
                [bh, t, crate::model::config::HEAD_SIZE],
                burn::tensor::Distribution::Uniform(lo, hi),
                device,
            )
        };
        let kappa = uniform(-1.0, 1.0);
        let kappa = kappa.clone() / kappa.powi_scalar(2).sum_dim(2).sqrt();
        WkvInputs {
            r: uniform(-1.0, 1.0),
            w: uniform(0.55, 1.0),
            k: uniform(-1.0, 1.0),
            v: uniform(-1.0, 1.0),
            a: -kappa.clone(),
            b: kappa * uniform(0.0, 1.0),
        }
    }
}

/// What a forward pass produces.
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
/// backward that recomputes from them. The provided methods are the tensor-op form.
pub trait WkvKernel: Backend {
    /// Runs the recurrence from `state` over `inputs`.
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
}

/// A backend the model runs on: plain ones through their [`WkvKernel`], `Autodiff` ones with the
/// custom backward recorded.
pub trait WkvBackend: Backend {
    /// Runs the recurrence from `state`; returns `y` `[BH, T, N]` and the final state
    /// `[BH, N, N]` (untracked).
    fn wkv(inputs: WkvInputs<Self>, state: Tensor<Self, 3>) -> (Tensor<Self, 3>, Tensor<Self, 3>);
}

impl<B: WkvKernel> WkvBackend for B {
    fn wkv(inputs: WkvInputs<Self>, state: Tensor<Self, 3>) -> (Tensor<Self, 3>, Tensor<Self, 3>) {
        let out = B::wkv_forward(&inputs, state);
        (out.y, out.state)
    }
}

impl WkvKernel for burn::backend::Flex {
    fn wkv_forward(inputs: &WkvInputs<Self>, state: Tensor<Self, 3>) -> WkvForward<Self> {
        cpu::forward_tensors(inputs, state)
    }

    fn wkv_backward(
        inputs: &WkvInputs<Self>,
        snapshots: Tensor<Self, 3>,
        dy: Tensor<Self, 3>,
    ) -> WkvInputs<Self> {
        cpu::backward_tensors(inputs, snapshots, dy)
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

//! The RWKV-7 (x070) model: shapes ([`config`]), initialization ([`init`]), the head and loss
//! ([`loss`]), training-time dropout ([`dropout`]), the network in Burn ([`rwkv`]) with its own
//! operations: the token shift ([`token_shift`]), the WKV recurrence ([`wkv`]) and the norm,
//! bonus and gate after it ([`wkv_out`]); RWKV-LM weights ([`weights`]), and evaluation and
//! sampling ([`generate`]).

pub mod activation;
pub mod config;
pub mod custom_op;
pub mod dropout;
pub mod gemm;
pub mod generate;
pub mod init;
pub mod linear;
pub mod loss;
pub mod pth;
pub mod rwkv;
pub mod token_shift;
pub mod vector_math;
pub mod weights;
pub mod wide;
pub mod wkv;
pub mod wkv_out;

use std::path::PathBuf;

use burn::backend::Autodiff;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::prelude::{Int, Tensor};

use activation::Activation;
use token_shift::TokenShiftInputs;
use wkv::WkvLayerInputs;
use wkv_out::WkvOutInputs;

/// A model that cannot be made, read or run, naming the file, tensor or setting at fault.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// A model shape that is not one (`--model`, `--layers`, `--embd`).
    #[error("{0}")]
    Shape(String),
    /// A weights file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A weights file whose content is not the model's: the file and what is wrong.
    #[error("{path}: {problem}")]
    Weights {
        /// The file.
        path: String,
        /// What is wrong.
        problem: String,
    },
    /// Too little data or an empty prompt for what was asked.
    #[error("{0}")]
    Input(String),
    /// Reading a tensor's values back from the device failed.
    #[error("reading a tensor back: {0}")]
    Readback(String),
}

/// The model's six own operations, as one extension of Burn's `Backend` (the pattern of Burn's
/// custom-kernel example). On a plain backend each runs its kernel's forward; on `Autodiff<B>`
/// each runs the inner backend's forward and records its own backward (the op's `tracked`
/// function). Every backend with the six kernels ([`RwkvKernels`]) has them, and so does
/// `Autodiff` over it.
pub trait RwkvBackend: burn::tensor::backend::Backend {
    /// `f(x)`, sigmoid or tanh ([`activation`]).
    fn activation(x: Tensor<Self, 3>, f: Activation) -> Tensor<Self, 3>;

    /// `x · Wᵀ` for `x` `[N, in]` and `w` `[out, in]` ([`linear`]).
    fn linear_wt(x: Tensor<Self, 2>, w: Tensor<Self, 2>) -> Tensor<Self, 2>;

    /// `x + (shift(x) − x)·μ`, `[B, T, C]` ([`token_shift`]).
    fn token_shift(x: TokenShiftInputs<Self>) -> Tensor<Self, 3>;

    /// The WKV recurrence (layer form) from `state` `[B, H, N, N]`: `y` `[B, T, C]` and the final
    /// state `[B, H, N, N]` (untracked) ([`wkv`]).
    fn wkv(
        inputs: WkvLayerInputs<Self>,
        state: Tensor<Self, 4>,
    ) -> (Tensor<Self, 3>, Tensor<Self, 4>);

    /// GroupNorm, bonus and gate after the recurrence, `[B, T, C]` ([`wkv_out`]).
    fn wkv_out(x: WkvOutInputs<Self>) -> Tensor<Self, 3>;

    /// The mean cross-entropy of `x · headᵀ` against `targets`; its gradient carries L2Wrap's
    /// term at factor `l2wrap` ([`loss`]).
    fn head_loss(
        x: Tensor<Self, 2>,
        head: Tensor<Self, 2>,
        targets: Tensor<Self, 1, Int>,
        l2wrap: f64,
    ) -> Tensor<Self, 1>;
}

/// A plain backend with the kernels of the model's six operations.
pub trait RwkvKernels:
    activation::ActivationKernel
    + linear::LinearKernel
    + token_shift::TokenShiftKernel
    + wkv::WkvKernel
    + wkv_out::WkvOutKernel
    + loss::LossKernel
{
}

impl<B> RwkvKernels for B where
    B: activation::ActivationKernel
        + linear::LinearKernel
        + token_shift::TokenShiftKernel
        + wkv::WkvKernel
        + wkv_out::WkvOutKernel
        + loss::LossKernel
{
}

impl<B: RwkvKernels> RwkvBackend for B {
    fn activation(x: Tensor<Self, 3>, f: Activation) -> Tensor<Self, 3> {
        B::activation_forward(x, f)
    }

    fn linear_wt(x: Tensor<Self, 2>, w: Tensor<Self, 2>) -> Tensor<Self, 2> {
        B::linear_forward(x, w)
    }

    fn token_shift(x: TokenShiftInputs<Self>) -> Tensor<Self, 3> {
        B::token_shift_forward(&x)
    }

    fn wkv(
        inputs: WkvLayerInputs<Self>,
        state: Tensor<Self, 4>,
    ) -> (Tensor<Self, 3>, Tensor<Self, 4>) {
        let out = B::wkv_layer_forward(&inputs, state);
        (out.y, out.state)
    }

    fn wkv_out(x: WkvOutInputs<Self>) -> Tensor<Self, 3> {
        B::wkv_out_forward(&x)
    }

    fn head_loss(
        x: Tensor<Self, 2>,
        head: Tensor<Self, 2>,
        targets: Tensor<Self, 1, Int>,
        _l2wrap: f64,
    ) -> Tensor<Self, 1> {
        B::head_loss_value(x, head, targets)
    }
}

impl<B: RwkvKernels, C: CheckpointStrategy> RwkvBackend for Autodiff<B, C> {
    fn activation(x: Tensor<Self, 3>, f: Activation) -> Tensor<Self, 3> {
        activation::tracked(x, f)
    }

    fn linear_wt(x: Tensor<Self, 2>, w: Tensor<Self, 2>) -> Tensor<Self, 2> {
        linear::tracked(x, w)
    }

    fn token_shift(x: TokenShiftInputs<Self>) -> Tensor<Self, 3> {
        token_shift::tracked(x)
    }

    fn wkv(
        inputs: WkvLayerInputs<Self>,
        state: Tensor<Self, 4>,
    ) -> (Tensor<Self, 3>, Tensor<Self, 4>) {
        wkv::tracked(inputs, state)
    }

    fn wkv_out(x: WkvOutInputs<Self>) -> Tensor<Self, 3> {
        wkv_out::tracked(x)
    }

    fn head_loss(
        x: Tensor<Self, 2>,
        head: Tensor<Self, 2>,
        targets: Tensor<Self, 1, Int>,
        l2wrap: f64,
    ) -> Tensor<Self, 1> {
        loss::tracked(x, head, targets, l2wrap)
    }
}

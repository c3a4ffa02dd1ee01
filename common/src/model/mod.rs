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
pub mod rwkv;
pub mod token_shift;
pub mod vector_math;
pub mod weights;
pub mod wide;
pub mod wkv;
pub mod wkv_out;

/// A backend the network runs on: one with its own operations, sigmoid and tanh, the Linear
/// product, the token shift, the WKV recurrence and what follows it (norm, bonus and gate).
pub trait RwkvBackend:
    activation::ActivationBackend
    + linear::LinearBackend
    + token_shift::TokenShiftBackend
    + wkv::WkvBackend
    + wkv_out::WkvOutBackend
{
}

impl<B> RwkvBackend for B where
    B: activation::ActivationBackend
        + linear::LinearBackend
        + token_shift::TokenShiftBackend
        + wkv::WkvBackend
        + wkv_out::WkvOutBackend
{
}

/// A backend the model trains and evaluates on: the network's operations and the head-and-loss.
pub trait ModelBackend: RwkvBackend + loss::LossBackend {}

impl<B: RwkvBackend + loss::LossBackend> ModelBackend for B {}

/// A plain backend the trainer runs on: the model's two operations and AdamW's update, and how
/// a micro-batch is best run on it.
pub trait TrainKernels:
    activation::ActivationKernel
    + linear::LinearKernel
    + token_shift::TokenShiftKernel
    + wkv::WkvKernel
    + wkv_out::WkvOutKernel
    + loss::LossKernel
    + crate::train::adamw::AdamWKernel
{
    /// Into how many parts a micro-batch's windows are split, each part's forward and backward
    /// running at the same time as the others (see `train::step`). On the CPU much of a step is
    /// element-wise work that Burn runs on one thread, so two parts keep two cores busy; the
    /// count is fixed, not taken from the core count, so a step gives the same numbers on every
    /// machine. A GPU runs one part.
    const PARTS: usize;
}

impl TrainKernels for burn::backend::Flex {
    const PARTS: usize = 2;
}

#[cfg(any(feature = "cuda", feature = "wgpu"))]
impl<R: burn_cubecl::CubeRuntime, BT: burn_cubecl::BoolElement> TrainKernels
    for burn_cubecl::CubeBackend<R, f32, i32, BT>
{
    const PARTS: usize = 1;
}

/// A backend the trainer runs on: autodiff with the custom backwards of both operations, over a
/// plain backend that has the kernels (for evaluation without gradients).
pub trait TrainBackend:
    burn::tensor::backend::AutodiffBackend<InnerBackend: TrainKernels> + ModelBackend
{
}

impl<B, C> TrainBackend for burn::backend::Autodiff<B, C>
where
    B: TrainKernels,
    C: burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy,
{
}

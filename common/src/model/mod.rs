//! The RWKV-7 (x070) model: shapes ([`config`]), initialization ([`init`]), the head and loss
//! ([`loss`]), training-time dropout ([`dropout`]), the network in Burn ([`rwkv`]) with its WKV
//! operation ([`wkv`]), RWKV-LM weights ([`weights`]), and evaluation and sampling
//! ([`generate`]).

pub mod config;
pub mod dropout;
pub mod generate;
pub mod init;
pub mod loss;
pub mod rwkv;
pub mod weights;
pub mod wide;
pub mod wkv;

/// A backend the model trains and evaluates on: one with both of the model's own operations, the
/// WKV recurrence and the head-and-loss.
pub trait ModelBackend: wkv::WkvBackend + loss::LossBackend {}

impl<B: wkv::WkvBackend + loss::LossBackend> ModelBackend for B {}

/// A plain backend the trainer runs on: the model's two operations and AdamW's update, and how
/// a micro-batch is best run on it.
pub trait TrainKernels:
    wkv::WkvKernel + loss::LossKernel + crate::train::adamw::AdamWKernel
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

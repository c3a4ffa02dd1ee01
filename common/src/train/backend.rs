//! The backends training runs on: [`TrainKernels`] (a plain backend with the model's kernels and
//! AdamW's update) and [`TrainBackend`] (autodiff over one).

use crate::model::{self, RwkvBackend};

/// A plain backend the trainer runs on: the model's own operations and AdamW's update, and how
/// a micro-batch is best run on it.
pub trait TrainKernels: model::RwkvKernels + super::adamw::AdamWKernel {
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

/// A backend the trainer runs on: autodiff with the custom backwards of the model's operations, over a
/// plain backend that has the kernels (for evaluation without gradients).
pub trait TrainBackend:
    burn::tensor::backend::AutodiffBackend<InnerBackend: TrainKernels> + RwkvBackend
{
}

impl<B, C> TrainBackend for burn::backend::Autodiff<B, C>
where
    B: TrainKernels,
    C: burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy,
{
}

//! Sigmoid and tanh as operations of their own, for the time mix's LoRA branches (docs/model.md: the
//! decay's tanh, the sigmoids of the value residual, `a` and the gate). Burn's CPU backend calls
//! libm per element (`tanh` 670 µs and `sigmoid` 214 µs on 32K floats here, an addition 5 µs);
//! the CPU form here runs [`vector_math`](super::vector_math)'s vectorized functions instead.
//! The backward needs only the output: `σ' = y(1 − y)`, `tanh' = 1 − y²`.
//!
//! Backends: [`ActivationKernel`] is the operation on a plain backend; its provided methods are
//! Burn's tensor ops (the GPU backends' form and the tests' reference); the CPU backend overrides
//! them. [`RwkvBackend::activation`](super::RwkvBackend::activation) is what the model calls; on `Autodiff<B>` it records
//! the backward.

use burn::backend::Autodiff;
use burn::backend::Flex;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops};
use burn::prelude::*;
use rayon::prelude::*;

use super::custom_op::{finish, float_tensor};
use super::vector_math;
use super::wide::run_wide;
use crate::host::{contiguous, f32_values};

/// Which function.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activation {
    /// `1 / (1 + e^−x)`.
    Sigmoid,
    /// `tanh x`.
    Tanh,
}

/// The operation on a plain (non-autodiff) backend. The provided methods are Burn's tensor ops.
pub trait ActivationKernel: Backend {
    /// `f(x)`.
    fn activation_forward(x: Tensor<Self, 3>, f: Activation) -> Tensor<Self, 3> {
        match f {
            Activation::Sigmoid => burn::tensor::activation::sigmoid(x),
            Activation::Tanh => x.tanh(),
        }
    }

    /// `∂x` from the output `y = f(x)` and its gradient `dy`.
    fn activation_backward(
        y: Tensor<Self, 3>,
        dy: Tensor<Self, 3>,
        f: Activation,
    ) -> Tensor<Self, 3> {
        match f {
            Activation::Sigmoid => dy * y.clone() * (y.neg() + 1.0),
            Activation::Tanh => dy * (y.powi_scalar(2).neg() + 1.0),
        }
    }
}

/// Floats per rayon task.
const TASK: usize = 1 << 16;

/// `out[i] = op(inputs at i)` over same-shaped CPU tensors, in parallel blocks.
fn map_cpu<const N: usize>(
    inputs: [Tensor<Flex, 3>; N],
    op: impl Fn([f32; N]) -> f32 + Sync,
) -> Tensor<Flex, 3> {
    let shape = inputs[0].dims();
    let device = inputs[0].device();
    let storage = inputs.map(contiguous);
    let values = storage.each_ref().map(f32_values);
    let mut out = vec![0f32; values[0].len()];
    out.par_chunks_mut(TASK)
        .enumerate()
        .for_each(|(task, out)| {
            let first = task * TASK;
            run_wide(
                #[inline(always)]
                || {
                    for (i, out) in out.iter_mut().enumerate() {
                        *out = op(values.map(|v| v[first + i]));
                    }
                },
            )
        });
    Tensor::from_data(TensorData::new(out, shape), &device)
}

impl ActivationKernel for Flex {
    fn activation_forward(x: Tensor<Self, 3>, f: Activation) -> Tensor<Self, 3> {
        match f {
            Activation::Sigmoid => map_cpu([x], |[x]| vector_math::sigmoid(x)),
            Activation::Tanh => map_cpu([x], |[x]| vector_math::tanh(x)),
        }
    }

    fn activation_backward(
        y: Tensor<Self, 3>,
        dy: Tensor<Self, 3>,
        f: Activation,
    ) -> Tensor<Self, 3> {
        match f {
            Activation::Sigmoid => map_cpu([y, dy], |[y, dy]| dy * y * (1.0 - y)),
            Activation::Tanh => map_cpu([y, dy], |[y, dy]| dy * (1.0 - y * y)),
        }
    }
}

#[cfg(any(feature = "cuda", feature = "wgpu"))]
impl<R: burn_cubecl::CubeRuntime, BT: burn_cubecl::BoolElement> ActivationKernel
    for burn_cubecl::CubeBackend<R, f32, i32, BT>
{
}

/// The backward step of the operation.
#[derive(Debug)]
struct ActivationBackward;

impl<B: ActivationKernel> Backward<B, 1> for ActivationBackward {
    /// The output and the function.
    type State = (Tensor<B, 3>, Activation);

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let dy = float_tensor::<B, 3>(grads.consume::<B>(&ops.node));
        let (y, f) = ops.state;
        let [parent] = ops.parents;
        if let Some(node) = parent {
            let dx = B::activation_backward(y, dy, f);
            grads.register::<B>(node.id, dx.into_primitive().tensor());
        }
    }
}

/// [`RwkvBackend::activation`](crate::model::RwkvBackend::activation) on `Autodiff<B, C>`: the forward on the inner
/// backend, its backward recorded.
pub(crate) fn tracked<B: ActivationKernel, C: CheckpointStrategy>(
    x: Tensor<Autodiff<B, C>, 3>,
    f: Activation,
) -> Tensor<Autodiff<B, C>, 3> {
    let x = x.into_primitive().tensor();
    let node = x.node.clone();
    let y = B::activation_forward(float_tensor::<B, 3>(x.primitive), f);
    let kind = ActivationBackward
        .prepare::<C>([node])
        .compute_bound()
        .stateful();
    let y = finish(kind, (y.clone(), f), y.into_primitive().tensor());
    float_tensor::<Autodiff<B, C>, 3>(y)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::RwkvBackend;
    use burn::tensor::Distribution;

    fn max_abs_diff(x: Tensor<Flex, 3>, y: Tensor<Flex, 3>) -> f32 {
        (x - y).abs().max().into_scalar()
    }

    #[test]
    fn cpu_kernels_match_burns_ops() {
        let device = Default::default();
        Flex::seed(&device, 1);
        // More floats than one task, over the range where both functions bend.
        let x =
            Tensor::<Flex, 3>::random([3, 100, 300], Distribution::Uniform(-12.0, 12.0), &device);
        let dy =
            Tensor::<Flex, 3>::random([3, 100, 300], Distribution::Uniform(-1.0, 1.0), &device);
        for f in [Activation::Sigmoid, Activation::Tanh] {
            let ours = Flex::activation_forward(x.clone(), f);
            let burn = match f {
                Activation::Sigmoid => burn::tensor::activation::sigmoid(x.clone()),
                Activation::Tanh => x.clone().tanh(),
            };
            let d = max_abs_diff(ours.clone(), burn.clone());
            assert!(d < 1e-6, "{f:?}: {d}");
            // The backward against the tensor-op form, on the same output.
            let ours = Flex::activation_backward(ours, dy.clone(), f);
            let reference = match f {
                Activation::Sigmoid => dy.clone() * burn.clone() * (burn.neg() + 1.0),
                Activation::Tanh => dy.clone() * (burn.powi_scalar(2).neg() + 1.0),
            };
            let d = max_abs_diff(ours, reference);
            assert!(d < 1e-6, "{f:?} backward: {d}");
        }
    }

    #[test]
    fn recorded_backward_matches_autodiff() {
        type A = Autodiff<Flex>;
        let device = Default::default();
        A::seed(&device, 2);
        let x = Tensor::<A, 3>::random([2, 5, 7], Distribution::Uniform(-3.0, 3.0), &device)
            .require_grad();
        let weights = Tensor::<A, 3>::random([2, 5, 7], Distribution::Uniform(-1.0, 1.0), &device);
        for f in [Activation::Sigmoid, Activation::Tanh] {
            let ours = (A::activation(x.clone(), f) * weights.clone())
                .sum()
                .backward();
            let burn = match f {
                Activation::Sigmoid => burn::tensor::activation::sigmoid(x.clone()),
                Activation::Tanh => x.clone().tanh(),
            };
            let reference = (burn * weights.clone()).sum().backward();
            let d = max_abs_diff(
                x.grad(&ours).expect("a gradient"),
                x.grad(&reference).expect("a gradient"),
            );
            assert!(d < 1e-6, "{f:?}: {d}");
        }
    }
}

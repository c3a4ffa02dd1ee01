//! A Linear layer's product `x · Wᵀ` as one operation, for the weights RWKV-LM stores `[out, in]`
//! (r, k, v, o, the channel mix's two, the head at inference).
//!
//! Through Burn's tensor ops this is `x.matmul(w.transpose())`, and the weight's gradient comes
//! back as the transpose of a `[in, out]` product: a strided view that every later use (summing
//! micro-batches, the optimizer) first copies element by element (about 5% of a mini step here).
//! This operation computes `∂W = ∂yᵀ · x` directly in `[out, in]` order; on the CPU all three
//! products read the stored matrices in place ([`gemm`](super::gemm)).
//!
//! Backends: [`LinearKernel`] is the operation on a plain backend; its provided methods are
//! Burn's tensor ops (the GPU backends' form and the tests' reference); the CPU backend
//! overrides them. [`RwkvBackend::linear_wt`](super::RwkvBackend::linear_wt) is what the model calls; on `Autodiff<B>` it records
//! the backward.

use burn::backend::Autodiff;
use burn::backend::Flex;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops};
use burn::prelude::*;

use super::custom_op::{finish, float_tensor};
use super::gemm::{Operand, matmul};
use crate::host::{contiguous, f32_values};

/// The operation on a plain (non-autodiff) backend: `x` is `[N, in]`, `w` is `[out, in]`. The
/// provided methods are Burn's tensor ops.
pub trait LinearKernel: Backend {
    /// `x · Wᵀ`, `[N, out]`.
    fn linear_forward(x: Tensor<Self, 2>, w: Tensor<Self, 2>) -> Tensor<Self, 2> {
        x.matmul(w.transpose())
    }

    /// `∂x = ∂y · W`, `[N, in]`.
    fn linear_backward_x(w: Tensor<Self, 2>, dy: Tensor<Self, 2>) -> Tensor<Self, 2> {
        dy.matmul(w)
    }

    /// `∂W = ∂yᵀ · x`, `[out, in]`.
    fn linear_backward_w(x: Tensor<Self, 2>, dy: Tensor<Self, 2>) -> Tensor<Self, 2> {
        dy.transpose().matmul(x)
    }
}

/// `lhs · rhs` into a new `[rows, cols]` CPU tensor, from operands over the values of `a` and `b`.
fn product(
    a: Tensor<Flex, 2>,
    b: Tensor<Flex, 2>,
    shape: [usize; 2],
    operands: impl for<'a> FnOnce(&'a [f32], &'a [f32]) -> (Operand<'a>, Operand<'a>),
) -> Tensor<Flex, 2> {
    let device = a.device();
    let (a, b) = (contiguous(a), contiguous(b));
    let (lhs, rhs) = operands(f32_values(&a), f32_values(&b));
    let mut out = vec![0f32; shape[0] * shape[1]];
    matmul(&mut out, false, lhs, rhs);
    Tensor::from_data(TensorData::new(out, shape), &device)
}

impl LinearKernel for Flex {
    fn linear_forward(x: Tensor<Self, 2>, w: Tensor<Self, 2>) -> Tensor<Self, 2> {
        let ([n, inputs], [outputs, _]) = (x.dims(), w.dims());
        product(x, w, [n, outputs], |x, w| {
            (
                Operand::new(x, n, inputs),
                Operand::new(w, outputs, inputs).t(),
            )
        })
    }

    fn linear_backward_x(w: Tensor<Self, 2>, dy: Tensor<Self, 2>) -> Tensor<Self, 2> {
        let ([outputs, inputs], [n, _]) = (w.dims(), dy.dims());
        product(dy, w, [n, inputs], |dy, w| {
            (
                Operand::new(dy, n, outputs),
                Operand::new(w, outputs, inputs),
            )
        })
    }

    fn linear_backward_w(x: Tensor<Self, 2>, dy: Tensor<Self, 2>) -> Tensor<Self, 2> {
        let ([n, inputs], [_, outputs]) = (x.dims(), dy.dims());
        product(dy, x, [outputs, inputs], |dy, x| {
            (Operand::new(dy, n, outputs).t(), Operand::new(x, n, inputs))
        })
    }
}

#[cfg(any(feature = "cuda", feature = "wgpu"))]
impl<R: burn_cubecl::CubeRuntime, BT: burn_cubecl::BoolElement> LinearKernel
    for burn_cubecl::CubeBackend<R, f32, i32, BT>
{
}

/// The backward step of the operation.
#[derive(Debug)]
struct LinearBackward;

impl<B: LinearKernel> Backward<B, 2> for LinearBackward {
    /// `x` and `w`.
    type State = (Tensor<B, 2>, Tensor<B, 2>);

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
        let dy = float_tensor::<B, 2>(grads.consume::<B>(&ops.node));
        let (x, w) = ops.state;
        let [x_node, w_node] = ops.parents;
        if let Some(node) = x_node {
            let dx = B::linear_backward_x(w, dy.clone());
            grads.register::<B>(node.id, dx.into_primitive().tensor());
        }
        if let Some(node) = w_node {
            let dw = B::linear_backward_w(x, dy);
            grads.register::<B>(node.id, dw.into_primitive().tensor());
        }
    }
}

/// [`RwkvBackend::linear_wt`](crate::model::RwkvBackend::linear_wt) on `Autodiff<B, C>`: the forward on the inner
/// backend, its backward recorded.
pub(crate) fn tracked<B: LinearKernel, C: CheckpointStrategy>(
    x: Tensor<Autodiff<B, C>, 2>,
    w: Tensor<Autodiff<B, C>, 2>,
) -> Tensor<Autodiff<B, C>, 2> {
    let tracked = [x, w].map(|t| t.into_primitive().tensor());
    let nodes = tracked.each_ref().map(|t| t.node.clone());
    let [x, w] = tracked.map(|t| float_tensor::<B, 2>(t.primitive));
    let y = B::linear_forward(x.clone(), w.clone());
    let kind = LinearBackward
        .prepare::<C>(nodes)
        .compute_bound()
        .stateful();
    let y = finish(kind, (x, w), y.into_primitive().tensor());
    float_tensor::<Autodiff<B, C>, 2>(y)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::RwkvBackend;
    use burn::tensor::Distribution;

    fn max_rel_diff(x: Tensor<Flex, 2>, reference: Tensor<Flex, 2>) -> f32 {
        let scale = reference.clone().abs().max().into_scalar();
        (x - reference).abs().max().into_scalar() / scale
    }

    #[test]
    fn cpu_products_match_burns() {
        let device = Default::default();
        Flex::seed(&device, 1);
        let uniform = |shape: [usize; 2]| {
            Tensor::<Flex, 2>::random(shape, Distribution::Uniform(-1.0, 1.0), &device)
        };
        let (x, w, dy) = (uniform([37, 24]), uniform([40, 24]), uniform([37, 40]));
        let reference = x.clone().matmul(w.clone().transpose());
        assert!(max_rel_diff(Flex::linear_forward(x.clone(), w.clone()), reference) < 1e-6);
        let reference = dy.clone().matmul(w.clone());
        assert!(max_rel_diff(Flex::linear_backward_x(w, dy.clone()), reference) < 1e-6);
        let reference = dy.clone().transpose().matmul(x.clone());
        assert!(max_rel_diff(Flex::linear_backward_w(x, dy), reference) < 1e-6);
    }

    #[test]
    fn recorded_backward_matches_autodiff() {
        type A = Autodiff<Flex>;
        let device = Default::default();
        A::seed(&device, 2);
        let uniform = |shape: [usize; 2]| {
            Tensor::<A, 2>::random(shape, Distribution::Uniform(-1.0, 1.0), &device)
        };
        let (x, w, weights) = (
            uniform([9, 6]).require_grad(),
            uniform([5, 6]).require_grad(),
            uniform([9, 5]),
        );
        let ours = (A::linear_wt(x.clone(), w.clone()) * weights.clone())
            .sum()
            .backward();
        let reference = (x.clone().matmul(w.clone().transpose()) * weights)
            .sum()
            .backward();
        for (name, leaf) in [("x", &x), ("w", &w)] {
            let got = leaf.grad(&ours).expect("a gradient");
            let want = leaf.grad(&reference).expect("a gradient");
            let d = max_rel_diff(got.clone(), want);
            assert!(d < 1e-6, "d{name}: {d}");
            // The weight's gradient is stored in its own order, not as a transposed view.
            assert!(
                got.into_primitive().tensor().as_slice::<f32>().is_some(),
                "d{name} is strided"
            );
        }
    }
}

//! The CPU kernel against the tensor-op form, and the tensor-op backward against Burn's
//! autodiff through the tensor-op forward.

use burn::backend::{Autodiff, Flex};
use burn::prelude::*;
use burn::tensor::Distribution;

use super::*;
use crate::model::RwkvBackend;
use crate::model::config::HEAD_SIZE as N;

/// Seeded inputs for `b` sequences of `t` steps and `heads` heads.
fn inputs<B: Backend>(b: usize, t: usize, heads: usize, seed: u64) -> WkvOutInputs<B> {
    let device = Default::default();
    B::seed(&device, seed);
    let c = heads * N;
    let rows = || Tensor::random([b, t, c], Distribution::Uniform(-1.0, 1.0), &device);
    let vector = || Tensor::random([c], Distribution::Uniform(-1.0, 1.0), &device);
    WkvOutInputs {
        y: rows(),
        r: rows(),
        k: rows(),
        v: rows(),
        g: rows(),
        r_k: Tensor::random([heads, N], Distribution::Uniform(-1.0, 1.0), &device),
        weight: vector(),
        bias: vector(),
    }
}

impl<B: Backend> WkvOutInputs<B> {
    /// The eight tensors by name, flattened.
    fn named(self) -> [(&'static str, Tensor<B, 1>); 8] {
        let flat = |x: Tensor<B, 3>| x.flatten(0, 2);
        [
            ("y", flat(self.y)),
            ("r", flat(self.r)),
            ("k", flat(self.k)),
            ("v", flat(self.v)),
            ("g", flat(self.g)),
            ("r_k", self.r_k.flatten(0, 1)),
            ("weight", self.weight),
            ("bias", self.bias),
        ]
    }
}

fn max_rel_diff<B: Backend, const D: usize>(x: Tensor<B, D>, reference: Tensor<B, D>) -> f32 {
    let scale = reference.clone().abs().max().into_scalar().elem::<f32>();
    (x - reference).abs().max().into_scalar().elem::<f32>() / scale.max(1e-6)
}

#[test]
fn cpu_kernel_matches_tensor_ops() {
    // 74 rows: two whole blocks and a partial one.
    let x = inputs::<Flex>(2, 37, 3, 1);
    let d = max_rel_diff(Flex::wkv_out_forward(&x), tensor_ops::forward(&x));
    assert!(d < 1e-5, "out: {d}");
    let dout = Tensor::random(
        [2, 37, 3 * N],
        Distribution::Uniform(-1.0, 1.0),
        &x.y.device(),
    );
    let cpu = Flex::wkv_out_backward(&x, dout.clone());
    let ops = tensor_ops::backward(&x, dout);
    for ((name, got), (_, want)) in cpu.named().into_iter().zip(ops.named()) {
        let d = max_rel_diff(got, want);
        assert!(d < 1e-5, "d{name}: {d}");
    }
}

#[test]
fn hand_backward_matches_autodiff() {
    type A = Autodiff<Flex>;
    let x = inputs::<A>(2, 5, 2, 2);
    let leaves = WkvOutInputs {
        y: x.y.require_grad(),
        r: x.r.require_grad(),
        k: x.k.require_grad(),
        v: x.v.require_grad(),
        g: x.g.require_grad(),
        r_k: x.r_k.require_grad(),
        weight: x.weight.require_grad(),
        bias: x.bias.require_grad(),
    };
    let weights = Tensor::<A, 3>::random(
        [2, 5, 2 * N],
        Distribution::Uniform(-1.0, 1.0),
        &leaves.y.device(),
    );
    let custom = (A::wkv_out(leaves.clone()) * weights.clone())
        .sum()
        .backward();
    let reference = (tensor_ops::forward(&leaves) * weights).sum().backward();
    let grads = |g: &<A as burn::tensor::backend::AutodiffBackend>::Gradients| {
        let flat3 = |x: &Tensor<A, 3>| x.grad(g).expect("a gradient").flatten::<1>(0, 2);
        [
            flat3(&leaves.y),
            flat3(&leaves.r),
            flat3(&leaves.k),
            flat3(&leaves.v),
            flat3(&leaves.g),
            leaves.r_k.grad(g).expect("a gradient").flatten(0, 1),
            leaves.weight.grad(g).expect("a gradient"),
            leaves.bias.grad(g).expect("a gradient"),
        ]
    };
    let names = ["y", "r", "k", "v", "g", "r_k", "weight", "bias"];
    for ((name, got), want) in names.iter().zip(grads(&custom)).zip(grads(&reference)) {
        let d = max_rel_diff(got, want);
        assert!(d < 1e-5, "d{name}: {d}");
    }
}

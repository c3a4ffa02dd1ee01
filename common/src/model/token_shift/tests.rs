//! The CPU kernel against the tensor-op form, and the tensor-op backward against Burn's
//! autodiff through the tensor-op forward.

use burn::backend::{Autodiff, Flex};
use burn::prelude::*;
use burn::tensor::Distribution;

use super::*;
use crate::model::RwkvBackend;

/// Seeded inputs for `b` sequences of `t` steps and `c` channels.
fn inputs<B: Backend>(b: usize, t: usize, c: usize, seed: u64) -> TokenShiftInputs<B> {
    let device = Default::default();
    B::seed(&device, seed);
    TokenShiftInputs {
        x: Tensor::random([b, t, c], Distribution::Uniform(-1.0, 1.0), &device),
        prev: Tensor::random([b, c], Distribution::Uniform(-1.0, 1.0), &device),
        mix: Tensor::random([c], Distribution::Uniform(0.0, 1.0), &device),
    }
}

fn max_rel_diff<B: Backend, const D: usize>(x: Tensor<B, D>, reference: Tensor<B, D>) -> f32 {
    let scale = reference.clone().abs().max().into_scalar().elem::<f32>();
    (x - reference).abs().max().into_scalar().elem::<f32>() / scale.max(1e-6)
}

#[test]
fn cpu_kernel_matches_tensor_ops() {
    // 3 sequences of 37 steps: blocks that straddle sequences, and one-step sequences.
    for (b, t) in [(3, 37), (4, 1)] {
        let x = inputs::<Flex>(b, t, 96, 1);
        let d = max_rel_diff(Flex::token_shift_forward(&x), tensor_ops::forward(&x));
        assert!(d < 1e-6, "T {t}: out {d}");
        let dout = Tensor::random([b, t, 96], Distribution::Uniform(-1.0, 1.0), &x.x.device());
        let cpu = Flex::token_shift_backward(&x, dout.clone());
        let ops = tensor_ops::backward(&x, dout);
        assert!(max_rel_diff(cpu.x, ops.x) < 1e-6, "T {t}: dx");
        assert!(max_rel_diff(cpu.prev, ops.prev) < 1e-6, "T {t}: dprev");
        assert!(max_rel_diff(cpu.mix, ops.mix) < 1e-5, "T {t}: dmix");
    }
}

#[test]
fn hand_backward_matches_autodiff() {
    type A = Autodiff<Flex>;
    let x = inputs::<A>(2, 9, 8, 2);
    let leaves = TokenShiftInputs {
        x: x.x.require_grad(),
        prev: x.prev.require_grad(),
        mix: x.mix.require_grad(),
    };
    let weights = Tensor::<A, 3>::random(
        [2, 9, 8],
        Distribution::Uniform(-1.0, 1.0),
        &leaves.x.device(),
    );
    let custom = (A::token_shift(leaves.clone()) * weights.clone())
        .sum()
        .backward();
    let reference = (tensor_ops::forward(&leaves) * weights).sum().backward();
    let grad = |g| {
        (
            leaves.x.grad(g).expect("a gradient"),
            leaves.prev.grad(g).expect("a gradient"),
            leaves.mix.grad(g).expect("a gradient"),
        )
    };
    let (got, want) = (grad(&custom), grad(&reference));
    assert!(max_rel_diff(got.0, want.0) < 1e-6, "dx");
    assert!(max_rel_diff(got.1, want.1) < 1e-6, "dprev");
    assert!(max_rel_diff(got.2, want.2) < 1e-6, "dmix");
}

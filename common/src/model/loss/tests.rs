//! The CPU kernel against the tensor-op form, the tensor-op form against autodiff through plain
//! tensor ops, L2Wrap's term, and the vectorized exp against f64.

use burn::backend::{Autodiff, Flex};
use burn::prelude::*;
use burn::tensor::Distribution;
use burn::tensor::activation::log_softmax;

use super::*;
use crate::model::RwkvBackend;

type A = Autodiff<Flex>;

/// Seeded `x` `[n, c]`, `head` `[v, c]` and targets `[n]`.
fn inputs<B: Backend>(
    n: usize,
    c: usize,
    v: usize,
    seed: u64,
) -> (Tensor<B, 2>, Tensor<B, 2>, Tensor<B, 1, Int>) {
    let device = Default::default();
    B::seed(&device, seed);
    let x = Tensor::random([n, c], Distribution::Normal(0.0, 1.0), &device);
    let head = Tensor::random([v, c], Distribution::Normal(0.0, 0.5), &device);
    let targets: Vec<i64> = (0..n as i64).map(|i| (i * 7919 + 3) % v as i64).collect();
    let targets = Tensor::from_data(TensorData::new(targets, [n]), &device);
    (x, head, targets)
}

fn values<B: Backend, const D: usize>(x: Tensor<B, D>) -> Vec<f32> {
    x.into_data().to_vec().unwrap()
}

/// max |x − reference| / max |reference|.
fn max_rel_diff(x: &[f32], reference: &[f32]) -> f32 {
    let scale = reference.iter().fold(0f32, |m, r| m.max(r.abs()));
    let diff = x
        .iter()
        .zip(reference)
        .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
    diff / scale
}

#[test]
fn cpu_kernel_matches_the_tensor_op_form() {
    // 300 rows at V 20000 span two blocks (209 rows each at this V) and a partial one.
    for (n, c, v) in [(300, 24, 20_000), (5, 64, 7), (1, 8, 3)] {
        let (x, head, targets) = inputs::<Flex>(n, c, v, n as u64);
        let cpu = cpu::grads_tensors(x.clone(), head.clone(), targets.clone(), 0.5);
        let ops = tensor_ops::grads(x.clone(), head.clone(), targets.clone(), 0.5);
        let (loss, reference) = (values(cpu.loss)[0], values(ops.loss)[0]);
        assert!(
            (loss - reference).abs() <= 1e-6 * reference.abs(),
            "{n}×{c}×{v}: loss {loss} vs {reference}"
        );
        let value = values(cpu::value_tensors(x, head, targets))[0];
        assert_eq!(value, loss, "{n}×{c}×{v}: the value alone");
        for (what, ours, reference) in [("x", cpu.x, ops.x), ("head", cpu.head, ops.head)] {
            let diff = max_rel_diff(&values(ours), &values(reference));
            assert!(diff < 1e-5, "{n}×{c}×{v}: ∂{what} differs by {diff}");
        }
    }
}

#[test]
fn tensor_op_form_matches_autodiff_through_log_softmax() {
    let (x, head, targets) = inputs::<A>(12, 16, 50, 7);
    let (x, head) = (x.require_grad(), head.require_grad());
    let logits = x.clone().matmul(head.clone().transpose());
    let loss = -log_softmax(logits, 1)
        .gather(1, targets.clone().reshape([12, 1]))
        .mean();
    let grads = loss.backward();
    let inner = |t: &Tensor<A, 2>| t.clone().inner();
    let ops = tensor_ops::grads(inner(&x), inner(&head), targets.inner(), 0.0);
    let (ours, reference) = (values(ops.loss)[0], values(loss.inner())[0]);
    assert!((ours - reference).abs() <= 1e-6 * reference.abs());
    for (what, ours, reference) in [
        ("x", ops.x, x.grad(&grads).unwrap()),
        ("head", ops.head, head.grad(&grads).unwrap()),
    ] {
        let diff = max_rel_diff(&values(ours), &values(reference));
        assert!(diff < 1e-5, "∂{what} differs by {diff}");
    }
}

#[test]
fn l2wrap_keeps_the_value_and_adds_its_gradient_at_the_argmax() {
    // An identity head makes the logits x itself, so ∂x is the logits' gradient.
    let (n, v) = (6, 5);
    let (x, _, targets) = inputs::<A>(n, v, v, 3);
    let head = Tensor::<A, 2>::eye(v, &Default::default());
    let logits = values(x.clone().inner());
    let run = |l2wrap: f64| {
        let x = x.clone().require_grad();
        let loss = A::head_loss(x.clone(), head.clone(), targets.clone(), l2wrap);
        let dx = values(x.grad(&loss.backward()).unwrap());
        (values(loss.inner())[0], dx)
    };
    let (plain, plain_dx) = run(0.0);
    let (wrapped, wrapped_dx) = run(L2WRAP);
    assert_eq!(wrapped, plain);
    for row in 0..n {
        let logits = &logits[row * v..(row + 1) * v];
        let (argmax, max) = logits
            .iter()
            .enumerate()
            .fold((0, f32::MIN), |m, (i, &l)| if l > m.1 { (i, l) } else { m });
        for j in 0..v {
            let at = row * v + j;
            let extra = f64::from(wrapped_dx[at] - plain_dx[at]);
            if j == argmax {
                let expected = L2WRAP / n as f64 * f64::from(max);
                // Within the rounding of adding it to a gradient of size ≤ 1 / N.
                assert!(
                    (extra - expected).abs() < 3e-8,
                    "[{row}, {j}]: {extra} vs {expected}"
                );
            } else {
                assert_eq!(extra, 0.0, "[{row}, {j}]");
            }
        }
    }
}

#[test]
fn the_backward_scales_by_the_incoming_gradient() {
    let (x, head, targets) = inputs::<A>(8, 8, 30, 5);
    let grad_of = |factor: f32| {
        let x = x.clone().require_grad();
        let loss = A::head_loss(x.clone(), head.clone(), targets.clone(), L2WRAP) * factor;
        values(x.grad(&loss.backward()).unwrap())
    };
    let (once, thrice) = (grad_of(1.0), grad_of(3.0));
    for (a, b) in once.iter().zip(&thrice) {
        assert!(
            (3.0 * a - b).abs() <= 1e-6 * b.abs().max(1e-3),
            "{a} · 3 vs {b}"
        );
    }
}

#[test]
fn a_nan_logit_makes_the_loss_nan() {
    let (x, head, targets) = inputs::<Flex>(3, 4, 9, 1);
    let head = head.slice_assign(
        [2..3, 0..4],
        Tensor::full([1, 4], f32::NAN, &Default::default()),
    );
    let loss = values(cpu::value_tensors(x, head, targets))[0];
    assert!(loss.is_nan(), "{loss}");
}

//! The operation in tensor ops, forward and backward by hand: the GPU backends' form and the
//! tests' reference.

use burn::prelude::*;

use super::TokenShiftInputs;

/// `[prev, x_0, …, x_{T-2}]`: the sequence one step later, `prev` in front.
fn shift<B: Backend>(x: &Tensor<B, 3>, prev: &Tensor<B, 2>) -> Tensor<B, 3> {
    let [b, t, c] = x.dims();
    let prev = prev.clone().reshape([b, 1, c]);
    if t == 1 {
        return prev;
    }
    Tensor::cat(vec![prev, x.clone().slice([0..b, 0..t - 1, 0..c])], 1)
}

/// `x + (shift(x) - x)·μ`.
pub fn forward<B: Backend>(x: &TokenShiftInputs<B>) -> Tensor<B, 3> {
    let c = x.mix.dims()[0];
    let delta = shift(&x.x, &x.prev) - x.x.clone();
    x.x.clone() + delta * x.mix.clone().reshape([1, 1, c])
}

/// Every input's gradient given `dout`: `∂μ = Σ ∂out·(shift(x) - x)`, `∂x_t = ∂out_t·(1 - μ) +
/// ∂out_{t+1}·μ`, `∂prev = ∂out_0·μ`.
pub fn backward<B: Backend>(x: &TokenShiftInputs<B>, dout: Tensor<B, 3>) -> TokenShiftInputs<B> {
    let [b, t, c] = x.x.dims();
    let mu = x.mix.clone().reshape([1, 1, c]);
    let delta = shift(&x.x, &x.prev) - x.x.clone();
    let mix = (dout.clone() * delta)
        .reshape([b * t, c])
        .sum_dim(0)
        .reshape([c]);
    let through = dout.clone() * mu.clone();
    let prev = through.clone().slice([0..b, 0..1, 0..c]).reshape([b, c]);
    let mut dx = dout * (mu.neg() + 1.0);
    if t > 1 {
        let later = through.slice([0..b, 1..t, 0..c]);
        let last = Tensor::zeros([b, 1, c], &later.device());
        dx = dx + Tensor::cat(vec![later, last], 1);
    }
    TokenShiftInputs { x: dx, prev, mix }
}

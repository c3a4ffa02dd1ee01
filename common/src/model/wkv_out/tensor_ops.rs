//! The operation in tensor ops, forward and backward by hand: the GPU backends' form and the
//! tests' reference.

use burn::prelude::*;

use super::{GN_EPS, WkvOutInputs};
use crate::model::config::HEAD_SIZE as N;

/// What the forward computes on the way, kept for the backward.
struct Parts<B: Backend> {
    /// The normalized y, `[B, T, H, N]`.
    normed: Tensor<B, 4>,
    /// `1 / sqrt(var + ε)` per head, `[B, T, H, 1]`.
    inv_std: Tensor<B, 4>,
    /// The bonus factor `Σ_n r·k·r_k` per head, `[B, T, H, 1]`.
    bonus: Tensor<B, 4>,
    /// Everything before the gate, `[B, T, C]`.
    ungated: Tensor<B, 3>,
}

/// A `[C]` vector shaped to broadcast against `[B, T, C]`.
fn channels<B: Backend>(x: &Tensor<B, 1>) -> Tensor<B, 3> {
    let c = x.dims()[0];
    x.clone().reshape([1, 1, c])
}

fn parts<B: Backend>(x: &WkvOutInputs<B>) -> Parts<B> {
    let [b, t, c] = x.y.dims();
    let h = c / N;
    let heads = |x: &Tensor<B, 3>| x.clone().reshape([b, t, h, N]);
    let y = heads(&x.y);
    let mean = y.clone().mean_dim(3);
    let centered = y - mean;
    let var = centered.clone().powi_scalar(2).mean_dim(3);
    let inv_std = (var + GN_EPS).sqrt().recip();
    let normed = centered * inv_std.clone();
    let r_k = x.r_k.clone().reshape([1, 1, h, N]);
    let bonus = (heads(&x.r) * heads(&x.k) * r_k).sum_dim(3);
    let ungated = normed.clone().reshape([b, t, c]) * channels(&x.weight)
        + channels(&x.bias)
        + (bonus.clone() * heads(&x.v)).reshape([b, t, c]);
    Parts {
        normed,
        inv_std,
        bonus,
        ungated,
    }
}

/// `out = (GN(y)·weight + bias + bonus·v) · g`.
pub fn forward<B: Backend>(x: &WkvOutInputs<B>) -> Tensor<B, 3> {
    parts(x).ungated * x.g.clone()
}

/// Every input's gradient given `dout`.
pub fn backward<B: Backend>(x: &WkvOutInputs<B>, dout: Tensor<B, 3>) -> WkvOutInputs<B> {
    let [b, t, c] = x.y.dims();
    let h = c / N;
    let p = parts(x);
    let heads = |x: Tensor<B, 3>| x.reshape([b, t, h, N]);
    let rows = |x: Tensor<B, 4>| x.reshape([b, t, c]);
    let over_rows = |x: Tensor<B, 3>| x.reshape([b * t, c]).sum_dim(0).reshape([c]);
    let g = dout.clone() * p.ungated;
    let du = dout * x.g.clone();
    let weight = over_rows(du.clone() * rows(p.normed.clone()));
    let bias = over_rows(du.clone());
    // The bonus: u += s·v with s = Σ_n r·k·r_k.
    let v = rows(heads(du.clone()) * p.bonus);
    let ds = (heads(du.clone()) * heads(x.v.clone())).sum_dim(3);
    let r_k = x.r_k.clone().reshape([1, 1, h, N]);
    let r = rows(ds.clone() * heads(x.k.clone()) * r_k.clone());
    let k = rows(ds.clone() * heads(x.r.clone()) * r_k);
    let r_k = (ds * heads(x.r.clone()) * heads(x.k.clone()))
        .reshape([b * t, c])
        .sum_dim(0)
        .reshape([h, N]);
    // The GroupNorm: ∂y = (∂ŷ - mean ∂ŷ - ŷ mean(∂ŷ ŷ)) / std.
    let dnormed = heads(du * channels(&x.weight));
    let mean = dnormed.clone().mean_dim(3);
    let along = (dnormed.clone() * p.normed.clone()).mean_dim(3);
    let y = rows((dnormed - mean - p.normed * along) * p.inv_std);
    WkvOutInputs {
        y,
        r,
        k,
        v,
        g,
        r_k,
        weight,
        bias,
    }
}

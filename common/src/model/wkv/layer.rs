//! The layer form in tensor ops around a backend's core recurrence: prepare the per-step inputs
//! (decay, κ, `a`, `b`), move heads from `[B, T, C]` to `[BH, T, N]`, run the core, and move `y`
//! back; the backward runs the core's backward and takes the gradients back through the
//! preparation by hand. The GPU backends run this around their kernels; the CPU kernel does the
//! same in one pass, and the tests hold it against this.

use burn::prelude::*;
use burn::tensor::activation::sigmoid;

use super::{DECAY_SCALE, KAPPA_EPS, WkvInputs, WkvKernel, WkvLayerForward, WkvLayerInputs};
use crate::model::config::HEAD_SIZE as N;

/// `[B, T, C]` as one head per row: `[B·H, T, N]`.
pub fn to_heads<B: Backend>(x: Tensor<B, 3>) -> Tensor<B, 3> {
    let [b, t, c] = x.dims();
    let h = c / N;
    x.reshape([b, t, h, N])
        .swap_dims(1, 2)
        .reshape([b * h, t, N])
}

/// `[B·H, T, N]` back to `[B, T, C]` for a batch of `b`.
pub fn from_heads<B: Backend>(x: Tensor<B, 3>, b: usize) -> Tensor<B, 3> {
    let [bh, t, _] = x.dims();
    let h = bh / b;
    x.reshape([b, h, t, N])
        .swap_dims(1, 2)
        .reshape([b, t, h * N])
}

/// What the preparation computes, kept for the backward's chain rule.
struct Prepared<B: Backend> {
    /// The core's inputs, in heads.
    core: WkvInputs<B>,
    /// `σ(w_logit)`, `[B, T, C]`.
    sigmoid: Tensor<B, 3>,
    /// The decay, `[B, T, C]`.
    decay: Tensor<B, 3>,
    /// κ, `[B, T, H, N]`.
    kappa: Tensor<B, 4>,
    /// The removal key's norm per head, clamped at [`KAPPA_EPS`], `[B, T, H, 1]`.
    norm: Tensor<B, 4>,
    /// 1 where the norm was not clamped, else 0, `[B, T, H, 1]`.
    unclamped: Tensor<B, 4>,
}

/// The preparation: `w = exp(-DECAY_SCALE σ(w_logit))`, `κ = kk / max(‖kk‖, ε)` per head,
/// `a_core = -κ`, `b_core = κ a`.
fn prepare<B: Backend>(x: &WkvLayerInputs<B>) -> Prepared<B> {
    let [b, t, c] = x.r.dims();
    let h = c / N;
    let sigmoid = sigmoid(x.w_logit.clone());
    let decay = (sigmoid.clone() * -DECAY_SCALE).exp();
    let kk = x.kk.clone().reshape([b, t, h, N]);
    let raw_norm = kk.clone().powi_scalar(2).sum_dim(3).sqrt();
    let unclamped = raw_norm.clone().greater_elem(KAPPA_EPS).float();
    let norm = raw_norm.clamp_min(KAPPA_EPS);
    let kappa = kk / norm.clone();
    let rows = |x: Tensor<B, 4>| x.reshape([b, t, c]);
    let core = WkvInputs {
        r: to_heads(x.r.clone()),
        w: to_heads(decay.clone()),
        k: to_heads(x.k.clone()),
        v: to_heads(x.v.clone()),
        a: to_heads(rows(-kappa.clone())),
        b: to_heads(rows(kappa.clone()) * x.a.clone()),
    };
    Prepared {
        core,
        sigmoid,
        decay,
        kappa,
        norm,
        unclamped,
    }
}

/// The core's inputs for `x`, in heads (the tests run the step-by-step form on them).
pub fn core_inputs<B: Backend>(x: &WkvLayerInputs<B>) -> WkvInputs<B> {
    prepare(x).core
}

/// The layer form's forward through `B`'s core.
pub fn forward<B: WkvKernel>(x: &WkvLayerInputs<B>, state: Tensor<B, 4>) -> WkvLayerForward<B> {
    let [b, h, _, _] = state.dims();
    let out = B::wkv_forward(&prepare(x).core, state.reshape([b * h, N, N]));
    WkvLayerForward {
        y: from_heads(out.y, b),
        state: out.state.reshape([b, h, N, N]),
        snapshots: out.snapshots,
    }
}

/// The layer form's backward through `B`'s core: the core's gradients taken back through the
/// preparation.
pub fn backward<B: WkvKernel>(
    x: &WkvLayerInputs<B>,
    snapshots: Tensor<B, 3>,
    dy: Tensor<B, 3>,
) -> WkvLayerInputs<B> {
    let [b, t, c] = x.r.dims();
    let h = c / N;
    let p = prepare(x);
    let g = B::wkv_backward(&p.core, snapshots, to_heads(dy));
    let rows = |x: Tensor<B, 3>| from_heads(x, b);
    // w = exp(-s σ(z)): ∂z = ∂w · w · (-s) · σ(z) (1 - σ(z)).
    let w_logit = rows(g.w) * p.decay * p.sigmoid.clone() * (p.sigmoid.neg() + 1.0) * -DECAY_SCALE;
    // a_core = -κ, b_core = κ a.
    let db = rows(g.b);
    let kappa = p.kappa.reshape([b, t, c]);
    let dkappa = (db.clone() * x.a.clone() - rows(g.a)).reshape([b, t, h, N]);
    let a = db * kappa.clone();
    // κ = kk / ‖kk‖: ∂kk = (∂κ - κ (κ · ∂κ)) / ‖kk‖ (just ∂κ / ε where the norm was clamped).
    let kappa = kappa.reshape([b, t, h, N]);
    let along = (kappa.clone() * dkappa.clone()).sum_dim(3) * p.unclamped;
    let kk = ((dkappa - kappa * along) / p.norm).reshape([b, t, c]);
    WkvLayerInputs {
        r: rows(g.r),
        w_logit,
        k: rows(g.k),
        v: rows(g.v),
        kk,
        a,
    }
}

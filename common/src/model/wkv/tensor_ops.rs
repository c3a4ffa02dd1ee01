//! The WKV-7 recurrence built from tensor ops, for backends without a kernel of their own: every
//! step is a few batched `[BH, N, N]` products, with the same chunk snapshots and recomputing
//! backward as the kernels. The tests hold the CPU and GPU kernels against it.

use burn::prelude::*;

use super::{CHUNK, WkvForward, WkvInputs, chunks};
use crate::model::config::HEAD_SIZE as N;

/// Step `t` of a `[BH, T, N]` input as a column `[BH, N, 1]`.
fn column<B: Backend>(x: &Tensor<B, 3>, t: usize) -> Tensor<B, 3> {
    let [bh, _, _] = x.dims();
    x.clone().slice([0..bh, t..t + 1, 0..N]).swap_dims(1, 2)
}

/// Step `t` of a `[BH, T, N]` input as a row `[BH, 1, N]`.
fn row<B: Backend>(x: &Tensor<B, 3>, t: usize) -> Tensor<B, 3> {
    let [bh, _, _] = x.dims();
    x.clone().slice([0..bh, t..t + 1, 0..N])
}

/// `S_t = S_{t-1} diag(w) + (S_{t-1} a) bᵀ + v kᵀ`.
fn step<B: Backend>(s: Tensor<B, 3>, x: &WkvInputs<B>, t: usize) -> Tensor<B, 3> {
    let sa = s.clone().matmul(column(&x.a, t));
    s * row(&x.w, t) + sa.matmul(row(&x.b, t)) + column(&x.v, t).matmul(row(&x.k, t))
}

/// The forward: `y` `[BH, T, N]`, the final state and the chunk snapshots.
pub fn forward<B: Backend>(x: &WkvInputs<B>, state: Tensor<B, 3>) -> WkvForward<B> {
    let [bh, t_len, _] = x.r.dims();
    let mut s = state;
    let mut ys = Vec::with_capacity(t_len);
    let mut snapshots = Vec::with_capacity(chunks(t_len));
    for t in 0..t_len {
        if t % CHUNK == 0 {
            snapshots.push(s.clone().reshape([bh, 1, N * N]));
        }
        s = step(s, x, t);
        ys.push(s.clone().matmul(column(&x.r, t)).swap_dims(1, 2));
    }
    WkvForward {
        y: Tensor::cat(ys, 1),
        state: s,
        snapshots: Tensor::cat(snapshots, 1),
    }
}

/// The backward: the inputs' gradients given `dy`, recomputing each chunk from its snapshot.
pub fn backward<B: Backend>(
    x: &WkvInputs<B>,
    snapshots: Tensor<B, 3>,
    dy: Tensor<B, 3>,
) -> WkvInputs<B> {
    let [bh, t_len, _] = x.r.dims();
    let device = x.r.device();
    let mut g = Tensor::<B, 3>::zeros([bh, N, N], &device);
    let mut grads: [Vec<Tensor<B, 3>>; 6] = Default::default();
    for c in (0..chunks(t_len)).rev() {
        let (t0, t1) = (c * CHUNK, ((c + 1) * CHUNK).min(t_len));
        let start = snapshots
            .clone()
            .slice([0..bh, c..c + 1, 0..N * N])
            .reshape([bh, N, N]);
        let mut states = vec![start];
        for t in t0..t1 {
            let next = step(states[t - t0].clone(), x, t);
            states.push(next);
        }
        for t in (t0..t1).rev() {
            let (prev, cur) = (states[t - t0].clone(), states[t - t0 + 1].clone());
            let dy_t = column(&dy, t);
            let dr = cur.swap_dims(1, 2).matmul(dy_t.clone());
            g = g + dy_t.matmul(row(&x.r, t));
            let dv = g.clone().matmul(column(&x.k, t));
            let dk = g.clone().swap_dims(1, 2).matmul(column(&x.v, t));
            let dw = (g.clone() * prev.clone()).sum_dim(1);
            let u = prev.clone().matmul(column(&x.a, t));
            let du = g.clone().matmul(column(&x.b, t));
            let db = g.clone().swap_dims(1, 2).matmul(u);
            let da = prev.swap_dims(1, 2).matmul(du.clone());
            g = g * row(&x.w, t) + du.matmul(row(&x.a, t));
            let as_row = |col: Tensor<B, 3>| col.swap_dims(1, 2);
            for (list, grad) in grads.iter_mut().zip([
                as_row(dr),
                dw,
                as_row(dk),
                as_row(dv),
                as_row(da),
                as_row(db),
            ]) {
                list.push(grad);
            }
        }
    }
    let [r, w, k, v, a, b] = grads.map(|mut list| {
        list.reverse();
        Tensor::cat(list, 1)
    });
    WkvInputs { r, w, k, v, a, b }
}

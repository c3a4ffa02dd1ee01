//! The WKV-7 recurrence on raw `f32` slices, one head per rayon task: the CPU kernel.
//!
//! Each head's state is `N × N` row-major (`[value][key]`), so every update walks rows of 64
//! contiguous floats. The forward fuses the state update and the read-out in one pass per row;
//! the backward recomputes a chunk's states from its snapshot, then walks the chunk backwards
//! carrying `G = ∂L/∂S`, again one pass per row.

use burn::prelude::*;
use rayon::prelude::*;

use super::{CHUNK, WkvForward, WkvInputs, chunks};
use crate::host::into_vec;
use crate::model::config::HEAD_SIZE as N;
use crate::model::wide::run_wide;

/// Floats in one head's state.
const NN: usize = N * N;

/// One head's per-step inputs, each `[T, N]`.
#[derive(Clone, Copy)]
pub struct HeadInputs<'a> {
    /// Receptance.
    pub r: &'a [f32],
    /// Decay.
    pub w: &'a [f32],
    /// Key.
    pub k: &'a [f32],
    /// Value.
    pub v: &'a [f32],
    /// Removal direction.
    pub a: &'a [f32],
    /// Replacement key.
    pub b: &'a [f32],
}

/// `Σ x·y` over a row, in eight partial sums so that it vectorizes.
#[inline(always)]
fn dot(x: &[f32], y: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    for (xs, ys) in x.chunks_exact(8).zip(y.chunks_exact(8)) {
        for l in 0..8 {
            acc[l] += xs[l] * ys[l];
        }
    }
    acc.iter().sum()
}

/// Advances one head's state by step `t`; writes `y_t` when `y` is given.
#[inline(always)]
fn step(s: &mut [f32], x: HeadInputs<'_>, t: usize, y: Option<&mut [f32]>) {
    let o = t * N;
    let (r, w, k) = (&x.r[o..o + N], &x.w[o..o + N], &x.k[o..o + N]);
    let (v, a, b) = (&x.v[o..o + N], &x.a[o..o + N], &x.b[o..o + N]);
    let mut out = [0f32; N];
    for (i, row) in s.chunks_exact_mut(N).enumerate() {
        let sa = dot(row, a);
        let vi = v[i];
        for j in 0..N {
            row[j] = row[j] * w[j] + sa * b[j] + vi * k[j];
        }
        out[i] = dot(row, r);
    }
    if let Some(y) = y {
        y[o..o + N].copy_from_slice(&out);
    }
}

/// Runs one head over all its steps: `s` (`N·N`) is updated in place, `y` (`[T, N]`) written,
/// and the state at the start of chunk `c` stored at `snapshots[c·N², (c+1)·N²)`.
#[inline(always)]
pub fn head_forward(x: HeadInputs<'_>, s: &mut [f32], y: &mut [f32], snapshots: &mut [f32]) {
    let t_len = x.r.len() / N;
    for t in 0..t_len {
        if t % CHUNK == 0 {
            let c = t / CHUNK;
            snapshots[c * NN..(c + 1) * NN].copy_from_slice(s);
        }
        step(s, x, t, Some(&mut *y));
    }
}

/// One head's gradients, each `[T, N]`, written by [`head_backward`].
pub struct HeadGrads<'a> {
    /// ∂L/∂r.
    pub r: &'a mut [f32],
    /// ∂L/∂w.
    pub w: &'a mut [f32],
    /// ∂L/∂k.
    pub k: &'a mut [f32],
    /// ∂L/∂v.
    pub v: &'a mut [f32],
    /// ∂L/∂a.
    pub a: &'a mut [f32],
    /// ∂L/∂b.
    pub b: &'a mut [f32],
}

/// The backward of one head: the gradients of its inputs given `dy` (`[T, N]`) and the chunk
/// snapshots the forward stored. The gradient buffers must start at zero.
#[inline(always)]
pub fn head_backward(x: HeadInputs<'_>, snapshots: &[f32], dy: &[f32], g_out: HeadGrads<'_>) {
    let t_len = x.r.len() / N;
    let mut g = vec![0f32; NN];
    let mut states = vec![0f32; (CHUNK + 1) * NN];
    for c in (0..chunks(t_len)).rev() {
        let (t0, t1) = (c * CHUNK, ((c + 1) * CHUNK).min(t_len));
        states[..NN].copy_from_slice(&snapshots[c * NN..(c + 1) * NN]);
        for t in t0..t1 {
            let (done, next) = states.split_at_mut((t - t0 + 1) * NN);
            next[..NN].copy_from_slice(&done[(t - t0) * NN..]);
            step(&mut next[..NN], x, t, None);
        }
        for t in (t0..t1).rev() {
            let o = t * N;
            let prev = &states[(t - t0) * NN..(t - t0 + 1) * NN];
            let cur = &states[(t - t0 + 1) * NN..(t - t0 + 2) * NN];
            let (r, w, k) = (&x.r[o..o + N], &x.w[o..o + N], &x.k[o..o + N]);
            let (v, a, b) = (&x.v[o..o + N], &x.a[o..o + N], &x.b[o..o + N]);
            let dy = &dy[o..o + N];
            let mut dr = [0f32; N];
            let mut dw = [0f32; N];
            let mut dk = [0f32; N];
            let mut da = [0f32; N];
            let mut db = [0f32; N];
            for i in 0..N {
                let g_row = &mut g[i * N..(i + 1) * N];
                let prev_row = &prev[i * N..(i + 1) * N];
                let cur_row = &cur[i * N..(i + 1) * N];
                let dyi = dy[i];
                // y_t = S_t r_t: ∂r += S_tᵀ dy, ∂S_t += dy rᵀ.
                for j in 0..N {
                    dr[j] += cur_row[j] * dyi;
                    g_row[j] += dyi * r[j];
                }
                // S_t = S_{t-1} diag(w) + u bᵀ + v kᵀ with u = S_{t-1} a.
                g_out.v[o + i] = dot(g_row, k);
                let du = dot(g_row, b);
                let u = dot(prev_row, a);
                let vi = v[i];
                for j in 0..N {
                    let gij = g_row[j];
                    dk[j] += gij * vi;
                    dw[j] += gij * prev_row[j];
                    db[j] += gij * u;
                    da[j] += prev_row[j] * du;
                    g_row[j] = gij * w[j] + du * a[j];
                }
            }
            g_out.r[o..o + N].copy_from_slice(&dr);
            g_out.w[o..o + N].copy_from_slice(&dw);
            g_out.k[o..o + N].copy_from_slice(&dk);
            g_out.a[o..o + N].copy_from_slice(&da);
            g_out.b[o..o + N].copy_from_slice(&db);
        }
    }
}

/// The inputs' values, each `[BH·T·N]`.
struct HostInputs([Vec<f32>; 6]);

impl HostInputs {
    fn new<B: Backend>(inputs: &WkvInputs<B>) -> Self {
        let WkvInputs { r, w, k, v, a, b } = inputs.clone();
        Self([r, w, k, v, a, b].map(into_vec))
    }

    /// Head `h`'s slices, each `[T, N]`.
    fn head(&self, h: usize, t: usize) -> HeadInputs<'_> {
        fn part(x: &[f32], h: usize, t: usize) -> &[f32] {
            &x[h * t * N..(h + 1) * t * N]
        }
        let [r, w, k, v, a, b] = &self.0;
        HeadInputs {
            r: part(r, h, t),
            w: part(w, h, t),
            k: part(k, h, t),
            v: part(v, h, t),
            a: part(a, h, t),
            b: part(b, h, t),
        }
    }
}

/// The forward on any backend's tensors, computed on the host.
pub fn forward_tensors<B: Backend>(inputs: &WkvInputs<B>, state: Tensor<B, 3>) -> WkvForward<B> {
    let [bh, t, _] = inputs.r.dims();
    let device = inputs.r.device();
    let host = HostInputs::new(inputs);
    let mut s = into_vec(state);
    let mut y = vec![0f32; bh * t * N];
    let nc = chunks(t);
    let mut snapshots = vec![0f32; bh * nc * NN];
    s.par_chunks_mut(NN)
        .zip(y.par_chunks_mut(t * N))
        .zip(snapshots.par_chunks_mut(nc * NN))
        .enumerate()
        .for_each(|(h, ((s, y), snaps))| {
            run_wide(
                #[inline(always)]
                || head_forward(host.head(h, t), s, y, snaps),
            )
        });
    WkvForward {
        y: Tensor::from_data(TensorData::new(y, [bh, t, N]), &device),
        state: Tensor::from_data(TensorData::new(s, [bh, N, N]), &device),
        snapshots: Tensor::from_data(TensorData::new(snapshots, [bh, nc, NN]), &device),
    }
}

/// The backward on any backend's tensors, computed on the host.
pub fn backward_tensors<B: Backend>(
    inputs: &WkvInputs<B>,
    snapshots: Tensor<B, 3>,
    dy: Tensor<B, 3>,
) -> WkvInputs<B> {
    let [bh, t, _] = inputs.r.dims();
    let device = inputs.r.device();
    let host = HostInputs::new(inputs);
    let snapshots = into_vec(snapshots);
    let dy = into_vec(dy);
    let nc = chunks(t);
    let mut grads: [Vec<f32>; 6] = std::array::from_fn(|_| vec![0f32; bh * t * N]);
    let [gr, gw, gk, gv, ga, gb] = &mut grads;
    let per_head = t * N;
    gr.par_chunks_mut(per_head)
        .zip(gw.par_chunks_mut(per_head))
        .zip(gk.par_chunks_mut(per_head))
        .zip(gv.par_chunks_mut(per_head))
        .zip(ga.par_chunks_mut(per_head))
        .zip(gb.par_chunks_mut(per_head))
        .enumerate()
        .for_each(|(h, (((((r, w), k), v), a), b))| {
            run_wide(
                #[inline(always)]
                || {
                    head_backward(
                        host.head(h, t),
                        &snapshots[h * nc * NN..(h + 1) * nc * NN],
                        &dy[h * per_head..(h + 1) * per_head],
                        HeadGrads { r, w, k, v, a, b },
                    )
                },
            )
        });
    let [r, w, k, v, a, b] =
        grads.map(|g| Tensor::from_data(TensorData::new(g, [bh, t, N]), &device));
    WkvInputs { r, w, k, v, a, b }
}

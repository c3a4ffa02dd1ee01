//! The WKV-7 recurrence on raw `f32` slices, one head per rayon task: the CPU kernel of the layer
//! form. Each task prepares its head's inputs from the `[B, T, C]` rows into `[T, N]` buffers
//! (decay, κ, `a`, `b`: what `layer.rs` does in tensor ops), runs the core recurrence on them,
//! and the results go back into rows; the backward takes its head's gradients back through the
//! preparation the same way.
//!
//! Each head's state is `N × N` row-major (`[value][key]`), so every update walks rows of 64
//! contiguous floats. The forward fuses the state update and the read-out in one pass per row;
//! the backward recomputes a chunk's states from its snapshot, then walks the chunk backwards
//! carrying `G = ∂L/∂S`, again one pass per row.

use burn::prelude::*;
use rayon::prelude::*;

use burn::backend::Flex;
use burn::backend::flex::FlexTensor;

use super::{CHUNK, DECAY_SCALE, KAPPA_EPS, WkvLayerForward, WkvLayerInputs, chunks};
use crate::host::{contiguous, f32_values, into_vec};
use crate::model::config::HEAD_SIZE as N;
use crate::model::vector_math::{exp_nonpositive, sigmoid};
use crate::model::wide::run_wide;

/// Floats in one head's state.
const NN: usize = N * N;

/// One head's per-step inputs, prepared (the core form), each `[T, N]`.
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

impl<'a> HeadInputs<'a> {
    /// The inputs in `x`, in field order.
    pub fn of(x: &'a [Vec<f32>; 6]) -> Self {
        let [r, w, k, v, a, b] = x;
        HeadInputs { r, w, k, v, a, b }
    }
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

/// The layer inputs' values, borrowed where the tensors are contiguous (else copied once), each
/// `[B, T, C]` with `C = H·N`.
struct LayerHost {
    /// r, w_logit, k, v, kk, a, in [`WkvLayerInputs`] order.
    tensors: [FlexTensor; 6],
    /// Time steps.
    t: usize,
    /// Heads.
    h: usize,
}

impl LayerHost {
    fn new(inputs: &WkvLayerInputs<Flex>) -> Self {
        let [_, t, c] = inputs.r.dims();
        let WkvLayerInputs {
            r,
            w_logit,
            k,
            v,
            kk,
            a,
        } = inputs.clone();
        LayerHost {
            tensors: [r, w_logit, k, v, kk, a].map(contiguous),
            t,
            h: c / N,
        }
    }

    /// Where head `bh` (batch `bh / H`, head `bh % H`) of step `t` starts in a `[B, T, C]` buffer.
    fn offset(&self, bh: usize, t: usize) -> usize {
        let (b, h) = (bh / self.h, bh % self.h);
        (b * self.t + t) * self.h * N + h * N
    }

    /// Head `bh`'s core inputs, prepared, each `[T, N]` in [`HeadInputs`] order:
    /// `w = exp(-DECAY_SCALE σ(w_logit))`, `κ = kk / max(‖kk‖, ε)`, `a = -κ`, `b = κ a`.
    #[inline(always)]
    fn prepare(&self, bh: usize) -> [Vec<f32>; 6] {
        let [r, w_logit, k, v, kk, iclr] = self.tensors.each_ref().map(f32_values);
        let mut out: [Vec<f32>; 6] = std::array::from_fn(|_| Vec::with_capacity(self.t * N));
        let [or, ow, ok, ov, oa, ob] = &mut out;
        for t in 0..self.t {
            let at = self.offset(bh, t)..self.offset(bh, t) + N;
            or.extend_from_slice(&r[at.clone()]);
            ow.extend(w_logit[at.clone()].iter().map(|&z| decay(z)));
            ok.extend_from_slice(&k[at.clone()]);
            ov.extend_from_slice(&v[at.clone()]);
            let kk = &kk[at.clone()];
            let norm = removal_norm(kk).max(KAPPA_EPS as f32);
            oa.extend(kk.iter().map(|&x| -(x / norm)));
            ob.extend(kk.iter().zip(&iclr[at]).map(|(&x, &a)| x / norm * a));
        }
        out
    }

    /// Takes head `bh`'s core gradients of w, a and b (each `[T, N]`) back through
    /// [`Self::prepare`], in place: on return `gw` holds ∂w_logit, `ga` ∂kk and `gb` the layer's
    /// ∂a (r, k and v need nothing).
    #[inline(always)]
    fn unprepare(&self, bh: usize, gw: &mut [f32], ga: &mut [f32], gb: &mut [f32]) {
        let [_, w_logit, _, _, kk, iclr] = self.tensors.each_ref().map(f32_values);
        for t in 0..self.t {
            let o = self.offset(bh, t);
            let at = t * N..(t + 1) * N;
            // w = exp(-s σ(z)): ∂z = ∂w · w · (-s) · σ(z) (1 - σ(z)).
            for (gw, &z) in gw[at.clone()].iter_mut().zip(&w_logit[o..o + N]) {
                let s = sigmoid(z);
                let scaled = s * -(DECAY_SCALE as f32);
                *gw *= exp_nonpositive(scaled) * scaled * (1.0 - s);
            }
            // a = -κ, b = κ a: ∂κ = ∂b a - ∂a, ∂a_layer = ∂b κ. Then through κ = kk / ‖kk‖.
            let kk = &kk[o..o + N];
            let raw = removal_norm(kk);
            let norm = raw.max(KAPPA_EPS as f32);
            let mut dkappa = [0f32; N];
            let mut along = 0f32;
            for n in 0..N {
                let kappa = kk[n] / norm;
                dkappa[n] = gb[t * N + n] * iclr[o + n] - ga[t * N + n];
                gb[t * N + n] *= kappa;
                along += kappa * dkappa[n];
            }
            if raw <= KAPPA_EPS as f32 {
                along = 0.0;
            }
            for n in 0..N {
                ga[t * N + n] = (dkappa[n] - kk[n] / norm * along) / norm;
            }
        }
    }
}

/// `exp(-DECAY_SCALE σ(z))`.
#[inline(always)]
fn decay(z: f32) -> f32 {
    exp_nonpositive(sigmoid(z) * -(DECAY_SCALE as f32))
}

/// `‖kk‖` over one head's channels.
#[inline(always)]
fn removal_norm(kk: &[f32]) -> f32 {
    kk.iter().map(|x| x * x).sum::<f32>().sqrt()
}

/// Head-major `[B·H, T, N]` values as `[B, T, H·N]` rows.
fn heads_to_rows(x: &[f32], heads: usize, t: usize) -> Vec<f32> {
    let c = heads * N;
    let mut rows = vec![0f32; x.len()];
    rows.par_chunks_mut(c)
        .with_min_len(64)
        .enumerate()
        .for_each(|(bt, row)| {
            let (b, t_i) = (bt / t, bt % t);
            for (h, out) in row.chunks_exact_mut(N).enumerate() {
                let from = ((b * heads + h) * t + t_i) * N;
                out.copy_from_slice(&x[from..from + N]);
            }
        });
    rows
}

/// `[B, T, H·N]` rows as head-major `[B·H, T, N]` values.
fn heads_from_rows(x: &[f32], heads: usize, t: usize) -> Vec<f32> {
    let c = heads * N;
    let mut out = vec![0f32; x.len()];
    out.par_chunks_mut(t * N)
        .enumerate()
        .for_each(|(bh, head)| {
            let (b, h) = (bh / heads, bh % heads);
            for (t_i, step) in head.chunks_exact_mut(N).enumerate() {
                let from = (b * t + t_i) * c + h * N;
                step.copy_from_slice(&x[from..from + N]);
            }
        });
    out
}

/// The layer form's forward on the CPU: each head prepared from the rows, run, and its `y`
/// moved back into rows.
pub fn layer_forward(
    inputs: &WkvLayerInputs<Flex>,
    state: Tensor<Flex, 4>,
) -> WkvLayerForward<Flex> {
    let [b, h, _, _] = state.dims();
    let device = inputs.r.device();
    let host = LayerHost::new(inputs);
    let t = host.t;
    let mut s = into_vec(state);
    let mut y = vec![0f32; b * h * t * N];
    let nc = chunks(t);
    let mut snapshots = vec![0f32; b * h * nc * NN];
    s.par_chunks_mut(NN)
        .zip(y.par_chunks_mut(t * N))
        .zip(snapshots.par_chunks_mut(nc * NN))
        .enumerate()
        .for_each(|(bh, ((s, y), snaps))| {
            run_wide(
                #[inline(always)]
                || {
                    let x = host.prepare(bh);
                    head_forward(HeadInputs::of(&x), s, y, snaps)
                },
            )
        });
    let y = heads_to_rows(&y, h, t);
    WkvLayerForward {
        y: Tensor::from_data(TensorData::new(y, [b, t, h * N]), &device),
        state: Tensor::from_data(TensorData::new(s, [b, h, N, N]), &device),
        snapshots: Tensor::from_data(TensorData::new(snapshots, [b * h, nc, NN]), &device),
    }
}

/// The layer form's backward on the CPU: each head prepared again, its core backward run from
/// its snapshots, its gradients taken back through the preparation and moved into rows.
pub fn layer_backward(
    inputs: &WkvLayerInputs<Flex>,
    snapshots: Tensor<Flex, 3>,
    dy: Tensor<Flex, 3>,
) -> WkvLayerInputs<Flex> {
    let [b, t, c] = inputs.r.dims();
    let device = inputs.r.device();
    let host = LayerHost::new(inputs);
    let h = host.h;
    let snapshots = contiguous(snapshots);
    let snapshots = f32_values(&snapshots);
    let dy = heads_from_rows(f32_values(&contiguous(dy)), h, t);
    let nc = chunks(t);
    let per_head = t * N;
    let mut grads: [Vec<f32>; 6] = std::array::from_fn(|_| vec![0f32; b * h * per_head]);
    {
        let [gr, gw, gk, gv, ga, gb] = &mut grads;
        gr.par_chunks_mut(per_head)
            .zip(gw.par_chunks_mut(per_head))
            .zip(gk.par_chunks_mut(per_head))
            .zip(gv.par_chunks_mut(per_head))
            .zip(ga.par_chunks_mut(per_head))
            .zip(gb.par_chunks_mut(per_head))
            .enumerate()
            .for_each(|(bh, (((((r, w), k), v), a), bb))| {
                run_wide(
                    #[inline(always)]
                    || {
                        let x = host.prepare(bh);
                        head_backward(
                            HeadInputs::of(&x),
                            &snapshots[bh * nc * NN..(bh + 1) * nc * NN],
                            &dy[bh * per_head..(bh + 1) * per_head],
                            HeadGrads {
                                r,
                                w: &mut *w,
                                k,
                                v,
                                a: &mut *a,
                                b: &mut *bb,
                            },
                        );
                        host.unprepare(bh, w, a, bb);
                    },
                )
            });
    }
    let [r, w_logit, k, v, kk, a] = grads
        .map(|g| Tensor::from_data(TensorData::new(heads_to_rows(&g, h, t), [b, t, c]), &device));
    WkvLayerInputs {
        r,
        w_logit,
        k,
        v,
        kk,
        a,
    }
}

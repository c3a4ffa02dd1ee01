//! The operation on raw `f32` slices, a block of rows per rayon task, one pass per row each way.
//! The parameters' gradients are summed per block and the blocks' sums added in block order, so
//! the result does not depend on the thread count.

use burn::backend::Flex;
use burn::backend::flex::FlexTensor;
use burn::prelude::*;
use rayon::prelude::*;

use super::{GN_EPS, WkvOutInputs};
use crate::host::{contiguous, f32_values};
use crate::model::config::HEAD_SIZE as N;
use crate::model::wide::{BLOCK_ROWS, map_rows, run_wide};

/// The inputs' values, borrowed where the tensors are contiguous (else copied once).
struct Host {
    /// y, r, k, v, g, r_k, weight, bias, in [`WkvOutInputs`] order.
    tensors: [FlexTensor; 8],
}

/// The inputs' values as slices.
struct Values<'a> {
    y: &'a [f32],
    r: &'a [f32],
    k: &'a [f32],
    v: &'a [f32],
    g: &'a [f32],
    r_k: &'a [f32],
    weight: &'a [f32],
    bias: &'a [f32],
}

impl Host {
    fn new(x: &WkvOutInputs<Flex>) -> Self {
        let x = x.clone();
        Host {
            tensors: [
                contiguous(x.y),
                contiguous(x.r),
                contiguous(x.k),
                contiguous(x.v),
                contiguous(x.g),
                contiguous(x.r_k),
                contiguous(x.weight),
                contiguous(x.bias),
            ],
        }
    }

    fn values(&self) -> Values<'_> {
        let [y, r, k, v, g, r_k, weight, bias] = self.tensors.each_ref().map(f32_values);
        Values {
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
}

/// One head of one row: its channels' range in the row and in the `[C]` parameters.
#[derive(Clone, Copy)]
struct Head {
    /// Where the head starts in the `[B·T·C]` buffers.
    at: usize,
    /// Where it starts in the `[C]` parameters and `r_k`.
    channel: usize,
}

/// The head's statistics: `(mean, 1 / std)` of y, and the bonus factor `Σ_n r·k·r_k`.
#[inline(always)]
fn stats(x: &Values<'_>, head: Head) -> (f32, f32, f32) {
    let y = &x.y[head.at..head.at + N];
    let mean = y.iter().sum::<f32>() / N as f32;
    let var = y.iter().map(|&y| (y - mean) * (y - mean)).sum::<f32>() / N as f32;
    let inv_std = 1.0 / (var + GN_EPS as f32).sqrt();
    let (r, k) = (&x.r[head.at..head.at + N], &x.k[head.at..head.at + N]);
    let r_k = &x.r_k[head.channel..head.channel + N];
    let bonus = (0..N).map(|n| r[n] * k[n] * r_k[n]).sum::<f32>();
    (mean, inv_std, bonus)
}

/// The heads of row `row` of a `c`-channel layer.
fn heads(row: usize, c: usize) -> impl Iterator<Item = Head> {
    (0..c / N).map(move |h| Head {
        at: row * c + h * N,
        channel: h * N,
    })
}

/// `out = (GN(y)·weight + bias + bonus·v) · g` on the CPU.
pub fn forward(x: &WkvOutInputs<Flex>) -> Tensor<Flex, 3> {
    let [b, t, c] = x.y.dims();
    let device = x.y.device();
    let host = Host::new(x);
    let x = host.values();
    let out = map_rows(
        b * t,
        c,
        #[inline(always)]
        |index, row| {
            for head in heads(index, c) {
                let (mean, inv_std, bonus) = stats(&x, head);
                for n in 0..N {
                    let (at, ch) = (head.at + n, head.channel + n);
                    let normed = (x.y[at] - mean) * inv_std;
                    let u = normed * x.weight[ch] + x.bias[ch] + bonus * x.v[at];
                    row[ch] = u * x.g[at];
                }
            }
        },
    );
    Tensor::from_data(TensorData::new(out, [b, t, c]), &device)
}

/// One block's rows of the row-shaped gradients.
struct BlockGrads<'a> {
    y: &'a mut [f32],
    r: &'a mut [f32],
    k: &'a mut [f32],
    v: &'a mut [f32],
    g: &'a mut [f32],
}

/// One block's sums of the parameters' gradients: r_k, weight, bias, each `[C]`.
type ParamSums = [Vec<f32>; 3];

/// The backward of rows `first..` of one block; returns the block's parameter sums.
#[inline(always)]
fn backward_block(x: &Values<'_>, dout: &[f32], first: usize, out: BlockGrads<'_>) -> ParamSums {
    let c = x.weight.len();
    let mut sums: ParamSums = std::array::from_fn(|_| vec![0f32; c]);
    let [sum_r_k, sum_weight, sum_bias] = &mut sums;
    for i in 0..out.y.len() / c {
        for head in heads(first + i, c) {
            let (mean, inv_std, bonus) = stats(x, head);
            let local = i * c + head.channel;
            let mut normed = [0f32; N];
            let mut dnormed = [0f32; N];
            let mut ds = 0f32;
            for n in 0..N {
                let (at, ch) = (head.at + n, head.channel + n);
                normed[n] = (x.y[at] - mean) * inv_std;
                let u = normed[n] * x.weight[ch] + x.bias[ch] + bonus * x.v[at];
                out.g[local + n] = dout[at] * u;
                let du = dout[at] * x.g[at];
                sum_weight[ch] += du * normed[n];
                sum_bias[ch] += du;
                out.v[local + n] = du * bonus;
                ds += du * x.v[at];
                dnormed[n] = du * x.weight[ch];
            }
            let (mut mean_d, mut along) = (0f32, 0f32);
            for n in 0..N {
                let at = head.at + n;
                let r_k = x.r_k[head.channel + n];
                out.r[local + n] = ds * x.k[at] * r_k;
                out.k[local + n] = ds * x.r[at] * r_k;
                sum_r_k[head.channel + n] += ds * x.r[at] * x.k[at];
                mean_d += dnormed[n];
                along += dnormed[n] * normed[n];
            }
            let (mean_d, along) = (mean_d / N as f32, along / N as f32);
            for n in 0..N {
                out.y[local + n] = (dnormed[n] - mean_d - normed[n] * along) * inv_std;
            }
        }
    }
    sums
}

/// Every input's gradient given `dout`, on the CPU.
pub fn backward(x: &WkvOutInputs<Flex>, dout: Tensor<Flex, 3>) -> WkvOutInputs<Flex> {
    let [b, t, c] = x.y.dims();
    let h = c / N;
    let device = x.y.device();
    let host = Host::new(x);
    let x = host.values();
    let dout = contiguous(dout);
    let dout = f32_values(&dout);
    let mut rows: [Vec<f32>; 5] = std::array::from_fn(|_| vec![0f32; b * t * c]);
    let block = BLOCK_ROWS * c;
    let sums: Vec<ParamSums> = {
        let [y, r, k, v, g] = &mut rows;
        y.par_chunks_mut(block)
            .zip(r.par_chunks_mut(block))
            .zip(k.par_chunks_mut(block))
            .zip(v.par_chunks_mut(block))
            .zip(g.par_chunks_mut(block))
            .enumerate()
            .map(|(i, ((((y, r), k), v), g))| {
                let out = BlockGrads { y, r, k, v, g };
                run_wide(
                    #[inline(always)]
                    || backward_block(&x, dout, i * BLOCK_ROWS, out),
                )
            })
            .collect()
    };
    let mut total: ParamSums = std::array::from_fn(|_| vec![0f32; c]);
    for block_sums in &sums {
        for (total, part) in total.iter_mut().zip(block_sums) {
            total.iter_mut().zip(part).for_each(|(t, p)| *t += p);
        }
    }
    let [y, r, k, v, g] = rows.map(|x| Tensor::from_data(TensorData::new(x, [b, t, c]), &device));
    let [r_k, weight, bias] = total;
    WkvOutInputs {
        y,
        r,
        k,
        v,
        g,
        r_k: Tensor::from_data(TensorData::new(r_k, [h, N]), &device),
        weight: Tensor::from_data(TensorData::new(weight, [c]), &device),
        bias: Tensor::from_data(TensorData::new(bias, [c]), &device),
    }
}

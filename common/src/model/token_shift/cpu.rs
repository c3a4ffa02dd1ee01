//! The operation on raw `f32` slices, a block of rows per rayon task, one pass each way. `∂μ` is
//! summed per block and the blocks' sums added in block order, so the result does not depend on
//! the thread count.

use burn::backend::Flex;
use burn::prelude::*;
use rayon::prelude::*;

use super::TokenShiftInputs;
use crate::host::{contiguous, f32_values};
use crate::model::wide::{BLOCK_ROWS, map_rows, run_wide};

/// Row `row` (of `[B·T]`) of the shifted sequence: the previous row, or `prev` at a sequence's
/// first step.
#[inline(always)]
fn shifted<'a>(x: &'a [f32], prev: &'a [f32], row: usize, t: usize, c: usize) -> &'a [f32] {
    if row.is_multiple_of(t) {
        let b = row / t;
        &prev[b * c..(b + 1) * c]
    } else {
        &x[(row - 1) * c..row * c]
    }
}

/// `x + (shift(x) - x)·μ` on the CPU.
pub fn forward(inputs: &TokenShiftInputs<Flex>) -> Tensor<Flex, 3> {
    let [b, t, c] = inputs.x.dims();
    let device = inputs.x.device();
    let [x, prev, mix] = [
        contiguous(inputs.x.clone()),
        contiguous(inputs.prev.clone()),
        contiguous(inputs.mix.clone()),
    ];
    let [x, prev, mix] = [&x, &prev, &mix].map(f32_values);
    let out = map_rows(
        b * t,
        c,
        #[inline(always)]
        |row, out| {
            let here = &x[row * c..(row + 1) * c];
            let before = shifted(x, prev, row, t, c);
            for j in 0..c {
                out[j] = here[j] + (before[j] - here[j]) * mix[j];
            }
        },
    );
    Tensor::from_data(TensorData::new(out, [b, t, c]), &device)
}

/// Every input's gradient given `dout`, on the CPU.
pub fn backward(inputs: &TokenShiftInputs<Flex>, dout: Tensor<Flex, 3>) -> TokenShiftInputs<Flex> {
    let [b, t, c] = inputs.x.dims();
    let device = inputs.x.device();
    let [x, prev, mix, dout] = [
        contiguous(inputs.x.clone()),
        contiguous(inputs.prev.clone()),
        contiguous(inputs.mix.clone()),
        contiguous(dout),
    ];
    let [x, prev, mix, dout] = [&x, &prev, &mix, &dout].map(f32_values);
    let mut dx = vec![0f32; b * t * c];
    let sums: Vec<Vec<f32>> = dx
        .par_chunks_mut(BLOCK_ROWS * c)
        .enumerate()
        .map(|(block, chunk)| {
            run_wide(
                #[inline(always)]
                || {
                    let mut dmix = vec![0f32; c];
                    for (i, dx) in chunk.chunks_exact_mut(c).enumerate() {
                        let row = block * BLOCK_ROWS + i;
                        let here = &x[row * c..(row + 1) * c];
                        let before = shifted(x, prev, row, t, c);
                        let d = &dout[row * c..(row + 1) * c];
                        for j in 0..c {
                            dmix[j] += d[j] * (before[j] - here[j]);
                            dx[j] = d[j] * (1.0 - mix[j]);
                        }
                        if !(row + 1).is_multiple_of(t) {
                            let next = &dout[(row + 1) * c..(row + 2) * c];
                            for j in 0..c {
                                dx[j] += next[j] * mix[j];
                            }
                        }
                    }
                    dmix
                },
            )
        })
        .collect();
    let mut dmix = vec![0f32; c];
    for block in &sums {
        dmix.iter_mut()
            .zip(block)
            .for_each(|(total, part)| *total += part);
    }
    let dprev: Vec<f32> = (0..b)
        .flat_map(|seq| {
            let first = &dout[seq * t * c..(seq * t + 1) * c];
            first.iter().zip(mix).map(|(d, m)| d * m)
        })
        .collect();
    TokenShiftInputs {
        x: Tensor::from_data(TensorData::new(dx, [b, t, c]), &device),
        prev: Tensor::from_data(TensorData::new(dprev, [b, c]), &device),
        mix: Tensor::from_data(TensorData::new(dmix, [c]), &device),
    }
}

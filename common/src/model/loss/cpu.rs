//! The head and loss on the CPU, on raw `f32` slices, a block of rows at a time: one GEMM writes
//! the block's logits into a buffer reused across blocks, each row becomes its loss and, in
//! place, its gradient (one pass of a vectorized `exp`), and two more GEMMs add the block's share
//! of `∂x` and `∂head`. The logits never exist for more than one block (≤ [`BLOCK_FLOATS`]
//! floats), and each is read and written twice in all.

use burn::backend::Flex;
use burn::prelude::*;
use rayon::prelude::*;

use super::HeadLossGrads;
use crate::host::{contiguous, f32_values};
use crate::model::gemm::{Operand, matmul};
use crate::model::vector_math::exp_nonpositive;
use crate::model::wide::run_wide;

/// Logits per block (16 MiB of them); a block holds at least one row.
const BLOCK_FLOATS: usize = 4 << 20;

/// Lanes of the per-row reductions: enough independent sums for the compiler to vectorize.
const LANES: usize = 8;

/// The largest value of `row` (−∞ for an empty row; NaN is skipped here and caught by the exp).
#[inline(always)]
fn row_max(row: &[f32]) -> f32 {
    let mut lanes = [f32::NEG_INFINITY; LANES];
    let chunks = row.chunks_exact(LANES);
    let rest = chunks.remainder();
    for chunk in chunks {
        for (lane, &x) in lanes.iter_mut().zip(chunk) {
            *lane = lane.max(x);
        }
    }
    rest.iter()
        .chain(&lanes)
        .fold(f32::NEG_INFINITY, |m, &x| m.max(x))
}

/// Replaces each logit `l` by `e^(l − max)` and returns their sum.
#[inline(always)]
fn exp_in_place(row: &mut [f32], max: f32) -> f32 {
    let mut lanes = [0f32; LANES];
    let mut chunks = row.chunks_exact_mut(LANES);
    for chunk in &mut chunks {
        for (lane, x) in lanes.iter_mut().zip(chunk) {
            *x = exp_nonpositive(*x - max);
            *lane += *x;
        }
    }
    let mut sum: f32 = lanes.iter().sum();
    for x in chunks.into_remainder() {
        *x = exp_nonpositive(*x - max);
        sum += *x;
    }
    sum
}

/// How a row's gradient is written: `scale` = 1 / N, and L2Wrap's factor times it.
#[derive(Clone, Copy)]
struct RowGrad {
    scale: f32,
    l2wrap_scale: f32,
}

/// One row's cross-entropy `log Σ e^l − l[target]`. The row is overwritten: with `grad`, by the
/// loss's gradient (`scale · softmax`, `− scale` at the target, `+ l2wrap · scale · max` at the
/// first largest logit); without, by scratch values.
#[inline(always)]
fn row_loss(row: &mut [f32], target: usize, grad: Option<RowGrad>) -> f64 {
    let max = row_max(row);
    let argmax = row.iter().position(|&x| x == max);
    let target_logit = row[target];
    let sum = exp_in_place(row, max);
    if let Some(RowGrad {
        scale,
        l2wrap_scale,
    }) = grad
    {
        let factor = scale / sum;
        row.iter_mut().for_each(|x| *x *= factor);
        row[target] -= scale;
        if let Some(i) = argmax {
            row[i] += l2wrap_scale * max;
        }
    }
    f64::from(max) + f64::from(sum).ln() - f64::from(target_logit)
}

/// The mean cross-entropy of `x` `[N, C]` through `head` `[V, C]` against `targets` `[N]` and,
/// with `l2wrap = Some(factor)`, the gradients `∂x` `[N, C]` and `∂head` `[V, C]` with L2Wrap's
/// term at that factor.
///
/// # Panics
/// If a target is not below V (the datasets check their ids against the vocabulary on load).
pub fn head_loss(
    x: &[f32],
    head: &[f32],
    targets: &[usize],
    l2wrap: Option<f64>,
) -> (f64, Option<[Vec<f32>; 2]>) {
    let n = targets.len();
    let c = x.len() / n.max(1);
    let v = head.len() / c.max(1);
    if let Some(bad) = targets.iter().find(|&&t| t >= v) {
        panic!("target id {bad} is not below the vocabulary size {v}");
    }
    let block_rows = (BLOCK_FLOATS / v.max(1)).clamp(1, n.max(1));
    let mut logits = vec![0f32; block_rows * v];
    let mut grads = l2wrap.map(|_| [vec![0f32; n * c], vec![0f32; v * c]]);
    let scale = 1.0 / n as f64;
    let row_grad = l2wrap.map(|factor| RowGrad {
        scale: scale as f32,
        l2wrap_scale: (factor * scale) as f32,
    });
    let mut total = 0.0;
    for start in (0..n).step_by(block_rows) {
        let rows = block_rows.min(n - start);
        let x_block = &x[start * c..(start + rows) * c];
        let block = &mut logits[..rows * v];
        let head_t = Operand::new(head, v, c).t();
        matmul(block, false, Operand::new(x_block, rows, c), head_t);
        let losses: Vec<f64> = block
            .par_chunks_mut(v)
            .zip(&targets[start..start + rows])
            .map(|(row, &target)| {
                run_wide(
                    #[inline(always)]
                    || row_loss(row, target, row_grad),
                )
            })
            .collect();
        total += losses.iter().sum::<f64>();
        if let Some([dx, dhead]) = &mut grads {
            let d_logits = Operand::new(block, rows, v);
            let dx_block = &mut dx[start * c..(start + rows) * c];
            matmul(dx_block, false, d_logits, Operand::new(head, v, c));
            matmul(
                dhead,
                start > 0,
                d_logits.t(),
                Operand::new(x_block, rows, c),
            );
        }
    }
    (total * scale, grads)
}

/// Runs [`head_loss`] on Flex tensors.
fn on_tensors(
    x: Tensor<Flex, 2>,
    head: Tensor<Flex, 2>,
    targets: Tensor<Flex, 1, Int>,
    l2wrap: Option<f64>,
) -> (Tensor<Flex, 1>, Option<[Tensor<Flex, 2>; 2]>) {
    let device = x.device();
    let ([n, c], [v, _]) = (x.dims(), head.dims());
    let targets: Vec<usize> = targets
        .into_data()
        .convert::<i64>()
        .into_vec::<i64>()
        .expect("converted to i64 just above")
        .into_iter()
        .map(|t| usize::try_from(t).unwrap_or(usize::MAX))
        .collect();
    let (x, head) = (contiguous(x), contiguous(head));
    let (loss, grads) = head_loss(f32_values(&x), f32_values(&head), &targets, l2wrap);
    let tensor = |values: Vec<f32>, rows: usize| {
        Tensor::<Flex, 2>::from_data(TensorData::new(values, [rows, c]), &device)
    };
    (
        Tensor::from_data(TensorData::new(vec![loss as f32], [1]), &device),
        grads.map(|[dx, dhead]| [tensor(dx, n), tensor(dhead, v)]),
    )
}

/// [`head_loss`]'s value on Flex tensors.
pub fn value_tensors(
    x: Tensor<Flex, 2>,
    head: Tensor<Flex, 2>,
    targets: Tensor<Flex, 1, Int>,
) -> Tensor<Flex, 1> {
    on_tensors(x, head, targets, None).0
}

/// [`head_loss`]'s value and gradients on Flex tensors.
pub fn grads_tensors(
    x: Tensor<Flex, 2>,
    head: Tensor<Flex, 2>,
    targets: Tensor<Flex, 1, Int>,
    l2wrap: f64,
) -> HeadLossGrads<Flex> {
    let (loss, grads) = on_tensors(x, head, targets, Some(l2wrap));
    let [x, head] = grads.expect("asked for with Some(l2wrap)");
    HeadLossGrads { loss, x, head }
}

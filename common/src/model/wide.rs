//! Wider vectors for the CPU kernels' loops without changing their results.
//!
//! The crate is compiled for baseline x86-64, whose vectors hold 4 floats (SSE2). The kernels'
//! loops (the WKV recurrence, the loss's row pass) are written with explicit lanes and a fixed
//! order of additions and never fuse a multiply with an add, so compiling them with AVX2 (8
//! floats) changes their speed and not one bit of their output. [`run_wide`] does that when the
//! CPU has AVX2; [`map_rows`] runs a row-by-row kernel that way in blocks of rows.

use rayon::prelude::*;

/// Runs `f`, with what it inlines compiled for AVX2 when this CPU has it (else as is). `f` and
/// the kernel functions it calls should be `#[inline(always)]`, so that their loops are
/// generated inside the AVX2 function.
#[inline(always)]
pub fn run_wide<R>(f: impl FnOnce() -> R) -> R {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        #[target_feature(enable = "avx2")]
        fn avx2<R>(f: impl FnOnce() -> R) -> R {
            f()
        }
        // SAFETY: the CPU has AVX2, checked just above.
        return unsafe { avx2(f) };
    }
    f()
}

/// Rows per task of the CPU kernels that work row by row. Fixed, not taken from the thread
/// count: those that sum parameter gradients sum them per block of this many rows.
pub const BLOCK_ROWS: usize = 32;

/// A new `rows × c` buffer with `write(i, row)` run on each row `i`, [`BLOCK_ROWS`] rows per
/// rayon task, under [`run_wide`] (mark `write` `#[inline(always)]`).
#[inline(always)]
pub fn map_rows(rows: usize, c: usize, write: impl Fn(usize, &mut [f32]) + Sync) -> Vec<f32> {
    let mut out = vec![0f32; rows * c];
    out.par_chunks_mut(BLOCK_ROWS * c)
        .enumerate()
        .for_each(|(block, chunk)| {
            run_wide(
                #[inline(always)]
                || {
                    for (i, row) in chunk.chunks_exact_mut(c).enumerate() {
                        write(block * BLOCK_ROWS + i, row);
                    }
                },
            )
        });
    out
}

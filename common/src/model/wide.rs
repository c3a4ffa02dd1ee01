//! Wider vectors for the CPU kernels' loops without changing their results.
//!
//! The crate is compiled for baseline x86-64, whose vectors hold 4 floats (SSE2). The kernels'
//! loops (the WKV recurrence, the loss's row pass) are written with explicit lanes and a fixed
//! order of additions and never fuse a multiply with an add, so compiling them with AVX2 (8
//! floats) changes their speed and not one bit of their output. [`run_wide`] does that when the
//! CPU has AVX2.

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

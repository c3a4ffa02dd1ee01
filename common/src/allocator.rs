//! The allocator Sovereign's processes run on: mimalloc, told to keep the memory it frees. The
//! binaries and the training benches choose it (`#[global_allocator] static ALLOCATOR: MiMalloc
//! = MiMalloc;`, then [`keep_freed_memory`] first thing in `main`); the library does not.
//!
//! A training step allocates and frees the same large tensors every step (the logits block, the
//! `[V, C]` gradients of the embedding and the head). glibc returns every block over 32 MiB to
//! the kernel, which faults it back in, zeroed, on the next step (about 1.3× slower steps here).
//! mimalloc keeps freed pages for reuse, but by default still hands back what stayed unused for
//! a second (its v3 default), and a step's large buffers can stay unused that long: zeroing those
//! pages again was 14% of a mini step's profile. [`keep_freed_memory`] turns that off (mini 4 × 128 steps 1.59–1.62 s → 1.43–1.47 s
//! here; peak RSS 806 → 844 MB).

pub use mimalloc::MiMalloc;

/// `mi_option_purge_delay`: its place in mimalloc's `mi_option_e` (v3, the version built), which
/// the Rust bindings do not name.
const PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Makes mimalloc keep freed memory for reuse instead of returning it to the kernel (purge delay
/// −1). Call it first thing in `main`.
pub fn keep_freed_memory() {
    // SAFETY: sets one of mimalloc's global options, an atomic store; valid at any time.
    unsafe { libmimalloc_sys::mi_option_set(PURGE_DELAY, -1) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_option_set_is_the_purge_delay() {
        // SAFETY: reads a global option.
        let get = || unsafe { libmimalloc_sys::mi_option_get(PURGE_DELAY) };
        // Nothing else in this process sets it: the option at that place has the purge delay's
        // default in mimalloc v3, 1000 ms (its neighbours' are 0 and 1).
        assert_eq!(get(), 1000);
        keep_freed_memory();
        assert_eq!(get(), -1);
    }
}

//! The byte chunks that carry gradients between ranks, in buffers recycled across chunks and
//! steps. A chunk is a [`Bytes`] whose storage goes back to a process-wide free list when its
//! last reference is dropped, on whichever thread that is (the training thread after reducing
//! it, or the gRPC task once HTTP/2 has written it to the socket).
//!
//! Measured on the gRPC ring (bench/allreduce.sh): with a fresh 1 MiB allocation per chunk,
//! the kernel zeroing fresh pages for them took 17% of the profile; a few recycled buffers also
//! stay in cache.

use crate::sync::lock;
use std::sync::Mutex;

use bytes::Bytes;

/// Largest chunk on the wire: tonic refuses messages over 4 MiB by default; 1 MiB leaves room.
pub const MAX_CHUNK_BYTES: usize = 1 << 20;

/// Capacity of every recycled buffer: the largest chunk on the wire.
const CAPACITY: usize = MAX_CHUNK_BYTES;

/// Buffers kept for reuse at most (64 MiB); more than a whole bucket in flight is rare.
const KEEP: usize = 64;

/// A free list of buffers, each with [`CAPACITY`] bytes of capacity.
struct Pool(Mutex<Vec<Vec<u8>>>);

/// The process's pool.
static POOL: Pool = Pool(Mutex::new(Vec::new()));

/// A buffer that returns to its pool when dropped.
struct Recycled(Vec<u8>, &'static Pool);

impl AsRef<[u8]> for Recycled {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl Drop for Recycled {
    fn drop(&mut self) {
        let buffer = std::mem::take(&mut self.0);
        if buffer.capacity() == CAPACITY {
            let mut free = lock(&self.1.0);
            if free.len() < KEEP {
                free.push(buffer);
            }
        }
    }
}

impl Pool {
    /// A chunk of `len` bytes written by `fill`, in a free buffer when there is one.
    fn chunk(&'static self, len: usize, fill: impl FnOnce(&mut [u8])) -> Bytes {
        let free = (len <= CAPACITY).then(|| lock(&self.0).pop()).flatten();
        let mut buffer = free.unwrap_or_else(|| Vec::with_capacity(len.max(CAPACITY)));
        // Only bytes beyond the buffer's earlier length are zeroed, and only on first use.
        buffer.resize(len, 0);
        fill(&mut buffer);
        Bytes::from_owner(Recycled(buffer, self))
    }
}

/// A chunk of `len` bytes written by `fill`, in a recycled buffer when one is free (chunks of
/// up to [`MAX_CHUNK_BYTES`] are recycled). `fill` must write every byte: a recycled buffer holds an
/// earlier chunk's bytes.
pub fn chunk(len: usize, fill: impl FnOnce(&mut [u8])) -> Bytes {
    POOL.chunk(len, fill)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_hold_what_was_written_and_their_buffers_are_reused() {
        static OWN: Pool = Pool(Mutex::new(Vec::new()));
        let first = OWN.chunk(5, |out| out.copy_from_slice(b"hello"));
        assert_eq!(&first[..], b"hello");
        let other = OWN.chunk(2, |out| out.copy_from_slice(b"ok"));
        let reused = other.as_ptr();
        assert_ne!(first.as_ptr(), reused, "a buffer in use is not handed out");
        drop(first);
        // A view keeps the buffer alive; dropping the last one frees it.
        let view = other.slice(1..);
        drop(other);
        assert_eq!(OWN.0.lock().unwrap().len(), 1);
        drop(view);
        assert_eq!(OWN.0.lock().unwrap().len(), 2);
        // The last buffer freed is the next one used, overwritten.
        let again = OWN.chunk(3, |out| out.copy_from_slice(b"abc"));
        assert_eq!((again.as_ptr(), &again[..]), (reused, &b"abc"[..]));
        let large = OWN.chunk(CAPACITY + 1, |out| out.fill(7));
        assert_eq!((large.len(), large[CAPACITY]), (CAPACITY + 1, 7));
        drop(large);
        assert_eq!(
            OWN.0.lock().unwrap().len(),
            1,
            "only buffers of the usual size are kept"
        );
    }
}

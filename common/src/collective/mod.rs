//! Collectives for data-parallel training: gradients flattened and packed into buckets
//! ([`bucket`]), averaged by an [`AllReduce`]: the ring all-reduce ([`ring`]) over any
//! [`ring::RingTransport`] (gRPC streams between worker processes, or in-process channels
//! ([`local`]) for tests and emulation), or NCCL between GPUs (`nccl`, with `--features nccl`).
//!
//! Sockets live elsewhere (docs/design.md): this module only moves byte chunks through the transport
//! it is given.

pub mod bucket;
pub mod chunks;
pub mod local;
#[cfg(feature = "nccl")]
pub mod nccl;
pub mod ring;

/// Averages a flat gradient buffer over every rank of the run.
pub trait AllReduce {
    /// Replaces `data` on every rank by the mean over the ranks (bucket by bucket).
    fn all_reduce_mean(&mut self, data: &mut [f32]) -> Result<(), CollectiveError>;
}

/// A collective that could not finish.
#[derive(Debug, thiserror::Error)]
pub enum CollectiveError {
    /// A peer went away or the transport failed.
    #[error("ring transport: {0}")]
    Transport(String),
    /// A peer sent a chunk of an unexpected size.
    #[error("a peer sent {got} bytes where {expected} were expected (mismatched world or buffers)")]
    Size {
        /// Bytes expected.
        expected: usize,
        /// Bytes received.
        got: usize,
    },
    /// The collective was aborted (a peer died or a deadline passed).
    #[error("collective aborted: {0}")]
    Aborted(String),
}

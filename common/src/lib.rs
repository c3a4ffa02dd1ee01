//! Sovereign's library: everything except sockets, gRPC and process management.
//!
//! - [`data`]: the data front end (dump decompression and parsing, the markup cleaner, the
//!   normalizer, corpus cleaning).
//! - [`model`]: RWKV-7 (x070) in Burn.
//! - [`tokenizer`]: byte-level BPE (training, tokenizer.json, encoding and decoding).
//! - [`train`]: schedule, gradients and AdamW, checkpoints, the training loop.
//! - [`hashing`]: SplitMix64 and sha256 checksums.
//! - [`host`]: tensor values as `f32` slices, for the CPU kernels.
//! - [`collective`]: gradient buckets and the ring all-reduce over a transport trait.
//! - [`output`]: files written whole or not at all.
//! - [`logging`]: the binaries' log lines.
//! - [`allocator`]: the processes' allocator.
//! - [`progress`]: progress lines for long stages.
//! - [`sync`]: mutex guards that survive a panicked holder.

pub mod allocator;
pub mod collective;
pub mod data;
pub mod device;
pub mod export;
pub mod hashing;
pub mod host;
pub mod logging;
pub mod model;
pub mod output;
pub mod prep;
pub mod progress;
pub mod sync;
pub mod tokenizer;
pub mod train;

//! Ring all-reduce: reduce-scatter then all-gather, each rank talking only to its two ring
//! neighbours, so each rank sends and receives 2(n−1)/n of the buffer whatever n is.
//!
//! The buffer is cut into n segments. In reduce-scatter step s, rank r sends segment (r − s) to
//! the next rank and adds segment (r − s − 1), as it arrives from the previous rank, into its own
//! copy; after n − 1 steps rank r holds the full sum of segment (r + 1). It divides that by n
//! (the mean), rounds it to the wire precision, and the all-gather passes the finished segments
//! round the ring, each rank overwriting its copy. Segments travel in chunks of at most
//! `chunk_bytes` (≤ 1 MiB for gRPC), and each chunk is reduced as soon as it arrives. Every rank
//! ends with bit-identical values: each segment is finished by one rank and copied to the others.

use std::ops::Range;

use super::bucket::{BUCKET_BYTES, WireDtype, buckets};
use super::{AllReduce, CollectiveError};

/// Largest chunk on the wire: tonic refuses messages over 4 MiB by default; 1 MiB leaves room.
pub const MAX_CHUNK_BYTES: usize = 1 << 20;

/// A rank's two links in the ring. Sends must not wait for the matching receive: the transport
/// buffers a whole segment's chunks (unbounded channels; gRPC streams drained by the Peer
/// service into an unbounded inbox).
pub trait RingTransport {
    /// What a received chunk arrives as (a `Vec`, or a view of a network buffer).
    type Received: AsRef<[u8]>;
    /// Sends one chunk to the next rank.
    fn send_next(&mut self, chunk: Vec<u8>) -> Result<(), CollectiveError>;
    /// Receives the next chunk from the previous rank.
    fn recv_prev(&mut self) -> Result<Self::Received, CollectiveError>;
}

/// This rank's place in the ring and how values travel.
#[derive(Clone, Copy, Debug)]
pub struct Ring {
    /// This rank.
    pub rank: usize,
    /// Ranks in the ring.
    pub world: usize,
    /// Wire encoding.
    pub wire: WireDtype,
    /// Largest chunk in bytes.
    pub chunk_bytes: usize,
}

impl Ring {
    /// Rank `rank` of `world`, sending `wire` values in chunks of at most [`MAX_CHUNK_BYTES`].
    pub fn new(rank: usize, world: usize, wire: WireDtype) -> Self {
        Self {
            rank,
            world,
            wire,
            chunk_bytes: MAX_CHUNK_BYTES,
        }
    }
}

/// The ring all-reduce over one rank's transport, as an [`AllReduce`].
pub struct RingReducer<T> {
    /// This rank's place in the ring.
    pub ring: Ring,
    /// Its links to the neighbours.
    pub transport: T,
}

impl<T: RingTransport> AllReduce for RingReducer<T> {
    fn all_reduce_mean(&mut self, data: &mut [f32]) -> Result<(), CollectiveError> {
        self.ring.all_reduce_buckets(data, &mut self.transport)
    }
}

/// Segment `i` (mod `world`) of a buffer of `len` values cut into `world` segments.
fn segment(i: usize, world: usize, len: usize) -> Range<usize> {
    let i = i % world;
    len * i / world..len * (i + 1) / world
}

/// What [`Ring::all_reduce_buckets`] computes, on one thread from every rank's buffer, with the
/// same arithmetic in the same order: in each bucket, segment j is summed starting from rank j's
/// values (each partial sum rounded to the wire precision, as it travels), then multiplied by
/// 1/n and rounded. The result is bit-identical to the ring's on every rank.
pub fn emulate_mean(per_rank: &[Vec<f32>], wire: WireDtype) -> Vec<f32> {
    let n = per_rank.len();
    let len = per_rank.first().map_or(0, Vec::len);
    let mut out = per_rank.first().cloned().unwrap_or_default();
    if n <= 1 {
        return out;
    }
    let scale = 1.0 / n as f32;
    for bucket in buckets(len, BUCKET_BYTES / 4) {
        for j in 0..n {
            let seg = segment(j, n, bucket.len());
            for i in bucket.start + seg.start..bucket.start + seg.end {
                let mut acc = per_rank[j][i];
                for k in 1..n {
                    let mut travelled = [acc];
                    wire.round(&mut travelled);
                    acc = per_rank[(j + k) % n][i] + travelled[0];
                }
                let mut done = [acc * scale];
                wire.round(&mut done);
                out[i] = done[0];
            }
        }
    }
    out
}

impl Ring {
    /// Segment `i` of a buffer of `len` values.
    fn segment(&self, i: usize, len: usize) -> Range<usize> {
        segment(i, self.world, len)
    }

    /// Averages a whole gradient buffer over the ranks, bucket by bucket (about
    /// [`BUCKET_BYTES`] each).
    pub fn all_reduce_buckets(
        &self,
        data: &mut [f32],
        transport: &mut impl RingTransport,
    ) -> Result<(), CollectiveError> {
        for bucket in buckets(data.len(), BUCKET_BYTES / 4) {
            self.all_reduce_mean(&mut data[bucket], transport)?;
        }
        Ok(())
    }

    /// Values per chunk.
    fn chunk_values(&self) -> usize {
        (self.chunk_bytes.min(MAX_CHUNK_BYTES) / self.wire.size()).max(1)
    }

    /// Replaces `data` on every rank by the mean over the ranks.
    pub fn all_reduce_mean(
        &self,
        data: &mut [f32],
        transport: &mut impl RingTransport,
    ) -> Result<(), CollectiveError> {
        let (n, len) = (self.world, data.len());
        if n <= 1 {
            return Ok(());
        }
        let r = self.rank;
        for s in 0..n - 1 {
            let send = self.segment(r + n - s, len);
            let recv = self.segment(r + n - s - 1, len);
            self.exchange(data, send, recv, transport, |x, v| *x += v)?;
        }
        let owned = self.segment(r + 1, len);
        let scale = 1.0 / n as f32;
        data[owned.clone()].iter_mut().for_each(|x| *x *= scale);
        self.wire.round(&mut data[owned]);
        for s in 0..n - 1 {
            let send = self.segment(r + 1 + n - s, len);
            let recv = self.segment(r + n - s, len);
            self.exchange(data, send, recv, transport, |x, v| *x = v)?;
        }
        Ok(())
    }

    /// Sends `send` and receives `recv` chunk by chunk, applying each received value with `apply`.
    /// Every chunk of `send` is queued before the first receive: the transport carries them
    /// while this thread reduces what arrives (waiting for each chunk's echo would cost a
    /// round trip per chunk).
    fn exchange(
        &self,
        data: &mut [f32],
        send: Range<usize>,
        recv: Range<usize>,
        transport: &mut impl RingTransport,
        apply: impl Fn(&mut f32, f32),
    ) -> Result<(), CollectiveError> {
        let per = self.chunk_values();
        for start in send.clone().step_by(per) {
            let out = start..(start + per).min(send.end);
            let mut bytes = Vec::with_capacity(out.len() * self.wire.size());
            self.wire.encode(&data[out], &mut bytes);
            transport.send_next(bytes)?;
        }
        for start in recv.clone().step_by(per) {
            let into = start..(start + per).min(recv.end);
            let received = transport.recv_prev()?;
            let bytes = received.as_ref();
            let expected = into.len() * self.wire.size();
            if bytes.len() != expected {
                return Err(CollectiveError::Size {
                    expected,
                    got: bytes.len(),
                });
            }
            self.wire.decode_into(bytes, &mut data[into], &apply);
        }
        Ok(())
    }
}

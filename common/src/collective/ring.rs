//! Ring all-reduce: reduce-scatter then all-gather, each rank talking only to its two ring
//! neighbours, so each rank sends and receives 2(n−1)/n of the buffer whatever n is.
//!
//! The buffer is cut into n segments. In reduce-scatter step s, rank r sends segment (r − s) to
//! the next rank and adds segment (r − s − 1), as it arrives from the previous rank, into its own
//! copy; after n − 1 steps rank r holds the full sum of segment (r + 1). It divides that by n
//! (the mean), rounds it to the wire precision, and the all-gather passes the finished segments
//! round the ring, each rank overwriting its copy. Segments travel in chunks of at most
//! `chunk_bytes` (≤ 1 MiB for gRPC). What a rank receives in one step is what it sends in the
//! next, so each chunk is reduced and passed on as soon as it arrives: the steps, and the two
//! phases, overlap chunk by chunk. Every rank ends with bit-identical values: each segment is
//! finished by one rank and copied to the others.

use std::ops::Range;

use bytes::Bytes;

use super::bucket::{BUCKET_BYTES, WireDtype, buckets};
use super::chunks::{self, MAX_CHUNK_BYTES};
use super::{AllReduce, CollectiveError};

/// A rank's two links in the ring. Sends must not wait for the matching receive: the transport
/// buffers what the next rank has not read yet (unbounded channels and queues; the ring sends
/// at most about a segment ahead of what it has received).
pub trait RingTransport {
    /// Sends one chunk to the next rank.
    fn send_next(&mut self, chunk: Bytes) -> Result<(), CollectiveError>;
    /// Receives the next chunk from the previous rank.
    fn recv_prev(&mut self) -> Result<Bytes, CollectiveError>;
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
    ///
    /// Pipelined chunk by chunk: what a rank receives in one step is what it sends in the next,
    /// so each chunk goes on as soon as it is reduced, and the all-gather starts while the
    /// reduce-scatter is still arriving. Sends never wait for receives (see [`RingTransport`]),
    /// so no rank can block another.
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
        // Reduce-scatter. Step 0: this rank's segment r goes out as it is.
        for chunk in self.chunks(self.segment(r, len)) {
            let values = &data[chunk];
            let bytes = chunks::chunk(values.len() * self.wire.size(), |out| {
                self.wire.encode_into(values, out)
            });
            transport.send_next(bytes)?;
        }
        // Step s: segment r − s arrives holding the sum over ranks r − s … r − 1; this rank adds
        // its own values and passes it on. After step n − 1, segment r + 1 holds the whole sum:
        // it becomes the mean, rounded to the wire precision, and is passed on as the first
        // step of the all-gather.
        for s in 1..n {
            let scale = if s == n - 1 { 1.0 / n as f32 } else { 1.0 };
            for chunk in self.chunks(self.segment(r + n - s, len)) {
                let received = self.receive(transport, chunk.len())?;
                let values = &mut data[chunk];
                let sum = chunks::chunk(received.len(), |out| {
                    self.wire.add_scale_encode(&received, values, scale, out)
                });
                transport.send_next(sum)?;
            }
        }
        // All-gather: finished segments r, r − 1, … arrive; each is kept, and passed on unless
        // the next rank is the one that finished it.
        for s in 0..n - 1 {
            for chunk in self.chunks(self.segment(r + n - s, len)) {
                let received = self.receive(transport, chunk.len())?;
                self.wire
                    .decode_into(&received, &mut data[chunk], |x, v| *x = v);
                if s < n - 2 {
                    transport.send_next(received)?;
                }
            }
        }
        Ok(())
    }

    /// `range` cut into chunks of at most [`Ring::chunk_values`] values.
    fn chunks(&self, range: Range<usize>) -> impl Iterator<Item = Range<usize>> {
        let (per, end) = (self.chunk_values(), range.end);
        range
            .step_by(per)
            .map(move |start| start..(start + per).min(end))
    }

    /// The previous rank's next chunk, which must carry `values` values.
    fn receive(
        &self,
        transport: &mut impl RingTransport,
        values: usize,
    ) -> Result<Bytes, CollectiveError> {
        let received = transport.recv_prev()?;
        let expected = values * self.wire.size();
        if received.len() != expected {
            return Err(CollectiveError::Size {
                expected,
                got: received.len(),
            });
        }
        Ok(received)
    }
}

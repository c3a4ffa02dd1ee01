//! A ring of in-process channels: the transport for threads standing in for ranks (tests, and
//! measuring the algorithm without a network).

use std::sync::mpsc::{Receiver, Sender, channel};

use bytes::Bytes;

use super::CollectiveError;
use super::ring::RingTransport;

/// One rank's links in an in-process ring.
pub struct LocalTransport {
    next: Sender<Bytes>,
    prev: Receiver<Bytes>,
}

/// The links of a ring of `world` ranks, in rank order.
pub fn local_ring(world: usize) -> Vec<LocalTransport> {
    let (senders, receivers): (Vec<_>, Vec<_>) = (0..world).map(|_| channel()).unzip();
    // Rank r sends on the channel that rank r + 1 receives from.
    let mut receivers: Vec<Option<Receiver<Bytes>>> = receivers.into_iter().map(Some).collect();
    (0..world)
        .map(|r| LocalTransport {
            next: senders[(r + 1) % world].clone(),
            prev: receivers[r].take().expect("each receiver is taken once"),
        })
        .collect()
}

impl RingTransport for LocalTransport {
    fn send_next(&mut self, chunk: Bytes) -> Result<(), CollectiveError> {
        self.next
            .send(chunk)
            .map_err(|_| CollectiveError::Transport("the next rank is gone".into()))
    }

    fn recv_prev(&mut self) -> Result<Bytes, CollectiveError> {
        self.prev
            .recv()
            .map_err(|_| CollectiveError::Transport("the previous rank is gone".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collective::bucket::WireDtype;
    use crate::collective::ring::Ring;

    /// Runs the all-reduce on `world` threads; returns every rank's result.
    fn reduce(world: usize, len: usize, wire: WireDtype, chunk_bytes: usize) -> Vec<Vec<f32>> {
        let handles: Vec<_> = local_ring(world)
            .into_iter()
            .enumerate()
            .map(|(rank, mut transport)| {
                std::thread::spawn(move || {
                    let mut data: Vec<f32> = (0..len)
                        .map(|i| ((i * 31 + rank * 7) % 97) as f32 * 0.01 + rank as f32)
                        .collect();
                    let ring = Ring {
                        rank,
                        world,
                        wire,
                        chunk_bytes,
                    };
                    ring.all_reduce_mean(&mut data, &mut transport).unwrap();
                    data
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    }

    #[test]
    fn every_rank_gets_the_same_mean() {
        for world in [1, 2, 3, 4] {
            // Lengths that do not divide evenly, and chunks smaller than a segment.
            for len in [1, 7, 1000] {
                let results = reduce(world, len, WireDtype::F32, 12);
                for (i, &got) in results[0].iter().enumerate() {
                    let mean = (0..world)
                        .map(|r| ((i * 31 + r * 7) % 97) as f32 * 0.01 + r as f32)
                        .sum::<f32>()
                        / world as f32;
                    assert!((got - mean).abs() < 1e-5, "world {world} len {len}");
                }
                assert!(results.iter().all(|r| r == &results[0]), "replicas differ");
            }
        }
    }

    #[test]
    fn the_emulation_is_bit_identical_to_the_ring() {
        for wire in [WireDtype::F32, WireDtype::Bf16] {
            for world in [2, 3, 4] {
                let len = 1003;
                let results = reduce(world, len, wire, 100);
                let per_rank: Vec<Vec<f32>> = (0..world)
                    .map(|rank| {
                        (0..len)
                            .map(|i| ((i * 31 + rank * 7) % 97) as f32 * 0.01 + rank as f32)
                            .collect()
                    })
                    .collect();
                assert_eq!(
                    crate::collective::ring::emulate_mean(&per_rank, wire),
                    results[0],
                    "{wire:?} world {world}"
                );
            }
        }
    }

    #[test]
    fn bf16_replicas_are_identical_and_close() {
        let results = reduce(3, 500, WireDtype::Bf16, 64);
        assert!(results.iter().all(|r| r == &results[0]));
        let exact = reduce(3, 500, WireDtype::F32, 64);
        for (a, b) in results[0].iter().zip(&exact[0]) {
            assert!((a - b).abs() <= b.abs() * 0.02, "{a} vs {b}");
        }
    }
}

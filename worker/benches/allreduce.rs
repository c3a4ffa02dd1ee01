//! Ring all-reduce bandwidth over real gRPC on loopback, next to raw single-stream TCP measured
//! in the same run (bench/allreduce.sh adds PyTorch Gloo and the training-step overhead).
//!
//! Every rank is a Peer service plus a client stream to the next rank, exactly as in
//! `sovereign-worker`; the ranks are threads of this process, on this machine's cores. Reported:
//! algbw = bytes / time and busbw = algbw · 2(n−1)/n (the NCCL-tests convention: the bandwidth
//! each link needs), the median of the timed rounds.
//!
//! `cargo bench -p sovereign-worker --bench allreduce [-- --sizes 4,64,256 --worlds 2,4]`

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Barrier, mpsc};
use std::time::{Duration, Instant};

use sovereign_common::collective::bucket::WireDtype;
use sovereign_common::collective::ring::{Ring, RingReducer, RingTransport};
use sovereign_common::collective::{AllReduce, CollectiveError, chunks};
use sovereign_proto::v1::bytes::Bytes;
use sovereign_worker::collective::{RingSender, Setup, grpc_ring};
use sovereign_worker::peer::serve_peer;

/// Timed rounds per measurement (after one warm-up round).
const ROUNDS: usize = 3;

/// The allocator the binaries run on (common/src/allocator.rs), so that timings are theirs.
#[global_allocator]
static ALLOCATOR: sovereign_common::allocator::MiMalloc = sovereign_common::allocator::MiMalloc;

fn main() {
    sovereign_common::allocator::keep_freed_memory();
    let args: Vec<String> = std::env::args().collect();
    let list = |flag: &str, default: &[usize]| -> Vec<usize> {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .map_or_else(
                || default.to_vec(),
                |v| v.split(',').filter_map(|x| x.parse().ok()).collect(),
            )
    };
    let sizes = list("--sizes", &[4, 64, 256]);
    let worlds = list("--worlds", &[2, 4]);

    let tcp = raw_tcp_gbps(256 << 20);
    println!("raw TCP, one stream on loopback: {tcp:.2} GB/s");
    println!();
    println!(
        "| ranks | MiB | time (ms) | algbw (GB/s) | busbw (GB/s) | busbw / raw TCP | \
         same ring over plain TCP, busbw (GB/s) | same ring in-process, busbw (GB/s) |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for &world in &worlds {
        for &mib in &sizes {
            let busbw = |seconds: f64| {
                (mib << 20) as f64 / seconds / 1e9 * 2.0 * (world - 1) as f64 / world as f64
            };
            let seconds = ring_seconds(world, mib << 20);
            let plain = busbw(median_round(world, mib << 20, tcp_ring(world)));
            let local = busbw(median_round(world, mib << 20, local_ring(world)));
            println!(
                "| {world} | {mib} | {:.1} | {:.2} | {:.2} | {:.0}% | {plain:.2} | {local:.2} |",
                seconds * 1e3,
                (mib << 20) as f64 / seconds / 1e9,
                busbw(seconds),
                100.0 * busbw(seconds) / tcp
            );
        }
    }
}

/// Best of three: one TCP stream on loopback moving `bytes` in 1 MiB writes.
fn raw_tcp_gbps(bytes: usize) -> f64 {
    (0..3)
        .map(|_| {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let address = listener.local_addr().unwrap();
            let reader = std::thread::spawn(move || {
                let (mut stream, _) = listener.accept().unwrap();
                let mut buffer = vec![0u8; 1 << 20];
                let mut total = 0;
                loop {
                    match stream.read(&mut buffer).unwrap() {
                        0 => return total,
                        n => total += n,
                    }
                }
            });
            let mut stream = TcpStream::connect(address).unwrap();
            stream.set_nodelay(true).unwrap();
            let block = vec![7u8; 1 << 20];
            let started = Instant::now();
            for _ in 0..bytes / block.len() {
                stream.write_all(&block).unwrap();
            }
            drop(stream);
            let received = reader.join().unwrap();
            assert_eq!(received, bytes);
            bytes as f64 / started.elapsed().as_secs_f64() / 1e9
        })
        .fold(0.0, f64::max)
}

/// Median seconds of one all-reduce of `bytes` of f32 over `world` ranks on gRPC.
fn ring_seconds(world: usize, bytes: usize) -> f64 {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let token = "bench".to_string();
    let (reducers, senders, stops) = runtime.block_on(async {
        let mut inboxes = Vec::new();
        let mut addresses = Vec::new();
        let mut stops = Vec::new();
        for _ in 0..world {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            addresses.push(listener.local_addr().unwrap().to_string());
            let (stop, stopped) = tokio::sync::oneshot::channel();
            let (_, inbox) = serve_peer(listener, token.clone(), None, stopped).unwrap();
            inboxes.push(inbox);
            stops.push(stop);
        }
        let mut reducers = Vec::new();
        let mut senders: Vec<RingSender> = Vec::new();
        for (rank, inbox) in inboxes.into_iter().enumerate() {
            let setup = Setup {
                rank: rank as u32,
                world: world as u32,
                token: &token,
                tls: None,
                deadline: Duration::from_secs(300),
            };
            let (reducer, sender) = grpc_ring(&setup, WireDtype::F32, &addresses, inbox)
                .await
                .unwrap();
            reducers.push(reducer);
            senders.extend(sender);
        }
        (reducers, senders, stops)
    });
    let seconds = median_round(world, bytes, reducers);
    runtime.block_on(async {
        for sender in senders {
            let _ = sender.await;
        }
    });
    drop(stops);
    seconds
}

/// The same ring over in-process channels: the algorithm and its copies without a network.
fn local_ring(world: usize) -> Vec<Box<dyn AllReduce + Send>> {
    sovereign_common::collective::local::local_ring(world)
        .into_iter()
        .enumerate()
        .map(|(rank, transport)| {
            Box::new(RingReducer {
                ring: Ring::new(rank, world, WireDtype::F32),
                transport,
            }) as Box<dyn AllReduce + Send>
        })
        .collect()
}

/// Median seconds of one all-reduce of `bytes` of f32, each rank on its own thread; a round
/// takes as long as its slowest rank, and the first (warm-up) round is not counted.
fn median_round(world: usize, bytes: usize, reducers: Vec<Box<dyn AllReduce + Send>>) -> f64 {
    let barrier = Arc::new(Barrier::new(world));
    let threads: Vec<_> = reducers
        .into_iter()
        .enumerate()
        .map(|(rank, mut reducer)| {
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                let mut data = vec![rank as f32; bytes / 4];
                let mut times = Vec::new();
                for _ in 0..=ROUNDS {
                    barrier.wait();
                    let started = Instant::now();
                    reducer.all_reduce_mean(&mut data).unwrap();
                    times.push(started.elapsed().as_secs_f64());
                }
                let mean = (world - 1) as f32 / 2.0;
                assert!(data.iter().all(|&v| (v - mean).abs() < 1e-3), "wrong mean");
                times
            })
        })
        .collect();
    let per_rank: Vec<Vec<f64>> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    // A round takes as long as its slowest rank; skip the warm-up round.
    let mut rounds: Vec<f64> = (1..=ROUNDS)
        .map(|i| per_rank.iter().map(|t| t[i]).fold(0.0, f64::max))
        .collect();
    rounds.sort_by(f64::total_cmp);
    rounds[ROUNDS / 2]
}

/// One rank's links over plain TCP: length-prefixed chunks written straight to the next rank's
/// socket, and a thread reading the previous rank's socket into a channel.
struct TcpTransport {
    next: TcpStream,
    prev: mpsc::Receiver<Bytes>,
}

impl RingTransport for TcpTransport {
    fn send_next(&mut self, chunk: Bytes) -> Result<(), CollectiveError> {
        let length = (chunk.len() as u32).to_le_bytes();
        self.next
            .write_all(&length)
            .and_then(|()| self.next.write_all(&chunk))
            .map_err(|e| CollectiveError::Transport(e.to_string()))
    }

    fn recv_prev(&mut self) -> Result<Bytes, CollectiveError> {
        self.prev
            .recv()
            .map_err(|_| CollectiveError::Transport("the previous rank's socket closed".into()))
    }
}

/// The same ring over plain TCP sockets on loopback, no HTTP/2: what a ring can reach on this
/// machine's cores, with the same chunks and the same reductions.
fn tcp_ring(world: usize) -> Vec<Box<dyn AllReduce + Send>> {
    let listeners: Vec<TcpListener> = (0..world)
        .map(|_| TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    // Rank r dials rank r + 1's listener (the kernel completes it before the accept below).
    let nexts: Vec<TcpStream> = (0..world)
        .map(|rank| {
            let next = TcpStream::connect(listeners[(rank + 1) % world].local_addr().unwrap());
            let next = next.unwrap();
            next.set_nodelay(true).unwrap();
            next
        })
        .collect();
    nexts
        .into_iter()
        .zip(&listeners)
        .enumerate()
        .map(|(rank, (next, listener))| {
            let (mut stream, _) = listener.accept().unwrap();
            let (chunks_in, prev) = mpsc::channel();
            std::thread::spawn(move || {
                let mut length = [0u8; 4];
                while stream.read_exact(&mut length).is_ok() {
                    let mut complete = true;
                    let chunk = chunks::chunk(u32::from_le_bytes(length) as usize, |bytes| {
                        complete = stream.read_exact(bytes).is_ok()
                    });
                    if !complete || chunks_in.send(chunk).is_err() {
                        return;
                    }
                }
            });
            Box::new(RingReducer {
                ring: Ring::new(rank, world, WireDtype::F32),
                transport: TcpTransport { next, prev },
            }) as Box<dyn AllReduce + Send>
        })
        .collect()
}

//! Data parallelism in one process: ranks on threads ([`train_rank`]), each drawing its own
//! shard's micro-batches and averaging gradients through the ring all-reduce, reach the weights
//! of `emulate_world` (one process that takes every rank's micro-batches in rank order).

use std::fs;

use burn::backend::{Autodiff, Flex};
use sovereign_common::collective::local::local_ring;
use sovereign_common::collective::ring::{Ring, RingReducer};
use sovereign_common::train::record::StepRecord;
use sovereign_common::train::run::{Control, RankPlan, train, train_rank};
use sovereign_common::train::settings::RunConfig;
use sovereign_test_support::{max_relative_difference, patterned_tokens, write_tokens};

type A = Autodiff<Flex>;

#[test]
fn ring_replicas_match_the_emulated_world() {
    let dir = tempfile::tempdir().unwrap();
    let data_path = dir.path().join("train.bin");
    write_tokens(&data_path, &patterned_tokens(6000, 16));
    let world = 3;
    let config = RunConfig {
        data: data_path.clone(),
        vocab: Some(16),
        layers: Some(1),
        embd: Some(64),
        seq_len: 16,
        micro_bsz: 2,
        accum: 2,
        steps: 20,
        warmup: Some(2),
        lr: 3e-3,
        min_lr: 3e-4,
        checkpoint_every: 0,
        eval_every: 0,
        out: dir.path().join("emulated"),
        emulate_world: world,
        ..RunConfig::default()
    };
    let last = train::<A>(&config, &Default::default(), &Default::default()).unwrap();
    let emulated = last.join("model.safetensors");

    let handles: Vec<_> = local_ring(world as usize)
        .into_iter()
        .enumerate()
        .map(|(rank, transport)| {
            let config = RunConfig {
                out: dir.path().join(format!("rank{rank}")),
                emulate_world: 1,
                ..config.clone()
            };
            std::thread::spawn(move || {
                fs::create_dir_all(&config.out).unwrap();
                let plan = RankPlan {
                    rank: rank as u32,
                    world,
                    data: config.data.clone(),
                    val_data: config.val_data.clone(),
                    tokenizer: None,
                };
                let mut losses = Vec::new();
                let mut reducer = RingReducer {
                    ring: Ring::new(rank, world as usize, config.wire_dtype),
                    transport,
                };
                let last = train_rank::<A>(
                    &config,
                    plan,
                    None,
                    &mut reducer,
                    &mut |record: StepRecord| {
                        losses.push(record.loss);
                        Ok(Control::Continue)
                    },
                    &Default::default(),
                )
                .unwrap();
                assert_eq!(losses.len(), 20);
                assert_eq!(last.is_some(), rank == 0, "rank 0 alone writes checkpoints");
                last
            })
        })
        .collect();
    // Every rank is joined, so a failed assertion on any of them fails the test.
    let lasts: Vec<Option<std::path::PathBuf>> = handles
        .into_iter()
        .enumerate()
        .map(|(rank, h)| {
            h.join()
                .unwrap_or_else(|_| panic!("rank {rank}'s thread failed"))
        })
        .collect();
    assert_eq!(lasts.len(), world as usize);
    let last = lasts[0].clone().unwrap();
    // Per parameter tensor, ‖Δ‖ / ‖w‖; the float sums differ in order only.
    let worst = max_relative_difference(&last.join("model.safetensors"), &emulated);
    eprintln!("ring replicas vs emulate_world {world}: max relative L2 difference {worst:.2e}");
    assert!(worst <= 1e-5, "max relative difference {worst:e}");
}

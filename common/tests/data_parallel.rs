//! Data parallelism in one process: replicas on threads, each drawing its own shard's
//! micro-batches and averaging gradients through the ring all-reduce, reach the weights of
//! `emulate_world` (one process that takes every rank's micro-batches in rank order), and stay
//! bit-identical to each other.

use std::fs;

use burn::backend::{Autodiff, Flex};
use sovereign_common::collective::bucket::{WireDtype, flatten, unflatten};
use sovereign_common::collective::local::local_ring;
use sovereign_common::collective::ring::{MAX_CHUNK_BYTES, Ring};
use sovereign_common::data::dataset::{TokenDataset, Validation};
use sovereign_common::model::init::init_rwkv;
use sovereign_common::model::rwkv::{ParamRef, Rwkv};
use sovereign_common::model::weights::TensorFile;
use sovereign_common::train::optimizer::AdamW;
use sovereign_common::train::run::{RunConfig, adam_config, rank_windows, train};
use sovereign_common::train::schedule::Schedule;
use sovereign_common::train::step::{apply_step, step_gradients};

type A = Autodiff<Flex>;

fn weights(model: &Rwkv<A>) -> Vec<(String, Vec<f32>)> {
    model
        .named_params()
        .into_iter()
        .map(|(name, p)| {
            let values = match p {
                ParamRef::Vector(p) => p.val().into_data().to_vec::<f32>(),
                ParamRef::Matrix(p) => p.val().into_data().to_vec::<f32>(),
            };
            (name, values.unwrap())
        })
        .collect()
}

#[test]
fn ring_replicas_match_the_emulated_world() {
    let dir = tempfile::tempdir().unwrap();
    let data_path = dir.path().join("train.bin");
    let ids: Vec<u8> = (0..6000u32)
        .flat_map(|i| (((i * 7 + i / 11) % 16) as u16).to_le_bytes())
        .collect();
    fs::write(&data_path, ids).unwrap();
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
        warmup: 2,
        lr: 3e-3,
        min_lr: 3e-4,
        checkpoint_every: 0,
        eval_every: 0,
        out: dir.path().join("emulated"),
        emulate_world: world,
        ..RunConfig::default()
    };
    let last = train::<A>(&config, &Default::default()).unwrap();
    let emulated = TensorFile::read(&last.join("model.safetensors")).unwrap();

    let handles: Vec<_> = local_ring(world as usize)
        .into_iter()
        .enumerate()
        .map(|(rank, mut transport)| {
            let config = config.clone();
            std::thread::spawn(move || {
                let device = Default::default();
                let data = TokenDataset::open(&config.data, Some(16), Validation::Full).unwrap();
                let model_config = config.model_config(16).unwrap();
                let mut model = init_rwkv::<A>(&model_config, config.seed, &device);
                let mut optimizer = AdamW::new(adam_config(&config));
                let schedule = Schedule {
                    lr: config.lr,
                    min_lr: config.min_lr,
                    warmup: config.warmup,
                    total: config.steps,
                };
                let ring = Ring {
                    rank,
                    world: world as usize,
                    wire: WireDtype::F32,
                    chunk_bytes: MAX_CHUNK_BYTES,
                };
                for step in 0..config.steps {
                    let batches = rank_windows(&config, &data, rank as u32, world, step).unwrap();
                    let (grads, loss) =
                        step_gradients(&model, &model_config, step + 1, &batches, &device).unwrap();
                    let (mut flat, layout) = flatten(&grads);
                    ring.all_reduce_mean(&mut flat, &mut transport).unwrap();
                    let grads = unflatten(&flat, &layout, &device);
                    model = apply_step(model, &mut optimizer, grads, loss, schedule.lr_at(step))
                        .unwrap()
                        .0;
                }
                weights(&model)
            })
        })
        .collect();
    let replicas: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    assert!(
        replicas.iter().all(|r| r == &replicas[0]),
        "replicas must stay bit-identical"
    );
    // Per parameter tensor, ‖Δ‖ / ‖w‖; the float sums differ in order only.
    let mut worst = 0f64;
    for (name, ours) in &replicas[0] {
        let reference = emulated.get(name, ours.len()).unwrap();
        let norm = |x: &mut dyn Iterator<Item = f64>| x.map(|v| v * v).sum::<f64>().sqrt();
        let diff = norm(&mut ours.iter().zip(reference).map(|(&a, &b)| f64::from(a - b)));
        let scale = norm(&mut reference.iter().map(|&b| f64::from(b)));
        worst = worst.max(diff / scale.max(1e-12));
    }
    eprintln!("ring replicas vs emulate_world {world}: max relative L2 difference {worst:.2e}");
    assert!(worst <= 1e-5, "max relative difference {worst:e}");
}

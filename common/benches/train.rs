//! Training, generation and matmul speed (not a test): bench/train.sh runs it on the CPU next to
//! the same model in PyTorch and prints the ratios; bench/gpu.sh runs it on a GPU. One JSON object
//! per run, on `--device cpu|cuda:N|wgpu:N` (cpu by default; GPUs need the `cuda`/`wgpu`
//! features):
//!
//! - `matmul N`: the fp32 rate of an N × N × N product on the same backend, in GFLOP/s;
//! - `step MODEL T B STEPS [checkpointing]`: the median training step (forward, loss, backward,
//!   clipping, AdamW) of a named size at V = 32000 on random tokens, its tokens/s, the model
//!   FLOP/s (6 × matmul parameters × tokens/s) and the process's peak RSS; with
//!   `checkpointing`, under Burn's balanced activation checkpointing (`--activation-checkpointing`);
//! - `generate MODEL TOKENS`: recurrent generation speed after a one-token prompt;
//! - `wkv B H T`: the WKV operation alone (layer form) on B sequences of H heads and T steps: the median
//!   forward and backward times.

use std::time::Instant;

use burn::prelude::*;
use sovereign_common::device::Device;
use sovereign_common::model::RwkvBackend;
use sovereign_common::model::config::HEAD_SIZE;
use sovereign_common::model::config::ModelConfig;
use sovereign_common::model::dropout::Dropout;
use sovereign_common::model::generate::{GenerateOptions, Sampling, generate};
use sovereign_common::model::init::init_rwkv;
use sovereign_common::model::wkv::{WkvKernel, WkvLayerInputs};
use sovereign_common::train::backend::TrainBackend;
use sovereign_common::train::optimizer::{AdamW, AdamWConfig};
use sovereign_common::train::step::{apply_step, step_gradients};
use sovereign_common::{with_backend, with_training_backend};

const VOCAB: usize = 32_000;

/// The allocator the binaries run on (common/src/allocator.rs), so that timings are theirs.
#[global_allocator]
static ALLOCATOR: sovereign_common::allocator::MiMalloc = sovereign_common::allocator::MiMalloc;

fn main() {
    sovereign_common::allocator::keep_freed_memory();
    match run() {
        Ok(result) => println!("{result}"),
        Err(e) => {
            eprintln!("{e:#}");
            std::process::exit(1)
        }
    }
}

fn run() -> anyhow::Result<String> {
    let raw: Vec<String> = std::env::args().skip(1).collect();
    // `--device D` picks the backend (cpu by default); other `--` flags are cargo's.
    let device = match raw.iter().position(|a| a == "--device") {
        Some(i) => Device::parse(raw.get(i + 1).map_or("", |s| s)).map_err(anyhow::Error::msg)?,
        None => Device::Cpu,
    };
    let args: Vec<&str> = raw
        .iter()
        .enumerate()
        .filter(|(i, a)| !a.starts_with("--") && (*i == 0 || raw[i - 1] != "--device"))
        .map(|(_, a)| a.as_str())
        .collect();
    let arg = |i: usize| -> usize {
        args.get(i)
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| usage())
    };
    let model = || {
        ModelConfig::named(args.get(1).copied().unwrap_or(""), VOCAB)
            .unwrap_or_else(|e| panic!("{e}"))
    };
    Ok(match args.first().copied() {
        Some("matmul") => with_backend!(device, |B, dev| matmul::<B>(arg(1), &dev)),
        Some("step") => {
            let checkpointing = args.get(5).is_some_and(|a| *a == "checkpointing");
            with_training_backend!(device, checkpointing, |A, dev| {
                step::<A>(model(), arg(2), arg(3), arg(4), &dev)
            })
        }
        Some("generate") => with_backend!(device, |B, dev| generation::<B>(model(), arg(2), &dev)),
        Some("wkv") => with_backend!(device, |B, dev| wkv::<B>(arg(1), arg(2), arg(3), &dev)),
        _ => usage(),
    })
}

fn usage() -> ! {
    eprintln!(
        "usage: cargo bench -p sovereign-common --bench train -- \
         (matmul N | step MODEL T B STEPS [checkpointing] | generate MODEL TOKENS | wkv B H T) \
         [--device cpu|cuda:N|wgpu:N]"
    );
    std::process::exit(2)
}

/// Matmul parameters: the head, the four time-mix and two channel-mix matrices, the LoRAs.
fn matmul_params(config: &ModelConfig) -> usize {
    let (c, d) = (config.embd, config.lora());
    config.vocab * c + config.layers * (12 * c * c + 2 * c * (d.w + d.a + d.v + d.g))
}

/// The peak resident set of this process, from /proc (0 where there is none).
fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

/// The best of six N × N × N products (after one untimed, which also runs any autotuning).
fn matmul<B: Backend>(n: usize, device: &B::Device) -> String {
    let x = Tensor::<B, 2>::random([n, n], burn::tensor::Distribution::Default, device);
    let y = Tensor::<B, 2>::random([n, n], burn::tensor::Distribution::Default, device);
    let _ = x.clone().matmul(y.clone()).into_data();
    let mut best = f64::MAX;
    for _ in 0..6 {
        let start = Instant::now();
        let z = x.clone().matmul(y.clone());
        B::sync(device).unwrap_or_else(|e| panic!("{e:?}"));
        best = best.min(start.elapsed().as_secs_f64());
        drop(z);
    }
    format!(
        r#"{{"gflops": {:.1}}}"#,
        2.0 * (n as f64).powi(3) / best / 1e9
    )
}

fn step<T: TrainBackend>(
    config: ModelConfig,
    t: usize,
    b: usize,
    steps: usize,
    device: &T::Device,
) -> String {
    let mut model = init_rwkv::<T>(&config, 1, device);
    let mut optimizer = AdamW::new(AdamWConfig::default());
    let mut state = 0x5eed_u64;
    let mut token = || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((state >> 33) % VOCAB as u64) as u16
    };
    let micro = vec![
        (0..b)
            .map(|_| (0..=t).map(|_| token()).collect())
            .collect::<Vec<Vec<u16>>>(),
    ];
    let mut times = Vec::new();
    for i in 0..steps + 2 {
        let start = Instant::now();
        let (grads, _) = step_gradients(&model, &config, 1, &micro, Dropout::NONE, device)
            .unwrap_or_else(|e| panic!("{e}"));
        (model, _) =
            apply_step(model, &mut optimizer, grads, 1e-4).unwrap_or_else(|e| panic!("{e}"));
        if i >= 2 {
            times.push(start.elapsed().as_secs_f64());
        }
    }
    let median = median(times);
    let tokens_per_s = (b * t) as f64 / median;
    format!(
        r#"{{"params": {}, "matmul_params": {}, "step_s": {median:.4}, "tokens_per_s": {tokens_per_s:.1}, "model_gflops": {:.1}, "peak_rss_mb": {:.0}}}"#,
        config.parameter_count(),
        matmul_params(&config),
        6.0 * matmul_params(&config) as f64 * tokens_per_s / 1e9,
        peak_rss_mb()
    )
}

/// The median of timings (the upper one of an even count).
fn median(mut seconds: Vec<f64>) -> f64 {
    seconds.sort_by(f64::total_cmp);
    seconds[seconds.len() / 2]
}

fn generation<B: RwkvBackend>(config: ModelConfig, tokens: usize, device: &B::Device) -> String {
    let model = init_rwkv::<B>(&config, 1, device);
    let options = GenerateOptions {
        max_tokens: tokens,
        sampling: Sampling {
            temperature: 1.0,
            top_p: 1.0,
        },
        seed: 1,
        stop: None,
    };
    let start = Instant::now();
    let produced =
        generate(&model, &config, &[5], options, device, |_| {}).unwrap_or_else(|e| panic!("{e}"));
    let seconds = start.elapsed().as_secs_f64();
    format!(
        r#"{{"tokens": {produced}, "tokens_per_s": {:.1}}}"#,
        produced as f64 / seconds
    )
}

fn wkv<B: WkvKernel>(b: usize, heads: usize, t: usize, device: &B::Device) -> String {
    let inputs = WkvLayerInputs::random(b, t, heads, device);
    let state = Tensor::<B, 4>::zeros([b, heads, HEAD_SIZE, HEAD_SIZE], device);
    let dy = Tensor::<B, 3>::random(
        [b, t, heads * HEAD_SIZE],
        burn::tensor::Distribution::Uniform(-1.0, 1.0),
        device,
    );
    let (mut forward, mut backward) = (Vec::new(), Vec::new());
    for i in 0..7 {
        let start = Instant::now();
        let out = B::wkv_layer_forward(&inputs, state.clone());
        B::sync(device).unwrap_or_else(|e| panic!("{e:?}"));
        let middle = Instant::now();
        let grads = B::wkv_layer_backward(&inputs, out.snapshots, dy.clone());
        B::sync(device).unwrap_or_else(|e| panic!("{e:?}"));
        drop(grads);
        if i >= 2 {
            forward.push((middle - start).as_secs_f64());
            backward.push(middle.elapsed().as_secs_f64());
        }
    }
    format!(
        r#"{{"forward_ms": {:.3}, "backward_ms": {:.3}}}"#,
        1e3 * median(forward),
        1e3 * median(backward)
    )
}

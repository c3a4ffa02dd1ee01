//! Training, generation and matmul speed on the CPU backend (not a test): bench/train.sh runs it
//! next to the same model in PyTorch and prints the ratios. One JSON object per run:
//!
//! - `matmul N`: the fp32 rate of an N × N × N product on Burn's flex backend, in GFLOP/s;
//! - `step MODEL T B STEPS [checkpointing]`: the median training step (forward, loss, backward,
//!   clipping, AdamW) of a named size at V = 32000 on random tokens, its tokens/s, the model
//!   FLOP/s (6 × matmul parameters × tokens/s) and the process's peak RSS; with
//!   `checkpointing`, under Burn's balanced activation checkpointing (`--activation-checkpointing`);
//! - `generate MODEL TOKENS`: recurrent generation speed after a one-token prompt.

use std::time::Instant;

use burn::backend::autodiff::checkpoint::strategy::BalancedCheckpointing;
use burn::backend::{Autodiff, Flex};
use burn::prelude::*;
use sovereign_common::model::config::ModelConfig;
use sovereign_common::model::generate::{GenerateOptions, Sampling, generate};
use sovereign_common::model::init::init_rwkv;
use sovereign_common::model::wkv::TrainBackend;
use sovereign_common::train::optimizer::{AdamW, AdamWConfig};
use sovereign_common::train::step::train_step;

type A = Autodiff<Flex>;
type Balanced = Autodiff<Flex, BalancedCheckpointing>;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const VOCAB: usize = 32_000;

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let arg = |i: usize| -> usize {
        args.get(i)
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| usage())
    };
    let model = || {
        ModelConfig::named(args.get(1).map_or("", |s| s), VOCAB).unwrap_or_else(|e| panic!("{e}"))
    };
    let result = match args.first().map(String::as_str) {
        Some("matmul") => matmul(arg(1)),
        Some("step") if args.get(5).is_some_and(|a| a == "checkpointing") => {
            step::<Balanced>(model(), arg(2), arg(3), arg(4))
        }
        Some("step") => step::<A>(model(), arg(2), arg(3), arg(4)),
        Some("generate") => generation(model(), arg(2)),
        _ => usage(),
    };
    println!("{result}");
}

fn usage() -> ! {
    eprintln!(
        "usage: cargo bench -p sovereign-common --bench train -- \
         (matmul N | step MODEL T B STEPS [checkpointing] | generate MODEL TOKENS)"
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

fn matmul(n: usize) -> String {
    let device = Default::default();
    let x = Tensor::<Flex, 2>::random([n, n], burn::tensor::Distribution::Default, &device);
    let y = Tensor::<Flex, 2>::random([n, n], burn::tensor::Distribution::Default, &device);
    let mut best = f64::MAX;
    for _ in 0..6 {
        let start = Instant::now();
        let z = x.clone().matmul(y.clone());
        let _ = z.into_data();
        best = best.min(start.elapsed().as_secs_f64());
    }
    format!(
        r#"{{"gflops": {:.1}}}"#,
        2.0 * (n as f64).powi(3) / best / 1e9
    )
}

fn step<T: TrainBackend>(config: ModelConfig, t: usize, b: usize, steps: usize) -> String {
    let device = Default::default();
    let mut model = init_rwkv::<T>(&config, 1, &device);
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
        let (next, _) = train_step(model, &config, &mut optimizer, &micro, 1e-4, &device)
            .unwrap_or_else(|e| panic!("{e}"));
        model = next;
        if i >= 2 {
            times.push(start.elapsed().as_secs_f64());
        }
    }
    times.sort_by(f64::total_cmp);
    let median = times[times.len() / 2];
    let tokens_per_s = (b * t) as f64 / median;
    format!(
        r#"{{"params": {}, "matmul_params": {}, "step_s": {median:.4}, "tokens_per_s": {tokens_per_s:.1}, "model_gflops": {:.1}, "peak_rss_mb": {:.0}}}"#,
        config.parameter_count(),
        matmul_params(&config),
        6.0 * matmul_params(&config) as f64 * tokens_per_s / 1e9,
        peak_rss_mb()
    )
}

fn generation(config: ModelConfig, tokens: usize) -> String {
    let device = Default::default();
    let model = init_rwkv::<Flex>(&config, 1, &device);
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
        generate(&model, &config, &[5], options, &device, |_| {}).unwrap_or_else(|e| panic!("{e}"));
    let seconds = start.elapsed().as_secs_f64();
    format!(
        r#"{{"tokens": {produced}, "tokens_per_s": {:.1}}}"#,
        produced as f64 / seconds
    )
}

//! Loads a web-rwkv `.st` file with web-rwkv on the first wgpu adapter (lavapipe on a machine
//! without a GPU), runs `TOKENS` (comma-separated ids) through it from a zero state, and writes
//! every position's logits as float32 little-endian bytes to `OUTPUT`.
//!
//! usage: web-rwkv-check MODEL.st TOKENS OUTPUT

use anyhow::{Context as _, Result, bail};
use half::f16;
use safetensors::SafeTensors;
use web_rwkv::context::{ContextBuilder, InstanceExt};
use web_rwkv::runtime::infer::{Rnn, RnnInput, RnnInputBatch, RnnOption};
use web_rwkv::runtime::loader::Loader;
use web_rwkv::runtime::model::{ContextAutoLimits, ModelBuilder, ModelVersion};
use web_rwkv::runtime::{TokioRuntime, v7};

#[tokio::main]
async fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [model, tokens, output] = args.as_slice() else {
        bail!("usage: web-rwkv-check MODEL.st TOKENS OUTPUT");
    };
    let tokens: Vec<u32> = tokens
        .split(',')
        .map(|t| t.parse().context("a token id"))
        .collect::<Result<_>>()?;
    let data = std::fs::read(model).with_context(|| format!("reading {model}"))?;
    let tensors = SafeTensors::deserialize(&data)?;
    let info = Loader::info(&tensors)?;
    if info.version != ModelVersion::V7 {
        bail!("{model} is web-rwkv's {:?}, not V7", info.version);
    }
    let instance = wgpu::Instance::default();
    let adapter = instance
        .adapter(wgpu::PowerPreference::HighPerformance)
        .await?;
    eprintln!("adapter: {:?}", adapter.get_info());
    let context = ContextBuilder::new(adapter)
        .auto_limits(&info)
        .build()
        .await?;
    let model = ModelBuilder::new(&context, tensors).build_v7().await?;
    let runtime = TokioRuntime::<Rnn>::new(v7::Bundle::<f16>::new(model, 1)).await;
    let count = tokens.len();
    let mut input = RnnInput::new(vec![RnnInputBatch::new(tokens, RnnOption::Full)], 128);
    let mut logits: Vec<f32> = Vec::new();
    while logits.len() < count * info.num_vocab {
        let (rest, out) = runtime.infer(input).await?;
        input = rest;
        logits.extend(out[0].0.to_vec());
    }
    let bytes: Vec<u8> = logits.iter().flat_map(|x| x.to_le_bytes()).collect();
    std::fs::write(output, bytes).with_context(|| format!("writing {output}"))?;
    eprintln!("web-rwkv: {count} positions × {} logits", info.num_vocab);
    // Exit without tearing down web-rwkv's runtime and the wgpu device: on lavapipe that
    // teardown once aborted the process ("double free or corruption") after the logits were
    // written, failing a check whose work was done. The OS reclaims everything.
    std::process::exit(0)
}

//! `sovereign test-model` and `sovereign generate`: a trained model, on the CPU backend; and
//! the loading of weights they share with `export`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, anyhow};
use burn::backend::Flex;
use sovereign_common::data::dataset::{TokenDataset, Validation};
use sovereign_common::model::config::ModelConfig;
use sovereign_common::model::generate::{
    GenerateOptions, Sampling, evaluate, generate as sample_tokens, logits,
};
use sovereign_common::model::rwkv::Rwkv;
use sovereign_common::model::weights::{TensorFile, load_rwkv};
use sovereign_common::output::{AtomicFile, refuse_inputs};
use sovereign_common::tokenizer::Tokenizer;
use sovereign_common::tokenizer::utf8_stream::Utf8Stream;
use sovereign_common::train::checkpoint::{read_meta, verify_checkpoint, verify_weights_file};
use sovereign_common::train::resume::stored_config;

use crate::cli::{GenerateArgs, TestModelArgs, WeightsArgs};

/// Inference runs without autodiff.
type Cpu = Flex;

/// The weights file a `--checkpoint`/`--weights` pair points at, its checksum checked against
/// the checkpoint's meta.json (required for `--checkpoint`, used when beside `--weights`).
pub(super) fn weights_path(source: &WeightsArgs) -> Result<PathBuf> {
    let path = match (&source.checkpoint, &source.weights) {
        (Some(dir), _) => {
            verify_checkpoint(dir).map_err(anyhow::Error::msg)?;
            dir.join("model.safetensors")
        }
        (None, Some(file)) => file.clone(),
        (None, None) => return Err(anyhow!("give --checkpoint DIR or --weights FILE")),
    };
    verify_weights_file(&path).map_err(anyhow::Error::msg)?;
    Ok(path)
}

pub(super) fn load(source: &WeightsArgs) -> Result<(Rwkv<Cpu>, ModelConfig)> {
    let path = weights_path(source)?;
    let file = TensorFile::read(&path).map_err(anyhow::Error::msg)?;
    let (model, config) =
        load_rwkv::<Cpu>(&file, &Default::default()).map_err(anyhow::Error::msg)?;
    tracing::info!(
        "{}: {} layers, width {}, vocabulary {}, {} parameters",
        path.display(),
        config.layers,
        config.embd,
        config.vocab,
        config.parameter_count()
    );
    Ok((model, config))
}

/// `sovereign test-model`.
pub fn test_model(args: &TestModelArgs) -> Result<()> {
    if args.seq_len == 0 || !args.seq_len.is_multiple_of(16) {
        anyhow::bail!(
            "--seq-len {} must be a positive multiple of 16",
            args.seq_len
        );
    }
    let (model, config) = load(&args.source)?;
    let data = TokenDataset::open(&args.data, Some(config.vocab as u32), Validation::Full)
        .map_err(anyhow::Error::msg)?;
    let result = evaluate(
        &model,
        &config,
        &data,
        args.seq_len,
        args.batch.max(1),
        &Default::default(),
    )
    .map_err(anyhow::Error::msg)?;
    if let Some(path) = &args.logits {
        refuse_inputs(&[path], &[&args.data, &weights_path(&args.source)?])?;
        let tokens = data.tokens(0, args.seq_len as u64);
        let values =
            logits(&model, &config, &tokens, &Default::default()).map_err(anyhow::Error::msg)?;
        write_npy(path, &values, [args.seq_len, config.vocab])
            .with_context(|| format!("writing {}", path.display()))?;
    }
    if args.json {
        println!("{}", serde_json::to_string(&result)?);
    } else {
        println!(
            "loss {:.4}, perplexity {:.2}, tokens {}",
            result.loss, result.perplexity, result.tokens
        );
    }
    Ok(())
}

/// The tokenizer for generation: `--tokenizer`, or the one the checkpoint's run config names.
fn tokenizer_for(args: &GenerateArgs) -> Result<Tokenizer> {
    let path = match (&args.tokenizer, &args.source.checkpoint) {
        (Some(path), _) => path.clone(),
        (None, Some(dir)) => run_tokenizer(dir)?,
        (None, None) => anyhow::bail!("--weights needs --tokenizer"),
    };
    Tokenizer::from_file(&path).map_err(anyhow::Error::msg)
}

/// The tokenizer that `checkpoint`'s run names.
pub(super) fn run_tokenizer(checkpoint: &Path) -> Result<PathBuf> {
    let meta = read_meta(checkpoint).map_err(anyhow::Error::msg)?;
    stored_config(checkpoint, &meta)
        .map_err(anyhow::Error::msg)?
        .tokenizer
        .ok_or_else(|| {
            anyhow!(
                "{}'s run names no tokenizer; pass --tokenizer",
                checkpoint.display()
            )
        })
}

/// `sovereign generate`.
pub fn generate(args: &GenerateArgs) -> Result<()> {
    let tokenizer = tokenizer_for(args)?;
    let (model, config) = load(&args.source)?;
    if tokenizer.vocab_size() != config.vocab {
        anyhow::bail!(
            "the tokenizer has {} tokens but the model {}; use the tokenizer the model was trained with",
            tokenizer.vocab_size(),
            config.vocab
        );
    }
    let prompt = tokenizer.encode(&args.prompt, false);
    let options = GenerateOptions {
        max_tokens: args.max_tokens,
        sampling: Sampling {
            temperature: args.temperature,
            top_p: args.top_p,
        },
        seed: args.seed,
        stop: tokenizer.eos_id(),
    };
    let mut out = std::io::stdout().lock();
    write!(out, "{}", args.prompt)?;
    let mut text = Utf8Stream::default();
    let start = Instant::now();
    let count = sample_tokens(
        &model,
        &config,
        &prompt,
        options,
        &Default::default(),
        |token| {
            if Some(token) == options.stop {
                return;
            }
            // Every token is printed: an invalid UTF-8 sequence as U+FFFD, as HuggingFace
            // decodes it; only an unfinished character waits for the next token.
            let piece = text.push(&tokenizer.decode_bytes(&[token], true));
            let _ = out.write_all(piece.as_bytes());
            let _ = out.flush();
        },
    )
    .map_err(anyhow::Error::msg)?;
    writeln!(out, "{}", text.finish())?;
    let secs = start.elapsed().as_secs_f64().max(1e-9);
    eprintln!(
        "generate: {count} tokens in {secs:.2}s, {:.1} tokens/s",
        count as f64 / secs
    );
    Ok(())
}

/// Writes `values` as a little-endian float32 `.npy` array of `shape`, atomically.
fn write_npy(path: &Path, values: &[f32], shape: [usize; 2]) -> std::io::Result<()> {
    let mut header = format!(
        "{{'descr': '<f4', 'fortran_order': False, 'shape': ({}, {}), }}",
        shape[0], shape[1]
    );
    // The magic, version, length and header together are a multiple of 64 bytes, ending in \n.
    let unpadded = 10 + header.len() + 1;
    header.push_str(&" ".repeat(unpadded.next_multiple_of(64) - unpadded));
    header.push('\n');
    let mut file = AtomicFile::create(path)?;
    file.write_all(b"\x93NUMPY\x01\x00")?;
    file.write_all(&(header.len() as u16).to_le_bytes())?;
    file.write_all(header.as_bytes())?;
    let bytes: Vec<u8> = values.iter().flat_map(|x| x.to_le_bytes()).collect();
    file.write_all(&bytes)?;
    file.commit()
}

//! `sovereign export`: a model's weights in the format of the runtime asked for, with a model
//! card that says what the run's checkpoint knows of it.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use sovereign_common::data::dataset::{TokenDataset, Validation};
use sovereign_common::export::card::ModelCard;
use sovereign_common::export::{self, ExportFormat, ExportSource};
use sovereign_common::model::weights::{ExportDtype, rwkv_tensors};
use sovereign_common::output::refuse_inputs;
use sovereign_common::tokenizer::Tokenizer;
use sovereign_common::train::checkpoint::read_meta;
use sovereign_common::train::record::{METRICS_FILE, read_metrics};
use sovereign_common::train::resume::stored_config;

use super::infer::{load, run_tokenizer, weights_path};
use crate::cli::{self, ExportArgs};

/// `sovereign export`.
pub fn export(args: &ExportArgs) -> Result<()> {
    let weights = weights_path(&args.source)?;
    refuse_inputs(&[&args.output], &[&weights])?;
    let (model, config) = load(&args.source)?;
    let tokenizer_path = match (&args.tokenizer, &args.source.checkpoint) {
        (Some(path), _) => Some(path.clone()),
        (None, Some(dir)) => run_tokenizer(dir).ok(),
        (None, None) => None,
    };
    let tokenizer = tokenizer_path
        .as_deref()
        .map(Tokenizer::from_file)
        .transpose()
        .map_err(anyhow::Error::msg)?;
    if let Some(tokenizer) = &tokenizer
        && tokenizer.vocab_size() != config.vocab
    {
        anyhow::bail!(
            "the tokenizer has {} ids but the model {}; pass the tokenizer the model was trained \
             with",
            tokenizer.vocab_size(),
            config.vocab
        );
    }
    let format = match args.format {
        cli::ExportFormat::Safetensors => ExportFormat::Safetensors,
        cli::ExportFormat::Pth => ExportFormat::Pth,
        cli::ExportFormat::Gguf => ExportFormat::Gguf,
        cli::ExportFormat::St => ExportFormat::WebRwkv,
        cli::ExportFormat::Hf => ExportFormat::Hf,
    };
    let dtype = match args.dtype {
        cli::ExportDtype::F32 => ExportDtype::F32,
        cli::ExportDtype::Bf16 => ExportDtype::Bf16,
        cli::ExportDtype::F16 => ExportDtype::F16,
    };
    let card = model_card(
        &weights,
        args.source.checkpoint.as_deref(),
        tokenizer.as_ref(),
        tokenizer_path.as_deref(),
    );
    let source = ExportSource {
        tensors: rwkv_tensors(&model).map_err(anyhow::Error::msg)?,
        config,
        tokenizer: tokenizer.as_ref().zip(tokenizer_path.as_deref()),
        card,
    };
    let written = export::export(&source, format, dtype, &args.output)
        .with_context(|| format!("export --format {}", format.name()))?;
    for file in written {
        eprintln!("export: wrote {}", file.display());
    }
    Ok(())
}

/// What the card can say: everything from the checkpoint's run when exporting a checkpoint,
/// only the weights file and tokenizer otherwise.
fn model_card(
    weights: &Path,
    checkpoint: Option<&Path>,
    tokenizer: Option<&Tokenizer>,
    tokenizer_path: Option<&Path>,
) -> ModelCard {
    let mut card = ModelCard {
        source: weights.display().to_string(),
        tokenizer: tokenizer.zip(tokenizer_path).map(|(t, path)| {
            format!(
                "{} (`{}`)",
                t.kind().name(),
                path.file_name().map_or(path.display().to_string(), |n| n
                    .to_string_lossy()
                    .into_owned())
            )
        }),
        ..ModelCard::default()
    };
    let Some(dir) = checkpoint else {
        return card;
    };
    card.source = dir.display().to_string();
    let Ok(meta) = read_meta(dir) else {
        return card;
    };
    card.steps = Some(meta.step);
    card.tokens_seen = Some(meta.tokens_seen);
    let Ok(config) = stored_config(dir, &meta) else {
        return card;
    };
    card.data = Some(config.data.display().to_string());
    card.init_from = Some(
        config
            .init_from
            .as_ref()
            .map_or("a fresh initialization".into(), |p| p.display().to_string()),
    );
    let run_dir = dir.parent().map_or(PathBuf::from("."), Path::to_path_buf);
    card.val_loss = read_metrics(&run_dir.join(METRICS_FILE))
        .ok()
        .and_then(|records| {
            records
                .iter()
                .rev()
                .filter(|r| r.step <= meta.step)
                .find_map(|r| r.val_loss)
        });
    if let (Some(loss), Some(val), Some(tokenizer)) = (card.val_loss, &config.val_data, tokenizer) {
        card.bits_per_byte = bits_per_byte(loss, val, tokenizer);
    }
    card
}

/// `loss` (nats per token) in bits per byte of `val`'s text: loss × tokens ÷ bytes ÷ ln 2, the
/// bytes being what the tokenizer decodes the ids to.
fn bits_per_byte(loss: f64, val: &Path, tokenizer: &Tokenizer) -> Option<f64> {
    let data =
        TokenDataset::open(val, Some(tokenizer.vocab_size() as u32), Validation::Ids).ok()?;
    let ids: Vec<u32> = data
        .tokens(0, data.len_tokens())
        .into_iter()
        .map(u32::from)
        .collect();
    let bytes = tokenizer.decode_bytes(&ids, true).len();
    (bytes > 0).then(|| loss * ids.len() as f64 / bytes as f64 / std::f64::consts::LN_2)
}

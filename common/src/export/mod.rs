//! Exports of a model to the tools people run RWKV-7 with, each beside a model card
//! ([`card`]):
//! - `safetensors`: RWKV-LM's names and shapes (Sovereign's own checkpoint layout);
//! - `pth`: the same tensors as `torch.save` writes them, which the `rwkv` package loads;
//! - `gguf`: llama.cpp's `rwkv7` architecture with the World vocabulary ([`gguf`]);
//! - `st`: web-rwkv/ai00's safetensors layout ([`web_rwkv`]);
//! - `hf`: a HuggingFace directory in flash-linear-attention's `RWKV7ForCausalLM` layout
//!   ([`hf`]).

pub mod card;
pub mod gguf;
pub mod hf;
pub mod web_rwkv;

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::model::config::ModelConfig;
use crate::model::pth::{PthDtype, PthEntry, write_pth};
use crate::model::weights::{ExportDtype, NamedTensor, encode_values, save_safetensors};
use crate::output::AtomicFile;
use crate::tokenizer::Tokenizer;

/// The formats `sovereign export` writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExportFormat {
    /// RWKV-LM names and shapes in one safetensors file.
    Safetensors,
    /// A PyTorch checkpoint as released RWKV-7 files are.
    Pth,
    /// llama.cpp's GGUF.
    Gguf,
    /// web-rwkv/ai00's safetensors.
    WebRwkv,
    /// A HuggingFace directory for flash-linear-attention.
    Hf,
}

impl ExportFormat {
    /// The name `--format` takes.
    pub fn name(self) -> &'static str {
        match self {
            Self::Safetensors => "safetensors",
            Self::Pth => "pth",
            Self::Gguf => "gguf",
            Self::WebRwkv => "st",
            Self::Hf => "hf",
        }
    }
}

/// An export that cannot be written.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// The model's tensors are not what the format needs.
    #[error("{0}")]
    Model(String),
    /// The tokenizer cannot be carried into this format.
    #[error("{0}")]
    Tokenizer(String),
    /// Writing failed.
    #[error("writing {path}: {error}")]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        error: std::io::Error,
    },
    /// A README.md that Sovereign did not write is where the model card would go.
    #[error(
        "{0} exists and is not a Sovereign model card; export into a directory of its own \
         (the card is written as README.md beside the weights)"
    )]
    ForeignReadme(PathBuf),
}

/// What an export writes from: the model, its tokenizer (if known) and its card.
pub struct ExportSource<'a> {
    /// The model's tensors in RWKV-LM names and shapes.
    pub tensors: Vec<NamedTensor>,
    /// The model's shape.
    pub config: ModelConfig,
    /// The tokenizer the model reads, with its file.
    pub tokenizer: Option<(&'a Tokenizer, &'a Path)>,
    /// The model card's facts.
    pub card: card::ModelCard,
}

/// Writes `source` as `format` to `output` (a file; a directory for `hf`), with README.md (the
/// model card) beside it; every file is written whole or not at all. Returns the files written.
pub fn export(
    source: &ExportSource<'_>,
    format: ExportFormat,
    dtype: ExportDtype,
    output: &Path,
) -> Result<Vec<PathBuf>, ExportError> {
    let write_error = |path: &Path| {
        let path = path.to_path_buf();
        move |error| ExportError::Write { path, error }
    };
    let card_dir = match format {
        ExportFormat::Hf => output.to_path_buf(),
        _ => match output.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
            _ => PathBuf::from("."),
        },
    };
    let card_path = card_dir.join("README.md");
    card::refuse_foreign(&card_path)?;
    let mut written = match format {
        ExportFormat::Safetensors => {
            save_safetensors(&source.tensors, output, dtype).map_err(write_error(output))?;
            vec![output.to_path_buf()]
        }
        ExportFormat::Pth => {
            write_file(output, &pth_bytes(&source.tensors, output, dtype)?)?;
            vec![output.to_path_buf()]
        }
        ExportFormat::Gguf => {
            let world = world_tokenizer(source, "GGUF")?;
            let name = output.file_stem().map_or("sovereign-rwkv7".into(), |s| {
                s.to_string_lossy().into_owned()
            });
            let bytes = gguf::gguf_bytes(&source.tensors, &source.config, world, &name, dtype)?;
            write_file(output, &bytes)?;
            vec![output.to_path_buf()]
        }
        ExportFormat::WebRwkv => {
            web_rwkv::save(&source.tensors, output).map_err(write_error(output))?;
            vec![output.to_path_buf()]
        }
        ExportFormat::Hf => hf::save(source, output, dtype)?,
    };
    let text = card::render(&source.card, &source.config, format, &written);
    write_file(&card_path, text.as_bytes())?;
    written.push(card_path);
    Ok(written)
}

/// The World vocabulary of `source`, which `format` embeds; any other tokenizer is refused.
fn world_tokenizer<'a>(
    source: &'a ExportSource<'_>,
    format: &str,
) -> Result<&'a crate::tokenizer::World, ExportError> {
    match source.tokenizer {
        Some((Tokenizer::World(world), _)) => Ok(world),
        Some((Tokenizer::Bpe(_), path)) => Err(ExportError::Tokenizer(format!(
            "{}: a {format} export embeds its tokenizer, and llama.cpp cannot tokenize \
             Sovereign's BPE identically (its pre-tokenizer regex is none of the ones llama.cpp \
             knows); export a model trained on the World vocabulary (rwkv_vocab_v20230424.txt), \
             or use --format safetensors, pth or hf",
            path.display()
        ))),
        None => Err(ExportError::Tokenizer(format!(
            "a {format} export embeds the tokenizer: pass --tokenizer rwkv_vocab_v20230424.txt \
             (or export a --checkpoint whose run names it)"
        ))),
    }
}

/// The `.pth` bytes: the tensors under their RWKV-LM names, one storage each.
fn pth_bytes(
    tensors: &[NamedTensor],
    output: &Path,
    dtype: ExportDtype,
) -> Result<Vec<u8>, ExportError> {
    let pth_dtype = match dtype {
        ExportDtype::F32 => PthDtype::F32,
        ExportDtype::F16 => PthDtype::F16,
        ExportDtype::Bf16 => PthDtype::Bf16,
    };
    let encoded: Vec<Vec<u8>> = tensors
        .iter()
        .map(|t| encode_values(&t.values, dtype))
        .collect();
    let entries: Vec<PthEntry<'_>> = tensors
        .iter()
        .zip(&encoded)
        .map(|(t, bytes)| PthEntry {
            name: &t.name,
            shape: &t.shape,
            dtype: pth_dtype,
            bytes,
        })
        .collect();
    let archive = output.file_stem().map_or("model".into(), |s| {
        s.to_string_lossy().replace(['/', '\\'], "_")
    });
    write_pth(&archive, &entries).map_err(|error| ExportError::Write {
        path: output.to_path_buf(),
        error,
    })
}

/// Writes `bytes` to `path` atomically.
fn write_file(path: &Path, bytes: &[u8]) -> Result<(), ExportError> {
    let error = |error| ExportError::Write {
        path: path.to_path_buf(),
        error,
    };
    let mut file = AtomicFile::create(path).map_err(error)?;
    file.write_all(bytes).map_err(error)?;
    file.commit().map_err(error)
}

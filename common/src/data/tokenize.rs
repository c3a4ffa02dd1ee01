//! `tokenize`: corpus + tokenizer.json in, train.bin / val.bin (u16 little-endian ids, each
//! document followed by `[EOS]`) and their `.json` sidecars out.
//!
//! Documents are read in batches, encoded in parallel and written in corpus order, so the output
//! is byte-identical whatever the thread count; the corpus is never held whole. A document goes to
//! val when a hash of its index falls under `val_fraction`: deterministic, independent of
//! threads, and spread evenly through the corpus.

use std::fs::File;
use std::io::{BufReader, Write};
use std::path::{Path, PathBuf};

use rayon::prelude::*;
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::PrepError;
use super::corpus::{DocumentReader, Utf8Policy};
use super::dataset::{FORMAT_VERSION, Sidecar, sidecar_path};
use crate::hashing::{hex, splitmix64};
use crate::output::AtomicFile;
use crate::progress::Progress;
use crate::tokenizer::Tokenizer;

/// Options of `tokenize`.
#[derive(Clone, Debug)]
pub struct TokenizeOptions {
    /// Where held-out documents go; `None` sends every document to the train output.
    pub val_output: Option<PathBuf>,
    /// Share of documents that go to val (when `val_output` is set).
    pub val_fraction: f64,
    /// Each line is a document.
    pub line_docs: bool,
    /// Replace invalid UTF-8 instead of failing.
    pub lossy: bool,
}

/// What `tokenize` wrote.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct TokenizeStats {
    /// Documents and tokens written to train.
    pub train_documents: u64,
    /// Tokens in train, `[EOS]` included.
    pub train_tokens: u64,
    /// Documents written to val.
    pub val_documents: u64,
    /// Tokens in val.
    pub val_tokens: u64,
    /// Corpus bytes read.
    pub bytes: u64,
    /// Invalid UTF-8 sequences replaced (with `lossy`).
    pub invalid_utf8: u64,
}

/// Whether document `index` is held out for validation.
pub fn is_val(index: u64, fraction: f64) -> bool {
    ((splitmix64(index ^ 0x5EED_0F5A_11D0_C5EE) >> 11) as f64 / (1u64 << 53) as f64) < fraction
}

/// One output stream (train or val) with its running counts and checksum.
struct Stream {
    file: AtomicFile,
    sha: Sha256,
    tokens: u64,
    documents: u64,
}

impl Stream {
    fn create(path: &Path) -> Result<Self, PrepError> {
        let file = AtomicFile::create(path).map_err(|error| PrepError::Output {
            path: path.to_path_buf(),
            error,
        })?;
        Ok(Self {
            file,
            sha: Sha256::new(),
            tokens: 0,
            documents: 0,
        })
    }

    fn write(&mut self, ids: &[u16]) -> std::io::Result<()> {
        let bytes: Vec<u8> = ids.iter().flat_map(|id| id.to_le_bytes()).collect();
        self.sha.update(&bytes);
        self.tokens += ids.len() as u64;
        self.documents += 1;
        self.file.write_all(&bytes)
    }

    /// Commits the data file, then its sidecar.
    fn finish(self, path: &Path, loaded: &LoadedTokenizer) -> Result<(), PrepError> {
        let output_error = |error| PrepError::Output {
            path: path.to_path_buf(),
            error,
        };
        self.file.commit().map_err(output_error)?;
        let sidecar = Sidecar {
            format_version: FORMAT_VERSION,
            dtype: "uint16".into(),
            byte_order: "little".into(),
            tokens: self.tokens,
            documents: self.documents,
            vocab_size: loaded.tokenizer.vocab_size() as u32,
            eos_id: loaded.eos,
            tokenizer: loaded.tokenizer.kind().name().into(),
            tokenizer_sha256: loaded.sha256.clone(),
            data_sha256: hex(&self.sha.finalize()),
        };
        let json_path = sidecar_path(path);
        let mut json = AtomicFile::create(&json_path).map_err(output_error)?;
        let text = serde_json::to_string_pretty(&sidecar)
            .map_err(std::io::Error::other)
            .map_err(output_error)?;
        json.write_all(text.as_bytes())
            .and_then(|()| json.write_all(b"\n"))
            .map_err(output_error)?;
        json.commit().map_err(output_error)
    }
}

/// A tokenizer file loaded for encoding, with what the sidecars record about it.
pub struct LoadedTokenizer {
    /// The tokenizer.
    pub tokenizer: Tokenizer,
    /// sha256 of the tokenizer file.
    pub sha256: String,
    /// The id that ends every document (`[EOS]`; 0 for the World vocabulary).
    pub eos: u16,
}

impl LoadedTokenizer {
    /// Loads `path`; a tokenizer without `[EOS]` is refused.
    pub fn load(path: &Path) -> Result<Self, PrepError> {
        let bytes = std::fs::read(path).map_err(|error| PrepError::Open {
            path: path.to_path_buf(),
            error,
        })?;
        let tokenizer = Tokenizer::from_file(path)?;
        let eos = tokenizer.eos_id().ok_or_else(|| {
            PrepError::Invalid(format!(
                "{}: the tokenizer has no [EOS] token to end documents with",
                path.display()
            ))
        })?;
        let eos = u16::try_from(eos)
            .map_err(|_| PrepError::Invalid("[EOS] id does not fit u16".into()))?;
        Ok(Self {
            tokenizer,
            sha256: hex(&Sha256::digest(&bytes)),
            eos,
        })
    }
}

/// Encodes documents in parallel, each followed by `eos`, in input order.
pub fn encode_documents(tokenizer: &Tokenizer, documents: &[String], eos: u16) -> Vec<Vec<u16>> {
    documents
        .par_iter()
        .map(|doc| {
            let mut ids: Vec<u16> = tokenizer
                .encode(doc, false)
                .into_iter()
                .map(|id| id as u16)
                .collect();
            ids.push(eos);
            ids
        })
        .collect()
}

/// Where encoded documents go, in corpus order: train.bin, or val.bin for the documents whose
/// index [`is_val`] holds out. The single-process and the distributed `tokenize` both write
/// through it, so their outputs are the same bytes.
pub struct TokenSink {
    train: Stream,
    val: Option<(Stream, PathBuf)>,
    output: PathBuf,
    val_fraction: f64,
    /// Documents pushed so far: the index of the next one.
    index: u64,
}

impl TokenSink {
    /// Creates the outputs (under temporary names until [`Self::finish`]).
    pub fn create(output: &Path, options: &TokenizeOptions) -> Result<Self, PrepError> {
        let val = match options.val_output.as_deref() {
            Some(path) => Some((Stream::create(path)?, path.to_path_buf())),
            None => None,
        };
        Ok(Self {
            train: Stream::create(output)?,
            val,
            output: output.to_path_buf(),
            val_fraction: options.val_fraction,
            index: 0,
        })
    }

    /// Documents pushed so far.
    pub fn documents(&self) -> u64 {
        self.index
    }

    /// Appends the next document's ids (`[EOS]` included) to train or val.
    pub fn push(&mut self, ids: &[u16]) -> Result<(), PrepError> {
        let (stream, path) = match self.val.as_mut() {
            Some((val, path)) if is_val(self.index, self.val_fraction) => (val, path.as_path()),
            _ => (&mut self.train, self.output.as_path()),
        };
        stream.write(ids).map_err(|error| PrepError::Output {
            path: path.to_path_buf(),
            error,
        })?;
        self.index += 1;
        Ok(())
    }

    /// The error for an input that broke after some documents: the outputs are dropped.
    pub fn abandon(self, error: std::io::Error) -> PrepError {
        let written = self.train.tokens;
        PrepError::input_failed(error, self.train.file, None, written, "tokens")
    }

    /// Commits the outputs and their sidecars; `stats` gets the document and token counts.
    pub fn finish(
        self,
        tokenizer: &LoadedTokenizer,
        stats: &mut TokenizeStats,
    ) -> Result<(), PrepError> {
        stats.train_documents = self.train.documents;
        stats.train_tokens = self.train.tokens;
        if let Some((val, _)) = &self.val {
            stats.val_documents = val.documents;
            stats.val_tokens = val.tokens;
        }
        self.train.finish(&self.output, tokenizer)?;
        if let Some((val, path)) = self.val {
            val.finish(&path, tokenizer)?;
        }
        Ok(())
    }
}

/// Tokenizes `input` with the tokenizer at `tokenizer_path` into `output` (and val).
pub fn tokenize(
    input: &Path,
    tokenizer_path: &Path,
    output: &Path,
    options: &TokenizeOptions,
) -> Result<TokenizeStats, PrepError> {
    super::refuse_empty_corpus(input)?;
    let loaded = LoadedTokenizer::load(tokenizer_path)?;
    let file = File::open(input).map_err(|error| PrepError::Open {
        path: input.to_path_buf(),
        error,
    })?;
    let total = file.metadata().map(|m| m.len()).ok();
    let mut reader = DocumentReader::new(
        BufReader::with_capacity(1 << 20, file),
        input,
        options.line_docs,
        Utf8Policy::new(options.lossy),
    );
    let mut sink = TokenSink::create(output, options)?;
    let mut progress = Progress::new("tokenize", "documents", total);
    loop {
        let batch = match reader.next_batch(8192, 8 << 20) {
            Ok(batch) => batch,
            Err(error) => return Err(sink.abandon(error)),
        };
        if batch.is_empty() {
            break;
        }
        for ids in encode_documents(&loaded.tokenizer, &batch, loaded.eos) {
            sink.push(&ids)?;
        }
        progress.update(sink.documents(), reader.bytes_read());
    }
    progress.finish();
    let mut stats = TokenizeStats {
        bytes: reader.bytes_read(),
        invalid_utf8: reader.invalid_utf8(),
        ..TokenizeStats::default()
    };
    sink.finish(&loaded, &mut stats)?;
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn val_split_is_deterministic_and_close_to_the_fraction() {
        let held: usize = (0..100_000).filter(|&i| is_val(i, 0.005)).count();
        assert!((400..600).contains(&held), "{held}");
        assert_eq!((0..1000).filter(|&i| is_val(i, 0.0)).count(), 0);
        assert_eq!((0..1000).filter(|&i| is_val(i, 1.0)).count(), 1000);
    }
}

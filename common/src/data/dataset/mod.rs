//! [`TokenDataset`]: a memory-mapped stream of u16 token ids (train.bin), validated against its
//! sidecar, split into equal token-aligned shards, and sampled deterministically.
//!
//! Accepted inputs: our train.bin with its `train.bin.json` sidecar; a RWKV-LM / Megatron binidx
//! pair (`.bin` + `.idx`, dtype uint16); a bare u16 `.bin` without sidecar (nanoGPT's), with a
//! warning, its vocabulary taken from the tokenizer or model in use.

mod idx;
#[cfg(test)]
mod tests;

use std::fs::File;
use std::path::{Path, PathBuf};

use memmap2::Mmap;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::hashing::{ChecksumError, hex, sha256_file, splitmix64};
use crate::progress::Progress;

/// The sidecar format this build writes and reads.
pub const FORMAT_VERSION: u32 = 1;
/// Bytes checked per piece (and between progress updates).
const CHECK_PIECE: usize = 8 << 20;

/// `train.bin.json`: what a token file holds (docs/formats.md).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sidecar {
    /// Sidecar format version.
    pub format_version: u32,
    /// Always "uint16".
    pub dtype: String,
    /// Always "little".
    pub byte_order: String,
    /// Token count.
    pub tokens: u64,
    /// Document count (each ends with `[EOS]`).
    pub documents: u64,
    /// Vocabulary size of the tokenizer that wrote it.
    pub vocab_size: u32,
    /// The id that ends each document (`[EOS]`; 0 for the World vocabulary).
    pub eos_id: u16,
    /// Which tokenizer wrote it: "bpe" or "rwkv-world" (files older than the field: "bpe").
    #[serde(default = "bpe_name")]
    pub tokenizer: String,
    /// sha256 of the tokenizer file used.
    pub tokenizer_sha256: String,
    /// sha256 of the data file.
    pub data_sha256: String,
}

/// The tokenizer kind of sidecars written before the field existed.
fn bpe_name() -> String {
    crate::tokenizer::TokenizerKind::Bpe.name().into()
}

impl Sidecar {
    /// Reads the sidecar of the data file `data`.
    pub fn read(data: &Path) -> Result<Self, DataError> {
        let sidecar = sidecar_path(data);
        let text = std::fs::read_to_string(&sidecar).map_err(|source| DataError::Io {
            action: "read",
            path: sidecar.clone(),
            source,
        })?;
        serde_json::from_str(&text).map_err(|source| DataError::Sidecar {
            path: sidecar,
            source,
        })
    }
}

/// A token file that cannot be used, naming the file and what is wrong with it.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// The file (or its sidecar or index) could not be opened, mapped or read.
    #[error("cannot {action} {path}: {source}")]
    Io {
        /// "open", "map" or "read".
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The sidecar is not the JSON this build writes.
    #[error("{path}: {source}")]
    Sidecar {
        /// The sidecar.
        path: PathBuf,
        /// Why.
        source: serde_json::Error,
    },
    /// The file, its sidecar or its index says something this build cannot use: the file and
    /// what.
    #[error("{path}: {problem}")]
    Format {
        /// The file at fault.
        path: PathBuf,
        /// What is wrong.
        problem: String,
    },
    /// A token id not below the vocabulary size.
    #[error(
        "{path}: token {token} (byte {}) is id {id}, not below the vocabulary size {vocab}; the \
         file was made with another tokenizer (re-run tokenize with the tokenizer in use)",
        token * 2
    )]
    BadId {
        /// The file.
        path: PathBuf,
        /// The token's position.
        token: u64,
        /// Its id.
        id: u16,
        /// The vocabulary size.
        vocab: u32,
    },
    /// The file's sha256 is not its sidecar's.
    #[error(
        "{path}: sha256 {actual} differs from the sidecar's {expected}; the file changed after \
         tokenize (copy it again, or re-run tokenize; --skip-checksum trains on it anyway)"
    )]
    ChecksumMismatch {
        /// The file.
        path: PathBuf,
        /// Its sha256.
        actual: String,
        /// The sidecar's.
        expected: String,
    },
    /// The file and the tokenizer or model in use do not belong together.
    #[error("{0}")]
    Mismatch(String),
    /// A shard or window the file cannot give.
    #[error("{0}")]
    Shard(String),
    /// A checksum could not be computed.
    #[error(transparent)]
    Checksum(#[from] ChecksumError),
}

/// The sidecar path of a data file: `train.bin` → `train.bin.json`.
pub fn sidecar_path(data: &Path) -> PathBuf {
    let mut name = data.as_os_str().to_owned();
    name.push(".json");
    PathBuf::from(name)
}

/// How thoroughly [`TokenDataset::open`] checks the file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Validation {
    /// Every id against the vocabulary.
    Ids,
    /// Every id, and the data checksum against the sidecar, in one pass with a progress line.
    Full,
}

/// Where the ids came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// Our format, with its sidecar.
    Sidecar(Sidecar),
    /// A Megatron/RWKV-LM binidx pair with this many documents.
    BinIdx {
        /// Documents listed in the .idx.
        documents: u64,
    },
    /// A bare u16 stream.
    Bare,
}

/// A byte-offset range of the data file, token-aligned: one worker's share.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shard {
    /// First byte (even).
    pub start_byte: u64,
    /// One past the last byte (even).
    pub end_byte: u64,
}

impl Shard {
    /// Tokens in the shard.
    pub fn tokens(&self) -> u64 {
        (self.end_byte - self.start_byte) / 2
    }
}

/// A validated, memory-mapped token file.
pub struct TokenDataset {
    path: PathBuf,
    map: Mmap,
    vocab_size: u32,
    source: Source,
}

impl TokenDataset {
    /// Opens and validates `path`. `vocab_size` is the vocabulary of the tokenizer or model in
    /// use: it must agree with the sidecar, and it is required for files without one.
    pub fn open(
        path: &Path,
        vocab_size: Option<u32>,
        validation: Validation,
    ) -> Result<Self, DataError> {
        let name = path.display();
        let io = |action| {
            move |source| DataError::Io {
                action,
                path: path.to_path_buf(),
                source,
            }
        };
        let format = |file: &Path, problem: String| DataError::Format {
            path: file.to_path_buf(),
            problem,
        };
        let file = File::open(path).map_err(io("open"))?;
        // SAFETY: the file is mapped read-only; Sovereign never writes a data file in place (outputs
        // are written to a temporary name and renamed), so the mapping does not change under us.
        let map = unsafe { Mmap::map(&file) }.map_err(io("map"))?;
        let len = map.len() as u64;
        if !len.is_multiple_of(2) {
            return Err(format(
                path,
                format!(
                    "{len} bytes is an odd length, so it is not a stream of u16 ids (truncated \
                     copy?)"
                ),
            ));
        }
        let tokens = len / 2;
        let idx = path.with_extension("idx");
        let sidecar = sidecar_path(path);
        let (source, file_vocab) = if sidecar.exists() {
            let meta = Sidecar::read(path)?;
            if meta.format_version != FORMAT_VERSION
                || meta.dtype != "uint16"
                || meta.byte_order != "little"
            {
                return Err(format(
                    &sidecar,
                    format!(
                        "format_version {} / dtype {} / byte_order {} is not one this build reads \
                         (version {FORMAT_VERSION}, uint16, little)",
                        meta.format_version, meta.dtype, meta.byte_order
                    ),
                ));
            }
            if meta.tokens != tokens {
                return Err(format(
                    path,
                    format!(
                        "holds {tokens} tokens but {} says {}; the data and its sidecar do not \
                         belong together (re-run tokenize)",
                        sidecar.display(),
                        meta.tokens
                    ),
                ));
            }
            let vocab = meta.vocab_size;
            (Source::Sidecar(meta), Some(vocab))
        } else if idx.exists() {
            let (documents, idx_tokens) = idx::read_idx(&idx)?;
            if idx_tokens != tokens {
                return Err(format(
                    path,
                    format!(
                        "holds {tokens} tokens but {} lists {idx_tokens}",
                        idx.display()
                    ),
                ));
            }
            (Source::BinIdx { documents }, None)
        } else {
            tracing::warn!(
                "{name} has no sidecar ({}) or .idx: reading it as a bare u16 token stream",
                sidecar.display()
            );
            (Source::Bare, None)
        };
        let vocab_size = match (file_vocab, vocab_size) {
            (Some(file), Some(used)) if file != used => {
                return Err(DataError::Mismatch(format!(
                    "{name} was tokenized with a vocabulary of {file} tokens, but the tokenizer or \
                     model in use has {used}; use the tokenizer that wrote it or re-tokenize"
                )));
            }
            (Some(v), _) | (None, Some(v)) => v,
            (None, None) => {
                return Err(DataError::Mismatch(format!(
                    "{name} has no sidecar saying its vocabulary size; pass the tokenizer or model \
                     it belongs to"
                )));
            }
        };
        let dataset = Self {
            path: path.to_path_buf(),
            map,
            vocab_size,
            source,
        };
        dataset.check_ids(validation)?;
        Ok(dataset)
    }

    fn check_ids(&self, validation: Validation) -> Result<(), DataError> {
        let checksum = match (validation, &self.source) {
            (Validation::Full, Source::Sidecar(meta)) => Some(&meta.data_sha256),
            _ => None,
        };
        let label = if checksum.is_some() {
            "checking ids and sha256"
        } else {
            "checking ids"
        };
        let mut progress = Progress::new(label, "MB", Some(self.map.len() as u64));
        let mut hasher = Sha256::new();
        for (piece, bytes) in self.map.chunks(CHECK_PIECE).enumerate() {
            let first_token = (piece * CHECK_PIECE / 2) as u64;
            let largest = bytes
                .chunks_exact(2)
                .map(|p| u16::from_le_bytes([p[0], p[1]]))
                .fold(0u16, u16::max);
            if u32::from(largest) >= self.vocab_size {
                let at = bytes
                    .chunks_exact(2)
                    .position(|p| u32::from(u16::from_le_bytes([p[0], p[1]])) >= self.vocab_size)
                    .unwrap_or(0) as u64;
                return Err(self.bad_id(first_token + at));
            }
            if checksum.is_some() {
                hasher.update(bytes);
            }
            let done = (piece * CHECK_PIECE + bytes.len()) as u64;
            progress.update(done >> 20, done);
        }
        progress.finish();
        if let Some(expected) = checksum {
            let sum = hex(&hasher.finalize());
            if &sum != expected {
                return Err(DataError::ChecksumMismatch {
                    path: self.path.clone(),
                    actual: sum,
                    expected: expected.clone(),
                });
            }
        }
        Ok(())
    }

    /// The error for the out-of-vocabulary id at token index `i`.
    fn bad_id(&self, i: u64) -> DataError {
        DataError::BadId {
            path: self.path.clone(),
            token: i,
            id: self.token(i),
            vocab: self.vocab_size,
        }
    }

    /// Checks that the sidecar names this tokenizer: its file's sha256 and its `[EOS]` id. Files
    /// without a sidecar have nothing to check.
    pub fn check_tokenizer(&self, path: &Path, eos_id: Option<u32>) -> Result<(), DataError> {
        let Source::Sidecar(meta) = &self.source else {
            return Ok(());
        };
        let sum = sha256_file(path)?;
        if sum != meta.tokenizer_sha256 {
            return Err(DataError::Mismatch(format!(
                "{} was made with the tokenizer of sha256 {} (says {}), but {} has sha256 {sum}: \
                 pass the tokenizer.json that tokenize used, or re-tokenize",
                self.path.display(),
                meta.tokenizer_sha256,
                sidecar_path(&self.path).display(),
                path.display()
            )));
        }
        if eos_id != Some(u32::from(meta.eos_id)) {
            let tokenizer_eos = eos_id.map_or("none".to_string(), |id| id.to_string());
            return Err(DataError::Mismatch(format!(
                "{}: eos_id {} differs from the [EOS] id ({tokenizer_eos}) of {}; the data was \
                 made with another tokenizer",
                sidecar_path(&self.path).display(),
                meta.eos_id,
                path.display()
            )));
        }
        Ok(())
    }

    /// Tokens in the file.
    pub fn len_tokens(&self) -> u64 {
        self.map.len() as u64 / 2
    }

    /// The vocabulary size the ids are checked against.
    pub fn vocab_size(&self) -> u32 {
        self.vocab_size
    }

    /// The sidecar, for our own format.
    pub fn sidecar(&self) -> Option<&Sidecar> {
        match &self.source {
            Source::Sidecar(meta) => Some(meta),
            _ => None,
        }
    }

    /// What kind of file this is.
    pub fn source(&self) -> &Source {
        &self.source
    }

    /// The id at token index `i`.
    pub fn token(&self, i: u64) -> u16 {
        let at = (i * 2) as usize;
        u16::from_le_bytes([self.map[at], self.map[at + 1]])
    }

    /// Ids `[start, end)`.
    pub fn tokens(&self, start: u64, end: u64) -> Vec<u16> {
        self.map[(start * 2) as usize..(end * 2) as usize]
            .chunks_exact(2)
            .map(|p| u16::from_le_bytes([p[0], p[1]]))
            .collect()
    }

    /// Worker `rank`'s share of `world`: equal, token-aligned byte ranges (the remainder tokens
    /// at the end are unused, so every rank runs the same number of steps).
    pub fn shard(&self, rank: u32, world: u32) -> Result<Shard, DataError> {
        if world == 0 || rank >= world {
            return Err(DataError::Shard(format!(
                "rank {rank} is not in a world of {world}"
            )));
        }
        let per = self.len_tokens() / u64::from(world);
        if per == 0 {
            return Err(DataError::Shard(format!(
                "{} has {} tokens, too few for {world} shards",
                self.path.display(),
                self.len_tokens()
            )));
        }
        let start = u64::from(rank) * per * 2;
        Ok(Shard {
            start_byte: start,
            end_byte: start + per * 2,
        })
    }

    /// A window of `seq_len + 1` tokens inside `shard`, chosen by (seed, epoch, rank, step,
    /// micro) alone, so runs are reproducible and resumable.
    pub fn sample_window(
        &self,
        shard: Shard,
        seq_len: usize,
        key: SampleKey,
    ) -> Result<Vec<u16>, DataError> {
        let need = seq_len as u64 + 1;
        if shard.tokens() < need {
            return Err(DataError::Shard(format!(
                "a shard of {} tokens cannot hold a window of {need}",
                shard.tokens()
            )));
        }
        let choices = shard.tokens() - need + 1;
        let start = shard.start_byte / 2 + key.hash() % choices;
        let window = self.tokens(start, start + need);
        if let Some(at) = window
            .iter()
            .position(|&id| u32::from(id) >= self.vocab_size)
        {
            return Err(self.bad_id(start + at as u64));
        }
        Ok(window)
    }
}

/// What decides a sampled window.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SampleKey {
    /// The run's seed.
    pub seed: u64,
    /// Epoch number.
    pub epoch: u64,
    /// Worker rank.
    pub rank: u32,
    /// Global step.
    pub step: u64,
    /// Micro-batch index within the step.
    pub micro: u32,
}

impl SampleKey {
    fn hash(&self) -> u64 {
        [
            self.epoch,
            u64::from(self.rank),
            self.step,
            u64::from(self.micro),
        ]
        .iter()
        .fold(splitmix64(self.seed), |h, &x| splitmix64(h ^ x))
    }
}

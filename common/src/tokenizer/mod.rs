//! Tokenizers: Sovereign's byte-level BPE ([`bpe`], HuggingFace tokenizer.json) and the RWKV
//! World vocabulary ([`world`], `rwkv_vocab_v20230424.txt`). [`Tokenizer`] is either one; a file
//! is recognised by its content.

pub mod bpe;
pub mod bytelevel;
pub mod json;
pub mod pretokenize;
pub mod train;
pub mod utf8_stream;
pub mod world;

use std::path::{Path, PathBuf};

use rayon::prelude::*;

pub use bpe::Bpe;
pub use world::World;

/// Smallest BPE vocabulary: five special tokens and 256 bytes.
pub const MIN_VOCAB: usize = 261;
/// Largest BPE vocabulary: ids must fit in u16.
pub const MAX_VOCAB: usize = 65_535;

/// A tokenizer that cannot be made or read, naming the file or the field at fault.
#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    /// The tokenizer file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The tokenizer file at `path` holds something this tokenizer cannot use.
    #[error("{path}: {source}")]
    InFile {
        /// The file.
        path: PathBuf,
        /// What is wrong in it.
        source: Box<TokenizerError>,
    },
    /// A setting or field this tokenizer does not support: the field and why.
    #[error("{0}")]
    Unsupported(String),
    /// A vocabulary size outside what the ids can hold.
    #[error(
        "vocab size {0} is out of range: it must be between {MIN_VOCAB} (5 special tokens + 256 \
         bytes) and {MAX_VOCAB} (ids are stored as u16)"
    )]
    VocabSize(usize),
}

/// Which kind of tokenizer a file holds, as the data sidecars record it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenizerKind {
    /// Sovereign's byte-level BPE (tokenizer.json).
    Bpe,
    /// The RWKV World vocabulary, greedy longest match over bytes.
    World,
}

impl TokenizerKind {
    /// The name the sidecars and model cards use.
    pub fn name(self) -> &'static str {
        match self {
            Self::Bpe => "bpe",
            Self::World => "rwkv-world",
        }
    }
}

/// A loaded tokenizer: BPE or the World vocabulary.
pub enum Tokenizer {
    /// Byte-level BPE from a tokenizer.json.
    Bpe(Bpe),
    /// The RWKV World vocabulary.
    World(World),
}

impl Tokenizer {
    /// Loads a tokenizer file, a tokenizer.json or a World vocabulary, told apart by content.
    pub fn from_file(path: &Path) -> Result<Self, TokenizerError> {
        let text = std::fs::read_to_string(path).map_err(|source| TokenizerError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_text(&text).map_err(|source| TokenizerError::InFile {
            path: path.to_path_buf(),
            source: Box::new(source),
        })
    }

    /// Parses a tokenizer file's text: JSON is a tokenizer.json, lines of `id literal length` a
    /// World vocabulary; anything else is refused.
    pub fn from_text(text: &str) -> Result<Self, TokenizerError> {
        if text.trim_start().starts_with('{') {
            Bpe::from_json(text).map(Self::Bpe)
        } else if World::looks_like(text) {
            World::from_vocab(text).map(Self::World)
        } else {
            Err(TokenizerError::Unsupported(
                "neither a tokenizer.json (JSON) nor an RWKV World vocabulary (lines of \
                 `id 'token' length`, as rwkv_vocab_v20230424.txt)"
                    .into(),
            ))
        }
    }

    /// Which kind this is.
    pub fn kind(&self) -> TokenizerKind {
        match self {
            Self::Bpe(_) => TokenizerKind::Bpe,
            Self::World(_) => TokenizerKind::World,
        }
    }

    /// How many ids there are (65,536 for the World vocabulary, as its models have).
    pub fn vocab_size(&self) -> usize {
        match self {
            Self::Bpe(bpe) => bpe.vocab_size(),
            Self::World(_) => world::VOCAB_SIZE,
        }
    }

    /// The id that ends every document in train.bin: `[EOS]` for BPE, 0 for World (as in
    /// RWKV-LM's data).
    pub fn eos_id(&self) -> Option<u32> {
        match self {
            Self::Bpe(bpe) => bpe.eos_id(),
            Self::World(_) => Some(world::END_OF_DOCUMENT),
        }
    }

    /// Encodes `text`. BPE turns special-token strings into their ids only when `allow_special`;
    /// the World vocabulary has no special strings.
    pub fn encode(&self, text: &str, allow_special: bool) -> Vec<u32> {
        match self {
            Self::Bpe(bpe) => bpe.encode(text, allow_special),
            Self::World(world) => world.encode(text.as_bytes()),
        }
    }

    /// Encodes many texts in parallel.
    pub fn encode_batch(&self, texts: &[&str], allow_special: bool) -> Vec<Vec<u32>> {
        texts
            .par_iter()
            .map(|t| self.encode(t, allow_special))
            .collect()
    }

    /// Decodes ids back to text; special tokens are skipped when `skip_special`. Bytes that do not
    /// form UTF-8 become U+FFFD.
    pub fn decode(&self, ids: &[u32], skip_special: bool) -> String {
        String::from_utf8_lossy(&self.decode_bytes(ids, skip_special)).into_owned()
    }

    /// The bytes `ids` stand for (a prefix of a multi-byte character may end them).
    pub fn decode_bytes(&self, ids: &[u32], skip_special: bool) -> Vec<u8> {
        match self {
            Self::Bpe(bpe) => bpe.decode_bytes(ids, skip_special),
            Self::World(world) => world.decode(ids),
        }
    }
}

//! Byte-level BPE, compatible with HuggingFace `tokenizers`: [`Bpe`] trains (through
//! [`super::train`]), reads and writes tokenizer.json ([`super::json`]), encodes and decodes.
//!
//! Encoding: split the text into words ([`pretokenize`]), turn each word's UTF-8 bytes into
//! byte symbols, then apply merges lowest rank first (leftmost first among equals) until none
//! applies. Word results are cached in a bounded LRU cache.

use crate::sync::lock;
use std::collections::HashMap;
use std::num::NonZeroUsize;
use std::sync::Mutex;

use lru::LruCache;

use super::bytelevel::{byte_to_char, char_to_byte, encode_bytes};
use super::json::{self, SPECIAL_TOKENS, TokenizerSpec};
use super::pretokenize::PreTokenizer;
use super::{MAX_VOCAB, MIN_VOCAB, TokenizerError, train};

/// Words cached per tokenizer, as the seed had it.
pub const DEFAULT_CACHE_WORDS: usize = 50_000;
/// The cache is split into shards so that parallel encoders rarely wait on each other.
const CACHE_SHARDS: usize = 16;

/// A loaded byte-level BPE tokenizer.
pub struct Bpe {
    spec: TokenizerSpec,
    token_ids: HashMap<String, u32>,
    /// The id of each byte's symbol.
    byte_ids: [u32; 256],
    /// (left id, right id) → (rank, merged id).
    merges: HashMap<(u32, u32), (u32, u32)>,
    split: Option<PreTokenizer>,
    cache: Vec<Mutex<LruCache<String, Vec<u32>, FnvBuild>>>,
}

/// FNV-1a: a fast hash for short words (the cache's keys), where SipHash's cost shows.
#[derive(Default)]
struct Fnv(u64);

impl std::hash::Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        let mut h = if self.0 == 0 {
            0xcbf2_9ce4_8422_2325
        } else {
            self.0
        };
        for &b in bytes {
            h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
        self.0 = h;
    }
}

type FnvBuild = std::hash::BuildHasherDefault<Fnv>;

impl Bpe {
    /// Trains a tokenizer of `vocab_size` tokens (specials and bytes included) from word counts.
    pub fn train(
        counts: &train::WordCounts,
        vocab_size: usize,
        min_frequency: u64,
    ) -> Result<Self, TokenizerError> {
        if !(MIN_VOCAB..=MAX_VOCAB).contains(&vocab_size) {
            return Err(TokenizerError::VocabSize(vocab_size));
        }
        let learned = train::learn_merges(counts, vocab_size - MIN_VOCAB, min_frequency);
        let mut symbols: Vec<String> = byte_to_char().iter().map(|c| c.to_string()).collect();
        let mut merges = Vec::with_capacity(learned.len());
        for &(a, b) in &learned {
            let (left, right) = (symbols[a as usize].clone(), symbols[b as usize].clone());
            symbols.push(format!("{left}{right}"));
            merges.push((left, right));
        }
        let mut vocab: Vec<String> = SPECIAL_TOKENS.iter().map(|s| s.to_string()).collect();
        vocab.extend(symbols);
        let special = SPECIAL_TOKENS
            .iter()
            .enumerate()
            .map(|(i, s)| (s.to_string(), i as u32))
            .collect();
        Self::from_spec(TokenizerSpec {
            vocab,
            merges,
            special,
            split_pattern: json::default_split_pattern(),
        })
    }

    /// Parses the text of a tokenizer.json; an unsupported one is refused with the field at
    /// fault.
    pub fn from_json(text: &str) -> Result<Self, TokenizerError> {
        Self::from_spec(json::from_json(text)?)
    }

    /// Builds a tokenizer from its parts, checking that they fit together.
    pub fn from_spec(spec: TokenizerSpec) -> Result<Self, TokenizerError> {
        Self::checked_spec(spec).map_err(TokenizerError::Unsupported)
    }

    /// [`Self::from_spec`], its error the field at fault and why.
    fn checked_spec(spec: TokenizerSpec) -> Result<Self, String> {
        if spec.vocab.len() > MAX_VOCAB + 1 {
            return Err(format!(
                "model.vocab has {} tokens; ids must fit in u16",
                spec.vocab.len()
            ));
        }
        let token_ids: HashMap<String, u32> = spec
            .vocab
            .iter()
            .enumerate()
            .map(|(id, t)| (t.clone(), id as u32))
            .collect();
        let mut byte_ids = [0u32; 256];
        for (b, c) in byte_to_char().iter().enumerate() {
            byte_ids[b] = *token_ids.get(&c.to_string()).ok_or_else(|| {
                format!("model.vocab has no symbol for byte 0x{b:02x} ({c:?}); only byte-level BPE is supported")
            })?;
        }
        let mut merges = HashMap::with_capacity(spec.merges.len());
        for (rank, (a, b)) in spec.merges.iter().enumerate() {
            let id = |t: &str| {
                token_ids.get(t).copied().ok_or_else(|| {
                    format!("model.merges[{rank}] uses {t:?}, which is not in model.vocab")
                })
            };
            let merged = id(&format!("{a}{b}"))?;
            merges
                .entry((id(a)?, id(b)?))
                .or_insert((rank as u32, merged));
        }
        let split = match &spec.split_pattern {
            Some(p) => Some(
                PreTokenizer::new(p).map_err(|e| format!("pre_tokenizer Split.pattern: {e}"))?,
            ),
            None => None,
        };
        let per_shard =
            NonZeroUsize::new(DEFAULT_CACHE_WORDS.div_ceil(CACHE_SHARDS)).expect("non-zero");
        let cache = (0..CACHE_SHARDS)
            .map(|_| Mutex::new(LruCache::with_hasher(per_shard, FnvBuild::default())))
            .collect();
        Ok(Self {
            spec,
            token_ids,
            byte_ids,
            merges,
            split,
            cache,
        })
    }

    /// The tokenizer.json text (deterministic for a given tokenizer).
    pub fn to_json(&self) -> String {
        json::to_json(&self.spec)
    }

    /// How many ids there are.
    pub fn vocab_size(&self) -> usize {
        self.spec.vocab.len()
    }

    /// The id of a token string, if it has one.
    pub fn token_id(&self, token: &str) -> Option<u32> {
        self.token_ids.get(token).copied()
    }

    /// The id of `[EOS]`, which ends every document in train.bin.
    pub fn eos_id(&self) -> Option<u32> {
        self.token_id("[EOS]")
    }

    /// Encodes `text`. Special-token strings in the text become their ids only when
    /// `allow_special`; otherwise they are encoded as ordinary text.
    pub fn encode(&self, text: &str, allow_special: bool) -> Vec<u32> {
        let mut ids = Vec::with_capacity(text.len() / 3);
        if !allow_special || self.spec.special.is_empty() {
            self.encode_plain(text, &mut ids);
            return ids;
        }
        let mut rest = text;
        while !rest.is_empty() {
            let next = self
                .spec
                .special
                .iter()
                .filter_map(|(s, id)| rest.find(s.as_str()).map(|at| (at, s.len(), *id)))
                .min_by_key(|&(at, len, _)| (at, usize::MAX - len));
            match next {
                Some((at, len, id)) => {
                    self.encode_plain(&rest[..at], &mut ids);
                    ids.push(id);
                    rest = &rest[at + len..];
                }
                None => {
                    self.encode_plain(rest, &mut ids);
                    break;
                }
            }
        }
        ids
    }

    /// The bytes `ids` stand for (a prefix of a multi-byte character may end them).
    pub fn decode_bytes(&self, ids: &[u32], skip_special: bool) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(ids.len() * 4);
        for &id in ids {
            let Some(token) = self.spec.vocab.get(id as usize) else {
                continue;
            };
            if let Some((name, _)) = self.spec.special.iter().find(|(_, sid)| *sid == id) {
                if !skip_special {
                    bytes.extend_from_slice(name.as_bytes());
                }
                continue;
            }
            bytes.extend(token.chars().filter_map(char_to_byte));
        }
        bytes
    }

    fn encode_plain(&self, text: &str, ids: &mut Vec<u32>) {
        match &self.split {
            Some(split) => split
                .words(text)
                .for_each(|word| self.encode_word(word, ids)),
            None => self.encode_word(text, ids),
        }
    }

    fn encode_word(&self, word: &str, ids: &mut Vec<u32>) {
        if word.is_empty() {
            return;
        }
        let shard = &self.cache[shard_of(word)];
        if let Some(hit) = lock(shard).get(word) {
            ids.extend_from_slice(hit);
            return;
        }
        let symbols = self.apply_merges(word);
        ids.extend_from_slice(&symbols);
        lock(shard).put(word.to_string(), symbols);
    }

    /// Applies the merges to one word: the lowest-ranked adjacent pair first, the leftmost one
    /// among equals, until no pair has a merge.
    fn apply_merges(&self, word: &str) -> Vec<u32> {
        let mut symbols: Vec<u32> = word.bytes().map(|b| self.byte_ids[b as usize]).collect();
        loop {
            let best = symbols
                .windows(2)
                .enumerate()
                .filter_map(|(i, w)| {
                    self.merges
                        .get(&(w[0], w[1]))
                        .map(|&(rank, id)| (rank, i, id))
                })
                .min();
            let Some((_, at, id)) = best else { break };
            symbols[at] = id;
            symbols.remove(at + 1);
        }
        symbols
    }

    /// The byte-level form of a text, as HuggingFace shows tokens.
    pub fn byte_level(text: &str) -> String {
        encode_bytes(text.as_bytes())
    }
}

fn shard_of(word: &str) -> usize {
    use std::hash::Hasher;
    let mut hasher = Fnv::default();
    hasher.write(word.as_bytes());
    (hasher.finish() >> 32) as usize % CACHE_SHARDS
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trained() -> Bpe {
        let texts: Vec<String> = [
            "a casa é bonita",
            "as casas são bonitas",
            "São Paulo e a casa",
        ]
        .iter()
        .map(|s| s.repeat(3))
        .collect();
        Bpe::train(&train::count_words(&texts), 285, 1).unwrap()
    }

    #[test]
    fn layout_specials_bytes_then_merges() {
        let tok = trained();
        assert_eq!(tok.vocab_size(), 285);
        assert_eq!(tok.token_id("[PAD]"), Some(0));
        assert_eq!(tok.eos_id(), Some(3));
        assert_eq!(tok.token_id("Ā"), Some(5), "byte 0x00");
        assert_eq!(tok.token_id("!"), Some(5 + 0x21));
        assert_eq!(tok.token_id("Ġ"), Some(5 + 0x20));
        assert!(tok.token_id("Ġcasa").is_some());
        let Err(error) = Bpe::train(&train::WordCounts::new(), 260, 1) else {
            panic!("260 accepted")
        };
        assert!(error.to_string().contains("between 261"));
    }

    #[test]
    fn decode_inverts_encode_for_any_text() {
        let tok = trained();
        for text in [
            "a casa",
            "São Paulo é 2024!",
            "emoji 🦀 e \u{0}\u{7f} e \n\t fim",
            "",
            "[EOS] literal",
        ] {
            let ids = tok.encode(text, false);
            assert_eq!(tok.decode_bytes(&ids, false), text.as_bytes());
        }
        assert_eq!(tok.encode("x[EOS]", true).last(), Some(&3));
        assert_ne!(tok.encode("x[EOS]", false).last(), Some(&3));
    }

    #[test]
    fn json_round_trip_is_byte_identical() {
        let tok = trained();
        let text = tok.to_json();
        let again = Bpe::from_spec(json::from_json(&text).unwrap()).unwrap();
        assert_eq!(again.to_json(), text);
        assert_eq!(
            again.encode("as casas bonitas", false),
            tok.encode("as casas bonitas", false)
        );
    }

    #[test]
    fn foreign_files_are_refused_with_the_field() {
        let tok = trained();
        let mut value: serde_json::Value = serde_json::from_str(&tok.to_json()).unwrap();
        value["pre_tokenizer"] =
            serde_json::json!({"type": "ByteLevel", "add_prefix_space": false, "use_regex": true});
        assert!(
            json::from_json(&value.to_string())
                .unwrap_err()
                .to_string()
                .contains("ByteLevel.use_regex")
        );
        value["model"]["type"] = "WordPiece".into();
        assert!(
            json::from_json(&value.to_string())
                .unwrap_err()
                .to_string()
                .contains("model.type")
        );
    }

    #[test]
    fn only_post_processors_that_keep_the_ids_are_accepted() {
        let tok = trained();
        let value: serde_json::Value = serde_json::from_str(&tok.to_json()).unwrap();
        let with = |field: &str, setting: serde_json::Value| {
            let mut changed = value.clone();
            changed[field] = setting;
            json::from_json(&changed.to_string())
        };
        let byte_level = serde_json::json!({"type": "ByteLevel", "trim_offsets": false});
        assert!(with("post_processor", byte_level.clone()).is_ok());
        let sequence = serde_json::json!({"type": "Sequence", "processors": [byte_level]});
        assert!(with("post_processor", sequence).is_ok());
        let template = serde_json::json!({"type": "TemplateProcessing", "single": []});
        let err = with("post_processor", template).unwrap_err().to_string();
        assert!(err.starts_with("post_processor is set"), "{err}");
        let err = with("truncation", serde_json::json!({"max_length": 8}))
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("truncation is set"), "{err}");
    }
}

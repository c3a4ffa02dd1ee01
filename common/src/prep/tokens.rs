//! tokenize's map and reduce. A task encodes the documents of its range and returns each one's
//! ids (`[EOS]` last) as u16 little-endian after its length; the coordinator checks the ids
//! against the vocabulary and appends the documents in corpus order, where a document's global
//! index decides whether it goes to val, exactly as in the single-process run.

use std::path::Path;

use super::TaskError;
use super::wire::ResultError;
use super::wire::{Reader, put_varint};
use super::{Reducer, read_input_length};
use crate::data::PrepError;
use crate::data::corpus::{DocumentReader, Utf8Policy};
use crate::data::tokenize::{LoadedTokenizer, TokenSink, TokenizeStats, encode_documents};
use crate::tokenizer::Tokenizer;

/// The map: encodes the documents in `input` (bytes `start..` of `path`).
pub fn map(
    input: &[u8],
    path: &Path,
    start: u64,
    line_docs: bool,
    lossy: bool,
    tokenizer: &Tokenizer,
    eos: u16,
) -> Result<Vec<u8>, TaskError> {
    let mut reader =
        DocumentReader::new(input, path, line_docs, Utf8Policy::new(lossy)).starting_at(start);
    let mut documents: Vec<Vec<u16>> = Vec::new();
    loop {
        let batch = reader
            .next_batch(8192, 8 << 20)
            .map_err(|e| TaskError::Input(e.to_string()))?;
        if batch.is_empty() {
            break;
        }
        documents.extend(encode_documents(tokenizer, &batch, eos));
    }
    let ids: usize = documents.iter().map(Vec::len).sum();
    let mut out = Vec::with_capacity(ids * 2 + documents.len() * 3 + 32);
    put_varint(&mut out, input.len() as u64);
    put_varint(&mut out, reader.invalid_utf8());
    put_varint(&mut out, documents.len() as u64);
    for document in &documents {
        put_varint(&mut out, document.len() as u64);
        out.extend(document.iter().flat_map(|id| id.to_le_bytes()));
    }
    Ok(out)
}

/// One task's decoded documents.
pub struct TokenPart {
    bytes: u64,
    invalid_utf8: u64,
    documents: Vec<Vec<u16>>,
}

/// Writes the tasks' documents to train.bin / val.bin in order.
pub struct TokenReducer {
    sink: TokenSink,
    vocab_size: u32,
    eos: u16,
    /// Corpus bytes and replaced sequences so far.
    pub stats: TokenizeStats,
}

impl TokenReducer {
    /// Writes through `sink` with the vocabulary and `[EOS]` of `tokenizer`.
    pub fn new(sink: TokenSink, tokenizer: &LoadedTokenizer) -> Self {
        Self {
            sink,
            vocab_size: tokenizer.tokenizer.vocab_size() as u32,
            eos: tokenizer.eos,
            stats: TokenizeStats::default(),
        }
    }

    /// Commits the outputs and their sidecars and returns the counts.
    pub fn finish(self, tokenizer: &LoadedTokenizer) -> Result<TokenizeStats, PrepError> {
        let mut stats = self.stats;
        self.sink.finish(tokenizer, &mut stats)?;
        Ok(stats)
    }
}

impl Reducer for TokenReducer {
    type Part = TokenPart;

    fn decode(&self, range: (u64, u64), payload: &[u8]) -> Result<TokenPart, ResultError> {
        let mut reader = Reader::new(payload);
        let bytes = read_input_length(&mut reader, range)?;
        let invalid_utf8 = reader.varint("the replaced-sequence count")?;
        let n = reader.varint("the document count")?;
        let mut documents = Vec::with_capacity(n.min(1 << 20) as usize);
        for i in 0..n {
            let len = reader.varint("a document's length")? as usize;
            let raw = reader.take(len.saturating_mul(2), "a document's ids")?;
            let ids: Vec<u16> = raw
                .chunks_exact(2)
                .map(|b| u16::from_le_bytes([b[0], b[1]]))
                .collect();
            if ids.last() != Some(&self.eos) {
                return Err(ResultError::Content(format!(
                    "document {i} does not end with [EOS]"
                )));
            }
            if let Some(bad) = ids.iter().find(|&&id| u32::from(id) >= self.vocab_size) {
                return Err(ResultError::Content(format!(
                    "document {i} holds id {bad}, outside the vocabulary of {}",
                    self.vocab_size
                )));
            }
            documents.push(ids);
        }
        reader.finish()?;
        Ok(TokenPart {
            bytes,
            invalid_utf8,
            documents,
        })
    }

    fn accept(&mut self, part: TokenPart) -> Result<(), PrepError> {
        self.stats.bytes += part.bytes;
        self.stats.invalid_utf8 += part.invalid_utf8;
        for ids in &part.documents {
            self.sink.push(ids)?;
        }
        Ok(())
    }
}

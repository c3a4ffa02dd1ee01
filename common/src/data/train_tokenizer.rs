//! `train-tokenizer`: corpus files in, tokenizer.json out. Word counting streams the corpus in
//! batches counted in parallel (map) and merged (reduce); the merge loop then runs on the
//! distinct words only ([`crate::tokenizer::train`]).

use std::fs::File;
use std::io::{BufReader, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::Serialize;

use super::PrepError;
use super::corpus::{DocumentReader, Utf8Policy};
use crate::output::AtomicFile;
use crate::progress::Progress;
use crate::tokenizer::train::{WordCounts, count_words, merge_counts};
use crate::tokenizer::{Bpe, MAX_VOCAB, MIN_VOCAB};

/// Options of `train-tokenizer`.
#[derive(Clone, Debug)]
pub struct TrainTokenizerOptions {
    /// Total vocabulary: 5 special tokens + 256 bytes + merges.
    pub vocab_size: usize,
    /// Pairs seen fewer times are never merged.
    pub min_frequency: u64,
    /// Each line is a document.
    pub line_docs: bool,
    /// Replace invalid UTF-8 instead of failing.
    pub lossy: bool,
}

/// What `train-tokenizer` did.
#[derive(Clone, Debug, Default, Serialize)]
pub struct TrainTokenizerStats {
    /// Documents read.
    pub documents: u64,
    /// Corpus bytes read.
    pub bytes: u64,
    /// Distinct pre-tokenized words.
    pub distinct_words: usize,
    /// Final vocabulary size (smaller than asked when the corpus runs out of pairs).
    pub vocab_size: usize,
    /// Seconds spent counting words.
    pub count_seconds: f64,
    /// Seconds spent in the merge loop.
    pub merge_seconds: f64,
    /// Invalid UTF-8 sequences replaced (with `lossy`).
    pub invalid_utf8: u64,
}

/// Counts the words of the corpus files (documents as `line_docs` says).
pub fn count_corpus(
    corpus: &[PathBuf],
    line_docs: bool,
    policy: Utf8Policy,
    stats: &mut TrainTokenizerStats,
) -> Result<WordCounts, PrepError> {
    let total: u64 = corpus
        .iter()
        .filter_map(|p| std::fs::metadata(p).ok())
        .map(|m| m.len())
        .sum();
    let mut progress = Progress::new("train-tokenizer (counting)", "documents", Some(total));
    let mut counts = WordCounts::new();
    let mut done_bytes = 0;
    for path in corpus {
        let open_error = |error| PrepError::Open {
            path: path.clone(),
            error,
        };
        let file = File::open(path).map_err(open_error)?;
        let mut reader = DocumentReader::new(
            BufReader::with_capacity(1 << 20, file),
            path,
            line_docs,
            policy,
        );
        loop {
            let batch = reader
                .next_batch(16_384, 16 << 20)
                .map_err(|error| PrepError::Invalid(format!("{error}; nothing was written")))?;
            if batch.is_empty() {
                break;
            }
            stats.documents += batch.len() as u64;
            counts = merge_counts(counts, count_words(&batch));
            progress.update(stats.documents, done_bytes + reader.bytes_read());
        }
        done_bytes += reader.bytes_read();
        stats.invalid_utf8 += reader.invalid_utf8();
    }
    progress.finish();
    stats.bytes = done_bytes;
    stats.distinct_words = counts.len();
    Ok(counts)
}

/// Refuses a vocabulary size outside what the format allows.
pub fn check_vocab_size(vocab_size: usize) -> Result<(), PrepError> {
    if !(MIN_VOCAB..=MAX_VOCAB).contains(&vocab_size) {
        return Err(PrepError::Invalid(format!(
            "--vocab-size {vocab_size} is out of range: it must be between {MIN_VOCAB} (5 special \
             tokens + 256 bytes) and {MAX_VOCAB} (ids are stored as u16)"
        )));
    }
    Ok(())
}

/// Trains a tokenizer on the corpus files and writes it to `output` atomically.
pub fn train_tokenizer(
    corpus: &[PathBuf],
    output: &Path,
    options: &TrainTokenizerOptions,
) -> Result<TrainTokenizerStats, PrepError> {
    check_vocab_size(options.vocab_size)?;
    for path in corpus {
        super::refuse_empty_corpus(path)?;
    }
    let mut stats = TrainTokenizerStats::default();
    let start = Instant::now();
    let counts = count_corpus(
        corpus,
        options.line_docs,
        Utf8Policy::new(options.lossy),
        &mut stats,
    )?;
    stats.count_seconds = start.elapsed().as_secs_f64();
    write_tokenizer(&counts, output, options, &mut stats)?;
    Ok(stats)
}

/// The reduce's end: runs the merge loop on the word counts and writes tokenizer.json to
/// `output` atomically; `stats` gets the vocabulary and the merge time.
pub fn write_tokenizer(
    counts: &WordCounts,
    output: &Path,
    options: &TrainTokenizerOptions,
    stats: &mut TrainTokenizerStats,
) -> Result<(), PrepError> {
    let start = Instant::now();
    let tokenizer = Bpe::train(counts, options.vocab_size, options.min_frequency)?;
    stats.merge_seconds = start.elapsed().as_secs_f64();
    stats.vocab_size = tokenizer.vocab_size();
    stats.distinct_words = counts.len();
    let output_error = |error| PrepError::Output {
        path: output.to_path_buf(),
        error,
    };
    let mut out = AtomicFile::create(output).map_err(output_error)?;
    out.write_all(tokenizer.to_json().as_bytes())
        .map_err(output_error)?;
    out.commit().map_err(output_error)
}

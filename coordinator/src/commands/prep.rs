//! The data-preparation subcommands: thin wrappers over `sovereign_common::data`, or over the
//! map-reduce jobs of [`crate::mapreduce`] with `--hosts`.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Result;
use sovereign_common::data::clean_corpus::{CleanOptions, CleanStats};
use sovereign_common::data::dataset::sidecar_path;
use sovereign_common::data::normalize::NormalizeOptions;
use sovereign_common::data::wiki::{OutputFormat, WikiOptions, WikiStats};
use sovereign_common::output::refuse_inputs;

use sovereign_common::data::tokenize::{TokenizeOptions, TokenizeStats};
use sovereign_common::data::train_tokenizer::{TrainTokenizerOptions, TrainTokenizerStats};

use crate::cli::{
    CleanCorpusArgs, Format, NormalizeArgs, ProcessWikiArgs, TokenizeArgs, TrainTokenizerArgs,
};
use crate::mapreduce::{jobs, prep_hosts};

/// `sovereign process-wiki`.
pub fn process_wiki(args: &ProcessWikiArgs) -> Result<WikiStats> {
    refuse_inputs(&[&args.output], &[&args.input])?;
    let threads = set_threads(args.threads)?;
    let options = WikiOptions {
        format: match args.format {
            Format::Text => OutputFormat::Text,
            Format::Jsonl => OutputFormat::Jsonl,
        },
        min_chars: args.min_chars,
        threads,
        title: args.title,
        keep_partial: args.keep_partial,
        normalize: normalize_options(args.normalize),
    };
    let start = Instant::now();
    let stats = match prep_hosts(&args.cluster)? {
        None => sovereign_common::data::wiki::process_wiki(&args.input, &args.output, &options)?,
        Some(hosts) => {
            jobs::process_wiki(&args.cluster, &hosts, &args.input, &args.output, &options)?
        }
    };
    let secs = start.elapsed().as_secs_f64().max(1e-9);
    eprintln!(
        "process-wiki: {stats}\nprocess-wiki: {:.1}s, {:.0} pages/s, {:.1} MB/s of input; wrote {}",
        secs,
        stats.pages_read as f64 / secs,
        stats.input_bytes as f64 / secs / 1e6,
        args.output.display()
    );
    Ok(stats)
}

/// `sovereign clean-corpus`.
pub fn clean_corpus(args: &CleanCorpusArgs) -> Result<CleanStats> {
    refuse_inputs(&[&args.output], &[&args.input])?;
    set_threads(args.threads)?;
    let options = CleanOptions {
        min_chars: args.min_chars,
        line_docs: args.line_docs,
        dedup_memory_mb: args.dedup_memory_mb,
        normalize: normalize_options(args.normalize),
        keep_partial: args.keep_partial,
    };
    let start = Instant::now();
    let stats =
        sovereign_common::data::clean_corpus::clean_corpus(&args.input, &args.output, &options)?;
    eprintln!(
        "clean-corpus: {stats}\nclean-corpus: {:.1}s; wrote {}",
        start.elapsed().as_secs_f64(),
        args.output.display()
    );
    Ok(stats)
}

/// `sovereign train-tokenizer`.
pub fn train_tokenizer(args: &TrainTokenizerArgs) -> Result<TrainTokenizerStats> {
    let inputs: Vec<&Path> = args.corpus.iter().map(PathBuf::as_path).collect();
    refuse_inputs(&[&args.output], &inputs)?;
    set_threads(args.read.threads)?;
    let options = TrainTokenizerOptions {
        vocab_size: args.vocab_size,
        min_frequency: args.min_frequency,
        line_docs: args.read.line_docs,
        lossy: args.read.lossy,
    };
    let stats = match prep_hosts(&args.cluster)? {
        None => sovereign_common::data::train_tokenizer::train_tokenizer(
            &args.corpus,
            &args.output,
            &options,
        )?,
        Some(hosts) => {
            jobs::train_tokenizer(&args.cluster, &hosts, &args.corpus, &args.output, &options)?
        }
    };
    eprintln!(
        "train-tokenizer: {} documents, {:.1} MB, {} distinct words; vocabulary {} ({} merges); \
         counting {:.1}s, merging {:.1}s; wrote {}",
        stats.documents,
        stats.bytes as f64 / 1e6,
        stats.distinct_words,
        stats.vocab_size,
        stats.vocab_size.saturating_sub(261),
        stats.count_seconds,
        stats.merge_seconds,
        args.output.display()
    );
    if stats.vocab_size < args.vocab_size {
        eprintln!(
            "train-tokenizer: the corpus ran out of pairs (seen at least --min-frequency {} times) \
             before {} tokens",
            args.min_frequency, args.vocab_size
        );
    }
    if stats.invalid_utf8 > 0 {
        eprintln!(
            "train-tokenizer: {} invalid UTF-8 sequences replaced",
            stats.invalid_utf8
        );
    }
    Ok(stats)
}

/// `sovereign tokenize`.
pub fn tokenize(args: &TokenizeArgs) -> Result<TokenizeStats> {
    let mut outputs = vec![args.output.clone(), sidecar_path(&args.output)];
    if let Some(val) = &args.val_output {
        outputs.extend([val.clone(), sidecar_path(val)]);
    }
    let outputs: Vec<&Path> = outputs.iter().map(PathBuf::as_path).collect();
    refuse_inputs(&outputs, &[&args.input, &args.tokenizer])?;
    set_threads(args.read.threads)?;
    if !(0.0..=1.0).contains(&args.val_fraction) {
        anyhow::bail!(
            "--val-fraction {} must be between 0 and 1",
            args.val_fraction
        );
    }
    let options = TokenizeOptions {
        val_output: args.val_output.clone(),
        val_fraction: args.val_fraction,
        line_docs: args.read.line_docs,
        lossy: args.read.lossy,
    };
    let start = Instant::now();
    let stats = match prep_hosts(&args.cluster)? {
        None => sovereign_common::data::tokenize::tokenize(
            &args.input,
            &args.tokenizer,
            &args.output,
            &options,
        )?,
        Some(hosts) => jobs::tokenize(
            &args.cluster,
            &hosts,
            &args.input,
            &args.tokenizer,
            &args.output,
            &options,
        )?,
    };
    let secs = start.elapsed().as_secs_f64().max(1e-9);
    eprintln!(
        "tokenize: train {} documents, {} tokens; val {} documents, {} tokens; {:.1}s, {:.1} MB/s; \
         wrote {}{}",
        stats.train_documents,
        stats.train_tokens,
        stats.val_documents,
        stats.val_tokens,
        secs,
        stats.bytes as f64 / secs / 1e6,
        args.output.display(),
        args.val_output
            .as_ref()
            .map_or(String::new(), |v| format!(" and {}", v.display()))
    );
    if stats.invalid_utf8 > 0 {
        eprintln!(
            "tokenize: {} invalid UTF-8 sequences replaced",
            stats.invalid_utf8
        );
    }
    Ok(stats)
}

fn normalize_options(args: NormalizeArgs) -> NormalizeOptions {
    NormalizeOptions {
        strip_accents: args.strip_accents,
        lowercase: args.lowercase,
    }
}

/// Sizes the global thread pool on first use; returns the thread count in use.
fn set_threads(threads: Option<usize>) -> Result<usize> {
    let threads = threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .max(1);
    // A second stage in the same process (the demo) keeps the pool the first one sized.
    let _ = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build_global();
    Ok(threads)
}

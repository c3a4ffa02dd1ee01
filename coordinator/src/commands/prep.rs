//! The data-preparation subcommands: thin wrappers over `sovereign_common::data`.

use std::time::Instant;

use anyhow::Result;
use sovereign_common::data::clean_corpus::{CleanOptions, CleanStats};
use sovereign_common::data::normalize::NormalizeOptions;
use sovereign_common::data::wiki::{OutputFormat, WikiOptions, WikiStats};

use crate::cli::{CleanCorpusArgs, Format, NormalizeArgs, ProcessWikiArgs};

/// `sovereign process-wiki`.
pub fn process_wiki(args: &ProcessWikiArgs) -> Result<WikiStats> {
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
    let stats = sovereign_common::data::wiki::process_wiki(&args.input, &args.output, &options)?;
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

//! The three data-prep stages as map-reduce jobs: how each cuts its input into tasks, which map
//! its workers run, and how the coordinator finishes the output from the reduced results.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use sovereign_common::data::encoding::Encoding;
use sovereign_common::data::refuse_empty_corpus;
use sovereign_common::data::tokenize::{
    LoadedTokenizer, TokenSink, TokenizeOptions, TokenizeStats,
};
use sovereign_common::data::train_tokenizer::{
    TrainTokenizerOptions, TrainTokenizerStats, check_vocab_size, write_tokenizer,
};
use sovereign_common::data::wiki::{
    CorpusSink, WikiOptions, WikiStats, dump_header, namespace_prefixes,
};
use sovereign_common::prep::MapJob;
use sovereign_common::prep::pages::CorpusReducer;
use sovereign_common::prep::ranges::{document_ranges, dump_ranges};
use sovereign_common::prep::tokens::TokenReducer;
use sovereign_common::prep::words::WordCountReducer;

use super::{run_job, task_bytes};
use crate::cli::PrepClusterArgs;
use crate::cluster::hosts::Host;

/// An input path as every worker should see it: absolute (workers started over ssh do not
/// share the coordinator's working directory).
fn absolute(path: &Path) -> Result<PathBuf> {
    std::path::absolute(path).with_context(|| format!("cannot resolve {}", path.display()))
}

/// The summed length of the inputs.
fn total_bytes(inputs: &[impl AsRef<Path>]) -> Result<u64> {
    inputs.iter().try_fold(0, |sum, path| {
        let path = path.as_ref();
        let len = std::fs::metadata(path)
            .with_context(|| format!("cannot read {}", path.display()))?
            .len();
        Ok(sum + len)
    })
}

/// `train-tokenizer --hosts`: workers count the words of document-aligned ranges of every
/// corpus file; the coordinator adds the counts up and runs the merge loop.
pub fn train_tokenizer(
    cluster: &PrepClusterArgs,
    hosts: &[Host],
    corpus: &[PathBuf],
    output: &Path,
    options: &TrainTokenizerOptions,
) -> Result<TrainTokenizerStats> {
    check_vocab_size(options.vocab_size)?;
    for path in corpus {
        refuse_empty_corpus(path)?;
    }
    let corpus: Vec<PathBuf> = corpus.iter().map(|p| absolute(p)).collect::<Result<_>>()?;
    let target = task_bytes(cluster, total_bytes(&corpus)?, hosts)?;
    let mut ranges = Vec::new();
    for (i, path) in corpus.iter().enumerate() {
        let cut = document_ranges(path, options.line_docs, target)
            .with_context(|| format!("cannot read {}", path.display()))?;
        ranges.extend(cut.into_iter().map(|(a, b)| (i as u32, a, b)));
    }
    let map = MapJob::CountWords {
        line_docs: options.line_docs,
        lossy: options.lossy,
    };
    let reducer = WordCountReducer::default();
    let (reduced, job) = run_job(
        "train-tokenizer",
        cluster,
        hosts,
        map,
        &corpus,
        &ranges,
        reducer,
    )?;
    eprintln!("{}", job.summary("train-tokenizer"));
    let mut stats = reduced.stats;
    stats.count_seconds = job.map_seconds;
    write_tokenizer(&reduced.counts, output, options, &mut stats)?;
    Ok(stats)
}

/// `tokenize --hosts`: workers encode document-aligned ranges; the coordinator writes their
/// documents to train.bin / val.bin in corpus order.
pub fn tokenize(
    cluster: &PrepClusterArgs,
    hosts: &[Host],
    input: &Path,
    tokenizer: &Path,
    output: &Path,
    options: &TokenizeOptions,
) -> Result<TokenizeStats> {
    refuse_empty_corpus(input)?;
    let loaded = LoadedTokenizer::load(tokenizer)?;
    let tokenizer_text = std::fs::read_to_string(tokenizer)
        .with_context(|| format!("cannot read {}", tokenizer.display()))?;
    let input = absolute(input)?;
    let ranges: Vec<(u32, u64, u64)> = document_ranges(
        &input,
        options.line_docs,
        task_bytes(cluster, total_bytes(&[&input])?, hosts)?,
    )
    .with_context(|| format!("cannot read {}", input.display()))?
    .into_iter()
    .map(|(a, b)| (0, a, b))
    .collect();
    let map = MapJob::Encode {
        line_docs: options.line_docs,
        lossy: options.lossy,
        tokenizer_text,
    };
    let reducer = TokenReducer::new(TokenSink::create(output, options)?, &loaded);
    let (reduced, job) = run_job("tokenize", cluster, hosts, map, &[input], &ranges, reducer)?;
    eprintln!("{}", job.summary("tokenize"));
    Ok(reduced.finish(&loaded)?)
}

/// `process-wiki --hosts`: workers clean runs of whole bz2 streams (or whole pages of plain
/// XML); the coordinator writes the kept pages in dump order.
pub fn process_wiki(
    cluster: &PrepClusterArgs,
    hosts: &[Host],
    input: &Path,
    output: &Path,
    options: &WikiOptions,
) -> Result<WikiStats> {
    let input = absolute(input)?;
    let (header, encoding) = dump_header(&input)?;
    if encoding != Encoding::Utf8 {
        bail!(
            "{} is {encoding:?}: the distributed process-wiki reads UTF-8 dumps (Wikipedia's \
             are); run it without --hosts",
            input.display()
        );
    }
    let target = task_bytes(cluster, total_bytes(&[&input])?, hosts)?;
    let ranges: Vec<(u32, u64, u64)> = dump_ranges(&input, target)
        .with_context(|| format!("cannot read {}", input.display()))?
        .into_iter()
        .map(|(a, b)| (0, a, b))
        .collect();
    if ranges.len() == 1 && hosts.iter().map(|h| h.slots).sum::<u32>() > 1 {
        tracing::warn!(
            "{} is one bz2 stream (or smaller than --task-mib): one worker does all the work \
             (Wikipedia's -multistream dumps split into many tasks)",
            input.display()
        );
    }
    let map = MapJob::Pages {
        rules: options.rules(),
        namespaces: namespace_prefixes(&header),
    };
    let reducer = CorpusReducer {
        sink: CorpusSink::create(output, options)?,
    };
    let (reduced, job) = run_job(
        "process-wiki",
        cluster,
        hosts,
        map,
        &[input],
        &ranges,
        reducer,
    )?;
    eprintln!("{}", job.summary("process-wiki"));
    Ok(reduced.sink.commit()?)
}

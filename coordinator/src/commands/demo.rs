//! `sovereign demo`: the pipeline on a bundled Portuguese mini-dump, with every stage built so
//! far (today: process-wiki, then clean-corpus).

use std::fs;

use anyhow::{Context, Result};

use super::prep;
use crate::cli::{CleanCorpusArgs, DemoArgs, Format, NormalizeArgs, ProcessWikiArgs};

/// The bundled dump: a handful of Portuguese articles with the markup real dumps have, plus a
/// redirect, pages of other namespaces, an empty stub and a malformed page.
const DEMO_DUMP: &str = include_str!("../../../demo/ptwiki-demo.xml");

/// Runs the demo into `args.out`.
pub fn run(args: &DemoArgs) -> Result<()> {
    fs::create_dir_all(&args.out).with_context(|| format!("creating {}", args.out.display()))?;
    let dump = args.out.join("ptwiki-demo.xml");
    fs::write(&dump, DEMO_DUMP).with_context(|| format!("writing {}", dump.display()))?;
    let normalize = NormalizeArgs {
        strip_accents: false,
        lowercase: false,
    };

    eprintln!("== 1/2 process-wiki: {} → corpus.txt", dump.display());
    let raw = args.out.join("corpus.txt");
    let wiki = prep::process_wiki(&ProcessWikiArgs {
        input: dump,
        output: raw.clone(),
        format: Format::Text,
        min_chars: 0,
        threads: Some(2),
        title: true,
        keep_partial: false,
        normalize,
    })?;

    eprintln!("== 2/2 clean-corpus: corpus.txt → clean.txt");
    let clean = args.out.join("clean.txt");
    let cleaned = prep::clean_corpus(&CleanCorpusArgs {
        input: raw,
        output: clean.clone(),
        min_chars: 20,
        line_docs: false,
        dedup_memory_mb: 64,
        threads: Some(2),
        keep_partial: false,
        normalize,
    })?;

    let text =
        fs::read_to_string(&clean).with_context(|| format!("reading {}", clean.display()))?;
    println!("{text}");
    println!(
        "demo: {} of {} pages kept; {} paragraphs in {} documents in {}",
        wiki.kept,
        wiki.pages_read,
        cleaned.paragraphs_written,
        cleaned.documents_written,
        clean.display()
    );
    println!(
        "demo: later stages (train-tokenizer, tokenize, train, generate) join the demo as they \
         are built."
    );
    Ok(())
}

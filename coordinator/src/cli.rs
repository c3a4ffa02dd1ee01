//! The command-line interface: every subcommand of DESIGN §1 and its flags.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Sovereign turns a Wikipedia dump (or any UTF-8 corpus) into a trained RWKV-7 language model.
///
/// Pipeline: process-wiki → clean-corpus → train-tokenizer → tokenize → train → test-model /
/// generate / export. `sovereign demo` runs it on a small bundled corpus.
#[derive(Parser, Debug)]
#[command(
    name = "sovereign",
    version,
    propagate_version = true,
    max_term_width = 100
)]
pub struct Cli {
    /// The stage to run.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Extract clean article text from a MediaWiki XML dump (.xml.bz2 or .xml).
    ///
    /// Reads single-stream and multistream bz2 (multistream streams are decoded in parallel) or
    /// plain XML, in UTF-8 or UTF-16 with a byte-order mark. Keeps namespace 0, skips redirects,
    /// cleans the markup (docs/cleaner.md) and writes the articles in dump order. The output is
    /// written under a temporary name and renamed only when the whole dump has been read.
    ProcessWiki(ProcessWikiArgs),
    /// Clean and normalize a corpus, dropping duplicate and short paragraphs.
    ///
    /// Runs the markup cleaner and the normalizer (NFC; optionally accents stripped and
    /// lowercase) over each paragraph, drops exact-duplicate paragraphs and paragraphs under
    /// --min-chars, and reports how many it dropped and why.
    CleanCorpus(CleanCorpusArgs),
    /// Train a byte-level BPE tokenizer and write a HuggingFace tokenizer.json. [not yet built]
    TrainTokenizer(Planned),
    /// Encode a corpus into train.bin / val.bin (u16 token ids). [not yet built]
    Tokenize(Planned),
    /// Train an RWKV-7 model, on one process or across workers (--hosts). [not yet built]
    Train(Planned),
    /// Continue a training run from its latest (or a chosen) checkpoint. [not yet built]
    Resume(Planned),
    /// Evaluate a checkpoint: loss and perplexity on held-out data. [not yet built]
    TestModel(Planned),
    /// Generate text from a checkpoint with the recurrent state. [not yet built]
    Generate(Planned),
    /// Export a checkpoint's weights for other RWKV tools. [not yet built]
    Export(Planned),
    /// Plot a run's loss curves to a PNG. [not yet built]
    Plot(Planned),
    /// Run the whole pipeline on a small bundled Portuguese corpus.
    ///
    /// Runs every stage built so far (today: process-wiki and clean-corpus) on a bundled
    /// Portuguese mini-dump and prints what each stage produced.
    Demo(DemoArgs),
}

/// Output layout of process-wiki.
#[derive(ValueEnum, Clone, Copy, Debug)]
pub enum Format {
    /// Corpus text: paragraphs on consecutive lines, documents separated by a blank line.
    Text,
    /// One JSON object per line: {"id", "title", "text"}.
    Jsonl,
}

/// Normalization flags shared by the text stages.
#[derive(Args, Debug, Clone, Copy)]
pub struct NormalizeArgs {
    /// Remove accents (NFD, combining marks dropped): "São Paulo" → "Sao Paulo".
    #[arg(long)]
    pub strip_accents: bool,
    /// Lowercase all text.
    #[arg(long)]
    pub lowercase: bool,
}

/// Flags of process-wiki.
#[derive(Args, Debug)]
pub struct ProcessWikiArgs {
    /// The dump: .xml.bz2 (single- or multistream) or .xml.
    #[arg(long, value_name = "DUMP")]
    pub input: PathBuf,
    /// Where to write the corpus.
    #[arg(long, value_name = "FILE")]
    pub output: PathBuf,
    /// Output layout.
    #[arg(long, value_enum, default_value = "text")]
    pub format: Format,
    /// Drop articles whose cleaned text has fewer characters than this.
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub min_chars: usize,
    /// Worker threads for decompression and cleaning (default: all cores).
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,
    /// Start each document with its title on a line of its own.
    #[arg(long)]
    pub title: bool,
    /// On failure, keep what was written as FILE.partial.
    #[arg(long)]
    pub keep_partial: bool,
    #[command(flatten)]
    pub normalize: NormalizeArgs,
}

/// Flags of clean-corpus.
#[derive(Args, Debug)]
pub struct CleanCorpusArgs {
    /// The corpus to clean (documents separated by blank lines).
    #[arg(long, value_name = "FILE")]
    pub input: PathBuf,
    /// Where to write the cleaned corpus.
    #[arg(long, value_name = "FILE")]
    pub output: PathBuf,
    /// Drop paragraphs with fewer characters than this (after cleaning).
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub min_chars: usize,
    /// Treat each input line as a document.
    #[arg(long)]
    pub line_docs: bool,
    /// Memory for the duplicate-paragraph detector, in MiB (16 bytes per distinct paragraph).
    #[arg(long, default_value_t = 1024, value_name = "MIB")]
    pub dedup_memory_mb: usize,
    /// Worker threads (default: all cores).
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,
    /// On failure, keep what was written as FILE.partial.
    #[arg(long)]
    pub keep_partial: bool,
    #[command(flatten)]
    pub normalize: NormalizeArgs,
}

/// Flags of demo.
#[derive(Args, Debug)]
pub struct DemoArgs {
    /// Directory for the demo's outputs.
    #[arg(long, default_value = "demo-run", value_name = "DIR")]
    pub out: PathBuf,
}

/// A stage that a later release builds; its arguments are accepted and ignored.
#[derive(Args, Debug)]
pub struct Planned {
    /// Arguments for the planned stage.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, hide = true)]
    pub args: Vec<String>,
}

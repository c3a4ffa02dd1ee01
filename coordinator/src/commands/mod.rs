//! One module per group of subcommands; [`run`] dispatches.

mod demo;
mod device;
mod infer;
mod prep;
mod train;

use anyhow::{Result, bail};

use crate::cli::Command;

/// Runs one subcommand.
pub fn run(command: Command) -> Result<()> {
    match command {
        Command::ProcessWiki(args) => prep::process_wiki(&args).map(|_| ()),
        Command::CleanCorpus(args) => prep::clean_corpus(&args).map(|_| ()),
        Command::Demo(args) => demo::run(&args),
        Command::TrainTokenizer(args) => prep::train_tokenizer(&args).map(|_| ()),
        Command::Tokenize(args) => prep::tokenize(&args).map(|_| ()),
        Command::Train(args) => train::train(&args),
        Command::Resume(args) => train::resume(&args),
        Command::TestModel(args) => infer::test_model(&args),
        Command::Generate(args) => infer::generate(&args),
        Command::Export(args) => infer::export(&args),
        Command::Plot(_) => planned("plot", "the model and trainer stage"),
    }
}

/// The answer of a subcommand that this release does not have yet.
fn planned(name: &str, stage: &str) -> Result<()> {
    bail!(
        "`sovereign {name}` is not built yet: it arrives with {stage}. This release has \
         process-wiki, clean-corpus, train-tokenizer, tokenize, train, resume,\
         test-model, generate, export and demo (see README.md, \"Status\")."
    )
}

//! One module per group of subcommands; [`run`] dispatches.

mod demo;
mod export;
mod infer;
mod plot;
mod prep;
mod train;

use anyhow::Result;

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
        Command::Export(args) => export::export(&args),
        Command::Plot(args) => plot::plot(&args),
        Command::Dashboard(args) => crate::dashboard::follow_run_dir(&args.run, &args.bind),
    }
}

//! `sovereign`: one command line for the whole pipeline (DESIGN §1). Each subcommand lives in
//! `commands/`; the library work is in `sovereign-common`.

mod cli;
mod cluster;
mod commands;
mod mapreduce;

/// mimalloc keeps freed pages for reuse; glibc returns every block over 32 MiB (the logits and
/// their gradients) to the kernel and faults it back in on the next step (about 1.3× slower
/// training steps here).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    sovereign_common::logging::init_logging();
    match commands::run(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

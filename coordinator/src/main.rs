//! `sovereign`: one command line for the whole pipeline (docs/cli.md). Each subcommand lives in
//! `commands/`; the library work is in `sovereign-common`.

mod cli;
mod cluster;
mod commands;
mod dashboard;
mod mapreduce;

use std::process::ExitCode;

use clap::Parser;
use sovereign_common::allocator::MiMalloc;

/// The process's allocator (common/src/allocator.rs).
#[global_allocator]
static ALLOCATOR: MiMalloc = MiMalloc;

fn main() -> ExitCode {
    sovereign_common::allocator::keep_freed_memory();
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

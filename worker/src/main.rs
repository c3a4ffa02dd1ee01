//! `sovereign-worker`: the daemon that joins a coordinator and runs its share of the work.
//!
//! Distributed training and data preparation arrive with later releases; this build knows its
//! protocol version and says plainly that it cannot join a run yet.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

/// Joins a Sovereign coordinator, receives a rank and a plan, and trains its shard.
#[derive(Parser, Debug)]
#[command(name = "sovereign-worker", version, max_term_width = 100)]
struct Args {
    /// The coordinator's address, host:port.
    #[arg(long, value_name = "ADDR")]
    coordinator: String,
    /// A file holding the run's secret token.
    #[arg(long, value_name = "FILE")]
    token_file: PathBuf,
    /// The device to train on (cpu, cuda:0, …).
    #[arg(long, default_value = "cpu")]
    device: String,
}

fn main() -> ExitCode {
    let args = Args::parse();
    eprintln!(
        "error: sovereign-worker {} (protocol {}) cannot join {} yet: distributed training \
         arrives with a later release (see README.md, \"Status\").",
        env!("CARGO_PKG_VERSION"),
        sovereign_proto::PROTOCOL_PACKAGE,
        args.coordinator
    );
    ExitCode::FAILURE
}

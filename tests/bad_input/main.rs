//! What happens on bad input: every probe of the "nothing lost" issue, run through the real
//! `sovereign` binary. Each bad input or unsafe situation gets one clear error, and no file is
//! lost or left looking complete. (The fuzzing of the parsers is in
//! `common/tests/fuzz_parsers.rs` and the hosts parser's tests.)

mod checkpoints;
mod dumps;
mod outputs;
mod refusals;
mod run_dir;
mod settings;
mod support;
mod token_data;

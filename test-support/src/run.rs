//! Running the workspace's binaries from a test: where they and the workspace are, and their
//! output as text.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The workspace root.
pub fn workspace() -> PathBuf {
    // `cargo test` sets the manifest directory at run time too; it wins over the one compiled in,
    // which a target directory shared between checkouts can leave stale.
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from)
        .parent()
        .expect("tests/ sits in the workspace")
        .to_path_buf()
}

/// A command for a binary of this workspace, built by `cargo test` into the same target
/// directory as the test executable.
pub fn binary(name: &str) -> Command {
    Command::new(binary_path(name))
}

/// The path of a binary of this workspace (see [`binary`]).
pub fn binary_path(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test knows its own path");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("tests run from target/<profile>/deps");
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is not built; run the suite with `cargo test --workspace`",
        path.display()
    );
    path
}

/// Runs `sovereign` with `args`.
pub fn sovereign(args: &[&str]) -> Output {
    binary("sovereign")
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .expect("sovereign runs")
}

/// Runs `sovereign` and panics with its standard error unless it succeeds; returns standard error.
pub fn sovereign_ok(args: &[&str]) -> String {
    let out = sovereign(args);
    assert!(
        out.status.success(),
        "sovereign {args:?} failed:\n{}",
        stderr(&out)
    );
    stderr(&out)
}

/// `sovereign train-tokenizer` of `vocab` tokens on `corpus` into `output`; panics unless it
/// succeeds.
pub fn train_tokenizer(corpus: &Path, vocab: u32, output: &Path) {
    sovereign_ok(&[
        "train-tokenizer",
        "--corpus",
        path_str(corpus),
        "--vocab-size",
        &vocab.to_string(),
        "--output",
        path_str(output),
    ]);
}

/// Standard error as text.
pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// A path as `&str` (test paths are UTF-8).
pub fn path_str(path: &Path) -> &str {
    path.to_str().expect("test paths are UTF-8")
}

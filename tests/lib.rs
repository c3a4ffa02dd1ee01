//! Helpers for the end-to-end tests: locating the built binaries and the shared fixtures, and
//! making test inputs (bz2 single- and multistream files, UTF-16 XML). [`cluster`] holds what the
//! distributed-training tests share.

pub mod cluster;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use bzip2::Compression;
use bzip2::write::BzEncoder;

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

/// Standard error as text.
pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// `../shared/fixtures` (or `$SOVEREIGN_FIXTURES`) when present. When absent the test says so on
/// standard error and should return early; with `SOVEREIGN_REQUIRE_FIXTURES=1` (set by CI) a
/// missing fixture directory fails the test instead.
pub fn shared_fixtures(test: &str) -> Option<PathBuf> {
    let dir = std::env::var_os("SOVEREIGN_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("../shared/fixtures"));
    if dir.is_dir() {
        return Some(dir);
    }
    let required = std::env::var("SOVEREIGN_REQUIRE_FIXTURES").is_ok_and(|v| v == "1");
    assert!(
        !required,
        "{test}: fixtures required but {} is missing",
        dir.display()
    );
    // Written past the test harness's output capture, so that a skipped test is visible.
    let _ = writeln!(
        std::io::stderr(),
        "NOT RUN: {test} needs {} (present in CI)",
        dir.display()
    );
    None
}

/// The bundled demo dump, which doubles as the in-repo test dump.
pub fn demo_dump() -> String {
    std::fs::read_to_string(workspace().join("demo/ptwiki-demo.xml"))
        .expect("demo dump is in the repo")
}

/// Compresses `data` as one bz2 stream.
pub fn bz2(data: &[u8]) -> Vec<u8> {
    let mut encoder = BzEncoder::new(Vec::new(), Compression::best());
    encoder.write_all(data).expect("compressing to memory");
    encoder.finish().expect("compressing to memory")
}

/// A multistream bz2 file as Wikipedia makes them: the header, then groups of `pages_per_stream`
/// pages, then the footer, each group compressed as its own stream.
pub fn bz2_multistream(xml: &str, pages_per_stream: usize) -> Vec<u8> {
    let first = xml.find("<page>").expect("the dump has pages");
    let end = xml.rfind("</page>").expect("the dump has pages") + "</page>".len();
    let mut pieces = vec![&xml[..first]];
    let mut rest = &xml[first..end];
    while !rest.is_empty() {
        let mut cut = 0;
        for _ in 0..pages_per_stream {
            match rest[cut..].find("</page>") {
                Some(at) => cut += at + "</page>".len(),
                None => break,
            }
        }
        if cut == 0 {
            cut = rest.len();
        }
        pieces.push(&rest[..cut]);
        rest = &rest[cut..];
    }
    pieces.push(&xml[end..]);
    pieces
        .iter()
        .flat_map(|piece| bz2(piece.as_bytes()))
        .collect()
}

/// UTF-16 little-endian with a byte-order mark.
pub fn utf16le_with_bom(text: &str) -> Vec<u8> {
    let mut bytes = vec![0xFF, 0xFE];
    for unit in text.encode_utf16() {
        bytes.extend_from_slice(&unit.to_le_bytes());
    }
    bytes
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

/// Whether `python3` can import every module named; when not, says "NOT RUN" like
/// [`shared_fixtures`] (and fails under `SOVEREIGN_REQUIRE_FIXTURES=1`, as in CI, where
/// `.ci/run` installs them).
pub fn python_has(test: &str, modules: &[&str]) -> bool {
    let import = format!("import {}", modules.join(", "));
    let ok = Command::new("python3")
        .args(["-c", &import])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        let required = std::env::var("SOVEREIGN_REQUIRE_FIXTURES").is_ok_and(|v| v == "1");
        assert!(
            !required,
            "{test}: python3 cannot `{import}` (CI installs it with pip)"
        );
        let _ = writeln!(
            std::io::stderr(),
            "NOT RUN: {test} needs python3 with {modules:?} (pip install)"
        );
    }
    ok
}

/// Runs `sovereign process-wiki --input INPUT --output OUTPUT EXTRA…`.
pub fn process_wiki(input: &Path, output: &Path, extra: &[&str]) -> Output {
    let mut args = vec![
        "process-wiki",
        "--input",
        path_str(input),
        "--output",
        path_str(output),
    ];
    args.extend_from_slice(extra);
    sovereign(&args)
}

/// A path as `&str` (test paths are UTF-8).
pub fn path_str(path: &Path) -> &str {
    path.to_str().expect("test paths are UTF-8")
}

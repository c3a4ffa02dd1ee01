//! The fixtures of `../shared` and the outside tools a test needs: when one is missing the test
//! says "NOT RUN" on standard error and returns early, unless CI requires it
//! (`SOVEREIGN_REQUIRE_FIXTURES=1`), where it fails instead.

use std::io::Write;
use std::path::PathBuf;
use std::process::Command;

use crate::run::workspace;

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
    not_run(test, &format!("{} (present in CI)", dir.display()));
    None
}

/// Says on standard error that `test` did not run for want of `needs`; under
/// `SOVEREIGN_REQUIRE_FIXTURES=1` (CI, which provides everything) fails the test instead.
fn not_run(test: &str, needs: &str) {
    let required = std::env::var("SOVEREIGN_REQUIRE_FIXTURES").is_ok_and(|v| v == "1");
    assert!(!required, "{test} is required in CI but needs {needs}");
    // Written past the test harness's output capture, so that a skipped test is visible.
    let _ = writeln!(std::io::stderr(), "NOT RUN: {test} needs {needs}");
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
        not_run(
            test,
            &format!("python3 with {modules:?} (pip install; CI installs them)"),
        );
    }
    ok
}

/// The path of every program named, found on `PATH`; when one is missing, says "NOT RUN" like
/// [`shared_fixtures`] (and fails under `SOVEREIGN_REQUIRE_FIXTURES=1`, as in CI, where
/// `.ci/run` installs them) and returns `None`.
pub fn programs(test: &str, names: &[&str]) -> Option<Vec<PathBuf>> {
    let find = |name: &str| {
        std::env::var_os("PATH").and_then(|path| {
            std::env::split_paths(&path)
                .map(|dir| dir.join(name))
                .find(|candidate| candidate.is_file())
        })
    };
    let found: Vec<Option<PathBuf>> = names.iter().map(|n| find(n)).collect();
    if found.iter().all(Option::is_some) {
        return Some(found.into_iter().flatten().collect());
    }
    let missing: Vec<&str> = names
        .iter()
        .zip(&found)
        .filter(|(_, f)| f.is_none())
        .map(|(n, _)| *n)
        .collect();
    not_run(test, &format!("{missing:?} on PATH (CI installs them)"));
    None
}

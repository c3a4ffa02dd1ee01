//! The `sovereign-worker` binary: its flags, and its plain refusal until distributed training
//! is built.

use std::process::Command;

#[test]
fn worker_names_its_flags_and_refuses_to_join_yet() {
    let worker = env!("CARGO_BIN_EXE_sovereign-worker");
    let help = Command::new(worker).arg("--help").output().unwrap();
    let help = String::from_utf8(help.stdout).unwrap();
    for flag in ["--coordinator", "--token-file", "--device"] {
        assert!(help.contains(flag), "{help}");
    }
    let out = Command::new(worker)
        .args([
            "--coordinator",
            "127.0.0.1:1",
            "--token-file",
            "/nonexistent",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("cannot join 127.0.0.1:1 yet"), "{err}");
    assert!(err.contains("protocol sovereign.v1"), "{err}");
}

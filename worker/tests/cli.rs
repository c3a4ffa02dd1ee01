//! The `sovereign-worker` binary: its flags, and one clear error for each thing it cannot use.

use std::process::Command;

#[test]
fn worker_names_its_flags_and_its_bad_inputs() {
    let worker = env!("CARGO_BIN_EXE_sovereign-worker");
    let help = Command::new(worker).arg("--help").output().unwrap();
    let help = String::from_utf8(help.stdout).unwrap();
    for flag in [
        "--coordinator",
        "--token-file",
        "--device",
        "--bind",
        "--data-dir",
        "--cache-dir",
        "--tls-cert",
    ] {
        assert!(help.contains(flag), "{help}");
    }
    let run = |args: &[&str]| {
        let out = Command::new(worker).args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(1));
        String::from_utf8(out.stderr).unwrap()
    };
    let err = run(&[
        "--coordinator",
        "127.0.0.1:1",
        "--token-file",
        "/nonexistent",
    ]);
    assert!(err.contains("reading the token file /nonexistent"), "{err}");
    let token = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(token.path(), "t\n").unwrap();
    let token = token.path().to_str().unwrap();
    // Nothing listens on port 1.
    let with_token = |device: &str| {
        run(&[
            "--coordinator",
            "127.0.0.1:1",
            "--token-file",
            token,
            "--device",
            device,
        ])
    };
    let err = with_token("cpu");
    assert!(
        err.contains("cannot reach the coordinator: cannot connect to 127.0.0.1:1"),
        "{err}"
    );
    // A backend the binary was built with is accepted (the missing coordinator is then the
    // error); one it was built without is named.
    for (device, built) in [
        ("cuda:0", cfg!(feature = "cuda")),
        ("wgpu:0", cfg!(feature = "wgpu")),
    ] {
        let err = with_token(device);
        let expected = if built {
            "cannot reach the coordinator".to_string()
        } else {
            format!("--device {device}: this binary was built without that backend")
        };
        assert!(err.contains(&expected), "{device}: {err}");
    }
    let err = with_token("tpu");
    assert!(
        err.contains("--device tpu: use cpu, cuda:N or wgpu:N"),
        "{err}"
    );
}

//! Helpers for the distributed-training tests: a small run on synthetic tokens, the real
//! coordinator started with its log on a channel, and comparisons of checkpoint weights.

use std::fs;
use std::io::BufRead;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use sovereign_test_support::{
    binary, coordinator_address as address_in, max_relative_difference, path_str, patterned_tokens,
    sovereign, stderr, write_tokens,
};

/// Tokens with some structure, and a run.toml for the micro model on them.
pub fn setup(dir: &Path) {
    write_tokens(&dir.join("train.bin"), &patterned_tokens(20_000, 16));
    fs::write(
        dir.join("run.toml"),
        "vocab = 16\nmodel = \"micro\"\nseq_len = 16\nmicro_bsz = 2\naccum = 2\nsteps = 20\n\
         warmup = 2\nlr = 0.003\nmin_lr = 0.0003\ncheckpoint_every = 10\neval_every = 0\n",
    )
    .unwrap();
}

/// The value of `key` in every line of a run's metrics.jsonl.
pub fn metrics_column(run: &Path, key: &str) -> Vec<serde_json::Value> {
    fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()[key].take())
        .collect()
}

/// The loss of every step in a run's metrics.jsonl.
pub fn losses(run: &Path) -> Vec<f64> {
    metrics_column(run, "loss")
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect()
}

/// Starts `sovereign train --hosts` (2 local workers) with its log lines on a channel.
pub fn start_cluster(dir: &Path, extra: &[&str]) -> (Child, mpsc::Receiver<String>) {
    fs::write(dir.join("hosts.txt"), "localhost slots=2\n").unwrap();
    start_coordinator(dir, extra)
}

/// Starts `sovereign train --hosts hosts.txt` on the run in `dir` (output in `dir/cluster`),
/// with its log lines on a channel.
pub fn start_coordinator(dir: &Path, extra: &[&str]) -> (Child, mpsc::Receiver<String>) {
    start_coordinator_with(binary("sovereign"), dir, extra)
}

/// [`start_coordinator`] through `launcher`, a command that runs `sovereign` with the arguments
/// added to it (for example inside a network namespace).
pub fn start_coordinator_with(
    mut launcher: Command,
    dir: &Path,
    extra: &[&str],
) -> (Child, mpsc::Receiver<String>) {
    let p = |name: &str| dir.join(name);
    launcher
        .args(["train", "--config", path_str(&p("run.toml")), "--data"])
        .arg(p("train.bin"))
        .args(["--hosts", path_str(&p("hosts.txt")), "--out"])
        .arg(p("cluster"))
        .args(extra);
    spawn_logged(launcher)
}

/// Starts `command` with its standard error's lines on a channel.
pub fn spawn_logged(mut command: Command) -> (Child, mpsc::Receiver<String>) {
    let mut child = command.stderr(Stdio::piped()).spawn().unwrap();
    let (tx, rx) = mpsc::channel();
    let pipe = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(pipe).lines() {
            let Ok(line) = line else { break };
            let _ = tx.send(line);
        }
    });
    (child, rx)
}

/// The host:port the coordinator logged it listens on.
pub fn coordinator_address(lines: &mpsc::Receiver<String>) -> String {
    let (line, _) = wait_for_line(lines, "coordinator on ", Duration::from_secs(30));
    address_in(&line).expect("the line names an address")
}

/// The worker processes the coordinator started.
pub fn worker_pids(coordinator: &Child) -> Vec<u32> {
    let pid = coordinator.id();
    fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .map(|p| p.parse().unwrap())
        .collect()
}

/// Waits until the run has written `steps` metrics lines.
pub fn wait_for_steps(run: &Path, steps: usize) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while fs::read_to_string(run.join("metrics.jsonl")).map_or(0, |t| t.lines().count()) < steps {
        assert!(
            Instant::now() < deadline,
            "the run did not reach step {steps}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The first log line containing `needle` within `limit`, with the time it took.
pub fn wait_for_line(
    lines: &mpsc::Receiver<String>,
    needle: &str,
    limit: Duration,
) -> (String, Duration) {
    let start = Instant::now();
    while let Some(left) = limit.checked_sub(start.elapsed()) {
        match lines.recv_timeout(left) {
            Ok(line) if line.contains(needle) => return (line, start.elapsed()),
            Ok(_) => {}
            Err(_) => break,
        }
    }
    panic!("no log line with {needle:?} within {limit:?}");
}

/// Sends `signal` to `pid`.
pub fn signal(pid: u32, signal: &str) {
    let status = std::process::Command::new("kill")
        .args([signal, &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

/// `sovereign train` on the run in `dir` (run.toml, train.bin) into `dir/out`, with `extra`
/// flags; asserts that it succeeded.
pub fn train_run(dir: &Path, out: &str, extra: &[&str]) {
    let (config, data, out) = (dir.join("run.toml"), dir.join("train.bin"), dir.join(out));
    let mut args = vec![
        "train",
        "--config",
        path_str(&config),
        "--data",
        path_str(&data),
        "--out",
        path_str(&out),
    ];
    args.extend(extra);
    let trained = sovereign(&args);
    assert!(trained.status.success(), "{}", stderr(&trained));
}

/// Runs the uninterrupted reference (`--emulate-world 2`) and checks the cluster's final weights.
pub fn assert_same_weights_as_uninterrupted(dir: &Path) {
    let p = |name: &str| dir.join(name);
    train_run(dir, "emulated", &["--emulate-world", "2"]);
    let worst = max_relative_difference(
        &p("cluster/ckpt-000020/model.safetensors"),
        &p("emulated/ckpt-000020/model.safetensors"),
    );
    eprintln!(
        "cluster run vs the uninterrupted --emulate-world 2: max relative difference {worst:.2e}"
    );
    assert!(worst <= 1e-5, "max relative difference {worst:e}");
    assert_eq!(losses(&p("cluster")), losses(&p("emulated")));
}

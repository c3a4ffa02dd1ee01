//! Distributed training end to end with real processes: `sovereign train --hosts` starts local
//! `sovereign-worker` processes that join over gRPC and average gradients over the ring; after
//! 20 steps of the micro model their weights equal (to float reduction order) those of
//! `sovereign train --emulate-world N`, one process taking every rank's micro-batches in rank
//! order. A worker with the wrong token is refused. A worker killed with SIGKILL is named within
//! 10 s and a frozen one (SIGSTOP) is reported as stalled; the group restarts from the last
//! checkpoint and still ends with the uninterrupted run's weights. A killed coordinator is
//! followed by `sovereign resume --run DIR --hosts`, which continues from `latest`.

use std::fs;
use std::io::BufRead;
use std::path::Path;
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use safetensors::SafeTensors;
use sovereign_tests::{binary, path_str, sovereign, stderr};

/// Tokens with some structure, and a run.toml for the micro model on them.
fn setup(dir: &Path) {
    let ids: Vec<u8> = (0..20_000u32)
        .flat_map(|i| (((i * 7 + i / 11) % 16) as u16).to_le_bytes())
        .collect();
    fs::write(dir.join("train.bin"), ids).unwrap();
    fs::write(
        dir.join("run.toml"),
        "vocab = 16\nmodel = \"micro\"\nseq_len = 16\nmicro_bsz = 2\naccum = 2\nsteps = 20\n\
         warmup = 2\nlr = 0.003\nmin_lr = 0.0003\ncheckpoint_every = 10\neval_every = 0\n",
    )
    .unwrap();
}

/// The f32 tensors of a safetensors file, by name.
fn tensors(path: &Path) -> Vec<(String, Vec<f32>)> {
    let bytes = fs::read(path).unwrap();
    let file = SafeTensors::deserialize(&bytes).unwrap();
    let mut out: Vec<(String, Vec<f32>)> = file
        .tensors()
        .into_iter()
        .map(|(name, view)| {
            let values = view
                .data()
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect();
            (name, values)
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// The largest per-tensor relative L2 difference, ‖a − b‖ / ‖b‖.
fn max_relative_difference(a: &Path, b: &Path) -> f64 {
    let (a, b) = (tensors(a), tensors(b));
    assert_eq!(a.len(), b.len());
    let mut worst = 0f64;
    for ((name_a, x), (name_b, y)) in a.iter().zip(&b) {
        assert_eq!(name_a, name_b);
        let diff: f64 = x
            .iter()
            .zip(y)
            .map(|(&p, &q)| f64::from(p - q).powi(2))
            .sum();
        let norm: f64 = y.iter().map(|&q| f64::from(q).powi(2)).sum();
        worst = worst.max((diff / norm.max(1e-24)).sqrt());
    }
    worst
}

fn losses(run: &Path) -> Vec<f64> {
    fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["loss"]
                .as_f64()
                .unwrap()
        })
        .collect()
}

fn workers_match_the_emulated_world(world: u32) {
    let dir = tempfile::tempdir().unwrap();
    setup(dir.path());
    let p = |name: &str| dir.path().join(name);
    fs::write(
        p("hosts.txt"),
        format!("# a local run\nlocalhost slots={world}\n"),
    )
    .unwrap();
    let cluster = sovereign(&[
        "train",
        "--config",
        path_str(&p("run.toml")),
        "--data",
        path_str(&p("train.bin")),
        "--hosts",
        path_str(&p("hosts.txt")),
        "--out",
        path_str(&p("cluster")),
    ]);
    assert!(cluster.status.success(), "{}", stderr(&cluster));
    let emulated = sovereign(&[
        "train",
        "--config",
        path_str(&p("run.toml")),
        "--data",
        path_str(&p("train.bin")),
        "--emulate-world",
        &world.to_string(),
        "--out",
        path_str(&p("emulated")),
    ]);
    assert!(emulated.status.success(), "{}", stderr(&emulated));

    let (ours, reference) = (losses(&p("cluster")), losses(&p("emulated")));
    assert_eq!(ours.len(), 20);
    for (a, b) in ours.iter().zip(&reference) {
        assert!(
            (a - b).abs() <= 1e-4 * b.abs(),
            "losses {ours:?} vs {reference:?}"
        );
    }
    let worst = max_relative_difference(
        &p("cluster/ckpt-000020/model.safetensors"),
        &p("emulated/ckpt-000020/model.safetensors"),
    );
    eprintln!("{world} workers vs --emulate-world {world}: max relative difference {worst:.2e}");
    assert!(worst <= 1e-5, "max relative difference {worst:e}");
    let meta: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(p("cluster/ckpt-000020/meta.json")).unwrap())
            .unwrap();
    assert_eq!(meta["world_size"], world);
}

#[test]
fn two_workers_match_the_emulated_world() {
    workers_match_the_emulated_world(2);
}

#[test]
fn three_workers_match_the_emulated_world() {
    workers_match_the_emulated_world(3);
}

#[test]
fn a_worker_with_the_wrong_token_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    setup(dir.path());
    let p = |name: &str| dir.path().join(name);
    fs::write(p("hosts.txt"), "localhost slots=1\n").unwrap();
    // A coordinator that waits for one worker; an impostor dials in first.
    let mut coordinator = binary("sovereign")
        .args(["train", "--config", path_str(&p("run.toml")), "--data"])
        .arg(p("train.bin"))
        .args([
            "--hosts",
            path_str(&p("hosts.txt")),
            "--launcher",
            "none",
            "--steps",
            "2",
        ])
        .arg("--out")
        .arg(p("run"))
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr_pipe = coordinator.stderr.take().unwrap();
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(stderr_pipe));
    let address = loop {
        let line = lines
            .next()
            .expect("the coordinator logs its address")
            .unwrap();
        if let Some(rest) = line.split("coordinator on ").nth(1) {
            break rest.split(':').take(2).collect::<Vec<_>>().join(":");
        }
    };
    fs::write(p("wrong-token"), "not-the-token\n").unwrap();
    let impostor = binary("sovereign-worker")
        .args([
            "--coordinator",
            &address,
            "--token-file",
            path_str(&p("wrong-token")),
        ])
        .output()
        .unwrap();
    assert!(!impostor.status.success());
    assert!(
        stderr(&impostor).contains("missing or wrong run token"),
        "{}",
        stderr(&impostor)
    );
    let refused = lines
        .by_ref()
        .take(20)
        .map(Result::unwrap)
        .find(|l| l.contains("refused a join"));
    assert!(refused.is_some(), "the coordinator logs the refusal");
    // The real worker, with the token the coordinator wrote, trains the run.
    let worker = binary("sovereign-worker")
        .args([
            "--coordinator",
            &address,
            "--token-file",
            path_str(&p("run/token")),
        ])
        .output()
        .unwrap();
    assert!(worker.status.success(), "{}", stderr(&worker));
    assert!(coordinator.wait().unwrap().success());
    assert_eq!(losses(&p("run")).len(), 2);
}

/// Starts `sovereign train --hosts` (2 local workers) with its log lines on a channel.
fn start_cluster(dir: &Path, extra: &[&str]) -> (Child, mpsc::Receiver<String>) {
    let p = |name: &str| dir.join(name);
    fs::write(p("hosts.txt"), "localhost slots=2\n").unwrap();
    let mut coordinator = binary("sovereign")
        .args(["train", "--config", path_str(&p("run.toml")), "--data"])
        .arg(p("train.bin"))
        .args(["--hosts", path_str(&p("hosts.txt")), "--out"])
        .arg(p("cluster"))
        .args(extra)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = mpsc::channel();
    let pipe = coordinator.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(pipe).lines() {
            let Ok(line) = line else { break };
            let _ = tx.send(line);
        }
    });
    (coordinator, rx)
}

/// The worker processes the coordinator started.
fn worker_pids(coordinator: &Child) -> Vec<u32> {
    let pid = coordinator.id();
    fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .map(|p| p.parse().unwrap())
        .collect()
}

/// Waits until the run has written `steps` metrics lines.
fn wait_for_steps(run: &Path, steps: usize) {
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
fn wait_for_line(
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
fn signal(pid: u32, signal: &str) {
    let status = std::process::Command::new("kill")
        .args([signal, &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

/// Runs the uninterrupted reference (`--emulate-world 2`) and checks the cluster's final weights.
fn assert_same_weights_as_uninterrupted(dir: &Path) {
    let p = |name: &str| dir.join(name);
    let emulated = sovereign(&[
        "train",
        "--config",
        path_str(&p("run.toml")),
        "--data",
        path_str(&p("train.bin")),
        "--emulate-world",
        "2",
        "--out",
        path_str(&p("emulated")),
    ]);
    assert!(emulated.status.success(), "{}", stderr(&emulated));
    let worst = max_relative_difference(
        &p("cluster/ckpt-000020/model.safetensors"),
        &p("emulated/ckpt-000020/model.safetensors"),
    );
    eprintln!("restarted run vs uninterrupted: max relative difference {worst:.2e}");
    assert!(worst <= 1e-5, "max relative difference {worst:e}");
    assert_eq!(losses(&p("cluster")), losses(&p("emulated")));
}

#[test]
fn a_killed_worker_is_named_and_the_group_restarts_from_the_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    setup(dir.path());
    let (mut coordinator, lines) = start_cluster(dir.path(), &[]);
    wait_for_steps(&dir.path().join("cluster"), 12);
    let victim = worker_pids(&coordinator)[1];
    signal(victim, "-KILL");
    let (line, took) = wait_for_line(&lines, "died", Duration::from_secs(10));
    eprintln!("after {took:?}: {line}");
    assert!(line.contains(&format!("(pid {victim}) died")), "{line}");
    assert!(line.contains("rank "), "{line}");
    let (line, _) = wait_for_line(&lines, "restarting the group", Duration::from_secs(10));
    assert!(line.contains("ckpt-000010"), "{line}");
    assert!(coordinator.wait().unwrap().success());
    assert_same_weights_as_uninterrupted(dir.path());
}

#[test]
fn a_frozen_worker_is_reported_as_stalled_and_replaced() {
    let dir = tempfile::tempdir().unwrap();
    setup(dir.path());
    let (mut coordinator, lines) = start_cluster(dir.path(), &["--stall-timeout", "3"]);
    wait_for_steps(&dir.path().join("cluster"), 12);
    let victim = worker_pids(&coordinator)[0];
    signal(victim, "-STOP");
    let (line, took) = wait_for_line(&lines, "stalled", Duration::from_secs(6));
    eprintln!("after {took:?}: {line}");
    assert!(line.contains(&format!("(pid {victim} on")), "{line}");
    assert!(coordinator.wait().unwrap().success());
    assert_same_weights_as_uninterrupted(dir.path());
}

#[test]
fn a_killed_coordinator_is_resumed_from_latest() {
    let dir = tempfile::tempdir().unwrap();
    setup(dir.path());
    let (mut coordinator, _lines) = start_cluster(dir.path(), &[]);
    let run = dir.path().join("cluster");
    wait_for_steps(&run, 12);
    let workers = worker_pids(&coordinator);
    coordinator.kill().unwrap();
    coordinator.wait().unwrap();
    // Without their coordinator the workers stop on their own (their reports fail).
    let deadline = Instant::now() + Duration::from_secs(30);
    while workers.iter().any(|pid| {
        fs::read_to_string(format!("/proc/{pid}/stat"))
            .is_ok_and(|stat| stat.split_whitespace().nth(2).is_none_or(|s| s != "Z"))
    }) {
        assert!(Instant::now() < deadline, "orphaned workers kept running");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(run.join("latest").exists());
    let resumed = sovereign(&[
        "resume",
        "--run",
        path_str(&run),
        "--hosts",
        path_str(&dir.path().join("hosts.txt")),
    ]);
    assert!(resumed.status.success(), "{}", stderr(&resumed));
    assert_same_weights_as_uninterrupted(dir.path());
}

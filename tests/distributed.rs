//! Distributed training end to end with real processes: `sovereign train --hosts` starts local
//! `sovereign-worker` processes that join over gRPC and average gradients over the ring; after
//! 20 steps of the micro model their weights equal those of `sovereign train --emulate-world N`,
//! one process taking every rank's micro-batches in rank order (with dropout too). A worker with
//! the wrong token is refused.

use std::fs;

use sovereign_test_support::max_relative_difference;
use sovereign_test_support::{binary, coordinator_address, path_str, stderr};
use sovereign_tests::cluster::{losses, setup, train_run};

fn workers_match_the_emulated_world(world: u32, extra: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    setup(dir.path());
    let p = |name: &str| dir.path().join(name);
    fs::write(
        p("hosts.txt"),
        format!("# a local run\nlocalhost slots={world}\n"),
    )
    .unwrap();
    let hosts = p("hosts.txt");
    let mut cluster = vec!["--hosts", path_str(&hosts)];
    cluster.extend(extra);
    train_run(dir.path(), "cluster", &cluster);
    let world_flag = world.to_string();
    let mut emulated = vec!["--emulate-world", &world_flag];
    emulated.extend(extra);
    train_run(dir.path(), "emulated", &emulated);

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
    workers_match_the_emulated_world(2, &[]);
}

/// With dropout: each rank's masks depend on (seed, step, rank, micro-batch), so the workers
/// drop exactly what the emulated ranks drop.
#[test]
fn three_workers_with_dropout_match_the_emulated_world() {
    workers_match_the_emulated_world(3, &["--dropout", "0.1"]);
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
        if let Some(address) = coordinator_address(&line) {
            break address;
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

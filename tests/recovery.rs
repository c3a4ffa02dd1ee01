//! Failure and recovery of distributed training with real processes: a worker killed with
//! SIGKILL is named within 10 s and a frozen one (SIGSTOP) is reported as stalled; the group
//! restarts from the last checkpoint and still ends with the uninterrupted run's weights. A killed
//! coordinator is followed by `sovereign resume --run DIR --hosts`, which continues from
//! `latest`; Ctrl-C stops the run after a checkpoint it can be resumed from.

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use sovereign_test_support::{path_str, sovereign, stderr};
use sovereign_tests::cluster::{
    assert_same_weights_as_uninterrupted, setup, signal, start_cluster, wait_for_line,
    wait_for_steps, worker_pids,
};

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
    resume_to_the_uninterrupted_weights(dir.path());
}

#[test]
fn ctrl_c_stops_after_a_checkpoint_that_resumes() {
    let dir = tempfile::tempdir().unwrap();
    setup(dir.path());
    // No periodic checkpoints: the one the stop writes is the only one before the end.
    let (mut coordinator, lines) = start_cluster(dir.path(), &["--checkpoint-every", "0"]);
    let run = dir.path().join("cluster");
    wait_for_steps(&run, 5);
    signal(coordinator.id(), "-INT");
    let (line, _) = wait_for_line(
        &lines,
        "Ctrl-C: the workers stop after step",
        Duration::from_secs(10),
    );
    let at: u64 = line
        .split("stop after step ")
        .nth(1)
        .and_then(|rest| rest.split(',').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no step in {line:?}"));
    let (line, _) = wait_for_line(
        &lines,
        "interrupted: stopped after step",
        Duration::from_secs(60),
    );
    let status = coordinator.wait().unwrap();
    assert!(
        !status.success(),
        "an interrupted run does not report success"
    );
    let checkpoint = format!("ckpt-{at:06}");
    assert!(line.contains(&checkpoint), "{line}");
    assert_eq!(
        fs::read_to_string(run.join("latest")).unwrap().trim(),
        checkpoint
    );
    assert_eq!(
        fs::read_to_string(run.join("metrics.jsonl"))
            .unwrap()
            .lines()
            .count() as u64,
        at
    );
    eprintln!("stopped after step {at}; resuming");
    resume_to_the_uninterrupted_weights(dir.path());
}

/// `sovereign resume --run DIR/cluster --hosts DIR/hosts.txt`, then the uninterrupted run's
/// weights.
fn resume_to_the_uninterrupted_weights(dir: &Path) {
    let resumed = sovereign(&[
        "resume",
        "--run",
        path_str(&dir.join("cluster")),
        "--hosts",
        path_str(&dir.join("hosts.txt")),
    ]);
    assert!(resumed.status.success(), "{}", stderr(&resumed));
    assert_same_weights_as_uninterrupted(dir);
}

//! One writer per run directory; an atomic rollback; no dead end before the first checkpoint.

use crate::support::*;

#[test]
fn a_second_writer_is_refused_naming_the_holder_and_a_killed_ones_lock_is_taken_over() {
    let (dir, data) = prepared_copy();
    let out = dir.path().join("run");
    let mut first = sovereign_logged(&strs(&train_args(&data, &out, "1000")), "warn")
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while !out.join("ckpt-000002").exists() {
        assert!(std::time::Instant::now() < deadline, "no checkpoint");
        std::thread::sleep(Duration::from_millis(50));
    }
    let err = refused(&["resume", "--run", path_str(&out)]);
    assert!(err.contains("is in use"), "{err}");
    assert!(err.contains(&format!("pid {}", first.id())), "{err}");
    let err = refused(&strs(&train_args(&data, &out, "4")));
    assert!(err.contains("is in use"), "{err}");
    signal(first.id(), "-KILL");
    first.wait().unwrap();
    // The dead holder's lock is stale: resume takes it over (and stops at once: the killed run
    // asked for 1000 steps, so this one is interrupted after its next step by a kill too).
    let (mut second, lines) = spawn_logged(sovereign_logged(
        &["resume", "--run", path_str(&out)],
        "info",
    ));
    wait_for_line(
        &lines,
        "died holding it; lock taken over",
        Duration::from_secs(60),
    );
    wait_for_line(&lines, "resuming", Duration::from_secs(60));
    signal(second.id(), "-KILL");
    second.wait().unwrap();
}

#[test]
fn a_rollback_killed_at_once_is_continued_by_a_plain_resume() {
    let (dir, data) = prepared_copy();
    let out = dir.path().join("run");
    let args = with(
        train_args(&data, &out, "8"),
        &["--checkpoint-every", "4", "--seq-len", "64"],
    );
    sovereign_ok(&strs(&args));
    assert_eq!(metrics_steps(&out), (1..=8).collect::<Vec<_>>());
    // Roll back to step 4, killed as soon as it says it is resuming.
    let from = out.join("ckpt-000004");
    let resume = ["resume", "--run", path_str(&out), "--from", path_str(&from)];
    let (mut rollback, lines) = spawn_logged(sovereign_logged(&resume, "info"));
    wait_for_line(&lines, "resuming", Duration::from_secs(60));
    signal(rollback.id(), "-KILL");
    rollback.wait().unwrap();
    assert_eq!(
        fs::read_to_string(out.join("latest")).unwrap(),
        "ckpt-000004\n"
    );
    // A plain resume continues from the rolled-back point.
    let resumed = sovereign_logged(&["resume", "--run", path_str(&out)], "info")
        .output()
        .unwrap();
    let err = stderr(&resumed);
    assert!(resumed.status.success(), "{err}");
    assert!(err.contains("from step 4"), "{err}");
    assert_eq!(metrics_steps(&out), (1..=8).collect::<Vec<_>>());
}

#[test]
fn a_run_that_failed_before_its_first_checkpoint_is_no_dead_end() {
    let (dir, data) = prepared_copy();
    let out = dir.path().join("run");
    let nan = nan_weights(dir.path());
    let mut args = train_args(&data, &out, "2");
    args.extend(["--init-from".to_string(), path_str(&nan).to_string()]);
    refused(&strs(&args));
    let err = refused(&["resume", "--run", path_str(&out)]);
    assert!(err.contains("has no checkpoint yet"), "{err}");
    assert!(err.contains("start it again"), "{err}");
    // Stale temporaries of a killed writer are cleared at the next start.
    fs::create_dir(out.join(".ckpt-000002.tmp-4999999")).unwrap();
    fs::write(out.join(".latest.tmp-4999999"), "x").unwrap();
    sovereign_ok(&strs(&train_args(&data, &out, "2")));
    assert_eq!(metrics_steps(&out), [1, 2]);
    assert!(!out.join(".ckpt-000002.tmp-4999999").exists());
    assert!(!out.join(".latest.tmp-4999999").exists());
    // Killed between its first checkpoint and `latest`: the checkpoint is whole and is kept.
    fs::remove_file(out.join("latest")).unwrap();
    let err = refused(&strs(&train_args(&data, &out, "2")));
    assert!(err.contains("already holds a run"), "{err}");
    let err = refused(&["resume", "--run", path_str(&out)]);
    assert!(err.contains("latest is missing; continuing from"), "{err}");
    assert!(err.contains("ckpt-000002"), "{err}");
    assert!(err.contains("no steps left"), "{err}");
}

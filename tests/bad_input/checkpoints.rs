//! Checkpoints verified wherever they are read; paths in a run.

use crate::support::*;

#[test]
fn a_damaged_checkpoint_is_refused_everywhere_it_is_read() {
    let (dir, data) = prepared_copy();
    let run = dir.path().join("run");
    copy_dir(&trained().join("run"), &run);
    let newest = run.join("ckpt-000004");
    let weights = newest.join("model.safetensors");
    let mut bytes = fs::read(&weights).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x40;
    fs::write(&weights, bytes).unwrap();
    let damaged = "sha256";
    let (train_bin, tokenizer) = (data.join("train.bin"), data.join("tokenizer.json"));
    let exported = dir.path().join("x.safetensors");
    let (newest_s, weights_s) = (path_str(&newest), path_str(&weights));
    let test_model = ["--data", path_str(&train_bin), "--seq-len", "32"];
    let cases: Vec<Vec<String>> = vec![
        with(
            vec!["test-model".into(), "--checkpoint".into(), newest_s.into()],
            &test_model,
        ),
        with(
            vec!["test-model".into(), "--weights".into(), weights_s.into()],
            &test_model,
        ),
        with(
            vec!["generate".into(), "--checkpoint".into(), newest_s.into()],
            &["--tokenizer", path_str(&tokenizer), "--prompt", "O"],
        ),
        with(
            vec!["export".into(), "--checkpoint".into(), newest_s.into()],
            &["--output", path_str(&exported)],
        ),
        with(
            train_args(&data, &dir.path().join("fresh"), "2"),
            &["--init-from", weights_s],
        ),
    ];
    for args in &cases {
        let err = refused(&strs(args));
        assert!(
            err.contains(damaged) && err.contains("the checkpoint is damaged"),
            "{args:?}: {err}"
        );
    }
    assert!(!exported.exists());
    let err = refused(&["resume", "--run", path_str(&run)]);
    assert!(err.contains("the checkpoint is damaged"), "{err}");
    let whole = run.join("ckpt-000002");
    assert!(
        err.contains(&format!(
            "the newest whole checkpoint is {}",
            whole.display()
        )),
        "{err}"
    );
    assert!(err.contains("resume with --from"), "{err}");
    // A missing meta.json is named as such.
    fs::remove_file(whole.join("meta.json")).unwrap();
    let err = refused(&[
        "test-model",
        "--checkpoint",
        path_str(&whole),
        "--data",
        path_str(&data.join("train.bin")),
    ]);
    assert!(err.contains("meta.json is missing"), "{err}");
}

#[test]
fn a_run_continues_from_any_directory_and_from_moved_data() {
    let (dir, data) = prepared_copy();
    let work = dir.path().join("work");
    fs::create_dir(&work).unwrap();
    copy_dir(&data, &work.join("data"));
    let relative = train_args(Path::new("data"), Path::new("run"), "4");
    let trained = sovereign_logged(&strs(&relative), "warn")
        .current_dir(&work)
        .output()
        .unwrap();
    assert!(trained.status.success(), "{}", stderr(&trained));
    let run = work.join("run");
    let meta: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(run.join("ckpt-000002/meta.json")).unwrap())
            .unwrap();
    for key in ["data", "tokenizer", "out"] {
        let path = meta["config"][key].as_str().unwrap();
        assert!(Path::new(path).is_absolute(), "{key}: {path}");
    }
    // Generate from another directory.
    let elsewhere = binary("sovereign")
        .args([
            "generate",
            "--checkpoint",
            path_str(&run.join("ckpt-000002")),
        ])
        .args(["--tokenizer", path_str(&work.join("data/tokenizer.json"))])
        .args(["--prompt", "O", "--max-tokens", "4"])
        .current_dir("/")
        .output()
        .unwrap();
    assert!(elsewhere.status.success(), "{}", stderr(&elsewhere));
    // The data moves; a rollback to step 2 from "/" finds it through --data when its checksum
    // is the run's.
    let moved = dir.path().join("moved");
    fs::create_dir(&moved).unwrap();
    for name in ["train.bin", "train.bin.json"] {
        fs::rename(work.join("data").join(name), moved.join(name)).unwrap();
    }
    let from = run.join("ckpt-000002");
    let err = refused(&["resume", "--run", path_str(&run), "--from", path_str(&from)]);
    assert!(err.contains("data/train.bin"), "{err}");
    let other = dir.path().join("other.bin");
    fs::copy(moved.join("train.bin"), &other).unwrap();
    let mut sidecar: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(moved.join("train.bin.json")).unwrap()).unwrap();
    sidecar["data_sha256"] = "11".repeat(32).into();
    fs::write(dir.path().join("other.bin.json"), sidecar.to_string()).unwrap();
    let err = refused(&[
        "resume",
        "--run",
        path_str(&run),
        "--from",
        path_str(&from),
        "--data",
        path_str(&other),
    ]);
    assert!(err.contains("is not the data this run trained on"), "{err}");
    let moved_data = moved.join("train.bin");
    let resume = ["resume", "--run", path_str(&run), "--from", path_str(&from)];
    let resumed = sovereign_logged(&resume, "warn")
        .args(["--data", path_str(&moved_data)])
        .current_dir("/")
        .output()
        .unwrap();
    assert!(resumed.status.success(), "{}", stderr(&resumed));
    assert_eq!(metrics_steps(&run), [1, 2, 3, 4]);
    let meta: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(run.join("ckpt-000004/meta.json")).unwrap())
            .unwrap();
    assert_eq!(
        meta["config"]["data"].as_str().unwrap(),
        path_str(&moved.join("train.bin"))
    );
}

//! Token data: every id, the sidecar's checksum, tokenizer and `[EOS]`, a `--vocab` too small for
//! the tokenizer; in a cluster, one error.

use crate::support::*;

/// `data`'s train.bin with id `id` written at token `at`, its sidecar made to agree again.
fn with_bad_id(data: &Path, at: usize, id: u16) {
    let path = data.join("train.bin");
    let mut bytes = fs::read(&path).unwrap();
    bytes[at * 2..at * 2 + 2].copy_from_slice(&id.to_le_bytes());
    fs::write(&path, &bytes).unwrap();
    let sidecar = data.join("train.bin.json");
    let mut meta: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(&sidecar).unwrap()).unwrap();
    meta["data_sha256"] = sha256_hex(&bytes).into();
    fs::write(&sidecar, meta.to_string()).unwrap();
}

#[test]
fn an_id_outside_the_vocabulary_anywhere_is_named_never_a_panic() {
    let (dir, data) = prepared_copy();
    let tokens = fs::metadata(data.join("train.bin")).unwrap().len() as usize / 2;
    let at = tokens - 3;
    with_bad_id(&data, at, 60_000);
    let out = dir.path().join("run");
    for extra in [&[][..], &["--skip-checksum"][..]] {
        let mut args = train_args(&data, &out, "4");
        args.extend(extra.iter().map(|s| s.to_string()));
        let err = refused(&strs(&args));
        assert!(
            err.contains(&format!(
                "train.bin: token {at} (byte {}) is id 60000",
                at * 2
            )),
            "{err}"
        );
        assert!(err.contains("not below the vocabulary size 300"), "{err}");
    }
    // test-model checks the same way.
    let err = refused(&[
        "test-model",
        "--checkpoint",
        path_str(&trained().join("run/ckpt-000004")),
        "--data",
        path_str(&data.join("train.bin")),
        "--seq-len",
        "32",
    ]);
    assert!(err.contains("is id 60000"), "{err}");
}

#[test]
fn in_a_cluster_a_data_error_is_the_runs_one_error_with_no_restarts() {
    let (dir, data) = prepared_copy();
    // Over two million tokens, so that a check of evenly spaced ids would skip the bad one.
    let path = data.join("train.bin");
    let bytes = fs::read(&path).unwrap();
    let big: Vec<u8> = bytes.iter().copied().cycle().take(4_400_000).collect();
    fs::write(&path, &big).unwrap();
    let sidecar = data.join("train.bin.json");
    let mut meta: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(&sidecar).unwrap()).unwrap();
    meta["tokens"] = 2_200_000.into();
    fs::write(&sidecar, meta.to_string()).unwrap();
    let at = 1_500_001;
    with_bad_id(&data, at, 61_000);
    fs::write(dir.path().join("hosts.txt"), "localhost slots=2\n").unwrap();
    let args = with(
        train_args(&data, &dir.path().join("run"), "4"),
        &["--hosts", path_str(&dir.path().join("hosts.txt"))],
    );
    let out = sovereign_logged(&strs(&args), "info").output().unwrap();
    let err = check_refused(&out, &["train --hosts"]);
    assert!(
        err.contains(&format!("token {at} (byte {}) is id 61000", at * 2)),
        "{err}"
    );
    assert_eq!(err.matches("is id 61000").count(), 1, "{err}");
    assert!(!err.contains("restarting"), "{err}");
    assert!(
        !err.contains("joined as rank"),
        "no worker should start:\n{err}"
    );
}

#[test]
fn the_sidecar_checksum_tokenizer_eos_and_vocabulary_are_checked() {
    let (dir, data) = prepared_copy();
    let out = dir.path().join("run");
    let sidecar = data.join("train.bin.json");
    let original = fs::read_to_string(&sidecar).unwrap();
    let edit = |key: &str, value: serde_json::Value| {
        let mut meta: serde_json::Value = serde_json::from_str(&original).unwrap();
        meta[key] = value;
        fs::write(&sidecar, meta.to_string()).unwrap();
    };
    edit("data_sha256", "00".repeat(32).into());
    let err = refused(&strs(&train_args(&data, &out, "4")));
    assert!(err.contains("train.bin: sha256"), "{err}");
    assert!(err.contains("differs from the sidecar's 0000"), "{err}");
    assert!(err.contains("--skip-checksum"), "{err}");
    // --skip-checksum trains on it anyway.
    let mut args = train_args(&data, &out, "2");
    args.push("--skip-checksum".into());
    sovereign_ok(&strs(&args));

    edit("tokenizer_sha256", "ab".repeat(32).into());
    let err = refused(&strs(&train_args(&data, &dir.path().join("r2"), "4")));
    assert!(
        err.contains("was made with the tokenizer of sha256 abab"),
        "{err}"
    );
    assert!(err.contains("tokenizer.json has sha256"), "{err}");

    edit("eos_id", 4.into());
    let err = refused(&strs(&train_args(&data, &dir.path().join("r3"), "4")));
    assert!(
        err.contains("eos_id 4 differs from the [EOS] id (3)"),
        "{err}"
    );

    edit("vocab_size", 512.into());
    let err = refused(&strs(&train_args(&data, &dir.path().join("r4"), "4")));
    assert!(
        err.contains("was tokenized with a vocabulary of 512 tokens"),
        "{err}"
    );
}

#[test]
fn a_vocabulary_smaller_than_the_tokenizers_is_refused_before_training() {
    let (dir, data) = prepared_copy();
    let out = dir.path().join("run");
    let args = with(train_args(&data, &out, "4"), &["--vocab", "16"]);
    let err = refused(&strs(&args));
    assert!(
        err.contains("--vocab 16 is smaller than the 300 ids of the tokenizer"),
        "{err}"
    );
    assert!(err.contains("tokenizer.json"), "{err}");
    assert!(!out.join("metrics.jsonl").exists());
}

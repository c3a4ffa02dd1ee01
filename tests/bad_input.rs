//! What happens on bad input: every probe of the "nothing lost" issue, run through the real
//! `sovereign` binary. Each bad input or unsafe situation gets one clear error, and no file is
//! lost or left looking complete. (The fuzzing of the parsers is in
//! `common/tests/fuzz_parsers.rs` and the hosts parser's tests.)

use std::fs;
use std::os::unix::fs::{FileTypeExt, symlink};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use sovereign_tests::cluster::{metrics_column, signal, spawn_logged, wait_for_line};
use sovereign_tests::{binary, bz2, bz2_multistream, demo_dump, path_str, sovereign, stderr};

/// Runs `sovereign` and asserts that it fails cleanly (exit 1, no panic); returns its stderr.
fn refused(args: &[&str]) -> String {
    let out = sovereign(args);
    check_refused(&out, args)
}

fn check_refused(out: &Output, what: &[&str]) -> String {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(1), "{what:?} should fail:\n{err}");
    assert!(!err.contains("panicked"), "{what:?} panicked:\n{err}");
    err
}

/// Runs `sovereign` and asserts that it succeeds; returns its stderr.
fn ok(args: &[&str]) -> String {
    let out = sovereign(args);
    assert!(out.status.success(), "{args:?} failed:\n{}", stderr(&out));
    stderr(&out)
}

/// The names in `dir`, sorted.
fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn copy_dir(from: &Path, to: &Path) {
    let status = Command::new("cp")
        .args(["-a", path_str(from), path_str(to)])
        .status()
        .unwrap();
    assert!(status.success());
}

/// The demo dump taken through process-wiki, train-tokenizer (300 tokens) and tokenize, made
/// once: `corpus.txt`, `tokenizer.json`, `train.bin` (+ sidecar).
fn prepared() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let p = |n: &str| dir.path().join(n);
        fs::write(p("dump.xml"), demo_dump()).unwrap();
        ok(&[
            "process-wiki",
            "--input",
            path_str(&p("dump.xml")),
            "--output",
            path_str(&p("corpus.txt")),
        ]);
        ok(&[
            "train-tokenizer",
            "--corpus",
            path_str(&p("corpus.txt")),
            "--vocab-size",
            "300",
            "--output",
            path_str(&p("tokenizer.json")),
        ]);
        ok(&[
            "tokenize",
            "--input",
            path_str(&p("corpus.txt")),
            "--tokenizer",
            path_str(&p("tokenizer.json")),
            "--output",
            path_str(&p("train.bin")),
        ]);
        dir
    })
    .path()
}

/// A copy of [`prepared`] in a fresh directory.
fn prepared_copy() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    copy_dir(prepared(), &data);
    (dir, data)
}

/// `train` flags for a quick micro run on `data` (train.bin and tokenizer.json) into `out`.
fn train_args<'a>(data: &'a Path, out: &'a Path, steps: &'a str) -> Vec<String> {
    [
        "train",
        "--data",
        path_str(&data.join("train.bin")),
        "--tokenizer",
        path_str(&data.join("tokenizer.json")),
        "--out",
        path_str(out),
        "--model",
        "micro",
        "--seq-len",
        "32",
        "--micro-bsz",
        "2",
        "--steps",
        steps,
        "--warmup",
        "1",
        "--checkpoint-every",
        "2",
        "--eval-every",
        "0",
        "--keep",
        "0",
    ]
    .map(String::from)
    .to_vec()
}

/// `args` with `extra` flags, each replacing the same flag's earlier value (`--flag value` or
/// `--flag=value`).
fn with(mut args: Vec<String>, extra: &[&str]) -> Vec<String> {
    for flag in extra.iter().filter(|e| e.starts_with("--")) {
        let name = flag.split('=').next().unwrap_or(flag);
        if let Some(at) = args.iter().position(|a| a == name) {
            args.drain(at..at + 2);
        }
    }
    args.extend(extra.iter().map(|e| e.to_string()));
    args
}

fn strs(args: &[String]) -> Vec<&str> {
    args.iter().map(String::as_str).collect()
}

/// A 4-step micro run on [`prepared`] data with checkpoints at steps 2 and 4, made once.
fn trained() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        ok(&strs(&train_args(prepared(), &dir.path().join("run"), "4")));
        dir
    })
    .path()
}

/// The f32 tensors of a safetensors file, changed by `edit`, written to `to`.
fn edit_weights(from: &Path, to: &Path, edit: impl Fn(&str, &mut [f32])) {
    let bytes = fs::read(from).unwrap();
    let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let tensors: Vec<(String, Vec<usize>, Vec<u8>)> = file
        .tensors()
        .into_iter()
        .map(|(name, view)| {
            let mut values: Vec<f32> = view
                .data()
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
                .collect();
            edit(&name, &mut values);
            let data = values.iter().flat_map(|v| v.to_le_bytes()).collect();
            (name, view.shape().to_vec(), data)
        })
        .collect();
    let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = tensors
        .iter()
        .map(|(name, shape, data)| {
            let view =
                safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape.clone(), data)
                    .unwrap();
            (name.clone(), view)
        })
        .collect();
    fs::write(to, safetensors::serialize(views, None).unwrap()).unwrap();
}

// 1. Damaged multistream dumps.

#[test]
fn a_damaged_multistream_dump_is_refused_with_its_offset_and_no_corpus() {
    let dir = tempfile::tempdir().unwrap();
    let xml = demo_dump();
    let streams = bz2_multistream(&xml, 2);
    let input = dir.path().join("dump.xml.bz2");
    let output = dir.path().join("corpus.txt");
    // Where the third stream starts (the header is the first).
    let starts: Vec<usize> = streams
        .windows(4)
        .enumerate()
        .filter(|(_, w)| w.starts_with(b"BZh9") && w.len() == 4)
        .map(|(i, _)| i)
        .collect();
    assert!(starts.len() >= 4, "{starts:?}");
    let third = starts[2];

    // A bad 'BZh' header on a middle stream.
    let mut bad_header = streams.clone();
    bad_header[third] = b'X';
    // A middle stream cut short (its last 40 bytes dropped).
    let mut cut = streams[..starts[3] - 40].to_vec();
    cut.extend_from_slice(&streams[starts[3]..]);
    // The streams after the third dropped: the XML ends without </mediawiki>.
    let dropped_tail = streams[..starts[3]].to_vec();
    for (case, bytes, expected) in [
        (
            "bad header",
            bad_header,
            format!("damaged multistream dump at byte {third}"),
        ),
        ("cut stream", cut, "bz2 data".to_string()),
        (
            "dropped tail",
            dropped_tail,
            "without </mediawiki>: the dump is cut short".to_string(),
        ),
    ] {
        fs::write(&input, bytes).unwrap();
        for threads in ["1", "2"] {
            let err = refused(&[
                "process-wiki",
                "--input",
                path_str(&input),
                "--output",
                path_str(&output),
                "--threads",
                threads,
            ]);
            assert!(err.contains(&expected), "{case}: {err}");
            assert!(err.contains("dump.xml.bz2"), "{case}: {err}");
            assert!(
                err.contains("pages had been written before the error"),
                "{case}: {err}"
            );
            assert!(!output.exists(), "{case}: a corpus was left");
            assert_eq!(names(dir.path()), ["dump.xml.bz2"], "{case}");
        }
    }
    // The whole file still converts.
    fs::write(&input, &streams).unwrap();
    ok(&[
        "process-wiki",
        "--input",
        path_str(&input),
        "--output",
        path_str(&output),
    ]);
}

// 2. Input that is not a MediaWiki export; empty corpora in the later stages.

#[test]
fn input_that_is_not_a_mediawiki_export_is_named_and_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("corpus.txt");
    let utf16: Vec<u8> = demo_dump()
        .encode_utf16()
        .flat_map(u16::to_le_bytes)
        .collect();
    let random: Vec<u8> = (0u32..4096)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    for (name, bytes, found) in [
        ("random.bin", random, "found binary data"),
        (
            "notes.txt",
            b"Isto \xc3\xa9 um texto qualquer.\n".to_vec(),
            "found text that starts \"Isto é um texto qualquer.",
        ),
        (
            "dump.xml.gz",
            vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3, 1, 2, 3],
            "found gzip-compressed data",
        ),
        ("empty.xml", Vec::new(), "found an empty file"),
        (
            "utf16.xml",
            utf16,
            "found UTF-16 text without a byte-order mark",
        ),
        (
            "text.bz2",
            bz2(b"just some text\n"),
            "found text that starts",
        ),
    ] {
        let input = dir.path().join(name);
        fs::write(&input, &bytes).unwrap();
        let err = refused(&[
            "process-wiki",
            "--input",
            path_str(&input),
            "--output",
            path_str(&output),
        ]);
        assert!(
            err.contains(&format!("{name} is not a MediaWiki XML export")),
            "{name}: {err}"
        );
        assert!(err.contains(found), "{name}: {err}");
        assert!(
            err.contains("expected XML that starts with <mediawiki>"),
            "{name}"
        );
        assert!(!output.exists(), "{name}: output written");
        fs::remove_file(&input).unwrap();
    }
}

#[test]
fn the_later_stages_refuse_an_empty_corpus_naming_it() {
    let (dir, data) = prepared_copy();
    let empty = dir.path().join("empty.txt");
    fs::write(&empty, "\n \n").unwrap();
    let out = dir.path().join("out");
    let err = refused(&[
        "clean-corpus",
        "--input",
        path_str(&empty),
        "--output",
        path_str(&out),
    ]);
    assert!(
        err.contains("empty.txt holds no documents (an empty corpus)"),
        "{err}"
    );
    let err = refused(&[
        "train-tokenizer",
        "--corpus",
        path_str(&empty),
        "--vocab-size",
        "300",
        "--output",
        path_str(&out),
    ]);
    assert!(err.contains("empty.txt holds no documents"), "{err}");
    let err = refused(&[
        "tokenize",
        "--input",
        path_str(&empty),
        "--tokenizer",
        path_str(&data.join("tokenizer.json")),
        "--output",
        path_str(&out),
    ]);
    assert!(err.contains("empty.txt holds no documents"), "{err}");
    assert!(!out.exists());
}

// 3. Outputs never destroy inputs or special files.

#[test]
fn an_output_that_is_an_input_is_refused_by_path_hard_link_and_symlink() {
    let (dir, data) = prepared_copy();
    let corpus = data.join("corpus.txt");
    let before = fs::read(&corpus).unwrap();
    let hard = dir.path().join("hard.txt");
    fs::hard_link(&corpus, &hard).unwrap();
    let soft = dir.path().join("soft.txt");
    symlink(&corpus, &soft).unwrap();
    let tokenizer = data.join("tokenizer.json");
    for output in [&corpus, &hard, &soft] {
        let (input, output) = (path_str(&corpus), path_str(output));
        for args in [
            vec!["clean-corpus", "--input", input, "--output", output],
            vec!["train-tokenizer", "--corpus", input, "--output", output],
            vec!["tokenize", "--input", input, "--output", output]
                .into_iter()
                .chain(["--tokenizer", path_str(&tokenizer)])
                .collect(),
        ] {
            let err = refused(&args);
            assert!(
                err.contains("is the same file as the input"),
                "{args:?}: {err}"
            );
        }
    }
    let err = refused(&[
        "tokenize",
        "--input",
        path_str(&corpus),
        "--tokenizer",
        path_str(&tokenizer),
        "--output",
        path_str(&tokenizer),
    ]);
    assert!(err.contains("is the same file as the input"), "{err}");
    let dump = dir.path().join("dump.xml");
    fs::write(&dump, demo_dump()).unwrap();
    let err = refused(&[
        "process-wiki",
        "--input",
        path_str(&dump),
        "--output",
        path_str(&dump),
    ]);
    assert!(err.contains("is the same file as the input"), "{err}");
    // Two outputs of one command that are one file.
    let err = refused(&[
        "tokenize",
        "--input",
        path_str(&corpus),
        "--tokenizer",
        path_str(&tokenizer),
        "--output",
        path_str(&data.join("train.bin")),
        "--val-output",
        path_str(&data.join("train.bin")),
    ]);
    assert!(err.contains("are the same file"), "{err}");
    assert_eq!(fs::read(&corpus).unwrap(), before);
    assert_eq!(fs::read_to_string(&dump).unwrap(), demo_dump());
}

/// A character device node of its own in `dir` (`mknod`, as root), so that a regression replaces
/// that node and never the machine's; `/dev/NAME` itself where nodes cannot be made.
fn device(dir: &Path, name: &str, minor: &str) -> PathBuf {
    let node = dir.join(name);
    let made = Command::new("mknod")
        .args([path_str(&node), "c", "1", minor])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if made {
        node
    } else {
        Path::new("/dev").join(name)
    }
}

#[test]
fn a_device_is_written_in_place_and_a_symlink_writes_its_target() {
    let (dir, data) = prepared_copy();
    let corpus = data.join("corpus.txt");
    let null = device(dir.path(), "null", "3");
    ok(&[
        "clean-corpus",
        "--input",
        path_str(&corpus),
        "--output",
        path_str(&null),
    ]);
    assert!(fs::metadata(&null).unwrap().file_type().is_char_device());
    let full = device(dir.path(), "full", "7");
    if full.exists() {
        let err = refused(&[
            "clean-corpus",
            "--input",
            path_str(&corpus),
            "--output",
            path_str(&full),
        ]);
        assert!(err.contains("No space left on device"), "{err}");
        assert!(fs::metadata(&full).unwrap().file_type().is_char_device());
    }
    let target = dir.path().join("target.txt");
    let link = dir.path().join("link.txt");
    symlink("target.txt", &link).unwrap();
    ok(&[
        "clean-corpus",
        "--input",
        path_str(&corpus),
        "--output",
        path_str(&link),
    ]);
    assert!(
        fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert!(fs::read_to_string(&target).unwrap().len() > 100);
    // A FIFO gets the bytes, and stays a FIFO.
    let fifo = dir.path().join("pipe");
    assert!(
        Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    let reader = {
        let fifo = fifo.clone();
        std::thread::spawn(move || fs::read(fifo).unwrap())
    };
    ok(&[
        "clean-corpus",
        "--input",
        path_str(&corpus),
        "--output",
        path_str(&fifo),
    ]);
    assert_eq!(reader.join().unwrap(), fs::read(&target).unwrap());
    assert!(fs::metadata(&fifo).unwrap().file_type().is_fifo());
}

// 4. Settings validated before any work.

#[test]
fn bad_settings_are_refused_before_any_work() {
    let (dir, data) = prepared_copy();
    let out = dir.path().join("run");
    for (flags, expected) in [
        (vec!["--lr=-1"], "--lr -1 must be a positive finite number"),
        (
            vec!["--lr", "NaN"],
            "--lr NaN must be a positive finite number",
        ),
        (
            vec!["--lr", "inf"],
            "--lr inf must be a positive finite number",
        ),
        (
            vec!["--lr", "0.1", "--min-lr", "1"],
            "--min-lr 1 must be between 0 and --lr 0.1",
        ),
        (vec!["--min-lr=-0.1"], "--min-lr -0.1 must be between 0"),
        (
            vec!["--warmup", "30"],
            "--warmup 30 is longer than the run's --steps 4",
        ),
        (
            vec!["--weight-decay=-1"],
            "--weight-decay -1 must be a finite number of at least 0",
        ),
        (
            vec!["--dropout", "1"],
            "--dropout 1 must be at least 0 and below 1",
        ),
        (
            vec!["--seq-len", "100001"],
            "--seq-len 100001 must be a positive multiple of 16",
        ),
        (vec!["--seq-len", "99984"], "needs windows of 99985 tokens"),
        (
            vec!["--seq-len", "1312", "--micro-bsz", "64"],
            "--micro-bsz 64 needs as many different windows of 1313 tokens",
        ),
        (
            vec!["--wire-dtype", "f16"],
            "invalid value 'f16' for '--wire-dtype",
        ),
    ] {
        let args = with(train_args(&data, &out, "4"), &flags);
        let out_status = sovereign(&strs(&args));
        let err = stderr(&out_status);
        assert_ne!(out_status.status.code(), Some(0), "{flags:?}");
        assert!(!err.contains("panicked"), "{flags:?}: {err}");
        assert!(err.contains(expected), "{flags:?}: {err}");
        let leftovers = if out.exists() { names(&out) } else { vec![] };
        assert!(
            leftovers.iter().all(|n| n == "lock"),
            "{flags:?} left {leftovers:?}"
        );
    }
    // The same checks hold for a run.toml.
    let toml = dir.path().join("run.toml");
    fs::write(&toml, "lr = -0.001\n").unwrap();
    let mut args = train_args(&data, &out, "4");
    args.extend(["--config".to_string(), path_str(&toml).to_string()]);
    let err = refused(&strs(&args));
    assert!(
        err.contains("--lr -0.001 must be a positive finite number"),
        "{err}"
    );
    fs::write(&toml, "wire_dtype = \"f16\"\n").unwrap();
    let err = refused(&strs(&args));
    assert!(err.contains("run.toml: not a valid run config"), "{err}");
    assert!(err.contains("unknown variant `f16`"), "{err}");
}

#[test]
fn a_non_finite_loss_at_the_first_step_blames_the_weights_not_the_learning_rate() {
    let (dir, data) = prepared_copy();
    let nan = dir.path().join("nan.safetensors");
    edit_weights(
        &trained().join("run/ckpt-000002/model.safetensors"),
        &nan,
        |name, values| {
            if name == "ln_out.weight" {
                values.fill(f32::NAN);
            }
        },
    );
    let out = dir.path().join("run");
    let mut args = train_args(&data, &out, "4");
    args.extend(["--init-from".to_string(), path_str(&nan).to_string()]);
    let err = refused(&strs(&args));
    assert!(
        err.contains("step 1: the loss is NaN before any update"),
        "{err}"
    );
    assert!(err.contains("--init-from"), "{err}");
    assert!(!err.contains("lower --lr"), "{err}");
}

// 5. Token data.

/// `data`'s train.bin with id `id` written at token `at`, its sidecar made to agree again.
fn with_bad_id(data: &Path, at: usize, id: u16) {
    let path = data.join("train.bin");
    let mut bytes = fs::read(&path).unwrap();
    bytes[at * 2..at * 2 + 2].copy_from_slice(&id.to_le_bytes());
    fs::write(&path, &bytes).unwrap();
    let sidecar = data.join("train.bin.json");
    let mut meta: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(&sidecar).unwrap()).unwrap();
    meta["data_sha256"] = sha256(&bytes).into();
    fs::write(&sidecar, meta.to_string()).unwrap();
}

fn sha256(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
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
    let out = binary("sovereign")
        .args(&args)
        .env("RUST_LOG", "info")
        .output()
        .unwrap();
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
    ok(&strs(&args));

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

// 6. One writer per run directory.

#[test]
fn a_second_writer_is_refused_naming_the_holder_and_a_killed_ones_lock_is_taken_over() {
    let (dir, data) = prepared_copy();
    let out = dir.path().join("run");
    let mut first = binary("sovereign")
        .args(strs(&train_args(&data, &out, "1000")))
        .env("RUST_LOG", "warn")
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
    let (mut second, lines) = spawn_logged({
        let mut c = binary("sovereign");
        c.args(["resume", "--run", path_str(&out)])
            .env("RUST_LOG", "info");
        c
    });
    wait_for_line(
        &lines,
        "died holding it; lock taken over",
        Duration::from_secs(60),
    );
    wait_for_line(&lines, "resuming", Duration::from_secs(60));
    signal(second.id(), "-KILL");
    second.wait().unwrap();
}

fn metrics_steps(run: &Path) -> Vec<u64> {
    metrics_column(run, "step")
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect()
}

#[test]
fn a_rollback_killed_at_once_is_continued_by_a_plain_resume() {
    let (dir, data) = prepared_copy();
    let out = dir.path().join("run");
    let args = with(
        train_args(&data, &out, "8"),
        &["--checkpoint-every", "4", "--seq-len", "64"],
    );
    ok(&strs(&args));
    assert_eq!(metrics_steps(&out), (1..=8).collect::<Vec<_>>());
    // Roll back to step 4, killed as soon as it says it is resuming.
    let (mut rollback, lines) = spawn_logged({
        let mut c = binary("sovereign");
        c.args([
            "resume",
            "--run",
            path_str(&out),
            "--from",
            path_str(&out.join("ckpt-000004")),
        ])
        .env("RUST_LOG", "info");
        c
    });
    wait_for_line(&lines, "resuming", Duration::from_secs(60));
    signal(rollback.id(), "-KILL");
    rollback.wait().unwrap();
    assert_eq!(
        fs::read_to_string(out.join("latest")).unwrap(),
        "ckpt-000004\n"
    );
    // A plain resume continues from the rolled-back point.
    let resumed = binary("sovereign")
        .args(["resume", "--run", path_str(&out)])
        .env("RUST_LOG", "info")
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
    let nan = dir.path().join("nan.safetensors");
    edit_weights(
        &trained().join("run/ckpt-000002/model.safetensors"),
        &nan,
        |name, values| {
            if name == "ln_out.weight" {
                values.fill(f32::NAN);
            }
        },
    );
    let mut args = train_args(&data, &out, "2");
    args.extend(["--init-from".to_string(), path_str(&nan).to_string()]);
    refused(&strs(&args));
    let err = refused(&["resume", "--run", path_str(&out)]);
    assert!(err.contains("has no checkpoint yet"), "{err}");
    assert!(err.contains("start it again"), "{err}");
    // Stale temporaries of a killed writer are cleared at the next start.
    fs::create_dir(out.join(".ckpt-000002.tmp-4999999")).unwrap();
    fs::write(out.join(".latest.tmp-4999999"), "x").unwrap();
    ok(&strs(&train_args(&data, &out, "2")));
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

// 7. Checkpoints verified wherever they are read.

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

// 8. Paths in a run.

#[test]
fn a_run_continues_from_any_directory_and_from_moved_data() {
    let (dir, data) = prepared_copy();
    let work = dir.path().join("work");
    fs::create_dir(&work).unwrap();
    copy_dir(&data, &work.join("data"));
    let relative = train_args(Path::new("data"), Path::new("run"), "4");
    let trained = binary("sovereign")
        .args(strs(&relative))
        .current_dir(&work)
        .env("RUST_LOG", "warn")
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
    let resumed = binary("sovereign")
        .args(["resume", "--run", path_str(&run), "--from", path_str(&from)])
        .args(["--data", path_str(&moved.join("train.bin"))])
        .current_dir("/")
        .env("RUST_LOG", "warn")
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

// 9. generate prints every token.

#[test]
fn generate_prints_every_token_with_invalid_utf8_as_replacement_characters() {
    let (dir, data) = prepared_copy();
    // A model whose head is zero samples every token alike, lone UTF-8 continuation bytes
    // among them.
    let flat = dir.path().join("flat.safetensors");
    edit_weights(
        &trained().join("run/ckpt-000004/model.safetensors"),
        &flat,
        |name, values| {
            if name == "head.weight" {
                values.fill(0.0);
            }
        },
    );
    let out = sovereign(&[
        "generate",
        "--weights",
        path_str(&flat),
        "--tokenizer",
        path_str(&data.join("tokenizer.json")),
        "--prompt",
        "O",
        "--max-tokens",
        "120",
        "--top-p",
        "1",
        "--seed",
        "7",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8(out.stdout.clone()).expect("stdout is valid UTF-8");
    assert!(text.contains('\u{FFFD}'), "{text:?}");
    let err = stderr(&out);
    let count: usize = err
        .split("generate: ")
        .nth(1)
        .and_then(|s| s.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{err}"));
    // Every generated token shows: at least one character for every four bytes-tokens.
    assert!(text.chars().count() > count / 4, "{count} tokens: {text:?}");
}

// 10. Smaller refusals.

#[test]
fn hosts_file_mistakes_are_refused_with_their_line() {
    let (dir, data) = prepared_copy();
    let hosts = dir.path().join("hosts.txt");
    for (text, expected) in [
        (
            "localhost slots=1\nlocalhost slots=1\n",
            "hosts.txt:2: localhost is already listed on line 1",
        ),
        (
            "# two\nlocalhost slots=1 slots=2\n",
            "hosts.txt:2: slots= is given twice",
        ),
        ("localhost\n", "hosts.txt:1: slots= is missing"),
    ] {
        fs::write(&hosts, text).unwrap();
        let mut args = train_args(&data, &dir.path().join("run"), "2");
        args.extend(["--hosts".to_string(), path_str(&hosts).to_string()]);
        let err = refused(&strs(&args));
        assert!(err.contains(expected), "{text:?}: {err}");
    }
}

#[test]
fn a_tokenizer_json_whose_post_processor_would_change_ids_is_refused() {
    let (dir, data) = prepared_copy();
    let mut json: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(data.join("tokenizer.json")).unwrap()).unwrap();
    json["post_processor"] = serde_json::json!({"type": "TemplateProcessing",
        "single": [{"SpecialToken": {"id": "[BOS]", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
        "pair": [], "special_tokens": {}});
    let bad = dir.path().join("bad.json");
    fs::write(&bad, json.to_string()).unwrap();
    let err = refused(&[
        "tokenize",
        "--input",
        path_str(&data.join("corpus.txt")),
        "--tokenizer",
        path_str(&bad),
        "--output",
        path_str(&dir.path().join("x.bin")),
    ]);
    assert!(err.contains("bad.json: post_processor is set"), "{err}");
    assert!(err.contains("it would change the ids"), "{err}");
}

#[test]
fn clean_corpus_drops_control_characters_and_counts_them() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("raw.txt");
    fs::write(
        &input,
        b"Texto\x00 com\x01 controle.\n\nOutro\x1b documento.\n",
    )
    .unwrap();
    let output = dir.path().join("clean.txt");
    let err = ok(&[
        "clean-corpus",
        "--input",
        path_str(&input),
        "--output",
        path_str(&output),
    ]);
    assert_eq!(
        fs::read_to_string(&output).unwrap(),
        "Texto com controle.\n\nOutro documento.\n"
    );
    assert!(err.contains("control characters dropped 3"), "{err}");
}

#[test]
fn tokenize_names_only_flags_it_accepts_for_invalid_utf8() {
    let (dir, data) = prepared_copy();
    let input = dir.path().join("bad.txt");
    fs::write(&input, b"ol\xe1 mundo\n").unwrap();
    let err = refused(&[
        "tokenize",
        "--input",
        path_str(&input),
        "--tokenizer",
        path_str(&data.join("tokenizer.json")),
        "--output",
        path_str(&dir.path().join("x.bin")),
    ]);
    assert!(err.contains("invalid UTF-8"), "{err}");
    let help = String::from_utf8(sovereign(&["tokenize", "--help"]).stdout).unwrap();
    let flags: Vec<&str> = err
        .match_indices("--")
        .map(|(at, _)| {
            let rest = &err[at..];
            let end = rest[2..]
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
                .map_or(rest.len(), |e| e + 2);
            &rest[..end]
        })
        .collect();
    assert!(flags.contains(&"--lossy"), "{err}");
    for flag in flags {
        assert!(help.contains(flag), "{flag} is not a tokenize flag: {err}");
    }
}

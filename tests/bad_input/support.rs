//! What the bad-input tests share: running `sovereign` and checking a refusal, the demo data
//! prepared once and a short run trained once (each test works on a copy), flag lists, edited
//! weights and device nodes of their own.

pub use std::fs;
pub use std::os::unix::fs::{FileTypeExt, symlink};
pub use std::path::{Path, PathBuf};
pub use std::process::{Command, Output, Stdio};
pub use std::sync::OnceLock;
pub use std::time::Duration;

pub use sovereign_test_support::{binary, path_str, sha256_hex, sovereign, sovereign_ok, stderr};
pub use sovereign_tests::cluster::{metrics_column, signal, spawn_logged, wait_for_line};
pub use sovereign_tests::{bz2, bz2_multistream, demo_dump, prepare_demo_data, process_wiki};

/// `sovereign ARGS` with its log at `log` (`RUST_LOG`), to run, spawn or move elsewhere.
pub fn sovereign_logged(args: &[&str], log: &str) -> Command {
    let mut command = binary("sovereign");
    command.args(args).env("RUST_LOG", log);
    command
}

pub fn refused(args: &[&str]) -> String {
    let out = sovereign(args);
    check_refused(&out, args)
}

pub fn check_refused(out: &Output, what: &[&str]) -> String {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(1), "{what:?} should fail:\n{err}");
    assert!(!err.contains("panicked"), "{what:?} panicked:\n{err}");
    err
}

/// The names in `dir`, sorted.
pub fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

pub fn copy_dir(from: &Path, to: &Path) {
    let status = Command::new("cp")
        .args(["-a", path_str(from), path_str(to)])
        .status()
        .unwrap();
    assert!(status.success());
}

/// The demo dump taken through process-wiki, train-tokenizer (300 tokens) and tokenize, made
/// once: `corpus.txt`, `tokenizer.json`, `train.bin` (+ sidecar).
pub fn prepared() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        prepare_demo_data(dir.path(), &["train.bin"]);
        dir
    })
    .path()
}

/// A copy of [`prepared`] in a fresh directory.
pub fn prepared_copy() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    copy_dir(prepared(), &data);
    (dir, data)
}

/// `train` flags for a quick micro run on `data` (train.bin and tokenizer.json) into `out`.
pub fn train_args<'a>(data: &'a Path, out: &'a Path, steps: &'a str) -> Vec<String> {
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
pub fn with(mut args: Vec<String>, extra: &[&str]) -> Vec<String> {
    for flag in extra.iter().filter(|e| e.starts_with("--")) {
        let name = flag.split('=').next().unwrap_or(flag);
        if let Some(at) = args.iter().position(|a| a == name) {
            args.drain(at..at + 2);
        }
    }
    args.extend(extra.iter().map(|e| e.to_string()));
    args
}

pub fn strs(args: &[String]) -> Vec<&str> {
    args.iter().map(String::as_str).collect()
}

/// A 4-step micro run on [`prepared`] data with checkpoints at steps 2 and 4, made once.
pub fn trained() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        sovereign_ok(&strs(&train_args(prepared(), &dir.path().join("run"), "4")));
        dir
    })
    .path()
}

/// The f32 tensors of a safetensors file, changed by `edit`, written to `to`.
pub fn edit_weights(from: &Path, to: &Path, edit: impl Fn(&str, &mut [f32])) {
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

/// A character device node of its own in `dir` (`mknod`, as root), so that a regression replaces
/// that node and never the machine's; `/dev/NAME` itself where nodes cannot be made.
pub fn device(dir: &Path, name: &str, minor: &str) -> PathBuf {
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

pub fn metrics_steps(run: &Path) -> Vec<u64> {
    metrics_column(run, "step")
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect()
}

/// Weights of the trained run with `ln_out.weight` all NaN (a loss of NaN before any update),
/// written into `dir`.
pub fn nan_weights(dir: &Path) -> PathBuf {
    let nan = dir.join("nan.safetensors");
    edit_weights(
        &trained().join("run/ckpt-000002/model.safetensors"),
        &nan,
        |name, values| {
            if name == "ln_out.weight" {
                values.fill(f32::NAN);
            }
        },
    );
    nan
}

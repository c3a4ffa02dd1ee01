//! Released RWKV-7 weights in, every runtime out, each checked by its real tool:
//! - continued training from a `.pth` written by real torch starts at exactly `test-model`'s loss
//!   on the same window, and the loss falls (../shared/fixtures/rwkv7-pth);
//! - the README's walk-through: a World-vocabulary checkpoint in the released layout (bf16,
//!   `torch.save`), continued on Portuguese tokenized with the World vocabulary, then exported:
//!   `pth` run by the official `rwkv` package, `gguf` by llama.cpp (llama-cpp-python built from
//!   source) and compared with what llama.cpp's own converter makes of the `hf` export, `hf`
//!   loaded by flash-linear-attention and run through the `rwkv` package from its
//!   HF-named tensors, `st` run by web-rwkv on wgpu (lavapipe here) and compared with its
//!   converter's layout. Every export has its model card.
//!
//! The Python tools are installed by .ci/run; without them a test says NOT RUN.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use sovereign_test_support::{
    path_str, python_has, shared_fixtures, sovereign, sovereign_ok, stderr, workspace, write_tokens,
};

/// Runs tests/interop/SCRIPT with `args`; its standard output, which must contain `expect`.
fn python(script: &str, args: &[&str], expect: &str) -> String {
    let out = Command::new("python3")
        .arg(workspace().join("tests/interop").join(script))
        .args(args)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success() && text.contains(expect),
        "{script}: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("{script}: {}", text.trim());
    text
}

/// Runs `program` with `args`; it must succeed.
fn run_ok(program: &str, args: &[&str]) {
    let out = Command::new(program).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `test-model --json`'s loss.
fn test_model_loss(args: &[&str]) -> f64 {
    let mut all = vec!["test-model", "--json"];
    all.extend(args);
    let out = sovereign(&all);
    assert!(out.status.success(), "{}", stderr(&out));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    json["loss"].as_f64().unwrap()
}

/// The training losses of metrics.jsonl, by step.
fn losses(run: &Path) -> Vec<f64> {
    fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|line| {
            serde_json::from_str::<serde_json::Value>(line).unwrap()["loss"]
                .as_f64()
                .unwrap()
        })
        .collect()
}

#[test]
fn training_from_a_torch_checkpoint_starts_at_test_models_loss_and_falls() {
    let Some(fixtures) = shared_fixtures("continued training from .pth") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("window.bin");
    // One window of 32 + 1 tokens: the first training step sees exactly test-model's window.
    let ids: Vec<u16> = (0..33u32)
        .map(|i| ((i * 7 + i / 11) % 300) as u16)
        .collect();
    write_tokens(&data, &ids);
    for file in ["tiny-bf16.pth", "tiny-f16.pth", "tiny-f32.pth"] {
        let weights = fixtures.join("rwkv7-pth").join(file);
        let expected = test_model_loss(&[
            "--weights",
            path_str(&weights),
            "--data",
            path_str(&data),
            "--seq-len",
            "32",
            "--batch",
            "1",
        ]);
        let run = dir.path().join(format!("run-{file}"));
        // No --layers/--embd: the shape comes from the weights (the default micro shape would
        // be refused as not the weights' own).
        sovereign_ok(&[
            "train",
            "--init-from",
            path_str(&weights),
            "--data",
            path_str(&data),
            "--vocab",
            "300",
            "--seq-len",
            "32",
            "--micro-bsz",
            "1",
            "--steps",
            "5",
            "--lr",
            "1e-3",
            "--warmup",
            "1",
            "--out",
            path_str(&run),
        ]);
        let losses = losses(&run);
        assert!(
            (losses[0] - expected).abs() <= 1e-6 * expected,
            "{file}: step 1 loss {} vs test-model {expected}",
            losses[0]
        );
        assert!(losses[4] < 0.5 * losses[0], "{file}: {losses:?}");
    }
}

/// The files of the walk-through, under one directory.
struct Walk {
    dir: PathBuf,
}

impl Walk {
    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    fn export(&self, format: &str, output: &str) -> String {
        let out = self.path(output);
        let log = sovereign_ok(&[
            "export",
            "--checkpoint",
            path_str(&self.path("run/ckpt-000030")),
            "--format",
            format,
            "--output",
            path_str(&out),
        ]);
        let card_dir = if format == "hf" {
            out
        } else {
            out.parent().unwrap().to_path_buf()
        };
        let card = fs::read_to_string(card_dir.join("README.md")).unwrap();
        assert!(card.contains("| steps | 30 |"), "{card}");
        assert!(card.contains("| tokenizer | rwkv-world"), "{card}");
        assert!(card.contains("| vocabulary | 65536 |"), "{card}");
        assert!(card.contains("| bits per byte | "), "{card}");
        log
    }
}

#[test]
fn a_world_model_continued_on_portuguese_runs_in_the_rwkv_package_llama_cpp_and_fla() {
    let Some(fixtures) = shared_fixtures("world model walk-through") else {
        return;
    };
    let tools = [
        "torch",
        "rwkv.model",
        "numpy",
        "safetensors",
        "llama_cpp",
        "fla",
        "transformers",
    ];
    if !python_has("world model walk-through", &tools) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let walk = Walk {
        dir: dir.path().to_path_buf(),
    };
    let p = |name: &str| walk.path(name).to_str().unwrap().to_string();

    // A checkpoint in the released layout and dtype, written by real torch.
    let tiny = fixtures.join("rwkv7-pth/tiny-f32.pth");
    python(
        "make_world_pth.py",
        &[path_str(&tiny), &p("world.pth")],
        "bf16",
    );

    // Portuguese, tokenized with the World vocabulary.
    let vocab = python("check_world.py", &["vocab"], "rwkv_vocab")
        .trim()
        .to_string();
    let text = fs::read_to_string(fixtures.join("ptbr/corpus.txt")).unwrap();
    let corpus: Vec<&str> = text.lines().take(3000).collect();
    fs::write(walk.path("pt.txt"), corpus.join("\n")).unwrap();
    sovereign_ok(&[
        "tokenize",
        "--input",
        &p("pt.txt"),
        "--line-docs",
        "--tokenizer",
        &vocab,
        "--output",
        &p("train.bin"),
        "--val-output",
        &p("val.bin"),
        "--val-fraction",
        "0.1",
    ]);

    // Continued training: the shape comes from the weights.
    sovereign_ok(&[
        "train",
        "--init-from",
        &p("world.pth"),
        "--data",
        &p("train.bin"),
        "--val-data",
        &p("val.bin"),
        "--tokenizer",
        &vocab,
        "--seq-len",
        "64",
        "--micro-bsz",
        "4",
        "--steps",
        "30",
        "--lr",
        "3e-4",
        "--warmup",
        "5",
        "--eval-every",
        "15",
        "--checkpoint-every",
        "0",
        "--out",
        &p("run"),
    ]);
    let losses = losses(&walk.path("run"));
    assert!(losses[29] < losses[0] - 0.5, "{losses:?}");
    let generated = sovereign_ok(&[
        "generate",
        "--checkpoint",
        &p("run/ckpt-000030"),
        "--prompt",
        "A capital do Brasil é",
        "--max-tokens",
        "8",
    ]);
    assert!(generated.contains("generate: 8 tokens"), "{generated}");

    // test-model's loss and first-window logits: what every runtime must reproduce.
    let loss = test_model_loss(&[
        "--checkpoint",
        &p("run/ckpt-000030"),
        "--data",
        &p("val.bin"),
        "--seq-len",
        "64",
        "--logits",
        &p("ours.npy"),
    ]);

    fs::create_dir_all(walk.path("pth")).unwrap();
    walk.export("pth", "pth/model.pth");
    python(
        "check_rwkv.py",
        &[
            "pth",
            &p("pth/model.pth"),
            &p("val.bin"),
            "64",
            &p("ours.npy"),
        ],
        "pth ok",
    );

    fs::create_dir_all(walk.path("gguf")).unwrap();
    walk.export("gguf", "gguf/model.gguf");
    let sample: String = corpus[..40].join("\n");
    fs::write(walk.path("sample.txt"), &sample).unwrap();
    sovereign_ok(&[
        "tokenize",
        "--input",
        &p("sample.txt"),
        "--tokenizer",
        &vocab,
        "--output",
        &p("sample.bin"),
    ]);
    let report = python(
        "check_gguf.py",
        &[
            &p("gguf/model.gguf"),
            &p("val.bin"),
            "64",
            &p("ours.npy"),
            &p("sample.txt"),
            &p("sample.bin"),
        ],
        "gguf ok",
    );
    let llama_loss: f64 = report
        .split("loss ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap();
    let ratio = (llama_loss - loss).exp();
    assert!(
        (ratio - 1.0).abs() < 0.01,
        "llama.cpp perplexity / test-model's = {ratio} (losses {llama_loss} and {loss})"
    );

    walk.export("hf", "hf");
    python("check_fla.py", &[&p("hf")], "fla ok");
    // llama.cpp's own converter, run on our hf export, writes our GGUF.
    if let Some(converter) = llama_cpp_converter() {
        run_ok(
            "python3",
            &[
                path_str(&converter),
                &p("hf"),
                "--outfile",
                &p("gguf/converted.gguf"),
                "--outtype",
                "f32",
            ],
        );
        python(
            "check_gguf_converter.py",
            &[&p("gguf/model.gguf"), &p("gguf/converted.gguf")],
            "converter ok",
        );
    }
    python(
        "check_rwkv.py",
        &["hf", &p("hf"), &p("val.bin"), "64", &p("ours.npy")],
        "hf ok",
    );

    fs::create_dir_all(walk.path("st")).unwrap();
    walk.export("st", "st/model.st");
    python(
        "check_web_rwkv.py",
        &["layout", &p("st/model.st"), &p("pth/model.pth")],
        "web-rwkv layout ok",
    );
    let Some(web_rwkv) = web_rwkv_check() else {
        return;
    };
    let ids = fs::read(walk.path("val.bin")).unwrap();
    let first: Vec<String> = ids[..128]
        .chunks_exact(2)
        .map(|b| u16::from_le_bytes([b[0], b[1]]).to_string())
        .collect();
    run_ok(
        path_str(&web_rwkv),
        &[&p("st/model.st"), &first.join(","), &p("st/logits.bin")],
    );
    python(
        "check_web_rwkv.py",
        &["logits", &p("st/logits.bin"), &p("ours.npy")],
        "web-rwkv logits ok",
    );
}

/// llama.cpp's `convert_hf_to_gguf.py` (from the llama.cpp sources in llama-cpp-python's sdist,
/// which .ci/run unpacks), from `$SOVEREIGN_LLAMA_CPP_SRC` or under `$HOME/.cache/sovereign`;
/// `None` (NOT RUN) if absent, a failure where CI requires it.
fn llama_cpp_converter() -> Option<PathBuf> {
    let dir = std::env::var_os("SOVEREIGN_LLAMA_CPP_SRC")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .map(|home| Path::new(&home).join(".cache/sovereign/llama.cpp-src"))
        })?;
    required_tool(&dir.join("convert_hf_to_gguf.py"), "llama.cpp's converter")
}

/// `path` if it exists; otherwise NOT RUN, or a failure where CI requires the tool.
fn required_tool(path: &Path, what: &str) -> Option<PathBuf> {
    if path.is_file() {
        return Some(path.to_path_buf());
    }
    let required = std::env::var("SOVEREIGN_REQUIRE_FIXTURES").is_ok_and(|v| v == "1");
    assert!(!required, "{what}: {} is missing", path.display());
    eprintln!(
        "NOT RUN: {what} needs {} (.ci/run provides it)",
        path.display()
    );
    None
}

/// The web-rwkv checker (tests/interop/web-rwkv-check, built by .ci/run), from
/// `$SOVEREIGN_WEB_RWKV_CHECK` or its build under `$HOME/.cache/sovereign`; `None` (NOT RUN) if it
/// is not built, a failure where CI requires it.
fn web_rwkv_check() -> Option<PathBuf> {
    let path = std::env::var_os("SOVEREIGN_WEB_RWKV_CHECK")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME").map(|home| {
                Path::new(&home).join(".cache/sovereign/web-rwkv-target/release/web-rwkv-check")
            })
        })?;
    required_tool(&path, "web-rwkv on the st export")
}

#[test]
fn gguf_refuses_sovereigns_bpe_and_a_foreign_readme_is_never_overwritten() {
    let Some(fixtures) = shared_fixtures("export refusals") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let weights = fixtures.join("rwkv7-pth/tiny-f32.pth");
    // A BPE tokenizer of the model's 300 ids.
    let corpus = dir.path().join("c.txt");
    let words: Vec<String> = (0..3000u32)
        .map(|i| {
            let n = i.wrapping_mul(7919);
            (0..4)
                .map(|k| (b'a' + ((n >> (k * 5)) % 26) as u8) as char)
                .collect()
        })
        .collect();
    fs::write(&corpus, words.join(" ")).unwrap();
    let tokenizer = dir.path().join("tok.json");
    sovereign_ok(&[
        "train-tokenizer",
        "--corpus",
        path_str(&corpus),
        "--vocab-size",
        "300",
        "--min-frequency",
        "1",
        "--output",
        path_str(&tokenizer),
    ]);
    let out = sovereign(&[
        "export",
        "--weights",
        path_str(&weights),
        "--tokenizer",
        path_str(&tokenizer),
        "--format",
        "gguf",
        "--output",
        path_str(&dir.path().join("m.gguf")),
    ]);
    let err = stderr(&out);
    assert!(!out.status.success());
    assert!(
        err.contains("llama.cpp cannot tokenize Sovereign's BPE identically"),
        "{err}"
    );
    assert!(!dir.path().join("m.gguf").exists());

    let readme = dir.path().join("README.md");
    fs::write(&readme, "my notes\n").unwrap();
    let out = sovereign(&[
        "export",
        "--weights",
        path_str(&weights),
        "--format",
        "pth",
        "--output",
        path_str(&dir.path().join("m.pth")),
    ]);
    let err = stderr(&out);
    assert!(!out.status.success());
    assert!(err.contains("is not a Sovereign model card"), "{err}");
    assert_eq!(fs::read_to_string(&readme).unwrap(), "my notes\n");
    assert!(!dir.path().join("m.pth").exists());
}

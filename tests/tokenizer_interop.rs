//! Interop with the real HuggingFace `tokenizers` and numpy (installed by .ci/run with pip), on
//! the Portuguese corpus in ../shared/fixtures/ptbr:
//! - `tokenizers.Tokenizer.from_file` loads our tokenizer.json and gives the same ids for every
//!   document, and decodes them back to the same text; numpy.memmap reads the ids we wrote;
//! - a tokenizer that HuggingFace's BpeTrainer wrote with our pre-tokenizer loads here and gives
//!   HuggingFace's ids; HuggingFace's own GPT-2-style ByteLevelBPETokenizer file is refused with
//!   the field at fault.

use std::process::Command;

use sovereign_test_support::{
    python_has, shared_fixtures, sovereign, sovereign_ok, stderr, workspace,
};

fn check(corpus: &str, tokenizer: &str, bin: &str) {
    let script = workspace().join("tests/interop/check_tokenizer.py");
    let out = Command::new("python3")
        .arg(script)
        .args([corpus, tokenizer, bin])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("interop ok: 43769 documents"), "{text}");
}

#[test]
fn huggingface_tokenizers_reproduces_our_ids_and_we_reproduce_theirs() {
    let Some(fixtures) = shared_fixtures("tokenizer interop") else {
        return;
    };
    if !python_has("tokenizer interop", &["tokenizers", "numpy"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let corpus = fixtures.join("ptbr/corpus.txt");
    let corpus = corpus.to_str().unwrap();
    let path = |name: &str| dir.path().join(name).to_str().unwrap().to_string();

    sovereign_ok(&[
        "train-tokenizer",
        "--corpus",
        corpus,
        "--line-docs",
        "--vocab-size",
        "32000",
        "--output",
        &path("ours.json"),
    ]);
    let tokenize = |tokenizer: &str, output: &str| {
        sovereign_ok(&[
            "tokenize",
            "--input",
            corpus,
            "--line-docs",
            "--tokenizer",
            tokenizer,
            "--output",
            output,
        ]);
    };
    tokenize(&path("ours.json"), &path("ours.bin"));
    check(corpus, &path("ours.json"), &path("ours.bin"));

    let trainer = workspace().join("tests/interop/hf_train.py");
    let out = Command::new("python3")
        .arg(trainer)
        .args([corpus, "32000", &path("hf.json"), &path("hf-gpt2.json")])
        .env("SOVEREIGN_TOKENIZER", path("ours.json"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    tokenize(&path("hf.json"), &path("hf.bin"));
    check(corpus, &path("hf.json"), &path("hf.bin"));

    let out = sovereign(&[
        "tokenize",
        "--input",
        corpus,
        "--line-docs",
        "--tokenizer",
        &path("hf-gpt2.json"),
        "--output",
        &path("x.bin"),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("pre_tokenizer ByteLevel.use_regex is true"),
        "{}",
        stderr(&out)
    );
}

//! End-to-end tests of `sovereign train-tokenizer` and `sovereign tokenize` on a corpus made
//! from the bundled demo dump: determinism across runs and thread counts, the file layout, the
//! val split, and bad input.

use std::fs;
use std::path::{Path, PathBuf};

use sovereign_test_support::{sovereign, sovereign_ok, stderr};
use sovereign_tests::demo_dump;

/// A small Portuguese corpus: the demo dump through process-wiki, three times over so that pairs
/// repeat.
fn corpus(dir: &Path) -> PathBuf {
    let dump = dir.join("demo.xml");
    fs::write(&dump, demo_dump()).unwrap();
    let once = dir.join("once.txt");
    sovereign_ok(&[
        "process-wiki",
        "--input",
        dump.to_str().unwrap(),
        "--output",
        once.to_str().unwrap(),
    ]);
    let text = fs::read_to_string(&once).unwrap();
    let corpus = dir.join("corpus.txt");
    fs::write(&corpus, [text.as_str(); 3].join("\n")).unwrap();
    corpus
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn training_is_byte_identical_across_runs_and_threads() {
    let dir = tempfile::tempdir().unwrap();
    let corpus = corpus(dir.path());
    let mut outputs = Vec::new();
    for threads in ["1", "2", "2"] {
        let out = dir.path().join(format!("tok-{}.json", outputs.len()));
        let log = sovereign_ok(&[
            "train-tokenizer",
            "--corpus",
            s(&corpus),
            "--vocab-size",
            "600",
            "--min-frequency",
            "2",
            "--output",
            s(&out),
            "--threads",
            threads,
        ]);
        assert!(
            log.contains("vocabulary 600 (339 merges)") || log.contains("ran out of pairs"),
            "{log}"
        );
        outputs.push(fs::read(&out).unwrap());
    }
    assert_eq!(outputs[0], outputs[1]);
    assert_eq!(outputs[1], outputs[2]);
    let json: serde_json::Value = serde_json::from_slice(&outputs[0]).unwrap();
    let specials: Vec<(&str, u64)> = json["added_tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| (t["content"].as_str().unwrap(), t["id"].as_u64().unwrap()))
        .collect();
    assert_eq!(
        specials,
        [
            ("[PAD]", 0),
            ("[UNK]", 1),
            ("[BOS]", 2),
            ("[EOS]", 3),
            ("[SEP]", 4)
        ]
    );
    assert!(
        json["added_tokens"]
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t["special"] == true)
    );
    let vocab = json["model"]["vocab"].as_object().unwrap();
    assert_eq!(vocab["Ā"], 5, "byte 0x00 follows the specials");
    assert_eq!(vocab["Ġ"], 5 + 0x20);
    assert_eq!(vocab["ÿ"], 5 + 0xFF);
    assert_eq!(json["decoder"]["type"], "ByteLevel");
    assert_eq!(json["model"]["type"], "BPE");
}

#[test]
fn tokenize_output_is_byte_identical_whatever_the_threads_and_splits_val() {
    let dir = tempfile::tempdir().unwrap();
    let corpus = corpus(dir.path());
    let tok = dir.path().join("tok.json");
    sovereign_ok(&[
        "train-tokenizer",
        "--corpus",
        s(&corpus),
        "--vocab-size",
        "500",
        "--output",
        s(&tok),
    ]);
    let mut runs = Vec::new();
    for threads in ["1", "2"] {
        let train = dir.path().join(format!("train{threads}.bin"));
        let val = dir.path().join(format!("val{threads}.bin"));
        let log = sovereign_ok(&[
            "tokenize",
            "--input",
            s(&corpus),
            "--tokenizer",
            s(&tok),
            "--output",
            s(&train),
            "--val-output",
            s(&val),
            "--val-fraction",
            "0.25",
            "--threads",
            threads,
        ]);
        let sidecar: serde_json::Value = serde_json::from_str(
            &fs::read_to_string(dir.path().join(format!("train{threads}.bin.json"))).unwrap(),
        )
        .unwrap();
        let val_sidecar: serde_json::Value = serde_json::from_str(
            &fs::read_to_string(dir.path().join(format!("val{threads}.bin.json"))).unwrap(),
        )
        .unwrap();
        runs.push((
            fs::read(&train).unwrap(),
            fs::read(&val).unwrap(),
            sidecar,
            val_sidecar,
            log,
        ));
    }
    assert_eq!(runs[0].0, runs[1].0);
    assert_eq!(runs[0].1, runs[1].1);
    assert_eq!(runs[0].2, runs[1].2);
    let (train, val, sidecar, val_sidecar, _) = &runs[0];
    // 12 documents (4 articles × 3), each ending with [EOS] = 3.
    let ids: Vec<u16> = train
        .chunks_exact(2)
        .map(|p| u16::from_le_bytes([p[0], p[1]]))
        .collect();
    let val_ids: Vec<u16> = val
        .chunks_exact(2)
        .map(|p| u16::from_le_bytes([p[0], p[1]]))
        .collect();
    let docs =
        ids.iter().filter(|&&i| i == 3).count() + val_ids.iter().filter(|&&i| i == 3).count();
    assert_eq!(docs, 12);
    assert_eq!(ids.last(), Some(&3));
    assert_eq!(sidecar["tokens"], ids.len());
    assert_eq!(
        sidecar["documents"].as_u64().unwrap() + val_sidecar["documents"].as_u64().unwrap(),
        12
    );
    assert_eq!(sidecar["vocab_size"], 500);
    assert_eq!(sidecar["eos_id"], 3);
    assert_eq!(sidecar["dtype"], "uint16");
    assert!(
        val_sidecar["documents"].as_u64().unwrap() > 0,
        "some documents go to val"
    );
    assert!(ids.iter().chain(&val_ids).all(|&i| i < 500));
}

#[test]
fn bad_input_gets_one_clear_error_and_no_output() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.txt");
    fs::write(&bad, b"linha boa\nlinha \xc3\x28 ruim\n").unwrap();
    let tok = dir.path().join("tok.json");
    let out = sovereign(&[
        "train-tokenizer",
        "--corpus",
        s(&bad),
        "--line-docs",
        "--vocab-size",
        "300",
        "--output",
        s(&tok),
    ]);
    let log = stderr(&out);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        log.contains("bad.txt: line 2, byte 7 of the line: invalid UTF-8 (use --lossy"),
        "{log}"
    );
    assert!(!tok.exists());

    let log = sovereign_ok(&[
        "train-tokenizer",
        "--corpus",
        s(&bad),
        "--line-docs",
        "--lossy",
        "--vocab-size",
        "300",
        "--output",
        s(&tok),
    ]);
    assert!(log.contains("1 invalid UTF-8 sequences replaced"), "{log}");

    for size in ["260", "65536"] {
        let out = sovereign(&[
            "train-tokenizer",
            "--corpus",
            s(&bad),
            "--vocab-size",
            size,
            "--output",
            s(&dir.path().join("x.json")),
        ]);
        assert!(
            stderr(&out).contains(&format!("--vocab-size {size} is out of range")),
            "{}",
            stderr(&out)
        );
    }

    let mut json: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(&tok).unwrap()).unwrap();
    json["model"]["type"] = "Unigram".into();
    let other = dir.path().join("other.json");
    fs::write(&other, json.to_string()).unwrap();
    let train = dir.path().join("train.bin");
    let out = sovereign(&[
        "tokenize",
        "--input",
        s(&bad),
        "--lossy",
        "--tokenizer",
        s(&other),
        "--output",
        s(&train),
    ]);
    assert!(
        stderr(&out).contains("model.type is \"Unigram\"; only \"BPE\" is supported"),
        "{}",
        stderr(&out)
    );
    assert!(!train.exists());
}

//! The RWKV World vocabulary against the official tokenizer (`rwkv` package's TRIE_TOKENIZER,
//! installed by .ci/run with pip): `sovereign tokenize --tokenizer rwkv_vocab_v20230424.txt`
//! writes, for every document of ../shared/fixtures/ptbr, the official ids followed by 0, in one
//! process and on two workers alike; emoji, CJK and invalid-UTF-8 byte runs encode to the official
//! ids and decode back.

use std::fs;
use std::process::Command;

use sovereign_common::tokenizer::Tokenizer;
use sovereign_test_support::{path_str, python_has, shared_fixtures, sovereign_ok, workspace};

/// Runs tests/interop/check_world.py; its standard output on success.
fn official(args: &[&str]) -> String {
    let out = Command::new("python3")
        .arg(workspace().join("tests/interop/check_world.py"))
        .args(args)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

fn official_ready(test: &str) -> bool {
    python_has(test, &["rwkv.rwkv_tokenizer", "numpy"])
}

#[test]
fn byte_runs_encode_as_the_official_tokenizer_and_decode_back() {
    if !official_ready("world tokenizer on byte runs") {
        return;
    }
    let vocab = official(&["vocab"]).trim().to_string();
    let Ok(Tokenizer::World(world)) = Tokenizer::from_file(vocab.as_ref()) else {
        panic!("{vocab} is not recognised as a World vocabulary");
    };
    let texts: Vec<Vec<u8>> = vec![
        "Olá, mundo! São Paulo é a maior cidade do Brasil.".into(),
        "emoji 🦀🇧🇷👩‍👩‍👧 e 😀😀😀".into(),
        "中文、日本語のテキスト、한국어 문장".into(),
        vec![
            0xff, 0xfe, 0x80, b'a', 0xc3, 0x28, 0xe2, 0x82, b' ', 0xf0, 0x9f, 0xa6,
        ],
        [
            b"antes ".as_slice(),
            &[0xc3; 5],
            "çã depois\u{0}\t\r\n".as_bytes(),
        ]
        .concat(),
        " ".repeat(300).into_bytes(),
        "-".repeat(200).into_bytes(),
    ];
    let hex: Vec<String> = texts
        .iter()
        .map(|t| t.iter().map(|b| format!("{b:02x}")).collect())
        .collect();
    let mut args = vec!["bytes"];
    args.extend(hex.iter().map(String::as_str));
    let expected = official(&args);
    for (text, line) in texts.iter().zip(expected.lines()) {
        let ids = world.encode(text);
        let want: Vec<u32> = line.split(' ').map(|id| id.parse().unwrap()).collect();
        assert_eq!(ids, want, "{}", String::from_utf8_lossy(text));
        assert_eq!(&world.decode(&ids), text);
    }
    assert_eq!(expected.lines().count(), texts.len());
}

#[test]
fn tokenize_writes_the_official_ids_on_one_process_and_two_workers() {
    let Some(fixtures) = shared_fixtures("world tokenizer on ptbr") else {
        return;
    };
    if !official_ready("world tokenizer on ptbr") {
        return;
    }
    let vocab = official(&["vocab"]).trim().to_string();
    let dir = tempfile::tempdir().unwrap();
    let corpus = fixtures.join("ptbr/corpus.txt");
    let single = dir.path().join("single.bin");
    let spread = dir.path().join("spread.bin");
    let hosts = dir.path().join("hosts.txt");
    fs::write(&hosts, "localhost slots=2\n").unwrap();
    let tokenize = |output: &std::path::Path, extra: &[&str]| {
        let mut args = vec![
            "tokenize",
            "--input",
            path_str(&corpus),
            "--line-docs",
            "--tokenizer",
            &vocab,
            "--output",
            path_str(output),
        ];
        args.extend(extra);
        sovereign_ok(&args)
    };
    tokenize(&single, &[]);
    let log = tokenize(&spread, &["--hosts", path_str(&hosts), "--task-mib", "1"]);
    assert!(log.contains("map on 2 workers"), "{log}");
    assert_eq!(fs::read(&single).unwrap(), fs::read(&spread).unwrap());

    let sidecar: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(dir.path().join("single.bin.json")).unwrap())
            .unwrap();
    assert_eq!(sidecar["tokenizer"], "rwkv-world");
    assert_eq!(sidecar["vocab_size"], 65536);
    assert_eq!(sidecar["eos_id"], 0);
    assert_eq!(sidecar["documents"], 43769);

    let report = official(&["corpus", path_str(&corpus), path_str(&single)]);
    assert!(report.contains("world ok: 43769 documents"), "{report}");
    eprintln!("{}", report.trim());
}

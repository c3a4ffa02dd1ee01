//! generate prints every token; the smaller refusals (hosts files, tokenizer.json, control
//! characters, tokenize's hint).

use crate::support::*;

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
    let err = sovereign_ok(&[
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

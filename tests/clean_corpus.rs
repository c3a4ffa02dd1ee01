//! End-to-end tests of `sovereign clean-corpus`: the demo corpus in the repo, and the real
//! Portuguese corpus in ../shared/fixtures/ptbr when present.

use std::fs;

use sovereign_test_support::{shared_fixtures, sovereign, stderr};

#[test]
fn demo_corpus_twice_loses_every_duplicate_and_keeps_order() {
    let dir = tempfile::tempdir().unwrap();
    let corpus = "Primeiro parágrafo com '''negrito''' e [[ligação|link]].\nSegundo   parágrafo.\n\n\
                  Primeiro parágrafo com negrito e link.\nNovo parágrafo aqui.\n\n\
                  curto\n";
    let input = dir.path().join("raw.txt");
    fs::write(&input, corpus).unwrap();
    let output = dir.path().join("clean.txt");
    let run = sovereign(&[
        "clean-corpus",
        "--input",
        input.to_str().unwrap(),
        "--output",
        output.to_str().unwrap(),
        "--min-chars",
        "6",
    ]);
    assert!(run.status.success(), "{}", stderr(&run));
    assert_eq!(
        fs::read_to_string(&output).unwrap(),
        "Primeiro parágrafo com negrito e link.\nSegundo parágrafo.\n\nNovo parágrafo aqui.\n"
    );
    let log = stderr(&run);
    assert!(
        log.contains(
            "documents read 3, written 2, emptied 1; paragraphs read 5, written 3, dropped as \
             duplicates 1, dropped as too short 1"
        ),
        "{log}"
    );
}

#[test]
fn ptbr_fixture_keeps_every_line_and_strips_accents_on_request() {
    let Some(fixtures) = shared_fixtures("ptbr clean-corpus") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let input = fixtures.join("ptbr/corpus.txt");
    let output = dir.path().join("clean.txt");
    let args = |extra: &[&str]| {
        let mut a = vec![
            "clean-corpus",
            "--line-docs",
            "--input",
            input.to_str().unwrap(),
        ];
        a.extend_from_slice(&["--output", output.to_str().unwrap()]);
        a.extend_from_slice(extra);
        a.iter().map(|s| s.to_string()).collect::<Vec<_>>()
    };
    let run = sovereign(&args(&[]).iter().map(String::as_str).collect::<Vec<_>>());
    let log = stderr(&run);
    assert!(run.status.success(), "{log}");
    // The fixture is NFC with exact duplicates removed: 43,769 lines, one document each.
    assert!(log.contains("documents read 43769"), "{log}");
    let text = fs::read_to_string(&output).unwrap();
    assert!(!text.contains("\n\n\n"));
    let first_doc = text.split("\n\n").next().unwrap();
    assert!(!first_doc.is_empty());

    let run = sovereign(
        &args(&["--strip-accents", "--lowercase"])
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    );
    assert!(run.status.success(), "{}", stderr(&run));
    let stripped = fs::read_to_string(&output).unwrap();
    assert!(
        !stripped
            .chars()
            .any(|c| "áéíóúâêôãõçàÁÉÍÓÚÂÊÔÃÕÇÀ".contains(c))
    );
    assert_eq!(stripped, stripped.to_lowercase());
}

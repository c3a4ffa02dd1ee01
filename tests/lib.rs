//! Helpers for the end-to-end tests (the ones every crate's tests share are in
//! `sovereign-test-support`): test inputs (the demo dump, bz2 single- and multistream files,
//! UTF-16 XML) and process-wiki runs. [`cluster`] holds what the distributed-training tests share.

pub mod cluster;

use std::io::Write;
use std::path::Path;
use std::process::Output;

use bzip2::Compression;
use bzip2::write::BzEncoder;
use sovereign_test_support::{path_str, sovereign, sovereign_ok, train_tokenizer, workspace};

/// The bundled demo dump, which doubles as the in-repo test dump.
pub fn demo_dump() -> String {
    std::fs::read_to_string(workspace().join("demo/ptwiki-demo.xml"))
        .expect("demo dump is in the repo")
}

/// The demo dump taken through process-wiki, train-tokenizer (300 tokens) and tokenize, into
/// `dir`: `dump.xml`, `corpus.txt`, `tokenizer.json`, and the ids as each of `outputs` (with
/// its sidecar).
pub fn prepare_demo_data(dir: &Path, outputs: &[&str]) {
    let p = |name: &str| dir.join(name);
    std::fs::write(p("dump.xml"), demo_dump()).expect("writing the test dump");
    sovereign_ok(&[
        "process-wiki",
        "--input",
        path_str(&p("dump.xml")),
        "--output",
        path_str(&p("corpus.txt")),
    ]);
    train_tokenizer(&p("corpus.txt"), 300, &p("tokenizer.json"));
    for output in outputs {
        sovereign_ok(&[
            "tokenize",
            "--input",
            path_str(&p("corpus.txt")),
            "--tokenizer",
            path_str(&p("tokenizer.json")),
            "--output",
            path_str(&p(output)),
        ]);
    }
}

/// Compresses `data` as one bz2 stream.
pub fn bz2(data: &[u8]) -> Vec<u8> {
    let mut encoder = BzEncoder::new(Vec::new(), Compression::best());
    encoder.write_all(data).expect("compressing to memory");
    encoder.finish().expect("compressing to memory")
}

/// A multistream bz2 file as Wikipedia makes them: the header, then groups of `pages_per_stream`
/// pages, then the footer, each group compressed as its own stream.
pub fn bz2_multistream(xml: &str, pages_per_stream: usize) -> Vec<u8> {
    let first = xml.find("<page>").expect("the dump has pages");
    let end = xml.rfind("</page>").expect("the dump has pages") + "</page>".len();
    let mut pieces = vec![&xml[..first]];
    let mut rest = &xml[first..end];
    while !rest.is_empty() {
        let mut cut = 0;
        for _ in 0..pages_per_stream {
            match rest[cut..].find("</page>") {
                Some(at) => cut += at + "</page>".len(),
                None => break,
            }
        }
        if cut == 0 {
            cut = rest.len();
        }
        pieces.push(&rest[..cut]);
        rest = &rest[cut..];
    }
    pieces.push(&xml[end..]);
    pieces
        .iter()
        .flat_map(|piece| bz2(piece.as_bytes()))
        .collect()
}

/// UTF-16 little-endian with a byte-order mark.
pub fn utf16le_with_bom(text: &str) -> Vec<u8> {
    let mut bytes = vec![0xFF, 0xFE];
    for unit in text.encode_utf16() {
        bytes.extend_from_slice(&unit.to_le_bytes());
    }
    bytes
}

/// Runs `sovereign process-wiki --input INPUT --output OUTPUT EXTRA…`.
pub fn process_wiki(input: &Path, output: &Path, extra: &[&str]) -> Output {
    let mut args = vec![
        "process-wiki",
        "--input",
        path_str(input),
        "--output",
        path_str(output),
    ];
    args.extend_from_slice(extra);
    sovereign(&args)
}

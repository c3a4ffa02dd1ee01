//! Damaged multistream dumps; input that is not a MediaWiki export; empty corpora in the later
//! stages.

use crate::support::*;

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
            let run = process_wiki(&input, &output, &["--threads", threads]);
            let err = check_refused(&run, &["process-wiki", case]);
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
    sovereign_ok(&[
        "process-wiki",
        "--input",
        path_str(&input),
        "--output",
        path_str(&output),
    ]);
}

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
        let err = check_refused(&process_wiki(&input, &output, &[]), &["process-wiki", name]);
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

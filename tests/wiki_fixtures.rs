//! `sovereign process-wiki` on the real dumps in ../shared/fixtures/wiki (see its README):
//! exact page counts, no markup left, chosen sentences cleaned word for word, multistream twins,
//! and the two dumps WikiExtractor 3.1.0 fails on (UTF-16; no `<siteinfo>`). These tests say
//! "NOT RUN" and pass when ../shared is absent; CI always has it.

use std::fs;
use std::io::Read;
use std::path::Path;

use sovereign_test_support::{shared_fixtures, stderr};
use sovereign_tests::{bz2_multistream, process_wiki};

/// Markup that must never reach the corpus.
const MARKUP: &[&str] = &["{{", "}}", "[[", "]]", "<ref", "{|", "|}", "&amp;"];

fn run(input: &Path, output: &Path, extra: &[&str]) -> (String, String) {
    let out = process_wiki(input, output, extra);
    assert!(
        out.status.success(),
        "{}: {}",
        input.display(),
        stderr(&out)
    );
    (fs::read_to_string(output).unwrap(), stderr(&out))
}

fn check_dump(file: &str, summary: &str, sentences: &[&str]) {
    let Some(fixtures) = shared_fixtures(file) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let input = fixtures.join("wiki").join(file);
    let (text, log) = run(&input, &dir.path().join("out.txt"), &[]);
    assert!(log.contains(summary), "{file}: {log}");
    for markup in MARKUP {
        assert!(
            !text.contains(markup),
            "{file}: {markup:?} left in the output"
        );
    }
    for sentence in sentences {
        assert!(text.contains(sentence), "{file}: missing {sentence:?}");
    }
    // The multistream twin (pages compressed in groups of 2) gives the same corpus.
    let mut xml = Vec::new();
    bzip2::read::BzDecoder::new(fs::File::open(&input).unwrap())
        .read_to_end(&mut xml)
        .unwrap();
    if let Ok(xml) = String::from_utf8(xml) {
        let twin = dir.path().join("twin.xml.bz2");
        fs::write(&twin, bz2_multistream(&xml, 2)).unwrap();
        let (twin_text, _) = run(&twin, &dir.path().join("twin.txt"), &["--threads", "2"]);
        assert_eq!(twin_text, text, "{file}: multistream twin differs");
    }
}

#[test]
fn testcorpus_keeps_all_nine_articles() {
    check_dump(
        "testcorpus.xml.bz2",
        "pages read 9, kept 9, redirects 0, other namespaces 0, too short 0, malformed 0",
        &["computer human interface\n", "\nsurvey graph minors\n"],
    );
}

#[test]
fn enwiki_without_siteinfo_keeps_five_articles_and_their_words() {
    check_dump(
        "enwiki-table-markup.xml.bz2",
        "pages read 5, kept 5, redirects 0, other namespaces 0, too short 0, malformed 0",
        &[
            // [[motion of no confidence]], [[parliament]], ''…'' italics.
            "The constructive vote of no confidence (in German: konstruktives Misstrauensvotum, \
             in Spanish: moción de censura constructiva) is a variation on the motion of no \
             confidence which allows a parliament to withdraw confidence from a head of \
             government only if there is a positive majority for a prospective successor.",
            // <ref/>, {{IPAc-en}}, <ref>{{OED}}</ref> dropped; {{lang-brh|…|links=no}} kept;
            // [[Balochistan, Pakistan|Baluchistan]] piped.
            "Brahui (براهوئي) is a Dravidian language spoken primarily by the Brahui people in \
             the central part of Baluchistan province in Pakistan",
            // {{IPA|[ɬ]}} kept, {{sfn|…}} dropped.
            "which include the voiceless lateral fricative [ɬ], a sound not otherwise found in \
             the region.",
        ],
    );
}

#[test]
fn utf16_bgwiki_keeps_its_one_article_and_skips_namespace_four() {
    check_dump(
        "bgwiki-latest-pages-articles-shortened.xml.bz2",
        "pages read 3, kept 1, redirects 0, other namespaces 2, too short 0, malformed 0",
        &[
            // [[4 октомври]], [[була]], [[24 февруари]], [[1582]], [[папа]], [[Григорий XIII]].
            "Григорианският календар е въведен в употреба на 4 октомври 1582 г. в съответствие с \
             була от 24 февруари 1582 г. на папа Григорий XIII, чието име носи и днес.",
        ],
    );
}

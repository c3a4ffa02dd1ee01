//! End-to-end tests of `sovereign process-wiki` on dumps inside the repo: the bundled demo dump
//! (plain, bz2, multistream, UTF-16), JSONL output, and damaged input.

use std::fs;
use std::path::Path;

use sovereign_test_support::stderr;
use sovereign_tests::{bz2, bz2_multistream, demo_dump, process_wiki, utf16le_with_bom};

/// The demo dump's articles, cleaned: the whole expected corpus, byte for byte.
const DEMO_CORPUS: &str = "O Brasil, oficialmente República Federativa do Brasil (Federative Republic of Brazil), é o maior país da América do Sul e da América Latina. Ocupa uma área de 8510000 km2, com fronteiras com quase todos os países do continente.
História
Antes da chegada dos europeus, o território era habitado por diversos povos indígenas. A independência foi proclamada em 7 de setembro de 1822.
Período colonial
A colonização portuguesa começou no século XVI, com a exploração do pau-brasil & da cana-de-açúcar.
Demografia
As maiores cidades são:
São Paulo, o principal centro financeiro;
Rio de Janeiro, antiga capital;
Brasília, a capital federal.

São Paulo é um município brasileiro, capital do estado homônimo e a cidade mais populosa do Brasil, das Américas e do hemisfério sul.
A cidade fica a cerca de 70 km do litoral, a uma altitude de 760 metros. O nome homenageia o apóstolo Paulo de Tarso; seu lema é Non ducor, duco (\"Não sou conduzido, conduzo\").
Geografia
O clima é subtropical úmido, e a temperatura média anual é de 19 °C. A fórmula não aparece no texto.
Economia
Mais informações no sítio da prefeitura e em. Para escrever um link, use Página no código.

O rio Amazonas é um rio da América do Sul, o maior do mundo em volume de água, com uma vazão média de 209000 m³/s. Nasce nos Andes peruanos e deságua no oceano Atlântico.
Sua bacia cobre cerca de 7–8 e6km2 e abriga a maior floresta tropical do planeta.
Afluentes principais
Rio Negro
Rio Madeira

A língua portuguesa é uma língua românica flexiva originada no galego-português falado no Reino da Galiza e no norte de Portugal. É a língua oficial de nove países, entre eles o Brasil, Portugal, Angola e Moçambique.
Variedades
O português brasileiro e o português europeu diferem na pronúncia, no vocabulário e em parte da gramática.
";

/// The summary line process-wiki prints for the demo dump.
const DEMO_SUMMARY: &str = "pages read 10, kept 4, redirects 2, other namespaces 2, too short 1, \
                            malformed 1, invalid UTF-8 sequences replaced 0";

fn process_ok(input: &Path, output: &Path, extra: &[&str]) -> String {
    let run = process_wiki(input, output, extra);
    assert!(
        run.status.success(),
        "process-wiki failed: {}",
        stderr(&run)
    );
    let log = stderr(&run);
    assert!(log.contains(DEMO_SUMMARY) || !extra.is_empty(), "{log}");
    fs::read_to_string(output).unwrap()
}

#[test]
fn demo_dump_is_cleaned_exactly_from_xml_bz2_multistream_and_utf16() {
    let dir = tempfile::tempdir().unwrap();
    let xml = demo_dump();
    let inputs = [
        ("plain.xml", xml.clone().into_bytes()),
        ("single.xml.bz2", bz2(xml.as_bytes())),
        ("multi.xml.bz2", bz2_multistream(&xml, 2)),
        ("utf16.xml", utf16le_with_bom(&xml)),
        ("utf16.xml.bz2", bz2(&utf16le_with_bom(&xml))),
    ];
    for (name, bytes) in inputs {
        let input = dir.path().join(name);
        fs::write(&input, bytes).unwrap();
        for threads in ["1", "2"] {
            let output = dir.path().join(format!("{name}.{threads}.txt"));
            let run = process_wiki(&input, &output, &["--threads", threads]);
            assert!(run.status.success(), "{name}: {}", stderr(&run));
            assert!(
                stderr(&run).contains(DEMO_SUMMARY),
                "{name}: {}",
                stderr(&run)
            );
            assert_eq!(
                fs::read_to_string(&output).unwrap(),
                DEMO_CORPUS,
                "{name}, {threads} threads"
            );
        }
    }
}

#[test]
fn multistream_output_matches_single_stream_for_every_grouping() {
    let dir = tempfile::tempdir().unwrap();
    let xml = demo_dump();
    let single = dir.path().join("single.xml.bz2");
    fs::write(&single, bz2(xml.as_bytes())).unwrap();
    let reference = process_ok(&single, &dir.path().join("single.txt"), &["--title"]);
    for per_stream in [1, 3, 100] {
        let multi = dir.path().join(format!("multi{per_stream}.xml.bz2"));
        fs::write(&multi, bz2_multistream(&xml, per_stream)).unwrap();
        let out = dir.path().join(format!("multi{per_stream}.txt"));
        assert_eq!(
            process_ok(&multi, &out, &["--title", "--threads", "2"]),
            reference
        );
    }
}

#[test]
fn titles_jsonl_and_min_chars() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("d.xml");
    fs::write(&input, demo_dump()).unwrap();

    let titled = process_ok(&input, &dir.path().join("t.txt"), &["--title"]);
    let firsts: Vec<&str> = titled
        .split("\n\n")
        .map(|d| d.lines().next().unwrap())
        .collect();
    assert_eq!(
        firsts,
        ["Brasil", "São Paulo", "Rio Amazonas", "Língua portuguesa"]
    );

    let jsonl = process_ok(&input, &dir.path().join("d.jsonl"), &["--format", "jsonl"]);
    let docs: Vec<serde_json::Value> = jsonl
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let ids: Vec<&str> = docs.iter().map(|d| d["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["101", "102", "109", "110"]);
    assert_eq!(docs[1]["title"], "São Paulo");
    let texts: Vec<String> = docs
        .iter()
        .map(|d| d["text"].as_str().unwrap().to_string() + "\n")
        .collect();
    assert_eq!(texts.join("\n"), DEMO_CORPUS);

    let run = process_wiki(
        &input,
        &dir.path().join("long.txt"),
        &["--min-chars", "500"],
    );
    assert!(
        stderr(&run).contains("kept 2, redirects 2, other namespaces 2, too short 3"),
        "{}",
        stderr(&run)
    );
}

#[test]
fn truncated_bz2_names_the_offset_and_pages_written_and_leaves_no_output() {
    let dir = tempfile::tempdir().unwrap();
    let multi = bz2_multistream(&demo_dump(), 1);
    let cut = multi.len() - 200;
    let input = dir.path().join("cut.xml.bz2");
    fs::write(&input, &multi[..cut]).unwrap();
    let output = dir.path().join("corpus.txt");
    for threads in ["1", "2"] {
        let run = process_wiki(&input, &output, &["--threads", threads]);
        let log = stderr(&run);
        assert_eq!(run.status.code(), Some(1), "{log}");
        assert!(
            log.contains(&format!("ends at byte {cut} (end of file)")),
            "{log}"
        );
        assert!(
            log.contains("3 pages had been written before the error"),
            "{log}"
        );
        assert!(!output.exists());
        let leftovers: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(leftovers.len(), 1, "temporary files left: {leftovers:?}");
    }
    let run = process_wiki(&input, &output, &["--keep-partial"]);
    assert!(!run.status.success());
    assert!(!output.exists());
    let partial = fs::read_to_string(dir.path().join("corpus.txt.partial")).unwrap();
    assert_eq!(partial.split("\n\n").count(), 3);
    assert!(DEMO_CORPUS.starts_with(&partial));
}

#[test]
fn corrupt_bz2_is_an_error_naming_a_byte_offset() {
    let dir = tempfile::tempdir().unwrap();
    let mut data = bz2(demo_dump().as_bytes());
    let mid = data.len() / 2;
    for byte in &mut data[mid..mid + 40] {
        *byte ^= 0xA5;
    }
    let input = dir.path().join("bad.xml.bz2");
    fs::write(&input, data).unwrap();
    let run = process_wiki(&input, &dir.path().join("o.txt"), &[]);
    let log = stderr(&run);
    assert_eq!(run.status.code(), Some(1));
    assert!(log.contains("corrupt bz2 data near byte"), "{log}");
    assert!(
        log.contains("pages had been written before the error"),
        "{log}"
    );
    assert!(!log.contains("panicked"), "{log}");
}

#[test]
fn invalid_utf8_is_replaced_and_counted_and_a_missing_input_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let xml = demo_dump()
        .replacen("Ocupa uma área", "Ocupa uma \u{1}área", 1)
        .into_bytes();
    let at = xml.windows(1).position(|w| w == [1]).unwrap();
    let mut bytes = xml.clone();
    bytes[at] = 0xFF;
    let input = dir.path().join("bad-utf8.xml");
    fs::write(&input, bytes).unwrap();
    let run = process_wiki(&input, &dir.path().join("o.txt"), &[]);
    assert!(run.status.success(), "{}", stderr(&run));
    assert!(
        stderr(&run).contains("invalid UTF-8 sequences replaced 1"),
        "{}",
        stderr(&run)
    );
    let text = fs::read_to_string(dir.path().join("o.txt")).unwrap();
    assert!(text.contains("Ocupa uma \u{FFFD}área"));

    let run = process_wiki(
        &dir.path().join("nope.xml.bz2"),
        &dir.path().join("o2.txt"),
        &[],
    );
    let log = stderr(&run);
    assert_eq!(run.status.code(), Some(1));
    assert!(
        log.contains("cannot read") && log.contains("nope.xml.bz2") && log.contains("No such file"),
        "{log}"
    );
    assert!(!dir.path().join("o2.txt").exists());
}

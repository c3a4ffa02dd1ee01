//! Bounded fuzzing of every parser of user files: the page splitter and page parser, the bz2
//! stream finder and decoder, tokenizer.json, the data sidecar, safetensors, a checkpoint's
//! meta.json and run.toml (the hosts file is fuzzed beside its parser, in the coordinator).
//!
//! Inputs are random bytes and valid files with random edits (bytes replaced, inserted, removed,
//! the file cut). Each parser must answer `Ok` or an error: a panic fails the test, and a hang or
//! unbounded memory fails the long run in `bench/fuzz.sh`, which runs these same tests with
//! `SOVEREIGN_FUZZ_CASES` cases each under a time and memory limit. Each test prints its case
//! count.

use std::io::{Cursor, Read};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use burn::backend::Flex;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use sovereign_common::data::bz2::{Bz2Reader, decode_streams, next_stream_start};
use sovereign_common::data::dataset::{TokenDataset, Validation};
use sovereign_common::data::wiki::split::PageSplitter;
use sovereign_common::data::wiki::{PageRules, process_page};
use sovereign_common::model::config::ModelConfig;
use sovereign_common::model::init::init_rwkv;
use sovereign_common::model::weights::{TensorFile, config_of, save_rwkv};
use sovereign_common::tokenizer::Tokenizer;
use sovereign_common::train::checkpoint::read_meta;
use sovereign_common::train::resume::stored_config;
use sovereign_common::train::settings::RunConfig;

/// Cases per parser: `SOVEREIGN_FUZZ_CASES`, or a few hundred inside `cargo test`.
fn cases() -> u32 {
    std::env::var("SOVEREIGN_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200)
}

/// One random edit of a file.
#[derive(Clone, Debug)]
enum Edit {
    Replace(usize, u8),
    Insert(usize, Vec<u8>),
    Remove(usize, usize),
    Cut(usize),
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        4 => (any::<usize>(), any::<u8>()).prop_map(|(at, b)| Edit::Replace(at, b)),
        2 => (any::<usize>(), proptest::collection::vec(any::<u8>(), 1..16))
            .prop_map(|(at, bytes)| Edit::Insert(at, bytes)),
        2 => (any::<usize>(), 1usize..64).prop_map(|(at, n)| Edit::Remove(at, n)),
        1 => any::<usize>().prop_map(Edit::Cut),
    ]
}

/// `seed` with up to eight random edits, or (one case in eight) random bytes.
fn mutated(seed: Vec<u8>) -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        7 => proptest::collection::vec(edit(), 0..8).prop_map(move |edits| {
            let mut bytes = seed.clone();
            for edit in edits {
                let at = |i: usize, len: usize| if len == 0 { 0 } else { i % len };
                match edit {
                    Edit::Replace(i, b) if !bytes.is_empty() => {
                        let i = at(i, bytes.len());
                        bytes[i] = b;
                    }
                    Edit::Insert(i, more) => {
                        let i = at(i, bytes.len() + 1);
                        bytes.splice(i..i, more);
                    }
                    Edit::Remove(i, n) if !bytes.is_empty() => {
                        let i = at(i, bytes.len());
                        let end = (i + n).min(bytes.len());
                        bytes.drain(i..end);
                    }
                    Edit::Cut(i) => bytes.truncate(at(i, bytes.len() + 1)),
                    _ => {}
                }
            }
            bytes
        }),
        1 => proptest::collection::vec(any::<u8>(), 0..512),
    ]
}

/// Runs `check` on `cases()` inputs drawn from `strategy`, and prints the count.
fn fuzz<S: Strategy>(name: &str, strategy: S, check: impl Fn(S::Value)) {
    let count = AtomicU64::new(0);
    let mut runner = TestRunner::new(Config {
        cases: cases(),
        failure_persistence: None,
        ..Config::default()
    });
    let result = runner.run(&strategy, |input| {
        count.fetch_add(1, Ordering::Relaxed);
        check(input);
        Ok(())
    });
    if let Err(failure) = result {
        panic!("{name}: {failure}");
    }
    eprintln!("fuzz {name}: {} cases", count.load(Ordering::Relaxed));
}

/// A reader that hands its bytes out in pieces of the given sizes, in turn.
struct Pieces {
    bytes: Cursor<Vec<u8>>,
    sizes: Vec<usize>,
    next: usize,
}

impl Read for Pieces {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let size = self.sizes[self.next % self.sizes.len()].max(1);
        self.next += 1;
        let n = size.min(buf.len());
        self.bytes.read(&mut buf[..n])
    }
}

fn demo_dump() -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../demo/ptwiki-demo.xml");
    let xml = std::fs::read(path).expect("the demo dump is in the repository");
    // A few pages are enough and keep each case fast.
    let cut = xml
        .windows(7)
        .enumerate()
        .filter(|(_, w)| w == b"</page>")
        .nth(3)
        .map_or(xml.len(), |(i, _)| i + 7);
    let mut small = xml[..cut].to_vec();
    small.extend_from_slice(b"\n</mediawiki>\n");
    small
}

fn bz2(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut encoder = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::fast());
    encoder.write_all(data).unwrap();
    encoder.finish().unwrap()
}

#[test]
fn page_splitter_and_page_parser() {
    let seed = demo_dump();
    let strategy = (mutated(seed), proptest::collection::vec(1usize..4096, 1..4));
    fuzz("page splitter + page parser", strategy, |(xml, sizes)| {
        let reader = Pieces {
            bytes: Cursor::new(xml),
            sizes,
            next: 0,
        };
        let mut last = None;
        for page in PageSplitter::new(reader) {
            let Ok(page) = page else { break };
            assert!(last.is_none_or(|l| page.offset > l), "offsets increase");
            last = Some(page.offset);
            let _ = process_page(
                &page,
                &["Predefinição:".into()],
                PageRules {
                    min_chars: 0,
                    normalize: Default::default(),
                },
            );
        }
    });
}

#[test]
fn bz2_stream_finder_and_decoder() {
    let xml = demo_dump();
    let mut seed = Vec::new();
    for piece in xml.chunks(xml.len() / 3 + 1) {
        seed.extend(bz2(piece));
    }
    let dir = tempfile::tempdir().unwrap();
    fuzz("bz2 stream finder + decoder", mutated(seed), |bytes| {
        let path = dir.path().join("dump.xml.bz2");
        std::fs::write(&path, &bytes).unwrap();
        let decode = |threads| {
            let mut out = Vec::new();
            Bz2Reader::open(&path, threads, Arc::default())
                .and_then(|mut r| r.read_to_end(&mut out))
                .map(|_| out)
                .map_err(|e| e.to_string())
        };
        let (one, two) = (decode(1), decode(2));
        if let (Ok(a), Ok(b)) = (&one, &two) {
            assert_eq!(a, b, "the thread count changes nothing");
        }
        let file = std::fs::File::open(&path).unwrap();
        let mut from = 0;
        while let Ok(Some(start)) = next_stream_start(&file, from) {
            assert!(start >= from);
            from = start + 1;
        }
        let _ = decode_streams(&bytes, 0);
    });
}

#[test]
fn tokenizer_json() {
    let counts = [("olá", 30u64), ("mundo", 20), (" casa", 12), ("1998", 5)]
        .into_iter()
        .map(|(w, n)| (w.to_string(), n))
        .collect();
    let seed = sovereign_common::tokenizer::Bpe::train(&counts, 300, 1)
        .unwrap()
        .to_json()
        .into_bytes();
    fuzz("tokenizer.json", mutated(seed), |bytes| {
        encodes_within_vocab(&bytes);
    });
}

#[test]
fn world_vocabulary() {
    let mut seed = String::new();
    for b in 0..=255u32 {
        seed.push_str(&format!("{} b'\\x{b:02x}' 1\n", b + 1));
    }
    seed.push_str("257 'ol\\xe1' 4\n258 \"mundo\" 5\n259 ' casa' 5\n");
    fuzz("rwkv_vocab.txt", mutated(seed.into_bytes()), |bytes| {
        encodes_within_vocab(&bytes);
    });
}

/// Any tokenizer file text that loads encodes to ids inside its vocabulary and decodes.
fn encodes_within_vocab(bytes: &[u8]) {
    if let Ok(tokenizer) = Tokenizer::from_text(&String::from_utf8_lossy(bytes)) {
        let ids = tokenizer.encode("olá mundo, 1998 \u{1F600}", false);
        assert!(ids.iter().all(|&id| (id as usize) < tokenizer.vocab_size()));
        let _ = tokenizer.decode(&ids, false);
    }
}

/// A zip checkpoint holding `pickle` as its data.pkl and two storages.
fn checkpoint_with(pickle: &[u8], storages: &[Vec<u8>]) -> Vec<u8> {
    use std::io::Write;
    let mut zip = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let options =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    zip.start_file("m/data.pkl", options).unwrap();
    zip.write_all(pickle).unwrap();
    for (key, bytes) in storages.iter().enumerate() {
        zip.start_file(format!("m/data/{key}"), options).unwrap();
        zip.write_all(bytes).unwrap();
    }
    zip.finish().unwrap().into_inner()
}

#[test]
fn pytorch_checkpoint() {
    use sovereign_common::model::pth::{PthDtype, PthEntry, read_pth, write_pth};
    let storages: Vec<Vec<u8>> = vec![
        (0..12u32).flat_map(|x| (x as f32).to_le_bytes()).collect(),
        (0..4u16).flat_map(|x| (0x3f80 + x).to_le_bytes()).collect(),
    ];
    let file = write_pth(
        "m",
        &[
            PthEntry {
                name: "blocks.0.att.key.weight",
                shape: &[3, 4],
                dtype: PthDtype::F32,
                bytes: &storages[0],
            },
            PthEntry {
                name: "blocks.0.att.x_r",
                shape: &[1, 1, 4],
                dtype: PthDtype::Bf16,
                bytes: &storages[1],
            },
        ],
    )
    .unwrap();
    let mut archive = zip::ZipArchive::new(Cursor::new(file.clone())).unwrap();
    let mut pickle = Vec::new();
    archive
        .by_name("m/data.pkl")
        .unwrap()
        .read_to_end(&mut pickle)
        .unwrap();
    assert_eq!(
        read_pth(&checkpoint_with(&pickle, &storages))
            .unwrap()
            .len(),
        2
    );
    fuzz("data.pkl", mutated(pickle), |bytes| {
        if let Ok(tensors) = read_pth(&checkpoint_with(&bytes, &storages)) {
            for t in tensors {
                assert_eq!(t.values.len(), t.shape.iter().product::<usize>());
            }
        }
    });
    fuzz("checkpoint.pth", mutated(file), |bytes| {
        let _ = read_pth(&bytes);
    });
}

#[test]
fn data_sidecar() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("train.bin");
    let ids: Vec<u8> = (0u16..64).flat_map(|i| (i % 7).to_le_bytes()).collect();
    std::fs::write(&data, &ids).unwrap();
    let seed = format!(
        "{{\"format_version\":1,\"dtype\":\"uint16\",\"byte_order\":\"little\",\"tokens\":64,\
         \"documents\":9,\"vocab_size\":300,\"eos_id\":3,\"tokenizer_sha256\":\"ab\",\
         \"data_sha256\":\"{}\"}}",
        sovereign_common::hashing::sha256_file(&data).unwrap()
    );
    fuzz("data sidecar", mutated(seed.into_bytes()), |bytes| {
        std::fs::write(dir.path().join("train.bin.json"), &bytes).unwrap();
        for validation in [Validation::Ids, Validation::Full] {
            let _ = TokenDataset::open(&data, Some(300), validation);
        }
    });
}

#[test]
fn safetensors_weights() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.safetensors");
    let config = ModelConfig::new(64, 1, 64).unwrap();
    save_rwkv(&init_rwkv::<Flex>(&config, 1, &Default::default()), &path).unwrap();
    let seed = std::fs::read(&path).unwrap();
    fuzz("safetensors weights", mutated(seed), |bytes| {
        std::fs::write(&path, &bytes).unwrap();
        if let Ok(file) = TensorFile::read(&path) {
            let _ = config_of(&file);
            for name in file.names() {
                let numel = file.shape(&name).map_or(0, |s| s.iter().product());
                let _ = file.get(&name, numel);
            }
        }
    });
}

#[test]
fn checkpoint_meta_json() {
    let dir = tempfile::tempdir().unwrap();
    let seed = serde_json::json!({
        "step": 20, "tokens_seen": 4096, "lr": 0.0006, "seed": 1, "world_size": 2,
        "tokenizer_sha256": "ab", "files": {"model.safetensors": "cd"},
        "config": serde_json::to_value(RunConfig::default()).unwrap(),
    })
    .to_string();
    fuzz(
        "checkpoint meta.json",
        mutated(seed.into_bytes()),
        |bytes| {
            std::fs::write(dir.path().join("meta.json"), &bytes).unwrap();
            if let Ok(meta) = read_meta(dir.path())
                && let Ok(config) = stored_config(dir.path(), &meta)
            {
                let _ = config.check();
            }
        },
    );
}

#[test]
fn run_toml() {
    let seed = "data = \"train.bin\"\nmodel = \"mini\"\nseq_len = 512\nlr = 6e-4\n\
                min_lr = 6e-5\nwarmup = 100\nsteps = 1000\nwire_dtype = \"bf16\"\n\
                dropout = 0.1\n";
    fuzz("run.toml", mutated(seed.as_bytes().to_vec()), |bytes| {
        let text = String::from_utf8_lossy(&bytes);
        if let Ok(config) = RunConfig::from_toml(&text, Path::new("run.toml")) {
            let _ = config.check();
            let _ = config.model_config(300);
        }
    });
}

//! The token dataset's tests: opening, checks, shards and sampling.

use super::*;

fn write_ids(dir: &Path, name: &str, ids: &[u16]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(
        &path,
        ids.iter()
            .flat_map(|i| i.to_le_bytes())
            .collect::<Vec<u8>>(),
    )
    .unwrap();
    path
}

fn sidecar(tokens: u64, vocab: u32, data: &[u8]) -> Sidecar {
    Sidecar {
        format_version: 1,
        dtype: "uint16".into(),
        byte_order: "little".into(),
        tokens,
        documents: 1,
        vocab_size: vocab,
        eos_id: 3,
        tokenizer: "bpe".into(),
        tokenizer_sha256: String::new(),
        data_sha256: hex(&Sha256::digest(data)),
    }
}

#[test]
fn shards_are_equal_and_windows_stay_inside_them() {
    let dir = tempfile::tempdir().unwrap();
    let ids: Vec<u16> = (0..1003).map(|i| (i % 300) as u16).collect();
    let path = write_ids(dir.path(), "train.bin", &ids);
    let data = std::fs::read(&path).unwrap();
    std::fs::write(
        sidecar_path(&path),
        serde_json::to_string(&sidecar(1003, 300, &data)).unwrap(),
    )
    .unwrap();
    let ds = TokenDataset::open(&path, Some(300), Validation::Full).unwrap();
    let shards: Vec<Shard> = (0..3).map(|r| ds.shard(r, 3).unwrap()).collect();
    assert_eq!(
        shards[0],
        Shard {
            start_byte: 0,
            end_byte: 668
        }
    );
    assert_eq!(
        shards[2],
        Shard {
            start_byte: 1336,
            end_byte: 2004
        }
    );
    for (rank, shard) in shards.iter().enumerate() {
        for step in 0..50 {
            let key = SampleKey {
                seed: 7,
                epoch: 0,
                rank: rank as u32,
                step,
                micro: 1,
            };
            let window = ds.sample_window(*shard, 16, key).unwrap();
            assert_eq!(window.len(), 17);
            assert_eq!(
                window,
                ds.sample_window(*shard, 16, key).unwrap(),
                "deterministic"
            );
            let first = u64::from(window[0]);
            let start = (shard.start_byte / 2..shard.end_byte / 2 - 16)
                .find(|&i| ds.token(i) as u64 == first && ds.tokens(i, i + 17) == window);
            assert!(start.is_some(), "window outside shard {rank}");
        }
    }
    let key = |step| SampleKey {
        seed: 7,
        epoch: 0,
        rank: 0,
        step,
        micro: 0,
    };
    assert_ne!(
        ds.sample_window(shards[0], 16, key(1)).unwrap(),
        ds.sample_window(shards[0], 16, key(2)).unwrap()
    );
}

#[test]
fn bad_files_are_refused_with_reasons() {
    let dir = tempfile::tempdir().unwrap();
    let odd = dir.path().join("odd.bin");
    std::fs::write(&odd, [1u8, 0, 2]).unwrap();
    assert!(
        TokenDataset::open(&odd, Some(10), Validation::Ids)
            .err()
            .unwrap()
            .to_string()
            .contains("odd length")
    );

    let path = write_ids(dir.path(), "t.bin", &[1, 2, 400]);
    let data = std::fs::read(&path).unwrap();
    std::fs::write(
        sidecar_path(&path),
        serde_json::to_string(&sidecar(4, 500, &data)).unwrap(),
    )
    .unwrap();
    let err = TokenDataset::open(&path, None, Validation::Ids)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("holds 3 tokens but"), "{err}");

    std::fs::write(
        sidecar_path(&path),
        serde_json::to_string(&sidecar(3, 500, &data)).unwrap(),
    )
    .unwrap();
    let err = TokenDataset::open(&path, Some(300), Validation::Ids)
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("vocabulary of 500 tokens, but the tokenizer or model in use has 300"),
        "{err}"
    );

    let bare = write_ids(dir.path(), "bare.bin", &[1, 2, 400]);
    let err = TokenDataset::open(&bare, Some(300), Validation::Ids)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("token 2 (byte 4) is id 400"), "{err}");
    assert!(
        TokenDataset::open(&bare, None, Validation::Ids)
            .err()
            .unwrap()
            .to_string()
            .contains("no sidecar")
    );
    let ok = TokenDataset::open(&bare, Some(401), Validation::Full).unwrap();
    assert_eq!(ok.source(), &Source::Bare);
}

#[test]
fn binidx_pairs_open() {
    let dir = tempfile::tempdir().unwrap();
    let bin = write_ids(dir.path(), "data.bin", &[5, 6, 7, 0, 8, 9, 0]);
    let mut idx = b"MMIDIDX\x00\x00".to_vec();
    idx.extend_from_slice(&1u64.to_le_bytes());
    idx.push(8);
    idx.extend_from_slice(&2u64.to_le_bytes()); // sequences
    idx.extend_from_slice(&3u64.to_le_bytes()); // doc_idx entries (documents + 1)
    idx.extend_from_slice(&4i32.to_le_bytes());
    idx.extend_from_slice(&3i32.to_le_bytes());
    idx.extend_from_slice(&0i64.to_le_bytes());
    idx.extend_from_slice(&8i64.to_le_bytes());
    for d in [0i64, 1, 2] {
        idx.extend_from_slice(&d.to_le_bytes());
    }
    std::fs::write(dir.path().join("data.idx"), idx).unwrap();
    let ds = TokenDataset::open(&bin, Some(10), Validation::Full).unwrap();
    assert_eq!(ds.source(), &Source::BinIdx { documents: 2 });
    assert_eq!(ds.tokens(0, 7), [5, 6, 7, 0, 8, 9, 0]);
}

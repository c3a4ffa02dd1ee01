//! A run of 2K steps and a run of K steps resumed for K more give identical weights and metrics;
//! checkpoints are whole directories, pruned to `keep`.

use std::fs;
use std::path::Path;

use burn::backend::{Autodiff, Flex};
use sovereign_common::train::record::StepRecord;
use sovereign_common::train::run::{resume, train};
use sovereign_common::train::settings::RunConfig;
use sovereign_test_support::{patterned_tokens, write_tokens};

type A = Autodiff<Flex>;

fn metrics(run: &Path) -> Vec<(u64, f64, f64, f64)> {
    fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<StepRecord>(l).unwrap())
        .map(|m| (m.step, m.loss, m.lr, m.grad_norm))
        .collect()
}

#[test]
fn resuming_reproduces_the_uninterrupted_run_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("train.bin");
    write_tokens(&data, &patterned_tokens(4000, 16));
    let whole = dir.path().join("whole");
    let config = RunConfig {
        data: data.clone(),
        vocab: Some(16),
        layers: Some(1),
        embd: Some(64),
        seq_len: 16,
        micro_bsz: 2,
        accum: 2,
        steps: 6,
        lr: 3e-3,
        min_lr: 3e-4,
        warmup: Some(2),
        checkpoint_every: 3,
        eval_every: 0,
        keep: 0,
        out: whole.clone(),
        // Dropout masks follow (seed, step, rank, micro-batch): a resumed run draws the same.
        dropout: 0.1,
        ..RunConfig::default()
    };
    let device = Default::default();
    let last = train::<A>(&config, &Default::default(), &device).unwrap();
    assert_eq!(last, whole.join("ckpt-000006"));
    assert_eq!(
        fs::read_to_string(whole.join("latest")).unwrap().trim(),
        "ckpt-000006"
    );

    // The same run, stopped after step 3: its directory as it stood then, moved elsewhere.
    let half = dir.path().join("half");
    fs::create_dir_all(half.join("ckpt-000003")).unwrap();
    for file in ["model.safetensors", "optimizer.safetensors", "meta.json"] {
        fs::copy(
            whole.join("ckpt-000003").join(file),
            half.join("ckpt-000003").join(file),
        )
        .unwrap();
    }
    fs::write(half.join("latest"), "ckpt-000003\n").unwrap();
    fs::copy(whole.join("metrics.jsonl"), half.join("metrics.jsonl")).unwrap();
    let resumed = resume::<A>(
        &half,
        None,
        &Default::default(),
        &Default::default(),
        &device,
    )
    .unwrap();
    assert_eq!(resumed, half.join("ckpt-000006"));

    assert_eq!(metrics(&whole), metrics(&half));
    assert_eq!(metrics(&whole).len(), 6);
    assert_eq!(
        fs::read(whole.join("ckpt-000006/model.safetensors")).unwrap(),
        fs::read(half.join("ckpt-000006/model.safetensors")).unwrap()
    );
    assert_eq!(
        fs::read(whole.join("ckpt-000006/optimizer.safetensors")).unwrap(),
        fs::read(half.join("ckpt-000006/optimizer.safetensors")).unwrap()
    );
    let losses: Vec<f64> = metrics(&whole).iter().map(|m| m.1).collect();
    assert!(losses[5] < losses[0], "{losses:?}");
}

#[test]
fn keep_prunes_old_checkpoints_and_bad_settings_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("train.bin");
    write_tokens(&data, &patterned_tokens(4000, 16));
    let out = dir.path().join("run");
    let config = RunConfig {
        data,
        vocab: Some(16),
        layers: Some(1),
        embd: Some(64),
        seq_len: 16,
        micro_bsz: 1,
        steps: 4,
        warmup: Some(1),
        checkpoint_every: 1,
        eval_every: 0,
        keep: 2,
        out: out.clone(),
        ..RunConfig::default()
    };
    train::<A>(&config, &Default::default(), &Default::default()).unwrap();
    let mut names: Vec<String> = fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "ckpt-000003",
            "ckpt-000004",
            "events.jsonl",
            "latest",
            "lock",
            "metrics.jsonl"
        ]
    );
    let again = train::<A>(&config, &Default::default(), &Default::default())
        .unwrap_err()
        .to_string();
    assert!(again.contains("already holds a run"), "{again}");
    let bad = RunConfig {
        seq_len: 20,
        out: dir.path().join("x"),
        ..config
    };
    assert!(
        train::<A>(&bad, &Default::default(), &Default::default())
            .unwrap_err()
            .to_string()
            .contains("multiple of 16")
    );
}

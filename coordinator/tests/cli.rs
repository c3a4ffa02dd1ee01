//! The `sovereign` command line: every docs/cli.md subcommand is listed with help text.

use sovereign_test_support::binary;

/// Runs `sovereign` with `args` (and its default log level).
fn sovereign(args: &[&str]) -> std::process::Output {
    binary("sovereign").args(args).output().unwrap()
}

/// The subcommands this release implements.
const BUILT: &[&str] = &[
    "process-wiki",
    "clean-corpus",
    "train-tokenizer",
    "tokenize",
    "train",
    "resume",
    "test-model",
    "generate",
    "export",
    "plot",
    "demo",
];

#[test]
fn help_lists_every_subcommand() {
    let help = String::from_utf8(sovereign(&["--help"]).stdout).unwrap();
    for name in BUILT {
        assert!(
            help.lines().any(|l| l.trim_start().starts_with(name)),
            "{name} missing:\n{help}"
        );
    }
    let wiki = String::from_utf8(sovereign(&["process-wiki", "--help"]).stdout).unwrap();
    for flag in [
        "--input",
        "--output",
        "--format",
        "--min-chars",
        "--threads",
        "--title",
        "--keep-partial",
    ] {
        assert!(wiki.contains(flag), "process-wiki --help lacks {flag}");
    }
    let clean = String::from_utf8(sovereign(&["clean-corpus", "--help"]).stdout).unwrap();
    for flag in [
        "--strip-accents",
        "--lowercase",
        "--min-chars",
        "--dedup-memory-mb",
        "--line-docs",
    ] {
        assert!(clean.contains(flag), "clean-corpus --help lacks {flag}");
    }
}

#[test]
fn demo_runs_the_whole_pipeline() {
    let dir = tempfile::tempdir().unwrap();
    let out = sovereign(&[
        "demo",
        "--out",
        dir.path().to_str().unwrap(),
        "--steps",
        "20",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(stdout.contains("demo: 4 of 10 pages kept"), "{stdout}");
    assert!(stdout.contains("demo: tokenizer of "), "{stdout}");
    assert!(
        stdout.contains("demo: trained 20 steps on 2 data-parallel ranks"),
        "{stdout}"
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("20 steps on 2 local workers"), "{err}");
    // plot: a 1200 × 700 PNG (signature, then the IHDR chunk's width and height).
    let png = std::fs::read(dir.path().join("run/loss.png")).unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    assert_eq!(&png[12..16], b"IHDR");
    assert_eq!(u32::from_be_bytes(png[16..20].try_into().unwrap()), 1200);
    assert_eq!(u32::from_be_bytes(png[20..24].try_into().unwrap()), 700);
    let train = std::fs::read(dir.path().join("train.bin")).unwrap();
    let val = std::fs::read(dir.path().join("val.bin")).unwrap();
    assert!(!train.is_empty() && !val.is_empty());
    assert!(
        dir.path().join("train.bin.json").exists() && dir.path().join("tokenizer.json").exists()
    );
    assert!(
        stdout.contains("A independência foi proclamada em 7 de setembro de 1822."),
        "{stdout}"
    );
    let corpus = std::fs::read_to_string(dir.path().join("corpus.txt")).unwrap();
    assert!(corpus.starts_with("Brasil\nO Brasil, oficialmente República Federativa do Brasil"));
}

#[test]
fn train_then_resume_from_an_earlier_checkpoint_gives_the_same_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let demo = sovereign(&[
        "demo",
        "--out",
        dir.path().to_str().unwrap(),
        "--steps",
        "1",
    ]);
    assert!(demo.status.success());
    let path = |p: &str| dir.path().join(p).to_str().unwrap().to_string();
    std::fs::write(
        dir.path().join("run.toml"),
        "layers = 1\nembd = 64\nseq_len = 16\nmicro_bsz = 2\nsteps = 99\n",
    )
    .unwrap();
    let train = sovereign(&[
        "train",
        "--config",
        &path("run.toml"),
        "--data",
        &path("train.bin"),
        "--steps",
        "4",
        "--checkpoint-every",
        "2",
        "--eval-every",
        "0",
        "--keep",
        "0",
        "--out",
        &path("r"),
    ]);
    assert!(
        train.status.success(),
        "{}",
        String::from_utf8_lossy(&train.stderr)
    );
    let first = std::fs::read_to_string(dir.path().join("r/metrics.jsonl")).unwrap();
    let losses = |text: &str| -> Vec<String> {
        text.lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["loss"].to_string())
            .collect()
    };
    assert_eq!(losses(&first).len(), 4, "--steps overrides the file's 99");
    let resume = sovereign(&[
        "resume",
        "--run",
        &path("r"),
        "--from",
        &path("r/ckpt-000002"),
    ]);
    assert!(
        resume.status.success(),
        "{}",
        String::from_utf8_lossy(&resume.stderr)
    );
    let second = std::fs::read_to_string(dir.path().join("r/metrics.jsonl")).unwrap();
    assert_eq!(losses(&first), losses(&second));
    let bad = sovereign(&[
        "train",
        "--data",
        &path("train.bin"),
        "--seq-len",
        "20",
        "--out",
        &path("bad"),
    ]);
    assert!(
        String::from_utf8_lossy(&bad.stderr)
            .contains("--seq-len 20 must be a positive multiple of 16")
    );
}

#[test]
fn generation_is_reproducible_from_its_seed() {
    let dir = tempfile::tempdir().unwrap();
    assert!(
        sovereign(&[
            "demo",
            "--out",
            dir.path().to_str().unwrap(),
            "--steps",
            "20"
        ])
        .status
        .success()
    );
    let ckpt = dir.path().join("run/ckpt-000020");
    let run = |seed: &str| {
        let out = sovereign(&[
            "generate",
            "--checkpoint",
            ckpt.to_str().unwrap(),
            "--prompt",
            "A língua",
            "--max-tokens",
            "25",
            "--seed",
            seed,
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let (a, b) = (run("5"), run("5"));
    assert_eq!(a, b);
    assert!(a.starts_with("A língua"), "{a:?}");
    let outputs: std::collections::HashSet<String> = (1..=6).map(|s| run(&s.to_string())).collect();
    assert!(
        outputs.len() > 1,
        "other seeds draw other tokens: {outputs:?}"
    );
    let eval = sovereign(&[
        "test-model",
        "--checkpoint",
        ckpt.to_str().unwrap(),
        "--data",
        dir.path().join("val.bin").to_str().unwrap(),
        "--seq-len",
        "16",
        "--json",
    ]);
    let result: serde_json::Value = serde_json::from_slice(&eval.stdout).unwrap();
    let loss = result["loss"].as_f64().unwrap();
    assert!((result["perplexity"].as_f64().unwrap() - loss.exp()).abs() < 1e-6 * loss.exp());
    assert_eq!(result["tokens"].as_u64().unwrap() % 16, 0);
}

#[test]
fn plot_names_a_bad_metrics_line() {
    let dir = tempfile::tempdir().unwrap();
    let good = r#"{"step":1,"loss":5.5,"val_loss":null,"lr":0.001,"grad_norm":1.0,"tokens_per_s":10.0,"elapsed":0.1}"#;
    std::fs::write(
        dir.path().join("metrics.jsonl"),
        format!("{good}\nnot json\n"),
    )
    .unwrap();
    let out = sovereign(&["plot", dir.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("metrics.jsonl:2: not a metrics line"), "{err}");
    assert!(!dir.path().join("loss.png").exists());
}

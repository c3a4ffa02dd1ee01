//! `sovereign demo`: the pipeline on a bundled Portuguese mini-dump: process-wiki, clean-corpus,
//! train-tokenizer, tokenize, train (the micro model), plot and generate.

use std::fs;

use anyhow::{Context, Result};

use super::{infer, plot, prep, train};
use sovereign_common::tokenizer::Tokenizer;
use sovereign_common::train::settings::RunFlags;

use crate::cli::{
    CleanCorpusArgs, ClusterArgs, CorpusReadArgs, DemoArgs, Format, GenerateArgs, NormalizeArgs,
    PlotArgs, PrepClusterArgs, ProcessWikiArgs, TokenizeArgs, TrainArgs, TrainTokenizerArgs,
    WeightsArgs,
};

/// The bundled dump: a handful of Portuguese articles with the markup real dumps have, plus a
/// redirect, pages of other namespaces, an empty stub and a malformed page.
const DEMO_DUMP: &str = include_str!("../../../demo/ptwiki-demo.xml");

/// Runs the demo into `args.out`.
pub fn run(args: &DemoArgs) -> Result<()> {
    fs::create_dir_all(&args.out).with_context(|| format!("creating {}", args.out.display()))?;
    let dump = args.out.join("ptwiki-demo.xml");
    fs::write(&dump, DEMO_DUMP).with_context(|| format!("writing {}", dump.display()))?;
    let normalize = NormalizeArgs {
        strip_accents: false,
        lowercase: false,
    };
    // Two local workers: real sovereign-worker processes when the binary is beside this one (data
    // prep as map tasks of about 512 bytes, since the bundled corpus is a few KiB; training
    // data-parallel); otherwise every stage runs in this process and training emulates the two
    // ranks (bit-identical results).
    let hosts = args.out.join("hosts.txt");
    fs::write(&hosts, "localhost slots=2\n")
        .with_context(|| format!("writing {}", hosts.display()))?;
    let workers = crate::cluster::launch::worker_binary().is_ok();
    let prep_cluster = PrepClusterArgs {
        hosts: workers.then(|| hosts.clone()),
        task_mib: 0.5 / 1024.0,
        ..PrepClusterArgs::default()
    };
    let on = if workers {
        "as map tasks on 2 local workers"
    } else {
        "in this process (sovereign-worker is not built beside this binary)"
    };

    eprintln!("== 1/7 process-wiki: {} → corpus.txt, {on}", dump.display());
    let raw = args.out.join("corpus.txt");
    let wiki = prep::process_wiki(&ProcessWikiArgs {
        input: dump,
        output: raw.clone(),
        format: Format::Text,
        min_chars: 0,
        threads: Some(2),
        title: true,
        keep_partial: false,
        normalize,
        cluster: prep_cluster.clone(),
    })?;

    eprintln!("== 2/7 clean-corpus: corpus.txt → clean.txt");
    let clean = args.out.join("clean.txt");
    let cleaned = prep::clean_corpus(&CleanCorpusArgs {
        input: raw,
        output: clean.clone(),
        min_chars: 20,
        line_docs: false,
        dedup_memory_mb: 64,
        threads: Some(2),
        keep_partial: false,
        normalize,
    })?;

    // Paragraphs as documents, so that the tiny corpus still gives val.bin a share.
    let read = CorpusReadArgs {
        line_docs: true,
        lossy: false,
        threads: Some(2),
    };
    eprintln!("== 3/7 train-tokenizer: clean.txt → tokenizer.json, {on}");
    let tokenizer_path = args.out.join("tokenizer.json");
    let trained = prep::train_tokenizer(&TrainTokenizerArgs {
        corpus: vec![clean.clone()],
        vocab_size: 512,
        min_frequency: 2,
        output: tokenizer_path.clone(),
        read,
        cluster: prep_cluster.clone(),
    })?;

    eprintln!("== 4/7 tokenize: clean.txt → train.bin + val.bin, {on}");
    let tokens = prep::tokenize(&TokenizeArgs {
        input: clean.clone(),
        tokenizer: tokenizer_path.clone(),
        output: args.out.join("train.bin"),
        val_output: Some(args.out.join("val.bin")),
        val_fraction: 0.25,
        read,
        cluster: prep_cluster,
    })?;

    let steps = args.steps.max(1);
    let run_dir = args.out.join("run");
    if run_dir.exists() {
        fs::remove_dir_all(&run_dir).with_context(|| format!("clearing {}", run_dir.display()))?;
    }
    let (cluster, emulate_world) = if workers {
        eprintln!(
            "== 5/7 train: the micro RWKV-7 (8 layers, width 128), {steps} steps on 2 local workers"
        );
        let cluster = ClusterArgs {
            hosts: Some(hosts),
            ..ClusterArgs::default()
        };
        (cluster, None)
    } else {
        eprintln!(
            "== 5/7 train: sovereign-worker is not built beside this binary; the micro RWKV-7 \
             trains {steps} steps as 2 ranks emulated in this process (--emulate-world 2)"
        );
        (ClusterArgs::default(), Some(2))
    };
    train::train(&TrainArgs {
        settings: RunFlags {
            data: Some(args.out.join("train.bin")),
            val_data: Some(args.out.join("val.bin")),
            tokenizer: Some(tokenizer_path.clone()),
            model: Some("micro".into()),
            seq_len: Some(64),
            micro_bsz: Some(2),
            steps: Some(steps),
            warmup: Some(steps.div_ceil(10)),
            lr: Some(2e-3),
            min_lr: Some(2e-4),
            checkpoint_every: Some(steps.div_ceil(2)),
            eval_every: Some(steps.div_ceil(5)),
            out: Some(run_dir.clone()),
            emulate_world,
            ..RunFlags::default()
        },
        device: "cpu".into(),
        cluster,
        ..TrainArgs::default()
    })?;
    let metrics =
        fs::read_to_string(run_dir.join("metrics.jsonl")).context("reading metrics.jsonl")?;

    let text =
        fs::read_to_string(&clean).with_context(|| format!("reading {}", clean.display()))?;
    println!("{text}");
    let tokenizer = Tokenizer::from_file(&tokenizer_path).map_err(anyhow::Error::msg)?;
    let first = text.lines().next().unwrap_or_default();
    let pieces: Vec<String> = tokenizer
        .encode(first, false)
        .iter()
        .take(16)
        .map(|&id| tokenizer.decode(&[id], false))
        .collect();
    println!("demo: the first sentence as tokens: {pieces:?} …");
    println!(
        "demo: {} of {} pages kept; {} paragraphs in {} documents in {}",
        wiki.kept,
        wiki.pages_read,
        cleaned.paragraphs_written,
        cleaned.documents_written,
        clean.display()
    );
    println!(
        "demo: tokenizer of {} tokens; train.bin {} tokens ({} documents), val.bin {} tokens ({} \
         documents)",
        trained.vocab_size,
        tokens.train_tokens,
        tokens.train_documents,
        tokens.val_tokens,
        tokens.val_documents
    );
    let (first_loss, last_loss) = (
        loss_of(metrics.lines().next()),
        loss_of(metrics.lines().last()),
    );
    eprintln!("== 6/7 plot: run/metrics.jsonl → run/loss.png");
    plot::plot(&PlotArgs {
        run: run_dir.clone(),
        output: None,
    })?;

    eprintln!("== 7/7 generate: 40 tokens after \"O Brasil\"");
    infer::generate(&GenerateArgs {
        source: WeightsArgs {
            checkpoint: Some(run_dir.join(format!("ckpt-{steps:06}"))),
            weights: None,
        },
        tokenizer: None,
        prompt: "O Brasil".into(),
        max_tokens: 40,
        temperature: 0.8,
        top_p: 0.9,
        seed: 0,
    })?;
    println!(
        "demo: trained {steps} steps on 2 data-parallel ranks: loss {first_loss:.3} → \
         {last_loss:.3}; checkpoints, metrics.jsonl and loss.png in {}",
        run_dir.display()
    );
    Ok(())
}

/// The `loss` field of a metrics.jsonl line (NaN when absent).
fn loss_of(line: Option<&str>) -> f64 {
    line.and_then(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .and_then(|v| v["loss"].as_f64())
        .unwrap_or(f64::NAN)
}

//! A single-process training run: the configuration ([`RunConfig`], TOML with flag overrides in
//! the CLI), the loop (sample → step → log → evaluate → checkpoint), and resuming.
//!
//! Sampling depends only on (seed, step, micro-batch, row), so a run resumed from a checkpoint
//! continues exactly as if it had never stopped: same batches, same weights, same metrics.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::model::{ModelBackend, TrainBackend};
use burn::module::AutodiffModule;
use serde::{Deserialize, Serialize};

use super::checkpoint::{CheckpointMeta, load_checkpoint, save_checkpoint};
use super::optimizer::{AdamW, AdamWConfig};
use super::schedule::Schedule;
use super::step::{StepReport, apply_step, step_gradients};
use crate::collective::bucket::{WireDtype, flatten, unflatten};
use crate::collective::ring::emulate_mean;
use crate::data::dataset::{SampleKey, Source, TokenDataset, Validation};
use crate::model::config::ModelConfig;
use crate::model::dropout::Dropout;
use crate::model::generate::windows_loss;
use crate::model::init::init_rwkv;
use crate::model::rwkv::Rwkv;
use crate::model::weights::{TensorFile, load_rwkv};

/// Everything a training run needs; every field is also a CLI flag.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RunConfig {
    /// train.bin (u16 ids).
    pub data: PathBuf,
    /// val.bin for evaluation, if any.
    pub val_data: Option<PathBuf>,
    /// The vocabulary size when the data has no sidecar (a bare .bin).
    pub vocab: Option<u32>,
    /// The tokenizer.json the data was made with; gives the vocabulary size of a bare .bin.
    pub tokenizer: Option<PathBuf>,
    /// Named size: micro, mini or 85m (ignored when `layers` and `embd` are set).
    pub model: String,
    /// Layers, overriding the named size.
    pub layers: Option<usize>,
    /// Width, overriding the named size.
    pub embd: Option<usize>,
    /// Tokens per sequence (a multiple of 16).
    pub seq_len: usize,
    /// Sequences per micro-batch.
    pub micro_bsz: usize,
    /// Micro-batches per step (gradient accumulation).
    pub accum: usize,
    /// Optimizer steps.
    pub steps: u64,
    /// Peak learning rate.
    pub lr: f64,
    /// Final learning rate.
    pub min_lr: f64,
    /// Warmup steps.
    pub warmup: u64,
    /// Weight decay on 2-D .weight matrices.
    pub weight_decay: f64,
    /// Seed of the initialization and the sampling.
    pub seed: u64,
    /// Steps between checkpoints (0: only at the end).
    pub checkpoint_every: u64,
    /// Steps between evaluations on val_data (0: never).
    pub eval_every: u64,
    /// Micro-batches per evaluation.
    pub eval_batches: usize,
    /// Checkpoints kept (0: all).
    pub keep: usize,
    /// The run directory.
    pub out: PathBuf,
    /// Start from these weights (RWKV-LM safetensors) instead of a fresh init.
    pub init_from: Option<PathBuf>,
    /// Data-parallel ranks this process stands in for: each step takes `accum` micro-batches
    /// from every rank's shard and averages the ranks' gradients exactly as the ring all-reduce
    /// does (1: an ordinary single-process run).
    pub emulate_world: u32,
    /// How gradients travel between workers (f32 or bf16); `emulate_world` rounds the same way.
    pub wire_dtype: WireDtype,
    /// Dropout rate on each block's two residual branches in training (0: none, the reference's
    /// default).
    pub dropout: f64,
    /// Activation checkpointing (Burn's balanced strategy): element-wise intermediates are
    /// recomputed in the backward instead of kept, for less memory at some speed; the weights
    /// come out the same.
    pub activation_checkpointing: bool,
}

impl Default for RunConfig {
    fn default() -> Self {
        Self {
            data: PathBuf::from("train.bin"),
            val_data: None,
            vocab: None,
            tokenizer: None,
            model: "micro".into(),
            layers: None,
            embd: None,
            seq_len: 128,
            micro_bsz: 8,
            accum: 1,
            steps: 1000,
            lr: 6e-4,
            min_lr: 6e-5,
            warmup: 100,
            weight_decay: 0.1,
            seed: 1,
            checkpoint_every: 500,
            eval_every: 100,
            eval_batches: 8,
            keep: 3,
            out: PathBuf::from("run"),
            init_from: None,
            emulate_world: 1,
            wire_dtype: WireDtype::F32,
            dropout: 0.0,
            activation_checkpointing: false,
        }
    }
}

impl RunConfig {
    /// The model shape for a vocabulary of `vocab`.
    pub fn model_config(&self, vocab: usize) -> Result<ModelConfig, String> {
        match (self.layers, self.embd) {
            (Some(layers), Some(embd)) => ModelConfig::new(vocab, layers, embd),
            (None, None) => ModelConfig::named(&self.model, vocab),
            _ => Err("--layers and --embd go together".into()),
        }
    }

    /// The vocabulary size given by `vocab` or `tokenizer`, if either is set.
    pub fn vocab_hint(&self) -> Result<Option<u32>, String> {
        match (&self.tokenizer, self.vocab) {
            (_, Some(v)) => Ok(Some(v)),
            (Some(path), None) => Ok(Some(
                crate::tokenizer::Tokenizer::from_file(path)?.vocab_size() as u32,
            )),
            (None, None) => Ok(None),
        }
    }

    /// Checks the settings that every run needs: T a multiple of 16, non-zero sizes.
    pub fn check(&self) -> Result<(), String> {
        if self.seq_len == 0 || !self.seq_len.is_multiple_of(16) {
            return Err(format!(
                "--seq-len {} must be a positive multiple of 16 (time is processed in chunks of 16)",
                self.seq_len
            ));
        }
        if self.micro_bsz == 0 || self.accum == 0 || self.steps == 0 {
            return Err("--micro-bsz, --accum and --steps must be at least 1".into());
        }
        if self.emulate_world == 0 {
            return Err("--emulate-world must be at least 1".into());
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return Err(format!(
                "--dropout {} must be at least 0 and below 1",
                self.dropout
            ));
        }
        Ok(())
    }

    /// The dropout of rank `rank`'s micro-batches in step `step` (0-based).
    pub fn dropout_of(&self, step: u64, rank: u32) -> Dropout {
        Dropout::for_step(self.dropout, self.seed, step, rank)
    }
}

/// One line of `metrics.jsonl`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    /// Step number (1-based).
    pub step: u64,
    /// Mean training loss of the step.
    pub loss: f64,
    /// Validation loss, on evaluation steps.
    pub val_loss: Option<f64>,
    /// Learning rate used.
    pub lr: f64,
    /// Gradient norm before clipping.
    pub grad_norm: f64,
    /// Training tokens per second over the step.
    pub tokens_per_s: f64,
    /// Seconds since the run (or the resume) started.
    pub elapsed: f64,
}

/// Trains from scratch (or from `init_from`) as `config` says; returns the final checkpoint.
pub fn train<A: TrainBackend>(config: &RunConfig, device: &A::Device) -> Result<PathBuf, String> {
    config.check()?;
    let data = TokenDataset::open(&config.data, config.vocab_hint()?, Validation::Sampled)?;
    let model_config = config.model_config(data.vocab_size() as usize)?;
    let model = initial_model::<A>(config, &model_config, device)?;
    fs::create_dir_all(&config.out)
        .map_err(|e| format!("cannot create {}: {e}", config.out.display()))?;
    let metrics = config.out.join("metrics.jsonl");
    if metrics.exists() {
        return Err(format!(
            "{} already holds a run; use `sovereign resume --run {}` or another --out",
            config.out.display(),
            config.out.display()
        ));
    }
    tracing::info!(
        "model {model_config:?}: {} parameters",
        model_config.parameter_count()
    );
    let optimizer = AdamW::new(adam_config(config));
    run_loop(config, &data, model_config, model, optimizer, 0, 0, device)
}

/// Continues the run in `run_dir` from `from` (a checkpoint directory) or its `latest`.
pub fn resume<A: TrainBackend>(
    run_dir: &Path,
    from: Option<&Path>,
    device: &A::Device,
) -> Result<PathBuf, String> {
    let (config, checkpoint) = resume_point(run_dir, from)?;
    let data = TokenDataset::open(&config.data, config.vocab_hint()?, Validation::Sampled)?;
    let model_config = config.model_config(data.vocab_size() as usize)?;
    let (model, optimizer, meta) = load_checkpoint::<A>(&checkpoint, adam_config(&config), device)?;
    truncate_metrics(&config.out.join("metrics.jsonl"), meta.step)?;
    tracing::info!("resuming {} from step {}", run_dir.display(), meta.step);
    run_loop(
        &config,
        &data,
        model_config,
        model,
        optimizer,
        meta.step,
        meta.tokens_seen,
        device,
    )
}

/// Where a resumed run continues: the checkpoint (`from`, or the run's `latest`) and the run
/// config stored in it, with `out` set to `run_dir` (the directory may have moved since).
pub fn resume_point(run_dir: &Path, from: Option<&Path>) -> Result<(RunConfig, PathBuf), String> {
    let checkpoint = match from {
        Some(dir) => dir.to_path_buf(),
        None => super::checkpoint::latest_checkpoint(run_dir)?,
    };
    let meta_text = fs::read_to_string(checkpoint.join("meta.json"))
        .map_err(|e| format!("{}: {e}", checkpoint.display()))?;
    let meta: CheckpointMeta =
        serde_json::from_str(&meta_text).map_err(|e| format!("{}: {e}", checkpoint.display()))?;
    let mut config: RunConfig = serde_json::from_value(meta.config)
        .map_err(|e| format!("{}: config: {e}", checkpoint.display()))?;
    config.out = run_dir.to_path_buf();
    Ok((config, checkpoint))
}

/// The weights a run starts from: `init_from`'s (which must have the run's shape), or a fresh
/// initialization from the seed.
pub fn initial_model<A: TrainBackend>(
    config: &RunConfig,
    model_config: &ModelConfig,
    device: &A::Device,
) -> Result<Rwkv<A>, String> {
    match &config.init_from {
        Some(path) => {
            let (model, loaded) = load_rwkv::<A>(&TensorFile::read(path)?, device)?;
            if &loaded != model_config {
                return Err(format!(
                    "{}: holds a model of {loaded:?}, but the run asks for {model_config:?}",
                    path.display()
                ));
            }
            Ok(model)
        }
        None => Ok(init_rwkv::<A>(model_config, config.seed, device)),
    }
}

impl RunConfig {
    /// The learning-rate schedule: warmup to `lr`, then cosine to `min_lr` at `steps`.
    pub fn schedule(&self) -> Schedule {
        Schedule {
            lr: self.lr,
            min_lr: self.min_lr,
            warmup: self.warmup,
            total: self.steps,
        }
    }

    /// What a checkpoint taken after `step` records (its file checksums are added on saving).
    pub fn checkpoint_meta(
        &self,
        data: &TokenDataset,
        step: u64,
        tokens_seen: u64,
        lr: f64,
        world_size: u32,
    ) -> Result<CheckpointMeta, String> {
        Ok(CheckpointMeta {
            step,
            tokens_seen,
            lr,
            config: serde_json::to_value(self).map_err(|e| e.to_string())?,
            seed: self.seed,
            world_size,
            tokenizer_sha256: match data.source() {
                Source::Sidecar(meta) => Some(meta.tokenizer_sha256.clone()),
                _ => None,
            },
            files: Default::default(),
        })
    }
}

/// AdamW as the run config sets it (weight decay; the rest DESIGN §4's defaults).
pub fn adam_config(config: &RunConfig) -> AdamWConfig {
    AdamWConfig {
        weight_decay: config.weight_decay,
        ..AdamWConfig::default()
    }
}

/// Keeps the metrics lines of steps up to `step` (a resume rewrites what came after).
pub fn truncate_metrics(path: &Path, step: u64) -> Result<(), String> {
    let Ok(text) = fs::read_to_string(path) else {
        return Ok(());
    };
    let kept: String = text
        .lines()
        .filter(|line| serde_json::from_str::<Metrics>(line).is_ok_and(|m| m.step <= step))
        .map(|line| format!("{line}\n"))
        .collect();
    fs::write(path, kept).map_err(|e| format!("{}: {e}", path.display()))
}

/// The windows of step `step` (0-based): `accum` micro-batches of `micro_bsz` windows.
/// One step of `config.emulate_world` ranks in this process: each rank's gradients from its own
/// shard's micro-batches, averaged bit for bit as the ring all-reduce would
/// ([`emulate_mean`]), then one optimizer step.
#[allow(clippy::too_many_arguments)]
fn world_step<A: TrainBackend>(
    model: Rwkv<A>,
    model_config: &ModelConfig,
    optimizer: &mut AdamW<A::InnerBackend>,
    config: &RunConfig,
    data: &TokenDataset,
    step: u64,
    lr: f64,
    device: &A::Device,
) -> Result<(Rwkv<A>, StepReport), String> {
    let world = config.emulate_world;
    if world == 1 {
        // One rank: its gradients are the step's; no averaging, no host copies.
        let batches = rank_windows(config, data, 0, 1, step)?;
        let dropout = config.dropout_of(step, 0);
        let (grads, loss) =
            step_gradients(&model, model_config, step + 1, &batches, dropout, device)?;
        return apply_step(model, optimizer, grads, loss, lr);
    }
    let mut per_rank = Vec::with_capacity(world as usize);
    let mut layout = None;
    let mut loss = 0.0;
    for rank in 0..world {
        let batches = rank_windows(config, data, rank, world, step)?;
        let dropout = config.dropout_of(step, rank);
        let (grads, rank_loss) =
            step_gradients(&model, model_config, step + 1, &batches, dropout, device)?;
        let (flat, rank_layout) = flatten(&grads);
        per_rank.push(flat);
        layout = Some(rank_layout);
        loss += rank_loss;
    }
    let layout = layout.ok_or("a run needs at least one rank")?;
    let grads = unflatten(&emulate_mean(&per_rank, config.wire_dtype), &layout, device);
    apply_step(model, optimizer, grads, loss / f64::from(world), lr)
}

/// Rank `rank`'s micro-batches of `step` in a world of `world`: `accum` batches of `micro_bsz`
/// windows drawn from its shard (DESIGN §5).
pub fn rank_windows(
    config: &RunConfig,
    data: &TokenDataset,
    rank: u32,
    world: u32,
    step: u64,
) -> Result<Vec<Vec<Vec<u16>>>, String> {
    let shard = data.shard(rank, world)?;
    (0..config.accum)
        .map(|micro| {
            (0..config.micro_bsz)
                .map(|row| {
                    let key = SampleKey {
                        seed: config.seed,
                        epoch: 0,
                        rank,
                        step,
                        micro: (micro * config.micro_bsz + row) as u32,
                    };
                    data.sample_window(shard, config.seq_len, key)
                })
                .collect()
        })
        .collect()
}

/// Mean validation loss over `eval_batches` fixed windows of val_data.
pub(crate) fn evaluate<B: ModelBackend>(
    model: &Rwkv<B>,
    model_config: &ModelConfig,
    config: &RunConfig,
    device: &B::Device,
) -> Result<Option<f64>, String> {
    let Some(path) = &config.val_data else {
        return Ok(None);
    };
    let val = TokenDataset::open(path, Some(model_config.vocab as u32), Validation::Sampled)?;
    let shard = val.shard(0, 1)?;
    let mut total = 0.0;
    for batch in 0..config.eval_batches {
        let windows: Vec<Vec<u16>> = (0..config.micro_bsz)
            .map(|row| {
                val.sample_window(
                    shard,
                    config.seq_len,
                    SampleKey {
                        seed: 0xE7A1,
                        epoch: 0,
                        rank: 0,
                        step: batch as u64,
                        micro: row as u32,
                    },
                )
            })
            .collect::<Result<_, _>>()?;
        total += windows_loss(model, model_config, &windows, device)?;
    }
    Ok(Some(total / config.eval_batches as f64))
}

#[allow(clippy::too_many_arguments)]
fn run_loop<A: TrainBackend>(
    config: &RunConfig,
    data: &TokenDataset,
    model_config: ModelConfig,
    mut model: Rwkv<A>,
    mut optimizer: AdamW<A::InnerBackend>,
    start_step: u64,
    mut tokens_seen: u64,
    device: &A::Device,
) -> Result<PathBuf, String> {
    let schedule = config.schedule();
    let metrics_path = config.out.join("metrics.jsonl");
    let mut metrics = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&metrics_path)
        .map_err(|e| format!("{}: {e}", metrics_path.display()))?;
    let started = Instant::now();
    let tokens_per_step =
        (config.seq_len * config.micro_bsz * config.accum) as u64 * u64::from(config.emulate_world);
    let mut last_checkpoint = None;
    for step in start_step..config.steps {
        let step_start = Instant::now();
        let lr = schedule.lr_at(step);
        let (next, report) = world_step(
            model,
            &model_config,
            &mut optimizer,
            config,
            data,
            step,
            lr,
            device,
        )?;
        model = next;
        tokens_seen += tokens_per_step;
        let done = step + 1;
        let val_loss = if config.eval_every > 0 && done.is_multiple_of(config.eval_every)
            || done == config.steps
        {
            evaluate(&model.valid(), &model_config, config, device)?
        } else {
            None
        };
        let line = Metrics {
            step: done,
            loss: report.loss,
            val_loss,
            lr,
            grad_norm: report.grad_norm,
            tokens_per_s: tokens_per_step as f64 / step_start.elapsed().as_secs_f64().max(1e-9),
            elapsed: started.elapsed().as_secs_f64(),
        };
        let text = serde_json::to_string(&line).map_err(|e| e.to_string())?;
        writeln!(metrics, "{text}").map_err(|e| format!("{}: {e}", metrics_path.display()))?;
        tracing::info!(
            "step {done}/{}: loss {:.4}{} lr {lr:.2e} grad norm {:.3} {:.0} tok/s",
            config.steps,
            report.loss,
            val_loss.map_or(String::new(), |v| format!(" val {v:.4}")),
            report.grad_norm,
            line.tokens_per_s
        );
        let due = config.checkpoint_every > 0 && done.is_multiple_of(config.checkpoint_every);
        if due || done == config.steps {
            let meta = config.checkpoint_meta(data, done, tokens_seen, lr, config.emulate_world)?;
            let dir = save_checkpoint(&config.out, &model, &optimizer, meta, config.keep)
                .map_err(|e| format!("writing a checkpoint in {}: {e}", config.out.display()))?;
            last_checkpoint = Some(dir);
        }
    }
    last_checkpoint.ok_or_else(|| "the run had no steps left to take".to_string())
}

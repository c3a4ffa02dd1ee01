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

use super::checkpoint::{
    CheckpointMeta, load_checkpoint, read_meta, save_checkpoint, verify_weights_file,
};
use super::optimizer::{AdamW, AdamWConfig};
use super::run_dir::{RunLock, roll_back, start_fresh};
use super::schedule::Schedule;
use super::step::{StepReport, apply_step, step_gradients};
use crate::collective::bucket::{flatten, unflatten};
use crate::collective::ring::emulate_mean;
use crate::data::dataset::{SampleKey, Sidecar, TokenDataset, Validation};
use crate::model::config::ModelConfig;
use crate::model::dropout::Dropout;
use crate::model::generate::windows_loss;
use crate::model::init::init_rwkv;
use crate::model::rwkv::Rwkv;
use crate::model::weights::{TensorFile, load_rwkv};
use crate::output::AtomicFile;

pub use super::settings::{DEFAULT_WARMUP, RunConfig, RunFlags};

/// A run's token files, opened and checked once ([`RunConfig::open_data`]).
pub struct RunData {
    /// The training data.
    pub train: TokenDataset,
    /// The validation data, if the run has any.
    pub val: Option<TokenDataset>,
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

    /// Checks the settings before any work: T a multiple of 16, non-zero sizes, a positive finite
    /// learning rate with 0 ≤ min_lr ≤ lr, warmup within the steps, weight decay ≥ 0, dropout in
    /// [0, 1).
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
        if !(self.lr.is_finite() && self.lr > 0.0) {
            let why = if self.lr < 0.0 {
                " (a negative rate would train by gradient ascent)"
            } else {
                ""
            };
            return Err(format!(
                "--lr {} must be a positive finite number{why}",
                self.lr
            ));
        }
        if !(self.min_lr.is_finite() && self.min_lr >= 0.0 && self.min_lr <= self.lr) {
            return Err(format!(
                "--min-lr {} must be between 0 and --lr {}",
                self.min_lr, self.lr
            ));
        }
        if let Some(warmup) = self.warmup
            && warmup > self.steps
        {
            return Err(format!(
                "--warmup {warmup} is longer than the run's --steps {}",
                self.steps
            ));
        }
        if !(self.weight_decay.is_finite() && self.weight_decay >= 0.0) {
            return Err(format!(
                "--weight-decay {} must be a finite number of at least 0",
                self.weight_decay
            ));
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return Err(format!(
                "--dropout {} must be at least 0 and below 1",
                self.dropout
            ));
        }
        if self.eval_batches == 0 && self.eval_every > 0 && self.val_data.is_some() {
            return Err("eval_batches must be at least 1 when there is --val-data".into());
        }
        Ok(())
    }

    /// Every path made absolute, so that resume, generate and workers started elsewhere find
    /// the same files from any directory.
    pub fn absolute_paths(mut self) -> Result<Self, String> {
        let absolute =
            |p: &PathBuf| std::path::absolute(p).map_err(|e| format!("{}: {e}", p.display()));
        self.data = absolute(&self.data)?;
        self.out = absolute(&self.out)?;
        self.val_data = self.val_data.as_ref().map(absolute).transpose()?;
        self.tokenizer = self.tokenizer.as_ref().map(absolute).transpose()?;
        self.init_from = self.init_from.as_ref().map(absolute).transpose()?;
        Ok(self)
    }

    /// Opens the training and validation data for a world of `world` ranks with every check: each id against
    /// the vocabulary, the sha256 against the sidecar (unless `skip_checksum`), the sidecar's
    /// tokenizer and `[EOS]` against `tokenizer`, and a shard long enough for one window. The
    /// validation data gets the same checks.
    pub fn open_data(&self, world: u32) -> Result<RunData, String> {
        let tokenizer = self
            .tokenizer
            .as_ref()
            .map(|path| crate::tokenizer::Tokenizer::from_file(path).map(|t| (path, t)))
            .transpose()?;
        let vocab = self
            .vocab
            .or(tokenizer.as_ref().map(|(_, t)| t.vocab_size() as u32));
        let validation = if self.skip_checksum {
            Validation::Ids
        } else {
            Validation::Full
        };
        let data = TokenDataset::open(&self.data, vocab, validation)?;
        let mut files = vec![(&self.data, world, data)];
        if let Some(val) = &self.val_data {
            let opened = TokenDataset::open(val, Some(files[0].2.vocab_size()), validation)?;
            files.push((val, 1, opened));
        }
        for (path, world, file) in &files {
            if let Some((tokenizer_path, tokenizer)) = &tokenizer {
                file.check_tokenizer(tokenizer_path, tokenizer.eos_id())?;
            }
            let shard = file.shard(0, *world)?;
            let windows = shard.tokens().saturating_sub(self.seq_len as u64);
            if windows > 0 && windows < self.micro_bsz as u64 {
                return Err(format!(
                    "--micro-bsz {} needs as many different windows of {} tokens, but {} holds \
                     only {windows} per rank in a world of {}: lower --micro-bsz or --seq-len, or \
                     use more data",
                    self.micro_bsz,
                    self.seq_len + 1,
                    path.display(),
                    world
                ));
            }
            if shard.tokens() <= self.seq_len as u64 {
                return Err(format!(
                    "--seq-len {} needs windows of {} tokens, but {} holds {} tokens per rank in \
                     a world of {}: lower --seq-len or use more data",
                    self.seq_len,
                    self.seq_len + 1,
                    path.display(),
                    shard.tokens(),
                    world
                ));
            }
        }
        let mut opened = files.into_iter().map(|(_, _, file)| file);
        let train = opened.next().ok_or("no training data")?;
        Ok(RunData {
            train,
            val: opened.next(),
        })
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
    let _lock = RunLock::acquire(&config.out)?;
    start_fresh(&config.out)?;
    let data = config.open_data(config.emulate_world)?;
    let model_config = config.model_config(data.train.vocab_size() as usize)?;
    let model = initial_model::<A>(config, &model_config, device)?;
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
    moved: &MovedData,
    device: &A::Device,
) -> Result<PathBuf, String> {
    let _lock = RunLock::acquire(run_dir)?;
    let (config, checkpoint) = resume_point(run_dir, from, moved)?;
    let data = config.open_data(config.emulate_world)?;
    let model_config = config.model_config(data.train.vocab_size() as usize)?;
    let (model, optimizer, meta) = load_checkpoint::<A>(&checkpoint, adam_config(&config), device)?;
    roll_back(run_dir, &checkpoint, meta.step)?;
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

/// Where a resume finds data that moved since the run started: `--data`/`--val-data`, each
/// accepted when its sha256 is the one the run was checked against.
#[derive(Clone, Debug, Default)]
pub struct MovedData {
    /// The training data's new path.
    pub data: Option<PathBuf>,
    /// The validation data's new path.
    pub val_data: Option<PathBuf>,
    /// Skip the checksum checks (resume's `--skip-checksum`).
    pub skip_checksum: bool,
}

impl MovedData {
    /// Points `config` at the moved files after checking each: its sidecar's sha256 must be the
    /// one the checkpoint recorded (or, for checkpoints without it, the original's sidecar's,
    /// while that is still there).
    fn apply(&self, config: &mut RunConfig, meta: &CheckpointMeta) -> Result<(), String> {
        config.skip_checksum |= self.skip_checksum;
        if let Some(new) = &self.data {
            config.data = moved(new, &config.data, meta.data_sha256.as_deref())?;
        }
        if let Some(new) = &self.val_data {
            config.val_data = Some(match &config.val_data {
                Some(old) => moved(new, old, meta.val_data_sha256.as_deref())?,
                None => {
                    return Err(format!(
                        "--val-data {}: the run had no validation data to move",
                        new.display()
                    ));
                }
            });
        }
        Ok(())
    }
}

/// The absolute path of `new`, a moved copy of `old` whose sidecar's sha256 must be `recorded`
/// (or `old`'s sidecar's when nothing was recorded).
fn moved(new: &Path, old: &Path, recorded: Option<&str>) -> Result<PathBuf, String> {
    let new = std::path::absolute(new).map_err(|e| format!("{}: {e}", new.display()))?;
    let new_sum = Sidecar::read(&new)?.data_sha256;
    let expected = match recorded {
        Some(sum) => Some(sum.to_string()),
        None => Sidecar::read(old).ok().map(|meta| meta.data_sha256),
    };
    if let Some(expected) = expected
        && expected != new_sum
    {
        return Err(format!(
            "{} is not the data this run trained on: its sidecar's sha256 {new_sum} differs \
             from the run's {expected} ({})",
            new.display(),
            old.display()
        ));
    }
    tracing::info!("data moved: {} → {}", old.display(), new.display());
    Ok(new)
}

/// Where a resumed run continues: the checkpoint (`from`, or the run's `latest`) and the run
/// config stored in it, with `out` set to `run_dir` (the directory may have moved since).
pub fn resume_point(
    run_dir: &Path,
    from: Option<&Path>,
    moved: &MovedData,
) -> Result<(RunConfig, PathBuf), String> {
    let checkpoint = match from {
        Some(dir) => dir.to_path_buf(),
        None => super::checkpoint::latest_checkpoint(run_dir)?,
    };
    let meta = read_meta(&checkpoint)?;
    let mut config: RunConfig = serde_json::from_value(meta.config.clone())
        .map_err(|e| format!("{}: config: {e}", checkpoint.display()))?;
    config.out = std::path::absolute(run_dir).map_err(|e| format!("{}: {e}", run_dir.display()))?;
    moved.apply(&mut config, &meta)?;
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
            verify_weights_file(path)?;
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
            warmup: self.warmup.unwrap_or(DEFAULT_WARMUP.min(self.steps)),
            total: self.steps,
        }
    }

    /// What a checkpoint taken after `step` records (its file checksums are added on saving).
    pub fn checkpoint_meta(
        &self,
        data: &RunData,
        step: u64,
        tokens_seen: u64,
        lr: f64,
        world_size: u32,
    ) -> Result<CheckpointMeta, String> {
        let train = data.train.sidecar();
        Ok(CheckpointMeta {
            step,
            tokens_seen,
            lr,
            config: serde_json::to_value(self).map_err(|e| e.to_string())?,
            seed: self.seed,
            world_size,
            tokenizer_sha256: train.map(|meta| meta.tokenizer_sha256.clone()),
            files: Default::default(),
            data_sha256: train.map(|meta| meta.data_sha256.clone()),
            val_data_sha256: data
                .val
                .as_ref()
                .and_then(TokenDataset::sidecar)
                .map(|meta| meta.data_sha256.clone()),
        })
    }
}

/// AdamW as the run config sets it (weight decay; the rest docs/model.md's defaults).
pub fn adam_config(config: &RunConfig) -> AdamWConfig {
    AdamWConfig {
        weight_decay: config.weight_decay,
        ..AdamWConfig::default()
    }
}

/// Keeps the metrics lines of steps up to `step` (a resume rewrites what came after); the file
/// is replaced whole, never cut in place.
pub fn truncate_metrics(path: &Path, step: u64) -> Result<(), String> {
    let Ok(text) = fs::read_to_string(path) else {
        return Ok(());
    };
    let kept: String = text
        .lines()
        .filter(|line| serde_json::from_str::<Metrics>(line).is_ok_and(|m| m.step <= step))
        .map(|line| format!("{line}\n"))
        .collect();
    if kept.len() == text.len() {
        return Ok(());
    }
    let error = |e: std::io::Error| format!("{}: {e}", path.display());
    let mut file = AtomicFile::create(path).map_err(error)?;
    file.write_all(kept.as_bytes()).map_err(error)?;
    file.commit().map_err(error)
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
/// windows drawn from its shard (docs/distributed.md).
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

/// Mean validation loss over `eval_batches` fixed windows of the validation data (`None`
/// without it).
pub(crate) fn evaluate<B: ModelBackend>(
    model: &Rwkv<B>,
    model_config: &ModelConfig,
    config: &RunConfig,
    val: Option<&TokenDataset>,
    device: &B::Device,
) -> Result<Option<f64>, String> {
    let Some(val) = val else {
        return Ok(None);
    };
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
    data: &RunData,
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
            &data.train,
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
            evaluate(
                &model.valid(),
                &model_config,
                config,
                data.val.as_ref(),
                device,
            )?
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

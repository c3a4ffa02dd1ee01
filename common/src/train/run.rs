//! The training loop: the one every run goes through, a single process, `--emulate-world N` and
//! each rank of a cluster alike ([`run_loop`]). They differ in two things only: how a step's
//! gradients become the world's mean ([`Reducer`]), and where each step's record goes
//! ([`StepSink`]: metrics.jsonl, or the coordinator).
//!
//! Sampling depends only on (seed, step, rank, micro-batch, row), so a run resumed from a
//! checkpoint continues exactly as if it had never stopped: same batches, same weights, same
//! metrics.

use super::TrainError;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use burn::module::AutodiffModule;

use super::backend::TrainBackend;
use super::checkpoint::{load_checkpoint, save_checkpoint, verify_weights_file};
use super::config::RunData;
use super::events::{EventKind, Watcher};
use super::optimizer::{AdamW, Gradients};
use super::record::{MetricsLog, StepRecord};
use super::resume::{MovedData, resume_point};
use super::run_dir::{RunLock, roll_back, start_fresh};
use super::settings::RunConfig;
use super::step::{apply_step, step_gradients};
use crate::collective::AllReduce;
use crate::collective::ring::emulate_mean;
use crate::data::dataset::{SampleKey, TokenDataset};
use crate::model::RwkvBackend;
use crate::model::config::ModelConfig;
use crate::model::generate::{GenerateOptions, Sampling, generate, windows_loss};
use crate::model::init::init_rwkv;
use crate::model::rwkv::Rwkv;
use crate::model::weights::{TensorFile, load_rwkv};
use crate::tokenizer::Tokenizer;

/// The prompt of the sample written at each evaluation.
pub const SAMPLE_PROMPT: &str = "O Brasil é";
/// Tokens in the sample written at each evaluation (greedy, so the same weights always write
/// the same text).
pub const SAMPLE_TOKENS: usize = 32;

/// Who watches a run in this process: the dashboard, if any, and the device its rows name.
#[derive(Clone, Default)]
pub struct Watch {
    /// Told of every step and event.
    pub watcher: Option<Arc<dyn Watcher>>,
    /// The device, in words ("cpu", "cuda:0").
    pub device: String,
}

/// Trains from scratch (or from `init_from`) in this process as `config` says, `emulate_world`
/// ranks of it, watched by `watch`; returns the final checkpoint.
pub fn train<A: TrainBackend>(
    config: &RunConfig,
    watch: &Watch,
    device: &A::Device,
) -> Result<PathBuf, TrainError> {
    config.check()?;
    let _lock = RunLock::acquire(&config.out)?;
    start_fresh(&config.out)?;
    let data = config.open_data(config.emulate_world)?;
    let model_config = config.model_config(data.train.vocab_size() as usize)?;
    let start = Start::<A>::new(config, &model_config, None, device)?;
    tracing::info!(
        "model {model_config:?}: {} parameters",
        model_config.parameter_count()
    );
    in_this_process(config, &data, &model_config, start, watch, device)
}

/// Continues the run in `run_dir` in this process, from `from` (a checkpoint directory) or its
/// `latest`, watched by `watch`.
pub fn resume<A: TrainBackend>(
    run_dir: &Path,
    from: Option<&Path>,
    moved: &MovedData,
    watch: &Watch,
    device: &A::Device,
) -> Result<PathBuf, TrainError> {
    let _lock = RunLock::acquire(run_dir)?;
    let (config, checkpoint) = resume_point(run_dir, from, moved)?;
    let data = config.open_data(config.emulate_world)?;
    let model_config = config.model_config(data.train.vocab_size() as usize)?;
    let start = Start::<A>::new(&config, &model_config, Some(&checkpoint), device)?;
    roll_back(run_dir, &checkpoint, start.step)?;
    tracing::info!("resuming {} from step {}", run_dir.display(), start.step);
    in_this_process(&config, &data, &model_config, start, watch, device)
}

/// Runs the loop with every rank in this process and metrics.jsonl (with events.jsonl) as the
/// sink.
fn in_this_process<A: TrainBackend>(
    config: &RunConfig,
    data: &RunData,
    model_config: &ModelConfig,
    start: Start<A>,
    watch: &Watch,
    device: &A::Device,
) -> Result<PathBuf, TrainError> {
    let mut reducer = if config.emulate_world == 1 {
        Reducer::Alone
    } else {
        Reducer::Emulated {
            world: config.emulate_world,
        }
    };
    let mut metrics =
        MetricsLog::open(&config.out, config.steps)?.watched_by(watch.watcher.clone());
    metrics.event(EventKind::Started {
        job: "train".into(),
        steps: config.steps,
        from_step: start.step,
        world: config.emulate_world,
        tokens_per_step: config.tokens_per_step(config.emulate_world),
        model: model_config.describe(),
    })?;
    for rank in 0..config.emulate_world {
        metrics.event(EventKind::Joined {
            rank,
            host: super::run_dir::host_name(),
            pid: std::process::id(),
            device: watch.device.clone(),
        })?;
    }
    let outcome = run_loop(
        config,
        data,
        model_config,
        start,
        &mut reducer,
        &mut metrics,
        device,
    )
    .and_then(|last| {
        last.ok_or_else(|| TrainError::Run("the run had no steps left to take".into()))
    });
    metrics.event(EventKind::ended(
        config.steps,
        outcome.as_ref().err().map(ToString::to_string),
    ))?;
    outcome
}

/// One rank of a cluster run: which rank it is, where it reads its data, and the run's tokenizer.
pub struct RankPlan {
    /// This rank.
    pub rank: u32,
    /// Ranks in the run.
    pub world: u32,
    /// Where this rank reads train.bin: its local copy, which may be a cache file holding only
    /// its shard. The config's path (the coordinator's) is what checkpoints record.
    pub data: PathBuf,
    /// Where this rank reads val.bin, likewise.
    pub val_data: Option<PathBuf>,
    /// The run's tokenizer, sent by the coordinator (the config's path is the coordinator's): the
    /// vocabulary size when the run gives none, and rank 0's evaluation samples.
    pub tokenizer: Option<Tokenizer>,
}

/// Trains rank `plan.rank` of a cluster run up to `config.steps`, from `start` (a checkpoint
/// directory) or from scratch, averaging gradients with `all_reduce` and handing each step's
/// record to `sink` (the coordinator's report). The coordinator checked the data whole before
/// the run began; each rank checks its ids. Rank 0 writes the checkpoints and returns the last.
pub fn train_rank<A: TrainBackend>(
    config: &RunConfig,
    plan: RankPlan,
    start: Option<&Path>,
    all_reduce: &mut dyn AllReduce,
    sink: &mut dyn StepSink,
    device: &A::Device,
) -> Result<Option<PathBuf>, TrainError> {
    let (rank, world) = (plan.rank, plan.world);
    let data = RunData::for_rank(config.vocab, plan)?;
    let model_config = config.model_config(data.train.vocab_size() as usize)?;
    let start = Start::<A>::new(config, &model_config, start, device)?;
    let mut reducer = Reducer::Collective {
        rank,
        world,
        all_reduce,
    };
    run_loop(
        config,
        &data,
        &model_config,
        start,
        &mut reducer,
        sink,
        device,
    )
}

/// How a step's gradients become the mean over the world's ranks.
pub enum Reducer<'a> {
    /// A world of one: its gradients are the step's.
    Alone,
    /// `world` ranks taken one after another in this process, their gradients averaged bit for
    /// bit as the ring all-reduce would ([`emulate_mean`]).
    Emulated {
        /// Ranks in the world.
        world: u32,
    },
    /// Rank `rank` of `world`, the others in other processes, reached through `all_reduce`
    /// (the gRPC ring or NCCL).
    Collective {
        /// This process's rank.
        rank: u32,
        /// Ranks in the world.
        world: u32,
        /// The collective that averages with the other ranks.
        all_reduce: &'a mut dyn AllReduce,
    },
}

impl Reducer<'_> {
    /// Ranks in the world.
    fn world(&self) -> u32 {
        match self {
            Reducer::Alone => 1,
            Reducer::Emulated { world } | Reducer::Collective { world, .. } => *world,
        }
    }

    /// The ranks this process computes.
    fn ranks(&self) -> Range<u32> {
        match self {
            Reducer::Alone => 0..1,
            Reducer::Emulated { world } => 0..*world,
            Reducer::Collective { rank, .. } => *rank..*rank + 1,
        }
    }

    /// Averages this process's ranks' gradients (`per_rank`, in rank order, with their losses)
    /// over the world. Returns the mean gradients, the mean loss of this process's ranks and
    /// the seconds spent averaging.
    fn average<B: RwkvBackend>(
        &mut self,
        per_rank: Vec<(Gradients<B>, f64)>,
        step: u64,
        config: &RunConfig,
        device: &B::Device,
    ) -> Result<(Gradients<B>, f64, f64), TrainError> {
        let ranks = per_rank.len() as f64;
        let loss = per_rank.iter().map(|(_, loss)| loss).sum::<f64>() / ranks;
        let started = Instant::now();
        let mut per_rank = per_rank.into_iter();
        let Some((first, _)) = per_rank.next() else {
            return Err(TrainError::Run("a step needs a rank".into()));
        };
        if let Reducer::Alone = self {
            return Ok((first, loss, 0.0));
        }
        let (flat, layout) = first.flatten();
        drop(first);
        let mut flats = vec![flat];
        flats.extend(per_rank.map(|(grads, _)| grads.flatten().0));
        let mean = match self {
            Reducer::Collective { all_reduce, .. } => {
                // A collective rank computes one rank: `flats` holds its gradients alone.
                let mut flat = flats.swap_remove(0);
                all_reduce
                    .all_reduce_mean(&mut flat)
                    .map_err(|source| TrainError::AllReduce {
                        step: step + 1,
                        source,
                    })?;
                flat
            }
            _ => emulate_mean(&flats, config.wire_dtype),
        };
        let grads = Gradients::unflatten(&mean, &layout, device);
        Ok((grads, loss, started.elapsed().as_secs_f64()))
    }
}

/// Where each step's record goes.
pub trait StepSink {
    /// Takes the record of a finished step; the answer may ask the run to stop early.
    fn record(&mut self, record: StepRecord) -> Result<Control, TrainError>;

    /// Hears that this process wrote the checkpoint of step `step` in `dir`.
    fn checkpointed(&mut self, step: u64, dir: &Path) -> Result<(), TrainError>;
}

impl StepSink for MetricsLog {
    fn record(&mut self, record: StepRecord) -> Result<Control, TrainError> {
        self.write(record)?;
        Ok(Control::Continue)
    }

    fn checkpointed(&mut self, step: u64, dir: &Path) -> Result<(), TrainError> {
        self.event(EventKind::Checkpoint {
            step,
            path: dir.display().to_string(),
        })
    }
}

/// A cluster rank's sink: each record goes to the coordinator, which also finds the
/// checkpoints rank 0 writes in the run directory.
impl<F: FnMut(StepRecord) -> Result<Control, TrainError>> StepSink for F {
    fn record(&mut self, record: StepRecord) -> Result<Control, TrainError> {
        self(record)
    }

    fn checkpointed(&mut self, _step: u64, _dir: &Path) -> Result<(), TrainError> {
        Ok(())
    }
}

/// What a sink answers a step's record with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Control {
    /// Go on to the next step.
    Continue,
    /// Stop after this step (a global step number), writing a checkpoint at it. Every rank is
    /// told before it finishes that step, so all of them stop at the same one.
    StopAfter(u64),
}

/// Where the loop starts: the weights, the optimizer's state, the steps taken and the tokens
/// seen so far.
pub struct Start<A: TrainBackend> {
    /// The weights.
    pub model: Rwkv<A>,
    /// AdamW with its moments.
    pub optimizer: AdamW<A::InnerBackend>,
    /// Steps already taken.
    pub step: u64,
    /// Training tokens already seen.
    pub tokens_seen: u64,
}

impl<A: TrainBackend> Start<A> {
    /// From `checkpoint`, or else at step 0 from `init_from`'s weights (which must have the
    /// run's shape) or a fresh initialization from the seed.
    pub fn new(
        config: &RunConfig,
        model_config: &ModelConfig,
        checkpoint: Option<&Path>,
        device: &A::Device,
    ) -> Result<Self, TrainError> {
        if let Some(dir) = checkpoint {
            let (model, optimizer, meta) = load_checkpoint::<A>(dir, config.adam_config(), device)?;
            return Ok(Start {
                model,
                optimizer,
                step: meta.step,
                tokens_seen: meta.tokens_seen,
            });
        }
        let model = match &config.init_from {
            Some(path) => {
                verify_weights_file(path)?;
                let (model, loaded) = load_rwkv::<A>(&TensorFile::read(path)?, device)?;
                if &loaded != model_config {
                    return Err(TrainError::Run(format!(
                        "{}: holds a model of {loaded:?}, but the run asks for {model_config:?}",
                        path.display()
                    )));
                }
                model
            }
            None => init_rwkv::<A>(model_config, config.seed, device),
        };
        Ok(Start {
            model,
            optimizer: AdamW::new(config.adam_config()),
            step: 0,
            tokens_seen: 0,
        })
    }
}

/// Trains from `start` to `config.steps` (or to the step a [`Control::StopAfter`] names). Each
/// step: the learning rate; forward and backward on this process's ranks' windows; the gradients
/// averaged over the world; clipping and AdamW; the evaluation when due (rank 0); the step's
/// record to `sink`; the checkpoint when due or stopping (rank 0). Returns the last checkpoint
/// this process wrote.
pub fn run_loop<A: TrainBackend>(
    config: &RunConfig,
    data: &RunData,
    model_config: &ModelConfig,
    start: Start<A>,
    reducer: &mut Reducer,
    sink: &mut dyn StepSink,
    device: &A::Device,
) -> Result<Option<PathBuf>, TrainError> {
    let Start {
        mut model,
        mut optimizer,
        step: first_step,
        mut tokens_seen,
    } = start;
    let schedule = config.schedule();
    let world = reducer.world();
    let holds_rank_zero = reducer.ranks().start == 0;
    let tokens_per_rank = config.tokens_per_step(1);
    let tokens = tokens_per_rank * reducer.ranks().len() as u64;
    let mut last_checkpoint = None;
    let mut stop_after = None;
    let sampler = data
        .tokenizer
        .as_ref()
        .filter(|_| holds_rank_zero)
        .map(Sampler::new);
    for step in first_step..config.steps {
        let step_started = Instant::now();
        let lr = schedule.lr_at(step);
        let mut per_rank = Vec::new();
        for rank in reducer.ranks() {
            let windows = rank_windows(config, &data.train, rank, world, step)?;
            let dropout = config.dropout_of(step, rank);
            per_rank.push(step_gradients(
                &model,
                model_config,
                step + 1,
                &windows,
                dropout,
                device,
            )?);
        }
        let (grads, loss, allreduce_s) = reducer.average(per_rank, step, config, device)?;
        let (next, grad_norm) = apply_step(model, &mut optimizer, grads, lr)?;
        model = next;
        tokens_seen += tokens_per_rank * u64::from(world);
        let done = step + 1;

        let (val_loss, sample) = if holds_rank_zero && due(config.eval_every, done, config.steps) {
            let inference = model.valid();
            let val_loss = evaluate(&inference, model_config, config, data.val.as_ref(), device)?;
            let sample = match (&sampler, val_loss) {
                (Some(sampler), Some(_)) => {
                    Some(sampler.write(&inference, model_config, device)?)
                }
                _ => None,
            };
            (val_loss, sample)
        } else {
            (None, None)
        };
        let compute_s = step_started.elapsed().as_secs_f64() - allreduce_s;
        // The record goes out before the checkpoint is written: a run killed in between resumes
        // from the checkpoint before, which cuts metrics.jsonl back to it, so no step's line is
        // ever missing. The answer may ask to stop here, with a checkpoint.
        let control = sink.record(StepRecord {
            step: done,
            loss,
            val_loss,
            lr,
            grad_norm,
            tokens_per_s: StepRecord::rate(tokens, compute_s + allreduce_s),
            elapsed: 0.0,
            tokens,
            compute_s,
            allreduce_s,
            sample,
        })?;
        if let Control::StopAfter(last) = control {
            stop_after = Some(last);
        }
        let stopping = stop_after.is_some_and(|last| done >= last);
        if holds_rank_zero && (due(config.checkpoint_every, done, config.steps) || stopping) {
            let meta = config.checkpoint_meta(data, done, tokens_seen, lr, world)?;
            let dir = save_checkpoint(&config.out, &model, &optimizer, meta, config.keep).map_err(
                |e| {
                    TrainError::Checkpoint(format!(
                        "writing a checkpoint in {}: {e}",
                        config.out.display()
                    ))
                },
            )?;
            sink.checkpointed(done, &dir)?;
            last_checkpoint = Some(dir);
        }
        if stopping {
            break;
        }
    }
    Ok(last_checkpoint)
}

/// Whether something done every `every` steps (0: never) is due after step `done` of `last`;
/// the last step always has it.
fn due(every: u64, done: u64, last: u64) -> bool {
    every > 0 && done.is_multiple_of(every) || done == last
}

/// Rank `rank`'s micro-batches of `step` in a world of `world`: `accum` batches of `micro_bsz`
/// windows drawn from its shard (docs/distributed.md).
pub fn rank_windows(
    config: &RunConfig,
    data: &TokenDataset,
    rank: u32,
    world: u32,
    step: u64,
) -> Result<Vec<Vec<Vec<u16>>>, TrainError> {
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
                    Ok(data.sample_window(shard, config.seq_len, key)?)
                })
                .collect()
        })
        .collect()
}

/// What writes the sample at each evaluation: the run's tokenizer and the prompt's ids.
struct Sampler<'a> {
    tokenizer: &'a Tokenizer,
    prompt: Vec<u32>,
}

impl<'a> Sampler<'a> {
    /// The sampler of a run with `tokenizer`.
    fn new(tokenizer: &'a Tokenizer) -> Self {
        let prompt = tokenizer.encode(SAMPLE_PROMPT, false);
        Self { tokenizer, prompt }
    }

    /// The prompt and what `model` writes after it, greedily, up to [`SAMPLE_TOKENS`] tokens or
    /// the end of a document.
    fn write<B: RwkvBackend>(
        &self,
        model: &Rwkv<B>,
        model_config: &ModelConfig,
        device: &B::Device,
    ) -> Result<String, TrainError> {
        let mut ids = self.prompt.clone();
        let options = GenerateOptions {
            max_tokens: SAMPLE_TOKENS,
            sampling: Sampling {
                temperature: 0.0,
                top_p: 1.0,
            },
            seed: 0,
            stop: self.tokenizer.eos_id(),
        };
        generate(model, model_config, &self.prompt, options, device, |id| {
            ids.push(id)
        })?;
        Ok(self.tokenizer.decode(&ids, true))
    }
}

/// Mean validation loss over `eval_batches` fixed windows of the validation data (`None`
/// without it).
fn evaluate<B: RwkvBackend>(
    model: &Rwkv<B>,
    model_config: &ModelConfig,
    config: &RunConfig,
    val: Option<&TokenDataset>,
    device: &B::Device,
) -> Result<Option<f64>, TrainError> {
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

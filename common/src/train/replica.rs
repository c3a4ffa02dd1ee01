//! One rank of a data-parallel run (docs/distributed.md): the same step as a single process, with the
//! gradients averaged over the ranks between backward and the optimizer, so every rank applies
//! the same update and the replicas stay bit-identical. The collective and the reporting are the
//! caller's: the worker passes the gRPC ring (or NCCL) and a report RPC; tests pass an
//! in-process ring.

use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::module::AutodiffModule;

use super::checkpoint::{load_checkpoint, save_checkpoint};
use super::optimizer::AdamW;
use super::run::{RunConfig, RunData, adam_config, evaluate, initial_model, rank_windows};
use super::step::{apply_step, step_gradients};
use crate::collective::AllReduce;
use crate::collective::bucket::{flatten, unflatten};
use crate::data::dataset::{TokenDataset, Validation};
use crate::model::TrainBackend;

/// This rank's place in the run.
#[derive(Clone, Debug)]
pub struct ReplicaPlan {
    /// This rank.
    pub rank: u32,
    /// Ranks in the run.
    pub world: u32,
    /// Where this rank reads train.bin: its local copy, which may be a cache file holding only
    /// its shard. The config's path (the coordinator's) is what checkpoints record.
    pub data: PathBuf,
    /// Where this rank reads val.bin, likewise.
    pub val_data: Option<PathBuf>,
}

/// What one rank did in one step.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ReplicaStep {
    /// The step just finished (1-based).
    pub step: u64,
    /// This rank's mean loss.
    pub loss: f64,
    /// Validation loss (rank 0, on evaluation steps).
    pub val_loss: Option<f64>,
    /// Global gradient norm before clipping.
    pub grad_norm: f64,
    /// Learning rate used.
    pub lr: f64,
    /// Seconds in forward, backward and the optimizer.
    pub compute_s: f64,
    /// Seconds in the all-reduce.
    pub allreduce_s: f64,
    /// Tokens this rank trained on.
    pub tokens: u64,
}

/// What the coordinator answers a step report with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Control {
    /// Go on to the next step.
    Continue,
    /// Stop after this step (a global step number), writing a checkpoint at it. Every rank is
    /// told before it finishes that step, so all of them stop at the same one.
    StopAfter(u64),
}

/// Trains rank `plan.rank` up to `config.steps` steps, from `start` (a checkpoint directory) or
/// from scratch, averaging gradients with `reducer` and calling `report` after each step (an
/// error from it stops the run; its answer may ask to stop early). Rank 0 writes the
/// checkpoints into `config.out`; it returns the last one.
pub fn run_replica<A: TrainBackend>(
    config: &RunConfig,
    plan: ReplicaPlan,
    start: Option<&Path>,
    reducer: &mut dyn AllReduce,
    device: &A::Device,
    mut report: impl FnMut(&ReplicaStep) -> Result<Control, String>,
) -> Result<Option<PathBuf>, String> {
    let local = RunConfig {
        data: plan.data.clone(),
        val_data: plan.val_data.clone(),
        ..config.clone()
    };
    let train = TokenDataset::open(&local.data, config.vocab_hint()?, Validation::Ids)?;
    // Rank 0 evaluates: it opens the validation data once, here.
    let val = match (&local.val_data, plan.rank) {
        (Some(path), 0) => Some(TokenDataset::open(
            path,
            Some(train.vocab_size()),
            Validation::Ids,
        )?),
        _ => None,
    };
    let data = RunData { train, val };
    let model_config = config.model_config(data.train.vocab_size() as usize)?;
    let (mut model, mut optimizer, first_step) = match start {
        Some(dir) => {
            let (model, optimizer, meta) = load_checkpoint::<A>(dir, adam_config(config), device)?;
            (model, optimizer, meta.step)
        }
        None => (
            initial_model::<A>(config, &model_config, device)?,
            AdamW::new(adam_config(config)),
            0,
        ),
    };
    let schedule = config.schedule();
    let tokens = (config.seq_len * config.micro_bsz * config.accum) as u64;
    let mut last_checkpoint = None;
    let mut stop_after = None;
    for step in first_step..config.steps {
        let started = Instant::now();
        let lr = schedule.lr_at(step);
        let batches = rank_windows(config, &data.train, plan.rank, plan.world, step)?;
        let dropout = config.dropout_of(step, plan.rank);
        let (grads, loss) =
            step_gradients(&model, &model_config, step + 1, &batches, dropout, device)?;
        let (mut flat, layout) = flatten(&grads);
        let reduce_start = Instant::now();
        reducer
            .all_reduce_mean(&mut flat)
            .map_err(|e| format!("step {}: all-reduce: {e}", step + 1))?;
        let allreduce_s = reduce_start.elapsed().as_secs_f64();
        let grads = unflatten(&flat, &layout, device);
        let (next, outcome) = apply_step(model, &mut optimizer, grads, loss, lr)?;
        model = next;
        let done = step + 1;
        let evaluation_due =
            config.eval_every > 0 && done.is_multiple_of(config.eval_every) || done == config.steps;
        let val_loss = if plan.rank == 0 && evaluation_due {
            evaluate(
                &model.valid(),
                &model_config,
                &local,
                data.val.as_ref(),
                device,
            )?
        } else {
            None
        };
        let checkpoint_due = config.checkpoint_every > 0
            && done.is_multiple_of(config.checkpoint_every)
            || done == config.steps
            || stop_after == Some(done);
        if plan.rank == 0 && checkpoint_due {
            let meta = config.checkpoint_meta(
                &data,
                done,
                done * tokens * u64::from(plan.world),
                lr,
                plan.world,
            )?;
            let dir = save_checkpoint(&config.out, &model, &optimizer, meta, config.keep)
                .map_err(|e| format!("writing a checkpoint in {}: {e}", config.out.display()))?;
            last_checkpoint = Some(dir);
        }
        let control = report(&ReplicaStep {
            step: done,
            loss: outcome.loss,
            val_loss,
            grad_norm: outcome.grad_norm,
            lr,
            compute_s: started.elapsed().as_secs_f64() - allreduce_s,
            allreduce_s,
            tokens,
        })?;
        if let Control::StopAfter(last) = control {
            stop_after = Some(last);
        }
        if stop_after.is_some_and(|last| done >= last) {
            break;
        }
    }
    Ok(last_checkpoint)
}

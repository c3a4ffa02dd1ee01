//! `sovereign train --hosts FILE`: the coordinator of a data-parallel run (docs/distributed.md). It reads
//! the hosts file, writes the run's token, serves the Coordinator service, starts the workers
//! (local processes, or waits for workers started elsewhere with `--launcher none`), shards
//! train.bin among the ranks, and writes metrics.jsonl from their reports; rank 0 writes the
//! checkpoints.

pub mod collective;
pub mod data;
pub mod group;
pub mod hosts;
pub mod launch;
pub mod serve;
pub mod service;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use sovereign_common::sync::lock;
use sovereign_common::train::checkpoint::{latest_checkpoint, read_meta, verify_checkpoint};
use sovereign_common::train::events::EventKind;
use sovereign_common::train::record::{METRICS_FILE, MetricsLog, truncate_metrics};
use sovereign_common::train::run_dir::{RunLock, roll_back, start_fresh};
use sovereign_common::train::settings::RunConfig;
use sovereign_proto::v1::RunSettings;
use sovereign_proto::v1::coordinator_server::CoordinatorServer;
use sovereign_proto::v1::training_server::TrainingServer;
use tokio::sync::watch;
use tonic::transport::Server;
use tonic::transport::server::Router;

use crate::cli::{ClusterArgs, DashboardArgs, Launcher};
use crate::dashboard::{self, TOKEN_FILE};
use group::{Group, Job, Lost, run_group};
use hosts::Host;
use launch::check_local_hosts;
use serve::{new_token, write_secret};
use service::{CoordinatorService, RunPlan};

/// The workers of a distributed run: the hosts file's lines, or `--gpus` as one local host;
/// `None` for a single-process run.
pub fn cluster_hosts(args: &ClusterArgs) -> Result<Option<Vec<Host>>> {
    if let Some(path) = &args.hosts {
        return hosts::read_hosts(path).map(Some);
    }
    let Some(list) = &args.gpus else {
        return Ok(None);
    };
    let slots = list.split(',').count();
    hosts::parse_hosts(&format!("localhost slots={slots} devices={list}"))
        .map(Some)
        .map_err(|e| anyhow::anyhow!("--gpus {list}: {}", e.to_string().trim_start_matches("1: ")))
}

/// Runs the coordinator of a distributed training run on `hosts` until every step is reported,
/// from scratch or (`start`) from a checkpoint of an earlier run in the same directory, with the
/// dashboard when asked for.
pub fn train_cluster(
    args: &ClusterArgs,
    dashboard: &DashboardArgs,
    hosts: Vec<Host>,
    config: RunConfig,
    start: Option<&Path>,
) -> Result<()> {
    check_local_hosts(args.launch.launcher, &hosts)?;
    if args.launch.launcher == Launcher::Local
        && !cfg!(feature = "cuda")
        && hosts.iter().any(|h| !h.devices.is_empty())
    {
        bail!(
            "GPU workers (--gpus or devices= in the hosts file) need a build with CUDA: cargo \
             build --release -p sovereign-coordinator -p sovereign-worker --features \
             sovereign-coordinator/cuda,sovereign-worker/nccl"
        );
    }
    let world: u32 = hosts.iter().map(|h| h.slots).sum();
    let config = config.absolute_paths().map_err(anyhow::Error::msg)?;
    config.check().map_err(anyhow::Error::msg)?;
    let _lock = RunLock::acquire(&config.out).map_err(anyhow::Error::msg)?;
    let metrics_path = config.out.join(METRICS_FILE);
    let start_step = match start {
        Some(dir) => {
            let meta = verify_checkpoint(dir).map_err(anyhow::Error::msg)?;
            roll_back(&config.out, dir, meta.step).map_err(anyhow::Error::msg)?;
            tracing::info!("resuming {} from {}", config.out.display(), dir.display());
            meta.step
        }
        None => {
            start_fresh(&config.out).map_err(anyhow::Error::msg)?;
            0
        }
    };
    // Every id and the checksum are checked here, once, before any worker starts: bad data is
    // the run's one error, never a cause of restarts.
    let data = config.open_data(world).map_err(anyhow::Error::msg)?.train;
    let shards = (0..world)
        .map(|rank| data.shard(rank, world).map(|s| (s.start_byte, s.end_byte)))
        .collect::<Result<Vec<_>, _>>()
        .map_err(anyhow::Error::msg)?;
    let data_sha256 = data
        .sidecar()
        .map_or_else(String::new, |meta| meta.data_sha256.clone());
    let token = new_token()?;
    let token_file = config.out.join(TOKEN_FILE);
    write_secret(&token_file, &token)?;
    let board =
        dashboard::start_for_run(dashboard.dashboard.as_deref(), &config.out, Some(&token))?;
    let plan = RunPlan {
        settings: RunSettings::from(&config),
        data: data::data_ranges(&config, &shards)?,
        files: std::iter::once(("train".to_string(), config.data.clone()))
            .chain(config.val_data.clone().map(|v| ("val".to_string(), v)))
            .collect(),
        data_sha256,
        shards,
        steps: config.steps,
        collective: args.collective,
        tokenizer_text: match &config.tokenizer {
            Some(path) => std::fs::read_to_string(path)
                .with_context(|| format!("--tokenizer {}", path.display()))?,
            None => String::new(),
        },
    };
    let metrics = MetricsLog::open(&config.out, config.steps)
        .map_err(anyhow::Error::msg)?
        .watched_by(dashboard::watcher(&board));
    let service = Arc::new(CoordinatorService::new(
        token.clone(),
        world,
        plan,
        metrics,
        start,
        start_step,
    ));
    let model = config
        .model_config(data.vocab_size() as usize)
        .map_err(anyhow::Error::msg)?;
    service.event(EventKind::Started {
        job: "train".into(),
        steps: config.steps,
        from_step: start_step,
        world,
        tokens_per_step: config.tokens_per_step(world),
        model: model.describe(),
    })?;
    tracing::info!("run config: {}", serde_json::to_string(&config)?);
    let job = Arc::new(TrainingJob {
        service,
        max_restarts: args.max_restarts,
        config: config.clone(),
        state: Mutex::new(Supervision {
            generation: 0,
            stopping: None,
            checkpoint: start.map(Path::to_path_buf),
        }),
    });
    let outcome = run_group(
        job.clone(),
        &args.launch,
        &hosts,
        (&token_file, &token),
        &format!("{world} workers, token in {}", token_file.display()),
    );
    job.checkpoints()?;
    job.service.event(EventKind::ended(
        config.steps,
        outcome.as_ref().err().map(|e| format!("{e:#}")),
    ))?;
    outcome?;
    println!(
        "trained to step {} on {world} workers; metrics in {}",
        config.steps,
        metrics_path.display()
    );
    Ok(())
}

/// A training run as a group's job: the Coordinator and Training services, and what a lost worker
/// means (the group restarts from the last whole checkpoint, up to `--max-restarts` times).
struct TrainingJob {
    service: Arc<CoordinatorService>,
    config: RunConfig,
    max_restarts: u32,
    state: Mutex<Supervision>,
}

/// Where the supervision of a training run stands.
struct Supervision {
    /// The group's generation: restarts so far.
    generation: u32,
    /// The step the run stops after, once Ctrl-C asked for it.
    stopping: Option<u64>,
    /// The newest checkpoint rank 0 wrote that the events know of.
    checkpoint: Option<PathBuf>,
}

impl TrainingJob {
    /// The last step the run trains to: the end, or where Ctrl-C asked it to stop.
    fn target(&self) -> u64 {
        lock(&self.state).stopping.unwrap_or(self.config.steps)
    }

    /// Tells the events of checkpoints rank 0 wrote since the last look (the `latest` it set).
    fn checkpoints(&self) -> Result<()> {
        let Ok(latest) = latest_checkpoint(&self.config.out) else {
            return Ok(());
        };
        let mut state = lock(&self.state);
        if state.checkpoint.as_ref() == Some(&latest) {
            return Ok(());
        }
        state.checkpoint = Some(latest.clone());
        drop(state);
        self.service.event(EventKind::Checkpoint {
            step: checkpoint_step(&latest)?,
            path: latest.display().to_string(),
        })
    }

    /// Names the worker process `pid` for the log.
    fn who(&self, pid: u32, place: &str) -> String {
        match self.service.rank_of_pid(pid) {
            Some(rank) => format!("rank {rank} (pid {pid})"),
            None if place == "local" => format!("a worker (pid {pid}) that had not joined"),
            None => format!("the worker started by {place} (pid {pid})"),
        }
    }

    /// What went wrong with the group: processes that died (named by their rank, in the order
    /// of `lost`: [`Job::lost`] puts the ones a signal ended first), else a rank that stopped
    /// sending heartbeats.
    fn failure(&self, mut lost: Vec<Lost>) -> Option<String> {
        lost.retain(Lost::failed);
        let deaths: Vec<String> = lost
            .iter()
            .filter_map(|l| match l {
                Lost::Exited { pid, place, status } => {
                    Some(format!("{} died: {status}", self.who(*pid, place)))
                }
                Lost::Stalled { .. } => None,
            })
            .collect();
        if !deaths.is_empty() {
            return Some(deaths.join("; then "));
        }
        lost.into_iter().find_map(|l| match l {
            Lost::Stalled { why, .. } => Some(why),
            Lost::Exited { .. } => None,
        })
    }
}

impl Job for TrainingJob {
    fn services(self: Arc<Self>, mut server: Server) -> Router {
        server
            .add_service(CoordinatorServer::from_arc(self.service.clone()))
            .add_service(TrainingServer::from_arc(self.service.clone()))
    }

    fn poll(&self) -> Result<bool> {
        if let Some(why) = self.service.fatal() {
            bail!("{why}");
        }
        self.checkpoints()?;
        Ok(self.service.finished_step() >= self.target())
    }

    fn stalled(&self, timeout: Duration) -> Vec<Lost> {
        self.service
            .stalled(timeout)
            .map(|(rank, pid, why)| Lost::Stalled {
                worker: rank,
                pid: Some(pid),
                why,
            })
            .into_iter()
            .collect()
    }

    /// When a worker dies or stalls, the group restarts from the last whole checkpoint: local
    /// workers are respawned; with `--launcher none` the coordinator waits for workers to dial
    /// in again.
    fn lost(&self, mut lost: Vec<Lost>, group: &mut Group) -> Result<()> {
        // The processes a signal ended first: the others usually exited because of them.
        lost.sort_by_key(|l| !l.by_signal());
        for gone in lost.iter().filter(|l| l.failed()) {
            self.service.event(match gone {
                Lost::Exited { pid, status, .. } => EventKind::Died {
                    rank: self.service.rank_of_pid(*pid).map(|r| r as u32),
                    pid: *pid,
                    cause: status.to_string(),
                },
                Lost::Stalled { worker, why, .. } => EventKind::Stalled {
                    rank: *worker,
                    cause: why.clone(),
                },
            })?;
        }
        let Some(what) = self.failure(lost) else {
            return Ok(());
        };
        tracing::error!("{what}");
        let mut state = lock(&self.state);
        if state.stopping.is_some() {
            bail!("{what} while stopping; the last whole checkpoint is in the run directory");
        }
        if state.generation >= self.max_restarts {
            bail!("{what}; giving up after {} restarts", self.max_restarts);
        }
        group.stop();
        state.generation += 1;
        let generation = state.generation;
        drop(state);
        let (checkpoint, step) = match latest_checkpoint(&self.config.out) {
            Ok(dir) => {
                let step = checkpoint_step(&dir)?;
                (Some(dir), step)
            }
            Err(_) => (None, 0),
        };
        truncate_metrics(&self.config.out.join(METRICS_FILE), step).map_err(anyhow::Error::msg)?;
        tracing::warn!(
            "restarting the group (generation {generation}) from {}",
            checkpoint
                .as_ref()
                .map_or("the start".to_string(), |d| d.display().to_string())
        );
        self.service
            .restart(generation, checkpoint.as_deref(), step)
            .map_err(anyhow::Error::msg)?;
        self.service.event(EventKind::Restarted {
            generation,
            from_step: step,
            checkpoint: checkpoint.map(|d| d.display().to_string()),
        })?;
        group.start()
    }

    /// Ctrl-C stops the run after a step that rank 0 checkpoints; a second Ctrl-C stops it at
    /// once.
    fn interrupted(&self) -> Result<()> {
        let mut state = lock(&self.state);
        if state.stopping.is_some() {
            bail!(
                "interrupted again: stopped at once; the last whole checkpoint is in the run \
                 directory"
            );
        }
        let at = self.service.request_stop();
        tracing::warn!(
            "Ctrl-C: the workers stop after step {at}, which rank 0 checkpoints (Ctrl-C again to \
             stop at once)"
        );
        state.stopping = Some(at);
        Ok(())
    }

    fn all_gone(&self) -> String {
        "every worker process exited before the run finished".into()
    }

    fn progress(&self) -> Option<watch::Receiver<u64>> {
        Some(self.service.progress())
    }

    /// Lets the workers finish writing and exit on their own, within a minute.
    async fn finish(&self, group: &mut Group) -> Result<()> {
        for (i, worker) in group.workers().iter_mut().enumerate() {
            let mut waited = 0;
            loop {
                if let Some(status) = worker.child.try_wait()? {
                    if !status.success() {
                        bail!("worker process {i} exited with {status} after the last step");
                    }
                    break;
                }
                waited += 1;
                if waited > 600 {
                    bail!("worker process {i} did not exit within a minute of the last step");
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        let stopping = lock(&self.state).stopping;
        if let Some(at) = stopping
            && at < self.config.steps
        {
            bail!(
                "interrupted: stopped after step {at}, checkpointed in {}; continue with \
                 `sovereign resume --run {} --hosts …`",
                latest_checkpoint(&self.config.out)
                    .map_or_else(|_| "the run directory".into(), |d| d.display().to_string()),
                self.config.out.display()
            );
        }
        Ok(())
    }
}

/// The step a checkpoint directory was taken at (from its meta.json).
fn checkpoint_step(dir: &Path) -> Result<u64> {
    Ok(read_meta(dir).map_err(anyhow::Error::msg)?.step)
}

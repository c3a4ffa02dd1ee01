//! `sovereign train --hosts FILE`: the coordinator of a data-parallel run (docs/distributed.md). It reads
//! the hosts file, writes the run's token, serves the Coordinator service, starts the workers
//! (local processes, or waits for workers started elsewhere with `--launcher none`), shards
//! train.bin among the ranks, and writes metrics.jsonl from their reports; rank 0 writes the
//! checkpoints.

pub mod collective;
pub mod data;
pub mod hosts;
pub mod launch;
pub mod serve;
pub mod service;

use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Result, bail};
use sovereign_common::train::checkpoint::{latest_checkpoint, read_meta, verify_checkpoint};
use sovereign_common::train::record::{METRICS_FILE, MetricsLog, truncate_metrics};
use sovereign_common::train::run_dir::{RunLock, roll_back, start_fresh};
use sovereign_common::train::settings::RunConfig;
use sovereign_proto::v1::RunSettings;
use sovereign_proto::v1::coordinator_server::CoordinatorServer;
use sovereign_proto::v1::training_server::TrainingServer;

use crate::cli::{ClusterArgs, Launcher};
use hosts::Host;
use launch::{Launch, Worker, check_local_hosts, stop};
use serve::{new_token, serve, write_secret};
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
/// from scratch or (`start`) from a checkpoint of an earlier run in the same directory.
pub fn train_cluster(
    args: &ClusterArgs,
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
    let token_file = config.out.join("token");
    write_secret(&token_file, &token)?;
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
    };
    let service = Arc::new(CoordinatorService::new(
        token.clone(),
        world,
        plan,
        MetricsLog::open(&config.out, config.steps).map_err(anyhow::Error::msg)?,
    ));
    service
        .restart(0, start, start_step)
        .map_err(anyhow::Error::msg)?;
    tracing::info!("run config: {}", serde_json::to_string(&config)?);

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let server = serve(&args.launch, |mut builder| {
            builder
                .add_service(CoordinatorServer::from_arc(service.clone()))
                .add_service(TrainingServer::from_arc(service.clone()))
        })
        .await?;
        server.announce(&format!(
            "{world} workers, token in {}",
            token_file.display()
        ));
        let launch = server.launch(&args.launch, &hosts, &token_file, &token);
        let mut children = launch.start()?;
        let outcome = supervise(&service, &launch, &mut children, &config, args).await;
        stop(&mut children);
        // Gracefully: the answer to the last step's report must reach its worker.
        server.shutdown().await;
        outcome
    })?;
    println!(
        "trained to step {} on {world} workers; metrics in {}",
        config.steps,
        metrics_path.display()
    );
    Ok(())
}

/// What went wrong with the group, if anything: worker processes that died (named by their rank)
/// or a rank that stopped sending heartbeats. When several have died by the time this looks, the
/// ones ended by a signal come first: the others usually exited because the collective with them
/// failed.
fn failure(
    service: &CoordinatorService,
    workers: &mut [Worker],
    stall_timeout: Duration,
) -> Result<Option<String>> {
    let mut dead = Vec::new();
    for worker in workers.iter_mut() {
        if let Some(status) = worker.child.try_wait()?
            && !status.success()
        {
            let pid = worker.child.id();
            let who = match service.rank_of_pid(pid) {
                Some(rank) => format!("rank {rank} (pid {pid})"),
                None if worker.place == "local" => {
                    format!("a worker (pid {pid}) that had not joined")
                }
                None => format!("the worker started by {} (pid {pid})", worker.place),
            };
            dead.push((status.signal().is_none(), format!("{who} died: {status}")));
        }
    }
    if dead.is_empty() {
        return Ok(service.stalled(stall_timeout));
    }
    dead.sort_by_key(|(by_exit, _)| *by_exit);
    let lines: Vec<String> = dead.into_iter().map(|(_, line)| line).collect();
    Ok(Some(lines.join("; then ")))
}

/// Waits until every rank has reported the last step. When a worker dies or stalls, the group
/// restarts from the last whole checkpoint, up to `--max-restarts` times: local workers are
/// respawned; with `--launcher none` the coordinator waits for workers to dial in again. Ctrl-C
/// stops the run after a step that rank 0 checkpoints; a second Ctrl-C stops it at once.
async fn supervise(
    service: &CoordinatorService,
    launch: &Launch,
    children: &mut Vec<Worker>,
    config: &RunConfig,
    args: &ClusterArgs,
) -> Result<()> {
    let mut progress = service.progress();
    let stall_timeout = Duration::from_secs(args.launch.stall_timeout);
    let mut generation = 0;
    let mut stopping = None;
    let mut target = config.steps;
    loop {
        if *progress.borrow() >= target {
            break;
        }
        if let Some(why) = service.fatal() {
            bail!("{why}");
        }
        if let Some(what) = failure(service, children, stall_timeout)? {
            tracing::error!("{what}");
            if stopping.is_some() {
                bail!("{what} while stopping; the last whole checkpoint is in the run directory");
            }
            if generation >= args.max_restarts {
                bail!("{what}; giving up after {} restarts", args.max_restarts);
            }
            stop(children);
            generation += 1;
            let (checkpoint, step) = match latest_checkpoint(&config.out) {
                Ok(dir) => {
                    let step = checkpoint_step(&dir)?;
                    (Some(dir), step)
                }
                Err(_) => (None, 0),
            };
            truncate_metrics(&config.out.join(METRICS_FILE), step).map_err(anyhow::Error::msg)?;
            tracing::warn!(
                "restarting the group (generation {generation}) from {}",
                checkpoint
                    .as_ref()
                    .map_or("the start".to_string(), |d| d.display().to_string())
            );
            service
                .restart(generation, checkpoint.as_deref(), step)
                .map_err(anyhow::Error::msg)?;
            *children = launch.start()?;
            continue;
        }
        if !children.is_empty()
            && children
                .iter_mut()
                .all(|w| matches!(w.child.try_wait(), Ok(Some(_))))
            && *progress.borrow() < target
        {
            bail!("every worker process exited before the run finished");
        }
        tokio::select! {
            _ = progress.changed() => {}
            _ = tokio::time::sleep(Duration::from_millis(200)) => {}
            _ = tokio::signal::ctrl_c() => {
                if stopping.is_some() {
                    bail!("interrupted again: stopped at once; the last whole checkpoint is in the run directory");
                }
                let at = service.request_stop();
                tracing::warn!(
                    "Ctrl-C: the workers stop after step {at}, which rank 0 checkpoints (Ctrl-C again to stop at once)"
                );
                stopping = Some(at);
                target = at;
            }
        }
    }
    wait_for_exit(children).await?;
    if let Some(at) = stopping
        && at < config.steps
    {
        bail!(
            "interrupted: stopped after step {at}, checkpointed in {}; continue with `sovereign \
             resume --run {} --hosts …`",
            latest_checkpoint(&config.out)
                .map_or_else(|_| "the run directory".into(), |d| d.display().to_string()),
            config.out.display()
        );
    }
    Ok(())
}

/// Lets the workers finish writing and exit on their own, within a minute.
async fn wait_for_exit(children: &mut [Worker]) -> Result<()> {
    for (i, worker) in children.iter_mut().enumerate() {
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
    Ok(())
}

/// The step a checkpoint directory was taken at (from its meta.json).
fn checkpoint_step(dir: &Path) -> Result<u64> {
    Ok(read_meta(dir).map_err(anyhow::Error::msg)?.step)
}

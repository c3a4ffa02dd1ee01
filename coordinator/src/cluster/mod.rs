//! `sovereign train --hosts FILE`: the coordinator of a data-parallel run (DESIGN §5–6). It reads
//! the hosts file, writes the run's token, serves the Coordinator service, starts the workers
//! (local processes, or waits for workers started elsewhere with `--launcher none`), shards
//! train.bin among the ranks, and writes metrics.jsonl from their reports; rank 0 writes the
//! checkpoints.

pub mod hosts;
pub mod service;

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command as Process};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use sovereign_common::data::dataset::{
    Source, TokenDataset, Validation, sha256_range, sidecar_path,
};
use sovereign_common::train::checkpoint::{CheckpointMeta, latest_checkpoint};
use sovereign_common::train::run::{RunConfig, truncate_metrics};
use sovereign_proto::v1::DataRange;
use sovereign_proto::v1::coordinator_server::CoordinatorServer;
use tokio_stream::wrappers::TcpListenerStream;

use crate::cli::{ClusterArgs, Launcher};
use service::{CoordinatorService, RunPlan};

/// Runs the coordinator of a distributed training run until every step is reported, from
/// scratch or (`start`) from a checkpoint of an earlier run in the same directory.
pub fn train_cluster(
    args: &ClusterArgs,
    hosts_path: &Path,
    config: RunConfig,
    start: Option<&Path>,
) -> Result<()> {
    let hosts = hosts::read_hosts(hosts_path)?;
    if args.launcher == Launcher::Local
        && let Some(remote) = hosts.iter().find(|h| !h.is_local())
    {
        bail!(
            "{}: host {} is not this machine; the local launcher starts workers here only (start \
             remote workers yourself and use --launcher none)",
            hosts_path.display(),
            remote.name
        );
    }
    let world: u32 = hosts.iter().map(|h| h.slots).sum();
    let config = absolute_paths(config)?;
    config.check().map_err(anyhow::Error::msg)?;
    std::fs::create_dir_all(&config.out)
        .with_context(|| format!("cannot create {}", config.out.display()))?;
    let metrics_path = config.out.join("metrics.jsonl");
    let start_step = match start {
        Some(dir) => {
            let step = checkpoint_step(dir)?;
            truncate_metrics(&metrics_path, step).map_err(anyhow::Error::msg)?;
            tracing::info!("resuming {} from {}", config.out.display(), dir.display());
            step
        }
        None if metrics_path.exists() => bail!(
            "{} already holds a run; use `sovereign resume --run {} --hosts …` or another --out",
            config.out.display(),
            config.out.display()
        ),
        None => 0,
    };
    let data = TokenDataset::open(
        &config.data,
        config.vocab_hint().map_err(anyhow::Error::msg)?,
        Validation::Sampled,
    )
    .map_err(anyhow::Error::msg)?;
    let shards = (0..world)
        .map(|rank| data.shard(rank, world).map(|s| (s.start_byte, s.end_byte)))
        .collect::<Result<Vec<_>, _>>()
        .map_err(anyhow::Error::msg)?;
    let data_sha256 = match data.source() {
        Source::Sidecar(meta) => meta.data_sha256.clone(),
        _ => String::new(),
    };
    let token = new_token()?;
    let token_file = config.out.join("token");
    write_secret(&token_file, &token)?;
    let plan = RunPlan {
        config_json: serde_json::to_string(&config)?,
        data: data_ranges(&config, &shards)?,
        files: std::iter::once(("train".to_string(), config.data.clone()))
            .chain(config.val_data.clone().map(|v| ("val".to_string(), v)))
            .collect(),
        data_sha256,
        shards,
        steps: config.steps,
    };
    let metrics = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&metrics_path)
        .with_context(|| format!("cannot create {}", metrics_path.display()))?;
    let service = Arc::new(CoordinatorService::new(token, world, plan, metrics));
    service.restart(0, start, start_step);
    tracing::info!("run config: {}", serde_json::to_string(&config)?);

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(&args.bind)
            .await
            .with_context(|| format!("cannot listen on {}", args.bind))?;
        let address = listener.local_addr()?;
        tracing::info!(
            "coordinator on {address}: {world} workers, token in {}",
            token_file.display()
        );
        let server = tonic::transport::Server::builder()
            .add_service(CoordinatorServer::from_arc(service.clone()))
            .serve_with_incoming(TcpListenerStream::new(listener));
        tokio::spawn(server);
        let launch = Launch {
            launcher: args.launcher,
            address: address.to_string(),
            token_file: token_file.clone(),
            world,
        };
        let mut children = launch.start()?;
        let outcome = supervise(&service, &launch, &mut children, &config, args).await;
        stop(&mut children);
        outcome
    })?;
    println!(
        "trained to step {} on {world} workers; metrics in {}",
        config.steps,
        metrics_path.display()
    );
    Ok(())
}

/// How this run starts its workers.
struct Launch {
    launcher: Launcher,
    address: String,
    token_file: PathBuf,
    world: u32,
}

impl Launch {
    /// Starts the workers of a (new) generation: local processes, or nothing when they dial in.
    fn start(&self) -> Result<Vec<Child>> {
        match self.launcher {
            Launcher::Local => spawn_local(&self.address, &self.token_file, self.world),
            Launcher::None => {
                tracing::info!(
                    "waiting for {} workers: sovereign-worker --coordinator {} --token-file {}",
                    self.world,
                    self.address,
                    self.token_file.display()
                );
                Ok(Vec::new())
            }
        }
    }
}

/// Kills and reaps worker processes.
fn stop(children: &mut Vec<Child>) {
    for child in children.iter_mut() {
        let _ = child.kill();
        let _ = child.wait();
    }
    children.clear();
}

/// What went wrong with the group, if anything: a worker process that died (named by its rank)
/// or a rank that stopped sending heartbeats.
fn failure(
    service: &CoordinatorService,
    children: &mut [Child],
    stall_timeout: Duration,
) -> Result<Option<String>> {
    for child in children.iter_mut() {
        if let Some(status) = child.try_wait()?
            && !status.success()
        {
            let pid = child.id();
            let who = service
                .rank_of_pid(pid)
                .map_or(format!("a worker (pid {pid}) that had not joined"), |r| {
                    format!("rank {r} (pid {pid})")
                });
            return Ok(Some(format!("{who} died: {status}")));
        }
    }
    Ok(service.stalled(stall_timeout))
}

/// Waits until every rank has reported the last step. When a worker dies or stalls, the group
/// restarts from the last whole checkpoint, up to `--max-restarts` times: local workers are
/// respawned; with `--launcher none` the coordinator waits for workers to dial in again. Ctrl-C
/// stops the run after a step that rank 0 checkpoints; a second Ctrl-C stops it at once.
async fn supervise(
    service: &CoordinatorService,
    launch: &Launch,
    children: &mut Vec<Child>,
    config: &RunConfig,
    args: &ClusterArgs,
) -> Result<()> {
    let mut progress = service.progress();
    let stall_timeout = Duration::from_secs(args.stall_timeout);
    let mut generation = 0;
    let mut stopping = None;
    let mut target = config.steps;
    loop {
        if *progress.borrow() >= target {
            break;
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
            truncate_metrics(&config.out.join("metrics.jsonl"), step)
                .map_err(anyhow::Error::msg)?;
            tracing::warn!(
                "restarting the group (generation {generation}) from {}",
                checkpoint
                    .as_ref()
                    .map_or("the start".to_string(), |d| d.display().to_string())
            );
            service.restart(generation, checkpoint.as_deref(), step);
            *children = launch.start()?;
            continue;
        }
        if !children.is_empty()
            && children
                .iter_mut()
                .all(|c| matches!(c.try_wait(), Ok(Some(_))))
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
async fn wait_for_exit(children: &mut [Child]) -> Result<()> {
    for (i, child) in children.iter_mut().enumerate() {
        let mut waited = 0;
        loop {
            if let Some(status) = child.try_wait()? {
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

/// Per rank, the data ranges it reads (its shard of train.bin; all of val.bin for rank 0, which
/// evaluates), with the checksums a worker checks its copy against.
fn data_ranges(config: &RunConfig, shards: &[(u64, u64)]) -> Result<Vec<Vec<DataRange>>> {
    let range = |file: &str, path: &Path, start: u64, end: Option<u64>| -> Result<DataRange> {
        let file_bytes = std::fs::metadata(path)
            .with_context(|| format!("cannot read {}", path.display()))?
            .len();
        let end = end.unwrap_or(file_bytes);
        let sidecar = sidecar_path(path);
        Ok(DataRange {
            file: file.to_string(),
            path: path.display().to_string(),
            file_bytes,
            start,
            end,
            sha256: sha256_range(path, start, end).map_err(anyhow::Error::msg)?,
            sidecar_json: if sidecar.exists() {
                std::fs::read_to_string(&sidecar)
                    .with_context(|| format!("cannot read {}", sidecar.display()))?
            } else {
                String::new()
            },
        })
    };
    shards
        .iter()
        .enumerate()
        .map(|(rank, &(start, end))| {
            let mut ranges = vec![range("train", &config.data, start, Some(end))?];
            if rank == 0
                && let Some(val) = &config.val_data
            {
                ranges.push(range("val", val, 0, None)?);
            }
            Ok(ranges)
        })
        .collect()
}

/// The step a checkpoint directory was taken at (from its meta.json).
fn checkpoint_step(dir: &Path) -> Result<u64> {
    let text = std::fs::read_to_string(dir.join("meta.json"))
        .with_context(|| format!("reading {}", dir.join("meta.json").display()))?;
    let meta: CheckpointMeta = serde_json::from_str(&text)
        .with_context(|| format!("{}: not a checkpoint meta.json", dir.display()))?;
    Ok(meta.step)
}

/// The `sovereign-worker` binary beside this one.
pub fn worker_binary() -> Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let worker = exe.with_file_name(format!("sovereign-worker{}", std::env::consts::EXE_SUFFIX));
    if !worker.exists() {
        bail!(
            "{} not found: build it beside sovereign (cargo build --release --workspace)",
            worker.display()
        );
    }
    Ok(worker)
}

/// Starts `world` local `sovereign-worker` processes (the binary beside this one).
fn spawn_local(address: &str, token_file: &Path, world: u32) -> Result<Vec<Child>> {
    let worker = worker_binary()?;
    (0..world)
        .map(|_| {
            Process::new(&worker)
                // Their own process group: Ctrl-C in the terminal reaches the coordinator
                // only, which stops them after a checkpoint.
                .process_group(0)
                .arg("--coordinator")
                .arg(address)
                .arg("--token-file")
                .arg(token_file)
                .spawn()
                .with_context(|| format!("cannot start {}", worker.display()))
        })
        .collect()
}

/// The run's paths made absolute, so that workers started elsewhere find the same files.
fn absolute_paths(mut config: RunConfig) -> Result<RunConfig> {
    let here = std::env::current_dir()?;
    let absolute = |p: &PathBuf| {
        if p.is_absolute() {
            p.clone()
        } else {
            here.join(p)
        }
    };
    config.data = absolute(&config.data);
    config.out = absolute(&config.out);
    config.val_data = config.val_data.as_ref().map(absolute);
    config.tokenizer = config.tokenizer.as_ref().map(absolute);
    config.init_from = config.init_from.as_ref().map(absolute);
    Ok(config)
}

/// 32 random bytes from the OS, as hex.
fn new_token() -> Result<String> {
    use std::io::Read;
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .context("reading /dev/urandom for the run token")?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Writes a file only its owner can read.
fn write_secret(path: &Path, text: &str) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    file.write_all(text.as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))
}

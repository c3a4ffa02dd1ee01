//! `sovereign train --hosts FILE`: the coordinator of a data-parallel run (DESIGN §5–6). It reads
//! the hosts file, writes the run's token, serves the Coordinator service, starts the workers
//! (local processes, or waits for workers started elsewhere with `--launcher none`), shards
//! train.bin among the ranks, and writes metrics.jsonl from their reports; rank 0 writes the
//! checkpoints.

pub mod hosts;
pub mod service;

use std::path::{Path, PathBuf};
use std::process::{Child, Command as Process};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use sovereign_common::data::dataset::{Source, TokenDataset, Validation};
use sovereign_common::train::run::RunConfig;
use sovereign_proto::v1::coordinator_server::CoordinatorServer;
use tokio_stream::wrappers::TcpListenerStream;

use crate::cli::{Launcher, TrainArgs};
use service::{CoordinatorService, RunPlan};

/// Runs the coordinator of a distributed training run until every step is reported.
pub fn train_cluster(args: &TrainArgs, hosts_path: &Path, config: RunConfig) -> Result<()> {
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
    if metrics_path.exists() {
        bail!(
            "{} already holds a run; choose another --out",
            config.out.display()
        );
    }
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
        data_sha256,
        shards,
        steps: config.steps,
    };
    let metrics = std::fs::File::create(&metrics_path)
        .with_context(|| format!("cannot create {}", metrics_path.display()))?;
    let service = Arc::new(CoordinatorService::new(token, world, plan, metrics));
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
        let mut children = match args.launcher {
            Launcher::Local => spawn_local(&address.to_string(), &token_file, world)?,
            Launcher::None => {
                tracing::info!(
                    "waiting for {world} workers: sovereign-worker --coordinator {address} --token-file {}",
                    token_file.display()
                );
                Vec::new()
            }
        };
        let outcome = supervise(&service, &mut children, config.steps).await;
        for child in &mut children {
            let _ = child.kill();
            let _ = child.wait();
        }
        outcome
    })?;
    println!(
        "trained {} steps on {world} workers; metrics in {}",
        config.steps,
        metrics_path.display()
    );
    Ok(())
}

/// Waits until every rank has reported the last step; a worker process that fails first is an
/// error naming it.
async fn supervise(service: &CoordinatorService, children: &mut [Child], steps: u64) -> Result<()> {
    let mut progress = service.progress();
    loop {
        if *progress.borrow() >= steps {
            break;
        }
        let mut exited = 0;
        for (i, child) in children.iter_mut().enumerate() {
            if let Some(status) = child.try_wait()? {
                if !status.success() {
                    bail!(
                        "worker process {i} (pid {}) exited with {status} before the run finished",
                        child.id()
                    );
                }
                exited += 1;
            }
        }
        if !children.is_empty() && exited == children.len() && *progress.borrow() < steps {
            bail!("every worker process exited before the run finished");
        }
        tokio::select! {
            _ = progress.changed() => {}
            _ = tokio::time::sleep(Duration::from_millis(200)) => {}
            _ = tokio::signal::ctrl_c() => bail!("interrupted; the last whole checkpoint is in the run directory"),
        }
    }
    // Let the workers finish writing and exit on their own.
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

/// Starts `world` local `sovereign-worker` processes (the binary beside this one).
fn spawn_local(address: &str, token_file: &Path, world: u32) -> Result<Vec<Child>> {
    let exe = std::env::current_exe()?;
    let worker = exe.with_file_name(format!("sovereign-worker{}", std::env::consts::EXE_SUFFIX));
    if !worker.exists() {
        bail!(
            "{} not found: build it beside sovereign (cargo build --release)",
            worker.display()
        );
    }
    (0..world)
        .map(|_| {
            Process::new(&worker)
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

//! `sovereign-worker`: joins a coordinator, receives its rank and plan, trains its shard of the
//! data and averages gradients with its ring neighbours over gRPC (docs/distributed.md); or, when the
//! coordinator runs a data-prep job, pulls and runs its map tasks ([`prep`]).
//!
//! The tokio runtime serves the Peer service and talks to the coordinator; training runs on a
//! blocking thread ([`sovereign_common::train::run::train_rank`]) that reaches the network
//! only through its all-reduce ([`collective`]: the gRPC ring or NCCL) and the report call.

mod data;
mod prep;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Parser;
use sovereign_common::allocator::MiMalloc;
use sovereign_common::device::Device;
use sovereign_common::prep::PrepJob;
use sovereign_common::tokenizer::Tokenizer;
use sovereign_common::train::TrainError;
use sovereign_common::train::record::StepRecord;
use sovereign_common::train::run::{Control, RankPlan, train_rank};
use sovereign_common::train::settings::RunConfig;
use sovereign_common::with_training_backend;
use sovereign_proto::convert::step_report;
use sovereign_proto::transport::{TlsArgs, connect};
use sovereign_proto::v1::coordinator_client::CoordinatorClient;
use sovereign_proto::v1::training_client::TrainingClient;
use sovereign_proto::v1::{Collective, HeartbeatRequest, JoinRequest, command, join_reply};

use data::{DataPlaces, local_data};
use sovereign_worker::collective::{Setup, grpc_ring, nccl_usable};
use sovereign_worker::peer::serve_peer;

/// Joins a Sovereign coordinator, receives a rank and a plan, and trains its shard.
#[derive(Parser, Debug)]
#[command(name = "sovereign-worker", version, max_term_width = 100)]
struct Args {
    /// The coordinator's address, host:port.
    #[arg(long, value_name = "ADDR")]
    coordinator: String,
    /// A file holding the run's secret token; `-` reads it from the first line of stdin and
    /// stops the worker when stdin closes (how the ssh launcher starts workers).
    #[arg(long, value_name = "FILE")]
    token_file: PathBuf,
    /// The device to train on: cpu, cuda:N (--features cuda) or wgpu:N (--features wgpu).
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Where this worker's Peer service listens (port 0: any free port).
    #[arg(long, default_value = "127.0.0.1:0", value_name = "ADDR")]
    bind: String,
    /// The host name to report, and to advertise to peers when --bind is 0.0.0.0 (default: the
    /// machine's).
    #[arg(long)]
    host: Option<String>,
    /// Seconds to wait for a ring neighbour's gradients before aborting the step.
    #[arg(long, default_value_t = 120)]
    collective_timeout: u64,
    /// A directory holding the run's data files under their own names (default: the paths in
    /// the coordinator's config). Missing or differing data is fetched from the coordinator.
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Where data fetched from the coordinator is kept (default: ~/.cache/sovereign/data).
    #[arg(long, value_name = "DIR")]
    cache_dir: Option<PathBuf>,
    /// Mutual TLS with the coordinator and the other workers.
    #[command(flatten)]
    tls: TlsArgs,
}

/// The process's allocator (common/src/allocator.rs).
#[global_allocator]
static ALLOCATOR: MiMalloc = MiMalloc;

fn main() -> ExitCode {
    sovereign_common::allocator::keep_freed_memory();
    let args = Args::parse();
    sovereign_common::logging::init_logging();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<()> {
    let device = Device::parse(&args.device).map_err(anyhow::Error::msg)?;
    let built = match device {
        Device::Cpu => true,
        Device::Cuda(_) => cfg!(feature = "cuda"),
        Device::Wgpu(_) => cfg!(feature = "wgpu"),
    };
    if !built {
        bail!(
            "--device {device}: this binary was built without that backend; rebuild with \
             `cargo build --release -p sovereign-worker --features nccl` (CUDA and NCCL; or \
             --features wgpu)"
        );
    }
    let token = read_token(&args.token_file)?;
    let listener = tokio::net::TcpListener::bind(&args.bind)
        .await
        .with_context(|| format!("cannot listen on {}", args.bind))?;
    let host = args.host.clone().unwrap_or_else(host_name);
    let bound = listener.local_addr()?;
    // Bound to every interface: peers reach this worker by its host name.
    let peer_address = if bound.ip().is_unspecified() {
        format!("{host}:{}", bound.port())
    } else {
        bound.to_string()
    };
    // Shut down gracefully at the end, so that the answer to the previous rank's stream is
    // delivered before this process exits.
    let (stop_server, server_stopped) = tokio::sync::oneshot::channel::<()>();
    let tls = args.tls.load().map_err(anyhow::Error::msg)?;
    let (server, inbox) = serve_peer(listener, token.clone(), tls.as_ref(), server_stopped)
        .context("the TLS settings")?;

    let channel = connect(&args.coordinator, tls.as_ref())
        .await
        .map_err(|e| anyhow::anyhow!("cannot reach the coordinator: {e}"))?;
    // A data-prep job's or a training plan's tokenizer text can pass tonic's 4 MiB default.
    let mut coordinator =
        CoordinatorClient::new(channel.clone()).max_decoding_message_size(64 << 20);
    let reply = coordinator
        .join(JoinRequest {
            token: token.clone(),
            host,
            devices: match device {
                Device::Cpu => Vec::new(),
                Device::Cuda(index) | Device::Wgpu(index) => vec![index as u32],
            },
            binary_version: env!("CARGO_PKG_VERSION").to_string(),
            peer_address,
            pid: std::process::id(),
            nccl: nccl_usable(device),
        })
        .await
        .map_err(|s| match s.code() {
            tonic::Code::Unauthenticated
            | tonic::Code::FailedPrecondition
            | tonic::Code::ResourceExhausted => anyhow::anyhow!(
                "the coordinator refused to let this worker join: {}",
                s.message()
            ),
            _ => anyhow::anyhow!("joining the coordinator failed: {}", s.message()),
        })?
        .into_inner();
    let plan = match reply.job {
        Some(join_reply::Job::Plan(plan)) => plan,
        Some(join_reply::Job::Prep(job)) => {
            tracing::info!("joined a data-prep job as worker {}", reply.rank);
            send_heartbeats(&coordinator, &token, reply.rank, 0);
            let job = PrepJob::try_from(job)?;
            return prep::run_prep(job, reply.rank, channel, &token, args.data_dir.as_deref())
                .await;
        }
        None => bail!("the coordinator's answer to the join holds no job"),
    };
    let (rank, world) = (reply.rank, reply.world_size);
    let settings = plan.settings.clone();
    let config = RunConfig::try_from(settings.context("the plan holds no run settings")?)?;
    send_heartbeats(&coordinator, &token, rank, plan.generation);

    // The data this rank reads, fetched from the coordinator where it is missing or differs.
    let cache_dir = match &args.cache_dir {
        Some(dir) => dir.clone(),
        None => {
            PathBuf::from(std::env::var_os("HOME").context("HOME is not set; pass --cache-dir")?)
                .join(".cache/sovereign/data")
        }
    };
    let places = DataPlaces {
        data_dir: args.data_dir.as_deref(),
        cache_dir: &cache_dir,
    };
    let (mut data, mut val_data) = (config.data.clone(), config.val_data.clone());
    for (file, path) in local_data(&plan.data, &places, &mut coordinator, &token).await? {
        match file.as_str() {
            "train" => data = path,
            "val" => val_data = Some(path),
            other => bail!("the plan names an unknown data file {other:?}"),
        }
    }
    let tokenizer = (!plan.tokenizer_text.is_empty())
        .then(|| Tokenizer::from_text(&plan.tokenizer_text))
        .transpose()
        .context("the run's tokenizer, as the coordinator sent it")?;
    let start = (!plan.start_checkpoint.is_empty()).then(|| PathBuf::from(&plan.start_checkpoint));
    match &start {
        Some(dir) => tracing::info!(
            "joined as rank {rank} of {world} (generation {}), continuing from {}",
            plan.generation,
            dir.display()
        ),
        None => tracing::info!("joined as rank {rank} of {world}"),
    }

    let setup = Setup {
        rank,
        world,
        token: &token,
        tls: tls.as_ref(),
        deadline: Duration::from_secs(args.collective_timeout),
    };
    let mut training = TrainingClient::new(channel.clone());
    let (mut reducer, sender) = if plan.collective() == Collective::Nccl {
        (
            sovereign_worker::collective::nccl(&setup, plan.generation, device, &mut training)
                .await?,
            None,
        )
    } else {
        grpc_ring(&setup, config.wire_dtype, &plan.ring, inbox).await?
    };
    let handle = tokio::runtime::Handle::current();
    let generation = plan.generation;
    let trained = tokio::task::spawn_blocking(move || -> Result<Option<PathBuf>> {
        let plan = RankPlan {
            rank,
            world,
            data,
            val_data,
            tokenizer,
        };
        let mut report = |record: StepRecord| {
            let step = record.step;
            let answer = handle
                .block_on(training.report(step_report(&record, &token, rank, generation)))
                .map_err(|s| TrainError::Run(format!("reporting step {step}: {}", s.message())))?
                .into_inner();
            Ok(match answer.kind() {
                command::Kind::Continue => Control::Continue,
                command::Kind::Stop => Control::StopAfter(answer.stop_after),
            })
        };
        let checkpointing = config.activation_checkpointing;
        with_training_backend!(device, checkpointing, |A, dev| train_rank::<A>(
            &config,
            plan,
            start.as_deref(),
            reducer.as_mut(),
            &mut report,
            &dev,
        )
        .map_err(anyhow::Error::msg))
    })
    .await
    .context("the training thread panicked")?;
    let last = trained?;
    if let Some(sender) = sender {
        sender
            .await
            .context("the ring stream task panicked")?
            .map_err(|s| {
                anyhow::anyhow!("the next rank closed the ring stream: {}", s.message())
            })?;
    }
    let _ = stop_server.send(());
    tokio::time::timeout(Duration::from_secs(30), server)
        .await
        .context("the peer service did not shut down within 30 s")?
        .context("the peer service task panicked")?
        .context("the peer service failed")?;
    if let Some(last) = last {
        tracing::info!("rank {rank}: last checkpoint {}", last.display());
    }
    Ok(())
}

/// Sends a heartbeat every second from the runtime, whatever the training or map thread is
/// doing: a worker that stops (frozen, or its machine gone) is named as stalled.
fn send_heartbeats(
    coordinator: &CoordinatorClient<tonic::transport::Channel>,
    token: &str,
    rank: u32,
    generation: u32,
) {
    let mut beats = coordinator.clone();
    let beat = HeartbeatRequest {
        token: token.to_string(),
        rank,
        generation,
    };
    tokio::spawn(async move {
        let mut every = tokio::time::interval(Duration::from_secs(1));
        loop {
            every.tick().await;
            let _ = beats.heartbeat(beat.clone()).await;
        }
    });
}

/// The run token from `path`, or from stdin's first line for `-`. With stdin, a thread then
/// waits for its end: the launcher that started this worker is gone, and so is the run.
fn read_token(path: &Path) -> Result<String> {
    if path != Path::new("-") {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading the token file {}", path.display()))?;
        return Ok(text.trim().to_string());
    }
    let mut line = String::new();
    std::io::stdin()
        .read_line(&mut line)
        .context("reading the token from stdin")?;
    if line.trim().is_empty() {
        bail!("--token-file -: stdin held no token");
    }
    std::thread::spawn(|| {
        let mut rest = [0u8; 64];
        while matches!(std::io::stdin().read(&mut rest), Ok(n) if n > 0) {}
        eprintln!("error: stdin closed: the launcher that started this worker is gone; stopping");
        std::process::exit(1);
    });
    Ok(line.trim().to_string())
}

/// The machine's host name (from the kernel, or "unknown").
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".into())
}

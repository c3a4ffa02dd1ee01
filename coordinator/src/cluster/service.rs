//! The Coordinator gRPC service: admits workers (token and version checked), hands each its rank
//! and plan once the whole world has joined, and turns the per-step reports into metrics.jsonl.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write;
use std::sync::Mutex;
use std::time::Instant;

use sovereign_common::train::run::Metrics;
use sovereign_proto::v1::coordinator_server::Coordinator;
use sovereign_proto::v1::{Command, JoinReply, JoinRequest, Plan, StepReport, command};
use tokio::sync::{oneshot, watch};
use tonic::{Request, Response, Status};

/// What every worker is told, apart from its rank.
pub struct RunPlan {
    /// The run configuration as JSON.
    pub config_json: String,
    /// sha256 of train.bin.
    pub data_sha256: String,
    /// Token-aligned byte range of each rank's shard.
    pub shards: Vec<(u64, u64)>,
    /// Steps in the run.
    pub steps: u64,
}

/// Workers that have joined, waiting for the rest.
#[derive(Default)]
struct Joins {
    peers: Vec<String>,
    waiting: Vec<oneshot::Sender<Result<JoinReply, Status>>>,
}

/// Reports of steps not every rank has reported yet, and the metrics file.
struct Reports {
    pending: BTreeMap<u64, Vec<StepReport>>,
    metrics: File,
    started: Instant,
}

/// The service's state.
pub struct CoordinatorService {
    token: String,
    world: u32,
    plan: RunPlan,
    joins: Mutex<Joins>,
    reports: Mutex<Reports>,
    /// The last step every rank has reported.
    progress: watch::Sender<u64>,
}

impl CoordinatorService {
    /// A service for `world` workers; metrics lines go to `metrics`.
    pub fn new(token: String, world: u32, plan: RunPlan, metrics: File) -> Self {
        Self {
            token,
            world,
            plan,
            joins: Mutex::default(),
            reports: Mutex::new(Reports {
                pending: BTreeMap::new(),
                metrics,
                started: Instant::now(),
            }),
            progress: watch::channel(0).0,
        }
    }

    /// Watches the last step every rank has finished.
    pub fn progress(&self) -> watch::Receiver<u64> {
        self.progress.subscribe()
    }

    /// Refuses (and logs) a request without the run's token.
    fn check_token(&self, token: &str, what: &str, remote: &str) -> Result<(), Status> {
        if token == self.token {
            return Ok(());
        }
        tracing::warn!("refused {what} from {remote}: missing or wrong run token");
        Err(Status::unauthenticated("missing or wrong run token"))
    }

    /// Records one report; writes the metrics line once every rank has reported the step.
    fn record(&self, report: StepReport) -> Result<(), Status> {
        let mut reports = self
            .reports
            .lock()
            .map_err(|_| Status::internal("poisoned"))?;
        let step = report.step;
        let list = reports.pending.entry(step).or_default();
        list.push(report);
        if list.len() < self.world as usize {
            return Ok(());
        }
        let mut list = reports.pending.remove(&step).unwrap_or_default();
        list.sort_by_key(|r| r.rank);
        let n = list.len() as f64;
        let loss = list.iter().map(|r| r.loss).sum::<f64>() / n;
        let slowest = list
            .iter()
            .map(|r| r.compute_s + r.allreduce_s)
            .fold(1e-9, f64::max);
        let tokens: u64 = list.iter().map(|r| r.tokens).sum();
        let share = list
            .iter()
            .map(|r| r.allreduce_s / (r.compute_s + r.allreduce_s).max(1e-9))
            .sum::<f64>()
            / n;
        let first = &list[0];
        let line = Metrics {
            step,
            loss,
            val_loss: list.iter().find_map(|r| r.val_loss),
            lr: first.lr,
            grad_norm: first.grad_norm,
            tokens_per_s: tokens as f64 / slowest,
            elapsed: reports.started.elapsed().as_secs_f64(),
        };
        let text = serde_json::to_string(&line).map_err(|e| Status::internal(e.to_string()))?;
        writeln!(reports.metrics, "{text}")
            .map_err(|e| Status::internal(format!("writing metrics.jsonl: {e}")))?;
        tracing::info!(
            "step {step}/{}: loss {loss:.4}{} lr {:.2e} grad norm {:.3} {:.0} tok/s, all-reduce {:.0}% of the step",
            self.plan.steps,
            line.val_loss
                .map_or(String::new(), |v| format!(" val {v:.4}")),
            line.lr,
            line.grad_norm,
            line.tokens_per_s,
            share * 100.0
        );
        self.progress.send_replace(step);
        Ok(())
    }
}

/// The address of a request's peer, for logs.
fn remote<T>(request: &Request<T>) -> String {
    request
        .remote_addr()
        .map_or_else(|| "an unknown address".into(), |a| a.to_string())
}

#[tonic::async_trait]
impl Coordinator for CoordinatorService {
    async fn join(&self, request: Request<JoinRequest>) -> Result<Response<JoinReply>, Status> {
        let from = remote(&request);
        let join = request.into_inner();
        self.check_token(&join.token, "a join", &from)?;
        let ours = env!("CARGO_PKG_VERSION");
        if join.binary_version != ours {
            tracing::warn!(
                "refused worker {} ({from}): version {} differs from the coordinator's {ours}",
                join.host,
                join.binary_version
            );
            return Err(Status::failed_precondition(format!(
                "sovereign-worker {} cannot join a run of sovereign {ours}; install the same version",
                join.binary_version
            )));
        }
        let (tx, rx) = oneshot::channel();
        {
            let mut joins = self
                .joins
                .lock()
                .map_err(|_| Status::internal("poisoned"))?;
            if joins.peers.len() >= self.world as usize {
                return Err(Status::resource_exhausted(format!(
                    "the run already has its {} workers",
                    self.world
                )));
            }
            tracing::info!(
                "worker {} ({}) joined as rank {}",
                join.host,
                join.peer_address,
                joins.peers.len()
            );
            joins.peers.push(join.peer_address);
            joins.waiting.push(tx);
            if joins.peers.len() == self.world as usize {
                let ring = joins.peers.clone();
                for (rank, waiter) in joins.waiting.drain(..).enumerate() {
                    let (shard_start, shard_end) = self.plan.shards[rank];
                    let reply = JoinReply {
                        rank: rank as u32,
                        world_size: self.world,
                        plan: Some(Plan {
                            config_json: self.plan.config_json.clone(),
                            ring: ring.clone(),
                            shard_start,
                            shard_end,
                            data_sha256: self.plan.data_sha256.clone(),
                            generation: 0,
                        }),
                    };
                    let _ = waiter.send(Ok(reply));
                }
            }
        }
        let reply = rx
            .await
            .map_err(|_| Status::aborted("the coordinator stopped before every worker joined"))??;
        Ok(Response::new(reply))
    }

    async fn report(&self, request: Request<StepReport>) -> Result<Response<Command>, Status> {
        let from = remote(&request);
        let report = request.into_inner();
        self.check_token(&report.token, "a step report", &from)?;
        self.record(report)?;
        Ok(Response::new(Command {
            kind: command::Kind::Continue as i32,
        }))
    }
}

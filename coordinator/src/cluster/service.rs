//! The Coordinator and Training gRPC services of a training run: admits workers (token and version checked), hands each its rank
//! and plan once the whole world has joined, turns the per-step reports into metrics.jsonl, and
//! keeps the heartbeats that tell a live worker from a frozen one. A restart starts a new
//! generation: the joins and pending reports of the old one are dropped.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use sovereign_common::sync::lock;
use sovereign_common::train::TrainError;
use sovereign_common::train::events::EventKind;
use sovereign_common::train::record::{MetricsLog, StepRecord};
use sovereign_proto::v1::coordinator_server::Coordinator;
use sovereign_proto::v1::training_server::Training;
use sovereign_proto::v1::{
    Command, DataChunk, DataRange, FetchRequest, HeartbeatRequest, JoinReply, JoinRequest,
    NcclIdReply, NcclIdRequest, Plan, RunSettings, StepReport, command, join_reply,
};
use tokio::sync::{oneshot, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use super::collective::{Member, choose_collective};
use super::data::answer_fetch;
use super::serve::{check_token, check_version, remote};
use crate::cli::Collective;

/// What every worker is told, apart from its rank.
pub struct RunPlan {
    /// The run settings.
    pub settings: RunSettings,
    /// sha256 of train.bin.
    pub data_sha256: String,
    /// Token-aligned byte range of each rank's shard.
    pub shards: Vec<(u64, u64)>,
    /// Per rank: the data ranges it reads, with their checksums.
    pub data: Vec<Vec<DataRange>>,
    /// The data files workers may fetch ranges of, by name ("train", "val").
    pub files: Vec<(String, PathBuf)>,
    /// Steps in the run.
    pub steps: u64,
    /// The collective asked for.
    pub collective: Collective,
    /// The text of the run's tokenizer file (empty when it names none).
    pub tokenizer_text: String,
}

/// The current generation's workers: joined, waiting for the rest, or running.
#[derive(Default)]
struct Group {
    generation: u32,
    start_checkpoint: String,
    /// Per rank, in join order.
    members: Vec<Member>,
    waiting: Vec<oneshot::Sender<Result<JoinReply, Status>>>,
    /// Per rank: when it was last heard from (set once the whole world has joined).
    last_seen: Vec<Instant>,
}

impl Group {
    /// Generation `generation`, continuing from `checkpoint` or from scratch, before any join.
    fn starting(generation: u32, checkpoint: Option<&Path>) -> Self {
        Group {
            generation,
            start_checkpoint: checkpoint.map_or(String::new(), |p| p.display().to_string()),
            ..Group::default()
        }
    }
}

/// Records of steps not every rank has reported yet (with their ranks), and the metrics file.
struct Reports {
    pending: BTreeMap<u64, Vec<(u32, StepRecord)>>,
    metrics: MetricsLog,
}

/// The service's state.
pub struct CoordinatorService {
    token: String,
    world: u32,
    plan: RunPlan,
    group: Mutex<Group>,
    reports: Mutex<Reports>,
    /// The last step every rank has reported.
    progress: watch::Sender<u64>,
    /// The highest step any rank of this generation has reported.
    highest: AtomicU64,
    /// The step after which the run stops early (Ctrl-C), once asked.
    stop_after: Mutex<Option<u64>>,
    /// Why the run cannot go on whatever restarts (a group the collective refuses).
    fatal: Mutex<Option<String>>,
    /// The NCCL unique id rank 0 posted, with its generation.
    nccl_id: watch::Sender<Option<(u32, Vec<u8>)>>,
}

impl CoordinatorService {
    /// A service for `world` workers starting from `checkpoint` (at `step`) or from scratch;
    /// metrics lines are appended to `metrics`.
    pub fn new(
        token: String,
        world: u32,
        plan: RunPlan,
        metrics: MetricsLog,
        checkpoint: Option<&Path>,
        step: u64,
    ) -> Self {
        Self {
            token,
            world,
            plan,
            group: Mutex::new(Group::starting(0, checkpoint)),
            reports: Mutex::new(Reports {
                pending: BTreeMap::new(),
                metrics,
            }),
            progress: watch::channel(step).0,
            highest: AtomicU64::new(step),
            stop_after: Mutex::new(None),
            nccl_id: watch::channel(None).0,
            fatal: Mutex::new(None),
        }
    }

    /// Appends an event happening now to events.jsonl (and tells the dashboard).
    pub fn event(&self, what: EventKind) -> anyhow::Result<()> {
        lock(&self.reports)
            .metrics
            .event(what)
            .map_err(anyhow::Error::msg)
    }

    /// Why the run cannot go on, if something said so.
    pub fn fatal(&self) -> Option<String> {
        lock(&self.fatal).clone()
    }

    /// Asks every rank to stop early and returns the step they will stop after: two past the
    /// highest step reported so far, so that every rank, whichever step it is in, hears it in a
    /// report before it finishes that step (and rank 0 checkpoints it).
    pub fn request_stop(&self) -> u64 {
        let at = (self.highest.load(Ordering::SeqCst) + 2).min(self.plan.steps);
        *lock(&self.stop_after).get_or_insert(at)
    }

    /// The answer to a report or heartbeat: go on, or stop after the step set by
    /// [`Self::request_stop`].
    fn command(&self) -> Command {
        match *lock(&self.stop_after) {
            Some(at) => Command {
                kind: command::Kind::Stop as i32,
                stop_after: at,
            },
            None => Command {
                kind: command::Kind::Continue as i32,
                stop_after: 0,
            },
        }
    }

    /// Watches the last step every rank has finished.
    pub fn progress(&self) -> watch::Receiver<u64> {
        self.progress.subscribe()
    }

    /// The last step every rank has finished.
    pub fn finished_step(&self) -> u64 {
        *self.progress.borrow()
    }

    /// Starts generation `generation`, continuing from `checkpoint` (at `step`) or from scratch;
    /// metrics.jsonl is opened again, since a rollback replaces the file.
    pub fn restart(
        &self,
        generation: u32,
        checkpoint: Option<&Path>,
        step: u64,
    ) -> Result<(), TrainError> {
        *lock(&self.group) = Group::starting(generation, checkpoint);
        let mut reports = lock(&self.reports);
        reports.pending.clear();
        reports.metrics.reopen()?;
        drop(reports);
        self.highest.store(step, Ordering::SeqCst);
        self.progress.send_replace(step);
        Ok(())
    }

    /// The rank of the worker process `pid` in the current generation.
    pub fn rank_of_pid(&self, pid: u32) -> Option<usize> {
        let group = lock(&self.group);
        group.members.iter().position(|m| m.pid == pid)
    }

    /// A rank not heard from for longer than `timeout`: the rank, its process id and a line for
    /// the log.
    pub fn stalled(&self, timeout: Duration) -> Option<(u32, u32, String)> {
        let group = lock(&self.group);
        let (rank, seen) = group
            .last_seen
            .iter()
            .enumerate()
            .max_by_key(|(_, seen)| seen.elapsed())?;
        let quiet = seen.elapsed();
        (quiet > timeout).then(|| {
            let Member { pid, host, .. } = &group.members[rank];
            let why = format!(
                "rank {rank} (pid {pid} on {host}) stalled: no heartbeat or step progress for {:.0} s",
                quiet.as_secs_f64()
            );
            (rank as u32, *pid, why)
        })
    }

    /// Refuses (and logs) a request without the run's token.
    fn check_token(&self, token: &str, what: &str, remote: &str) -> Result<(), Status> {
        check_token(&self.token, token, what, remote)
    }

    /// Notes that `rank` is alive.
    fn seen(&self, rank: u32) {
        if let Some(seen) = lock(&self.group).last_seen.get_mut(rank as usize) {
            *seen = Instant::now();
        }
        lock(&self.reports).metrics.heard(rank);
    }

    /// Records one report; writes the metrics line once every rank has reported the step.
    fn record(&self, report: StepReport) -> Result<(), Status> {
        let current = lock(&self.group).generation;
        if report.generation != current {
            return Err(Status::aborted(format!(
                "generation {} of this run was replaced by generation {current}; this worker stops",
                report.generation
            )));
        }
        self.seen(report.rank);
        self.highest.fetch_max(report.step, Ordering::SeqCst);
        let mut reports = lock(&self.reports);
        let step = report.step;
        let record = StepRecord::from(&report);
        reports.metrics.rank_step(report.rank, &record);
        let list = reports.pending.entry(step).or_default();
        list.push((report.rank, record));
        if list.len() < self.world as usize {
            return Ok(());
        }
        let mut list = reports.pending.remove(&step).unwrap_or_default();
        list.sort_by_key(|(rank, _)| *rank);
        let ranks: Vec<StepRecord> = list.into_iter().map(|(_, record)| record).collect();
        if let Some(world) = StepRecord::merge(&ranks) {
            reports
                .metrics
                .write(world)
                .map_err(|e| Status::internal(format!("writing metrics.jsonl: {e}")))?;
        }
        self.progress.send_replace(step);
        Ok(())
    }

    /// Adds a joining worker; once the world is complete, answers every waiting worker.
    fn admit(
        &self,
        join: JoinRequest,
        reply: oneshot::Sender<Result<JoinReply, Status>>,
    ) -> Result<(), Status> {
        let mut group = lock(&self.group);
        if group.members.len() >= self.world as usize {
            return Err(Status::resource_exhausted(format!(
                "the run already has its {} workers",
                self.world
            )));
        }
        tracing::info!(
            "worker {} (pid {}, {}) joined as rank {}",
            join.host,
            join.pid,
            join.peer_address,
            group.members.len()
        );
        let joined = EventKind::Joined {
            rank: group.members.len() as u32,
            host: join.host.clone(),
            pid: join.pid,
            device: if join.devices.is_empty() {
                "cpu".into()
            } else {
                join.devices
                    .iter()
                    .map(|d| format!("cuda:{d}"))
                    .collect::<Vec<_>>()
                    .join(",")
            },
        };
        if let Err(e) = lock(&self.reports).metrics.event(joined) {
            tracing::warn!("{e}");
        }
        group.members.push(Member {
            peer_address: join.peer_address,
            pid: join.pid,
            host: join.host,
            gpu: !join.devices.is_empty(),
            nccl: join.nccl,
        });
        group.waiting.push(reply);
        if group.members.len() < self.world as usize {
            return Ok(());
        }
        let waiting = std::mem::take(&mut group.waiting);
        let collective = match choose_collective(self.plan.collective, &group.members) {
            Ok((collective, note)) => {
                if let Some(note) = note {
                    tracing::warn!("{note}");
                }
                collective
            }
            Err(refusal) => {
                *lock(&self.fatal) = Some(refusal.clone());
                for waiter in waiting {
                    let _ = waiter.send(Err(Status::failed_precondition(refusal.clone())));
                }
                group.members.clear();
                return Ok(());
            }
        };
        let ring: Vec<String> = group
            .members
            .iter()
            .map(|m| m.peer_address.clone())
            .collect();
        group.last_seen = vec![Instant::now(); ring.len()];
        for (rank, waiter) in waiting.into_iter().enumerate() {
            let (shard_start, shard_end) = self.plan.shards[rank];
            let reply = JoinReply {
                rank: rank as u32,
                world_size: self.world,
                job: Some(join_reply::Job::Plan(Plan {
                    settings: Some(self.plan.settings.clone()),
                    ring: ring.clone(),
                    shard_start,
                    shard_end,
                    data_sha256: self.plan.data_sha256.clone(),
                    generation: group.generation,
                    start_checkpoint: group.start_checkpoint.clone(),
                    data: self.plan.data[rank].clone(),
                    collective: collective as i32,
                    tokenizer_text: self.plan.tokenizer_text.clone(),
                })),
            };
            let _ = waiter.send(Ok(reply));
        }
        Ok(())
    }
}

#[tonic::async_trait]
impl Coordinator for CoordinatorService {
    async fn join(&self, request: Request<JoinRequest>) -> Result<Response<JoinReply>, Status> {
        let from = remote(&request);
        let join = request.into_inner();
        self.check_token(&join.token, "a join", &from)?;
        check_version(&join, &from)?;
        let (tx, rx) = oneshot::channel();
        self.admit(join, tx)?;
        let reply = rx
            .await
            .map_err(|_| Status::aborted("the group restarted before every worker joined"))??;
        Ok(Response::new(reply))
    }

    type FetchDataStream = ReceiverStream<Result<DataChunk, Status>>;

    async fn fetch_data(
        &self,
        request: Request<FetchRequest>,
    ) -> Result<Response<Self::FetchDataStream>, Status> {
        answer_fetch(&self.plan.files, &self.token, request)
    }

    async fn heartbeat(
        &self,
        request: Request<HeartbeatRequest>,
    ) -> Result<Response<Command>, Status> {
        let from = remote(&request);
        let beat = request.into_inner();
        self.check_token(&beat.token, "a heartbeat", &from)?;
        let current = lock(&self.group).generation;
        if beat.generation == current {
            self.seen(beat.rank);
        }
        Ok(Response::new(self.command()))
    }
}

#[tonic::async_trait]
impl Training for CoordinatorService {
    async fn report(&self, request: Request<StepReport>) -> Result<Response<Command>, Status> {
        let from = remote(&request);
        let report = request.into_inner();
        self.check_token(&report.token, "a step report", &from)?;
        self.record(report)?;
        Ok(Response::new(self.command()))
    }

    async fn exchange_nccl_id(
        &self,
        request: Request<NcclIdRequest>,
    ) -> Result<Response<NcclIdReply>, Status> {
        let from = remote(&request);
        let exchange = request.into_inner();
        self.check_token(&exchange.token, "an NCCL id exchange", &from)?;
        let current = lock(&self.group).generation;
        if exchange.generation != current {
            return Err(Status::aborted(format!(
                "generation {} was replaced by generation {current}",
                exchange.generation
            )));
        }
        if exchange.rank == 0 {
            if exchange.id.len() != 128 {
                return Err(Status::invalid_argument(format!(
                    "an NCCL unique id has 128 bytes, not {}",
                    exchange.id.len()
                )));
            }
            self.nccl_id
                .send_replace(Some((exchange.generation, exchange.id.clone())));
            return Ok(Response::new(NcclIdReply { id: exchange.id }));
        }
        let mut posted = self.nccl_id.subscribe();
        let wait = posted.wait_for(|id| id.as_ref().is_some_and(|(g, _)| *g == current));
        match tokio::time::timeout(Duration::from_secs(300), wait).await {
            Ok(Ok(id)) => Ok(Response::new(NcclIdReply {
                id: id.as_ref().map(|(_, id)| id.clone()).unwrap_or_default(),
            })),
            _ => Err(Status::deadline_exceeded(
                "rank 0 did not post the NCCL id within 300 s",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A service for one worker whose "train" file is `data`.
    fn service(data: &Path, metrics: MetricsLog) -> CoordinatorService {
        let plan = RunPlan {
            settings: RunSettings::default(),
            data_sha256: String::new(),
            shards: vec![(0, 8)],
            data: vec![Vec::new()],
            files: vec![("train".into(), data.to_path_buf())],
            steps: 1,
            collective: Collective::Auto,
            tokenizer_text: String::new(),
        };
        CoordinatorService::new("secret".into(), 1, plan, metrics, None, 0)
    }

    fn fetch(file: &str, token: &str, start: u64, end: u64) -> Request<FetchRequest> {
        Request::new(FetchRequest {
            token: token.into(),
            file: file.into(),
            start,
            end,
        })
    }

    #[tokio::test]
    async fn fetches_stream_the_range_and_refuse_bad_requests() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("train.bin");
        let bytes: Vec<u8> = (0..(3 << 20)).map(|i| (i % 251) as u8).collect();
        std::fs::write(&data, &bytes).unwrap();
        let service = service(&data, MetricsLog::open(dir.path(), 1).unwrap());

        let mut stream = service
            .fetch_data(fetch("train", "secret", 10, (5 << 19) + 10))
            .await
            .unwrap()
            .into_inner();
        let mut got = Vec::new();
        let mut chunks = 0;
        while let Some(chunk) = tokio_stream::StreamExt::next(&mut stream).await {
            let chunk = chunk.unwrap();
            assert!(chunk.data.len() <= 1 << 20);
            got.extend_from_slice(&chunk.data);
            chunks += 1;
        }
        assert_eq!(chunks, 3);
        assert_eq!(got, bytes[10..(5 << 19) + 10]);

        let refused = |request| async { service.fetch_data(request).await.err().unwrap().code() };
        assert_eq!(
            refused(fetch("train", "wrong", 0, 8)).await,
            tonic::Code::Unauthenticated
        );
        assert_eq!(
            refused(fetch("train", "", 0, 8)).await,
            tonic::Code::Unauthenticated
        );
        assert_eq!(
            refused(fetch("train", "secret", 0, (3 << 20) + 2)).await,
            tonic::Code::OutOfRange
        );
        assert_eq!(
            refused(fetch("/etc/passwd", "secret", 0, 8)).await,
            tonic::Code::NotFound
        );
    }
}

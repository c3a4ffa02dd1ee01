//! The gRPC face of a map-reduce job: the Coordinator service's join (which hands out the job
//! instead of a training plan), heartbeats and input fetches, and the Prep service's task pulls
//! and result uploads, all token-checked.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};

use sha2::{Digest, Sha256};
use sovereign_common::hashing::hex;
use sovereign_common::prep::Reducer;
use sovereign_proto::v1::coordinator_server::Coordinator;
use sovereign_proto::v1::prep_server::Prep;
use sovereign_proto::v1::{
    self, Command, DataChunk, FetchRequest, HeartbeatRequest, JoinReply, JoinRequest, ResultChunk,
    SubmitReply, Task, TaskRequest, join_reply, task,
};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use super::board::{Next, Refusal, TaskBoard};
use crate::cluster::data::answer_fetch;
use crate::cluster::serve::{check_token, check_version, remote};

/// The largest result a task may send (a task's input is a few MiB; its result is of that
/// order).
const MAX_RESULT_BYTES: usize = 1 << 30;

/// The services of one job.
pub struct PrepService<R: Reducer> {
    token: String,
    /// The job, as workers receive it.
    job: v1::PrepJob,
    /// The inputs workers may fetch ranges of, by name ("input:0", …).
    files: Vec<(String, PathBuf)>,
    board: Arc<Mutex<TaskBoard<R>>>,
}

impl<R: Reducer> PrepService<R> {
    /// Serves `board`'s tasks of the job `job` over `inputs`.
    pub fn new(
        token: String,
        job: v1::PrepJob,
        inputs: &[PathBuf],
        board: Arc<Mutex<TaskBoard<R>>>,
    ) -> Self {
        let files = inputs
            .iter()
            .enumerate()
            .map(|(i, path)| (format!("input:{i}"), path.clone()))
            .collect();
        Self {
            token,
            job,
            files,
            board,
        }
    }

    fn board(&self) -> Result<MutexGuard<'_, TaskBoard<R>>, Status> {
        self.board
            .lock()
            .map_err(|_| Status::internal("the task board is poisoned"))
    }
}

#[tonic::async_trait]
impl<R: Reducer + 'static> Coordinator for PrepService<R> {
    async fn join(&self, request: Request<JoinRequest>) -> Result<Response<JoinReply>, Status> {
        let from = remote(&request);
        let join = request.into_inner();
        check_token(&self.token, &join.token, "a join", &from)?;
        check_version(&join, &from)?;
        let worker = self.board()?.join(join.host.clone(), join.pid);
        tracing::info!(
            "worker {} (pid {}) joined as worker {worker}",
            join.host,
            join.pid
        );
        Ok(Response::new(JoinReply {
            rank: worker,
            world_size: 0,
            job: Some(join_reply::Job::Prep(self.job.clone())),
        }))
    }

    type FetchDataStream = ReceiverStream<Result<DataChunk, Status>>;

    async fn fetch_data(
        &self,
        request: Request<FetchRequest>,
    ) -> Result<Response<Self::FetchDataStream>, Status> {
        answer_fetch(&self.files, &self.token, request)
    }

    async fn heartbeat(
        &self,
        request: Request<HeartbeatRequest>,
    ) -> Result<Response<Command>, Status> {
        let from = remote(&request);
        let beat = request.into_inner();
        check_token(&self.token, &beat.token, "a heartbeat", &from)?;
        self.board()?.seen(beat.rank);
        Ok(Response::new(Command::default()))
    }
}

#[tonic::async_trait]
impl<R: Reducer + 'static> Prep for PrepService<R> {
    async fn next_task(&self, request: Request<TaskRequest>) -> Result<Response<Task>, Status> {
        let from = remote(&request);
        let ask = request.into_inner();
        check_token(&self.token, &ask.token, "a task request", &from)?;
        let mut board = self.board()?;
        let next = board.next(ask.worker).map_err(|why| {
            tracing::warn!("refused a task request from {from}: {why}");
            Status::permission_denied(why)
        })?;
        let reply = match next {
            Next::Work(id) => {
                let spec = board.task(id);
                tracing::debug!(
                    "task {id} (bytes [{}, {}) of input {}) goes to {}",
                    spec.start,
                    spec.end,
                    spec.input,
                    board.describe(ask.worker)
                );
                Task {
                    kind: task::Kind::Work as i32,
                    id: id as u64,
                    input: spec.input,
                    start: spec.start,
                    end: spec.end,
                    sha256: spec.sha256.clone(),
                }
            }
            Next::Wait => Task {
                kind: task::Kind::Wait as i32,
                ..Task::default()
            },
            Next::Done => Task {
                kind: task::Kind::Done as i32,
                ..Task::default()
            },
        };
        Ok(Response::new(reply))
    }

    async fn submit(
        &self,
        request: Request<Streaming<ResultChunk>>,
    ) -> Result<Response<SubmitReply>, Status> {
        let from = remote(&request);
        let mut chunks = request.into_inner();
        let mut payload = Vec::new();
        let mut last = None;
        while let Some(chunk) = chunks.message().await? {
            check_token(&self.token, &chunk.token, "a task result", &from)?;
            if let Some((worker, task)) = last
                && (worker, task) != (chunk.worker, chunk.task)
            {
                return Err(Status::invalid_argument(
                    "a result's chunks name different workers or tasks",
                ));
            }
            self.board()?
                .running(chunk.worker, chunk.task)
                .map_err(|why| refuse(&from, chunk.task, why))?;
            if payload.len() + chunk.data.len() > MAX_RESULT_BYTES {
                return Err(refuse(&from, chunk.task, "the result is too large".into()));
            }
            payload.extend_from_slice(&chunk.data);
            last = Some((chunk.worker, chunk.task));
            if !chunk.error.is_empty() {
                let why = format!("task {} failed: {}", chunk.task, chunk.error);
                tracing::error!("{why}");
                self.board()?.fail(why.clone());
                return Err(Status::aborted(why));
            }
            if !chunk.sha256.is_empty() {
                let sum = hex(&Sha256::digest(&payload));
                if sum != chunk.sha256 {
                    let why = format!(
                        "its result for task {} has sha256 {sum}, not the {} it announced",
                        chunk.task, chunk.sha256
                    );
                    self.board()?.drop_worker(chunk.worker, &why);
                    return Err(refuse(&from, chunk.task, why));
                }
                let board = self.board.clone();
                let (worker, task) = (chunk.worker, chunk.task);
                let taken = tokio::task::spawn_blocking(move || match board.lock() {
                    Ok(mut board) => board.complete(worker, task, &payload),
                    Err(_) => Err(Refusal::Fatal("the task board is poisoned".into())),
                })
                .await
                .map_err(|_| Status::internal("the reduce thread panicked"))?;
                return match taken {
                    Ok(()) => Ok(Response::new(SubmitReply {})),
                    Err(Refusal::Refused(why)) => Err(refuse(&from, task, why)),
                    Err(Refusal::Fatal(why)) => Err(Status::internal(why)),
                };
            }
        }
        Err(Status::invalid_argument(
            "the result ended without its sha256 (an upload cut short)",
        ))
    }
}

/// Logs and returns the refusal of a task result.
fn refuse(from: &str, task: u64, why: String) -> Status {
    tracing::warn!("refused the result of task {task} from {from}: {why}");
    Status::failed_precondition(why)
}

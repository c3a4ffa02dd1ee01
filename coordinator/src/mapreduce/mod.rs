//! Data-prep stages spread over workers (`train-tokenizer`, `tokenize`, `process-wiki` with
//! `--hosts`, docs/distributed.md): the coordinator cuts the inputs into byte ranges, serves them as map
//! tasks to the workers of the hosts file (started as for training: local processes, ssh, or
//! dialling in), and folds their results, in input order, into the same output a single process
//! writes. A worker that dies or stalls loses nothing: its tasks go to the others.

pub mod board;
pub mod jobs;
pub mod service;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sovereign_common::sync::lock;
use tokio::sync::watch;
use tonic::transport::Server;
use tonic::transport::server::Router;

use anyhow::{Context, Result, bail};
use rayon::prelude::*;
use sovereign_common::hashing::sha256_range;
use sovereign_common::prep::{InputFile, MapJob, PrepJob, Reducer};
use sovereign_common::progress::Progress;
use sovereign_proto::v1::coordinator_server::CoordinatorServer;
use sovereign_proto::v1::prep_server::PrepServer;

use crate::cli::PrepClusterArgs;
use crate::cluster::group::{Group, Job, Lost, run_group};
use crate::cluster::hosts::{Host, read_hosts};
use crate::cluster::launch::{Worker, check_local_hosts};
use crate::cluster::serve::{new_token, write_secret};
use crate::dashboard::{self, Board};
use board::{TaskBoard, TaskSpec};
use service::PrepService;
use sovereign_common::train::events::{Event, EventKind, Watcher};

/// What a map-reduce job did, for the closing log line and the benchmark.
#[derive(Clone, Debug)]
pub struct JobStats {
    /// Map tasks run.
    pub tasks: usize,
    /// Workers the hosts file names.
    pub workers: u32,
    /// Input bytes mapped.
    pub input_bytes: u64,
    /// Result bytes the workers sent.
    pub result_bytes: u64,
    /// Seconds from starting the workers to the last result folded in.
    pub map_seconds: f64,
}

impl JobStats {
    /// The line the stages print: wall time, input rate and result bytes per MB of input.
    pub fn summary(&self, label: &str) -> String {
        let mb = self.input_bytes as f64 / 1e6;
        format!(
            "{label}: map on {} workers: {} tasks, {mb:.1} MB in {:.2} s ({:.1} MB/s); {} result \
             bytes ({:.0} bytes per MB of input)",
            self.workers,
            self.tasks,
            self.map_seconds,
            mb / self.map_seconds.max(1e-9),
            self.result_bytes,
            self.result_bytes as f64 / mb.max(1e-9)
        )
    }
}

/// The workers of a `--hosts` data-prep run, or `None` to run in this process.
pub fn prep_hosts(args: &PrepClusterArgs) -> Result<Option<Vec<Host>>> {
    let Some(path) = &args.hosts else {
        return Ok(None);
    };
    let hosts = read_hosts(path)?;
    check_local_hosts(args.launch.launcher, &hosts)?;
    Ok(Some(hosts))
}

/// The task size in bytes: `--task-mib`, made smaller when the inputs (`total` bytes) would
/// give fewer than four tasks per worker, so that the work spreads evenly (but not below
/// 64 KiB, where a task's overhead starts to tell).
pub fn task_bytes(args: &PrepClusterArgs, total: u64, hosts: &[Host]) -> Result<u64> {
    if !(args.task_mib > 0.0 && args.task_mib.is_finite()) {
        bail!("--task-mib {} must be a positive number", args.task_mib);
    }
    let asked = ((args.task_mib * (1u64 << 20) as f64) as u64).max(1);
    let workers: u64 = hosts.iter().map(|h| u64::from(h.slots)).sum();
    let balanced = (total / (4 * workers.max(1))).max(64 << 10);
    Ok(asked.min(balanced))
}

/// Runs `map` over the byte `ranges` (input index, start, end) of `inputs` on the workers of
/// `hosts`, folding the results into `reducer` in range order; returns the reducer for the
/// caller to finish its output.
pub fn run_job<R: Reducer + 'static>(
    label: &str,
    args: &PrepClusterArgs,
    hosts: &[Host],
    map: MapJob,
    inputs: &[PathBuf],
    ranges: &[(u32, u64, u64)],
    reducer: R,
) -> Result<(R, JobStats)> {
    let workers: u32 = hosts.iter().map(|h| h.slots).sum();
    // Checksums of every range: a worker whose copy of an input differs fetches the range.
    let tasks = ranges
        .par_iter()
        .map(|&(input, start, end)| {
            let path = &inputs[input as usize];
            sha256_range(path, start, end).map(|sha256| TaskSpec {
                input,
                start,
                end,
                sha256,
            })
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(anyhow::Error::msg)?;
    let job = PrepJob {
        map,
        inputs: inputs
            .iter()
            .map(|path| {
                let bytes = std::fs::metadata(path)
                    .with_context(|| format!("cannot read {}", path.display()))?
                    .len();
                Ok(InputFile {
                    path: path.clone(),
                    bytes,
                })
            })
            .collect::<Result<_>>()?,
    };
    let input_bytes: u64 = tasks.iter().map(|t| t.end - t.start).sum();
    let task_count = tasks.len();
    let board = Arc::new(Mutex::new(TaskBoard::new(
        tasks,
        reducer,
        4 * workers as usize,
    )));
    let secrets = tempfile::Builder::new()
        .prefix("sovereign-prep-")
        .tempdir()
        .context("cannot create a private directory for the run token")?;
    let token = new_token()?;
    let token_file = secrets.path().join("token");
    write_secret(&token_file, &token)?;
    let service = Arc::new(PrepService::new(
        token.clone(),
        sovereign_proto::v1::PrepJob::from(&job),
        inputs,
        board.clone(),
    ));
    let dashboard = dashboard::start_for_run(
        args.dashboard.dashboard.as_deref(),
        secrets.path(),
        Some(&token),
    )?
    .map(|board| {
        board.event(&Event::now(EventKind::Started {
            job: label.to_string(),
            steps: task_count as u64,
            from_step: 0,
            world: workers,
            tokens_per_step: 0,
            model: String::new(),
        }));
        DashboardFeed {
            board,
            announced: Mutex::new(Vec::new()),
        }
    });

    let started = Instant::now();
    let job = Arc::new(MapReduce {
        label: label.to_string(),
        service: service.clone(),
        board: board.clone(),
        progress: Mutex::new(Progress::new("map tasks", "tasks", Some(input_bytes))),
        dashboard,
    });
    let outcome = run_group(
        job.clone(),
        &args.launch,
        hosts,
        (&token_file, &token),
        &format!(
            "{label}: {task_count} map tasks for {workers} workers, token in {}",
            token_file.display()
        ),
    );
    if let Some(feed) = &job.dashboard {
        feed.board.event(&Event::now(EventKind::ended(
            task_count as u64,
            outcome.as_ref().err().map(|e| format!("{e:#}")),
        )));
    }
    drop(job);
    outcome?;
    let map_seconds = started.elapsed().as_secs_f64();
    // The runtime is gone with every task that held the service (a connection a client left
    // open), so the board is ours again.
    drop(service);
    let board = Arc::try_unwrap(board)
        .map_err(|_| anyhow::anyhow!("the task board is still in use"))?
        .into_inner()
        .map_err(|_| anyhow::anyhow!("the task board is poisoned"))?;
    let stats = JobStats {
        tasks: task_count,
        workers,
        input_bytes,
        result_bytes: board.result_bytes,
        map_seconds,
    };
    Ok((board.into_reducer(), stats))
}

fn lock_board<R: Reducer>(
    board: &Mutex<TaskBoard<R>>,
) -> Result<std::sync::MutexGuard<'_, TaskBoard<R>>> {
    board
        .lock()
        .map_err(|_| anyhow::anyhow!("the task board is poisoned"))
}

/// A map-reduce job as a group's job: the Coordinator and Prep services, and what a lost worker
/// means (it is dropped and its tasks go to the others).
struct MapReduce<R: Reducer> {
    label: String,
    service: Arc<PrepService<R>>,
    board: Arc<Mutex<TaskBoard<R>>>,
    progress: Mutex<Progress>,
    dashboard: Option<DashboardFeed>,
}

/// The dashboard of a prep job, and the task board's workers it was told of: one entry per
/// joined worker, true once told it was dropped.
struct DashboardFeed {
    board: Arc<Board>,
    announced: Mutex<Vec<bool>>,
}

impl DashboardFeed {
    /// Tells the dashboard what the task board learnt since the last look: workers that joined
    /// or were dropped, tasks done, each worker's tasks and last heartbeat.
    fn sync<R: Reducer>(&self, tasks: &TaskBoard<R>) {
        let mut announced = lock(&self.announced);
        let workers = tasks.workers();
        for (rank, info) in workers.iter().enumerate().skip(announced.len()) {
            self.board.event(&Event::now(EventKind::Joined {
                rank: rank as u32,
                host: info.host.clone(),
                pid: info.pid,
                device: "cpu".into(),
            }));
            announced.push(false);
        }
        for (rank, info) in workers.iter().enumerate() {
            if let (Some(why), false) = (&info.gone, announced[rank]) {
                announced[rank] = true;
                self.board.event(&Event::now(EventKind::Died {
                    rank: Some(rank as u32),
                    pid: info.pid,
                    cause: why.clone(),
                }));
            }
            self.board
                .worker_progress(rank as u32, info.done, info.last_seen);
        }
        self.board.tasks_done(tasks.counts().1 as u64);
    }
}

impl<R: Reducer + 'static> Job for MapReduce<R> {
    fn services(self: Arc<Self>, mut server: Server) -> Router {
        server
            .add_service(CoordinatorServer::from_arc(self.service.clone()))
            .add_service(PrepServer::from_arc(self.service.clone()))
    }

    fn poll(&self) -> Result<bool> {
        let board = lock_board(&self.board)?;
        if let Some(why) = board.failure() {
            bail!("{why}; no output was written");
        }
        let (_, done) = board.counts();
        if let Some(feed) = &self.dashboard {
            feed.sync(&board);
        }
        let mut progress = lock(&self.progress);
        if board.is_finished() {
            progress.finish();
            return Ok(true);
        }
        progress.update(done as u64, board.input_done);
        Ok(false)
    }

    fn stalled(&self, timeout: Duration) -> Vec<Lost> {
        let Ok(board) = lock_board(&self.board) else {
            return Vec::new();
        };
        board
            .stalled(timeout)
            .into_iter()
            .map(|(worker, quiet)| Lost::Stalled {
                worker,
                pid: board.pid(worker),
                why: format!(
                    "stalled: no heartbeat for {:.0} s (--stall-timeout)",
                    quiet.as_secs_f64()
                ),
            })
            .collect()
    }

    /// A worker whose process died, or that stalled (its process is killed), is dropped: its
    /// tasks go back on the board for the others.
    fn lost(&self, lost: Vec<Lost>, group: &mut Group) -> Result<()> {
        let mut board = lock_board(&self.board)?;
        for gone in lost {
            match gone {
                Lost::Exited { pid, place, status } => match board.worker_of_pid(pid) {
                    Some(worker) => {
                        board.drop_worker(worker, &format!("its process died ({status})"));
                    }
                    None => tracing::warn!(
                        "the worker started by {place} (pid {pid}) exited before it joined: {status}"
                    ),
                },
                Lost::Stalled { worker, pid, why } => {
                    board.drop_worker(worker, &why);
                    if let Some(pid) = pid {
                        group.kill(pid);
                    }
                }
            }
        }
        Ok(())
    }

    fn interrupted(&self) -> Result<()> {
        bail!("{}: interrupted; no output was written", self.label)
    }

    fn all_gone(&self) -> String {
        let (total, done) = lock_board(&self.board).map_or((0, 0), |b| b.counts());
        format!(
            "every worker is gone with {done} of {total} map tasks done; no output was written \
             (the log says why each one went)"
        )
    }

    fn progress(&self) -> Option<watch::Receiver<u64>> {
        None
    }

    /// After the last task: the workers hear "done" on their next request and exit; one that was
    /// dropped (a frozen process) is killed instead. An exit status other than success is
    /// logged: the output is whole either way. Workers still running after 30 s are stopped.
    async fn finish(&self, group: &mut Group) -> Result<()> {
        let dropped = |pid| lock_board(&self.board).is_ok_and(|b| b.is_dropped_pid(pid));
        let _ = tokio::time::timeout(
            Duration::from_secs(30),
            let_workers_exit(group.workers(), dropped),
        )
        .await;
        Ok(())
    }
}

/// Waits for every worker process to exit, killing first those that `dropped` names.
async fn let_workers_exit(children: &mut [Worker], dropped: impl Fn(u32) -> bool) {
    for worker in children.iter_mut() {
        if dropped(worker.child.id()) {
            let _ = worker.child.kill();
        }
        loop {
            match worker.child.try_wait() {
                Ok(Some(status)) => {
                    if !status.success() && !dropped(worker.child.id()) {
                        tracing::warn!(
                            "a worker ({}, pid {}) exited with {status} after the job",
                            worker.place,
                            worker.child.id()
                        );
                    }
                    break;
                }
                Ok(None) => tokio::time::sleep(Duration::from_millis(50)).await,
                Err(_) => break,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dashboard::board::WorkerState;

    #[test]
    fn the_dashboard_hears_of_joins_drops_and_tasks_done_once_each() {
        let mut tasks = board::tests::board(3, 4);
        let dashboard = Board::new();
        dashboard.event(&Event::now(EventKind::Started {
            job: "tokenize".into(),
            steps: 3,
            from_step: 0,
            world: 2,
            tokens_per_step: 0,
            model: String::new(),
        }));
        let feed = DashboardFeed {
            board: dashboard.clone(),
            announced: Mutex::new(Vec::new()),
        };
        let (a, b) = (tasks.join("h0".into(), 10), tasks.join("h1".into(), 11));
        tasks.next(a).unwrap();
        tasks.next(b).unwrap();
        tasks.complete(a, 0, &[1]).unwrap();
        feed.sync(&tasks);
        let status = dashboard.status();
        assert_eq!((status.unit, status.step, status.steps), ("tasks", 1, 3));
        let rows: Vec<(u32, u64, WorkerState)> = status
            .workers
            .iter()
            .map(|w| (w.pid, w.step, w.state))
            .collect();
        assert_eq!(
            rows,
            [
                (10, 1, WorkerState::Training),
                (11, 0, WorkerState::Training)
            ]
        );
        tasks.drop_worker(b, "its process died (signal: 9 (SIGKILL))");
        feed.sync(&tasks);
        feed.sync(&tasks);
        let status = dashboard.status();
        assert_eq!(status.workers[1].state, WorkerState::Dead);
        assert_eq!(status.failures, 1);
        let (snapshot, _) = dashboard.subscribe();
        let events: serde_json::Value = serde_json::from_str(&snapshot.data).unwrap();
        let kinds: Vec<&str> = events["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["kind"].as_str().unwrap())
            .collect();
        assert_eq!(kinds, ["started", "joined", "joined", "died"]);
    }
}

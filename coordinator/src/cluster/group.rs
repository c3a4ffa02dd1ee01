//! A group of worker processes on one job, training or data prep ([`run_group`]): the runtime,
//! the gRPC server with the job's services, the launched workers, and the one loop that watches
//! them. Every worker process that exits and every worker that stops sending heartbeats is handed
//! to the job, which says what it means ([`Job::lost`]): training restarts the whole group from
//! its last checkpoint, a prep job gives the worker's tasks to the others.

use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Result, bail};
use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio::sync::watch;
use tonic::transport::Server;
use tonic::transport::server::Router;

use super::hosts::Host;
use super::launch::{Launch, Worker, stop};
use super::serve::serve;
use crate::cli::LaunchArgs;

/// A worker the group lost.
#[derive(Clone, Debug)]
pub enum Lost {
    /// Its process exited.
    Exited {
        /// The process id.
        pid: u32,
        /// Where it ran ("local", "ssh to HOST").
        place: String,
        /// How it ended.
        status: ExitStatus,
    },
    /// It sent no heartbeat for longer than `--stall-timeout`.
    Stalled {
        /// Its number in the job (a rank, or a prep job's worker number).
        worker: u32,
        /// Its process id, when it told one.
        pid: Option<u32>,
        /// The job's description of the stall, for the log.
        why: String,
    },
}

impl Lost {
    /// Whether this is a process that ended by a signal or with a failure status.
    pub fn failed(&self) -> bool {
        match self {
            Lost::Exited { status, .. } => !status.success(),
            Lost::Stalled { .. } => true,
        }
    }

    /// Whether a signal ended the process (a kill, a crash), not its own exit.
    pub fn by_signal(&self) -> bool {
        matches!(self, Lost::Exited { status, .. } if status.signal().is_some())
    }
}

/// What a group of workers works on.
pub trait Job: Send + Sync + 'static {
    /// Adds the job's gRPC services to the server.
    fn services(self: Arc<Self>, server: Server) -> Router;

    /// Looks at the job (and updates its progress line): true once it is done; an error when it
    /// failed for good.
    fn poll(&self) -> Result<bool>;

    /// Workers that sent no heartbeat for longer than `timeout`.
    fn stalled(&self, timeout: Duration) -> Vec<Lost>;

    /// Deals with workers that are gone: goes on without them, restarts `group`, or gives up
    /// with an error.
    fn lost(&self, lost: Vec<Lost>, group: &mut Group) -> Result<()>;

    /// Ctrl-C: stop gracefully where the job can (an error stops it at once).
    fn interrupted(&self) -> Result<()>;

    /// Why the job cannot go on when every worker process has exited before it was done.
    fn all_gone(&self) -> String;

    /// Wakes the loop when the job moves on (besides its regular look every 100 ms).
    fn progress(&self) -> Option<watch::Receiver<u64>>;

    /// After the job is done: lets the workers finish and exit, and says how it went.
    fn finish(&self, group: &mut Group) -> impl Future<Output = Result<()>>;
}

/// The running worker processes of a group and how to start them again.
pub struct Group {
    launch: Launch,
    workers: Vec<Worker>,
    /// Per worker: its exit was already handed to the job.
    reported: Vec<bool>,
}

impl Group {
    /// Starts a generation of workers.
    pub fn start(&mut self) -> Result<()> {
        self.workers = self.launch.start()?;
        self.reported = vec![false; self.workers.len()];
        Ok(())
    }

    /// Kills and reaps every worker process.
    pub fn stop(&mut self) {
        stop(&mut self.workers);
        self.reported.clear();
    }

    /// Kills worker process `pid`, if this group started it.
    pub fn kill(&mut self, pid: u32) {
        if let Some(worker) = self.workers.iter_mut().find(|w| w.child.id() == pid) {
            let _ = worker.child.kill();
        }
    }

    /// The worker processes, for a job's last look at them.
    pub fn workers(&mut self) -> &mut [Worker] {
        &mut self.workers
    }

    /// The processes that exited since the last call.
    fn exits(&mut self) -> Result<Vec<Lost>> {
        let mut exits = Vec::new();
        for (worker, reported) in self.workers.iter_mut().zip(self.reported.iter_mut()) {
            if *reported {
                continue;
            }
            if let Some(status) = worker.child.try_wait()? {
                *reported = true;
                exits.push(Lost::Exited {
                    pid: worker.child.id(),
                    place: worker.place.clone(),
                    status,
                });
            }
        }
        Ok(exits)
    }

    /// Whether this group started processes and every one of them has exited.
    fn all_exited(&mut self) -> bool {
        !self.workers.is_empty()
            && self
                .workers
                .iter_mut()
                .all(|w| matches!(w.child.try_wait(), Ok(Some(_))))
    }
}

/// Runs `job` on the workers of `hosts`: serves its services on `--bind` (announcing
/// `announce`), starts the workers with the run's token (`token`, in `token_file`), and watches
/// them until the job is done or fails. Every worker process is stopped before it returns.
pub fn run_group<J: Job>(
    job: Arc<J>,
    args: &LaunchArgs,
    hosts: &[Host],
    token: (&std::path::Path, &str),
    announce: &str,
) -> Result<()> {
    let (token_file, token) = token;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async {
        // One listener for the whole job, made before any worker starts: a Ctrl-C that arrives
        // while the watcher is busy waits for it here instead of being lost.
        let mut interrupts = signal(SignalKind::interrupt())?;
        let server = serve(args, |builder| job.clone().services(builder)).await?;
        server.announce(announce);
        let mut group = Group {
            launch: server.launch(args, hosts, token_file, token),
            workers: Vec::new(),
            reported: Vec::new(),
        };
        group.start()?;
        let stall_timeout = Duration::from_secs(args.stall_timeout);
        let mut outcome = watch_group(&*job, &mut group, &mut interrupts, stall_timeout).await;
        if outcome.is_ok() {
            outcome = job.finish(&mut group).await;
        }
        group.stop();
        // Gracefully: the answer to the last request must reach its worker.
        server.shutdown().await;
        outcome
    })
}

/// Watches the group until the job is done: hands every exit and stall to the job, and each
/// Ctrl-C (SIGINT) heard on `interrupts`.
async fn watch_group<J: Job>(
    job: &J,
    group: &mut Group,
    interrupts: &mut Signal,
    stall_timeout: Duration,
) -> Result<()> {
    let mut progress = job.progress();
    loop {
        if job.poll()? {
            return Ok(());
        }
        let mut lost = group.exits()?;
        lost.extend(job.stalled(stall_timeout));
        if !lost.is_empty() {
            job.lost(lost, group)?;
            continue;
        }
        if group.all_exited() {
            bail!("{}", job.all_gone());
        }
        let changed = async {
            match progress.as_mut() {
                Some(progress) => {
                    let _ = progress.changed().await;
                }
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = changed => {}
            _ = tokio::time::sleep(Duration::from_millis(100)) => {}
            _ = interrupts.recv() => job.interrupted()?,
        }
    }
}

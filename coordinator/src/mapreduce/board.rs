//! The task board of a map-reduce job: which tasks wait and which worker runs which, the results
//! that arrived before their turn, and the reducer they are folded into in task order. A worker
//! that dies, stalls or sends a result that fails its checks is dropped and its tasks go back to
//! the queue, so nothing it held is lost.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use sovereign_common::prep::Reducer;

/// One map task: a byte range of one input, with the checksum of its bytes.
#[derive(Clone, Debug)]
pub struct TaskSpec {
    /// Index into the job's inputs.
    pub input: u32,
    /// First byte.
    pub start: u64,
    /// One past the last byte.
    pub end: u64,
    /// sha256 (hex) of the range.
    pub sha256: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Pending,
    Running(u32),
    Done,
}

/// A worker that joined.
pub struct WorkerInfo {
    /// Its host.
    pub host: String,
    /// Its process id.
    pub pid: u32,
    /// Why it was dropped, once it was.
    pub gone: Option<String>,
    /// When it was last heard from.
    pub last_seen: Instant,
    /// Tasks whose results it delivered.
    pub done: u64,
}

/// What a worker should do next.
#[derive(Debug, PartialEq, Eq)]
pub enum Next {
    /// Run task `id`.
    Work(usize),
    /// Nothing now; ask again.
    Wait,
    /// Every task is done.
    Done,
}

/// Why a result was not taken.
#[derive(Debug)]
pub enum Refusal {
    /// The result (or its sender) is wrong: the worker was dropped and the task requeued.
    Refused(String),
    /// Folding it in failed (the output could not be written): the job cannot go on.
    Fatal(String),
}

/// See the module documentation.
pub struct TaskBoard<R: Reducer> {
    tasks: Vec<TaskSpec>,
    state: Vec<State>,
    /// Checked results waiting for the tasks before them.
    ready: BTreeMap<usize, R::Part>,
    /// The next task to fold in.
    next_accept: usize,
    /// Tasks are handed out at most this far ahead of `next_accept`, which bounds `ready`.
    window: usize,
    reducer: R,
    workers: Vec<WorkerInfo>,
    /// Why the job cannot finish, if something said so.
    failure: Option<String>,
    /// Bytes of results received.
    pub result_bytes: u64,
    /// Input bytes of the tasks folded in.
    pub input_done: u64,
}

impl<R: Reducer> TaskBoard<R> {
    /// A board for `tasks`, handing out at most `window` tasks ahead of the oldest unfinished.
    pub fn new(tasks: Vec<TaskSpec>, reducer: R, window: usize) -> Self {
        Self {
            state: vec![State::Pending; tasks.len()],
            tasks,
            ready: BTreeMap::new(),
            next_accept: 0,
            window: window.max(1),
            reducer,
            workers: Vec::new(),
            failure: None,
            result_bytes: 0,
            input_done: 0,
        }
    }

    /// The task `id`.
    pub fn task(&self, id: usize) -> &TaskSpec {
        &self.tasks[id]
    }

    /// How many tasks the job has, and how many are folded in.
    pub fn counts(&self) -> (usize, usize) {
        (self.tasks.len(), self.next_accept)
    }

    /// Whether every task's result is folded in.
    pub fn is_finished(&self) -> bool {
        self.next_accept == self.tasks.len()
    }

    /// Why the job cannot finish, if it cannot.
    pub fn failure(&self) -> Option<&str> {
        self.failure.as_deref()
    }

    /// Stops the job with `why`.
    pub fn fail(&mut self, why: String) {
        self.failure.get_or_insert(why);
    }

    /// Adds a worker; returns its id.
    pub fn join(&mut self, host: String, pid: u32) -> u32 {
        self.workers.push(WorkerInfo {
            host,
            pid,
            gone: None,
            last_seen: Instant::now(),
            done: 0,
        });
        (self.workers.len() - 1) as u32
    }

    /// The workers that joined, by worker number.
    pub fn workers(&self) -> &[WorkerInfo] {
        &self.workers
    }

    /// "worker W (pid P on HOST)", for logs.
    pub fn describe(&self, worker: u32) -> String {
        match self.workers.get(worker as usize) {
            Some(w) => format!("worker {worker} (pid {} on {})", w.pid, w.host),
            None => format!("worker {worker}"),
        }
    }

    /// Notes that `worker` is alive.
    pub fn seen(&mut self, worker: u32) {
        if let Some(w) = self.workers.get_mut(worker as usize) {
            w.last_seen = Instant::now();
        }
    }

    /// Fails unless `worker` joined and was not dropped.
    fn check_worker(&self, worker: u32) -> Result<(), String> {
        match self.workers.get(worker as usize) {
            None => Err(format!("no worker {worker} joined this job")),
            Some(WorkerInfo {
                gone: Some(why), ..
            }) => Err(format!("worker {worker} was dropped from the job: {why}")),
            Some(_) => Ok(()),
        }
    }

    /// The next task for `worker`: the lowest pending one within the window.
    pub fn next(&mut self, worker: u32) -> Result<Next, String> {
        self.check_worker(worker)?;
        self.seen(worker);
        if self.is_finished() {
            return Ok(Next::Done);
        }
        let limit = (self.next_accept + self.window).min(self.tasks.len());
        match (self.next_accept..limit).find(|&id| self.state[id] == State::Pending) {
            Some(id) => {
                self.state[id] = State::Running(worker);
                Ok(Next::Work(id))
            }
            None => Ok(Next::Wait),
        }
    }

    /// The range of task `task` if `worker` runs it; a result for any other task is refused.
    pub fn running(&self, worker: u32, task: u64) -> Result<(u64, u64), String> {
        self.check_worker(worker)?;
        let id = usize::try_from(task).unwrap_or(usize::MAX);
        match self.state.get(id) {
            None => Err(format!(
                "there is no task {task} (the job has {})",
                self.tasks.len()
            )),
            Some(&State::Running(w)) if w == worker => {
                Ok((self.tasks[id].start, self.tasks[id].end))
            }
            Some(_) => Err(format!("task {task} is not assigned to worker {worker}")),
        }
    }

    /// Takes `worker`'s result for `task`: checks it, then folds in every result whose turn has
    /// come. A result that fails its checks drops the worker and requeues its tasks.
    pub fn complete(&mut self, worker: u32, task: u64, payload: &[u8]) -> Result<(), Refusal> {
        let range = self.running(worker, task).map_err(Refusal::Refused)?;
        let id = task as usize;
        let part = match self.reducer.decode(range, payload) {
            Ok(part) => part,
            Err(why) => {
                let why = format!("its result for task {task} fails its checks: {why}");
                self.drop_worker(worker, &why);
                return Err(Refusal::Refused(why));
            }
        };
        self.state[id] = State::Done;
        if let Some(info) = self.workers.get_mut(worker as usize) {
            info.done += 1;
        }
        self.result_bytes += payload.len() as u64;
        self.ready.insert(id, part);
        while let Some(part) = self.ready.remove(&self.next_accept) {
            if let Err(error) = self.reducer.accept(part) {
                let why = error.to_string();
                self.fail(why.clone());
                return Err(Refusal::Fatal(why));
            }
            let spec = &self.tasks[self.next_accept];
            self.input_done += spec.end - spec.start;
            self.next_accept += 1;
        }
        Ok(())
    }

    /// Drops `worker` (logged with `why`) and puts its unfinished tasks back in the queue;
    /// returns them. A worker already dropped is left alone.
    pub fn drop_worker(&mut self, worker: u32, why: &str) -> Vec<usize> {
        let Some(info) = self.workers.get_mut(worker as usize) else {
            return Vec::new();
        };
        if info.gone.is_some() {
            return Vec::new();
        }
        info.gone = Some(why.to_string());
        let requeued: Vec<usize> = (0..self.tasks.len())
            .filter(|&id| self.state[id] == State::Running(worker))
            .collect();
        for &id in &requeued {
            self.state[id] = State::Pending;
        }
        let tasks = if requeued.is_empty() {
            "it held no task".to_string()
        } else {
            format!("task(s) {requeued:?} go back to the queue")
        };
        tracing::warn!("dropped {}: {why}; {tasks}", self.describe(worker));
        requeued
    }

    /// The worker with process id `pid`, if one joined.
    pub fn worker_of_pid(&self, pid: u32) -> Option<u32> {
        self.workers
            .iter()
            .position(|w| w.pid == pid)
            .map(|w| w as u32)
    }

    /// The process id `worker` joined with.
    pub fn pid(&self, worker: u32) -> Option<u32> {
        self.workers.get(worker as usize).map(|w| w.pid)
    }

    /// Whether the worker with process id `pid` was dropped.
    pub fn is_dropped_pid(&self, pid: u32) -> bool {
        self.workers
            .iter()
            .any(|w| w.pid == pid && w.gone.is_some())
    }

    /// The workers not dropped and not heard from for longer than `timeout`, with how long.
    pub fn stalled(&self, timeout: Duration) -> Vec<(u32, Duration)> {
        self.workers
            .iter()
            .enumerate()
            .filter(|(_, w)| w.gone.is_none() && w.last_seen.elapsed() > timeout)
            .map(|(i, w)| (i as u32, w.last_seen.elapsed()))
            .collect()
    }

    /// The reducer, once the job is over.
    pub fn into_reducer(self) -> R {
        self.reducer
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use sovereign_common::data::PrepError;
    use sovereign_common::prep::wire::ResultError;

    /// Collects task payloads (one byte each) in the order they are accepted.
    #[derive(Default)]
    pub(crate) struct Collect(Vec<u8>);

    impl Reducer for Collect {
        type Part = u8;
        fn decode(&self, _: (u64, u64), payload: &[u8]) -> Result<u8, ResultError> {
            match payload {
                [b] if *b != 0 => Ok(*b),
                _ => Err(ResultError::Content("not one nonzero byte".into())),
            }
        }
        fn accept(&mut self, part: u8) -> Result<(), PrepError> {
            self.0.push(part);
            Ok(())
        }
    }

    /// A board of `tasks` tasks of 10 bytes each.
    pub(crate) fn board(tasks: usize, window: usize) -> TaskBoard<Collect> {
        let specs = (0..tasks as u64)
            .map(|i| TaskSpec {
                input: 0,
                start: i * 10,
                end: i * 10 + 10,
                sha256: String::new(),
            })
            .collect();
        TaskBoard::new(specs, Collect::default(), window)
    }

    #[test]
    fn results_fold_in_task_order_within_the_window() {
        let mut board = board(3, 2);
        let (a, b) = (board.join("h".into(), 1), board.join("h".into(), 2));
        assert_eq!(board.next(a).unwrap(), Next::Work(0));
        assert_eq!(board.next(b).unwrap(), Next::Work(1));
        // Task 2 is beyond the window until task 0 is folded in.
        assert_eq!(board.next(b).unwrap(), Next::Wait);
        board.complete(b, 1, &[2]).unwrap();
        assert_eq!(board.counts(), (3, 0));
        board.complete(a, 0, &[1]).unwrap();
        assert_eq!(board.next(a).unwrap(), Next::Work(2));
        board.complete(a, 2, &[3]).unwrap();
        assert!(board.is_finished());
        assert_eq!(board.next(b).unwrap(), Next::Done);
        assert_eq!(board.input_done, 30);
        assert_eq!(board.into_reducer().0, vec![1, 2, 3]);
    }

    #[test]
    fn a_lost_or_lying_worker_loses_nothing() {
        let mut board = board(2, 4);
        let (a, b) = (board.join("h".into(), 1), board.join("h".into(), 2));
        assert_eq!(board.next(a).unwrap(), Next::Work(0));
        assert_eq!(board.next(b).unwrap(), Next::Work(1));
        // A result for a task it does not hold, then a result that fails its checks.
        let Err(Refusal::Refused(why)) = board.complete(b, 0, &[1]) else {
            panic!()
        };
        assert_eq!(why, "task 0 is not assigned to worker 1");
        let Err(Refusal::Refused(why)) = board.complete(b, 1, &[0]) else {
            panic!()
        };
        assert!(
            why.contains("fails its checks: not one nonzero byte"),
            "{why}"
        );
        assert!(
            board
                .next(b)
                .unwrap_err()
                .starts_with("worker 1 was dropped")
        );
        // Worker a dies holding task 0: both tasks go to a new worker.
        assert_eq!(board.drop_worker(a, "died"), vec![0]);
        assert_eq!(board.worker_of_pid(2), Some(b));
        let c = board.join("h".into(), 3);
        assert_eq!(board.next(c).unwrap(), Next::Work(0));
        assert_eq!(board.next(c).unwrap(), Next::Work(1));
        board.complete(c, 1, &[2]).unwrap();
        board.complete(c, 0, &[1]).unwrap();
        assert_eq!(board.into_reducer().0, vec![1, 2]);
    }
}

//! A worker's side of a data-prep job: pull a map task, get its input range (from the local
//! copy when its checksum matches, else from the coordinator), run the map on a blocking thread,
//! and upload the result in ≤ 1 MiB chunks with its sha256. "Done" ends the loop.

use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use sha2::{Digest, Sha256};
use sovereign_common::hashing::hex;
use sovereign_common::prep::{Mapper, PrepJob, TaskError};
use sovereign_proto::v1::coordinator_client::CoordinatorClient;
use sovereign_proto::v1::prep_client::PrepClient;
use sovereign_proto::v1::{ResultChunk, Task, TaskRequest, task};
use tonic::transport::Channel;

use crate::data::fetch_range;

/// The largest piece of a result sent at once.
const CHUNK_BYTES: usize = 1 << 20;

/// Runs the job's tasks until the coordinator says every one is done.
pub async fn run_prep(
    job: PrepJob,
    worker: u32,
    channel: Channel,
    token: &str,
    data_dir: Option<&Path>,
) -> Result<()> {
    let mapper = Arc::new(Mapper::new(&job.map).map_err(anyhow::Error::msg)?);
    let mut prep = PrepClient::new(channel.clone());
    let mut coordinator = CoordinatorClient::new(channel);
    // Per input: where this worker reads it, and whether that copy matched so far.
    let mut local: Vec<(PathBuf, bool)> = job
        .inputs
        .iter()
        .map(|input| match (data_dir, input.path.file_name()) {
            (Some(dir), Some(name)) => (dir.join(name), true),
            _ => (input.path.clone(), true),
        })
        .collect();
    let mut done = 0u64;
    loop {
        let task = prep
            .next_task(TaskRequest {
                token: token.to_string(),
                worker,
            })
            .await
            .map_err(|s| anyhow::anyhow!("asking for a task: {}", s.message()))?
            .into_inner();
        match task.kind() {
            task::Kind::Done => {
                tracing::info!("worker {worker}: every task is done ({done} ran here)");
                return Ok(());
            }
            task::Kind::Wait => {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
            task::Kind::Work => {}
        }
        let index = task.input as usize;
        let Some(input) = job.inputs.get(index) else {
            bail!("task {} names input {index}, which the job lacks", task.id);
        };
        let (path, usable) = &mut local[index];
        let bytes = match read_local(path, &task).await? {
            Ok(bytes) => bytes,
            Err(why) => {
                if *usable {
                    tracing::info!(
                        "{why}; fetching the ranges of {} from the coordinator",
                        input.path.display()
                    );
                    *usable = false;
                }
                fetch(&mut coordinator, token, &task).await?
            }
        };
        let (mapper, name, start) = (mapper.clone(), input.path.clone(), task.start);
        let result = tokio::task::spawn_blocking(move || mapper.run(&bytes, &name, start))
            .await
            .context("the map thread panicked")?;
        submit(&mut prep, token, worker, &task, result).await?;
        done += 1;
    }
}

/// The task's range from the local copy, or why that copy cannot serve it (missing, or a
/// different checksum).
async fn read_local(path: &Path, task: &Task) -> Result<Result<Vec<u8>, String>> {
    let (path, task) = (path.to_path_buf(), task.clone());
    tokio::task::spawn_blocking(move || {
        let file = std::fs::File::open(&path)
            .map_err(|e| format!("{} is not readable here ({e})", path.display()))?;
        let mut bytes = vec![0u8; (task.end - task.start) as usize];
        file.read_exact_at(&mut bytes, task.start).map_err(|e| {
            format!(
                "{} has no bytes [{}, {}) ({e})",
                path.display(),
                task.start,
                task.end
            )
        })?;
        let sum = hex(&Sha256::digest(&bytes));
        if sum != task.sha256 {
            return Err(format!(
                "bytes [{}, {}) of {} differ from the coordinator's (sha256 {sum})",
                task.start,
                task.end,
                path.display()
            ));
        }
        Ok(bytes)
    })
    .await
    .context("the reading thread panicked")
}

/// The task's range from the coordinator, checked against its checksum.
async fn fetch(
    coordinator: &mut CoordinatorClient<Channel>,
    token: &str,
    task: &Task,
) -> Result<Vec<u8>> {
    let mut bytes = Vec::with_capacity((task.end - task.start) as usize);
    let file = format!("input:{}", task.input);
    fetch_range(coordinator, token, &file, (task.start, task.end), |data| {
        bytes.extend_from_slice(data);
        Ok(())
    })
    .await?;
    let sum = hex(&Sha256::digest(&bytes));
    if sum != task.sha256 {
        bail!(
            "bytes [{}, {}) of input {} arrived with sha256 {sum}, not {}; the transfer was damaged",
            task.start,
            task.end,
            task.input,
            task.sha256
        );
    }
    Ok(bytes)
}

/// Uploads a task's result (or why it failed) in chunks; the last carries the sha256.
async fn submit(
    prep: &mut PrepClient<Channel>,
    token: &str,
    worker: u32,
    task: &Task,
    result: Result<Vec<u8>, TaskError>,
) -> Result<()> {
    let chunk = |data: &[u8], sha256: String, error: String| ResultChunk {
        token: token.to_string(),
        worker,
        task: task.id,
        data: data.to_vec().into(),
        sha256,
        error,
    };
    let chunks = match &result {
        Ok(payload) => {
            let sha256 = hex(&Sha256::digest(payload));
            let mut pieces: Vec<&[u8]> = payload.chunks(CHUNK_BYTES).collect();
            if pieces.is_empty() {
                pieces.push(&[]);
            }
            let last = pieces.len() - 1;
            pieces
                .into_iter()
                .enumerate()
                .map(|(i, piece)| {
                    chunk(
                        piece,
                        if i == last {
                            sha256.clone()
                        } else {
                            String::new()
                        },
                        String::new(),
                    )
                })
                .collect()
        }
        Err(why) => vec![chunk(&[], String::new(), why.to_string())],
    };
    prep.submit(tokio_stream::iter(chunks)).await.map_err(|s| {
        anyhow::anyhow!("the coordinator refused task {}: {}", task.id, s.message())
    })?;
    if let Err(why) = result {
        bail!("task {} failed: {why}", task.id);
    }
    Ok(())
}

//! The data the coordinator serves: each rank's byte ranges of the data files with their
//! checksums (in its plan), and the ranges themselves for workers that lack them (FetchData).

use std::fs::File;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use sovereign_common::data::dataset::sidecar_path;
use sovereign_common::hashing::sha256_range;
use sovereign_common::train::settings::RunConfig;
use sovereign_proto::v1::{DataChunk, DataRange, FetchRequest};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use super::serve::{check_token, remote};

/// Per rank, the data ranges it reads (its shard of train.bin; all of val.bin for rank 0, which
/// evaluates), with the checksums a worker checks its copy against.
pub fn data_ranges(config: &RunConfig, shards: &[(u64, u64)]) -> Result<Vec<Vec<DataRange>>> {
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

/// The answer to a FetchData request for one of `files` (by name), from a client holding the
/// run's `token`: the range streamed from a blocking thread, or a refusal (logged) for a wrong
/// token, an unknown file or a range outside it.
pub fn answer_fetch(
    files: &[(String, PathBuf)],
    token: &str,
    request: Request<FetchRequest>,
) -> Result<Response<ReceiverStream<Result<DataChunk, Status>>>, Status> {
    let from = remote(&request);
    let fetch = request.into_inner();
    check_token(token, &fetch.token, "a data fetch", &from)?;
    fetch_stream(files, fetch, &from).map(Response::new)
}

/// [`answer_fetch`] once the token is checked.
fn fetch_stream(
    files: &[(String, PathBuf)],
    fetch: FetchRequest,
    from: &str,
) -> Result<ReceiverStream<Result<DataChunk, Status>>, Status> {
    let Some((_, path)) = files.iter().find(|(name, _)| *name == fetch.file) else {
        tracing::warn!(
            "refused a fetch of {:?} from {from}: no such data file",
            fetch.file
        );
        return Err(Status::not_found(format!(
            "the run has no data file {:?}",
            fetch.file
        )));
    };
    let len = std::fs::metadata(path)
        .map_err(|e| Status::internal(format!("{}: {e}", path.display())))?
        .len();
    if fetch.start > fetch.end || fetch.end > len {
        tracing::warn!(
            "refused a fetch of bytes [{}, {}) of {} from {from}: outside its {len} bytes",
            fetch.start,
            fetch.end,
            path.display()
        );
        return Err(Status::out_of_range(format!(
            "bytes [{}, {}) are not inside the {len} bytes of {}",
            fetch.start, fetch.end, fetch.file
        )));
    }
    tracing::info!(
        "sending bytes [{}, {}) of {} to {from}",
        fetch.start,
        fetch.end,
        path.display()
    );
    let (tx, rx) = mpsc::channel(4);
    let path = path.clone();
    tokio::task::spawn_blocking(move || send_range(&path, fetch.start, fetch.end, &tx));
    Ok(ReceiverStream::new(rx))
}

/// Streams bytes `[start, end)` of `path` in chunks of at most 1 MiB (stops early when the
/// receiver goes away).
pub fn send_range(
    path: &Path,
    start: u64,
    end: u64,
    chunks: &mpsc::Sender<Result<DataChunk, Status>>,
) {
    use std::io::{Read, Seek, SeekFrom};
    let read = || -> std::io::Result<()> {
        let mut file = File::open(path)?;
        file.seek(SeekFrom::Start(start))?;
        let mut left = end - start;
        while left > 0 {
            let mut data = vec![0u8; left.min(1 << 20) as usize];
            file.read_exact(&mut data)?;
            left -= data.len() as u64;
            if chunks
                .blocking_send(Ok(DataChunk { data: data.into() }))
                .is_err()
            {
                return Ok(());
            }
        }
        Ok(())
    };
    if let Err(e) = read() {
        let _ = chunks.blocking_send(Err(Status::internal(format!(
            "reading {}: {e}",
            path.display()
        ))));
    }
}

//! The worker's copies of the data it trains on. The plan names each byte range the rank reads
//! with its checksum; a copy that is missing or differs (no shared filesystem, a stale file) is
//! fetched from the coordinator into a cache file of the same length, holding only that range,
//! so the training code reads it exactly as it would the original.

use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use sovereign_common::data::dataset::sidecar_path;
use sovereign_common::hashing::sha256_range;
use sovereign_proto::v1::coordinator_client::CoordinatorClient;
use sovereign_proto::v1::{DataRange, FetchRequest};
use tonic::transport::Channel;

/// Where this worker looks for its data.
pub struct DataPlaces<'a> {
    /// A directory holding the data files under their own names, instead of the plan's paths.
    pub data_dir: Option<&'a Path>,
    /// Where fetched ranges are cached.
    pub cache_dir: &'a Path,
}

/// The local path of every range's file (by file name: "train", "val"), fetching what is
/// missing or differs.
pub async fn local_data(
    ranges: &[DataRange],
    places: &DataPlaces<'_>,
    coordinator: &mut CoordinatorClient<Channel>,
    token: &str,
) -> Result<Vec<(String, PathBuf)>> {
    let mut found = Vec::new();
    for range in ranges {
        let planned = PathBuf::from(&range.path);
        let here = match (places.data_dir, planned.file_name()) {
            (Some(dir), Some(name)) => dir.join(name),
            _ => planned.clone(),
        };
        let path = match check(&here, range).await? {
            Ok(()) => here,
            Err(why) => {
                let cached = places
                    .cache_dir
                    .join(&range.sha256)
                    .join(planned.file_name().unwrap_or("data.bin".as_ref()));
                if check(&cached, range).await?.is_err() {
                    tracing::info!(
                        "{why}; fetching bytes [{}, {}) of {} from the coordinator into {}",
                        range.start,
                        range.end,
                        range.file,
                        cached.display()
                    );
                    fetch(range, &cached, coordinator, token).await?;
                }
                cached
            }
        };
        found.push((range.file.clone(), path));
    }
    Ok(found)
}

/// [`holds_range`] on a blocking thread (it reads the whole range), so the runtime keeps
/// sending heartbeats meanwhile.
async fn check(path: &Path, range: &DataRange) -> Result<Result<(), String>> {
    let (path, range) = (path.to_path_buf(), range.clone());
    tokio::task::spawn_blocking(move || holds_range(&path, &range))
        .await
        .context("the checksum thread panicked")
}

/// Whether `path` has the plan's length and the range's checksum; the error says why not.
fn holds_range(path: &Path, range: &DataRange) -> Result<(), String> {
    let len = std::fs::metadata(path)
        .map_err(|_| format!("{} is not here", path.display()))?
        .len();
    if len != range.file_bytes {
        return Err(format!(
            "{} has {len} bytes, not the run's {}",
            path.display(),
            range.file_bytes
        ));
    }
    let sum = sha256_range(path, range.start, range.end).map_err(|e| e.to_string())?;
    if sum != range.sha256 {
        return Err(format!(
            "bytes [{}, {}) of {} have sha256 {sum}, not the run's {}",
            range.start,
            range.end,
            path.display(),
            range.sha256
        ));
    }
    Ok(())
}

/// Streams bytes `[start, end)` of the coordinator's data file `file` ("train", "val",
/// "input:N") into `sink`, chunk by chunk; returns how many bytes came.
pub async fn fetch_range(
    coordinator: &mut CoordinatorClient<Channel>,
    token: &str,
    file: &str,
    (start, end): (u64, u64),
    mut sink: impl FnMut(&[u8]) -> Result<()>,
) -> Result<u64> {
    let mut stream = coordinator
        .fetch_data(FetchRequest {
            token: token.to_string(),
            file: file.to_string(),
            start,
            end,
        })
        .await
        .map_err(|s| anyhow::anyhow!("the coordinator refused the fetch: {}", s.message()))?
        .into_inner();
    let mut received = 0u64;
    while let Some(chunk) = stream
        .message()
        .await
        .map_err(|s| anyhow::anyhow!("fetching {file}: {}", s.message()))?
    {
        received += chunk.data.len() as u64;
        if received > end - start {
            bail!(
                "the coordinator sent more than the {} bytes asked for",
                end - start
            );
        }
        sink(&chunk.data)?;
    }
    Ok(received)
}

/// Streams the range from the coordinator into `path` (a file of the whole length; only the
/// range is written) and its sidecar beside it, then checks the checksum.
async fn fetch(
    range: &DataRange,
    path: &Path,
    coordinator: &mut CoordinatorClient<Channel>,
    token: &str,
) -> Result<()> {
    let dir = path.parent().context("the cache path has no directory")?;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    file.set_len(range.file_bytes)?;
    file.seek(SeekFrom::Start(range.start))?;
    let received = fetch_range(
        coordinator,
        token,
        &range.file,
        (range.start, range.end),
        |data| {
            file.write_all(data)
                .with_context(|| format!("writing {}", path.display()))
        },
    )
    .await?;
    file.sync_all()?;
    if !range.sidecar_json.is_empty() {
        std::fs::write(sidecar_path(path), &range.sidecar_json)
            .with_context(|| format!("writing the sidecar of {}", path.display()))?;
    }
    check(path, range).await?.map_err(|why| {
        anyhow::anyhow!("after fetching {received} bytes: {why}; the transfer was damaged")
    })
}

//! The hashes used across the crate: SplitMix64, behind every seeded draw (initialization,
//! window sampling, dropout, sampling while generating, the validation split), and sha256 in hex,
//! the checksum of data files, their shards and checkpoints.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// SplitMix64: a fast, well-mixed 64-bit hash of an integer.
pub fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Lowercase hex of bytes.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A checksum that could not be computed, naming the file and the bytes.
#[derive(Debug, thiserror::Error)]
pub enum ChecksumError {
    /// The file could not be opened or its length read.
    #[error("cannot open {path}: {source}")]
    Open {
        /// The file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// The range asked for is not inside the file.
    #[error("{path}: bytes [{start}, {end}) are not inside its {len} bytes")]
    OutOfRange {
        /// The file.
        path: PathBuf,
        /// First byte asked for.
        start: u64,
        /// End of the range asked for.
        end: u64,
        /// The file's length.
        len: u64,
    },
    /// Reading the range failed part-way.
    #[error("{path}: reading bytes [{start}, {end}): {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// First byte of the range.
        start: u64,
        /// End of the range.
        end: u64,
        /// Why.
        source: io::Error,
    },
}

/// sha256 (hex) of bytes `[start, end)` of `path`: how a worker checks its copy of a shard.
pub fn sha256_range(path: &Path, start: u64, end: u64) -> Result<String, ChecksumError> {
    sha256_of(path, Some((start, end)))
}

/// sha256 (hex) of the whole file at `path`, read in pieces.
pub fn sha256_file(path: &Path) -> Result<String, ChecksumError> {
    sha256_of(path, None)
}

/// sha256 (hex) of `range` of the file at `path` (all of it for `None`), the file opened once.
fn sha256_of(path: &Path, range: Option<(u64, u64)>) -> Result<String, ChecksumError> {
    let open = |source| ChecksumError::Open {
        path: path.to_path_buf(),
        source,
    };
    let mut file = File::open(path).map_err(open)?;
    let len = file.metadata().map_err(open)?.len();
    let (start, end) = range.unwrap_or((0, len));
    if start > end || end > len {
        return Err(ChecksumError::OutOfRange {
            path: path.to_path_buf(),
            start,
            end,
            len,
        });
    }
    let read = |source| ChecksumError::Read {
        path: path.to_path_buf(),
        start,
        end,
        source,
    };
    file.seek(SeekFrom::Start(start)).map_err(read)?;
    let mut hasher = Sha256::new();
    let mut left = end - start;
    let mut buffer = vec![0u8; 1 << 20];
    while left > 0 {
        let n = left.min(buffer.len() as u64) as usize;
        file.read_exact(&mut buffer[..n]).map_err(read)?;
        hasher.update(&buffer[..n]);
        left -= n as u64;
    }
    Ok(hex(&hasher.finalize()))
}

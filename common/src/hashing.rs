//! The hashes used across the crate: SplitMix64, behind every seeded draw (initialization,
//! window sampling, dropout, sampling while generating, the validation split), and sha256 in hex,
//! the checksum of data files, their shards and checkpoints.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

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

/// sha256 (hex) of bytes `[start, end)` of `path`: how a worker checks its copy of a shard.
pub fn sha256_range(path: &Path, start: u64, end: u64) -> Result<String, String> {
    let name = path.display();
    let mut file = File::open(path).map_err(|e| format!("cannot open {name}: {e}"))?;
    let len = file.metadata().map_err(|e| format!("{name}: {e}"))?.len();
    if start > end || end > len {
        return Err(format!(
            "{name}: bytes [{start}, {end}) are not inside its {len} bytes"
        ));
    }
    file.seek(SeekFrom::Start(start))
        .map_err(|e| format!("{name}: {e}"))?;
    let mut hasher = Sha256::new();
    let mut left = end - start;
    let mut buffer = vec![0u8; 1 << 20];
    while left > 0 {
        let n = left.min(buffer.len() as u64) as usize;
        file.read_exact(&mut buffer[..n])
            .map_err(|e| format!("{name}: reading bytes [{start}, {end}): {e}"))?;
        hasher.update(&buffer[..n]);
        left -= n as u64;
    }
    Ok(hex(&hasher.finalize()))
}

/// sha256 (hex) of the whole file at `path`, read in pieces.
pub fn sha256_file(path: &Path) -> Result<String, String> {
    let len = std::fs::metadata(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?
        .len();
    sha256_range(path, 0, len)
}

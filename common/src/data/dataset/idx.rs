//! RWKV-LM's and Megatron's `.idx` index beside a `.bin` (binidx): its header, read for the
//! document and token counts.

use std::path::Path;

use super::DataError;

/// Reads a Megatron `.idx` (MMIDIDX, version 1, dtype uint16): (documents, tokens).
pub(super) fn read_idx(path: &Path) -> Result<(u64, u64), DataError> {
    let bytes = std::fs::read(path).map_err(|source| DataError::Io {
        action: "read",
        path: path.to_path_buf(),
        source,
    })?;
    let format = |problem: String| DataError::Format {
        path: path.to_path_buf(),
        problem,
    };
    let u64_at = |at: usize| -> Result<u64, DataError> {
        bytes
            .get(at..at + 8)
            .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")))
            .ok_or_else(|| format(format!("ends at byte {} inside its header", bytes.len())))
    };
    if !bytes.starts_with(b"MMIDIDX\x00\x00") {
        return Err(format(
            "no MMIDIDX magic at byte 0; not a Megatron/RWKV-LM index".into(),
        ));
    }
    if u64_at(9)? != 1 {
        return Err(format(format!(
            "index version {} (only 1 is read)",
            u64_at(9)?
        )));
    }
    let dtype = bytes.get(17).copied().unwrap_or(0);
    if dtype != 8 {
        return Err(format(format!(
            "dtype code {dtype} at byte 17; only 8 (uint16) is supported"
        )));
    }
    let sequences = u64_at(18)? as usize;
    let documents = u64_at(26)?;
    let sizes = bytes.get(34..34 + sequences * 4).ok_or_else(|| {
        format(format!(
            "lists {sequences} sequences but ends at byte {}",
            bytes.len()
        ))
    })?;
    let tokens = sizes
        .chunks_exact(4)
        .map(|s| u64::from(i32::from_le_bytes(s.try_into().expect("4 bytes")) as u32))
        .sum();
    Ok((documents.saturating_sub(1), tokens))
}

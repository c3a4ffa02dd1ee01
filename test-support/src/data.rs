//! Test data: token files with some structure to learn, and the coordinator's address from its
//! log.

use std::path::Path;

/// `count` token ids below `vocab` with a pattern a model learns: id i is (7i + i / 11) mod
/// `vocab`.
pub fn patterned_tokens(count: u32, vocab: u16) -> Vec<u16> {
    (0..count)
        .map(|i| ((i * 7 + i / 11) % u32::from(vocab)) as u16)
        .collect()
}

/// Writes `ids` as a bare token file (little-endian u16, no sidecar).
pub fn write_tokens(path: &Path, ids: &[u16]) {
    let bytes: Vec<u8> = ids.iter().flat_map(|id| id.to_le_bytes()).collect();
    std::fs::write(path, bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
}

/// The host:port in a coordinator's "coordinator on HOST:PORT: …" log line, if it is one.
pub fn coordinator_address(line: &str) -> Option<String> {
    let rest = line.split("coordinator on ").nth(1)?;
    let mut parts = rest.splitn(3, ':');
    let host = parts.next()?;
    let port: String = parts
        .next()?
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    (!port.is_empty()).then(|| format!("{host}:{port}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_address_is_read_from_the_log_line() {
        assert_eq!(
            coordinator_address(
                " INFO coordinator on 127.0.0.1:40123: 3 workers, token in /r/token"
            )
            .as_deref(),
            Some("127.0.0.1:40123")
        );
        assert_eq!(coordinator_address("step 1/20"), None);
        assert_eq!(patterned_tokens(3, 16), [0, 7, 14]);
    }
}

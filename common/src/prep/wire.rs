//! The byte encodings map results travel in: LEB128 varints, length-prefixed byte strings, and
//! a reader that names what it could not decode.

/// Appends `value` as an unsigned LEB128 varint (7 bits a byte, low bits first).
pub fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// Appends `bytes` after their length as a varint.
pub fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    put_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// Reads what [`put_varint`] and [`put_bytes`] wrote; every error says what was being read.
pub struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

/// A worker's result that does not decode or fails its checks: it is refused, and its task goes
/// to another worker.
#[derive(Debug, thiserror::Error)]
pub enum ResultError {
    /// The result ends inside a field.
    #[error("the result ends inside {what} (byte {at})")]
    Truncated {
        /// The field.
        what: String,
        /// Where the result ends.
        at: usize,
    },
    /// A field that should be a varint is not one.
    #[error("{what} at byte {at} is not a varint")]
    NotVarint {
        /// The field.
        what: String,
        /// Where the varint ends.
        at: usize,
    },
    /// A length that does not fit in memory.
    #[error("{0} is too long")]
    TooLong(String),
    /// A text field that is not UTF-8.
    #[error("{0} is not UTF-8")]
    NotUtf8(String),
    /// Bytes after the last field.
    #[error("{0} bytes follow the end of the result")]
    Trailing(usize),
    /// The decoded content fails its job's checks: what and where.
    #[error("{0}")]
    Content(String),
}

impl<'a> Reader<'a> {
    /// Reads `bytes` from the start.
    pub fn new(bytes: &'a [u8]) -> Self {
        Self { bytes, at: 0 }
    }

    /// Whether everything has been read.
    pub fn is_done(&self) -> bool {
        self.at == self.bytes.len()
    }

    /// The next varint; `what` names it in the error.
    pub fn varint(&mut self, what: &str) -> Result<u64, ResultError> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = *self
                .bytes
                .get(self.at)
                .ok_or_else(|| ResultError::Truncated {
                    what: what.to_string(),
                    at: self.at,
                })?;
            self.at += 1;
            value |= u64::from(byte & 0x7F) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(ResultError::NotVarint {
            what: what.to_string(),
            at: self.at,
        })
    }

    /// The next `n` raw bytes.
    pub fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], ResultError> {
        let end = self
            .at
            .checked_add(n)
            .filter(|&end| end <= self.bytes.len())
            .ok_or_else(|| ResultError::Truncated {
                what: what.to_string(),
                at: self.at,
            })?;
        let taken = &self.bytes[self.at..end];
        self.at = end;
        Ok(taken)
    }

    /// The next length-prefixed byte string.
    pub fn bytes(&mut self, what: &str) -> Result<&'a [u8], ResultError> {
        let n = self.varint(what)?;
        self.take(
            usize::try_from(n).map_err(|_| ResultError::TooLong(what.to_string()))?,
            what,
        )
    }

    /// The next length-prefixed UTF-8 string.
    pub fn string(&mut self, what: &str) -> Result<String, ResultError> {
        let bytes = self.bytes(what)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| ResultError::NotUtf8(what.to_string()))
    }

    /// Fails unless everything has been read.
    pub fn finish(&self) -> Result<(), ResultError> {
        if self.is_done() {
            Ok(())
        } else {
            Err(ResultError::Trailing(self.bytes.len() - self.at))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_and_strings_round_trip_and_truncation_is_named() {
        let mut out = Vec::new();
        for value in [0, 1, 127, 128, 300, u64::MAX] {
            put_varint(&mut out, value);
        }
        put_bytes(&mut out, "olá".as_bytes());
        assert_eq!(&out[..4], &[0, 1, 127, 0x80]);
        let mut reader = Reader::new(&out);
        for value in [0, 1, 127, 128, 300, u64::MAX] {
            assert_eq!(reader.varint("v").unwrap(), value);
        }
        assert_eq!(reader.string("word").unwrap(), "olá");
        reader.finish().unwrap();
        let mut short = Reader::new(&out[..out.len() - 1]);
        for _ in 0..6 {
            short.varint("v").unwrap();
        }
        assert_eq!(
            short.string("the word").unwrap_err().to_string(),
            format!("the result ends inside the word (byte {})", out.len() - 4)
        );
    }
}

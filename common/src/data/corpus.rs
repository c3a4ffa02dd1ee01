//! Reading corpus text (docs/formats.md) as documents, streaming: documents are separated by blank
//! lines (a document's paragraphs on consecutive lines, joined by `\n`), or each line is a
//! document with `line_docs`.

use std::io::{self, BufRead};
use std::path::{Path, PathBuf};

use super::wiki::page::decode_utf8_lossy;

/// What to do with bytes that are not UTF-8.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Utf8Policy {
    /// Fail, naming the file and line.
    Strict,
    /// Replace each bad sequence with U+FFFD and count it.
    Replace,
}

impl Utf8Policy {
    /// `Replace` when `lossy`, else `Strict`.
    pub fn new(lossy: bool) -> Self {
        if lossy { Self::Replace } else { Self::Strict }
    }
}

/// Reads documents in order; see the module documentation.
pub struct DocumentReader<R> {
    reader: R,
    path: PathBuf,
    line_docs: bool,
    policy: Utf8Policy,
    line: u64,
    invalid_utf8: u64,
    bytes_read: u64,
    /// Where the input starts in its file, when it is a byte range of one: errors then name
    /// the file's byte offset (a range's line numbers would mislead).
    origin: Option<u64>,
    eof: bool,
}

impl<R: BufRead> DocumentReader<R> {
    /// Reads documents from `reader`; `path` names the file in errors.
    pub fn new(reader: R, path: &Path, line_docs: bool, policy: Utf8Policy) -> Self {
        Self {
            reader,
            path: path.to_path_buf(),
            line_docs,
            policy,
            line: 0,
            invalid_utf8: 0,
            bytes_read: 0,
            origin: None,
            eof: false,
        }
    }

    /// Reads a byte range of the file that starts at byte `offset`: errors name file offsets.
    pub fn starting_at(mut self, offset: u64) -> Self {
        self.origin = Some(offset);
        self
    }

    /// Invalid UTF-8 sequences replaced so far.
    pub fn invalid_utf8(&self) -> u64 {
        self.invalid_utf8
    }

    /// Input bytes read so far.
    pub fn bytes_read(&self) -> u64 {
        self.bytes_read
    }

    /// Up to `max_documents` documents, or fewer once `max_bytes` of text are gathered; empty at
    /// the end of the input.
    pub fn next_batch(
        &mut self,
        max_documents: usize,
        max_bytes: usize,
    ) -> io::Result<Vec<String>> {
        let mut batch = Vec::new();
        let mut batch_bytes = 0;
        let mut document = String::new();
        let mut line = Vec::new();
        while batch.len() < max_documents && batch_bytes < max_bytes && !self.eof {
            line.clear();
            let line_start = self.bytes_read;
            let n = self.reader.read_until(b'\n', &mut line)?;
            self.bytes_read += n as u64;
            batch_bytes += n;
            if n == 0 {
                self.eof = true;
                break;
            }
            self.line += 1;
            let (text, invalid) = decode_utf8_lossy(&line);
            if invalid > 0 && self.policy == Utf8Policy::Strict {
                let valid = std::str::from_utf8(&line)
                    .err()
                    .map_or(0, |e| e.valid_up_to());
                let place = match self.origin {
                    Some(origin) => format!("byte {}", origin + line_start + valid as u64),
                    None => format!("line {}, byte {} of the line", self.line, valid + 1),
                };
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "{}: {place}: invalid UTF-8 (use --lossy to replace bad bytes with \
                         U+FFFD)",
                        self.path.display(),
                    ),
                ));
            }
            self.invalid_utf8 += invalid;
            let text = text.trim_end_matches(['\n', '\r']);
            if text.trim().is_empty() {
                if !document.is_empty() {
                    batch.push(std::mem::take(&mut document));
                }
                continue;
            }
            if !document.is_empty() {
                document.push('\n');
            }
            document.push_str(text);
            if self.line_docs {
                batch.push(std::mem::take(&mut document));
            }
        }
        if !document.is_empty() {
            batch.push(document);
        }
        Ok(batch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blank_lines_separate_documents_unless_line_docs() {
        let text = b"a\nb\n\n\nc\r\n\nd";
        let mut reader = DocumentReader::new(&text[..], Path::new("x"), false, Utf8Policy::Strict);
        assert_eq!(reader.next_batch(100, 1 << 20).unwrap(), ["a\nb", "c", "d"]);
        assert!(reader.next_batch(100, 1 << 20).unwrap().is_empty());
        let mut reader = DocumentReader::new(&text[..], Path::new("x"), true, Utf8Policy::Strict);
        assert_eq!(reader.next_batch(2, 1 << 20).unwrap(), ["a", "b"]);
        assert_eq!(reader.next_batch(9, 1 << 20).unwrap(), ["c", "d"]);
    }

    #[test]
    fn invalid_utf8_names_file_and_line_or_is_replaced() {
        let text = b"ok\nbad \xff here\n";
        let mut strict =
            DocumentReader::new(&text[..], Path::new("c.txt"), true, Utf8Policy::Strict);
        let err = strict.next_batch(10, 1 << 20).unwrap_err().to_string();
        assert!(
            err.starts_with("c.txt: line 2, byte 5 of the line: invalid UTF-8"),
            "{err}"
        );
        let mut lossy =
            DocumentReader::new(&text[..], Path::new("c.txt"), true, Utf8Policy::Replace);
        assert_eq!(
            lossy.next_batch(10, 1 << 20).unwrap(),
            ["ok", "bad \u{FFFD} here"]
        );
        assert_eq!(lossy.invalid_utf8(), 1);
        let mut range =
            DocumentReader::new(&text[..], Path::new("c.txt"), true, Utf8Policy::Strict)
                .starting_at(1000);
        let err = range.next_batch(10, 1 << 20).unwrap_err().to_string();
        assert!(err.starts_with("c.txt: byte 1007: invalid UTF-8"), "{err}");
    }
}

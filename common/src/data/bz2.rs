//! Streaming bz2 decompression that handles multistream files and reports where data went bad.
//!
//! Wikipedia's `-multistream` dumps are many complete bz2 streams concatenated. [`Bz2Reader`]
//! finds the stream boundaries ahead of the decoder and, when it has more than one thread, decodes
//! a window of whole streams in parallel (rayon) and hands their output back in file order. A
//! single-stream file (or a stream larger than [`PARALLEL_STREAM_CAP`]) is decoded sequentially in
//! bounded buffers, so memory stays flat whatever the file size.
//!
//! Errors name the compressed byte offset: "corrupt bz2 data near byte N", "truncated: the
//! stream starting at byte N ends at end of file", or damage between streams: bytes after a
//! stream's end that do not start another stream (a bad `BZh` header, a dropped or cut stream).
//! Such bytes are accepted, with a warning, only once the decoded XML is complete (it ends with
//! `</mediawiki>`, the close of a MediaWiki export).

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bzip2::{Decompress, Status};
use rayon::prelude::*;

/// How much compressed input one read asks for.
const READ_CHUNK: usize = 1 << 20;
/// How far ahead the stream finder looks for the next stream before giving up and decoding the
/// current stream sequentially.
const LOOKAHEAD: u64 = 64 << 20;
/// A stream decoded in parallel is held whole in memory; a larger one is decoded sequentially.
pub const PARALLEL_STREAM_CAP: usize = 64 << 20;

/// The bytes that open every bz2 stream: "BZh", the block size digit, then either the block magic
/// (pi) or the end-of-stream magic (sqrt pi) of an empty stream.
fn is_stream_start(bytes: &[u8]) -> bool {
    const BLOCK_MAGIC: [u8; 6] = [0x31, 0x41, 0x59, 0x26, 0x53, 0x59];
    const EOS_MAGIC: [u8; 6] = [0x17, 0x72, 0x45, 0x38, 0x50, 0x90];
    bytes.len() >= 10
        && &bytes[..3] == b"BZh"
        && (b'1'..=b'9').contains(&bytes[3])
        && (bytes[4..10] == BLOCK_MAGIC || bytes[4..10] == EOS_MAGIC)
}

/// Reads bz2 data from a file and yields the decompressed bytes of all its streams in order.
pub struct Bz2Reader {
    file: File,
    path: PathBuf,
    len: u64,
    threads: usize,
    /// Compressed offset of the next stream to decode.
    next_stream: u64,
    /// Candidate stream starts found ahead of `next_stream`, in increasing order.
    candidates: VecDeque<u64>,
    /// Where the stream finder resumes scanning.
    scan_pos: u64,
    /// Decoded output waiting to be read, in file order.
    ready: VecDeque<Vec<u8>>,
    ready_pos: usize,
    /// A stream being decoded sequentially.
    sequential: Option<SequentialStream>,
    /// Compressed bytes consumed so far, shared with progress reporting.
    consumed: Arc<AtomicU64>,
    /// The last bytes of decoded output, to tell a complete export from a damaged one.
    tail: Vec<u8>,
}

/// What ends a complete MediaWiki export.
const EXPORT_END: &[u8] = b"</mediawiki>";
/// Decoded bytes kept in [`Bz2Reader::tail`].
const TAIL_BYTES: usize = 256;

/// A stream being decoded sequentially from `start`.
struct SequentialStream {
    start: u64,
    decoder: Decompress,
    input: Vec<u8>,
    input_pos: usize,
    /// Offset of the first byte of `input` in the file.
    input_offset: u64,
}

impl Bz2Reader {
    /// Opens `path` for decoding with up to `threads` parallel stream decoders. `consumed` is
    /// advanced as compressed bytes are used, for progress reports.
    pub fn open(path: &Path, threads: usize, consumed: Arc<AtomicU64>) -> io::Result<Self> {
        let file = File::open(path)?;
        let len = file.metadata()?.len();
        Ok(Self {
            file,
            path: path.to_path_buf(),
            len,
            threads: threads.max(1),
            next_stream: 0,
            candidates: VecDeque::new(),
            scan_pos: 0,
            ready: VecDeque::new(),
            ready_pos: 0,
            sequential: None,
            consumed,
            tail: Vec::new(),
        })
    }

    fn error(&self, kind: io::ErrorKind, message: String) -> io::Error {
        io::Error::new(kind, format!("{}: {message}", self.path.display()))
    }

    /// Finds stream starts ahead until `want` candidates beyond `next_stream` are known, the file
    /// ends, or the lookahead limit is passed.
    fn find_candidates(&mut self, want: usize) -> io::Result<()> {
        while self
            .candidates
            .front()
            .is_some_and(|&c| c < self.next_stream)
        {
            self.candidates.pop_front();
        }
        self.scan_pos = self.scan_pos.max(self.next_stream);
        let limit = (self.next_stream + LOOKAHEAD).min(self.len);
        if self.candidates.len() < want {
            let candidates = &mut self.candidates;
            self.scan_pos = scan_stream_starts(&self.file, self.scan_pos, limit, |at| {
                candidates.push_back(at);
                candidates.len() < want
            })?;
        }
        Ok(())
    }

    /// Queues decoded output, remembering its last bytes.
    fn push_ready(&mut self, out: Vec<u8>) {
        let keep = out.len().min(TAIL_BYTES);
        self.tail.extend_from_slice(&out[out.len() - keep..]);
        let excess = self.tail.len().saturating_sub(TAIL_BYTES);
        self.tail.drain(..excess);
        self.ready.push_back(out);
    }

    /// Whether the output so far is a complete export: it ends with `</mediawiki>` and white
    /// space.
    fn output_complete(&self) -> bool {
        self.tail.trim_ascii_end().ends_with(EXPORT_END)
    }

    /// Produces more decoded output into `ready`, or returns false at the end of the file.
    fn refill(&mut self) -> io::Result<bool> {
        if let Some(stream) = self.sequential.as_mut() {
            let mut out = Vec::with_capacity(READ_CHUNK);
            let finished = stream.decode_some(&self.file, self.len, &mut out, &self.path)?;
            let used = stream.input_offset + stream.input_pos as u64;
            self.consumed.store(used, Ordering::Relaxed);
            if finished {
                self.next_stream = stream.start + stream.decoder.total_in();
                self.sequential = None;
            }
            if !out.is_empty() {
                self.push_ready(out);
            }
            return Ok(true);
        }
        if self.next_stream >= self.len {
            return Ok(false);
        }
        let mut header = [0u8; 10];
        let n = read_at_most(&self.file, &mut header, self.next_stream)?;
        if !is_stream_start(&header[..n]) {
            if self.next_stream == 0 {
                return Err(self.error(
                    io::ErrorKind::InvalidData,
                    "not a bz2 file (no 'BZh' header at byte 0)".into(),
                ));
            }
            if !self.output_complete() {
                return Err(self.error(
                    io::ErrorKind::InvalidData,
                    format!(
                        "damaged multistream dump at byte {}: the {} bytes after the bz2 stream \
                         that ends there do not start another stream (a bad 'BZh' header, or a \
                         dropped or cut stream), and the XML is not complete (no </mediawiki> \
                         yet); check the file with `bzip2 -t` and download it again",
                        self.next_stream,
                        self.len - self.next_stream
                    ),
                ));
            }
            tracing::warn!(
                "{}: {} bytes of trailing data after the last bz2 stream (byte {}) ignored",
                self.path.display(),
                self.len - self.next_stream,
                self.next_stream
            );
            self.next_stream = self.len;
            return Ok(false);
        }
        if self.threads > 1 {
            let want = self.threads * 4 + 1;
            self.find_candidates(want)?;
            if self.candidates.len() >= 2 && self.candidates[0] == self.next_stream {
                return self.decode_window().map(|_| true);
            }
        }
        self.sequential = Some(SequentialStream::new(self.next_stream));
        Ok(true)
    }

    /// Decodes the streams between the known candidates in parallel and queues their output.
    fn decode_window(&mut self) -> io::Result<()> {
        let ranges: Vec<(u64, u64)> = self
            .candidates
            .iter()
            .zip(self.candidates.iter().skip(1))
            .map(|(&a, &b)| (a, b))
            .collect();
        let file = &self.file;
        let results: Vec<io::Result<Option<Vec<u8>>>> = ranges
            .par_iter()
            .map(|&(start, end)| decode_whole_stream(file, start, end))
            .collect();
        for ((start, end), result) in ranges.into_iter().zip(results) {
            if start != self.next_stream {
                // A false candidate inside the previous stream's data: skipped by the chain.
                continue;
            }
            match result {
                Ok(Some(out)) => {
                    self.push_ready(out);
                    self.next_stream = end;
                    self.consumed.store(end, Ordering::Relaxed);
                }
                // The stream did not end where the next candidate starts (that candidate was a
                // false match), or it is too large to hold: decode it sequentially.
                Ok(None) | Err(_) => {
                    self.sequential = Some(SequentialStream::new(start));
                    break;
                }
            }
        }
        Ok(())
    }
}

impl Read for Bz2Reader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            if let Some(front) = self.ready.front() {
                let n = (front.len() - self.ready_pos).min(buf.len());
                buf[..n].copy_from_slice(&front[self.ready_pos..self.ready_pos + n]);
                self.ready_pos += n;
                if self.ready_pos == front.len() {
                    self.ready.pop_front();
                    self.ready_pos = 0;
                }
                return Ok(n);
            }
            if !self.refill()? {
                return Ok(0);
            }
        }
    }
}

impl SequentialStream {
    fn new(start: u64) -> Self {
        Self {
            start,
            decoder: Decompress::new(false),
            input: Vec::new(),
            input_pos: 0,
            input_offset: start,
        }
    }

    /// Decodes up to about one read chunk of output into `out`; returns true at the stream's end.
    fn decode_some(
        &mut self,
        file: &File,
        len: u64,
        out: &mut Vec<u8>,
        path: &Path,
    ) -> io::Result<bool> {
        while out.len() < READ_CHUNK {
            if self.input_pos == self.input.len() {
                let offset = self.input_offset + self.input.len() as u64;
                if offset >= len {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!(
                            "{}: truncated bz2 data: the stream starting at byte {} ends at byte \
                             {len} (end of file) before its end-of-stream marker (the download is incomplete: check it with `bzip2 -t` and \
                             download it again)",
                            path.display(),
                            self.start
                        ),
                    ));
                }
                self.input.resize(READ_CHUNK, 0);
                let n = read_at_most(file, &mut self.input, offset)?;
                self.input.truncate(n);
                self.input_offset = offset;
                self.input_pos = 0;
            }
            let before_in = self.decoder.total_in();
            out.reserve(READ_CHUNK);
            let status = self
                .decoder
                .decompress_vec(&self.input[self.input_pos..], out)
                .map_err(|e| {
                    let at = self.input_offset + self.input_pos as u64;
                    io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!(
                            "{}: corrupt bz2 data near byte {at} (stream starting at byte {}): \
                             {e}; check the file with `bzip2 -t` and download it again",
                            path.display(),
                            self.start
                        ),
                    )
                })?;
            self.input_pos += (self.decoder.total_in() - before_in) as usize;
            if status == Status::StreamEnd {
                return Ok(true);
            }
        }
        Ok(false)
    }
}

/// Decodes the stream occupying exactly `[start, end)` of the file. Returns `Ok(None)` when the
/// stream does not end exactly at `end` or its output passes [`PARALLEL_STREAM_CAP`].
fn decode_whole_stream(file: &File, start: u64, end: u64) -> io::Result<Option<Vec<u8>>> {
    let mut input = vec![0u8; (end - start) as usize];
    let n = read_at_most(file, &mut input, start)?;
    input.truncate(n);
    let mut out = Vec::with_capacity(input.len() * 6);
    let decoded = decode_stream(&input, &mut out, PARALLEL_STREAM_CAP)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
    Ok((decoded == Decoded::Ended(input.len())).then_some(out))
}

/// How far [`decode_stream`] got.
#[derive(Debug, PartialEq, Eq)]
enum Decoded {
    /// The stream ended after this many input bytes.
    Ended(usize),
    /// The input ran out first.
    Unfinished,
    /// The output passed the cap first.
    TooLarge,
}

/// Decodes the one bz2 stream at the start of `input`, appending its output to `out`.
fn decode_stream(input: &[u8], out: &mut Vec<u8>, cap: usize) -> Result<Decoded, bzip2::Error> {
    let mut decoder = Decompress::new(false);
    let start_len = out.len();
    loop {
        if out.len() == out.capacity() {
            out.reserve(out.len().max(1 << 16));
        }
        let consumed = decoder.total_in() as usize;
        let status = decoder.decompress_vec(&input[consumed..], out)?;
        if status == Status::StreamEnd {
            return Ok(Decoded::Ended(decoder.total_in() as usize));
        }
        let stalled = decoder.total_in() as usize == consumed && out.len() < out.capacity();
        if stalled || decoder.total_in() as usize == input.len() && out.len() < out.capacity() {
            return Ok(Decoded::Unfinished);
        }
        if out.len() - start_len > cap {
            return Ok(Decoded::TooLarge);
        }
    }
}

/// Scans bytes `[from, limit)` of `file` for stream starts (by their magic bytes: a match inside
/// compressed data is possible, if unlikely, so callers confirm by decoding), passing each to
/// `found` until it returns false. Returns where a later scan should resume.
fn scan_stream_starts(
    file: &File,
    from: u64,
    limit: u64,
    mut found: impl FnMut(u64) -> bool,
) -> io::Result<u64> {
    let mut buf = vec![0u8; READ_CHUNK + 9];
    let mut pos = from;
    while pos < limit {
        let n = read_at_most(file, &mut buf, pos)?;
        if n < 10 {
            return Ok(limit.max(pos + n as u64));
        }
        // Only starts whose 10 header bytes lie in this chunk are decided here; the chunk
        // overlaps the next by 9 bytes so none is missed.
        let searchable = n - 9;
        for hit in memchr::memmem::find_iter(&buf[..n], b"BZh") {
            if hit >= searchable {
                break;
            }
            if is_stream_start(&buf[hit..n]) && !found(pos + hit as u64) {
                return Ok(pos + hit as u64 + 1);
            }
        }
        pos += searchable as u64;
    }
    Ok(pos)
}

/// Where the first bz2 stream at or after byte `from` of `path` starts, if any: how a
/// multistream dump is cut into ranges of whole streams for the distributed process-wiki.
pub fn next_stream_start(file: &File, from: u64) -> io::Result<Option<u64>> {
    let len = file.metadata()?.len();
    let mut start = None;
    scan_stream_starts(file, from, len, |at| {
        start = Some(at);
        false
    })?;
    Ok(start)
}

/// Decodes the whole bz2 streams that fill `bytes` (a range of a multistream dump) and returns
/// their output in order. The error names the range's byte offset (`origin` is where `bytes`
/// start in the file) when the data is corrupt or a stream does not end inside the range.
pub fn decode_streams(bytes: &[u8], origin: u64) -> io::Result<Vec<u8>> {
    let mut out = Vec::with_capacity(bytes.len() * 5);
    let mut at = 0;
    while at < bytes.len() {
        let stream = origin + at as u64;
        if !is_stream_start(&bytes[at..]) {
            return Err(invalid_range(format!(
                "byte {stream} does not start a bz2 stream: the range is not made of whole streams"
            )));
        }
        match decode_stream(&bytes[at..], &mut out, usize::MAX) {
            Ok(Decoded::Ended(used)) => at += used,
            Ok(_) => {
                return Err(invalid_range(format!(
                    "the bz2 stream starting at byte {stream} does not end before byte {}",
                    origin + bytes.len() as u64
                )));
            }
            Err(e) => {
                return Err(invalid_range(format!(
                    "corrupt bz2 data in the stream at byte {stream}: {e}"
                )));
            }
        }
    }
    Ok(out)
}

/// A range of a multistream dump that is not whole, valid bz2 streams.
fn invalid_range(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}

/// Reads as many bytes as fit into `buf` from `offset`, fewer only at the end of the file.
pub fn read_at_most(file: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match file.read_at(&mut buf[filled..], offset + filled as u64) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bzip2::Compression;
    use bzip2::write::BzEncoder;
    use std::io::Write;

    fn compress(data: &[u8]) -> Vec<u8> {
        let mut enc = BzEncoder::new(Vec::new(), Compression::best());
        enc.write_all(data).unwrap();
        enc.finish().unwrap()
    }

    fn sample(n: usize) -> Vec<u8> {
        (0..n)
            .map(|i| format!("line {i} of the sample, {}\n", i * 7919 % 1000))
            .collect::<String>()
            .into_bytes()
    }

    fn decode_file(bytes: &[u8], threads: usize) -> io::Result<Vec<u8>> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.bz2");
        std::fs::write(&path, bytes).unwrap();
        let mut reader = Bz2Reader::open(&path, threads, Arc::default())?;
        let mut out = Vec::new();
        reader.read_to_end(&mut out)?;
        Ok(out)
    }

    #[test]
    fn multistream_decodes_in_order_with_any_thread_count() {
        let parts: Vec<Vec<u8>> = (0..9).map(|i| sample(2000 + i * 300)).collect();
        let joined: Vec<u8> = parts.concat();
        let multi: Vec<u8> = parts.iter().flat_map(|p| compress(p)).collect();
        for threads in [1, 2, 3] {
            assert_eq!(
                decode_file(&multi, threads).unwrap(),
                joined,
                "threads={threads}"
            );
        }
        assert_eq!(decode_file(&compress(&joined), 2).unwrap(), joined);
    }

    #[test]
    fn truncated_stream_names_its_start_and_the_end_of_file() {
        let mut data = compress(&sample(1000));
        data.extend(compress(&sample(5000)));
        let cut = data.len() - 100;
        data.truncate(cut);
        for threads in [1, 2] {
            let err = decode_file(&data, threads).unwrap_err().to_string();
            assert!(err.contains("truncated bz2 data"), "{err}");
            assert!(err.contains(&format!("ends at byte {cut}")), "{err}");
        }
    }

    #[test]
    fn corrupt_data_names_a_byte_offset() {
        let mut data = compress(&sample(20000));
        let mid = data.len() / 2;
        for b in &mut data[mid..mid + 64] {
            *b ^= 0x5a;
        }
        let err = decode_file(&data, 1).unwrap_err().to_string();
        assert!(err.contains("corrupt bz2 data near byte"), "{err}");
    }

    #[test]
    fn bytes_after_a_stream_are_damage_unless_the_export_is_complete() {
        let xml = "<mediawiki><page>a</page>\n<page>b</page>\n</mediawiki>\n";
        let (head, rest) = xml.split_at(26);
        let first = compress(head.as_bytes());
        let second = compress(rest.as_bytes());
        for threads in [1, 2] {
            // A damaged header on the second stream.
            let mut damaged = first.clone();
            let mut bad = second.clone();
            bad[0] = b'X';
            damaged.extend(&bad);
            let err = decode_file(&damaged, threads).unwrap_err().to_string();
            assert!(
                err.contains(&format!("damaged multistream dump at byte {}", first.len())),
                "{err}"
            );
            // After the export's end, stray bytes are only warned about.
            let mut whole = first.clone();
            whole.extend(&second);
            whole.extend(b"junk after the end");
            assert_eq!(decode_file(&whole, threads).unwrap(), xml.as_bytes());
        }
    }

    #[test]
    fn a_file_that_is_not_bz2_is_refused() {
        let err = decode_file(b"<mediawiki>plain xml</mediawiki>", 1).unwrap_err();
        assert!(err.to_string().contains("not a bz2 file"), "{err}");
    }
}

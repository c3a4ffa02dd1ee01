//! Cutting inputs into map tasks: byte ranges of about a target size whose edges fall where the
//! single-process reader would see the same units whole. A corpus is cut at document
//! boundaries, a multistream dump at bz2 stream starts, a plain XML dump at `<page>` tags, so a
//! range's documents or pages are exactly the ones the whole file holds there.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Seek, SeekFrom};
use std::path::Path;

use crate::data::bz2::{next_stream_start, read_at_most};

/// A byte range `[start, end)` of one input file.
pub type Range = (u64, u64);

/// Ranges of `path` of about `target` bytes that end at document boundaries: before a blank
/// line, or (with `line_docs`) after any line. A stretch without a boundary stays in one range.
pub fn document_ranges(path: &Path, line_docs: bool, target: u64) -> io::Result<Vec<Range>> {
    let file = File::open(path)?;
    let len = file.metadata()?.len();
    let mut reader = BufReader::with_capacity(1 << 16, file);
    cut(len, target, |from| {
        next_document_boundary(&mut reader, from, len, line_docs)
    })
}

/// Ranges of the dump at `path` of about `target` bytes: whole bz2 streams for a `.bz2` dump
/// (one range for a single-stream file), or runs of whole pages for plain XML.
pub fn dump_ranges(path: &Path, target: u64) -> io::Result<Vec<Range>> {
    let file = File::open(path)?;
    let len = file.metadata()?.len();
    let mut magic = [0u8; 3];
    let bz2 = read_at_most(&file, &mut magic, 0)? == 3 && &magic == b"BZh";
    cut(len, target, |from| {
        if bz2 {
            next_stream_start(&file, from)
        } else {
            next_page_tag(&file, from)
        }
    })
}

/// Cuts `[0, len)` at the boundary `next` finds at or after each multiple of `target`.
fn cut(
    len: u64,
    target: u64,
    mut next: impl FnMut(u64) -> io::Result<Option<u64>>,
) -> io::Result<Vec<Range>> {
    let target = target.max(1);
    let mut ranges = Vec::new();
    let mut start = 0;
    while start < len {
        let end = match next(start + target)? {
            Some(end) if end > start && end < len => end,
            _ => len,
        };
        ranges.push((start, end));
        start = end;
    }
    Ok(ranges)
}

/// The first document boundary at or after `from`: a line start (with `line_docs`), or the
/// start of a blank line (spaces, tabs and `\r` only), which the document reader skips.
fn next_document_boundary(
    reader: &mut BufReader<File>,
    from: u64,
    len: u64,
    line_docs: bool,
) -> io::Result<Option<u64>> {
    if from >= len {
        return Ok(None);
    }
    // The line start at or after `from`: read on from the byte before it to its line's end.
    reader.seek(SeekFrom::Start(from - 1))?;
    let mut line = Vec::new();
    let mut at = from - 1 + reader.read_until(b'\n', &mut line)? as u64;
    loop {
        if at >= len {
            return Ok(None);
        }
        if line_docs {
            return Ok(Some(at));
        }
        line.clear();
        let n = reader.read_until(b'\n', &mut line)?;
        if n == 0 {
            return Ok(None);
        }
        if line
            .iter()
            .all(|b| matches!(b, b' ' | b'\t' | b'\r' | b'\n'))
        {
            return Ok(Some(at));
        }
        at += n as u64;
    }
}

/// The first `<page>` (or `<page …>`) tag at or after `from` in a plain XML dump.
fn next_page_tag(file: &File, from: u64) -> io::Result<Option<u64>> {
    let mut buf = vec![0u8; 1 << 20];
    let mut pos = from;
    loop {
        let n = read_at_most(file, &mut buf, pos)?;
        if n < 6 {
            return Ok(None);
        }
        for hit in memchr::memmem::find_iter(&buf[..n], b"<page") {
            match buf.get(hit + 5) {
                Some(b'>' | b' ' | b'\t' | b'\r' | b'\n') => return Ok(Some(pos + hit as u64)),
                Some(_) => {}
                None => break,
            }
        }
        // The last 5 bytes may hold the start of a tag cut by the chunk's end.
        pos += (n - 5) as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn file(bytes: &[u8]) -> tempfile::NamedTempFile {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        file.write_all(bytes).unwrap();
        file
    }

    fn pieces(bytes: &[u8], ranges: &[Range]) -> Vec<String> {
        ranges
            .iter()
            .map(|&(a, b)| String::from_utf8_lossy(&bytes[a as usize..b as usize]).into_owned())
            .collect()
    }

    #[test]
    fn corpus_ranges_end_before_blank_lines_or_after_lines() {
        let text = b"um\ndois\n\ntres\nquatro\n \t\r\ncinco\n";
        let f = file(text);
        let ranges = document_ranges(f.path(), false, 4).unwrap();
        assert_eq!(
            pieces(text, &ranges),
            ["um\ndois\n", "\ntres\nquatro\n", " \t\r\ncinco\n"]
        );
        let ranges = document_ranges(f.path(), true, 4).unwrap();
        assert_eq!(
            pieces(text, &ranges),
            ["um\ndois\n", "\ntres\n", "quatro\n", " \t\r\n", "cinco\n"]
        );
        // No boundary at all: one range; a target past the end: one range.
        let one = file(b"a\nb\nc");
        assert_eq!(document_ranges(one.path(), false, 1).unwrap(), [(0, 5)]);
        assert_eq!(document_ranges(one.path(), true, 100).unwrap(), [(0, 5)]);
        assert!(
            document_ranges(file(b"").path(), true, 4)
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn dump_ranges_hold_whole_streams_or_whole_pages() {
        use bzip2::Compression;
        use bzip2::write::BzEncoder;
        let stream = |text: &str| {
            let mut encoder = BzEncoder::new(Vec::new(), Compression::fast());
            encoder.write_all(text.as_bytes()).unwrap();
            encoder.finish().unwrap()
        };
        let parts = [
            stream("<mediawiki>"),
            stream("<page>a</page>"),
            stream("</mediawiki>"),
        ];
        let dump: Vec<u8> = parts.concat();
        let f = file(&dump);
        let ranges = dump_ranges(f.path(), 1).unwrap();
        let (a, b) = (
            parts[0].len() as u64,
            (parts[0].len() + parts[1].len()) as u64,
        );
        assert_eq!(ranges, [(0, a), (a, b), (b, dump.len() as u64)]);
        let xml = crate::data::bz2::decode_streams(&dump[a as usize..], a).unwrap();
        assert_eq!(xml, b"<page>a</page></mediawiki>");
        let err = crate::data::bz2::decode_streams(&dump[1..b as usize], 1)
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("byte 1 does not start a bz2 stream"),
            "{err}"
        );
        let err = crate::data::bz2::decode_streams(&dump[..b as usize - 1], 0)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(&format!("stream starting at byte {a} does not end")),
            "{err}"
        );

        let xml = b"<mediawiki><pages/><page>a</page>\n<page id=1>b</page></mediawiki>";
        let f = file(xml);
        assert_eq!(
            pieces(xml, &dump_ranges(f.path(), 1).unwrap()),
            [
                "<mediawiki><pages/>",
                "<page>a</page>\n",
                "<page id=1>b</page></mediawiki>"
            ]
        );
    }
}

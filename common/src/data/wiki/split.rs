//! Cuts a MediaWiki XML export into `<page>…</page>` pieces without parsing the rest.
//!
//! Inside a page's text every `<` is escaped as `&lt;`, so the literal bytes `<page>` and
//! `</page>` only ever appear as the page element's own tags. Cutting on them lets pages be parsed
//! independently (in parallel) and lets one malformed page be skipped without losing the rest.
//! Only one page is held at a time, so memory stays flat whatever the dump size.

use std::io::{self, Read};

use memchr::memmem;

/// How much decompressed XML one read asks for.
const READ_CHUNK: usize = 1 << 20;
/// A page larger than this is not a Wikipedia page; the dump is refused.
pub const MAX_PAGE_BYTES: usize = 256 << 20;
/// The bytes kept from before the first page (the `<siteinfo>` header).
const MAX_HEADER_BYTES: usize = 16 << 20;

/// One page's XML as it stands in the dump.
#[derive(Debug)]
pub struct RawPage {
    /// Offset of the page's `<page>` tag in the (UTF-8) XML stream.
    pub offset: u64,
    /// The bytes from `<page>` to `</page>` inclusive; without the end tag if the XML ended first.
    pub xml: Vec<u8>,
    /// The XML ended before this page's `</page>`.
    pub unterminated: bool,
}

/// Iterates over the pages of an XML stream; see the module documentation.
pub struct PageSplitter<R> {
    reader: R,
    buf: Vec<u8>,
    /// Where the search resumes in `buf`.
    pos: usize,
    /// XML offset of `buf[0]`.
    buf_offset: u64,
    eof: bool,
    /// The bytes before the first page, once it has been found.
    header: Vec<u8>,
    seen_page: bool,
    /// XML bytes read so far.
    bytes_read: u64,
}

impl<R: Read> PageSplitter<R> {
    /// Splits the XML read from `reader`.
    pub fn new(reader: R) -> Self {
        Self {
            reader,
            buf: Vec::new(),
            pos: 0,
            buf_offset: 0,
            eof: false,
            header: Vec::new(),
            seen_page: false,
            bytes_read: 0,
        }
    }

    /// The bytes of the XML before the first `<page>` (where `<siteinfo>` lives); empty until the
    /// first page has been returned.
    pub fn header(&self) -> &[u8] {
        &self.header
    }

    /// The underlying reader.
    pub fn reader(&self) -> &R {
        &self.reader
    }

    /// How many XML bytes have been read from the underlying reader.
    pub fn bytes_read(&self) -> u64 {
        self.bytes_read
    }

    /// Drops `buf[..keep_from]`, remembering it as header while no page has been seen.
    fn compact(&mut self, keep_from: usize) {
        if !self.seen_page && self.header.len() < MAX_HEADER_BYTES {
            let take = keep_from.min(MAX_HEADER_BYTES - self.header.len());
            self.header.extend_from_slice(&self.buf[..take]);
        }
        self.buf.drain(..keep_from);
        self.buf_offset += keep_from as u64;
        self.pos -= keep_from.min(self.pos);
    }

    /// Appends one read's worth of XML to the buffer; false at the end of the input.
    fn fill(&mut self) -> io::Result<bool> {
        if self.eof {
            return Ok(false);
        }
        let old = self.buf.len();
        self.buf.resize(old + READ_CHUNK, 0);
        let n = loop {
            match self.reader.read(&mut self.buf[old..]) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.buf.truncate(old);
                    return Err(e);
                }
            }
        };
        self.buf.truncate(old + n);
        self.bytes_read += n as u64;
        self.eof = n == 0;
        Ok(n > 0)
    }

    /// Finds the next `<page>` or `<page ...>` start tag at or after `from`.
    fn find_page_start(&self, from: usize) -> Option<usize> {
        let mut at = from;
        while let Some(i) = memmem::find(&self.buf[at..], b"<page") {
            let tag = at + i;
            match self.buf.get(tag + 5) {
                Some(b'>' | b' ' | b'\t' | b'\r' | b'\n' | b'/') => return Some(tag),
                Some(_) => at = tag + 5,
                None => return None,
            }
        }
        None
    }

    fn next_page(&mut self) -> io::Result<Option<RawPage>> {
        let start = loop {
            if let Some(start) = self.find_page_start(self.pos) {
                break start;
            }
            // Keep a tail that could hold the beginning of a split "<page" tag.
            let keep_from = self.buf.len().saturating_sub(6).max(self.pos);
            self.compact(keep_from);
            if !self.fill()? {
                return Ok(None);
            }
        };
        if !self.seen_page {
            self.header
                .extend_from_slice(&self.buf[..start.min(MAX_HEADER_BYTES)]);
            self.seen_page = true;
        }
        self.compact(start);
        let offset = self.buf_offset;
        let mut search_from = 0;
        loop {
            if let Some(i) = memmem::find(&self.buf[search_from..], b"</page>") {
                let end = search_from + i + b"</page>".len();
                self.pos = end;
                let xml = self.buf[..end].to_vec();
                return Ok(Some(RawPage {
                    offset,
                    xml,
                    unterminated: false,
                }));
            }
            search_from = self.buf.len().saturating_sub(6);
            if self.buf.len() > MAX_PAGE_BYTES {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "the page starting at XML byte {offset} runs past {} MiB without a \
                         </page>; this does not look like a MediaWiki export",
                        MAX_PAGE_BYTES >> 20
                    ),
                ));
            }
            if !self.fill()? {
                self.pos = self.buf.len();
                let xml = self.buf.clone();
                return Ok(Some(RawPage {
                    offset,
                    xml,
                    unterminated: true,
                }));
            }
        }
    }
}

impl<R: Read> Iterator for PageSplitter<R> {
    type Item = io::Result<RawPage>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_page().transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Hands out `n` bytes per read, to cut tags across reads.
    struct Chunked(io::Cursor<Vec<u8>>, usize);
    impl Read for Chunked {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = buf.len().min(self.1);
            self.0.read(&mut buf[..n])
        }
    }

    #[test]
    fn pages_header_and_offsets_survive_any_read_size() {
        let xml = "<mediawiki><siteinfo>x</siteinfo>\n<page>\n<title>A</title></page>\n  \
                   <pages>not a page</pages><page><title>B &lt;page&gt;</title></page></mediawiki>";
        for step in [1, 2, 3, 7, 4096] {
            let mut split = PageSplitter::new(Chunked(io::Cursor::new(xml.into()), step));
            let pages: Vec<RawPage> = split.by_ref().map(Result::unwrap).collect();
            assert_eq!(pages.len(), 2, "step {step}");
            for page in &pages {
                let at = page.offset as usize;
                assert_eq!(&xml.as_bytes()[at..at + page.xml.len()], &page.xml[..]);
                assert!(!page.unterminated);
            }
            assert_eq!(split.header(), b"<mediawiki><siteinfo>x</siteinfo>\n");
            assert_eq!(split.bytes_read(), xml.len() as u64);
        }
    }

    #[test]
    fn a_page_cut_off_by_the_end_of_the_xml_is_marked() {
        let xml = "<mediawiki><page><title>A</title></page><page><title>B</tit";
        let pages: Vec<RawPage> = PageSplitter::new(xml.as_bytes())
            .map(Result::unwrap)
            .collect();
        assert_eq!(pages.len(), 2);
        assert!(pages[1].unterminated);
        assert_eq!(pages[1].offset, 40);
    }
}

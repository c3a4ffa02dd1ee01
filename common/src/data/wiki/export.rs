//! Is this a MediaWiki XML export? [`check_start`] looks at the first bytes (after
//! decompression and transcoding) and, when they are not `<mediawiki`, says what they are: an
//! empty file, gzip or other compressed data, UTF-16 without a byte-order mark, other text or
//! binary data. [`ExportEnd`] watches for the closing `</mediawiki>`, so a dump cut short is an
//! error rather than a silently shorter corpus.

use std::io::{self, Read};
use std::path::Path;

use memchr::memmem;

/// Bytes looked at to recognise the export.
const HEAD_BYTES: usize = 4096;
/// The export's root element.
const START: &[u8] = b"<mediawiki";
/// What closes the export.
pub const END: &[u8] = b"</mediawiki>";

/// What the first bytes of a file that is not an export look like, for the error message.
fn describe(head: &[u8]) -> String {
    let magic: [(&[u8], &str); 6] = [
        (
            &[0x1f, 0x8b],
            "gzip-compressed data (decompress it, or use the .xml.bz2 dump)",
        ),
        (b"PK\x03\x04", "a zip archive"),
        (
            &[0xFD, b'7', b'z', b'X', b'Z'],
            "xz-compressed data (decompress it first)",
        ),
        (
            &[0x28, 0xB5, 0x2F, 0xFD],
            "zstd-compressed data (decompress it first)",
        ),
        (b"7z\xBC\xAF", "a 7-Zip archive (extract it first)"),
        (b"BZh", "bz2 data that does not decode to XML"),
    ];
    if head.is_empty() {
        return "an empty file".into();
    }
    if let Some((_, what)) = magic.iter().find(|(m, _)| head.starts_with(m)) {
        return (*what).into();
    }
    let pairs = head.len() / 2;
    let zeros_at = |parity: usize| (0..pairs).filter(|i| head[2 * i + parity] == 0).count();
    if pairs >= 2 && (zeros_at(0) * 2 > pairs || zeros_at(1) * 2 > pairs) {
        return "UTF-16 text without a byte-order mark (save it as UTF-8, or as UTF-16 with a \
                byte-order mark)"
            .into();
    }
    let shown: String = String::from_utf8_lossy(&head[..head.len().min(48)])
        .chars()
        .filter(|c| !c.is_control() || *c == ' ')
        .collect();
    let printable = head
        .iter()
        .filter(|&&b| b >= 0x20 || b == b'\n' || b == b'\r' || b == b'\t')
        .count();
    if std::str::from_utf8(head).is_ok() || printable * 10 >= head.len() * 9 {
        format!("text that starts {shown:?}")
    } else {
        let hex: Vec<String> = head.iter().take(8).map(|b| format!("{b:02x}")).collect();
        format!("binary data (first bytes {})", hex.join(" "))
    }
}

/// Skips white space, the XML declaration, comments and a doctype at the start of `head`.
fn skip_prolog(mut head: &[u8]) -> &[u8] {
    loop {
        head = head.trim_ascii_start();
        let close: &[u8] = if head.starts_with(b"<?") {
            b"?>"
        } else if head.starts_with(b"<!--") {
            b"-->"
        } else if head.starts_with(b"<!") {
            b">"
        } else {
            return head;
        };
        match memmem::find(head, close) {
            Some(at) => head = &head[at + close.len()..],
            None => return &[],
        }
    }
}

/// Reads the first bytes of `xml` and refuses anything but a MediaWiki export; returns a reader
/// of the same bytes from the start.
pub fn check_start<R: Read>(
    mut xml: R,
    path: &Path,
) -> io::Result<io::Chain<io::Cursor<Vec<u8>>, R>> {
    let mut head = vec![0u8; HEAD_BYTES];
    let mut filled = 0;
    while filled < head.len() {
        match xml.read(&mut head[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    head.truncate(filled);
    if !skip_prolog(&head).starts_with(START) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "{} is not a MediaWiki XML export: found {}; expected XML that starts with \
                 <mediawiki> (a Wikipedia pages-articles dump, .xml.bz2 or .xml)",
                path.display(),
                describe(&head)
            ),
        ));
    }
    Ok(io::Cursor::new(head).chain(xml))
}

/// Passes bytes through and notes whether `</mediawiki>` went by.
pub struct ExportEnd<R> {
    inner: R,
    /// The last bytes read, for a tag split between reads.
    carry: Vec<u8>,
    seen: bool,
}

impl<R> ExportEnd<R> {
    /// Watches `inner`.
    pub fn new(inner: R) -> Self {
        Self {
            inner,
            carry: Vec::new(),
            seen: false,
        }
    }

    /// Whether `</mediawiki>` has been read.
    pub fn seen(&self) -> bool {
        self.seen
    }
}

impl<R: Read> Read for ExportEnd<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if !self.seen {
            self.carry.extend_from_slice(&buf[..n]);
            self.seen = memmem::find(&self.carry, END).is_some();
            let keep = self.carry.len().min(END.len() - 1);
            self.carry.drain(..self.carry.len() - keep);
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(bytes: &[u8]) -> Result<Vec<u8>, String> {
        let mut out = Vec::new();
        check_start(bytes, Path::new("dump.xml"))
            .map_err(|e| e.to_string())?
            .read_to_end(&mut out)
            .unwrap();
        Ok(out)
    }

    #[test]
    fn an_export_passes_through_whole() {
        let xml =
            b"<?xml version=\"1.0\"?>\n<!-- c -->\n<mediawiki xmlns=\"x\"><page/></mediawiki>";
        assert_eq!(check(xml).unwrap(), xml);
    }

    #[test]
    fn other_inputs_are_named() {
        let utf16: Vec<u8> = "<mediawiki>"
            .encode_utf16()
            .flat_map(u16::to_le_bytes)
            .collect();
        for (input, found) in [
            (&b""[..], "found an empty file"),
            (&[0x1f, 0x8b, 8, 0, 0][..], "found gzip-compressed data"),
            (
                b"Ol\xc3\xa1, isto \xc3\xa9 texto.\n",
                "found text that starts \"Olá, isto é texto.\"",
            ),
            (&utf16, "found UTF-16 text without a byte-order mark"),
            (
                &[0x00, 0xff, 0x10, 0x80, 0x01, 0x02, 0x03, 0x04, 0x05][..],
                "found binary data (first bytes 00 ff 10 80",
            ),
        ] {
            let err = check(input).unwrap_err();
            assert!(
                err.starts_with("dump.xml is not a MediaWiki XML export"),
                "{err}"
            );
            assert!(err.contains(found), "{err}");
        }
    }

    #[test]
    fn the_end_tag_is_seen_across_reads() {
        let xml = b"<mediawiki><page/></media";
        let tail = b"wiki>\n";
        let mut end = ExportEnd::new(io::Cursor::new(xml.to_vec()).chain(&tail[..]));
        let mut buf = [0u8; 7];
        while end.read(&mut buf).unwrap() > 0 {}
        assert!(end.seen());
        let mut cut = ExportEnd::new(&xml[..]);
        std::io::copy(&mut cut, &mut std::io::sink()).unwrap();
        assert!(!cut.seen());
    }
}

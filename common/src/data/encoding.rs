//! Byte-order-mark detection and a streaming UTF-16 → UTF-8 transcoder, so that the XML parser
//! only ever sees UTF-8.

use std::io::{self, Read};

/// The text encoding a byte-order mark announced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encoding {
    /// UTF-8, with or without a BOM.
    Utf8,
    /// UTF-16 little-endian (BOM `FF FE`).
    Utf16Le,
    /// UTF-16 big-endian (BOM `FE FF`).
    Utf16Be,
}

/// Reads the first bytes of `reader`, recognises a byte-order mark and returns a reader of UTF-8
/// bytes with the BOM removed, together with the encoding that was found.
pub fn utf8_reader<R: Read + Send + 'static>(
    mut reader: R,
) -> io::Result<(Box<dyn Read + Send>, Encoding)> {
    let mut head = [0u8; 3];
    let mut filled = 0;
    while filled < 3 {
        let n = reader.read(&mut head[filled..])?;
        if n == 0 {
            break;
        }
        filled += n;
    }
    let head = &head[..filled];
    let (encoding, bom_len) = if head.starts_with(&[0xEF, 0xBB, 0xBF]) {
        (Encoding::Utf8, 3)
    } else if head.starts_with(&[0xFF, 0xFE]) {
        (Encoding::Utf16Le, 2)
    } else if head.starts_with(&[0xFE, 0xFF]) {
        (Encoding::Utf16Be, 2)
    } else {
        (Encoding::Utf8, 0)
    };
    let rest = io::Cursor::new(head[bom_len..].to_vec()).chain(reader);
    let out: Box<dyn Read + Send> = match encoding {
        Encoding::Utf8 => Box::new(rest),
        Encoding::Utf16Le | Encoding::Utf16Be => Box::new(Utf16ToUtf8::new(rest, encoding)),
    };
    Ok((out, encoding))
}

/// Transcodes a UTF-16 byte stream to UTF-8; unpaired surrogates become U+FFFD.
struct Utf16ToUtf8<R> {
    inner: R,
    big_endian: bool,
    /// Raw input not yet decoded: at most one odd byte and one high surrogate carry over.
    raw: Vec<u8>,
    /// Encoded output not yet returned.
    out: Vec<u8>,
    out_pos: usize,
    eof: bool,
}

impl<R: Read> Utf16ToUtf8<R> {
    fn new(inner: R, encoding: Encoding) -> Self {
        Self {
            inner,
            big_endian: encoding == Encoding::Utf16Be,
            raw: Vec::new(),
            out: Vec::new(),
            out_pos: 0,
            eof: false,
        }
    }

    fn fill(&mut self) -> io::Result<()> {
        let mut chunk = vec![0u8; 1 << 16];
        let n = self.inner.read(&mut chunk)?;
        if n == 0 {
            self.eof = true;
        }
        self.raw.extend_from_slice(&chunk[..n]);
        let units: Vec<u16> = self
            .raw
            .chunks_exact(2)
            .map(|p| {
                if self.big_endian {
                    u16::from_be_bytes([p[0], p[1]])
                } else {
                    u16::from_le_bytes([p[0], p[1]])
                }
            })
            .collect();
        // Hold back a trailing high surrogate (its pair may be in the next read) and an odd byte.
        let mut keep_units = 0;
        if !self.eof && units.last().is_some_and(|u| (0xD800..0xDC00).contains(u)) {
            keep_units = 1;
        }
        let decode_units = &units[..units.len() - keep_units];
        self.out.clear();
        self.out_pos = 0;
        for ch in char::decode_utf16(decode_units.iter().copied()) {
            let ch = ch.unwrap_or(char::REPLACEMENT_CHARACTER);
            let mut buf = [0u8; 4];
            self.out
                .extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
        }
        let consumed = decode_units.len() * 2;
        self.raw.drain(..consumed);
        if self.eof && !self.raw.is_empty() {
            // An odd final byte cannot be a character.
            self.raw.clear();
            self.out
                .extend_from_slice(char::REPLACEMENT_CHARACTER.to_string().as_bytes());
        }
        Ok(())
    }
}

impl<R: Read> Read for Utf16ToUtf8<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.out_pos == self.out.len() {
            if self.eof {
                return Ok(0);
            }
            self.fill()?;
        }
        let n = (self.out.len() - self.out_pos).min(buf.len());
        buf[..n].copy_from_slice(&self.out[self.out_pos..self.out_pos + n]);
        self.out_pos += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reader that hands out one byte at a time, to split surrogate pairs across reads.
    struct Trickle(io::Cursor<Vec<u8>>);
    impl Read for Trickle {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = buf.len().min(1);
            self.0.read(&mut buf[..n])
        }
    }

    fn transcode(bytes: Vec<u8>) -> (String, Encoding) {
        let (mut reader, enc) = utf8_reader(Trickle(io::Cursor::new(bytes))).unwrap();
        let mut s = String::new();
        reader.read_to_string(&mut s).unwrap();
        (s, enc)
    }

    #[test]
    fn utf16_both_byte_orders_become_utf8() {
        let text = "<title>Ünïcödé 𝄞 São Paulo</title>";
        let mut le = vec![0xFF, 0xFE];
        let mut be = vec![0xFE, 0xFF];
        for u in text.encode_utf16() {
            le.extend_from_slice(&u.to_le_bytes());
            be.extend_from_slice(&u.to_be_bytes());
        }
        assert_eq!(transcode(le), (text.to_string(), Encoding::Utf16Le));
        assert_eq!(transcode(be), (text.to_string(), Encoding::Utf16Be));
    }

    #[test]
    fn utf8_bom_is_removed_and_plain_utf8_passes_through() {
        let mut with_bom = vec![0xEF, 0xBB, 0xBF];
        with_bom.extend_from_slice("olá".as_bytes());
        assert_eq!(transcode(with_bom), ("olá".to_string(), Encoding::Utf8));
        assert_eq!(
            transcode(b"ab".to_vec()),
            ("ab".to_string(), Encoding::Utf8)
        );
    }

    #[test]
    fn unpaired_surrogate_becomes_replacement_character() {
        let mut le = vec![0xFF, 0xFE];
        for u in [0x61u16, 0xD800, 0x62] {
            le.extend_from_slice(&u.to_le_bytes());
        }
        assert_eq!(transcode(le).0, "a\u{FFFD}b");
    }
}

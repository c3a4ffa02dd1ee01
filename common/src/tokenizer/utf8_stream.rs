//! [`Utf8Stream`]: text from a stream of bytes that arrive a token at a time, decoded as
//! HuggingFace decodes (`String::from_utf8_lossy`): each invalid sequence becomes one U+FFFD and
//! the text goes on.

/// Turns bytes pushed piece by piece into text, holding back only an unfinished character. The
/// concatenation of every [`Utf8Stream::push`] and the final [`Utf8Stream::finish`] equals
/// `String::from_utf8_lossy` of all the bytes, however they were split.
#[derive(Debug, Default)]
pub struct Utf8Stream {
    pending: Vec<u8>,
}

impl Utf8Stream {
    /// Adds `bytes` and returns the text they complete.
    pub fn push(&mut self, bytes: &[u8]) -> String {
        self.pending.extend_from_slice(bytes);
        let mut out = String::new();
        let mut rest: &[u8] = &self.pending;
        loop {
            match std::str::from_utf8(rest) {
                Ok(text) => {
                    out.push_str(text);
                    rest = &[];
                    break;
                }
                Err(e) => {
                    let (valid, after) = rest.split_at(e.valid_up_to());
                    out.push_str(&String::from_utf8_lossy(valid));
                    match e.error_len() {
                        Some(bad) => {
                            out.push(char::REPLACEMENT_CHARACTER);
                            rest = &after[bad..];
                        }
                        // A character that the next bytes may finish.
                        None => {
                            rest = after;
                            break;
                        }
                    }
                }
            }
        }
        self.pending = rest.to_vec();
        out
    }

    /// The text of what is left at the end: an unfinished character becomes U+FFFD.
    pub fn finish(&mut self) -> String {
        let text = String::from_utf8_lossy(&self.pending).into_owned();
        self.pending.clear();
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn an_invalid_byte_becomes_one_replacement_and_the_text_goes_on() {
        let mut stream = Utf8Stream::default();
        let mut text = stream.push(b"ol\xc3");
        text += &stream.push(b"\xa1 \xff mundo \xe2\x82");
        text += &stream.push(b"\xac");
        text += &stream.push(b" \xf0\x9f");
        text += &stream.finish();
        assert_eq!(text, "olá \u{FFFD} mundo € \u{FFFD}");
    }

    proptest! {
        #[test]
        fn any_split_gives_from_utf8_lossy(
            bytes in proptest::collection::vec(any::<u8>(), 0..64),
            cuts in proptest::collection::vec(0usize..64, 0..8),
        ) {
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(bytes.len())).collect();
            cuts.sort_unstable();
            let mut stream = Utf8Stream::default();
            let mut text = String::new();
            let mut from = 0;
            for cut in cuts.into_iter().chain([bytes.len()]) {
                text += &stream.push(&bytes[from..cut]);
                from = cut;
            }
            text += &stream.finish();
            prop_assert_eq!(text, String::from_utf8_lossy(&bytes).into_owned());
        }
    }
}

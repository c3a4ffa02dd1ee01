//! The pre-tokenizer: splits text into words before BPE, with a pattern suited to Portuguese.
//!
//! A word is an optional space then letters (accented letters and combining marks included), an
//! optional space then one digit, an optional space then a run of other symbols, or a run of
//! white space. Every character belongs to exactly one word, so words concatenate back to the
//! text. The same pattern goes into tokenizer.json as a HuggingFace `Split` pre-tokenizer
//! (behavior `Isolated`) followed by `ByteLevel` without its own regex, so HuggingFace
//! `tokenizers` splits exactly as we do (both regex engines match leftmost-first).

use std::sync::OnceLock;

use regex_automata::meta::Regex;
use regex_automata::{Anchored, Input};

/// The split pattern, as written into tokenizer.json.
pub const SPLIT_PATTERN: &str = r" ?[\p{L}\p{M}]+| ?\p{N}| ?[^\s\p{L}\p{M}\p{N}]+|\s+";

/// Splits text into words with a regex, as HuggingFace's `Split` (behavior `Isolated`) does:
/// each match is a word, and any text between matches is a word too.
pub struct PreTokenizer {
    regex: Regex,
}

impl PreTokenizer {
    /// A pre-tokenizer for `pattern`.
    pub fn new(pattern: &str) -> Result<Self, Box<regex_automata::meta::BuildError>> {
        Ok(Self {
            regex: Regex::new(pattern).map_err(Box::new)?,
        })
    }

    /// The pre-tokenizer of [`SPLIT_PATTERN`].
    pub fn portuguese() -> &'static Self {
        static DEFAULT: OnceLock<PreTokenizer> = OnceLock::new();
        DEFAULT.get_or_init(|| Self::new(SPLIT_PATTERN).expect("the split pattern is valid"))
    }

    /// Iterates over the words of `text`; they concatenate back to `text`.
    pub fn words<'a>(&'a self, text: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        let mut at = 0;
        std::iter::from_fn(move || {
            if at >= text.len() {
                return None;
            }
            // Words usually tile the text, so the search is anchored where the last word ended
            // and needs no backwards scan to find where a match starts.
            let anchored = Input::new(text).range(at..).anchored(Anchored::Yes);
            let end = match self.regex.search(&anchored) {
                Some(m) if m.end() > at => m.end(),
                // Text the pattern does not match is a word up to the next match.
                _ => self
                    .regex
                    .find(Input::new(text).range(at..))
                    .map_or(text.len(), |m| {
                        if m.start() > at {
                            m.start()
                        } else {
                            text.len()
                        }
                    }),
            };
            let word = &text[at..end];
            at = end;
            Some(word)
        })
    }
}

/// Iterates over the words of `text` with the Portuguese pattern.
pub fn words(text: &str) -> impl Iterator<Item = &str> {
    PreTokenizer::portuguese().words(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn portuguese_words_digits_punctuation_and_spaces() {
        let got: Vec<&str> = words("Olá, São Paulo! Em 2024 d'água\n\n  x").collect();
        assert_eq!(
            got,
            [
                "Olá", ",", " São", " Paulo", "!", " Em", " 2", "0", "2", "4", " d", "'", "água",
                "\n\n  ", "x"
            ]
        );
        let text = "qualquer\ttexto — “com” símbolos… 3,5%";
        assert_eq!(words(text).collect::<String>(), text);
        // A pattern that leaves gaps: the gaps are words too, as in HuggingFace's Split.
        let digits = PreTokenizer::new(r"\d+").unwrap();
        assert_eq!(
            digits.words("ab12cd3").collect::<Vec<_>>(),
            ["ab", "12", "cd", "3"]
        );
    }
}

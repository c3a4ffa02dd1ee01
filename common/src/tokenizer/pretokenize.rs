//! The pre-tokenizer: splits text into words before BPE, with a pattern suited to Portuguese.
//!
//! A word is an optional space then letters (accented letters and combining marks included), an
//! optional space then one digit, an optional space then a run of other symbols, or a run of
//! white space. Every character belongs to exactly one word, so words concatenate back to the
//! text. The same pattern goes into tokenizer.json as a HuggingFace `Split` pre-tokenizer
//! (behavior `Isolated`) followed by `ByteLevel` without its own regex, so HuggingFace
//! `tokenizers` splits exactly as we do (both regex engines match leftmost-first).

use std::sync::OnceLock;

use regex::Regex;

/// The split pattern, as written into tokenizer.json.
pub const SPLIT_PATTERN: &str = r" ?[\p{L}\p{M}]+| ?\p{N}| ?[^\s\p{L}\p{M}\p{N}]+|\s+";

fn pattern() -> &'static Regex {
    static REGEX: OnceLock<Regex> = OnceLock::new();
    REGEX.get_or_init(|| Regex::new(SPLIT_PATTERN).expect("the split pattern is valid"))
}

/// Iterates over the words of `text`.
pub fn words(text: &str) -> impl Iterator<Item = &str> {
    pattern().find_iter(text).map(|m| m.as_str())
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
    }
}

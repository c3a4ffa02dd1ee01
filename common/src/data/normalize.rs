//! Text normalization: Unicode NFC (default), the PT-BR options `strip_accents` and `lowercase`,
//! runs of spaces collapsed, paragraph breaks kept.

use unicode_normalization::char::is_combining_mark;
use unicode_normalization::{IsNormalized, UnicodeNormalization, is_nfc_quick};

use super::wikitext::tidy::collapse_spaces;

/// What [`normalize`] does beyond NFC and space collapsing.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct NormalizeOptions {
    /// Decompose (NFD) and drop combining marks: "São Paulo" → "Sao Paulo", "JOSÉ" → "JOSE".
    pub strip_accents: bool,
    /// Lowercase everything.
    pub lowercase: bool,
}

/// Normalizes text line by line: each line is NFC-normalized (or accent-stripped), optionally
/// lowercased, and its white space collapsed; empty lines are dropped, other line breaks kept.
pub fn normalize(text: &str, options: NormalizeOptions) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.split('\n') {
        let line = normalize_line(line, options);
        if !line.is_empty() {
            if !out.is_empty() {
                out.push('\n');
            }
            out.push_str(&line);
        }
    }
    out
}

fn normalize_line(line: &str, options: NormalizeOptions) -> String {
    let composed: String = if options.strip_accents {
        line.nfd()
            .filter(|c| !is_combining_mark(*c))
            .nfc()
            .collect()
    } else if is_nfc_quick(line.chars()) == IsNormalized::Yes {
        line.to_string()
    } else {
        line.nfc().collect()
    };
    let cased = if options.lowercase {
        composed.to_lowercase()
    } else {
        composed
    };
    collapse_spaces(&cased)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nfc_by_default() {
        let decomposed = "Sa\u{0303}o Jose\u{0301}";
        assert_eq!(
            normalize(decomposed, NormalizeOptions::default()),
            "São José"
        );
    }

    #[test]
    fn ptbr_options() {
        let strip = NormalizeOptions {
            strip_accents: true,
            lowercase: false,
        };
        assert_eq!(normalize("São Paulo", strip), "Sao Paulo");
        assert_eq!(normalize("JOSÉ", strip), "JOSE");
        assert_eq!(normalize("ação, côco, àquela", strip), "acao, coco, aquela");
        let lower = NormalizeOptions {
            strip_accents: false,
            lowercase: true,
        };
        assert_eq!(normalize("AÇÃO Á", lower), "ação á");
    }

    #[test]
    fn spaces_collapse_and_paragraph_breaks_stay() {
        let text = "  um   dois\t três \n\n quatro  ";
        assert_eq!(
            normalize(text, NormalizeOptions::default()),
            "um dois três\nquatro"
        );
    }
}

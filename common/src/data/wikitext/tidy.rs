//! The last step for every paragraph: restore `<nowiki>` text, decode HTML entities, drop magic
//! words and leftover markup, collapse white space, and (for wikitext) tidy what the removals left
//! behind. These run on every byte of the corpus, so they work on bytes and copy whole slices.

use std::borrow::Cow;

use super::LineMode;
use super::tags::unshield;

/// Markup pairs that must never survive into the corpus, even from broken wikitext.
const LEFTOVER_MARKUP: &[&str] = &["{{", "}}", "[[", "]]", "{|", "|}"];

/// Tidies one paragraph: restores `<nowiki>` text, decodes HTML entities, removes magic words
/// (`__NOTOC__`) and leftover markup pairs, and collapses white space (no-break spaces included).
/// For wikitext it also removes brackets that the removals emptied ("lisboa ( ) é", "(, )") and
/// the space they leave before punctuation ("texto , mais" → "texto, mais"); corpus text keeps
/// its own brackets and spacing.
pub fn tidy(paragraph: &str, mode: LineMode) -> String {
    let unshielded = unshield(paragraph);
    let decoded = html_escape::decode_html_entities(&unshielded);
    let mut text = remove_magic_words(&decoded);
    for pair in LEFTOVER_MARKUP {
        if text.contains(pair) {
            text = Cow::Owned(text.replace(pair, ""));
        }
    }
    let text = collapse_spaces(&text);
    match mode {
        LineMode::Wikitext => close_up_punctuation(&remove_emptied_brackets(&text)),
        LineMode::LinePerParagraph => text,
    }
}

/// Byte length of the white-space character at the start of `bytes` (ASCII and Unicode white
/// space, no-break spaces included), or 0.
fn whitespace_len(bytes: &[u8]) -> usize {
    match bytes {
        [b' ' | b'\t' | b'\n' | b'\r' | 0x0B | 0x0C, ..] => 1,
        [0xC2, 0x85 | 0xA0, ..] => 2,
        [0xE1, 0x9A, 0x80, ..] => 3,
        [0xE2, 0x80, 0x80..=0x8A | 0xA8 | 0xA9 | 0xAF, ..] => 3,
        [0xE2, 0x81, 0x9F, ..] => 3,
        [0xE3, 0x80, 0x80, ..] => 3,
        _ => 0,
    }
}

/// Bytes that may start a white-space character: ASCII white space and the lead bytes of the
/// Unicode spaces that [`whitespace_len`] knows.
const MAY_START_SPACE: [bool; 256] = {
    let mut table = [false; 256];
    let mut i = 0;
    while i < 256 {
        table[i] = matches!(
            i as u8,
            b' ' | b'\t' | b'\n' | b'\r' | 0x0B | 0x0C | 0xC2 | 0xE1 | 0xE2 | 0xE3
        );
        i += 1;
    }
    table
};

/// Collapses every run of white space (tabs and no-break spaces included) into one space and
/// trims the ends.
pub fn collapse_spaces(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < bytes.len() {
        // Skip white space.
        let ws = whitespace_len(&bytes[i..]);
        if ws > 0 {
            i += ws;
            continue;
        }
        // Copy one word: up to the next byte that starts white space.
        let start = i;
        loop {
            i += 1;
            while i < bytes.len() && !MAY_START_SPACE[bytes[i] as usize] {
                i += 1;
            }
            if i >= bytes.len() || whitespace_len(&bytes[i..]) > 0 {
                break;
            }
        }
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(&text[start..i]);
    }
    out
}

/// Copies `text` without the byte ranges in `drop` (sorted, disjoint, on ASCII bytes).
fn without_ranges(text: &str, drop: &[(usize, usize)]) -> String {
    let mut out = String::with_capacity(text.len());
    let mut last = 0;
    for &(start, end) in drop {
        out.push_str(&text[last..start]);
        last = end;
    }
    out.push_str(&text[last..]);
    out
}

/// Removes `( )`, `(, )`, `[ ]` and the like (brackets holding only spaces, commas and
/// semicolons) where the bracket opens a word, so that code such as `Print()` stays.
fn remove_emptied_brackets(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut drop = Vec::new();
    for (i, &b) in bytes.iter().enumerate() {
        let close = match b {
            b'(' => b')',
            b'[' => b']',
            _ => continue,
        };
        if i > 0 && bytes[i - 1] != b' ' {
            continue;
        }
        let inner = bytes[i + 1..]
            .iter()
            .take_while(|&&x| matches!(x, b' ' | b',' | b';'))
            .count();
        if bytes.get(i + 1 + inner) == Some(&close) && drop.last().is_none_or(|&(_, e)| e <= i) {
            drop.push((i, i + inner + 2));
        }
    }
    if drop.is_empty() {
        text.to_string()
    } else {
        collapse_spaces(&without_ranges(text, &drop))
    }
}

/// Removes a space before `,` `.` `;` `:` `)` when that punctuation ends a word, and a space
/// after `(`.
fn close_up_punctuation(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut drop = Vec::new();
    for (i, &b) in bytes.iter().enumerate() {
        if b != b' ' {
            continue;
        }
        let ends_word = |at: usize| bytes.get(at).is_none_or(|&a| a == b' ');
        let before_punct =
            matches!(bytes.get(i + 1), Some(b',' | b'.' | b';' | b':' | b')')) && ends_word(i + 2);
        let after_paren = i > 0 && bytes[i - 1] == b'(';
        if before_punct || after_paren {
            drop.push((i, i + 1));
        }
    }
    if drop.is_empty() {
        text.to_string()
    } else {
        without_ranges(text, &drop)
    }
}

/// Removes behaviour switches such as `__NOTOC__`, `__TOC__`, `__SEMTDC__`.
fn remove_magic_words(text: &str) -> Cow<'_, str> {
    if !text.contains("__") {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("__") {
        let after = &rest[at + 2..];
        let word_len = after.bytes().take_while(|b| b.is_ascii_uppercase()).count();
        if word_len > 0 && after[word_len..].starts_with("__") {
            out.push_str(&rest[..at]);
            rest = &after[word_len + 2..];
        } else {
            out.push_str(&rest[..at + 2]);
            rest = after;
        }
    }
    out.push_str(rest);
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tidy_decodes_entities_and_cleans_leftovers() {
        let wiki = LineMode::Wikitext;
        assert_eq!(
            tidy("A&nbsp;&amp;&nbsp;B &lt;3 &eacute; &#8212; x", wiki),
            "A & B <3 é — x"
        );
        assert_eq!(
            tidy("Lisboa ( ) é a capital (, ) de Portugal .", wiki),
            "Lisboa é a capital de Portugal."
        );
        assert_eq!(
            tidy("( nascido em 1990 ) , viveu", wiki),
            "(nascido em 1990), viveu"
        );
        assert_eq!(tidy("__NOTOC__Texto __TOC__ aqui", wiki), "Texto aqui");
        assert_eq!(tidy("broken [[ markup }} here", wiki), "broken markup here");
    }

    #[test]
    fn tidy_leaves_code_and_corpus_spacing_alone() {
        let corpus = LineMode::LinePerParagraph;
        let text = "As funções InputBox(), Msgbox() e (;) ou [ ] no arquivo .py ; Sub , uma";
        assert_eq!(tidy(text, corpus), text);
        assert_eq!(
            tidy("arquivo .py e Print()", LineMode::Wikitext),
            "arquivo .py e Print()"
        );
    }

    #[test]
    fn collapse_handles_unicode_spaces() {
        assert_eq!(
            collapse_spaces("  a\u{a0}\u{a0}b\t\u{2009}c\u{3000}d\u{202f} "),
            "a b c d"
        );
        assert_eq!(collapse_spaces("já está"), "já está");
        assert_eq!(collapse_spaces(""), "");
    }
}

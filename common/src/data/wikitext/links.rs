//! Internal links `[[…]]` and external links `[http://… label]`.
//!
//! `[[target|label]]` becomes label, `[[target]]` becomes target, `[[target|]]` (the pipe trick)
//! becomes the target without its namespace and parenthetical. File and image links (English and
//! Portuguese names) vanish with their captions, links nested in the caption included; category
//! and interlanguage links vanish. `[http://x label]` becomes label and `[http://x]` vanishes.

use super::scan::{replace_balanced, split_top_level};

/// Namespace prefixes of media links, lowercase.
const MEDIA_PREFIXES: &[&str] = &[
    "file", "image", "media", "ficheiro", "arquivo", "imagem", "mídia", "midia",
];
/// Namespace prefixes of category links, lowercase.
const CATEGORY_PREFIXES: &[&str] = &["category", "categoria"];
/// URL schemes that open an external link.
const URL_SCHEMES: &[&str] = &[
    "http://", "https://", "ftp://", "ftps://", "//", "mailto:", "irc://", "news:",
];

/// Replaces internal links, then external links, as the module documentation describes.
pub fn replace_links(text: &str) -> String {
    let mut internal = String::with_capacity(text.len());
    internal_into(text, &mut internal);
    external(&internal)
}

fn internal_into(text: &str, out: &mut String) {
    replace_balanced(text, *b"[[", *b"]]", out, render_link);
}

fn render_link(inner: &str, out: &mut String) {
    let parts = split_top_level(inner, b'|');
    let target = parts[0].trim();
    let visible = target.starts_with(':');
    let target = target.trim_start_matches(':').trim();
    let prefix = target.split_once(':').map(|(p, _)| p.trim());
    if let (false, Some(prefix)) = (visible, prefix) {
        let lower = prefix.to_lowercase();
        if MEDIA_PREFIXES.contains(&lower.as_str())
            || CATEGORY_PREFIXES.contains(&lower.as_str())
            || is_language_code(prefix)
        {
            return;
        }
    }
    if parts.len() > 1 {
        let label = inner[parts[0].len() + 1..].trim();
        if label.is_empty() {
            out.push_str(&pipe_trick(target));
        } else {
            internal_into(label, out);
        }
    } else {
        out.push_str(target.trim_start_matches('#'));
    }
}

/// Interlanguage prefixes are lowercase language codes: `en`, `pt`, `zh-min-nan`, `simple`.
fn is_language_code(prefix: &str) -> bool {
    let mut pieces = prefix.split('-');
    let first = pieces.next().unwrap_or_default();
    let lower_ascii = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_lowercase());
    (prefix == "simple" || (lower_ascii(first) && (2..=3).contains(&first.len())))
        && pieces.all(lower_ascii)
}

/// `[[Namespace:Title (disambiguation)|]]` shows "Title".
fn pipe_trick(target: &str) -> String {
    let title = target.split_once(':').map_or(target, |(_, t)| t).trim();
    let title = match title.find(" (") {
        Some(at) if title.ends_with(')') => &title[..at],
        _ => title,
    };
    title.split(',').next().unwrap_or(title).trim().to_string()
}

/// `[url label]` → label; `[url]` → nothing. A `[` that does not open a URL stays.
fn external(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut last = 0;
    let mut i = 0;
    while let Some(rel) = memchr::memchr(b'[', &bytes[i..]) {
        let start = i + rel;
        let rest = &text[start + 1..];
        let opens_url = URL_SCHEMES.iter().any(|s| {
            rest.get(..s.len())
                .is_some_and(|p| p.eq_ignore_ascii_case(s))
        });
        let close = rest
            .find([']', '\n'])
            .filter(|&c| rest.as_bytes()[c] == b']');
        match (opens_url, close) {
            (true, Some(close)) => {
                out.push_str(&text[last..start]);
                let inside = &rest[..close];
                if let Some((_, label)) = inside.split_once([' ', '\t']) {
                    out.push_str(label.trim());
                }
                i = start + 1 + close + 1;
                last = i;
            }
            _ => i = start + 1,
        }
    }
    out.push_str(&text[last..]);
    out
}

#[cfg(test)]
mod tests {
    use super::replace_links as l;

    #[test]
    fn internal_links_render_their_label_or_target() {
        assert_eq!(
            l("a [[Brasil]] b [[São Paulo (cidade)|São Paulo]]s"),
            "a Brasil b São Paulos"
        );
        assert_eq!(
            l("[[Rio de Janeiro (estado)|]] e [[:Categoria:Rios]]"),
            "Rio de Janeiro e Categoria:Rios"
        );
        assert_eq!(l("see [[#History]]"), "see History");
    }

    #[test]
    fn media_category_and_interlanguage_links_vanish_with_nested_captions() {
        let text = "x[[File:A.jpg|thumb|A [[caption]] with [[a|links]]]]y[[Ficheiro:b.png|c]]\
                    [[Imagem:c.svg]][[Arquivo:d.ogg]][[Categoria:Brasil]][[Category:X|sort]]\
                    [[en:Brazil]][[zh-min-nan:Pa-se]]z";
        assert_eq!(l(text), "xyz");
        assert_eq!(l("[[Wikipédia:Política|política]]"), "política");
    }

    #[test]
    fn external_links_keep_labels() {
        assert_eq!(
            l("a [http://x.org/p?q=1 the label] b [https://y.org] c"),
            "a the label b  c"
        );
        assert_eq!(l("[1] and [not a link] stay"), "[1] and [not a link] stay");
    }
}

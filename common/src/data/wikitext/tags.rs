//! HTML-like markup in wikitext: comments, extension tags dropped with their content (`<ref>`,
//! `<math>`, `<gallery>`, …), `<nowiki>` whose content is shielded from further markup
//! processing, and the HTML tags MediaWiki allows removed while their content stays. Anything
//! else in angle brackets (`<nome do arquivo>`, `a < b`) is text, as MediaWiki shows it.

/// Tags whose content is not prose (citations, formulas, code, galleries, scores, maps): removed
/// together with everything between the opening and the closing tag.
const DROPPED_WITH_CONTENT: &[&str] = &[
    "ref",
    "references",
    "math",
    "chem",
    "ce",
    "gallery",
    "imagemap",
    "timeline",
    "score",
    "hiero",
    "graph",
    "mapframe",
    "maplink",
    "syntaxhighlight",
    "source",
    "pre",
    "templatedata",
    "templatestyles",
    "inputbox",
    "categorytree",
    "includeonly",
    "table",
];

/// Tags that end a block: replaced by a line break so that paragraphs stay apart.
const BLOCK_TAGS: &[&str] = &[
    "br",
    "p",
    "div",
    "blockquote",
    "center",
    "li",
    "ul",
    "ol",
    "dl",
    "dd",
    "dt",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "poem",
    "hr",
];

/// HTML tags MediaWiki accepts in wikitext (besides the lists above): removed, content kept.
const INLINE_TAGS: &[&str] = &[
    "abbr",
    "b",
    "bdi",
    "bdo",
    "big",
    "caption",
    "cite",
    "code",
    "data",
    "del",
    "dfn",
    "em",
    "font",
    "i",
    "ins",
    "kbd",
    "mark",
    "q",
    "rb",
    "rp",
    "rt",
    "rtc",
    "ruby",
    "s",
    "samp",
    "small",
    "span",
    "strike",
    "strong",
    "sub",
    "sup",
    "td",
    "th",
    "time",
    "tr",
    "tt",
    "u",
    "var",
    "wbr",
    "noinclude",
    "onlyinclude",
    "section",
    "indicator",
];

/// First code point of the private-use range that shields `<nowiki>` characters.
const SHIELD_BASE: u32 = 0xF0000;
/// The characters that `<nowiki>` content must not have interpreted as markup.
const SHIELDED: &[char] = &[
    '[', ']', '{', '}', '|', '\'', '=', '<', '>', '*', '#', ':', ';',
];

/// Removes comments and tags as described in the module documentation.
pub fn strip_tags(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let bytes = text.as_bytes();
    let mut last = 0;
    let mut i = 0;
    while let Some(rel) = memchr::memchr(b'<', &bytes[i..]) {
        let at = i + rel;
        if bytes[at..].starts_with(b"<!--") {
            out.push_str(&text[last..at]);
            let end = memchr::memmem::find(&bytes[at + 4..], b"-->")
                .map_or(text.len(), |e| at + 4 + e + 3);
            i = end;
            last = end;
            continue;
        }
        let Some(tag) = Tag::parse(text, at) else {
            i = at + 1;
            continue;
        };
        out.push_str(&text[last..at]);
        let name = tag.name.to_ascii_lowercase();
        let mut end = tag.end;
        let opens = !tag.closing && !tag.self_closing;
        if name == "nowiki" {
            if opens && let Some((content_end, close_end)) = find_closing(text, tag.end, "nowiki") {
                shield(&text[tag.end..content_end], &mut out);
                end = close_end;
            }
        } else if DROPPED_WITH_CONTENT.contains(&name.as_str()) {
            if opens && let Some((_, close_end)) = find_closing(text, tag.end, &name) {
                end = close_end;
            }
        } else if BLOCK_TAGS.contains(&name.as_str()) {
            out.push('\n');
        } else if !INLINE_TAGS.contains(&name.as_str()) {
            // Not a tag MediaWiki knows: literal text.
            out.push_str(&text[at..tag.end]);
        }
        i = end;
        last = end;
    }
    out.push_str(&text[last..]);
    out
}

/// Puts back the characters that [`strip_tags`] shielded inside `<nowiki>` (done by
/// [`super::tidy::tidy`], after the markup passes).
pub fn unshield(text: &str) -> std::borrow::Cow<'_, str> {
    // Shielded characters are four-byte sequences starting 0xF3 0xB0.
    if memchr::memmem::find(text.as_bytes(), &[0xF3, 0xB0]).is_none() {
        return std::borrow::Cow::Borrowed(text);
    }
    text.chars()
        .map(|c| {
            let code = c as u32;
            if (SHIELD_BASE..SHIELD_BASE + 128).contains(&code) {
                char::from_u32(code - SHIELD_BASE).unwrap_or(c)
            } else {
                c
            }
        })
        .collect::<String>()
        .into()
}

fn shield(content: &str, out: &mut String) {
    for c in content.chars() {
        if SHIELDED.contains(&c) {
            out.push(char::from_u32(SHIELD_BASE + c as u32).unwrap_or(c));
        } else {
            out.push(c);
        }
    }
}

/// One tag: `<name attr…>`, `</name>` or `<name … />`.
struct Tag<'a> {
    name: &'a str,
    closing: bool,
    self_closing: bool,
    /// Byte index just past the tag's `>`.
    end: usize,
}

impl<'a> Tag<'a> {
    /// Parses a tag at `at` (which holds `<`). Text such as `a < b` or `<3` is not a tag.
    fn parse(text: &'a str, at: usize) -> Option<Tag<'a>> {
        let bytes = text.as_bytes();
        let mut i = at + 1;
        let closing = bytes.get(i) == Some(&b'/');
        if closing {
            i += 1;
        }
        let name_start = i;
        while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'-') {
            i += 1;
        }
        if i == name_start || !bytes[name_start].is_ascii_alphabetic() {
            return None;
        }
        let name = &text[name_start..i];
        // The tag ends at the next '>' before any '<' or line break.
        let rest = &bytes[i..];
        let close = rest
            .iter()
            .position(|&b| b == b'>' || b == b'<' || b == b'\n')?;
        if rest[close] != b'>' {
            return None;
        }
        if close > 0 && !matches!(rest[0], b' ' | b'\t' | b'/') {
            return None;
        }
        let self_closing = close > 0 && rest[close - 1] == b'/';
        Some(Tag {
            name,
            closing,
            self_closing,
            end: i + close + 1,
        })
    }
}

/// Finds `</name>` (any case) at or after `from`; returns where it starts and ends.
fn find_closing(text: &str, from: usize, name: &str) -> Option<(usize, usize)> {
    let bytes = text.as_bytes();
    let mut i = from;
    while let Some(rel) = memchr::memmem::find(&bytes[i..], b"</") {
        let at = i + rel;
        if let Some(tag) = Tag::parse(text, at)
            && tag.closing
            && tag.name.eq_ignore_ascii_case(name)
        {
            return Some((at, tag.end));
        }
        i = at + 2;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refs_comments_math_and_gallery_go_with_their_content() {
        let text = "A<ref name=\"x\">{{cite|y}}</ref> b<ref name=x/> c<!-- hidden\nnote --> d \
                    <math>x^2</math>e<GALLERY>\nFile:a.jpg|cap\n</gallery>f<REF>z</Ref>.";
        assert_eq!(strip_tags(text), "A b c d ef.");
    }

    #[test]
    fn other_tags_keep_their_content_and_blocks_break_lines() {
        assert_eq!(
            strip_tags("<span style=\"color:red\">red</span> and <b>bold</b><br/>next"),
            "red and bold\nnext"
        );
        assert_eq!(
            strip_tags("a < b and 3<4 and <- arrow"),
            "a < b and 3<4 and <- arrow"
        );
        assert_eq!(
            strip_tags("apt install <nome-do-pacote> e <chapt>"),
            "apt install <nome-do-pacote> e <chapt>"
        );
    }

    #[test]
    fn nowiki_content_is_shielded_then_restored() {
        let shielded = strip_tags("x <nowiki>[[not a link]]</nowiki> y<nowiki/>z");
        assert!(!shielded.contains("[["));
        assert_eq!(unshield(&shielded), "x [[not a link]] yz");
    }

    #[test]
    fn an_unclosed_comment_hides_the_rest() {
        assert_eq!(strip_tags("kept <!-- never closed"), "kept ");
    }
}

//! Bracket matching shared by the template and link passes.

/// Finds the end of the construct opened by the two-byte `open` at `start` (`{{` or `[[`),
/// counting nested pairs; returns the byte index just past the matching `close`.
pub fn find_matching(bytes: &[u8], start: usize, open: [u8; 2], close: [u8; 2]) -> Option<usize> {
    let mut depth = 0usize;
    let mut i = start;
    while i + 1 < bytes.len() {
        let rel = memchr::memchr2(open[0], close[0], &bytes[i..])?;
        i += rel;
        if i + 1 >= bytes.len() {
            return None;
        }
        if bytes[i] == open[0] && bytes[i + 1] == open[1] {
            depth += 1;
            i += 2;
        } else if bytes[i] == close[0] && bytes[i + 1] == close[1] {
            depth = depth.checked_sub(1)?;
            i += 2;
            if depth == 0 {
                return Some(i);
            }
        } else {
            i += 1;
        }
    }
    None
}

/// Copies `text` into `out`, handing the inside of each outermost `open … close` construct
/// (nesting counted) to `render` instead; an unclosed opener loses its two bytes and the text
/// after it is copied on.
pub fn replace_balanced(
    text: &str,
    open: [u8; 2],
    close: [u8; 2],
    out: &mut String,
    mut render: impl FnMut(&str, &mut String),
) {
    let bytes = text.as_bytes();
    let mut last = 0;
    let mut i = 0;
    while let Some(rel) = memchr::memmem::find(&bytes[i..], &open) {
        let start = i + rel;
        out.push_str(&text[last..start]);
        match find_matching(bytes, start, open, close) {
            Some(end) => {
                render(&text[start + 2..end - 2], out);
                i = end;
            }
            None => i = start + 2,
        }
        last = i;
    }
    out.push_str(&text[last..]);
}

/// Splits `text` at each `sep` byte that is not inside `{{…}}` or `[[…]]`.
pub fn split_top_level(text: &str, sep: u8) -> Vec<&str> {
    let bytes = text.as_bytes();
    let mut parts = Vec::new();
    let (mut braces, mut brackets) = (0usize, 0usize);
    let mut last = 0;
    let mut i = 0;
    while i < bytes.len() {
        let pair = bytes.get(i..i + 2);
        match pair {
            Some(b"{{") => {
                braces += 1;
                i += 2;
                continue;
            }
            Some(b"}}") if braces > 0 => {
                braces -= 1;
                i += 2;
                continue;
            }
            Some(b"[[") => {
                brackets += 1;
                i += 2;
                continue;
            }
            Some(b"]]") if brackets > 0 => {
                brackets -= 1;
                i += 2;
                continue;
            }
            _ => {}
        }
        if bytes[i] == sep && braces == 0 && brackets == 0 {
            parts.push(&text[last..i]);
            last = i + 1;
        }
        i += 1;
    }
    parts.push(&text[last..]);
    parts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matching_counts_nesting() {
        let s = b"{{a|{{b}}|c}} tail";
        assert_eq!(find_matching(s, 0, *b"{{", *b"}}"), Some(13));
        assert_eq!(find_matching(b"{{a|{{b}}", 0, *b"{{", *b"}}"), None);
        assert_eq!(find_matching(b"[[a|[[b]] c]]", 0, *b"[[", *b"]]"), Some(13));
    }

    #[test]
    fn split_ignores_separators_inside_nested_markup() {
        assert_eq!(
            split_top_level("lang|en|[[a|b]] {{x|y}}|z", b'|'),
            vec!["lang", "en", "[[a|b]] {{x|y}}", "z"]
        );
    }
}

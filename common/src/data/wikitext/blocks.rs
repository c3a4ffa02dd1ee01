//! Block structure: tables, headings, lists, paragraphs, bold and italic quotes, and the final
//! tidy-up of each paragraph (entities, magic words, spaces, emptied brackets).

use super::tidy::tidy;

/// Removes `{| … |}` tables, nested ones included. A table opens on a line starting with `{|`
/// (after any `:` indentation) and closes on a line starting with `|}`; an unclosed table runs to
/// the end of the text, as MediaWiki renders it.
pub fn remove_tables(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut depth = 0usize;
    for line in text.split('\n') {
        let start = line.trim_start_matches([':', ' ', '\t']);
        if start.starts_with("{|") {
            depth += 1;
        } else if depth > 0 {
            if start.starts_with("|}") {
                depth -= 1;
            }
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// Removes bold and italic quote runs (`''`, `'''`, `'''''`); single apostrophes stay.
pub fn remove_quote_runs(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut last = 0;
    let mut i = 0;
    while let Some(rel) = memchr::memchr(b'\'', &bytes[i..]) {
        let start = i + rel;
        let run = bytes[start..].iter().take_while(|&&b| b == b'\'').count();
        if run >= 2 {
            out.push_str(&text[last..start]);
            last = start + run;
        }
        i = start + run;
    }
    out.push_str(&text[last..]);
    out
}

/// How lines become paragraphs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LineMode {
    /// Wikitext: consecutive text lines form one paragraph; blank lines, headings and list
    /// items separate paragraphs.
    Wikitext,
    /// Corpus text: every line is a paragraph of its own.
    LinePerParagraph,
}

/// Turns cleaned lines into paragraphs joined by `\n`. Headings are kept as a line of their own
/// when their section has text, and dropped when it has none (before the next heading of the same
/// or a higher level). List markers are removed and the item text kept as a paragraph. Each
/// paragraph is tidied by [`tidy`]; one left without a letter or digit is dropped.
pub fn paragraphs(text: &str, mode: LineMode) -> String {
    let mut out = String::with_capacity(text.len());
    let mut current = String::new();
    // Headings waiting for their section's first paragraph: (level, text).
    let mut pending: Vec<(usize, String)> = Vec::new();
    let emit = |paragraph: &str, pending: &mut Vec<(usize, String)>, out: &mut String| {
        let tidy = tidy(paragraph, mode);
        if !tidy.chars().any(char::is_alphanumeric) {
            return;
        }
        for (_, heading) in pending.drain(..) {
            out.push_str(&heading);
            out.push('\n');
        }
        out.push_str(&tidy);
        out.push('\n');
    };
    for line in text.split('\n') {
        let line = line.trim();
        if let Some((level, heading)) = heading(line) {
            emit(&std::mem::take(&mut current), &mut pending, &mut out);
            pending.retain(|(l, _)| *l < level);
            let heading = tidy(heading, mode);
            if heading.chars().any(char::is_alphanumeric) {
                pending.push((level, heading));
            }
            continue;
        }
        if line.is_empty() || line.starts_with("----") {
            emit(&std::mem::take(&mut current), &mut pending, &mut out);
            continue;
        }
        let item = list_item(line, mode);
        if item.len() != line.len() || mode == LineMode::LinePerParagraph {
            emit(&std::mem::take(&mut current), &mut pending, &mut out);
            emit(item, &mut pending, &mut out);
            continue;
        }
        if !current.is_empty() {
            current.push(' ');
        }
        current.push_str(line);
    }
    emit(&current, &mut pending, &mut out);
    if out.ends_with('\n') {
        out.pop();
    }
    out
}

/// A line without its list markers (`*`, `#`, `:`, `;`). In corpus text a marker must be
/// followed by a space, so that "#skolelinux" or "*.slice" stay as they are.
fn list_item(line: &str, mode: LineMode) -> &str {
    let item = line.trim_start_matches(['*', '#', ':', ';']);
    let is_list = match mode {
        LineMode::Wikitext => true,
        LineMode::LinePerParagraph => item.starts_with(' '),
    };
    if is_list { item } else { line }
}

/// `== Title ==` → (2, "Title").
fn heading(line: &str) -> Option<(usize, &str)> {
    if !line.starts_with('=') || !line.ends_with('=') || line.len() < 3 {
        return None;
    }
    let open = line.bytes().take_while(|&b| b == b'=').count();
    let close = line.bytes().rev().take_while(|&b| b == b'=').count();
    let level = open.min(close);
    if level * 2 >= line.len() {
        return None;
    }
    Some((level, line[level..line.len() - level].trim()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_nested_and_indented_are_removed() {
        let text = "before\n{| class=x\n|a||b\n|-\n|\n{|\n|inner\n|}\n|}\nafter\n:{|\n|c\n|}\nend";
        assert_eq!(remove_tables(text), "before\nafter\nend\n");
    }

    #[test]
    fn quote_runs_go_but_apostrophes_stay() {
        assert_eq!(
            remove_quote_runs("'''Bold''' and ''it'' d'água '''''both'''''"),
            "Bold and it d'água both"
        );
    }

    #[test]
    fn headings_lists_and_paragraph_joining() {
        let text = "Intro line one\nline two\n\n== Empty ==\n== History ==\n=== Early ===\n\
                    * item one\n# item two\n; term\n----\n== Tail ==\n";
        assert_eq!(
            paragraphs(text, LineMode::Wikitext),
            "Intro line one line two\nHistory\nEarly\nitem one\nitem two\nterm"
        );
        assert_eq!(paragraphs("a\nb", LineMode::LinePerParagraph), "a\nb");
    }
}

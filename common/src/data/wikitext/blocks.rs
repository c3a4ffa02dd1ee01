//! Block structure: tables, headings, lists, paragraphs, bold and italic quotes, and the final
//! tidy-up of each paragraph (entities, magic words, spaces, emptied brackets).

use super::tags::unshield;

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
    let mut out = String::with_capacity(text.len());
    let mut run = 0usize;
    for c in text.chars() {
        if c == '\'' {
            run += 1;
            continue;
        }
        if run == 1 {
            out.push('\'');
        }
        run = 0;
        out.push(c);
    }
    if run == 1 {
        out.push('\'');
    }
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

/// Markup pairs that must never survive into the corpus, even from broken wikitext.
const LEFTOVER_MARKUP: &[&str] = &["{{", "}}", "[[", "]]", "{|", "|}"];

/// Tidies one paragraph: restores `<nowiki>` text, decodes HTML entities, removes magic words
/// (`__NOTOC__`) and leftover markup pairs, and collapses white space (no-break spaces included).
/// For wikitext it also removes brackets that
/// the removals emptied ("lisboa ( ) é", "(, )") and the space they leave before punctuation
/// ("texto , mais" → "texto, mais"); corpus text keeps its own brackets and spacing.
pub fn tidy(paragraph: &str, mode: LineMode) -> String {
    let unshielded = unshield(paragraph);
    let decoded = html_escape::decode_html_entities(&unshielded);
    let mut text = remove_magic_words(&decoded);
    for pair in LEFTOVER_MARKUP {
        if text.contains(pair) {
            text = text.replace(pair, "");
        }
    }
    let text = collapse_spaces(&text);
    match mode {
        LineMode::Wikitext => close_up_punctuation(&remove_emptied_brackets(&text)),
        LineMode::LinePerParagraph => text,
    }
}

/// Removes `( )`, `(, )`, `[ ]` and the like (brackets holding only spaces, commas and
/// semicolons) where the bracket opens a word, so that code such as `Print()` stays.
fn remove_emptied_brackets(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let opens_word = i == 0 || chars[i - 1] == ' ';
        let close = match c {
            '(' => Some(')'),
            '[' => Some(']'),
            _ => None,
        };
        if let (true, Some(close)) = (opens_word, close) {
            let inner = chars[i + 1..]
                .iter()
                .take_while(|&&x| matches!(x, ' ' | ',' | ';'))
                .count();
            if chars.get(i + 1 + inner) == Some(&close) {
                i += inner + 2;
                continue;
            }
        }
        out.push(c);
        i += 1;
    }
    if out.len() == text.len() {
        out
    } else {
        collapse_spaces(&out)
    }
}

/// Removes a space before `,` `.` `;` `:` `)` and after `(` when the punctuation ends a word.
fn close_up_punctuation(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    for (i, &c) in chars.iter().enumerate() {
        let next = chars.get(i + 1).copied();
        let after_next = chars.get(i + 2).copied();
        let before_punct = c == ' '
            && matches!(next, Some(',' | '.' | ';' | ':' | ')'))
            && after_next.is_none_or(|a| a == ' ');
        let after_paren = c == ' ' && i > 0 && chars[i - 1] == '(';
        if !before_punct && !after_paren {
            out.push(c);
        }
    }
    out
}

/// Collapses every run of white space (tabs and no-break spaces included) into one space and
/// trims the ends.
pub fn collapse_spaces(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for word in text.split(char::is_whitespace).filter(|w| !w.is_empty()) {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(word);
    }
    out
}

/// Removes behaviour switches such as `__NOTOC__`, `__TOC__`, `__SEMTDC__`.
fn remove_magic_words(text: &str) -> String {
    if !text.contains("__") {
        return text.to_string();
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
    out
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
}

//! Templates `{{…}}`, nested and multi-line.
//!
//! Most templates (infoboxes, navboxes, citations, maintenance tags) are dropped. Dropping them
//! all loses words ("{{convert|1300|mi}}" would leave nothing), so the inline templates that carry
//! words render them; [`KEPT_TEMPLATES`] lists them for the docs. Names are matched case-blind,
//! with `_` as a space and without a `Template:`/`Predefinição:` prefix.

use super::scan::{replace_balanced, split_top_level};

/// The templates that render text, with what they render (docs/cleaner.md repeats this list).
pub const KEPT_TEMPLATES: &[(&str, &str)] = &[
    (
        "convert, cvt, converter",
        "value and unit as written: 1300 mi; ranges: 10–20 km",
    ),
    ("lang, langx, lang-xx, script, transl", "the foreign text"),
    (
        "nowrap, nobr, small, smaller, big, larger, sc, smallcaps, em, strong, sic, math, ipa, \
         unicode, abbr, quote, cquote, citação, keypress",
        "their first argument",
    ),
    (
        "formatnum:, fmtn, nts, num, val (with u=)",
        "the number as written, val with its unit",
    ),
    (
        "start date, end date, birth date, death date, birth date and age, death date and age, \
         dob",
        "Month D, YYYY",
    ),
    ("dni, dnibr, morte, data de nascimento", "D de mês de AAAA"),
    (
        "lc:, uc:, lcfirst:, ucfirst:",
        "their argument with the case changed",
    ),
    (
        "', 's, !, =, ndash, mdash, snd, ·, dot, nbsp, space",
        "the character they stand for",
    ),
];

/// Expands the templates in `text`: the kept ones render their words, the rest vanish.
pub fn expand_templates(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    expand_into(text, &mut out);
    out
}

fn expand_into(text: &str, out: &mut String) {
    replace_balanced(text, *b"{{", *b"}}", out, render);
}

/// Renders one template from its inner text (between the braces).
fn render(inner: &str, out: &mut String) {
    if inner.starts_with('{') {
        // A template parameter `{{{1}}}`: only meaningful inside template pages.
        return;
    }
    let parts = split_top_level(inner, b'|');
    let raw_name = parts[0].trim();
    // Parser functions and magic words with a colon: {{formatnum:123}}, {{#if:…}}, {{uc:x}}.
    if let Some((function, argument)) = raw_name.split_once(':') {
        let function = normalize_name(function);
        let value = || expand_templates(argument.trim());
        match function.as_str() {
            "formatnum" => out.push_str(&value()),
            "lc" => out.push_str(&value().to_lowercase()),
            "uc" => out.push_str(&value().to_uppercase()),
            "lcfirst" => out.push_str(&change_first(&value(), false)),
            "ucfirst" => out.push_str(&change_first(&value(), true)),
            "template" | "predefinição" | "predefinicao" => {
                render_named(&normalize_name(argument), &parts[1..], out)
            }
            _ => {}
        }
        return;
    }
    render_named(&normalize_name(raw_name), &parts[1..], out);
}

/// Renders a template by its normalized name and its arguments.
fn render_named(name: &str, args: &[&str], out: &mut String) {
    let positional: Vec<&str> = args
        .iter()
        .filter(|a| named_value(a).is_none())
        .map(|a| a.trim())
        .collect();
    let first = positional.first().copied();
    let emit = |text: Option<&str>, out: &mut String| {
        if let Some(text) = text {
            expand_into(text, out);
        }
    };
    match name {
        "convert" | "cvt" | "converter" => convert(&positional, out),
        "lang" | "langx" | "script" | "transl" | "transliteration" if positional.len() >= 2 => {
            emit(positional.last().copied(), out)
        }
        n if n.starts_with("lang-") => emit(first, out),
        "nowrap" | "nobr" | "small" | "smaller" | "big" | "larger" | "sc" | "smallcaps" | "em"
        | "strong" | "sic" | "math" | "ipa" | "unicode" | "abbr" | "quote" | "cquote"
        | "citação" | "citacao" | "keypress" | "fmtn" | "nts" | "num" => emit(first, out),
        "val" => {
            emit(first, out);
            if let Some(unit) = args
                .iter()
                .find_map(|a| named_value(a).filter(|(k, _)| *k == "u"))
            {
                out.push(' ');
                expand_into(unit.1, out);
            }
        }
        "start date" | "end date" | "birth date" | "death date" | "birth date and age"
        | "death date and age" | "start date and age" | "dob" => {
            out.push_str(&english_date(&positional))
        }
        "dni" | "dnibr" | "morte" | "data de nascimento" | "data de morte" => {
            out.push_str(&portuguese_date(&positional))
        }
        "'" => out.push('\''),
        "'s" => out.push_str("'s"),
        "!" => out.push('|'),
        "=" => out.push('='),
        "ndash" | "–" => out.push('–'),
        "mdash" | "—" => out.push('—'),
        "snd" | "spaced ndash" => out.push_str(" – "),
        "·" | "dot" | "middot" => out.push_str(" · "),
        "nbsp" | "space" | "spaces" | "thinsp" => out.push(' '),
        _ => {}
    }
}

/// `{{convert|1300|mi|km}}` → "1300 mi"; `{{convert|10|to|20|km}}` → "10 to 20 km".
fn convert(args: &[&str], out: &mut String) {
    let Some(value) = args.first() else { return };
    expand_into(value, out);
    let mut rest = &args[1..];
    if rest.len() >= 2 {
        let joiner = match rest[0] {
            "-" | "–" => Some("–"),
            "to" | "to(-)" => Some(" to "),
            "and" | "and(-)" => Some(" and "),
            "or" => Some(" or "),
            "by" | "x" | "×" => Some(" × "),
            "+/-" | "±" => Some(" ± "),
            "a" => Some(" a "),
            "e" => Some(" e "),
            _ => None,
        };
        if let Some(joiner) = joiner {
            out.push_str(joiner);
            expand_into(rest[1], out);
            rest = &rest[2..];
        }
    }
    if let Some(unit) = rest.first().filter(|u| !u.is_empty()) {
        out.push(' ');
        expand_into(unit, out);
    }
}

static ENGLISH_MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];
static PORTUGUESE_MONTHS: [&str; 12] = [
    "janeiro",
    "fevereiro",
    "março",
    "abril",
    "maio",
    "junho",
    "julho",
    "agosto",
    "setembro",
    "outubro",
    "novembro",
    "dezembro",
];

fn month(text: &str, names: &'static [&'static str; 12]) -> Option<&'static str> {
    let n: usize = text.trim().parse().ok()?;
    (1..=12).contains(&n).then(|| names[n - 1])
}

/// Year, month, day → "May 3, 1990" ("May 1990", "1990" when parts are missing).
fn english_date(args: &[&str]) -> String {
    match (
        args.first(),
        args.get(1).and_then(|m| month(m, &ENGLISH_MONTHS)),
        args.get(2),
    ) {
        (Some(y), Some(m), Some(d)) if !d.is_empty() => {
            format!("{m} {}, {y}", d.trim_start_matches('0'))
        }
        (Some(y), Some(m), _) => format!("{m} {y}"),
        (Some(y), None, _) => y.to_string(),
        _ => String::new(),
    }
}

/// Day, month, year → "3 de maio de 1990" (the order of the Portuguese templates).
fn portuguese_date(args: &[&str]) -> String {
    match (
        args.first(),
        args.get(1).and_then(|m| month(m, &PORTUGUESE_MONTHS)),
        args.get(2),
    ) {
        (Some(d), Some(m), Some(y)) => format!("{} de {m} de {y}", d.trim_start_matches('0')),
        _ => String::new(),
    }
}

/// `name=value` at the top level of an argument, with the name trimmed.
fn named_value(arg: &str) -> Option<(&str, &str)> {
    let parts = split_top_level(arg, b'=');
    if parts.len() < 2 {
        return None;
    }
    let name = parts[0].trim();
    let is_name = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_alphanumeric() || c == ' ' || c == '_' || c == '-');
    is_name.then(|| (name, arg[parts[0].len() + 1..].trim()))
}

/// Lowercase, `_` as space, single spaces, no surrounding space.
fn normalize_name(name: &str) -> String {
    name.trim()
        .to_lowercase()
        .replace('_', " ")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

fn change_first(text: &str, upper: bool) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(c) if upper => c.to_uppercase().chain(chars).collect(),
        Some(c) => c.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::expand_templates as e;

    #[test]
    fn unknown_templates_vanish_nested_and_multiline() {
        assert_eq!(
            e("a{{Infobox city\n|name = {{lang|pt|x}}\n|pop={{formatnum:1}}\n}}b"),
            "ab"
        );
        assert_eq!(e("{{cite web|url=x|title={{!}}}}ok"), "ok");
        assert_eq!(e("unclosed {{foo and text"), "unclosed foo and text");
    }

    #[test]
    fn word_carrying_templates_keep_their_words() {
        assert_eq!(
            e("At {{convert|1300|mi|km}}, Alabama"),
            "At 1300 mi, Alabama"
        );
        assert_eq!(e("{{convert|10|to|20|km|abbr=on}}"), "10 to 20 km");
        assert_eq!(e("{{cvt|5|-|7|ft}}"), "5–7 ft");
        assert_eq!(e("{{lang|fr|la {{nowrap|vie en}} rose}}"), "la vie en rose");
        assert_eq!(e("{{lang-de|Misstrauensvotum}}"), "Misstrauensvotum");
        assert_eq!(e("{{Nowrap|São Paulo}}"), "São Paulo");
        assert_eq!(e("{{formatnum:1234567}}"), "1234567");
        assert_eq!(e("{{val|9.8|u=m/s}}"), "9.8 m/s");
        assert_eq!(e("{{birth date|1990|5|03|df=y}}"), "May 3, 1990");
        assert_eq!(e("{{Start date|1990|12}}"), "December 1990");
        assert_eq!(e("{{dni|7|9|1822|si}}"), "7 de setembro de 1822");
        assert_eq!(e("rock{{'}}n{{'}}roll {{ndash}} x"), "rock'n'roll – x");
        assert_eq!(e("{{ucfirst:brasil}}"), "Brasil");
    }
}

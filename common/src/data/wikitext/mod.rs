//! The markup cleaner: MediaWiki wikitext in, plain paragraphs out (one per line).
//!
//! One pass per kind of markup, in an order where each pass sees what it expects:
//! 1. [`tags`]: comments, `<ref>`/`<math>`/`<gallery>`/… with their content, `<nowiki>`
//!    shielded, other tags stripped;
//! 2. [`templates`]: `{{…}}` expanded (word-carrying ones) or dropped;
//! 3. [`blocks::remove_tables`]: `{| … |}`;
//! 4. [`links`]: `[[…]]` and `[http://… label]`;
//! 5. bold and italic quotes;
//! 6. [`blocks::paragraphs`]: headings, lists and paragraphs, each tidied by [`tidy`]
//!    (entities, spaces).
//!
//! docs/cleaner.md lists every rule with an example.

pub mod blocks;
pub mod links;
pub mod scan;
pub mod tags;
pub mod templates;
pub mod tidy;

pub use blocks::LineMode;

/// Cleans wikitext into paragraphs separated by `\n` (no blank lines; empty when nothing is
/// left). `mode` says whether consecutive lines form one paragraph (wikitext) or each line is a
/// paragraph (corpus text).
pub fn clean(wikitext: &str, mode: LineMode) -> String {
    let text = tags::strip_tags(wikitext);
    let text = templates::expand_templates(&text);
    let text = blocks::remove_tables(&text);
    let text = links::replace_links(&text);
    let text = blocks::remove_quote_runs(&text);
    blocks::paragraphs(&text, mode)
}

/// Whether a page's text is a redirect (`#REDIRECT [[X]]`, `#REDIRECIONAMENTO [[X]]`, any case).
pub fn is_redirect_text(text: &str) -> bool {
    let start = text.trim_start();
    ["#redirect", "#redirecionamento"].iter().any(|word| {
        start
            .get(..word.len())
            .is_some_and(|head| head.eq_ignore_ascii_case(word))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_realistic_article_comes_out_clean() {
        let wikitext = "{{Info/Município do Brasil\n|nome = Exemplo\n|população = {{formatnum:1234}}\n}}\n\
            '''Exemplo''' é um [[município]] do [[Brasil|brasileiro]] com {{convert|120|km2}} \
            de área.<ref>{{citar web|url=http://x}}</ref> Fica a 30&nbsp;km da [[capital]].\n\n\
            == História ==\n[[Ficheiro:Igreja.jpg|thumb|A [[igreja]] matriz]]\n\
            Fundado em {{dni|1|1|1900}} por [http://example.org colonos].\n\n\
            {| class=\"wikitable\"\n|-\n| dado || valor\n|}\n\n\
            == Ligações externas ==\n{{Portal3|Brasil}}\n\n[[Categoria:Municípios]]\n[[en:Example]]";
        assert_eq!(
            clean(wikitext, LineMode::Wikitext),
            "Exemplo é um município do brasileiro com 120 km2 de área. Fica a 30 km da capital.\n\
             História\nFundado em 1 de janeiro de 1900 por colonos."
        );
    }

    #[test]
    fn redirect_words_in_both_languages() {
        assert!(is_redirect_text("  #REDIRECT [[X]]"));
        assert!(is_redirect_text("#redirecionamento [[São Paulo]]"));
        assert!(!is_redirect_text("Redirect is a word"));
    }
}

//! Parses one `<page>…</page>` element (see [`super::split`]) into its title, namespace, id,
//! redirect flag and wikitext, with quick-xml.

use quick_xml::Reader;
use quick_xml::events::{BytesRef, Event};

use super::split::RawPage;

/// The fields of a page that the corpus needs.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Page {
    /// The page id (`<page><id>`).
    pub id: String,
    /// The page title.
    pub title: String,
    /// The namespace number (`<ns>`), when the dump has one.
    pub ns: Option<i64>,
    /// The page has a `<redirect>` element.
    pub redirect_element: bool,
    /// The wikitext of the page's last revision.
    pub text: String,
    /// How many invalid UTF-8 sequences were replaced with U+FFFD.
    pub invalid_utf8: u64,
}

/// Why a page could not be used.
#[derive(Debug, Clone, PartialEq)]
pub struct Malformed {
    /// What was wrong, for the warning.
    pub reason: String,
    /// The title, when it was read before the problem.
    pub title: Option<String>,
}

/// Parses a raw page. Invalid UTF-8 is replaced (and counted in [`Page::invalid_utf8`]); broken
/// XML, a missing `<title>` or a non-numeric `<ns>` make the page [`Malformed`].
pub fn parse_page(raw: &RawPage) -> Result<Page, Malformed> {
    let (xml, invalid_utf8) = decode_utf8_lossy(&raw.xml);
    let mut page = Page {
        invalid_utf8,
        ..Page::default()
    };
    let malformed = |reason: String, page: &Page| Malformed {
        reason,
        title: (!page.title.is_empty()).then(|| page.title.clone()),
    };
    if raw.unterminated {
        // Parse what there is only to name the page in the warning.
        let _ = parse_fields(&xml, &mut page);
        return Err(malformed(
            "the XML ends inside this page (no </page>)".into(),
            &page,
        ));
    }
    match parse_fields(&xml, &mut page) {
        Err(reason) => Err(malformed(reason, &page)),
        Ok(()) if page.title.is_empty() => Err(malformed("the page has no <title>".into(), &page)),
        Ok(()) => Ok(page),
    }
}

/// Which element's text is being collected.
#[derive(Clone, Copy, PartialEq)]
enum Field {
    None,
    Title,
    Ns,
    Id,
    Text,
}

/// Reads the page's fields into `page`; returns the first XML error as a sentence.
fn parse_fields(xml: &str, page: &mut Page) -> Result<(), String> {
    let mut reader = Reader::from_str(xml);
    let mut depth: Vec<String> = Vec::new();
    let mut field = Field::None;
    let mut ns_text = String::new();
    let mut id_done = false;
    let mut buffer = String::new();
    loop {
        let event = reader.read_event().map_err(|e| {
            format!(
                "malformed XML at byte {} of the page: {e}",
                reader.error_position()
            )
        })?;
        match event {
            Event::Start(tag) => {
                let name = tag.local_name().as_ref().to_string();
                field = match (depth.len(), name.as_str(), depth.last().map(String::as_str)) {
                    (1, "title", _) => Field::Title,
                    (1, "ns", _) => Field::Ns,
                    (1, "id", _) if !id_done => Field::Id,
                    (2, "text", Some("revision")) => Field::Text,
                    _ => Field::None,
                };
                if name == "redirect" && depth.len() == 1 {
                    page.redirect_element = true;
                }
                buffer.clear();
                depth.push(name);
            }
            Event::Empty(tag) => {
                if tag.local_name().as_ref() == "redirect" && depth.len() == 1 {
                    page.redirect_element = true;
                }
                if tag.local_name().as_ref() == "text" && depth.len() == 2 {
                    // <text/>: an empty or deleted revision text.
                    page.text.clear();
                }
            }
            Event::Text(text) if field != Field::None => buffer.push_str(&text.xml10_content()),
            Event::CData(data) if field != Field::None => buffer.push_str(&data.xml10_content()),
            Event::GeneralRef(reference) if field != Field::None => {
                push_reference(&mut buffer, &reference)?
            }
            Event::End(_) => {
                match field {
                    Field::Title => page.title = std::mem::take(&mut buffer),
                    Field::Ns => ns_text = std::mem::take(&mut buffer),
                    Field::Id => {
                        page.id = std::mem::take(&mut buffer).trim().to_string();
                        id_done = true;
                    }
                    Field::Text => page.text = std::mem::take(&mut buffer),
                    Field::None => {}
                }
                field = Field::None;
                depth.pop();
            }
            Event::Eof => break,
            _ => {}
        }
    }
    if !ns_text.trim().is_empty() {
        let ns = ns_text.trim();
        page.ns = Some(
            ns.parse()
                .map_err(|_| format!("<ns> is not a number: {ns:?}"))?,
        );
    }
    Ok(())
}

/// Appends the character an entity or character reference stands for.
fn push_reference(buffer: &mut String, reference: &BytesRef) -> Result<(), String> {
    if let Some(ch) = reference
        .resolve_char_ref()
        .map_err(|e| format!("bad character reference: {e}"))?
    {
        buffer.push(ch);
        return Ok(());
    }
    let name = reference.xml10_content();
    match name.as_ref() {
        "amp" => buffer.push('&'),
        "lt" => buffer.push('<'),
        "gt" => buffer.push('>'),
        "quot" => buffer.push('"'),
        "apos" => buffer.push('\''),
        other => return Err(format!("unknown XML entity &{other};")),
    }
    Ok(())
}

/// Decodes UTF-8, replacing each invalid sequence with U+FFFD; returns how many were replaced.
pub fn decode_utf8_lossy(bytes: &[u8]) -> (std::borrow::Cow<'_, str>, u64) {
    match std::str::from_utf8(bytes) {
        Ok(s) => (std::borrow::Cow::Borrowed(s), 0),
        Err(_) => {
            let invalid = bytes
                .utf8_chunks()
                .filter(|c| !c.invalid().is_empty())
                .count();
            (String::from_utf8_lossy(bytes), invalid as u64)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(xml: &str) -> RawPage {
        RawPage {
            offset: 0,
            xml: xml.as_bytes().to_vec(),
            unterminated: false,
        }
    }

    #[test]
    fn fields_entities_and_last_revision() {
        let page = parse_page(&raw(
            "<page><title>Caf&#233; &amp; Ch&aacute;</title><ns>0</ns><id>42</id>\
             <revision><id>7</id><text xml:space=\"preserve\">old</text></revision>\
             <revision><id>8</id><text>a &lt;ref&gt;x&lt;/ref&gt;\r\nb</text></revision></page>",
        ));
        // &aacute; is not an XML entity: the page is malformed, and says why.
        let err = page.unwrap_err();
        assert!(err.reason.contains("aacute"), "{err:?}");

        let page = parse_page(&raw(
            "<page><title>Caf&#233; &amp; Ch&#xE1;</title><ns>0</ns><id>42</id>\
             <revision><id>7</id><text xml:space=\"preserve\">old</text></revision>\
             <revision><id>8</id><text>a &lt;ref&gt;x&lt;/ref&gt;\r\nb</text></revision></page>",
        ))
        .unwrap();
        assert_eq!(page.title, "Café & Chá");
        assert_eq!(page.id, "42");
        assert_eq!(page.ns, Some(0));
        assert_eq!(page.text, "a <ref>x</ref>\nb");
        assert!(!page.redirect_element);
    }

    #[test]
    fn redirects_missing_titles_and_broken_xml() {
        let page = parse_page(&raw(
            "<page><title>R</title><ns>0</ns><id>1</id><redirect title=\"X\" />\
             <revision><text>#REDIRECT [[X]]</text></revision></page>",
        ))
        .unwrap();
        assert!(page.redirect_element);

        let err = parse_page(&raw(
            "<page><ns>0</ns><revision><text>x</text></revision></page>",
        ))
        .unwrap_err();
        assert_eq!(err.reason, "the page has no <title>");

        let err = parse_page(&raw("<page><title>T</title><ns>zero</ns></page>")).unwrap_err();
        assert!(err.reason.contains("<ns> is not a number"), "{err:?}");
        assert_eq!(err.title.as_deref(), Some("T"));

        let err = parse_page(&raw("<page><title>T</title><revision></text></page>")).unwrap_err();
        assert!(err.reason.starts_with("malformed XML at byte"), "{err:?}");
    }

    #[test]
    fn invalid_utf8_is_replaced_and_counted() {
        let mut xml = b"<page><title>A</title><ns>0</ns><revision><text>x".to_vec();
        xml.extend_from_slice(&[0xFF, b'y', 0xC3]);
        xml.extend_from_slice(b"</text></revision></page>");
        let page = parse_page(&RawPage {
            offset: 0,
            xml,
            unterminated: false,
        })
        .unwrap();
        assert_eq!(page.text, "x\u{FFFD}y\u{FFFD}");
        assert_eq!(page.invalid_utf8, 2);
    }
}

//! process-wiki's map and reduce. A task decodes its range of the dump (whole bz2 streams, or
//! whole pages of plain XML), cleans every page exactly as the single-process run does, and
//! returns each page's outcome in dump order; the coordinator records them through the same
//! corpus writer, so the corpus and the counts come out the same.

use std::path::Path;

use memchr::memmem;
use rayon::prelude::*;

use super::TaskError;
use super::wire::ResultError;
use super::wire::{Reader, put_bytes, put_varint};
use super::{Reducer, read_input_length};
use crate::data::PrepError;
use crate::data::bz2::decode_streams;
use crate::data::wiki::page::Malformed;
use crate::data::wiki::split::PageSplitter;
use crate::data::wiki::{CorpusSink, Document, Outcome, PageRules, process_page};

/// The map: cleans the pages in `input` (bytes `start..` of the dump at `path`).
pub fn map(
    input: &[u8],
    path: &Path,
    start: u64,
    rules: PageRules,
    namespaces: &[String],
) -> Result<Vec<u8>, TaskError> {
    let place = |what: String| TaskError::Input(format!("{}: {what}", path.display()));
    let end = start + input.len() as u64;
    let decoded;
    let mut xml: &[u8] = if input.starts_with(b"BZh") {
        decoded = decode_streams(input, start).map_err(|e| place(e.to_string()))?;
        &decoded
    } else {
        input
    };
    if xml.starts_with(&[0xFF, 0xFE]) || xml.starts_with(&[0xFE, 0xFF]) {
        return Err(place(
            "the dump is UTF-16; the distributed process-wiki reads UTF-8 dumps (run it \
             without --hosts)"
                .into(),
        ));
    }
    xml = xml.strip_prefix(&[0xEF, 0xBB, 0xBF]).unwrap_or(xml);
    let mut splitter = PageSplitter::new(xml);
    let mut raw = Vec::new();
    for page in splitter.by_ref() {
        let page = page.map_err(|e| place(e.to_string()))?;
        if page.unterminated {
            return Err(place(format!(
                "a page runs past the end of the range [{start}, {end}): the dump's streams \
                 do not hold whole pages (run it without --hosts)"
            )));
        }
        raw.push(page);
    }
    let header = if raw.is_empty() {
        xml
    } else {
        splitter.header()
    };
    if memmem::find(header, b"</page>").is_some() {
        return Err(place(format!(
            "the range [{start}, {end}) starts inside a page: the dump's streams do not hold \
             whole pages (run it without --hosts)"
        )));
    }
    let outcomes: Vec<(Outcome, u64)> = raw
        .par_iter()
        .map(|page| process_page(page, namespaces, rules))
        .collect();
    let mut out = Vec::new();
    put_varint(&mut out, input.len() as u64);
    put_varint(&mut out, outcomes.len() as u64);
    for (outcome, invalid_utf8) in outcomes {
        put_varint(&mut out, invalid_utf8);
        match outcome {
            Outcome::Kept(document) => {
                out.push(KEPT);
                for field in [&document.id, &document.title, &document.text] {
                    put_bytes(&mut out, field.as_bytes());
                }
            }
            Outcome::Redirect => out.push(REDIRECT),
            Outcome::OtherNamespace => out.push(OTHER_NAMESPACE),
            Outcome::TooShort => out.push(TOO_SHORT),
            Outcome::Malformed { offset, problem } => {
                out.push(MALFORMED);
                put_varint(&mut out, offset);
                put_bytes(&mut out, problem.title.unwrap_or_default().as_bytes());
                let reason = format!(
                    "{} (in the range [{start}, {end}) of {}; the offset counts from there)",
                    problem.reason,
                    path.display()
                );
                put_bytes(&mut out, reason.as_bytes());
            }
        }
    }
    Ok(out)
}

const KEPT: u8 = 0;
const REDIRECT: u8 = 1;
const OTHER_NAMESPACE: u8 = 2;
const TOO_SHORT: u8 = 3;
const MALFORMED: u8 = 4;

/// One task's pages: their outcomes and replaced-sequence counts, in dump order.
pub struct PagesPart {
    bytes: u64,
    pages: Vec<(Outcome, u64)>,
}

/// Writes the tasks' pages to the corpus in dump order.
pub struct CorpusReducer {
    /// The corpus and its counts.
    pub sink: CorpusSink,
}

impl Reducer for CorpusReducer {
    type Part = PagesPart;

    fn decode(&self, range: (u64, u64), payload: &[u8]) -> Result<PagesPart, ResultError> {
        let mut reader = Reader::new(payload);
        let bytes = read_input_length(&mut reader, range)?;
        let n = reader.varint("the page count")?;
        let mut pages = Vec::with_capacity(n.min(1 << 20) as usize);
        for i in 0..n {
            let invalid_utf8 = reader.varint("a page's replaced-sequence count")?;
            let outcome = match reader.take(1, "a page's outcome")?[0] {
                KEPT => Outcome::Kept(Document {
                    id: reader.string("a page id")?,
                    title: reader.string("a page title")?,
                    text: reader.string("a page text")?,
                }),
                REDIRECT => Outcome::Redirect,
                OTHER_NAMESPACE => Outcome::OtherNamespace,
                TOO_SHORT => Outcome::TooShort,
                MALFORMED => {
                    let offset = reader.varint("a page offset")?;
                    let title = reader.string("a page title")?;
                    Outcome::Malformed {
                        offset,
                        problem: Malformed {
                            title: (!title.is_empty()).then_some(title),
                            reason: reader.string("a problem")?,
                        },
                    }
                }
                other => {
                    return Err(ResultError::Content(format!(
                        "page {i} has an unknown outcome {other}"
                    )));
                }
            };
            pages.push((outcome, invalid_utf8));
        }
        reader.finish()?;
        Ok(PagesPart { bytes, pages })
    }

    fn accept(&mut self, part: PagesPart) -> Result<(), PrepError> {
        let path = self.sink.path().to_path_buf();
        for (outcome, invalid_utf8) in part.pages {
            self.sink
                .record(outcome, invalid_utf8)
                .map_err(|error| PrepError::Output {
                    path: path.clone(),
                    error,
                })?;
        }
        self.sink.stats.input_bytes += part.bytes;
        Ok(())
    }
}

//! `process-wiki`: a MediaWiki XML dump (`.xml.bz2`, single- or multistream, or plain `.xml`;
//! UTF-8 or UTF-16 with a byte-order mark) in, a corpus out.
//!
//! The stages run concurrently with bounded queues between them, so memory stays flat:
//! a reader thread decompresses ([`super::bz2`]), transcodes ([`super::encoding`]) and cuts the
//! XML into pages ([`split`]); batches of pages are parsed ([`page`]), filtered and cleaned
//! ([`super::wikitext`]) in parallel on the rayon pool; the results are written in dump order.

pub mod export;
pub mod page;
pub mod split;

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, sync_channel};

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::PrepError;
use super::bz2::Bz2Reader;
use super::encoding::{Encoding, utf8_reader};
use super::normalize::{NormalizeOptions, normalize};
use super::wikitext::{LineMode, clean, is_redirect_text};
use crate::output::AtomicFile;
use crate::progress::Progress;
use page::{Malformed, Page, parse_page};
use split::{PageSplitter, RawPage};

/// Pages handed to the cleaners at a time.
const BATCH_PAGES: usize = 256;
/// Raw XML bytes handed to the cleaners at a time (whichever limit comes first).
const BATCH_BYTES: usize = 8 << 20;
/// Batches the reader may run ahead of the cleaners.
const QUEUE_BATCHES: usize = 4;

/// The corpus layout to write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutputFormat {
    /// docs/formats.md corpus text: paragraphs on consecutive lines, documents separated by a blank line.
    Text,
    /// One JSON object per line: `{"id", "title", "text"}`.
    Jsonl,
}

/// Options of `process-wiki`.
#[derive(Clone, Debug)]
pub struct WikiOptions {
    /// Output layout.
    pub format: OutputFormat,
    /// Pages whose cleaned text has fewer characters are dropped (and counted as too short).
    pub min_chars: usize,
    /// Parallel bz2 stream decoders; 1 decodes sequentially.
    pub threads: usize,
    /// Put the title on the first line of each text document.
    pub title: bool,
    /// On failure keep what was written as `<output>.partial`.
    pub keep_partial: bool,
    /// Normalization applied to the cleaned text.
    pub normalize: NormalizeOptions,
}

impl Default for WikiOptions {
    fn default() -> Self {
        Self {
            format: OutputFormat::Text,
            min_chars: 0,
            threads: rayon::current_num_threads(),
            title: false,
            keep_partial: false,
            normalize: NormalizeOptions::default(),
        }
    }
}

impl WikiOptions {
    /// The options that decide each page's fate and text.
    pub fn rules(&self) -> PageRules {
        PageRules {
            min_chars: self.min_chars,
            normalize: self.normalize,
        }
    }
}

/// What decides a page's fate and its text: the options a map task of the distributed
/// process-wiki needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PageRules {
    /// Pages whose cleaned text has fewer characters are dropped.
    pub min_chars: usize,
    /// Normalization applied to the cleaned text.
    pub normalize: NormalizeOptions,
}

/// What `process-wiki` read and kept.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct WikiStats {
    /// Pages found in the dump.
    pub pages_read: u64,
    /// Pages written to the corpus.
    pub kept: u64,
    /// Redirect pages skipped.
    pub redirects: u64,
    /// Pages outside namespace 0 skipped.
    pub other_namespaces: u64,
    /// Pages whose cleaned text was empty or under `min_chars`.
    pub too_short: u64,
    /// Pages skipped because their XML was unusable.
    pub malformed: u64,
    /// Invalid UTF-8 sequences replaced with U+FFFD.
    pub invalid_utf8: u64,
    /// Input bytes read (compressed bytes for bz2).
    pub input_bytes: u64,
}

impl std::fmt::Display for WikiStats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "pages read {}, kept {}, redirects {}, other namespaces {}, too short {}, \
             malformed {}, invalid UTF-8 sequences replaced {}",
            self.pages_read,
            self.kept,
            self.redirects,
            self.other_namespaces,
            self.too_short,
            self.malformed,
            self.invalid_utf8
        )
    }
}

/// One document of the corpus.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Document {
    /// The page id.
    pub id: String,
    /// The page title.
    pub title: String,
    /// The cleaned, normalized text.
    pub text: String,
}

/// What became of one page.
#[derive(Debug)]
pub enum Outcome {
    /// Written to the corpus.
    Kept(Document),
    /// A redirect, skipped.
    Redirect,
    /// Outside namespace 0, skipped.
    OtherNamespace,
    /// Empty or under `min_chars` once cleaned.
    TooShort,
    /// Unusable XML, skipped with a warning.
    Malformed {
        /// The page's offset in the XML.
        offset: u64,
        /// What was wrong.
        problem: Malformed,
    },
}

/// Messages from the reader thread.
enum Batch {
    /// The XML before the first page (siteinfo), sent once.
    Header(Vec<u8>),
    Pages(Vec<RawPage>),
}

/// Converts the dump at `input` into a corpus at `output` (written atomically).
pub fn process_wiki(
    input: &Path,
    output: &Path,
    options: &WikiOptions,
) -> Result<WikiStats, PrepError> {
    let open_error = |error| PrepError::Open {
        path: input.to_path_buf(),
        error,
    };
    let total_bytes = std::fs::metadata(input).map_err(open_error)?.len();
    let consumed = Arc::new(AtomicU64::new(0));
    let source = open_dump(input, options.threads, consumed.clone()).map_err(open_error)?;
    let mut sink = CorpusSink::create(output, options)?;

    let (sender, receiver) = sync_channel::<io::Result<Batch>>(QUEUE_BATCHES);
    let path = input.to_path_buf();
    let reader = std::thread::spawn(move || {
        let result = read_pages(source, &path, |batch| sender.send(Ok(batch)).is_ok());
        if let Err(error) = result {
            let _ = sender.send(Err(error));
        }
    });

    let mut progress = Progress::new("process-wiki", "pages", Some(total_bytes));
    let result = write_corpus(&receiver, &mut sink, options, &mut progress, &consumed);
    drop(receiver);
    let _ = reader.join();
    progress.finish();
    sink.stats.input_bytes = consumed.load(Ordering::Relaxed);
    match result {
        Ok(()) if sink.stats.kept == 0 => Err(PrepError::Invalid(format!(
            "no page of {} was kept ({}); {} was not written",
            input.display(),
            sink.stats,
            output.display()
        ))),
        Ok(()) => sink.commit(),
        Err(Failure::Output(source)) => Err(PrepError::Output {
            path: output.to_path_buf(),
            error: source,
        }),
        Err(Failure::Input(source)) => Err(sink.abandon(source, options.keep_partial)),
    }
}

/// The corpus being written, in dump order, with the counts of what became of each page. The
/// single-process and the distributed process-wiki both write through it, so their outputs are
/// the same bytes.
pub struct CorpusSink {
    out: AtomicFile,
    path: PathBuf,
    format: OutputFormat,
    title: bool,
    /// What has been recorded so far.
    pub stats: WikiStats,
}

impl CorpusSink {
    /// Creates the output (under a temporary name until [`Self::commit`]).
    pub fn create(output: &Path, options: &WikiOptions) -> Result<Self, PrepError> {
        let out = AtomicFile::create(output).map_err(|error| PrepError::Output {
            path: output.to_path_buf(),
            error,
        })?;
        Ok(Self {
            out,
            path: output.to_path_buf(),
            format: options.format,
            title: options.title,
            stats: WikiStats::default(),
        })
    }

    /// Records the next page's outcome (and its count of replaced UTF-8 sequences), writing it
    /// when it was kept and warning about a malformed one.
    pub fn record(&mut self, outcome: Outcome, invalid_utf8: u64) -> io::Result<()> {
        let stats = &mut self.stats;
        stats.pages_read += 1;
        stats.invalid_utf8 += invalid_utf8;
        match outcome {
            Outcome::Kept(document) => {
                write_document(
                    &mut self.out,
                    &document,
                    self.format,
                    self.title,
                    stats.kept == 0,
                )?;
                stats.kept += 1;
            }
            Outcome::Redirect => stats.redirects += 1,
            Outcome::OtherNamespace => stats.other_namespaces += 1,
            Outcome::TooShort => stats.too_short += 1,
            Outcome::Malformed { offset, problem } => {
                stats.malformed += 1;
                let name = problem
                    .title
                    .map_or_else(String::new, |t| format!(" {t:?}"));
                tracing::warn!(
                    "skipped malformed page{name} at XML byte {offset}: {}",
                    problem.reason
                );
            }
        }
        Ok(())
    }

    /// The corpus path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Renames the finished corpus into place and returns the counts.
    pub fn commit(self) -> Result<WikiStats, PrepError> {
        let path = self.path;
        self.out
            .commit()
            .map_err(|error| PrepError::Output { path, error })?;
        Ok(self.stats)
    }

    /// The error for an input that broke part-way: the partial corpus is dropped, or kept as
    /// `<output>.partial` with `keep_partial`.
    pub fn abandon(self, error: io::Error, keep_partial: bool) -> PrepError {
        PrepError::input_failed(
            error,
            self.out,
            Some(keep_partial),
            self.stats.kept,
            "pages",
        )
    }
}

/// The dump's header (the XML before the first page, where `<siteinfo>` declares the
/// namespaces) and its text encoding: what the distributed process-wiki tells its workers.
pub fn dump_header(path: &Path) -> Result<(Vec<u8>, Encoding), PrepError> {
    let open_error = |error| PrepError::Open {
        path: path.to_path_buf(),
        error,
    };
    let source = open_dump(path, 1, Arc::new(AtomicU64::new(0))).map_err(open_error)?;
    let (xml, encoding) = utf8_reader(source).map_err(open_error)?;
    let xml = export::check_start(xml, path).map_err(|e| PrepError::Invalid(e.to_string()))?;
    let mut splitter = PageSplitter::new(xml);
    if let Some(Err(error)) = splitter.next() {
        return Err(open_error(error));
    }
    Ok((splitter.header().to_vec(), encoding))
}

/// Where a failure came from.
enum Failure {
    Input(io::Error),
    Output(io::Error),
}

/// Opens the dump as a stream of decompressed bytes: bz2 by its magic bytes, plain otherwise.
fn open_dump(
    path: &Path,
    threads: usize,
    consumed: Arc<AtomicU64>,
) -> io::Result<Box<dyn Read + Send>> {
    let mut magic = [0u8; 3];
    let mut file = File::open(path)?;
    let n = file.read(&mut magic)?;
    if n == 3 && &magic == b"BZh" {
        Ok(Box::new(Bz2Reader::open(path, threads, consumed)?))
    } else {
        Ok(Box::new(CountingReader {
            inner: File::open(path)?,
            consumed,
        }))
    }
}

/// Counts the bytes read through it, for progress.
struct CountingReader<R> {
    inner: R,
    consumed: Arc<AtomicU64>,
}

impl<R: Read> Read for CountingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.consumed.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

/// The reader thread: transcodes, checks that the input is a MediaWiki export, splits it into
/// pages and sends batches until `send` refuses. An export that ends without `</mediawiki>` is
/// cut short: an error once its whole pages are sent.
fn read_pages(
    source: Box<dyn Read + Send>,
    path: &Path,
    mut send: impl FnMut(Batch) -> bool,
) -> io::Result<()> {
    let (xml, _encoding) = utf8_reader(source)?;
    let mut splitter = PageSplitter::new(export::ExportEnd::new(export::check_start(xml, path)?));
    let mut batch = Vec::with_capacity(BATCH_PAGES);
    let mut batch_bytes = 0;
    let mut header_sent = false;
    while let Some(page) = splitter.next() {
        let page = match page {
            Ok(page) => page,
            Err(error) => {
                // The pages before the damage are whole: write them before reporting it.
                if !batch.is_empty() {
                    send(Batch::Pages(batch));
                }
                return Err(error);
            }
        };
        if !header_sent {
            header_sent = true;
            if !send(Batch::Header(splitter.header().to_vec())) {
                return Ok(());
            }
        }
        batch_bytes += page.xml.len();
        batch.push(page);
        if batch.len() >= BATCH_PAGES || batch_bytes >= BATCH_BYTES {
            batch_bytes = 0;
            if !send(Batch::Pages(std::mem::replace(
                &mut batch,
                Vec::with_capacity(BATCH_PAGES),
            ))) {
                return Ok(());
            }
        }
    }
    if !batch.is_empty() {
        send(Batch::Pages(batch));
    }
    if !splitter.reader().seen() {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!(
                "{}: the XML ends after {} bytes without </mediawiki>: the dump is cut short (an \
                 incomplete download, or streams missing at its end); download it again",
                path.display(),
                splitter.bytes_read()
            ),
        ));
    }
    Ok(())
}

/// Cleans the batches in parallel and writes them in order.
fn write_corpus(
    receiver: &Receiver<io::Result<Batch>>,
    sink: &mut CorpusSink,
    options: &WikiOptions,
    progress: &mut Progress,
    consumed: &AtomicU64,
) -> Result<(), Failure> {
    let mut namespaces: Vec<String> = Vec::new();
    let rules = options.rules();
    for message in receiver {
        let pages = match message.map_err(Failure::Input)? {
            Batch::Header(header) => {
                namespaces = namespace_prefixes(&header);
                continue;
            }
            Batch::Pages(pages) => pages,
        };
        let outcomes: Vec<(Outcome, u64)> = pages
            .par_iter()
            .map(|raw| process_page(raw, &namespaces, rules))
            .collect();
        for (outcome, invalid_utf8) in outcomes {
            sink.record(outcome, invalid_utf8)
                .map_err(Failure::Output)?;
        }
        progress.update(sink.stats.pages_read, consumed.load(Ordering::Relaxed));
    }
    Ok(())
}

/// Parses, filters and cleans one page; also returns its count of replaced UTF-8 sequences.
pub fn process_page(raw: &RawPage, namespaces: &[String], rules: PageRules) -> (Outcome, u64) {
    let page: Page = match parse_page(raw) {
        Ok(page) => page,
        Err(problem) => {
            return (
                Outcome::Malformed {
                    offset: raw.offset,
                    problem,
                },
                0,
            );
        }
    };
    let invalid = page.invalid_utf8;
    let main_namespace = match page.ns {
        Some(ns) => ns == 0,
        None => !has_namespace_prefix(&page.title, namespaces),
    };
    let outcome = if !main_namespace {
        Outcome::OtherNamespace
    } else if page.redirect_element || is_redirect_text(&page.text) {
        Outcome::Redirect
    } else {
        let text = normalize(&clean(&page.text, LineMode::Wikitext), rules.normalize);
        if text.is_empty() || text.chars().count() < rules.min_chars {
            Outcome::TooShort
        } else {
            Outcome::Kept(Document {
                id: page.id,
                title: page.title,
                text,
            })
        }
    };
    (outcome, invalid)
}

fn write_document(
    out: &mut AtomicFile,
    document: &Document,
    format: OutputFormat,
    title: bool,
    first: bool,
) -> io::Result<()> {
    match format {
        OutputFormat::Text => {
            if !first {
                out.write_all(b"\n")?;
            }
            if title {
                writeln!(out, "{}", document.title)?;
            }
            writeln!(out, "{}", document.text)
        }
        OutputFormat::Jsonl => {
            serde_json::to_writer(&mut *out, document)?;
            out.write_all(b"\n")
        }
    }
}

/// The names of the non-main namespaces that `<siteinfo>` declares, each with its colon.
pub fn namespace_prefixes(header: &[u8]) -> Vec<String> {
    let text = String::from_utf8_lossy(header);
    let mut prefixes = Vec::new();
    let mut rest = text.as_ref();
    while let Some(at) = rest.find("<namespace ") {
        rest = &rest[at..];
        let Some(open_end) = rest.find('>') else {
            break;
        };
        let self_closing = rest[..open_end].ends_with('/');
        let body = &rest[open_end + 1..];
        if !self_closing
            && let Some(close) = body.find("</namespace>")
            && !body[..close].trim().is_empty()
        {
            prefixes.push(format!("{}:", body[..close].trim()));
        }
        rest = body;
    }
    prefixes
}

/// For dumps without `<ns>`: whether a title starts with a declared namespace prefix.
fn has_namespace_prefix(title: &str, prefixes: &[String]) -> bool {
    prefixes.iter().any(|p| title.starts_with(p.as_str()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespace_prefixes_come_from_siteinfo() {
        let header = b"<siteinfo><namespaces><namespace key=\"0\" case=\"first-letter\" />\
            <namespace key=\"4\">Wikip\xc3\xa9dia</namespace><namespace key=\"10\">Predefini\xc3\xa7\xc3\xa3o</namespace>\
            </namespaces></siteinfo>";
        let prefixes = namespace_prefixes(header);
        assert_eq!(
            prefixes,
            vec!["Wikipédia:".to_string(), "Predefinição:".to_string()]
        );
        assert!(has_namespace_prefix("Predefinição:Info", &prefixes));
        assert!(!has_namespace_prefix("Brasil: uma história", &prefixes));
    }
}

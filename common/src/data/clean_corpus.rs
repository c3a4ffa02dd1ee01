//! `clean-corpus`: runs the markup cleaner and the normalizer over a corpus, drops exact-duplicate
//! paragraphs and paragraphs under a minimum length, and reports what it dropped and why.
//!
//! The input is docs/formats.md corpus text (documents separated by a blank line, a paragraph per
//! line), or one document per line with `line_docs`. Documents are cleaned in parallel batches;
//! deduplication and writing run in input order, so the output does not depend on the thread
//! count. Duplicate detection keeps a 64-bit hash per distinct paragraph, up to a memory budget.

use std::borrow::Cow;
use std::collections::HashSet;
use std::fs::File;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::io::{BufReader, Write};
use std::path::Path;

use rayon::prelude::*;
use serde::Serialize;

use super::PrepError;
use super::corpus::{DocumentReader, Utf8Policy};
use super::normalize::{NormalizeOptions, normalize};
use super::wikitext::{LineMode, clean};
use crate::output::AtomicFile;
use crate::progress::Progress;

/// Documents cleaned in parallel at a time.
const BATCH_DOCUMENTS: usize = 2048;
/// Bytes a hash-set entry costs, counting the table's slack, for the memory budget.
const BYTES_PER_HASH: usize = 16;

/// Options of `clean-corpus`.
#[derive(Clone, Debug)]
pub struct CleanOptions {
    /// Paragraphs with fewer characters (after cleaning) are dropped.
    pub min_chars: usize,
    /// Each input line is a document (otherwise documents are separated by blank lines).
    pub line_docs: bool,
    /// Memory for the duplicate detector, in MiB; once full, later paragraphs are no longer
    /// remembered (a warning says so) and memory stays bounded.
    pub dedup_memory_mb: usize,
    /// Normalization after cleaning.
    pub normalize: NormalizeOptions,
    /// On failure keep what was written as `<output>.partial`.
    pub keep_partial: bool,
}

impl Default for CleanOptions {
    fn default() -> Self {
        Self {
            min_chars: 0,
            line_docs: false,
            dedup_memory_mb: 1024,
            normalize: NormalizeOptions::default(),
            keep_partial: false,
        }
    }
}

/// What `clean-corpus` read, kept and dropped.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct CleanStats {
    /// Documents read.
    pub documents_read: u64,
    /// Documents written (with at least one paragraph left).
    pub documents_written: u64,
    /// Documents dropped because no paragraph was left.
    pub documents_emptied: u64,
    /// Paragraphs read (after cleaning split them).
    pub paragraphs_read: u64,
    /// Paragraphs written.
    pub paragraphs_written: u64,
    /// Paragraphs dropped as exact duplicates of an earlier one.
    pub duplicates: u64,
    /// Paragraphs dropped for being under `min_chars`.
    pub too_short: u64,
    /// Paragraphs seen after the duplicate detector filled up (not checked against each other).
    pub unchecked_after_full: u64,
    /// Invalid UTF-8 sequences replaced with U+FFFD.
    pub invalid_utf8: u64,
    /// Control characters (NUL and the rest of Unicode's Cc, except tab) dropped.
    pub control_chars: u64,
}

impl std::fmt::Display for CleanStats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "documents read {}, written {}, emptied {}; paragraphs read {}, written {}, \
             dropped as duplicates {}, dropped as too short {}; invalid UTF-8 sequences replaced {}, \
             control characters dropped {}",
            self.documents_read,
            self.documents_written,
            self.documents_emptied,
            self.paragraphs_read,
            self.paragraphs_written,
            self.duplicates,
            self.too_short,
            self.invalid_utf8,
            self.control_chars
        )?;
        if self.unchecked_after_full > 0 {
            write!(
                f,
                "; the duplicate detector filled up: {} later paragraphs were not checked \
                 (raise --dedup-memory-mb)",
                self.unchecked_after_full
            )?;
        }
        Ok(())
    }
}

/// Cleans the corpus at `input` into `output` (written atomically).
pub fn clean_corpus(
    input: &Path,
    output: &Path,
    options: &CleanOptions,
) -> Result<CleanStats, PrepError> {
    super::refuse_empty_corpus(input)?;
    let open_error = |error| PrepError::Open {
        path: input.to_path_buf(),
        error,
    };
    let file = File::open(input).map_err(open_error)?;
    let total = file.metadata().map_err(open_error)?.len();
    let reader = BufReader::with_capacity(1 << 20, file);
    let mut documents = DocumentReader::new(reader, input, options.line_docs, Utf8Policy::Replace);
    let output_error = |error| PrepError::Output {
        path: output.to_path_buf(),
        error,
    };
    let mut out = AtomicFile::create(output).map_err(output_error)?;
    let mut stats = CleanStats::default();
    let mut dedup = Dedup::new(options.dedup_memory_mb);
    let mut progress = Progress::new("clean-corpus", "documents", Some(total));
    loop {
        let batch = match documents.next_batch(BATCH_DOCUMENTS, 8 << 20) {
            Ok(batch) => batch,
            Err(error) => {
                progress.finish();
                let written = stats.documents_written;
                return Err(PrepError::input_failed(
                    error,
                    out,
                    Some(options.keep_partial),
                    written,
                    "documents",
                ));
            }
        };
        if batch.is_empty() {
            break;
        }
        let cleaned: Vec<(String, u64)> = batch
            .par_iter()
            .map(|doc| {
                let (text, controls) = drop_controls(doc);
                let text = normalize(&clean(&text, LineMode::LinePerParagraph), options.normalize);
                (text, controls)
            })
            .collect();
        for (document, controls) in cleaned {
            stats.control_chars += controls;
            stats.documents_read += 1;
            let mut kept = String::new();
            for paragraph in document.split('\n').filter(|p| !p.is_empty()) {
                stats.paragraphs_read += 1;
                if paragraph.chars().count() < options.min_chars {
                    stats.too_short += 1;
                } else if !dedup.first_time(paragraph, &mut stats) {
                    stats.duplicates += 1;
                } else {
                    stats.paragraphs_written += 1;
                    kept.push_str(paragraph);
                    kept.push('\n');
                }
            }
            if kept.is_empty() {
                stats.documents_emptied += 1;
                continue;
            }
            let separator: &[u8] = if stats.documents_written > 0 {
                b"\n"
            } else {
                b""
            };
            out.write_all(separator)
                .and_then(|()| out.write_all(kept.as_bytes()))
                .map_err(output_error)?;
            stats.documents_written += 1;
        }
        stats.invalid_utf8 = documents.invalid_utf8();
        progress.update(stats.documents_read, documents.bytes_read());
    }
    progress.finish();
    out.commit().map_err(output_error)?;
    Ok(stats)
}

/// `text` without control characters (Unicode's Cc: NUL, the C0 and C1 controls, DEL) except
/// tab and line feed, with how many were dropped.
fn drop_controls(text: &str) -> (Cow<'_, str>, u64) {
    let is_dropped = |c: char| c.is_control() && c != '\t' && c != '\n';
    let dropped = text.chars().filter(|&c| is_dropped(c)).count() as u64;
    if dropped == 0 {
        return (Cow::Borrowed(text), 0);
    }
    (
        Cow::Owned(text.chars().filter(|&c| !is_dropped(c)).collect()),
        dropped,
    )
}

/// Remembers a hash of every distinct paragraph, up to a memory budget.
struct Dedup {
    seen: HashSet<u64>,
    capacity: usize,
    warned: bool,
}

impl Dedup {
    fn new(memory_mb: usize) -> Self {
        Self {
            seen: HashSet::new(),
            capacity: (memory_mb << 20) / BYTES_PER_HASH,
            warned: false,
        }
    }

    /// False when `paragraph` was seen before.
    fn first_time(&mut self, paragraph: &str, stats: &mut CleanStats) -> bool {
        let mut hasher = DefaultHasher::new();
        paragraph.hash(&mut hasher);
        let hash = hasher.finish();
        if self.seen.contains(&hash) {
            return false;
        }
        if self.seen.len() < self.capacity {
            self.seen.insert(hash);
        } else {
            stats.unchecked_after_full += 1;
            if !self.warned {
                self.warned = true;
                tracing::warn!(
                    "the duplicate detector is full ({} paragraphs); later paragraphs are no \
                     longer remembered (raise --dedup-memory-mb)",
                    self.seen.len()
                );
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(input: &[u8], options: &CleanOptions) -> (String, CleanStats) {
        let dir = tempfile::tempdir().unwrap();
        let (inp, outp) = (dir.path().join("raw.txt"), dir.path().join("clean.txt"));
        std::fs::write(&inp, input).unwrap();
        let stats = clean_corpus(&inp, &outp, options).unwrap();
        (std::fs::read_to_string(&outp).unwrap(), stats)
    }

    #[test]
    fn cleans_normalizes_dedups_and_counts() {
        let input = "'''São''' [[Paulo]]  é   grande.\nCurto.\nRepetido aqui.\n\n\
                     Repetido aqui.\nOutro {{cite|x}}parágrafo.\n\n\
                     Curto.\n\n\
                     ok";
        let options = CleanOptions {
            min_chars: 7,
            ..CleanOptions::default()
        };
        let mut input = input.as_bytes().to_vec();
        input.extend_from_slice(b"\xff fim.\n");
        let (text, stats) = run(&input, &options);
        assert_eq!(
            text,
            "São Paulo é grande.\nRepetido aqui.\n\nOutro parágrafo.\n\nok\u{FFFD} fim.\n"
        );
        assert_eq!(stats.documents_read, 4);
        assert_eq!(stats.documents_written, 3);
        assert_eq!(stats.documents_emptied, 1);
        assert_eq!(stats.paragraphs_read, 7);
        assert_eq!(stats.duplicates, 1);
        assert_eq!(stats.too_short, 2);
        assert_eq!(stats.invalid_utf8, 1);
        assert_eq!(stats.control_chars, 0);
    }

    #[test]
    fn control_characters_are_dropped_and_counted() {
        let (text, stats) = run(
            b"Nul\x00 aqui\x07 fim.\n\nDEL\x7f e C1\xc2\x85 fim.\n",
            &CleanOptions::default(),
        );
        assert_eq!(text, "Nul aqui fim.\n\nDEL e C1 fim.\n");
        assert_eq!(stats.control_chars, 4);
    }

    #[test]
    fn an_empty_corpus_is_refused_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let (inp, outp) = (dir.path().join("raw.txt"), dir.path().join("clean.txt"));
        std::fs::write(&inp, "\n\n").unwrap();
        let err = clean_corpus(&inp, &outp, &CleanOptions::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains("raw.txt holds no documents"), "{err}");
        assert!(!outp.exists());
    }

    #[test]
    fn line_docs_and_ptbr_options() {
        let options = CleanOptions {
            line_docs: true,
            normalize: NormalizeOptions {
                strip_accents: true,
                lowercase: true,
            },
            ..CleanOptions::default()
        };
        let (text, stats) = run("JOSÉ em São Paulo\nAÇÃO\n".as_bytes(), &options);
        assert_eq!(text, "jose em sao paulo\n\nacao\n");
        assert_eq!(stats.documents_written, 2);
    }

    #[test]
    fn a_full_duplicate_detector_stops_remembering_but_keeps_going() {
        let mut dedup = Dedup {
            seen: HashSet::new(),
            capacity: 1,
            warned: false,
        };
        let mut stats = CleanStats::default();
        assert!(dedup.first_time("a", &mut stats));
        assert!(dedup.first_time("b", &mut stats));
        assert!(!dedup.first_time("a", &mut stats));
        assert!(dedup.first_time("b", &mut stats));
        assert_eq!(stats.unchecked_after_full, 2);
    }
}

//! Distributed data preparation (docs/distributed.md): the map tasks a worker runs on a byte range of a
//! corpus or dump, the compact encodings their results travel in, and the reduce steps that fold
//! them, in corpus order, into the very files the single-process stages write. Nothing here
//! touches the network: the coordinator hands out ranges and the worker moves bytes.
//!
//! - [`ranges`] cuts the inputs into tasks;
//! - [`words`] (train-tokenizer), [`tokens`] (tokenize) and [`pages`] (process-wiki) each hold
//!   one job's map function, result encoding and reducer;
//! - [`wire`] is the varint encoding they share.

pub mod pages;
pub mod ranges;
pub mod tokens;
pub mod wire;
pub mod words;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::data::PrepError;
use crate::data::wiki::PageRules;
use crate::tokenizer::Tokenizer;
use crate::tokenizer::TokenizerError;
use wire::Reader;
use wire::ResultError;

/// A data-prep job as the coordinator describes it to its workers (sent as JSON at join).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PrepJob {
    /// What each task does.
    pub map: MapJob,
    /// The input files in order; tasks name them by index.
    pub inputs: Vec<InputFile>,
}

/// One input file of a job, as the coordinator sees it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct InputFile {
    /// The coordinator's path (workers look there, or under their `--data-dir`).
    pub path: PathBuf,
    /// Its length in bytes.
    pub bytes: u64,
}

/// The map step of a job.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum MapJob {
    /// train-tokenizer: count each document's pre-tokenized words.
    CountWords {
        /// Each line is a document.
        line_docs: bool,
        /// Replace invalid UTF-8 instead of failing.
        lossy: bool,
    },
    /// tokenize: encode each document, `[EOS]` after it.
    Encode {
        /// Each line is a document.
        line_docs: bool,
        /// Replace invalid UTF-8 instead of failing.
        lossy: bool,
        /// The tokenizer file's text (a tokenizer.json or a World vocabulary).
        tokenizer_text: String,
    },
    /// process-wiki: parse, filter and clean each page.
    Pages {
        /// What decides each page's fate and text.
        rules: PageRules,
        /// The dump's namespace prefixes (from its `<siteinfo>`).
        namespaces: Vec<String>,
    },
}

/// What stops a map task on a worker.
#[derive(Debug, thiserror::Error)]
pub enum TaskError {
    /// The task's input cannot be read as the stage reads it (invalid UTF-8 without --lossy, a
    /// damaged stream, a range that does not hold whole pages): the same input fails anywhere,
    /// so the job stops with this message, which names the file and byte.
    #[error("{0}")]
    Input(String),
    /// The job's tokenizer cannot be used.
    #[error("the job's tokenizer: {0}")]
    Tokenizer(#[from] TokenizerError),
    /// The job's tokenizer has no `[EOS]` that fits u16.
    #[error("the job's tokenizer has no [EOS] token that fits u16")]
    NoEos,
    /// An encoding job without its tokenizer.
    #[error("the job's tokenizer is missing")]
    NoTokenizer,
}

/// A map job ready to run tasks (its tokenizer, if any, parsed once).
pub struct Mapper {
    job: MapJob,
    /// The tokenizer of [`MapJob::Encode`] and its `[EOS]` id.
    tokenizer: Option<(Tokenizer, u16)>,
}

impl Mapper {
    /// Prepares `job`; a tokenizer that does not parse or has no `[EOS]` is refused.
    pub fn new(job: &MapJob) -> Result<Self, TaskError> {
        let tokenizer = match job {
            MapJob::Encode { tokenizer_text, .. } => {
                let tokenizer = Tokenizer::from_text(tokenizer_text)?;
                let eos = tokenizer
                    .eos_id()
                    .and_then(|id| u16::try_from(id).ok())
                    .ok_or(TaskError::NoEos)?;
                Some((tokenizer, eos))
            }
            _ => None,
        };
        Ok(Self {
            job: job.clone(),
            tokenizer,
        })
    }

    /// Runs one task on `input`, the bytes `[start, start + input.len())` of the file at
    /// `path` (named in errors), and returns the encoded result.
    pub fn run(&self, input: &[u8], path: &Path, start: u64) -> Result<Vec<u8>, TaskError> {
        match (&self.job, &self.tokenizer) {
            (&MapJob::CountWords { line_docs, lossy }, _) => {
                words::map(input, path, start, line_docs, lossy)
            }
            (
                &MapJob::Encode {
                    line_docs, lossy, ..
                },
                Some((tokenizer, eos)),
            ) => tokens::map(input, path, start, line_docs, lossy, tokenizer, *eos),
            (MapJob::Encode { .. }, None) => Err(TaskError::NoTokenizer),
            (MapJob::Pages { rules, namespaces }, _) => {
                pages::map(input, path, start, *rules, namespaces)
            }
        }
    }
}

/// The coordinator's side of a job. Each task's result is decoded and checked when it arrives
/// (one that fails is refused and its task handed to another worker), then accepted in task
/// order, which is corpus order.
pub trait Reducer: Send {
    /// A decoded, checked result.
    type Part: Send;
    /// Decodes the result of the task over `range`; the error says what is wrong with it.
    fn decode(&self, range: (u64, u64), payload: &[u8]) -> Result<Self::Part, ResultError>;
    /// Folds in the next task's result.
    fn accept(&mut self, part: Self::Part) -> Result<(), PrepError>;
}

/// Reads a result's first field, the input length it covers, and fails unless that is the
/// length of its task's range.
fn read_input_length(reader: &mut Reader<'_>, range: (u64, u64)) -> Result<u64, ResultError> {
    let bytes = reader.varint("the byte count")?;
    let (start, end) = range;
    if bytes == end - start {
        Ok(bytes)
    } else {
        Err(ResultError::Content(format!(
            "it covers {bytes} input bytes, but the task is bytes [{start}, {end}) ({} bytes)",
            end - start
        )))
    }
}

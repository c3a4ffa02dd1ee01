//! Data preparation: dump decompression and parsing, the markup cleaner, normalization and the
//! corpus cleaning stage.

pub mod bz2;
pub mod clean_corpus;
pub mod corpus;
pub mod dataset;
pub mod encoding;
pub mod normalize;
pub mod tokenize;
pub mod train_tokenizer;
pub mod wiki;
pub mod wikitext;

use std::io;
use std::path::PathBuf;

use crate::output::AtomicFile;

/// A failed data-preparation stage, phrased for the person who ran it.
#[derive(Debug, thiserror::Error)]
pub enum PrepError {
    /// The input could not be opened at all.
    #[error("cannot read {path}: {error}")]
    Open {
        /// The input path.
        path: PathBuf,
        /// Why.
        error: io::Error,
    },
    /// The input broke part-way (corrupt or truncated compression, unreadable data).
    #[error("{error}\n{written} {unit} had been written before the error; {kept_note}")]
    Input {
        /// What went wrong, with the file and position.
        error: io::Error,
        /// Items written before it.
        written: u64,
        /// What the items are ("pages", "documents").
        unit: &'static str,
        /// Where the partial output is, or that there is none.
        kept_note: String,
    },
    /// The corpus holds no documents: only white space, or nothing.
    #[error(
        "{path} holds no documents (an empty corpus); nothing was written: check the stage that \
         made it"
    )]
    EmptyCorpus {
        /// The corpus file.
        path: PathBuf,
    },
    /// A setting or a supporting file cannot be used.
    #[error("{0}")]
    Invalid(String),
    /// The tokenizer.json cannot be used.
    #[error(transparent)]
    Tokenizer(#[from] crate::tokenizer::TokenizerError),
    /// The output could not be written.
    #[error("cannot write {path}: {error}")]
    Output {
        /// The output path.
        path: PathBuf,
        /// Why.
        error: io::Error,
    },
}

/// Refuses a corpus file that holds nothing but white space, before any work. Reading stops at
/// the first other byte.
pub fn refuse_empty_corpus(path: &std::path::Path) -> Result<(), PrepError> {
    use std::io::Read;
    let open_error = |error| PrepError::Open {
        path: path.to_path_buf(),
        error,
    };
    let mut file = std::fs::File::open(path).map_err(open_error)?;
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = file.read(&mut buf).map_err(open_error)?;
        if n == 0 {
            return Err(PrepError::EmptyCorpus {
                path: path.to_path_buf(),
            });
        }
        if !buf[..n].trim_ascii().is_empty() {
            return Ok(());
        }
    }
}

impl PrepError {
    /// The error for an input that failed after `written` items went to `out`: the partial
    /// output is kept as `<output>.partial` when `keep_partial` is `Some(true)`, otherwise
    /// removed. `None` is for commands without a `--keep-partial` flag, whose message does not
    /// suggest one.
    pub fn input_failed(
        error: io::Error,
        out: AtomicFile,
        keep_partial: Option<bool>,
        written: u64,
        unit: &'static str,
    ) -> Self {
        let output = out.path().display().to_string();
        let kept_note = match keep_partial {
            Some(true) => match out.keep_partial() {
                Ok(path) => format!("they were kept in {}.", path.display()),
                Err(e) => format!("keeping them failed: {e}."),
            },
            Some(false) => {
                format!("{output} was not created (--keep-partial keeps them as {output}.partial).")
            }
            None => format!("{output} was not created."),
        };
        PrepError::Input {
            error,
            written,
            unit,
            kept_note,
        }
    }
}

//! Reading the run's JSON-lines files (metrics.jsonl, events.jsonl): whole, once a run is done
//! ([`read_jsonl`]), or as they grow while it runs ([`JsonlFollower`]), which reads only what
//! was added since its last look.

use std::fs::{self, File};
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

use super::TrainError;

/// The records of a JSON-lines file (none when it does not exist); a line that is not one (a
/// `what` line) is an error naming the file and line.
pub fn read_jsonl<T: DeserializeOwned>(path: &Path, what: &str) -> Result<Vec<T>, TrainError> {
    match fs::read_to_string(path) {
        Ok(text) => parse_lines(&text, 0, path, what),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(TrainError::Metrics(format!("{}: {e}", path.display()))),
    }
}

/// The records in `text`, whose first line is line `before + 1` of `path`; blank lines are
/// skipped.
fn parse_lines<T: DeserializeOwned>(
    text: &str,
    before: usize,
    path: &Path,
    what: &str,
) -> Result<Vec<T>, TrainError> {
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(i, line)| {
            serde_json::from_str(line).map_err(|e| {
                TrainError::Metrics(format!(
                    "{}:{}: not {what} line ({e})",
                    path.display(),
                    before + i + 1
                ))
            })
        })
        .collect()
}

/// What a [`JsonlFollower`] found since its last look.
#[derive(Debug, PartialEq)]
pub enum Followed<T> {
    /// Records appended to the file it had read (possibly none).
    Appended(Vec<T>),
    /// The file is new to it (its first look, or the writer replaced or cut it, as a rollback
    /// does to metrics.jsonl): every record it holds now.
    Replaced(Vec<T>),
}

/// Follows a JSON-lines file that a writer appends to and may replace whole. Each look reads
/// only the bytes added since the last one, up to the last newline: a line still being written
/// waits for the next look.
pub struct JsonlFollower {
    path: PathBuf,
    what: &'static str,
    /// The file it is reading (its inode), once it found one.
    file: Option<u64>,
    /// Bytes of it read, up to the end of a whole line.
    read: u64,
    /// Lines of it read.
    lines: usize,
}

impl JsonlFollower {
    /// Follows `path`, whose lines are `what` records (for errors: "a metrics", "an event").
    pub fn new(path: &Path, what: &'static str) -> Self {
        Self {
            path: path.to_path_buf(),
            what,
            file: None,
            read: 0,
            lines: 0,
        }
    }

    /// The records added since the last look; a file that does not exist (yet) holds none.
    pub fn look<T: DeserializeOwned>(&mut self) -> Result<Followed<T>, TrainError> {
        let error =
            |e: std::io::Error| TrainError::Metrics(format!("{}: {e}", self.path.display()));
        let (mut file, inode, len) = match File::open(&self.path) {
            Ok(file) => {
                let meta = file.metadata().map_err(error)?;
                (Some(file), Some(meta.ino()), meta.len())
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => (None, None, 0),
            Err(e) => return Err(error(e)),
        };
        let replaced = inode != self.file || len < self.read;
        if replaced {
            (self.file, self.read, self.lines) = (inode, 0, 0);
        }
        let mut added = Vec::new();
        if let Some(file) = file.as_mut() {
            file.seek(SeekFrom::Start(self.read)).map_err(error)?;
            file.take(len - self.read)
                .read_to_end(&mut added)
                .map_err(error)?;
        }
        added.truncate(
            added
                .iter()
                .rposition(|&b| b == b'\n')
                .map_or(0, |end| end + 1),
        );
        let text = String::from_utf8(added).map_err(|e| {
            TrainError::Metrics(format!(
                "{}: after line {}: not UTF-8 ({e})",
                self.path.display(),
                self.lines
            ))
        })?;
        let records = parse_lines(&text, self.lines, &self.path, self.what)?;
        self.read += text.len() as u64;
        self.lines += text.lines().count();
        Ok(if replaced {
            Followed::Replaced(records)
        } else {
            Followed::Appended(records)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn look(follower: &mut JsonlFollower) -> Followed<u32> {
        follower.look().unwrap()
    }

    #[test]
    fn a_follower_reads_whole_lines_as_they_come_and_everything_after_a_replace() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.jsonl");
        let mut follower = JsonlFollower::new(&path, "a number");
        assert_eq!(look(&mut follower), Followed::Appended(vec![]));

        fs::write(&path, "1\n2\n3").unwrap();
        assert_eq!(look(&mut follower), Followed::Replaced(vec![1, 2]));
        let mut file = fs::OpenOptions::new().append(true).open(&path).unwrap();
        file.write_all(b"0\n\n4\n").unwrap();
        assert_eq!(look(&mut follower), Followed::Appended(vec![30, 4]));
        assert_eq!(look(&mut follower), Followed::Appended(vec![]));

        // Replaced by a rename (a rollback), then cut in place.
        let new = dir.path().join("new");
        fs::write(&new, "1\n2\n").unwrap();
        fs::rename(&new, &path).unwrap();
        assert_eq!(look(&mut follower), Followed::Replaced(vec![1, 2]));
        fs::write(&path, "7\n").unwrap();
        assert_eq!(look(&mut follower), Followed::Replaced(vec![7]));

        let mut file = fs::OpenOptions::new().append(true).open(&path).unwrap();
        file.write_all(b"x\n").unwrap();
        let error = follower.look::<u32>().unwrap_err().to_string();
        assert!(
            error.ends_with("m.jsonl:2: not a number line (expected value at line 1 column 1)"),
            "{error}"
        );
    }

    #[test]
    fn read_jsonl_names_the_file_and_line_of_a_bad_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("e.jsonl");
        assert_eq!(
            read_jsonl::<u32>(&path, "a number").unwrap(),
            Vec::<u32>::new()
        );
        fs::write(&path, "1\n\n{\n").unwrap();
        let error = read_jsonl::<u32>(&path, "a number")
            .unwrap_err()
            .to_string();
        assert!(error.contains("e.jsonl:3: not a number line"), "{error}");
        fs::write(&path, "1\n2").unwrap();
        assert_eq!(read_jsonl::<u32>(&path, "a number").unwrap(), [1, 2]);
    }
}

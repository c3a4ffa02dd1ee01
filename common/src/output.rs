//! Output files that appear whole or not at all: written under a temporary name in the same
//! directory, flushed and fsynced, then renamed over the final name.

use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

/// A file being written; see the module documentation. Dropping it without [`commit`]
/// removes the temporary file.
///
/// [`commit`]: AtomicFile::commit
pub struct AtomicFile {
    final_path: PathBuf,
    temp_path: PathBuf,
    writer: Option<BufWriter<File>>,
}

impl AtomicFile {
    /// Starts writing what will become `path`.
    pub fn create(path: &Path) -> io::Result<Self> {
        let name = path.file_name().ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{} is not a file name", path.display()),
            )
        })?;
        let mut temp_name = std::ffi::OsString::from(".");
        temp_name.push(name);
        temp_name.push(format!(".tmp-{}", std::process::id()));
        let temp_path = path.with_file_name(temp_name);
        let file = File::create(&temp_path)?;
        Ok(Self {
            final_path: path.to_path_buf(),
            temp_path,
            writer: Some(BufWriter::with_capacity(1 << 20, file)),
        })
    }

    /// The final path this file will have.
    pub fn path(&self) -> &Path {
        &self.final_path
    }

    /// Flushes, fsyncs and renames the file to its final name.
    pub fn commit(mut self) -> io::Result<()> {
        self.finish_to(&self.final_path.clone())
    }

    /// Keeps what was written as `<path>.partial` (never under the final name) and returns that
    /// path.
    pub fn keep_partial(mut self) -> io::Result<PathBuf> {
        let mut partial = self.final_path.clone().into_os_string();
        partial.push(".partial");
        let partial = PathBuf::from(partial);
        self.finish_to(&partial)?;
        Ok(partial)
    }

    fn finish_to(&mut self, target: &Path) -> io::Result<()> {
        let writer = self.writer.take().expect("an AtomicFile is finished once");
        let file = writer.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        fs::rename(&self.temp_path, target)?;
        if let Some(dir) = target.parent().filter(|d| !d.as_os_str().is_empty()) {
            // Make the rename itself durable.
            File::open(dir)?.sync_all()?;
        }
        Ok(())
    }
}

impl Write for AtomicFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.writer
            .as_mut()
            .expect("written before commit")
            .write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.writer.as_mut().expect("flushed before commit").flush()
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        if self.writer.take().is_some() {
            let _ = fs::remove_file(&self.temp_path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_appears_until_commit_and_drop_cleans_up() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.txt");
        let mut file = AtomicFile::create(&path).unwrap();
        file.write_all(b"hello").unwrap();
        assert!(!path.exists());
        file.commit().unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"hello");

        let mut file = AtomicFile::create(&dir.path().join("gone.txt")).unwrap();
        file.write_all(b"partial").unwrap();
        drop(file);
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("out.txt")]);
    }

    #[test]
    fn keep_partial_never_uses_the_final_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("corpus.txt");
        let mut file = AtomicFile::create(&path).unwrap();
        file.write_all(b"some").unwrap();
        let partial = file.keep_partial().unwrap();
        assert_eq!(partial, dir.path().join("corpus.txt.partial"));
        assert!(!path.exists());
        assert_eq!(fs::read(partial).unwrap(), b"some");
    }
}

//! Output files that appear whole or not at all, and never destroy an input or a special file.
//!
//! - A regular file (or a name that does not exist yet) is written under a temporary name in the
//!   same directory, flushed and fsynced, then renamed over the final name.
//! - A symlink is followed: its target is what gets written, and the link stays.
//! - A device, FIFO or socket (`/dev/null`, `/dev/stdout`, a named pipe) is written in place:
//!   it is never replaced by a regular file.
//! - [`refuse_inputs`] refuses an output that is the same file (device and inode) as an input,
//!   whether by the same path, a hard link or a symlink; every command calls it before any work.
//! - Temporary files that a killed process left behind (`.<name>.tmp-<pid>` whose process is
//!   gone) are removed when the same output is written again.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

/// Why an output cannot be written where it was asked to go.
#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    /// The output is one of the inputs (the same path, a hard link or a symlink to it).
    #[error(
        "{output} is the same file as the input {input}; writing it would destroy the input: \
         choose another output path"
    )]
    SameAsInput {
        /// The output as given.
        output: PathBuf,
        /// The input as given.
        input: PathBuf,
    },
    /// Two outputs of one command are the same file.
    #[error("{first} and {second} are the same file; give each output its own path")]
    SameOutputs {
        /// One output as given.
        first: PathBuf,
        /// The other.
        second: PathBuf,
    },
}

/// The (device, inode) of the file `path` names, following symlinks; `None` when it does not
/// exist.
fn identity(path: &Path) -> Option<(u64, u64)> {
    fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

/// Refuses outputs that are the same file as an input or as each other, before any work. Device
/// nodes such as `/dev/null` may be named as several outputs (nothing is destroyed by that).
pub fn refuse_inputs(outputs: &[&Path], inputs: &[&Path]) -> Result<(), OutputError> {
    for (i, output) in outputs.iter().enumerate() {
        let Some(id) = identity(output) else {
            continue;
        };
        if let Some(input) = inputs.iter().find(|input| identity(input) == Some(id)) {
            return Err(OutputError::SameAsInput {
                output: output.to_path_buf(),
                input: input.to_path_buf(),
            });
        }
        let special = fs::metadata(output).is_ok_and(|m| !m.is_file());
        if let Some(other) = outputs[i + 1..].iter().find(|o| identity(o) == Some(id))
            && !special
        {
            return Err(OutputError::SameOutputs {
                first: output.to_path_buf(),
                second: other.to_path_buf(),
            });
        }
    }
    Ok(())
}

/// Where the bytes of an [`AtomicFile`] go.
enum Target {
    /// A temporary file renamed over `final_path` on commit.
    Renamed { temp_path: PathBuf },
    /// A device, FIFO or socket, written in place.
    InPlace,
}

/// A file being written; see the module documentation. Dropping it without [`commit`]
/// removes the temporary file.
///
/// [`commit`]: AtomicFile::commit
pub struct AtomicFile {
    final_path: PathBuf,
    target: Target,
    writer: Option<BufWriter<File>>,
}

/// Follows `path` through symlinks (a chain, relative or absolute) to the name that will be
/// written; the final target need not exist yet.
fn resolve_symlinks(path: &Path) -> io::Result<PathBuf> {
    let mut current = path.to_path_buf();
    for _ in 0..40 {
        match fs::symlink_metadata(&current) {
            Ok(meta) if meta.file_type().is_symlink() => {
                let target = fs::read_link(&current)?;
                current = match current.parent() {
                    Some(dir) if target.is_relative() => dir.join(target),
                    _ => target,
                };
            }
            _ => return Ok(current),
        }
    }
    Err(io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("{}: too many levels of symbolic links", path.display()),
    ))
}

/// The temporary name `.<name>.tmp-<pid>` beside `path`.
fn temp_name(path: &Path, pid: u32) -> io::Result<PathBuf> {
    let name = path.file_name().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} is not a file name", path.display()),
        )
    })?;
    let mut temp = std::ffi::OsString::from(".");
    temp.push(name);
    temp.push(format!(".tmp-{pid}"));
    Ok(path.with_file_name(temp))
}

/// Whether a process with this id runs on this machine.
pub fn process_alive(pid: u32) -> bool {
    Path::new("/proc").join(pid.to_string()).exists()
}

/// Removes the entries of `dir` named `<prefix>…<marker><pid>` whose process is gone (the temporary
/// files and directories of a killed writer); returns how many went.
pub fn remove_stale_temps(dir: &Path, prefix: &str, marker: &str) -> io::Result<usize> {
    let mut removed = 0;
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    for entry in entries.filter_map(Result::ok) {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some(rest) = name.strip_prefix(prefix) else {
            continue;
        };
        let Some((_, pid)) = rest.rsplit_once(marker) else {
            continue;
        };
        let Ok(pid) = pid.parse::<u32>() else {
            continue;
        };
        if pid == std::process::id() || process_alive(pid) {
            continue;
        }
        let path = entry.path();
        let result = if entry.file_type()?.is_dir() {
            fs::remove_dir_all(&path)
        } else {
            fs::remove_file(&path)
        };
        result?;
        tracing::info!("removed {}, left by a writer that is gone", path.display());
        removed += 1;
    }
    Ok(removed)
}

impl AtomicFile {
    /// Starts writing what will become `path` (see the module documentation for symlinks and
    /// special files).
    pub fn create(path: &Path) -> io::Result<Self> {
        let final_path = resolve_symlinks(path)?;
        if let Ok(meta) = fs::metadata(&final_path) {
            if meta.is_dir() {
                return Err(io::Error::new(
                    io::ErrorKind::IsADirectory,
                    format!("{} is a directory, not a file", path.display()),
                ));
            }
            let kind = meta.file_type();
            if kind.is_char_device() || kind.is_block_device() || kind.is_fifo() {
                let file = OpenOptions::new().write(true).open(&final_path)?;
                return Ok(Self {
                    final_path,
                    target: Target::InPlace,
                    writer: Some(BufWriter::with_capacity(1 << 20, file)),
                });
            }
        }
        let temp_path = temp_name(&final_path, std::process::id())?;
        if let (Some(dir), Some(name)) = (final_path.parent(), final_path.file_name()) {
            let dir = if dir.as_os_str().is_empty() {
                Path::new(".")
            } else {
                dir
            };
            let prefix = format!(".{}", name.to_string_lossy());
            remove_stale_temps(dir, &prefix, ".tmp-")?;
        }
        let file = File::create(&temp_path)?;
        Ok(Self {
            final_path,
            target: Target::Renamed { temp_path },
            writer: Some(BufWriter::with_capacity(1 << 20, file)),
        })
    }

    /// The final path this file will have (a symlink's target).
    pub fn path(&self) -> &Path {
        &self.final_path
    }

    /// Flushes, fsyncs and renames the file to its final name.
    pub fn commit(mut self) -> io::Result<()> {
        self.finish_to(&self.final_path.clone())
    }

    /// Keeps what was written as `<path>.partial` (never under the final name) and returns that
    /// path. A device or FIFO has nothing to keep apart: its path is returned.
    pub fn keep_partial(mut self) -> io::Result<PathBuf> {
        if matches!(self.target, Target::InPlace) {
            self.finish_to(&self.final_path.clone())?;
            return Ok(self.final_path.clone());
        }
        let mut partial = self.final_path.clone().into_os_string();
        partial.push(".partial");
        let partial = PathBuf::from(partial);
        self.finish_to(&partial)?;
        Ok(partial)
    }

    fn finish_to(&mut self, target: &Path) -> io::Result<()> {
        let Some(writer) = self.writer.take() else {
            return Err(io::Error::other("an output file was finished twice"));
        };
        let file = writer.into_inner().map_err(|e| e.into_error())?;
        let Target::Renamed { temp_path } = &self.target else {
            return Ok(());
        };
        file.sync_all()?;
        fs::rename(temp_path, target)?;
        if let Some(dir) = target.parent().filter(|d| !d.as_os_str().is_empty()) {
            // Make the rename itself durable.
            File::open(dir)?.sync_all()?;
        }
        Ok(())
    }

    fn writer(&mut self) -> io::Result<&mut BufWriter<File>> {
        self.writer
            .as_mut()
            .ok_or_else(|| io::Error::other("an output file was written after it was finished"))
    }
}

impl Write for AtomicFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.writer()?.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.writer()?.flush()
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        if self.writer.take().is_some()
            && let Target::Renamed { temp_path } = &self.target
        {
            let _ = fs::remove_file(temp_path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

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

    #[test]
    fn a_symlink_is_followed_and_stays_a_symlink() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("real")).unwrap();
        let link = dir.path().join("out.txt");
        symlink("real/target.txt", &link).unwrap();
        let mut file = AtomicFile::create(&link).unwrap();
        file.write_all(b"through the link").unwrap();
        file.commit().unwrap();
        assert!(
            fs::symlink_metadata(&link)
                .unwrap()
                .file_type()
                .is_symlink()
        );
        assert_eq!(
            fs::read(dir.path().join("real/target.txt")).unwrap(),
            b"through the link"
        );
    }

    #[test]
    fn a_fifo_is_written_in_place_and_never_replaced() {
        // Devices (/dev/null, /dev/full) are covered end to end in tests/bad_input/outputs.rs.
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("pipe");
        let made = std::process::Command::new("mkfifo").arg(&fifo).status();
        assert!(made.is_ok_and(|s| s.success()));
        let reader = {
            let fifo = fifo.clone();
            std::thread::spawn(move || fs::read(fifo).unwrap())
        };
        let mut file = AtomicFile::create(&fifo).unwrap();
        file.write_all(b"through the pipe").unwrap();
        file.commit().unwrap();
        assert_eq!(reader.join().unwrap(), b"through the pipe");
        assert!(fs::metadata(&fifo).unwrap().file_type().is_fifo());
    }

    #[test]
    fn an_output_that_is_an_input_is_refused_by_path_hard_link_and_symlink() {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("in.txt");
        fs::write(&input, "precious").unwrap();
        let hard = dir.path().join("hard.txt");
        fs::hard_link(&input, &hard).unwrap();
        let soft = dir.path().join("soft.txt");
        symlink(&input, &soft).unwrap();
        for output in [&input, &hard, &soft] {
            let err = refuse_inputs(&[output], &[&input]).unwrap_err();
            assert!(
                matches!(err, OutputError::SameAsInput { .. }),
                "{output:?}: {err}"
            );
        }
        let fresh = dir.path().join("new.txt");
        refuse_inputs(&[&fresh], &[&input]).unwrap();
        let err = refuse_inputs(&[&hard, &soft], &[]).unwrap_err();
        assert!(matches!(err, OutputError::SameOutputs { .. }), "{err}");
        refuse_inputs(&[Path::new("/dev/null"), Path::new("/dev/null")], &[]).unwrap();
        assert_eq!(fs::read(&input).unwrap(), b"precious");
    }

    #[test]
    fn stale_temporary_files_of_dead_writers_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        // A pid above the kernel's maximum (4194304) never runs.
        let stale = dir.path().join(".out.txt.tmp-4999999");
        fs::write(&stale, "left by a killed run").unwrap();
        let live = temp_name(&dir.path().join("out.txt"), 1).unwrap();
        fs::write(&live, "pid 1 is alive").unwrap();
        let file = AtomicFile::create(&dir.path().join("out.txt")).unwrap();
        file.commit().unwrap();
        assert!(!stale.exists());
        assert!(live.exists());
    }
}

//! Atomic file writes: a reader (or a crash) sees the old file or the new one, never half.

use std::io::Write;
use std::path::Path;

/// Temporary files are named `.hashsieve-XXXXXX.tmp` beside their target, so that a crash's
/// leftovers can be recognised and removed.
pub const TEMP_PREFIX: &str = ".hashsieve-";
pub const TEMP_SUFFIX: &str = ".tmp";

/// Writes `bytes` to `path` atomically: a temporary file in the same directory, flushed and
/// fsynced, renamed over `path`, then the directory fsynced so the rename survives a crash.
/// On error nothing is left behind (the temporary file is removed). The file is readable by
/// everyone (0644), like any published artifact.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    write_atomic_mode(path, bytes, 0o644)
}

/// [`write_atomic`] for secrets: the file is private to its owner (0600) from the start.
pub fn write_secret_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    write_atomic_mode(path, bytes, 0o600)
}

/// [`write_atomic`] for files too big to assemble in memory first: `write` streams the
/// contents (through a buffer) into the temporary file.
pub fn write_atomic_with(
    path: &Path,
    write: impl FnOnce(&mut dyn Write) -> std::io::Result<()>,
) -> std::io::Result<()> {
    write_atomic_inner(path, 0o644, write)
}

fn write_atomic_mode(path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    write_atomic_inner(path, mode, |w| w.write_all(bytes))
}

fn write_atomic_inner(
    path: &Path,
    mode: u32,
    write: impl FnOnce(&mut dyn Write) -> std::io::Result<()>,
) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let tmp = tempfile::Builder::new()
        .prefix(TEMP_PREFIX)
        .suffix(TEMP_SUFFIX)
        .tempfile_in(dir)?;
    // Permissions are set before any byte is written, so a secret is never readable by others.
    set_mode(tmp.as_file(), mode)?;
    {
        let mut buffered = std::io::BufWriter::with_capacity(1 << 20, tmp.as_file());
        write(&mut buffered)?;
        buffered.flush()?;
    }
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    // Directory fsync makes the rename durable; not every platform can open a directory.
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

#[cfg(unix)]
fn set_mode(file: &std::fs::File, mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    file.set_permissions(std::fs::Permissions::from_mode(mode))
}

#[cfg(not(unix))]
fn set_mode(_file: &std::fs::File, _mode: u32) -> std::io::Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_whole_file_and_leaves_no_temporaries() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.bin");
        write_atomic(&path, b"first").unwrap();
        write_atomic(&path, b"second").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"second");
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 1, "{names:?}");
    }

    #[cfg(unix)]
    #[test]
    fn modes_are_public_or_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let public = dir.path().join("set.hset");
        let secret = dir.path().join("key.sec");
        write_atomic(&public, b"x").unwrap();
        write_secret_atomic(&secret, b"y").unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&public), 0o644);
        assert_eq!(mode(&secret), 0o600);
    }

    #[test]
    fn failure_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("missing-dir").join("f.bin");
        assert!(write_atomic(&path, b"x").is_err());
        assert!(!path.exists());
    }
}

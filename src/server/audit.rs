//! The audit log: one JSON line per reported match (time, partner, list, version, ref, kind,
//! distance), so list maintainers can see which entries are hit. Hashes that did not match are
//! never written here or anywhere else. The file is opened for append (mode 0640) on first
//! use and rotated by size: past the limit it is renamed to `<file>.1` (replacing the older
//! one) and a new file is started.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::PathBuf;
use std::sync::Mutex;

use serde::Serialize;

/// One audited match.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct AuditRecord<'a> {
    pub time: &'a str,
    pub partner: &'a str,
    pub list: &'a str,
    pub version: u64,
    #[serde(rename = "ref")]
    pub reference: &'a str,
    pub kind: &'a str,
    pub distance: u32,
}

pub struct AuditLog {
    path: PathBuf,
    rotate_bytes: u64,
    file: Mutex<Option<(File, u64)>>,
}

impl AuditLog {
    pub fn new(path: PathBuf, rotate_bytes: u64) -> AuditLog {
        AuditLog {
            path,
            rotate_bytes,
            file: Mutex::new(None),
        }
    }

    pub fn path(&self) -> &std::path::Path {
        &self.path
    }

    /// Appends `records` as one write (lines of one request stay together).
    pub fn append(&self, records: &[AuditRecord<'_>]) -> std::io::Result<()> {
        if records.is_empty() {
            return Ok(());
        }
        let mut text = Vec::new();
        for r in records {
            serde_json::to_writer(&mut text, r)?;
            text.push(b'\n');
        }
        let mut guard = self.file.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, size)) = guard.as_ref()
            && size + text.len() as u64 > self.rotate_bytes
            && *size > 0
        {
            *guard = None;
            let mut rotated = self.path.clone().into_os_string();
            rotated.push(".1");
            std::fs::rename(&self.path, rotated)?;
        }
        if guard.is_none() {
            let mut options = OpenOptions::new();
            options.create(true).append(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o640);
            let file = options.open(&self.path)?;
            let size = file.metadata()?.len();
            *guard = Some((file, size));
        }
        if let Some((file, size)) = guard.as_mut() {
            file.write_all(&text)?;
            *size += text.len() as u64;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn appends_lines_and_rotates_by_size() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let log = AuditLog::new(path.clone(), 300);
        let r = AuditRecord {
            time: "2026-01-01T00:00:00Z",
            partner: "p",
            list: "alpha",
            version: 2,
            reference: "A-1",
            kind: "pdq",
            distance: 3,
        };
        for _ in 0..3 {
            log.append(&[r]).unwrap();
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let first: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
        assert_eq!(first["ref"], "A-1");
        assert_eq!(first["distance"], 3);
        // ~120 bytes a line: the third write rotates.
        assert!(dir.path().join("audit.jsonl.1").exists());
        assert_eq!(text.lines().count(), 1);
    }
}

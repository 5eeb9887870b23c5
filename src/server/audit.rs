//! The audit log: one JSON line per reported match (time, partner, list, version, ref, kind,
//! distance), so list maintainers can see which entries are hit, and one per match an allow
//! list withheld (the same, plus `suppressed_by`). Hashes that did not match are
//! never written here or anywhere else. The file is opened for append (mode 0640) on first
//! use and rotated by size: past the limit it is renamed to `<file>.1` (replacing the older
//! one) and a new file is started.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::PathBuf;

use serde::Serialize;
use tokio::sync::oneshot;

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
    /// Set when the match was not reported: the allow-list entry the query also matched.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub suppressed_by: Option<SuppressedBy<'a>>,
}

/// The allow-list entry that withheld an audited match.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct SuppressedBy<'a> {
    pub list: &'a str,
    pub version: u64,
    #[serde(rename = "ref")]
    pub reference: &'a str,
    pub distance: u32,
}

/// The audit log's writer: a thread of its own, so that file writes and renames never run on
/// the async workers. A request with matches hands its lines over and waits for the
/// thread's answer before it answers the partner: every match is in the file (written, not
/// fsynced) before its verdict is sent.
pub struct AuditLog {
    path: PathBuf,
    /// To the writer thread, which ends when this is dropped.
    jobs: std::sync::mpsc::Sender<Job>,
}

/// Lines to append, and where to say how it went.
type Job = (Vec<u8>, oneshot::Sender<std::io::Result<()>>);

/// Lines handed to the writer, not yet known to be written.
pub struct Pending(oneshot::Receiver<std::io::Result<()>>);

impl Pending {
    /// Waits (on an async task) until the lines are written.
    pub async fn written(self) -> std::io::Result<()> {
        self.0.await.unwrap_or_else(|_| Err(stopped()))
    }

    /// Waits (on a thread that may block) until the lines are written.
    pub fn wait(self) -> std::io::Result<()> {
        self.0.blocking_recv().unwrap_or_else(|_| Err(stopped()))
    }
}

fn stopped() -> std::io::Error {
    std::io::Error::other("the audit writer has stopped")
}

impl AuditLog {
    /// Starts the writer thread for the log at `path`, rotated past `rotate_bytes`.
    pub fn start(path: PathBuf, rotate_bytes: u64) -> std::io::Result<AuditLog> {
        let (jobs, rx) = std::sync::mpsc::channel::<Job>();
        let mut writer = Writer {
            path: path.clone(),
            rotate_bytes,
            file: None,
        };
        std::thread::Builder::new()
            .name("hashsieve-audit".into())
            .spawn(move || {
                for (text, done) in rx {
                    let _ = done.send(writer.append(&text));
                }
            })?;
        Ok(AuditLog { path, jobs })
    }

    pub fn path(&self) -> &std::path::Path {
        &self.path
    }

    /// Hands `records` to the writer as one write (lines of one request stay together);
    /// `None` when there is nothing to write.
    pub fn record(&self, records: &[AuditRecord<'_>]) -> Option<Pending> {
        if records.is_empty() {
            return None;
        }
        let mut text = Vec::new();
        for r in records {
            // Plain strings and numbers: serialising cannot fail.
            let _ = serde_json::to_writer(&mut text, r);
            text.push(b'\n');
        }
        let (done, pending) = oneshot::channel();
        if let Err(std::sync::mpsc::SendError((_, done))) = self.jobs.send((text, done)) {
            let _ = done.send(Err(stopped()));
        }
        Some(Pending(pending))
    }
}

/// The open file and its size, owned by the writer thread.
struct Writer {
    path: PathBuf,
    rotate_bytes: u64,
    file: Option<(File, u64)>,
}

impl Writer {
    fn append(&mut self, text: &[u8]) -> std::io::Result<()> {
        if let Some((_, size)) = self.file.as_ref()
            && size + text.len() as u64 > self.rotate_bytes
            && *size > 0
        {
            self.file = None;
            let mut rotated = self.path.clone().into_os_string();
            rotated.push(".1");
            std::fs::rename(&self.path, rotated)?;
        }
        if self.file.is_none() {
            let mut options = OpenOptions::new();
            options.create(true).append(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o640);
            let file = options.open(&self.path)?;
            let size = file.metadata()?.len();
            self.file = Some((file, size));
        }
        if let Some((file, size)) = self.file.as_mut() {
            file.write_all(text)?;
            *size += text.len() as u64;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: AuditRecord<'static> = AuditRecord {
        time: "2026-01-01T00:00:00Z",
        partner: "p",
        list: "alpha",
        version: 2,
        reference: "A-1",
        kind: "pdq",
        distance: 3,
        suppressed_by: None,
    };

    #[test]
    fn appends_lines_and_rotates_by_size() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let log = AuditLog::start(path.clone(), 300).unwrap();
        let r = SAMPLE;
        for _ in 0..3 {
            log.record(&[r]).unwrap().wait().unwrap();
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let first: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
        assert_eq!(first["ref"], "A-1");
        assert_eq!(first["distance"], 3);
        // ~120 bytes a line: the third write rotates.
        assert!(dir.path().join("audit.jsonl.1").exists());
        assert_eq!(text.lines().count(), 1);
    }

    #[test]
    fn a_slow_file_does_not_block_the_caller() {
        // A FIFO nobody reads yet: opening it for writing blocks until a reader comes. The
        // caller hands the lines over and goes on; they are written once the reader opens.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.fifo");
        let made = std::process::Command::new("mkfifo").arg(&path).status();
        if !made.is_ok_and(|s| s.success()) {
            eprintln!("skipped: mkfifo is not available");
            return;
        }
        let log = AuditLog::start(path.clone(), 1 << 20).unwrap();
        let r = SAMPLE;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let pending = log.record(&[r]);
            let _ = tx.send(());
            pending.map(Pending::wait)
        });
        rx.recv_timeout(std::time::Duration::from_secs(5))
            .expect("record() blocked on a file that cannot be opened yet");
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains(r#""ref":"A-1""#), "{text}");
    }
}

//! `hashsieve hash`: hash files locally, print NDJSON in input order.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc;

use anyhow::Context as _;
use rayon::prelude::*;

use super::{HashArgs, Outcome};
use crate::hashing::{HashOptions, Worker};
use crate::kinds::HashKind;

pub(crate) fn run(args: HashArgs) -> anyhow::Result<Outcome> {
    if args.dihedral && !args.kinds.contains(&HashKind::Pdq) {
        anyhow::bail!("--dihedral needs pdq among --kinds");
    }
    if let Some(kind) = args.kinds.iter().find(|k| !HashKind::FILE.contains(k)) {
        anyhow::bail!(
            "{kind} is not a hash of a file: `hashsieve url expressions URL...` hashes URLs"
        );
    }
    let mut kinds = args.kinds;
    kinds.sort();
    kinds.dedup();
    let options = HashOptions {
        kinds,
        dihedral: args.dihedral,
        max_pixels: args.max_pixels,
        seconds_per_hash: args.seconds_per_hash,
        max_video_seconds: args.max_video_seconds,
    };
    if !(args.seconds_per_hash >= 0.0 && args.seconds_per_hash.is_finite()) {
        anyhow::bail!("--seconds-per-hash must be 0 or more");
    }
    if args.vpdq_format == super::VpdqFormat::Reference {
        return reference_format(&args.paths, &options);
    }
    let (files, missing) = collect_files(&args.paths);
    let progress = if std::io::stderr().is_terminal() {
        indicatif::ProgressBar::new(files.len() as u64)
    } else {
        indicatif::ProgressBar::hidden()
    };
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut failed = 0usize;
    // Files are hashed in parallel and printed in input order: workers send (index, record)
    // and this thread holds early arrivals until their turn.
    let (tx, rx) = mpsc::channel();
    let write_result: anyhow::Result<()> = std::thread::scope(|scope| {
        let files = &files;
        let options = &options;
        scope.spawn(move || {
            files
                .par_iter()
                .enumerate()
                .for_each_init(Worker::new, |worker, (i, path)| {
                    // The receiver only goes away when writing failed; nothing to do then.
                    let _ = tx.send((i, worker.hash_file(path, options)));
                });
        });
        let mut pending = BTreeMap::new();
        let mut next = 0usize;
        for (i, record) in rx {
            pending.insert(i, record);
            while let Some(record) = pending.remove(&next) {
                if record.error.is_some() {
                    failed += 1;
                }
                serde_json::to_writer(&mut out, &record)?;
                out.write_all(b"\n")?;
                next += 1;
                progress.inc(1);
            }
        }
        out.flush()?;
        Ok(())
    });
    progress.finish_and_clear();
    write_result.context("writing to standard output")?;
    if failed > 0 {
        eprintln!(
            "hashsieve: {failed} of {} files could not be fully hashed (see their \"error\" field)",
            files.len()
        );
    }
    Ok(Outcome::of(missing > 0, failed > 0))
}

/// `--vpdq-format reference`: one video's frames as Meta's text lines.
fn reference_format(paths: &[PathBuf], options: &HashOptions) -> anyhow::Result<Outcome> {
    let [path] = paths else {
        anyhow::bail!("--vpdq-format reference writes one video's lines: give one PATH");
    };
    let record = Worker::new().hash_file(path, options);
    if let Some(error) = &record.error {
        anyhow::bail!("{}: {error}", path.display());
    }
    let Some(frames) = &record.vpdq else {
        anyhow::bail!("{}: not a video", path.display());
    };
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    for f in frames {
        writeln!(
            out,
            "{},{},{},{:.3}",
            f.frame, f.quality, f.pdq, f.timestamp
        )?;
    }
    out.flush()?;
    Ok(Outcome::Ok)
}

/// Expands the PATH arguments into files: directories recursively, sorted by name, so the
/// output order is stable. Paths that cannot be read are reported on stderr and counted.
pub(crate) fn collect_files(paths: &[PathBuf]) -> (Vec<PathBuf>, usize) {
    let mut files = Vec::new();
    let mut missing = 0;
    for path in paths {
        match std::fs::metadata(path) {
            Ok(meta) if meta.is_dir() => {
                for entry in walkdir::WalkDir::new(path).sort_by_file_name() {
                    match entry {
                        Ok(entry) if is_file(entry.path(), entry.file_type()) => {
                            files.push(entry.into_path());
                        }
                        Ok(_) => {}
                        Err(e) => {
                            eprintln!("hashsieve: {}: {e}", e.path().unwrap_or(path).display());
                            missing += 1;
                        }
                    }
                }
            }
            Ok(_) => files.push(path.clone()),
            Err(e) => {
                eprintln!("hashsieve: {}: {e}", path.display());
                missing += 1;
            }
        }
    }
    (files, missing)
}

/// Regular files, and symlinks that lead to one (without descending into linked directories,
/// which could loop).
fn is_file(path: &Path, file_type: std::fs::FileType) -> bool {
    file_type.is_file()
        || (file_type.is_symlink() && std::fs::metadata(path).is_ok_and(|m| m.is_file()))
}

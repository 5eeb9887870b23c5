//! The `hashsieve` command line. Raw flags are parsed by clap, validated once, and handed to
//! the library; errors are printed with their chain and mapped to the contract's exit codes:
//! 0 = ok / no match, 1 = verification failed or a match / a file that could not be hashed,
//! 2 = usage or I/O error.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::mpsc;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use rayon::prelude::*;

use crate::hashing::{HashOptions, Worker, decode::DEFAULT_MAX_PIXELS};
use crate::kinds::HashKind;

/// Match content against vetted hash lists by hash alone.
#[derive(Debug, Parser)]
#[command(name = "hashsieve", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Hash files and directories locally; prints one NDJSON record per file.
    ///
    /// Directories are walked recursively in a stable (sorted) order. A file that cannot be
    /// decoded as an image still gets its cryptographic hashes and an "error" field; the run
    /// continues and exits 1 at the end.
    Hash(HashArgs),
}

#[derive(Debug, clap::Args)]
struct HashArgs {
    /// Comma-separated hash kinds to compute.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "md5,sha1,sha256,blake3,pdq,phash,dhash,ahash"
    )]
    kinds: Vec<HashKind>,
    /// Also print the eight dihedral PDQ hashes (original, rot90ccw, rot180, rot90cw, flipud,
    /// fliplr, transpose, antitranspose) as "pdq_dihedral".
    #[arg(long)]
    dihedral: bool,
    /// Refuse images with more pixels than this, before decoding (decompression bombs).
    #[arg(long, value_name = "N", default_value_t = DEFAULT_MAX_PIXELS)]
    max_pixels: u64,
    /// Files or directories to hash.
    #[arg(required = true, value_name = "PATH")]
    paths: Vec<PathBuf>,
}

/// Outcome of a command that ran to the end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Ok,
    /// Something the command reports as a finding (a match, a failed verification, a file
    /// that could not be hashed).
    Finding,
    /// The command ran but some input could not be read (exit 2).
    IoTrouble,
}

/// Entry point used by `main.rs`.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    let result = match cli.command {
        Command::Hash(args) => run_hash(args),
    };
    match result {
        Ok(Outcome::Ok) => ExitCode::SUCCESS,
        Ok(Outcome::Finding) => ExitCode::from(1),
        Ok(Outcome::IoTrouble) => ExitCode::from(2),
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hashsieve: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

fn run_hash(args: HashArgs) -> anyhow::Result<Outcome> {
    if args.dihedral && !args.kinds.contains(&HashKind::Pdq) {
        anyhow::bail!("--dihedral needs pdq among --kinds");
    }
    let mut kinds = args.kinds;
    kinds.sort();
    kinds.dedup();
    let options = HashOptions {
        kinds,
        dihedral: args.dihedral,
        max_pixels: args.max_pixels,
    };
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
    Ok(if missing > 0 {
        Outcome::IoTrouble
    } else if failed > 0 {
        Outcome::Finding
    } else {
        Outcome::Ok
    })
}

/// Expands the PATH arguments into files: directories recursively, sorted by name, so the
/// output order is stable. Paths that cannot be read are reported on stderr and counted.
fn collect_files(paths: &[PathBuf]) -> (Vec<PathBuf>, usize) {
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
                            eprintln!("hashsieve: {}: {e}", describe(e.path().unwrap_or(path)));
                            missing += 1;
                        }
                    }
                }
            }
            Ok(_) => files.push(path.clone()),
            Err(e) => {
                eprintln!("hashsieve: {}: {e}", describe(path));
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

fn describe(path: &Path) -> String {
    path.display().to_string()
}

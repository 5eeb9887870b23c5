//! The `hashsieve` command line. Raw flags are parsed by clap, validated once, and handed to
//! the library; errors are printed with their chain and mapped to the contract's exit codes:
//! 0 = ok / no match, 1 = verification failed or a match / a file that could not be hashed,
//! 2 = usage or I/O error.

mod hash;
mod hashset;
mod matching;
mod publish;
mod serve;
mod url;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::hashing::decode::DEFAULT_MAX_PIXELS;
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
    /// Create a minisign key pair for signing hash sets.
    Keygen(hashset::KeygenArgs),
    /// Build, sign, verify, inspect, diff and apply hash sets.
    #[command(subcommand)]
    Hashset(hashset::HashsetCommand),
    /// Match hashes against signed hash sets offline: one NDJSON verdict per query, in input
    /// order. Exit 0 no match, 1 some match (or a set refused), 2 usage or input error.
    Match(matching::MatchArgs),
    /// URL lists: expressions and their hashes, checking URLs, and Squid's ACL helper.
    #[command(subcommand)]
    Url(url::UrlCommand),
    /// Run the match service (HTTP API) on the configured lists; with no --config, the
    /// bundled example lists on 127.0.0.1:8080 as an unauthenticated local demo.
    Serve(serve::ServeArgs),
    /// Hash files and directories locally; prints one NDJSON record per file.
    ///
    /// Directories are walked recursively in a stable (sorted) order. A file that cannot be
    /// decoded as an image still gets its cryptographic hashes and an "error" field; the run
    /// continues and exits 1 at the end.
    Hash(HashArgs),
}

#[derive(Debug, clap::Args)]
pub(crate) struct HashArgs {
    /// Comma-separated hash kinds to compute.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "md5,sha1,sha256,blake3,pdq,phash,dhash,ahash"
    )]
    pub(crate) kinds: Vec<HashKind>,
    /// Also print the eight dihedral PDQ hashes (original, rot90ccw, rot180, rot90cw, flipud,
    /// fliplr, transpose, antitranspose) as "pdq_dihedral".
    #[arg(long)]
    pub(crate) dihedral: bool,
    /// Refuse images with more pixels than this, before decoding (decompression bombs).
    #[arg(long, value_name = "N", default_value_t = DEFAULT_MAX_PIXELS)]
    pub(crate) max_pixels: u64,
    /// Videos: hash one frame per this many seconds of frames (0: every frame), as vPDQ does.
    #[arg(long, value_name = "F", default_value_t = 1.0)]
    pub(crate) seconds_per_hash: f64,
    /// Refuse videos longer than this many seconds, before decoding.
    #[arg(long, value_name = "S", default_value_t = crate::hashing::DEFAULT_MAX_VIDEO_SECONDS)]
    pub(crate) max_video_seconds: f64,
    /// `ndjson` (the default record) or `reference`: Meta's vPDQ text lines
    /// `frameNumber,quality,pdqHex,timestamp` for one video.
    #[arg(long, value_enum, default_value = "ndjson")]
    pub(crate) vpdq_format: VpdqFormat,
    /// Files or directories to hash.
    #[arg(required = true, value_name = "PATH")]
    pub(crate) paths: Vec<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum VpdqFormat {
    Ndjson,
    Reference,
}

impl Outcome {
    /// Unreadable input outranks findings, which outrank a clean run.
    pub(crate) fn of(io_trouble: bool, finding: bool) -> Outcome {
        if io_trouble {
            Outcome::IoTrouble
        } else if finding {
            Outcome::Finding
        } else {
            Outcome::Ok
        }
    }
}

/// Outcome of a command that ran to the end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
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
        Command::Hash(args) => hash::run(args),
        Command::Keygen(args) => hashset::keygen(args),
        Command::Hashset(cmd) => hashset::run(cmd),
        Command::Match(args) => matching::run(args),
        Command::Serve(args) => serve::run(args),
        Command::Url(cmd) => url::run(cmd),
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

//! `hashsieve match --hashset SET... --public-key KEY [--stats] [INPUT|-]`: offline matching
//! against verified sets, no server; and `hashsieve match --server URL [--api-key-env VAR]
//! PATH...`: hash files locally and ask a hashsieve service, sending only the hashes. A video
//! (a hash record with `vpdq` frames) also gets one verdict for the video as a whole.

use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context as _, anyhow, bail};
use serde::Serialize;

use super::Outcome;
use crate::index::query::{parse_input, parse_line};
use crate::index::vpdq::Frame;
use crate::index::{Decision, Index, MatchOptions, Query, store};
use crate::wire::{QueryEcho, VerdictName, VerdictOut, VideoEcho, VideoVerdictOut};

#[derive(Debug, clap::Args)]
pub(crate) struct MatchArgs {
    /// A signed hash set to match against (repeatable); each is verified first.
    #[arg(
        long = "hashset",
        value_name = "SET",
        required_unless_present = "server",
        conflicts_with = "server"
    )]
    hashsets: Vec<PathBuf>,
    /// The public key the sets must be signed with (repeat during a key rotation).
    #[arg(
        long = "public-key",
        value_name = "FILE",
        required_unless_present = "server",
        conflicts_with = "server"
    )]
    public_keys: Vec<PathBuf>,
    /// How many distinct --public-key keys must have signed each set (k of n).
    #[arg(long, value_name = "K", default_value_t = 1, conflicts_with = "server")]
    threshold: usize,
    /// Refuse sets larger than this many bytes (as `hashset verify --max-bytes`).
    #[arg(long, value_name = "N", default_value_t = crate::hashset::trust::DEFAULT_MAX_BYTES, conflicts_with = "server")]
    max_bytes: u64,
    /// Print {"entries","build_s","queries","query_s","qps"} to stderr after the run.
    #[arg(long, conflicts_with = "server")]
    stats: bool,
    /// With --stats: match the whole input this many times and report the median run (as
    /// the peers' benchmark times its own, `docs/benchmarks.md`), with every run's rate in
    /// "runs"; verdicts are written once. Holds every query in memory.
    #[arg(long, value_name = "N", default_value_t = 1, requires = "stats",
          value_parser = clap::value_parser!(u32).range(1..=100))]
    repeat: u32,
    /// Keep built indexes in DIR (created if missing) and memory-map them on the next run
    /// instead of rebuilding; each is checked against its own digest and the set.
    #[arg(long = "index-dir", value_name = "DIR", conflicts_with = "server")]
    index_dir: Option<PathBuf>,
    /// Ask the hashsieve service at URL instead: hash the PATHs (files, directories) here and
    /// send only their hashes. Prints {"path","query","verdict","matches"} per hash, and per
    /// video file one line for the video (its frames sent to /v1/match/video).
    #[arg(long, value_name = "URL")]
    server: Option<String>,
    /// The environment variable holding the partner's API key (with --server).
    #[arg(
        long = "api-key-env",
        value_name = "VAR",
        default_value = "HASHSIEVE_API_KEY"
    )]
    api_key_env: String,
    /// With --server: also trust the certificate authorities in this PEM file (a service
    /// whose certificate a private CA issued).
    #[arg(long = "ca-cert", value_name = "PEM", requires = "server")]
    ca_cert: Option<PathBuf>,
    /// Hashes per request (with --server; at most the server's limits.max_batch).
    #[arg(long, value_name = "N", default_value_t = 1000)]
    batch: usize,
    /// Offline: the queries, `kind:hex[:quality]` lines or `hashsieve hash` NDJSON (`-` or
    /// nothing for stdin). With --server: the files and directories to hash.
    #[arg(value_name = "INPUT|PATH")]
    inputs: Vec<PathBuf>,
}

/// Queries are read and matched this many at a time, so memory stays flat on any input size
/// (~9 MB of queries; verdicts are held only for queries that are not a plain miss), in
/// batches large enough for the perceptual searches to sort their reads and share them out
/// over the threads (`docs/index-design.md`, "Exact kinds": "Batches of one kind").
const BATCH: usize = 262_144;

/// A batch of exact queries only is matched at this size: lookups take nanoseconds, and most
/// of their time is the first read of each query, which is then still in the L2 cache where
/// the parser left it (a full batch of 9 MB is not).
const EXACT_BATCH: usize = 4_096;

pub(crate) fn run(args: MatchArgs) -> anyhow::Result<Outcome> {
    if let Some(url) = &args.server {
        return run_server(url, &args);
    }
    if args.inputs.len() > 1 {
        bail!(
            "offline matching reads one INPUT (or stdin); to hash files, use --server or hashsieve hash"
        );
    }
    let keys = args
        .public_keys
        .iter()
        .map(|p| super::hashset::load_public_key(p))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut policy = super::hashset::threshold_policy(keys, args.threshold)?;
    policy.max_bytes = args.max_bytes;
    let started = Instant::now();
    let sets = match super::hashset::verify_full_sets(&args.hashsets, &policy)? {
        Ok(sets) => sets,
        Err(refusal) => {
            eprintln!("hashsieve: refused: {refusal}");
            return Ok(Outcome::Finding);
        }
    };
    let index = match &args.index_dir {
        None => Index::build(sets).context("building the index")?,
        Some(dir) => {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("{}: cannot create", dir.display()))?;
            let mut lists = Vec::with_capacity(sets.len());
            for set in sets {
                let name = store::file_name(&set);
                let (list, problem) =
                    store::open_or_build(set, dir).context("building the index")?;
                if let Some(problem) = problem {
                    eprintln!(
                        "hashsieve: {}: {problem}; rebuilt it",
                        dir.join(name).display()
                    );
                }
                lists.push(Arc::new(list));
            }
            Index::from_lists(lists)
        }
    };
    let build_s = started.elapsed().as_secs_f64();

    let (name, reader): (String, Box<dyn BufRead>) = match args.inputs.first() {
        None => ("<stdin>".into(), Box::new(std::io::stdin().lock())),
        Some(p) if p.as_os_str() == "-" => ("<stdin>".into(), Box::new(std::io::stdin().lock())),
        Some(p) => (
            p.display().to_string(),
            Box::new(std::io::BufReader::new(
                std::fs::File::open(p).with_context(|| format!("{}: cannot read", p.display()))?,
            )),
        ),
    };
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut batch: Vec<Query> = Vec::with_capacity(BATCH);
    // Whether the batch so far holds a perceptual query (then it waits for `BATCH`).
    let mut perceptual = false;
    let (mut queries, mut matched, mut bad_lines) = (0usize, 0usize, 0usize);
    let mut query_s = 0.0f64;
    let (mut videos, mut video_s, mut video_matched) = (0usize, 0.0f64, false);
    // With --repeat, what the first run matched, in order, to be matched again.
    let mut kept: Vec<Matched> = Vec::new();
    let keep = args.repeat > 1;
    let mut flush = |batch: &mut Vec<Query>,
                     out: &mut dyn Write,
                     kept: &mut Vec<Matched>|
     -> anyhow::Result<()> {
        let t = Instant::now();
        let verdicts = index.match_batch(batch, &MatchOptions::ALL).verdicts;
        query_s += t.elapsed().as_secs_f64();
        for (q, v) in batch.iter().zip(verdicts.iter()) {
            matched += usize::from(v.verdict == Decision::Match);
            serde_json::to_writer(&mut *out, &VerdictOut::new(v, Some(q), Some))?;
            out.write_all(b"\n")?;
        }
        queries += batch.len();
        if keep && !batch.is_empty() {
            kept.push(Matched::Hashes(batch.clone()));
        }
        batch.clear();
        Ok(())
    };
    for (i, line) in reader.lines().enumerate() {
        let line = line.with_context(|| format!("{name}: cannot read"))?;
        match parse_input(&line) {
            Ok(input) => {
                perceptual |= input.queries.iter().any(|q| q.hash.kind().is_perceptual());
                batch.extend(input.queries);
                if let Some(frames) = input.video {
                    // In input order: the queries before it first, then the video's verdict.
                    flush(&mut batch, &mut out, &mut kept)?;
                    perceptual = false;
                    let t = Instant::now();
                    let answer = index.match_video(&frames, &MatchOptions::ALL);
                    video_s += t.elapsed().as_secs_f64();
                    videos += 1;
                    video_matched |= answer.decision() == Decision::Match;
                    let verdict = VideoVerdictOut::new(&answer, Some(frames.len()), Some);
                    serde_json::to_writer(&mut out, &verdict)?;
                    out.write_all(b"\n")?;
                    if keep {
                        kept.push(Matched::Video(frames));
                    }
                }
            }
            Err(e) => {
                bad_lines += 1;
                eprintln!("hashsieve: {name}:{}: {e}", i + 1);
            }
        }
        if batch.len() >= BATCH || (batch.len() >= EXACT_BATCH && !perceptual) {
            flush(&mut batch, &mut out, &mut kept)?;
            perceptual = false;
        }
    }
    flush(&mut batch, &mut out, &mut kept)?;
    let (queries, query_s, matched) = (
        queries + videos,
        query_s + video_s,
        matched + usize::from(video_matched),
    );
    out.flush()?;
    if args.stats {
        let mut runs = vec![query_s];
        for _ in 1..args.repeat {
            let t = Instant::now();
            for what in &kept {
                match what {
                    Matched::Hashes(batch) => drop(index.match_batch(batch, &MatchOptions::ALL)),
                    Matched::Video(frames) => drop(index.match_video(frames, &MatchOptions::ALL)),
                }
            }
            runs.push(t.elapsed().as_secs_f64());
        }
        let rate = |s: f64| if s > 0.0 { queries as f64 / s } else { 0.0 };
        let mut sorted = runs.clone();
        sorted.sort_by(f64::total_cmp);
        let median = sorted[sorted.len() / 2];
        let mut stats = serde_json::json!({
            "entries": index.entries(),
            "build_s": build_s,
            "queries": queries,
            "query_s": median,
            "qps": rate(median),
        });
        if args.repeat > 1 {
            stats["runs"] = runs.iter().map(|&s| rate(s)).collect();
        }
        eprintln!("{stats}");
    }
    Ok(Outcome::of(bad_lines > 0, matched > 0))
}

/// What one step of an offline run matched, kept for `--repeat`.
enum Matched {
    Hashes(Vec<Query>),
    Video(Vec<Frame>),
}

/// One line of `--server` output: the file a hash came from, and the server's verdict.
#[derive(Serialize)]
struct FileVerdict<'a> {
    path: std::borrow::Cow<'a, str>,
    #[serde(flatten)]
    verdict: VerdictOut<'static>,
}

/// A `--server` line for a video file: its path and the server's video verdict.
#[derive(Serialize)]
struct FileVideoVerdict<'a> {
    path: std::borrow::Cow<'a, str>,
    #[serde(flatten)]
    verdict: VideoVerdictOut<'static>,
}

/// The frames of a hashed video, as `hashsieve hash` records them.
fn record_frames(record: &crate::hashing::FileRecord) -> anyhow::Result<Option<Vec<Frame>>> {
    let Some(frames) = &record.vpdq else {
        return Ok(None);
    };
    let frames = frames
        .iter()
        .map(|f| {
            Frame::parse(&f.pdq, f.quality)
                .map_err(|e| anyhow!("{}: frame {}: {e}", record.path, f.frame))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok(Some(frames))
}

/// `--server` mode: hash the paths in parallel, send the hashes in batches, print one line per
/// hash in file order. Exit 2 for unreadable paths or a server error, else 1 if anything
/// matched, else 0.
fn run_server(url: &str, args: &MatchArgs) -> anyhow::Result<Outcome> {
    use rayon::prelude::*;

    if args.inputs.is_empty() {
        bail!("--server needs at least one PATH to hash");
    }
    if args.batch == 0 {
        bail!("--batch must be at least 1");
    }
    let key = std::env::var(&args.api_key_env)
        .ok()
        .filter(|k| !k.trim().is_empty());
    let client = crate::client::Client::new(url, key, args.ca_cert.as_deref())?;
    let (files, missing) = super::hash::collect_files(&args.inputs);
    let options = crate::hashing::HashOptions::default();
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let (mut matched, mut failed) = (false, 0usize);
    let mut video_matched = false;
    let mut pending: Vec<(usize, Query)> = Vec::new();
    let mut send = |pending: &mut Vec<(usize, Query)>, out: &mut dyn Write| -> anyhow::Result<()> {
        if pending.is_empty() {
            return Ok(());
        }
        let queries: Vec<Query> = pending.iter().map(|(_, q)| *q).collect();
        let answer = client.match_batch(&queries)?;
        for ((file, q), mut verdict) in pending.iter().zip(answer.results) {
            matched |= verdict.verdict == VerdictName::Match;
            verdict.query = Some(QueryEcho::of(q));
            let line = FileVerdict {
                path: files[*file].to_string_lossy(),
                verdict,
            };
            serde_json::to_writer(&mut *out, &line)?;
            out.write_all(b"\n")?;
        }
        pending.clear();
        Ok(())
    };
    // Hash a few files per core at a time, so output starts early and memory stays flat.
    let chunk = 8 * rayon::current_num_threads();
    for (c, paths) in files.chunks(chunk).enumerate() {
        let records: Vec<_> = paths
            .par_iter()
            .map_init(crate::hashing::Worker::new, |w, p| w.hash_file(p, &options))
            .collect();
        for (i, record) in records.iter().enumerate() {
            if let Some(error) = &record.error {
                eprintln!("hashsieve: {}: {error}", record.path);
                failed += 1;
            }
            let line = serde_json::to_string(record)?;
            let queries = parse_line(&line).map_err(|e| anyhow!("{}: {e}", record.path))?;
            pending.extend(queries.into_iter().map(|q| (c * chunk + i, q)));
            while pending.len() >= args.batch {
                let rest = pending.split_off(args.batch);
                send(&mut pending, &mut out)?;
                pending = rest;
            }
            if let Some(frames) = record_frames(record)? {
                // The file's digests first, then its video verdict, in file order.
                while !pending.is_empty() {
                    let rest = pending.split_off(args.batch.min(pending.len()));
                    send(&mut pending, &mut out)?;
                    pending = rest;
                }
                let answer = client.match_video(&frames)?;
                let mut verdict = answer.verdict;
                video_matched |= verdict.verdict == VerdictName::Match;
                verdict.query = Some(VideoEcho {
                    kind: std::borrow::Cow::Borrowed(crate::kinds::HashKind::Vpdq.name()),
                    frames: frames.len(),
                });
                let line = FileVideoVerdict {
                    path: files[c * chunk + i].to_string_lossy(),
                    verdict,
                };
                serde_json::to_writer(&mut out, &line)?;
                out.write_all(b"\n")?;
            }
        }
    }
    while !pending.is_empty() {
        let rest = pending.split_off(args.batch.min(pending.len()));
        send(&mut pending, &mut out)?;
        pending = rest;
    }
    out.flush()?;
    Ok(Outcome::of(
        missing > 0 || failed > 0,
        matched || video_matched,
    ))
}

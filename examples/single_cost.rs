//! What a single-hash GET costs the index, without HTTP: each query of a file matched alone
//! (`Index::match_batch` on a batch of one, near misses sampled as the server does by
//! default), on one or more threads. `scripts/service_path.sh` runs it beside the server to
//! compare the HTTP rate with the index's own.
//!
//! ```sh
//! cargo run --release --example single_cost -- SET.hset KEY.pub QUERIES [THREADS]
//! ```
//!
//! QUERIES holds one `kind:hex` per line (the form `hashsieve match` reads). Prints one line
//! per round: queries, seconds, queries per second.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context as _, anyhow, bail};
use hashsieve::hashset::signing::{Published, parse_public_key};
use hashsieve::hashset::trust::{self, Policy};
use hashsieve::index::query::parse_line;
use hashsieve::index::{Index, MatchOptions, NearMiss, Query};

/// The server's default near-miss sampling (`limits.near_miss_bits`, `near_miss_sample`).
const NEAR: MatchOptions<'static> = MatchOptions {
    lists: None,
    near_miss: NearMiss {
        bits: 16,
        every: 128,
    },
};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [set, key, queries, rest @ ..] = args.as_slice() else {
        bail!("usage: single_cost SET.hset KEY.pub QUERIES [THREADS]");
    };
    let threads: usize = match rest.first() {
        Some(t) => t
            .parse()
            .with_context(|| format!("{t}: not a thread count"))?,
        None => 1,
    };
    let index = load_index(Path::new(set), Path::new(key))?;
    let text =
        std::fs::read_to_string(queries).with_context(|| format!("{queries}: cannot read"))?;
    let mut qs: Vec<Query> = Vec::new();
    for (i, line) in text.lines().enumerate() {
        qs.extend(parse_line(line).map_err(|e| anyhow!("{queries}:{}: {e}", i + 1))?);
    }
    if qs.is_empty() {
        bail!("{queries}: no queries");
    }
    let part = qs.len().div_ceil(threads.max(1));
    for round in 1..=3 {
        let started = Instant::now();
        let matched: usize = std::thread::scope(|s| {
            let workers: Vec<_> = qs
                .chunks(part)
                .map(|chunk| {
                    let index = &index;
                    s.spawn(move || {
                        chunk
                            .iter()
                            .map(|q| {
                                let answers = index.match_batch(std::slice::from_ref(q), &NEAR);
                                answers.verdicts.decided().len()
                            })
                            .sum::<usize>()
                    })
                })
                .collect();
            workers.into_iter().map(|w| w.join().unwrap_or(0)).sum()
        });
        let secs = started.elapsed().as_secs_f64();
        println!(
            "round {round}: {} queries ({matched} decided) on {threads} thread(s) in {secs:.3} s: {:.0} q/s",
            qs.len(),
            qs.len() as f64 / secs
        );
    }
    Ok(())
}

/// The set, verified with its key, indexed.
fn load_index(set_path: &Path, key_path: &Path) -> anyhow::Result<Index> {
    let key = std::fs::read_to_string(key_path)
        .with_context(|| format!("{}: cannot read", key_path.display()))?;
    let key = parse_public_key(&key).map_err(|e| anyhow!("{}: {e}", key_path.display()))?;
    let mut policy = Policy::new(vec![key]);
    policy.max_bytes = 1 << 40;
    let set = match trust::verify_path(set_path, &policy, None) {
        Ok(Published::Set(set)) => set,
        Ok(Published::Delta(_)) => bail!("{}: a delta, not a set", set_path.display()),
        Err(refusal) => bail!("{}: refused: {refusal:#}", set_path.display()),
    };
    Index::build(vec![Arc::new(set)]).context("building the index")
}

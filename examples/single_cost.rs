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
use std::time::Instant;

use anyhow::{Context as _, anyhow, bail};
use hashsieve::index::Query;
use hashsieve::index::query::parse_line;

mod common;

/// As the binary: large blocks on transparent huge pages (`src/hugepages.rs`), so that the
/// index measured here sits in memory as the server's does.
#[global_allocator]
static ALLOCATOR: hashsieve::hugepages::HugePageAdvice = hashsieve::hugepages::HugePageAdvice;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [set, key, queries, rest @ ..] = args.as_slice() else {
        bail!("usage: single_cost SET.hset KEY.pub QUERIES [THREADS]");
    };
    let threads: usize = match rest.first() {
        Some(t) => t
            .parse()
            .ok()
            .filter(|&n| n > 0)
            .ok_or_else(|| anyhow!("THREADS: {t:?} is not a thread count (1 or more)"))?,
        None => 1,
    };
    let index = common::load_index(Path::new(set), Path::new(key))?;
    let text =
        std::fs::read_to_string(queries).with_context(|| format!("{queries}: cannot read"))?;
    let mut qs: Vec<Query> = Vec::new();
    for (i, line) in text.lines().enumerate() {
        qs.extend(parse_line(line).map_err(|e| anyhow!("{queries}:{}: {e}", i + 1))?);
    }
    if qs.is_empty() {
        bail!("{queries}: no queries");
    }
    let part = qs.len().div_ceil(threads);
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
                                let answers =
                                    index.match_batch(std::slice::from_ref(q), &common::NEAR);
                                answers.verdicts.decided().len()
                            })
                            .sum::<usize>()
                    })
                })
                .collect();
            workers
                .into_iter()
                .map(|w| w.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
                .sum()
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

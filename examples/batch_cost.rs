//! What a `POST /v1/match` batch costs the index, without HTTP: the load test's request
//! bodies (`scripts/load_test.sh` writes them) run through `Index::match_batch` on this
//! thread, near misses sampled as the server does by default. Prints, per round, the mixed
//! batch's time, then the time of each kind's queries of every batch searched one kind after
//! another (what the mix costs each kind, its neighbours' tables in between), and the same
//! kind's queries alone (every batch's queries of that kind only, so its tables stay warm).
//!
//! ```sh
//! scripts/load_test.sh 200000 10      # once: the set, the key and the bodies in /tmp/hashsieve-load
//! RAYON_NUM_THREADS=1 cargo run --release --example batch_cost -- /tmp/hashsieve-load
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow, bail};
use hashsieve::index::Query;
use hashsieve::kinds::{HashKind, HashValue};

mod common;

/// As the binary: large blocks on transparent huge pages (`src/hugepages.rs`), so that the
/// index measured here sits in memory as the server's does.
#[global_allocator]
static ALLOCATOR: hashsieve::hugepages::HugePageAdvice = hashsieve::hugepages::HugePageAdvice;

/// Each timing covers this many passes over the bodies.
const PASSES: usize = 4;

fn main() -> anyhow::Result<()> {
    let work: PathBuf = std::env::args_os()
        .nth(1)
        .map(PathBuf::from)
        .ok_or_else(|| anyhow!("usage: batch_cost WORK_DIR (from scripts/load_test.sh)"))?;
    let index = common::load_index(
        &work.join("published/load/load-1.hset"),
        &work.join("load.pub"),
    )?;
    let batches = read_bodies(&work.join("bodies"))?;
    let queries: usize = batches.iter().map(Vec::len).sum();
    let per_batch = |d: Duration| d.as_secs_f64() * 1e6 / (PASSES * batches.len()) as f64;
    for round in 1..=3 {
        let mixed = time(|| {
            for b in &batches {
                index.match_batch(b, &common::NEAR);
            }
        });
        let mut in_mix: BTreeMap<&str, Duration> = BTreeMap::new();
        let by_kind: Vec<Vec<(HashKind, Vec<Query>)>> = batches.iter().map(|b| split(b)).collect();
        for _ in 0..PASSES {
            for kinds in &by_kind {
                for (kind, qs) in kinds {
                    let t = Instant::now();
                    index.match_batch(qs, &common::NEAR);
                    *in_mix.entry(kind.name()).or_default() += t.elapsed();
                }
            }
        }
        let mut alone: BTreeMap<&str, Duration> = BTreeMap::new();
        for kind in HashKind::ALL {
            let own: Vec<&Vec<Query>> = by_kind
                .iter()
                .flat_map(|kinds| kinds.iter().filter(|(k, _)| *k == kind).map(|(_, q)| q))
                .collect();
            if own.is_empty() {
                continue;
            }
            let d = time(|| {
                for qs in &own {
                    index.match_batch(qs, &common::NEAR);
                }
            });
            alone.insert(kind.name(), d);
        }
        println!(
            "round {round}: mixed {:.0} us per batch ({:.0} hashes/s)",
            per_batch(mixed),
            (PASSES * queries) as f64 / mixed.as_secs_f64()
        );
        for (kind, d) in &in_mix {
            println!(
                "  {kind:<7} {:>7.1} us per batch in the mix, {:>7.1} alone",
                per_batch(*d),
                per_batch(alone.get(kind).copied().unwrap_or_default())
            );
        }
    }
    Ok(())
}

/// `PASSES` runs of `f`, timed together.
fn time(mut f: impl FnMut()) -> Duration {
    let t = Instant::now();
    for _ in 0..PASSES {
        f();
    }
    t.elapsed()
}

/// The batch's queries by kind, kinds in the order the index searches them.
fn split(batch: &[Query]) -> Vec<(HashKind, Vec<Query>)> {
    HashKind::ALL
        .into_iter()
        .map(|k| {
            (
                k,
                batch
                    .iter()
                    .copied()
                    .filter(|q| q.hash.kind() == k)
                    .collect(),
            )
        })
        .filter(|(_, qs): &(HashKind, Vec<Query>)| !qs.is_empty())
        .collect()
}

/// Every `*.json` request body in `dir` as queries.
fn read_bodies(dir: &Path) -> anyhow::Result<Vec<Vec<Query>>> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("{}: cannot list", dir.display()))?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()
        .with_context(|| format!("{}: cannot list", dir.display()))?;
    paths.retain(|p| p.extension().is_some_and(|e| e == "json"));
    paths.sort();
    if paths.is_empty() {
        bail!(
            "{}: no request bodies (run scripts/load_test.sh first)",
            dir.display()
        );
    }
    paths.iter().map(|p| read_body(p)).collect()
}

fn read_body(path: &Path) -> anyhow::Result<Vec<Query>> {
    #[derive(serde::Deserialize)]
    struct Body {
        queries: Vec<One>,
    }
    #[derive(serde::Deserialize)]
    struct One {
        kind: String,
        hash: String,
    }
    let bytes = std::fs::read(path).with_context(|| format!("{}: cannot read", path.display()))?;
    let body: Body = serde_json::from_slice(&bytes)
        .with_context(|| format!("{}: not a match request", path.display()))?;
    body.queries
        .iter()
        .enumerate()
        .map(|(i, q)| {
            let kind: HashKind = q
                .kind
                .parse()
                .map_err(|e| anyhow!("{}: queries[{i}].kind: {e}", path.display()))?;
            let hash = HashValue::parse(kind, &q.hash)
                .map_err(|e| anyhow!("{}: queries[{i}].hash: {e}", path.display()))?;
            Ok(Query {
                hash,
                quality: None,
            })
        })
        .collect()
}

//! What the near-miss check costs a PDQ index against a search at the threshold: N random
//! 256-bit codes indexed for distance 31 (as `hashset build` lays them out), 400 random
//! queries, then per query `HammingIndex::any_within` at 31 + 16 (the server's default
//! near-miss radius, asked for one sampled query in 128) and `HammingIndex::search` at 31.
//! Random queries have no code within either radius, so both read every probe.
//!
//! ```sh
//! cargo run --release --example near_miss_cost -- 200000     # also 1000000, 10000000
//! ```

use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};
use std::time::Instant;

use anyhow::{Context as _, anyhow};
use hashsieve::index::hamming::HammingIndex;

/// As the binary: large blocks on transparent huge pages (`src/hugepages.rs`), so that the
/// index measured here sits in memory as the server's does.
#[global_allocator]
static ALLOCATOR: hashsieve::hugepages::HugePageAdvice = hashsieve::hugepages::HugePageAdvice;

const QUERIES: usize = 400;

fn main() -> anyhow::Result<()> {
    let n: usize = std::env::args()
        .nth(1)
        .ok_or_else(|| anyhow!("usage: near_miss_cost CODES (e.g. 200000)"))?
        .parse()
        .context("CODES must be a whole number")?;
    // Reproducible codes: the same list every run.
    let mut rng = SmallRng::seed_from_u64(0x9e37_79b9_7f4a_7c15);
    let codes: Vec<u8> = (0..n * 32).map(|_| rng.random::<u8>()).collect();
    let started = Instant::now();
    let index = HammingIndex::new(256, &codes, 31)?;
    println!(
        "{n} codes indexed in {:.2} s, {} MB of tables and sketches",
        started.elapsed().as_secs_f64(),
        index.memory_bytes() >> 20
    );
    let queries: Vec<u8> = (0..QUERIES * 32).map(|_| rng.random::<u8>()).collect();
    let per_query = |f: &dyn Fn(&[u8]) -> usize| {
        let started = Instant::now();
        let found: usize = queries.chunks_exact(32).map(f).sum();
        (
            started.elapsed().as_secs_f64() * 1e6 / QUERIES as f64,
            found,
        )
    };
    for round in 1..=3 {
        let (near, near_found) = per_query(&|q| usize::from(index.any_within(q, 31 + 16)));
        let (search, found) = per_query(&|q| index.search(q, 31).len());
        println!(
            "round {round}: any_within(47) {near:.1} us/query ({near_found} found), \
             search(31) {search:.1} us/query ({found} found)"
        );
    }
    Ok(())
}

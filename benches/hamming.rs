//! Hamming range search over uniform random codes, against a brute-force scan: PDQ (256 bits,
//! distance <= 31) at 100 k, 200 k (the load test's lists) and 1 M codes, 64-bit codes (pHash/dHash/aHash, distance <= 8) at
//! 200 k and 1 M. Set HASHSIEVE_BENCH_10M=1 to add PDQ at 10 M. Batches of 1 000 queries, 1%
//! planted within the threshold, as in ../shared/peers.
//!
//! The index is laid out for the threshold (`HammingIndex::tuned_width`); to compare other
//! chunk widths, list them: `HASHSIEVE_BENCH_WIDTHS=13,16 cargo bench --bench hamming`.
//!
//! Run: `cargo bench --bench hamming`.

use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};
use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use hashsieve::index::column::Column;
use hashsieve::index::hamming::HammingIndex;
use hashsieve::kinds::hamming_bytes;

/// As the binary: large blocks on transparent huge pages (`src/hugepages.rs`).
#[global_allocator]
static ALLOCATOR: hashsieve::hugepages::HugePageAdvice = hashsieve::hugepages::HugePageAdvice;

fn random_bytes(n: usize, seed: u64) -> Vec<u8> {
    let mut rng = SmallRng::seed_from_u64(seed);
    (0..n).map(|_| rng.random::<u8>()).collect()
}

fn bench_hamming(c: &mut Criterion) {
    let full = std::env::args().any(|a| a == "--bench");
    let mut cases: Vec<(usize, u32, usize)> = if full {
        vec![
            (256, 31, 100_000),
            (256, 31, 200_000),
            (256, 31, 1_000_000),
            (64, 8, 200_000),
            (64, 8, 1_000_000),
        ]
    } else {
        vec![(256, 31, 5_000), (64, 8, 5_000)]
    };
    if full && std::env::var_os("HASHSIEVE_BENCH_10M").is_some() {
        cases.push((256, 31, 10_000_000));
    }
    let extra_widths: Vec<u32> = std::env::var("HASHSIEVE_BENCH_WIDTHS")
        .ok()
        .map(|s| s.split(',').filter_map(|w| w.trim().parse().ok()).collect())
        .unwrap_or_default();
    const BATCH: usize = 1_000;
    for (bits, t, n) in cases {
        let bytes = bits / 8;
        let codes = random_bytes(n * bytes, n as u64 + bits as u64);
        let mut queries = random_bytes(BATCH * bytes, 99);
        // 1% of queries are planted within the threshold of an indexed code.
        for (qi, q) in queries
            .chunks_exact_mut(bytes)
            .enumerate()
            .filter(|(i, _)| i % 100 == 0)
        {
            let target = (qi * 7919) % n;
            q.copy_from_slice(&codes[target * bytes..(target + 1) * bytes]);
            for b in 0..(t as usize * 2 / 3) {
                q[b % bytes] ^= 1 << (b / bytes);
            }
        }
        let tuned = HammingIndex::tuned_widths(n, bits, t).expect("widths");
        let rows: Vec<u32> = (0..n as u32).collect();
        let mut group = c.benchmark_group(format!("hamming{bits}_t{t}_{n}"));
        group.throughput(Throughput::Elements(BATCH as u64));
        group.sample_size(10);
        let others = extra_widths
            .iter()
            .map(|&w| HammingIndex::even_widths(bits, w));
        for widths in std::iter::once(tuned.clone()).chain(others) {
            let start = std::time::Instant::now();
            let column = Column::Owned(codes.clone());
            let Ok(index) = HammingIndex::over_rows(bits, column, &rows, &widths) else {
                eprintln!("widths {widths:?} are out of range for {bits}-bit codes");
                continue;
            };
            eprintln!(
                "{bits}-bit n={n} widths {widths:?}: built in {:.2} s, {:.1} bytes/code",
                start.elapsed().as_secs_f64(),
                index.memory_bytes() as f64 / n as f64
            );
            let name = if widths == tuned {
                "mih_tuned".to_string()
            } else {
                format!("mih_w{}", widths[0])
            };
            group.bench_function(&name, |b| {
                b.iter(|| {
                    queries
                        .chunks_exact(bytes)
                        .map(|q| index.search(black_box(q), t).len())
                        .sum::<usize>()
                })
            });
            group.bench_function(format!("{name}_batch"), |b| {
                b.iter(|| {
                    let mut found = 0usize;
                    index.search_batch(black_box(&queries), t, |_, _, _| found += 1);
                    found
                })
            });
        }
        if n <= 1_000_000 {
            group.bench_function("brute_force", |b| {
                b.iter(|| {
                    queries
                        .chunks_exact(bytes)
                        .map(|q| {
                            codes
                                .chunks_exact(bytes)
                                .filter(|c| hamming_bytes(c, black_box(q)) <= t)
                                .count()
                        })
                        .sum::<usize>()
                })
            });
        }
        group.finish();
    }
}

criterion_group!(benches, bench_hamming);
criterion_main!(benches);

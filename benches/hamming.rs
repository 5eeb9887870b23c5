//! PDQ range search (distance <= 31) over uniform random codes, against a brute-force scan.
//! 100 k and 1 M codes; set HASHSIEVE_BENCH_10M=1 to add 10 M. Batches of 1 000 queries,
//! 1% planted within the threshold, as in ../shared/peers.
//!
//! Run: `cargo bench --bench hamming`.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use hashsieve::index::hamming::HammingIndex;
use hashsieve::kinds::hamming_bytes;

fn random_bytes(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 32) as u8
        })
        .collect()
}

fn bench_hamming(c: &mut Criterion) {
    let full = std::env::args().any(|a| a == "--bench");
    let mut sizes = if full {
        vec![100_000, 1_000_000]
    } else {
        vec![5_000]
    };
    if full && std::env::var_os("HASHSIEVE_BENCH_10M").is_some() {
        sizes.push(10_000_000);
    }
    const BATCH: usize = 1_000;
    for n in sizes {
        let codes = random_bytes(n * 32, n as u64);
        let mut queries = random_bytes(BATCH * 32, 99);
        // 1% of queries are planted within distance 20 of an indexed code.
        for (qi, q) in queries
            .chunks_exact_mut(32)
            .enumerate()
            .filter(|(i, _)| i % 100 == 0)
        {
            let target = (qi * 7919) % n;
            q.copy_from_slice(&codes[target * 32..(target + 1) * 32]);
            for (b, byte) in q.iter_mut().enumerate().take(20) {
                *byte ^= 1 << (b % 8);
            }
        }
        let start = std::time::Instant::now();
        let index = HammingIndex::new(256, &codes).expect("index");
        eprintln!(
            "n={n}: built in {:.2} s, {} chunks, {:.1} bytes/code",
            start.elapsed().as_secs_f64(),
            index.chunk_count(),
            index.memory_bytes() as f64 / n as f64
        );
        let mut group = c.benchmark_group(format!("pdq_t31_{n}"));
        group.throughput(Throughput::Elements(BATCH as u64));
        group.sample_size(10);
        group.bench_function("mih", |b| {
            b.iter(|| {
                queries
                    .chunks_exact(32)
                    .map(|q| index.search(black_box(q), 31).len())
                    .sum::<usize>()
            })
        });
        if n <= 1_000_000 {
            group.bench_function("brute_force", |b| {
                b.iter(|| {
                    queries
                        .chunks_exact(32)
                        .map(|q| {
                            codes
                                .chunks_exact(32)
                                .filter(|c| hamming_bytes(c, black_box(q)) <= 31)
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

//! Exact lookups of random digests: which key structure to use.
//!
//! Compares, for 16-, 20- and 32-byte random keys (MD5, SHA-1, SHA-256/BLAKE3), on hits and on
//! misses (the common case): our `ExactTable` (sorted keys + radix directory), the same behind
//! the `ExactFilter` blocked Bloom prefilter, `fst::Map`, and `std::collections::HashMap`.
//! Memory per key is printed once per size. 1 M keys; set HASHSIEVE_BENCH_10M=1 for 10 M.
//!
//! Run: `cargo bench --bench lookup`.

use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};
use std::collections::HashMap;
use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use std::sync::Arc;

use hashsieve::hashset::format::{EntryTable, HashSetFile, Header};
use hashsieve::index::exact::{ExactFilter, ExactTable};
use hashsieve::index::{Index, MatchOptions, Query};
use hashsieve::kinds::{HashKind, HashValue};

/// As the binary: large blocks on transparent huge pages (`src/hugepages.rs`).
#[global_allocator]
static ALLOCATOR: hashsieve::hugepages::HugePageAdvice = hashsieve::hugepages::HugePageAdvice;

fn random_keys(n: usize, len: usize, seed: u64) -> Vec<Vec<u8>> {
    let mut rng = SmallRng::seed_from_u64(seed);
    (0..n)
        .map(|_| (0..len).map(|_| rng.random::<u8>()).collect())
        .collect()
}

fn bench_lookup(c: &mut Criterion) {
    let full = std::env::args().any(|a| a == "--bench");
    let n = match (full, std::env::var_os("HASHSIEVE_BENCH_10M").is_some()) {
        (false, _) => 10_000,
        (true, false) => 1_000_000,
        (true, true) => 10_000_000,
    };
    const BATCH: usize = 1_000;
    for len in [16usize, 20, 32] {
        let mut keys = random_keys(n, len, len as u64);
        keys.sort();
        keys.dedup();
        let hits: Vec<Vec<u8>> = keys
            .iter()
            .step_by(keys.len() / BATCH)
            .take(BATCH)
            .cloned()
            .collect();
        let misses = random_keys(BATCH, len, 0xdead_beef);

        let table = ExactTable::new(len, keys.concat()).expect("sorted keys");
        let filter = ExactFilter::new(&table);
        let fst_map = fst::Map::from_iter(
            keys.iter()
                .enumerate()
                .map(|(i, k)| (k.as_slice(), i as u64)),
        )
        .expect("fst");
        let hash_map: HashMap<Vec<u8>, u32> = keys
            .iter()
            .enumerate()
            .map(|(i, k)| (k.clone(), i as u32))
            .collect();
        let per_key = |bytes: usize| bytes as f64 / keys.len() as f64;
        eprintln!(
            "{len}-byte keys, n={}: bytes/key: table {:.1} (+ filter {:.2}), fst {:.1}, HashMap ~{:.1} (capacity {} x (key {} + heap Vec {} + u32))",
            keys.len(),
            per_key(table.memory_bytes()),
            per_key(filter.memory_bytes()),
            per_key(fst_map.as_fst().as_bytes().len()),
            per_key(hash_map.capacity() * (24 + 4 + 1) + keys.len() * len),
            hash_map.capacity(),
            len,
            24
        );

        let mut group = c.benchmark_group(format!("lookup_{len}B_{n}"));
        group.throughput(Throughput::Elements(BATCH as u64));
        for (path, queries) in [("hit", &hits), ("miss", &misses)] {
            group.bench_with_input(BenchmarkId::new("sorted_radix", path), queries, |b, q| {
                b.iter(|| {
                    q.iter()
                        .filter(|k| !table.lookup(black_box(k)).is_empty())
                        .count()
                })
            });
            group.bench_with_input(
                BenchmarkId::new("bloom_filter+sorted_radix", path),
                queries,
                |b, q| {
                    b.iter(|| {
                        q.iter()
                            .filter(|k| {
                                filter.may_contain(black_box(k)) && !table.lookup(k).is_empty()
                            })
                            .count()
                    })
                },
            );
            group.bench_with_input(BenchmarkId::new("fst_map", path), queries, |b, q| {
                b.iter(|| {
                    q.iter()
                        .filter(|k| fst_map.get(black_box(k)).is_some())
                        .count()
                })
            });
            group.bench_with_input(BenchmarkId::new("std_hashmap", path), queries, |b, q| {
                b.iter(|| {
                    q.iter()
                        .filter(|k| hash_map.contains_key(black_box(k.as_slice())))
                        .count()
                })
            });
        }
        if len == 32 {
            // The whole Index path: filter, table, verdicts.
            let mut t = EntryTable::new();
            for (i, k) in keys.iter().enumerate() {
                t.push(
                    HashValue::from_bytes(HashKind::Sha256, k).expect("32 bytes"),
                    "",
                    &i.to_string(),
                )
                .expect("push");
            }
            let header = Header {
                name: "bench".into(),
                version: 1,
                created: 0,
                expires: 1,
                description: String::new(),
                thresholds: vec![],
                severity: Vec::new(),
                video_share: Default::default(),
            };
            let set = HashSetFile::parse(t.to_set_bytes(&header).expect("build").0).expect("parse");
            let index = Index::build(vec![Arc::new(set)]).expect("index");
            for (path, queries) in [("hit", &hits), ("miss", &misses)] {
                let qs: Vec<Query> = queries
                    .iter()
                    .map(|k| Query {
                        hash: HashValue::from_bytes(HashKind::Sha256, k).expect("32 bytes"),
                        quality: None,
                    })
                    .collect();
                group.bench_with_input(BenchmarkId::new("index_match_batch", path), &qs, |b, q| {
                    b.iter(|| index.match_batch(black_box(q), &MatchOptions::ALL))
                });
                group.bench_with_input(
                    BenchmarkId::new("index_match_one_loop", path),
                    &qs,
                    |b, q| {
                        b.iter(|| {
                            q.iter()
                                .map(|q| index.match_one(black_box(q)))
                                .collect::<Vec<_>>()
                        })
                    },
                );
            }
            group.finish();
            // Distinct queries, as a partner's traffic is: as many queries as keys, 1% members,
            // in the CLI's batches of 65 536. Nothing stays in cache between queries.
            let mut distinct = random_keys(keys.len(), len, 0x5eed);
            for (i, d) in distinct.iter_mut().enumerate().step_by(100) {
                d.clone_from(&keys[(i * 7919) % keys.len()]);
            }
            let qs: Vec<Query> = distinct
                .iter()
                .map(|k| Query {
                    hash: HashValue::from_bytes(HashKind::Sha256, k).expect("32 bytes"),
                    quality: None,
                })
                .collect();
            let mut distinct_group = c.benchmark_group(format!("match_distinct_{len}B_{n}"));
            distinct_group.throughput(Throughput::Elements(qs.len() as u64));
            distinct_group.sample_size(10);
            distinct_group.bench_function("index_match_batch_65536", |b| {
                b.iter(|| {
                    qs.chunks(65_536)
                        .map(|c| {
                            index
                                .match_batch(black_box(c), &MatchOptions::ALL)
                                .verdicts
                                .len()
                        })
                        .sum::<usize>()
                })
            });
            distinct_group.finish();
        } else {
            group.finish();
        }
    }
}

criterion_group!(benches, bench_lookup);
criterion_main!(benches);

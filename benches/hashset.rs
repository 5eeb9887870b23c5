//! Hash-set build, sign and verify at 1 M synthetic PDQ entries (the 10 M case is a documented
//! command in the README, too big for a benchmark loop).
//!
//! Run: `cargo bench --bench hashset`; CI runs it once in test mode (with 10 k entries, so the
//! test suite stays fast) via `cargo test --all-targets`.

use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};
use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use hashsieve::hashset::format::{EntryTable, HashSetFile, Header};
use hashsieve::hashset::signing::{Published, check_comment, check_signature, sign};
use hashsieve::kinds::{HashKind, HashValue};

fn synthetic_hashes(n: usize) -> Vec<HashValue> {
    let mut rng = SmallRng::seed_from_u64(0x9e37_79b9_7f4a_7c15);
    (0..n)
        .map(|_| {
            let bytes: [u8; 32] = rng.random();
            HashValue::from_bytes(HashKind::Pdq, &bytes).expect("32 bytes")
        })
        .collect()
}

fn header() -> Header {
    Header {
        name: "synthetic".into(),
        version: 1,
        created: 1_800_000_000,
        expires: 1_900_000_000,
        description: "synthetic benchmark list".into(),
        thresholds: vec![],
        severity: Vec::new(),
        video_share: Default::default(),
    }
}

fn build(hashes: &[HashValue]) -> Vec<u8> {
    let mut table = EntryTable::new();
    for (i, h) in hashes.iter().enumerate() {
        table.push(*h, "synthetic", &i.to_string()).expect("push");
    }
    table.to_set_bytes(&header()).expect("build").0
}

fn bench_hashset(c: &mut Criterion) {
    // Criterion's test mode (cargo test --all-targets) runs each benchmark once: keep it small.
    let n = if std::env::args().any(|a| a == "--bench") {
        1_000_000
    } else {
        10_000
    };
    let hashes = synthetic_hashes(n);
    let bytes = build(&hashes);
    let key = minisign::KeyPair::generate_unencrypted_keypair().expect("key");
    let published = Published::parse(bytes.clone()).expect("parse");
    let signature = sign(&published, &key.sk).expect("sign");
    let mut group = c.benchmark_group(format!("hashset_{n}"));
    group.sample_size(10);
    group.throughput(Throughput::Elements(n as u64));
    group.bench_function("build", |b| b.iter(|| build(black_box(&hashes))));
    group.bench_function("parse_and_check", |b| {
        b.iter(|| HashSetFile::parse(black_box(bytes.clone())).expect("parse"))
    });
    group.bench_function("sign", |b| {
        b.iter(|| sign(black_box(&published), &key.sk).expect("sign"))
    });
    group.bench_function("verify_signature_and_parse", |b| {
        b.iter(|| {
            let comment =
                check_signature(&bytes, &signature, std::slice::from_ref(&key.pk)).expect("sig");
            let p = Published::parse(bytes.clone()).expect("parse");
            check_comment(&comment, &p).expect("comment");
            p
        })
    });
    group.finish();
}

criterion_group!(benches, bench_hashset);
criterion_main!(benches);

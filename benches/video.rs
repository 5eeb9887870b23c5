//! Video: one query video matched against a list of videos by share of frames, through the
//! index the service uses (`Index::match_video`), one thread; and, with the `video` feature,
//! hashing Meta's sample video as `hashsieve hash` does.
//!
//! The list is synthetic: videos of 30 shots × 10 frames, a shot's frames a few bits from its
//! own random centre (frames of one shot look alike, as in real video), so that a query frame
//! meets several listed frames of its shot. Full size (`cargo bench --bench video`): 10 000
//! videos × 300 frames = 3 M frames, queries of 600 frames (ten minutes, one a second);
//! under `cargo bench -- --test` a small list. The build time and memory are printed once.
//!
//! Run: `cargo bench --bench video` (add `--features video` for the hashing group).

use std::hint::black_box;
use std::sync::Arc;
use std::time::Instant;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};

use hashsieve::hashset::format::{EntryTable, HashSetFile, Header};
use hashsieve::index::vpdq::{
    DEFAULT_COMPARED_PERCENT, DEFAULT_QUERY_PERCENT, Frame, frames_that_count, share,
};
use hashsieve::index::{Index, MatchOptions};
use hashsieve::kinds::{HashKind, HashValue};

const SHOTS: usize = 30;
const FRAMES_PER_SHOT: usize = 10;

/// As the binary: large blocks on transparent huge pages (`src/hugepages.rs`).
#[global_allocator]
static ALLOCATOR: hashsieve::hugepages::HugePageAdvice = hashsieve::hugepages::HugePageAdvice;

fn random_hash(rng: &mut SmallRng) -> [u8; 32] {
    let mut h = [0u8; 32];
    rng.fill(&mut h[..]);
    h
}

/// `h` with `bits` random bits flipped (some may coincide).
fn near(rng: &mut SmallRng, mut h: [u8; 32], bits: usize) -> [u8; 32] {
    for _ in 0..bits {
        let bit = rng.random_range(0..256usize);
        h[bit / 8] ^= 1 << (bit % 8);
    }
    h
}

/// One video's frames: shots of similar frames.
fn video(rng: &mut SmallRng) -> Vec<[u8; 32]> {
    let mut frames = Vec::with_capacity(SHOTS * FRAMES_PER_SHOT);
    for _ in 0..SHOTS {
        let centre = random_hash(rng);
        for _ in 0..FRAMES_PER_SHOT {
            frames.push(near(rng, centre, 6));
        }
    }
    frames
}

fn bench_match(c: &mut Criterion) {
    let full = std::env::args().any(|a| a == "--bench");
    let videos = if full { 10_000 } else { 100 };
    let mut rng = SmallRng::seed_from_u64(16);
    let listed: Vec<Vec<[u8; 32]>> = (0..videos).map(|_| video(&mut rng)).collect();
    let mut table = EntryTable::new();
    for (v, frames) in listed.iter().enumerate() {
        let reference = format!("video-{v}");
        for f in frames {
            table
                .push(HashValue::vpdq(f, 90), "A", &reference)
                .expect("push");
        }
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
    let set = HashSetFile::parse(table.to_set_bytes(&header).expect("build").0).expect("parse");
    let frames = set.counts().into_iter().find(|(k, _)| *k == HashKind::Vpdq);
    let started = Instant::now();
    let index = Index::build(vec![Arc::new(set)]).expect("index");
    eprintln!(
        "video index: {} videos, {:?} frames, built in {:.2} s",
        videos,
        frames.map(|f| f.1),
        started.elapsed().as_secs_f64()
    );

    // A listed video re-encoded (every frame a few bits off) and played twice as long
    // (two query frames per listed one): it matches. And an unrelated video: the common case.
    let source = &listed[videos / 2];
    let copy: Vec<Frame> = (0..600)
        .map(|i| Frame {
            pdq: near(&mut rng, source[i / 2], 8),
            quality: 90,
        })
        .collect();
    let unrelated: Vec<Frame> = (0..600)
        .map(|_| Frame {
            pdq: random_hash(&mut rng),
            quality: 90,
        })
        .collect();
    let answer = index.match_video(&copy, &MatchOptions::ALL);
    assert_eq!(answer.matches.len(), 1, "the copy matches its video");
    assert!(
        index
            .match_video(&unrelated, &MatchOptions::ALL)
            .matches
            .is_empty()
    );
    // The definition, brute force (every query frame against every listed frame), once, for
    // scale: what a matcher without an index does.
    let counted = frames_that_count(&copy);
    let started = Instant::now();
    let found = listed
        .iter()
        .filter(|frames| {
            share(&counted, frames, 31).matches(DEFAULT_QUERY_PERCENT, DEFAULT_COMPARED_PERCENT)
        })
        .count();
    eprintln!(
        "brute force, the copy: {found} match in {:.2} s",
        started.elapsed().as_secs_f64()
    );
    let mut group = c.benchmark_group(format!("match_video_{}x300", videos));
    group.sample_size(20);
    group.throughput(Throughput::Elements(1));
    for (name, query) in [("copy_600", &copy), ("unrelated_600", &unrelated)] {
        group.bench_function(name, |b| {
            b.iter(|| index.match_video(black_box(query), &MatchOptions::ALL))
        });
    }
    group.finish();
}

#[cfg(feature = "video")]
fn bench_hash(c: &mut Criterion) {
    use hashsieve::hashing::pdq::PdqHasher;
    use hashsieve::hashing::video::{VideoOptions, hash_video};
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/video/videos/chair-orig-22-sd-bar.mp4");
    if !path.exists() {
        eprintln!("SKIPPED video hashing: {} is missing", path.display());
        return;
    }
    let mut group = c.benchmark_group("hash_video_chair_orig_22");
    group.sample_size(10);
    let mut pdq = PdqHasher::new();
    for (name, seconds_per_hash) in [("every_frame", 0.0), ("one_a_second", 1.0)] {
        let options = VideoOptions {
            seconds_per_hash,
            max_seconds: 3600.0,
            max_pixels: hashsieve::hashing::decode::DEFAULT_MAX_PIXELS,
        };
        group.bench_function(name, |b| {
            b.iter(|| hash_video(black_box(&path), &options, &mut pdq).expect("hash"))
        });
    }
    group.finish();
}

#[cfg(not(feature = "video"))]
fn bench_hash(_: &mut Criterion) {
    eprintln!("video hashing: build with --features video");
}

criterion_group!(benches, bench_match, bench_hash);
criterion_main!(benches);

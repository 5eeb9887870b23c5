//! Client-side hashing speed: JPEG decode and PDQ separately at two sizes, the 64-bit hashes,
//! and digest throughput. Pictures are generated here (benign gradients and shapes), encoded
//! to JPEG in memory.
//!
//! Run: `cargo bench --bench hashing`; CI runs each once with `cargo bench -- --test`.

use std::hint::black_box;
use std::io::Cursor;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use hashsieve::hashing::decode::{DEFAULT_MAX_PIXELS, decode_bytes};
use hashsieve::hashing::imagehash;
use hashsieve::hashing::pdq::PdqHasher;
use md5::Digest as _;

/// A smooth synthetic photo-like picture (sky gradient, a disc, stripes).
fn picture(width: u32, height: u32) -> image::RgbImage {
    image::RgbImage::from_fn(width, height, |x, y| {
        let (fx, fy) = (x as f32 / width as f32, y as f32 / height as f32);
        let disc = ((fx - 0.6).powi(2) + (fy - 0.4).powi(2)).sqrt() < 0.2;
        let stripe = ((fx * 40.0).sin() * 20.0) as i32;
        let base = if disc {
            [230, 180, 40]
        } else {
            [(60.0 + 120.0 * fy) as i32, (100.0 + 80.0 * fx) as i32, 200]
        };
        image::Rgb(base.map(|c| (c + stripe).clamp(0, 255) as u8))
    })
}

fn jpeg_bytes(img: &image::RgbImage) -> Vec<u8> {
    let mut out = Cursor::new(Vec::new());
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 90)
        .encode_image(img)
        .expect("encode");
    out.into_inner()
}

fn bench_pdq(c: &mut Criterion) {
    for (w, h) in [(1024u32, 768u32), (4000, 3000)] {
        let jpeg = jpeg_bytes(&picture(w, h));
        let decoded = decode_bytes(&jpeg, DEFAULT_MAX_PIXELS).expect("decode");
        let mut group = c.benchmark_group(format!("image_{w}x{h}"));
        group.sample_size(20);
        group.throughput(Throughput::Elements(1));
        group.bench_function("jpeg_decode", |b| {
            b.iter(|| decode_bytes(black_box(&jpeg), DEFAULT_MAX_PIXELS).expect("decode"))
        });
        let mut hasher = PdqHasher::new();
        group.bench_function("pdq", |b| {
            b.iter(|| {
                hasher.hash_rgb(
                    black_box(&decoded.data),
                    decoded.width,
                    decoded.height,
                    false,
                )
            })
        });
        group.bench_function("pdq_dihedral", |b| {
            b.iter(|| {
                hasher.hash_rgb(
                    black_box(&decoded.data),
                    decoded.width,
                    decoded.height,
                    true,
                )
            })
        });
        let grey = decoded.to_luma8();
        group.bench_function("ahash_dhash_phash", |b| {
            b.iter(|| {
                imagehash::hash_grey(
                    black_box(&grey),
                    decoded.width,
                    decoded.height,
                    imagehash::Wanted {
                        ahash: true,
                        dhash: true,
                        phash: true,
                    },
                )
            })
        });
        group.finish();
    }
}

fn bench_digests(c: &mut Criterion) {
    let data: Vec<u8> = (0..16u32 << 20)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let mut group = c.benchmark_group("digest_16MiB");
    group.sample_size(10);
    group.throughput(Throughput::Bytes(data.len() as u64));
    group.bench_function("blake3", |b| b.iter(|| blake3::hash(black_box(&data))));
    group.bench_function("sha256", |b| {
        b.iter(|| sha2::Sha256::digest(black_box(&data)))
    });
    group.bench_function("sha1", |b| b.iter(|| sha1::Sha1::digest(black_box(&data))));
    group.bench_function("md5", |b| b.iter(|| md5::Md5::digest(black_box(&data))));
    group.finish();
}

criterion_group!(benches, bench_pdq, bench_digests);
criterion_main!(benches);

//! Measures the JPEG decoder candidates for PDQ agreement and speed.
//!
//! For every JPEG listed in an `expected.tsv` (the conformance format), decodes it with
//! libjpeg-turbo (the `mozjpeg` crate, what `hashsieve hash` uses) and with the `image` crate's
//! pure-Rust decoder (zune-jpeg), hashes both with our PDQ, and reports how many hashes equal
//! the reference bit for bit, the worst distance, and the total decode time.
//!
//! ```sh
//! cargo run --release --example jpeg_decoders -- ../shared/conformance
//! ```

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use hashsieve::hashing::decode::{DEFAULT_MAX_PIXELS, RgbImage, decode_bytes};
use hashsieve::hashing::pdq::PdqHasher;
use hashsieve::kinds::{HashKind, HashValue};

/// A candidate decoder: JPEG bytes to 8-bit RGB.
type Decoder = fn(&[u8]) -> anyhow::Result<RgbImage>;

#[derive(Default)]
struct Tally {
    exact: usize,
    worst: u32,
    total: usize,
    decode: Duration,
    failures: Vec<String>,
}

fn main() -> anyhow::Result<()> {
    let dir = PathBuf::from(
        std::env::args()
            .nth(1)
            .unwrap_or_else(|| "../shared/conformance".into()),
    );
    let text = std::fs::read_to_string(dir.join("expected.tsv"))?;
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap_or_default().split('\t').collect();
    let col = |name: &str| header.iter().position(|h| *h == name);
    let (file_col, format_col, pdq_col) = (
        col("file").ok_or_else(|| anyhow::anyhow!("no file column"))?,
        col("format").ok_or_else(|| anyhow::anyhow!("no format column"))?,
        col("pdq").ok_or_else(|| anyhow::anyhow!("no pdq column"))?,
    );
    let mut tallies: HashMap<&str, Tally> = HashMap::new();
    let mut hasher = PdqHasher::new();
    for line in lines {
        let fields: Vec<&str> = line.split('\t').collect();
        if fields.get(format_col) != Some(&"JPEG") {
            continue;
        }
        let file = fields[file_col];
        let expected = HashValue::parse(HashKind::Pdq, fields[pdq_col])?;
        let bytes = std::fs::read(dir.join("images").join(file))?;
        let candidates: [(&str, Decoder); 2] = [
            ("libjpeg-turbo (mozjpeg crate)", |b| {
                Ok(decode_bytes(b, DEFAULT_MAX_PIXELS)?)
            }),
            ("image crate (zune-jpeg)", |b| {
                let img = image::load_from_memory_with_format(b, image::ImageFormat::Jpeg)?;
                let rgb = img.to_rgb8();
                Ok(RgbImage {
                    width: rgb.width() as usize,
                    height: rgb.height() as usize,
                    data: rgb.into_raw(),
                })
            }),
        ];
        for (name, decode) in candidates {
            let tally = tallies.entry(name).or_default();
            tally.total += 1;
            let start = Instant::now();
            let image = match decode(&bytes) {
                Ok(image) => image,
                Err(e) => {
                    tally.failures.push(format!("{file}: {e}"));
                    continue;
                }
            };
            tally.decode += start.elapsed();
            let out = hasher.hash_rgb(&image.data, image.width, image.height, false);
            let ours = HashValue::from_bytes(HashKind::Pdq, &out.hash)
                .ok_or_else(|| anyhow::anyhow!("bad hash length"))?;
            let d = ours.hamming(&expected).unwrap_or(u32::MAX);
            tally.exact += usize::from(d == 0);
            tally.worst = tally.worst.max(d);
        }
    }
    println!("| decoder | PDQ equal to reference | worst distance | decode time (all JPEGs) |");
    println!("|---|---:|---:|---:|");
    let mut names: Vec<&&str> = tallies.keys().collect();
    names.sort();
    for name in names {
        let t = &tallies[*name];
        println!(
            "| {name} | {}/{} | {} | {:.0} ms |",
            t.exact,
            t.total,
            t.worst,
            t.decode.as_secs_f64() * 1e3
        );
        for f in &t.failures {
            println!("|   failed: {f} | | | |");
        }
    }
    Ok(())
}

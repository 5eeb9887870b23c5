//! Agreement with the reference implementations (Meta's PDQ via `pdqhash`, Python `imagehash`).
//!
//! Criteria (issue "Foundation", item 3 and 4), applied to any corpus with an `expected.tsv`:
//! - digests equal;
//! - PDQ and each dihedral hash: equal bit for bit on at least 95% of images and on every
//!   lossless image, never more than 8 bits off; quality equal;
//! - aHash / dHash / pHash: within 6 / 8 / 8 bits of `imagehash` on at least 90% of images.
//!
//! Two corpora: the project's own generated fixtures (always present) and
//! ../shared/conformance (present in CI; skipped with a message elsewhere).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::util::{file_name, ndjson, repo, run};

const DIHEDRAL: [&str; 7] = [
    "rot90ccw",
    "rot180",
    "rot90cw",
    "flipud",
    "fliplr",
    "transpose",
    "antitranspose",
];

fn read_tsv(path: &Path) -> Vec<HashMap<String, String>> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().expect("header").split('\t').collect();
    lines
        .map(|l| {
            header
                .iter()
                .zip(l.split('\t'))
                .map(|(h, v)| ((*h).to_owned(), v.to_owned()))
                .collect()
        })
        .collect()
}

fn hamming_hex(a: &str, b: &str) -> u32 {
    assert_eq!(a.len(), b.len(), "{a} vs {b}");
    a.as_bytes()
        .iter()
        .zip(b.as_bytes())
        .map(|(x, y)| {
            let d = |c: u8| (c as char).to_digit(16).expect("hex digit");
            (d(*x) ^ d(*y)).count_ones()
        })
        .sum()
}

fn is_lossless(row: &HashMap<String, String>) -> bool {
    matches!(row["format"].as_str(), "PNG" | "GIF" | "BMP" | "TIFF")
        || row["file"].contains("lossless")
}

/// Checks `hashsieve hash --dihedral` on `images` against `expected`, returns a report line per
/// criterion, panicking with all failures at once.
fn check_corpus(images: &Path, expected: &Path) -> Vec<String> {
    let out = run(&["hash", "--dihedral", images.to_str().expect("utf-8 path")]);
    let records = ndjson(&out.stdout);
    let by_file: HashMap<String, &serde_json::Value> = records
        .iter()
        .map(|r| (file_name(r["path"].as_str().expect("path")), r))
        .collect();
    let rows = read_tsv(expected);
    assert_eq!(records.len(), rows.len(), "one record per image");
    let mut failures = Vec::new();
    let n = rows.len();
    // (name, exact count, worst distance) for PDQ and each dihedral variant.
    let mut pdq_stats: Vec<(String, usize, u32)> = Vec::new();
    let mut near: HashMap<&str, usize> = HashMap::new();
    for (i, column) in std::iter::once("pdq".to_owned())
        .chain(DIHEDRAL.iter().map(|d| format!("pdq_dih_{d}")))
        .enumerate()
    {
        let mut exact = 0;
        let mut worst = 0;
        for row in &rows {
            let file = &row["file"];
            let Some(rec) = by_file.get(file) else {
                failures.push(format!("{file}: no record"));
                continue;
            };
            if let Some(err) = rec.get("error") {
                failures.push(format!("{file}: error {err}"));
                continue;
            }
            let ours = rec["pdq_dihedral"][i].as_str().expect("dihedral hex");
            let d = hamming_hex(ours, &row[&column]);
            if d == 0 {
                exact += 1;
            } else if is_lossless(row) {
                failures.push(format!(
                    "{file}: {column} is {d} bits off on a lossless image"
                ));
            }
            worst = worst.max(d);
        }
        if exact * 100 < n * 95 {
            failures.push(format!("{column}: only {exact}/{n} exact (need 95%)"));
        }
        if worst > 8 {
            failures.push(format!("{column}: worst distance {worst} > 8"));
        }
        pdq_stats.push((column, exact, worst));
    }
    for row in &rows {
        let file = &row["file"];
        let Some(rec) = by_file.get(file) else {
            continue;
        };
        if rec.get("error").is_some() {
            continue;
        }
        assert_eq!(
            rec["pdq"], rec["pdq_dihedral"][0],
            "{file}: dihedral[0] is the hash"
        );
        for kind in ["md5", "sha1", "sha256", "blake3"] {
            if rec[kind].as_str() != Some(row[kind].as_str()) {
                failures.push(format!("{file}: {kind} differs"));
            }
        }
        if rec["bytes"].as_u64().map(|b| b.to_string()).as_deref() != Some(row["bytes"].as_str()) {
            failures.push(format!("{file}: byte count differs"));
        }
        let quality = rec["pdq_quality"].as_u64().expect("quality").to_string();
        if quality != row["pdq_quality"] {
            failures.push(format!(
                "{file}: quality {quality} != {}",
                row["pdq_quality"]
            ));
        }
        for (kind, threshold) in [("ahash", 6), ("dhash", 8), ("phash", 8)] {
            let ours = rec[kind].as_str().expect("64-bit hex");
            if hamming_hex(ours, &row[kind]) <= threshold {
                *near.entry(kind).or_default() += 1;
            }
        }
    }
    let mut report = Vec::new();
    for (column, exact, worst) in &pdq_stats {
        report.push(format!("{column}: {exact}/{n} exact, worst {worst} bits"));
    }
    for kind in ["ahash", "dhash", "phash"] {
        let ok = near.get(kind).copied().unwrap_or(0);
        report.push(format!("{kind}: {ok}/{n} within threshold"));
        if ok * 100 < n * 90 {
            failures.push(format!("{kind}: only {ok}/{n} within threshold (need 90%)"));
        }
    }
    assert!(
        failures.is_empty(),
        "{}: {} failures:\n{}\nsummary:\n{}",
        images.display(),
        failures.len(),
        failures.join("\n"),
        report.join("\n")
    );
    report
}

#[test]
fn own_fixtures_agree_with_reference_tools() {
    let dir = repo().join("tests/fixtures");
    let report = check_corpus(&dir.join("images"), &dir.join("expected.tsv"));
    eprintln!("own fixtures:\n{}", report.join("\n"));
}

/// ../shared/conformance, or `$HASHSIEVE_CONFORMANCE` when set.
fn conformance_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("HASHSIEVE_CONFORMANCE")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("../shared/conformance"));
    let found = dir.join("expected.tsv").is_file();
    // CI sets this so that a missing corpus fails loudly instead of skipping.
    if !found && std::env::var_os("HASHSIEVE_REQUIRE_CONFORMANCE").is_some() {
        panic!(
            "HASHSIEVE_REQUIRE_CONFORMANCE is set but {} has no expected.tsv",
            dir.display()
        );
    }
    found.then_some(dir)
}

#[test]
fn shared_conformance_corpus_agrees_with_reference_tools() {
    let Some(dir) = conformance_dir() else {
        eprintln!(
            "SKIPPED: ../shared/conformance not found (set HASHSIEVE_CONFORMANCE to its path); \
             CI always runs this test"
        );
        return;
    };
    let report = check_corpus(&dir.join("images"), &dir.join("expected.tsv"));
    eprintln!("conformance corpus:\n{}", report.join("\n"));
}

#[test]
fn shared_conformance_variants_agree_with_reference_tools() {
    let Some(dir) = conformance_dir() else {
        eprintln!("SKIPPED: ../shared/conformance not found; CI always runs this test");
        return;
    };
    let out = run(&[
        "hash",
        "--kinds",
        "pdq",
        dir.join("variants").to_str().expect("utf-8"),
    ]);
    let records = ndjson(&out.stdout);
    let rows = read_tsv(&dir.join("variants.tsv"));
    assert_eq!(records.len(), rows.len());
    let mut exact = 0;
    for row in &rows {
        let rec = records
            .iter()
            .find(|r| file_name(r["path"].as_str().unwrap_or_default()) == row["variant_file"])
            .unwrap_or_else(|| panic!("no record for {}", row["variant_file"]));
        let d = hamming_hex(rec["pdq"].as_str().expect("pdq"), &row["pdq_file"]);
        assert!(d <= 8, "{}: {d} bits off", row["variant_file"]);
        assert_eq!(rec["pdq_quality"].to_string(), row["pdq_file_quality"]);
        exact += usize::from(d == 0);
    }
    assert!(
        exact * 100 >= rows.len() * 95,
        "{exact}/{} exact",
        rows.len()
    );
}

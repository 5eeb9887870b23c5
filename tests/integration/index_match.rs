//! The match index against a brute-force oracle (random data, duplicates, clusters, many
//! thresholds), and `hashsieve match` end to end.

use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};
use std::sync::Arc;

use hashsieve::hashset::format::{EntryTable, HashSetFile, Header};
use hashsieve::index::{Decision, Index, MatchOptions, Query};
use hashsieve::kinds::{HashKind, HashValue, hamming_bytes};
use proptest::prelude::*;

use crate::util::{ndjson, repo, run, stderr};

/// Random codes of a kind, with exact duplicates and a tight cluster, as real lists have.
fn codes() -> impl Strategy<Value = (HashKind, Vec<Vec<u8>>, u32, Vec<Vec<u8>>)> {
    (
        prop::sample::select(vec![HashKind::Pdq, HashKind::Phash, HashKind::Ahash]),
        any::<u64>(),
        0u32..=64,
    )
        .prop_map(|(kind, seed, t)| {
            let len = kind.byte_len();
            let mut rng = SmallRng::seed_from_u64(seed);
            let mut next = move || rng.random::<u8>();
            let mut entries: Vec<Vec<u8>> = (0..300)
                .map(|_| (0..len).map(|_| next()).collect())
                .collect();
            // Duplicates (the same hash many times) and a cluster of near-duplicates.
            let base = entries[0].clone();
            for i in 0..40 {
                let mut c = base.clone();
                if i % 2 == 1 {
                    c[i % len] ^= 1 << (i % 8);
                }
                entries.push(c);
            }
            let mut queries: Vec<Vec<u8>> = (0..30)
                .map(|_| (0..len).map(|_| next()).collect())
                .collect();
            for (i, q) in queries.iter_mut().enumerate().take(15) {
                *q = entries[i * 20 % entries.len()].clone();
                for b in 0..(i * 3) {
                    q[(b * 5) % len] ^= 1 << (b % 8);
                }
            }
            (kind, entries, t.min(kind.max_threshold()), queries)
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(40))]

    #[test]
    fn index_equals_brute_force((kind, entries, t, queries) in codes()) {
        let mut table = EntryTable::new();
        for (i, e) in entries.iter().enumerate() {
            table.push(HashValue::from_bytes(kind, e).unwrap(), "", &format!("r{i}")).unwrap();
        }
        let header = Header {
            name: "oracle".into(),
            version: 1,
            created: 0,
            expires: 1,
            description: String::new(),
            thresholds: vec![(kind, t)],
            severity: Vec::new(),
            video_share: Default::default(),
        };
        let set = Arc::new(HashSetFile::parse(table.to_set_bytes(&header).unwrap().0).unwrap());
        let index = Index::build(vec![set]).unwrap();
        let qs: Vec<Query> = queries.iter().map(|q| Query { hash: HashValue::from_bytes(kind, q).unwrap(), quality: None }).collect();
        for (q, v) in queries.iter().zip(index.match_batch(&qs, &MatchOptions::ALL).verdicts.into_vec()) {
            let mut expected: Vec<(u32, String)> = entries
                .iter()
                .enumerate()
                .map(|(i, e)| (hamming_bytes(e, q), format!("r{i}")))
                .filter(|(d, _)| *d <= t)
                .collect();
            expected.sort();
            let got: Vec<(u32, String)> = v.matches.iter().map(|m| (m.distance, m.reference.clone())).collect();
            prop_assert_eq!(&got, &expected, "kind {} t {}", kind, t);
            prop_assert_eq!(v.verdict == Decision::Match, !expected.is_empty());
        }
    }
}

#[test]
fn match_cli_end_to_end_on_the_examples() {
    let ex = repo().join("hashsets-example");
    let images = ex.join("images");
    let hashes = run(&["hash", images.to_str().unwrap()]);
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("queries.ndjson");
    let mut text = String::from_utf8(hashes.stdout).unwrap();
    text.push_str(&format!("md5:{}\n", "0".repeat(32)));
    std::fs::write(&input, &text).unwrap();
    let key = ex.join("example-only.pub");
    let alpha = ex.join("alpha/alpha-1.hset");
    let beta = ex.join("beta/beta-1.hset");
    let out = run(&[
        "match",
        "--hashset",
        alpha.to_str().unwrap(),
        "--hashset",
        beta.to_str().unwrap(),
        "--public-key",
        key.to_str().unwrap(),
        "--stats",
        input.to_str().unwrap(),
    ]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "matches found: {}",
        stderr(&out)
    );
    let verdicts = ndjson(&out.stdout);
    // 6 pictures x 8 kinds, plus the extra md5 line, in input order.
    assert_eq!(verdicts.len(), 49);
    assert_eq!(verdicts[48]["query"]["hash"], "0".repeat(32));
    assert_eq!(verdicts[48]["verdict"], "no_match");
    // sky-disc.jpg is in alpha v1 as A-0001: its md5 and sha256 match exactly.
    let sky: Vec<&serde_json::Value> = verdicts
        .iter()
        .filter(|v| {
            v["matches"]
                .as_array()
                .unwrap()
                .iter()
                .any(|m| m["ref"] == "A-0001" && m["distance"] == 0)
        })
        .collect();
    let kinds: Vec<&str> = sky
        .iter()
        .map(|v| v["query"]["kind"].as_str().unwrap())
        .collect();
    for kind in ["md5", "sha256", "pdq", "phash"] {
        assert!(
            kinds.contains(&kind),
            "{kind} of sky-disc.jpg should match A-0001: {kinds:?}"
        );
    }
    let stats: serde_json::Value =
        serde_json::from_str(stderr(&out).lines().last().unwrap()).unwrap();
    assert_eq!(stats["entries"], 22);
    assert_eq!(stats["queries"], 49);
    for field in ["build_s", "query_s", "qps"] {
        assert!(stats[field].as_f64().unwrap() >= 0.0);
    }
    // --repeat matches the input again for the figures only: the same verdicts, written once,
    // and one rate per run.
    let again = run(&[
        "match",
        "--hashset",
        alpha.to_str().unwrap(),
        "--hashset",
        beta.to_str().unwrap(),
        "--public-key",
        key.to_str().unwrap(),
        "--stats",
        "--repeat",
        "3",
        input.to_str().unwrap(),
    ]);
    assert_eq!(again.status.code(), Some(1), "{}", stderr(&again));
    assert_eq!(ndjson(&again.stdout), verdicts);
    let stats: serde_json::Value =
        serde_json::from_str(stderr(&again).lines().last().unwrap()).unwrap();
    assert_eq!(stats["queries"], 49);
    assert_eq!(stats["runs"].as_array().unwrap().len(), 3);
}

#[test]
fn long_inputs_of_exact_hashes_keep_their_order_across_batches() {
    // All-exact input is matched in small batches, input with a perceptual hash in large
    // ones: verdicts stay in input order across both, and every listed hash is found
    // wherever it falls.
    let ex = repo().join("hashsets-example");
    let key = ex.join("example-only.pub");
    let alpha = ex.join("alpha/alpha-1.hset");
    // alpha-1 lists its entries' md5 and PDQ hashes in the CSV it is built from.
    let csv = std::fs::read_to_string(ex.join("entries/alpha-1.csv")).unwrap();
    let hash_of = |kind: &str| {
        csv.lines()
            .find_map(|l| l.strip_prefix(&format!("{kind},")))
            .and_then(|rest| rest.split(',').next())
            .unwrap()
            .to_owned()
    };
    let (md5, pdq_line) = (hash_of("md5"), format!("pdq:{}", hash_of("pdq")));
    let dir = tempfile::tempdir().unwrap();
    let n = 20_000;
    let hits = [0, 4_095, 4_096, 9_999, n - 1];
    let mut text = String::new();
    for i in 0..n {
        if hits.contains(&i) {
            text.push_str(&format!("md5:{md5}\n"));
        } else if i == 15_000 {
            text.push_str(&format!("{pdq_line}\n"));
        } else {
            text.push_str(&format!("md5:{i:032x}\n"));
        }
    }
    let input = dir.path().join("long.txt");
    std::fs::write(&input, &text).unwrap();
    let out = run(&[
        "match",
        "--hashset",
        alpha.to_str().unwrap(),
        "--public-key",
        key.to_str().unwrap(),
        input.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let verdicts = ndjson(&out.stdout);
    assert_eq!(verdicts.len(), n);
    for (i, v) in verdicts.iter().enumerate() {
        let kind = if i == 15_000 { "pdq" } else { "md5" };
        assert_eq!(v["query"]["kind"], kind, "line {}", i + 1);
        if kind == "md5" {
            let hash = if hits.contains(&i) {
                md5.clone()
            } else {
                format!("{i:032x}")
            };
            assert_eq!(v["query"]["hash"], hash, "line {}", i + 1);
            let expected = if hits.contains(&i) {
                "match"
            } else {
                "no_match"
            };
            assert_eq!(v["verdict"], expected, "line {}", i + 1);
        }
    }
}

#[test]
fn match_refuses_unverified_sets_and_reports_bad_lines() {
    let ex = repo().join("hashsets-example");
    let dir = tempfile::tempdir().unwrap();
    let other = dir.path().join("other.pub");
    let out = run(&[
        "keygen",
        "--unencrypted",
        "--secret-key",
        dir.path().join("o.sec").to_str().unwrap(),
        "--public-key",
        other.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0));
    let input = dir.path().join("q.txt");
    std::fs::write(&input, format!("md5:{}\nsha512:00\n", "0".repeat(32))).unwrap();
    let alpha = ex.join("alpha/alpha-1.hset");
    let out = run(&[
        "match",
        "--hashset",
        alpha.to_str().unwrap(),
        "--public-key",
        other.to_str().unwrap(),
        input.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("unknown key"), "{}", stderr(&out));
    assert!(
        out.stdout.is_empty(),
        "nothing is matched against a set that failed verification"
    );
    let key = ex.join("example-only.pub");
    let out = run(&[
        "match",
        "--hashset",
        alpha.to_str().unwrap(),
        "--public-key",
        key.to_str().unwrap(),
        input.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("q.txt:2: unknown hash kind \"sha512\""),
        "{}",
        stderr(&out)
    );
    assert_eq!(ndjson(&out.stdout).len(), 1);
}

#[test]
fn match_with_index_dir_saves_reuses_and_rebuilds_damaged_indexes() {
    let ex = repo().join("hashsets-example");
    let dir = tempfile::tempdir().unwrap();
    let idx = dir.path().join("indexes");
    let input = dir.path().join("queries.ndjson");
    let hashes = run(&["hash", ex.join("images").to_str().unwrap()]);
    std::fs::write(&input, &hashes.stdout).unwrap();
    let (alpha, beta, key) = (
        ex.join("alpha/alpha-1.hset"),
        ex.join("beta/beta-1.hset"),
        ex.join("example-only.pub"),
    );
    let args = [
        "match",
        "--index-dir",
        idx.to_str().unwrap(),
        "--hashset",
        alpha.to_str().unwrap(),
        "--hashset",
        beta.to_str().unwrap(),
        "--public-key",
        key.to_str().unwrap(),
        input.to_str().unwrap(),
    ];
    let mut plain: Vec<&str> = args.to_vec();
    plain.drain(1..3);
    let expected = run(&plain);
    assert_eq!(expected.status.code(), Some(1));

    let first = run(&args);
    assert_eq!(first.stdout, expected.stdout, "{}", stderr(&first));
    let mut saved: Vec<_> = std::fs::read_dir(&idx)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    saved.sort();
    let names: Vec<String> = saved
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");
    assert!(names[0].starts_with("alpha-1-") && names[0].ends_with(".hidx"));
    assert!(names[1].starts_with("beta-1-"));

    // Second run maps the saved indexes: same verdicts, nothing said on stderr.
    let second = run(&args);
    assert_eq!(second.stdout, expected.stdout);
    assert!(stderr(&second).is_empty(), "{}", stderr(&second));

    // A damaged index is reported, rebuilt and the answers stay the same.
    let mut bytes = std::fs::read(&saved[0]).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x10;
    std::fs::write(&saved[0], &bytes).unwrap();
    let third = run(&args);
    assert_eq!(third.stdout, expected.stdout);
    assert!(
        stderr(&third).contains("digest does not match its contents")
            && stderr(&third).contains("rebuilt it"),
        "{}",
        stderr(&third)
    );
    assert!(
        stderr(&run(&args)).is_empty(),
        "the rebuilt index was saved"
    );
}

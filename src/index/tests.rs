//! The index against small sets: verdicts, lists and distances, sparse and dense answers,
//! batch and single searches, near misses.

use super::*;
use crate::hashset::format::{EntryTable, Header};

/// One verdict per query, against every list.
fn dense(index: &Index, queries: &[Query]) -> Vec<Verdict> {
    index
        .match_batch(queries, &MatchOptions::ALL)
        .verdicts
        .into_vec()
}

fn near(near_miss: NearMiss) -> MatchOptions<'static> {
    MatchOptions {
        lists: None,
        near_miss,
    }
}

fn set(
    name: &str,
    version: u64,
    entries: &[(HashKind, &str, &str, &str)],
    pdq_t: u32,
) -> Arc<HashSetFile> {
    let mut t = EntryTable::new();
    for &(kind, hex, cat, r) in entries {
        t.push(HashValue::parse(kind, hex).unwrap(), cat, r)
            .unwrap();
    }
    let header = Header {
        name: name.into(),
        version,
        created: 0,
        expires: 1,
        description: String::new(),
        thresholds: vec![(HashKind::Pdq, pdq_t)],
        severity: Vec::new(),
        video_share: Default::default(),
    };
    Arc::new(HashSetFile::parse(t.to_set_bytes(&header).unwrap().0).unwrap())
}

#[test]
fn exact_and_perceptual_matches_with_lists_refs_and_distances() {
    let pdq = "f".repeat(64);
    let pdq_near = format!("{}0", "f".repeat(63)); // 4 bits away
    let md5 = "d41d8cd98f00b204e9800998ecf8427e";
    let a = set(
        "alpha",
        3,
        &[
            (HashKind::Pdq, &pdq, "c1", "A-1"),
            (HashKind::Pdq, &pdq, "c1", "A-2"),
            (HashKind::Md5, md5, "", "A-3"),
        ],
        31,
    );
    let b = set("beta", 7, &[(HashKind::Pdq, &pdq_near, "c2", "B-1")], 3);
    let index = Index::build(vec![a, b]).unwrap();
    assert_eq!(index.entries(), 4);
    let q = |kind, hex: &str, quality| Query {
        hash: HashValue::parse(kind, hex).unwrap(),
        quality,
    };
    let verdicts = dense(
        &index,
        &[
            q(HashKind::Pdq, &pdq, Some(100)),
            q(HashKind::Md5, md5, None),
            q(HashKind::Md5, &"0".repeat(32), None),
            q(HashKind::Pdq, &pdq, Some(20)),
        ],
    );
    let v = &verdicts[0];
    assert_eq!(v.verdict, Decision::Match);
    // Both alpha entries at distance 0; beta's entry is 4 bits away, over its threshold 3.
    let refs: Vec<(&str, u32)> = v
        .matches
        .iter()
        .map(|m| (m.reference.as_str(), m.distance))
        .collect();
    assert_eq!(refs, [("A-1", 0), ("A-2", 0)]);
    assert_eq!((&*v.matches[0].list, v.matches[0].version), ("alpha", 3));
    assert_eq!(verdicts[1].matches.len(), 1);
    assert_eq!(verdicts[1].matches[0].reference, "A-3");
    assert_eq!(verdicts[2].verdict, Decision::NoMatch);
    assert_eq!(verdicts[3].verdict, Decision::LowQuality);
    // The near hash is found in alpha at distance 4, and in beta at 0.
    let near = index.match_one(&q(HashKind::Pdq, &pdq_near, None));
    let found: Vec<(&str, u32)> = near
        .matches
        .iter()
        .map(|m| (&*m.list, m.distance))
        .collect();
    assert_eq!(found, [("beta", 0), ("alpha", 4), ("alpha", 4)]);
    let beta = &near.matches[0];
    assert_eq!(
        (beta.version, beta.kind, &*beta.category, &*beta.reference),
        (7, HashKind::Pdq, "c2", "B-1")
    );
}

#[test]
fn sparse_verdicts_read_as_one_per_query() {
    // Hits, misses and low-quality PDQ queries, in a batch big enough to be split over
    // the pool (parts are appended with their offsets): read back in order, the sparse
    // verdicts are the ones each query gets alone, and only queries that are not a plain
    // miss are held.
    let pdq = "e".repeat(64);
    let md5 = "d41d8cd98f00b204e9800998ecf8427e";
    let a = set(
        "a",
        1,
        &[
            (HashKind::Pdq, &pdq, "", "P"),
            (HashKind::Md5, md5, "", "M"),
        ],
        31,
    );
    let index = Index::build(vec![a]).unwrap();
    let q = |kind, hex: &str, quality| Query {
        hash: HashValue::parse(kind, hex).unwrap(),
        quality,
    };
    let kinds = [
        q(HashKind::Md5, md5, None),
        q(HashKind::Md5, &"0".repeat(32), None),
        q(HashKind::Pdq, &pdq, Some(90)),
        q(HashKind::Pdq, &"1".repeat(64), Some(20)),
        q(HashKind::Pdq, &"2".repeat(64), None),
    ];
    let queries: Vec<Query> = (0..3 * PARALLEL_CHUNK + 7)
        .map(|i| kinds[(i * 7 + i / 5) % kinds.len()])
        .collect();
    let sparse = index.match_batch(&queries, &MatchOptions::ALL).verdicts;
    assert_eq!(sparse.len(), queries.len());
    let single: Vec<Verdict> = queries.iter().map(|q| index.match_one(q)).collect();
    assert!(sparse.iter().eq(single.iter()));
    assert_eq!(sparse.clone().into_vec(), single);
    let held: Vec<usize> = sparse.decided().iter().map(|&(i, _)| i as usize).collect();
    let expected: Vec<usize> = (0..queries.len())
        .filter(|&i| single[i] != Verdict::NO_MATCH)
        .collect();
    assert_eq!(held, expected);
    assert!(held.len() > queries.len() / 3 && held.len() < queries.len());
}

#[test]
fn a_batch_that_starts_exact_is_matched_by_kind_wherever_its_other_kinds_are() {
    // A batch whose first query is exact is first taken for one kind (no grouping pass);
    // a query of any other kind, wherever it falls, must still be matched as itself, by
    // lists of its kind or none, and a batch of one kind no list has must still miss.
    let pdq = "e".repeat(64);
    let md5 = "d41d8cd98f00b204e9800998ecf8427e";
    let sha = "ab".repeat(32);
    let index = Index::build(vec![
        set("m", 1, &[(HashKind::Md5, md5, "", "M")], 31),
        set(
            "s",
            1,
            &[
                (HashKind::Sha256, &sha, "", "S"),
                (HashKind::Pdq, &pdq, "", "P"),
            ],
            31,
        ),
    ])
    .unwrap();
    let q = |kind, hex: &str| Query {
        hash: HashValue::parse(kind, hex).unwrap(),
        quality: None,
    };
    let miss = |i: usize| q(HashKind::Md5, &format!("{i:032x}"));
    for n in [1usize, 15, 16, 64, 65, 1000] {
        for odd_at in [0, n / 2, n - 1] {
            for odd in [
                q(HashKind::Sha256, &sha),
                q(HashKind::Pdq, &pdq),
                q(HashKind::Sha1, &"0".repeat(40)),
                q(HashKind::Md5, md5),
            ] {
                let mut queries: Vec<Query> = (0..n).map(miss).collect();
                queries[odd_at] = odd;
                queries[0] = if odd_at == 0 {
                    odd
                } else {
                    q(HashKind::Md5, md5)
                };
                let batch = dense(&index, &queries);
                let single: Vec<Verdict> = queries.iter().map(|q| index.match_one(q)).collect();
                assert_eq!(
                    batch,
                    single,
                    "{n} queries, {:?} at {odd_at}",
                    odd.hash.kind()
                );
                let listed = odd.hash.kind() != HashKind::Sha1;
                assert_eq!(batch[odd_at].verdict == Decision::Match, listed);
            }
        }
    }
    // No list holds SHA-1: a whole batch of it misses, as does its one SHA-256 stranger
    // when no filter pass reads the batch.
    let sha1: Vec<Query> = (0..100)
        .map(|i| q(HashKind::Sha1, &format!("{i:040x}")))
        .collect();
    assert!(
        dense(&index, &sha1)
            .iter()
            .all(|v| v.verdict == Decision::NoMatch)
    );
    let mut stranger = sha1.clone();
    stranger[99] = q(HashKind::Sha256, &sha);
    assert_eq!(dense(&index, &stranger)[99].matches[0].reference, "S");
}

#[test]
fn batched_and_single_searches_agree() {
    // Random PDQ and pHash entries, some repeated under other references, and queries
    // planted 0..40 bits from them: a batch (searched together, `search_batch` in unit
    // tests) gives the same verdicts as one query at a time.
    use rand::{RngExt, SeedableRng};
    let mut rng = rand::rngs::SmallRng::seed_from_u64(0x9e37_79b9_7f4a_7c15);
    let mut next = move || rng.random::<u64>();
    let mut codes: Vec<(HashKind, Vec<u8>)> = Vec::new();
    for i in 0..600 {
        let kind = if i % 3 == 0 {
            HashKind::Phash
        } else {
            HashKind::Pdq
        };
        let code: Vec<u8> = (0..kind.byte_len()).map(|_| next() as u8).collect();
        codes.push((kind, code));
    }
    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    let entries: Vec<(HashKind, String, String)> = codes
        .iter()
        .enumerate()
        .flat_map(|(i, (k, c))| {
            let copies = if i % 10 == 0 { 3 } else { 1 };
            (0..copies).map(move |r| (*k, hex(c), format!("R-{i}-{r}")))
        })
        .collect();
    let rows: Vec<(HashKind, &str, &str, &str)> = entries
        .iter()
        .map(|(k, h, r)| (*k, h.as_str(), "c", r.as_str()))
        .collect();
    let index = Index::build(vec![set("l", 1, &rows, 31)]).unwrap();
    let queries: Vec<Query> = (0..300)
        .map(|i| {
            let (kind, code) = &codes[(next() % 600) as usize];
            let mut q = code.clone();
            let flips = if i % 4 == 0 { 64 } else { i % 41 };
            for _ in 0..flips {
                let bit = (next() % (q.len() as u64 * 8)) as usize;
                q[bit / 8] ^= 1 << (bit % 8);
            }
            Query {
                hash: HashValue::from_bytes(*kind, &q).unwrap(),
                quality: None,
            }
        })
        .collect();
    let batch = dense(&index, &queries);
    let single: Vec<Verdict> = queries.iter().map(|q| index.match_one(q)).collect();
    assert_eq!(batch, single);
    assert!(
        batch
            .iter()
            .filter(|v| v.verdict == Decision::Match)
            .count()
            > 100
    );
}

#[test]
fn near_misses_are_queries_just_beyond_the_threshold() {
    let base = "0".repeat(64);
    // `bits` set bits at the end of the code: that many bits away from `base`.
    let away = |bits: usize| {
        let mut v = [0u8; 32];
        for b in 0..bits {
            v[31 - b / 8] |= 1 << (b % 8);
        }
        v.iter().map(|x| format!("{x:02x}")).collect::<String>()
    };
    let a = set("a", 1, &[(HashKind::Pdq, &base, "", "A")], 10);
    let index = Index::build(vec![a]).unwrap();
    let q = |hex: &str| Query {
        hash: HashValue::parse(HashKind::Pdq, hex).unwrap(),
        quality: None,
    };
    let queries = [
        q(&base),
        q(&away(12)),
        q(&away(26)),
        q(&away(27)),
        q(&away(40)),
    ];
    let answers = index.match_batch(&queries, &near(NearMiss { bits: 16, every: 1 }));
    assert_eq!(
        answers.near_misses, 2,
        "12 and 26 bits: beyond 10, within 10 + 16"
    );
    let verdicts: Vec<Decision> = answers.verdicts.iter().map(|v| v.verdict).collect();
    assert_eq!(
        verdicts,
        [
            Decision::Match,
            Decision::NoMatch,
            Decision::NoMatch,
            Decision::NoMatch,
            Decision::NoMatch
        ]
    );
    assert_eq!(
        answers.verdicts.into_vec(),
        dense(&index, &queries),
        "same verdicts either way"
    );
    assert_eq!(
        index
            .match_batch(&queries, &near(NearMiss::OFF))
            .near_misses,
        0
    );
    // A query that matches is not a near miss, even with another entry just beyond.
    let b = set(
        "b",
        1,
        &[
            (HashKind::Pdq, &base, "", "B"),
            (HashKind::Pdq, &away(20), "", "C"),
        ],
        10,
    );
    let index = Index::build(vec![b]).unwrap();
    assert_eq!(
        index
            .match_batch(&[q(&base)], &near(NearMiss { bits: 16, every: 1 }))
            .near_misses,
        0
    );
    assert_eq!(
        index
            .match_batch(&[q(&away(20))], &near(NearMiss { bits: 16, every: 1 }))
            .near_misses,
        0
    );
    assert_eq!(
        index
            .match_batch(&[q(&away(31))], &near(NearMiss { bits: 16, every: 1 }))
            .near_misses,
        1
    );
}

//! Property tests for the hash-set formats: round trips against a simple model, canonical
//! bytes whatever the input order, diff/apply, and a reader that never panics.

use rand::SeedableRng;
use rand::rngs::SmallRng;
use rand::seq::SliceRandom;
use std::collections::BTreeSet;

use hashsieve::hashset::delta::{DeltaFile, diff};
use hashsieve::hashset::format::{EntryTable, HashSetFile, Header};
use hashsieve::hashset::signing::Published;
use hashsieve::kinds::{HashKind, HashValue};
use proptest::prelude::*;

type Model = (HashKind, Vec<u8>, String, String);

fn entry() -> impl Strategy<Value = Model> {
    (0u8..8, any::<[u8; 32]>(), 0usize..4, "[a-z0-9é-]{0,6}").prop_map(
        |(code, raw, cat, reference)| {
            let kind = HashKind::from_code(code).unwrap();
            // Few distinct hash values per kind, so duplicates and shared hashes happen.
            let mut bytes = raw[..kind.byte_len()].to_vec();
            bytes[0] %= 4;
            (
                kind,
                bytes,
                ["", "cat-a", "cat-b", "ü"][cat].to_owned(),
                reference,
            )
        },
    )
}

fn header(version: u64) -> Header {
    Header {
        name: "prop".into(),
        version,
        created: 1_800_000_000,
        expires: 1_900_000_000,
        description: "property test".into(),
        thresholds: vec![(HashKind::Pdq, 20)],
        severity: Vec::new(),
        video_share: Default::default(),
    }
}

fn build(entries: &[Model], version: u64) -> Vec<u8> {
    let mut t = EntryTable::new();
    for (kind, bytes, cat, reference) in entries {
        t.push(HashValue::from_bytes(*kind, bytes).unwrap(), cat, reference)
            .unwrap();
    }
    t.to_set_bytes(&header(version)).unwrap().0
}

fn model(entries: &[Model]) -> Vec<Model> {
    entries
        .iter()
        .cloned()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn round_trip_matches_the_model(entries in prop::collection::vec(entry(), 0..60)) {
        let set = HashSetFile::parse(build(&entries, 1)).unwrap();
        let read: Vec<Model> = set
            .entries()
            .map(|e| (e.hash.kind(), e.hash.as_bytes().to_vec(), e.category.to_owned(), e.reference.to_owned()))
            .collect();
        // The model's order (kind, bytes, category, reference) is the canonical order.
        prop_assert_eq!(read, model(&entries));
        prop_assert_eq!(set.header(), &header(1));
    }

    #[test]
    fn same_entries_same_bytes_in_any_order(entries in prop::collection::vec(entry(), 0..40), seed in any::<u64>()) {
        let mut shuffled = entries.clone();
        // A deterministic shuffle driven by the seed, plus duplicated rows.
        let mut rng = SmallRng::seed_from_u64(seed);
        shuffled.shuffle(&mut rng);
        shuffled.extend(entries.iter().take(3).cloned());
        prop_assert_eq!(build(&entries, 7), build(&shuffled, 7));
    }

    #[test]
    fn diff_then_apply_gives_the_new_bytes(
        old in prop::collection::vec(entry(), 0..40),
        new in prop::collection::vec(entry(), 0..40),
    ) {
        let old_set = HashSetFile::parse(build(&old, 1)).unwrap();
        let new_bytes = build(&new, 2);
        let new_set = HashSetFile::parse(new_bytes.clone()).unwrap();
        let delta = DeltaFile::parse(diff(&old_set, &new_set).unwrap()).unwrap();
        prop_assert_eq!(delta.apply(&old_set).unwrap(), new_bytes);
    }

    #[test]
    fn reader_never_panics_on_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        let _ = Published::parse(bytes.clone());
        let mut with_magic = b"HSIEVSET\x01\x00".to_vec();
        with_magic.extend_from_slice(&bytes);
        let _ = Published::parse(with_magic);
        let mut delta_magic = b"HSIEVDLT\x01\x00".to_vec();
        delta_magic.extend_from_slice(&bytes);
        let _ = Published::parse(delta_magic);
    }

    #[test]
    fn mutated_valid_files_are_refused_or_read_without_panic(
        entries in prop::collection::vec(entry(), 1..20),
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..3), 1..4),
    ) {
        let original = build(&entries, 1);
        let mut bytes = original.clone();
        for (at, value, op) in edits {
            let i = at.index(bytes.len());
            match op {
                0 => bytes[i] = value,
                1 => { bytes.remove(i); }
                _ => bytes.insert(i, value),
            }
        }
        // The digest covers everything: any change is an error, never a panic. (An edit can
        // write the byte that was already there, or an insert undo a remove.)
        let changed = bytes != original;
        prop_assert_eq!(HashSetFile::parse(bytes).is_err(), changed);
    }
}

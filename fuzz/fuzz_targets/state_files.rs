//! Fuzzes the state dir's files as a restart reads them: `trust.json`, and a persisted index
//! (`.hidx`) opened against a verified set, as after a disk error or a hand edit.
//!
//! Oracle: no panic, and no index accepted that was not built from this set (a file opens
//! only when its whole-file digest, the set's digest and every bound check out).
//!
//! Run: `RUSTC_BOOTSTRAP=1 cargo fuzz run state_files fuzz/corpus/state_files fuzz/seeds/state_files -- -max_total_time=600`
#![no_main]

use std::sync::{Arc, OnceLock};

use hashsieve::hashset::format::{EntryTable, HashSetFile, Header};
use hashsieve::hashset::trust::TrustState;
use hashsieve::index::store;
use hashsieve::kinds::{HashKind, HashValue};
use libfuzzer_sys::fuzz_target;

fn set() -> Arc<HashSetFile> {
    static SET: OnceLock<Arc<HashSetFile>> = OnceLock::new();
    Arc::clone(SET.get_or_init(|| {
        let mut t = EntryTable::new();
        for i in 0..64u8 {
            let pdq = HashValue::from_bytes(HashKind::Pdq, &[i; 32]).expect("32 bytes");
            t.push(pdq, "c", &format!("p{i}")).expect("entry");
            let md5 = HashValue::from_bytes(HashKind::Md5, &[i; 16]).expect("16 bytes");
            t.push(md5, "c", &format!("m{i}")).expect("entry");
        }
        let header = Header {
            name: "fuzz".into(),
            version: 1,
            created: 0,
            expires: i64::MAX / 2,
            description: String::new(),
            thresholds: vec![],
            severity: Vec::new(),
        };
        Arc::new(HashSetFile::parse(t.to_set_bytes(&header).expect("set").0).expect("parse"))
    }))
}

fn scratch() -> &'static std::path::Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| tempfile::tempdir().expect("a temp dir"))
        .path()
}

fuzz_target!(|data: &[u8]| {
    let _ = serde_json::from_slice::<TrustState>(data);
    let path = scratch().join("fuzz.hidx");
    std::fs::write(&path, data).expect("scratch write");
    if let Ok(index) = store::open(set(), &path) {
        assert_eq!(index.set().digest(), set().digest());
    }
});

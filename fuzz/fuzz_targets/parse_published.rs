//! Fuzzes the hash-set and delta readers with untrusted bytes.
//!
//! Oracle: the reader never panics, and whatever it accepts is canonical, so re-encoding the
//! parsed entries and header gives back exactly the input bytes.
//!
//! Run: `RUSTC_BOOTSTRAP=1 cargo fuzz run parse_published fuzz/corpus/parse_published fuzz/seeds/parse_published -- -max_total_time=600`
//! (seeds: the example sets and deltas; see fuzz/README.md).
#![no_main]

use hashsieve::hashset::format::EntryTable;
use hashsieve::hashset::signing::Published;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match Published::parse(data.to_vec()) {
        Ok(Published::Set(set)) => {
            let mut table = EntryTable::new();
            for entry in set.entries() {
                table
                    .push_ref(entry)
                    .expect("entries read from a file fit the limits");
            }
            let (bytes, digest) = table
                .to_set_bytes(set.header())
                .expect("a parsed header is valid");
            assert_eq!(bytes, data, "accepted a non-canonical set");
            assert_eq!(digest, set.digest());
        }
        Ok(Published::Delta(delta)) => {
            // Walk every entry: offsets and UTF-8 were checked, so this must not panic.
            let n = delta.removes().count() + delta.adds().count();
            assert_eq!(n, delta.remove_count() + delta.add_count());
        }
        Err(_) => {}
    }
});

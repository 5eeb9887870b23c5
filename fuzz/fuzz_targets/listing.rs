//! Fuzzes the `<list>.files` listing an HTTPS source serves: the names taken from it, and
//! which of those name a set or delta of the list.
//!
//! Oracle: no panic; no name taken can reach outside the base URL, and a name that parses
//! as a list's file is exactly that file's canonical name.
//!
//! Run: `RUSTC_BOOTSTRAP=1 cargo fuzz run listing fuzz/corpus/listing fuzz/seeds/listing -- -max_total_time=600`
#![no_main]

use hashsieve::hashset::{file_name, listed_names, parse_file_name};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    for name in listed_names(text) {
        assert!(!name.contains('/') && !name.contains('\\') && !name.starts_with('.'));
        if let Some((version, is_delta)) = parse_file_name("alpha", name) {
            // Leading zeros ("alpha-01.hset") name the same version under another name.
            let canonical = file_name("alpha", version, is_delta);
            assert!(name == canonical || name.trim_start_matches("alpha-").starts_with('0'));
        }
    }
});

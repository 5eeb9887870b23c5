//! Fuzzes what partners send as queries: the batch body of `POST /v1/match`, the lines of
//! `POST /v1/match/ndjson` and the `{kind}/{hash}` of the single GET, with the same
//! functions the service calls.
//!
//! Oracle: no panic; a query that parses re-renders as hex its kind's length.
//!
//! Run: `RUSTC_BOOTSTRAP=1 cargo fuzz run queries fuzz/corpus/queries fuzz/seeds/queries -- -max_total_time=600`
#![no_main]

use hashsieve::index::query::parse_line;
use hashsieve::kinds::{HashKind, HashValue};
use hashsieve::wire::{MatchRequest, QueryIn};
use libfuzzer_sys::fuzz_target;

fn check(q: &hashsieve::index::Query) {
    assert_eq!(q.hash.to_string().len(), q.hash.kind().byte_len() * 2);
}

fuzz_target!(|data: &[u8]| {
    // The batch body.
    if let Ok(request) = serde_json::from_slice::<MatchRequest<'_>>(data) {
        for q in &request.queries {
            if let Ok(q) = q.to_query() {
                check(&q);
            }
        }
    }
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // NDJSON lines, as the stream reads them.
    for line in text.split('\n') {
        let trimmed = line.trim();
        if trimmed.starts_with('{') {
            if let Ok(q) = serde_json::from_str::<QueryIn<'_>>(trimmed) {
                if let Ok(q) = q.to_query() {
                    check(&q);
                }
            }
        } else if let Ok(queries) = parse_line(trimmed) {
            queries.iter().for_each(check);
        }
    }
    // The single GET's path segments.
    if let Some((kind, hash)) = text.split_once('/') {
        if let Ok(kind) = kind.parse::<HashKind>() {
            if let Ok(h) = HashValue::parse(kind, hash) {
                assert!(h.to_string().eq_ignore_ascii_case(hash));
            }
        }
    }
});

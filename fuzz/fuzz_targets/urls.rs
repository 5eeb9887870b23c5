//! URL canonicalisation on any bytes (what a proxy's helper or a list's build input may hold):
//! never a panic; a canonical URL is its own canonical form, and has 1 to 5 × 6 expressions,
//! each a host suffix and a path, the first the whole URL's.
//!
//! Run: `RUSTC_BOOTSTRAP=1 cargo fuzz run urls fuzz/corpus/urls fuzz/seeds/urls -- -max_total_time=600`
#![no_main]

use hashsieve::urls::{Canonical, MAX_HOSTS};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(url) = Canonical::parse(data) else {
        return;
    };
    let text = url.to_string();
    let again = Canonical::parse_str(&text).expect("a canonical URL parses");
    assert_eq!(again.to_string(), text, "canonical form is not stable");
    let expressions = url.expressions();
    assert!(!expressions.is_empty() && expressions.len() <= MAX_HOSTS * 6);
    // Each is one of the host suffixes followed by a path (a query may hold anything,
    // `://` included).
    let hosts = url.host_suffixes();
    for e in &expressions {
        assert!(
            hosts.iter().any(|h| e.text.strip_prefix(h).is_some_and(|p| p.starts_with('/'))),
            "{}",
            e.text
        );
    }
    // The first expression is the whole URL: what its listed exact entry holds.
    assert_eq!(expressions[0].text, url.expression());
});

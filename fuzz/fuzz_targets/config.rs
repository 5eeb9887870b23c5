//! Fuzzes the configuration reader (`hashsieve.toml`): TOML into the raw config, then the
//! validation the service runs at start, paths resolved in an empty directory.
//!
//! Oracle: no panic; an error names what is wrong.
//!
//! Run: `RUSTC_BOOTSTRAP=1 cargo fuzz run config fuzz/corpus/config fuzz/seeds/config -- -max_total_time=600`
#![no_main]

use std::path::Path;
use std::sync::OnceLock;

use hashsieve::config::{Config, RawConfig};
use libfuzzer_sys::fuzz_target;

fn base() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| tempfile::tempdir().expect("a temp dir"))
        .path()
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // Files the config could name are not the point here (and could be any file).
    if text.contains("partners_file") || text.contains("tls_") {
        return;
    }
    if let Ok(raw) = toml::from_str::<RawConfig>(text) {
        if let Err(e) = Config::validate(raw, &base().join("hashsieve.toml"), base()) {
            assert!(!e.to_string().is_empty());
        }
    }
});

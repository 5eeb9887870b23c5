//! What the examples that time the index share: the server's default near-miss sampling and
//! a signed set verified and indexed as `hashsieve match` does.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context as _, anyhow, bail};
use hashsieve::hashset::signing::{Published, parse_public_key};
use hashsieve::hashset::trust::{self, Policy};
use hashsieve::index::{Index, MatchOptions, NearMiss};

/// The server's default near-miss sampling (`limits.near_miss_bits`, `near_miss_sample`).
pub const NEAR: MatchOptions<'static> = MatchOptions {
    lists: None,
    near_miss: NearMiss {
        bits: 16,
        every: 128,
    },
};

/// The set at `set_path`, verified with the minisign public key at `key_path` (no size
/// limit: these are the operator's own files), indexed.
pub fn load_index(set_path: &Path, key_path: &Path) -> anyhow::Result<Index> {
    let key = std::fs::read_to_string(key_path)
        .with_context(|| format!("{}: cannot read", key_path.display()))?;
    let key = parse_public_key(&key).map_err(|e| anyhow!("{}: {e}", key_path.display()))?;
    let mut policy = Policy::new(vec![key]);
    policy.max_bytes = u64::MAX;
    let set = match trust::verify_path(set_path, &policy, None) {
        Ok(Published::Set(set)) => set,
        Ok(Published::Delta(_)) => bail!("{}: a delta, not a set", set_path.display()),
        Err(refusal) => bail!("{}: refused: {refusal:#}", set_path.display()),
    };
    Index::build(vec![Arc::new(set)]).context("building the index")
}

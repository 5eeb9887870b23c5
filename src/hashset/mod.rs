//! Hash sets: the signed, versioned files list maintainers publish, and the deltas between
//! versions. The byte format is specified in `docs/hashset-format.md`.
//!
//! - [`format`](mod@format): the canonical `.hset` bytes ([`HashSetFile`] parses and checks them,
//!   [`EntryTable`] + [`Header`] produce them);
//! - [`delta`]: `.hdelta` files (adds and removes from version N to N+1);
//! - [`input`]: entries from CSV or `hashsieve hash` NDJSON, with errors by line number;
//! - [`signing`]: detached minisign signatures whose trusted comment binds the file;
//! - [`trust`]: the verifier that remembers accepted versions (rollback, replay, freeze).

pub mod codec;
pub mod delta;
pub mod format;
pub mod input;
pub mod signing;
pub mod trust;

pub use format::{EntryRef, EntryTable, HashSetFile, Header};

/// Why bytes are not a valid hash-set or delta file. Offsets are byte positions in the file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormatError {
    #[error("not a hashsieve {expected} file (bad magic bytes)")]
    BadMagic { expected: &'static str },
    #[error("unsupported format version {got} (this build reads version {supported})")]
    UnsupportedVersion { got: u16, supported: u16 },
    #[error("truncated at byte {offset}: {what} needs {needed} bytes, {available} left")]
    Truncated {
        what: &'static str,
        offset: usize,
        needed: usize,
        available: usize,
    },
    #[error("{count} trailing bytes after the end of the file at byte {offset}")]
    TrailingBytes { offset: usize, count: usize },
    #[error("{what} at byte {offset} is {len} bytes long, the limit is {max}")]
    TooLong {
        what: &'static str,
        len: usize,
        max: usize,
        offset: usize,
    },
    #[error("{what} at byte {offset} is not valid UTF-8")]
    BadUtf8 { what: &'static str, offset: usize },
    #[error("content digest mismatch: the file says {stored}, its content hashes to {computed}")]
    DigestMismatch { stored: String, computed: String },
    #[error("invalid {what}: {detail}")]
    Invalid { what: &'static str, detail: String },
    #[error("not canonical: {detail}")]
    NotCanonical { detail: String },
}

impl FormatError {
    fn invalid(what: &'static str, detail: impl Into<String>) -> FormatError {
        FormatError::Invalid {
            what,
            detail: detail.into(),
        }
    }
}

/// Limits on the variable-length fields; also enforced when building.
pub mod limits {
    /// List names: 1 to 64 bytes of `[a-z0-9._-]`, starting with a letter or digit.
    pub const MAX_NAME: usize = 64;
    pub const MAX_DESCRIPTION: usize = 64 * 1024;
    pub const MAX_CATEGORY: usize = 255;
    pub const MAX_REFERENCE: usize = 1024;
    pub const MAX_CATEGORIES: usize = 65_535;
}

/// Checks a list name: it appears in file names and URLs, so it is kept boring.
pub fn validate_list_name(name: &str) -> Result<(), FormatError> {
    let ok_char =
        |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-');
    let first_ok = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    if name.is_empty() || name.len() > limits::MAX_NAME || !first_ok || !name.chars().all(ok_char) {
        return Err(FormatError::invalid(
            "list name",
            format!(
                "{name:?}: use 1 to {} characters of a-z, 0-9, '.', '_' or '-', starting with a letter or digit",
                limits::MAX_NAME
            ),
        ));
    }
    Ok(())
}

/// The version of a published file of `list` (`<list>-<version>.hset` or `.hdelta`), and
/// whether it is a delta; `None` for any other name.
pub fn parse_file_name(list: &str, file: &str) -> Option<(u64, bool)> {
    let (stem, is_delta) = match file.strip_suffix(".hdelta") {
        Some(s) => (s, true),
        None => (file.strip_suffix(".hset")?, false),
    };
    let digits = stem.strip_prefix(list)?.strip_prefix('-')?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let version = digits.parse().ok()?;
    Some((version, is_delta))
}

/// The names in a `<list>.files` listing (one per line, as an HTTPS source publishes it):
/// trimmed, blank lines skipped, and names only, so that nothing can reach outside the base
/// URL (no `/`, no `\`, no leading `.`).
pub fn listed_names(text: &str) -> impl Iterator<Item = &str> {
    text.lines()
        .map(str::trim)
        .filter(|f| !f.is_empty() && !f.contains(['/', '\\']) && !f.starts_with('.'))
}

/// The name a set (or delta) of `list` at `version` is published under.
pub fn file_name(list: &str, version: u64, is_delta: bool) -> String {
    let extension = if is_delta { "hdelta" } else { "hset" };
    format!("{list}-{version}.{extension}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_give_versions_and_kinds() {
        assert_eq!(parse_file_name("alpha", "alpha-12.hset"), Some((12, false)));
        assert_eq!(
            parse_file_name("alpha", "alpha-13.hdelta"),
            Some((13, true))
        );
        for other in [
            "alpha-12.hset.minisig",
            "alphabet-1.hset",
            "alpha-x.hset",
            "alpha-.hset",
            "alpha-+1.hset",
            "beta-1.hset",
            "alpha.files",
        ] {
            assert_eq!(parse_file_name("alpha", other), None, "{other}");
        }
        assert_eq!(file_name("alpha", 12, false), "alpha-12.hset");
        assert_eq!(
            parse_file_name("alpha", &file_name("alpha", 13, true)),
            Some((13, true))
        );
    }
}

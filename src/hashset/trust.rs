//! The verifier: a set or delta is used only after its size, signature, trusted comment,
//! structure, expiry and version all check out, and the verifier remembers per list the
//! highest version (and its digest) it accepted, so an old file cannot come back (rollback),
//! the same file cannot be fed twice as news (replay), and a stale file is refused once it
//! expires (freeze).

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use minisign::PublicKey;
use serde::{Deserialize, Serialize};

use super::FormatError;
use super::signing::{Published, SignatureError, check_comment, check_signature, signature_key_id};
use crate::clock::rfc3339;
use crate::kinds::hex_lower;

/// Files larger than this are refused unless the caller sets another limit (endless data).
pub const DEFAULT_MAX_BYTES: u64 = 2 << 30;

/// Why a published file was refused. Each refusal has its own variant and a message that
/// names the file and says what was wrong.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    #[error("{path}: no signature ({sig_path} is missing); every set and delta must be signed")]
    MissingSignature { path: PathBuf, sig_path: PathBuf },
    #[error("{path}: signature file is unreadable: {detail}")]
    UnreadableSignature { path: PathBuf, detail: String },
    #[error("{path}: signed by unknown key {key_id} (trusted keys: {trusted})")]
    UnknownKey {
        path: PathBuf,
        key_id: String,
        trusted: String,
    },
    #[error("{path}: bad signature: {detail}")]
    BadSignature { path: PathBuf, detail: String },
    #[error(
        "{path}: {valid} valid signature(s) from distinct trusted keys where the list requires {threshold}{}",
        if problems.is_empty() { String::new() } else { format!(" ({})", problems.join("; ")) }
    )]
    TooFewSignatures {
        path: PathBuf,
        valid: usize,
        threshold: usize,
        /// What was wrong with each signature that did not count.
        problems: Vec<String>,
    },
    #[error("{path}: trusted comment says {field} {in_comment:?} but the file has {in_file:?}")]
    CommentMismatch {
        path: PathBuf,
        field: &'static str,
        in_comment: String,
        in_file: String,
    },
    #[error("{path}: {size} bytes is over the size limit of {limit} bytes")]
    TooLarge {
        path: PathBuf,
        size: u64,
        limit: u64,
    },
    #[error("{path}: {source}")]
    Malformed {
        path: PathBuf,
        #[source]
        source: FormatError,
    },
    #[error(
        "{path}: list {list:?} version {got} is older than the accepted version {accepted} (rollback refused)"
    )]
    Rollback {
        path: PathBuf,
        list: String,
        got: u64,
        accepted: u64,
    },
    #[error(
        "{path}: list {list:?} version {got} is more than {max_step} versions above the accepted version {accepted} (a fast-forward: refused; raise the list's max_version_step if the maintainer really skipped ahead)"
    )]
    FastForward {
        path: PathBuf,
        list: String,
        got: u64,
        accepted: u64,
        max_step: u64,
    },
    #[error("{path}: list {list:?} version {got} was already accepted (replay refused)")]
    Replay {
        path: PathBuf,
        list: String,
        got: u64,
    },
    #[error(
        "{path}: list {list:?} version {version} expired at {expired_at} (refusing a frozen list)"
    )]
    Expired {
        path: PathBuf,
        list: String,
        version: u64,
        expired_at: String,
    },
    #[error("{path}: file is for list {got:?}, expected list {expected:?}")]
    WrongList {
        path: PathBuf,
        expected: String,
        got: String,
    },
    #[error("{path}: cannot read: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// What the verifier trusts and when it is.
#[derive(Debug, Clone)]
pub struct Policy {
    /// Keys allowed to sign (several during a key rotation, or for a threshold).
    pub keys: Vec<PublicKey>,
    /// How many distinct keys of `keys` must have signed (k of n): with more than one, a
    /// single stolen key can publish nothing.
    pub threshold: usize,
    pub max_bytes: u64,
    /// Unix seconds; expiry is checked against this.
    pub now: i64,
    /// When set, files for other lists are refused.
    pub list: Option<String>,
    /// When set, a version more than this far above the accepted one is refused: one signed
    /// file must not be able to push the version so far ahead (a fast-forward, up to 2^64 - 1)
    /// that every honest update after it is refused as a rollback.
    pub max_version_step: Option<u64>,
    /// When set, the accepted version itself is taken again if the file is exactly the set
    /// that was accepted (a full set with the accepted digest): how a list whose saved copy
    /// was lost or damaged is restored from its source. Anything else at that version is
    /// still a replay.
    pub reaccept: bool,
}

impl Policy {
    pub fn new(keys: Vec<PublicKey>) -> Policy {
        Policy {
            keys,
            threshold: 1,
            max_bytes: DEFAULT_MAX_BYTES,
            now: crate::clock::now_unix(),
            list: None,
            max_version_step: None,
            reaccept: false,
        }
    }
}

/// Per list, the highest version accepted and its digest. Persisted as JSON, atomically.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrustState {
    pub lists: BTreeMap<String, Accepted>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Accepted {
    pub version: u64,
    /// Content digest of the accepted set (lowercase hex).
    pub digest: String,
    pub accepted_at: String,
    /// Key ids (minisign's 16 hex digits) of the keys whose signatures were counted, joined
    /// with ", " when a threshold needed several.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signing_key: Option<String>,
}

/// Why the trust state could not be loaded or saved.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: not a valid trust state: {source}")]
    Parse {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
}

impl TrustState {
    /// Loads the state; a missing file is an empty state (nothing accepted yet).
    pub fn load(path: &Path) -> Result<TrustState, StateError> {
        match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|source| StateError::Parse {
                path: path.to_owned(),
                source,
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(TrustState::default()),
            Err(source) => Err(StateError::Io {
                path: path.to_owned(),
                source,
            }),
        }
    }

    /// Saves atomically (temp file, fsync, rename).
    pub fn save(&self, path: &Path) -> Result<(), StateError> {
        let mut bytes = serde_json::to_vec_pretty(self).map_err(|source| StateError::Parse {
            path: path.to_owned(),
            source,
        })?;
        bytes.push(b'\n');
        crate::fsutil::write_atomic(path, &bytes).map_err(|source| StateError::Io {
            path: path.to_owned(),
            source,
        })
    }

    pub fn accepted(&self, list: &str) -> Option<&Accepted> {
        self.lists.get(list)
    }

    /// Records that `version` of `list` with `digest` was accepted.
    pub fn record(&mut self, list: &str, version: u64, digest: [u8; 32], now: i64) {
        self.lists.insert(
            list.to_owned(),
            Accepted {
                version,
                digest: hex_lower(&digest),
                accepted_at: rfc3339(now),
                signing_key: None,
            },
        );
    }
}

/// Reads at most `limit` bytes of `path`; a longer file is refused without reading it all.
pub fn read_limited(path: &Path, limit: u64) -> Result<Vec<u8>, Refusal> {
    let io = |source| Refusal::Io {
        path: path.to_owned(),
        source,
    };
    let file = std::fs::File::open(path).map_err(io)?;
    let declared = file.metadata().map_err(io)?.len();
    read_capped(path, file, Some(declared), limit)
}

/// Reads at most `limit` bytes from `reader` (a file, a download), named `path` in errors.
/// A `declared` size over the limit is refused before reading; a stream that runs past the
/// limit anyway (a file growing while read, a server lying about its length) is refused
/// after `limit + 1` bytes, never read to its end.
pub fn read_capped(
    path: &Path,
    reader: impl Read,
    declared: Option<u64>,
    limit: u64,
) -> Result<Vec<u8>, Refusal> {
    let too_large = |size| Refusal::TooLarge {
        path: path.to_owned(),
        size,
        limit,
    };
    if let Some(size) = declared.filter(|&n| n > limit) {
        return Err(too_large(size));
    }
    let capacity = declared.and_then(|n| usize::try_from(n).ok()).unwrap_or(0);
    let mut bytes = Vec::with_capacity(capacity);
    reader
        .take(limit.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(|source| Refusal::Io {
            path: path.to_owned(),
            source,
        })?;
    if bytes.len() as u64 > limit {
        return Err(too_large(bytes.len() as u64));
    }
    Ok(bytes)
}

/// Most signature files looked for beside a file (`FILE.minisig`, `FILE.2.minisig`, ...).
pub const MAX_SIGNATURES: usize = 16;

/// Longest signature file accepted (a minisign signature is a few hundred bytes).
pub const MAX_SIGNATURE_BYTES: u64 = 64 * 1024;

/// The name of a file's `n`th signature (from 1): `NAME.minisig`, then `NAME.2.minisig`,
/// `NAME.3.minisig` and so on, each a standard minisign signature of the same file.
pub fn signature_name(name: &str, n: usize) -> String {
    if n <= 1 {
        format!("{name}.minisig")
    } else {
        format!("{name}.{n}.minisig")
    }
}

/// The conventional signature path: `FILE.minisig`.
pub fn signature_path(path: &Path) -> PathBuf {
    nth_signature_path(path, 1)
}

/// The path of a file's `n`th signature (see [`signature_name`]).
pub fn nth_signature_path(path: &Path, n: usize) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    if n > 1 {
        s.push(format!(".{n}"));
    }
    s.push(".minisig");
    PathBuf::from(s)
}

/// How many signature files to look for when `keys` keys are trusted: one per key, since
/// more than that cannot count.
pub fn signatures_wanted(keys: usize) -> usize {
    keys.clamp(1, MAX_SIGNATURES)
}

/// Reads the signatures beside `path` (the first `wanted` of `FILE.minisig`,
/// `FILE.2.minisig`, ...), skipping those that do not exist.
pub fn read_signatures(path: &Path, wanted: usize) -> Result<Vec<String>, Refusal> {
    let mut signatures = Vec::new();
    for n in 1..=wanted.min(MAX_SIGNATURES) {
        let sig_path = nth_signature_path(path, n);
        match std::fs::read(&sig_path) {
            Ok(s) if s.len() as u64 <= MAX_SIGNATURE_BYTES => {
                signatures.push(String::from_utf8_lossy(&s).into_owned());
            }
            Ok(_) => {
                return Err(Refusal::UnreadableSignature {
                    path: path.to_owned(),
                    detail: format!("{} is larger than 64 KiB", sig_path.display()),
                });
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(Refusal::Io {
                    path: sig_path,
                    source,
                });
            }
        }
    }
    Ok(signatures)
}

/// Reads `path` and its signatures and verifies them (see [`verify_bytes`]).
pub fn verify_path(
    path: &Path,
    policy: &Policy,
    state: Option<&TrustState>,
) -> Result<Published, Refusal> {
    let bytes = read_limited(path, policy.max_bytes)?;
    let signatures = read_signatures(path, signatures_wanted(policy.keys.len()))?;
    verify_bytes(path, bytes, &signatures, policy, state)
}

/// [`verify_signed`] without the signers.
pub fn verify_bytes(
    path: &Path,
    bytes: Vec<u8>,
    signatures: &[String],
    policy: &Policy,
    state: Option<&TrustState>,
) -> Result<Published, Refusal> {
    verify_signed(path, bytes, signatures, policy, state).map(|v| v.published)
}

/// A file that checked out, and the key ids whose signatures were counted.
#[derive(Debug)]
pub struct Verified {
    pub published: Published,
    pub signed_by: Vec<String>,
}

/// Checks `signatures` against the trusted keys: at least `policy.threshold` of them must be
/// valid signatures by distinct trusted keys (a key signing twice counts once). Returns the
/// trusted comments of the counted signatures with their key ids.
fn count_signatures(
    path: &Path,
    bytes: &[u8],
    signatures: &[String],
    policy: &Policy,
) -> Result<Vec<(String, String)>, Refusal> {
    if signatures.is_empty() {
        let sig_path = signature_path(path);
        return Err(Refusal::MissingSignature {
            path: path.to_owned(),
            sig_path,
        });
    }
    let threshold = policy.threshold.max(1);
    let mut counted: Vec<(String, String)> = Vec::new();
    let mut problems: Vec<SignatureError> = Vec::new();
    for signature in signatures {
        match check_signature(bytes, signature, &policy.keys) {
            Ok(comment) => {
                let id = signature_key_id(signature).unwrap_or_default();
                if counted.iter().any(|(k, _)| *k == id) {
                    problems.push(SignatureError::Invalid(format!(
                        "key {id} signed more than once (counted once)"
                    )));
                } else {
                    counted.push((id, comment));
                }
            }
            Err(e) => problems.push(e),
        }
    }
    if counted.len() >= threshold {
        return Ok(counted);
    }
    // One signature required: say exactly what was wrong with it, as minisign would.
    if threshold == 1 && !problems.is_empty() {
        return Err(match problems.swap_remove(0) {
            SignatureError::UnknownKey { key_id, trusted } => Refusal::UnknownKey {
                path: path.to_owned(),
                key_id,
                trusted,
            },
            SignatureError::Unreadable(detail) => Refusal::UnreadableSignature {
                path: path.to_owned(),
                detail,
            },
            other => Refusal::BadSignature {
                path: path.to_owned(),
                detail: other.to_string(),
            },
        });
    }
    Err(Refusal::TooFewSignatures {
        path: path.to_owned(),
        valid: counted.len(),
        threshold,
        problems: problems.iter().map(ToString::to_string).collect(),
    })
}

/// Verifies a published file: size, signatures by enough trusted keys, structure, trusted
/// comments, list, expiry, and (with `state`) a version above the accepted one. Untrusted
/// bytes are parsed only after the signatures check out.
pub fn verify_signed(
    path: &Path,
    bytes: Vec<u8>,
    signatures: &[String],
    policy: &Policy,
    state: Option<&TrustState>,
) -> Result<Verified, Refusal> {
    let path = path.to_owned();
    if bytes.len() as u64 > policy.max_bytes {
        return Err(Refusal::TooLarge {
            path,
            size: bytes.len() as u64,
            limit: policy.max_bytes,
        });
    }
    let counted = count_signatures(&path, &bytes, signatures, policy)?;
    let published = Published::parse(bytes).map_err(|source| Refusal::Malformed {
        path: path.clone(),
        source,
    })?;
    // Every counted signature must describe this file: a trusted key vouching for other
    // contents means something is wrong, whatever the others say.
    for (_, comment) in &counted {
        check_comment(comment, &published).map_err(|e| comment_refusal(&path, e))?;
    }
    let signed_by = counted.into_iter().map(|(id, _)| id).collect();
    if let Some(expected) = &policy.list
        && published.list() != expected
    {
        return Err(Refusal::WrongList {
            path,
            expected: expected.clone(),
            got: published.list().to_owned(),
        });
    }
    if !crate::clock::serving(published.expires(), policy.now) {
        return Err(Refusal::Expired {
            path,
            list: published.list().to_owned(),
            version: published.version(),
            expired_at: rfc3339(published.expires()),
        });
    }
    if let Some(accepted) = state.and_then(|s| s.accepted(published.list())) {
        let got = published.version();
        if got < accepted.version {
            return Err(Refusal::Rollback {
                path,
                list: published.list().to_owned(),
                got,
                accepted: accepted.version,
            });
        }
        let same_set = matches!(published, Published::Set(_))
            && hex_lower(&published.digest()) == accepted.digest;
        if got == accepted.version && !(policy.reaccept && same_set) {
            return Err(Refusal::Replay {
                path,
                list: published.list().to_owned(),
                got,
            });
        }
        if let Some(max_step) = policy.max_version_step
            && got - accepted.version > max_step
        {
            return Err(Refusal::FastForward {
                path,
                list: published.list().to_owned(),
                got,
                accepted: accepted.version,
                max_step,
            });
        }
    }
    Ok(Verified {
        published,
        signed_by,
    })
}

fn comment_refusal(path: &Path, e: SignatureError) -> Refusal {
    match e {
        SignatureError::CommentMismatch {
            field,
            in_comment,
            in_file,
        } => Refusal::CommentMismatch {
            path: path.to_owned(),
            field,
            in_comment,
            in_file,
        },
        other => Refusal::BadSignature {
            path: path.to_owned(),
            detail: other.to_string(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_capped_reads_everything_under_any_limit_and_refuses_past_it() {
        let data = vec![7u8; 1000];
        let path = Path::new("mem");
        // The largest limit means "no limit": `limit + 1` must not wrap to an empty read.
        for limit in [1000, 1 << 40, u64::MAX] {
            let got = read_capped(path, &data[..], None, limit).unwrap();
            assert_eq!(got, data, "limit {limit}");
        }
        assert!(matches!(
            read_capped(path, &data[..], None, 999),
            Err(Refusal::TooLarge { size: 1000, .. })
        ));
        assert!(matches!(
            read_capped(path, &data[..], Some(1000), 999),
            Err(Refusal::TooLarge { size: 1000, .. })
        ));
    }
}

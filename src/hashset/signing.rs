//! Detached minisign signatures (Ed25519 over the BLAKE2b-512 prehash, minisign's default)
//! through the `minisign` crate, so maintainers can equally sign with `minisign -S` and
//! operators check with `minisign -V`.
//!
//! A signature alone only says "this key signed these bytes". The trusted comment (which the
//! signature also covers) names what the bytes are: list, version, expiry and content digest.
//! Verification checks each field against the file, so a signature cannot be replayed onto
//! another file, and the comment a human reads in `minisign -V` output tells the truth.

use std::io::Cursor;

use minisign::{PublicKey, PublicKeyBox, SecretKey, SignatureBox};

use super::FormatError;
use super::delta::{DELTA_MAGIC, DeltaFile};
use super::format::{HashSetFile, SET_MAGIC};
use crate::clock::rfc3339;
use crate::kinds::hex_lower;

/// A published file: a full set or a delta.
#[derive(Debug, Clone)]
pub enum Published {
    Set(HashSetFile),
    Delta(DeltaFile),
}

impl Published {
    /// Parses a set or a delta, recognised by its magic bytes.
    pub fn parse(bytes: Vec<u8>) -> Result<Published, FormatError> {
        if bytes.starts_with(DELTA_MAGIC) {
            DeltaFile::parse(bytes).map(Published::Delta)
        } else if bytes.starts_with(SET_MAGIC) || bytes.len() < 8 {
            HashSetFile::parse(bytes).map(Published::Set)
        } else {
            Err(FormatError::BadMagic {
                expected: "hash-set (.hset) or delta (.hdelta)",
            })
        }
    }

    pub fn list(&self) -> &str {
        match self {
            Published::Set(s) => &s.header().name,
            Published::Delta(d) => &d.header().name,
        }
    }

    /// The version the file is (a set) or produces (a delta).
    pub fn version(&self) -> u64 {
        match self {
            Published::Set(s) => s.header().version,
            Published::Delta(d) => d.header().version,
        }
    }

    pub fn expires(&self) -> i64 {
        match self {
            Published::Set(s) => s.header().expires,
            Published::Delta(d) => d.header().expires,
        }
    }

    /// The file's own content digest.
    pub fn digest(&self) -> [u8; 32] {
        match self {
            Published::Set(s) => s.digest(),
            Published::Delta(d) => d.digest(),
        }
    }

    /// The trusted comment that binds a signature to this file.
    pub fn trusted_comment(&self) -> String {
        let (tag, base) = match self {
            Published::Set(_) => ("hashsieve-set", String::new()),
            Published::Delta(d) => ("hashsieve-delta", format!(" base={}", d.base_version())),
        };
        format!(
            "{tag} list={}{base} version={} expires={} digest={}",
            self.list(),
            self.version(),
            rfc3339(self.expires()),
            hex_lower(&self.digest())
        )
    }
}

/// Why a signature does not vouch for a file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("the signature file is not a minisign signature: {0}")]
    Unreadable(String),
    #[error("signed by unknown key {key_id} (trusted: {trusted})")]
    UnknownKey { key_id: String, trusted: String },
    #[error("signature does not match the file: {0}")]
    Invalid(String),
    #[error(
        "legacy (non-prehashed) minisign signatures are not accepted; re-sign with a current minisign"
    )]
    Legacy,
    #[error("trusted comment {field} is {in_comment:?} but the file says {in_file:?}")]
    CommentMismatch {
        field: &'static str,
        in_comment: String,
        in_file: String,
    },
}

/// A minisign key id as minisign prints it (16 upper-case hex digits).
pub fn key_id(keynum: &[u8]) -> String {
    let mut raw = [0u8; 8];
    for (d, s) in raw.iter_mut().zip(keynum) {
        *d = *s;
    }
    format!("{:016X}", u64::from_le_bytes(raw))
}

/// The key id a signature names (whether or not it verifies); `None` if unreadable.
pub fn signature_key_id(signature: &str) -> Option<String> {
    SignatureBox::from_string(signature)
        .ok()
        .map(|sig| key_id(sig.keynum()))
}

/// Parses a public key from a `.pub` file's text or a bare base64 key (`RWQ...`).
pub fn parse_public_key(text: &str) -> Result<PublicKey, String> {
    let trimmed = text.trim();
    let result = if trimmed.starts_with("untrusted comment:") {
        PublicKeyBox::from_string(trimmed).and_then(PublicKeyBox::into_public_key)
    } else {
        PublicKey::from_base64(trimmed)
    };
    result.map_err(|e| format!("not a minisign public key: {e}"))
}

/// Signs `bytes` with `sk`; the trusted comment is the file's own description.
pub fn sign(published: &Published, sk: &SecretKey) -> Result<String, String> {
    let comment = published.trusted_comment();
    let untrusted = format!(
        "signature from hashsieve, {} version {}",
        published.list(),
        published.version()
    );
    let bytes = match published {
        Published::Set(s) => s.bytes(),
        Published::Delta(d) => d.bytes(),
    };
    minisign::sign(
        None,
        sk,
        Cursor::new(bytes),
        Some(&comment),
        Some(&untrusted),
    )
    .map(|b| b.into_string())
    .map_err(|e| format!("signing failed: {e}"))
}

/// Checks that one of `keys` signed `bytes` (prehashed only) and returns the trusted comment.
pub fn check_signature(
    bytes: &[u8],
    signature: &str,
    keys: &[PublicKey],
) -> Result<String, SignatureError> {
    let sig = SignatureBox::from_string(signature)
        .map_err(|e| SignatureError::Unreadable(e.to_string()))?;
    if !sig.is_prehashed() {
        return Err(SignatureError::Legacy);
    }
    let key = keys
        .iter()
        .find(|k| k.keynum() == sig.keynum())
        .ok_or_else(|| SignatureError::UnknownKey {
            key_id: key_id(sig.keynum()),
            trusted: keys
                .iter()
                .map(|k| key_id(k.keynum()))
                .collect::<Vec<_>>()
                .join(", "),
        })?;
    minisign::verify(key, &sig, Cursor::new(bytes), true, false, false)
        .map_err(|e| SignatureError::Invalid(e.to_string()))?;
    sig.trusted_comment()
        .map_err(|e| SignatureError::Unreadable(e.to_string()))
}

/// Checks that a trusted comment describes `published`, field by field.
pub fn check_comment(comment: &str, published: &Published) -> Result<(), SignatureError> {
    let expected = published.trusted_comment();
    let fields = |line: &str| -> Vec<(String, String)> {
        line.split_whitespace()
            .enumerate()
            .map(|(i, tok)| match tok.split_once('=') {
                Some((k, v)) if i > 0 => (k.to_owned(), v.to_owned()),
                _ => ("type".to_owned(), tok.to_owned()),
            })
            .collect()
    };
    let got = fields(comment);
    for (key, value) in fields(&expected) {
        let field: &'static str = match key.as_str() {
            "type" => "type",
            "list" => "list",
            "base" => "base",
            "version" => "version",
            "expires" => "expires",
            _ => "digest",
        };
        let in_comment = got
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v.clone())
            .unwrap_or_default();
        if in_comment != value {
            return Err(SignatureError::CommentMismatch {
                field,
                in_comment,
                in_file: value,
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hashset::format::EntryTable;
    use crate::hashset::format::tests::{header, hv};
    use crate::kinds::HashKind;

    fn published(version: u64) -> Published {
        let mut t = EntryTable::new();
        t.push(hv(HashKind::Pdq, 7), "c", "r").unwrap();
        Published::parse(t.to_set_bytes(&header("alpha", version)).unwrap().0).unwrap()
    }

    #[test]
    fn sign_and_check_round_trip() {
        let kp = minisign::KeyPair::generate_unencrypted_keypair().unwrap();
        let p = published(4);
        let sig = sign(&p, &kp.sk).unwrap();
        let Published::Set(set) = &p else {
            unreachable!()
        };
        let comment = check_signature(set.bytes(), &sig, std::slice::from_ref(&kp.pk)).unwrap();
        assert_eq!(comment, p.trusted_comment());
        assert!(comment.starts_with(
            "hashsieve-set list=alpha version=4 expires=2030-03-17T17:46:40Z digest="
        ));
        check_comment(&comment, &p).unwrap();
    }

    #[test]
    fn other_key_and_changed_bytes_are_refused() {
        let kp = minisign::KeyPair::generate_unencrypted_keypair().unwrap();
        let other = minisign::KeyPair::generate_unencrypted_keypair().unwrap();
        let p = published(4);
        let sig = sign(&p, &kp.sk).unwrap();
        let Published::Set(set) = &p else {
            unreachable!()
        };
        assert!(matches!(
            check_signature(set.bytes(), &sig, std::slice::from_ref(&other.pk)),
            Err(SignatureError::UnknownKey { .. })
        ));
        let mut changed = set.bytes().to_vec();
        changed[20] ^= 1;
        assert!(matches!(
            check_signature(&changed, &sig, &[other.pk, kp.pk]),
            Err(SignatureError::Invalid(_))
        ));
    }

    #[test]
    fn comment_fields_are_checked_one_by_one() {
        let p = published(4);
        let good = p.trusted_comment();
        let bad_version = good.replace("version=4", "version=5");
        assert!(matches!(
            check_comment(&bad_version, &p),
            Err(SignatureError::CommentMismatch {
                field: "version",
                ..
            })
        ));
        let bad_list = good.replace("list=alpha", "list=beta");
        assert!(matches!(
            check_comment(&bad_list, &p),
            Err(SignatureError::CommentMismatch { field: "list", .. })
        ));
        assert!(matches!(
            check_comment("timestamp:12345", &p),
            Err(SignatureError::CommentMismatch { field: "type", .. })
        ));
    }
}

//! `.hdelta` files: the removes and adds that turn one version of a list into a newer one,
//! with the digest of the resulting set, so `apply` can prove it rebuilt the exact file the
//! maintainer published. Removing entries (false positives) is as important as adding.

use std::cmp::Ordering;

use super::FormatError;
use super::codec::{Reader, Writer};
use super::format::{
    EntryRef, EntryTable, HashSetFile, Header, Section, check_version, entry_at, read_entries,
    version_for,
};
use crate::kinds::hex_lower;

pub const DELTA_MAGIC: &[u8; 8] = b"HSIEVDLT";
/// The newest delta format version: the same as the set format's, since a delta's header and
/// entries are written as the set's are.
pub const DELTA_FORMAT_VERSION: u16 = super::format::FORMAT_VERSION;

/// A parsed, structurally valid and digest-checked delta.
#[derive(Debug, Clone)]
pub struct DeltaFile {
    bytes: Vec<u8>,
    base_version: u64,
    base_digest: [u8; 32],
    /// Header of the set the delta produces.
    header: Header,
    result_digest: [u8; 32],
    removes: (Vec<String>, Vec<Section>),
    adds: (Vec<String>, Vec<Section>),
    digest: [u8; 32],
}

/// Why a delta cannot be made or applied.
#[derive(Debug, thiserror::Error)]
pub enum DeltaError {
    #[error(transparent)]
    Format(#[from] FormatError),
    #[error("the two sets are different lists ({old:?} and {new:?})")]
    DifferentLists { old: String, new: String },
    #[error("the new version {new} is not above the old version {old}")]
    NotNewer { old: u64, new: u64 },
    #[error("delta is for list {expected:?}, the base set is list {got:?}")]
    WrongList { expected: String, got: String },
    #[error(
        "delta applies to version {expected} with digest {expected_digest}, the base is version {got} with digest {got_digest}"
    )]
    WrongBase {
        expected: u64,
        expected_digest: String,
        got: u64,
        got_digest: String,
    },
    #[error("delta removes an entry the base does not have: {0}")]
    MissingRemove(String),
    #[error("delta adds an entry the base already has: {0}")]
    DuplicateAdd(String),
    #[error("the rebuilt set has digest {got}, the delta promises {expected}")]
    ResultMismatch { expected: String, got: String },
    #[error("{0}")]
    Entry(#[from] super::format::EntryError),
}

fn describe(e: &EntryRef<'_>) -> String {
    format!(
        "{:?} category {:?} ref {:?}",
        e.hash, e.category, e.reference
    )
}

impl DeltaFile {
    /// Parses and checks `bytes` (magic, lengths, canonical order, digest).
    pub fn parse(bytes: Vec<u8>) -> Result<DeltaFile, FormatError> {
        let mut r = Reader::new(&bytes);
        let version = r.preamble(DELTA_MAGIC, "delta (.hdelta)", DELTA_FORMAT_VERSION)?;
        let base_version = r.u64("base version")?;
        let base_digest = r.digest("base digest")?;
        let header = Header::read(&mut r, version)?;
        if header.version <= base_version {
            return Err(FormatError::Invalid {
                what: "delta versions",
                detail: format!(
                    "new version {} is not above base version {base_version}",
                    header.version
                ),
            });
        }
        let result_digest = r.digest("result digest")?;
        let removes = read_entries(&mut r)?;
        let adds = read_entries(&mut r)?;
        let kinds = removes.1.iter().chain(&adds.1).map(|s| s.kind);
        check_version(version, version_for(&header, kinds))?;
        let digest = r.digest_trailer()?;
        let delta = DeltaFile {
            bytes,
            base_version,
            base_digest,
            header,
            result_digest,
            removes,
            adds,
            digest,
        };
        // Canonical: nothing is both removed and added.
        if merge_join(delta.removes(), delta.adds()).any(|(r, a)| r.is_some() && a.is_some()) {
            return Err(FormatError::NotCanonical {
                detail: "an entry is both removed and added".into(),
            });
        }
        Ok(delta)
    }

    pub fn header(&self) -> &Header {
        &self.header
    }
    pub fn base_version(&self) -> u64 {
        self.base_version
    }
    pub fn base_digest(&self) -> [u8; 32] {
        self.base_digest
    }
    pub fn result_digest(&self) -> [u8; 32] {
        self.result_digest
    }
    /// The delta file's own content digest.
    pub fn digest(&self) -> [u8; 32] {
        self.digest
    }
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    pub fn removes(&self) -> impl Iterator<Item = EntryRef<'_>> + '_ {
        let (cats, sections) = &self.removes;
        sections
            .iter()
            .flat_map(move |s| (0..s.count).map(move |i| entry_at(&self.bytes, cats, s, i)))
    }

    pub fn adds(&self) -> impl Iterator<Item = EntryRef<'_>> + '_ {
        let (cats, sections) = &self.adds;
        sections
            .iter()
            .flat_map(move |s| (0..s.count).map(move |i| entry_at(&self.bytes, cats, s, i)))
    }

    pub fn remove_count(&self) -> usize {
        self.removes.1.iter().map(|s| s.count).sum()
    }

    pub fn add_count(&self) -> usize {
        self.adds.1.iter().map(|s| s.count).sum()
    }

    /// Applies the delta to `base`, returning the new set's bytes, which are checked against
    /// the digest the delta promises.
    pub fn apply(&self, base: &HashSetFile) -> Result<Vec<u8>, DeltaError> {
        if base.header().name != self.header.name {
            return Err(DeltaError::WrongList {
                expected: self.header.name.clone(),
                got: base.header().name.clone(),
            });
        }
        if base.header().version != self.base_version || base.digest() != self.base_digest {
            return Err(DeltaError::WrongBase {
                expected: self.base_version,
                expected_digest: hex_lower(&self.base_digest),
                got: base.header().version,
                got_digest: hex_lower(&base.digest()),
            });
        }
        let mut table = EntryTable::new();
        // Base minus removes: both sorted, walk them together.
        let mut removes = self.removes().peekable();
        for entry in base.entries() {
            // A remove sorting before the current base entry names nothing in the base.
            if let Some(r) = removes.peek()
                && *r < entry
            {
                return Err(DeltaError::MissingRemove(describe(r)));
            }
            if removes.peek() == Some(&entry) {
                removes.next();
                continue;
            }
            table.push_ref(entry)?;
        }
        if let Some(r) = removes.next() {
            return Err(DeltaError::MissingRemove(describe(&r)));
        }
        for (add, existing) in merge_join(self.adds(), base.entries()) {
            if let (Some(a), Some(_)) = (add, existing) {
                return Err(DeltaError::DuplicateAdd(describe(&a)));
            }
        }
        for add in self.adds() {
            table.push_ref(add)?;
        }
        let (bytes, digest) = table.to_set_bytes(&self.header)?;
        if digest != self.result_digest {
            return Err(DeltaError::ResultMismatch {
                expected: hex_lower(&self.result_digest),
                got: hex_lower(&digest),
            });
        }
        Ok(bytes)
    }
}

/// The delta from `old` to `new` (same list, newer version).
pub fn diff(old: &HashSetFile, new: &HashSetFile) -> Result<Vec<u8>, DeltaError> {
    if old.header().name != new.header().name {
        return Err(DeltaError::DifferentLists {
            old: old.header().name.clone(),
            new: new.header().name.clone(),
        });
    }
    if new.header().version <= old.header().version {
        return Err(DeltaError::NotNewer {
            old: old.header().version,
            new: new.header().version,
        });
    }
    let mut removes = EntryTable::new();
    let mut adds = EntryTable::new();
    for (o, n) in merge_join(old.entries(), new.entries()) {
        match (o, n) {
            (Some(o), None) => removes.push_ref(o)?,
            (None, Some(n)) => adds.push_ref(n)?,
            _ => {}
        }
    }
    let version = version_for(new.header(), removes.kinds().chain(adds.kinds()));
    let mut w = Writer::default();
    w.bytes(DELTA_MAGIC);
    w.u16(version);
    w.u64(old.header().version);
    w.bytes(&old.digest());
    new.header().write(&mut w, version);
    w.bytes(&new.digest());
    removes.write_canonical(&mut w);
    adds.write_canonical(&mut w);
    w.seal();
    Ok(w.buf)
}

/// Walks two sorted entry streams together, pairing equal entries.
fn merge_join<'a, A, B>(
    a: A,
    b: B,
) -> impl Iterator<Item = (Option<EntryRef<'a>>, Option<EntryRef<'a>>)>
where
    A: Iterator<Item = EntryRef<'a>>,
    B: Iterator<Item = EntryRef<'a>>,
{
    let mut a = a.peekable();
    let mut b = b.peekable();
    std::iter::from_fn(move || match (a.peek(), b.peek()) {
        (None, None) => None,
        (Some(_), None) => Some((a.next(), None)),
        (None, Some(_)) => Some((None, b.next())),
        (Some(x), Some(y)) => match x.cmp(y) {
            Ordering::Less => Some((a.next(), None)),
            Ordering::Greater => Some((None, b.next())),
            Ordering::Equal => Some((a.next(), b.next())),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hashset::format::tests::{header, hv};
    use crate::kinds::{HashKind, HashValue};

    fn set(version: u64, entries: &[(HashKind, u8, &str)]) -> HashSetFile {
        let mut t = EntryTable::new();
        for &(k, f, r) in entries {
            t.push(hv(k, f), "cat", r).unwrap();
        }
        HashSetFile::parse(t.to_set_bytes(&header("alpha", version)).unwrap().0).unwrap()
    }

    #[test]
    fn diff_then_apply_reproduces_the_new_set() {
        let v1 = set(
            1,
            &[
                (HashKind::Pdq, 1, "a"),
                (HashKind::Md5, 2, "b"),
                (HashKind::Pdq, 3, "c"),
            ],
        );
        let v2 = set(
            2,
            &[
                (HashKind::Pdq, 1, "a"),
                (HashKind::Pdq, 4, "d"),
                (HashKind::Sha1, 5, "e"),
            ],
        );
        let delta = DeltaFile::parse(diff(&v1, &v2).unwrap()).unwrap();
        assert_eq!(delta.remove_count(), 2);
        assert_eq!(delta.add_count(), 2);
        assert_eq!(delta.base_version(), 1);
        assert_eq!(delta.header().version, 2);
        let rebuilt = delta.apply(&v1).unwrap();
        assert_eq!(rebuilt, v2.bytes());
    }

    #[test]
    fn videos_travel_in_deltas_as_frames() {
        let frame = |fill: u8, quality: u8| HashValue::vpdq(&[fill; 32], quality);
        let build = |version: u64, frames: &[(u8, u8, &str)]| {
            let mut t = EntryTable::new();
            t.push(hv(HashKind::Pdq, 1), "cat", "still").unwrap();
            for &(fill, quality, reference) in frames {
                t.push(frame(fill, quality), "cat", reference).unwrap();
            }
            HashSetFile::parse(t.to_set_bytes(&header("alpha", version)).unwrap().0).unwrap()
        };
        let v1 = build(
            1,
            &[(1, 90, "clip-a"), (2, 80, "clip-a"), (3, 70, "clip-b")],
        );
        let v2 = build(
            2,
            &[(1, 90, "clip-a"), (3, 70, "clip-b"), (4, 100, "clip-c")],
        );
        let bytes = diff(&v1, &v2).unwrap();
        let delta = DeltaFile::parse(bytes).unwrap();
        assert_eq!((delta.remove_count(), delta.add_count()), (1, 1));
        assert_eq!(delta.apply(&v1).unwrap(), v2.bytes());
        assert_eq!((v1.videos(), v2.videos()), (2, 3));
    }

    #[test]
    fn delta_on_the_wrong_base_is_refused() {
        let v1 = set(1, &[(HashKind::Pdq, 1, "a")]);
        let v2 = set(2, &[(HashKind::Pdq, 2, "b")]);
        let other_v1 = set(1, &[(HashKind::Pdq, 9, "z")]);
        let delta = DeltaFile::parse(diff(&v1, &v2).unwrap()).unwrap();
        assert!(matches!(
            delta.apply(&other_v1),
            Err(DeltaError::WrongBase { .. })
        ));
        assert!(matches!(
            delta.apply(&v2),
            Err(DeltaError::WrongBase { .. })
        ));
    }

    #[test]
    fn diff_needs_same_list_and_newer_version() {
        let v1 = set(1, &[]);
        let v2 = set(2, &[]);
        assert!(matches!(
            diff(&v2, &v1),
            Err(DeltaError::NotNewer { old: 2, new: 1 })
        ));
        let mut t = EntryTable::new();
        t.push(hv(HashKind::Md5, 1), "", "").unwrap();
        let beta = HashSetFile::parse(t.to_set_bytes(&header("beta", 3)).unwrap().0).unwrap();
        assert!(matches!(
            diff(&v1, &beta),
            Err(DeltaError::DifferentLists { .. })
        ));
    }

    #[test]
    fn truncated_delta_is_refused() {
        let v1 = set(1, &[(HashKind::Pdq, 1, "a")]);
        let v2 = set(2, &[(HashKind::Pdq, 2, "b")]);
        let bytes = diff(&v1, &v2).unwrap();
        for cut in 0..bytes.len() {
            assert!(
                DeltaFile::parse(bytes[..cut].to_vec()).is_err(),
                "cut {cut}"
            );
        }
    }
}

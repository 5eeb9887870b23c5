//! Persisted indexes (`.hidx`): the built search structures of one verified set, saved beside
//! it and memory-mapped on the next start instead of rebuilt.
//!
//! Layout (integers little-endian except the native-order marker):
//!
//! | bytes | what |
//! |---|---|
//! | 0..8 | magic `HSIDX\0\0\n` |
//! | 8..12 | format version (4) |
//! | 12..16 | `0x01020304` in the writer's byte order: a reader with another order refuses |
//! | 16..48 | BLAKE3 digest of the set this index was built from |
//! | 48..64 | zero (reserved) |
//! | 64.. | arrays of u8/u32/u64, each starting on a 64-byte boundary |
//! | toc | JSON: per section, kind and where each array is |
//! | 8 bytes | length of the toc (so a reader finds it from the end) |
//! | last 32 | BLAKE3 of everything before |
//!
//! Opening checks, in order: magic, version, byte order, the whole-file BLAKE3, that it was
//! built from exactly the given (already verified) set, then each array's bounds and alignment
//! and every invariant a lookup relies on to stay in bounds. Anything wrong is a
//! [`StoreError`]; the caller rebuilds from the set. Neither keys nor codes are stored: exact
//! tables and Hamming indexes both read the set's own sorted hash column (the chunk tables of
//! a small PDQ list do store sketches, half of each code beside its id: `ChunkTable::sketch`).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::column::{Backing, Column, ColumnError, MappedFile};
use super::exact::{ExactFilter, ExactTable};
use super::hamming::{ChunkTable, HammingIndex};
use super::{IndexError, KindIndex, KindSearch, ListIndex};
use crate::hashset::codec::{content_digest, digest_update};
use crate::hashset::format::HashSetFile;
use crate::kinds::HashKind;

const MAGIC: [u8; 8] = *b"HSIDX\0\0\n";
/// 2: perceptual kinds read their codes from the set (no codes or starts arrays stored).
/// 3: PDQ chunk tables may carry sketches (an index of version 2 is rebuilt, so that a
/// restart after an upgrade does not keep serving without them).
/// 4: exact kinds' filters are blocked Bloom filters, not binary-fuse filters.
const FORMAT_VERSION: u32 = 4;
const BYTE_ORDER: u32 = 0x0102_0304;
const HEADER_LEN: usize = 64;
const ALIGN: usize = 64;

/// Why a persisted index cannot be used (the caller rebuilds it from the set).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot read: {0}")]
    Io(#[from] std::io::Error),
    #[error("not an index file (bad magic or too short)")]
    NotAnIndex,
    #[error("index format version {got} is not supported (supported: {supported})")]
    UnsupportedVersion { got: u32, supported: u32 },
    #[error("index was written on a machine with another byte order")]
    ByteOrder,
    #[error("index digest does not match its contents (damaged file)")]
    Damaged,
    #[error("index was built from another set (digest {got}, expected {expected})")]
    OtherSet { got: String, expected: String },
    #[error("index table of contents: {0}")]
    Toc(String),
    #[error(transparent)]
    Column(#[from] ColumnError),
    #[error(transparent)]
    Index(#[from] IndexError),
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Toc {
    sections: Vec<SectionToc>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "search", rename_all = "snake_case", deny_unknown_fields)]
enum SectionToc {
    Exact {
        kind: String,
        bits: u32,
        directory: ArrayRef,
        /// The blocks of the key filter (`ExactFilter`).
        filter: ArrayRef,
    },
    Perceptual {
        kind: String,
        chunks: Vec<ChunkToc>,
    },
    /// A `vpdq` section, rebuilt from the set at open: its frames' index is built over a
    /// copy of their hashes (the set stores each with its quality), and frame lists are far
    /// smaller than image lists.
    Video {
        kind: String,
    },
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ChunkToc {
    start: u32,
    width: u32,
    directory: ArrayRef,
    ids: ArrayRef,
    /// 64-bit kinds: the codes of `ids`, in the same order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    codes: Option<ArrayRef>,
    /// 256-bit kinds: half of each id's code, in the same order (`ChunkTable::sketch`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    sketch: Option<ArrayRef>,
}

/// `len` values at byte `offset` of the file.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ArrayRef {
    offset: usize,
    len: usize,
}

/// Writes arrays at aligned offsets while hashing everything written.
struct Out<'a> {
    w: &'a mut dyn Write,
    hasher: blake3::Hasher,
    at: usize,
}

impl Out<'_> {
    fn bytes(&mut self, b: &[u8]) -> std::io::Result<()> {
        self.w.write_all(b)?;
        digest_update(&mut self.hasher, b);
        self.at += b.len();
        Ok(())
    }

    fn array<T: bytemuck::Pod>(&mut self, values: &[T]) -> std::io::Result<ArrayRef> {
        let pad = self.at.next_multiple_of(ALIGN) - self.at;
        self.bytes(&[0u8; ALIGN][..pad])?;
        let r = ArrayRef {
            offset: self.at,
            len: values.len(),
        };
        self.bytes(bytemuck::cast_slice(values))?;
        Ok(r)
    }
}

/// Saves `list`'s structures to `path` atomically (temporary file, fsync, rename).
pub fn save(list: &ListIndex, path: &Path) -> std::io::Result<()> {
    crate::fsutil::write_atomic_with(path, |w| {
        let mut out = Out {
            w,
            hasher: blake3::Hasher::new(),
            at: 0,
        };
        // The header is streamed first, before the arrays' positions are known, so the TOC
        // goes at the end and its length just before the trailer.
        let mut header = [0u8; HEADER_LEN];
        header[..8].copy_from_slice(&MAGIC);
        header[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
        header[12..16].copy_from_slice(&BYTE_ORDER.to_ne_bytes());
        header[16..48].copy_from_slice(&list.set.digest());
        out.bytes(&header)?;
        let mut sections = Vec::new();
        for k in &list.kinds {
            let kind = k.kind.name().to_owned();
            sections.push(match &k.search {
                KindSearch::Exact { table, filter } => {
                    let (bits, dir) = table.parts();
                    let directory = out.array(dir)?;
                    let filter = out.array(filter.parts())?;
                    SectionToc::Exact {
                        kind,
                        bits,
                        directory,
                        filter,
                    }
                }
                KindSearch::Perceptual { index } => {
                    let mut chunks = Vec::new();
                    for t in index.parts() {
                        chunks.push(ChunkToc {
                            start: t.start,
                            width: t.width,
                            directory: out.array(&t.directory)?,
                            ids: out.array(&t.ids)?,
                            codes: match &t.inline {
                                Some(codes) => Some(out.array(codes)?),
                                None => None,
                            },
                            sketch: match &t.sketch {
                                Some(sketch) => Some(out.array(sketch)?),
                                None => None,
                            },
                        });
                    }
                    SectionToc::Perceptual { kind, chunks }
                }
                KindSearch::Video { .. } => SectionToc::Video { kind },
            });
        }
        let toc = serde_json::to_vec(&Toc { sections }).map_err(std::io::Error::other)?;
        out.bytes(&toc)?;
        out.bytes(&(toc.len() as u64).to_le_bytes())?;
        let digest = out.hasher.finalize();
        out.w.write_all(digest.as_bytes())
    })
}

/// Opens the index saved at `path` for `set` (already verified), checking it as the module
/// documentation says. The arrays stay in the memory map; nothing is copied.
pub fn open(set: Arc<HashSetFile>, path: &Path) -> Result<ListIndex, StoreError> {
    let map = Arc::new(MappedFile::open(path)?);
    let bytes = map.bytes();
    if bytes.len() < HEADER_LEN + 8 + 32 || bytes[..8] != MAGIC {
        return Err(StoreError::NotAnIndex);
    }
    let word =
        |at: usize| u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]);
    let version = word(8);
    if version != FORMAT_VERSION {
        return Err(StoreError::UnsupportedVersion {
            got: version,
            supported: FORMAT_VERSION,
        });
    }
    if bytes[12..16] != BYTE_ORDER.to_ne_bytes() {
        return Err(StoreError::ByteOrder);
    }
    let (body, trailer) = bytes.split_at(bytes.len() - 32);
    if content_digest(body) != trailer {
        return Err(StoreError::Damaged);
    }
    if bytes[16..48] != set.digest() {
        return Err(StoreError::OtherSet {
            got: crate::kinds::hex_lower(&bytes[16..48]),
            expected: crate::kinds::hex_lower(&set.digest()),
        });
    }
    let mut len_bytes = [0u8; 8];
    len_bytes.copy_from_slice(&body[body.len() - 8..]);
    let toc_len = usize::try_from(u64::from_le_bytes(len_bytes))
        .ok()
        .filter(|&n| n <= body.len() - 8 - HEADER_LEN)
        .ok_or_else(|| StoreError::Toc("length runs past the file".into()))?;
    let toc_bytes = &body[body.len() - 8 - toc_len..body.len() - 8];
    let toc: Toc = serde_json::from_slice(toc_bytes).map_err(|e| StoreError::Toc(e.to_string()))?;
    if toc.sections.len() != set.sections().len() {
        return Err(StoreError::Toc(format!(
            "{} sections for a set with {}",
            toc.sections.len(),
            set.sections().len()
        )));
    }
    let backing: Arc<dyn Backing> = map;
    let mut kinds = Vec::new();
    for (section, stored) in set.sections().iter().zip(toc.sections) {
        let kind = section.kind;
        let check_kind = |name: &str| {
            if name == kind.name() {
                Ok(())
            } else {
                Err(StoreError::Toc(format!(
                    "section {name} where the set has {}",
                    kind.name()
                )))
            }
        };
        let search = match stored {
            SectionToc::Exact {
                kind: name,
                bits,
                directory,
                filter,
            } if !kind.is_perceptual() => {
                check_kind(&name)?;
                let keys = super::set_column(&set, section)?;
                let table = ExactTable::from_parts(
                    kind.byte_len(),
                    keys,
                    bits,
                    column(&backing, directory)?,
                )
                .map_err(IndexError::from)?;
                let filter = ExactFilter::from_parts(section.count, column(&backing, filter)?)
                    .ok_or_else(|| {
                        StoreError::Toc(format!("{name}: filter size for {} keys", section.count))
                    })?;
                KindSearch::Exact { table, filter }
            }
            SectionToc::Perceptual { kind: name, chunks }
                if kind.is_perceptual() && kind != HashKind::Vpdq =>
            {
                check_kind(&name)?;
                let mut tables = Vec::with_capacity(chunks.len());
                for c in chunks {
                    tables.push(ChunkTable {
                        start: c.start,
                        width: c.width,
                        directory: column(&backing, c.directory)?,
                        ids: column(&backing, c.ids)?,
                        inline: match c.codes {
                            Some(r) => Some(column(&backing, r)?),
                            None => None,
                        },
                        sketch: match c.sketch {
                            Some(r) => Some(column(&backing, r)?),
                            None => None,
                        },
                    });
                }
                let codes = super::set_column(&set, section)?;
                let index = HammingIndex::from_parts(kind.bit_len() as usize, codes, tables)
                    .map_err(IndexError::from)?;
                KindSearch::Perceptual { index }
            }
            SectionToc::Video { kind: name } if kind == HashKind::Vpdq => {
                check_kind(&name)?;
                let threshold = KindIndex::threshold_of(&set, kind);
                KindSearch::Video {
                    frames: super::vpdq::VideoFrames::build(&set, section, threshold)
                        .map_err(IndexError::from)?,
                }
            }
            _ => {
                return Err(StoreError::Toc(format!(
                    "{}: wrong search structure for the kind",
                    kind.name()
                )));
            }
        };
        kinds.push(KindIndex::new(&set, section, search));
    }
    Ok(ListIndex::assemble(set, kinds))
}

fn column<T: bytemuck::Pod>(
    backing: &Arc<dyn Backing>,
    r: ArrayRef,
) -> Result<Column<T>, ColumnError> {
    Column::shared(Arc::clone(backing), r.offset, r.len)
}

/// The file name an index for `set` is saved under: list, version and the start of the set's
/// digest, so a directory can hold several lists and versions side by side.
pub fn file_name(set: &HashSetFile) -> String {
    let digest = crate::kinds::hex_lower(&set.digest());
    format!(
        "{}-{}-{}.hidx",
        set.header().name,
        set.header().version,
        &digest[..16]
    )
}

/// Opens the saved index for `set` in `dir`, or builds it and saves it there. Returns the
/// list and, when a saved index existed but could not be used, why (it was rebuilt).
pub fn open_or_build(
    set: Arc<HashSetFile>,
    dir: &Path,
) -> Result<(ListIndex, Option<StoreError>), IndexError> {
    let opened = open_or_build_unsaved(set, dir)?;
    // A cache that cannot be written only costs the next start its speed.
    let saved = match &opened.save_to {
        Some(path) => save(&opened.list, path).err().map(StoreError::Io),
        None => None,
    };
    Ok((opened.list, opened.problem.or(saved)))
}

/// What [`open_or_build_unsaved`] found.
pub struct Opened {
    pub list: ListIndex,
    /// Why a saved index existed but was not used (it was rebuilt).
    pub problem: Option<StoreError>,
    /// Where to [`save`] the list: `Some` when it was built now rather than opened.
    pub save_to: Option<PathBuf>,
}

/// [`open_or_build`] without the save, for a caller that serves the built list first and
/// saves it after: the file is only a cache for the next start, and writing it (about a
/// gigabyte at 10 M PDQ codes, fsynced) need not delay the list's first answers.
pub fn open_or_build_unsaved(set: Arc<HashSetFile>, dir: &Path) -> Result<Opened, IndexError> {
    let path = dir.join(file_name(&set));
    let problem = if path.exists() {
        match open(Arc::clone(&set), &path) {
            Ok(list) => {
                return Ok(Opened {
                    list,
                    problem: None,
                    save_to: None,
                });
            }
            Err(e) => Some(e),
        }
    } else {
        None
    };
    Ok(Opened {
        list: ListIndex::build(set)?,
        problem,
        save_to: Some(path),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hashset::format::{EntryTable, Header};
    use crate::index::{Index, MatchOptions, Query};
    use crate::kinds::{HashKind, HashValue};

    fn random_set(n: usize, seed: u64) -> Arc<HashSetFile> {
        use rand::{RngExt, SeedableRng};
        let mut rng = rand::rngs::SmallRng::seed_from_u64(seed);
        let mut next = || rng.random::<u64>();
        let mut t = EntryTable::new();
        for i in 0..n {
            for kind in [
                HashKind::Sha256,
                HashKind::Md5,
                HashKind::Pdq,
                HashKind::Phash,
            ] {
                let raw: Vec<u8> = (0..kind.byte_len()).map(|_| next() as u8).collect();
                let h = HashValue::from_bytes(kind, &raw).unwrap();
                t.push(h, "cat", &format!("r{i}")).unwrap();
                if i % 50 == 0 {
                    // Duplicated hashes under other references.
                    t.push(h, "", &format!("dup{i}")).unwrap();
                }
            }
        }
        let header = Header {
            name: "store-test".into(),
            version: 4,
            created: 0,
            expires: 1,
            description: String::new(),
            thresholds: vec![(HashKind::Pdq, 40), (HashKind::Phash, 10)],
            severity: Vec::new(),
            video_share: Default::default(),
        };
        Arc::new(HashSetFile::parse(t.to_set_bytes(&header).unwrap().0).unwrap())
    }

    fn queries(set: &HashSetFile) -> Vec<Query> {
        // Every entry's own hash, plus each with a few bits flipped.
        let mut qs = Vec::new();
        for e in set.entries() {
            qs.push(Query {
                hash: e.hash,
                quality: None,
            });
            let mut raw = e.hash.as_bytes().to_vec();
            raw[0] ^= 0b1011;
            qs.push(Query {
                hash: HashValue::from_bytes(e.hash.kind(), &raw).unwrap(),
                quality: None,
            });
        }
        qs
    }

    #[test]
    fn saved_index_answers_exactly_like_the_built_one() {
        let dir = tempfile::tempdir().unwrap();
        let set = random_set(600, 7);
        let built = ListIndex::build(Arc::clone(&set)).unwrap();
        let path = dir.path().join(file_name(&set));
        save(&built, &path).unwrap();
        let loaded = open(Arc::clone(&set), &path).unwrap();
        let kinds = |l: &ListIndex| l.kinds.iter().map(|k| k.kind).collect::<Vec<_>>();
        assert_eq!(kinds(&loaded), kinds(&built));
        let qs = queries(&set);
        // PDQ tables keep their sketches (an index saved without them is not mistaken for
        // one that has them: version 2 files are rebuilt).
        let sketches = |l: &ListIndex| -> Vec<Vec<u64>> {
            l.kinds
                .iter()
                .filter_map(|k| match &k.search {
                    KindSearch::Perceptual { index } => Some(index),
                    KindSearch::Exact { .. } | KindSearch::Video { .. } => None,
                })
                .flat_map(|i| i.parts().iter().filter_map(|t| t.sketch.as_deref()))
                .map(<[u64]>::to_vec)
                .collect()
        };
        assert!(!sketches(&built).is_empty());
        assert_eq!(sketches(&loaded), sketches(&built));
        let a = Index::from_lists(vec![Arc::new(built)])
            .match_batch(&qs, &MatchOptions::ALL)
            .verdicts
            .into_vec();
        let b = Index::from_lists(vec![Arc::new(loaded)])
            .match_batch(&qs, &MatchOptions::ALL)
            .verdicts
            .into_vec();
        assert_eq!(a, b);
        assert!(a.iter().filter(|v| !v.matches.is_empty()).count() >= set.len());
    }

    #[test]
    fn damaged_foreign_or_truncated_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let set = random_set(200, 9);
        let other = random_set(200, 10);
        let path = dir.path().join("x.hidx");
        save(&ListIndex::build(Arc::clone(&set)).unwrap(), &path).unwrap();
        let good = std::fs::read(&path).unwrap();
        assert!(matches!(
            open(Arc::clone(&other), &path),
            Err(StoreError::OtherSet { .. })
        ));
        // Every single-byte change is caught (by the digest, or earlier by the header checks).
        for at in (0..good.len()).step_by(97) {
            let mut bad = good.clone();
            bad[at] ^= 0x40;
            std::fs::write(&path, &bad).unwrap();
            assert!(open(Arc::clone(&set), &path).is_err(), "flip at {at}");
        }
        for cut in [0, 10, 64, good.len() / 2, good.len() - 1] {
            std::fs::write(&path, &good[..cut]).unwrap();
            assert!(open(Arc::clone(&set), &path).is_err(), "cut at {cut}");
        }
        let e = open(Arc::clone(&set), &dir.path().join("missing.hidx")).unwrap_err();
        assert!(matches!(e, StoreError::Io(_)));
    }

    #[test]
    fn open_or_build_saves_then_reuses_and_rebuilds_a_damaged_file() {
        let dir = tempfile::tempdir().unwrap();
        let set = random_set(100, 11);
        let (_, problem) = open_or_build(Arc::clone(&set), dir.path()).unwrap();
        assert!(problem.is_none());
        let path = dir.path().join(file_name(&set));
        assert!(path.exists());
        let (_, problem) = open_or_build(Arc::clone(&set), dir.path()).unwrap();
        assert!(problem.is_none());
        let mut bytes = std::fs::read(&path).unwrap();
        let mid = bytes.len() / 2;
        bytes[mid] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        let (list, problem) = open_or_build(Arc::clone(&set), dir.path()).unwrap();
        assert!(matches!(problem, Some(StoreError::Damaged)));
        assert_eq!(list.set().digest(), set.digest());
        // The rebuilt index was saved again and opens cleanly.
        assert!(open(set, &path).is_ok());
    }
}

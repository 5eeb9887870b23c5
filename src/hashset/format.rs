//! The canonical `.hset` file: same entries, same header → same bytes, whatever the input
//! order. See `docs/hashset-format.md` for the byte layout.
//!
//! Entries are stored column-wise per kind (all hashes, then all category indices, then the
//! reference offsets and bytes), so a reader can hand the hash column straight to the index
//! without copying, and parsing 10 M entries is a linear scan.
//!
//! This file holds the format itself (versions, the header, the reader); writing a set from
//! entries in any order is [`EntryTable`]'s, in `format/table.rs`.

use super::codec::{Reader, Writer};
use super::{FormatError, limits, validate_list_name};
use crate::index::column::{Backing, MappedFile};
use crate::kinds::{HashKind, HashValue};

pub const SET_MAGIC: &[u8; 8] = b"HSIEVSET";
/// The newest format version. Version 2 added `url` entries and the severity order, version 3
/// `vpdq` entries (video frames) and the share of frames a video match needs. A file is
/// written in the oldest version that can hold it, so lists without them stay readable by
/// older readers (and each content keeps exactly one encoding).
pub const FORMAT_VERSION: u16 = 3;

/// The format version a file with this header and these kinds is written in.
pub fn version_for(header: &Header, kinds: impl Iterator<Item = HashKind>) -> u16 {
    let mut version = 1;
    if !header.severity.is_empty() {
        version = 2;
    }
    if header.video_share != VideoShare::DEFAULT {
        version = 3;
    }
    for kind in kinds {
        match kind {
            HashKind::Vpdq => return 3,
            HashKind::Url => version = version.max(2),
            _ => {}
        }
    }
    version
}

/// Checks that a file read as `version` is written in the version its content needs.
pub(super) fn check_version(version: u16, needed: u16) -> Result<(), FormatError> {
    if version == needed {
        return Ok(());
    }
    let what = |v: u16| match v {
        1 => "entries of the first eight kinds only",
        2 => "url entries or a severity order (and no video entries)",
        _ => "vpdq entries or a video share rule",
    };
    Err(FormatError::NotCanonical {
        detail: format!(
            "a file with {} is written as format version {needed}, this one says {version}",
            what(needed)
        ),
    })
}

/// The share of frames a listed video must have in common with a query video to match it
/// ([`crate::index::vpdq`]), in hundredths of a percent (so that the bytes are exact).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VideoShare {
    /// Of the query's frames that count, the share that must match some frame of the video.
    pub query: u16,
    /// Of the listed video's frames that count, the share that must be matched.
    pub compared: u16,
}

impl VideoShare {
    /// python-threatexchange's defaults: 80% of the query's frames, any share of the video's.
    pub const DEFAULT: VideoShare = VideoShare {
        query: 8000,
        compared: 0,
    };

    /// From percentages (0 to 100, to two decimals).
    pub fn from_percents(query: f64, compared: f64) -> Result<VideoShare, String> {
        let hundredths = |what: &str, p: f64| {
            if (0.0..=100.0).contains(&p) {
                Ok((p * 100.0).round() as u16)
            } else {
                Err(format!("{what} {p} is not a percentage from 0 to 100"))
            }
        };
        Ok(VideoShare {
            query: hundredths("query percent", query)?,
            compared: hundredths("compared percent", compared)?,
        })
    }

    pub fn query_percent(self) -> f64 {
        f64::from(self.query) / 100.0
    }

    pub fn compared_percent(self) -> f64 {
        f64::from(self.compared) / 100.0
    }

    /// The fewest of a query's `len` frames that can meet the query minimum (at least 1: a
    /// match needs a frame in common), in the same whole-number terms as the rule's check.
    pub fn min_frames(self, len: usize) -> usize {
        let needed = (u64::from(self.query) * len as u64).div_ceil(10_000);
        (needed as usize).max(1)
    }

    /// The stricter of two rules, each minimum the higher (an operator may raise a list's).
    pub fn strictest(self, other: VideoShare) -> VideoShare {
        VideoShare {
            query: self.query.max(other.query),
            compared: self.compared.max(other.compared),
        }
    }
}

impl Default for VideoShare {
    fn default() -> Self {
        VideoShare::DEFAULT
    }
}

/// Everything about a list version except its entries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub name: String,
    pub version: u64,
    /// Unix seconds, UTC.
    pub created: i64,
    /// Unix seconds, UTC. A set is refused after this moment.
    pub expires: i64,
    pub description: String,
    /// Per-kind match thresholds (perceptual kinds only, sorted by kind); kinds not listed use
    /// [`HashKind::default_threshold`].
    pub thresholds: Vec<(HashKind, u32)>,
    /// Category names from the most severe down (e.g. `A`, `B`, `C`); matches are ordered by
    /// it. Categories not named here have no severity. Empty: no order (format version 1).
    pub severity: Vec<String>,
    /// What a video match needs (format version 3; [`VideoShare::DEFAULT`] before).
    pub video_share: VideoShare,
}

impl Header {
    /// Whether this version may be used at `now` (Unix seconds): it has not expired.
    pub fn serving(&self, now: i64) -> bool {
        crate::clock::serving(self.expires, now)
    }

    /// The threshold this list sets for `kind`.
    pub fn threshold(&self, kind: HashKind) -> u32 {
        self.thresholds
            .iter()
            .find(|(k, _)| *k == kind)
            .map_or(kind.default_threshold(), |(_, t)| *t)
    }

    /// The severity of `category`: 1 for the most severe of [`Header::severity`], `None` for a
    /// category it does not name.
    pub fn severity_of(&self, category: &str) -> Option<u16> {
        self.severity
            .iter()
            .position(|c| c == category)
            .map(|i| i as u16 + 1)
    }

    /// Checks the header's own rules (also applied when reading).
    pub fn validate(&self) -> Result<(), FormatError> {
        validate_list_name(&self.name)?;
        if self.expires <= self.created {
            return Err(FormatError::invalid(
                "expiry",
                format!(
                    "expires {} is not after created {}",
                    crate::clock::rfc3339(self.expires),
                    crate::clock::rfc3339(self.created)
                ),
            ));
        }
        if self.description.len() > limits::MAX_DESCRIPTION {
            return Err(FormatError::invalid(
                "description",
                format!(
                    "{} bytes, the limit is {}",
                    self.description.len(),
                    limits::MAX_DESCRIPTION
                ),
            ));
        }
        let mut previous: Option<HashKind> = None;
        for &(kind, threshold) in &self.thresholds {
            if !kind.is_perceptual() {
                return Err(FormatError::invalid(
                    "threshold",
                    format!("{kind} is an exact kind; only perceptual kinds have thresholds"),
                ));
            }
            if threshold > kind.max_threshold() {
                return Err(FormatError::invalid(
                    "threshold",
                    format!(
                        "{kind}={threshold} is above the supported maximum {}",
                        kind.max_threshold()
                    ),
                ));
            }
            if previous.is_some_and(|p| p >= kind) {
                return Err(FormatError::invalid(
                    "threshold",
                    "kinds must be sorted and unique",
                ));
            }
            previous = Some(kind);
        }
        if self.severity.len() > limits::MAX_CATEGORIES {
            return Err(FormatError::invalid(
                "severity",
                format!("more than {} categories", limits::MAX_CATEGORIES),
            ));
        }
        for (what, share) in [
            ("query", self.video_share.query),
            ("compared", self.video_share.compared),
        ] {
            if share > 10_000 {
                return Err(FormatError::invalid(
                    "video share",
                    format!("the {what} share is {share} hundredths of a percent, over 100%"),
                ));
            }
        }
        for (i, c) in self.severity.iter().enumerate() {
            if c.len() > limits::MAX_CATEGORY {
                return Err(FormatError::invalid(
                    "severity",
                    format!(
                        "category {c:?} is longer than {} bytes",
                        limits::MAX_CATEGORY
                    ),
                ));
            }
            if self.severity[..i].contains(c) {
                return Err(FormatError::invalid(
                    "severity",
                    format!("category {c:?} is named twice"),
                ));
            }
        }
        Ok(())
    }

    pub(super) fn write(&self, w: &mut Writer, version: u16) {
        w.str16(&self.name);
        w.u64(self.version);
        w.i64(self.created);
        w.i64(self.expires);
        w.str32(&self.description);
        w.u8(self.thresholds.len() as u8);
        for &(kind, threshold) in &self.thresholds {
            w.u8(kind.code());
            w.u16(threshold as u16);
        }
        if version >= 2 {
            w.u16(self.severity.len() as u16);
            for c in &self.severity {
                w.str16(c);
            }
        }
        if version >= 3 {
            w.u16(self.video_share.query);
            w.u16(self.video_share.compared);
        }
    }

    pub(super) fn read(r: &mut Reader<'_>, version: u16) -> Result<Header, FormatError> {
        let name = r.str16("list name", limits::MAX_NAME)?.to_owned();
        let list_version = r.u64("version")?;
        let created = r.i64("created time")?;
        let expires = r.i64("expiry time")?;
        let description = r.str32("description", limits::MAX_DESCRIPTION)?.to_owned();
        let count = r.u8("threshold count")?;
        let mut thresholds = Vec::with_capacity(usize::from(count));
        for _ in 0..count {
            let code = r.u8("threshold kind")?;
            let kind = HashKind::from_code(code).ok_or_else(|| {
                FormatError::invalid("threshold", format!("unknown kind code {code}"))
            })?;
            thresholds.push((kind, u32::from(r.u16("threshold")?)));
        }
        let mut severity = Vec::new();
        if version >= 2 {
            let raw = u64::from(r.u16("severity count")?);
            let count = r.count(raw, 2, "severity order")?;
            for _ in 0..count {
                severity.push(
                    r.str16("severity category", limits::MAX_CATEGORY)?
                        .to_owned(),
                );
            }
        }
        let video_share = if version >= 3 {
            VideoShare {
                query: r.u16("video query share")?,
                compared: r.u16("video compared share")?,
            }
        } else {
            VideoShare::DEFAULT
        };
        let header = Header {
            name,
            version: list_version,
            created,
            expires,
            description,
            thresholds,
            severity,
            video_share,
        };
        header.validate()?;
        Ok(header)
    }
}

/// One entry as read from a file (borrowed) or about to be written.
///
/// The derived order is the canonical order: kind, hash bytes, category, reference.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EntryRef<'a> {
    pub hash: HashValue,
    pub category: &'a str,
    pub reference: &'a str,
}

/// Where one kind's columns sit in the file.
#[derive(Debug, Clone)]
pub struct Section {
    pub kind: HashKind,
    pub count: usize,
    hashes: usize,
    categories: usize,
    ref_ends: usize,
    refs: usize,
}

/// A set's bytes: read into memory (a download, a file given to the CLI) or mapped from the
/// state dir.
#[derive(Clone)]
enum SetBytes {
    Owned(Vec<u8>),
    Mapped(std::sync::Arc<MappedFile>),
}

impl std::ops::Deref for SetBytes {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match self {
            SetBytes::Owned(v) => v,
            SetBytes::Mapped(m) => m.bytes(),
        }
    }
}

impl std::fmt::Debug for SetBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let how = match self {
            SetBytes::Owned(_) => "owned",
            SetBytes::Mapped(_) => "mapped",
        };
        write!(f, "{} bytes ({how})", self.len())
    }
}

/// A parsed, structurally valid and digest-checked `.hset` file. Parsing checks everything
/// that makes the bytes canonical; signatures and trust are checked elsewhere
/// ([`super::trust`]).
#[derive(Debug, Clone)]
pub struct HashSetFile {
    bytes: SetBytes,
    header: Header,
    categories: Vec<String>,
    sections: Vec<Section>,
    digest: [u8; 32],
}

impl HashSetFile {
    /// Parses and checks `bytes`: magic, version, every length against what remains, UTF-8,
    /// canonical order, no trailing bytes, and the BLAKE3 digest.
    pub fn parse(bytes: Vec<u8>) -> Result<HashSetFile, FormatError> {
        HashSetFile::parse_bytes(SetBytes::Owned(bytes))
    }

    /// [`HashSetFile::parse`] of a file memory-mapped rather than read: for the sets in the
    /// state dir, which only this service writes (to a temporary name, then renamed: a mapped
    /// file is never changed in place). A 10 M entry set is ~470 MB that a start would
    /// otherwise copy into fresh memory.
    pub fn open_mapped(
        path: &std::path::Path,
    ) -> std::io::Result<Result<HashSetFile, FormatError>> {
        let map = MappedFile::open(path)?;
        Ok(HashSetFile::parse_bytes(SetBytes::Mapped(
            std::sync::Arc::new(map),
        )))
    }

    fn parse_bytes(bytes: SetBytes) -> Result<HashSetFile, FormatError> {
        let mut r = Reader::new(&bytes);
        let version = r.preamble(SET_MAGIC, "hash-set (.hset)", FORMAT_VERSION)?;
        let header = Header::read(&mut r, version)?;
        let (categories, sections) = read_entries(&mut r)?;
        check_version(
            version,
            version_for(&header, sections.iter().map(|s| s.kind)),
        )?;
        let digest = r.digest_trailer()?;
        Ok(HashSetFile {
            bytes,
            header,
            categories,
            sections,
            digest,
        })
    }

    pub fn header(&self) -> &Header {
        &self.header
    }

    /// The BLAKE3 content digest (the last 32 bytes of the file).
    pub fn digest(&self) -> [u8; 32] {
        self.digest
    }

    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    pub fn categories(&self) -> &[String] {
        &self.categories
    }

    pub fn sections(&self) -> &[Section] {
        &self.sections
    }

    /// Number of entries of all kinds.
    pub fn len(&self) -> usize {
        self.sections.iter().map(|s| s.count).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The hash column of a section: `count` hashes of `kind.byte_len()` bytes, sorted.
    pub fn hashes(&self, section: &Section) -> &[u8] {
        &self.bytes[section.hashes..section.hashes + section.count * section.kind.byte_len()]
    }

    /// Where [`HashSetFile::hashes`] starts in [`HashSetFile::bytes`].
    pub fn hashes_offset(&self, section: &Section) -> usize {
        section.hashes
    }

    /// Entry `i` of a section.
    pub fn entry(&self, section: &Section, i: usize) -> EntryRef<'_> {
        entry_at(&self.bytes, &self.categories, section, i)
    }

    /// Asks the CPU to start loading what [`HashSetFile::entry`] reads for entry `i`: its
    /// category and reference bounds, or (`reference`, once those are cached) its reference
    /// bytes. A batch of matches prefetches all its entries in both passes before reading
    /// them, so their cache misses overlap instead of following one another.
    pub fn prefetch_entry(&self, section: &Section, i: usize, reference: bool) {
        use crate::prefetch::prefetch;
        let bytes = &self.bytes;
        if reference {
            if let Some(b) = bytes.get(section.refs + ref_start(bytes, section, i)) {
                prefetch(b);
            }
        } else {
            for at in [section.categories + 2 * i, section.ref_ends + 4 * i] {
                if let Some(b) = bytes.get(at) {
                    prefetch(b);
                }
            }
        }
    }

    /// All entries in canonical order.
    pub fn entries(&self) -> impl Iterator<Item = EntryRef<'_>> + '_ {
        self.sections
            .iter()
            .flat_map(move |s| (0..s.count).map(move |i| self.entry(s, i)))
    }

    /// The number of videos: distinct (category, reference) pairs among the `vpdq` entries.
    pub fn videos(&self) -> usize {
        let Some(section) = self.sections.iter().find(|s| s.kind == HashKind::Vpdq) else {
            return 0;
        };
        let videos: std::collections::HashSet<(&str, &str)> = (0..section.count)
            .map(|i| {
                let e = self.entry(section, i);
                (e.category, e.reference)
            })
            .collect();
        videos.len()
    }

    /// Entry counts per kind, in kind order.
    pub fn counts(&self) -> Vec<(HashKind, usize)> {
        self.sections.iter().map(|s| (s.kind, s.count)).collect()
    }
}

/// Entry `i` of `section` in `bytes` (which [`read_entries`] has checked).
pub(super) fn entry_at<'a>(
    bytes: &'a [u8],
    categories: &'a [String],
    section: &Section,
    i: usize,
) -> EntryRef<'a> {
    let len = section.kind.byte_len();
    let raw = &bytes[section.hashes + i * len..section.hashes + (i + 1) * len];
    let cat_at = section.categories + 2 * i;
    let cat = u16::from_le_bytes([bytes[cat_at], bytes[cat_at + 1]]);
    let end = read_u32(bytes, section.ref_ends + 4 * i) as usize;
    let start = ref_start(bytes, section, i);
    // read_entries checked every index, offset and UTF-8 sequence used here.
    let reference =
        std::str::from_utf8(&bytes[section.refs + start..section.refs + end]).unwrap_or("");
    EntryRef {
        hash: HashValue::from_bytes(section.kind, raw)
            .expect("section slices have the kind's length"),
        category: categories.get(usize::from(cat)).map_or("", String::as_str),
        reference,
    }
}

/// Where entry `i`'s reference starts in its section's reference bytes (the end of the one
/// before; `i` is an entry of the section, whose offsets `read_entries` checked).
fn ref_start(bytes: &[u8], section: &Section, i: usize) -> usize {
    match i.checked_sub(1) {
        Some(before) => read_u32(bytes, section.ref_ends + 4 * before) as usize,
        None => 0,
    }
}

fn read_u32(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}

/// Reads the category table and the per-kind sections, checking canonical order.
pub(super) fn read_entries(r: &mut Reader<'_>) -> Result<(Vec<String>, Vec<Section>), FormatError> {
    let raw = u64::from(r.u16("category count")?);
    let n_categories = r.count(raw, 2, "category table")?;
    let mut categories: Vec<String> = Vec::with_capacity(n_categories);
    for _ in 0..n_categories {
        let c = r.str16("category", limits::MAX_CATEGORY)?;
        if categories.last().is_some_and(|p| p.as_str() >= c) {
            return Err(FormatError::NotCanonical {
                detail: format!("category {c:?} is out of order or repeated"),
            });
        }
        categories.push(c.to_owned());
    }
    let mut used = vec![false; n_categories];
    let n_sections = r.u8("section count")?;
    let mut sections: Vec<Section> = Vec::with_capacity(usize::from(n_sections));
    for _ in 0..n_sections {
        let code = r.u8("section kind")?;
        let kind = HashKind::from_code(code)
            .ok_or_else(|| FormatError::invalid("section", format!("unknown kind code {code}")))?;
        if sections.last().is_some_and(|s| s.kind >= kind) {
            return Err(FormatError::NotCanonical {
                detail: format!("section {kind} is out of order or repeated"),
            });
        }
        let raw = r.u64("entry count")?;
        let len = kind.byte_len();
        let count = r.count(raw, len + 2 + 4, "entries")?;
        if count == 0 {
            return Err(FormatError::NotCanonical {
                detail: format!("empty {kind} section"),
            });
        }
        let hashes_at = r.position();
        let hashes = r.take(count * len, "hashes")?;
        let cats_at = r.position();
        let cats = r.take(count * 2, "category indices")?;
        let ends_at = r.position();
        let ends = r.take(count * 4, "reference offsets")?;
        // The offsets are checked in one pass and read again in the next, rather than kept
        // as a list of spans: at 50 M entries that list was 800 MB of fresh pages.
        let end_at =
            |chunk: &[u8]| u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]) as usize;
        let mut previous_end = 0usize;
        for chunk in ends.chunks_exact(4) {
            let end = end_at(chunk);
            if end < previous_end || end - previous_end > limits::MAX_REFERENCE {
                return Err(FormatError::invalid(
                    "reference offsets",
                    format!(
                        "{kind} offsets must grow by at most {} bytes each",
                        limits::MAX_REFERENCE
                    ),
                ));
            }
            previous_end = end;
        }
        let refs_at = r.position();
        let refs = r.take(previous_end, "references")?;
        let spans = ends.chunks_exact(4).scan(0usize, |start, chunk| {
            let end = end_at(chunk);
            let span = (*start, end);
            *start = end;
            Some(span)
        });
        // For vpdq: the current PDQ hash and the videos (category, reference) holding it (a
        // video lists each hash once).
        let mut run_hash: Option<&[u8]> = None;
        let mut run_videos: std::collections::HashSet<(u16, &[u8])> = Default::default();
        let mut previous: Option<(&[u8], u16, &[u8])> = None;
        for (i, (hash, (cat, (start, end)))) in hashes
            .chunks_exact(len)
            .zip(cats.chunks_exact(2).zip(spans))
            .enumerate()
        {
            let cat = u16::from_le_bytes([cat[0], cat[1]]);
            let slot = used.get_mut(usize::from(cat)).ok_or_else(|| {
                FormatError::invalid(
                    "category index",
                    format!("{kind} entry {i} uses category {cat} of {n_categories}"),
                )
            })?;
            *slot = true;
            let reference = &refs[start..end];
            if kind == HashKind::Vpdq {
                check_frame(i, hash[32], reference)?;
                let pdq = &hash[..32];
                if run_hash != Some(pdq) {
                    run_hash = Some(pdq);
                    run_videos.clear();
                }
                if !run_videos.insert((cat, reference)) {
                    return Err(FormatError::NotCanonical {
                        detail: format!(
                            "vpdq entry {i} repeats a frame hash of its video with another quality"
                        ),
                    });
                }
            }
            if std::str::from_utf8(reference).is_err() {
                return Err(FormatError::BadUtf8 {
                    what: "reference",
                    offset: refs_at + start,
                });
            }
            let current = (hash, cat, reference);
            if previous.is_some_and(|p| p >= current) {
                return Err(FormatError::NotCanonical {
                    detail: format!("{kind} entry {i} is out of order or repeated"),
                });
            }
            previous = Some(current);
        }
        sections.push(Section {
            kind,
            count,
            hashes: hashes_at,
            categories: cats_at,
            ref_ends: ends_at,
            refs: refs_at,
        });
    }
    if let Some(unused) = used.iter().position(|u| !u) {
        return Err(FormatError::NotCanonical {
            detail: format!("category {:?} is not used by any entry", categories[unused]),
        });
    }
    Ok((categories, sections))
}

/// A `vpdq` entry's own rules: a quality of at most 100, and a reference (a video is the
/// frames that share one).
fn check_frame(i: usize, quality: u8, reference: &[u8]) -> Result<(), FormatError> {
    if quality > 100 {
        return Err(FormatError::invalid(
            "vpdq entry",
            format!("entry {i} has quality {quality}, over 100"),
        ));
    }
    if reference.is_empty() {
        return Err(FormatError::invalid(
            "vpdq entry",
            format!("entry {i} has no reference (a video's frames share one)"),
        ));
    }
    Ok(())
}

mod table;
pub use table::{EntryError, EntryTable};

#[cfg(test)]
pub(crate) mod tests;

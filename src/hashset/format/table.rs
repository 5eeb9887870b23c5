//! Writing sets: entries collected in any order, made canonical (sorted, unique, categories
//! interned and ordered, one frame per PDQ hash per video) and written as `.hset` bytes.

use std::collections::HashMap;

use rayon::slice::ParallelSliceMut;

use super::super::codec::Writer;
use super::super::{FormatError, limits};
use super::{EntryRef, Header, SET_MAGIC, version_for};
use crate::kinds::{HashKind, HashValue};

/// Why an entry cannot be added.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EntryError {
    #[error("category is {0} bytes long, the limit is {max}", max = limits::MAX_CATEGORY)]
    CategoryTooLong(usize),
    #[error("reference is {0} bytes long, the limit is {max}", max = limits::MAX_REFERENCE)]
    ReferenceTooLong(usize),
    #[error("more than {max} distinct categories", max = limits::MAX_CATEGORIES)]
    TooManyCategories,
    #[error("more than 4 GiB of reference text")]
    TooMuchReferenceText,
    #[error("a video frame (vpdq) needs the video's reference")]
    FrameWithoutReference,
    #[error("a video frame's quality is {0}, over 100")]
    FrameQuality(u8),
}

/// Entries collected for writing, kept compact so 10 M of them fit comfortably in memory:
/// the hash inline, the category interned, the reference in one shared byte arena.
#[derive(Default)]
pub struct EntryTable {
    entries: Vec<CompactEntry>,
    categories: Vec<String>,
    category_ids: HashMap<String, u16>,
    arena: Vec<u8>,
}

#[derive(Clone, Copy)]
struct CompactEntry {
    hash: HashValue,
    category: u16,
    ref_len: u16,
    ref_start: u32,
}

impl EntryTable {
    pub fn new() -> EntryTable {
        EntryTable::default()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Adds one entry (duplicates are removed when writing).
    pub fn push(
        &mut self,
        hash: HashValue,
        category: &str,
        reference: &str,
    ) -> Result<(), EntryError> {
        if category.len() > limits::MAX_CATEGORY {
            return Err(EntryError::CategoryTooLong(category.len()));
        }
        if reference.len() > limits::MAX_REFERENCE {
            return Err(EntryError::ReferenceTooLong(reference.len()));
        }
        if let Some(quality) = hash.frame_quality() {
            if reference.is_empty() {
                return Err(EntryError::FrameWithoutReference);
            }
            if quality > 100 {
                return Err(EntryError::FrameQuality(quality));
            }
        }
        let category = match self.category_ids.get(category) {
            Some(&id) => id,
            None => {
                let id = u16::try_from(self.categories.len())
                    .ok()
                    .filter(|&id| usize::from(id) < limits::MAX_CATEGORIES)
                    .ok_or(EntryError::TooManyCategories)?;
                self.categories.push(category.to_owned());
                self.category_ids.insert(category.to_owned(), id);
                id
            }
        };
        let ref_start =
            u32::try_from(self.arena.len()).map_err(|_| EntryError::TooMuchReferenceText)?;
        self.arena.extend_from_slice(reference.as_bytes());
        if u32::try_from(self.arena.len()).is_err() {
            return Err(EntryError::TooMuchReferenceText);
        }
        self.entries.push(CompactEntry {
            hash,
            category,
            ref_len: reference.len() as u16,
            ref_start,
        });
        Ok(())
    }

    /// The kinds of the entries pushed so far (with repeats).
    pub(in crate::hashset) fn kinds(&self) -> impl Iterator<Item = HashKind> + '_ {
        self.entries.iter().map(|e| e.hash.kind())
    }

    /// Adds an entry read from another file.
    pub fn push_ref(&mut self, entry: EntryRef<'_>) -> Result<(), EntryError> {
        self.push(entry.hash, entry.category, entry.reference)
    }

    /// Serializes a canonical `.hset`: entries sorted and deduplicated, the category table
    /// holding exactly the categories used. Returns the bytes and the content digest.
    pub fn to_set_bytes(self, header: &Header) -> Result<(Vec<u8>, [u8; 32]), FormatError> {
        header.validate()?;
        let version = version_for(header, self.kinds());
        let mut w = Writer::default();
        w.bytes(SET_MAGIC);
        w.u16(version);
        header.write(&mut w, version);
        self.write_canonical(&mut w);
        let digest = w.seal();
        Ok((w.buf, digest))
    }

    /// Writes the entries in canonical form (category table + sections), as sets and deltas
    /// both store them.
    pub(in crate::hashset) fn write_canonical(mut self, w: &mut Writer) {
        let categories = self.canonicalize();
        self.write_entries(&categories, w);
    }

    /// Sorts, deduplicates and renumbers categories by name; returns the category table.
    fn canonicalize(&mut self) -> Vec<String> {
        // Category ids become ranks in name order, so sorting by id sorts by name.
        let mut order: Vec<u16> = (0..self.categories.len() as u16).collect();
        order.sort_by(|&a, &b| {
            self.categories[usize::from(a)].cmp(&self.categories[usize::from(b)])
        });
        let mut rank = vec![0u16; self.categories.len()];
        for (r, &id) in order.iter().enumerate() {
            rank[usize::from(id)] = r as u16;
        }
        for e in &mut self.entries {
            e.category = rank[usize::from(e.category)];
        }
        let arena = &self.arena;
        let reference = |e: &CompactEntry| {
            &arena[e.ref_start as usize..e.ref_start as usize + usize::from(e.ref_len)]
        };
        self.entries.par_sort_unstable_by(|a, b| {
            (a.hash, a.category, reference(a)).cmp(&(b.hash, b.category, reference(b)))
        });
        self.entries.dedup_by(|a, b| {
            a.hash == b.hash && a.category == b.category && reference(a) == reference(b)
        });
        self.keep_best_frames();
        // Keep only categories still used, renumbered densely (still in name order).
        let mut used = vec![false; self.categories.len()];
        for e in &self.entries {
            used[usize::from(e.category)] = true;
        }
        let mut new_id = vec![0u16; self.categories.len()];
        let mut table = Vec::new();
        for (r, &id) in order.iter().enumerate() {
            if used[r] {
                new_id[r] = table.len() as u16;
                table.push(self.categories[usize::from(id)].clone());
            }
        }
        for e in &mut self.entries {
            e.category = new_id[usize::from(e.category)];
        }
        table
    }

    /// A video lists each frame hash once: of the `vpdq` entries of one video with the same
    /// PDQ hash (sorted, so in one run of that hash), only the best quality stays.
    fn keep_best_frames(&mut self) {
        let arena = &self.arena;
        let key = |e: &CompactEntry| {
            (
                e.category,
                &arena[e.ref_start as usize..e.ref_start as usize + usize::from(e.ref_len)],
            )
        };
        let Some(start) = self
            .entries
            .iter()
            .position(|e| e.hash.kind() == HashKind::Vpdq)
        else {
            return;
        };
        let mut keep = vec![true; self.entries.len()];
        let mut best: HashMap<(u16, &[u8]), usize> = HashMap::new();
        let mut i = start;
        while i < self.entries.len() {
            let code = self.entries[i].hash.code();
            let end = i + self.entries[i..]
                .iter()
                .take_while(|e| e.hash.code() == code)
                .count();
            best.clear();
            // Within a run, entries are sorted by quality (the hash's last byte) first.
            for j in i..end {
                if let Some(worse) = best.insert(key(&self.entries[j]), j) {
                    keep[worse] = false;
                }
            }
            i = end;
        }
        let mut flags = keep.into_iter();
        self.entries.retain(|_| flags.next().unwrap_or(true));
    }

    fn write_entries(&self, categories: &[String], w: &mut Writer) {
        w.u16(categories.len() as u16);
        for c in categories {
            w.str16(c);
        }
        let mut kinds: Vec<HashKind> = self.entries.iter().map(|e| e.hash.kind()).collect();
        kinds.dedup();
        w.u8(kinds.len() as u8);
        let mut rest = &self.entries[..];
        for kind in kinds {
            let n = rest.iter().take_while(|e| e.hash.kind() == kind).count();
            let (section, tail) = rest.split_at(n);
            rest = tail;
            w.u8(kind.code());
            w.u64(n as u64);
            for e in section {
                w.bytes(e.hash.as_bytes());
            }
            for e in section {
                w.u16(e.category);
            }
            let mut end = 0u32;
            for e in section {
                end += u32::from(e.ref_len);
                w.u32(end);
            }
            for e in section {
                w.bytes(
                    &self.arena
                        [e.ref_start as usize..e.ref_start as usize + usize::from(e.ref_len)],
                );
            }
        }
    }
}

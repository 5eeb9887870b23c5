//! Exact lookups of fixed-size random keys (MD5, SHA-1, SHA-256, BLAKE3 digests).
//!
//! [`ExactTable`] is the sorted key column of a hash set (which the `.hset` format already
//! stores sorted) plus a radix directory over the keys' leading bits: one directory read and
//! one short scan of a handful of keys, usually two cache misses. Because cryptographic
//! digests are uniformly distributed, the directory spreads them evenly; `benches/lookup.rs`
//! compares this with `fst::Map` and `std::collections::HashMap` (`docs/index-design.md`
//! says why this layout won).
//!
//! [`ExactFilter`] is an optional binary-fuse filter (`xorf`) in front: about 9 bits per key,
//! it answers most misses from a structure small enough to stay in cache.

use std::ops::Range;

use xorf::{BinaryFuse8, Descriptor, Filter};

use super::column::Column;
use crate::prefetch::prefetch;

/// Sorted fixed-size keys with a radix directory. Equal keys (one hash under several
/// references) are adjacent; a lookup returns the whole run.
#[derive(Debug, Clone)]
pub struct ExactTable {
    key_len: usize,
    keys: Column<u8>,
    /// Number of leading key bits the directory uses.
    bits: u32,
    /// `directory[p]` is the index of the first key whose leading `bits` bits are >= p;
    /// it has `2^bits + 1` slots.
    directory: Column<u32>,
}

/// Why a table cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TableError {
    #[error("key column of {len} bytes is not a whole number of {key_len}-byte keys")]
    Ragged { len: usize, key_len: usize },
    #[error("keys are not sorted at index {index}")]
    Unsorted { index: usize },
    #[error("{count} keys are more than a table holds (u32 indices)")]
    TooMany { count: usize },
    #[error("directory of {got} slots does not fit {count} keys at {bits} bits")]
    BadDirectory { bits: u32, got: usize, count: usize },
}

impl ExactTable {
    /// Builds a table over `keys`: `key_len`-byte keys, concatenated, sorted ascending (as a
    /// `.hset` section stores them). Checks the order rather than trusting it.
    pub fn new(key_len: usize, keys: Vec<u8>) -> Result<ExactTable, TableError> {
        ExactTable::from_column(key_len, Column::Owned(keys))
    }

    /// [`ExactTable::new`] over keys that may live elsewhere (a verified set's hash column,
    /// used in place).
    pub fn from_column(key_len: usize, keys: Column<u8>) -> Result<ExactTable, TableError> {
        if key_len < 4 || !keys.len().is_multiple_of(key_len) {
            return Err(TableError::Ragged {
                len: keys.len(),
                key_len,
            });
        }
        let count = keys.len() / key_len;
        if u32::try_from(count).is_err() {
            return Err(TableError::TooMany { count });
        }
        if let Some(index) = keys
            .chunks_exact(key_len)
            .zip(keys.chunks_exact(key_len).skip(1))
            .position(|(a, b)| a > b)
        {
            return Err(TableError::Unsorted { index: index + 1 });
        }
        // About two keys per directory slot: the directory costs ~2 bytes per key and the scan
        // after it touches one cache line.
        let bits = (usize::BITS - count.leading_zeros())
            .saturating_sub(1)
            .clamp(4, 26);
        let slots = 1usize << bits;
        let mut directory = vec![0u32; slots + 1];
        let mut next = 0usize;
        for (i, key) in keys.chunks_exact(key_len).enumerate() {
            let p = prefix(key, bits);
            while next <= p {
                directory[next] = i as u32;
                next += 1;
            }
        }
        for slot in directory.iter_mut().skip(next) {
            *slot = count as u32;
        }
        Ok(ExactTable {
            key_len,
            keys,
            bits,
            directory: Column::Owned(directory),
        })
    }

    /// A table from parts saved by [`ExactTable::parts`] (a persisted index). The directory
    /// is checked so that no lookup can index out of bounds: `2^bits + 1` slots,
    /// non-decreasing, ending at the key count.
    pub fn from_parts(
        key_len: usize,
        keys: Column<u8>,
        bits: u32,
        directory: Column<u32>,
    ) -> Result<ExactTable, TableError> {
        if key_len < 4 || !keys.len().is_multiple_of(key_len) {
            return Err(TableError::Ragged {
                len: keys.len(),
                key_len,
            });
        }
        let count = keys.len() / key_len;
        let bad = TableError::BadDirectory {
            bits,
            got: directory.len(),
            count,
        };
        if !(4..=26).contains(&bits) || directory.len() != (1usize << bits) + 1 {
            return Err(bad);
        }
        let ordered = directory.windows(2).all(|w| w[0] <= w[1]);
        if !ordered || directory.first() != Some(&0) || directory.last() != Some(&(count as u32)) {
            return Err(bad);
        }
        Ok(ExactTable {
            key_len,
            keys,
            bits,
            directory,
        })
    }

    /// The directory's bit count and slots, to persist with the index.
    pub fn parts(&self) -> (u32, &[u32]) {
        (self.bits, &self.directory)
    }

    pub fn len(&self) -> usize {
        self.keys.len() / self.key_len
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Indices of the keys equal to `key` (empty when absent).
    #[inline]
    pub fn lookup(&self, key: &[u8]) -> Range<usize> {
        if key.len() != self.key_len {
            return 0..0;
        }
        let (keys, directory): (&[u8], &[u32]) = (&self.keys, &self.directory);
        let p = prefix(key, self.bits);
        let lo = directory[p] as usize;
        let hi = directory[p + 1] as usize;
        // A short scan: ~2 keys per slot on uniform digests.
        scan(keys, self.key_len, key, lo, hi)
    }

    /// Looks up many keys at once: [`ExactTable::lookup`] for each, computed in passes over
    /// the whole batch (directory bounds for every key, then the key scans) so that the
    /// memory accesses of different keys are independent and the CPU overlaps their cache
    /// misses, instead of waiting on each key's two dependent misses in turn.
    pub fn lookup_many(&self, keys: &[&[u8]]) -> Vec<Range<usize>> {
        let (table, directory): (&[u8], &[u32]) = (&self.keys, &self.directory);
        // Three passes, each of independent reads whose misses overlap: prefetch every key's
        // directory slot; read the slots and prefetch the first key of each run; scan.
        for k in keys.iter().filter(|k| k.len() == self.key_len) {
            prefetch(&directory[prefix(k, self.bits)]);
        }
        let bounds: Vec<(u32, u32)> = keys
            .iter()
            .map(|k| {
                if k.len() != self.key_len {
                    return (0, 0);
                }
                let p = prefix(k, self.bits);
                let (lo, hi) = (directory[p], directory[p + 1]);
                if let Some(first) = table.get(lo as usize * self.key_len) {
                    prefetch(first);
                }
                (lo, hi)
            })
            .collect();
        keys.iter()
            .zip(bounds)
            .map(|(k, (lo, hi))| scan(table, self.key_len, k, lo as usize, hi as usize))
            .collect()
    }

    /// Bytes used by keys and directory (wherever they live).
    pub fn memory_bytes(&self) -> usize {
        self.keys.len() + self.directory.len() * 4
    }
}

/// Finds the run of keys equal to `key` among positions `lo..hi` of `keys` (`len` bytes each).
#[inline]
fn scan(keys: &[u8], len: usize, key: &[u8], lo: usize, hi: usize) -> Range<usize> {
    let mut i = lo;
    while i < hi {
        let k = &keys[i * len..(i + 1) * len];
        match k.cmp(key) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Equal => {
                let mut j = i + 1;
                while j < hi && &keys[j * len..(j + 1) * len] == key {
                    j += 1;
                }
                return i..j;
            }
            std::cmp::Ordering::Greater => break,
        }
    }
    0..0
}

/// The leading `bits` bits of a key (at most 32 bits, from its first four bytes).
#[inline]
fn prefix(key: &[u8], bits: u32) -> usize {
    let head = u32::from_be_bytes([key[0], key[1], key[2], key[3]]);
    (head >> (32 - bits)) as usize
}

/// A probabilistic "definitely absent" test in front of an [`ExactTable`].
#[derive(Debug, Clone)]
pub struct ExactFilter {
    state: FilterState,
}

#[derive(Debug, Clone)]
enum FilterState {
    /// No keys: everything is absent.
    Empty,
    Built(BinaryFuse8),
    /// Construction failed (it can, rarely): every key must be looked up.
    PassAll,
}

impl ExactFilter {
    /// Builds a filter over the keys of `table` (empty tables get a filter that rejects all).
    pub fn new(table: &ExactTable) -> ExactFilter {
        let mut fingerprints: Vec<u64> = table
            .keys
            .chunks_exact(table.key_len)
            .map(fingerprint)
            .collect();
        // Distinct keys can share a fingerprint; binary fuse construction needs unique input.
        fingerprints.sort_unstable();
        fingerprints.dedup();
        let state = if fingerprints.is_empty() {
            FilterState::Empty
        } else {
            BinaryFuse8::try_from(&fingerprints).map_or(FilterState::PassAll, FilterState::Built)
        };
        ExactFilter { state }
    }

    /// `false` means the key is certainly absent; `true` means "look it up" (about 0.4% of
    /// absent keys also say `true`). A filter that could not be built passes everything.
    #[inline]
    pub fn may_contain(&self, key: &[u8]) -> bool {
        match &self.state {
            FilterState::Built(f) => f.contains(&fingerprint(key)),
            FilterState::Empty => false,
            FilterState::PassAll => true,
        }
    }

    /// The ids among `ids` whose key may be present ([`ExactFilter::may_contain`] on
    /// `key_of(id)`), in order. Works through the batch in blocks of 64 keys: the block is
    /// hashed in one vector loop (`hash_block`), the three filter slots of each of its keys
    /// prefetched, then checked, so the cache misses of different keys overlap; the slots
    /// computed for the prefetch are the ones checked (`fuse_probe`, our copy of xorf's
    /// formula, tested against `BinaryFuse8::contains` on members and non-members). Few keys
    /// pass (members, and ~0.4% of the rest), so the answer is built by a well-predicted
    /// branch rather than by compacting a copy of `ids`.
    /// `prefetch_key(id)` asks for the memory holding `id`'s key: a batch's keys were
    /// written by the parser megabytes earlier, and their first reads would otherwise be
    /// misses one after another (`docs/index-design.md`, "Exact kinds").
    pub fn possible<'k>(
        &self,
        ids: &[u32],
        key_of: impl Fn(u32) -> &'k [u8],
        prefetch_key: impl Fn(u32),
    ) -> Vec<u32> {
        let f = match &self.state {
            FilterState::Built(f) => f,
            FilterState::Empty => return Vec::new(),
            FilterState::PassAll => return ids.to_vec(),
        };
        if ids.len() < FILTER_BLOCK / 4 {
            // A single GET or a small batch: hashing and staging whole blocks of 64 keys
            // would be most of its cost.
            return ids
                .iter()
                .copied()
                .filter(|&id| f.contains(&fingerprint(key_of(id))))
                .collect();
        }
        let fingerprints: &[u8] = &f.fingerprints;
        // A slot out of range cannot happen with a checked descriptor; it would pass the key
        // on to the table (never a false "absent").
        let slot = |h: u32| fingerprints.get(h as usize).copied();
        let mut keys = [0u64; FILTER_BLOCK];
        // Two blocks in flight: block b + 1 is hashed and its slots prefetched before block
        // b is checked, so misses stay outstanding while the checks run.
        let mut blocks = [ProbeBlock::default(), ProbeBlock::default()];
        let mut passed = Vec::new();
        let mut stage = |b: usize, block: &mut ProbeBlock| {
            // The keys two blocks on, whose first read would otherwise wait on memory.
            for &id in ids.iter().skip((b + 2) * FILTER_BLOCK).take(FILTER_BLOCK) {
                prefetch_key(id);
            }
            let chunk = ids.chunks(FILTER_BLOCK).nth(b).unwrap_or_default();
            if chunk.is_empty() {
                return; // past the last block: nothing to hash or prefetch
            }
            for (key, &id) in keys.iter_mut().zip(chunk) {
                *key = fingerprint(key_of(id));
            }
            hash_block(&f.descriptor, &keys, block);
            for k in 0..chunk.len() {
                for h in [block.h0[k], block.h1[k], block.h2[k]] {
                    if let Some(at) = fingerprints.get(h as usize) {
                        prefetch(at);
                    }
                }
            }
        };
        stage(0, &mut blocks[0]);
        for (b, chunk) in ids.chunks(FILTER_BLOCK).enumerate() {
            let [even, odd] = &mut blocks;
            let (block, next) = if b % 2 == 0 {
                (&*even, odd)
            } else {
                (&*odd, even)
            };
            stage(b + 1, next);
            for (k, &id) in chunk.iter().enumerate() {
                let possible = match (slot(block.h0[k]), slot(block.h1[k]), slot(block.h2[k])) {
                    (Some(a), Some(b), Some(c)) => block.fp[k] ^ a ^ b ^ c == 0,
                    _ => true,
                };
                if possible {
                    passed.push(id);
                }
            }
        }
        passed
    }

    pub fn memory_bytes(&self) -> usize {
        match &self.state {
            FilterState::Built(f) => f.fingerprints.len(),
            _ => 0,
        }
    }

    /// What to persist: `None` for a filter that rejects all (no keys), `Some(None)` for
    /// one that passes all, else the binary-fuse descriptor and fingerprints.
    pub fn parts(&self) -> Option<Option<(Descriptor, &[u8])>> {
        match &self.state {
            FilterState::Empty => None,
            FilterState::PassAll => Some(None),
            FilterState::Built(f) => Some(Some((f.descriptor.clone(), &f.fingerprints))),
        }
    }

    /// A filter from [`ExactFilter::parts`]. The descriptor is checked against the
    /// fingerprints so that no probe can index past them (a probe lands in the segment
    /// after its first one or the one after that, all below `segment_count_length + 2 *
    /// segment_length`, computed in u32); the fingerprints are copied (about one byte per
    /// key).
    pub fn from_parts(parts: Option<Option<(Descriptor, &[u8])>>) -> Option<ExactFilter> {
        let state = match parts {
            None => FilterState::Empty,
            Some(None) => FilterState::PassAll,
            Some(Some((d, fingerprints))) => {
                let reach = u64::from(d.segment_count_length) + 3 * u64::from(d.segment_length);
                let sane = d.segment_length.is_power_of_two()
                    && d.segment_length_mask == d.segment_length - 1
                    && d.segment_count_length.is_multiple_of(d.segment_length)
                    && reach <= u64::from(u32::MAX)
                    && reach <= fingerprints.len() as u64 + u64::from(d.segment_length);
                if !sane {
                    return None;
                }
                FilterState::Built(BinaryFuse8 {
                    descriptor: d,
                    fingerprints: fingerprints.into(),
                })
            }
        };
        Some(ExactFilter { state })
    }
}

/// Where a key lands in a binary fuse filter: its three slots and its 8-bit fingerprint
/// (present iff the fingerprint XOR the three slots is 0).
#[derive(Debug, Clone, Copy)]
struct Probe {
    slots: [u32; 3],
    fingerprint: u8,
}

/// Keys [`ExactFilter::possible`] hashes at once.
const FILTER_BLOCK: usize = 64;

/// The probes of a block of keys, lane by lane (so that hashing them is a vector loop).
#[derive(Debug, Clone, Copy)]
struct ProbeBlock {
    h0: [u32; FILTER_BLOCK],
    h1: [u32; FILTER_BLOCK],
    h2: [u32; FILTER_BLOCK],
    fp: [u8; FILTER_BLOCK],
}

impl Default for ProbeBlock {
    fn default() -> ProbeBlock {
        ProbeBlock {
            h0: [0; FILTER_BLOCK],
            h1: [0; FILTER_BLOCK],
            h2: [0; FILTER_BLOCK],
            fp: [0; FILTER_BLOCK],
        }
    }
}

/// [`fuse_probe`] for a block of keys: a loop over arrays without branches, which the
/// compiler turns into vector code (8 keys per instruction with AVX-512, chosen at run time).
#[multiversion::multiversion(targets("x86_64+avx512f+avx512dq+avx512vl", "x86_64+avx2"))]
fn hash_block(d: &Descriptor, keys: &[u64; FILTER_BLOCK], out: &mut ProbeBlock) {
    for (k, &key) in keys.iter().enumerate() {
        let p = fuse_probe(d, key);
        out.h0[k] = p.slots[0];
        out.h1[k] = p.slots[1];
        out.h2[k] = p.slots[2];
        out.fp[k] = p.fingerprint;
    }
}

/// xorf 0.13's `BinaryFuse8` hashing (murmur3 finaliser of key + seed, slots from the high
/// bits, fingerprint `h ^ h >> 32`), which xorf does not export: copied so that a batch can
/// prefetch a key's slots before it checks them. `batch_probes_match_the_filter` checks it
/// against the filter's own answers.
#[inline(always)]
fn fuse_probe(d: &Descriptor, key: u64) -> Probe {
    let h = fuse_hash(d.seed, key);
    // The high half of the 64 x 32-bit product `h * segment_count_length`, from two 32 x
    // 32-bit products (the same value as xorf's 128-bit multiply; vector units have these).
    let scl = u64::from(d.segment_count_length);
    let h0 = (((h >> 32) * scl + (((h & 0xffff_ffff) * scl) >> 32)) >> 32) as u32;
    let h1 = h0.wrapping_add(d.segment_length) ^ (((h >> 18) as u32) & d.segment_length_mask);
    let h2 =
        h0.wrapping_add(2u32.wrapping_mul(d.segment_length)) ^ ((h as u32) & d.segment_length_mask);
    Probe {
        slots: [h0, h1, h2],
        fingerprint: (h ^ (h >> 32)) as u8,
    }
}

/// xorf's key hash: the murmur3 finaliser of `key + seed`.
#[inline(always)]
fn fuse_hash(seed: u64, key: u64) -> u64 {
    let mut h = key.wrapping_add(seed);
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

/// 64 bits taken from the key: digests are uniform, and the filter mixes them again.
#[inline]
fn fingerprint(key: &[u8]) -> u64 {
    if let (Some(head), Some(body)) = (key.first_chunk::<4>(), key.get(4..12)) {
        // Every digest kind is 16 bytes or more: two plain loads.
        let body: [u8; 8] = body.try_into().unwrap_or_default();
        return u64::from_le_bytes(body) ^ u64::from(u32::from_be_bytes(*head));
    }
    let mut raw = [0u8; 8];
    for (d, s) in raw.iter_mut().zip(key.iter().skip(4)) {
        *d = *s;
    }
    u64::from_le_bytes(raw) ^ u64::from(u32::from_be_bytes([key[0], key[1], key[2], key[3]]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(n: usize, len: usize, seed: u64) -> Vec<Vec<u8>> {
        use rand::{RngExt, SeedableRng};
        let mut rng = rand::rngs::SmallRng::seed_from_u64(seed);
        let mut out: Vec<Vec<u8>> = (0..n)
            .map(|_| (0..len).map(|_| rng.random::<u8>()).collect())
            .collect();
        out.sort();
        out
    }

    #[test]
    fn finds_every_key_and_runs_of_duplicates() {
        for (n, len) in [(0, 16), (1, 20), (37, 32), (5000, 16)] {
            let mut ks = keys(n, len, n as u64 + 3);
            if n > 10 {
                let dup = ks[7].clone();
                ks.insert(7, dup.clone());
                ks.insert(7, dup);
            }
            let table = ExactTable::new(len, ks.concat()).unwrap();
            let filter = ExactFilter::new(&table);
            let refs: Vec<&[u8]> = ks.iter().map(Vec::as_slice).collect();
            let many = table.lookup_many(&refs);
            for (i, k) in ks.iter().enumerate() {
                let r = table.lookup(k);
                assert_eq!(many[i], r);
                assert!(r.contains(&i), "n={n} i={i} {r:?}");
                assert!(r.clone().all(|j| &ks[j] == k));
                assert!(filter.may_contain(k), "filters have no false negatives");
            }
            if n > 10 {
                assert_eq!(table.lookup(&ks[7]).len(), 3);
            }
            let absent = keys(200, len, 999_999);
            let mut false_positives = 0;
            for k in &absent {
                if !ks.contains(k) {
                    assert!(table.lookup(k).is_empty());
                    false_positives += usize::from(filter.may_contain(k));
                }
            }
            assert!(false_positives <= 10, "{false_positives}");
            assert!(table.lookup(&[0u8; 3]).is_empty(), "wrong length is absent");
        }
    }

    #[test]
    fn batch_probes_match_the_filter() {
        // Our copy of xorf's slot formula must name the slots `contains` reads: recompute
        // membership from those slots and compare with the filter on members and non-members.
        let ks = keys(20_000, 32, 77);
        let table = ExactTable::new(32, ks.concat()).unwrap();
        let filter = ExactFilter::new(&table);
        let FilterState::Built(f) = &filter.state else {
            panic!("filter not built")
        };
        let probes = ks.iter().cloned().chain(keys(20_000, 32, 78));
        for k in probes {
            let key = fingerprint(&k);
            let p = fuse_probe(&f.descriptor, key);
            let ours = p.fingerprint
                ^ f.fingerprints[p.slots[0] as usize]
                ^ f.fingerprints[p.slots[1] as usize]
                ^ f.fingerprints[p.slots[2] as usize];
            assert_eq!(ours == 0, f.contains(&key));
        }
        // And the batch path agrees with the filter key by key (no false negatives).
        // (A count that is not a multiple of the 64-key block: the last block is partial.)
        let mixed: Vec<Vec<u8>> = ks.iter().cloned().chain(keys(20_037, 32, 79)).collect();
        let all: Vec<u32> = (0..mixed.len() as u32).collect();
        let ids = filter.possible(&all, |i| &mixed[i as usize], |_| ());
        let expected: Vec<u32> = (0..mixed.len() as u32)
            .filter(|&i| f.contains(&fingerprint(&mixed[i as usize])))
            .collect();
        assert_eq!(ids, expected);
        assert!(ids.len() >= ks.len() && ids[..ks.len()].iter().copied().eq(0..ks.len() as u32));
        // Small batches (a single GET) take a key-at-a-time path: the same answers.
        for n in [1usize, 2, 15, 16, 17, 63, 64, 65] {
            let some: Vec<u32> = all.iter().copied().skip(19_990).take(n).collect();
            let got = filter.possible(&some, |i| &mixed[i as usize], |_| ());
            let want: Vec<u32> = some
                .iter()
                .copied()
                .filter(|&i| f.contains(&fingerprint(&mixed[i as usize])))
                .collect();
            assert_eq!(got, want, "{n} keys");
            assert!(
                some.iter()
                    .filter(|&&i| (i as usize) < ks.len())
                    .all(|i| got.contains(i))
            );
        }
    }

    #[test]
    fn first_slot_is_the_high_half_of_the_product() {
        // `fuse_probe` builds xorf's `(h * segment_count_length) >> 64` from 32-bit halves.
        for scl in [1u32, 3, 1 << 20, 0x8000_0001, u32::MAX] {
            let d = Descriptor {
                seed: 0x9e37_79b9_7f4a_7c15,
                segment_length: 1 << 12,
                segment_length_mask: (1 << 12) - 1,
                segment_count_length: scl,
            };
            for key in [0, 1, u64::MAX, 0x0123_4567_89ab_cdef, 1 << 63] {
                let wide = ((u128::from(fuse_hash(d.seed, key)) * u128::from(scl)) >> 64) as u32;
                assert_eq!(fuse_probe(&d, key).slots[0], wide, "key {key:#x} scl {scl}");
            }
        }
    }

    #[test]
    fn extreme_keys_are_found() {
        let ks = [vec![0u8; 16], vec![0x80; 16], vec![0xff; 16]];
        let table = ExactTable::new(16, ks.concat()).unwrap();
        for (i, k) in ks.iter().enumerate() {
            assert_eq!(table.lookup(k), i..i + 1);
        }
    }

    #[test]
    fn unsorted_or_ragged_input_is_refused() {
        assert_eq!(
            ExactTable::new(16, vec![0; 17]).unwrap_err(),
            TableError::Ragged {
                len: 17,
                key_len: 16
            }
        );
        let mut ks = keys(10, 16, 5);
        ks.swap(2, 3);
        assert!(matches!(
            ExactTable::new(16, ks.concat()),
            Err(TableError::Unsorted { .. })
        ));
    }
}

//! Exact lookups of fixed-size random keys (MD5, SHA-1, SHA-256, BLAKE3 digests).
//!
//! [`ExactTable`] is the sorted key column of a hash set (which the `.hset` format already
//! stores sorted) plus a radix directory over the keys' leading bits: one directory read and
//! one short scan of a handful of keys, usually two cache misses. Because cryptographic
//! digests are uniformly distributed, the directory spreads them evenly; `benches/lookup.rs`
//! compares this with `fst::Map` and `std::collections::HashMap` (`docs/index-design.md`
//! says why this layout won).
//!
//! [`ExactFilter`] is a blocked Bloom filter in front: 12 bits per key, one word read per
//! check, it answers most misses from a structure small enough to stay in cache.

use std::ops::Range;

use super::column::Column;
use crate::prefetch::{prefetch, prefetch_to};

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
                // Every line of the run (about two keys: often two lines), the scan's reads.
                let run = lo as usize * self.key_len..hi as usize * self.key_len;
                for at in run
                    .step_by(64)
                    .chain((hi > lo).then(|| hi as usize * self.key_len - 1))
                {
                    if let Some(b) = table.get(at) {
                        prefetch(b);
                    }
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
    // Keys are compared by their first eight bytes first, as a number (big-endian, so its
    // order is the bytes' order): almost every key of a run differs from the query there,
    // and a whole-slice comparison is a call into the C library's `memcmp` for each.
    let head = |k: &[u8]| k.first_chunk::<8>().map(|h| u64::from_be_bytes(*h));
    let wanted = head(key);
    let mut i = lo;
    while i < hi {
        let k = &keys[i * len..(i + 1) * len];
        let order = match (head(k), wanted) {
            (Some(a), Some(b)) if a != b => a.cmp(&b),
            _ => k.cmp(key),
        };
        match order {
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

/// A probabilistic "definitely absent" test in front of an [`ExactTable`]: a register-blocked
/// Bloom filter. Each key sets five bits of one 64-bit word, so a check is one read and one
/// mask where a binary-fuse filter reads three bytes at random (`docs/index-design.md`,
/// "Exact kinds", has the comparison). Hand-written rather than taken from a Bloom filter
/// crate: a batch computes every key's word and mask first, prefetches the word, and checks it
/// later, which needs the word's address that such crates keep to themselves; and the words
/// are persisted in the `.hidx` file and used from its memory map.
#[derive(Debug, Clone)]
pub struct ExactFilter {
    /// No words for no keys: everything is absent.
    words: Column<u64>,
}

/// Bits of filter per key: 12, with five set per key, give ~1% false positives for 1.5 bytes
/// per key (16 bits gave 0.4%, but a 1 M list's filter then no longer sat in a 2 MB L2 beside
/// the batch, and the lookups were slower).
const FILTER_BITS_PER_KEY: usize = 12;

impl ExactFilter {
    /// Builds a filter over the keys of `table` (empty tables get a filter that rejects all).
    pub fn new(table: &ExactTable) -> ExactFilter {
        let count = filter_words(table.len());
        let mut words = vec![0u64; count];
        for key in table.keys.chunks_exact(table.key_len) {
            let (word, mask) = filter_probe(key_hash(key), count as u32);
            if let Some(w) = words.get_mut(word as usize) {
                *w |= mask;
            }
        }
        ExactFilter {
            words: words.into(),
        }
    }

    /// `false` means the key is certainly absent; `true` means "look it up" (about 1% of
    /// absent keys also say `true`).
    #[inline]
    pub fn may_contain(&self, key: &[u8]) -> bool {
        let (word, mask) = filter_probe(key_hash(key), self.words.len() as u32);
        self.words
            .get(word as usize)
            .is_some_and(|w| w & mask == mask)
    }

    /// The ids among `ids` whose key may be present ([`ExactFilter::may_contain`] on
    /// `key_of(id)`), in order; `None` as soon as `key_of` has no key for an id (the caller's
    /// sign that the id is not of this filter's kind after all: see [`Ids::Every`]).
    ///
    /// Works through the batch in blocks of 64 keys: the block is hashed in one vector loop
    /// (`hash_block`), the filter word of each of its keys prefetched, then checked, so the
    /// cache misses of different keys overlap. Few keys pass (members, and ~1% of the rest),
    /// so the answer is built by a well-predicted branch rather than by compacting a copy of
    /// `ids`. `prefetch_key(id)` asks for the memory holding `id`'s key: a batch's keys were
    /// written by the parser megabytes earlier, and their first reads would otherwise be
    /// misses one after another (`docs/index-design.md`, "Exact kinds").
    pub fn possible<'k>(
        &self,
        ids: Ids<'_>,
        key_of: impl Fn(u32) -> Option<&'k [u8]>,
        prefetch_key: impl Fn(u32),
    ) -> Option<Vec<u32>> {
        match ids {
            // Both are monomorphised: the position is the id, or is looked up.
            Ids::Every(n) => self.possible_among(n, |p| p as u32, key_of, prefetch_key),
            Ids::Listed(ids) => self.possible_among(ids.len(), |p| ids[p], key_of, prefetch_key),
        }
    }

    /// [`ExactFilter::possible`] for the `n` ids `id_at(0..n)`.
    #[inline(always)]
    fn possible_among<'k>(
        &self,
        n: usize,
        id_at: impl Fn(usize) -> u32,
        key_of: impl Fn(u32) -> Option<&'k [u8]>,
        prefetch_key: impl Fn(u32),
    ) -> Option<Vec<u32>> {
        let words: &[u64] = &self.words;
        let mut passed = Vec::new();
        if n < FILTER_BLOCK / 4 {
            // A single GET or a small batch: hashing and staging whole blocks of 64 keys
            // would be most of its cost.
            for id in (0..n).map(&id_at) {
                if self.may_contain(key_of(id)?) {
                    passed.push(id);
                }
            }
            return Some(passed);
        }
        let count = words.len() as u32;
        // Into L2 where the CPU's far prefetches go there (`far_into_l2`): the words of a large
        // list's filter come from beyond L2 in any case, 128 of them in flight.
        let into_l2 = crate::prefetch::far_into_l2();
        let blocks = n.div_ceil(FILTER_BLOCK);
        let block_ids = |b: usize| (b * FILTER_BLOCK..((b + 1) * FILTER_BLOCK).min(n)).map(&id_at);
        let mut keys = [0u64; FILTER_BLOCK];
        // Two blocks in flight: block b + 1 is hashed and its words prefetched before block
        // b is checked, so misses stay outstanding while the checks run.
        let mut staged = [ProbeBlock::default(), ProbeBlock::default()];
        let mut stage = |b: usize, block: &mut ProbeBlock| -> Option<()> {
            if b + 2 < blocks {
                // The keys two blocks on, whose first read would otherwise wait on memory.
                block_ids(b + 2).for_each(&prefetch_key);
            }
            if b >= blocks {
                return Some(()); // past the last block: nothing to hash or prefetch
            }
            for (key, id) in keys.iter_mut().zip(block_ids(b)) {
                *key = fingerprint(key_of(id)?);
            }
            hash_block(&keys, count, block);
            for &at in &block.word {
                if let Some(w) = words.get(at as usize) {
                    if into_l2 {
                        prefetch_to::<false, _>(w);
                    } else {
                        prefetch(w);
                    }
                }
            }
            Some(())
        };
        stage(0, &mut staged[0])?;
        for b in 0..blocks {
            let [even, odd] = &mut staged;
            let (block, next) = if b % 2 == 0 {
                (&*even, odd)
            } else {
                (&*odd, even)
            };
            stage(b + 1, next)?;
            for (k, id) in block_ids(b).enumerate() {
                // A word out of range cannot happen (`filter_probe` maps into the words); it
                // would pass the key on to the table (never a false "absent"). An empty
                // filter has no words and passes nothing.
                let mask = block.mask[k];
                if words
                    .get(block.word[k] as usize)
                    .map_or(!words.is_empty(), |w| w & mask == mask)
                {
                    passed.push(id);
                }
            }
        }
        Some(passed)
    }

    pub fn memory_bytes(&self) -> usize {
        std::mem::size_of_val::<[u64]>(&self.words)
    }

    /// What to persist: the words (none for a table of no keys).
    pub fn parts(&self) -> &[u64] {
        &self.words
    }

    /// A filter from [`ExactFilter::parts`] for a table of `keys` keys, or `None` if the
    /// number of words is not the one [`ExactFilter::new`] builds for that many (a probe
    /// would then look in the wrong word and miss a member).
    pub fn from_parts(keys: usize, words: Column<u64>) -> Option<ExactFilter> {
        (words.len() == filter_words(keys)).then_some(ExactFilter { words })
    }
}

/// How many words a filter over `keys` keys has: none for none, else about
/// [`FILTER_BITS_PER_KEY`] bits per key, and never more than a 32-bit word number reaches.
fn filter_words(keys: usize) -> usize {
    (keys.saturating_mul(FILTER_BITS_PER_KEY).div_ceil(64)).min(u32::MAX as usize)
}

/// The ids a filter pass reads ([`ExactFilter::possible`]).
#[derive(Debug, Clone, Copy)]
pub enum Ids<'a> {
    /// `0..n`: every query of a batch, taken to be of the filter's kind; the caller's
    /// `key_of` checks each one as it reads it, so that the batch need not be grouped first.
    Every(usize),
    /// These ids, in order.
    Listed(&'a [u32]),
}

impl Ids<'_> {
    pub fn is_empty(&self) -> bool {
        match self {
            Ids::Every(n) => *n == 0,
            Ids::Listed(ids) => ids.is_empty(),
        }
    }
}

/// Keys [`ExactFilter::possible`] hashes at once.
const FILTER_BLOCK: usize = 64;

/// The probes of a block of keys, lane by lane (so that hashing them is a vector loop).
#[derive(Debug, Clone, Copy)]
struct ProbeBlock {
    word: [u32; FILTER_BLOCK],
    mask: [u64; FILTER_BLOCK],
}

impl Default for ProbeBlock {
    fn default() -> ProbeBlock {
        ProbeBlock {
            word: [0; FILTER_BLOCK],
            mask: [0; FILTER_BLOCK],
        }
    }
}

/// [`filter_probe`] for a block of keys: a loop over arrays without branches, which the
/// compiler turns into vector code (8 keys per instruction with AVX-512, chosen at run time).
#[multiversion::multiversion(targets("x86_64+avx512f+avx512dq+avx512vl", "x86_64+avx2"))]
fn hash_block(keys: &[u64; FILTER_BLOCK], count: u32, out: &mut ProbeBlock) {
    for (k, &key) in keys.iter().enumerate() {
        let (word, mask) = filter_probe(mix(key), count);
        out.word[k] = word;
        out.mask[k] = mask;
    }
}

/// A key's word among `count` (the high half of its hash times `count`: in range, and
/// without a division) and its mask: five bits, each placed by six bits of the low half.
#[inline(always)]
fn filter_probe(h: u64, count: u32) -> (u32, u64) {
    let word = (((h >> 32) * u64::from(count)) >> 32) as u32;
    let mask = (0..5).fold(0u64, |mask, i| mask | (1 << ((h >> (6 * i)) & 63)));
    (word, mask)
}

/// The filter's hash of a key: its 64 leading bits, mixed.
#[inline(always)]
fn key_hash(key: &[u8]) -> u64 {
    mix(fingerprint(key))
}

/// The murmur3 64-bit finaliser. Digests are uniform already; mixing keeps the filter's
/// spread for keys that are not (a test list of consecutive values).
#[inline(always)]
fn mix(key: u64) -> u64 {
    let mut h = key;
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

/// 64 bits taken from the key.
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
    fn batch_path_agrees_with_key_at_a_time() {
        let ks = keys(20_000, 32, 77);
        let table = ExactTable::new(32, ks.concat()).unwrap();
        let filter = ExactFilter::new(&table);
        // A count that is not a multiple of the 64-key block: the last block is partial.
        let mixed: Vec<Vec<u8>> = ks.iter().cloned().chain(keys(20_037, 32, 79)).collect();
        let all: Vec<u32> = (0..mixed.len() as u32).collect();
        let key = |i: u32| Some(&mixed[i as usize][..]);
        let ids = filter.possible(Ids::Listed(&all), key, |_| ()).unwrap();
        let expected: Vec<u32> = (0..mixed.len() as u32)
            .filter(|&i| filter.may_contain(&mixed[i as usize]))
            .collect();
        assert_eq!(ids, expected);
        assert!(ids.len() >= ks.len() && ids[..ks.len()].iter().copied().eq(0..ks.len() as u32));
        assert_eq!(
            filter.possible(Ids::Every(mixed.len()), key, |_| ()),
            Some(expected)
        );
        // Small batches (a single GET) take a key-at-a-time path: the same answers.
        for n in [1usize, 2, 15, 16, 17, 63, 64, 65] {
            let some: Vec<u32> = all.iter().copied().skip(19_990).take(n).collect();
            let got = filter.possible(Ids::Listed(&some), key, |_| ()).unwrap();
            let want: Vec<u32> = some
                .iter()
                .copied()
                .filter(|&i| filter.may_contain(&mixed[i as usize]))
                .collect();
            assert_eq!(got, want, "{n} keys");
            let first: Vec<u32> = (0..n as u32)
                .filter(|&i| filter.may_contain(&mixed[i as usize]))
                .collect();
            assert_eq!(filter.possible(Ids::Every(n), key, |_| ()), Some(first));
            assert!(
                some.iter()
                    .filter(|&&i| (i as usize) < ks.len())
                    .all(|i| got.contains(i))
            );
        }
    }

    #[test]
    fn a_key_of_another_kind_stops_the_pass() {
        // `key_of` answers `None` for an id that is not of the filter's kind (a mixed batch
        // taken for one kind): the pass gives up wherever that id falls, in a small batch,
        // in the first block, in the middle or in the last, partial block.
        let ks = keys(5_000, 32, 3);
        let table = ExactTable::new(32, ks.concat()).unwrap();
        let filter = ExactFilter::new(&table);
        for (n, odd) in [
            (1, 0),
            (15, 14),
            (16, 0),
            (1000, 0),
            (1000, 63),
            (1000, 500),
            (1000, 999),
        ] {
            let key = |i: u32| (i as usize != odd).then(|| &ks[i as usize][..]);
            assert_eq!(
                filter.possible(Ids::Every(n), key, |_| ()),
                None,
                "{n} keys, odd one {odd}"
            );
            let listed: Vec<u32> = (0..n as u32).collect();
            assert_eq!(
                filter.possible(Ids::Listed(&listed), key, |_| ()),
                None,
                "{n} listed"
            );
        }
    }

    #[test]
    fn false_positives_are_about_the_design_rate() {
        // 12 bits per key, five set in one 64-bit word: ~0.99% by the Poisson model.
        // Digests are uniform; consecutive keys are not, and the mixing must spread them too.
        let uniform = keys(100_000, 16, 5);
        // (Consecutive in the bytes the filter reads: the first twelve.)
        let counted = |i: u64| [&[0u8; 4][..], &i.to_be_bytes(), &[0u8; 4]].concat();
        let consecutive: Vec<Vec<u8>> = (0..100_000u64).map(counted).collect();
        for (what, ks, absent) in [
            ("uniform", uniform, keys(200_000, 16, 6)),
            (
                "consecutive",
                consecutive,
                (100_000..300_000u64).map(counted).collect(),
            ),
        ] {
            let table = ExactTable::new(16, ks.concat()).unwrap();
            let filter = ExactFilter::new(&table);
            assert_eq!(filter.memory_bytes(), 100_000 * 12 / 8);
            assert!(
                ks.iter().all(|k| filter.may_contain(k)),
                "{what}: no false negatives"
            );
            let fp = absent.iter().filter(|k| filter.may_contain(k)).count();
            let rate = fp as f64 / absent.len() as f64;
            assert!((0.007..0.013).contains(&rate), "{what}: {rate}");
        }
    }

    #[test]
    fn probes_stay_among_the_blocks() {
        for count in [1u32, 3, 1 << 20, 0x8000_0001, u32::MAX] {
            for h in [
                0,
                1,
                u64::MAX,
                0x0123_4567_89ab_cdef,
                1 << 63,
                u64::MAX << 32,
            ] {
                let (word, mask) = filter_probe(h, count);
                assert!(word < count, "h {h:#x} count {count}");
                assert!((1..=5).contains(&mask.count_ones()), "{mask:#x}");
            }
        }
        assert_eq!(filter_probe(0, 1).1, 1, "five times bit 0");
        assert_eq!(filter_words(0), 0);
        assert_eq!(filter_words(1), 1);
        assert_eq!(filter_words(5), 1);
        assert_eq!(filter_words(6), 2);
        let none = ExactFilter::new(&ExactTable::new(16, Vec::new()).unwrap());
        assert!(!none.may_contain(&[0u8; 16]));
        let zero = |_| Some(&[0u8; 16][..]);
        assert_eq!(
            none.possible(Ids::Listed(&[0, 1]), zero, |_| ()),
            Some(vec![])
        );
        assert_eq!(none.possible(Ids::Every(1000), zero, |_| ()), Some(vec![]));
        assert!(ExactFilter::from_parts(1, none.words.clone()).is_none());
        assert!(ExactFilter::from_parts(0, none.words).is_some());
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

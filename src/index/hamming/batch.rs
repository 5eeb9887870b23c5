//! Batch search: many queries against an index far larger than the caches, with the probes
//! of a group of queries sorted by slot and the candidates by row before they are read, so
//! that tables and codes are read in ascending order instead of at random.

use super::HammingIndex;
use super::bits::{distance, for_each_within, query_words, radix_sort, scan_inline};
use super::layout::{ball_size, chunk_radius};

impl HammingIndex {
    /// Whether [`HammingIndex::search_batch`] beats query-at-a-time searches for `queries`
    /// queries: when the index is much larger than the CPU's caches (its random reads go to
    /// memory), there are enough queries, and the codes are few enough that one flush of
    /// candidates reads them densely. Never with sketches, which only the query-at-a-time
    /// search reads. The thresholds are measured (`docs/index-design.md`, "Batch search").
    pub fn prefers_batch(&self, queries: usize) -> bool {
        let bytes = self.table_bytes() + self.codes.len();
        let rows = self.codes.len() / (self.words * 8);
        let sketched = self.chunks.iter().any(|c| c.sketch.is_some());
        queries >= BATCH_MIN_QUERIES
            && bytes >= batch_min_bytes()
            && rows <= 4 * BATCH_CANDIDATES
            && !sketched
    }

    /// Searches many queries (concatenated codes, `bits / 8` bytes each) at once: calls
    /// `found(query, row, distance)` for every code within `threshold` of each query, as
    /// [`HammingIndex::search_each`] would, in no particular order (a code may be reported
    /// more than once for a query). Bytes that are not a whole number of codes search
    /// nothing.
    ///
    /// One query at a time, a search is a few thousand random reads (directory slots, id
    /// runs, candidate codes) and its speed is the memory's latency. Here the probes of a
    /// group of queries are sorted by slot before they are read, and the candidates by row
    /// before they are verified: the tables and the codes are then read in ascending order,
    /// which the hardware prefetcher streams, and the sorts are sequential radix passes.
    pub fn search_batch(
        &self,
        queries: &[u8],
        threshold: u32,
        mut found: impl FnMut(u32, u32, u32),
    ) {
        let Some((qs, group_size, packing)) = self.batch_plan(queries, threshold) else {
            return;
        };
        if packing.key_bits + packing.query_bits <= u32::BITS {
            self.search_groups::<u32>(&qs, threshold, group_size, packing, &mut found);
        } else {
            self.search_groups::<u64>(&qs, threshold, group_size, packing, &mut found);
        }
    }

    /// The queries' words, the group size and the candidates' packing for
    /// [`HammingIndex::search_batch`]; `None` when there is nothing to search.
    pub(super) fn batch_plan(
        &self,
        queries: &[u8],
        threshold: u32,
    ) -> Option<(Vec<[u64; 4]>, usize, Packing)> {
        let len = self.words * 8;
        if self.is_empty() || !queries.len().is_multiple_of(len) {
            return None;
        }
        let qs: Vec<[u64; 4]> = queries.chunks_exact(len).map(query_words).collect();
        u32::try_from(qs.len()).ok()?;
        let m = self.chunks.len() as u32;
        // Queries per group: at most `BATCH_GROUP`, fewer when each probes a large ball (a
        // list whose threshold is far above 31), so that one table's probes stay within
        // `BATCH_PROBES`.
        let widest_ball = self
            .chunks
            .iter()
            .enumerate()
            .filter_map(|(i, c)| chunk_radius(i, m, threshold, c.width).map(|r| (c.width, r)))
            .map(|(w, r)| ball_size(w, r))
            .fold(1.0, f64::max);
        // Groups of equal size (10 000 queries: three of 3 334, not 4 096, 4 096 and 1 808).
        let largest = ((BATCH_PROBES as f64 / widest_ball) as usize).clamp(1, BATCH_GROUP);
        let group_size = qs.len().div_ceil(qs.len().div_ceil(largest).max(1)).max(1);
        let total_rows = self.codes.len() / len;
        let widest = self.chunks.iter().map(|c| c.width).max().unwrap_or(0);
        let packing = Packing {
            key_bits: (usize::BITS - total_rows.leading_zeros()).max(widest),
            query_bits: usize::BITS - (group_size - 1).leading_zeros(),
        };
        Some((qs, group_size, packing))
    }

    /// [`HammingIndex::search_batch`] over `qs`, `group_size` queries at a time, with
    /// probes and candidates of type `C`.
    pub(super) fn search_groups<C: Candidate>(
        &self,
        qs: &[[u64; 4]],
        threshold: u32,
        group_size: usize,
        packing: Packing,
        found: &mut dyn FnMut(u32, u32, u32),
    ) {
        let words = self.words;
        let m = self.chunks.len() as u32;
        let codes: &[u8] = &self.codes;
        let mut scratch = BATCH_SCRATCH.with(|s| std::mem::take(&mut *s.borrow_mut()));
        let (probes, candidates, sorted, counts) = C::buffers(&mut scratch);
        candidates.clear();
        let flush_at = flush_size(rayon::current_num_threads());
        // Each searched table's ball of offsets, once for all groups: a query's probes are
        // its value XOR each offset (a plain loop instead of Gosper's hack per query).
        let balls: Vec<Option<Vec<u32>>> = self
            .chunks
            .iter()
            .enumerate()
            .map(|(i, chunk)| {
                chunk_radius(i, m, threshold, chunk.width).map(|radius| {
                    let mut ball = Vec::new();
                    for_each_within(0, chunk.width, radius, |offset| ball.push(offset));
                    ball
                })
            })
            .collect();
        let verify = |candidates: &mut Vec<C>,
                      sorted: &mut Vec<C>,
                      counts: &mut Vec<u32>,
                      first: usize,
                      found: &mut dyn FnMut(u32, u32, u32)| {
            radix_sort(candidates, sorted, counts, packing.key_bits, |c| {
                c.key(packing)
            });
            for &c in candidates.iter() {
                let (row, qi) = (c.key(packing), first + c.query(packing));
                let d = distance(codes, words, row, &qs[qi][..words]);
                if d <= threshold {
                    found(qi as u32, row as u32, d);
                }
            }
            candidates.clear();
        };
        for group in (0..qs.len()).step_by(group_size) {
            let group = group..(group + group_size).min(qs.len());
            for (chunk, ball) in self.chunks.iter().zip(&balls) {
                let Some(ball) = ball else {
                    continue;
                };
                probes.clear();
                for qi in group.clone() {
                    let value = chunk.value_of(&qs[qi][..words]);
                    let local = (qi - group.start) as u32;
                    probes.extend(
                        ball.iter()
                            .map(|&offset| C::pack(value ^ offset, local, packing)),
                    );
                }
                radix_sort(probes, sorted, counts, chunk.width, |p| p.key(packing));
                let directory: &[u32] = &chunk.directory;
                let ids: &[u32] = &chunk.ids;
                let inline = chunk.inline.as_deref();
                for &p in probes.iter() {
                    let (value, local) = (p.key(packing), p.query(packing) as u32);
                    let qi = group.start as u32 + local;
                    let (lo, hi) = (directory[value] as usize, directory[value + 1] as usize);
                    if let Some(inline) = inline {
                        let q = qs[qi as usize][0];
                        scan_inline(inline, ids, (lo, hi), q, threshold, |id, d| {
                            found(qi, id, d)
                        });
                    } else {
                        candidates
                            .extend(ids[lo..hi].iter().map(|&id| C::pack(id, local, packing)));
                        // Checked per probe: a crowded bucket (clustered codes) probed by
                        // every query of the group must not pile up unbounded candidates.
                        if candidates.len() >= flush_at {
                            verify(candidates, sorted, counts, group.start, found);
                        }
                    }
                }
            }
            verify(candidates, sorted, counts, group.start, found);
        }
        BATCH_SCRATCH.with(|s| *s.borrow_mut() = scratch);
    }
}

/// Queries [`HammingIndex::search_batch`] takes through the chunk tables together (their
/// probes of one table fill a few MB). Tests use small values so that every path runs.
const BATCH_GROUP: usize = if cfg!(test) { 7 } else { 4096 };
/// Probes of one chunk table [`HammingIndex::search_batch`] gathers for a group at most
/// (4 or 8 bytes each, twice: [`Candidate`]).
const BATCH_PROBES: usize = if cfg!(test) { 300 } else { 1 << 21 };
/// Candidates [`HammingIndex::search_batch`] gathers before verifying them (4 or 8 bytes each,
/// twice), on one thread ([`flush_size`] for more). Tests use small values so that every path
/// runs.
const BATCH_CANDIDATES: usize = if cfg!(test) { 100 } else { 1 << 20 };

/// Candidates gathered before a flush when `threads` searches may run at once: the cores
/// share the last-level cache and the memory bus, so each takes a share of
/// `BATCH_CANDIDATES`, down to a quarter of it (measured: `docs/index-design.md`).
fn flush_size(threads: usize) -> usize {
    (BATCH_CANDIDATES / threads.max(1)).max(BATCH_CANDIDATES / 4)
}
/// Queries and index size from which [`HammingIndex::prefers_batch`] (unit tests batch
/// from two queries on, so that the index's batch path is compared with the other).
const BATCH_MIN_QUERIES: usize = if cfg!(test) { 2 } else { 256 };
const BATCH_MIN_BYTES: usize = if cfg!(test) { 1 } else { 48 << 20 };

/// The index size from which [`HammingIndex::prefers_batch`] takes the batch search:
/// `BATCH_MIN_BYTES`, or one and a half times the last-level cache where that is larger. An
/// index the cache holds is read at the cache's latency, and one query at a time is then
/// faster (an Intel Xeon with 480 MiB of L3 reported: 1 M PDQ codes, two threads, +10-27%;
/// the 48 MB were measured on a Zen 5 with 32 MiB). `HASHSIEVE_BATCH_SEARCH=1` takes the
/// batch search from `BATCH_MIN_BYTES` whatever the cache, `0` never.
fn batch_min_bytes() -> usize {
    static MIN: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    if cfg!(test) {
        return BATCH_MIN_BYTES;
    }
    *MIN.get_or_init(
        || match std::env::var("HASHSIEVE_BATCH_SEARCH").as_deref() {
            Ok("1") => BATCH_MIN_BYTES,
            Ok("0") => usize::MAX,
            _ => crate::prefetch::last_level_cache_bytes().map_or(BATCH_MIN_BYTES, |llc| {
                BATCH_MIN_BYTES.max(llc.saturating_mul(3) / 2)
            }),
        },
    )
}

/// Per-thread buffers of [`HammingIndex::search_batch`].
#[derive(Default)]
pub(super) struct BatchScratch {
    /// Probes, candidates and a sort buffer, in 32 or 64 bits ([`Candidate`]).
    narrow: (Vec<u32>, Vec<u32>, Vec<u32>),
    wide: (Vec<u64>, Vec<u64>, Vec<u64>),
    counts: Vec<u32>,
}

/// How a batch search probe or candidate packs its key (high bits: a chunk value, or a row)
/// and its query's position in its group (low bits), so that sorting by key sorts the
/// integers' high bits.
#[derive(Debug, Clone, Copy)]
pub(super) struct Packing {
    key_bits: u32,
    query_bits: u32,
}

/// A batch search probe or candidate: 32 bits when the key and the query's position fit (1 M
/// rows, chunks of up to 20 bits and groups of 4 096 do), else 64: half the bytes to sort
/// and scan.
pub(super) trait Candidate: Copy + Default {
    fn pack(key: u32, query: u32, p: Packing) -> Self;
    fn key(self, p: Packing) -> usize;
    fn query(self, p: Packing) -> usize;
    /// This type's probe, candidate and sort buffers, and the radix counts.
    #[allow(clippy::type_complexity)]
    fn buffers(
        s: &mut BatchScratch,
    ) -> (
        &mut Vec<Self>,
        &mut Vec<Self>,
        &mut Vec<Self>,
        &mut Vec<u32>,
    );
}

/// `Candidate` for an unsigned integer type whose buffers are `scratch.$buffers`.
macro_rules! candidate {
    ($t:ty, $buffers:ident) => {
        impl Candidate for $t {
            #[inline(always)]
            fn pack(key: u32, query: u32, p: Packing) -> $t {
                (<$t>::from(key) << p.query_bits) | <$t>::from(query)
            }
            #[inline(always)]
            fn key(self, p: Packing) -> usize {
                (self >> p.query_bits) as usize
            }
            #[inline(always)]
            fn query(self, p: Packing) -> usize {
                (self & ((1 << p.query_bits) - 1)) as usize
            }
            fn buffers(
                s: &mut BatchScratch,
            ) -> (&mut Vec<$t>, &mut Vec<$t>, &mut Vec<$t>, &mut Vec<u32>) {
                let (probes, candidates, sorted) = &mut s.$buffers;
                (probes, candidates, sorted, &mut s.counts)
            }
        }
    };
}
candidate!(u32, narrow);
candidate!(u64, wide);

thread_local! {
    static BATCH_SCRATCH: std::cell::RefCell<BatchScratch> =
        std::cell::RefCell::new(BatchScratch::default());
}

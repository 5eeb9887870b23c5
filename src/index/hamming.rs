//! Hamming-distance range search with exact recall: every code within the threshold is found.
//!
//! Multi-index hashing with the generalised pigeonhole principle: the code is split into `m`
//! chunks; if two codes are within distance `t`, then for any radii `r_i` with
//! `sum(r_i + 1) >= t + 1`, at least one chunk `i` differs by at most `r_i` bits. So for each
//! chunk we enumerate every value within its radius of the query's chunk, look those values
//! up in a table of the indexed codes sorted by that chunk, and verify each candidate's full
//! distance. With `t = q*m + s`, `s + 1` chunks get radius `q` and the others `q - 1` (chunks
//! with radius -1 are skipped), the cheapest radii that keep recall exact.
//!
//! Layout choices, all measured in `benches/hamming.rs` or on the peers corpus:
//! - chunk width: the one a cost model (probes and candidates per search at the list's
//!   threshold, `chunk_cost`) finds cheapest among those whose directories and id tables
//!   fit 96 bytes per code (8 to 16 bits for 64-bit codes, 8 to 24 for 256-bit);
//! - the codes are the caller's column (a set's sorted hash column, not copied); identical
//!   codes are indexed once (a list holding the same hash under many references must not
//!   crowd the buckets) and a match at a row covers the run of equal rows after it;
//! - 256-bit codes are verified after a gather, with `popcnt` (the crate targets x86-64-v2)
//!   and each candidate's code prefetched 32 ahead (`prefetch.rs`); 64-bit codes sit
//!   inline beside their ids, so a bucket is verified from one contiguous read;
//! - lists of up to ~260 000 PDQ codes also keep, beside each id, half of its code (a sketch):
//!   a code further than the threshold on that half is further on the whole, so almost
//!   every candidate is rejected from the bucket's run without a random read of its code
//!   (in the load test's mixed batches at 200 000 per kind, PDQ 1.4 -> 0.78 ms a batch);
//! - many queries against an index far larger than the caches are searched together
//!   (`search_batch`): probes sorted by slot and candidates by row (radix passes), so the
//!   tables and codes are read in ascending order instead of at random.

use std::ops::ControlFlow;

use super::column::Column;
use super::prefetch::prefetch;

/// A set of fixed-width binary codes (64 or 256 bits) indexed for range search.
///
/// The codes are a column of big-endian bytes, `bits / 8` per row, usually a verified set's
/// own sorted hash column used in place (no copy). Only the listed rows are indexed (the first
/// row of each run of equal codes), and a search reports row numbers.
#[derive(Debug, Clone)]
pub struct HammingIndex {
    /// u64 words per code (1 or 4).
    words: usize,
    /// All rows' codes, `words * 8` big-endian bytes each.
    codes: Column<u8>,
    /// Rows indexed (each chunk table lists each of them once).
    indexed: usize,
    chunks: Vec<ChunkTable>,
}

/// One chunk's table, as persisted ([`HammingIndex::parts`], [`HammingIndex::from_parts`]).
#[derive(Debug, Clone)]
pub struct ChunkTable {
    /// First bit of the chunk (bit 0 = most significant bit of word 0).
    pub start: u32,
    pub width: u32,
    /// `directory[v]..directory[v + 1]` are the positions in `ids` of codes whose chunk is `v`.
    pub directory: Column<u32>,
    /// Row numbers sorted by chunk value.
    pub ids: Column<u32>,
    /// For 64-bit codes: the code of each id, in the same order, so a bucket is verified
    /// from one contiguous read instead of a random read per candidate.
    pub inline: Option<Column<u64>>,
    /// For 256-bit codes: one half of each id's code (two words, in the order of `ids`), the
    /// half without the chunk's first bit ([`sketch_half`]). A code within `t` of the query
    /// is within `t` on either half, so a candidate whose half is further away is rejected
    /// from the run without the random read of its code: for random codes at `t = 31` out
    /// of 128 bits, all but about 2 in 10^9 (at 31 + 16, the near-miss check, 0.17% pass).
    /// Built when the sketches fit [`SKETCH_MAX_BYTES`]; without them every candidate's code
    /// is read.
    pub sketch: Option<Column<u64>>,
}

/// Why an index cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HammingError {
    #[error("codes must be 64 or 256 bits, got {0}")]
    UnsupportedWidth(usize),
    #[error("{0} codes are more than an index holds (u32 indices)")]
    TooMany(usize),
    #[error("chunk table {chunk} is inconsistent: {what}")]
    BadChunk { chunk: usize, what: &'static str },
}

fn words_for(bits: usize) -> Result<usize, HammingError> {
    match bits {
        64 => Ok(1),
        256 => Ok(4),
        other => Err(HammingError::UnsupportedWidth(other)),
    }
}

/// Word `w` of row `row` (big-endian bytes; an unaligned load).
#[inline(always)]
fn word(codes: &[u8], words: usize, row: usize, w: usize) -> u64 {
    let at = (row * words + w) * 8;
    let mut raw = [0u8; 8];
    raw.copy_from_slice(&codes[at..at + 8]);
    u64::from_be_bytes(raw)
}

/// A chunk table's columns as plain slices (a mapped column's deref is not free).
#[derive(Clone, Copy, Default)]
struct TableSlices<'a> {
    directory: &'a [u32],
    ids: &'a [u32],
    inline: Option<&'a [u64]>,
    /// The sketch and the first word of the query's half it is compared with.
    sketch: Option<(&'a [u64], usize)>,
}

impl<'a> TableSlices<'a> {
    fn of(c: &'a ChunkTable) -> TableSlices<'a> {
        TableSlices {
            directory: &c.directory,
            ids: &c.ids,
            inline: c.inline.as_deref(),
            sketch: c.sketch.as_deref().map(|s| (s, sketch_half(c.start))),
        }
    }
}

/// The first of the two words a 256-bit chunk table starting at bit `start` sketches: the
/// half of the code that does not hold that bit (a chunk may straddle the halves; the
/// bound holds for any half, it is only tighter when disjoint from the chunk).
fn sketch_half(start: u32) -> usize {
    if start < 128 { 2 } else { 0 }
}

/// Sketches of 256-bit codes (16 bytes per id per chunk table) are built when they take at
/// most this much in all, as [`INDEX_FLOOR`] lets a small list spend more per code: 200 000
/// PDQ codes in 16 tables take 51 MB (lists up to ~260 000 codes get them). A list of 1 M
/// would take 224 MB, 2.8x its tables (81 bytes per code, against the 100 the index is held
/// to at 1 M and 10 M), so its candidates' codes are read. What they would buy there,
/// measured with a throwaway build (cap at 256 MB, batch search off; `hashsieve match
/// --stats` on the peers corpus, 10 000 queries): one thread 45.3-49.2k q/s against the batch search's 39.1-39.7k,
/// two threads 79-100k against 63-70k, peak RSS 157 -> 377 MB.
const SKETCH_MAX_BYTES: usize = 64 << 20;

/// Hamming distance between row `row` of `codes` and the query words `q`.
#[inline(always)]
fn distance(codes: &[u8], words: usize, row: usize, q: &[u64]) -> u32 {
    let code = &codes[row * words * 8..(row + 1) * words * 8];
    // Bit order does not matter to a count: the code's bytes in native order against the
    // query word turned to the same order (off the path of the load, unlike `word`).
    code.chunks_exact(8)
        .zip(q)
        .map(|(bytes, &q)| {
            let raw: [u8; 8] = bytes.try_into().unwrap_or_default();
            (u64::from_ne_bytes(raw) ^ q.to_be()).count_ones()
        })
        .sum()
}

/// Prefetches every cache line of a run of a chunk table's inline codes or sketches, not just
/// its first: buckets of 64-bit codes span several lines (200 000 codes in 13-bit chunks: ~24
/// codes, 3-4 lines), and when other kinds' tables have pushed them out of the caches the
/// later lines were misses one after another (in the load test's mixed batches, in process,
/// one thread, each 64-bit kind 530 -> 200-220 us per batch; alone, in cache, 160 -> 180 us).
#[inline(always)]
fn prefetch_run(run: &[u64]) {
    for line in run.chunks(8) {
        prefetch(&line[0]);
    }
    if let Some(last) = run.last() {
        prefetch(last);
    }
}

/// Scans a bucket of 64-bit codes stored inline (positions `lo..hi` of a chunk table):
/// calls `found(id, distance)` for each within `threshold` of `q`, reading an id only for a
/// match (at 1 M codes the scan is bound by memory bandwidth).
#[inline(always)]
fn scan_inline(
    inline: &[u64],
    ids: &[u32],
    (lo, hi): (usize, usize),
    q: u64,
    threshold: u32,
    mut found: impl FnMut(u32, u32),
) {
    for (k, &code) in inline[lo..hi].iter().enumerate() {
        let d = (code ^ q).count_ones();
        if d <= threshold {
            found(ids[lo + k], d);
        }
    }
}

impl HammingIndex {
    /// Indexes every row of `codes` (big-endian bytes, `bits / 8` each, concatenated;
    /// callers pass unique codes), laid out for searches at `threshold`
    /// ([`HammingIndex::tuned_widths`]). Row `i` is reported as `i`.
    pub fn new(bits: usize, codes: &[u8], threshold: u32) -> Result<HammingIndex, HammingError> {
        let len = words_for(bits)? * 8;
        let rows: Vec<u32> = (0..(codes.len() / len) as u32).collect();
        let widths = HammingIndex::tuned_widths(rows.len(), bits, threshold)?;
        HammingIndex::over_rows(bits, Column::Owned(codes.to_vec()), &rows, &widths)
    }

    /// The chunk widths (in order) that make searches at `threshold` cheapest over `n` codes
    /// of `bits` bits, within `INDEX_BUDGET` (96) bytes per code or `INDEX_FLOOR` (16 MB) in
    /// all (see `tuned_widths` below).
    /// Any layout keeps recall exact at every threshold; this only decides speed.
    pub fn tuned_widths(n: usize, bits: usize, threshold: u32) -> Result<Vec<u32>, HammingError> {
        let words = words_for(bits)?;
        Ok(tuned_widths(n, bits as u32, threshold, words == 1))
    }

    /// `bits` cut into chunks of about `width` bits each, spread evenly (wider chunks first).
    pub fn even_widths(bits: usize, width: u32) -> Vec<u32> {
        chunk_widths(bits as u32, width.max(1)).collect()
    }

    /// Indexes the listed `rows` of a code column (big-endian bytes, `bits / 8` per row),
    /// which the index keeps (a shared column is used in place), in chunks of the given
    /// `widths` (in order, summing to `bits`; each 8 to 16 bits for 64-bit codes, 8 to 24 for
    /// 256-bit).
    pub fn over_rows(
        bits: usize,
        codes: Column<u8>,
        rows: &[u32],
        widths: &[u32],
    ) -> Result<HammingIndex, HammingError> {
        let words = words_for(bits)?;
        let total = codes.len() / (words * 8);
        if u32::try_from(total).is_err() {
            return Err(HammingError::TooMany(total));
        }
        if rows.iter().any(|&r| r as usize >= total) {
            return Err(HammingError::BadChunk {
                chunk: 0,
                what: "row out of range",
            });
        }
        if let Some(chunk) = widths
            .iter()
            .position(|w| !(8..=max_width(words)).contains(w))
        {
            return Err(HammingError::BadChunk {
                chunk,
                what: "chunk width out of range",
            });
        }
        if widths.iter().sum::<u32>() as usize != bits {
            return Err(HammingError::BadChunk {
                chunk: widths.len(),
                what: "chunks do not cover the code",
            });
        }
        let n = rows.len();
        let bytes: &[u8] = &codes;
        let sketch = words == 4 && n * widths.len() * 16 <= SKETCH_MAX_BYTES;
        let mut chunks = Vec::new();
        let mut start = 0;
        for &w in widths {
            chunks.push(ChunkTable::build(bytes, words, rows, (start, w), sketch));
            start += w;
        }
        Ok(HammingIndex {
            words,
            codes,
            indexed: n,
            chunks,
        })
    }

    /// The chunk tables, to persist (the codes are the caller's column).
    pub fn parts(&self) -> &[ChunkTable] {
        &self.chunks
    }

    /// An index from persisted chunk tables over `codes`, checked so that no search can
    /// index out of bounds: chunks tile the code's bits in order; each directory has
    /// `2^width + 1` non-decreasing slots from 0 to the number of ids; every table has the
    /// same number of ids, each naming a row. (That each code sits in its right slot, which
    /// exact recall needs, is what the persisted file's digest vouches for: checking it here
    /// would cost a random read per code and chunk.)
    pub fn from_parts(
        bits: usize,
        codes: Column<u8>,
        chunks: Vec<ChunkTable>,
    ) -> Result<HammingIndex, HammingError> {
        let words = words_for(bits)?;
        if !codes.len().is_multiple_of(words * 8) {
            return Err(HammingError::BadChunk {
                chunk: 0,
                what: "code bytes are not a whole number of codes",
            });
        }
        let total = codes.len() / (words * 8);
        if u32::try_from(total).is_err() {
            return Err(HammingError::TooMany(total));
        }
        let n = chunks.first().map_or(0, |c| c.ids.len());
        let max_width = max_width(words);
        let mut next_start = 0u32;
        for (i, c) in chunks.iter().enumerate() {
            let bad = |what| HammingError::BadChunk { chunk: i, what };
            if c.start != next_start || c.width < 8 || c.width > max_width {
                return Err(bad("chunks do not tile the code"));
            }
            next_start += c.width;
            if next_start > bits as u32 {
                return Err(bad("chunks run past the code"));
            }
            let dir = &c.directory;
            if dir.len() != (1usize << c.width) + 1
                || dir.first() != Some(&0)
                || dir.last() != Some(&(n as u32))
                || dir.windows(2).any(|w| w[0] > w[1])
            {
                return Err(bad("directory slots"));
            }
            if c.ids.len() != n {
                return Err(bad("id table length"));
            }
            if c.ids.iter().any(|&id| id as usize >= total) {
                return Err(bad("id out of range"));
            }
            if c.inline
                .as_ref()
                .is_some_and(|v| words != 1 || v.len() != n)
            {
                return Err(bad("inline codes"));
            }
            if c.sketch
                .as_ref()
                .is_some_and(|v| words != 4 || v.len() != 2 * n)
            {
                return Err(bad("sketches"));
            }
        }
        if next_start != bits as u32 {
            return Err(HammingError::BadChunk {
                chunk: chunks.len(),
                what: "chunks do not cover the code",
            });
        }
        Ok(HammingIndex {
            words,
            codes,
            indexed: n,
            chunks,
        })
    }

    /// Number of codes indexed.
    pub fn len(&self) -> usize {
        self.indexed
    }

    pub fn is_empty(&self) -> bool {
        self.indexed == 0
    }

    /// Bytes of directories, id tables, inline codes and sketches (the codes are the
    /// caller's column).
    pub fn memory_bytes(&self) -> usize {
        self.table_bytes()
            + self
                .chunks
                .iter()
                .map(|c| c.sketch.as_ref().map_or(0, |v| v.len() * 8))
                .sum::<usize>()
    }

    /// [`HammingIndex::memory_bytes`] without the sketches (which the batch search does not
    /// read).
    fn table_bytes(&self) -> usize {
        self.chunks
            .iter()
            .map(|c| {
                c.directory.len() * 4
                    + c.ids.len() * 4
                    + c.inline.as_ref().map_or(0, |v| v.len() * 8)
            })
            .sum::<usize>()
    }

    /// Number of chunks (tables).
    pub fn chunk_count(&self) -> usize {
        self.chunks.len()
    }

    /// Calls `found(code_index, distance)` for every code within `threshold` of `query`
    /// (big-endian bytes). A code may be reported more than once (found through several
    /// chunks); [`HammingIndex::search`] deduplicates.
    pub fn search_each(&self, query: &[u8], threshold: u32, mut found: impl FnMut(u32, u32)) {
        if self.is_empty() || query.len() != self.words * 8 {
            return;
        }
        let q = query_words(query);
        let q = &q[..self.words];
        let m = self.chunks.len() as u32;
        let codes: &[u8] = &self.codes;
        let words = self.words;
        // Three passes, so that every memory access of a pass is independent of the others
        // in it and their cache misses overlap: (1) enumerate the probes of every chunk,
        // prefetching their directory slots; (2) read the slots' ranges, prefetching the id
        // runs; (3) gather the ids. A probe-at-a-time loop waits on directory then ids in turn.
        // Buffers reused across searches on this thread (taken out, so a re-entrant search
        // from `found` would simply allocate its own).
        let mut scratch = SCRATCH.with(|s| std::mem::take(&mut *s.borrow_mut()));
        let Scratch {
            probes,
            runs,
            candidates,
        } = &mut scratch;
        probes.clear();
        runs.clear();
        candidates.clear();
        for (i, chunk) in self.chunks.iter().enumerate() {
            let Some(radius) = chunk_radius(i, m, threshold, chunk.width) else {
                continue;
            };
            let value = chunk.value_of(q);
            let directory: &[u32] = &chunk.directory;
            for_each_within(value, chunk.width, radius, |probe| {
                prefetch(&directory[probe as usize]);
                probes.push((i as u32, probe));
            });
        }
        // The tables as plain slices once per search (a mapped column's deref is not free);
        // chunks are at least 8 bits wide, so there are at most 32.
        let mut tables = [TableSlices::default(); 32];
        for (t, c) in tables.iter_mut().zip(&self.chunks) {
            *t = TableSlices::of(c);
        }
        for &(i, probe) in probes.iter() {
            let t = tables[i as usize];
            let (lo, hi) = (t.directory[probe as usize], t.directory[probe as usize + 1]);
            if lo < hi {
                let (lo, hi) = (lo as usize, hi as usize);
                // What the next pass reads of the run: 64-bit codes are verified from the
                // inline codes alone (their ids are read only for a match), 256-bit ones from
                // the sketches if any (ids only for candidates that pass), else by their ids.
                match (t.inline, t.sketch) {
                    (Some(codes), _) => prefetch_run(&codes[lo..hi]),
                    (None, Some((sketch, _))) => prefetch_run(&sketch[2 * lo..2 * hi]),
                    (None, None) => prefetch(&t.ids[lo]),
                }
                runs.push((i, lo as u32, hi as u32));
            }
        }
        for &(i, lo, hi) in runs.iter() {
            let t = tables[i as usize];
            let (lo, hi) = (lo as usize, hi as usize);
            if let Some(inline) = t.inline {
                scan_inline(inline, t.ids, (lo, hi), q[0], threshold, &mut found);
            } else if let Some((sketch, half)) = t.sketch {
                let (qa, qb) = (q[half], q[half + 1]);
                for (k, pair) in sketch[2 * lo..2 * hi].chunks_exact(2).enumerate() {
                    if (pair[0] ^ qa).count_ones() + (pair[1] ^ qb).count_ones() <= threshold {
                        candidates.push(t.ids[lo + k]);
                    }
                }
            } else {
                let ids = t.ids;
                // Runs hold a few ids: a plain loop, not a memcpy call per run.
                for &id in &ids[lo..hi] {
                    candidates.push(id);
                }
            }
        }
        // Verify in one tight loop, prefetching the code `PREFETCH_AHEAD` candidates ahead:
        // the loads of different candidates are independent, so their cache misses overlap
        // (benches/hamming.rs, 1 M codes, t=31, when first tuned: bucket by bucket 5.6k q/s,
        // gathered 8.8k, + prefetch 8 ahead 13.0k, 16 ahead 15.6k, 32 ahead 11.8k; sorting
        // the ids first was slower, 6.7k; now 32 is best, see `PREFETCH_AHEAD`).
        for (k, &id) in candidates.iter().enumerate() {
            if let Some(&ahead) = candidates.get(k + PREFETCH_AHEAD) {
                // First and last byte: the column need not be aligned to a code, so a
                // 32-byte code may straddle two lines (PDQ in the load test's mixed batches
                // 1.70-1.95 -> 1.65-1.70 ms per batch; 10 M list 8.6-9.2k -> 9.5-9.7k q/s).
                let at = ahead as usize * words * 8;
                prefetch(&codes[at]);
                prefetch(&codes[at + words * 8 - 1]);
            }
            let d = distance(codes, words, id as usize, q);
            if d <= threshold {
                found(id, d);
            }
        }
        SCRATCH.with(|s| *s.borrow_mut() = scratch);
    }

    /// Whether any code lies within `threshold` of `query`. This is the near-miss check (is
    /// anything just beyond the list's threshold?) at radii where a full search is costly.
    /// For 64-bit codes 16 bits past a threshold of 8 the ball holds thousands of codes of a
    /// large list and the first is found after a few probes: a probe at a time, stopping at
    /// the first. For PDQ the ball is almost always empty, so every probe is read anyway: a
    /// full [`HammingIndex::search_each`], whose sketches reject nearly every candidate
    /// (at 31 + 16 a chunk's radius is 2: ~8x the probes and candidates of a search at 31).
    pub fn any_within(&self, query: &[u8], threshold: u32) -> bool {
        if self.is_empty() || query.len() != self.words * 8 {
            return false;
        }
        if self.words > 1 {
            let mut any = false;
            self.search_each(query, threshold, |_, _| any = true);
            return any;
        }
        let q = query_words(query)[0];
        let m = self.chunks.len() as u32;
        self.chunks.iter().enumerate().any(|(i, chunk)| {
            let Some(radius) = chunk_radius(i, m, threshold, chunk.width) else {
                return false;
            };
            let directory: &[u32] = &chunk.directory;
            let ids: &[u32] = &chunk.ids;
            let inline = chunk.inline.as_deref();
            let codes: &[u8] = &self.codes;
            try_for_each_within(chunk.value_of(&[q]), chunk.width, radius, |probe| {
                let lo = directory[probe as usize] as usize;
                let hi = directory[probe as usize + 1] as usize;
                let hit = match inline {
                    Some(inline) => inline[lo..hi]
                        .iter()
                        .any(|&code| (code ^ q).count_ones() <= threshold),
                    None => ids[lo..hi]
                        .iter()
                        .any(|&id| distance(codes, 1, id as usize, &[q]) <= threshold),
                };
                if hit {
                    ControlFlow::Break(())
                } else {
                    ControlFlow::Continue(())
                }
            })
            .is_break()
        })
    }

    /// Whether [`HammingIndex::search_batch`] beats query-at-a-time searches for `queries`
    /// queries: when the index is much larger than the CPU's caches (its random reads go to
    /// memory), there are enough queries, and the codes are few enough that one flush of
    /// candidates reads them densely. Measured with `hashsieve match --stats` on the peers
    /// corpus (10 000 PDQ queries, one thread): 1 M codes (100 MB with the codes) batch 33 k
    /// queries/s against 19.3 k; 10 M codes batch 6.6-7.0 k against 7.2 k (the sorted reads
    /// are one per cache line there, so sorting buys nothing); `benches/hamming.rs` at 200 k
    /// codes (23 MB, in cache) batch 118 k against 135 k. 64-bit codes, 1 M of them at
    /// distance 8 (57 MB with the codes), 20 000 queries (`scripts/synth_entries.sh`, see the
    /// README): batch 324 k against 128 k (at 200 k codes, 14 MB, the two tie: 794 k against
    /// 826 k in the bench). Never with sketches, which only the query-at-a-time search reads
    /// (at 1 M codes with sketches it beat the batch search: see [`SKETCH_MAX_BYTES`]).
    pub fn prefers_batch(&self, queries: usize) -> bool {
        let bytes = self.table_bytes() + self.codes.len();
        let rows = self.codes.len() / (self.words * 8);
        let sketched = self.chunks.iter().any(|c| c.sketch.is_some());
        queries >= BATCH_MIN_QUERIES
            && bytes >= BATCH_MIN_BYTES
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
    fn batch_plan(
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
    fn search_groups<C: Candidate>(
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

    /// Every code within `threshold` of `query`, as `(code_index, distance)` sorted by
    /// distance then index, without repeats.
    pub fn search(&self, query: &[u8], threshold: u32) -> Vec<(u32, u32)> {
        let mut out = Vec::new();
        self.search_each(query, threshold, |id, d| out.push((d, id)));
        out.sort_unstable();
        out.dedup();
        out.into_iter().map(|(d, id)| (id, d)).collect()
    }
}

impl ChunkTable {
    /// A table over the listed `rows` of a code column (`words` big-endian words per row).
    /// Values are read from the column directly: no copy of the codes (10 M PDQ codes are
    /// 320 MB).
    fn build(
        codes: &[u8],
        words: usize,
        rows: &[u32],
        (start, width): (u32, u32),
        sketch: bool,
    ) -> ChunkTable {
        let n = rows.len();
        let slots = 1usize << width;
        let mut counts = vec![0u32; slots + 1];
        let values: Vec<u32> = rows
            .iter()
            .map(|&r| {
                let mut code = [0u64; 4];
                for (w, c) in code.iter_mut().enumerate().take(words) {
                    *c = word(codes, words, r as usize, w);
                }
                extract(&code[..words], start, width)
            })
            .collect();
        for &v in &values {
            counts[v as usize + 1] += 1;
        }
        for i in 1..counts.len() {
            counts[i] += counts[i - 1];
        }
        let directory = counts.clone();
        let mut next = counts;
        let mut ids = vec![0u32; n];
        for (&row, &v) in rows.iter().zip(&values) {
            let slot = &mut next[v as usize];
            ids[*slot as usize] = row;
            *slot += 1;
        }
        let inline = (words == 1).then(|| {
            Column::Owned(
                ids.iter()
                    .map(|&r| word(codes, words, r as usize, 0))
                    .collect::<Vec<u64>>(),
            )
        });
        let sketch = sketch.then(|| {
            let half = sketch_half(start);
            let words_of = |&r: &u32| [half, half + 1].map(|w| word(codes, words, r as usize, w));
            Column::Owned(ids.iter().flat_map(words_of).collect::<Vec<u64>>())
        });
        ChunkTable {
            start,
            width,
            directory: Column::Owned(directory),
            ids: Column::Owned(ids),
            inline,
            sketch,
        }
    }

    fn value_of(&self, code: &[u64]) -> u32 {
        extract(code, self.start, self.width)
    }
}

/// The search radius of chunk `i` (of `m`, `width` bits wide) at `threshold`: with
/// `threshold = q * m + s`, the first `s + 1` chunks get `q` and the others `q - 1`; `None`
/// when that is negative (the chunk is not searched). Capped at the chunk's width.
fn chunk_radius(i: usize, m: u32, threshold: u32, width: u32) -> Option<u32> {
    let (quotient, rest) = (threshold / m, threshold % m);
    let radius = if (i as u32) <= rest {
        quotient
    } else {
        quotient.checked_sub(1)?
    };
    Some(radius.min(width))
}

/// A query's big-endian bytes as words (up to four; missing bytes read as zero).
fn query_words(query: &[u8]) -> [u64; 4] {
    let mut q = [0u64; 4];
    for (w, bytes) in q.iter_mut().zip(query.chunks_exact(8)) {
        *w = u64::from_be_bytes(bytes.try_into().unwrap_or([0; 8]));
    }
    q
}

/// Bits `start..start + width` of a code (bit 0 = most significant bit of word 0).
#[inline]
fn extract(code: &[u64], start: u32, width: u32) -> u32 {
    let word = (start / 64) as usize;
    let offset = start % 64;
    // Join the word with the next one so chunks may straddle a word boundary.
    let hi = u128::from(code[word]) << 64;
    let lo = code.get(word + 1).map_or(0u128, |&w| u128::from(w));
    let joined = hi | lo;
    let shifted = joined >> (128 - offset - width);
    (shifted as u32) & ((1u32 << width) - 1)
}

/// Bytes of directories and id tables per indexed code the chunk width may cost.
const INDEX_BUDGET: f64 = 96.0;
/// Bytes of directories and id tables any index may use, however few its codes: a small
/// list cannot afford a useful layout from 96 bytes per code (20 000 PDQ codes: 1.9 MB,
/// thirty-two 8-bit chunks whose buckets hold ~80 codes each; with this floor fourteen
/// 15-bit chunks and four of 11-12 bits, 3.3 MB).
const INDEX_FLOOR: f64 = 16.0 * 1024.0 * 1024.0;

/// Whether chunks of `widths` over `n` codes fit [`INDEX_BUDGET`] bytes per code (or
/// [`INDEX_FLOOR`] bytes in all, if more): directory slots plus, per chunk, an id (and for
/// 64-bit codes the code inline: 12 bytes).
fn fits_budget(n: usize, widths: &[u32], inline: bool) -> bool {
    let id_bytes = if inline { 12.0 } else { 4.0 };
    let slots: f64 = widths.iter().map(|&w| ((1u64 << w) + 1) as f64).sum();
    let bytes = slots * 4.0 + (n * widths.len()) as f64 * id_bytes;
    bytes <= (INDEX_BUDGET * n as f64).max(INDEX_FLOOR)
}

/// The widest chunk a code of `words` words is cut into (a directory has `2^width` slots).
fn max_width(words: usize) -> u32 {
    if words == 1 { 16 } else { 24 }
}

/// The widths of the chunks a `bits`-bit code is cut into for a nominal `width`: as many
/// chunks as `width` needs, the bits spread as evenly as possible, the wider chunks first.
fn chunk_widths(bits: u32, width: u32) -> impl Iterator<Item = u32> {
    let m = bits.div_ceil(width);
    let (base, wider) = (bits / m, bits % m);
    (0..m).map(move |i| base + u32::from(i < wider))
}

/// A probe's cost relative to a candidate's, for 256-bit codes: a probe reads a directory
/// slot and then its run of ids (two dependent cache misses), a candidate one random read of
/// its code. For 64-bit codes the candidates sit inline in the run, read in sequence: a
/// candidate costs a fraction of a miss. Calibrated with `benches/hamming.rs`
/// (`HASHSIEVE_BENCH_WIDTHS=14,16`), 64-bit codes at distance 8: at 200 k codes width 13
/// (5 chunks) answers 746 k queries/s and width 16 (4 chunks) 411 k; at 1 M, width 16 154 k
/// and width 14 79 k. Fitting time = probes * a + candidates * b gives b = a / 23 at 200 k
/// (all in cache) and a / 4.6 at 1 M (the scan is bound by memory bandwidth); a candidate
/// at 1/8 of a probe picks the faster width in both.
const PROBE_COST: f64 = 2.0;
const INLINE_CANDIDATE_COST: f64 = 0.25;

/// The expected cost of one search at `threshold` over `n` uniformly spread codes cut into
/// chunks of `widths`: per chunk, the probes of its radius, each with its share of the codes.
fn chunk_cost(n: usize, threshold: u32, widths: &[u32], inline: bool) -> f64 {
    let m = widths.len() as u32;
    let candidate = if inline { INLINE_CANDIDATE_COST } else { 1.0 };
    widths
        .iter()
        .enumerate()
        .map(|(i, &w)| {
            let Some(radius) = chunk_radius(i, m, threshold, w) else {
                return 0.0;
            };
            let probes = ball_size(w, radius);
            probes * (PROBE_COST + candidate * n as f64 / (1u64 << w) as f64)
        })
        .sum()
}

/// The number of `width`-bit values within Hamming distance `radius` of one.
fn ball_size(width: u32, radius: u32) -> f64 {
    let mut term = 1.0;
    let mut sum = 1.0;
    for k in 1..=radius {
        term = term * f64::from(width - k + 1) / f64::from(k);
        sum += term;
    }
    sum
}

/// The chunk widths of least [`chunk_cost`] at `threshold` among those whose directories and
/// id tables fit [`INDEX_BUDGET`] bytes per code (64-bit codes also store the code beside
/// each id: 12 bytes per id instead of 4). Wider chunks mean fewer candidates per probe but
/// larger radii (more probes); narrower chunks the reverse.
///
/// With `m` chunks, the first `threshold % m + 1` get the larger radius (`chunk_radius`), and
/// they need not be as wide as the others: besides the even spread of `m` chunks, each layout
/// tried gives those chunks one width and spreads the remaining bits evenly over the rest.
/// For 1 M PDQ codes at 31 this picks four 20-bit chunks (radius 2) and ten of 17-18 bits
/// (radius 1): 1 030 probes and 1 789 candidates per search, against 964 and 2 182 for
/// fourteen even chunks of 18-19 bits; the peers corpus ran 5-8% faster (`hashsieve match
/// --stats`, three alternated runs).
fn tuned_widths(n: usize, bits: u32, threshold: u32, inline: bool) -> Vec<u32> {
    let top = max_width(if inline { 1 } else { 4 });
    let mut best: Option<(f64, u64, Vec<u32>)> = None;
    for m in bits.div_ceil(top)..=bits / 8 {
        let first = threshold % m + 1;
        let even: Vec<u32> = chunk_widths(bits, bits.div_ceil(m)).collect();
        let even = (even.len() as u32 == m).then_some(even);
        let uneven = (8..=top).filter_map(|wide| layout(bits, m, first, wide, top));
        for widths in even.into_iter().chain(uneven) {
            if !fits_budget(n, &widths, inline) {
                continue;
            }
            let cost = chunk_cost(n, threshold, &widths, inline);
            // Ties (layouts of the same cost) go to the smaller directories.
            let slots: u64 = widths.iter().map(|&w| 1u64 << w).sum();
            if best
                .as_ref()
                .is_none_or(|(c, s, _)| cost.total_cmp(c).then(slots.cmp(s)).is_lt())
            {
                best = Some((cost, slots, widths));
            }
        }
    }
    best.map_or_else(|| chunk_widths(bits, 8).collect(), |(_, _, widths)| widths)
}

/// `m` chunk widths over `bits` bits: the first `first` chunks `wide` bits each, the rest
/// (at least one) spread evenly, wider first; `None` if a chunk would fall outside
/// 8..=`top` bits.
fn layout(bits: u32, m: u32, first: u32, wide: u32, top: u32) -> Option<Vec<u32>> {
    let others = m.checked_sub(first).filter(|&o| o > 0)?;
    let rest = bits.checked_sub(first * wide)?;
    let (base, spare) = (rest / others, rest % others);
    let widths: Vec<u32> = (0..first)
        .map(|_| wide)
        .chain((0..others).map(|i| base + u32::from(i < spare)))
        .collect();
    widths
        .iter()
        .all(|w| (8..=top).contains(w))
        .then_some(widths)
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
/// `BATCH_CANDIDATES`, down to a quarter of it. Measured on 1 M PDQ codes, 10 000 queries,
/// two threads, six alternated pairs: flushing at 2^19 made 62.7-68.0k q/s against
/// 62.0-63.8k at 2^20; on one thread 2^20 stays best (2^19 36.0-38.0k against 36.1-39.4k).
fn flush_size(threads: usize) -> usize {
    (BATCH_CANDIDATES / threads.max(1)).max(BATCH_CANDIDATES / 4)
}
/// Bits per pass of [`radix_sort`] (4 096 buckets: the scatter writes that many streams).
const RADIX_BITS: u32 = 12;

/// Queries and index size from which [`HammingIndex::prefers_batch`] (unit tests batch
/// from two queries on, so that the index's batch path is compared with the other).
const BATCH_MIN_QUERIES: usize = if cfg!(test) { 2 } else { 256 };
const BATCH_MIN_BYTES: usize = if cfg!(test) { 1 } else { 48 << 20 };

/// Per-thread buffers of [`HammingIndex::search_batch`].
#[derive(Default)]
struct BatchScratch {
    /// Probes, candidates and a sort buffer, in 32 or 64 bits ([`Candidate`]).
    narrow: (Vec<u32>, Vec<u32>, Vec<u32>),
    wide: (Vec<u64>, Vec<u64>, Vec<u64>),
    counts: Vec<u32>,
}

/// How a batch search probe or candidate packs its key (high bits: a chunk value, or a row)
/// and its query's position in its group (low bits), so that sorting by key sorts the
/// integers' high bits.
#[derive(Debug, Clone, Copy)]
struct Packing {
    key_bits: u32,
    query_bits: u32,
}

/// A batch search probe or candidate: 32 bits when the key and the query's position fit (1 M
/// rows, chunks of up to 20 bits and groups of 4 096 do), else 64. Halving what is sorted
/// and scanned made PDQ at 1 M (10 000 queries, four alternated pairs), for the candidates,
/// 30.9-35.7k -> 35.1-37.2k q/s on one thread and 59.3-62.2k -> 60.7-64.9k on two; then for
/// the probes 35.4-38.1k -> 38.2-39.1k on one thread (two: 60.5-68.5k -> 63.8-70.7k).
trait Candidate: Copy + Default {
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

/// Sorts `items` by `key(item)` (below `2^bits`), least significant digit first, a stable
/// counting sort per [`RADIX_BITS`]-bit digit; `tmp` and `counts` are scratch. One pass
/// counts every digit, then one scatter pass per digit: sequential passes over the items,
/// where a comparison sort would be `log n` passes of unpredictable branches.
fn radix_sort<T: Copy + Default>(
    items: &mut Vec<T>,
    tmp: &mut Vec<T>,
    counts: &mut Vec<u32>,
    bits: u32,
    key: impl Fn(T) -> usize,
) {
    let digits = bits.div_ceil(RADIX_BITS) as usize;
    let radix = 1usize << RADIX_BITS;
    let mask = radix - 1;
    counts.clear();
    counts.resize(digits * radix, 0);
    for &x in items.iter() {
        let k = key(x);
        for (d, c) in counts.chunks_exact_mut(radix).enumerate() {
            c[(k >> (d as u32 * RADIX_BITS)) & mask] += 1;
        }
    }
    // Exclusive prefix sums: each bucket's first position (items are fewer than 2^32: a
    // batch holds at most `BATCH_GROUP` queries' probes or `BATCH_CANDIDATES` plus one
    // table's ids).
    for c in counts.chunks_exact_mut(radix) {
        let mut at = 0u32;
        for slot in c.iter_mut() {
            let n = *slot;
            *slot = at;
            at = at.wrapping_add(n);
        }
    }
    for (d, c) in counts.chunks_exact_mut(radix).enumerate() {
        let shift = d as u32 * RADIX_BITS;
        tmp.clear();
        tmp.resize(items.len(), T::default());
        for &x in items.iter() {
            let slot = &mut c[(key(x) >> shift) & mask];
            tmp[*slot as usize] = x;
            *slot += 1;
        }
        std::mem::swap(items, tmp);
    }
}

/// Per-thread buffers of [`HammingIndex::search_each`].
#[derive(Default)]
struct Scratch {
    probes: Vec<(u32, u32)>,
    runs: Vec<(u32, u32, u32)>,
    candidates: Vec<u32>,
}

thread_local! {
    static SCRATCH: std::cell::RefCell<Scratch> = std::cell::RefCell::new(Scratch::default());
}

/// How many candidates ahead the verification loop prefetches. 16 was best when it was
/// tuned (before the three gathering passes, and with one prefetch per code); measured again
/// with both lines of a code prefetched, 32 is better everywhere: 10 M PDQ codes (`hashsieve
/// match --stats`, one thread, alternated) 8.7-9.9k -> 10.2-10.6k q/s; the load test's
/// mixed batches at 200 000 per kind (in process) 2.47-2.55 -> 2.32-2.49 ms; criterion at
/// 100 k and 200 k codes +5% and +19%.
const PREFETCH_AHEAD: usize = 32;

/// Calls `f` for every `width`-bit value within Hamming distance `radius` of `value`.
fn for_each_within(value: u32, width: u32, radius: u32, mut f: impl FnMut(u32)) {
    let _ = try_for_each_within::<()>(value, width, radius, |v| {
        f(v);
        ControlFlow::Continue(())
    });
}

/// Calls `f` for every `width`-bit value within Hamming distance `radius` of `value`, nearest
/// first, until `f` breaks.
fn try_for_each_within<B>(
    value: u32,
    width: u32,
    radius: u32,
    mut f: impl FnMut(u32) -> ControlFlow<B>,
) -> ControlFlow<B> {
    f(value)?;
    // Masks of exactly k bits, k = 1..=radius, in increasing order (Gosper's hack).
    for k in 1..=radius {
        let mut mask: u64 = (1u64 << k) - 1;
        let limit = 1u64 << width;
        while mask < limit {
            f(value ^ mask as u32)?;
            let c = mask & mask.wrapping_neg();
            let r = mask + c;
            mask = (((r ^ mask) >> 2) / c) | r;
        }
    }
    ControlFlow::Continue(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn random_codes(n: usize, bytes: usize, seed: u64) -> Vec<u8> {
        let mut x = seed | 1;
        (0..n * bytes)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 32) as u8
            })
            .collect()
    }

    fn brute(codes: &[u8], bytes: usize, q: &[u8], t: u32) -> Vec<(u32, u32)> {
        let mut out: Vec<(u32, u32)> = codes
            .chunks_exact(bytes)
            .enumerate()
            .map(|(i, c)| (i as u32, crate::kinds::hamming_bytes(c, q)))
            .filter(|&(_, d)| d <= t)
            .collect();
        out.sort_by_key(|&(i, d)| (d, i));
        out
    }

    #[test]
    fn enumerates_exactly_the_ball() {
        for (width, radius) in [(8, 0), (8, 2), (12, 3), (16, 1)] {
            let mut seen = Vec::new();
            for_each_within(0b1010, width, radius, |v| seen.push(v));
            let expected: Vec<u32> = (0..1u32 << width)
                .filter(|v| (v ^ 0b1010).count_ones() <= radius)
                .collect();
            seen.sort_unstable();
            assert_eq!(seen, expected, "width {width} radius {radius}");
        }
    }

    #[test]
    fn extract_straddles_words() {
        let code = [0x0123_4567_89ab_cdefu64, 0xfedc_ba98_7654_3210, 0, 0];
        assert_eq!(extract(&code, 0, 16), 0x0123);
        assert_eq!(extract(&code, 56, 16), 0xeffe);
        assert_eq!(extract(&code, 60, 8), 0xff);
    }

    #[test]
    fn exact_recall_against_brute_force() {
        for (bits, n, thresholds) in [
            (256usize, 3000usize, &[0u32, 1, 8, 31, 32, 64][..]),
            (64, 2000, &[0, 3, 8, 16][..]),
        ] {
            let bytes = bits / 8;
            let mut codes = random_codes(n, bytes, bits as u64);
            // Plant near neighbours of the first queries.
            let queries = random_codes(20, bytes, 77);
            for (qi, q) in queries.chunks_exact(bytes).enumerate() {
                let mut near = q.to_vec();
                for b in 0..(qi % 12) {
                    near[(b * 7) % bytes] ^= 1 << (b % 8);
                }
                codes[qi * bytes..(qi + 1) * bytes].copy_from_slice(&near);
            }
            // Every layout (tuned for any threshold, or any width) answers every threshold.
            let rows: Vec<u32> = (0..n as u32).collect();
            let even = (8..=max_width(bits / 64))
                .step_by(3)
                .map(|w| HammingIndex::even_widths(bits, w));
            // Tuned layouts: for 1 M codes at 31 the first chunks are wider than the others.
            let tuned = [(n, 8), (1_000_000, 31)]
                .map(|(n, t)| HammingIndex::tuned_widths(n, bits, t).unwrap());
            for widths in even.chain(tuned) {
                let column = Column::Owned(codes.clone());
                let index = HammingIndex::over_rows(bits, column, &rows, &widths).unwrap();
                let width = format!("{widths:?}");
                // PDQ-sized codes get sketches (small lists); the same tables without them
                // must find the same (what a 10 M list, or an index built without, does).
                let sketched = index.chunks.iter().filter(|c| c.sketch.is_some()).count();
                assert_eq!(sketched, if bits == 256 { widths.len() } else { 0 });
                let mut plain = index.clone();
                for c in &mut plain.chunks {
                    c.sketch = None;
                }
                for &t in thresholds {
                    for q in queries.chunks_exact(bytes) {
                        let expected = brute(&codes, bytes, q, t);
                        assert_eq!(plain.search(q, t), expected, "plain: w {width} t {t}");
                        assert_eq!(plain.any_within(q, t), !expected.is_empty(), "plain any");
                    }
                    let mut batch: Vec<Vec<(u32, u32)>> = vec![Vec::new(); 20];
                    index.search_batch(&queries, t, |qi, row, d| batch[qi as usize].push((row, d)));
                    // The same batch with 64-bit candidates (which only lists of millions of
                    // codes need).
                    let mut wide: Vec<Vec<(u32, u32)>> = vec![Vec::new(); 20];
                    let (qs, group, packing) = index.batch_plan(&queries, t).unwrap();
                    index.search_groups::<u64>(&qs, t, group, packing, &mut |qi, row, d| {
                        wide[qi as usize].push((row, d))
                    });
                    for (qi, q) in queries.chunks_exact(bytes).enumerate() {
                        let expected = brute(&codes, bytes, q, t);
                        assert_eq!(index.search(q, t), expected, "bits {bits} w {width} t {t}");
                        assert_eq!(index.any_within(q, t), !expected.is_empty(), "any, t {t}");
                        let found = &mut batch[qi];
                        found.sort_by_key(|&(row, d)| (d, row));
                        found.dedup();
                        assert_eq!(*found, expected, "batch: bits {bits} w {width} t {t}");
                        let found = &mut wide[qi];
                        found.sort_by_key(|&(row, d)| (d, row));
                        found.dedup();
                        assert_eq!(*found, expected, "wide: bits {bits} w {width} t {t}");
                    }
                }
            }
        }
    }

    #[test]
    fn tuning_follows_the_threshold_and_the_budget() {
        // 64-bit codes at distance 8: radius-1 chunks beat wide ones with radius 2.
        let w64 = tuned_widths(200_000, 64, 8, true);
        assert!(
            w64.iter().all(|w| (11..16).contains(w)),
            "64-bit widths {w64:?}"
        );
        // More codes need wider chunks (fewer candidates per probe): fewer of them.
        let (big, small) = (
            tuned_widths(10_000_000, 256, 31, false),
            tuned_widths(10_000, 256, 31, false),
        );
        assert!(big.len() <= small.len(), "{big:?} against {small:?}");
        // 1 M PDQ codes at 31: the chunks searched at radius 2 are wider than the others.
        let pdq = tuned_widths(1_000_000, 256, 31, false);
        assert!(pdq[0] > pdq[pdq.len() - 1], "{pdq:?}");
        assert_eq!(chunk_radius(0, pdq.len() as u32, 31, pdq[0]), Some(2));
        // A small list is held to 16 MB in all rather than 96 bytes per code: 20 000 PDQ
        // codes get chunks of 11 bits and more (at 96 bytes per code, thirty-two of 8 bits).
        let small = tuned_widths(20_000, 256, 31, false);
        assert!(small.iter().all(|&w| w >= 11), "{small:?}");
        // Threshold 0 searches the first chunk only: at least as wide as any even layout
        // within the budget allows.
        let widest_even = (8..=24)
            .filter(|&w| fits_budget(1_000_000, &HammingIndex::even_widths(256, w), false))
            .max()
            .unwrap();
        assert!(tuned_widths(1_000_000, 256, 0, false)[0] >= widest_even);
        for (n, bits, t, inline) in [
            (1, 64, 8, true),
            (200_000, 64, 16, true),
            (1_000_000, 256, 31, false),
            (100_000_000, 256, 64, false),
        ] {
            let widths = tuned_widths(n, bits, t, inline);
            assert_eq!(widths.iter().sum::<u32>(), bits, "{n}: {widths:?}");
            let top = max_width(if inline { 1 } else { 4 });
            assert!(widths.iter().all(|w| (8..=top).contains(w)), "{widths:?}");
            assert!(
                widths.iter().all(|&w| w == 8) || fits_budget(n, &widths, inline),
                "{n}: widths {widths:?}"
            );
        }
        assert_eq!(ball_size(16, 2), 137.0);
        assert_eq!(ball_size(8, 8), 256.0);
    }

    #[test]
    fn empty_and_wrong_width() {
        let index = HammingIndex::new(256, &[], 31).unwrap();
        assert!(index.search(&[0; 32], 31).is_empty());
        assert_eq!(
            HammingIndex::new(128, &[], 8).unwrap_err(),
            HammingError::UnsupportedWidth(128)
        );
        let index = HammingIndex::new(64, &[0; 8], 8).unwrap();
        assert!(
            index.search(&[0; 32], 3).is_empty(),
            "a query of the wrong width matches nothing"
        );
        assert_eq!(index.search(&[0; 8], 0), vec![(0, 0)]);
        // A batch of no queries, or of bytes that are not whole codes, finds nothing.
        for queries in [&[][..], &[0u8; 12][..]] {
            let mut found = 0;
            index.search_batch(queries, 8, |_, _, _| found += 1);
            assert_eq!(found, 0);
        }
    }

    #[test]
    fn persisted_parts_are_checked() {
        let codes = random_codes(500, 32, 5);
        let index = HammingIndex::new(256, &codes, 31).unwrap();
        let rebuild = |parts: Vec<ChunkTable>| {
            HammingIndex::from_parts(256, Column::Owned(codes.clone()), parts)
        };
        let again = rebuild(index.parts().to_vec()).unwrap();
        assert_eq!(
            again.search(&codes[..32], 31),
            index.search(&codes[..32], 31)
        );
        // A sketch of the wrong length, or one on 64-bit codes, is refused.
        let mut parts = index.parts().to_vec();
        parts[1].sketch = Some(Column::Owned(vec![0; 2 * 500 - 1]));
        assert_eq!(
            rebuild(parts).unwrap_err(),
            HammingError::BadChunk {
                chunk: 1,
                what: "sketches"
            }
        );
        let small = HammingIndex::new(64, &codes[..8 * 100], 8).unwrap();
        let mut parts = small.parts().to_vec();
        parts[0].sketch = Some(Column::Owned(vec![0; 2 * 100]));
        let e = HammingIndex::from_parts(64, Column::Owned(codes[..800].to_vec()), parts);
        assert!(matches!(
            e,
            Err(HammingError::BadChunk {
                what: "sketches",
                ..
            })
        ));
    }
}

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
//! - this file: the types, building and checking persisted tables;
//! - [`layout`]: the chunk widths a cost model picks for a list's size and threshold;
//! - [`search`]: one query at a time (what the server does for small batches and GETs);
//! - [`batch`]: many queries together, probes and candidates sorted before they are read;
//! - [`bits`]: bit extraction, distances, ball enumeration and the radix sort.
//!
//! Why the layout is what it is, and what each choice measured, is in
//! `docs/index-design.md`.

mod batch;
mod bits;
mod layout;
mod search;

use super::column::Column;
use bits::{extract, word};
use layout::{chunk_widths, max_width, tuned_widths};

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

/// The first of the two words a 256-bit chunk table starting at bit `start` sketches: the
/// half of the code that does not hold that bit (a chunk may straddle the halves; the
/// bound holds for any half, it is only tighter when disjoint from the chunk).
fn sketch_half(start: u32) -> usize {
    if start < 128 { 2 } else { 0 }
}

/// Sketches of 256-bit codes (16 bytes per id per chunk table) are built while they take at
/// most this much in all (lists up to ~260 000 PDQ codes): like the layout's floor, a small
/// list may spend more per code, while a large one stays within the index's 100 bytes per
/// entry (`docs/index-design.md`, "Sketches").
const SKETCH_MAX_BYTES: usize = 64 << 20;

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

    /// The code of `row` (`bits / 8` big-endian bytes).
    pub fn code(&self, row: u32) -> &[u8] {
        let len = self.words * 8;
        let at = row as usize * len;
        &self.codes[at..at + len]
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

#[cfg(test)]
mod tests {
    use super::*;

    fn random_codes(n: usize, bytes: usize, seed: u64) -> Vec<u8> {
        use rand::{RngExt, SeedableRng};
        let mut rng = rand::rngs::SmallRng::seed_from_u64(seed);
        (0..n * bytes).map(|_| rng.random::<u8>()).collect()
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

//! Query-at-a-time search: the probes of every chunk, then their runs, then the candidates,
//! each pass of independent reads so that their cache misses overlap.

use std::ops::ControlFlow;

use super::bits::{distance, for_each_within, query_words, scan_inline, try_for_each_within};
use super::layout::chunk_radius;
use super::{ChunkTable, HammingIndex, sketch_half};
use crate::prefetch::{prefetch, prefetch_to};

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

/// Prefetches every cache line of a run of a chunk table's inline codes or sketches, not just
/// its first: buckets of 64-bit codes span several lines, and when other kinds' tables have
/// pushed them out of the caches the later lines would be misses one after another.
#[inline(always)]
fn prefetch_run(run: &[u64]) {
    for line in run.chunks(8) {
        prefetch(&line[0]);
    }
    if let Some(last) = run.last() {
        prefetch(last);
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

/// How many candidates ahead the verification loop prefetches: far enough for a miss to
/// land before its code is read, near enough that the lines are still cached (tuned on 1 M
/// and 10 M codes: `docs/index-design.md`, "Prefetching").
const PREFETCH_AHEAD: usize = 32;

impl HammingIndex {
    /// Calls `found(code_index, distance)` for every code within `threshold` of `query`
    /// (big-endian bytes). A code may be reported more than once (found through several
    /// chunks); [`HammingIndex::search`] deduplicates.
    pub fn search_each(&self, query: &[u8], threshold: u32, found: impl FnMut(u32, u32)) {
        if crate::prefetch::far_into_l2() {
            self.search_each_to::<false>(query, threshold, found);
        } else {
            self.search_each_to::<true>(query, threshold, found);
        }
    }

    /// [`HammingIndex::search_each`], its directory slots and candidates' codes prefetched
    /// into L1 or into L2 only (`crate::prefetch::far_into_l2`): a search asks for thousands
    /// of lines at once, far more than the fill buffers hold.
    fn search_each_to<const L1: bool>(
        &self,
        query: &[u8],
        threshold: u32,
        mut found: impl FnMut(u32, u32),
    ) {
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
                prefetch_to::<L1, _>(&directory[probe as usize]);
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
        // the loads of different candidates are independent, so their cache misses overlap.
        for (k, &id) in candidates.iter().enumerate() {
            if let Some(&ahead) = candidates.get(k + PREFETCH_AHEAD) {
                // First and last byte: the column need not be aligned to a code, so a
                // 32-byte code may straddle two lines.
                let at = ahead as usize * words * 8;
                prefetch_to::<L1, _>(&codes[at]);
                prefetch_to::<L1, _>(&codes[at + words * 8 - 1]);
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

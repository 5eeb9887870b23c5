//! The match index: built only from verified hash sets, immutable once built.
//!
//! - [`exact`]: sorted digests with a radix directory, and a binary-fuse prefilter;
//! - [`hamming`]: multi-index hashing for PDQ and the 64-bit perceptual hashes;
//! - [`query`]: parsing queries (`kind:hex[:quality]` lines, `hashsieve hash` records).
//!
//! [`Index`] holds, per list and per kind, the structure for that kind, and answers batches
//! of queries ([`Index::match_batch`]) with one [`Verdict`] per query: every entry within the
//! list's threshold, with list, version, category, reference and distance, sorted by distance.

pub mod column;
pub mod exact;
pub mod hamming;
pub(crate) mod prefetch;
pub mod query;
pub mod store;

use std::sync::Arc;

use rayon::prelude::*;
use serde::Serialize;

use crate::hashing::pdq::MIN_TRUSTED_QUALITY;
use crate::hashset::format::{HashSetFile, Section};
use crate::kinds::{HashKind, HashValue};
use column::{Backing, Column};
use exact::{ExactFilter, ExactTable};
use hamming::HammingIndex;

/// Smallest number of queries a pool thread takes at once in [`Index::match_batch`].
pub const PARALLEL_CHUNK: usize = 1024;

/// Queries from which a batch of exact lookups alone is split over the pool.
const PARALLEL_EXACT: usize = 1 << 20;

/// One hash to look up. PDQ hashes may carry their quality (0..=100).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Query {
    pub hash: HashValue,
    pub quality: Option<u8>,
}

/// One list entry that matched.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Match {
    pub list: Arc<str>,
    pub version: u64,
    #[serde(serialize_with = "serialize_kind")]
    pub kind: HashKind,
    pub category: String,
    #[serde(rename = "ref")]
    pub reference: String,
    pub distance: u32,
}

fn serialize_kind<S: serde::Serializer>(kind: &HashKind, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(kind.name())
}

/// The decision for one query.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    Match,
    NoMatch,
    /// A PDQ hash whose quality is under 50: too featureless to trust either way. Matches
    /// found are still listed so an operator can look, but they are not a verdict.
    LowQuality,
}

/// The answer to one query.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Verdict {
    pub verdict: Decision,
    pub matches: Vec<Match>,
}

impl Verdict {
    /// No entry within any threshold: the answer to almost every query.
    pub const NO_MATCH: Verdict = Verdict {
        verdict: Decision::NoMatch,
        matches: Vec::new(),
    };
}

/// What [`Verdicts`] hands out for queries it holds nothing for.
static NO_MATCH: Verdict = Verdict::NO_MATCH;

/// The verdicts of a batch, one per query in query order, held sparsely: almost every query
/// is a plain miss, so only the others are stored (with their positions) and the rest read
/// as [`Verdict::NO_MATCH`]. A dense list costs 32 bytes a query to build and to free: for
/// the CLI's batches of 262 144 SHA-256 queries against 10 M entries, 8 MB of fresh pages
/// every batch, about a tenth of the time spent matching.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Verdicts {
    len: usize,
    /// `(query, verdict)` for every query that is not a plain miss, by query.
    decided: Vec<(u32, Verdict)>,
}

impl Verdicts {
    /// Queries answered.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The verdicts in query order.
    pub fn iter(&self) -> impl Iterator<Item = &Verdict> + '_ {
        let mut decided = self.decided.iter().peekable();
        (0..self.len).map(move |i| match decided.next_if(|(j, _)| *j as usize == i) {
            Some((_, v)) => v,
            None => &NO_MATCH,
        })
    }

    /// The queries that are not a plain miss, as `(position, verdict)`, by position.
    pub fn decided(&self) -> &[(u32, Verdict)] {
        &self.decided
    }

    /// [`Verdicts::decided`], to edit the verdicts (their positions stay as they are).
    pub fn decided_mut(&mut self) -> impl Iterator<Item = (usize, &mut Verdict)> + '_ {
        self.decided.iter_mut().map(|(i, v)| (*i as usize, v))
    }

    /// One verdict per query, in order.
    pub fn into_vec(self) -> Vec<Verdict> {
        let mut all = vec![Verdict::NO_MATCH; self.len];
        for (i, v) in self.decided {
            all[i as usize] = v;
        }
        all
    }

    /// Appends the verdicts of the queries that follow this batch's.
    fn append(&mut self, next: Verdicts) {
        let offset = self.len as u32;
        self.decided
            .extend(next.decided.into_iter().map(|(i, v)| (i + offset, v)));
        self.len += next.len;
    }
}

/// How [`Index::match_batch_near`] looks for near misses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NearMiss {
    /// Bits beyond the threshold that make a near miss (0: do not look).
    pub bits: u32,
    /// Search one in this many perceptual queries wide (1: every query).
    pub every: u32,
}

impl NearMiss {
    pub const OFF: NearMiss = NearMiss { bits: 0, every: 1 };

    /// True for a random one in `every` calls.
    fn sample(self) -> bool {
        if self.every <= 1 {
            return true;
        }
        thread_local! {
            // xorshift64, seeded per thread from the OS-seeded hasher keys: unpredictable to
            // a partner, so probing queries cannot steer around the sample.
            static STATE: std::cell::Cell<u64> = std::cell::Cell::new({
                use std::hash::{BuildHasher, Hasher};
                std::collections::hash_map::RandomState::new().build_hasher().finish() | 1
            });
        }
        STATE.with(|s| {
            let mut x = s.get();
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            s.set(x);
            x % u64::from(self.every) == 0
        })
    }
}

/// Verdicts of a batch, and how many of its queries were near misses
/// ([`Index::match_batch_near`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answers {
    pub verdicts: Verdicts,
    /// Near misses among the sampled queries (multiply by `every` for an estimate).
    pub near_misses: usize,
}

/// Why an index cannot be built from a set.
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    #[error(transparent)]
    Table(#[from] exact::TableError),
    #[error(transparent)]
    Hamming(#[from] hamming::HammingError),
    #[error(transparent)]
    Column(#[from] column::ColumnError),
}

/// All lists, each at one version, ready to answer queries.
#[derive(Debug, Default)]
pub struct Index {
    /// Shared so that a new snapshot can keep the unchanged lists of the previous one.
    lists: Vec<Arc<ListIndex>>,
}

/// One list at one version: its verified set and the search structure of each kind.
#[derive(Debug)]
pub struct ListIndex {
    name: Arc<str>,
    version: u64,
    set: Arc<HashSetFile>,
    kinds: Vec<KindIndex>,
}

#[derive(Debug)]
struct KindIndex {
    kind: HashKind,
    section: Section,
    threshold: u32,
    search: KindSearch,
}

#[derive(Debug)]
enum KindSearch {
    Exact {
        table: ExactTable,
        filter: ExactFilter,
    },
    /// Codes are the section's distinct hashes; `starts[i]..starts[i + 1]` are the entries
    /// (in section order) that carry code `i`.
    /// Over the section's own hash column; a match at row `r` covers `r` and the rows after
    /// it that hold the same hash.
    Perceptual { index: HammingIndex },
}

impl Index {
    /// Builds the index over already verified sets (see [`crate::hashset::trust`]). Each set
    /// is one list; a list's thresholds come from its header, capped at the kind's maximum.
    pub fn build(sets: Vec<Arc<HashSetFile>>) -> Result<Index, IndexError> {
        let lists = sets
            .into_par_iter()
            .map(|set| ListIndex::build(set).map(Arc::new))
            .collect::<Result<Vec<_>, IndexError>>()?;
        Ok(Index { lists })
    }

    /// An index over lists built or loaded one by one (see [`store`]).
    pub fn from_lists(lists: Vec<Arc<ListIndex>>) -> Index {
        Index { lists }
    }

    /// Total number of entries indexed.
    pub fn entries(&self) -> usize {
        self.lists.iter().map(|l| l.set.len()).sum()
    }

    /// The lists and versions served.
    pub fn lists(&self) -> impl Iterator<Item = (&str, u64)> {
        self.lists.iter().map(|l| (&*l.name, l.version))
    }

    /// Answers a batch of queries, one verdict per query in the same order. Large batches are
    /// split over the rayon thread pool in chunks of at least [`PARALLEL_CHUNK`] queries:
    /// handing work to the pool costs tens of microseconds, which on exact lookups (about
    /// 10 ns each) is worth it only for big batches and more than one thread (measured: a
    /// 1 000-query batch through the pool on one thread ran at 20 M misses/s, in a plain loop
    /// at 93 M/s; `benches/lookup.rs`).
    pub fn match_batch(&self, queries: &[Query]) -> Vec<Verdict> {
        self.match_batch_in(queries, &|_| true)
    }

    /// [`Index::match_batch`] without a verdict of its own for each miss ([`Verdicts`]):
    /// for large batches, where one verdict per query is a real part of the cost.
    pub fn match_sparse(&self, queries: &[Query]) -> Verdicts {
        self.match_batch_near(queries, &|_| true, NearMiss::OFF)
            .verdicts
    }

    /// [`Index::match_batch`] against only the lists for which `include(name)` is true (a
    /// partner's entitlements): other lists are not searched at all.
    pub fn match_batch_in(
        &self,
        queries: &[Query],
        include: &(dyn Fn(&str) -> bool + Sync),
    ) -> Vec<Verdict> {
        self.match_batch_near(queries, include, NearMiss::OFF)
            .verdicts
            .into_vec()
    }

    /// [`Index::match_batch_in`] that also counts near misses: queries with no match but a
    /// perceptual entry within `near.bits` bits beyond its list's threshold (capped at the
    /// kind's maximum threshold). A wider search costs several times a normal one (PDQ at
    /// 31 + 16 probes ~8x as many buckets), so only a random one in `near.every` perceptual
    /// queries without a match asks whether anything lies in the wider radius (stopping at
    /// the first entry, [`HammingIndex::any_within`]) and is counted; `near.bits = 0` counts
    /// nothing and costs nothing. Verdicts are the same either way.
    pub fn match_batch_near(
        &self,
        queries: &[Query],
        include: &(dyn Fn(&str) -> bool + Sync),
        near: NearMiss,
    ) -> Answers {
        let threads = rayon::current_num_threads();
        // Exact lookups are ~12 ns each: a batch of them is split only when it is very large
        // (1 M SHA-256 queries, two threads: in 65 536-query batches 35 M/s split against 50
        // M/s on one thread; in 262 144-query batches 59-69 M/s split against 78-86 M/s;
        // probably the other core's caches are cold for the filter and the queries).
        // Perceptual searches are microseconds each and always worth splitting. (A closure:
        // on one thread the queries are not scanned for perceptual kinds at all.)
        let worth_splitting = || {
            queries.len() >= PARALLEL_EXACT
                || queries
                    .iter()
                    .filter(|q| q.hash.kind().is_perceptual())
                    .nth(PARALLEL_CHUNK / 16)
                    .is_some()
        };
        if queries.len() >= 2 * PARALLEL_CHUNK && threads > 1 && worth_splitting() {
            // Two parts per thread (one to steal if the other thread is slow): fewer, larger
            // parts keep each thread's filter probes pipelined and cost fewer merges.
            let part = queries.len().div_ceil(2 * threads).max(PARALLEL_CHUNK);
            let parts: Vec<Answers> = queries
                .par_chunks(part)
                .map(|chunk| self.match_chunk(chunk, include, near))
                .collect();
            let mut all = Answers {
                verdicts: Verdicts::default(),
                near_misses: 0,
            };
            for part in parts {
                all.verdicts.append(part.verdicts);
                all.near_misses += part.near_misses;
            }
            all
        } else {
            self.match_chunk(queries, include, near)
        }
    }

    /// The list indexes, in the order given at build.
    pub fn list_indexes(&self) -> &[Arc<ListIndex>] {
        &self.lists
    }

    /// Matches a chunk of queries on this thread. Exact kinds go through their filter for the
    /// whole chunk first, then the few that pass are looked up together
    /// ([`ExactTable::lookup_many`]): in both passes the memory accesses of different queries
    /// are independent, so the CPU overlaps their cache misses.
    fn match_chunk(
        &self,
        queries: &[Query],
        include: &(dyn Fn(&str) -> bool + Sync),
        near: NearMiss,
    ) -> Answers {
        // Matches are rare: collect them as (query, match) pairs rather than giving every
        // query its own list up front, then hand them out in query order at the end.
        let mut hits: Vec<(u32, Match)> = Vec::new();
        // Queries with an entry just beyond a threshold (only tracked when `near > 0`).
        let mut near_hit: Vec<u32> = Vec::new();
        // The queries of each kind, in order, shared by every list.
        let by_kind = group_by_kind(queries);
        for list in self.lists.iter().filter(|l| include(&l.name)) {
            for k in &list.kinds {
                let mine = &by_kind[k.kind as usize];
                if mine.is_empty() {
                    continue;
                }
                match &k.search {
                    KindSearch::Exact { table, filter } => {
                        // Filter pass first: it rejects ~99.6% of misses from 9 bits per key.
                        // Measured with 1 M distinct SHA-256 queries, one thread: with the
                        // filter 28 M/s (1 M list) and 15 M/s (10 M list); batched table
                        // lookups alone 9.4 M/s and 8.7 M/s.
                        let passed = filter.possible(
                            mine,
                            |i| queries[i as usize].hash.as_bytes(),
                            |i| prefetch::prefetch(&queries[i as usize]),
                        );
                        let keys: Vec<&[u8]> = passed
                            .iter()
                            .map(|&i| queries[i as usize].hash.as_bytes())
                            .collect();
                        let found: Vec<(u32, usize, u32)> = passed
                            .iter()
                            .zip(table.lookup_many(&keys))
                            .flat_map(|(&i, range)| range.map(move |entry| (i, entry, 0)))
                            .collect();
                        list.push_matches(k, &found, &mut hits);
                    }
                    KindSearch::Perceptual { index } => {
                        let column = list.set.hashes(&k.section);
                        let len = k.kind.byte_len();
                        let wide = (k.threshold + near.bits)
                            .min(k.kind.max_threshold())
                            .max(k.threshold);
                        // (query, distance, row) of every code within the threshold.
                        let mut found: Vec<(u32, u32, u32)> = Vec::new();
                        if index.prefers_batch(mine.len()) {
                            let bytes: Vec<u8> = mine
                                .iter()
                                .flat_map(|&i| queries[i as usize].hash.as_bytes())
                                .copied()
                                .collect();
                            index.search_batch(&bytes, k.threshold, |j, row, d| {
                                found.push((mine[j as usize], d, row));
                            });
                            found.sort_unstable();
                            found.dedup();
                        } else {
                            for &i in mine {
                                let q = queries[i as usize].hash.as_bytes();
                                for (row, d) in index.search(q, k.threshold) {
                                    found.push((i, d, row));
                                }
                            }
                        }
                        let mut found = found.into_iter().peekable();
                        let mut entries: Vec<(u32, usize, u32)> = Vec::new();
                        for &i in mine {
                            let mut any = false;
                            while let Some((_, distance, row)) = found.next_if(|&(j, _, _)| j == i)
                            {
                                any = true;
                                let row = row as usize;
                                let hash = &column[row * len..(row + 1) * len];
                                let mut entry = row;
                                while entry < k.section.count
                                    && &column[entry * len..(entry + 1) * len] == hash
                                {
                                    entries.push((i, entry, distance));
                                    entry += 1;
                                }
                            }
                            // A sampled query with no match here: is anything just beyond?
                            // (Matches in other lists are discounted at the end.)
                            if !any
                                && wide > k.threshold
                                && near.bits > 0
                                && near.sample()
                                && index.any_within(queries[i as usize].hash.as_bytes(), wide)
                            {
                                near_hit.push(i);
                            }
                        }
                        list.push_matches(k, &entries, &mut hits);
                    }
                }
            }
        }
        // Stable: a query's matches keep their list/kind order until `decide` sorts them.
        hits.sort_by_key(|&(i, _)| i);
        near_hit.sort_unstable();
        near_hit.dedup();
        let near_misses = near_hit
            .iter()
            .filter(|&&i| hits.binary_search_by_key(&i, |&(j, _)| j).is_err())
            .count();
        // Only queries with a match or a low-quality PDQ hash get a verdict of their own (in
        // query order); every other query is a plain miss.
        let mut hits = hits.into_iter().peekable();
        let mut low = by_kind[HashKind::Pdq as usize]
            .iter()
            .copied()
            .filter(|&i| low_quality(&queries[i as usize]))
            .peekable();
        let mut decided: Vec<(u32, Verdict)> = Vec::new();
        while let Some(i) = match (hits.peek(), low.peek()) {
            (Some(&(h, _)), Some(&l)) => Some(h.min(l)),
            (Some(&(h, _)), None) => Some(h),
            (None, l) => l.copied(),
        } {
            let mut verdict = Verdict::NO_MATCH;
            while let Some((_, m)) = hits.next_if(|&(j, _)| j == i) {
                verdict.matches.push(m);
            }
            low.next_if_eq(&i);
            decide(&queries[i as usize], &mut verdict);
            decided.push((i, verdict));
        }
        let verdicts = Verdicts {
            len: queries.len(),
            decided,
        };
        Answers {
            verdicts,
            near_misses,
        }
    }

    /// Answers one query.
    pub fn match_one(&self, query: &Query) -> Verdict {
        self.match_chunk(std::slice::from_ref(query), &|_| true, NearMiss::OFF)
            .verdicts
            .decided
            .pop()
            .map_or(Verdict::NO_MATCH, |(_, v)| v)
    }
}

impl KindIndex {
    /// One kind of `set`: its section, its threshold (the list's, capped at the kind's
    /// maximum) and its search structure.
    fn new(set: &HashSetFile, section: &Section, search: KindSearch) -> KindIndex {
        KindIndex {
            kind: section.kind,
            section: section.clone(),
            threshold: KindIndex::threshold_of(set, section.kind),
            search,
        }
    }

    /// The threshold `set` gives `kind`, capped at the kind's maximum.
    fn threshold_of(set: &HashSetFile, kind: HashKind) -> u32 {
        set.header().threshold(kind).min(kind.max_threshold())
    }
}

/// A section's hash column as a [`Column`] borrowing the set's bytes.
fn set_column(set: &Arc<HashSetFile>, section: &Section) -> Result<Column<u8>, IndexError> {
    let backing: Arc<dyn Backing> = Arc::clone(set) as Arc<dyn Backing>;
    let len = section.count * section.kind.byte_len();
    Ok(Column::shared(backing, set.hashes_offset(section), len)?)
}

impl ListIndex {
    /// Builds the structures for one verified set. Exact tables use the set's sorted hash
    /// column in place.
    pub fn build(set: Arc<HashSetFile>) -> Result<ListIndex, IndexError> {
        let mut kinds = Vec::new();
        for section in set.sections() {
            let kind = section.kind;
            let hashes = set.hashes(section);
            let search = if kind.is_perceptual() {
                // Sections are sorted by hash, so equal codes are adjacent: index each
                // distinct code once, remembering where its run of entries starts.
                // The index reads codes straight from the set's column (no copy) and lists
                // only the first row of each run; a match covers the whole run.
                let len = kind.byte_len();
                let column: Vec<&[u8]> = hashes.chunks_exact(len).collect();
                let rows: Vec<u32> = (0..column.len())
                    .filter(|&i| i == 0 || column[i - 1] != column[i])
                    .map(|i| i as u32)
                    .collect();
                let codes = set_column(&set, section)?;
                let bits = kind.bit_len() as usize;
                let threshold = KindIndex::threshold_of(&set, kind);
                let widths = HammingIndex::tuned_widths(rows.len(), bits, threshold)?;
                let index = HammingIndex::over_rows(bits, codes, &rows, &widths)?;
                KindSearch::Perceptual { index }
            } else {
                let keys = set_column(&set, section)?;
                let table = ExactTable::from_column(kind.byte_len(), keys)?;
                let filter = ExactFilter::new(&table);
                KindSearch::Exact { table, filter }
            };
            kinds.push(KindIndex::new(&set, section, search));
        }
        Ok(ListIndex::assemble(set, kinds))
    }

    /// A list over `set` from its kinds' structures (built here or loaded by [`store`]).
    fn assemble(set: Arc<HashSetFile>, kinds: Vec<KindIndex>) -> ListIndex {
        ListIndex {
            name: Arc::from(set.header().name.as_str()),
            version: set.header().version,
            set,
            kinds,
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn version(&self) -> u64 {
        self.version
    }

    /// The set this list was built from.
    pub fn set(&self) -> &Arc<HashSetFile> {
        &self.set
    }

    /// Bytes of search structures beyond the set itself (filters, directories, id tables,
    /// packed codes).
    pub fn memory_bytes(&self) -> usize {
        self.kinds
            .iter()
            .map(|k| match &k.search {
                // The keys are the set's own column.
                KindSearch::Exact { table, filter } => {
                    table.parts().1.len() * 4 + filter.memory_bytes()
                }
                KindSearch::Perceptual { index } => index.memory_bytes(),
            })
            .sum()
    }

    /// Appends a [`Match`] for each `(query, entry, distance)` to `hits`, in order. The
    /// entries are prefetched first (fields, then reference bytes), so that reading a few
    /// hundred matched entries costs overlapping cache misses rather than three in a row
    /// each.
    fn push_matches(
        &self,
        k: &KindIndex,
        found: &[(u32, usize, u32)],
        hits: &mut Vec<(u32, Match)>,
    ) {
        for reference in [false, true] {
            for &(_, entry, _) in found {
                self.set.prefetch_entry(&k.section, entry, reference);
            }
        }
        hits.extend(
            found
                .iter()
                .map(|&(i, entry, distance)| (i, self.entry_match(k, entry, distance))),
        );
    }

    fn entry_match(&self, k: &KindIndex, entry: usize, distance: u32) -> Match {
        let e = self.set.entry(&k.section, entry);
        Match {
            list: Arc::clone(&self.name),
            version: self.version,
            kind: k.kind,
            category: e.category.to_owned(),
            reference: e.reference.to_owned(),
            distance,
        }
    }
}

/// The positions of the queries of each kind (indexed by `HashKind as usize`), in order.
/// Counted first so that each list is allocated once at its size; a batch of one kind (the
/// usual CLI batch) is `0..n` without a second look at the queries.
fn group_by_kind(queries: &[Query]) -> [Vec<u32>; HashKind::ALL.len()] {
    let mut counts = [0usize; HashKind::ALL.len()];
    for q in queries {
        counts[q.hash.kind() as usize] += 1;
    }
    if let Some(only) = counts.iter().position(|&c| c == queries.len()) {
        let mut by_kind: [Vec<u32>; HashKind::ALL.len()] = Default::default();
        by_kind[only] = (0..queries.len() as u32).collect();
        return by_kind;
    }
    let mut by_kind = counts.map(Vec::with_capacity);
    for (i, q) in queries.iter().enumerate() {
        by_kind[q.hash.kind() as usize].push(i as u32);
    }
    by_kind
}

/// A PDQ hash with a quality under [`MIN_TRUSTED_QUALITY`]: no verdict either way.
fn low_quality(query: &Query) -> bool {
    query.hash.kind() == HashKind::Pdq && query.quality.is_some_and(|q| q < MIN_TRUSTED_QUALITY)
}

/// Sorts a query's matches by distance and decides its verdict.
fn decide(query: &Query, verdict: &mut Verdict) {
    let matches = &mut verdict.matches;
    if matches.len() > 1 {
        matches.sort_by(|a, b| {
            (a.distance, &a.list, &a.category, &a.reference).cmp(&(
                b.distance,
                &b.list,
                &b.category,
                &b.reference,
            ))
        });
    }
    verdict.verdict = if low_quality(query) {
        Decision::LowQuality
    } else if matches.is_empty() {
        Decision::NoMatch
    } else {
        Decision::Match
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hashset::format::{EntryTable, Header};

    fn set(
        name: &str,
        version: u64,
        entries: &[(HashKind, &str, &str, &str)],
        pdq_t: u32,
    ) -> Arc<HashSetFile> {
        let mut t = EntryTable::new();
        for &(kind, hex, cat, r) in entries {
            t.push(HashValue::parse(kind, hex).unwrap(), cat, r)
                .unwrap();
        }
        let header = Header {
            name: name.into(),
            version,
            created: 0,
            expires: 1,
            description: String::new(),
            thresholds: vec![(HashKind::Pdq, pdq_t)],
        };
        Arc::new(HashSetFile::parse(t.to_set_bytes(&header).unwrap().0).unwrap())
    }

    #[test]
    fn exact_and_perceptual_matches_with_lists_refs_and_distances() {
        let pdq = "f".repeat(64);
        let pdq_near = format!("{}0", "f".repeat(63)); // 4 bits away
        let md5 = "d41d8cd98f00b204e9800998ecf8427e";
        let a = set(
            "alpha",
            3,
            &[
                (HashKind::Pdq, &pdq, "c1", "A-1"),
                (HashKind::Pdq, &pdq, "c1", "A-2"),
                (HashKind::Md5, md5, "", "A-3"),
            ],
            31,
        );
        let b = set("beta", 7, &[(HashKind::Pdq, &pdq_near, "c2", "B-1")], 3);
        let index = Index::build(vec![a, b]).unwrap();
        assert_eq!(index.entries(), 4);
        let q = |kind, hex: &str, quality| Query {
            hash: HashValue::parse(kind, hex).unwrap(),
            quality,
        };
        let verdicts = index.match_batch(&[
            q(HashKind::Pdq, &pdq, Some(100)),
            q(HashKind::Md5, md5, None),
            q(HashKind::Md5, &"0".repeat(32), None),
            q(HashKind::Pdq, &pdq, Some(20)),
        ]);
        let v = &verdicts[0];
        assert_eq!(v.verdict, Decision::Match);
        // Both alpha entries at distance 0; beta's entry is 4 bits away, over its threshold 3.
        let refs: Vec<(&str, u32)> = v
            .matches
            .iter()
            .map(|m| (m.reference.as_str(), m.distance))
            .collect();
        assert_eq!(refs, [("A-1", 0), ("A-2", 0)]);
        assert_eq!((&*v.matches[0].list, v.matches[0].version), ("alpha", 3));
        assert_eq!(verdicts[1].matches.len(), 1);
        assert_eq!(verdicts[1].matches[0].reference, "A-3");
        assert_eq!(verdicts[2].verdict, Decision::NoMatch);
        assert_eq!(verdicts[3].verdict, Decision::LowQuality);
        // The near hash is found in alpha at distance 4, and in beta at 0.
        let near = index.match_one(&q(HashKind::Pdq, &pdq_near, None));
        let found: Vec<(&str, u32)> = near
            .matches
            .iter()
            .map(|m| (&*m.list, m.distance))
            .collect();
        assert_eq!(found, [("beta", 0), ("alpha", 4), ("alpha", 4)]);
        let json = serde_json::to_string(&near.matches[0]).unwrap();
        assert_eq!(
            json,
            r#"{"list":"beta","version":7,"kind":"pdq","category":"c2","ref":"B-1","distance":0}"#
        );
    }

    #[test]
    fn sparse_verdicts_read_as_one_per_query() {
        // Hits, misses and low-quality PDQ queries, in a batch big enough to be split over
        // the pool (parts are appended with their offsets): read back in order, the sparse
        // verdicts are the ones each query gets alone, and only queries that are not a plain
        // miss are held.
        let pdq = "e".repeat(64);
        let md5 = "d41d8cd98f00b204e9800998ecf8427e";
        let a = set(
            "a",
            1,
            &[
                (HashKind::Pdq, &pdq, "", "P"),
                (HashKind::Md5, md5, "", "M"),
            ],
            31,
        );
        let index = Index::build(vec![a]).unwrap();
        let q = |kind, hex: &str, quality| Query {
            hash: HashValue::parse(kind, hex).unwrap(),
            quality,
        };
        let kinds = [
            q(HashKind::Md5, md5, None),
            q(HashKind::Md5, &"0".repeat(32), None),
            q(HashKind::Pdq, &pdq, Some(90)),
            q(HashKind::Pdq, &"1".repeat(64), Some(20)),
            q(HashKind::Pdq, &"2".repeat(64), None),
        ];
        let queries: Vec<Query> = (0..3 * PARALLEL_CHUNK + 7)
            .map(|i| kinds[(i * 7 + i / 5) % kinds.len()])
            .collect();
        let sparse = index.match_sparse(&queries);
        assert_eq!(sparse.len(), queries.len());
        let single: Vec<Verdict> = queries.iter().map(|q| index.match_one(q)).collect();
        assert!(sparse.iter().eq(single.iter()));
        assert_eq!(sparse.clone().into_vec(), single);
        let held: Vec<usize> = sparse.decided().iter().map(|&(i, _)| i as usize).collect();
        let expected: Vec<usize> = (0..queries.len())
            .filter(|&i| single[i] != Verdict::NO_MATCH)
            .collect();
        assert_eq!(held, expected);
        assert!(held.len() > queries.len() / 3 && held.len() < queries.len());
    }

    #[test]
    fn batched_and_single_searches_agree() {
        // Random PDQ and pHash entries, some repeated under other references, and queries
        // planted 0..40 bits from them: a batch (searched together, `search_batch` in unit
        // tests) gives the same verdicts as one query at a time.
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let mut codes: Vec<(HashKind, Vec<u8>)> = Vec::new();
        for i in 0..600 {
            let kind = if i % 3 == 0 {
                HashKind::Phash
            } else {
                HashKind::Pdq
            };
            let code: Vec<u8> = (0..kind.byte_len()).map(|_| next() as u8).collect();
            codes.push((kind, code));
        }
        let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
        let entries: Vec<(HashKind, String, String)> = codes
            .iter()
            .enumerate()
            .flat_map(|(i, (k, c))| {
                let copies = if i % 10 == 0 { 3 } else { 1 };
                (0..copies).map(move |r| (*k, hex(c), format!("R-{i}-{r}")))
            })
            .collect();
        let rows: Vec<(HashKind, &str, &str, &str)> = entries
            .iter()
            .map(|(k, h, r)| (*k, h.as_str(), "c", r.as_str()))
            .collect();
        let index = Index::build(vec![set("l", 1, &rows, 31)]).unwrap();
        let queries: Vec<Query> = (0..300)
            .map(|i| {
                let (kind, code) = &codes[(next() % 600) as usize];
                let mut q = code.clone();
                let flips = if i % 4 == 0 { 64 } else { i % 41 };
                for _ in 0..flips {
                    let bit = (next() % (q.len() as u64 * 8)) as usize;
                    q[bit / 8] ^= 1 << (bit % 8);
                }
                Query {
                    hash: HashValue::from_bytes(*kind, &q).unwrap(),
                    quality: None,
                }
            })
            .collect();
        let batch = index.match_batch(&queries);
        let single: Vec<Verdict> = queries.iter().map(|q| index.match_one(q)).collect();
        assert_eq!(batch, single);
        assert!(
            batch
                .iter()
                .filter(|v| v.verdict == Decision::Match)
                .count()
                > 100
        );
    }

    #[test]
    fn near_misses_are_queries_just_beyond_the_threshold() {
        let base = "0".repeat(64);
        // `bits` set bits at the end of the code: that many bits away from `base`.
        let away = |bits: usize| {
            let mut v = [0u8; 32];
            for b in 0..bits {
                v[31 - b / 8] |= 1 << (b % 8);
            }
            v.iter().map(|x| format!("{x:02x}")).collect::<String>()
        };
        let a = set("a", 1, &[(HashKind::Pdq, &base, "", "A")], 10);
        let index = Index::build(vec![a]).unwrap();
        let q = |hex: &str| Query {
            hash: HashValue::parse(HashKind::Pdq, hex).unwrap(),
            quality: None,
        };
        let queries = [
            q(&base),
            q(&away(12)),
            q(&away(26)),
            q(&away(27)),
            q(&away(40)),
        ];
        let answers = index.match_batch_near(&queries, &|_| true, NearMiss { bits: 16, every: 1 });
        assert_eq!(
            answers.near_misses, 2,
            "12 and 26 bits: beyond 10, within 10 + 16"
        );
        let verdicts: Vec<Decision> = answers.verdicts.iter().map(|v| v.verdict).collect();
        assert_eq!(
            verdicts,
            [
                Decision::Match,
                Decision::NoMatch,
                Decision::NoMatch,
                Decision::NoMatch,
                Decision::NoMatch
            ]
        );
        assert_eq!(
            answers.verdicts.into_vec(),
            index.match_batch(&queries),
            "same verdicts either way"
        );
        assert_eq!(
            index
                .match_batch_near(&queries, &|_| true, NearMiss::OFF)
                .near_misses,
            0
        );
        // A query that matches is not a near miss, even with another entry just beyond.
        let b = set(
            "b",
            1,
            &[
                (HashKind::Pdq, &base, "", "B"),
                (HashKind::Pdq, &away(20), "", "C"),
            ],
            10,
        );
        let index = Index::build(vec![b]).unwrap();
        assert_eq!(
            index
                .match_batch_near(&[q(&base)], &|_| true, NearMiss { bits: 16, every: 1 })
                .near_misses,
            0
        );
        assert_eq!(
            index
                .match_batch_near(&[q(&away(20))], &|_| true, NearMiss { bits: 16, every: 1 })
                .near_misses,
            0
        );
        assert_eq!(
            index
                .match_batch_near(&[q(&away(31))], &|_| true, NearMiss { bits: 16, every: 1 })
                .near_misses,
            1
        );
    }
}

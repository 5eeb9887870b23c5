//! The match index: built only from verified hash sets, immutable once built.
//!
//! - [`exact`]: sorted digests with a radix directory, and a blocked Bloom prefilter;
//! - [`hamming`]: multi-index hashing for PDQ and the 64-bit perceptual hashes;
//! - [`store`]: indexes persisted beside the state dir and memory-mapped at start;
//! - [`query`]: parsing queries (`kind:hex[:quality]` lines, `hashsieve hash` records);
//! - `matching`: a batch through every list and kind ([`Index::match_batch`]);
//! - [`verdict`]: matches, decisions and the sparse verdicts of a batch.
//!
//! [`Index`] holds, per list and per kind, the structure for that kind, and answers batches
//! of queries ([`Index::match_batch`]) with one [`Verdict`] per query: every entry within the
//! list's threshold, with list, version, category, reference and distance, sorted by distance.

pub mod column;
pub mod exact;
pub mod hamming;
mod matching;
pub mod query;
pub mod store;
mod verdict;
pub mod vpdq;

use std::sync::Arc;

use rayon::prelude::*;

use crate::hashset::format::{HashSetFile, Section};
use crate::kinds::{HashKind, HashValue};
use column::{Backing, Column};
use exact::{ExactFilter, ExactTable};
use hamming::HammingIndex;
pub use verdict::{Answers, Decision, Match, Suppressed, Verdict, Verdicts};
pub use vpdq::{FrameMatch, VideoAnswer, VideoMatch};

/// Smallest number of queries a pool thread takes at once in [`Index::match_batch`].
pub const PARALLEL_CHUNK: usize = 1024;

/// One hash to look up. PDQ hashes may carry their quality (0..=100).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Query {
    pub hash: HashValue,
    pub quality: Option<u8>,
}

/// What a batch is matched against and what else is counted ([`Index::match_batch`]).
#[derive(Clone, Copy)]
pub struct MatchOptions<'a> {
    /// Only the lists for which this is true are searched (a partner's entitlements); other
    /// lists are not searched at all. `None`: every list.
    pub lists: Option<&'a (dyn Fn(&str) -> bool + Sync)>,
    /// How to look for near misses (off by default).
    pub near_miss: NearMiss,
}

impl MatchOptions<'static> {
    /// Every list, no near-miss count.
    pub const ALL: MatchOptions<'static> = MatchOptions {
        lists: None,
        near_miss: NearMiss::OFF,
    };
}

impl MatchOptions<'_> {
    fn includes(&self, list: &str) -> bool {
        self.lists.is_none_or(|include| include(list))
    }
}

impl Default for MatchOptions<'_> {
    fn default() -> Self {
        MatchOptions::ALL
    }
}

impl std::fmt::Debug for MatchOptions<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MatchOptions")
            .field("lists", &self.lists.map(|_| "<filter>"))
            .field("near_miss", &self.near_miss)
            .finish()
    }
}

/// Near misses: queries with no match but a perceptual entry within `bits` bits beyond its
/// list's threshold (capped at the kind's maximum threshold). A wider search costs several
/// times a normal one (PDQ at 31 + 16 probes ~8x as many buckets), so only a random one in
/// `every` perceptual queries without a match asks whether anything lies in the wider radius
/// (stopping at the first entry, [`HammingIndex::any_within`]) and is counted; `bits = 0`
/// counts nothing and costs nothing. Verdicts are the same either way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NearMiss {
    /// Bits beyond the threshold that make a near miss (0: do not look).
    pub bits: u32,
    /// Search one in this many perceptual queries wide (1: every query).
    pub every: u32,
}

impl NearMiss {
    pub const OFF: NearMiss = NearMiss { bits: 0, every: 1 };

    /// True for a random one in `every` calls: from the thread's OS-seeded generator, so
    /// that a partner cannot steer probing queries around the sample.
    fn sample(self) -> bool {
        self.every <= 1 || rand::random_ratio(1, self.every)
    }
}

/// One entry (or, before runs are expanded, one indexed row) found for one query.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Hit {
    /// The query's position in its batch.
    query: u32,
    /// The entry's (or row's) position in its kind's section.
    entry: usize,
    distance: u32,
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
    /// The operator's rules for each of `lists`, in the same order.
    policies: Vec<ListPolicy>,
}

/// What the operator's configuration adds to a list's own rules.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListPolicy {
    /// Non-empty: this is an allow list. A query that matches one of its entries (within its
    /// thresholds) is not reported as a match of these lists, and its own matches are never
    /// reported.
    pub suppresses: Vec<String>,
    /// The operator's thresholds per perceptual kind; a list's own threshold is lowered to
    /// these, never raised.
    pub thresholds: Vec<(HashKind, u32)>,
    /// The operator's minimum shares of frames for a video match; a list's own are raised
    /// to these, never lowered.
    pub video_share: Option<crate::hashset::format::VideoShare>,
}

impl ListPolicy {
    /// The threshold used for `kind` when the set says `set`: the lower of the two.
    pub fn threshold(&self, kind: HashKind, set: u32) -> u32 {
        self.thresholds
            .iter()
            .find(|(k, _)| *k == kind)
            .map_or(set, |&(_, t)| t.min(set))
    }

    /// The share of frames a video match of a list whose set says `set` needs.
    pub fn video_share(
        &self,
        set: crate::hashset::format::VideoShare,
    ) -> crate::hashset::format::VideoShare {
        self.video_share.map_or(set, |mine| set.strictest(mine))
    }

    pub fn is_allow_list(&self) -> bool {
        !self.suppresses.is_empty()
    }
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
    /// Over the section's own hash column, indexing the first row of each run of equal
    /// hashes; a match at row `r` covers `r` and the rows after it that hold the same hash.
    Perceptual { index: HammingIndex },
    /// A `vpdq` section: the frames of listed videos. PDQ queries (images) are searched here
    /// too, and video queries by their share of frames ([`Index::match_video`]).
    Video { frames: vpdq::VideoFrames },
}

impl Index {
    /// Builds the index over already verified sets (see [`crate::hashset::trust`]). Each set
    /// is one list; a list's thresholds come from its header, capped at the kind's maximum.
    pub fn build(sets: Vec<Arc<HashSetFile>>) -> Result<Index, IndexError> {
        let lists = sets
            .into_par_iter()
            .map(|set| ListIndex::build(set).map(Arc::new))
            .collect::<Result<Vec<_>, IndexError>>()?;
        Ok(Index::from_lists(lists))
    }

    /// An index over lists built or loaded one by one (see [`store`]).
    pub fn from_lists(lists: Vec<Arc<ListIndex>>) -> Index {
        let policies = vec![ListPolicy::default(); lists.len()];
        Index { lists, policies }
    }

    /// The same lists under the operator's rules: `policy` gives each list's by name.
    pub fn with_policies(mut self, policy: impl Fn(&str) -> ListPolicy) -> Index {
        self.policies = self.lists.iter().map(|l| policy(&l.name)).collect();
        self
    }

    /// The list named `name`, if it is served.
    pub fn list(&self, name: &str) -> Option<&ListIndex> {
        self.lists.iter().find(|l| &*l.name == name).map(|l| &**l)
    }

    /// The threshold used for `kind` of `list` (the set's, capped at the kind's maximum and
    /// lowered to the operator's), or `None` when the list is not served.
    pub fn threshold(&self, list: &str, kind: HashKind) -> Option<u32> {
        let at = self.lists.iter().position(|l| &*l.name == list)?;
        let set = KindIndex::threshold_of(&self.lists[at].set, kind);
        Some(self.policies[at].threshold(kind, set))
    }

    /// The entries of `kind` whose hash starts with `prefix`, in every list `options`
    /// includes that is not an allow list, minus those an allow list suppresses (an exact
    /// kind's entry is suppressed by the same hash in an allow list for its list). This is
    /// how a client matches URLs without sending their hashes (`POST /v1/match/url-prefixes`).
    pub fn entries_with_prefix(
        &self,
        kind: HashKind,
        prefix: &[u8],
        options: &MatchOptions<'_>,
    ) -> Vec<(HashValue, Match)> {
        let mut found: Vec<(HashValue, Match)> = Vec::new();
        for (list, policy) in self.lists.iter().zip(&self.policies) {
            if policy.is_allow_list() || !options.includes(&list.name) {
                continue;
            }
            for (hash, m) in list.with_prefix(kind, prefix) {
                let allowed = self.lists.iter().zip(&self.policies).any(|(a, p)| {
                    p.suppresses.iter().any(|t| *t == *list.name)
                        && a.prefix_rows(kind, hash.as_bytes())
                            .is_some_and(|(_, rows)| !rows.is_empty())
                });
                if !allowed {
                    found.push((hash, m));
                }
            }
        }
        found
    }

    /// Total number of entries indexed.
    pub fn entries(&self) -> usize {
        self.lists.iter().map(|l| l.set.len()).sum()
    }

    /// The lists and versions served.
    pub fn lists(&self) -> impl Iterator<Item = (&str, u64)> {
        self.lists.iter().map(|l| (&*l.name, l.version))
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
            let search = if kind == HashKind::Vpdq {
                let threshold = KindIndex::threshold_of(&set, kind);
                KindSearch::Video {
                    frames: vpdq::VideoFrames::build(&set, section, threshold)?,
                }
            } else if kind.is_perceptual() {
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

    /// Every entry of kind `k` within its threshold of the queries at positions `mine`, by
    /// query then entry. Rows found are expanded to the run of equal hashes they start. A
    /// sampled query with no match here that has an entry within the near-miss radius is
    /// added to `near_hit` (matches in other lists are discounted by the caller).
    #[allow(clippy::too_many_arguments)]
    fn search_perceptual(
        &self,
        k: &KindIndex,
        index: &HammingIndex,
        threshold: u32,
        queries: &[Query],
        mine: &[u32],
        near: NearMiss,
        near_hit: &mut Vec<u32>,
    ) -> Vec<Hit> {
        let wide = (threshold + near.bits)
            .min(k.kind.max_threshold())
            .max(threshold);
        // Rows within the threshold, by query (a row may be found through several chunks).
        let mut rows: Vec<Hit> = Vec::new();
        if index.prefers_batch(mine.len()) {
            let bytes: Vec<u8> = mine
                .iter()
                .flat_map(|&i| queries[i as usize].hash.as_bytes())
                .copied()
                .collect();
            index.search_batch(&bytes, threshold, |j, row, distance| {
                rows.push(Hit {
                    query: mine[j as usize],
                    entry: row as usize,
                    distance,
                });
            });
            rows.sort_unstable();
            rows.dedup();
        } else {
            for &query in mine {
                let q = queries[query as usize].hash.as_bytes();
                rows.extend(
                    index
                        .search(q, threshold)
                        .into_iter()
                        .map(|(row, distance)| Hit {
                            query,
                            entry: row as usize,
                            distance,
                        }),
                );
            }
        }
        let mut rows = rows.into_iter().peekable();
        let mut entries: Vec<Hit> = Vec::new();
        for &query in mine {
            let mut any = false;
            while let Some(row) = rows.next_if(|r| r.query == query) {
                any = true;
                self.expand_run(k, row, &mut entries);
            }
            if !any
                && wide > threshold
                && near.bits > 0
                && near.sample()
                && index.any_within(queries[query as usize].hash.as_bytes(), wide)
            {
                near_hit.push(query);
            }
        }
        entries
    }

    /// Appends the entries of the run of equal hashes that indexed row `row.entry` starts.
    fn expand_run(&self, k: &KindIndex, row: Hit, entries: &mut Vec<Hit>) {
        let column = self.set.hashes(&k.section);
        let len = k.kind.byte_len();
        let hash = &column[row.entry * len..(row.entry + 1) * len];
        let mut entry = row.entry;
        while entry < k.section.count && &column[entry * len..(entry + 1) * len] == hash {
            entries.push(Hit { entry, ..row });
            entry += 1;
        }
    }

    /// The kind's index and its rows whose hash starts with `prefix`: one run, since the
    /// column is sorted. `None` when the list has no entry of `kind`.
    fn prefix_rows(
        &self,
        kind: HashKind,
        prefix: &[u8],
    ) -> Option<(&KindIndex, std::ops::Range<usize>)> {
        let k = self.kinds.iter().find(|k| k.kind == kind)?;
        let len = kind.byte_len();
        let prefix = &prefix[..prefix.len().min(len)];
        let column = self.set.hashes(&k.section);
        let head = |i: usize| &column[i * len..i * len + prefix.len()];
        let start = partition(k.section.count, |i| head(i) < prefix);
        let end = partition(k.section.count, |i| head(i) <= prefix);
        Some((k, start..end))
    }

    /// The entries of `kind` whose hash starts with `prefix`, with their hashes.
    fn with_prefix(&self, kind: HashKind, prefix: &[u8]) -> Vec<(HashValue, Match)> {
        let Some((k, rows)) = self.prefix_rows(kind, prefix) else {
            return Vec::new();
        };
        let column = self.set.hashes(&k.section);
        let len = kind.byte_len();
        rows.map(|i| {
            let value = HashValue::from_bytes(kind, &column[i * len..(i + 1) * len])
                .expect("the kind's length");
            (value, self.entry_match(k, i, 0))
        })
        .collect()
    }

    /// Appends a [`Match`] for each hit to `hits`, in order. The entries are prefetched first
    /// (fields, then reference bytes), so that reading a few hundred matched entries costs
    /// overlapping cache misses rather than three in a row each.
    fn push_matches(&self, k: &KindIndex, found: &[Hit], hits: &mut Vec<(u32, Match)>) {
        for reference in [false, true] {
            for hit in found {
                self.set.prefetch_entry(&k.section, hit.entry, reference);
            }
        }
        hits.extend(
            found
                .iter()
                .map(|h| (h.query, self.entry_match(k, h.entry, h.distance))),
        );
    }

    fn entry_match(&self, k: &KindIndex, entry: usize, distance: u32) -> Match {
        let e = self.set.entry(&k.section, entry);
        Match {
            list: Arc::clone(&self.name),
            version: self.version,
            kind: k.kind,
            severity: self.set.header().severity_of(e.category),
            category: e.category.to_owned(),
            reference: e.reference.to_owned(),
            distance,
        }
    }
}

/// The first `i` in `0..n` for which `before(i)` is false (`before` is true then false).
fn partition(n: usize, before: impl Fn(usize) -> bool) -> usize {
    let (mut lo, mut hi) = (0, n);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if before(mid) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    lo
}

#[cfg(test)]
mod tests;

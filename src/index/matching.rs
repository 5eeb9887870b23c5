//! Matching a batch of queries: grouped by kind, split over the pool when it is worth it,
//! then each list's kinds searched (exact kinds through their filter and table, perceptual
//! kinds through their Hamming index), allow lists applied, and the verdicts assembled.

use rayon::prelude::*;

use super::exact::Ids;
use super::{
    Answers, Hit, Index, KindSearch, Match, MatchOptions, NearMiss, PARALLEL_CHUNK, Query,
    Suppressed, Verdict, Verdicts,
};
use crate::kinds::HashKind;

/// Queries from which a batch of exact lookups alone is split over the pool.
const PARALLEL_EXACT: usize = 1 << 20;

impl Index {
    /// Answers a batch of queries: one verdict per query, in the same order, held sparsely
    /// ([`Verdicts`]; `into_vec` for a dense list), against the lists `options` includes,
    /// with the near misses it asks for counted.
    ///
    /// Large batches are split over the rayon pool in parts of at least [`PARALLEL_CHUNK`]
    /// queries when there is more than one thread and the work is worth the hand-off:
    /// perceptual searches (microseconds each) always are, exact lookups (about ten
    /// nanoseconds each) only in very large batches (`docs/index-design.md`, "Exact kinds").
    pub fn match_batch(&self, queries: &[Query], options: &MatchOptions<'_>) -> Answers {
        let threads = rayon::current_num_threads();
        if queries.len() < PARALLEL_EXACT
            && let Some(answers) = self.match_one_kind(queries, options)
        {
            // A batch of one exact kind below the size worth splitting: nothing else to decide.
            return answers;
        }
        if queries.len() >= 2 * PARALLEL_CHUNK && threads > 1 {
            // The grouping is needed anyway when the batch stays on this thread, and it
            // counts the perceptual queries in the same pass: scanning for them separately
            // cost an all-exact batch a whole extra pass over its queries.
            let by_kind = group_by_kind(queries);
            let perceptual: usize = HashKind::ALL
                .iter()
                .filter(|k| k.is_perceptual())
                .map(|&k| by_kind[k as usize].len())
                .sum();
            if queries.len() < PARALLEL_EXACT && perceptual <= PARALLEL_CHUNK / 16 {
                return self.match_grouped_by(queries, by_kind, options);
            }
            // Two parts per thread (one to steal if the other thread is slow): fewer, larger
            // parts keep each thread's filter probes pipelined and cost fewer merges.
            let part = queries.len().div_ceil(2 * threads).max(PARALLEL_CHUNK);
            let parts: Vec<Answers> = queries
                .par_chunks(part)
                .map(|chunk| self.match_chunk(chunk, options))
                .collect();
            let mut all = Answers::default();
            for part in parts {
                let offset = all.verdicts.len();
                all.suppressed
                    .extend(part.suppressed.into_iter().map(|mut s| {
                        s.query += offset;
                        s
                    }));
                all.verdicts.append(part.verdicts);
                all.near_misses += part.near_misses;
            }
            return all;
        }
        self.match_chunk(queries, options)
    }

    /// Answers one query against every list (what a batch of one would answer).
    pub fn match_one(&self, query: &Query) -> Verdict {
        self.match_chunk(std::slice::from_ref(query), &MatchOptions::ALL)
            .verdicts
            .into_single()
    }

    /// Matches a chunk of queries on this thread. Exact kinds go through their filter for the
    /// whole chunk first, then the few that pass are looked up together
    /// ([`ExactTable::lookup_many`]): in both passes the memory accesses of different queries
    /// are independent, so the CPU overlaps their cache misses.
    fn match_chunk(&self, queries: &[Query], options: &MatchOptions<'_>) -> Answers {
        self.match_one_kind(queries, options)
            .unwrap_or_else(|| self.match_grouped_by(queries, group_by_kind(queries), options))
    }

    /// [`Index::match_chunk`] for a batch whose first query is of an exact kind, taking every
    /// query to be of that kind, as in a CLI batch or a single GET: no grouping pass over the
    /// batch, whose first reads are then the filter's. `None` if a query of another kind
    /// turns up (the filter pass that reads it stops there; the batch must be grouped).
    fn match_one_kind(&self, queries: &[Query], options: &MatchOptions<'_>) -> Option<Answers> {
        let kind = queries.first()?.hash.kind();
        if kind.is_perceptual() {
            return None;
        }
        self.match_grouped(queries, Groups::OneKind(kind), options)
    }

    /// [`Index::match_grouped`] with the queries of each kind already found.
    fn match_grouped_by(
        &self,
        queries: &[Query],
        by_kind: [Vec<u32>; HashKind::ALL.len()],
        options: &MatchOptions<'_>,
    ) -> Answers {
        let groups = Groups::Mixed(&by_kind);
        // Only a one-kind guess can turn out wrong.
        self.match_grouped(queries, groups, options)
            .unwrap_or_default()
    }

    /// [`Index::match_chunk`] with the queries of each kind, shared by every list; `None` when
    /// `groups` took the batch for one kind and it is not.
    fn match_grouped(
        &self,
        queries: &[Query],
        groups: Groups<'_>,
        options: &MatchOptions<'_>,
    ) -> Option<Answers> {
        // Whether a filter pass has read every query's kind (a one-kind guess confirmed).
        let mut confirmed = matches!(groups, Groups::Mixed(_));
        let near = options.near_miss;
        // Matches are rare: collect them as (query, match) pairs rather than giving every
        // query its own list up front, then hand them out in query order at the end.
        let mut hits: Vec<(u32, Match)> = Vec::new();
        // Queries with an entry just beyond a threshold (only tracked when `near > 0`).
        let mut near_hit: Vec<u32> = Vec::new();
        // Matches of allow lists: they suppress, they are never reported.
        let mut allowed: Vec<(u32, Match)> = Vec::new();
        for (list, policy) in self.lists.iter().zip(&self.policies) {
            let allow = policy.is_allow_list();
            if !allow && !options.includes(&list.name) {
                continue;
            }
            let found = if allow { &mut allowed } else { &mut hits };
            for k in &list.kinds {
                // Video frames are searched with PDQ queries.
                let searched = if k.kind == HashKind::Vpdq {
                    HashKind::Pdq
                } else {
                    k.kind
                };
                let ids = groups.of(searched, queries.len());
                if ids.is_empty() {
                    continue;
                }
                match &k.search {
                    KindSearch::Exact { table, filter } => {
                        // Filter pass first: it rejects ~99% of misses from 12 bits per key.
                        // It reads every query's kind with its key (`Ids::Every` trusts it).
                        let passed = filter.possible(
                            ids,
                            |i| {
                                let hash = &queries[i as usize].hash;
                                (hash.kind() == searched).then(|| hash.as_bytes())
                            },
                            |i| crate::prefetch::prefetch(&queries[i as usize]),
                        )?;
                        confirmed = true;
                        let keys: Vec<&[u8]> = passed
                            .iter()
                            .map(|&i| queries[i as usize].hash.as_bytes())
                            .collect();
                        let entries: Vec<Hit> = passed
                            .iter()
                            .zip(table.lookup_many(&keys))
                            .flat_map(|(&query, range)| {
                                range.map(move |entry| Hit {
                                    query,
                                    entry,
                                    distance: 0,
                                })
                            })
                            .collect();
                        list.push_matches(k, &entries, found);
                    }
                    KindSearch::Video { frames } => {
                        // Still images against the frames of listed videos.
                        let threshold = policy.threshold(k.kind, k.threshold);
                        let mut entries = Vec::new();
                        for &query in groups.listed(HashKind::Pdq) {
                            let q = queries[query as usize].hash.as_bytes();
                            frames.videos_near(q, threshold, |entry, distance| {
                                entries.push(Hit {
                                    query,
                                    entry,
                                    distance,
                                });
                            });
                        }
                        list.push_matches(k, &entries, found);
                    }
                    KindSearch::Perceptual { index } => {
                        let threshold = policy.threshold(k.kind, k.threshold);
                        let near = if allow { NearMiss::OFF } else { near };
                        let entries = list.search_perceptual(
                            k,
                            index,
                            threshold,
                            queries,
                            groups.listed(searched),
                            near,
                            &mut near_hit,
                        );
                        list.push_matches(k, &entries, found);
                    }
                }
            }
        }
        if let Groups::OneKind(kind) = groups
            && !confirmed
            && queries.iter().any(|q| q.hash.kind() != kind)
        {
            // No list of that kind read the batch, so nothing has checked the guess yet.
            return None;
        }
        let suppressed = if allowed.is_empty() {
            Vec::new()
        } else {
            self.suppress(&allowed, &mut hits)
        };
        // Stable: a query's matches keep their list/kind order until they are decided.
        hits.sort_by_key(|&(i, _)| i);
        near_hit.sort_unstable();
        near_hit.dedup();
        let near_misses = near_hit
            .iter()
            .filter(|&&i| hits.binary_search_by_key(&i, |&(j, _)| j).is_err())
            .count();
        let verdicts = Verdicts::assemble(queries, hits, groups.listed(HashKind::Pdq));
        Some(Answers {
            verdicts,
            near_misses,
            suppressed,
        })
    }

    /// Removes from `hits` every match of a list that an allow-list match of the same query
    /// suppresses; returns what was removed and by which allow-list entry.
    fn suppress(&self, allowed: &[(u32, Match)], hits: &mut Vec<(u32, Match)>) -> Vec<Suppressed> {
        let suppresses = |allow: &Match, list: &str| {
            self.lists
                .iter()
                .zip(&self.policies)
                .find(|(l, _)| l.name == allow.list)
                .is_some_and(|(_, p)| p.suppresses.iter().any(|t| t == list))
        };
        let mut suppressed = Vec::new();
        hits.retain(|(query, m)| {
            let by = allowed
                .iter()
                .find(|(q, allow)| q == query && suppresses(allow, &m.list));
            match by {
                Some((_, allow)) => {
                    suppressed.push(Suppressed {
                        query: *query as usize,
                        allow: allow.clone(),
                        withheld: m.clone(),
                    });
                    false
                }
                None => true,
            }
        });
        suppressed
    }
}

/// Which queries of a batch are of each kind.
enum Groups<'a> {
    /// Every query taken to be of this exact kind, unchecked until a filter pass of that kind
    /// reads them (`Index::match_one_kind`).
    OneKind(HashKind),
    /// The positions of the queries of each kind, in order ([`group_by_kind`]).
    Mixed(&'a [Vec<u32>; HashKind::ALL.len()]),
}

impl Groups<'_> {
    /// The queries of `kind` among `n`, for a filter pass.
    fn of(&self, kind: HashKind, n: usize) -> Ids<'_> {
        match self {
            Groups::OneKind(only) if *only == kind => Ids::Every(n),
            Groups::OneKind(_) => Ids::Listed(&[]),
            Groups::Mixed(by_kind) => Ids::Listed(&by_kind[kind as usize]),
        }
    }

    /// The positions of the queries of a kind that is never taken for a whole batch (the
    /// perceptual kinds): none in a one-kind batch.
    fn listed(&self, kind: HashKind) -> &[u32] {
        match self {
            Groups::OneKind(_) => &[],
            Groups::Mixed(by_kind) => &by_kind[kind as usize],
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

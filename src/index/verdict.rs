//! What a search decides: the matches of each query, its [`Decision`], and the sparse
//! [`Verdicts`] of a batch. These are the index's own types; how they are written on the
//! wire (JSON field names) is [`crate::wire`]'s business.

use std::sync::Arc;

use super::Query;
use crate::hashing::pdq::MIN_TRUSTED_QUALITY;
use crate::kinds::HashKind;

/// One list entry that matched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Match {
    pub list: Arc<str>,
    pub version: u64,
    pub kind: HashKind,
    /// The category's rank in its list's severity order (1 = most severe), if it has one.
    pub severity: Option<u16>,
    pub category: String,
    pub reference: String,
    pub distance: u32,
}

/// The decision for one query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Match,
    NoMatch,
    /// A PDQ hash whose quality is under 50: too featureless to trust either way. Matches
    /// found are still listed so an operator can look, but they are not a verdict.
    LowQuality,
}

/// The answer to one query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub verdict: Decision,
    pub matches: Vec<Match>,
}

impl Verdict {
    /// The highest severity among the matches (1 = most severe), if any has one.
    pub fn severity(&self) -> Option<u16> {
        self.matches.iter().filter_map(|m| m.severity).min()
    }

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
/// as [`Verdict::NO_MATCH`]. A dense list would cost a verdict per query to build and to
/// free, a real part of the time of large batches of exact lookups.
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

    /// The verdict of the only query of a batch of one.
    pub(super) fn into_single(mut self) -> Verdict {
        self.decided.pop().map_or(Verdict::NO_MATCH, |(_, v)| v)
    }

    /// Appends the verdicts of the queries that follow this batch's.
    pub(super) fn append(&mut self, next: Verdicts) {
        let offset = self.len as u32;
        self.decided
            .extend(next.decided.into_iter().map(|(i, v)| (i + offset, v)));
        self.len += next.len;
    }

    /// The verdicts of `queries` from their matches, `(query, match)` sorted by query (a
    /// query's matches in list and kind order) and the positions of their PDQ queries in
    /// order. Only queries with a match or a low-quality PDQ hash get a verdict of their own;
    /// every other query is a plain miss.
    pub(super) fn assemble(
        queries: &[Query],
        hits: Vec<(u32, Match)>,
        pdq_queries: &[u32],
    ) -> Verdicts {
        let mut hits = hits.into_iter().peekable();
        let mut low = pdq_queries
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
        Verdicts {
            len: queries.len(),
            decided,
        }
    }
}

/// Verdicts of a batch, how many of its queries were near misses
/// ([`super::MatchOptions::near_miss`]), and the matches allow lists withheld.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Answers {
    pub verdicts: Verdicts,
    /// Near misses among the sampled queries (multiply by `every` for an estimate).
    pub near_misses: usize,
    /// Matches not reported because the same query matched an allow list for their list.
    pub suppressed: Vec<Suppressed>,
}

/// One match withheld by an allow list ([`super::ListPolicy::suppresses`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Suppressed {
    /// The query's position in its batch.
    pub query: usize,
    /// The allow-list entry the query matched.
    pub allow: Match,
    /// The match it withheld.
    pub withheld: Match,
}

/// A PDQ hash with a quality under [`MIN_TRUSTED_QUALITY`]: no verdict either way.
fn low_quality(query: &Query) -> bool {
    query.hash.kind() == HashKind::Pdq && query.quality.is_some_and(|q| q < MIN_TRUSTED_QUALITY)
}

/// Sorts a query's matches, the most severe first (a category without a severity after all
/// that have one), then by distance, and decides its verdict.
fn decide(query: &Query, verdict: &mut Verdict) {
    let matches = &mut verdict.matches;
    if matches.len() > 1 {
        let key = |m: &Match| {
            (
                m.severity.unwrap_or(u16::MAX),
                m.distance,
                Arc::clone(&m.list),
                m.category.clone(),
                m.reference.clone(),
            )
        };
        matches.sort_by_cached_key(key);
    }
    verdict.verdict = if low_quality(query) {
        Decision::LowQuality
    } else if matches.is_empty() {
        Decision::NoMatch
    } else {
        Decision::Match
    };
}

//! Matching videos by the share of frames they have in common, the rule python-threatexchange
//! applies to vPDQ hashes: frames under quality 50 are dropped and exact repeats removed on
//! each side; a frame matches when some frame of the other side is within the distance
//! (inclusive); `query_percent` is the share of the query's frames that match, and
//! `compared_percent` the share of the listed video's. A listed video matches when both reach
//! their minimums (80 and 0 by default).
//!
//! This is the brute-force definition, `O(query × listed)` per pair. The index will answer the
//! same question for a whole list through the Hamming index; this stays as its oracle.

use crate::hashing::pdq::{MIN_TRUSTED_QUALITY, Pdq256};
use crate::kinds::hamming_bytes;

/// Default share of the query's frames that must match a listed video.
pub const DEFAULT_QUERY_PERCENT: f64 = 80.0;

/// Default share of the listed video's frames that must be matched.
pub const DEFAULT_COMPARED_PERCENT: f64 = 0.0;

/// One frame of a video hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame {
    pub pdq: Pdq256,
    pub quality: u8,
}

/// The frames that count: quality at least [`MIN_TRUSTED_QUALITY`], each hash once (the
/// first occurrence kept, as the reference's `dedupe` does).
pub fn frames_that_count(frames: &[Frame]) -> Vec<Pdq256> {
    let mut seen = std::collections::HashSet::new();
    frames
        .iter()
        .filter(|f| f.quality >= MIN_TRUSTED_QUALITY)
        .filter(|f| seen.insert(f.pdq))
        .map(|f| f.pdq)
        .collect()
}

/// How much two videos' counted frames ([`frames_that_count`]) have in common.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Share {
    /// Percent of the query's frames within `distance` of some listed frame.
    pub query_percent: f64,
    /// Percent of the listed video's frames within `distance` of some query frame.
    pub compared_percent: f64,
    /// Query frames that matched.
    pub frames: usize,
}

impl Share {
    /// Whether this share makes a match under the two minimums.
    pub fn matches(&self, query_percent: f64, compared_percent: f64) -> bool {
        self.frames > 0
            && self.query_percent >= query_percent
            && self.compared_percent >= compared_percent
    }
}

/// The share of frames `query` and `listed` (both already counted) have in common at
/// `distance`; nothing in common when either side has no frame that counts.
pub fn share(query: &[Pdq256], listed: &[Pdq256], distance: u32) -> Share {
    if query.is_empty() || listed.is_empty() {
        return Share {
            query_percent: 0.0,
            compared_percent: 0.0,
            frames: 0,
        };
    }
    let near = |a: &Pdq256, b: &Pdq256| hamming_bytes(a, b) <= distance;
    let matched_query = query
        .iter()
        .filter(|q| listed.iter().any(|l| near(q, l)))
        .count();
    let matched_listed = listed
        .iter()
        .filter(|l| query.iter().any(|q| near(q, l)))
        .count();
    Share {
        query_percent: matched_query as f64 * 100.0 / query.len() as f64,
        compared_percent: matched_listed as f64 * 100.0 / listed.len() as f64,
        frames: matched_query,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A pseudo-random hash per seed (splitmix64): any two are about 128 bits apart.
    fn frame(seed: u8, quality: u8) -> Frame {
        let mut state = u64::from(seed).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        let mut pdq = [0u8; 32];
        for chunk in pdq.chunks_exact_mut(8) {
            state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            chunk.copy_from_slice(&(z ^ (z >> 31)).to_le_bytes());
        }
        Frame { pdq, quality }
    }

    fn flip(mut f: Frame, bits: usize) -> Frame {
        for i in 0..bits {
            f.pdq[i % 32] ^= 1 << (i / 32);
        }
        f
    }

    #[test]
    fn low_quality_and_repeated_frames_do_not_count() {
        let frames = [frame(1, 90), frame(1, 95), frame(2, 49), frame(3, 50)];
        assert_eq!(
            frames_that_count(&frames),
            [frame(1, 0).pdq, frame(3, 0).pdq]
        );
    }

    #[test]
    fn shares_count_each_side_and_the_distance_is_inclusive() {
        let listed: Vec<Pdq256> = (0..10).map(|s| frame(s, 100).pdq).collect();
        // A clip: 4 of the listed frames, 31 bits off, and one unrelated frame.
        let mut query: Vec<Pdq256> = (2..6).map(|s| flip(frame(s, 100), 31).pdq).collect();
        query.push(frame(200, 100).pdq);
        let s = share(&query, &listed, 31);
        assert_eq!(s.frames, 4);
        assert_eq!(s.query_percent, 80.0);
        assert_eq!(s.compared_percent, 40.0);
        assert!(s.matches(DEFAULT_QUERY_PERCENT, DEFAULT_COMPARED_PERCENT));
        assert!(!s.matches(80.0, 50.0));
        // One bit further and nothing is in common.
        let far: Vec<Pdq256> = (2..6).map(|s| flip(frame(s, 100), 32).pdq).collect();
        let s = share(&far, &listed, 31);
        assert_eq!((s.frames, s.query_percent), (0, 0.0));
        assert!(!s.matches(0.0, 0.0));
        assert_eq!(share(&[], &listed, 31).frames, 0);
        assert_eq!(share(&query, &[], 31).compared_percent, 0.0);
    }
}

//! Matching videos by the share of frames they have in common, the rule python-threatexchange
//! applies to vPDQ hashes: frames under quality 50 are dropped and exact repeats removed on
//! each side; a frame matches when some frame of the other side is within the distance
//! (inclusive); `query_percent` is the share of the query's frames that match, and
//! `compared_percent` the share of the listed video's. A listed video matches when both reach
//! their minimums (80 and 0 by default).
//!
//! [`share`] is the brute-force definition, `O(query × listed)` per pair, kept as the oracle
//! of [`VideoFrames`]: a list's video frames in a Hamming index, which answers the same
//! question for every video of a list with one range search per query frame.

use std::collections::HashMap;

use std::sync::Arc;

use super::column::Column;
use super::hamming::{HammingError, HammingIndex};
use super::{Decision, Hit, Index, KindSearch, Match, MatchOptions, Suppressed};
use crate::hashing::pdq::{MIN_TRUSTED_QUALITY, Pdq256};
use crate::hashset::format::{HashSetFile, Section, VideoShare};
use crate::kinds::HashKind;
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

impl Frame {
    /// A frame from its PDQ hash's hex and its quality (0-100), or why not.
    pub fn parse(hex: &str, quality: u8) -> Result<Frame, String> {
        let hash = crate::kinds::HashValue::parse(HashKind::Pdq, hex).map_err(|e| e.to_string())?;
        if quality > 100 {
            return Err(format!("quality {quality} is over 100"));
        }
        let mut pdq = [0u8; 32];
        pdq.copy_from_slice(hash.code());
        Ok(Frame { pdq, quality })
    }
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

/// The frames of a list's videos (its `vpdq` section) that count, indexed for range search.
///
/// The index holds each distinct PDQ hash among the frames of quality 50 and up once (its
/// row); `members[starts[row]..starts[row + 1]]` are the section entries that hold it, one
/// per video (a video lists each hash once), and `video_of` gives their videos.
#[derive(Debug)]
pub struct VideoFrames {
    index: HammingIndex,
    starts: Vec<u32>,
    members: Vec<u32>,
    video_of: Vec<u32>,
    videos: Vec<Video>,
    /// `rows[video_rows[v]..video_rows[v + 1]]` are the indexed rows of video `v`'s frames.
    video_rows: Vec<u32>,
    rows: Vec<u32>,
}

/// What one range search costs, in frame-to-frame distances (about 150 µs on a 3 M-frame
/// list, as much as 75 000 distances; far less on small lists): checking a few candidate
/// videos frame by frame is cheaper than searching the rest of the query's frames, until the
/// candidates hold many frames. A middle value keeps the worst case near a full search.
const DISTANCES_PER_SEARCH: u64 = 20_000;

/// One listed video.
#[derive(Debug, Clone, Copy)]
struct Video {
    /// One of its entries: its category and reference.
    entry: u32,
}

/// A listed video that shares frames with a query video ([`VideoFrames::shares`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VideoHit {
    /// One entry of the video in its section (for its category and reference).
    pub entry: usize,
    /// Query frames within the distance of one of its frames.
    pub query_frames: u32,
    /// Its frames within the distance of one of the query's.
    pub listed_frames: u32,
    /// Its frames that count.
    pub frames: u32,
    /// The smallest distance between a query frame and one of its frames.
    pub distance: u32,
}

impl VideoHit {
    /// Percent of the query's `query_len` frames that match.
    pub fn query_percent(&self, query_len: usize) -> f64 {
        f64::from(self.query_frames) * 100.0 / query_len.max(1) as f64
    }

    /// Percent of the video's frames that are matched.
    pub fn compared_percent(&self) -> f64 {
        f64::from(self.listed_frames) * 100.0 / f64::from(self.frames.max(1))
    }

    /// Whether the share reaches `rule`'s minimums (compared in whole hundredths of a
    /// percent, as the rule is stored, so that 80% of 5 frames is exactly 4).
    pub fn meets(&self, rule: VideoShare, query_len: usize) -> bool {
        let at_least =
            |part: u32, whole: u64, min: u16| u64::from(part) * 10_000 >= u64::from(min) * whole;
        self.query_frames > 0
            && at_least(self.query_frames, query_len as u64, rule.query)
            && at_least(self.listed_frames, u64::from(self.frames), rule.compared)
    }
}

impl VideoFrames {
    /// Indexes the frames of `section` (the set's `vpdq` section) for searches at `threshold`.
    pub fn build(
        set: &HashSetFile,
        section: &Section,
        threshold: u32,
    ) -> Result<VideoFrames, HammingError> {
        let column = set.hashes(section);
        let len = section.kind.byte_len();
        let mut codes: Vec<u8> = Vec::new();
        let mut starts: Vec<u32> = Vec::new();
        let mut members: Vec<u32> = Vec::new();
        let mut video_of: Vec<u32> = Vec::new();
        let mut videos: Vec<Video> = Vec::new();
        let mut ids: HashMap<(&str, &str), u32> = HashMap::new();
        for i in 0..section.count {
            let raw = &column[i * len..(i + 1) * len];
            if raw[32] < MIN_TRUSTED_QUALITY {
                continue;
            }
            // Sorted by hash, so entries with the same PDQ hash are one run (its members).
            if codes.len() < 32 || codes[codes.len() - 32..] != raw[..32] {
                codes.extend_from_slice(&raw[..32]);
                starts.push(members.len() as u32);
            }
            let e = set.entry(section, i);
            let next = videos.len() as u32;
            let video = *ids.entry((e.category, e.reference)).or_insert(next);
            if video == next {
                videos.push(Video { entry: i as u32 });
            }
            members.push(i as u32);
            video_of.push(video);
        }
        starts.push(members.len() as u32);
        // Each video's rows, by a counting sort of the members by video.
        let mut video_rows = vec![0u32; videos.len() + 1];
        for &v in &video_of {
            video_rows[v as usize + 1] += 1;
        }
        for v in 0..videos.len() {
            video_rows[v + 1] += video_rows[v];
        }
        let mut next: Vec<u32> = video_rows[..videos.len()].to_vec();
        let mut by_video = vec![0u32; members.len()];
        for row in 0..starts.len() - 1 {
            for at in starts[row]..starts[row + 1] {
                let v = video_of[at as usize] as usize;
                by_video[next[v] as usize] = row as u32;
                next[v] += 1;
            }
        }
        let rows: Vec<u32> = (0..(codes.len() / 32) as u32).collect();
        let widths = HammingIndex::tuned_widths(rows.len(), 256, threshold)?;
        let index = HammingIndex::over_rows(256, Column::Owned(codes), &rows, &widths)?;
        Ok(VideoFrames {
            index,
            starts,
            members,
            video_of,
            videos,
            video_rows,
            rows: by_video,
        })
    }

    /// Number of videos with frames that count.
    pub fn videos(&self) -> usize {
        self.videos.len()
    }

    /// Memory held, in bytes (the index and the frame tables).
    pub fn memory_bytes(&self) -> usize {
        self.index.memory_bytes()
            + 4 * (self.starts.len() + self.members.len() + self.video_of.len())
            + 4 * (self.video_rows.len() + self.rows.len())
            + std::mem::size_of::<Video>() * self.videos.len()
    }

    /// The listed videos with a frame within `threshold` of `pdq`, each once, at its
    /// closest frame: `found(entry, distance)` with one of the video's entries. This is how
    /// a still image (or a single frame) matches listed videos.
    pub fn videos_near(&self, pdq: &[u8], threshold: u32, mut found: impl FnMut(usize, u32)) {
        let mut near: Vec<(u32, u32)> = Vec::new();
        for (row, distance) in self.index.search(pdq, threshold) {
            let start = self.starts[row as usize] as usize;
            for at in 0..self.run(row).len() {
                near.push((self.video_of[start + at], distance));
            }
        }
        near.sort_unstable();
        near.dedup_by_key(|(video, _)| *video);
        for (video, distance) in near {
            found(self.videos[video as usize].entry as usize, distance);
        }
    }

    /// Video `video`'s frames that count (distinct hashes of quality 50 and up).
    fn frames_of(&self, video: u32) -> u32 {
        self.video_rows[video as usize + 1] - self.video_rows[video as usize]
    }

    /// The members of an indexed row.
    fn run(&self, row: u32) -> &[u32] {
        let row = row as usize;
        &self.members[self.starts[row] as usize..self.starts[row + 1] as usize]
    }

    /// Every listed video with a frame within `threshold` of one of `query`'s (frames that
    /// count, [`frames_that_count`]), with how many frames each side has in common. Exact:
    /// the same shares as [`share`] against each video, from one range search per frame.
    pub fn shares(&self, query: &[Pdq256], threshold: u32) -> Vec<VideoHit> {
        self.shares_reaching(query, threshold, 1)
    }

    /// The listed videos that may share at least `min_frames` of `query`'s frames, each
    /// with its exact share ([`VideoFrames::shares`] for those; videos sharing fewer may be
    /// left out). A video with `min_frames` of the query's frames in common has one among
    /// any `len - min_frames + 1` of them, so only that many are searched; the videos they
    /// find are then checked frame by frame, unless they hold so many frames that searching
    /// the rest of the query is cheaper.
    pub fn shares_reaching(
        &self,
        query: &[Pdq256],
        threshold: u32,
        min_frames: usize,
    ) -> Vec<VideoHit> {
        self.shares_within_budget(query, threshold, min_frames, DISTANCES_PER_SEARCH)
    }

    /// [`VideoFrames::shares_reaching`] with the cost of a search, in distances, given
    /// (the tests force each way with 0 and `u64::MAX`).
    fn shares_within_budget(
        &self,
        query: &[Pdq256],
        threshold: u32,
        min_frames: usize,
        per_search: u64,
    ) -> Vec<VideoHit> {
        let len = query.len();
        if len == 0 {
            return Vec::new();
        }
        let searched = len + 1 - min_frames.clamp(1, len);
        let mut pairs = self.pairs(&query[..searched], 0, threshold);
        if searched < len {
            let mut candidates: Vec<u32> = Vec::new();
            for &(_, row, _) in &pairs {
                let start = self.starts[row as usize] as usize;
                let end = self.starts[row as usize + 1] as usize;
                candidates.extend_from_slice(&self.video_of[start..end]);
            }
            candidates.sort_unstable();
            candidates.dedup();
            let frames: u64 = candidates
                .iter()
                .map(|&v| u64::from(self.frames_of(v)))
                .sum();
            let rest = (len - searched) as u64;
            if frames.saturating_mul(len as u64) <= rest.saturating_mul(per_search) {
                return candidates
                    .into_iter()
                    .map(|v| self.compare(v, query, threshold))
                    .collect();
            }
            pairs.extend(self.pairs(&query[searched..], searched as u32, threshold));
        }
        self.tally(pairs)
    }

    /// `(query frame, indexed row, distance)` for every pair within `threshold`, the query
    /// frames numbered from `first`.
    fn pairs(&self, query: &[Pdq256], first: u32, threshold: u32) -> Vec<(u32, u32, u32)> {
        near_pairs(&self.index, query, first, threshold)
    }

    /// Video `video`'s share with `query`, frame against frame.
    fn compare(&self, video: u32, query: &[Pdq256], threshold: u32) -> VideoHit {
        let v = self.videos[video as usize];
        let rows = &self.rows[self.video_rows[video as usize] as usize
            ..self.video_rows[video as usize + 1] as usize];
        let mut listed = vec![false; rows.len()];
        let (mut query_frames, mut distance) = (0u32, u32::MAX);
        for q in query {
            let mut matched = false;
            for (seen, &row) in listed.iter_mut().zip(rows) {
                let d = hamming_bytes(q, self.index.code(row));
                if d <= threshold {
                    matched = true;
                    *seen = true;
                    distance = distance.min(d);
                }
            }
            query_frames += u32::from(matched);
        }
        VideoHit {
            entry: v.entry as usize,
            query_frames,
            listed_frames: listed.iter().filter(|&&m| m).count() as u32,
            frames: self.frames_of(video),
            distance,
        }
    }

    /// The shares of every video in `pairs` (`(query frame, row, distance)`).
    fn tally(&self, pairs: Vec<(u32, u32, u32)>) -> Vec<VideoHit> {
        // (video, query frame, distance) and (video, member): each side's frames in common.
        let mut by_query: Vec<(u32, u32, u32)> = Vec::new();
        let mut by_listed: Vec<(u32, u32)> = Vec::new();
        for &(j, row, distance) in &pairs {
            for (at, &m) in self.run(row).iter().enumerate() {
                let video = self.video_of[self.starts[row as usize] as usize + at];
                by_query.push((video, j, distance));
                by_listed.push((video, m));
            }
        }
        by_query.sort_unstable();
        by_listed.sort_unstable();
        by_listed.dedup();
        let mut hits: Vec<VideoHit> = Vec::new();
        let mut listed = by_listed.chunk_by(|a, b| a.0 == b.0);
        for group in by_query.chunk_by(|a, b| a.0 == b.0) {
            let video = group[0].0;
            let mut query_frames = 0;
            let mut last = None;
            for &(_, j, _) in group {
                if last != Some(j) {
                    query_frames += 1;
                    last = Some(j);
                }
            }
            let listed_frames = listed.next().map_or(0, |g| g.len() as u32);
            let v = self.videos[video as usize];
            hits.push(VideoHit {
                entry: v.entry as usize,
                query_frames,
                listed_frames,
                frames: self.frames_of(video),
                distance: group.iter().map(|g| g.2).min().unwrap_or(0),
            });
        }
        hits
    }
}

/// `(query frame, row, distance)` for every code of `index` within `threshold` of a frame of
/// `query` (numbered from `first`): by the batch search when the query is long enough for
/// it to pay.
fn near_pairs(
    index: &HammingIndex,
    query: &[Pdq256],
    first: u32,
    threshold: u32,
) -> Vec<(u32, u32, u32)> {
    let mut pairs: Vec<(u32, u32, u32)> = Vec::new();
    if index.prefers_batch(query.len()) {
        let bytes: Vec<u8> = query.iter().flatten().copied().collect();
        index.search_batch(&bytes, threshold, |j, row, distance| {
            pairs.push((first + j, row, distance));
        });
    } else {
        for (j, q) in query.iter().enumerate() {
            index.search_each(q, threshold, |row, distance| {
                pairs.push((first + j as u32, row, distance));
            });
        }
    }
    pairs
}

/// A listed video that a query video matches ([`Index::match_video`]).
#[derive(Debug, Clone, PartialEq)]
pub struct VideoMatch {
    pub list: Arc<str>,
    pub version: u64,
    /// The category's rank in its list's severity order (1 = most severe), if it has one.
    pub severity: Option<u16>,
    pub category: String,
    pub reference: String,
    /// Percent of the query's frames (that count) matched by the video's.
    pub query_percent: f64,
    /// Percent of the video's frames (that count) matched by the query's.
    pub compared_percent: f64,
    /// The query's frames that matched.
    pub frames: u32,
    /// The smallest distance between a frame of each.
    pub distance: u32,
}

impl VideoMatch {
    /// This video match as a match of kind `vpdq` at its smallest distance (the audit log's
    /// and allow lists' terms).
    pub fn as_match(&self) -> Match {
        Match {
            list: Arc::clone(&self.list),
            version: self.version,
            kind: HashKind::Vpdq,
            severity: self.severity,
            category: self.category.clone(),
            reference: self.reference.clone(),
            distance: self.distance,
        }
    }
}

/// A listed still image within its threshold of some of the query video's frames: the first
/// such frame, and the smallest distance of any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrameMatch {
    /// The frame's position in the query's frames.
    pub frame: usize,
    pub found: Match,
}

/// The answer to one video query.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct VideoAnswer {
    /// The query's frames that count (quality 50 and up, each hash once).
    pub frames: usize,
    /// Listed videos that match by their share of frames, most severe first, then by the
    /// share of the query they cover.
    pub matches: Vec<VideoMatch>,
    /// Listed still images that frames of the query match (kind `pdq`), each once.
    pub images: Vec<FrameMatch>,
    /// The matches allow lists withheld (videos as kind `vpdq` matches at their smallest
    /// distance), each with the allow-list entry that withheld it; `query` is 0 for a video
    /// and the frame's position for a frame's image.
    pub suppressed: Vec<Suppressed>,
}

impl VideoAnswer {
    /// `match` when a listed video or image matched; `low_quality` when no frame counts
    /// (all under quality 50), since nothing can then be said either way.
    pub fn decision(&self) -> Decision {
        if !self.matches.is_empty() || !self.images.is_empty() {
            Decision::Match
        } else if self.frames == 0 {
            Decision::LowQuality
        } else {
            Decision::NoMatch
        }
    }
}

impl Index {
    /// Matches one video, given as its frames, against the lists `options` includes: the
    /// listed videos whose share of frames in common reaches their list's rule (the set's,
    /// raised to the operator's), and the listed still images within their threshold of one
    /// of its frames. An allow list's video (or image) match withholds the video (or that
    /// frame's image) matches of the lists it suppresses.
    pub fn match_video(&self, query: &[Frame], options: &MatchOptions<'_>) -> VideoAnswer {
        // The frames that count, each with its first position in the query.
        let mut seen = std::collections::HashSet::new();
        let (positions, counted): (Vec<usize>, Vec<Pdq256>) = query
            .iter()
            .enumerate()
            .filter(|(_, f)| f.quality >= MIN_TRUSTED_QUALITY && seen.insert(f.pdq))
            .map(|(i, f)| (i, f.pdq))
            .unzip();
        let mut answer = VideoAnswer {
            frames: counted.len(),
            ..VideoAnswer::default()
        };
        if counted.is_empty() {
            return answer;
        }
        // (list position, match) for videos and images, allow lists' apart.
        let mut videos: Vec<(bool, VideoMatch)> = Vec::new();
        let mut images: Vec<(bool, FrameMatch)> = Vec::new();
        for (list, policy) in self.lists.iter().zip(&self.policies) {
            let allow = policy.is_allow_list();
            if !allow && !options.includes(&list.name) {
                continue;
            }
            let header = list.set.header();
            for k in &list.kinds {
                let threshold = policy.threshold(k.kind, k.threshold);
                match (&k.search, k.kind) {
                    (KindSearch::Video { frames }, _) => {
                        let rule = policy.video_share(header.video_share);
                        let min_frames = rule.min_frames(counted.len());
                        for hit in frames.shares_reaching(&counted, threshold, min_frames) {
                            if !hit.meets(rule, counted.len()) {
                                continue;
                            }
                            let e = list.set.entry(&k.section, hit.entry);
                            videos.push((
                                allow,
                                VideoMatch {
                                    list: Arc::clone(&list.name),
                                    version: list.version,
                                    severity: header.severity_of(e.category),
                                    category: e.category.to_owned(),
                                    reference: e.reference.to_owned(),
                                    query_percent: hit.query_percent(counted.len()),
                                    compared_percent: hit.compared_percent(),
                                    frames: hit.query_frames,
                                    distance: hit.distance,
                                },
                            ));
                        }
                    }
                    (KindSearch::Perceptual { index }, HashKind::Pdq) => {
                        // Each listed image once: at the first frame that matches it, with
                        // the smallest distance of any frame.
                        let mut first: HashMap<usize, (usize, u32)> = HashMap::new();
                        let mut run = Vec::new();
                        for (j, row, distance) in near_pairs(index, &counted, 0, threshold) {
                            let j = j as usize;
                            let hit = Hit {
                                query: j as u32,
                                entry: row as usize,
                                distance,
                            };
                            run.clear();
                            list.expand_run(k, hit, &mut run);
                            for h in &run {
                                let seen = first.entry(h.entry).or_insert((j, distance));
                                seen.0 = seen.0.min(j);
                                seen.1 = seen.1.min(distance);
                            }
                        }
                        for (entry, (j, distance)) in first {
                            images.push((
                                allow,
                                FrameMatch {
                                    frame: positions[j],
                                    found: list.entry_match(k, entry, distance),
                                },
                            ));
                        }
                    }
                    _ => {}
                }
            }
        }
        let suppresses = |allow_list: &str, list: &str| {
            self.lists
                .iter()
                .zip(&self.policies)
                .find(|(l, _)| &*l.name == allow_list)
                .is_some_and(|(_, p)| p.suppresses.iter().any(|t| t == list))
        };
        let allowed_videos: Vec<Match> = videos
            .iter()
            .filter(|(allow, _)| *allow)
            .map(|(_, m)| m.as_match())
            .collect();
        let allowed_frames: Vec<FrameMatch> = images
            .iter()
            .filter(|(allow, _)| *allow)
            .map(|(_, m)| m.clone())
            .collect();
        for (allow, m) in videos {
            if allow {
                continue;
            }
            match allowed_videos.iter().find(|a| suppresses(&a.list, &m.list)) {
                Some(by) => answer.suppressed.push(Suppressed {
                    query: 0,
                    allow: by.clone(),
                    withheld: m.as_match(),
                }),
                None => answer.matches.push(m),
            }
        }
        for (allow, m) in images {
            if allow {
                continue;
            }
            let by = allowed_frames
                .iter()
                .find(|a| a.frame == m.frame && suppresses(&a.found.list, &m.found.list));
            match by {
                Some(by) => answer.suppressed.push(Suppressed {
                    query: m.frame,
                    allow: by.found.clone(),
                    withheld: m.found,
                }),
                None => answer.images.push(m),
            }
        }
        answer.matches.sort_by(|a, b| {
            (a.severity.is_none(), a.severity, &a.list)
                .cmp(&(b.severity.is_none(), b.severity, &b.list))
                .then(b.query_percent.total_cmp(&a.query_percent))
                .then_with(|| a.reference.cmp(&b.reference))
        });
        answer.images.sort_by(|a, b| {
            (
                a.frame,
                a.found.severity.is_none(),
                a.found.severity,
                a.found.distance,
            )
                .cmp(&(
                    b.frame,
                    b.found.severity.is_none(),
                    b.found.severity,
                    b.found.distance,
                ))
        });
        answer
    }
}

#[cfg(test)]
mod tests;

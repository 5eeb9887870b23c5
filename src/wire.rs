//! The JSON of matching, defined once: what a partner sends (`POST /v1/match`) and the
//! verdicts it gets back, written by the server and by offline `hashsieve match`, read by the
//! client. The index has its own types ([`crate::index::Verdict`]); these are how they are
//! spelled on the wire, and the OpenAPI document is generated from them.

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::index::vpdq::Frame;
use crate::index::{Decision, Match, Query, Verdict, VideoAnswer};
use crate::kinds::{HashKind, HashValue};

/// `POST /v1/match` body.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MatchRequest<'a> {
    #[serde(borrow)]
    pub queries: Vec<QueryIn<'a>>,
    /// Match against only these lists (each must be entitled); all entitled lists if absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lists: Option<Vec<String>>,
}

// The strings borrow from the request body unless they hold escapes: two allocations per
// query were a measurable part of the server's time on large batches. (A `//` comment: doc
// comments here are the OpenAPI description partners read.)
/// One hash to look up.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct QueryIn<'a> {
    /// md5, sha1, sha256, blake3, pdq, phash, dhash, ahash or url (the SHA-256 of a URL
    /// expression).
    #[serde(borrow)]
    #[schema(value_type = String)]
    pub kind: Cow<'a, str>,
    /// Lowercase or uppercase hex of the kind's length.
    #[serde(borrow)]
    #[schema(value_type = String)]
    pub hash: Cow<'a, str>,
    /// PDQ quality (0-100); under 50 gives verdict `low_quality`.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "whole_quality"
    )]
    #[schema(minimum = 0, maximum = 100)]
    pub quality: Option<u8>,
}

impl QueryIn<'static> {
    /// How a client sends `query`.
    pub fn of(query: &Query) -> QueryIn<'static> {
        QueryIn {
            kind: Cow::Borrowed(query.hash.kind().name()),
            hash: Cow::Owned(query.hash.to_hex()),
            quality: query.quality,
        }
    }
}

impl QueryIn<'_> {
    /// The query, or which field is wrong and why (`kind: ...`, `hash: ...`, `quality: ...`).
    pub fn to_query(&self) -> Result<Query, String> {
        let kind = HashKind::parse_query(&self.kind).map_err(|e| format!("kind: {e}"))?;
        let hash = HashValue::parse(kind, &self.hash).map_err(|e| format!("hash: {e}"))?;
        match self.quality {
            Some(v) if v > 100 => Err(format!("quality: {v} is over 100")),
            Some(_) if kind != HashKind::Pdq => {
                Err("quality: only pdq queries take a quality".into())
            }
            quality => Ok(Query { hash, quality }),
        }
    }
}

/// A quality as JSON gives it: an integer, or a number with no fraction (`50.0` is the
/// integer 50 in JSON Schema, so a client may well send it); 0-255 here, 0-100 checked after.
fn whole_quality<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u8>, D::Error> {
    let Some(n) = Option::<serde_json::Number>::deserialize(d)? else {
        return Ok(None);
    };
    let whole = n.as_u64().or_else(|| {
        n.as_f64()
            .filter(|f| f.fract() == 0.0 && *f >= 0.0)
            .map(|f| f as u64)
    });
    match whole.map(u8::try_from) {
        Some(Ok(q)) => Ok(Some(q)),
        _ => Err(serde::de::Error::custom(format!(
            "quality {n} is not a whole number from 0 to 100"
        ))),
    }
}

/// `POST /v1/match` answer.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct MatchResponse<'a> {
    /// One verdict per query, in query order.
    pub results: Vec<VerdictOut<'a>>,
    /// List name to the version matched against.
    pub lists: BTreeMap<String, u64>,
}

/// The decision for one query.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum VerdictName {
    Match,
    NoMatch,
    /// A PDQ hash of quality under 50: matches are listed, but they are not a verdict.
    LowQuality,
}

impl From<Decision> for VerdictName {
    fn from(d: Decision) -> VerdictName {
        match d {
            Decision::Match => VerdictName::Match,
            Decision::NoMatch => VerdictName::NoMatch,
            Decision::LowQuality => VerdictName::LowQuality,
        }
    }
}

/// The query a verdict answers (streamed, single and offline answers carry it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct QueryEcho<'a> {
    #[schema(value_type = String)]
    pub kind: Cow<'a, str>,
    #[schema(value_type = String)]
    pub hash: Cow<'a, str>,
}

impl QueryEcho<'static> {
    pub fn of(query: &Query) -> QueryEcho<'static> {
        QueryEcho {
            kind: Cow::Borrowed(query.hash.kind().name()),
            hash: Cow::Owned(query.hash.to_hex()),
        }
    }
}

/// The verdict for one query.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct VerdictOut<'a> {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query: Option<QueryEcho<'a>>,
    /// `match`, `no_match` or `low_quality`.
    pub verdict: VerdictName,
    /// The highest severity among the matches (1 = the most severe category of its list's
    /// severity order); absent when no match has one. Matches are ordered by it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub severity: Option<u16>,
    pub matches: Vec<MatchOut<'a>>,
}

impl<'a> VerdictOut<'a> {
    /// `verdict` as a partner sees it: each match's distance passed through `distance` (the
    /// partner's disclosure policy: exact, coarsened or none), echoing `query` if given.
    pub fn new(
        verdict: &'a Verdict,
        query: Option<&Query>,
        distance: impl Fn(u32) -> Option<u32>,
    ) -> VerdictOut<'a> {
        VerdictOut {
            query: query.map(QueryEcho::of),
            verdict: verdict.verdict.into(),
            severity: verdict.severity(),
            matches: verdict
                .matches
                .iter()
                .map(|m| MatchOut::of(m, &distance))
                .collect(),
        }
    }
}

impl<'a> MatchOut<'a> {
    /// `m` as a partner sees it, its distance passed through the partner's policy.
    pub fn of(m: &'a Match, distance: impl Fn(u32) -> Option<u32>) -> MatchOut<'a> {
        MatchOut {
            list: Cow::Borrowed(&m.list),
            version: m.version,
            kind: Cow::Borrowed(m.kind.name()),
            severity: m.severity,
            category: Cow::Borrowed(&m.category),
            reference: Cow::Borrowed(&m.reference),
            distance: distance(m.distance),
        }
    }
}

/// One reported match, as the partner may see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct MatchOut<'a> {
    #[schema(value_type = String)]
    pub list: Cow<'a, str>,
    pub version: u64,
    #[schema(value_type = String)]
    pub kind: Cow<'a, str>,
    /// The category's rank in the list's severity order (1 = most severe), if it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub severity: Option<u16>,
    #[schema(value_type = String)]
    pub category: Cow<'a, str>,
    /// The maintainer's opaque reference of the entry.
    #[serde(rename = "ref")]
    #[schema(value_type = String)]
    pub reference: Cow<'a, str>,
    /// Hamming distance (0 for exact kinds); coarsened or absent per the partner's policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub distance: Option<u32>,
}

/// Bytes of an expression hash a privacy-mode client sends (`POST /v1/match/url-prefixes`).
pub const URL_PREFIX_BYTES: usize = 4;

/// `POST /v1/match/url-prefixes` body: the first 4 bytes of each expression hash of the URLs
/// a client looks up, so that the service never learns which URL it was.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UrlPrefixRequest {
    /// 8 hex digits each: the first 4 bytes of a `url` expression hash.
    #[schema(value_type = Vec<String>)]
    pub prefixes: Vec<String>,
    /// Only these lists (each must be entitled); all entitled lists if absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lists: Option<Vec<String>>,
}

impl UrlPrefixRequest {
    /// The prefixes as bytes, or which one is wrong and why.
    pub fn parse_prefixes(&self) -> Result<Vec<[u8; URL_PREFIX_BYTES]>, String> {
        self.prefixes
            .iter()
            .enumerate()
            .map(|(i, p)| {
                parse_prefix(p).ok_or_else(|| {
                    let shown: String = p.chars().take(20).collect();
                    format!("prefixes[{i}]: {shown:?} is not 8 hex digits")
                })
            })
            .collect()
    }
}

fn parse_prefix(text: &str) -> Option<[u8; URL_PREFIX_BYTES]> {
    let bytes = text.as_bytes();
    if bytes.len() != 2 * URL_PREFIX_BYTES {
        return None;
    }
    let mut out = [0u8; URL_PREFIX_BYTES];
    for (o, pair) in out.iter_mut().zip(bytes.chunks_exact(2)) {
        let digit = |b: u8| (b as char).to_digit(16);
        *o = (digit(pair[0])? << 4 | digit(pair[1])?) as u8;
    }
    Some(out)
}

/// `POST /v1/match/url-prefixes` answer: every listed `url` entry whose hash starts with one
/// of the prefixes. The client compares the full hashes with its own.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct UrlPrefixResponse<'a> {
    pub entries: Vec<PrefixEntry<'a>>,
    /// List name to the version answered from.
    pub lists: BTreeMap<String, u64>,
}

/// A listed `url` entry with its full hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PrefixEntry<'a> {
    /// The full SHA-256 of the listed expression.
    #[schema(value_type = String)]
    pub hash: Cow<'a, str>,
    #[serde(flatten)]
    pub entry: MatchOut<'a>,
}

/// `POST /v1/match/video` body: one video, as the frames its vPDQ hash selected.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VideoRequest {
    /// The video's frames, in order (a `hashsieve hash` record's `vpdq` array, each frame's
    /// `pdq` as `hash`).
    #[schema(min_items = 1)]
    pub frames: Vec<FrameIn>,
    /// Match against only these lists (each must be entitled); all entitled lists if absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lists: Option<Vec<String>>,
}

/// One frame of a query video.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FrameIn {
    /// The frame's PDQ hash, 64 hex digits.
    #[schema(pattern = "^[0-9a-fA-F]{64}$")]
    pub hash: String,
    /// The frame's PDQ quality (0-100); frames under 50 do not count.
    #[serde(deserialize_with = "required_quality")]
    #[schema(minimum = 0, maximum = 100)]
    pub quality: u8,
}

impl FrameIn {
    /// How a client sends `frame`.
    pub fn of(frame: &Frame) -> FrameIn {
        FrameIn {
            hash: crate::kinds::hex_lower(&frame.pdq),
            quality: frame.quality,
        }
    }

    /// The frame, or which field is wrong and why (`hash: ...`, `quality: ...`).
    pub fn to_frame(&self) -> Result<Frame, String> {
        if self.quality > 100 {
            return Err(format!("quality: {} is over 100", self.quality));
        }
        Frame::parse(&self.hash, self.quality).map_err(|e| format!("hash: {e}"))
    }
}

fn required_quality<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u8, D::Error> {
    whole_quality(d)?.ok_or_else(|| serde::de::Error::custom("quality must be a number"))
}

/// The verdict for one video.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct VideoVerdictOut<'a> {
    /// The query (offline and `--server` answers carry it): kind `vpdq` and the number of
    /// frames sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query: Option<VideoEcho>,
    /// `match` when a listed video matched by its share of frames or a listed image matched
    /// a frame; `low_quality` when no frame reaches quality 50; else `no_match`.
    pub verdict: VerdictName,
    /// The highest severity among the matches (1 = most severe), if any has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub severity: Option<u16>,
    /// The query's frames that count: quality 50 and up, each hash once.
    pub frames: usize,
    /// Listed videos the query matches, most severe first.
    pub matches: Vec<VideoMatchOut<'a>>,
    /// Listed still images that a frame of the query matches, by frame.
    #[serde(default)]
    pub images: Vec<FrameMatchOut<'a>>,
}

/// The query video a verdict answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct VideoEcho {
    /// Always `vpdq`.
    #[schema(value_type = String)]
    pub kind: Cow<'static, str>,
    /// The frames sent.
    pub frames: usize,
}

/// A listed video that matched, as the partner may see it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct VideoMatchOut<'a> {
    #[schema(value_type = String)]
    pub list: Cow<'a, str>,
    pub version: u64,
    /// Always `vpdq`.
    #[schema(value_type = String)]
    pub kind: Cow<'a, str>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub severity: Option<u16>,
    #[schema(value_type = String)]
    pub category: Cow<'a, str>,
    /// The maintainer's reference of the listed video.
    #[serde(rename = "ref")]
    #[schema(value_type = String)]
    pub reference: Cow<'a, str>,
    /// Percent of the query's frames (that count) within the distance of one of the video's.
    pub query_percent: f64,
    /// Percent of the video's frames (that count) within the distance of one of the query's.
    pub compared_percent: f64,
    /// The query's frames that matched.
    pub frames: u32,
    /// The smallest distance between a frame of each; coarsened or absent per the
    /// partner's policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub distance: Option<u32>,
}

/// A listed still image that a frame of the query video matched.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct FrameMatchOut<'a> {
    /// The first frame (its position among the frames sent) that matched the image.
    pub frame: usize,
    #[serde(flatten)]
    pub found: MatchOut<'a>,
}

/// Percentages to two decimals: the rule is decided on whole frame counts, so nothing is
/// lost, and a partner reads `83.33`, not `83.33333333333333`.
fn percent(p: f64) -> f64 {
    (p * 100.0).round() / 100.0
}

impl<'a> VideoVerdictOut<'a> {
    /// `answer` as a partner sees it (distances through `distance`, its disclosure policy),
    /// echoing the query's frame count if given.
    pub fn new(
        answer: &'a VideoAnswer,
        sent: Option<usize>,
        distance: impl Fn(u32) -> Option<u32>,
    ) -> VideoVerdictOut<'a> {
        let severity = answer
            .matches
            .iter()
            .filter_map(|m| m.severity)
            .chain(answer.images.iter().filter_map(|m| m.found.severity))
            .min();
        VideoVerdictOut {
            query: sent.map(|frames| VideoEcho {
                kind: Cow::Borrowed(HashKind::Vpdq.name()),
                frames,
            }),
            verdict: answer.decision().into(),
            severity,
            frames: answer.frames,
            matches: answer
                .matches
                .iter()
                .map(|m| VideoMatchOut {
                    list: Cow::Borrowed(&m.list),
                    version: m.version,
                    kind: Cow::Borrowed(HashKind::Vpdq.name()),
                    severity: m.severity,
                    category: Cow::Borrowed(&m.category),
                    reference: Cow::Borrowed(&m.reference),
                    query_percent: percent(m.query_percent),
                    compared_percent: percent(m.compared_percent),
                    frames: m.frames,
                    distance: distance(m.distance),
                })
                .collect(),
            images: answer
                .images
                .iter()
                .map(|m| FrameMatchOut {
                    frame: m.frame,
                    found: MatchOut::of(&m.found, &distance),
                })
                .collect(),
        }
    }
}

/// `POST /v1/match/video` answer.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct VideoResponse<'a> {
    #[serde(flatten)]
    pub verdict: VideoVerdictOut<'a>,
    /// List name to the version matched against.
    pub lists: BTreeMap<String, u64>,
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::index::Match;

    #[test]
    fn a_verdict_reads_back_as_it_was_written() {
        let query = Query {
            hash: HashValue::parse(HashKind::Md5, "d41d8cd98f00b204e9800998ecf8427e").unwrap(),
            quality: None,
        };
        let verdict = Verdict {
            verdict: Decision::Match,
            matches: vec![Match {
                list: Arc::from("alpha"),
                version: 3,
                kind: HashKind::Md5,
                severity: None,
                category: "c1".into(),
                reference: "A-3".into(),
                distance: 0,
            }],
        };
        let out = VerdictOut::new(&verdict, Some(&query), Some);
        let json = serde_json::to_string(&out).unwrap();
        assert_eq!(
            json,
            r#"{"query":{"kind":"md5","hash":"d41d8cd98f00b204e9800998ecf8427e"},"verdict":"match","matches":[{"list":"alpha","version":3,"kind":"md5","category":"c1","ref":"A-3","distance":0}]}"#
        );
        let back: VerdictOut<'static> = serde_json::from_str(&json).unwrap();
        assert_eq!(back, out);
        // A partner told no distances gets none, and a client reads that too.
        let hidden = serde_json::to_string(&VerdictOut::new(&verdict, None, |_| None)).unwrap();
        assert!(!hidden.contains("distance") && !hidden.contains("query"));
        let back: VerdictOut<'static> = serde_json::from_str(&hidden).unwrap();
        assert_eq!(back.matches[0].distance, None);
    }

    #[test]
    fn queries_name_the_field_that_is_wrong() {
        let q = |kind: &'static str, hash: &'static str, quality| QueryIn {
            kind: Cow::Borrowed(kind),
            hash: Cow::Borrowed(hash),
            quality,
        };
        assert!(
            q("sha512", "00", None)
                .to_query()
                .unwrap_err()
                .starts_with("kind: ")
        );
        assert!(
            q("md5", "00", None)
                .to_query()
                .unwrap_err()
                .starts_with("hash: ")
        );
        let pdq = "ab".repeat(32).leak();
        assert!(
            q("pdq", pdq, Some(101))
                .to_query()
                .unwrap_err()
                .starts_with("quality: ")
        );
        assert_eq!(
            q("pdq", pdq, Some(60)).to_query().unwrap().quality,
            Some(60)
        );
        let md5 = "00".repeat(16).leak();
        assert!(q("md5", md5, Some(60)).to_query().is_err());
        let sent = QueryIn::of(&q("pdq", pdq, Some(60)).to_query().unwrap());
        assert_eq!((&*sent.kind, &*sent.hash), ("pdq", &*"ab".repeat(32)));
    }
}

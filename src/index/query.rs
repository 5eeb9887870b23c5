//! Parsing match queries: `kind:hex` lines (PDQ may add `:quality`) or the NDJSON records of
//! `hashsieve hash` (one query per hash in the record, in kind order, and the record's video
//! when it has a `vpdq` array).

use crate::kinds::{HashKind, HashValue};

use super::Query;
use super::vpdq::Frame;

/// What one input line asks.
#[derive(Debug, Default, PartialEq)]
pub struct Line {
    pub queries: Vec<Query>,
    /// A video's frames (a hash record of a video file), matched as one video.
    pub video: Option<Vec<Frame>>,
}

/// Parses one input line into its queries (none for a blank line); a record's video frames
/// are not queries and are left out (see [`parse_input`]).
pub fn parse_line(line: &str) -> Result<Vec<Query>, String> {
    parse_input(line).map(|l| l.queries)
}

/// Parses one input line into its queries and, for a hash record of a video, its frames.
pub fn parse_input(line: &str) -> Result<Line, String> {
    let line = line.trim();
    if line.is_empty() {
        return Ok(Line::default());
    }
    if line.starts_with('{') {
        return parse_record(line);
    }
    let mut parts = line.split(':');
    let kind = HashKind::parse_query(parts.next().unwrap_or_default())?;
    let hex = parts
        .next()
        .ok_or_else(|| format!("expected kind:hex, got {:?}", truncate(line)))?;
    let hash = HashValue::parse(kind, hex).map_err(|e| e.to_string())?;
    let quality = match parts.next() {
        None => None,
        Some(q) if kind == HashKind::Pdq => Some(parse_quality(q)?),
        Some(_) => {
            return Err(format!(
                "only pdq queries take a :quality, got {:?}",
                truncate(line)
            ));
        }
    };
    if parts.next().is_some() {
        return Err(format!("too many ':' fields in {:?}", truncate(line)));
    }
    Ok(Line {
        queries: vec![Query { hash, quality }],
        video: None,
    })
}

fn parse_quality(q: &str) -> Result<u8, String> {
    q.parse::<u8>()
        .ok()
        .filter(|&v| v <= 100)
        .ok_or_else(|| format!("quality {q:?} is not a whole number from 0 to 100"))
}

fn truncate(s: &str) -> String {
    s.chars().take(80).collect()
}

fn parse_record(line: &str) -> Result<Line, String> {
    let value: serde_json::Value =
        serde_json::from_str(line).map_err(|e| format!("not a hashsieve hash record: {e}"))?;
    let object = value
        .as_object()
        .ok_or_else(|| "not a hashsieve hash record: expected a JSON object".to_owned())?;
    let quality = match object.get("pdq_quality") {
        None | Some(serde_json::Value::Null) => None,
        Some(q) => Some(
            q.as_u64()
                .and_then(|v| u8::try_from(v).ok())
                .filter(|&v| v <= 100)
                .ok_or_else(|| format!("pdq_quality {q} is not a whole number from 0 to 100"))?,
        ),
    };
    let mut queries = Vec::new();
    for kind in HashKind::QUERY {
        let Some(value) = object.get(kind.name()) else {
            continue;
        };
        let hex = value
            .as_str()
            .ok_or_else(|| format!("field {kind} must be a hex string"))?;
        let hash = HashValue::parse(kind, hex).map_err(|e| e.to_string())?;
        queries.push(Query {
            hash,
            quality: if kind == HashKind::Pdq { quality } else { None },
        });
    }
    let video = match object.get(HashKind::Vpdq.name()) {
        None | Some(serde_json::Value::Null) => None,
        Some(frames) => Some(parse_frames(frames)?),
    };
    Ok(Line { queries, video })
}

/// A record's `vpdq` array: `[{"pdq","quality",...}]` (the frame number and timestamp are
/// not needed to match).
fn parse_frames(frames: &serde_json::Value) -> Result<Vec<Frame>, String> {
    let frames = frames
        .as_array()
        .ok_or_else(|| "field vpdq must be an array of frames".to_owned())?;
    frames
        .iter()
        .enumerate()
        .map(|(n, f)| {
            let hex = f["pdq"]
                .as_str()
                .ok_or_else(|| format!("vpdq frame {n}: pdq must be a hex string"))?;
            let quality = f["quality"]
                .as_u64()
                .and_then(|q| u8::try_from(q).ok())
                .filter(|&q| q <= 100)
                .ok_or_else(|| {
                    format!("vpdq frame {n}: quality must be a whole number from 0 to 100")
                })?;
            Frame::parse(hex, quality).map_err(|e| format!("vpdq frame {n}: {e}"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kind_hex_lines() {
        let q = parse_line("MD5:D41D8CD98F00B204E9800998ECF8427E").unwrap();
        assert_eq!(q[0].hash.to_hex(), "d41d8cd98f00b204e9800998ecf8427e");
        let q = parse_line(&format!("pdq:{}:87", "ab".repeat(32))).unwrap();
        assert_eq!(q[0].quality, Some(87));
        assert!(parse_line("").unwrap().is_empty());
        assert!(
            parse_line("sha512:00")
                .unwrap_err()
                .contains("unknown hash kind")
        );
        assert!(parse_line("md5").unwrap_err().contains("expected kind:hex"));
        assert!(parse_line(&format!("pdq:{}:101", "ab".repeat(32))).is_err());
        assert!(
            parse_line(&format!("md5:{}:50", "ab".repeat(16)))
                .unwrap_err()
                .contains("only pdq")
        );
        assert!(
            parse_line("ahash:00ff00ff00ff00fg")
                .unwrap_err()
                .contains("position 16")
        );
    }

    #[test]
    fn hash_records_give_one_query_per_hash() {
        let line = format!(
            r#"{{"path":"a.jpg","bytes":1,"md5":"{}","pdq":"{}","pdq_quality":40,"ahash":"0000000000000001","error":null}}"#,
            "00".repeat(16),
            "11".repeat(32)
        );
        let q = parse_line(&line).unwrap();
        let kinds: Vec<HashKind> = q.iter().map(|q| q.hash.kind()).collect();
        assert_eq!(kinds, [HashKind::Md5, HashKind::Pdq, HashKind::Ahash]);
        assert_eq!(q[1].quality, Some(40));
        assert_eq!(q[0].quality, None);
        assert!(parse_line("{bad json").is_err());
        assert_eq!(parse_input(&line).unwrap().video, None);
        assert!(
            parse_line(r#"{"md5": 5}"#)
                .unwrap_err()
                .contains("hex string")
        );
    }

    #[test]
    fn video_records_give_their_frames() {
        let line = format!(
            r#"{{"path":"a.mp4","bytes":1,"md5":"{}","vpdq":[{{"frame":0,"timestamp":0.0,"pdq":"{}","quality":90}},{{"frame":30,"timestamp":1.0,"pdq":"{}","quality":12}}]}}"#,
            "00".repeat(16),
            "11".repeat(32),
            "AB".repeat(32)
        );
        let input = parse_input(&line).unwrap();
        assert_eq!(input.queries.len(), 1);
        let frames = input.video.unwrap();
        assert_eq!(frames.len(), 2);
        assert_eq!((frames[0].pdq, frames[0].quality), ([0x11; 32], 90));
        assert_eq!((frames[1].pdq, frames[1].quality), ([0xab; 32], 12));
        // The queries alone, as /v1/match/ndjson reads them.
        assert_eq!(parse_line(&line).unwrap().len(), 1);
        for (bad, why) in [
            (r#"{"vpdq":{}}"#, "must be an array"),
            (r#"{"vpdq":[{"pdq":5,"quality":1}]}"#, "frame 0: pdq"),
            (r#"{"vpdq":[{"pdq":"00","quality":1}]}"#, "frame 0:"),
        ] {
            assert!(parse_input(bad).unwrap_err().contains(why), "{bad}");
        }
        let over = format!(
            r#"{{"vpdq":[{{"pdq":"{}","quality":101}}]}}"#,
            "11".repeat(32)
        );
        assert!(parse_input(&over).unwrap_err().contains("frame 0: quality"));
    }
}

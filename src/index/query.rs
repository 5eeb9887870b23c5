//! Parsing match queries: `kind:hex` lines (PDQ may add `:quality`) or the NDJSON records of
//! `hashsieve hash` (one query per hash in the record, in kind order).

use crate::kinds::{HashKind, HashValue};

use super::Query;

/// Parses one input line into its queries (none for a blank line).
pub fn parse_line(line: &str) -> Result<Vec<Query>, String> {
    let line = line.trim();
    if line.is_empty() {
        return Ok(Vec::new());
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
    Ok(vec![Query { hash, quality }])
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

fn parse_record(line: &str) -> Result<Vec<Query>, String> {
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
    Ok(queries)
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
        assert!(
            parse_line(r#"{"md5": 5}"#)
                .unwrap_err()
                .contains("hex string")
        );
    }
}

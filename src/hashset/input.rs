//! Entries for `hashsieve hashset build`: CSV with the header `kind,hash,category,ref`, the
//! NDJSON that `hashsieve hash` prints (one entry per hash kind present in each record, and a
//! video's frames), or one of Meta's vPDQ hash files (one video). Every bad row is reported
//! with its file and line number.

use std::io::BufRead;
use std::path::Path;

use serde::Deserialize;

use super::format::EntryTable;
use crate::kinds::{HashKind, HashValue};

/// A bad row, or the whole input being unreadable.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    #[error("{path}: cannot read: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{}", .0.join("\n"))]
    BadRows(Vec<String>),
}

/// At most this many bad rows are reported (the first ones); the rest are counted.
const MAX_REPORTED: usize = 20;

/// The `hashsieve hash` fields that become entries (a record can give several).
#[derive(Deserialize)]
struct HashRecord {
    md5: Option<String>,
    sha1: Option<String>,
    sha256: Option<String>,
    blake3: Option<String>,
    pdq: Option<String>,
    phash: Option<String>,
    dhash: Option<String>,
    ahash: Option<String>,
    vpdq: Option<Vec<FrameRecord>>,
    #[serde(default)]
    category: String,
    #[serde(default, rename = "ref")]
    reference: String,
}

/// One frame of a record's `vpdq` array (its frame number and timestamp are not listed).
#[derive(Deserialize)]
struct FrameRecord {
    pdq: String,
    quality: u8,
}

/// What [`read_entries`] read.
#[derive(Debug, Default)]
pub struct Read {
    pub rows: usize,
    /// Rows taken that will not do what their author may expect (`file:line: why`).
    pub warnings: Vec<String>,
}

/// A `url` row's value: 64 hex digits are an expression hash as it is; anything else is a URL
/// pattern (a host, a path prefix ending in `/`, or an exact URL), canonicalised and hashed
/// here, so the set never holds it. Also returns a warning for a pattern that lookups can
/// reach only as an exact URL.
pub fn url_entry(value: &str) -> Result<(HashValue, Option<String>), String> {
    use crate::urls::{Canonical, MAX_HOSTS, MAX_PATH_PREFIXES};
    if value.len() == 64 && value.bytes().all(|b| b.is_ascii_hexdigit()) {
        return HashValue::parse(HashKind::Url, value)
            .map(|h| (h, None))
            .map_err(|e| e.to_string());
    }
    let url = Canonical::parse_str(value).map_err(|e| format!("url {e}"))?;
    let expression = url.expression();
    let hash = crate::urls::expression_hash(&expression);
    let hash = HashValue::from_bytes(HashKind::Url, &hash).expect("SHA-256 is 32 bytes");
    let directories = expression.matches('/').count();
    let labels = url.host().split('.').count();
    let warning = if expression.ends_with('/') && directories > MAX_PATH_PREFIXES {
        Some(format!(
            "{expression:?} is {} directories deep; lookups try prefixes at most {} deep, so it matches only that exact URL",
            directories - 1,
            MAX_PATH_PREFIXES - 1
        ))
    } else if labels > MAX_HOSTS {
        Some(format!(
            "host {:?} has {labels} labels; lookups try the last {MAX_HOSTS} of a subdomain's, so it matches only URLs on this exact host",
            url.host()
        ))
    } else {
        None
    };
    Ok((hash, warning))
}

/// Reads entries from `path` (CSV or NDJSON, recognised by the first non-blank character)
/// into `table`.
pub fn read_entries(path: &Path, table: &mut EntryTable) -> Result<Read, InputError> {
    let name = path.display().to_string();
    let io = |source| InputError::Io {
        path: name.clone(),
        source,
    };
    let file = std::fs::File::open(path).map_err(io)?;
    let mut reader = std::io::BufReader::with_capacity(1 << 20, file);
    let (is_json, is_vpdq) = {
        let buf = reader.fill_buf().map_err(io)?;
        let text = buf.trim_ascii_start();
        let first = text.split(|&b| b == b'\n').next().unwrap_or_default();
        (
            text.first() == Some(&b'{'),
            std::str::from_utf8(first).is_ok_and(|l| parse_meta_line(l).is_ok()),
        )
    };
    let mut errors = Vec::new();
    let mut bad = 0usize;
    let mut report = |line: u64, message: String| {
        bad += 1;
        if errors.len() < MAX_REPORTED {
            errors.push(format!("{name}:{line}: {message}"));
        }
    };
    let mut rows = 0usize;
    let mut warnings = Vec::new();
    if is_vpdq {
        // One video; its reference is the file's name without the extension.
        let reference = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        for (i, line) in reader.lines().enumerate() {
            let line_no = i as u64 + 1;
            let line = line.map_err(io)?;
            if line.trim().is_empty() {
                continue;
            }
            rows += 1;
            match parse_meta_line(&line) {
                Ok(frame) => {
                    if let Err(e) = table.push(frame, "", &reference) {
                        report(line_no, e.to_string());
                    }
                }
                Err(e) => report(line_no, e),
            }
        }
    } else if is_json {
        for (i, line) in reader.lines().enumerate() {
            let line_no = i as u64 + 1;
            let line = line.map_err(io)?;
            if line.trim().is_empty() {
                continue;
            }
            rows += 1;
            let record: HashRecord = match serde_json::from_str(&line) {
                Ok(r) => r,
                Err(e) => {
                    report(line_no, format!("not a hashsieve hash record: {e}"));
                    continue;
                }
            };
            let fields = [
                (HashKind::Md5, &record.md5),
                (HashKind::Sha1, &record.sha1),
                (HashKind::Sha256, &record.sha256),
                (HashKind::Blake3, &record.blake3),
                (HashKind::Pdq, &record.pdq),
                (HashKind::Phash, &record.phash),
                (HashKind::Dhash, &record.dhash),
                (HashKind::Ahash, &record.ahash),
            ];
            for (kind, hex) in fields {
                let Some(hex) = hex else { continue };
                match HashValue::parse(kind, hex) {
                    Ok(hash) => {
                        if let Err(e) = table.push(hash, &record.category, &record.reference) {
                            report(line_no, e.to_string());
                        }
                    }
                    Err(e) => report(line_no, e.to_string()),
                }
            }
            if let Some(frames) = &record.vpdq {
                // A video needs a reference: the record's own, or else its file's SHA-256.
                let reference = match (&*record.reference, &record.sha256) {
                    ("", Some(sha256)) => sha256.as_str(),
                    (reference, _) => reference,
                };
                for (n, frame) in frames.iter().enumerate() {
                    let value = format!("{}:{}", frame.pdq, frame.quality);
                    match HashValue::parse(HashKind::Vpdq, &value) {
                        Ok(hash) => {
                            if let Err(e) = table.push(hash, &record.category, reference) {
                                report(line_no, format!("vpdq frame {n}: {e}"));
                            }
                        }
                        Err(e) => report(line_no, format!("vpdq frame {n}: {e}")),
                    }
                }
            }
        }
    } else {
        let mut csv = csv::ReaderBuilder::new()
            .has_headers(true)
            .flexible(false)
            .from_reader(reader);
        let headers = csv
            .headers()
            .map_err(|e| InputError::BadRows(vec![format!("{name}:1: {e}")]))?;
        if headers.iter().collect::<Vec<_>>() != ["kind", "hash", "category", "ref"] {
            return Err(InputError::BadRows(vec![format!(
                "{name}:1: the header must be kind,hash,category,ref (got {:?})",
                headers.iter().collect::<Vec<_>>().join(",")
            )]));
        }
        let mut record = csv::StringRecord::new();
        loop {
            match csv.read_record(&mut record) {
                Ok(false) => break,
                Ok(true) => {}
                Err(e) => {
                    let line = e.position().map_or(0, |p| p.line());
                    report(line, format!("unreadable CSV row: {e}"));
                    if matches!(e.kind(), csv::ErrorKind::Io(_)) {
                        break;
                    }
                    continue;
                }
            }
            rows += 1;
            let line = record.position().map_or(0, |p| p.line());
            let kind = match record[0].trim().parse::<HashKind>() {
                Ok(k) => k,
                Err(e) => {
                    report(line, e.to_string());
                    continue;
                }
            };
            let value = record[1].trim();
            let parsed = if kind == HashKind::Url {
                url_entry(value).map(|(hash, warning)| {
                    warnings.extend(warning.map(|w| format!("{name}:{line}: {w}")));
                    hash
                })
            } else {
                HashValue::parse(kind, value).map_err(|e| e.to_string())
            };
            match parsed {
                Ok(hash) => {
                    if let Err(e) = table.push(hash, &record[2], &record[3]) {
                        report(line, e.to_string());
                    }
                }
                Err(e) => report(line, e),
            }
        }
    }
    if bad > 0 {
        if bad > errors.len() {
            errors.push(format!(
                "{name}: {} more bad rows not shown",
                bad - errors.len()
            ));
        }
        return Err(InputError::BadRows(errors));
    }
    Ok(Read { rows, warnings })
}

/// One line of Meta's vPDQ hash files: `frameNumber,quality,pdqHex,timestamp` (older files
/// have no timestamp; matching uses neither it nor the frame number).
fn parse_meta_line(line: &str) -> Result<HashValue, String> {
    let fields: Vec<&str> = line.trim().split(',').collect();
    let (frame, quality, pdq, timestamp) = match fields[..] {
        [frame, quality, pdq, timestamp] => (frame, quality, pdq, Some(timestamp)),
        [frame, quality, pdq] => (frame, quality, pdq, None),
        _ => {
            return Err(format!(
                "expected frameNumber,quality,pdqHex,timestamp, got {} fields",
                fields.len()
            ));
        }
    };
    frame
        .parse::<u64>()
        .map_err(|_| format!("frame number {frame:?} is not a whole number"))?;
    if let Some(timestamp) = timestamp {
        timestamp
            .parse::<f64>()
            .ok()
            .filter(|t| t.is_finite() && *t >= 0.0)
            .ok_or_else(|| format!("timestamp {timestamp:?} is not a number of seconds"))?;
    }
    HashValue::parse(HashKind::Vpdq, &format!("{pdq}:{quality}")).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(text: &str) -> Result<(usize, usize), InputError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("entries");
        std::fs::write(&path, text).unwrap();
        let mut t = EntryTable::new();
        let rows = read_entries(&path, &mut t)?.rows;
        Ok((rows, t.len()))
    }

    #[test]
    fn url_rows_are_patterns_hashed_at_build_or_expression_hashes() {
        use crate::urls::expression_hash;
        let hash_of = |v: &str| url_entry(v).unwrap().0;
        let expect = |e: &str| HashValue::from_bytes(HashKind::Url, &expression_hash(e)).unwrap();
        assert_eq!(hash_of("Example.COM"), expect("example.com/"));
        assert_eq!(
            hash_of("http://example.com/dir/"),
            expect("example.com/dir/")
        );
        assert_eq!(
            hash_of("https://u@example.com:8443/a/../b.html?x=1#f"),
            expect("example.com/b.html?x=1")
        );
        let hex = crate::kinds::hex_lower(&expression_hash("example.com/"));
        assert_eq!(hash_of(&hex), expect("example.com/"));
        assert_eq!(hash_of(&hex.to_uppercase()), expect("example.com/"));
        assert!(url_entry("http://[::1/").unwrap_err().starts_with("url "));
        assert!(url_entry("http://example.com/a/b/c/").unwrap().1.is_none());
        assert!(
            url_entry("http://example.com/a/b/c/d/")
                .unwrap()
                .1
                .unwrap()
                .contains("4 directories deep")
        );
        assert!(
            url_entry("a.b.c.d.e.f.example")
                .unwrap()
                .1
                .unwrap()
                .contains("7 labels")
        );
        let (rows, entries) =
            read("kind,hash,category,ref\nurl,example.com,A,r1\nurl,http://[x/,A,r2\n")
                .map_err(|e| e.to_string())
                .unwrap_err()
                .split_once(':')
                .map(|_| (0, 0))
                .unwrap();
        assert_eq!((rows, entries), (0, 0));
        assert_eq!(
            read("kind,hash,category,ref\nurl,example.com,A,r1\nurl,example.com/,A,r1\n").unwrap(),
            (2, 2)
        );
    }

    #[test]
    fn csv_rows_become_entries() {
        let csv = "kind,hash,category,ref\nmd5,D41D8CD98F00B204E9800998ECF8427E,,\nahash,00ff00ff00ff00ff,cat-a,r-1\n";
        assert_eq!(read(csv).unwrap(), (2, 2));
    }

    #[test]
    fn bad_csv_rows_are_reported_by_line() {
        let csv = "kind,hash,category,ref\nmd5,abc,,\nsha512,00,,\npdq,zz,,\nahash,0000000000000000,x,y\n";
        let err = read(csv).unwrap_err().to_string();
        assert!(
            err.contains("entries:2: md5 hash \"abc\" has 3 hex digits, expected 32"),
            "{err}"
        );
        assert!(
            err.contains("entries:3: unknown hash kind \"sha512\""),
            "{err}"
        );
        assert!(
            err.contains("entries:4: pdq hash \"zz\" has a bad hex digit 'z' at position 1"),
            "{err}"
        );
        assert!(!err.contains("entries:5"), "{err}");
    }

    #[test]
    fn wrong_header_and_ragged_rows_are_errors() {
        assert!(
            read("hash,kind\n")
                .unwrap_err()
                .to_string()
                .contains("header must be")
        );
        let err = read("kind,hash,category,ref\nmd5,00\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("entries:2"), "{err}");
    }

    #[test]
    fn ndjson_records_give_one_entry_per_kind() {
        let line = r#"{"path":"x.jpg","bytes":3,"md5":"900150983cd24fb0d6963f7d28e17f72","pdq":"00000000000000000000000000000000000000000000000000000000000000ff","pdq_quality":100,"ahash":"0000000000000001"}"#;
        assert_eq!(read(&format!("{line}\n\n{line}\n")).unwrap(), (2, 6));
        let err = read("{\"md5\":\"00\"}\n{not json}\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("entries:1: md5 hash")
                && err.contains("entries:2: not a hashsieve hash record"),
            "{err}"
        );
    }

    /// Reads `text` from a file called `name` into a set: its entries as
    /// `(kind, hash text, category, reference)`.
    fn entries_of(
        name: &str,
        text: &str,
    ) -> Result<Vec<(HashKind, String, String, String)>, InputError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        let mut t = EntryTable::new();
        read_entries(&path, &mut t)?;
        let header = crate::hashset::format::tests::header("v", 1);
        let set =
            crate::hashset::format::HashSetFile::parse(t.to_set_bytes(&header).unwrap().0).unwrap();
        Ok(set
            .entries()
            .map(|e| {
                (
                    e.hash.kind(),
                    e.hash.to_hex(),
                    e.category.to_owned(),
                    e.reference.to_owned(),
                )
            })
            .collect())
    }

    #[test]
    fn video_records_give_their_frames_under_the_records_reference() {
        let (a, b) = ("11".repeat(32), "22".repeat(32));
        let sha = "ab".repeat(32);
        let text = format!(
            concat!(
                r#"{{"path":"v.mp4","sha256":"{sha}","vpdq":[{{"frame":0,"timestamp":0.0,"pdq":"{a}","quality":90}},"#,
                r#"{{"frame":30,"timestamp":1.0,"pdq":"{b}","quality":40}},{{"frame":60,"timestamp":2.0,"pdq":"{a}","quality":95}}]}}"#,
                "\n",
                r#"{{"path":"w.mp4","vpdq":[{{"pdq":"{b}","quality":70}}],"category":"A","ref":"clip-w"}}"#,
                "\n"
            ),
            sha = sha,
            a = a,
            b = b
        );
        let entries = entries_of("videos.ndjson", &text).unwrap();
        let frames: Vec<(String, &str, &str)> = entries
            .iter()
            .filter(|e| e.0 == HashKind::Vpdq)
            .map(|e| (e.1.clone(), e.2.as_str(), e.3.as_str()))
            .collect();
        // A frame repeated in one video is kept once, at its best quality; a video without a
        // reference is known by its file's SHA-256.
        assert_eq!(
            frames,
            [
                (format!("{a}:95"), "", sha.as_str()),
                (format!("{b}:40"), "", sha.as_str()),
                (format!("{b}:70"), "A", "clip-w"),
            ]
        );
        assert_eq!(
            entries.iter().filter(|e| e.0 == HashKind::Sha256).count(),
            1
        );
        // No reference and no SHA-256: the line is named.
        let err = entries_of(
            "bad.ndjson",
            &format!("{{\"vpdq\":[{{\"pdq\":\"{a}\",\"quality\":90}}]}}\n"),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("bad.ndjson:1: vpdq frame 0"), "{err}");
        let err = entries_of(
            "bad.ndjson",
            &format!("{{\"ref\":\"r\",\"vpdq\":[{{\"pdq\":\"{a}\",\"quality\":101}}]}}\n"),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("bad.ndjson:1: vpdq frame 0"), "{err}");
    }

    #[test]
    fn metas_hash_files_are_one_video_named_by_the_file() {
        let (a, b) = ("11".repeat(32), "22".repeat(32));
        // The older form without timestamps is read too.
        let text = format!("0,100,{a},0.000\n1,87,{b},0.033\n\n2,100,{a},0.067\n3,90,{b}\n");
        let entries = entries_of("chair-orig.txt", &text).unwrap();
        assert_eq!(
            entries,
            [
                (
                    HashKind::Vpdq,
                    format!("{a}:100"),
                    String::new(),
                    "chair-orig".into()
                ),
                (
                    HashKind::Vpdq,
                    format!("{b}:90"),
                    String::new(),
                    "chair-orig".into()
                ),
            ]
        );
        for (bad, why) in [
            (
                format!("0,100,{a},0.000\n1,87,{b},0,0\n"),
                "chair-orig.txt:2: expected",
            ),
            (
                format!("0,100,{a},0.000\nx,87,{b},1.0\n"),
                "chair-orig.txt:2: frame number",
            ),
            (
                format!("0,100,{a},0.000\n1,87,{b},-1\n"),
                "chair-orig.txt:2: timestamp",
            ),
            (
                format!("0,100,{a},0.000\n1,187,{b},1.0\n"),
                "chair-orig.txt:2:",
            ),
        ] {
            let err = entries_of("chair-orig.txt", &bad).unwrap_err().to_string();
            assert!(err.contains(why), "{bad}: {err}");
        }
    }

    #[test]
    fn csv_rows_can_list_frames() {
        let a = "11".repeat(32);
        let text = format!("kind,hash,category,ref\nvpdq,{a}:66,A,clip\n");
        let entries = entries_of("entries.csv", &text).unwrap();
        assert_eq!(
            entries,
            [(HashKind::Vpdq, format!("{a}:66"), "A".into(), "clip".into())]
        );
        let err = entries_of(
            "entries.csv",
            &format!("kind,hash,category,ref\nvpdq,{a},A,clip\n"),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("entries.csv:2"), "{err}");
    }
}

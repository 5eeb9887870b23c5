use super::*;
use crate::kinds::hex_lower;

pub fn header(name: &str, version: u64) -> Header {
    Header {
        name: name.to_owned(),
        version,
        created: 1_800_000_000,
        expires: 1_900_000_000,
        description: "synthetic test list".to_owned(),
        thresholds: vec![(HashKind::Pdq, 31), (HashKind::Phash, 10)],
        severity: Vec::new(),
        video_share: Default::default(),
    }
}

pub fn hv(kind: HashKind, fill: u8) -> HashValue {
    HashValue::from_bytes(kind, &vec![fill; kind.byte_len()]).unwrap()
}

#[test]
fn version_two_only_for_url_entries_or_a_severity_order() {
    let build = |kinds: &[HashKind], severity: &[&str]| {
        let mut t = EntryTable::new();
        for &k in kinds {
            t.push(hv(k, 7), "A", "r").unwrap();
        }
        let mut h = header("x", 1);
        h.severity = severity.iter().map(|s| s.to_string()).collect();
        t.to_set_bytes(&h).unwrap().0
    };
    let version = |bytes: &[u8]| u16::from_le_bytes([bytes[8], bytes[9]]);
    let plain = build(&[HashKind::Md5], &[]);
    assert_eq!(version(&plain), 1);
    let with_url = build(&[HashKind::Md5, HashKind::Url], &[]);
    assert_eq!(version(&with_url), 2);
    let with_severity = build(&[HashKind::Pdq], &["A", "B"]);
    assert_eq!(version(&with_severity), 2);
    let set = HashSetFile::parse(with_severity.clone()).unwrap();
    assert_eq!(set.header().severity, ["A", "B"]);
    assert_eq!(set.header().severity_of("B"), Some(2));
    assert_eq!(set.header().severity_of("Z"), None);
    assert_eq!(
        HashSetFile::parse(with_url).unwrap().counts()[1].0,
        HashKind::Url
    );
    // The same content in the other version is refused (one encoding per content).
    let reseal = |mut bytes: Vec<u8>, v: u16| {
        bytes[8..10].copy_from_slice(&v.to_le_bytes());
        let body = bytes.len() - 32;
        let digest = *blake3::hash(&bytes[..body]).as_bytes();
        bytes[body..].copy_from_slice(&digest);
        bytes
    };
    let mut t = EntryTable::new();
    t.push(hv(HashKind::Md5, 7), "A", "r").unwrap();
    let mut w = Writer::default();
    w.bytes(SET_MAGIC);
    w.u16(2);
    header("x", 1).write(&mut w, 2);
    t.write_canonical(&mut w);
    w.seal();
    let e = HashSetFile::parse(w.buf).unwrap_err().to_string();
    assert!(
        e.contains("is written as format version 1, this one says 2"),
        "{e}"
    );
    assert!(HashSetFile::parse(reseal(plain, 3)).is_err());
    // Version 1 has no severity block: read as version 1, the header runs into the entries.
    assert!(HashSetFile::parse(reseal(with_severity, 1)).is_err());
    let mut h = header("x", 1);
    h.severity = vec!["A".into(), "A".into()];
    assert!(
        h.validate()
            .unwrap_err()
            .to_string()
            .contains("named twice")
    );
    h.severity = vec!["x".repeat(300)];
    assert!(h.validate().is_err());
}

#[test]
fn round_trip_and_canonical_order() {
    let mut a = EntryTable::new();
    a.push(hv(HashKind::Pdq, 9), "b", "r2").unwrap();
    a.push(hv(HashKind::Md5, 1), "", "").unwrap();
    a.push(hv(HashKind::Pdq, 9), "a", "r1").unwrap();
    a.push(hv(HashKind::Pdq, 9), "a", "r1").unwrap(); // duplicate
    a.push(hv(HashKind::Pdq, 9), "a", "r0").unwrap();
    let mut b = EntryTable::new();
    for (k, f, c, r) in [
        (HashKind::Pdq, 9, "a", "r0"),
        (HashKind::Pdq, 9, "a", "r1"),
        (HashKind::Md5, 1, "", ""),
        (HashKind::Pdq, 9, "b", "r2"),
    ] {
        b.push(hv(k, f), c, r).unwrap();
    }
    let (bytes_a, digest_a) = a.to_set_bytes(&header("alpha", 3)).unwrap();
    let (bytes_b, digest_b) = b.to_set_bytes(&header("alpha", 3)).unwrap();
    assert_eq!(bytes_a, bytes_b, "same entries, same bytes");
    assert_eq!(digest_a, digest_b);
    let set = HashSetFile::parse(bytes_a).unwrap();
    assert_eq!(set.header(), &header("alpha", 3));
    assert_eq!(set.digest(), digest_a);
    assert_eq!(set.categories(), ["", "a", "b"]);
    let entries: Vec<(String, &str, &str)> = set
        .entries()
        .map(|e| (format!("{:?}", e.hash), e.category, e.reference))
        .collect();
    assert_eq!(entries.len(), 4);
    assert_eq!(entries[0].0, format!("{:?}", hv(HashKind::Md5, 1)));
    assert_eq!((entries[1].1, entries[1].2), ("a", "r0"));
    assert_eq!((entries[2].1, entries[2].2), ("a", "r1"));
    assert_eq!((entries[3].1, entries[3].2), ("b", "r2"));
    assert_eq!(set.counts(), vec![(HashKind::Md5, 1), (HashKind::Pdq, 3)]);
    assert_eq!(set.header().threshold(HashKind::Phash), 10);
    assert_eq!(set.header().threshold(HashKind::Dhash), 8);
}

#[test]
fn a_mapped_file_parses_as_its_bytes_do() {
    let mut t = EntryTable::new();
    t.push(hv(HashKind::Sha256, 4), "cat", "ref-1").unwrap();
    t.push(hv(HashKind::Pdq, 5), "", "ref-2").unwrap();
    let (bytes, digest) = t.to_set_bytes(&header("alpha", 2)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("alpha-2.hset");
    std::fs::write(&path, &bytes).unwrap();
    let mapped = HashSetFile::open_mapped(&path).unwrap().unwrap();
    assert_eq!(mapped.digest(), digest);
    assert_eq!(mapped.bytes(), &bytes[..]);
    assert_eq!(
        mapped.counts(),
        vec![(HashKind::Sha256, 1), (HashKind::Pdq, 1)]
    );
    // Damaged or empty files are format errors, as read ones are; a missing one an I/O error.
    std::fs::write(&path, &bytes[..bytes.len() - 1]).unwrap();
    assert!(HashSetFile::open_mapped(&path).unwrap().is_err());
    std::fs::write(&path, b"").unwrap();
    assert!(HashSetFile::open_mapped(&path).unwrap().is_err());
    assert!(HashSetFile::open_mapped(&dir.path().join("missing.hset")).is_err());
}

#[test]
fn empty_set_is_valid() {
    let (bytes, _) = EntryTable::new().to_set_bytes(&header("empty", 1)).unwrap();
    let set = HashSetFile::parse(bytes).unwrap();
    assert!(set.is_empty());
}

#[test]
fn every_truncation_is_an_error_and_trailing_bytes_are_refused() {
    let mut t = EntryTable::new();
    t.push(hv(HashKind::Sha1, 2), "cat", "ref-1").unwrap();
    t.push(hv(HashKind::Ahash, 3), "", "ref-2").unwrap();
    let (bytes, _) = t.to_set_bytes(&header("alpha", 1)).unwrap();
    for cut in 0..bytes.len() {
        assert!(
            HashSetFile::parse(bytes[..cut].to_vec()).is_err(),
            "cut at {cut}"
        );
    }
    let mut longer = bytes.clone();
    longer.push(0);
    assert!(matches!(
        HashSetFile::parse(longer),
        Err(FormatError::TrailingBytes { count: 1, .. })
    ));
    // A flipped bit in the body is caught by the digest (or the structure).
    let mut flipped = bytes.clone();
    let at = bytes.len() - 40;
    flipped[at] ^= 1;
    assert!(HashSetFile::parse(flipped).is_err());
}

#[test]
fn header_rules_are_enforced() {
    let mut h = header("Bad Name", 1);
    assert!(EntryTable::new().to_set_bytes(&h).is_err());
    h = header("ok", 1);
    h.expires = h.created;
    assert!(EntryTable::new().to_set_bytes(&h).is_err());
    h = header("ok", 1);
    h.thresholds = vec![(HashKind::Sha256, 1)];
    assert!(EntryTable::new().to_set_bytes(&h).is_err());
    h.thresholds = vec![(HashKind::Pdq, 65)];
    assert!(EntryTable::new().to_set_bytes(&h).is_err());
}

#[test]
fn limits_on_entries() {
    let mut t = EntryTable::new();
    assert_eq!(
        t.push(hv(HashKind::Md5, 0), &"c".repeat(256), ""),
        Err(EntryError::CategoryTooLong(256))
    );
    assert_eq!(
        t.push(hv(HashKind::Md5, 0), "", &"r".repeat(1025)),
        Err(EntryError::ReferenceTooLong(1025))
    );
}

fn frame(fill: u8, quality: u8) -> HashValue {
    HashValue::vpdq(&[fill; 32], quality)
}

#[test]
fn video_frames_need_version_three_and_keep_one_quality_per_hash() {
    let mut t = EntryTable::new();
    t.push(frame(1, 60), "A", "video-1").unwrap();
    t.push(frame(1, 90), "A", "video-1").unwrap();
    t.push(frame(1, 70), "A", "video-2").unwrap();
    t.push(frame(2, 40), "A", "video-1").unwrap();
    t.push(hv(HashKind::Pdq, 3), "B", "image").unwrap();
    assert_eq!(
        t.push(frame(4, 90), "A", ""),
        Err(EntryError::FrameWithoutReference)
    );
    assert_eq!(
        t.push(frame(4, 101), "A", "v"),
        Err(EntryError::FrameQuality(101))
    );
    let mut h = header("videos", 1);
    h.video_share = VideoShare::from_percents(70.0, 12.5).unwrap();
    let (bytes, _) = t.to_set_bytes(&h).unwrap();
    assert_eq!(u16::from_le_bytes([bytes[8], bytes[9]]), 3);
    let set = HashSetFile::parse(bytes).unwrap();
    assert_eq!(set.header().video_share.query_percent(), 70.0);
    assert_eq!(set.header().video_share.compared_percent(), 12.5);
    let frames: Vec<(String, &str)> = set
        .entries()
        .filter(|e| e.hash.kind() == HashKind::Vpdq)
        .map(|e| (e.hash.to_hex(), e.reference))
        .collect();
    let hex = |fill: u8, q: u8| format!("{}:{q}", hex_lower(&[fill; 32]));
    // video-1's hash 1 stays once, at its best quality 90.
    assert_eq!(
        frames,
        [
            (hex(1, 70), "video-2"),
            (hex(1, 90), "video-1"),
            (hex(2, 40), "video-1")
        ]
    );
    assert_eq!(set.videos(), 2);
    // A non-default share alone needs version 3; none of it, no version 3.
    let mut plain = EntryTable::new();
    plain.push(hv(HashKind::Pdq, 3), "B", "image").unwrap();
    let (bytes, _) = plain.to_set_bytes(&h).unwrap();
    assert_eq!(u16::from_le_bytes([bytes[8], bytes[9]]), 3);
    assert!(VideoShare::from_percents(101.0, 0.0).is_err());
    assert!(VideoShare::from_percents(f64::NAN, 0.0).is_err());
}

#[test]
fn hostile_video_entries_are_refused() {
    let write = |version: u16, entries: &[(HashValue, &str)]| {
        let mut w = Writer::default();
        w.bytes(SET_MAGIC);
        w.u16(version);
        header("v", 1).write(&mut w, version);
        w.u16(1);
        w.str16("A");
        w.u8(1);
        w.u8(HashKind::Vpdq.code());
        w.u64(entries.len() as u64);
        for (h, _) in entries {
            w.bytes(h.as_bytes());
        }
        for _ in entries {
            w.u16(0);
        }
        let mut end = 0u32;
        for (_, r) in entries {
            end += r.len() as u32;
            w.u32(end);
        }
        for (_, r) in entries {
            w.bytes(r.as_bytes());
        }
        w.seal();
        HashSetFile::parse(w.buf)
    };
    assert!(write(3, &[(frame(1, 60), "v")]).is_ok());
    let e = write(2, &[(frame(1, 60), "v")]).unwrap_err().to_string();
    assert!(e.contains("written as format version 3"), "{e}");
    let e = write(3, &[(frame(1, 60), "")]).unwrap_err().to_string();
    assert!(e.contains("no reference"), "{e}");
    let e = write(3, &[(frame(1, 200), "v")]).unwrap_err().to_string();
    assert!(e.contains("quality 200"), "{e}");
    // The same hash twice in one video (with two qualities), even with another video's
    // entry between them.
    let e = write(
        3,
        &[
            (frame(1, 60), "v"),
            (frame(1, 70), "w"),
            (frame(1, 80), "v"),
        ],
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("repeats a frame hash"), "{e}");
    assert!(write(3, &[(frame(1, 60), "v"), (frame(1, 70), "w")]).is_ok());
}

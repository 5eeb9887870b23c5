//! `hashsieve hash`: the NDJSON contract, directory walking, errors and exit codes.

use crate::util::{file_name, ndjson, repo, run, stderr};

fn fixture(name: &str) -> String {
    repo()
        .join("tests/fixtures/images")
        .join(name)
        .to_string_lossy()
        .into_owned()
}

#[test]
fn record_has_the_contract_fields_in_order() {
    let out = run(&["hash", &fixture("scene1_q90.jpg")]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let line = String::from_utf8(out.stdout).unwrap();
    // The crate enables serde_json's preserve_order, so the map keeps the line's key order.
    let record: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(line.trim()).unwrap();
    let keys: Vec<&str> = record.keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        [
            "path",
            "bytes",
            "md5",
            "sha1",
            "sha256",
            "blake3",
            "pdq",
            "pdq_quality",
            "phash",
            "dhash",
            "ahash"
        ],
        "{line}"
    );
    assert!(!line.contains("pdq_dihedral") && !line.contains("error"));
    assert_eq!(line.lines().count(), 1);
}

#[test]
fn kinds_selects_fields_and_dihedral_adds_eight_hashes() {
    let out = run(&[
        "hash",
        "--kinds",
        "SHA256,pdq",
        "--dihedral",
        &fixture("scene2.bmp"),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let rec = &ndjson(&out.stdout)[0];
    let obj = rec.as_object().unwrap();
    let mut keys: Vec<&str> = obj.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "bytes",
            "path",
            "pdq",
            "pdq_dihedral",
            "pdq_quality",
            "sha256"
        ]
    );
    let dih = rec["pdq_dihedral"].as_array().unwrap();
    assert_eq!(dih.len(), 8);
    assert_eq!(dih[0], rec["pdq"]);
    assert!(dih.iter().all(|h| h.as_str().unwrap().len() == 64));
}

#[test]
fn unknown_kind_is_a_usage_error_listing_known_kinds() {
    let out = run(&["hash", "--kinds", "md5,sha512", &fixture("scene2.bmp")]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(
        err.contains("sha512") && err.contains("blake3") && err.contains("ahash"),
        "{err}"
    );
    assert!(out.stdout.is_empty());
}

#[test]
fn dihedral_without_pdq_is_a_usage_error() {
    let out = run(&[
        "hash",
        "--kinds",
        "md5",
        "--dihedral",
        &fixture("scene2.bmp"),
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("--dihedral needs pdq"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn directories_are_walked_recursively_in_sorted_order() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::create_dir_all(root.join("b/inner")).unwrap();
    std::fs::create_dir_all(root.join("a")).unwrap();
    for (name, src) in [
        ("b/inner/z.png", "scene3_64x64.png"),
        ("a/y.jpg", "scene1_q90.jpg"),
        ("b/x.gif", "scene2_palette.gif"),
        ("top.webp", "scene2_lossy.webp"),
    ] {
        std::fs::copy(fixture(src), root.join(name)).unwrap();
    }
    let out = run(&["hash", "--kinds", "md5", root.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let paths: Vec<String> = ndjson(&out.stdout)
        .iter()
        .map(|r| {
            r["path"]
                .as_str()
                .unwrap()
                .strip_prefix(root.to_str().unwrap())
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(
        paths,
        ["/a/y.jpg", "/b/inner/z.png", "/b/x.gif", "/top.webp"]
    );
    // Same order again (stable), whatever the thread scheduling.
    let again = run(&["hash", "--kinds", "md5", root.to_str().unwrap()]);
    assert_eq!(again.stdout, out.stdout);
}

#[test]
fn undecodable_file_keeps_digests_reports_error_and_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let notes = dir.path().join("notes.txt");
    std::fs::write(&notes, b"plain text, not a picture").unwrap();
    let broken = dir.path().join("broken.jpg");
    let mut bytes = std::fs::read(fixture("scene1_q90.jpg")).unwrap();
    bytes.truncate(600);
    std::fs::write(&broken, &bytes).unwrap();
    let empty = dir.path().join("empty.png");
    std::fs::write(&empty, b"").unwrap();
    let good = fixture("scene2.tiff");
    let out = run(&[
        "hash",
        notes.to_str().unwrap(),
        broken.to_str().unwrap(),
        empty.to_str().unwrap(),
        &good,
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let recs = ndjson(&out.stdout);
    assert_eq!(recs.len(), 4, "the run continues after a failure");
    let notes_rec = &recs[0];
    assert_eq!(
        notes_rec["sha256"],
        "3265e9cf75c7e22c60b9fe0e233feabc3888d007ccbc75d54a2730cf5b5dd914"
    );
    assert_eq!(notes_rec["bytes"], 25);
    assert!(notes_rec["md5"].is_string() && notes_rec.get("pdq").is_none());
    assert!(
        notes_rec["error"]
            .as_str()
            .unwrap()
            .contains("not a supported image format")
    );
    let broken_rec = &recs[1];
    assert!(broken_rec["sha1"].is_string());
    assert!(
        broken_rec["error"].as_str().unwrap().contains("JPEG"),
        "{}",
        broken_rec["error"]
    );
    assert_eq!(recs[2]["bytes"], 0);
    assert_eq!(recs[2]["md5"], "d41d8cd98f00b204e9800998ecf8427e");
    assert!(recs[2]["error"].is_string());
    assert!(recs[3].get("error").is_none() && recs[3]["pdq"].is_string());
    assert!(stderr(&out).contains("3 of 4 files"), "{}", stderr(&out));
}

#[test]
fn missing_path_is_an_io_error_named_on_stderr_exit_2() {
    let out = run(&[
        "hash",
        "--kinds",
        "md5",
        "/definitely/not/here.jpg",
        &fixture("scene2.bmp"),
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("/definitely/not/here.jpg"),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        ndjson(&out.stdout).len(),
        1,
        "the readable file is still hashed"
    );
}

#[test]
fn images_over_the_pixel_limit_are_refused_before_decoding() {
    // scene1 is 320x240 = 76800 pixels.
    let out = run(&[
        "hash",
        "--max-pixels",
        "76799",
        &fixture("scene1_q90.jpg"),
        &fixture("scene2.bmp"),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let recs = ndjson(&out.stdout);
    let err = recs[0]["error"].as_str().unwrap();
    assert!(
        err.contains("320x240") && err.contains("76800") && err.contains("--max-pixels"),
        "{err}"
    );
    assert!(recs[0]["sha256"].is_string());
    // scene2 is 199x257 = 51143 pixels: under the limit.
    assert!(recs[1].get("error").is_none());
    let at_limit = run(&["hash", "--max-pixels", "76800", &fixture("scene1_q90.jpg")]);
    assert_eq!(at_limit.status.code(), Some(0));
}

#[test]
fn exif_orientation_is_not_applied() {
    // The same pixels saved with and without an EXIF "rotate 90" tag hash the same: the tag is
    // ignored, as Meta's tools and imagehash ignore it.
    let out = run(&[
        "hash",
        "--kinds",
        "pdq,phash",
        &fixture("scene1_q90.jpg"),
        &fixture("scene1_exif6.jpg"),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let recs = ndjson(&out.stdout);
    assert_eq!(
        file_name(recs[1]["path"].as_str().unwrap()),
        "scene1_exif6.jpg"
    );
    assert_eq!(recs[0]["pdq"], recs[1]["pdq"]);
    assert_eq!(recs[0]["phash"], recs[1]["phash"]);
}

#[test]
fn help_documents_every_flag() {
    let out = run(&["hash", "--help"]);
    assert_eq!(out.status.code(), Some(0));
    let help = String::from_utf8(out.stdout).unwrap();
    for flag in ["--kinds", "--dihedral", "--max-pixels", "PATH"] {
        assert!(help.contains(flag), "{flag} missing from help");
    }
}

//! `hashsets-example/`: rebuilt byte for byte, signed by the example key, derived from the
//! committed pictures.

use std::collections::HashSet;
use std::path::Path;
use std::process::Command;

use hashsieve::hashset::signing::parse_public_key;
use hashsieve::hashset::trust::{Policy, verify_path};

use crate::util::{ndjson, repo, run, stderr};

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

#[test]
fn hashsets_example_is_reproducible() {
    let example = repo().join("hashsets-example");
    let scratch = tempfile::tempdir().unwrap();
    let copy = scratch.path().join("hashsets-example");
    copy_dir(&example, &copy);
    let out = Command::new("bash")
        .arg(copy.join("regenerate.sh"))
        .env("HASHSIEVE", env!("CARGO_BIN_EXE_hashsieve"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "regenerate.sh failed: {}",
        stderr(&out)
    );
    for file in [
        "alpha/alpha-1.hset",
        "alpha/alpha-2.hdelta",
        "beta/beta-1.hset",
        "beta/beta-2.hdelta",
    ] {
        assert_eq!(
            std::fs::read(copy.join(file)).unwrap(),
            std::fs::read(example.join(file)).unwrap(),
            "{file} is not reproduced byte for byte"
        );
    }
    // The regenerated signatures are new but verify with the same key.
    let out = run(&[
        "hashset",
        "verify",
        "--public-key",
        example.join("example-only.pub").to_str().unwrap(),
        copy.join("alpha/alpha-2.hdelta").to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}

#[test]
fn committed_examples_verify_with_the_example_key() {
    let example = repo().join("hashsets-example");
    let key = parse_public_key(&std::fs::read_to_string(example.join("example-only.pub")).unwrap())
        .unwrap();
    let policy = Policy::new(vec![key]);
    for file in [
        "alpha/alpha-1.hset",
        "alpha/alpha-2.hdelta",
        "beta/beta-1.hset",
        "beta/beta-2.hdelta",
    ] {
        let published =
            verify_path(&example.join(file), &policy, None).unwrap_or_else(|e| panic!("{e}"));
        assert!(file.contains(published.list()));
    }
}

#[test]
fn example_entries_are_hashes_of_the_committed_pictures() {
    let example = repo().join("hashsets-example");
    let out = run(&["hash", example.join("images").to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let mut known = HashSet::new();
    for record in ndjson(&out.stdout) {
        for (kind, value) in record.as_object().unwrap() {
            if let Some(hex) = value.as_str() {
                known.insert(format!("{kind},{hex}"));
            }
        }
    }
    let mut rows = 0;
    for entry in std::fs::read_dir(example.join("entries")).unwrap() {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        for line in text.lines().skip(1) {
            let mut fields = line.split(',');
            let key = format!("{},{}", fields.next().unwrap(), fields.next().unwrap());
            assert!(
                known.contains(&key),
                "{key} is not a hash of any picture in images/"
            );
            rows += 1;
        }
    }
    assert!(rows >= 40, "{rows}");
}

//! Every refusal of the verifier, each on a file made for it, checked by its exact error; and
//! interop with the real `minisign` program both ways.

use std::path::{Path, PathBuf};
use std::process::Command;

use hashsieve::clock::now_unix;
use hashsieve::hashset::FormatError;
use hashsieve::hashset::format::{EntryTable, Header};
use hashsieve::hashset::signing::{Published, sign};
use hashsieve::hashset::trust::{
    Policy, Refusal, TrustState, nth_signature_path, signature_path, verify_path,
};
use hashsieve::kinds::{HashKind, HashValue};
use minisign::KeyPair;

use crate::util::stderr;

struct Fixture {
    dir: tempfile::TempDir,
    key: KeyPair,
}

impl Fixture {
    fn new() -> Fixture {
        Fixture {
            dir: tempfile::tempdir().unwrap(),
            key: KeyPair::generate_unencrypted_keypair().unwrap(),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn policy(&self) -> Policy {
        Policy::new(vec![self.key.pk.clone()])
    }

    /// Builds a set of list `name`, `version`, expiring at `expires`.
    fn set_bytes(&self, name: &str, version: u64, expires: i64) -> Vec<u8> {
        let mut t = EntryTable::new();
        let pdq = HashValue::parse(HashKind::Pdq, &"5a".repeat(32)).unwrap();
        let md5 = HashValue::parse(HashKind::Md5, &format!("{version:032x}")).unwrap();
        t.push(pdq, "example", "entry-1").unwrap();
        t.push(md5, "example", "entry-2").unwrap();
        let header = Header {
            name: name.into(),
            version,
            created: expires - 86_400 * 60,
            expires,
            description: "test".into(),
            thresholds: vec![],
            severity: Vec::new(),
            video_share: Default::default(),
        };
        t.to_set_bytes(&header).unwrap().0
    }

    fn fresh(&self, version: u64) -> Vec<u8> {
        self.set_bytes("alpha", version, now_unix() + 86_400)
    }

    /// Writes `bytes` and a signature by `key` over exactly those bytes with `comment`.
    fn write_signed_raw(&self, name: &str, bytes: &[u8], key: &KeyPair, comment: &str) -> PathBuf {
        let path = self.path(name);
        std::fs::write(&path, bytes).unwrap();
        let sig = minisign::sign(
            None,
            &key.sk,
            std::io::Cursor::new(bytes),
            Some(comment),
            None,
        )
        .unwrap();
        std::fs::write(signature_path(&path), sig.into_string()).unwrap();
        path
    }

    /// Writes a well-formed file signed the normal way.
    fn write_signed(&self, name: &str, bytes: Vec<u8>, key: &KeyPair) -> PathBuf {
        let path = self.path(name);
        std::fs::write(&path, &bytes).unwrap();
        let published = Published::parse(bytes).unwrap();
        std::fs::write(signature_path(&path), sign(&published, &key.sk).unwrap()).unwrap();
        path
    }
}

fn comment_of(bytes: &[u8]) -> String {
    Published::parse(bytes.to_vec()).unwrap().trusted_comment()
}

#[test]
fn a_good_set_is_accepted() {
    let f = Fixture::new();
    let path = f.write_signed("alpha-1.hset", f.fresh(1), &f.key);
    let published = verify_path(&path, &f.policy(), None).unwrap();
    assert_eq!((published.list(), published.version()), ("alpha", 1));
}

#[test]
fn missing_signature_is_refused() {
    let f = Fixture::new();
    let path = f.path("alpha-1.hset");
    std::fs::write(&path, f.fresh(1)).unwrap();
    let err = verify_path(&path, &f.policy(), None).unwrap_err();
    assert!(matches!(err, Refusal::MissingSignature { .. }), "{err}");
    assert!(
        err.to_string().contains("alpha-1.hset.minisig is missing"),
        "{err}"
    );
}

#[test]
fn bad_signature_is_refused() {
    let f = Fixture::new();
    let path = f.write_signed("alpha-1.hset", f.fresh(1), &f.key);
    // The file changes after signing (one flipped bit in the description).
    let mut bytes = std::fs::read(&path).unwrap();
    let at = bytes.len() / 3;
    bytes[at] ^= 0x01;
    std::fs::write(&path, &bytes).unwrap();
    let err = verify_path(&path, &f.policy(), None).unwrap_err();
    assert!(matches!(err, Refusal::BadSignature { .. }), "{err}");
    // A signature file that is not a signature at all.
    std::fs::write(signature_path(&path), "hello\n").unwrap();
    let err = verify_path(&path, &f.policy(), None).unwrap_err();
    assert!(matches!(err, Refusal::UnreadableSignature { .. }), "{err}");
}

#[test]
fn unknown_key_is_refused_and_rotation_accepts_either_key() {
    let f = Fixture::new();
    let other = KeyPair::generate_unencrypted_keypair().unwrap();
    let path = f.write_signed("alpha-1.hset", f.fresh(1), &other);
    let err = verify_path(&path, &f.policy(), None).unwrap_err();
    let Refusal::UnknownKey { key_id, .. } = &err else {
        panic!("{err}")
    };
    assert_eq!(
        key_id,
        &hashsieve::hashset::signing::key_id(other.pk.keynum())
    );
    // During a rotation both keys are trusted.
    let rotation = Policy::new(vec![f.key.pk.clone(), other.pk.clone()]);
    verify_path(&path, &rotation, None).unwrap();
}

#[test]
fn trusted_comment_that_does_not_describe_the_file_is_refused() {
    let f = Fixture::new();
    let bytes = f.fresh(2);
    let good = comment_of(&bytes);
    for (field, comment) in [
        ("list", good.replace("list=alpha", "list=beta")),
        ("version", good.replace("version=2", "version=3")),
        (
            "digest",
            format!(
                "{} digest={}",
                good.rsplit_once(" digest=").unwrap().0,
                "0".repeat(64)
            ),
        ),
        ("type", "timestamp:1700000000\tfile:alpha-2.hset".to_owned()),
    ] {
        let path = f.write_signed_raw("alpha-2.hset", &bytes, &f.key, &comment);
        let err = verify_path(&path, &f.policy(), None).unwrap_err();
        let Refusal::CommentMismatch { field: got, .. } = &err else {
            panic!("{field}: {err}")
        };
        assert_eq!(*got, field, "{err}");
    }
}

#[test]
fn rollback_and_replay_are_refused() {
    let f = Fixture::new();
    let mut state = TrustState::default();
    state.record("alpha", 2, [7; 32], now_unix());
    let old = f.write_signed("alpha-1.hset", f.fresh(1), &f.key);
    let err = verify_path(&old, &f.policy(), Some(&state)).unwrap_err();
    assert!(
        matches!(
            err,
            Refusal::Rollback {
                got: 1,
                accepted: 2,
                ..
            }
        ),
        "{err}"
    );
    let same = f.write_signed("alpha-2.hset", f.fresh(2), &f.key);
    let err = verify_path(&same, &f.policy(), Some(&state)).unwrap_err();
    assert!(matches!(err, Refusal::Replay { got: 2, .. }), "{err}");
    let newer = f.write_signed("alpha-3.hset", f.fresh(3), &f.key);
    verify_path(&newer, &f.policy(), Some(&state)).unwrap();
    // Another list is not affected by alpha's state.
    let beta = f.write_signed(
        "beta-1.hset",
        f.set_bytes("beta", 1, now_unix() + 3600),
        &f.key,
    );
    verify_path(&beta, &f.policy(), Some(&state)).unwrap();
}

#[test]
fn a_fast_forward_is_refused_and_honest_updates_still_apply() {
    // One trusted key signs version 2^63: with a step limit it is refused, and the next
    // honest version is still taken (without one, it would be accepted and lock them out).
    let f = Fixture::new();
    let mut state = TrustState::default();
    state.record("alpha", 2, [7; 32], now_unix());
    let mut policy = f.policy();
    policy.max_version_step = Some(1_000_000);
    let far = f.write_signed("alpha-far.hset", f.fresh(1 << 63), &f.key);
    let err = verify_path(&far, &policy, Some(&state)).unwrap_err();
    assert!(
        matches!(
            err,
            Refusal::FastForward {
                accepted: 2,
                max_step: 1_000_000,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("max_version_step"), "{err}");
    assert!(
        verify_path(&far, &f.policy(), Some(&state)).is_ok(),
        "no limit: accepted"
    );
    let honest = f.write_signed("alpha-3.hset", f.fresh(3), &f.key);
    verify_path(&honest, &policy, Some(&state)).unwrap();
    let step = f.write_signed("alpha-1000002.hset", f.fresh(1_000_002), &f.key);
    verify_path(&step, &policy, Some(&state)).unwrap();
    let past = f.write_signed("alpha-1000003.hset", f.fresh(1_000_003), &f.key);
    assert!(verify_path(&past, &policy, Some(&state)).is_err());
}

#[test]
fn expired_set_is_refused() {
    let f = Fixture::new();
    let path = f.write_signed(
        "alpha-1.hset",
        f.set_bytes("alpha", 1, now_unix() - 60),
        &f.key,
    );
    let err = verify_path(&path, &f.policy(), None).unwrap_err();
    assert!(matches!(err, Refusal::Expired { version: 1, .. }), "{err}");
    assert!(err.to_string().contains("expired at"), "{err}");
}

#[test]
fn oversized_file_is_refused_before_reading() {
    let f = Fixture::new();
    let path = f.write_signed("alpha-1.hset", f.fresh(1), &f.key);
    let size = std::fs::metadata(&path).unwrap().len();
    let mut policy = f.policy();
    policy.max_bytes = size - 1;
    let err = verify_path(&path, &policy, None).unwrap_err();
    assert!(
        matches!(err, Refusal::TooLarge { size: s, limit, .. } if s == size && limit == size - 1),
        "{err}"
    );
    policy.max_bytes = size;
    verify_path(&path, &policy, None).unwrap();
}

#[test]
fn truncated_and_trailing_bytes_are_refused_even_when_signed() {
    // The signer signed broken bytes: the signature is valid, the structure is not.
    let f = Fixture::new();
    let bytes = f.fresh(1);
    let comment = comment_of(&bytes);
    let truncated = &bytes[..bytes.len() - 40];
    let path = f.write_signed_raw("alpha-1.hset", truncated, &f.key, &comment);
    let err = verify_path(&path, &f.policy(), None).unwrap_err();
    assert!(
        matches!(
            err,
            Refusal::Malformed {
                source: FormatError::Truncated { .. },
                ..
            }
        ),
        "{err}"
    );
    let mut trailing = bytes.clone();
    trailing.extend_from_slice(b"extra");
    let path = f.write_signed_raw("alpha-1.hset", &trailing, &f.key, &comment);
    let err = verify_path(&path, &f.policy(), None).unwrap_err();
    assert!(
        matches!(
            err,
            Refusal::Malformed {
                source: FormatError::TrailingBytes { count: 5, .. },
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn file_for_another_list_is_refused_when_a_list_is_expected() {
    let f = Fixture::new();
    let path = f.write_signed("alpha-1.hset", f.fresh(1), &f.key);
    let mut policy = f.policy();
    policy.list = Some("beta".into());
    let err = verify_path(&path, &policy, None).unwrap_err();
    assert!(matches!(err, Refusal::WrongList { .. }), "{err}");
}

// ---- the CLI: exit codes and messages --------------------------------------------------

fn hs(dir: &Path, args: &[&str]) -> std::process::Output {
    let mut cmd = crate::util::hashsieve();
    cmd.current_dir(dir).args(args);
    cmd.output().unwrap()
}

fn setup_cli() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let out = hs(
        d,
        &[
            "keygen",
            "--secret-key",
            "k.sec",
            "--public-key",
            "k.pub",
            "--unencrypted",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    std::fs::write(
        d.join("v1.csv"),
        format!(
            "kind,hash,category,ref\nmd5,{},cat,r1\nsha256,{},cat,r2\npdq,{},,r3\n",
            "00".repeat(16),
            "11".repeat(32),
            "22".repeat(32)
        ),
    )
    .unwrap();
    std::fs::write(
        d.join("v2.csv"),
        format!(
            "kind,hash,category,ref\nmd5,{},cat,r1\nahash,{},new,r4\n",
            "00".repeat(16),
            "33".repeat(8)
        ),
    )
    .unwrap();
    for (v, csv) in [("1", "v1.csv"), ("2", "v2.csv")] {
        let out = hs(
            d,
            &[
                "hashset",
                "build",
                "--name",
                "alpha",
                "--version",
                v,
                "-o",
                &format!("alpha-{v}.hset"),
                csv,
            ],
        );
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    }
    dir
}

#[test]
fn cli_verify_exit_codes() {
    let dir = setup_cli();
    let d = dir.path();
    // Unsigned: refused, exit 1, reason on stderr.
    let out = hs(
        d,
        &["hashset", "verify", "--public-key", "k.pub", "alpha-1.hset"],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("no signature"), "{}", stderr(&out));
    assert_eq!(
        hs(
            d,
            &["hashset", "sign", "--secret-key", "k.sec", "alpha-1.hset"]
        )
        .status
        .code(),
        Some(0)
    );
    let out = hs(
        d,
        &["hashset", "verify", "--public-key", "k.pub", "alpha-1.hset"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("valid: hashsieve-set list=alpha version=1")
    );
    // Missing file: I/O error, exit 2.
    let out = hs(
        d,
        &["hashset", "verify", "--public-key", "k.pub", "nope.hset"],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("nope.hset"), "{}", stderr(&out));
    // Usage error: exit 2.
    assert_eq!(
        hs(d, &["hashset", "verify", "alpha-1.hset"]).status.code(),
        Some(2)
    );
    // With a state: v2 accepted, then v1 is a rollback (exit 1) and v2 a replay.
    assert_eq!(
        hs(
            d,
            &["hashset", "sign", "--secret-key", "k.sec", "alpha-2.hset"]
        )
        .status
        .code(),
        Some(0)
    );
    let verify_state = |f: &str| {
        hs(
            d,
            &[
                "hashset",
                "verify",
                "--public-key",
                "k.pub",
                "--state",
                "trust.json",
                f,
            ],
        )
    };
    assert_eq!(verify_state("alpha-2.hset").status.code(), Some(0));
    let out = verify_state("alpha-1.hset");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("rollback refused"),
        "{}",
        stderr(&out)
    );
    let out = verify_state("alpha-2.hset");
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("replay refused"), "{}", stderr(&out));
    let state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(d.join("trust.json")).unwrap()).unwrap();
    assert_eq!(state["lists"]["alpha"]["version"], 2);
}

#[test]
fn cli_diff_apply_reproduces_bytes_and_wrong_base_leaves_nothing() {
    let dir = setup_cli();
    let d = dir.path();
    let out = hs(
        d,
        &[
            "hashset",
            "diff",
            "alpha-1.hset",
            "alpha-2.hset",
            "-o",
            "alpha-2.hdelta",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("2 removed, 1 added"),
        "{}",
        stderr(&out)
    );
    let out = hs(
        d,
        &[
            "hashset",
            "apply",
            "alpha-1.hset",
            "alpha-2.hdelta",
            "-o",
            "rebuilt.hset",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        std::fs::read(d.join("rebuilt.hset")).unwrap(),
        std::fs::read(d.join("alpha-2.hset")).unwrap()
    );
    // Applying to the wrong base (v2 itself) fails and writes nothing.
    let out = hs(
        d,
        &[
            "hashset",
            "apply",
            "alpha-2.hset",
            "alpha-2.hdelta",
            "-o",
            "wrong.hset",
        ],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("delta applies to version 1"),
        "{}",
        stderr(&out)
    );
    assert!(!d.join("wrong.hset").exists());
    let leftovers: Vec<_> = std::fs::read_dir(d)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty());
    // Deltas are signed and verified like sets.
    assert_eq!(
        hs(
            d,
            &["hashset", "sign", "--secret-key", "k.sec", "alpha-2.hdelta"]
        )
        .status
        .code(),
        Some(0)
    );
    let out = hs(
        d,
        &[
            "hashset",
            "verify",
            "--public-key",
            "k.pub",
            "alpha-2.hdelta",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .contains("hashsieve-delta list=alpha base=1 version=2")
    );
}

#[test]
fn cli_build_reports_bad_rows_by_line_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(
        d.join("bad.csv"),
        "kind,hash,category,ref\nmd5,00,,\nsha1,zz,,\n",
    )
    .unwrap();
    let out = hs(
        d,
        &[
            "hashset",
            "build",
            "--name",
            "alpha",
            "--version",
            "1",
            "-o",
            "out.hset",
            "bad.csv",
        ],
    );
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(
        err.contains("bad.csv:2: md5 hash \"00\" has 2 hex digits, expected 32"),
        "{err}"
    );
    assert!(
        err.contains("bad.csv:3: sha1 hash \"zz\" has a bad hex digit"),
        "{err}"
    );
    assert!(!d.join("out.hset").exists());
    let out = hs(
        d,
        &[
            "hashset",
            "build",
            "--name",
            "Alpha!",
            "--version",
            "1",
            "-o",
            "out.hset",
            "bad.csv",
        ],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("list name"), "{}", stderr(&out));
}

#[test]
fn cli_inspect_prints_the_trusted_comment_and_json() {
    let dir = setup_cli();
    let d = dir.path();
    let out = hs(
        d,
        &["hashset", "inspect", "--trusted-comment", "alpha-1.hset"],
    );
    let line = String::from_utf8(out.stdout).unwrap();
    assert!(
        line.starts_with("hashsieve-set list=alpha version=1 expires="),
        "{line}"
    );
    assert_eq!(line.lines().count(), 1);
    let out = hs(d, &["hashset", "inspect", "--json", "alpha-1.hset"]);
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["entries"], 3);
    assert_eq!(doc["counts"]["pdq"], 1);
    assert_eq!(doc["thresholds"]["pdq"], 31);
    assert_eq!(doc["trusted_comment"], line.trim());
}

// ---- interop with Debian's minisign ------------------------------------------------------

/// Runs Debian's `minisign` in `dir`.
fn minisign(dir: &Path, args: &[&str]) -> std::process::Output {
    Command::new("minisign")
        .current_dir(dir)
        .args(args)
        .output()
        .unwrap()
}

fn minisign_available() -> bool {
    let found = Command::new("minisign").arg("-v").output().is_ok();
    if !found {
        assert!(
            std::env::var_os("HASHSIEVE_REQUIRE_MINISIGN").is_none(),
            "HASHSIEVE_REQUIRE_MINISIGN is set but minisign is not installed"
        );
        eprintln!(
            "SKIPPED: the minisign program is not installed (apt-get install minisign); CI always runs this test"
        );
    }
    found
}

#[test]
fn real_minisign_verifies_our_signatures() {
    if !minisign_available() {
        return;
    }
    let dir = setup_cli();
    let d = dir.path();
    assert_eq!(
        hs(
            d,
            &["hashset", "sign", "--secret-key", "k.sec", "alpha-1.hset"]
        )
        .status
        .code(),
        Some(0)
    );
    let out = minisign(d, &["-V", "-p", "k.pub", "-m", "alpha-1.hset"]);
    assert!(out.status.success(), "minisign -V: {}", stderr(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("Trusted comment: hashsieve-set list=alpha version=1"),
        "{stdout}"
    );
    // And it refuses our signature on different bytes.
    std::fs::copy(d.join("alpha-2.hset"), d.join("alpha-1.hset")).unwrap();
    let out = minisign(d, &["-V", "-p", "k.pub", "-m", "alpha-1.hset"]);
    assert!(!out.status.success());
}

#[test]
fn we_verify_signatures_made_by_real_minisign() {
    if !minisign_available() {
        return;
    }
    let dir = setup_cli();
    let d = dir.path();
    // Key made by minisign itself (no password), so both directions of key interop are used.
    let out = minisign(d, &["-G", "-W", "-p", "m.pub", "-s", "m.sec"]);
    assert!(out.status.success(), "minisign -G: {}", stderr(&out));
    let comment = String::from_utf8(
        hs(
            d,
            &["hashset", "inspect", "--trusted-comment", "alpha-1.hset"],
        )
        .stdout,
    )
    .unwrap();
    let out = minisign(
        d,
        &[
            "-S",
            "-s",
            "m.sec",
            "-m",
            "alpha-1.hset",
            "-t",
            comment.trim(),
        ],
    );
    assert!(out.status.success(), "minisign -S: {}", stderr(&out));
    let out = hs(
        d,
        &["hashset", "verify", "--public-key", "m.pub", "alpha-1.hset"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    // minisign's default trusted comment (a timestamp) does not describe the file: refused.
    let out = minisign(d, &["-S", "-s", "m.sec", "-m", "alpha-2.hset"]);
    assert!(out.status.success());
    let out = hs(
        d,
        &["hashset", "verify", "--public-key", "m.pub", "alpha-2.hset"],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("trusted comment says type"),
        "{}",
        stderr(&out)
    );
    // Our key, signed by minisign with our secret key file: key files interoperate too.
    let comment = String::from_utf8(
        hs(
            d,
            &["hashset", "inspect", "--trusted-comment", "alpha-2.hset"],
        )
        .stdout,
    )
    .unwrap();
    let out = minisign(
        d,
        &[
            "-S",
            "-s",
            "k.sec",
            "-m",
            "alpha-2.hset",
            "-t",
            comment.trim(),
        ],
    );
    assert!(
        out.status.success(),
        "minisign -S with our key: {}",
        stderr(&out)
    );
    assert_eq!(
        hs(
            d,
            &["hashset", "verify", "--public-key", "k.pub", "alpha-2.hset"]
        )
        .status
        .code(),
        Some(0)
    );
}

// ---- k of n maintainer keys --------------------------------------------------------------

/// Three maintainer keys, two of which must sign.
fn two_of_three(f: &Fixture) -> (Policy, [KeyPair; 2]) {
    let others = [
        KeyPair::generate_unencrypted_keypair().unwrap(),
        KeyPair::generate_unencrypted_keypair().unwrap(),
    ];
    let mut policy = Policy::new(vec![
        f.key.pk.clone(),
        others[0].pk.clone(),
        others[1].pk.clone(),
    ]);
    policy.threshold = 2;
    (policy, others)
}

/// Writes `key`'s signature of the file at `path` as its `n`th signature.
fn cosign(path: &Path, n: usize, key: &KeyPair) {
    let published = Published::parse(std::fs::read(path).unwrap()).unwrap();
    std::fs::write(
        nth_signature_path(path, n),
        sign(&published, &key.sk).unwrap(),
    )
    .unwrap();
}

#[test]
fn one_stolen_key_alone_publishes_nothing_under_a_threshold() {
    let f = Fixture::new();
    let (policy, others) = two_of_three(&f);
    let path = f.write_signed("alpha-1.hset", f.fresh(1), &f.key);
    let err = verify_path(&path, &policy, None).unwrap_err();
    assert!(
        matches!(
            err,
            Refusal::TooFewSignatures {
                valid: 1,
                threshold: 2,
                ..
            }
        ),
        "{err}"
    );
    assert!(
        err.to_string()
            .contains("1 valid signature(s) from distinct trusted keys where the list requires 2"),
        "{err}"
    );
    // The same key signing again under the second name still counts once.
    cosign(&path, 2, &f.key);
    let err = verify_path(&path, &policy, None).unwrap_err();
    assert!(
        err.to_string()
            .contains("signed more than once (counted once)"),
        "{err}"
    );
    // A key that is not one of the three does not count either, and is named.
    let outsider = KeyPair::generate_unencrypted_keypair().unwrap();
    cosign(&path, 2, &outsider);
    let err = verify_path(&path, &policy, None).unwrap_err();
    assert!(err.to_string().contains("signed by unknown key"), "{err}");
    // A second maintainer's signature makes two: accepted, and both signers are reported.
    cosign(&path, 2, &others[1]);
    let verified = hashsieve::hashset::trust::verify_signed(
        &path,
        std::fs::read(&path).unwrap(),
        &hashsieve::hashset::trust::read_signatures(&path, 3).unwrap(),
        &policy,
        None,
    )
    .unwrap();
    assert_eq!(verified.signed_by.len(), 2);
    // The outsider's signature beside them (a third file) does no harm.
    cosign(&path, 3, &outsider);
    verify_path(&path, &policy, None).unwrap();
}

#[test]
fn a_threshold_signature_over_other_contents_refuses_the_file() {
    let f = Fixture::new();
    let (policy, others) = two_of_three(&f);
    let bytes = f.fresh(2);
    // Two good signatures and a third by a trusted key whose comment names another version.
    let path = f.write_signed("alpha-2.hset", bytes.clone(), &f.key);
    cosign(&path, 2, &others[0]);
    let lying = comment_of(&bytes).replace("version=2", "version=3");
    let sig = minisign::sign(
        None,
        &others[1].sk,
        std::io::Cursor::new(&bytes),
        Some(&lying),
        None,
    )
    .unwrap();
    std::fs::write(nth_signature_path(&path, 3), sig.into_string()).unwrap();
    let err = verify_path(&path, &policy, None).unwrap_err();
    assert!(
        matches!(
            err,
            Refusal::CommentMismatch {
                field: "version",
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn co_signers_use_the_cli_and_real_minisign_checks_every_signature() {
    let dir = setup_cli();
    let d = dir.path();
    let keygen = |name: &str| {
        let out = hs(
            d,
            &[
                "keygen",
                "--secret-key",
                &format!("{name}.sec"),
                "--public-key",
                &format!("{name}.pub"),
                "--unencrypted",
            ],
        );
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    };
    keygen("k2");
    keygen("k3");
    let sign_with = |key: &str| {
        let out = hs(
            d,
            &[
                "hashset",
                "sign",
                "--secret-key",
                &format!("{key}.sec"),
                "alpha-1.hset",
            ],
        );
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        stderr(&out)
    };
    let verify = |threshold: &str| {
        hs(
            d,
            &[
                "hashset",
                "verify",
                "--public-key",
                "k.pub",
                "--public-key",
                "k2.pub",
                "--public-key",
                "k3.pub",
                "--threshold",
                threshold,
                "alpha-1.hset",
            ],
        )
    };
    assert!(sign_with("k").contains("alpha-1.hset.minisig"));
    let out = verify("2");
    assert_eq!(out.status.code(), Some(1), "one of two: refused");
    assert!(
        stderr(&out).contains("where the list requires 2"),
        "{}",
        stderr(&out)
    );
    // The second maintainer's signature goes beside the first, and signing again replaces
    // one's own signature rather than adding a slot.
    assert!(sign_with("k2").contains("alpha-1.hset.2.minisig"));
    assert!(sign_with("k2").contains("alpha-1.hset.2.minisig"));
    assert!(!d.join("alpha-1.hset.3.minisig").exists());
    let out = verify("2");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let out = verify("3");
    assert_eq!(out.status.code(), Some(1));
    let out = verify("4");
    assert_eq!(
        out.status.code(),
        Some(2),
        "a threshold above n is a usage error"
    );
    assert!(stderr(&out).contains("between 1 and the number"));

    if !minisign_available() {
        return;
    }
    // Each signature is a standard one: minisign -V checks both, each with its own key.
    for (sig, key) in [
        ("alpha-1.hset.minisig", "k.pub"),
        ("alpha-1.hset.2.minisig", "k2.pub"),
    ] {
        let out = minisign(d, &["-V", "-p", key, "-m", "alpha-1.hset", "-x", sig]);
        assert!(
            out.status.success(),
            "minisign -V -x {sig}: {}",
            stderr(&out)
        );
    }
    // And the third maintainer may sign with minisign itself, under the next name.
    let comment = String::from_utf8(
        hs(
            d,
            &["hashset", "inspect", "--trusted-comment", "alpha-1.hset"],
        )
        .stdout,
    )
    .unwrap();
    let out = minisign(d, &["-G", "-W", "-p", "m.pub", "-s", "m.sec"]);
    assert!(out.status.success(), "{}", stderr(&out));
    std::fs::remove_file(d.join("alpha-1.hset.2.minisig")).unwrap();
    let out = minisign(
        d,
        &[
            "-S",
            "-s",
            "m.sec",
            "-m",
            "alpha-1.hset",
            "-x",
            "alpha-1.hset.2.minisig",
            "-t",
            comment.trim(),
        ],
    );
    assert!(out.status.success(), "minisign -S -x: {}", stderr(&out));
    let out = hs(
        d,
        &[
            "hashset",
            "verify",
            "--public-key",
            "k.pub",
            "--public-key",
            "m.pub",
            "--threshold",
            "2",
            "alpha-1.hset",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}

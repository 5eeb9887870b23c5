//! What the service survives, on the real binary: k-of-n signed lists, a damaged state dir,
//! `kill -9` at any moment of an update (in a loop), and a full disk. Each test fails when
//! its property breaks: a version served that the trust state does not name, a trust state
//! that goes backwards, a list not served after a restart, a half-written file left behind.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use hashsieve::hashset::format::{EntryTable, Header};
use hashsieve::hashset::signing::{Published, key_id, sign};
use hashsieve::hashset::trust::nth_signature_path;
use hashsieve::kinds::{HashKind, HashValue};
use minisign::KeyPair;
use reqwest::StatusCode;
use reqwest::blocking::Client;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::server::{ServeChild, spawn_serve_with};

const OPS: &str = "survive-ops-key";
pub(crate) const PARTNER: &str = "survive-partner-key";
pub(crate) const OTHER: &str = "survive-other-key";

fn sha256_hex(s: &str) -> String {
    Sha256::digest(s.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The MD5 that only version `v` of a test list holds: a match on it proves which version
/// answered.
pub(crate) fn marker(v: u64) -> String {
    format!("{:032x}", 0x5eed_0000_0000_0000_u64 | v)
}

/// Version `version` of list `list`: its marker and `filler` SHA-256 entries (the same in
/// every version, so that deltas stay small while full sets take time to write).
pub(crate) fn set_bytes(list: &str, version: u64, filler: usize) -> Vec<u8> {
    let mut t = EntryTable::new();
    let md5 = HashValue::parse(HashKind::Md5, &marker(version)).unwrap();
    t.push(md5, "marker", &format!("v{version}")).unwrap();
    for i in 0..filler as u64 {
        let raw = Sha256::digest(i.to_le_bytes());
        let h = HashValue::from_bytes(HashKind::Sha256, &raw).unwrap();
        t.push(h, "filler", "").unwrap();
    }
    let now = hashsieve::clock::now_unix();
    let header = Header {
        name: list.into(),
        version,
        created: now - 60,
        expires: now + 86_400,
        description: "synthetic test list".into(),
        thresholds: vec![],
        severity: Vec::new(),
        video_share: Default::default(),
    };
    t.to_set_bytes(&header).unwrap().0
}

/// Writes `bytes` as `dir/<name>` with one signature per key (`.minisig`, `.2.minisig`,
/// ...), signatures first, each file atomically, as `hashset publish` does.
pub(crate) fn publish(dir: &Path, name: &str, bytes: &[u8], keys: &[&KeyPair]) -> PathBuf {
    let path = dir.join(name);
    let published = Published::parse(bytes.to_vec()).unwrap();
    for (n, key) in keys.iter().enumerate() {
        let sig = sign(&published, &key.sk).unwrap();
        hashsieve::fsutil::write_atomic(&nth_signature_path(&path, n + 1), sig.as_bytes()).unwrap();
    }
    hashsieve::fsutil::write_atomic(&path, bytes).unwrap();
    path
}

/// A service directory: `hashsieve.toml` with list `alpha` polling `published/` (only on
/// SIGHUP unless `poll_seconds` says otherwise), a partner and an admin.
pub(crate) struct Service {
    pub dir: tempfile::TempDir,
    pub keys: Vec<KeyPair>,
}

impl Service {
    pub(crate) fn new(keys: usize, threshold: usize, extra: &str) -> Service {
        Service::with_source(keys, threshold, "dir:published", "", extra, "")
    }

    /// A service whose list polls `source`, with `limits` added to `[limits]`, `extra` to
    /// the list and `partner` to the first partner (a second one, [`OTHER`], is plain).
    pub(crate) fn with_source(
        keys: usize,
        threshold: usize,
        source: &str,
        limits: &str,
        extra: &str,
        partner: &str,
    ) -> Service {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("published")).unwrap();
        let keys: Vec<KeyPair> = (0..keys)
            .map(|_| KeyPair::generate_unencrypted_keypair().unwrap())
            .collect();
        let public: Vec<String> = keys
            .iter()
            .map(|k| format!("\"{}\"", k.pk.to_base64()))
            .collect();
        let config = format!(
            r#"
listen = "127.0.0.1:0"
state_dir = "state"
audit_log = "audit.jsonl"

[limits]
shutdown_grace_ms = 0
{limits}

[[lists]]
name = "alpha"
source = "{source}"
public_keys = [{keys}]
threshold = {threshold}
poll_seconds = 3600
{extra}

[[partners]]
name = "partner"
key_sha256 = "{partner_key}"
lists = ["alpha"]
{partner}

[[partners]]
name = "other"
key_sha256 = "{other_key}"
lists = ["alpha"]

[[admins]]
name = "ops"
key_sha256 = "{ops}"
"#,
            keys = public.join(", "),
            partner_key = sha256_hex(PARTNER),
            other_key = sha256_hex(OTHER),
            ops = sha256_hex(OPS),
        );
        std::fs::write(dir.path().join("hashsieve.toml"), config).unwrap();
        Service { dir, keys }
    }

    pub(crate) fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// Publishes version `v` (signed by the first `signers` keys) into `published/`.
    pub(crate) fn publish(&self, v: u64, filler: usize, signers: usize) {
        let keys: Vec<&KeyPair> = self.keys.iter().take(signers).collect();
        publish(
            &self.path("published"),
            &format!("alpha-{v}.hset"),
            &set_bytes("alpha", v, filler),
            &keys,
        );
    }

    /// Starts `hashsieve serve`; returns the process, its base URL and its log so far.
    pub(crate) fn start(&self) -> Running {
        let (child, log, lines, addr) = spawn_serve_with(
            Command::new(env!("CARGO_BIN_EXE_hashsieve")),
            self.dir.path(),
            &["serve", "--config", "hashsieve.toml"],
            "http",
        );
        Running {
            child,
            base: format!("http://{addr}"),
            log,
            lines,
            client: Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap(),
        }
    }

    /// The version the trust state accepted, if any.
    pub(crate) fn accepted(&self) -> Option<u64> {
        let text = std::fs::read_to_string(self.path("state/trust.json")).ok()?;
        let doc: Value = serde_json::from_str(&text).unwrap();
        doc["lists"]["alpha"]["version"].as_u64()
    }

    /// Files a crash could have left half-written anywhere under the state dir.
    pub(crate) fn temporaries(&self) -> Vec<PathBuf> {
        let mut found = Vec::new();
        for dir in ["state", "state/sets", "state/index"] {
            if let Ok(entries) = std::fs::read_dir(self.path(dir)) {
                for e in entries.flatten() {
                    if e.file_name().to_string_lossy().ends_with(".tmp") {
                        found.push(e.path());
                    }
                }
            }
        }
        found
    }

    /// [`Service::temporaries`] once the running service's own writes are done: an index
    /// is saved just after its list serves, so its temporary file may exist for a moment
    /// after `wait_serving`. Returns what is still there after `timeout`.
    pub(crate) fn temporaries_after(&self, timeout: Duration) -> Vec<PathBuf> {
        let until = Instant::now() + timeout;
        loop {
            let found = self.temporaries();
            if found.is_empty() || Instant::now() > until {
                return found;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

pub(crate) struct Running {
    pub child: ServeChild,
    pub base: String,
    pub log: std::sync::mpsc::Receiver<String>,
    pub lines: Vec<String>,
    pub client: Client,
}

impl Running {
    /// The version `/readyz` reports for alpha (`None` while not ready).
    pub(crate) fn serving(&self) -> Option<u64> {
        let r = self
            .client
            .get(format!("{}/readyz", self.base))
            .send()
            .ok()?;
        if r.status() != StatusCode::OK {
            return None;
        }
        r.json::<Value>().ok()?["lists"]["alpha"].as_u64()
    }

    pub(crate) fn wait_serving(&self, v: u64, within: Duration) {
        let deadline = Instant::now() + within;
        while self.serving() != Some(v) {
            assert!(
                Instant::now() < deadline,
                "not serving version {v} within {within:?} (serving {:?}; lists: {})",
                self.serving(),
                self.lists()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// alpha's entry in `/v1/lists`.
    pub(crate) fn lists(&self) -> Value {
        let doc: Value = self
            .client
            .get(format!("{}/v1/lists", self.base))
            .bearer_auth(OPS)
            .send()
            .unwrap()
            .json()
            .unwrap();
        doc["lists"][0].clone()
    }

    /// Whether version `v`'s marker matches (the answer comes from version `v`).
    pub(crate) fn matches_marker(&self, v: u64) -> bool {
        let r = self
            .client
            .get(format!("{}/v1/match/md5/{}", self.base, marker(v)))
            .bearer_auth(PARTNER)
            .send()
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        r.json::<Value>().unwrap()["verdict"] == "match"
    }

    pub(crate) fn hup(&self) {
        let ok = Command::new("kill")
            .args(["-HUP", &self.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -HUP");
    }

    /// The log lines so far (those read since the last call are appended).
    pub(crate) fn log(&mut self) -> &[String] {
        while let Ok(line) = self.log.try_recv() {
            self.lines.push(line);
        }
        &self.lines
    }

    pub(crate) fn kill9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub(crate) fn stop(mut self) {
        self.child.terminate();
    }
}

/// Uploads `file` to alpha with `signatures` as repeated `signature` fields.
fn upload(run: &Running, file: &[u8], signatures: &[String]) -> (StatusCode, Value) {
    let mut form = reqwest::blocking::multipart::Form::new().part(
        "file",
        reqwest::blocking::multipart::Part::bytes(file.to_vec()).file_name("alpha.hset"),
    );
    for s in signatures {
        form = form.part(
            "signature",
            reqwest::blocking::multipart::Part::bytes(s.clone().into_bytes()),
        );
    }
    let r = run
        .client
        .post(format!("{}/v1/admin/hashsets/alpha", run.base))
        .bearer_auth(OPS)
        .multipart(form)
        .send()
        .unwrap();
    let status = r.status();
    (status, r.json().unwrap())
}

#[test]
fn a_threshold_list_serves_only_what_two_maintainers_signed() {
    let service = Service::new(3, 2, "");
    service.publish(1, 10, 2);
    let run = service.start();
    run.wait_serving(1, Duration::from_secs(20));
    let status = run.lists();
    assert_eq!(status["signatures_required"], 2);
    let signed_by = status["signing_key"].as_str().unwrap().to_owned();
    for k in &service.keys[..2] {
        assert!(signed_by.contains(&key_id(k.pk.keynum())), "{signed_by}");
    }

    let bytes = set_bytes("alpha", 2, 10);
    let published = Published::parse(bytes.clone()).unwrap();
    let by = |k: usize| sign(&published, &service.keys[k].sk).unwrap();
    // One stolen key: refused, and the reason says why.
    let (code, body) = upload(&run, &bytes, &[by(0)]);
    assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("1 valid signature(s) from distinct trusted keys where the list requires 2"),
        "{body}"
    );
    // The same key twice is still one key.
    let (code, body) = upload(&run, &bytes, &[by(0), by(0)]);
    assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(run.matches_marker(1) && !run.matches_marker(2));
    // Two maintainers (the second and third keys): taken.
    let (code, body) = upload(&run, &bytes, &[by(2), by(1)]);
    assert_eq!(code, StatusCode::OK, "{body}");
    assert_eq!(body["version"], 2);
    assert!(run.matches_marker(2));
    run.stop();
}

/// Flips one byte in the middle of `path`.
fn flip(path: &Path) {
    let mut bytes = std::fs::read(path).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x40;
    std::fs::write(path, bytes).unwrap();
}

fn only_file(dir: &Path, suffix: &str) -> PathBuf {
    let found: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.to_string_lossy().ends_with(suffix))
        .collect();
    assert_eq!(found.len(), 1, "{found:?}");
    found[0].clone()
}

#[test]
fn a_damaged_state_dir_is_detected_and_never_served() {
    let service = Service::new(1, 1, "");
    service.publish(1, 2_000, 1);
    service.publish(2, 2_000, 1);
    let run = service.start();
    run.wait_serving(2, Duration::from_secs(20));
    run.stop();
    let saved = service.path("state/sets/alpha-2.hset");
    assert!(
        saved.exists(),
        "the accepted set is saved under its version"
    );

    // A truncated index: detected by its digest, rebuilt from the set, served.
    let index = only_file(&service.path("state/index"), ".hidx");
    let len = std::fs::metadata(&index).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&index)
        .unwrap()
        .set_len(len / 2)
        .unwrap();
    let mut run = service.start();
    run.wait_serving(2, Duration::from_secs(20));
    assert!(run.matches_marker(2));
    assert!(
        run.log()
            .iter()
            .any(|l| l.contains("saved index not used; rebuilt")),
        "{:?}",
        run.log()
    );
    run.stop();

    // A flipped byte in the saved set: not served from the state dir; the same version,
    // verified again from the source, takes its place.
    flip(&saved);
    let mut run = service.start();
    run.wait_serving(2, Duration::from_secs(20));
    assert!(run.matches_marker(2));
    assert!(
        run.log()
            .iter()
            .any(|l| l.contains("last good set not restored")),
        "{:?}",
        run.log()
    );
    run.stop();

    // Damaged again, and the source no longer has version 2 (only 1, a rollback): nothing
    // is served, and the operator is told why and what brings the list back.
    flip(&saved);
    std::fs::remove_file(service.path("published/alpha-2.hset")).unwrap();
    let run = service.start();
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(run.serving(), None, "an unverified set must not be served");
    let r = run
        .client
        .get(format!("{}/v1/match/md5/{}", run.base, marker(2)))
        .bearer_auth(PARTNER)
        .send()
        .unwrap();
    assert_eq!(r.json::<Value>().unwrap()["verdict"], "no_match");
    let reason = run.lists()["last_refusal"]["reason"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        reason.contains("rollback refused") || reason.contains("serves again once its source"),
        "{reason}"
    );
    // The maintainer's next version brings it back.
    service.publish(3, 2_000, 1);
    run.hup();
    run.wait_serving(3, Duration::from_secs(20));
    run.stop();

    // A damaged trust state: the service refuses to start and says what to do.
    std::fs::write(service.path("state/trust.json"), "{\"lists\": {\"alpha\": ").unwrap();
    let out = crate::util::hashsieve()
        .current_dir(service.dir.path())
        .args(["serve", "--config", "hashsieve.toml"])
        .output()
        .unwrap();
    assert_ne!(out.status.code(), Some(0));
    let err = crate::util::stderr(&out);
    assert!(
        err.contains("trust state is damaged") && err.contains("restore it from a backup"),
        "{err}"
    );
}

/// How many times the crash loop kills the service (`HASHSIEVE_CRASH_ROUNDS`, default 50).
fn crash_rounds() -> u64 {
    std::env::var("HASHSIEVE_CRASH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50)
}

#[test]
fn kill_9_at_any_moment_of_an_update_loses_nothing() {
    // Sets big enough that writing the set, the trust state and the index takes a while, so
    // that the kills land inside each step.
    const FILLER: usize = 200_000;
    let service = Service::new(1, 1, "");
    service.publish(1, FILLER, 1);
    let run = service.start();
    run.wait_serving(1, Duration::from_secs(60));
    // How long one update takes, SIGHUP to serving: the kills are spread over 1.5 times it.
    service.publish(2, FILLER, 1);
    let t = Instant::now();
    run.hup();
    run.wait_serving(2, Duration::from_secs(60));
    let update = t.elapsed();
    run.kill9();

    let mut rng_state = 0x9e37_79b9_7f4a_7c15_u64;
    let mut next_random = move || {
        // xorshift64*: a fixed sequence, so that a failing run can be repeated.
        rng_state ^= rng_state >> 12;
        rng_state ^= rng_state << 25;
        rng_state ^= rng_state >> 27;
        rng_state.wrapping_mul(0x2545_f491_4f6c_dd1d)
    };
    let mut accepted_before = 0;
    let mut published = 2;
    let rounds = crash_rounds();
    let (mut killed_mid_update, mut completed) = (0, 0);
    for round in 0..rounds {
        // What the killed process had accepted and persisted: the trust state never goes
        // backwards, and the restart restores exactly that version from the state dir.
        let accepted = service.accepted().expect("a trust state");
        assert!(
            accepted >= accepted_before,
            "round {round}: trust state went back from {accepted_before} to {accepted}"
        );
        accepted_before = accepted;
        let mut run = service.start();
        let restored = format!("version={accepted}");
        assert!(
            run.log()
                .iter()
                .any(|l| l.contains("restored from the state dir") && l.contains(&restored)),
            "round {round}: version {accepted} not restored: {:?}",
            run.log()
        );
        // Then the update the kill interrupted (if it did) is applied from the source, and
        // nothing half-written is left behind.
        run.wait_serving(published, Duration::from_secs(60));
        assert!(
            run.matches_marker(published),
            "round {round}: version {published}"
        );
        assert_eq!(
            service.temporaries_after(Duration::from_secs(30)),
            Vec::<PathBuf>::new(),
            "round {round}"
        );
        // The next update (a full set), and a kill somewhere in it.
        published += 1;
        service.publish(published, FILLER, 1);
        let delay = update.mul_f64(1.5 * (next_random() % 1000) as f64 / 1000.0);
        run.hup();
        std::thread::sleep(delay);
        run.kill9();
        if service.accepted() == Some(published) {
            completed += 1;
        } else {
            killed_mid_update += 1;
        }
    }
    // The last word: restarted, it serves the newest version it accepted, and the oldest
    // file of all, offered again alone, is refused as a rollback.
    let mut run = service.start();
    // (After the update the last kill interrupted, if it did, is applied.)
    run.wait_serving(published, Duration::from_secs(60));
    let accepted = service.accepted().unwrap();
    assert_eq!(accepted, published);
    for e in std::fs::read_dir(service.path("published"))
        .unwrap()
        .flatten()
    {
        let name = e.file_name().to_string_lossy().into_owned();
        if !name.starts_with("alpha-1.hset") {
            std::fs::remove_file(e.path()).unwrap();
        }
    }
    run.hup();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let reason = run.lists()["last_refusal"]["reason"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        if reason.contains("rollback refused") {
            break;
        }
        assert!(Instant::now() < deadline, "no rollback refusal: {reason}");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(run.serving(), Some(accepted));
    let _ = run.log();
    eprintln!(
        "crash loop: {rounds} kills ({killed_mid_update} before the trust state took the update, {completed} after), one update {update:?}; served version {accepted} of {published} published"
    );
    run.stop();
}

/// Mounts a `size` tmpfs at `dir` (root only); `None`, saying so, where that is not allowed.
fn tmpfs(dir: &Path, size: &str) -> Option<Mount> {
    std::fs::create_dir_all(dir).unwrap();
    let ok = Command::new("mount")
        .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
        .arg(dir)
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        assert!(
            std::env::var_os("HASHSIEVE_REQUIRE_TMPFS").is_none(),
            "HASHSIEVE_REQUIRE_TMPFS is set but a tmpfs cannot be mounted here"
        );
        eprintln!(
            "SKIPPED: cannot mount a tmpfs (needs root); CI runs this test as root with HASHSIEVE_REQUIRE_TMPFS=1"
        );
        return None;
    }
    Some(Mount(dir.to_owned()))
}

struct Mount(PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn a_full_disk_refuses_the_update_and_the_old_version_keeps_serving() {
    let service = Service::new(1, 1, "");
    // A state dir with room for a small set and its index, not for a large one.
    let Some(_mount) = tmpfs(&service.path("state"), "2m") else {
        return;
    };
    service.publish(1, 100, 1);
    let run = service.start();
    run.wait_serving(1, Duration::from_secs(20));
    service.publish(2, 60_000, 1); // ~2.3 MB of set alone
    run.hup();
    let deadline = Instant::now() + Duration::from_secs(20);
    let reason = loop {
        let reason = run.lists()["last_refusal"]["reason"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        if !reason.is_empty() {
            break reason;
        }
        assert!(Instant::now() < deadline, "the update was not refused");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(reason.contains("No space left on device"), "{reason}");
    assert!(reason.contains("state/sets/alpha-2.hset"), "{reason}");
    assert_eq!(run.serving(), Some(1));
    assert!(run.matches_marker(1) && !run.matches_marker(2));
    assert_eq!(service.temporaries(), Vec::<PathBuf>::new());
    assert_eq!(service.accepted(), Some(1));
    assert!(!service.path("state/sets/alpha-2.hset").exists());
    // A restart on the full disk serves version 1 still; the next version that fits applies.
    run.stop();
    let run = service.start();
    run.wait_serving(1, Duration::from_secs(20));
    service.publish(3, 100, 1);
    run.hup();
    run.wait_serving(3, Duration::from_secs(20));
    assert_eq!(service.accepted(), Some(3));
    assert!(
        !service.path("state/sets/alpha-1.hset").exists(),
        "replaced set deleted"
    );
    run.stop();
}

/// Sends the head of an NDJSON stream as `key` and the first line, and leaves the body open:
/// the request holds one of the partner's concurrent slots until the stream is closed.
fn open_stream(base: &str, key: &str) -> std::net::TcpStream {
    use std::io::{Read as _, Write as _};
    let addr = base.trim_start_matches("http://");
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(
        s,
        "POST /v1/match/ndjson HTTP/1.1\r\nhost: {addr}\r\nauthorization: Bearer {key}\r\ncontent-type: application/x-ndjson\r\ntransfer-encoding: chunked\r\n\r\n"
    )
    .unwrap();
    let line = format!("md5:{}\n", marker(1));
    write!(s, "{:x}\r\n{line}\r\n", line.len()).unwrap();
    // The answer's head comes back while the body is still open.
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&got).contains("\r\n\r\n") {
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "stream closed: {}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
    }
    assert!(String::from_utf8_lossy(&got).starts_with("HTTP/1.1 200"));
    s
}

#[test]
fn a_partner_at_its_concurrency_limit_is_refused_and_the_others_are_answered() {
    let service = Service::with_source(1, 1, "dir:published", "", "", "max_concurrent = 2");
    service.publish(1, 10, 1);
    let run = service.start();
    run.wait_serving(1, Duration::from_secs(20));
    let get = |key: &str| {
        run.client
            .get(format!("{}/v1/match/md5/{}", run.base, marker(1)))
            .bearer_auth(key)
            .send()
            .unwrap()
    };
    // Two long streams take both of the partner's slots.
    let first = open_stream(&run.base, PARTNER);
    let _second = open_stream(&run.base, PARTNER);
    let r = get(PARTNER);
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(r.headers()["retry-after"], "1");
    let body: Value = r.json().unwrap();
    assert!(
        body["type"]
            .as_str()
            .unwrap()
            .ends_with("too-many-concurrent"),
        "{body}"
    );
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("already has 2 requests in progress"),
        "{body}"
    );
    // Another partner is not affected.
    for _ in 0..20 {
        assert_eq!(get(OTHER).status(), StatusCode::OK);
    }
    // A stream that ends gives its slot back.
    drop(first);
    let deadline = Instant::now() + Duration::from_secs(10);
    while get(PARTNER).status() != StatusCode::OK {
        assert!(Instant::now() < deadline, "the slot was not given back");
        std::thread::sleep(Duration::from_millis(20));
    }
    run.stop();
}

#[test]
fn slow_and_idle_connections_are_closed_after_the_header_timeout() {
    use std::io::{Read as _, Write as _};
    let service = Service::with_source(1, 1, "dir:published", "header_timeout_ms = 300", "", "");
    service.publish(1, 10, 1);
    let run = service.start();
    run.wait_serving(1, Duration::from_secs(20));
    let addr = run.base.trim_start_matches("http://").to_owned();
    // Closed: a read returns 0 (or the connection is reset) within `within`.
    let closed_within = |s: &mut std::net::TcpStream, within: Duration| -> bool {
        s.set_read_timeout(Some(within)).unwrap();
        let mut buf = [0u8; 4096];
        loop {
            match s.read(&mut buf) {
                Ok(0) => return true,
                Ok(_) => continue, // an answer (a 408, say) before the close
                Err(e)
                    if e.kind() == std::io::ErrorKind::WouldBlock
                        || e.kind() == std::io::ErrorKind::TimedOut =>
                {
                    return false;
                }
                Err(_) => return true,
            }
        }
    };
    // Slowloris: a request head that never ends.
    let mut slow = std::net::TcpStream::connect(&addr).unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\nx-slow: 1\r\n")
        .unwrap();
    assert!(
        closed_within(&mut slow, Duration::from_secs(5)),
        "slow head not closed"
    );
    // A connection that says nothing at all.
    let mut silent = std::net::TcpStream::connect(&addr).unwrap();
    assert!(
        closed_within(&mut silent, Duration::from_secs(5)),
        "silent connection not closed"
    );
    // An idle keep-alive connection after a complete exchange.
    let mut idle = std::net::TcpStream::connect(&addr).unwrap();
    idle.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
        .unwrap();
    let mut buf = [0u8; 1024];
    idle.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let n = idle.read(&mut buf).unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    assert!(
        closed_within(&mut idle, Duration::from_secs(5)),
        "idle connection not closed"
    );
    // And a client that sends its request at once is answered as always.
    assert_eq!(
        run.client
            .get(format!("{}/healthz", run.base))
            .send()
            .unwrap()
            .status(),
        StatusCode::OK
    );
    run.stop();
}

/// A partner's greedy walk towards a listed PDQ hash, one bit flip per query, using the
/// exact distances the service discloses for matches: from 31 bits away it recovers the
/// listed hash in one pass over the 256 bits, unless stopped. Returns the distance it got to
/// and whether it was stopped (403 `probing-suspected`).
fn hill_climb(run: &Running, key: &str, listed: [u8; 32], start: [u8; 32]) -> (u32, bool) {
    let distance = |h: &[u8; 32]| -> (reqwest::StatusCode, Option<u32>) {
        let hex: String = h.iter().map(|b| format!("{b:02x}")).collect();
        let r = run
            .client
            .get(format!("{}/v1/match/pdq/{hex}", run.base))
            .bearer_auth(key)
            .send()
            .unwrap();
        let status = r.status();
        let body: Value = r.json().unwrap();
        (
            status,
            body["matches"][0]["distance"].as_u64().map(|d| d as u32),
        )
    };
    let true_distance = |h: &[u8; 32]| -> u32 {
        h.iter()
            .zip(&listed)
            .map(|(a, b)| (a ^ b).count_ones())
            .sum()
    };
    let mut current = start;
    let (_, d) = distance(&current);
    let mut best = d.expect("the walk starts within the threshold");
    for bit in 0..256 {
        let mut next = current;
        next[bit / 8] ^= 1 << (bit % 8);
        match distance(&next) {
            (StatusCode::FORBIDDEN, _) => return (true_distance(&current), true),
            (_, Some(d)) if d < best => {
                current = next;
                best = d;
            }
            _ => {}
        }
    }
    (true_distance(&current), false)
}

#[test]
fn a_partner_walking_a_pdq_list_is_stopped_before_it_recovers_the_entry() {
    use rand::{RngExt as _, SeedableRng as _};
    let service = Service::with_source(
        1,
        1,
        "dir:published",
        "near_miss_sample = 1",
        "",
        "distance = \"exact\"\nprobing = \"refuse\"\nprobing_limit = 20",
    );
    let mut rng = rand::rngs::SmallRng::seed_from_u64(14);
    let listed: [u8; 32] = rng.random();
    let mut t = EntryTable::new();
    t.push(
        HashValue::from_bytes(HashKind::Pdq, &listed).unwrap(),
        "synthetic",
        "target",
    )
    .unwrap();
    t.push(
        HashValue::parse(HashKind::Md5, &marker(1)).unwrap(),
        "marker",
        "v1",
    )
    .unwrap();
    let now = hashsieve::clock::now_unix();
    let header = Header {
        name: "alpha".into(),
        version: 1,
        created: now - 60,
        expires: now + 86_400,
        description: "synthetic".into(),
        thresholds: vec![],
        severity: Vec::new(),
        video_share: Default::default(),
    };
    let bytes = t.to_set_bytes(&header).unwrap().0;
    publish(
        &service.path("published"),
        "alpha-1.hset",
        &bytes,
        &[&service.keys[0]],
    );
    let run = service.start();
    run.wait_serving(1, Duration::from_secs(20));
    // 31 bits away: a match at the threshold.
    let mut start = listed;
    let mut flipped = std::collections::BTreeSet::new();
    while flipped.len() < 31 {
        flipped.insert(rng.random_range(0..256usize));
    }
    for bit in &flipped {
        start[bit / 8] ^= 1 << (bit % 8);
    }
    // A partner whose action is only an alert: the walk recovers the listed hash exactly,
    // and the operator is told.
    let (got, stopped) = hill_climb(&run, OTHER, listed, start);
    assert_eq!(
        (got, stopped),
        (0, false),
        "the walk works when nothing stops it"
    );
    let metrics = run
        .client
        .get(format!("{}/metrics", run.base))
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(
        metrics.contains("hashsieve_probing_flags_total{partner=\"other\"} 1"),
        "{metrics}"
    );
    // A partner whose action is to refuse: stopped far from the entry.
    let (got, stopped) = hill_climb(&run, PARTNER, listed, start);
    assert!(stopped, "the walker was not stopped");
    assert!(got >= 20, "stopped only {got} bits from the listed hash");
    // Its exact-hash queries are still answered.
    assert!(run.matches_marker(1));
    run.stop();
}

#[test]
fn a_flood_of_matches_on_one_entry_quarantines_it_until_an_admin_releases_it() {
    let service = Service::with_source(1, 1, "dir:published", "", "quarantine_min = 30", "");
    service.publish(1, 10, 1);
    let run = service.start();
    run.wait_serving(1, Duration::from_secs(20));
    let verdict = |key: &str, kind: &str, hash: &str| -> String {
        let r = run
            .client
            .get(format!("{}/v1/match/{kind}/{hash}", run.base))
            .bearer_auth(key)
            .send()
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        r.json::<Value>().unwrap()["verdict"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    // A synthetic burst on the marker entry, from both partners.
    let matched = (0..50)
        .filter(|i| verdict([PARTNER, OTHER][i % 2], "md5", &marker(1)) == "match")
        .count();
    assert!(
        (30..=32).contains(&matched),
        "{matched} of 50 matched; the entry should be quarantined after about 30"
    );
    // Other entries keep matching.
    let filler: String = Sha256::digest(0u64.to_le_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(verdict(PARTNER, "sha256", &filler), "match");
    // The operator sees it: /v1/lists (admins only), the metric.
    let lists = |key: &str| -> Value {
        run.client
            .get(format!("{}/v1/lists", run.base))
            .bearer_auth(key)
            .send()
            .unwrap()
            .json::<Value>()
            .unwrap()["lists"][0]
            .clone()
    };
    let shown = lists(OPS)["quarantined"].clone();
    assert_eq!(shown[0]["ref"], "v1", "{shown}");
    assert!(shown[0]["withheld"].as_u64().unwrap() >= 18, "{shown}");
    assert!(lists(PARTNER).get("quarantined").is_none());
    let metrics = run
        .client
        .get(format!("{}/metrics", run.base))
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(
        metrics.contains("hashsieve_quarantined_total{list=\"alpha\"} 1"),
        "{metrics}"
    );
    // An admin releases it: matched again (and not quarantined again while this runs).
    let release = |reference: &str| {
        run.client
            .post(format!("{}/v1/admin/quarantine/alpha/release", run.base))
            .bearer_auth(OPS)
            .json(&serde_json::json!({ "ref": reference }))
            .send()
            .unwrap()
    };
    assert_eq!(release("v1").status(), StatusCode::OK);
    assert_eq!(release("v1").status(), StatusCode::NOT_FOUND);
    assert!((0..40).all(|_| verdict(PARTNER, "md5", &marker(1)) == "match"));
    assert_eq!(lists(OPS)["quarantined"], serde_json::json!([]));
    run.stop();
}

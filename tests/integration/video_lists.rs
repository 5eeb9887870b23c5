//! Video lists end to end: built from `hashsieve hash` records and Meta's vPDQ hash files,
//! signed, updated by a delta, served, and matched through `POST /v1/match/video`, offline
//! `hashsieve match`, and (with the video feature) `hashsieve match --server` on a real
//! video; still images against listed frames and frames against listed images; the video
//! endpoint's problems. The videos of the round trip are synthetic frame hashes: no video
//! decoding is needed, so this runs on every build.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use reqwest::blocking::Client;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::server::{ServeChild, spawn_serve_with};
use crate::util::{hashsieve, ndjson, repo, stderr};

const PARTNER: &str = "video-partner-key";

fn sha256_hex(s: &str) -> String {
    hex(&Sha256::digest(s.as_bytes()))
}

fn hex(h: &[u8]) -> String {
    h.iter().map(|b| format!("{b:02x}")).collect()
}

fn ok(command: &mut Command) -> std::process::Output {
    let out = command.output().unwrap();
    assert!(out.status.success(), "{command:?}: {}", stderr(&out));
    out
}

/// A pseudo-random 256-bit frame hash per seed (splitmix64): unrelated seeds are ~128 bits
/// apart, far beyond the threshold.
fn frame(seed: u64) -> [u8; 32] {
    let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ 0xd1b5_4a32_d192_ed03;
    let mut out = [0u8; 32];
    for chunk in out.chunks_mut(8) {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        chunk.copy_from_slice(&(z ^ (z >> 31)).to_le_bytes());
    }
    out
}

/// `h` with `bits` of its bits flipped (spread over the hash), as a re-encode moves a frame.
fn noisy(mut h: [u8; 32], bits: usize) -> [u8; 32] {
    for i in 0..bits {
        h[(i * 7) % 32] ^= 1 << (i % 8);
    }
    h
}

/// The frames of a synthetic video: `len` frames from seed `base` on, at `quality`.
fn video(base: u64, len: u64, quality: u8) -> Vec<([u8; 32], u8)> {
    (0..len).map(|i| (frame(base + i), quality)).collect()
}

/// A `"vpdq"` array as `hashsieve hash` writes it (one frame a second at 30 fps).
fn vpdq_json(frames: &[([u8; 32], u8)]) -> Value {
    Value::Array(
        frames
            .iter()
            .enumerate()
            .map(|(i, (pdq, quality))| {
                json!({"frame": i * 30, "timestamp": i as f64, "pdq": hex(pdq), "quality": quality})
            })
            .collect(),
    )
}

/// Video A: 40 good frames and 3 under quality 50 (they do not count).
fn clip_a() -> Vec<([u8; 32], u8)> {
    let mut frames = video(1_000, 40, 90);
    frames.extend(video(1_100, 3, 30));
    frames
}

fn clip_b() -> Vec<([u8; 32], u8)> {
    video(2_000, 25, 80)
}

fn clip_c() -> Vec<([u8; 32], u8)> {
    video(3_000, 20, 100)
}

fn clip_d() -> Vec<([u8; 32], u8)> {
    video(4_000, 30, 70)
}

/// The sha256 that stands for video B's reference (its record names none).
const B_SHA256: &str = "bb00000000000000000000000000000000000000000000000000000000000000";

struct Env {
    dir: tempfile::TempDir,
}

impl Env {
    fn new() -> Env {
        let dir = tempfile::tempdir().unwrap();
        ok(hashsieve().current_dir(dir.path()).args([
            "keygen",
            "--secret-key",
            "k.key",
            "--public-key",
            "k.pub",
            "--unencrypted",
        ]));
        let env = Env { dir };
        let key = std::fs::read_to_string(env.path("k.pub")).unwrap();
        let key = key.lines().nth(1).unwrap().trim().to_owned();
        env.write(
            "hashsieve.toml",
            &format!(
                r#"
listen = "127.0.0.1:0"
state_dir = "state"
audit_log = "audit.jsonl"

[limits]
shutdown_grace_ms = 0
max_video_frames = 200

[[lists]]
name = "vids"
source = "dir:published/vids"
public_keys = ["{key}"]
poll_seconds = 1

[[partners]]
name = "platform"
key_sha256 = "{partner}"
lists = ["vids"]
"#,
                partner = sha256_hex(PARTNER),
            ),
        );
        env
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn write(&self, rel: &str, text: &str) {
        std::fs::write(self.path(rel), text).unwrap();
    }

    fn hs(&self, args: &[&str]) -> std::process::Output {
        ok(hashsieve().current_dir(self.path("")).args(args))
    }

    fn sign(&self, file: &str) {
        self.hs(&["hashset", "sign", "--secret-key", "k.key", file]);
    }

    /// Copies a signed file into the published dir (signature first).
    fn publish(&self, file: &str) {
        let to = self.path("published/vids");
        std::fs::create_dir_all(&to).unwrap();
        for name in [format!("{file}.minisig"), file.to_owned()] {
            std::fs::copy(self.path(&name), to.join(&name)).unwrap();
        }
    }

    fn serve(&self) -> (ServeChild, String) {
        let mut command = Command::new(env!("CARGO_BIN_EXE_hashsieve"));
        command.env("RUST_LOG", "warn,hashsieve=info");
        let (child, _log, _lines, addr) = spawn_serve_with(
            command,
            self.dir.path(),
            &["serve", "--config", "hashsieve.toml"],
            "http",
        );
        let base = format!("http://{addr}");
        wait_for_version(&base, 1);
        (child, base)
    }
}

fn wait_for_version(base: &str, version: u64) {
    let client = Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(r) = client.get(format!("{base}/readyz")).send()
            && let Ok(body) = r.json::<Value>()
            && body["lists"]["vids"] == json!(version)
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "not serving vids version {version}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn post(base: &str, path: &str, body: &Value) -> (u16, Value) {
    let r = Client::new()
        .post(format!("{base}{path}"))
        .bearer_auth(PARTNER)
        .json(body)
        .send()
        .unwrap();
    (r.status().as_u16(), r.json().unwrap())
}

/// `POST /v1/match/video` with these frames.
fn match_video(base: &str, frames: &[([u8; 32], u8)]) -> Value {
    let frames: Vec<Value> = frames
        .iter()
        .map(|(h, q)| json!({"hash": hex(h), "quality": q}))
        .collect();
    let (status, body) = post(base, "/v1/match/video", &json!({ "frames": frames }));
    assert_eq!(status, 200, "{body}");
    body
}

/// `(ref, query_percent, compared_percent, frames)` of each video match.
fn videos(answer: &Value) -> Vec<(String, f64, f64, u64)> {
    answer["matches"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            assert_eq!(m["kind"], "vpdq", "{m}");
            (
                m["ref"].as_str().unwrap().to_owned(),
                m["query_percent"].as_f64().unwrap(),
                m["compared_percent"].as_f64().unwrap(),
                m["frames"].as_u64().unwrap(),
            )
        })
        .collect()
}

/// `(frame, ref)` of each image a frame matched.
fn images(answer: &Value) -> Vec<(u64, String)> {
    answer["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["frame"].as_u64().unwrap(),
                m["ref"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// The inputs of version 1: video A and B as `hashsieve hash` records (A with a reference,
/// B with only its sha256), C as a Meta hash file, and a still image near a frame of B.
fn write_inputs(env: &Env) {
    let records = [
        json!({"path": "a.mp4", "bytes": 10, "sha256": sha256_hex("a"), "vpdq": vpdq_json(&clip_a()),
               "category": "A", "ref": "clip-a"}),
        json!({"path": "b.mp4", "bytes": 10, "sha256": B_SHA256, "vpdq": vpdq_json(&clip_b()),
               "category": "B"}),
    ];
    let text: String = records.iter().map(|r| format!("{r}\n")).collect();
    env.write("videos.ndjson", &text);
    let meta: String = clip_c()
        .iter()
        .enumerate()
        .map(|(i, (h, q))| format!("{},{q},{},{:.3}\n", i * 30, hex(h), i as f64))
        .collect();
    env.write("clip-c.txt", &meta);
    env.write(
        "stills.csv",
        &format!(
            "kind,hash,category,ref\npdq,{},B,still-1\n",
            hex(&noisy(clip_b()[5].0, 3))
        ),
    );
}

#[test]
fn video_lists_round_trip_build_sign_delta_serve_and_match() {
    let env = Env::new();
    write_inputs(&env);
    env.hs(&[
        "hashset",
        "build",
        "--name",
        "vids",
        "--version",
        "1",
        "--video-query-percent",
        "70",
        "-o",
        "vids-1.hset",
        "videos.ndjson",
        "stills.csv",
        "clip-c.txt",
    ]);
    let inspect = env.hs(&["hashset", "inspect", "--json", "vids-1.hset"]);
    let doc: Value = serde_json::from_slice(&inspect.stdout).unwrap();
    assert_eq!(doc["videos"], 3, "{doc}");
    assert_eq!(doc["format_version"], 3, "{doc}");
    assert_eq!(doc["video_share"]["query_percent"], 70.0, "{doc}");
    // 43 + 25 + 20 frames (A's low-quality ones are listed too) and the still.
    assert_eq!(doc["counts"]["vpdq"], 88, "{doc}");
    assert_eq!(doc["counts"]["pdq"], 1, "{doc}");
    env.sign("vids-1.hset");
    env.publish("vids-1.hset");
    let (_server, base) = env.serve();

    // Most of A, each frame moved by a re-encode: every query frame matches, and 32 of A's
    // 40 frames that count are matched.
    let query: Vec<([u8; 32], u8)> = clip_a()[4..36]
        .iter()
        .map(|&(h, q)| (noisy(h, 6), q))
        .collect();
    let answer = match_video(&base, &query);
    assert_eq!(answer["verdict"], "match", "{answer}");
    assert_eq!(videos(&answer), [("clip-a".into(), 100.0, 80.0, 32)]);
    assert_eq!(answer["frames"], 32);
    assert_eq!(answer["matches"][0]["category"], "A");
    assert_eq!(answer["matches"][0]["version"], 1);
    assert_eq!(answer["lists"], json!({"vids": 1}));
    // Half of A and half unrelated: 50% of the query is under the list's 70%.
    let mut half: Vec<([u8; 32], u8)> = clip_a()[..20].to_vec();
    half.extend(video(9_000, 20, 90));
    let answer = match_video(&base, &half);
    assert_eq!(answer["verdict"], "no_match", "{answer}");
    // All of B: the video, and the still image listed near its frame 5.
    let answer = match_video(&base, &clip_b());
    assert_eq!(videos(&answer), [(B_SHA256.into(), 100.0, 100.0, 25)]);
    assert_eq!(images(&answer), [(5, "still-1".into())]);
    // Only frames under quality 50: nothing can be said.
    let answer = match_video(&base, &video(1_000, 10, 40));
    assert_eq!(answer["verdict"], "low_quality", "{answer}");
    assert_eq!(answer["frames"], 0);
    // C, listed from Meta's text format under its file's name.
    let answer = match_video(&base, &clip_c()[2..18]);
    assert_eq!(videos(&answer)[0].0, "clip-c");
    // A still image near a frame of A matches the video, as kind vpdq.
    let r = Client::new()
        .get(format!(
            "{base}/v1/match/pdq/{}?quality=90",
            hex(&noisy(clip_a()[7].0, 4))
        ))
        .bearer_auth(PARTNER)
        .send()
        .unwrap();
    let single: Value = r.json().unwrap();
    assert_eq!(single["verdict"], "match", "{single}");
    assert_eq!(single["matches"][0]["kind"], "vpdq");
    assert_eq!(single["matches"][0]["ref"], "clip-a");
    assert_eq!(single["matches"][0]["distance"], 4);
    // The lists endpoint shows the videos and the rule.
    let lists: Value = Client::new()
        .get(format!("{base}/v1/lists"))
        .bearer_auth(PARTNER)
        .send()
        .unwrap()
        .json()
        .unwrap();
    let vids = &lists["lists"][0];
    assert_eq!(vids["videos"], 3, "{vids}");
    assert_eq!(
        vids["video"],
        json!({"query_percent": 70.0, "compared_percent": 0.0})
    );
    // The audit log holds the matches (kind vpdq), never the query that did not match.
    let audit = std::fs::read_to_string(env.path("audit.jsonl")).unwrap();
    assert!(audit.contains("\"ref\":\"clip-a\""), "{audit}");
    assert!(audit.contains("\"kind\":\"vpdq\""), "{audit}");
    for (h, _) in &half[20..] {
        assert!(!audit.contains(&hex(h)));
    }

    // Version 2 by a delta: C withdrawn, D added, and a stricter rule (half of the listed
    // video's frames too).
    let records = [
        json!({"path": "a.mp4", "vpdq": vpdq_json(&clip_a()), "category": "A", "ref": "clip-a"}),
        json!({"path": "b.mp4", "sha256": B_SHA256, "vpdq": vpdq_json(&clip_b()), "category": "B"}),
        json!({"path": "d.mp4", "vpdq": vpdq_json(&clip_d()), "category": "A", "ref": "clip-d"}),
    ];
    let text: String = records.iter().map(|r| format!("{r}\n")).collect();
    env.write("videos-2.ndjson", &text);
    env.hs(&[
        "hashset",
        "build",
        "--name",
        "vids",
        "--version",
        "2",
        "--video-query-percent",
        "70",
        "--video-compared-percent",
        "50",
        "-o",
        "vids-2.hset",
        "videos-2.ndjson",
        "stills.csv",
    ]);
    env.hs(&[
        "hashset",
        "diff",
        "vids-1.hset",
        "vids-2.hset",
        "-o",
        "vids-2.hdelta",
    ]);
    env.sign("vids-2.hdelta");
    env.publish("vids-2.hdelta");
    wait_for_version(&base, 2);
    let answer = match_video(&base, &clip_c());
    assert_eq!(answer["verdict"], "no_match", "{answer}");
    let answer = match_video(&base, &clip_d()[..20]);
    assert_eq!(videos(&answer)[0].0, "clip-d");
    assert_eq!(answer["matches"][0]["version"], 2);
    // 16 of A's 40 frames: all of the query, but under half of the video.
    let answer = match_video(&base, &clip_a()[..16]);
    assert_eq!(answer["verdict"], "no_match", "{answer}");
    let answer = match_video(&base, &clip_a()[..20]);
    assert_eq!(videos(&answer), [("clip-a".into(), 100.0, 50.0, 20)]);

    // Offline, against the set the delta made: one verdict line per video record.
    env.hs(&[
        "hashset",
        "apply",
        "vids-1.hset",
        "vids-2.hdelta",
        "-o",
        "applied-2.hset",
    ]);
    assert_eq!(
        std::fs::read(env.path("applied-2.hset")).unwrap(),
        std::fs::read(env.path("vids-2.hset")).unwrap()
    );
    env.sign("applied-2.hset");
    let queries = [
        json!({"path": "q.mp4", "md5": "00".repeat(16), "vpdq": vpdq_json(&clip_d()[5..25])}),
        json!({"path": "u.mp4", "vpdq": vpdq_json(&video(7_000, 10, 90))}),
    ];
    let text: String = queries.iter().map(|r| format!("{r}\n")).collect();
    env.write("queries.ndjson", &text);
    let out = hashsieve()
        .current_dir(env.path(""))
        .args([
            "match",
            "--hashset",
            "applied-2.hset",
            "--public-key",
            "k.pub",
            "queries.ndjson",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let lines = ndjson(&out.stdout);
    assert_eq!(lines.len(), 3, "{lines:?}");
    assert_eq!(lines[0]["query"]["kind"], "md5");
    assert_eq!(lines[1]["query"], json!({"kind": "vpdq", "frames": 20}));
    assert_eq!(videos(&lines[1]), [("clip-d".into(), 100.0, 66.67, 20)]);
    assert_eq!(lines[2]["verdict"], "no_match");
}

#[test]
fn the_video_endpoint_refuses_bad_requests_precisely() {
    let env = Env::new();
    write_inputs(&env);
    env.hs(&[
        "hashset",
        "build",
        "--name",
        "vids",
        "--version",
        "1",
        "-o",
        "vids-1.hset",
        "videos.ndjson",
    ]);
    env.sign("vids-1.hset");
    env.publish("vids-1.hset");
    let (_server, base) = env.serve();
    let good = hex(&frame(1));
    let problem = |body: Value, status: u16, kind: &str, detail: &str| {
        let (got, answer) = post(&base, "/v1/match/video", &body);
        assert_eq!(got, status, "{body}: {answer}");
        assert_eq!(
            answer["type"],
            format!("urn:hashsieve:problem:{kind}"),
            "{answer}"
        );
        let said = answer["detail"].as_str().unwrap();
        assert!(said.contains(detail), "{said:?} lacks {detail:?}");
    };
    problem(
        json!({"frames": []}),
        422,
        "invalid-query",
        "at least one frame",
    );
    problem(
        json!({"frames": [{"hash": good, "quality": 90}, {"hash": "abc", "quality": 90}]}),
        422,
        "invalid-query",
        "frames[1].hash",
    );
    problem(
        json!({"frames": [{"hash": good, "quality": 101}]}),
        422,
        "invalid-query",
        "frames[0].quality",
    );
    problem(
        json!({"frames": [{"hash": good}]}),
        400,
        "invalid-json",
        "quality",
    );
    problem(
        json!({"frames": [{"hash": good, "quality": 90, "colour": 1}]}),
        400,
        "invalid-json",
        "colour",
    );
    let long: Vec<Value> = (0..201)
        .map(|i| json!({"hash": hex(&frame(i)), "quality": 90}))
        .collect();
    problem(
        json!({"frames": long}),
        413,
        "video-too-long",
        "at most 200",
    );
    problem(
        json!({"frames": [{"hash": good, "quality": 90}], "lists": ["other"]}),
        403,
        "list-not-entitled",
        "other",
    );
    // A vpdq frame is not a query of /v1/match: the problem says where videos go.
    problem_at(
        &base,
        "/v1/match",
        json!({"queries": [{"kind": "vpdq", "hash": good}]}),
        "/v1/match/video",
    );
    // A hash record's frame fields are not a frame's: the problem names the field.
    problem(
        json!({"frames": vpdq_json(&clip_a())}),
        400,
        "invalid-json",
        "unknown field `frame`",
    );
}

fn problem_at(base: &str, path: &str, body: Value, detail: &str) {
    let (status, answer) = post(base, path, &body);
    assert_eq!(status, 422, "{answer}");
    let said = answer["detail"].as_str().unwrap();
    assert!(said.contains(detail), "{said:?} lacks {detail:?}");
}

/// Meta's published hashes of its sample videos as a list (every frame), matched by the
/// frames of other videos' hash files taken one a second: a grey copy of the listed chair
/// video matches it, the test pattern does not. And with the video feature, `hashsieve
/// match --server` hashes the listed video itself and finds it.
#[test]
fn metas_hash_files_make_a_list_that_their_variants_match() {
    let hashes = repo().join("../shared/video/meta-hashes");
    if !hashes.exists() {
        eprintln!("SKIPPED: ../shared/video is missing");
        return;
    }
    let env = Env::new();
    let listed = hashes.join("chair-orig-22-sd-bar.txt");
    env.hs(&[
        "hashset",
        "build",
        "--name",
        "vids",
        "--version",
        "1",
        "-o",
        "vids-1.hset",
        listed.to_str().unwrap(),
    ]);
    env.sign("vids-1.hset");
    env.publish("vids-1.hset");
    let (_server, base) = env.serve();
    let one_a_second = |name: &str| -> Vec<([u8; 32], u8)> {
        let text = std::fs::read_to_string(hashes.join(name)).unwrap();
        let mut next = 0.0;
        let mut frames = Vec::new();
        for line in text.lines() {
            let f: Vec<&str> = line.split(',').collect();
            let t: f64 = f[3].parse().unwrap();
            if t + 1e-6 >= next {
                next += 1.0;
                let mut h = [0u8; 32];
                for (i, b) in h.iter_mut().enumerate() {
                    *b = u8::from_str_radix(&f[2][2 * i..2 * i + 2], 16).unwrap();
                }
                frames.push((h, f[1].parse().unwrap()));
            }
        }
        frames
    };
    let grey = match_video(&base, &one_a_second("chair-22-sd-grey-bar.txt"));
    eprintln!("grey chair: {:?}", videos(&grey));
    assert_eq!(grey["verdict"], "match", "{grey}");
    assert_eq!(videos(&grey)[0].0, "chair-orig-22-sd-bar");
    let pattern = match_video(&base, &one_a_second("pattern-hd-no-bar.txt"));
    assert_eq!(pattern["verdict"], "no_match", "{pattern}");

    let video = repo().join("../shared/video/videos/chair-orig-22-sd-bar.mp4");
    if cfg!(not(feature = "video")) || !video.exists() {
        eprintln!("SKIPPED (match --server on a video file): needs the video feature");
        return;
    }
    let out = hashsieve()
        .env("HASHSIEVE_API_KEY", PARTNER)
        .args(["match", "--server", &base])
        .arg(&video)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let lines = ndjson(&out.stdout);
    let verdict = lines
        .iter()
        .find(|l| l["query"]["kind"] == "vpdq")
        .unwrap_or_else(|| panic!("no video verdict in {lines:?}"));
    assert_eq!(verdict["verdict"], "match", "{verdict}");
    assert_eq!(verdict["matches"][0]["ref"], "chair-orig-22-sd-bar");
    assert!(verdict["path"].as_str().unwrap().ends_with(".mp4"));
}

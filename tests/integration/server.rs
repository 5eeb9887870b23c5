//! The service on a real loopback port: every endpoint and error, auth and entitlements,
//! hostile bodies, admin uploads and `dir:` polling, a hot swap under concurrent requests,
//! restart from the state dir and rollback refused across a restart.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use hashsieve::config::Config;
use hashsieve::server::{self, AppState};
use reqwest::StatusCode;
use reqwest::blocking::{Client, Response};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::util::{repo, run, stderr};

const ISP: &str = "isp-one-key";
const PLATFORM: &str = "platform-two-key";
const SLOW: &str = "slow-partner-key";
const OPS: &str = "ops-admin-key";

fn sha256_hex(s: &str) -> String {
    hex(&Sha256::digest(s.as_bytes()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A temp dir with published copies of the example lists and a config naming them.
struct Env {
    dir: tempfile::TempDir,
}

impl Env {
    fn new() -> Env {
        let dir = tempfile::tempdir().unwrap();
        let ex = repo().join("hashsets-example");
        for list in ["alpha", "beta"] {
            let to = dir.path().join("published").join(list);
            std::fs::create_dir_all(&to).unwrap();
            for e in std::fs::read_dir(ex.join(list)).unwrap() {
                let e = e.unwrap();
                std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
            }
        }
        let key = std::fs::read_to_string(ex.join("example-only.pub")).unwrap();
        let key = key.lines().nth(1).unwrap().trim().to_owned();
        let config = format!(
            r#"
listen = "127.0.0.1:0"
state_dir = "state"
audit_log = "audit.jsonl"

[limits]
max_batch = 100
shutdown_grace_ms = 0
max_body_bytes = 65536
request_timeout_ms = 10000
near_miss_sample = 1

[[lists]]
name = "alpha"
source = "dir:published/alpha"
public_keys = ["{key}"]
poll_seconds = 1

[[lists]]
name = "beta"
source = "dir:published/beta"
public_keys = ["{key}"]
poll_seconds = 1

[[partners]]
name = "isp-one"
key_sha256 = "{isp}"
lists = ["alpha"]
rate_per_second = 1000000

[[partners]]
name = "platform-two"
key_sha256 = "{platform}"
lists = ["alpha", "beta"]
distance = "coarse"

[[partners]]
name = "slow"
key_sha256 = "{slow}"
lists = ["alpha"]
rate_per_second = 2

[[admins]]
name = "ops"
key_sha256 = "{ops}"
"#,
            isp = sha256_hex(ISP),
            platform = sha256_hex(PLATFORM),
            slow = sha256_hex(SLOW),
            ops = sha256_hex(OPS),
        );
        std::fs::write(dir.path().join("hashsieve.toml"), config).unwrap();
        Env { dir }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn start(&self) -> TestServer {
        let config = Config::load(&self.path("hashsieve.toml")).unwrap();
        TestServer::start(config)
    }
}

/// A server in this process on 127.0.0.1:0; stopped (drained) on drop.
struct TestServer {
    base: String,
    state: Arc<AppState>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
    client: Client,
}

impl TestServer {
    fn start(config: Config) -> TestServer {
        let state = AppState::start(config).unwrap();
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let serving = Arc::clone(&state);
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                addr_tx.send(listener.local_addr().unwrap()).unwrap();
                server::run(listener, serving, async {
                    let _ = stop_rx.await;
                })
                .await
                .unwrap();
            });
        });
        let addr = addr_rx.recv().unwrap();
        let server = TestServer {
            base: format!("http://{addr}"),
            state,
            shutdown: Some(stop_tx),
            thread: Some(thread),
            client: Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap(),
        };
        server.wait_ready();
        server
    }

    /// Ready, and every source looked at once (so each list serves its newest version, not
    /// one it passed through while applying the files in order).
    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            let polled = self
                .state
                .shared
                .first_poll_done
                .load(std::sync::atomic::Ordering::Acquire);
            if polled && self.get("/readyz", None).status() == StatusCode::OK {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("not ready: {}", self.get("/readyz", None).text().unwrap());
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn get(&self, path: &str, key: Option<&str>) -> Response {
        let mut r = self.client.get(self.url(path));
        if let Some(k) = key {
            r = r.bearer_auth(k);
        }
        r.send().unwrap()
    }

    fn post(
        &self,
        path: &str,
        key: Option<&str>,
        body: impl Into<reqwest::blocking::Body>,
    ) -> Response {
        let mut r = self
            .client
            .post(self.url(path))
            .header("content-type", "application/json")
            .body(body);
        if let Some(k) = key {
            r = r.bearer_auth(k);
        }
        r.send().unwrap()
    }

    fn match_json(&self, key: &str, body: &Value) -> (StatusCode, Value) {
        let r = self.post("/v1/match", Some(key), body.to_string());
        let status = r.status();
        (status, r.json().unwrap())
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(s) = self.shutdown.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.state.stop();
    }
}

/// `(kind, hash, ref)` rows of an example entries CSV.
fn entries(name: &str) -> Vec<(String, String, String)> {
    let text = std::fs::read_to_string(repo().join("hashsets-example/entries").join(name)).unwrap();
    text.lines()
        .skip(1)
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            (f[0].to_owned(), f[1].to_owned(), f[3].to_owned())
        })
        .collect()
}

fn entry(list_csv: &str, kind: &str) -> (String, String) {
    entries(list_csv)
        .into_iter()
        .find(|(k, _, _)| k == kind)
        .map(|(_, h, r)| (h, r))
        .unwrap()
}

/// Flips the lowest `bits` bits of a hex hash.
fn flip(hex_hash: &str, bits: u32) -> String {
    let mut bytes: Vec<u8> = (0..hex_hash.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex_hash[i..i + 2], 16).unwrap())
        .collect();
    let len = bytes.len();
    for b in 0..bits as usize {
        bytes[len - 1 - b / 8] ^= 1 << (b % 8);
    }
    hex(&bytes)
}

fn assert_problem(r: Response, status: StatusCode, kind: &str) -> Value {
    assert_eq!(r.status(), status, "expected {status} {kind}");
    assert_eq!(
        r.headers()["content-type"].to_str().unwrap(),
        "application/problem+json"
    );
    let body: Value = r.json().unwrap();
    assert_eq!(
        body["type"],
        format!("urn:hashsieve:problem:{kind}"),
        "{body}"
    );
    assert_eq!(body["status"], status.as_u16());
    assert!(body["title"].is_string() && body["detail"].is_string());
    body
}

#[test]
fn matching_endpoints_entitlements_and_distance_policies() {
    let env = Env::new();
    let server = env.start();
    let (md5, md5_ref) = entry("alpha-2.csv", "md5");
    let (pdq, pdq_ref) = entry("alpha-2.csv", "pdq");
    let (sha1_beta, beta_ref) = entry("beta-2.csv", "sha1");
    let near = flip(&pdq, 3);

    // Batch: exact hit, near PDQ hit with its distance, a miss; lists and versions served.
    let (status, body) = server.match_json(
        ISP,
        &json!({"queries": [
            {"kind": "md5", "hash": md5},
            {"kind": "pdq", "hash": near, "quality": 90},
            {"kind": "sha256", "hash": "0".repeat(64)},
        ]}),
    );
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body["lists"],
        json!({"alpha": 2}),
        "isp-one sees only alpha"
    );
    let r = &body["results"];
    assert_eq!(r[0]["verdict"], "match");
    assert_eq!(
        r[0]["matches"][0],
        json!({"list": "alpha", "version": 2, "kind": "md5", "category": "example-a", "ref": md5_ref, "distance": 0})
    );
    assert_eq!(r[1]["verdict"], "match");
    assert_eq!(r[1]["matches"][0]["ref"], pdq_ref.as_str());
    assert_eq!(r[1]["matches"][0]["distance"], 3);
    assert_eq!(r[2], json!({"verdict": "no_match", "matches": []}));

    // JSON escapes in a query's strings (a client's serializer may write them) stand for the
    // same characters: the kind and hash are parsed in place unless they hold one.
    let escaped = format!(
        r#"{{"queries":[{{"kind":"md\u0035","hash":"\u00{:02x}{}"}}]}}"#,
        md5.as_bytes()[0],
        &md5[1..]
    );
    let r = server.post("/v1/match", Some(ISP), escaped.into_bytes());
    assert_eq!(r.status(), StatusCode::OK);
    let body: Value = r.json().unwrap();
    assert_eq!(body["results"][0]["matches"][0]["ref"], md5_ref.as_str());

    // Low quality PDQ: verdict low_quality; alpha does not report low-quality matches.
    let (_, body) = server.match_json(
        ISP,
        &json!({"queries": [{"kind": "pdq", "hash": pdq, "quality": 20}]}),
    );
    assert_eq!(
        body["results"][0],
        json!({"verdict": "low_quality", "matches": []})
    );

    // A beta hash is invisible to isp-one, found for platform-two; coarse distances.
    let (_, body) = server.match_json(
        ISP,
        &json!({"queries": [{"kind": "sha1", "hash": sha1_beta}]}),
    );
    assert_eq!(body["results"][0]["verdict"], "no_match");
    let (_, body) = server.match_json(
        PLATFORM,
        &json!({"queries": [{"kind": "sha1", "hash": sha1_beta}, {"kind": "pdq", "hash": near}]}),
    );
    assert_eq!(body["results"][0]["matches"][0]["ref"], beta_ref.as_str());
    assert_eq!(
        body["results"][1]["matches"][0]["distance"], 8,
        "3 rounds up to 8"
    );
    assert_eq!(body["lists"], json!({"alpha": 2, "beta": 2}));

    // Asking for a list explicitly: narrowed, or 403 when not entitled (or not existing).
    let (_, body) = server.match_json(
        PLATFORM,
        &json!({"queries": [{"kind": "md5", "hash": md5}], "lists": ["beta"]}),
    );
    assert_eq!(body["results"][0]["verdict"], "no_match");
    assert_eq!(body["lists"], json!({"beta": 2}));
    for lists in [json!(["beta"]), json!(["nope"])] {
        let r = server.post(
            "/v1/match",
            Some(ISP),
            json!({"queries": [], "lists": lists}).to_string(),
        );
        assert_problem(r, StatusCode::FORBIDDEN, "list-not-entitled");
    }

    // Single GET: same verdict shape plus the query and the lists.
    let body: Value = server
        .get(&format!("/v1/match/pdq/{near}?quality=80"), Some(ISP))
        .json()
        .unwrap();
    assert_eq!(body["query"], json!({"kind": "pdq", "hash": near}));
    assert_eq!(body["verdict"], "match");
    assert_eq!(body["matches"][0]["distance"], 3);
    assert_eq!(body["lists"], json!({"alpha": 2}));
    let r = server.get("/v1/match/pdq/abc", Some(ISP));
    assert_problem(r, StatusCode::UNPROCESSABLE_ENTITY, "invalid-query");
    let r = server.get("/v1/match/md5/00?quality=5", Some(ISP));
    assert_problem(r, StatusCode::UNPROCESSABLE_ENTITY, "invalid-query");
    let r = server.get(&format!("/v1/match/pdq/{near}?quality=x"), Some(ISP));
    assert_problem(r, StatusCode::UNPROCESSABLE_ENTITY, "invalid-query");

    // /v1/lists: entitled lists only for partners, all for admins.
    let body: Value = server.get("/v1/lists", Some(ISP)).json().unwrap();
    let names: Vec<&str> = body["lists"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["alpha"]);
    let alpha = &body["lists"][0];
    assert_eq!(alpha["version"], 2);
    assert_eq!(alpha["counts"]["md5"], 3);
    assert_eq!(alpha["signing_key"], "F89A1D7B34C29720");
    assert_eq!(alpha["expires"], "2031-01-01T00:00:00Z");
    assert!(alpha["last_update"].is_string());
    let body: Value = server.get("/v1/lists", Some(OPS)).json().unwrap();
    assert_eq!(body["lists"].as_array().unwrap().len(), 2);

    // The audit log has the matches, and none of the hashes that did not match.
    let audit = std::fs::read_to_string(env.path("audit.jsonl")).unwrap();
    let first: Value = serde_json::from_str(audit.lines().next().unwrap()).unwrap();
    assert_eq!(first["partner"], "isp-one");
    assert_eq!(first["list"], "alpha");
    assert_eq!(first["ref"], md5_ref.as_str());
    assert!(first["time"].is_string() && first["version"] == 2);
    assert!(!audit.contains(&"0".repeat(64)));
    assert!(
        !audit.contains(&md5),
        "the audit log names entries, not query hashes"
    );

    // A PDQ query 40 bits from an entry (threshold 31): no match, but a near miss.
    let (_, body) = server.match_json(
        ISP,
        &json!({"queries": [{"kind": "pdq", "hash": flip(&pdq, 40)}]}),
    );
    assert_eq!(body["results"][0]["verdict"], "no_match");

    // The OpenAPI document is generated from the handlers: every endpoint is in it.
    let doc: Value = server.get("/openapi.json", None).json().unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    for path in [
        "/v1/match",
        "/v1/match/ndjson",
        "/v1/match/md5/{hash}",
        "/v1/match/pdq/{hash}",
        "/v1/lists",
        "/v1/admin/hashsets/{list}",
        "/healthz",
        "/readyz",
        "/metrics",
    ] {
        assert!(
            doc["paths"][path].is_object(),
            "{path} missing from /openapi.json"
        );
    }
    assert!(doc["components"]["schemas"]["MatchRequest"].is_object());
    assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
    // Every success answer says what its body is, not only in prose.
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let ok = &op["responses"]["200"];
            assert!(
                ok["content"].as_object().is_some_and(|c| !c.is_empty()),
                "{method} {path}: 200 without a content schema"
            );
        }
    }
    for schema in [
        "Health",
        "Ready",
        "Accepted",
        "ListsDoc",
        "MatchResponse",
        "VerdictOut",
    ] {
        assert!(
            doc["components"]["schemas"][schema].is_object(),
            "{schema} missing"
        );
    }
    // The bounds the service enforces are in the document, for clients generated from it.
    // A query is one of the kinds' shapes: its hex length, and a quality for PDQ only.
    let shapes = doc["components"]["schemas"]["QueryIn"]["oneOf"]
        .as_array()
        .unwrap();
    let pdq = shapes.iter().find(|s| s["title"] == "pdq query").unwrap();
    let quality = &pdq["properties"]["quality"];
    assert_eq!(
        (&quality["minimum"], &quality["maximum"]),
        (&json!(0), &json!(100)),
        "{quality}"
    );
    assert_eq!(pdq["properties"]["hash"]["pattern"], "^[0-9a-fA-F]{64}$");
    let md5 = shapes.iter().find(|s| s["title"] == "md5 query").unwrap();
    assert!(md5["properties"].get("quality").is_none());
    let params = |path: &str| {
        doc["paths"][path]["get"]["parameters"]
            .as_array()
            .unwrap()
            .clone()
    };
    let single = params("/v1/match/pdq/{hash}");
    let quality = single.iter().find(|p| p["name"] == "quality").unwrap();
    assert_eq!(quality["schema"]["maximum"], 100, "{quality}");
    assert!(
        params("/v1/match/sha1/{hash}")
            .iter()
            .all(|p| p["name"] != "quality")
    );

    // Metrics: requests by endpoint pattern (never a concrete hash), matches by list.
    let text = server.get("/metrics", None).text().unwrap();
    assert!(text.contains("hashsieve_http_requests_total{endpoint=\"/v1/match\",status=\"200\"}"));
    assert!(text.contains("endpoint=\"/v1/match/{kind}/{hash}\""));
    assert!(text.contains("hashsieve_matches_total{list=\"alpha\"}"));
    assert!(text.contains("hashsieve_index_version{list=\"alpha\"} 2"));
    assert!(
        text.contains("hashsieve_near_misses_total{partner=\"isp-one\"} 1"),
        "{text}"
    );
    assert!(!text.contains(&near));
}

#[test]
fn auth_errors_and_hostile_bodies_never_give_a_5xx() {
    let env = Env::new();
    let server = env.start();
    let q = json!({"queries": [{"kind": "md5", "hash": "0".repeat(32)}]}).to_string();

    let r = server.post("/v1/match", None, q.clone());
    assert_eq!(r.headers()["www-authenticate"], "Bearer");
    assert_problem(r, StatusCode::UNAUTHORIZED, "unauthorized");
    assert_problem(
        server.post("/v1/match", Some("wrong-key"), q.clone()),
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    );
    assert_problem(
        server.get("/v1/lists", None),
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    );
    assert_problem(
        server.post("/v1/match", Some(OPS), q.clone()),
        StatusCode::FORBIDDEN,
        "admin-key-for-matching",
    );

    // Rate limit: 2 per second for "slow".
    let mut limited = None;
    for _ in 0..5 {
        let r = server.post("/v1/match", Some(SLOW), q.clone());
        if r.status() == StatusCode::TOO_MANY_REQUESTS {
            limited = Some(r);
            break;
        }
    }
    let r = limited.expect("the third request within a second is limited");
    let retry: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry >= 1);
    assert_problem(r, StatusCode::TOO_MANY_REQUESTS, "rate-limited");

    let hostile: Vec<(Vec<u8>, StatusCode, &str)> = vec![
        (
            b"{not json".to_vec(),
            StatusCode::BAD_REQUEST,
            "invalid-json",
        ),
        (b"".to_vec(), StatusCode::BAD_REQUEST, "invalid-json"),
        (b"[]".to_vec(), StatusCode::BAD_REQUEST, "invalid-json"),
        (
            format!("{}{}", "[".repeat(30_000), "]".repeat(30_000)).into_bytes(),
            StatusCode::BAD_REQUEST,
            "invalid-json",
        ),
        (
            format!(r#"{{"queries":[{{"kind":"md5","hash":"{}"}}]}}"#, "\u{7f}").into_bytes(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-query",
        ),
        (
            b"{\"queries\":[{\"kind\":\"md5\",\"hash\":\"\xff\xfe\"}]}".to_vec(),
            StatusCode::BAD_REQUEST,
            "invalid-json",
        ),
        (
            br#"{"queries":[{"kind":"md5","hash":"abc"}]}"#.to_vec(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-query",
        ),
        (
            br#"{"queries":[{"kind":"sha512","hash":"00"}]}"#.to_vec(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-query",
        ),
        (
            br#"{"queries":[{"kind":"pdq","hash":"00","quality":900}]}"#.to_vec(),
            StatusCode::BAD_REQUEST,
            "invalid-json",
        ),
        (
            br#"{"queries":[],"extra":1}"#.to_vec(),
            StatusCode::BAD_REQUEST,
            "invalid-json",
        ),
        (
            vec![b' '; 70_000],
            StatusCode::PAYLOAD_TOO_LARGE,
            "body-too-large",
        ),
        (
            json!({"queries": vec![json!({"kind": "md5", "hash": "0".repeat(32)}); 101]})
                .to_string()
                .into_bytes(),
            StatusCode::PAYLOAD_TOO_LARGE,
            "batch-too-large",
        ),
    ];
    for (body, status, kind) in hostile {
        let r = server.post("/v1/match", Some(ISP), body);
        let problem = assert_problem(r, status, kind);
        if kind == "invalid-query" {
            assert!(
                problem["detail"]
                    .as_str()
                    .unwrap()
                    .starts_with("queries[0]."),
                "{problem}"
            );
        }
    }
    assert_problem(
        server.get("/v1/nowhere", Some(ISP)),
        StatusCode::NOT_FOUND,
        "not-found",
    );
    // Paths that are not UTF-8 once decoded get problems too, not axum's plain-text 400.
    let problem = assert_problem(
        server.get("/v1/match/md5/%ff%fe", Some(ISP)),
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid-query",
    );
    assert!(problem["detail"].as_str().unwrap().starts_with("path: "));
    let set = repo().join("hashsets-example/alpha/alpha-1.hset");
    assert_problem(
        upload(&server, OPS, "%ff", &set),
        StatusCode::NOT_FOUND,
        "not-found",
    );
    let r = server
        .client
        .delete(server.url("/v1/match"))
        .send()
        .unwrap();
    assert_problem(r, StatusCode::METHOD_NOT_ALLOWED, "method-not-allowed");
    // Many connections' worth of garbage later the server still answers.
    assert_eq!(server.get("/healthz", None).status(), StatusCode::OK);
    let metrics = server.get("/metrics", None).text().unwrap();
    // /readyz answers 503 until the lists are loaded; nothing else may be a 5xx.
    let five = metrics
        .lines()
        .filter(|l| l.contains("status=\"5") && !l.contains("/readyz"))
        .collect::<Vec<_>>();
    assert!(five.is_empty(), "no 5xx was answered: {five:?}");
}

#[test]
fn ndjson_streams_any_number_of_queries_in_order() {
    let env = Env::new();
    let server = env.start();
    let (md5, md5_ref) = entry("alpha-2.csv", "md5");
    let mut body = String::new();
    let n = 5000;
    for i in 0..n {
        match i % 4 {
            0 => body.push_str(&format!("md5:{md5}\n")),
            1 => body.push_str(&format!("{{\"kind\":\"sha1\",\"hash\":\"{:040x}\"}}\n", i)),
            2 => body.push_str("md5:nothex\n"),
            _ => body.push_str(&format!("sha256:{:064x}\n", i)),
        }
    }
    body.push_str("blake3:00"); // no final newline, still a line
    // An empty body is a client's mistake, answered as such (not a 200 with nothing).
    let empty = server
        .client
        .post(server.url("/v1/match/ndjson"))
        .bearer_auth(ISP)
        .send()
        .unwrap();
    let problem = assert_problem(empty, StatusCode::UNPROCESSABLE_ENTITY, "invalid-query");
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("the body is empty")
    );
    // A quality written as a number with no fraction is that integer (JSON Schema's view).
    let (status, answer) = server.match_json(
        ISP,
        &json!({"queries": [{"kind": "pdq", "hash": "00".repeat(32), "quality": 50.0}]}),
    );
    assert_eq!(status, StatusCode::OK, "{answer}");
    let (status, answer) = server.match_json(
        ISP,
        &json!({"queries": [{"kind": "pdq", "hash": "00".repeat(32), "quality": 50.5}]}),
    );
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    assert!(
        answer["detail"]
            .as_str()
            .unwrap()
            .contains("not a whole number"),
        "{answer}"
    );
    let r = server
        .client
        .post(server.url("/v1/match/ndjson"))
        .bearer_auth(ISP)
        .body(body)
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["content-type"], "application/x-ndjson");
    let text = r.text().unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), n + 1);
    assert_eq!(lines[0]["query"]["hash"], md5.as_str());
    assert_eq!(lines[0]["matches"][0]["ref"], md5_ref.as_str());
    assert_eq!(lines[1]["verdict"], "no_match");
    assert_eq!(lines[2]["line"], 3);
    assert!(
        lines[2]["error"]
            .as_str()
            .unwrap()
            .contains("bad hex digit")
    );
    assert_eq!(
        lines[4996]["query"]["kind"], "md5",
        "order kept across batches"
    );
    assert_eq!(lines[n]["line"], n + 1);
    let r = server
        .client
        .post(server.url("/v1/match/ndjson"))
        .body("md5:00")
        .send()
        .unwrap();
    assert_problem(r, StatusCode::UNAUTHORIZED, "unauthorized");
}

/// A signed delta from alpha v2 to v3 that adds one synthetic md5 entry, made with the CLI.
fn make_alpha_v3(env: &Env) -> (PathBuf, String) {
    let ex = repo().join("hashsets-example");
    let work = env.path("work");
    std::fs::create_dir_all(&work).unwrap();
    let p = |name: &str| work.join(name).to_str().unwrap().to_owned();
    let v1 = ex.join("alpha/alpha-1.hset");
    let d2 = ex.join("alpha/alpha-2.hdelta");
    let out = run(&[
        "hashset",
        "apply",
        v1.to_str().unwrap(),
        d2.to_str().unwrap(),
        "-o",
        &p("v2.hset"),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let extra = "5eed".repeat(8);
    let mut csv = std::fs::read_to_string(ex.join("entries/alpha-2.csv")).unwrap();
    csv.push_str(&format!("md5,{extra},example-new,A-0099\n"));
    std::fs::write(work.join("v3.csv"), csv).unwrap();
    let out = run(&[
        "hashset",
        "build",
        "--name",
        "alpha",
        "--version",
        "3",
        "--created",
        "2026-11-20T00:00:00Z",
        "--expires",
        "2031-01-01T00:00:00Z",
        "--threshold",
        "pdq=31",
        "--threshold",
        "phash=8",
        "--description",
        "EXAMPLE list alpha: generated benign pictures, for demos and tests only",
        "-o",
        &p("v3.hset"),
        &p("v3.csv"),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = run(&[
        "hashset",
        "diff",
        &p("v2.hset"),
        &p("v3.hset"),
        "-o",
        &p("alpha-3.hdelta"),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let sk = ex.join("example-only.sec");
    let out = run(&[
        "hashset",
        "sign",
        "--secret-key",
        sk.to_str().unwrap(),
        &p("alpha-3.hdelta"),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    (work.join("alpha-3.hdelta"), extra)
}

/// Asks for an md5 until it matches (isp-one); fails with `what` 10 s after `since`.
fn wait_for_md5_match(server: &TestServer, md5: &str, since: Instant, what: &str) {
    loop {
        let body: Value = server
            .get(&format!("/v1/match/md5/{md5}"), Some(ISP))
            .json()
            .unwrap();
        if body["verdict"] == "match" {
            return;
        }
        assert!(since.elapsed() < Duration::from_secs(10), "{what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn upload(server: &TestServer, key: &str, list: &str, file: &Path) -> Response {
    let sig = std::fs::read(format!("{}.minisig", file.display())).unwrap();
    let form = reqwest::blocking::multipart::Form::new()
        .part(
            "file",
            reqwest::blocking::multipart::Part::bytes(std::fs::read(file).unwrap()).file_name("f"),
        )
        .part("signature", reqwest::blocking::multipart::Part::bytes(sig));
    server
        .client
        .post(server.url(&format!("/v1/admin/hashsets/{list}")))
        .bearer_auth(key)
        .multipart(form)
        .send()
        .unwrap()
}

fn version_of(server: &TestServer, list: &str) -> Value {
    let body: Value = server.get("/v1/lists", Some(OPS)).json().unwrap();
    body["lists"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["name"] == list)
        .cloned()
        .unwrap()
}

#[test]
fn admin_upload_hot_swaps_under_load_and_survives_a_restart() {
    let env = Env::new();
    let (delta, extra) = make_alpha_v3(&env);
    let server = env.start();
    let ex = repo().join("hashsets-example");

    // Only admins upload; a refused file names its reason and the old version keeps serving.
    assert_problem(
        upload(&server, ISP, "alpha", &delta),
        StatusCode::FORBIDDEN,
        "admin-only",
    );
    assert_problem(
        upload(&server, "nobody", "alpha", &delta),
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    );
    assert_problem(
        upload(&server, OPS, "gamma", &delta),
        StatusCode::NOT_FOUND,
        "not-found",
    );
    let p = assert_problem(
        upload(&server, OPS, "beta", &delta),
        StatusCode::UNPROCESSABLE_ENTITY,
        "update-refused",
    );
    assert!(
        p["detail"]
            .as_str()
            .unwrap()
            .contains("expected list \"beta\""),
        "{p}"
    );
    let p = assert_problem(
        upload(&server, OPS, "alpha", &ex.join("alpha/alpha-1.hset")),
        StatusCode::UNPROCESSABLE_ENTITY,
        "update-refused",
    );
    assert!(
        p["detail"].as_str().unwrap().contains("rollback refused"),
        "{p}"
    );
    let status = version_of(&server, "alpha");
    assert_eq!(status["version"], 2);
    assert!(
        status["last_refusal"]["reason"]
            .as_str()
            .unwrap()
            .contains("rollback")
    );
    let metrics = server.get("/metrics", None).text().unwrap();
    assert!(metrics.contains("hashsieve_update_refusals_total{list=\"alpha\"}"));

    // Hot swap while two threads keep asking: no request fails, and answers flip from
    // no_match to match exactly once the new version is in.
    let stop = Arc::new(AtomicBool::new(false));
    let failures = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicUsize::new(0));
    let workers: Vec<_> = (0..2)
        .map(|_| {
            let (stop, failures, done) =
                (Arc::clone(&stop), Arc::clone(&failures), Arc::clone(&done));
            let url = server.url(&format!("/v1/match/md5/{extra}"));
            let client = server.client.clone();
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    match client.get(&url).bearer_auth(ISP).send() {
                        Ok(r) if r.status() == StatusCode::OK => {
                            let v: Value = r.json().unwrap();
                            let version = v["lists"]["alpha"].as_u64().unwrap();
                            let matched = v["verdict"] == "match";
                            // One snapshot per request: v3 and its entry go together.
                            if matched != (version == 3) {
                                failures.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        _ => {
                            failures.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    done.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    let r = upload(&server, OPS, "alpha", &delta);
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        r.json::<Value>().unwrap(),
        json!({"list": "alpha", "version": 3})
    );
    std::thread::sleep(Duration::from_millis(200));
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.join().unwrap();
    }
    assert_eq!(failures.load(Ordering::Relaxed), 0);
    assert!(
        done.load(Ordering::Relaxed) > 20,
        "requests ran during the swap"
    );
    assert_eq!(version_of(&server, "alpha")["version"], 3);
    drop(server);

    // Restart with the sources gone: the state dir serves v3 at once.
    std::fs::remove_dir_all(env.path("published/alpha")).unwrap();
    std::fs::create_dir_all(env.path("published/alpha")).unwrap();
    let server = env.start();
    assert_eq!(version_of(&server, "alpha")["version"], 3);
    let body: Value = server
        .get(&format!("/v1/match/md5/{extra}"), Some(ISP))
        .json()
        .unwrap();
    assert_eq!(body["verdict"], "match");
    // A rolled-back file appearing in the source is still refused after the restart. (The
    // file before its signature: a refusal for the missing signature is retried once the
    // signature appears.)
    for f in ["alpha-1.hset", "alpha-1.hset.minisig"] {
        std::fs::copy(
            ex.join("alpha").join(f),
            env.path("published/alpha").join(f),
        )
        .unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let s = version_of(&server, "alpha");
        if let Some(reason) = s["last_refusal"]["reason"].as_str()
            && reason.contains("rollback refused")
        {
            assert_eq!(s["version"], 3);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the rolled-back file was not looked at: {s}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_delta_published_to_the_source_dir_is_served_within_seconds() {
    let env = Env::new();
    let (delta, extra) = make_alpha_v3(&env);
    let server = env.start();
    let started = Instant::now();
    // Signature first, then the file: the poller only considers complete pairs or refuses
    // (and retries once the file changes).
    std::fs::copy(
        format!("{}.minisig", delta.display()),
        env.path("published/alpha/alpha-3.hdelta.minisig"),
    )
    .unwrap();
    std::fs::copy(&delta, env.path("published/alpha/alpha-3.hdelta")).unwrap();
    wait_for_md5_match(&server, &extra, started, "not served within 10 s");
    eprintln!(
        "delta served {:.2} s after it appeared",
        started.elapsed().as_secs_f64()
    );
}

#[cfg(unix)]
#[test]
fn sighup_makes_the_service_poll_its_sources_at_once() {
    let env = Env::new();
    let dir = env.dir.path();
    // Sources polled hourly: only the signal can bring the new version in time.
    let config = std::fs::read_to_string(dir.join("hashsieve.toml"))
        .unwrap()
        .replace("poll_seconds = 1", "poll_seconds = 3600");
    std::fs::write(dir.join("hup.toml"), config).unwrap();
    let (delta, extra) = make_alpha_v3(&env);
    let (mut child, _rx, _log, addr) = spawn_serve(dir, &["serve", "--config", "hup.toml"], "http");
    let client = Client::new();
    let ask = || -> Value {
        client
            .get(format!("http://{addr}/v1/match/md5/{extra}"))
            .bearer_auth(ISP)
            .send()
            .unwrap()
            .json()
            .unwrap()
    };
    wait_until_serving_newest(&client, &format!("http://{addr}"));
    std::fs::copy(
        format!("{}.minisig", delta.display()),
        env.path("published/alpha/alpha-3.hdelta.minisig"),
    )
    .unwrap();
    std::fs::copy(&delta, env.path("published/alpha/alpha-3.hdelta")).unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(ask()["verdict"], "no_match", "polled without the signal");
    let hup = std::process::Command::new("kill")
        .args(["-HUP", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(hup.success());
    let sent = Instant::now();
    while ask()["verdict"] != "match" {
        assert!(
            sent.elapsed() < Duration::from_secs(10),
            "not served after SIGHUP"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(child.terminate().success());
}

#[cfg(unix)]
#[test]
fn sigterm_turns_readyz_off_then_serves_through_the_grace_period() {
    let env = Env::new();
    let dir = env.dir.path();
    let config = std::fs::read_to_string(dir.join("hashsieve.toml"))
        .unwrap()
        .replace("shutdown_grace_ms = 0", "shutdown_grace_ms = 1500");
    std::fs::write(dir.join("grace.toml"), config).unwrap();
    let (mut child, rx, mut log, addr) =
        spawn_serve(dir, &["serve", "--config", "grace.toml"], "http");
    let client = Client::new();
    let base = format!("http://{addr}");
    wait_until_serving_newest(&client, &base);
    let term = std::process::Command::new("kill")
        .args(["-TERM", &child.0.id().to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    let sent = Instant::now();
    // Not ready at once (the load balancer's cue), while matching still answers.
    loop {
        let r = client.get(format!("{base}/readyz")).send().unwrap();
        if r.status() == StatusCode::SERVICE_UNAVAILABLE {
            let body: Value = r.json().unwrap();
            assert!(
                body["detail"].as_str().unwrap().contains("draining"),
                "{body}"
            );
            break;
        }
        assert!(
            sent.elapsed() < Duration::from_millis(500),
            "readyz still 200"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let r = client
        .get(format!("{base}/v1/match/md5/{}", "0".repeat(32)))
        .bearer_auth(ISP)
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(
        sent.elapsed() < Duration::from_millis(1500),
        "answered after the grace"
    );
    // Then it stops, within the grace and the drain bound.
    let status = child.0.wait().unwrap();
    let took = sent.elapsed();
    assert!(status.success());
    assert!(
        took >= Duration::from_millis(1400) && took < Duration::from_secs(12),
        "{took:?}"
    );
    while let Ok(line) = rx.recv_timeout(Duration::from_secs(2)) {
        log.push(line);
    }
    assert!(
        log.iter().any(|l| l.contains("/readyz answers 503")),
        "{log:?}"
    );
}

/// A `hashsieve serve` process that is killed if the test ends without stopping it (a failed
/// assertion must not leave a server holding the test's output open).
pub(crate) struct ServeChild(pub(crate) std::process::Child);

impl std::ops::Deref for ServeChild {
    type Target = std::process::Child;
    fn deref(&self) -> &std::process::Child {
        &self.0
    }
}

impl std::ops::DerefMut for ServeChild {
    fn deref_mut(&mut self) -> &mut std::process::Child {
        &mut self.0
    }
}

impl ServeChild {
    /// SIGTERM (a graceful stop: drain, then stop the updater) and the exit status.
    pub(crate) fn terminate(&mut self) -> std::process::ExitStatus {
        #[cfg(unix)]
        {
            let _ = std::process::Command::new("kill")
                .args(["-TERM", &self.0.id().to_string()])
                .status();
        }
        #[cfg(not(unix))]
        let _ = self.0.kill();
        self.0.wait().unwrap()
    }
}

/// Waits until the service at `base` is ready with the example lists at their newest
/// versions (ready as soon as each list has some version: alpha 1 may come before alpha 2).
fn wait_until_serving_newest(client: &Client, base: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let r = client.get(format!("{base}/readyz")).send().unwrap();
        if r.status() == StatusCode::OK {
            let body: Value = r.json().unwrap();
            if body["lists"] == json!({"alpha": 2, "beta": 2}) {
                return;
            }
        }
        assert!(
            Instant::now() < deadline,
            "not ready with alpha 2 and beta 2"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

impl Drop for ServeChild {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// Starts the `hashsieve` binary in `cwd` with stderr read line by line on a thread; waits
/// for "listening on SCHEME://ADDR". Returns the child, the rest of its log as it comes, the
/// lines so far and ADDR.
fn spawn_serve(
    cwd: &Path,
    args: &[&str],
    scheme: &str,
) -> (
    ServeChild,
    std::sync::mpsc::Receiver<String>,
    Vec<String>,
    String,
) {
    let command = std::process::Command::new(env!("CARGO_BIN_EXE_hashsieve"));
    spawn_serve_with(command, cwd, args, scheme)
}

/// [`spawn_serve`] with a command prepared by the caller (its environment, say).
pub(crate) fn spawn_serve_with(
    mut command: std::process::Command,
    cwd: &Path,
    args: &[&str],
    scheme: &str,
) -> (
    ServeChild,
    std::sync::mpsc::Receiver<String>,
    Vec<String>,
    String,
) {
    let mut child = command
        .args(args)
        .current_dir(cwd)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr_pipe = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stderr_pipe)
            .lines()
            .map_while(Result::ok)
        {
            let _ = tx.send(line);
        }
    });
    let marker = format!("listening on {scheme}://");
    let mut log = Vec::new();
    loop {
        let Ok(line) = rx.recv_timeout(Duration::from_secs(30)) else {
            let _ = child.kill();
            let _ = child.wait();
            panic!("serve did not log its address: {log:?}");
        };
        log.push(line.clone());
        if let Some(at) = line.find(&marker) {
            // The address ends the message (text logs) or the JSON string holding it.
            let addr: String = line[at + marker.len()..]
                .chars()
                .take_while(|c| c.is_ascii_hexdigit() || matches!(c, '.' | ':' | '[' | ']'))
                .collect();
            return (ServeChild(child), rx, log, addr);
        }
    }
}

#[test]
fn serve_binary_runs_the_demo_and_refuses_bad_configs() {
    // The README's first command, from a copy of the repository's example lists.
    let dir = tempfile::tempdir().unwrap();
    let ex = repo().join("hashsets-example");
    for sub in ["alpha", "beta"] {
        std::fs::create_dir_all(dir.path().join("hashsets-example").join(sub)).unwrap();
        for e in std::fs::read_dir(ex.join(sub)).unwrap() {
            let e = e.unwrap();
            std::fs::copy(
                e.path(),
                dir.path()
                    .join("hashsets-example")
                    .join(sub)
                    .join(e.file_name()),
            )
            .unwrap();
        }
    }
    std::fs::copy(
        ex.join("example-only.pub"),
        dir.path().join("hashsets-example/example-only.pub"),
    )
    .unwrap();
    let (mut child, rx, mut log, addr) =
        spawn_serve(dir.path(), &["serve", "--listen", "127.0.0.1:0"], "http");
    assert!(
        log.iter().any(|l| l.contains("unauthenticated local demo")),
        "{log:?}"
    );
    // stderr is a pipe here: plain text, no colour codes for a log file to carry.
    assert!(log.iter().all(|l| !l.contains('\x1b')), "{log:?}");
    let client = Client::new();
    wait_until_serving_newest(&client, &format!("http://{addr}"));
    let (md5, _) = entry("alpha-2.csv", "md5");
    let body: Value = client
        .get(format!("http://{addr}/v1/match/md5/{md5}"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(body["verdict"], "match");
    // No hash appears in the service's log, matched or not.
    let _ = client
        .get(format!("http://{addr}/v1/match/md5/{}", "e".repeat(32)))
        .send();
    let status = child.terminate();
    while let Ok(line) = rx.recv_timeout(Duration::from_secs(5)) {
        log.push(line);
    }
    let log = log.join("\n");
    assert!(
        !log.contains(&md5) && !log.contains(&"e".repeat(32)),
        "{log}"
    );
    assert!(log.contains("shutting down"), "{log}");
    assert!(status.success(), "{log}");

    // For log collectors: one JSON object per line, from the flag or the environment.
    for args in [
        &["serve", "--listen", "127.0.0.1:0", "--log-format", "json"][..],
        &["serve", "--listen", "127.0.0.1:0"][..],
    ] {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_hashsieve"));
        command.env("HASHSIEVE_LOG_FORMAT", "json");
        let (mut child, rx, mut log, _addr) = spawn_serve_with(command, dir.path(), args, "http");
        // At once after it says it listens: the signal handlers are in place by then.
        assert!(child.terminate().success(), "{log:?}");
        while let Ok(line) = rx.recv_timeout(Duration::from_secs(5)) {
            log.push(line);
        }
        for line in &log {
            let record: Value =
                serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
            assert!(
                record["level"].is_string() && record["fields"]["message"].is_string(),
                "{line}"
            );
        }
        assert!(log.iter().any(|l| l.contains("shutting down")), "{log:?}");
    }

    // --listen is validated like the file's `listen`: beyond loopback only with partners.
    let out = crate::util::hashsieve()
        .args(["serve", "--listen", "0.0.0.0:0"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("not a loopback address"),
        "{}",
        stderr(&out)
    );

    // Bad configs: named key, non-zero exit.
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "listen = \"0.0.0.0:8080\"\n").unwrap();
    let out = run(&["serve", "--config", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("listen: 0.0.0.0:8080 is not a loopback address"),
        "{}",
        stderr(&out)
    );
    std::fs::write(&bad, "[limits]\nmax_bacth = 3\n").unwrap();
    let out = run(&["serve", "--config", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("unknown field `max_bacth`"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn match_client_sends_hashes_and_reports_verdicts() {
    let env = Env::new();
    let server = env.start();
    let images = repo().join("hashsets-example/images");
    let run_client = |key: Option<&str>, extra: &[&str]| {
        let mut cmd = crate::util::hashsieve();
        cmd.args([
            "match",
            "--server",
            &server.base,
            "--api-key-env",
            "HASHSIEVE_TEST_KEY",
        ]);
        cmd.args(extra);
        cmd.arg(&images);
        cmd.env_remove("HASHSIEVE_TEST_KEY");
        if let Some(k) = key {
            cmd.env("HASHSIEVE_TEST_KEY", k);
        }
        cmd.output().unwrap()
    };
    let out = run_client(Some(ISP), &["--batch", "7"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let lines = crate::util::ndjson(&out.stdout);
    // Six pictures, eight kinds each, in file order.
    assert_eq!(lines.len(), 48);
    assert!(lines[0]["path"].as_str().unwrap().ends_with(".jpg"));
    let hits: Vec<&Value> = lines.iter().filter(|l| l["verdict"] == "match").collect();
    assert!(!hits.is_empty());
    assert!(
        hits.iter().all(|h| h["matches"][0]["list"] == "alpha"),
        "isp-one sees alpha only"
    );
    // The server saw only hashes: its query counter equals the hashes sent.
    let metrics = server.get("/metrics", None).text().unwrap();
    assert!(
        metrics.contains("hashsieve_queries_total{partner=\"isp-one\"} 48"),
        "{metrics}"
    );

    let out = run_client(None, &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("401"), "{}", stderr(&out));
    let out = run_client(Some(ISP), &["--batch", "0"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("--batch must be at least 1"));
}

#[test]
fn serve_over_tls_with_rustls() {
    let env = Env::new();
    let dir = env.dir.path();
    let certified =
        rcgen::generate_simple_self_signed(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
            .unwrap();
    let cert_pem = certified.cert.pem();
    std::fs::write(dir.join("cert.pem"), &cert_pem).unwrap();
    std::fs::write(dir.join("key.pem"), certified.signing_key.serialize_pem()).unwrap();
    let mut config = std::fs::read_to_string(dir.join("hashsieve.toml")).unwrap();
    config.insert_str(0, "tls_cert = \"cert.pem\"\ntls_key = \"key.pem\"\n");
    std::fs::write(dir.join("tls.toml"), config).unwrap();

    let (mut child, _rx, _log, addr) =
        spawn_serve(dir, &["serve", "--config", "tls.toml"], "https");
    let port = addr.rsplit(':').next().unwrap().to_owned();
    let client = Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(cert_pem.as_bytes()).unwrap())
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    wait_until_serving_newest(&client, &format!("https://localhost:{port}"));
    let (md5, md5_ref) = entry("alpha-2.csv", "md5");
    let body: Value = client
        .get(format!("https://localhost:{port}/v1/match/md5/{md5}"))
        .bearer_auth(ISP)
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(body["matches"][0]["ref"], md5_ref.as_str());
    // The client trusts a private CA given with --ca-cert, and refuses the server without.
    let images = repo().join("hashsets-example/images");
    let client_run = |extra: &[&str]| {
        let mut cmd = crate::util::hashsieve();
        cmd.args(["match", "--server", &format!("https://localhost:{port}")]);
        cmd.args(extra);
        cmd.arg(&images).env("HASHSIEVE_API_KEY", ISP);
        cmd.output().unwrap()
    };
    let ca = dir.join("cert.pem");
    let out = client_run(&["--ca-cert", ca.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_eq!(crate::util::ndjson(&out.stdout).len(), 48);
    let out = client_run(&[]);
    assert_eq!(out.status.code(), Some(2), "an unknown CA is refused");
    assert!(stderr(&out).contains("request failed"), "{}", stderr(&out));
    let out = client_run(&["--ca-cert", dir.join("key.pem").to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("key.pem: no certificate"),
        "{}",
        stderr(&out)
    );
    // Plain HTTP to the TLS port gets no answer.
    let plain = Client::new()
        .get(format!("http://127.0.0.1:{port}/healthz"))
        .timeout(Duration::from_secs(5))
        .send();
    assert!(plain.map(|r| r.status() != StatusCode::OK).unwrap_or(true));
    assert!(child.terminate().success());

    // A missing key file is named and refused.
    let bad = dir.join("bad.toml");
    let text = std::fs::read_to_string(dir.join("tls.toml"))
        .unwrap()
        .replace("key.pem", "missing.pem");
    std::fs::write(&bad, text).unwrap();
    let out = run(&["serve", "--config", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("missing.pem: cannot read"),
        "{}",
        stderr(&out)
    );
}

/// A plain file server on loopback with ETags and 304s, standing in for an https:// source.
fn file_server(dir: PathBuf, not_modified: Arc<AtomicUsize>) -> String {
    use axum::extract::Path as UrlPath;
    use axum::http::{HeaderMap, StatusCode as Http};
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let app = axum::Router::new().route(
                "/{name}",
                axum::routing::get(move |UrlPath(name): UrlPath<String>, headers: HeaderMap| {
                    let (dir, not_modified) = (dir.clone(), Arc::clone(&not_modified));
                    async move {
                        let Ok(bytes) = std::fs::read(dir.join(&name)) else {
                            return (Http::NOT_FOUND, HeaderMap::new(), Vec::new());
                        };
                        let etag = format!("\"{}\"", blake3::hash(&bytes).to_hex());
                        let mut out = HeaderMap::new();
                        out.insert("etag", etag.parse().unwrap());
                        if headers.get("if-none-match").and_then(|v| v.to_str().ok())
                            == Some(etag.as_str())
                        {
                            not_modified.fetch_add(1, Ordering::Relaxed);
                            return (Http::NOT_MODIFIED, out, Vec::new());
                        }
                        (Http::OK, out, bytes)
                    }
                }),
            );
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(listener.local_addr().unwrap()).unwrap();
            axum::serve(listener, app).await.unwrap();
        });
    });
    format!("http://{}/", rx.recv().unwrap())
}

#[test]
fn a_url_source_is_polled_with_conditional_requests() {
    let env = Env::new();
    let (delta, extra) = make_alpha_v3(&env);
    let served = env.path("published/alpha");
    std::fs::write(served.join("alpha.files"), "alpha-1.hset\nalpha-2.hdelta\n").unwrap();
    let not_modified = Arc::new(AtomicUsize::new(0));
    let base = file_server(served.clone(), Arc::clone(&not_modified));
    let config = std::fs::read_to_string(env.path("hashsieve.toml"))
        .unwrap()
        .replace("dir:published/alpha", &base);
    std::fs::write(env.path("hashsieve.toml"), config).unwrap();
    let server = env.start();
    assert_eq!(version_of(&server, "alpha")["version"], 2);

    // An unchanged listing is answered 304 on later polls.
    let deadline = Instant::now() + Duration::from_secs(10);
    while not_modified.load(Ordering::Relaxed) == 0 {
        assert!(Instant::now() < deadline, "no conditional request seen");
        std::thread::sleep(Duration::from_millis(100));
    }
    // Publishing v3: the delta and its signature, then the listing that names it.
    std::fs::copy(&delta, served.join("alpha-3.hdelta")).unwrap();
    std::fs::copy(
        format!("{}.minisig", delta.display()),
        served.join("alpha-3.hdelta.minisig"),
    )
    .unwrap();
    std::fs::write(
        served.join("alpha.files"),
        "alpha-1.hset\nalpha-2.hdelta\nalpha-3.hdelta\n",
    )
    .unwrap();
    wait_for_md5_match(
        &server,
        &extra,
        Instant::now(),
        "v3 not served from the URL source",
    );
    assert_eq!(version_of(&server, "alpha")["version"], 3);
}

#[test]
fn a_list_stops_being_served_when_its_version_expires() {
    let env = Env::new();
    let server = env.start();
    let (md5, _) = entry("alpha-2.csv", "md5");
    // Version 5 of alpha, expiring in 3 seconds, uploaded by the admin.
    let ex = repo().join("hashsets-example");
    let expires = (time::OffsetDateTime::now_utc() + time::Duration::seconds(3))
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let set = env.path("alpha-5.hset");
    let out = run(&[
        "hashset",
        "build",
        "--name",
        "alpha",
        "--version",
        "5",
        "--expires",
        &expires,
        "-o",
        set.to_str().unwrap(),
        ex.join("entries/alpha-2.csv").to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let sk = ex.join("example-only.sec");
    let out = run(&[
        "hashset",
        "sign",
        "--secret-key",
        sk.to_str().unwrap(),
        set.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let r = upload(&server, OPS, "alpha", &set);
    assert_eq!(r.status(), StatusCode::OK, "{}", r.text().unwrap());
    let body: Value = server
        .get(&format!("/v1/match/md5/{md5}"), Some(ISP))
        .json()
        .unwrap();
    assert_eq!(body["verdict"], "match");
    assert_eq!(body["lists"]["alpha"], 5);
    // Once expired: not matched against, not ready, and the reason is shown.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let body: Value = server
            .get(&format!("/v1/match/md5/{md5}"), Some(ISP))
            .json()
            .unwrap();
        if body["verdict"] == "no_match" {
            assert!(body["lists"].get("alpha").is_none(), "{body}");
            break;
        }
        assert!(Instant::now() < deadline, "still served after expiry");
        std::thread::sleep(Duration::from_millis(200));
    }
    let p = assert_problem(
        server.get("/readyz", None),
        StatusCode::SERVICE_UNAVAILABLE,
        "not-ready",
    );
    assert!(
        p["detail"]
            .as_str()
            .unwrap()
            .contains("alpha: its latest version has expired"),
        "{p}"
    );
    let status = version_of(&server, "alpha");
    assert!(
        status["last_refusal"]["reason"]
            .as_str()
            .unwrap()
            .contains("expired"),
        "{status}"
    );
}

//! The router without a socket (axum's `examples/testing` shape): every problem type a
//! request can provoke, and hostile bodies, answered as problem+json with the catalogue's
//! status and title. Real sockets (TLS, restart, hot swap) are in `tests/integration`.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use serde_json::Value;
use sha2::{Digest, Sha256};
use tower::ServiceExt;

use super::router;
use crate::config::Config;
use crate::server::AppState;
use crate::server::problem::CATALOGUE;

const ISP: &str = "isp-key";
const SLOW: &str = "slow-key";
const OPS: &str = "ops-key";

/// A state over copies of the example lists (`alpha` served, `empty` with no files), after
/// its first poll, and the temp dir holding it.
fn state() -> (Arc<AppState>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("hashsets-example");
    let published = dir.path().join("published");
    std::fs::create_dir_all(published.join("alpha")).unwrap();
    std::fs::create_dir_all(published.join("empty")).unwrap();
    for e in std::fs::read_dir(example.join("alpha")).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), published.join("alpha").join(e.file_name())).unwrap();
    }
    let key = std::fs::read_to_string(example.join("example-only.pub")).unwrap();
    let key = key.lines().nth(1).unwrap().trim().to_owned();
    let digest = |k: &str| {
        Sha256::digest(k.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    };
    let config = format!(
        r#"
listen = "127.0.0.1:0"
state_dir = "state"
audit_log = "audit.jsonl"
[limits]
max_batch = 3
max_body_bytes = 2048
[[lists]]
name = "alpha"
source = "dir:published/alpha"
public_keys = ["{key}"]
[[lists]]
name = "empty"
source = "dir:published/empty"
public_keys = ["{key}"]
[[partners]]
name = "isp"
key_sha256 = "{isp}"
lists = ["alpha"]
[[partners]]
name = "slow"
key_sha256 = "{slow}"
lists = ["alpha"]
rate_per_second = 1
[[admins]]
name = "ops"
key_sha256 = "{ops}"
"#,
        isp = digest(ISP),
        slow = digest(SLOW),
        ops = digest(OPS),
    );
    let path = dir.path().join("hashsieve.toml");
    std::fs::write(&path, config).unwrap();
    let state = AppState::start(Config::load(&path).unwrap()).unwrap();
    let started = Instant::now();
    while !state.shared.first_poll_done.load(Ordering::Acquire) {
        assert!(started.elapsed() < Duration::from_secs(30), "no first poll");
        std::thread::sleep(Duration::from_millis(10));
    }
    (state, dir)
}

fn request(method: &str, uri: &str, key: Option<&str>, body: impl Into<Body>) -> Request<Body> {
    let mut r = Request::builder().method(method).uri(uri);
    if let Some(key) = key {
        r = r.header(header::AUTHORIZATION, format!("Bearer {key}"));
    }
    r.header(header::CONTENT_TYPE, "application/json")
        .body(body.into())
        .unwrap()
}

/// Sends `request` through the router: status, content type and body as JSON.
async fn send(app: &Router, request: Request<Body>) -> (StatusCode, String, Value) {
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let content_type = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    (status, content_type, body)
}

/// Asserts an answer is the problem `kind`, with the catalogue's status and title.
fn assert_problem(answer: &(StatusCode, String, Value), kind: &str) {
    let (status, content_type, body) = answer;
    let (_, want_status, want_title) = CATALOGUE
        .iter()
        .find(|(k, _, _)| *k == kind)
        .unwrap_or_else(|| panic!("{kind} is not in the catalogue"));
    assert_eq!(content_type, "application/problem+json", "{kind}: {body}");
    assert_eq!(
        body["type"],
        format!("urn:hashsieve:problem:{kind}"),
        "{body}"
    );
    assert_eq!(status.as_u16(), *want_status, "{kind}: {body}");
    assert_eq!(body["status"], *want_status, "{body}");
    assert_eq!(body["title"], *want_title, "{body}");
    assert!(
        body["detail"].as_str().is_some_and(|d| !d.is_empty()),
        "{body}"
    );
}

fn md5_query(hex: &str) -> String {
    format!(r#"{{"queries":[{{"kind":"md5","hash":"{hex}"}}]}}"#)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_problem_a_request_can_provoke() {
    let (state, _dir) = tokio::task::spawn_blocking(state).await.unwrap();
    let app = router(Arc::clone(&state));
    let ok = md5_query(&"0".repeat(32));
    let post = |key, body: &str| request("POST", "/v1/match", key, body.to_owned());

    let answer = send(&app, post(Some(ISP), &ok)).await;
    assert_eq!(answer.0, StatusCode::OK, "{}", answer.2);
    assert_eq!(answer.2["results"][0]["verdict"], "no_match");

    assert_problem(&send(&app, post(None, &ok)).await, "unauthorized");
    assert_problem(&send(&app, post(Some("wrong"), &ok)).await, "unauthorized");
    assert_problem(
        &send(&app, post(Some(OPS), &ok)).await,
        "admin-key-for-matching",
    );
    assert_problem(&send(&app, post(Some(ISP), "{")).await, "invalid-json");
    assert_problem(
        &send(&app, post(Some(ISP), r#"{"queries":[],"extra":1}"#)).await,
        "invalid-json",
    );
    assert_problem(
        &send(&app, post(Some(ISP), &md5_query("00"))).await,
        "invalid-query",
    );
    let four = format!(
        r#"{{"queries":[{}]}}"#,
        [r#"{"kind":"md5","hash":"00"}"#; 4].join(",")
    );
    assert_problem(&send(&app, post(Some(ISP), &four)).await, "batch-too-large");
    let big = format!(r#"{{"queries":[],"pad":"{}"}}"#, "x".repeat(4096));
    assert_problem(&send(&app, post(Some(ISP), &big)).await, "body-too-large");
    let other_list = format!(
        r#"{{"queries":[{{"kind":"md5","hash":"{}"}}],"lists":["empty"]}}"#,
        "0".repeat(32)
    );
    assert_problem(
        &send(&app, post(Some(ISP), &other_list)).await,
        "list-not-entitled",
    );
    let unknown_list = other_list.replace("empty", "nonesuch");
    assert_problem(
        &send(&app, post(Some(ISP), &unknown_list)).await,
        "list-not-entitled",
    );

    // The rate limit: one request a second, so the second of two in a row waits.
    let first = send(&app, post(Some(SLOW), &ok)).await;
    assert_eq!(first.0, StatusCode::OK);
    let response = app.clone().oneshot(post(Some(SLOW), &ok)).await.unwrap();
    assert!(response.headers().contains_key(header::RETRY_AFTER));
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let body: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(body["type"], "urn:hashsieve:problem:rate-limited");

    let get = |uri: &str, key| request("GET", uri, key, Body::empty());
    assert_problem(
        &send(&app, get("/v1/match/sha512/00", Some(ISP))).await,
        "invalid-query",
    );
    assert_problem(
        &send(&app, get("/v1/match/md5/%ff", Some(ISP))).await,
        "invalid-query",
    );
    let quality = format!("/v1/match/md5/{}?quality=50&x=1", "0".repeat(32));
    assert_problem(&send(&app, get(&quality, Some(ISP))).await, "invalid-query");
    assert_problem(&send(&app, get("/v1/lists", None)).await, "unauthorized");
    assert_problem(&send(&app, get("/nope", None)).await, "not-found");
    assert_problem(
        &send(
            &app,
            request("DELETE", "/v1/match", Some(ISP), Body::empty()),
        )
        .await,
        "method-not-allowed",
    );
    // `empty` has no version: not ready, with a Retry-After.
    let ready = send(&app, get("/readyz", None)).await;
    assert_problem(&ready, "not-ready");
    assert!(
        ready.2["detail"]
            .as_str()
            .unwrap()
            .contains("empty: no verified version")
    );

    // Uploads: admin only, to a configured list, multipart with a file and its signature.
    let upload = |list: &str, key, content_type: &str, body: &str| {
        let mut r = request(
            "POST",
            &format!("/v1/admin/hashsets/{list}"),
            key,
            body.to_owned(),
        );
        r.headers_mut()
            .insert(header::CONTENT_TYPE, content_type.parse().unwrap());
        r
    };
    let form = "multipart/form-data; boundary=XX";
    let parts = |file: &str| {
        format!(
            "--XX\r\nContent-Disposition: form-data; name=\"file\"\r\n\r\n{file}\r\n\
             --XX\r\nContent-Disposition: form-data; name=\"signature\"\r\n\r\nnot a signature\r\n--XX--\r\n"
        )
    };
    assert_problem(
        &send(&app, upload("alpha", Some(ISP), form, &parts("x"))).await,
        "admin-only",
    );
    assert_problem(
        &send(&app, upload("alpha", None, form, &parts("x"))).await,
        "unauthorized",
    );
    assert_problem(
        &send(&app, upload("nonesuch", Some(OPS), form, &parts("x"))).await,
        "not-found",
    );
    assert_problem(
        &send(&app, upload("alpha", Some(OPS), "text/plain", "x")).await,
        "invalid-upload",
    );
    let only_file = "--XX\r\nContent-Disposition: form-data; name=\"file\"\r\n\r\nx\r\n--XX--\r\n";
    assert_problem(
        &send(&app, upload("alpha", Some(OPS), form, only_file)).await,
        "invalid-upload",
    );
    assert_problem(
        &send(&app, upload("alpha", Some(OPS), form, &parts("not a set"))).await,
        "update-refused",
    );
    state.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_bodies_get_problems_not_failures() {
    let (state, _dir) = tokio::task::spawn_blocking(state).await.unwrap();
    let app = router(Arc::clone(&state));
    let post = |body: Vec<u8>| request("POST", "/v1/match", Some(ISP), body);
    let nested = format!("{}{}", "[".repeat(1000), "]".repeat(1000)).into_bytes();
    for (body, kind) in [
        (nested, "invalid-json"),
        (b"\xff\xfe{}".to_vec(), "invalid-json"),
        (b"".to_vec(), "invalid-json"),
        (
            br#"{"queries":[{"kind":"md5","hash":"00","quality":999}]}"#.to_vec(),
            "invalid-json",
        ),
        (
            br#"{"queries":[{"kind":"pdq","hash":"00","quality":7}]}"#.to_vec(),
            "invalid-query",
        ),
        (
            format!(
                r#"{{"queries":[{{"kind":"md5","hash":"{}","quality":5}}]}}"#,
                "0".repeat(32)
            )
            .into_bytes(),
            "invalid-query",
        ),
        (
            br#"{"queries":[{"kind":"md5\u0000","hash":"00"}]}"#.to_vec(),
            "invalid-query",
        ),
    ] {
        assert_problem(&send(&app, post(body)).await, kind);
    }
    // A streamed body that lies about its length ends as a problem too, not a hang or a 5xx.
    let mut r = post(b"{\"queries\":[".to_vec());
    r.headers_mut()
        .insert(header::CONTENT_LENGTH, "2047".parse().unwrap());
    let answer = send(&app, r).await;
    assert!(answer.0.is_client_error(), "{answer:?}");
    state.stop();
}

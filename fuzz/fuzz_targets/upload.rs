//! Fuzzes the admin upload, `POST /v1/admin/hashsets/{list}`, through the service's own
//! router: the input is the multipart body (boundary `fuzz`), read by axum's parser and then
//! by the handler (fields, sizes, UTF-8 signatures) and, when it holds a file and a
//! signature, by the verifier on the updater thread.
//!
//! Oracle: no panic and never a 5xx: bad uploads are 400, 413 or 422 with a problem.
//!
//! Run: `RUSTC_BOOTSTRAP=1 cargo fuzz run upload fuzz/corpus/upload fuzz/seeds/upload -- -max_total_time=600`
#![no_main]

use std::sync::{Arc, OnceLock};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use hashsieve::config::Config;
use hashsieve::server::AppState;
use libfuzzer_sys::fuzz_target;
use tower::ServiceExt as _;

const ADMIN: &str = "fuzz-admin-key";

struct Harness {
    runtime: tokio::runtime::Runtime,
    router: axum::Router,
    _dir: tempfile::TempDir,
}

fn harness() -> &'static Harness {
    static H: OnceLock<Harness> = OnceLock::new();
    H.get_or_init(|| {
        use sha2::Digest as _;
        let dir = tempfile::tempdir().expect("a temp dir");
        let key = minisign::KeyPair::generate_unencrypted_keypair().expect("a key");
        let admin: String = sha2::Sha256::digest(ADMIN.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let text = format!(
            "state_dir = \"state\"\naudit_log = \"audit.jsonl\"\n[limits]\nmax_set_bytes = 65536\n\
             [[lists]]\nname = \"alpha\"\nsource = \"upload\"\npublic_keys = [\"{}\"]\n\
             [[admins]]\nname = \"ops\"\nkey_sha256 = \"{admin}\"\n",
            key.pk.to_base64()
        );
        let path = dir.path().join("hashsieve.toml");
        std::fs::write(&path, text).expect("config");
        let config = Config::load(&path).expect("a valid config");
        let state: Arc<AppState> = AppState::start(config).expect("the service starts");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        let router = hashsieve::server::api::router(state);
        Harness {
            runtime,
            router,
            _dir: dir,
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let h = harness();
    let request = Request::post("/v1/admin/hashsets/alpha")
        .header("authorization", format!("Bearer {ADMIN}"))
        .header("content-type", "multipart/form-data; boundary=fuzz")
        .body(Body::from(data.to_vec()))
        .expect("a request");
    let response = h
        .runtime
        .block_on(h.router.clone().oneshot(request))
        .expect("the router answers");
    let status = response.status();
    assert!(!status.is_server_error(), "upload answered {status}");
    assert_ne!(
        status,
        StatusCode::OK,
        "an unsigned fuzz input was accepted"
    );
});

//! The HTTP endpoints (the contract in `docs/architecture.md`):
//!
//! | endpoint | who | what | file |
//! |---|---|---|---|
//! | `POST /v1/match` | partner | `{"queries":[{"kind","hash","quality"?}],"lists":[..]?}` → `{"results":[verdict],"lists":{name:version}}` | [`matching`] |
//! | `GET /v1/match/{kind}/{hash}` | partner | one verdict (`?quality=N` for PDQ); one path per kind in the OpenAPI document ([`schema`]) | [`matching`] |
//! | `POST /v1/match/video` | partner | `{"frames":[{"hash","quality"}],"lists":[..]?}` (one video's vPDQ frames) → `{"verdict","frames","matches":[{"list","version","category","ref","query_percent","compared_percent","frames"}],"images":[..],"lists"}` | [`video`] |
//! | `POST /v1/match/ndjson` | partner | one query per line in (`kind:hex[:quality]`, `{"kind","hash","quality"}` or a `hashsieve hash` record), one verdict line out per query, streamed | [`ndjson`] |
//! | `GET /v1/lists` | partner, admin | the lists the caller may see: version, counts, dates, signing key, last update and refusal | [`lists`] |
//! | `POST /v1/admin/hashsets/{list}` | admin | multipart `file` (set or delta) + `signature` (its .minisig; repeated for a threshold) | [`lists`] |
//! | `POST /v1/admin/quarantine/{list}/release` | admin | `{"ref"}`: an entry out of the flood quarantine | [`lists`] |
//! | `GET /healthz`, `/readyz`, `/metrics` | anyone | liveness; readiness (503 until every list serves an unexpired version); Prometheus text | [`health`] |
//!
//! Callers are extracted once per request ([`caller`]); handlers return
//! `Result<_, Problem>`, and every error is problem+json ([`super::problem`]). The verdict
//! JSON is [`crate::wire`]'s. Nothing here logs a query: hashes that did not match are never
//! written anywhere, and matches only to the audit log.
//!
//! Limits are enforced here rather than by `tower-http` layers because each must answer with
//! its own problem type (`body-too-large`, `timeout`) and they differ by route: a match body is
//! capped by `limits.max_body_bytes`, an upload by `limits.max_set_bytes`, and the NDJSON
//! stream has no total at all, only a longest line.

mod caller;
mod health;
mod lists;
mod matching;
mod ndjson;
mod schema;
#[cfg(test)]
mod tests;
mod urls;
mod video;

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Serialize;
use utoipa::{OpenApi, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use super::metrics::Endpoint;
use super::problem::Problem;

type Shared = State<Arc<AppState>>;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "hashsieve",
        description = "Match content against vetted hash lists by hash alone. Partners send hashes, never images. Errors are RFC 9457 application/problem+json with a stable type urn:hashsieve:problem:<name>."
    ),
    components(schemas(
        ProblemDoc,
        lists::ListsDoc,
        super::ListStatus,
        super::VideoRule,
        super::Refused,
        super::quarantine::Quarantined
    )),
    modifiers(&BearerAuth)
)]
struct ApiDoc;

/// Declares the bearer-key scheme the endpoints use.
struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// An RFC 9457 problem (schema of every error answer).
#[derive(Debug, Serialize, ToSchema)]
struct ProblemDoc {
    /// `urn:hashsieve:problem:<name>`, stable per kind of problem.
    #[serde(rename = "type")]
    kind: String,
    title: String,
    status: u16,
    detail: String,
}

/// The router over `state`, with request metrics and the request timeout around every route.
pub fn router(state: Arc<AppState>) -> Router {
    let (routes, openapi) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(matching::match_batch))
        .routes(routes!(ndjson::match_ndjson))
        .routes(routes!(matching::match_single))
        .routes(routes!(urls::match_url_prefixes))
        .routes(routes!(video::match_video))
        .routes(routes!(lists::lists))
        .routes(routes!(lists::admin_upload))
        .routes(routes!(lists::release_quarantine))
        .routes(routes!(health::healthz))
        .routes(routes!(health::readyz))
        .routes(routes!(health::metrics))
        .split_for_parts();
    // The document is generated from the handlers' annotations and the types' schemas
    // (utoipa), once, at start.
    let mut document = serde_json::to_value(&openapi).unwrap_or_default();
    schema::refine(&mut document);
    let document = Bytes::from(serde_json::to_vec_pretty(&document).unwrap_or_default());
    routes
        .route(
            "/openapi.json",
            get(move || async move {
                (
                    [(
                        header::CONTENT_TYPE,
                        HeaderValue::from_static("application/json"),
                    )],
                    document.clone(),
                )
            }),
        )
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        // Bodies are read by the handlers with the configured limit (and a problem+json
        // answer), not by axum's default extractor limit.
        .layer(DefaultBodyLimit::disable())
        .layer(middleware::from_fn_with_state(Arc::clone(&state), observe))
        .with_state(state)
}

/// Times every request (to the response head), applies the request timeout, and counts it
/// by endpoint (the route pattern, never the concrete path: it may hold a hash) and status.
async fn observe(State(state): Shared, mut request: Request, next: Next) -> Response {
    let endpoint = Endpoint::new(request.extensions().get::<axum::extract::MatchedPath>());
    let started = Instant::now();
    let limit = Duration::from_millis(state.config.limits.request_timeout_ms);
    // A body that may hold bytes is read through a shared slot (GETs, most of the traffic,
    // have none and go straight through).
    let unread = if axum::body::HttpBody::is_end_stream(request.body()) {
        None
    } else {
        let (parts, body) = request.into_parts();
        let slot = Arc::new(std::sync::Mutex::new(Some(body)));
        let tracked = Body::new(Tracked(Arc::clone(&slot)));
        request = Request::from_parts(parts, tracked);
        Some(slot)
    };
    let response = match tokio::time::timeout(limit, next.run(request)).await {
        Ok(r) => r,
        Err(_) => Problem::timeout(limit.as_millis()).into_response(),
    };
    // Answered without reading the body (a 401 to an upload, say): read what the client is
    // still sending, a little of it, so that it gets this answer rather than a reset. Only
    // once the handler has let go of the body (a stream still reads its own).
    if let Some(slot) = unread
        && Arc::strong_count(&slot) == 1
    {
        let leftover = slot.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(body) = leftover {
            drain(body).await;
        }
    }
    state.shared.metrics.request(
        endpoint,
        response.status().as_u16(),
        started.elapsed().as_secs_f64(),
    );
    response
}

/// A request body read through a shared slot, so that [`observe`] can drain what the
/// handler left unread.
struct Tracked(Arc<std::sync::Mutex<Option<Body>>>);

impl axum::body::HttpBody for Tracked {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        let mut slot = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let Some(body) = slot.as_mut() else {
            return std::task::Poll::Ready(None);
        };
        let frame = std::pin::Pin::new(body).poll_frame(cx);
        if matches!(frame, std::task::Poll::Ready(None)) {
            *slot = None;
        }
        frame
    }
}

/// Reads and discards at most 1 MiB of `body` for at most a second.
async fn drain(mut body: Body) {
    use http_body_util::BodyExt as _;
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        let mut read = 0usize;
        while let Some(Ok(frame)) = body.frame().await {
            read += frame.data_ref().map_or(0, Bytes::len);
            if read > 1 << 20 {
                break;
            }
        }
    })
    .await;
}

async fn not_found() -> Problem {
    Problem::not_found("no such endpoint; GET /openapi.json lists the API")
}

async fn method_not_allowed() -> Problem {
    Problem::method_not_allowed()
}

/// Reads a whole body up to `limit` bytes.
async fn read_body(body: Body, limit: usize) -> Result<Bytes, Problem> {
    axum::body::to_bytes(body, limit).await.map_err(|e| {
        let too_big = std::error::Error::source(&e)
            .is_some_and(|s| s.is::<http_body_util::LengthLimitError>());
        if too_big {
            Problem::body_too_large(format!(
                "the body is over {limit} bytes; send smaller batches or use /v1/match/ndjson"
            ))
        } else {
            Problem::unreadable_body(e.to_string())
        }
    })
}

/// `value` as a 200 JSON answer.
fn json_ok<T: Serialize>(value: &T) -> Response {
    // Room for a single verdict up front: growing from empty took several reallocations.
    let mut body = Vec::with_capacity(256);
    match serde_json::to_writer(&mut body, value) {
        Ok(()) => (
            StatusCode::OK,
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            body,
        )
            .into_response(),
        Err(e) => Problem::internal(format!("cannot encode the response: {e}")).into_response(),
    }
}

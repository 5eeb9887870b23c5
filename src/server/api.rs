//! The HTTP endpoints (the contract in DESIGN.md):
//!
//! | endpoint | who | what |
//! |---|---|---|
//! | `POST /v1/match` | partner | `{"queries":[{"kind","hash","quality"?}],"lists":[..]?}` → `{"results":[verdict],"lists":{name:version}}` |
//! | `POST /v1/match/ndjson` | partner | one query per line in (`kind:hex[:quality]`, `{"kind","hash","quality"}` or a `hashsieve hash` record), one verdict line out per query, streamed |
//! | `GET /v1/match/{kind}/{hash}` | partner | one verdict (`?quality=N` for PDQ) |
//! | `GET /v1/lists` | partner, admin | the lists the caller may see: version, counts, dates, signing key, last update and refusal |
//! | `POST /v1/admin/hashsets/{list}` | admin | multipart `file` (set or delta) + `signature` (its .minisig) |
//! | `GET /healthz`, `/readyz`, `/metrics` | anyone | liveness; readiness (503 until every list serves an unexpired version); Prometheus text |
//!
//! A verdict is `{"verdict":"match|no_match|low_quality","matches":[{"list","version","kind",
//! "category","ref","distance"}]}` everywhere (streamed and single answers add `"query"`);
//! `distance` is a number, coarsened or left out by the partner's `distance` setting. Errors are
//! problem+json ([`super::problem`]). Nothing here logs a query: hashes that did not match are
//! never written anywhere, and matches only to the audit log.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::rejection::PathRejection;
use axum::extract::{DefaultBodyLimit, Multipart, Path, Query as UrlQuery, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use utoipa::{OpenApi, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::audit::AuditRecord;
use super::auth::{Caller, PartnerAuth};
use super::problem::Problem;
use super::updates::Command;
use super::{AppState, Snapshot};
use crate::hashset::{now_unix, rfc3339};
use crate::index::query::parse_line;
use crate::index::{Decision, NearMiss, Query, Verdict, Verdicts};
use crate::kinds::{HashKind, HashValue};

type Shared = State<Arc<AppState>>;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "hashsieve",
        description = "Match content against vetted hash lists by hash alone. Partners send hashes, never images. Errors are RFC 9457 application/problem+json with a stable type urn:hashsieve:problem:<name>."
    ),
    components(schemas(ProblemDoc, ListsDoc, super::ListStatus, super::Refused)),
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

/// `GET /v1/lists`.
#[derive(Debug, Serialize, ToSchema)]
struct ListsDoc {
    lists: Vec<super::ListStatus>,
}

/// `POST /v1/match` answer.
#[derive(Debug, Serialize, ToSchema)]
struct MatchResponseDoc {
    results: Vec<VerdictOut<'static>>,
    /// List name to the version matched against.
    lists: BTreeMap<String, u64>,
}

/// `GET /healthz`.
#[derive(Debug, Serialize, ToSchema)]
struct Health {
    /// Always `ok`: the process answers.
    status: &'static str,
}

/// `GET /readyz` when every list serves.
#[derive(Debug, Serialize, ToSchema)]
struct Ready<'a> {
    /// Always `ready`.
    status: &'static str,
    /// List name to the version it serves.
    lists: &'a BTreeMap<String, u64>,
}

/// `POST /v1/admin/hashsets/{list}` accepted: the version now serving.
#[derive(Debug, Serialize, ToSchema)]
struct Accepted {
    list: String,
    version: u64,
}

/// The router over `state`, with request metrics and the request timeout around every route.
pub fn router(state: Arc<AppState>) -> Router {
    let (routes, openapi) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(match_batch))
        .routes(routes!(match_ndjson))
        .routes(routes!(match_single))
        .routes(routes!(lists))
        .routes(routes!(admin_upload))
        .routes(routes!(healthz))
        .routes(routes!(readyz))
        .routes(routes!(metrics))
        .split_for_parts();
    // The document is generated from the handlers' annotations and the types' schemas
    // (utoipa), once, at start.
    let document = Arc::new(openapi.to_pretty_json().unwrap_or_default());
    routes
        .route(
            "/openapi.json",
            get(move || {
                let document = Arc::clone(&document);
                async move {
                    (
                        [(
                            header::CONTENT_TYPE,
                            HeaderValue::from_static("application/json"),
                        )],
                        (*document).clone(),
                    )
                }
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
async fn observe(State(state): Shared, request: Request, next: Next) -> Response {
    let endpoint = request
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or("unmatched", |p| p.as_str())
        .to_owned();
    let started = Instant::now();
    let limit = Duration::from_millis(state.config.limits.request_timeout_ms);
    let response = match tokio::time::timeout(limit, next.run(request)).await {
        Ok(r) => r,
        Err(_) => Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "timeout",
            "Request took too long",
            format!(
                "no answer within {} ms; send smaller batches",
                limit.as_millis()
            ),
        )
        .into_response(),
    };
    state.shared.metrics.request(
        &endpoint,
        response.status().as_u16(),
        started.elapsed().as_secs_f64(),
    );
    response
}

async fn not_found() -> Problem {
    Problem::not_found("no such endpoint; see DESIGN.md for the API")
}

async fn method_not_allowed() -> Problem {
    Problem::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method-not-allowed",
        "Method not allowed",
        "this endpoint does not take that method",
    )
}

/// The calling partner, rate-limited; admins and unknown keys are refused.
fn partner<'a>(state: &'a AppState, headers: &HeaderMap) -> Result<&'a PartnerAuth, Problem> {
    match state.auth.caller(headers) {
        None => Err(Problem::unauthorized()),
        Some(Caller::Admin(_)) => Err(Problem::new(
            StatusCode::FORBIDDEN,
            "admin-key-for-matching",
            "Admin keys cannot match",
            "use a partner key for matching; admin keys only manage lists",
        )),
        Some(Caller::Partner(p)) => {
            p.admit().map_err(|wait| Problem {
                retry_after: Some(wait),
                ..Problem::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "rate-limited",
                    "Rate limit exceeded",
                    format!(
                        "partner {} is over its request rate; retry after {wait} s",
                        p.name
                    ),
                )
            })?;
            Ok(p)
        }
    }
}

/// Reads a whole body up to `limit` bytes.
async fn read_body(body: Body, limit: usize) -> Result<Bytes, Problem> {
    axum::body::to_bytes(body, limit).await.map_err(|e| {
        let too_big = std::error::Error::source(&e)
            .is_some_and(|s| s.is::<http_body_util::LengthLimitError>());
        if too_big {
            Problem::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body-too-large",
                "Request body too large",
                format!(
                    "the body is over {limit} bytes; send smaller batches or use /v1/match/ndjson"
                ),
            )
        } else {
            Problem::bad_request(
                "unreadable-body",
                "Request body could not be read",
                e.to_string(),
            )
        }
    })
}

/// `POST /v1/match` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct MatchRequest<'a> {
    #[serde(borrow)]
    queries: Vec<QueryIn<'a>>,
    #[serde(default)]
    lists: Option<Vec<String>>,
}

// The strings borrow from the request body unless they hold escapes: two allocations per
// query (and their frees) were ~6% of the server's time on batches of 1 000 (`perf record
// --call-graph dwarf` under `scripts/load_test.sh`). (A `//` comment: doc comments here are
// the OpenAPI description partners read.)
/// One hash to look up.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct QueryIn<'a> {
    /// md5, sha1, sha256, blake3, pdq, phash, dhash or ahash.
    #[serde(borrow)]
    #[schema(value_type = String)]
    kind: Cow<'a, str>,
    /// Lowercase or uppercase hex of the kind's length.
    #[serde(borrow)]
    #[schema(value_type = String)]
    hash: Cow<'a, str>,
    /// PDQ quality (0-100); under 50 gives verdict `low_quality`.
    #[serde(default)]
    quality: Option<u8>,
}

fn to_query(q: &QueryIn<'_>) -> Result<Query, String> {
    let kind: HashKind = q.kind.parse().map_err(|e| format!("kind: {e}"))?;
    let hash = HashValue::parse(kind, &q.hash).map_err(|e| format!("hash: {e}"))?;
    match q.quality {
        Some(v) if v > 100 => Err(format!("quality: {v} is over 100")),
        Some(_) if kind != HashKind::Pdq => Err("quality: only pdq queries take a quality".into()),
        quality => Ok(Query { hash, quality }),
    }
}

fn invalid_query(detail: String) -> Problem {
    Problem::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid-query",
        "Invalid query",
        detail,
    )
}

/// One reported match, as the partner may see it.
#[derive(Debug, Serialize, ToSchema)]
struct MatchOut<'a> {
    list: &'a str,
    version: u64,
    kind: &'static str,
    category: &'a str,
    #[serde(rename = "ref")]
    reference: &'a str,
    /// Hamming distance (0 for exact kinds); coarsened or absent per the partner's policy.
    #[serde(skip_serializing_if = "Option::is_none")]
    distance: Option<u32>,
}

#[derive(Debug, Serialize, ToSchema)]
struct QueryEcho {
    kind: &'static str,
    hash: String,
}

/// The verdict for one query.
#[derive(Debug, Serialize, ToSchema)]
struct VerdictOut<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    query: Option<QueryEcho>,
    /// `match`, `no_match` or `low_quality`.
    #[schema(value_type = String)]
    verdict: Decision,
    matches: Vec<MatchOut<'a>>,
}

/// Matches `queries` for `partner` against the entitled lists (narrowed to `only` when
/// given), drops the matches of low-quality queries for lists that do not report them,
/// writes the audit log and the metrics. Only the queries that are not a plain miss are
/// visited (a batch of 1 000 holds about ten).
fn answer(
    state: &AppState,
    snapshot: &Snapshot,
    partner: &PartnerAuth,
    queries: &[Query],
    only: Option<&BTreeSet<String>>,
) -> Verdicts {
    let include = |name: &str| partner.may_see(name) && only.is_none_or(|o| o.contains(name));
    let limits = &state.config.limits;
    let near = NearMiss {
        bits: limits.near_miss_bits,
        every: limits.near_miss_sample,
    };
    let answers = snapshot.index.match_batch_near(queries, &include, near);
    if answers.near_misses > 0 {
        // Each sampled near miss stands for `every` queries.
        let estimate = answers.near_misses as u64 * u64::from(near.every);
        state.shared.metrics.near_misses(&partner.name, estimate);
    }
    let mut verdicts = answers.verdicts;
    let reports_low_quality = |list: &str| {
        state
            .config
            .lists
            .iter()
            .any(|l| l.name == list && l.report_low_quality)
    };
    let time = rfc3339(now_unix());
    let mut audit = Vec::new();
    let mut per_list: BTreeMap<&str, u64> = BTreeMap::new();
    for (i, v) in verdicts.decided_mut() {
        let q = &queries[i];
        if v.verdict == Decision::LowQuality {
            v.matches.retain(|m| reports_low_quality(&m.list));
        }
        for m in &v.matches {
            *per_list.entry(&m.list).or_default() += 1;
            audit.push(AuditRecord {
                time: &time,
                partner: &partner.name,
                list: &m.list,
                version: m.version,
                reference: &m.reference,
                kind: q.hash.kind().name(),
                distance: m.distance,
            });
        }
    }
    if let Err(e) = state.audit.append(&audit) {
        // The match is still answered; the operator must see that auditing failed.
        tracing::error!(path = %state.audit.path().display(), error = %e, "audit log write failed");
    }
    for (list, n) in per_list {
        state.shared.metrics.matched(list, n);
    }
    state
        .shared
        .metrics
        .queries(&partner.name, queries.len() as u64);
    verdicts
}

fn render<'a>(partner: &PartnerAuth, v: &'a Verdict, query: Option<&Query>) -> VerdictOut<'a> {
    VerdictOut {
        query: query.map(|q| QueryEcho {
            kind: q.hash.kind().name(),
            hash: q.hash.to_hex(),
        }),
        verdict: v.verdict,
        matches: v
            .matches
            .iter()
            .map(|m| MatchOut {
                list: &m.list,
                version: m.version,
                kind: m.kind.name(),
                category: &m.category,
                reference: &m.reference,
                distance: partner.distance.apply(m.distance),
            })
            .collect(),
    }
}

/// The versions of the lists `partner` may see (narrowed to `only`), as served by `snapshot`.
fn served(
    snapshot: &Snapshot,
    partner: &PartnerAuth,
    only: Option<&BTreeSet<String>>,
) -> BTreeMap<String, u64> {
    snapshot
        .versions
        .iter()
        .filter(|(name, _)| partner.may_see(name) && only.is_none_or(|o| o.contains(*name)))
        .map(|(n, v)| (n.clone(), *v))
        .collect()
}

/// Checks an explicit list selection: every name configured (else 404) and entitled (403).
fn select_lists(
    state: &AppState,
    partner: &PartnerAuth,
    lists: Option<Vec<String>>,
) -> Result<Option<BTreeSet<String>>, Problem> {
    let Some(lists) = lists else { return Ok(None) };
    for name in &lists {
        // An unknown list and a list not entitled look the same to a partner: what lists
        // exist is not theirs to learn.
        let configured = state.config.lists.iter().any(|l| &l.name == name);
        if !configured || !partner.may_see(name) {
            return Err(Problem::new(
                StatusCode::FORBIDDEN,
                "list-not-entitled",
                "List not available to this partner",
                format!(
                    "partner {} may not match against list {name:?}",
                    partner.name
                ),
            ));
        }
    }
    Ok(Some(lists.into_iter().collect()))
}

fn json_response<T: Serialize>(status: StatusCode, value: &T) -> Response {
    match serde_json::to_vec(value) {
        Ok(body) => (
            status,
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            body,
        )
            .into_response(),
        Err(e) => Problem::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "Internal error",
            format!("cannot encode the response: {e}"),
        )
        .into_response(),
    }
}

/// Batches up to this size are matched on the request's task; larger ones on the blocking
/// pool, so that a big PDQ batch does not stall other requests.
const INLINE_QUERIES: usize = 256;

async fn run_answer(
    state: &Arc<AppState>,
    snapshot: Arc<Snapshot>,
    partner_name: &str,
    queries: Vec<Query>,
    only: Option<BTreeSet<String>>,
) -> Result<(Arc<Snapshot>, Vec<Query>, Verdicts), Problem> {
    if queries.len() <= INLINE_QUERIES {
        let partner = state
            .auth
            .partner_named(partner_name)
            .ok_or_else(Problem::unauthorized)?;
        let verdicts = answer(state, &snapshot, partner, &queries, only.as_ref());
        return Ok((snapshot, queries, verdicts));
    }
    let state = Arc::clone(state);
    let name = partner_name.to_owned();
    tokio::task::spawn_blocking(move || {
        let partner = state
            .auth
            .partner_named(&name)
            .ok_or_else(Problem::unauthorized)?;
        let verdicts = answer(&state, &snapshot, partner, &queries, only.as_ref());
        Ok((snapshot, queries, verdicts))
    })
    .await
    .unwrap_or_else(|e| {
        Err(Problem::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "Internal error",
            format!("matching failed: {e}"),
        ))
    })
}

/// Match a batch of hashes.
#[utoipa::path(
    post,
    path = "/v1/match",
    request_body = MatchRequest<'static>,
    responses(
        (status = 200, description = "One verdict per query, in order", body = MatchResponseDoc),
        (status = 400, description = "Not a match request", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 401, description = "Missing or unknown key", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 403, description = "List not entitled, or an admin key", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 413, description = "Body or batch too large", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 422, description = "A query is invalid", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 429, description = "Rate limited (Retry-After)", body = ProblemDoc, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
async fn match_batch(State(state): Shared, headers: HeaderMap, body: Body) -> Response {
    match match_batch_inner(&state, &headers, body).await {
        Ok(r) => r,
        Err(p) => p.into_response(),
    }
}

async fn match_batch_inner(
    state: &Arc<AppState>,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, Problem> {
    let partner = partner(state, headers)?;
    let bytes = read_body(body, state.config.limits.max_body_bytes).await?;
    let request: MatchRequest<'_> = serde_json::from_slice(&bytes).map_err(|e| {
        Problem::bad_request(
            "invalid-json",
            "Request body is not a valid match request",
            format!(
                "{e}; expected {{\"queries\":[{{\"kind\",\"hash\",\"quality\"?}}],\"lists\":[..]?}}"
            ),
        )
    })?;
    let max = state.config.limits.max_batch;
    if request.queries.len() > max {
        return Err(Problem::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "batch-too-large",
            "Too many queries in one request",
            format!(
                "{} queries; at most {max} per request (or stream any number to /v1/match/ndjson)",
                request.queries.len()
            ),
        ));
    }
    let queries = request
        .queries
        .iter()
        .enumerate()
        .map(|(i, q)| to_query(q).map_err(|e| invalid_query(format!("queries[{i}].{e}"))))
        .collect::<Result<Vec<_>, _>>()?;
    let only = select_lists(state, partner, request.lists)?;
    let snapshot = state.shared.snapshot.load_full();
    let name = partner.name.clone();
    let (snapshot, _queries, verdicts) =
        run_answer(state, snapshot, &name, queries, only.clone()).await?;
    #[derive(Serialize)]
    struct Out<'a> {
        results: Vec<VerdictOut<'a>>,
        lists: BTreeMap<String, u64>,
    }
    let out = Out {
        results: verdicts.iter().map(|v| render(partner, v, None)).collect(),
        lists: served(&snapshot, partner, only.as_ref()),
    };
    Ok(json_response(StatusCode::OK, &out))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct SingleParams {
    /// PDQ quality (0-100).
    quality: Option<u8>,
}

/// Match one hash (inline blocking).
#[utoipa::path(
    get,
    path = "/v1/match/{kind}/{hash}",
    params(
        ("kind" = String, Path, description = "md5, sha1, sha256, blake3, pdq, phash, dhash or ahash"),
        ("hash" = String, Path, description = "hex"),
        SingleParams,
    ),
    responses(
        (status = 200, description = "The verdict, with its query and the lists matched", body = VerdictOut<'static>),
        (status = 401, description = "Missing or unknown key", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 422, description = "Invalid kind, hash or quality", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 429, description = "Rate limited", body = ProblemDoc, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
async fn match_single(
    State(state): Shared,
    headers: HeaderMap,
    path: Result<Path<(String, String)>, PathRejection>,
    params: Result<UrlQuery<SingleParams>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let result = async {
        let partner = partner(&state, &headers)?;
        // A path that is not UTF-8 after decoding (`/v1/match/md5/%ff`) is an invalid query,
        // answered like the others (axum's own rejection is plain text).
        let Path((kind, hash)) =
            path.map_err(|e| invalid_query(format!("path: {}", e.body_text())))?;
        let params =
            params.map_err(|e| invalid_query(format!("query string: {}", e.body_text())))?;
        let query = to_query(&QueryIn {
            kind: Cow::Owned(kind),
            hash: Cow::Owned(hash),
            quality: params.quality,
        })
        .map_err(invalid_query)?;
        let snapshot = state.shared.snapshot.load_full();
        let verdicts = answer(&state, &snapshot, partner, &[query], None);
        #[derive(Serialize)]
        struct Out<'a> {
            #[serde(flatten)]
            verdict: VerdictOut<'a>,
            lists: BTreeMap<String, u64>,
        }
        let verdict = verdicts.iter().next().ok_or_else(|| {
            Problem::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "Internal error",
                "no verdict for the query",
            )
        })?;
        let out = Out {
            verdict: render(partner, verdict, Some(&query)),
            lists: served(&snapshot, partner, None),
        };
        Ok::<_, Problem>(json_response(StatusCode::OK, &out))
    }
    .await;
    result.unwrap_or_else(IntoResponse::into_response)
}

/// Longest line `/v1/match/ndjson` accepts (a `hashsieve hash --dihedral` record is ~1 KB).
const MAX_LINE: usize = 64 * 1024;
/// Lines matched together in `/v1/match/ndjson`.
const NDJSON_BATCH: usize = 1024;

/// Stream any number of queries, one per line; one verdict (or `{"line","error"}`) per line out.
#[utoipa::path(
    post,
    path = "/v1/match/ndjson",
    request_body(content = String, content_type = "application/x-ndjson", description = "`kind:hex[:quality]`, `{\"kind\",\"hash\"}` or `hashsieve hash` records, one per line"),
    responses(
        (status = 200, description = "One verdict line per query", content_type = "application/x-ndjson", body = String),
        (status = 401, description = "Missing or unknown key", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 429, description = "Rate limited", body = ProblemDoc, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
async fn match_ndjson(State(state): Shared, headers: HeaderMap, body: Body) -> Response {
    let partner = match partner(&state, &headers) {
        Ok(p) => p.name.clone(),
        Err(p) => return p.into_response(),
    };
    let snapshot = state.shared.snapshot.load_full();
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(4);
    tokio::spawn(stream_ndjson(state, snapshot, partner, body, tx));
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|b| (Ok::<_, Infallible>(b), rx))
    });
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/x-ndjson"),
        )],
        Body::from_stream(stream),
    )
        .into_response()
}

/// One parsed input line of `/v1/match/ndjson`: its queries, or why it is not one.
type Line = (usize, Result<Vec<Query>, String>);

fn parse_ndjson_line(text: &[u8]) -> Result<Vec<Query>, String> {
    let text = std::str::from_utf8(text).map_err(|e| format!("not UTF-8: {e}"))?;
    let trimmed = text.trim();
    if trimmed.starts_with('{') && trimmed.contains("\"kind\"") {
        let q: QueryIn<'_> = serde_json::from_str(trimmed).map_err(|e| e.to_string())?;
        return to_query(&q).map(|q| vec![q]);
    }
    parse_line(trimmed)
}

async fn stream_ndjson(
    state: Arc<AppState>,
    snapshot: Arc<Snapshot>,
    partner: String,
    body: Body,
    tx: tokio::sync::mpsc::Sender<Bytes>,
) {
    let mut data = body.into_data_stream();
    let mut pending: Vec<u8> = Vec::new();
    let mut lines: Vec<Line> = Vec::new();
    let mut line_no = 0usize;
    let mut queued = 0usize;
    loop {
        let chunk = data.next().await;
        let done = match chunk {
            Some(Ok(bytes)) => {
                pending.extend_from_slice(&bytes);
                false
            }
            Some(Err(e)) => {
                let _ = tx
                    .send(error_line(line_no + 1, &format!("reading the body: {e}")))
                    .await;
                return;
            }
            None => true,
        };
        let mut start = 0;
        while let Some(pos) = pending[start..].iter().position(|&b| b == b'\n') {
            line_no += 1;
            let parsed = parse_ndjson_line(&pending[start..start + pos]);
            queued += parsed.as_ref().map_or(1, Vec::len);
            lines.push((line_no, parsed));
            start += pos + 1;
        }
        pending.drain(..start);
        if done && !pending.is_empty() {
            line_no += 1;
            let parsed = parse_ndjson_line(&pending);
            lines.push((line_no, parsed));
            pending.clear();
        }
        if pending.len() > MAX_LINE {
            let _ = tx
                .send(error_line(
                    line_no + 1,
                    &format!("line longer than {MAX_LINE} bytes; stopping"),
                ))
                .await;
            return;
        }
        if queued >= NDJSON_BATCH || done {
            let batch = std::mem::take(&mut lines);
            queued = 0;
            let out = match ndjson_batch(&state, &snapshot, &partner, batch).await {
                Ok(out) => out,
                Err(p) => error_line(line_no, &p.detail),
            };
            if tx.send(out).await.is_err() {
                return; // the client went away
            }
        }
        if done {
            return;
        }
    }
}

async fn ndjson_batch(
    state: &Arc<AppState>,
    snapshot: &Arc<Snapshot>,
    partner: &str,
    lines: Vec<Line>,
) -> Result<Bytes, Problem> {
    let queries: Vec<Query> = lines
        .iter()
        .filter_map(|(_, r)| r.as_ref().ok())
        .flatten()
        .copied()
        .collect();
    let (_, queries, verdicts) =
        run_answer(state, Arc::clone(snapshot), partner, queries, None).await?;
    let who = state
        .auth
        .partner_named(partner)
        .ok_or_else(Problem::unauthorized)?;
    let mut out = Vec::new();
    let mut next = queries.iter().zip(verdicts.iter());
    for (line, parsed) in &lines {
        match parsed {
            Ok(qs) => {
                for _ in qs {
                    if let Some((q, v)) = next.next() {
                        let _ = serde_json::to_writer(&mut out, &render(who, v, Some(q)));
                        out.push(b'\n');
                    }
                }
            }
            Err(e) => {
                out.extend_from_slice(&error_line(*line, e));
            }
        }
    }
    Ok(Bytes::from(out))
}

fn error_line(line: usize, error: &str) -> Bytes {
    let mut out = serde_json::to_vec(&serde_json::json!({ "line": line, "error": error }))
        .unwrap_or_default();
    out.push(b'\n');
    Bytes::from(out)
}

/// The lists the caller may see.
#[utoipa::path(
    get,
    path = "/v1/lists",
    responses(
        (status = 200, description = "Lists with versions, counts, dates, signing key, last update and refusal", body = ListsDoc),
        (status = 401, description = "Missing or unknown key", body = ProblemDoc, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
async fn lists(State(state): Shared, headers: HeaderMap) -> Response {
    let visible: Box<dyn Fn(&str) -> bool> = match state.auth.caller(&headers) {
        None => return Problem::unauthorized().into_response(),
        Some(Caller::Admin(_)) => Box::new(|_| true),
        Some(Caller::Partner(p)) => Box::new(move |name| p.may_see(name)),
    };
    let lists: Vec<_> = state
        .shared
        .statuses()
        .into_iter()
        .filter(|s| visible(&s.name))
        .collect();
    json_response(StatusCode::OK, &serde_json::json!({ "lists": lists }))
}

/// Upload a signed set or delta for a list (admins).
#[utoipa::path(
    post,
    path = "/v1/admin/hashsets/{list}",
    params(("list" = String, Path, description = "configured list name")),
    request_body(content = String, content_type = "multipart/form-data", description = "fields `file` (.hset or .hdelta) and `signature` (its .minisig)"),
    responses(
        (status = 200, description = "Accepted: the version now serving", body = Accepted),
        (status = 400, description = "Not a valid upload", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 401, description = "Missing or unknown key", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 403, description = "Not an admin key", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 404, description = "No such list", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 413, description = "Too large", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 422, description = "Refused (reason in detail); the previous version keeps serving", body = ProblemDoc, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
async fn admin_upload(
    State(state): Shared,
    headers: HeaderMap,
    path: Result<Path<String>, PathRejection>,
    multipart: Result<Multipart, axum::extract::multipart::MultipartRejection>,
) -> Response {
    let result = async {
        match state.auth.caller(&headers) {
            Some(Caller::Admin(_)) => {}
            Some(Caller::Partner(p)) if p.lists.is_some() => {
                return Err(Problem::new(
                    StatusCode::FORBIDDEN,
                    "admin-only",
                    "Admin key required",
                    "uploading hash sets needs an admin key",
                ));
            }
            // The demo has no admins: uploads need a configured admin key.
            _ => return Err(Problem::unauthorized()),
        }
        // A name that is not UTF-8 after decoding names no configured list.
        let Path(list) = path
            .map_err(|e| Problem::not_found(format!("no such list: {}", e.body_text())))?;
        if !state.config.lists.iter().any(|l| l.name == list) {
            return Err(Problem::not_found(format!("no list named {list:?} is configured")));
        }
        let mut multipart = multipart.map_err(|e| {
            Problem::bad_request("invalid-upload", "Upload is not multipart/form-data", e.body_text())
        })?;
        let (mut file, mut signature) = (None, None);
        let limit = usize::try_from(state.config.limits.max_set_bytes).unwrap_or(usize::MAX);
        while let Some(field) = multipart.next_field().await.map_err(|e| {
            Problem::bad_request("invalid-upload", "Upload could not be read", e.body_text())
        })? {
            let name = field.name().unwrap_or_default().to_owned();
            let bytes = read_field(field, limit).await?;
            match name.as_str() {
                "file" => file = Some(bytes),
                "signature" => signature = Some(bytes),
                other => {
                    return Err(Problem::bad_request(
                        "invalid-upload",
                        "Unexpected upload field",
                        format!("field {other:?}; expected `file` and `signature`"),
                    ));
                }
            }
        }
        let (Some(file), Some(signature)) = (file, signature) else {
            return Err(Problem::bad_request(
                "invalid-upload",
                "Upload needs a file and its signature",
                "send multipart fields `file` (the .hset or .hdelta) and `signature` (its .minisig)",
            ));
        };
        let signature = String::from_utf8(signature.to_vec()).map_err(|_| {
            Problem::bad_request("invalid-upload", "Signature is not text", "the .minisig must be UTF-8")
        })?;
        let (reply, answer) = tokio::sync::oneshot::channel();
        let sent = state.send(Command::Offer {
            list: list.clone(),
            bytes: file.to_vec(),
            signature,
            reply,
        });
        let outcome = if sent { answer.await.ok() } else { None };
        match outcome {
            Some(Ok(version)) => Ok(json_response(StatusCode::OK, &Accepted { list, version })),
            Some(Err(reason)) => Err(Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "update-refused",
                "Hash set refused",
                reason,
            )),
            None => Err(Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "updater-stopped",
                "Updates are not being taken",
                "the service is shutting down",
            )),
        }
    }
    .await;
    result.unwrap_or_else(IntoResponse::into_response)
}

async fn read_field(
    mut field: axum::extract::multipart::Field<'_>,
    limit: usize,
) -> Result<Bytes, Problem> {
    let mut out = Vec::new();
    while let Some(chunk) = field.chunk().await.map_err(|e| {
        Problem::bad_request("invalid-upload", "Upload could not be read", e.body_text())
    })? {
        if out.len() + chunk.len() > limit {
            return Err(Problem::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body-too-large",
                "Upload too large",
                format!("over the limit of {limit} bytes (limits.max_set_bytes)"),
            ));
        }
        out.extend_from_slice(&chunk);
    }
    Ok(Bytes::from(out))
}

/// Liveness.
#[utoipa::path(get, path = "/healthz", responses((status = 200, description = "The process answers", body = Health)))]
async fn healthz() -> Response {
    json_response(StatusCode::OK, &Health { status: "ok" })
}

/// Readiness: every configured list serves an unexpired verified version.
#[utoipa::path(
    get,
    path = "/readyz",
    responses(
        (status = 200, description = "Every list serves a verified, unexpired version", body = Ready<'static>),
        (status = 503, description = "Not ready (which lists, why)", body = ProblemDoc, content_type = "application/problem+json"),
    )
)]
async fn readyz(State(state): Shared) -> Response {
    let snapshot = state.shared.snapshot.load();
    let now = now_unix();
    let statuses = state.shared.statuses();
    let mut missing = Vec::new();
    for l in &state.config.lists {
        let expired = statuses
            .iter()
            .find(|s| s.name == l.name)
            .and_then(|s| s.expires_unix)
            .is_some_and(|e| e <= now);
        if expired {
            missing.push(format!("{}: its latest version has expired", l.name));
        } else if !snapshot.versions.contains_key(&l.name) {
            missing.push(format!("{}: no verified version", l.name));
        }
    }
    if missing.is_empty() {
        json_response(
            StatusCode::OK,
            &Ready {
                status: "ready",
                lists: &snapshot.versions,
            },
        )
    } else {
        Problem {
            retry_after: Some(5),
            ..Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "not-ready",
                "Not ready",
                missing.join("; "),
            )
        }
        .into_response()
    }
}

/// Prometheus metrics.
#[utoipa::path(get, path = "/metrics", responses((status = 200, description = "Prometheus text format", content_type = "text/plain", body = String)))]
async fn metrics(State(state): Shared) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        )],
        state.shared.metrics.render(),
    )
        .into_response()
}

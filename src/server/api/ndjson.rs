//! `POST /v1/match/ndjson`: any number of queries, one per line, answered as a stream of
//! verdict lines, matched in batches of [`NDJSON_BATCH`] from one snapshot.

use std::convert::Infallible;
use std::sync::Arc;

use axum::body::{Body, BodyDataStream, Bytes};
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;

use super::caller::Partner;
use super::matching::{render, run_answer};
use super::{ProblemDoc, Shared};
use crate::index::Query;
use crate::index::query::parse_line;
use crate::server::auth::{PartnerAuth, Slot};
use crate::server::problem::Problem;
use crate::server::{AppState, Snapshot};
use crate::wire::QueryIn;

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
        (status = 400, description = "The body could not be read", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 401, description = "Missing or unknown key", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 403, description = "An admin key", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 422, description = "An empty body", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 429, description = "Rate limited, or too many requests at once (Retry-After)", body = ProblemDoc, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub(super) async fn match_ndjson(
    State(state): Shared,
    Partner(partner, slot): Partner,
    body: Body,
) -> Result<Response, Problem> {
    // An empty body is a mistake (a client that sent nothing), not a stream of no queries:
    // the first bytes are awaited before the answer starts.
    let mut data = body.into_data_stream();
    let first = loop {
        match data.next().await {
            Some(Ok(bytes)) if bytes.is_empty() => {}
            Some(Ok(bytes)) => break bytes,
            Some(Err(e)) => return Err(Problem::unreadable_body(e.to_string())),
            None => {
                return Err(Problem::invalid_query(
                    "the body is empty: send one query per line",
                ));
            }
        }
    };
    let snapshot = state.shared.snapshot.load_full();
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(4);
    tokio::spawn(stream_ndjson(
        state,
        snapshot,
        (partner, slot),
        (first, data),
        tx,
    ));
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|b| (Ok::<_, Infallible>(b), rx))
    });
    Ok((
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/x-ndjson"),
        )],
        Body::from_stream(stream),
    )
        .into_response())
}

/// One parsed input line of `/v1/match/ndjson`: its queries, or why it is not one.
type Line = (usize, Result<Vec<Query>, String>);

fn parse_ndjson_line(text: &[u8]) -> Result<Vec<Query>, String> {
    let text = std::str::from_utf8(text).map_err(|e| format!("not UTF-8: {e}"))?;
    let trimmed = text.trim();
    if trimmed.starts_with('{') && trimmed.contains("\"kind\"") {
        let q: QueryIn<'_> = serde_json::from_str(trimmed).map_err(|e| e.to_string())?;
        return q.to_query().map(|q| vec![q]);
    }
    parse_line(trimmed)
}

async fn stream_ndjson(
    state: Arc<AppState>,
    snapshot: Arc<Snapshot>,
    // The slot is held until the last line is answered.
    (partner, _slot): (Arc<PartnerAuth>, Slot),
    (first, mut data): (Bytes, BodyDataStream),
    tx: tokio::sync::mpsc::Sender<Bytes>,
) {
    let mut pending: Vec<u8> = first.to_vec();
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
    partner: &Arc<PartnerAuth>,
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
    let mut out = Vec::new();
    let mut next = queries.iter().zip(verdicts.iter());
    for (line, parsed) in &lines {
        match parsed {
            Ok(qs) => {
                for _ in qs {
                    if let Some((q, v)) = next.next() {
                        let _ = serde_json::to_writer(&mut out, &render(partner, v, Some(q)));
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

//! `GET /healthz` (the process answers), `/readyz` (every list serves a verified, unexpired
//! version) and `/metrics` (Prometheus text).

use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use super::{ProblemDoc, Shared, json_ok};
use crate::clock::now_unix;
use crate::server::problem::Problem;

/// `GET /healthz`.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct Health {
    /// Always `ok`: the process answers.
    status: &'static str,
}

/// `GET /readyz` when every list serves.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct Ready<'a> {
    /// Always `ready`.
    status: &'static str,
    /// List name to the version it serves.
    lists: &'a BTreeMap<String, u64>,
}

/// Liveness.
#[utoipa::path(get, path = "/healthz", responses((status = 200, description = "The process answers", body = Health)))]
pub(super) async fn healthz() -> Response {
    json_ok(&Health { status: "ok" })
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
pub(super) async fn readyz(State(state): Shared) -> Result<Response, Problem> {
    let snapshot = state.shared.snapshot.load();
    let now = now_unix();
    let statuses = state.shared.statuses();
    if state
        .shared
        .draining
        .load(std::sync::atomic::Ordering::Acquire)
    {
        return Err(Problem::not_ready(
            "shutting down: this replica is draining; send requests elsewhere",
        ));
    }
    let mut missing = Vec::new();
    for l in &state.config.lists {
        let serving = statuses
            .iter()
            .find(|s| s.name == l.name)
            .is_none_or(|s| s.serving(now));
        if !serving {
            missing.push(format!("{}: its latest version has expired", l.name));
        } else if !snapshot.versions.contains_key(&l.name) {
            missing.push(format!("{}: no verified version", l.name));
        }
    }
    if !missing.is_empty() {
        return Err(Problem::not_ready(missing.join("; ")));
    }
    Ok(json_ok(&Ready {
        status: "ready",
        lists: &snapshot.versions,
    }))
}

/// Prometheus metrics.
#[utoipa::path(get, path = "/metrics", responses((status = 200, description = "Prometheus text format", content_type = "text/plain", body = String)))]
pub(super) async fn metrics(State(state): Shared) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        )],
        state.shared.metrics.render(),
    )
        .into_response()
}

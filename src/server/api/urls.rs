//! `POST /v1/match/url-prefixes`: URL matching in privacy mode (the Safe Browsing model). The
//! client sends 4-byte prefixes of its expression hashes and gets back the full hashes of the
//! listed entries that start with them; it compares them itself, so the service never learns
//! which URL was looked up, and nothing here is logged or audited (it cannot tell a match).

use std::borrow::Cow;

use axum::body::Body;
use axum::extract::State;
use axum::response::Response;

use super::caller::Partner;
use super::{ProblemDoc, Shared, json_ok, read_body};
use crate::index::MatchOptions;
use crate::kinds::HashKind;
use crate::server::problem::Problem;
use crate::wire::{MatchOut, PrefixEntry, UrlPrefixRequest, UrlPrefixResponse};

/// Full hashes of listed URL expressions by prefix.
#[utoipa::path(
    post,
    path = "/v1/match/url-prefixes",
    request_body = UrlPrefixRequest,
    responses(
        (status = 200, description = "Every listed url entry whose hash starts with one of the prefixes", body = UrlPrefixResponse<'static>),
        (status = 400, description = "Not a prefix request", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 401, description = "Missing or unknown key", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 403, description = "List not entitled, or an admin key", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 413, description = "Body or batch too large", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 422, description = "A prefix is not 8 hex digits", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 429, description = "Rate limited, or too many requests at once (Retry-After)", body = ProblemDoc, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub(super) async fn match_url_prefixes(
    State(state): Shared,
    Partner(partner, _slot): Partner,
    body: Body,
) -> Result<Response, Problem> {
    let bytes = read_body(body, state.config.limits.max_body_bytes).await?;
    let request: UrlPrefixRequest = serde_json::from_slice(&bytes).map_err(|e| {
        Problem::invalid_json(format!(
            "{e}; expected {{\"prefixes\":[\"8 hex digits\",...],\"lists\":[..]?}}"
        ))
    })?;
    let max = state.config.limits.max_batch;
    if request.prefixes.len() > max {
        return Err(Problem::batch_too_large(request.prefixes.len(), max));
    }
    let mut prefixes = request.parse_prefixes().map_err(Problem::invalid_query)?;
    prefixes.sort_unstable();
    prefixes.dedup();
    let only = super::matching::select_lists(&state, &partner, request.lists)?;
    let include =
        |name: &str| partner.may_see(name) && only.as_ref().is_none_or(|o| o.contains(name));
    let options = MatchOptions {
        lists: Some(&include),
        ..MatchOptions::ALL
    };
    let snapshot = state.shared.snapshot.load_full();
    let mut entries = Vec::new();
    for prefix in &prefixes {
        for (hash, m) in snapshot
            .index
            .entries_with_prefix(HashKind::Url, prefix, &options)
        {
            entries.push(PrefixEntry {
                hash: Cow::Owned(hash.to_hex()),
                entry: MatchOut {
                    list: Cow::Owned(m.list.to_string()),
                    version: m.version,
                    kind: Cow::Borrowed(HashKind::Url.name()),
                    severity: m.severity,
                    category: Cow::Owned(m.category),
                    reference: Cow::Owned(m.reference),
                    distance: None,
                },
            });
        }
    }
    state
        .shared
        .metrics
        .queries(&partner.name, prefixes.len() as u64);
    let out = UrlPrefixResponse {
        entries,
        lists: super::matching::served(&snapshot, &partner, only.as_ref()),
    };
    Ok(json_ok(&out))
}

//! RFC 9457 problem details: every error the API returns is `application/problem+json` with a
//! stable `type` (a URN per kind of problem, which clients may switch on), a `title` that
//! never changes for that type, the HTTP `status`, and a `detail` for this occurrence.
//!
//! Each kind of problem has one constructor here, so that its type, title and status are
//! written once; [`CATALOGUE`] lists them for the documentation and the tests.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// One problem. `kind` becomes the type `urn:hashsieve:problem:<kind>`.
#[derive(Debug, Clone)]
pub struct Problem {
    pub status: StatusCode,
    pub kind: &'static str,
    pub title: &'static str,
    pub detail: String,
    /// Seconds, sent as `Retry-After` (rate limits, not ready).
    pub retry_after: Option<u64>,
}

/// Every problem type the API answers with: `(kind, status, title)`.
pub const CATALOGUE: &[(&str, u16, &str)] = &[
    (
        "invalid-json",
        400,
        "Request body is not a valid match request",
    ),
    ("unreadable-body", 400, "Request body could not be read"),
    ("invalid-upload", 400, "Invalid upload"),
    ("unauthorized", 401, "Missing or unknown API key"),
    ("admin-key-for-matching", 403, "Admin keys cannot match"),
    ("admin-only", 403, "Admin key required"),
    ("probing-suspected", 403, "Perceptual queries refused"),
    (
        "list-not-entitled",
        403,
        "List not available to this partner",
    ),
    ("not-found", 404, "No such resource"),
    ("method-not-allowed", 405, "Method not allowed"),
    ("body-too-large", 413, "Request body too large"),
    ("batch-too-large", 413, "Too many queries in one request"),
    ("video-too-long", 413, "Too many frames in one video"),
    ("invalid-query", 422, "Invalid query"),
    ("update-refused", 422, "Hash set refused"),
    ("rate-limited", 429, "Rate limit exceeded"),
    ("too-many-concurrent", 429, "Too many requests at once"),
    ("probing-throttled", 429, "Perceptual queries throttled"),
    ("internal", 500, "Internal error"),
    ("not-ready", 503, "Not ready"),
    ("timeout", 503, "Request took too long"),
    ("updater-stopped", 503, "Updates are not being taken"),
];

#[derive(Serialize)]
struct Body<'a> {
    #[serde(rename = "type")]
    kind: String,
    title: &'a str,
    status: u16,
    detail: &'a str,
}

impl Problem {
    /// The problem of `kind` in [`CATALOGUE`] (its status and title) with this `detail`.
    fn of(kind: &'static str, detail: impl Into<String>) -> Problem {
        let (kind, status, title) = CATALOGUE
            .iter()
            .copied()
            .find(|(k, _, _)| *k == kind)
            .unwrap_or(("internal", 500, "Internal error"));
        Problem {
            status: StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            kind,
            title,
            detail: detail.into(),
            retry_after: None,
        }
    }

    fn retry_after(self, seconds: u64) -> Problem {
        Problem {
            retry_after: Some(seconds),
            ..self
        }
    }

    pub fn invalid_json(detail: impl Into<String>) -> Problem {
        Problem::of("invalid-json", detail)
    }

    pub fn unreadable_body(detail: impl Into<String>) -> Problem {
        Problem::of("unreadable-body", detail)
    }

    pub fn invalid_upload(detail: impl Into<String>) -> Problem {
        Problem::of("invalid-upload", detail)
    }

    pub fn unauthorized() -> Problem {
        Problem::of(
            "unauthorized",
            "send `Authorization: Bearer <key>` with a key configured for this service",
        )
    }

    pub fn admin_key_for_matching() -> Problem {
        Problem::of(
            "admin-key-for-matching",
            "use a partner key for matching; admin keys only manage lists",
        )
    }

    pub fn admin_only() -> Problem {
        Problem::of("admin-only", "uploading hash sets needs an admin key")
    }

    pub fn list_not_entitled(partner: &str, list: &str) -> Problem {
        Problem::of(
            "list-not-entitled",
            format!("partner {partner} may not match against list {list:?}"),
        )
    }

    pub fn not_found(detail: impl Into<String>) -> Problem {
        Problem::of("not-found", detail)
    }

    pub fn method_not_allowed() -> Problem {
        Problem::of(
            "method-not-allowed",
            "this endpoint does not take that method",
        )
    }

    pub fn body_too_large(detail: impl Into<String>) -> Problem {
        Problem::of("body-too-large", detail)
    }

    pub fn batch_too_large(queries: usize, max: usize) -> Problem {
        Problem::of(
            "batch-too-large",
            format!(
                "{queries} queries; at most {max} per request (or stream any number to /v1/match/ndjson)"
            ),
        )
    }

    pub fn video_too_long(frames: usize, max: usize) -> Problem {
        Problem::of(
            "video-too-long",
            format!(
                "{frames} frames; at most {max} per video (limits.max_video_frames): hash it at fewer frames a second (--seconds-per-hash)"
            ),
        )
    }

    pub fn invalid_query(detail: impl Into<String>) -> Problem {
        Problem::of("invalid-query", detail)
    }

    pub fn update_refused(reason: impl Into<String>) -> Problem {
        Problem::of("update-refused", reason)
    }

    pub fn rate_limited(partner: &str, wait: u64) -> Problem {
        Problem::of(
            "rate-limited",
            format!("partner {partner} is over its request rate; retry after {wait} s"),
        )
        .retry_after(wait)
    }

    pub fn too_many_concurrent(partner: &str, limit: u32) -> Problem {
        Problem::of(
            "too-many-concurrent",
            format!(
                "partner {partner} already has {limit} requests in progress (its max_concurrent); retry when one has been answered"
            ),
        )
        .retry_after(1)
    }

    /// A partner flagged as probing: refused (403) or throttled (429) perceptual queries.
    pub fn probing(partner: &str, held: crate::server::probing::Held) -> Problem {
        use crate::server::probing::Held;
        let why = format!(
            "partner {partner}'s recent queries keep landing near listed entries (near misses, or one entry matched inexactly again and again), as a walk of the list would"
        );
        match held {
            Held::Refused(seconds) => Problem::of(
                "probing-suspected",
                format!(
                    "{why}: perceptual queries are refused for {seconds} s more (exact kinds are still answered); the operator can tell you more"
                ),
            ),
            Held::Throttled(seconds) => Problem::of(
                "probing-throttled",
                format!(
                    "{why}: perceptual queries are limited to one request per 10 s; retry after {seconds} s"
                ),
            )
            .retry_after(seconds),
        }
    }

    pub fn internal(detail: impl Into<String>) -> Problem {
        Problem::of("internal", detail)
    }

    pub fn not_ready(detail: impl Into<String>) -> Problem {
        Problem::of("not-ready", detail).retry_after(5)
    }

    pub fn timeout(limit_ms: u128) -> Problem {
        Problem::of(
            "timeout",
            format!("no answer within {limit_ms} ms; send smaller batches"),
        )
    }

    pub fn updater_stopped() -> Problem {
        Problem::of("updater-stopped", "the service is shutting down")
    }

    pub fn type_uri(&self) -> String {
        format!("urn:hashsieve:problem:{}", self.kind)
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let body = Body {
            kind: self.type_uri(),
            title: self.title,
            status: self.status.as_u16(),
            detail: &self.detail,
        };
        let json = serde_json::to_vec(&body).unwrap_or_default();
        let mut response = (self.status, json).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if self.status == StatusCode::UNAUTHORIZED {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if let Some(secs) = self.retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalogue_kinds_are_unique_and_statuses_valid() {
        let mut kinds: Vec<&str> = CATALOGUE.iter().map(|(k, _, _)| *k).collect();
        kinds.sort_unstable();
        kinds.dedup();
        assert_eq!(kinds.len(), CATALOGUE.len());
        for (kind, status, _) in CATALOGUE {
            let p = Problem::of(kind, "x");
            assert_eq!((p.kind, p.status.as_u16()), (*kind, *status));
        }
    }
}

//! `GET /v1/lists` (what each caller may see of the lists) and `POST /v1/admin/hashsets/{list}`
//! (an admin uploads a signed set or delta, which the updater verifies like any other).

use axum::body::Bytes;
use axum::extract::multipart::{Field, MultipartRejection};
use axum::extract::rejection::PathRejection;
use axum::extract::{Multipart, Path, State};
use axum::response::Response;
use serde::Serialize;
use utoipa::ToSchema;

use super::caller::{Admin, Known};
use super::{ProblemDoc, Shared, json_ok};
use crate::hashset::trust;
use crate::server::auth::Caller;
use crate::server::problem::Problem;
use crate::server::updates::Command;

/// `GET /v1/lists`.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct ListsDoc {
    lists: Vec<crate::server::ListStatus>,
}

/// `POST /v1/admin/hashsets/{list}` accepted: the version now serving.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct Accepted {
    list: String,
    version: u64,
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
pub(super) async fn lists(State(state): Shared, Known(caller): Known) -> Response {
    let snapshot = state.shared.snapshot.load();
    let lists = state
        .shared
        .statuses()
        .into_iter()
        .filter(|s| match &caller {
            Caller::Admin(_) => true,
            Caller::Partner(p) => p.may_see(&s.name),
        })
        .map(|mut s| {
            if let Some(policy) = state.shared.policies.get(&s.name) {
                s.suppresses = policy.suppresses.clone();
            }
            if let Some(list) = snapshot.index.list(&s.name) {
                let header = list.set().header();
                s.severity = header.severity.clone();
                if s.videos.is_some() {
                    let rule = state
                        .shared
                        .policies
                        .get(&s.name)
                        .map_or(header.video_share, |p| p.video_share(header.video_share));
                    s.video = Some(crate::server::VideoRule {
                        query_percent: rule.query_percent(),
                        compared_percent: rule.compared_percent(),
                    });
                }
                for (kind, _) in list.set().counts() {
                    if kind.is_perceptual()
                        && let Some(t) = snapshot.index.threshold(&s.name, kind)
                    {
                        s.thresholds.insert(kind.name().to_owned(), t);
                    }
                }
            }
            if matches!(caller, Caller::Admin(_)) {
                s.quarantined = Some(state.shared.quarantine.of(&s.name));
            }
            s
        })
        .collect();
    json_ok(&ListsDoc { lists })
}

/// The `{list}` of an admin path, if it names a configured list (a name that is not UTF-8
/// after decoding names none).
fn configured_list(
    state: &crate::server::AppState,
    path: Result<Path<String>, PathRejection>,
) -> Result<String, Problem> {
    let Path(list) =
        path.map_err(|e| Problem::not_found(format!("no such list: {}", e.body_text())))?;
    if !state.config.lists.iter().any(|l| l.name == list) {
        return Err(Problem::not_found(format!(
            "no list named {list:?} is configured"
        )));
    }
    Ok(list)
}

/// `POST /v1/admin/quarantine/{list}/release` body.
#[derive(Debug, serde::Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct Release {
    /// The quarantined entry's reference, as `/v1/lists` shows it.
    #[serde(rename = "ref")]
    reference: String,
}

/// `POST /v1/admin/quarantine/{list}/release` done.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct Released {
    list: String,
    #[serde(rename = "ref")]
    reference: String,
    released: bool,
}

/// Release an entry from the flood quarantine (admins): its matches are reported again,
/// and it is not quarantined again while the service runs.
#[utoipa::path(
    post,
    path = "/v1/admin/quarantine/{list}/release",
    params(("list" = String, Path, description = "configured list name")),
    request_body(content = Release, content_type = "application/json"),
    responses(
        (status = 200, description = "Released", body = Released),
        (status = 400, description = "Not a valid body", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 401, description = "Missing or unknown key", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 403, description = "Not an admin key", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 404, description = "No such list, or the entry is not quarantined", body = ProblemDoc, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub(super) async fn release_quarantine(
    State(state): Shared,
    Admin(admin): Admin,
    path: Result<Path<String>, PathRejection>,
    body: axum::body::Body,
) -> Result<Response, Problem> {
    let list = configured_list(&state, path)?;
    let bytes = super::read_body(body, 64 * 1024).await?;
    let release: Release = serde_json::from_slice(&bytes)
        .map_err(|e| Problem::invalid_json(format!("{e}; expected {{\"ref\": \"...\"}}")))?;
    if !state.shared.quarantine.release(&list, &release.reference) {
        return Err(Problem::not_found(format!(
            "no entry of {list:?} with reference {:?} is quarantined",
            release.reference
        )));
    }
    tracing::warn!(%admin, list, reference = %release.reference, "quarantined entry released");
    Ok(json_ok(&Released {
        list,
        reference: release.reference,
        released: true,
    }))
}

/// Upload a signed set or delta for a list (admins).
#[utoipa::path(
    post,
    path = "/v1/admin/hashsets/{list}",
    params(("list" = String, Path, description = "configured list name")),
    request_body(content = String, content_type = "multipart/form-data", description = "fields `file` (.hset or .hdelta) and `signature` (its .minisig; repeated, one per signature, for a list with a threshold)"),
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
pub(super) async fn admin_upload(
    State(state): Shared,
    Admin(admin): Admin,
    path: Result<Path<String>, PathRejection>,
    multipart: Result<Multipart, MultipartRejection>,
) -> Result<Response, Problem> {
    let list = configured_list(&state, path)?;
    let mut multipart = multipart.map_err(|e| {
        Problem::invalid_upload(format!("not multipart/form-data: {}", e.body_text()))
    })?;
    let (mut file, mut signatures) = (None, Vec::new());
    let limit = usize::try_from(state.config.limits.max_set_bytes).unwrap_or(usize::MAX);
    while let Some(field) = multipart
        .next_field()
        .await
        .map_err(|e| Problem::invalid_upload(format!("unreadable: {}", e.body_text())))?
    {
        let name = field.name().unwrap_or_default().to_owned();
        let bytes = read_field(field, limit).await?;
        match name.as_str() {
            "file" => file = Some(bytes),
            "signature" if signatures.len() < trust::MAX_SIGNATURES => {
                let text = String::from_utf8(bytes.to_vec()).map_err(|_| {
                    Problem::invalid_upload("a signature (.minisig) is not UTF-8 text")
                })?;
                signatures.push(text);
            }
            "signature" => {
                return Err(Problem::invalid_upload(format!(
                    "more than {} signatures",
                    trust::MAX_SIGNATURES
                )));
            }
            other => {
                return Err(Problem::invalid_upload(format!(
                    "unexpected field {other:?}; expected `file` and `signature`"
                )));
            }
        }
    }
    let (Some(file), false) = (file, signatures.is_empty()) else {
        return Err(Problem::invalid_upload(
            "send multipart fields `file` (the .hset or .hdelta) and `signature` (its .minisig)",
        ));
    };
    let (reply, answer) = tokio::sync::oneshot::channel();
    let sent = state.send(Command::Offer {
        list: list.clone(),
        bytes: file.to_vec(),
        signatures,
        reply,
    });
    match if sent { answer.await.ok() } else { None } {
        Some(Ok(version)) => {
            tracing::info!(%admin, list, version, "uploaded hash set accepted");
            Ok(json_ok(&Accepted { list, version }))
        }
        Some(Err(reason)) => Err(Problem::update_refused(reason)),
        None => Err(Problem::updater_stopped()),
    }
}

async fn read_field(mut field: Field<'_>, limit: usize) -> Result<Bytes, Problem> {
    let mut out = Vec::new();
    while let Some(chunk) = field
        .chunk()
        .await
        .map_err(|e| Problem::invalid_upload(format!("unreadable: {}", e.body_text())))?
    {
        if out.len() + chunk.len() > limit {
            return Err(Problem::body_too_large(format!(
                "the upload is over the limit of {limit} bytes (limits.max_set_bytes)"
            )));
        }
        out.extend_from_slice(&chunk);
    }
    Ok(Bytes::from(out))
}

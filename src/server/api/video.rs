//! `POST /v1/match/video`: one video, sent as the frames of its vPDQ hash, against the
//! partner's lists: the listed videos it shares enough frames with (each list's share rule)
//! and the listed still images its frames match.

use std::collections::BTreeSet;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::response::Response;

use super::caller::Partner;
use super::matching::{audited, quarantine_withholds, quarantines, select_lists, served};
use super::{ProblemDoc, Shared, json_ok, read_body};
use crate::clock::{now_unix, rfc3339};
use crate::index::vpdq::Frame;
use crate::index::{MatchOptions, VideoAnswer};
use crate::kinds::HashKind;
use crate::server::audit::{AuditRecord, SuppressedBy};
use crate::server::auth::PartnerAuth;
use crate::server::problem::Problem;
use crate::server::{AppState, Snapshot};
use crate::wire::{VideoRequest, VideoResponse, VideoVerdictOut};

/// Videos of up to this many frames are matched on the request's task; longer ones on the
/// blocking pool (each frame is a range search in every list's PDQ and video frames).
const INLINE_FRAMES: usize = 64;

/// Match one video by its frames.
#[utoipa::path(
    post,
    path = "/v1/match/video",
    request_body = VideoRequest,
    responses(
        (status = 200, description = "The video's verdict: the listed videos it matches by share of frames, and the listed images its frames match", body = VideoResponse<'static>),
        (status = 400, description = "Not a video request", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 401, description = "Missing or unknown key", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 403, description = "List not entitled, an admin key, or perceptual queries refused", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 413, description = "Body too large, or too many frames", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 422, description = "No frames, or a frame is invalid", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 429, description = "Rate limited, or too many requests at once (Retry-After)", body = ProblemDoc, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub(super) async fn match_video(
    State(state): Shared,
    Partner(partner, _slot): Partner,
    body: Body,
) -> Result<Response, Problem> {
    let bytes = read_body(body, state.config.limits.max_body_bytes).await?;
    let request: VideoRequest = serde_json::from_slice(&bytes).map_err(|e| {
        Problem::invalid_json(format!(
            "{e}; expected {{\"frames\":[{{\"hash\",\"quality\"}}],\"lists\":[..]?}}"
        ))
    })?;
    let max = state.config.limits.max_video_frames;
    if request.frames.len() > max {
        return Err(Problem::video_too_long(request.frames.len(), max));
    }
    if request.frames.is_empty() {
        return Err(Problem::invalid_query(
            "frames: a video needs at least one frame",
        ));
    }
    let frames = request
        .frames
        .iter()
        .enumerate()
        .map(|(i, f)| {
            f.to_frame()
                .map_err(|e| Problem::invalid_query(format!("frames[{i}].{e}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let only = select_lists(&state, &partner, request.lists)?;
    if let Some(probing) = &partner.probing {
        probing
            .admit()
            .map_err(|held| Problem::probing(&partner.name, held))?;
    }
    let snapshot = state.shared.snapshot.load_full();
    let (snapshot, answer) = if frames.len() <= INLINE_FRAMES {
        let (answer, pending) = answer(&state, &snapshot, &partner, &frames, only.as_ref());
        if let Some(pending) = pending {
            audited(&state, pending.written().await);
        }
        (snapshot, answer)
    } else {
        let state = Arc::clone(&state);
        let partner = Arc::clone(&partner);
        let only = only.clone();
        tokio::task::spawn_blocking(move || {
            let (answer, pending) = answer(&state, &snapshot, &partner, &frames, only.as_ref());
            if let Some(pending) = pending {
                audited(&state, pending.wait());
            }
            (snapshot, answer)
        })
        .await
        .map_err(|e| Problem::internal(format!("matching failed: {e}")))?
    };
    let out = VideoResponse {
        verdict: VideoVerdictOut::new(&answer, None, |d| partner.distance.apply(d)),
        lists: served(&snapshot, &partner, only.as_ref()),
    };
    Ok(json_ok(&out))
}

/// Matches `frames` for `partner`, withholds the matches of quarantined entries, and hands
/// what is left to the audit log (one line per listed video or image matched, and per match
/// an allow list withheld, with `suppressed_by`; a video's distance is the smallest between
/// a frame of each).
fn answer(
    state: &AppState,
    snapshot: &Snapshot,
    partner: &PartnerAuth,
    frames: &[Frame],
    only: Option<&BTreeSet<String>>,
) -> (VideoAnswer, Option<crate::server::audit::Pending>) {
    let include = |name: &str| partner.may_see(name) && only.is_none_or(|o| o.contains(name));
    let options = MatchOptions {
        lists: Some(&include),
        ..MatchOptions::ALL
    };
    let mut answer = snapshot.index.match_video(frames, &options);
    if quarantines(state) {
        answer
            .matches
            .retain(|m| !quarantine_withholds(state, &m.list, &m.reference));
        answer
            .images
            .retain(|m| !quarantine_withholds(state, &m.found.list, &m.found.reference));
    }
    for s in &answer.suppressed {
        state
            .shared
            .metrics
            .suppressed(&s.withheld.list, &s.allow.list);
    }
    let time = rfc3339(now_unix());
    let kind = HashKind::Vpdq.name();
    let videos = answer.matches.iter().map(|m| AuditRecord {
        time: &time,
        partner: &partner.name,
        list: &m.list,
        version: m.version,
        reference: &m.reference,
        kind,
        distance: m.distance,
        suppressed_by: None,
    });
    let images = answer.images.iter().map(|m| AuditRecord {
        time: &time,
        partner: &partner.name,
        list: &m.found.list,
        version: m.found.version,
        reference: &m.found.reference,
        kind,
        distance: m.found.distance,
        suppressed_by: None,
    });
    let suppressed = answer.suppressed.iter().map(|s| AuditRecord {
        time: &time,
        partner: &partner.name,
        list: &s.withheld.list,
        version: s.withheld.version,
        reference: &s.withheld.reference,
        kind,
        distance: s.withheld.distance,
        suppressed_by: Some(SuppressedBy {
            list: &s.allow.list,
            version: s.allow.version,
            reference: &s.allow.reference,
            distance: s.allow.distance,
        }),
    });
    let audit: Vec<AuditRecord<'_>> = videos.chain(images).chain(suppressed).collect();
    let pending = state.audit.record(&audit);
    for record in audit.iter().filter(|r| r.suppressed_by.is_none()) {
        state.shared.metrics.matched(record.list, 1);
    }
    state.shared.metrics.queries(&partner.name, 1);
    (answer, pending)
}

//! `POST /v1/match` and `GET /v1/match/{kind}/{hash}`: verdicts for a partner's hashes,
//! against the lists it is entitled to, from one snapshot per request.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use axum::body::Body;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query as UrlQuery, State};
use axum::response::Response;
use serde::{Deserialize, Serialize};

use super::caller::Partner;
use super::{ProblemDoc, Shared, json_ok, read_body};
use crate::clock::{now_unix, rfc3339};
use crate::index::{Decision, MatchOptions, NearMiss, Query, Verdict, Verdicts};
use crate::server::audit::{AuditRecord, Pending, SuppressedBy};
use crate::server::auth::PartnerAuth;
use crate::server::problem::Problem;
use crate::server::{AppState, Snapshot};
use crate::wire::{MatchRequest, MatchResponse, QueryIn, VerdictOut};

/// Batches up to this size are matched on the request's task; larger ones on the blocking
/// pool, so that a big PDQ batch does not stall other requests.
const INLINE_QUERIES: usize = 256;

/// Matches `queries` for `partner` against the entitled lists (narrowed to `only` when
/// given), drops the matches of low-quality queries for lists that do not report them,
/// hands the matches to the audit log (the caller waits for [`Pending`] before answering)
/// and counts the metrics. Only the queries that are not a plain miss are visited (a batch
/// of 1 000 holds about ten).
pub(super) fn answer(
    state: &AppState,
    snapshot: &Snapshot,
    partner: &PartnerAuth,
    queries: &[Query],
    only: Option<&BTreeSet<String>>,
) -> (Verdicts, Option<Pending>) {
    let include = |name: &str| partner.may_see(name) && only.is_none_or(|o| o.contains(name));
    let limits = &state.config.limits;
    let options = MatchOptions {
        lists: Some(&include),
        near_miss: NearMiss {
            bits: limits.near_miss_bits,
            every: limits.near_miss_sample,
        },
    };
    let mut answers = snapshot.index.match_batch(queries, &options);
    // Each sampled near miss stands for `every` queries.
    let near_misses = answers.near_misses as u64 * u64::from(options.near_miss.every);
    if near_misses > 0 {
        state.shared.metrics.near_misses(&partner.name, near_misses);
    }
    let mut verdicts = std::mem::take(&mut answers.verdicts);
    if let Some(probing) = &partner.probing {
        let inexact: Vec<(&Arc<str>, &str)> = verdicts
            .decided_mut()
            .flat_map(|(_, v)| {
                v.matches
                    .iter()
                    .filter(|m| m.kind.is_perceptual() && m.distance > 0)
                    .map(|m| (&m.list, m.reference.as_str()))
            })
            .collect();
        // Most answers have neither: nothing to count, no lock taken.
        if (near_misses > 0 || !inexact.is_empty()) && probing.observe(near_misses, inexact) {
            state.shared.metrics.probing_flagged(&partner.name);
            tracing::warn!(
                partner = %partner.name,
                action = ?probing.action,
                limit = probing.limit,
                "partner flagged as probing: its queries keep landing near listed entries"
            );
        }
    }
    let reports_low_quality = |list: &str| {
        state
            .config
            .lists
            .iter()
            .any(|l| l.name == list && l.report_low_quality)
    };
    withhold_quarantined(state, &mut verdicts);
    // Formatted only for an answer that writes to the audit log (most write nothing).
    let time = std::cell::OnceCell::new();
    let time = || time.get_or_init(|| rfc3339(now_unix())).as_str();
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
                time: time(),
                partner: &partner.name,
                list: &m.list,
                version: m.version,
                reference: &m.reference,
                kind: q.hash.kind().name(),
                distance: m.distance,
                suppressed_by: None,
            });
        }
    }
    for s in &answers.suppressed {
        state
            .shared
            .metrics
            .suppressed(&s.withheld.list, &s.allow.list);
        audit.push(AuditRecord {
            time: time(),
            partner: &partner.name,
            list: &s.withheld.list,
            version: s.withheld.version,
            reference: &s.withheld.reference,
            kind: queries[s.query].hash.kind().name(),
            distance: s.withheld.distance,
            suppressed_by: Some(SuppressedBy {
                list: &s.allow.list,
                version: s.allow.version,
                reference: &s.allow.reference,
                distance: s.allow.distance,
            }),
        });
    }
    let pending = state.audit.record(&audit);
    for (list, n) in per_list {
        state.shared.metrics.matched(list, n);
    }
    state
        .shared
        .metrics
        .queries(&partner.name, queries.len() as u64);
    (verdicts, pending)
}

/// Counts every match against its entry's flood quarantine and drops the matches of
/// quarantined entries; a verdict left without matches is `no_match`.
fn withhold_quarantined(state: &AppState, verdicts: &mut Verdicts) {
    if !quarantines(state) {
        return;
    }
    for (_, v) in verdicts.decided_mut() {
        let before = v.matches.len();
        v.matches
            .retain(|m| !quarantine_withholds(state, &m.list, &m.reference));
        if before > 0 && v.matches.is_empty() {
            v.verdict = Decision::NoMatch;
        }
    }
}

/// Whether any list has a flood quarantine (most have none: nothing to count then).
pub(super) fn quarantines(state: &AppState) -> bool {
    state.config.lists.iter().any(|l| l.quarantine_min > 0)
}

/// Counts one match of `reference` in `list` against its flood quarantine; true when the
/// entry is quarantined and the match must be withheld.
pub(super) fn quarantine_withholds(state: &AppState, list: &Arc<str>, reference: &str) -> bool {
    let rule = state
        .config
        .lists
        .iter()
        .find(|l| *l.name == **list)
        .map_or(crate::server::quarantine::Rule { min: 0, factor: 1 }, |l| {
            crate::server::quarantine::Rule {
                min: l.quarantine_min,
                factor: l.quarantine_factor,
            }
        });
    let (withheld, newly) = state.shared.quarantine.observe(rule, list, reference);
    if newly {
        state.shared.metrics.quarantined(list);
        tracing::warn!(list = %list, reference = %reference, "entry quarantined: its matches jumped far above its history; an admin can release it");
    }
    if withheld {
        state.shared.metrics.withheld(list, 1);
    }
    withheld
}

/// Logs a failed audit write: the match is still answered, but the operator must see it.
pub(super) fn audited(state: &AppState, written: std::io::Result<()>) {
    if let Err(e) = written {
        tracing::error!(path = %state.audit.path().display(), error = %e, "audit log write failed");
    }
}

/// [`answer`] on the request's task for small batches, on the blocking pool for large ones;
/// returns once the matches are in the audit log.
pub(super) async fn run_answer(
    state: &Arc<AppState>,
    snapshot: Arc<Snapshot>,
    partner: &Arc<PartnerAuth>,
    queries: Vec<Query>,
    only: Option<BTreeSet<String>>,
) -> Result<(Arc<Snapshot>, Vec<Query>, Verdicts), Problem> {
    if let Some(probing) = &partner.probing
        && queries.iter().any(|q| q.hash.kind().is_perceptual())
    {
        probing
            .admit()
            .map_err(|held| Problem::probing(&partner.name, held))?;
    }
    if queries.len() <= INLINE_QUERIES {
        let (verdicts, pending) = answer(state, &snapshot, partner, &queries, only.as_ref());
        if let Some(pending) = pending {
            audited(state, pending.written().await);
        }
        return Ok((snapshot, queries, verdicts));
    }
    let state = Arc::clone(state);
    let partner = Arc::clone(partner);
    tokio::task::spawn_blocking(move || {
        let (verdicts, pending) = answer(&state, &snapshot, &partner, &queries, only.as_ref());
        if let Some(pending) = pending {
            audited(&state, pending.wait());
        }
        (snapshot, queries, verdicts)
    })
    .await
    .map_err(|e| Problem::internal(format!("matching failed: {e}")))
}

/// `verdict` as `partner` may see it (its distance policy applied).
pub(super) fn render<'a>(
    partner: &PartnerAuth,
    verdict: &'a Verdict,
    query: Option<&Query>,
) -> VerdictOut<'a> {
    VerdictOut::new(verdict, query, |d| partner.distance.apply(d))
}

/// The versions of the lists `partner` may see (narrowed to `only`), as served by `snapshot`.
pub(super) fn served(
    snapshot: &Snapshot,
    partner: &PartnerAuth,
    only: Option<&BTreeSet<String>>,
) -> BTreeMap<String, u64> {
    Served {
        snapshot,
        partner,
        only,
    }
    .iter()
    .map(|(n, v)| (n.clone(), *v))
    .collect()
}

/// [`served`] written as it is, without copying the names (a single GET, the commonest
/// request, answers with it).
struct Served<'a> {
    snapshot: &'a Snapshot,
    partner: &'a PartnerAuth,
    only: Option<&'a BTreeSet<String>>,
}

impl<'a> Served<'a> {
    fn iter(&self) -> impl Iterator<Item = (&'a String, &'a u64)> + use<'a> {
        let (partner, only) = (self.partner, self.only);
        self.snapshot.versions.iter().filter(move |(name, _)| {
            partner.may_see(name) && only.is_none_or(|o| o.contains(*name))
        })
    }
}

impl Serialize for Served<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.iter())
    }
}

/// Checks an explicit list selection: every name configured and entitled (else 403).
pub(super) fn select_lists(
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
            return Err(Problem::list_not_entitled(&partner.name, name));
        }
    }
    Ok(Some(lists.into_iter().collect()))
}

/// Match a batch of hashes.
#[utoipa::path(
    post,
    path = "/v1/match",
    request_body = MatchRequest<'static>,
    responses(
        (status = 200, description = "One verdict per query, in order", body = MatchResponse<'static>),
        (status = 400, description = "Not a match request", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 401, description = "Missing or unknown key", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 403, description = "List not entitled, or an admin key", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 413, description = "Body or batch too large", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 422, description = "A query is invalid", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 429, description = "Rate limited, or too many requests at once (Retry-After)", body = ProblemDoc, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub(super) async fn match_batch(
    State(state): Shared,
    Partner(partner, _slot): Partner,
    body: Body,
) -> Result<Response, Problem> {
    let bytes = read_body(body, state.config.limits.max_body_bytes).await?;
    let request: MatchRequest<'_> = serde_json::from_slice(&bytes).map_err(|e| {
        Problem::invalid_json(format!(
            "{e}; expected {{\"queries\":[{{\"kind\",\"hash\",\"quality\"?}}],\"lists\":[..]?}}"
        ))
    })?;
    let max = state.config.limits.max_batch;
    if request.queries.len() > max {
        return Err(Problem::batch_too_large(request.queries.len(), max));
    }
    let queries = request
        .queries
        .iter()
        .enumerate()
        .map(|(i, q)| {
            q.to_query()
                .map_err(|e| Problem::invalid_query(format!("queries[{i}].{e}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let only = select_lists(&state, &partner, request.lists)?;
    let snapshot = state.shared.snapshot.load_full();
    let (snapshot, _queries, verdicts) =
        run_answer(&state, snapshot, &partner, queries, only.clone()).await?;
    let out = MatchResponse {
        results: verdicts.iter().map(|v| render(&partner, v, None)).collect(),
        lists: served(&snapshot, &partner, only.as_ref()),
    };
    Ok(json_ok(&out))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(super) struct SingleParams {
    /// PDQ quality (0-100).
    #[param(minimum = 0, maximum = 100)]
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
        (status = 403, description = "An admin key", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 422, description = "Invalid kind, hash or quality", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 429, description = "Rate limited", body = ProblemDoc, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub(super) async fn match_single(
    State(state): Shared,
    Partner(partner, _slot): Partner,
    path: Result<Path<(String, String)>, PathRejection>,
    params: Result<UrlQuery<SingleParams>, QueryRejection>,
) -> Result<Response, Problem> {
    // A path that is not UTF-8 after decoding (`/v1/match/md5/%ff`) is an invalid query,
    // answered like the others (axum's own rejection is plain text).
    let Path((kind, hash)) =
        path.map_err(|e| Problem::invalid_query(format!("path: {}", e.body_text())))?;
    let params =
        params.map_err(|e| Problem::invalid_query(format!("query string: {}", e.body_text())))?;
    let query = QueryIn {
        kind: Cow::Owned(kind),
        hash: Cow::Owned(hash),
        quality: params.quality,
    }
    .to_query()
    .map_err(Problem::invalid_query)?;
    let snapshot = state.shared.snapshot.load_full();
    let (snapshot, _, verdicts) = run_answer(&state, snapshot, &partner, vec![query], None).await?;
    #[derive(Serialize)]
    struct Out<'a> {
        #[serde(flatten)]
        verdict: VerdictOut<'a>,
        lists: Served<'a>,
    }
    let verdict = verdicts
        .iter()
        .next()
        .ok_or_else(|| Problem::internal("no verdict for the query"))?;
    Ok(json_ok(&Out {
        verdict: render(&partner, verdict, Some(&query)),
        lists: Served {
            snapshot: &snapshot,
            partner: &partner,
            only: None,
        },
    }))
}

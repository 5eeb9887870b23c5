//! Who is calling, extracted once per request: a [`Partner`] (authenticated and admitted by
//! its rate limit), an [`Admin`], or any [`Known`] caller. Handlers take the one they need
//! and never look at the `Authorization` header themselves.

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;

use super::super::AppState;
use super::super::auth::{Caller, PartnerAuth, Slot};
use crate::server::problem::Problem;

/// A partner allowed to match: its key is known, its request rate has room and it has a
/// free concurrent slot (held in the second field until the answer is complete). Admin keys
/// are refused (403), unknown or missing keys too (401), an exhausted rate or no free slot
/// with 429.
pub struct Partner(pub Arc<PartnerAuth>, pub Slot);

impl FromRequestParts<Arc<AppState>> for Partner {
    type Rejection = Problem;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Partner, Problem> {
        match state.auth.caller(&parts.headers) {
            None => Err(Problem::unauthorized()),
            Some(Caller::Admin(_)) => Err(Problem::admin_key_for_matching()),
            Some(Caller::Partner(p)) => {
                let slot = p
                    .slot()
                    .map_err(|limit| Problem::too_many_concurrent(&p.name, limit))?;
                p.admit()
                    .map_err(|wait| Problem::rate_limited(&p.name, wait))?;
                Ok(Partner(p, slot))
            }
        }
    }
}

/// An admin: a configured admin key. A partner key gets 403; no key (also in the demo,
/// which has no admins) 401.
pub struct Admin(pub Arc<str>);

impl FromRequestParts<Arc<AppState>> for Admin {
    type Rejection = Problem;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Admin, Problem> {
        match state.auth.caller(&parts.headers) {
            Some(Caller::Admin(name)) => Ok(Admin(name)),
            Some(Caller::Partner(p)) if p.lists.is_some() => Err(Problem::admin_only()),
            _ => Err(Problem::unauthorized()),
        }
    }
}

/// Any known caller, partner or admin (not rate-limited: reading list status is cheap).
pub struct Known(pub Caller);

impl FromRequestParts<Arc<AppState>> for Known {
    type Rejection = Problem;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Known, Problem> {
        state
            .auth
            .caller(&parts.headers)
            .map(Known)
            .ok_or_else(Problem::unauthorized)
    }
}

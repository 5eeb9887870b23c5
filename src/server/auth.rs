//! Who is calling: partners and admins present `Authorization: Bearer <key>`; the config holds
//! only SHA-256 digests of the keys. The presented key's digest is compared with every
//! configured digest in constant time (`subtle`), so timing does not reveal how much of a
//! digest matched. With no partners configured (the loopback-only demo) anyone may match
//! against every list.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::http::HeaderMap;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::config::{Config, DistancePolicy};

/// An authenticated partner (or the demo's anonymous caller).
#[derive(Debug)]
pub struct PartnerAuth {
    /// Shared with the metrics' labels.
    pub name: Arc<str>,
    /// `None`: every list (demo mode).
    pub lists: Option<BTreeSet<String>>,
    pub distance: DistancePolicy,
    limiter: Option<Mutex<Bucket>>,
    /// Requests answered at once (`max_concurrent`); `None`: unbounded (demo mode).
    concurrent: Option<(Arc<tokio::sync::Semaphore>, u32)>,
    /// Probing detection; `None` in demo mode.
    pub probing: Option<crate::server::probing::Probing>,
}

/// One of a partner's concurrent request slots, held until the answer is complete.
pub struct Slot {
    _permit: Option<tokio::sync::OwnedSemaphorePermit>,
}

impl PartnerAuth {
    pub fn may_see(&self, list: &str) -> bool {
        self.lists.as_ref().is_none_or(|l| l.contains(list))
    }

    /// Takes one request from the partner's budget; `Err(seconds)` to wait when empty.
    pub fn admit(&self) -> Result<(), u64> {
        match &self.limiter {
            None => Ok(()),
            Some(bucket) => bucket.lock().unwrap_or_else(|e| e.into_inner()).take(),
        }
    }

    /// Takes one of the partner's concurrent slots; `Err(limit)` when all are in use.
    pub fn slot(&self) -> Result<Slot, u32> {
        match &self.concurrent {
            None => Ok(Slot { _permit: None }),
            Some((semaphore, limit)) => Arc::clone(semaphore)
                .try_acquire_owned()
                .map(|p| Slot { _permit: Some(p) })
                .map_err(|_| *limit),
        }
    }
}

/// A token bucket: `rate` requests per second, bursts up to `rate`. Hand-written: it is ten
/// lines, and the rate-limit crates bring clocks and key maps this service does not need.
#[derive(Debug)]
struct Bucket {
    rate: f64,
    tokens: f64,
    last: Instant,
}

impl Bucket {
    fn take(&mut self) -> Result<(), u64> {
        let now = Instant::now();
        let elapsed = now.duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.rate).min(self.rate);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(((1.0 - self.tokens) / self.rate).ceil().max(1.0) as u64)
        }
    }
}

#[derive(Debug)]
struct Key {
    digest: [u8; 32],
    who: Who,
}

#[derive(Debug, Clone, Copy)]
enum Who {
    Partner(usize),
    Admin(usize),
}

/// The configured callers.
#[derive(Debug)]
pub struct Auth {
    keys: Vec<Key>,
    /// Shared with the requests they make (a request's [`Caller`] outlives no borrow).
    partners: Vec<Arc<PartnerAuth>>,
    admins: Vec<Arc<str>>,
    anonymous: Option<Arc<PartnerAuth>>,
}

/// The caller of one request.
#[derive(Debug, Clone)]
pub enum Caller {
    Partner(Arc<PartnerAuth>),
    /// An admin, by name.
    Admin(Arc<str>),
}

impl Auth {
    pub fn new(config: &Config) -> Auth {
        let mut keys = Vec::new();
        let partners = config
            .partners
            .iter()
            .enumerate()
            .map(|(i, p)| {
                keys.push(Key {
                    digest: p.key_sha256,
                    who: Who::Partner(i),
                });
                Arc::new(PartnerAuth {
                    name: p.name.as_str().into(),
                    lists: Some(p.lists.clone()),
                    distance: p.distance,
                    limiter: Some(Mutex::new(Bucket {
                        rate: f64::from(p.rate_per_second),
                        tokens: f64::from(p.rate_per_second),
                        last: Instant::now(),
                    })),
                    concurrent: Some((
                        Arc::new(tokio::sync::Semaphore::new(p.max_concurrent as usize)),
                        p.max_concurrent,
                    )),
                    probing: Some(crate::server::probing::Probing::new(
                        p.probing,
                        p.probing_limit,
                    )),
                })
            })
            .collect();
        let admins = config
            .admins
            .iter()
            .enumerate()
            .map(|(i, a)| {
                keys.push(Key {
                    digest: a.key_sha256,
                    who: Who::Admin(i),
                });
                Arc::from(a.name.as_str())
            })
            .collect();
        let anonymous = config.is_open_demo().then(|| {
            Arc::new(PartnerAuth {
                name: "anonymous".into(),
                lists: None,
                distance: DistancePolicy::Exact,
                limiter: None,
                concurrent: None,
                probing: None,
            })
        });
        Auth {
            keys,
            partners,
            admins,
            anonymous,
        }
    }

    /// The caller named by the request's bearer key. Without a key: the anonymous demo
    /// caller if there is one. `None`: unauthenticated (a 401).
    pub fn caller(&self, headers: &HeaderMap) -> Option<Caller> {
        let presented = headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                let (scheme, key) = v.split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then(|| key.trim())
            });
        let Some(key) = presented else {
            return self.anonymous.clone().map(Caller::Partner);
        };
        let digest: [u8; 32] = Sha256::digest(key.as_bytes()).into();
        // Compare against every key, whatever matched, so the time taken does not depend on
        // which key (or how much of one) matched.
        let mut found = None;
        for k in &self.keys {
            if bool::from(k.digest.ct_eq(&digest)) {
                found = Some(k.who);
            }
        }
        match found? {
            Who::Partner(i) => self.partners.get(i).cloned().map(Caller::Partner),
            Who::Admin(i) => self.admins.get(i).cloned().map(Caller::Admin),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_allows_the_rate_then_asks_to_wait() {
        let mut b = Bucket {
            rate: 3.0,
            tokens: 3.0,
            last: Instant::now(),
        };
        assert!(b.take().is_ok() && b.take().is_ok() && b.take().is_ok());
        assert_eq!(b.take(), Err(1));
    }
}

//! Flood quarantine. A hash of a common benign picture slipped into a list (by mistake or
//! by an attacker) would block that picture everywhere. Such an entry shows itself by its
//! matches: across all partners they jump far above what the entry ever had. Per list
//! entry (list and reference), matches raise a level that drains at the entry's allowance
//! per hour: the larger of the list's `quarantine_min` and `quarantine_factor` times the
//! entry's own hourly history (an average over about five hours, so that an entry that was
//! always popular is judged by its own past). Past the allowance the entry is quarantined:
//! it stops producing `match` verdicts (partners see `no_match`), the metrics, `/v1/lists`
//! (admins) and the log show it, until an admin releases it, after which it is not
//! quarantined again while the service runs (to drop it for good, the maintainer publishes a
//! version without it).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::clock::{now_unix, rfc3339};

const HOUR: Duration = Duration::from_secs(3600);
/// Entries followed at once (only entries that matched are followed at all).
const MAX_TRACKED: usize = 100_000;
/// Weight of the last hour in an entry's history.
const HISTORY_WEIGHT: f64 = 0.2;

/// A list's quarantine rule; `min == 0` turns it off.
#[derive(Debug, Clone, Copy)]
pub struct Rule {
    pub min: u32,
    pub factor: u32,
}

#[derive(Debug)]
struct Rate {
    level: f64,
    last: Instant,
    hour_start: Instant,
    this_hour: u64,
    history: f64,
    quarantined: Option<(String, u64)>,
    released: bool,
}

/// A quarantined entry as `/v1/lists` shows it.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct Quarantined {
    /// The entry's reference (as the maintainer gave it).
    #[serde(rename = "ref")]
    pub reference: String,
    /// When it was quarantined (RFC 3339).
    pub since: String,
    /// Matches withheld since.
    pub withheld: u64,
}

#[derive(Debug, Default)]
pub struct Quarantine {
    entries: Mutex<HashMap<(Arc<str>, String), Rate>>,
}

impl Quarantine {
    /// Counts one match of `reference` in `list` under `rule`. Returns whether the match is
    /// withheld (the entry is quarantined) and whether this match quarantined it.
    pub fn observe(&self, rule: Rule, list: &Arc<str>, reference: &str) -> (bool, bool) {
        if rule.min == 0 {
            return (false, false);
        }
        let now = Instant::now();
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let key = (Arc::clone(list), reference.to_owned());
        if !entries.contains_key(&key) {
            if entries.len() >= MAX_TRACKED {
                return (false, false);
            }
            entries.insert(
                key.clone(),
                Rate {
                    level: 0.0,
                    last: now,
                    hour_start: now,
                    this_hour: 0,
                    history: 0.0,
                    quarantined: None,
                    released: false,
                },
            );
        }
        let Some(r) = entries.get_mut(&key) else {
            return (false, false);
        };
        while now.duration_since(r.hour_start) >= HOUR {
            r.history = (1.0 - HISTORY_WEIGHT) * r.history + HISTORY_WEIGHT * r.this_hour as f64;
            r.this_hour = 0;
            r.hour_start += HOUR;
        }
        let allowance = f64::from(rule.min).max(f64::from(rule.factor) * r.history);
        let drained = now.duration_since(r.last).as_secs_f64() / HOUR.as_secs_f64();
        r.level = (r.level - drained * allowance).max(0.0) + 1.0;
        r.last = now;
        r.this_hour += 1;
        if let Some((_, withheld)) = &mut r.quarantined {
            *withheld += 1;
            return (true, false);
        }
        if r.level > allowance && !r.released {
            r.quarantined = Some((rfc3339(now_unix()), 1));
            return (true, true);
        }
        (false, false)
    }

    /// Releases a quarantined entry; `false` if it was not quarantined.
    pub fn release(&self, list: &str, reference: &str) -> bool {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let key = (Arc::from(list), reference.to_owned());
        match entries.get_mut(&key) {
            Some(r) if r.quarantined.is_some() => {
                r.quarantined = None;
                r.released = true;
                r.level = 0.0;
                true
            }
            _ => false,
        }
    }

    /// The quarantined entries of `list`, by reference.
    pub fn of(&self, list: &str) -> Vec<Quarantined> {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let mut out: Vec<Quarantined> = entries
            .iter()
            .filter(|((l, _), _)| &**l == list)
            .filter_map(|((_, reference), r)| {
                r.quarantined.as_ref().map(|(since, withheld)| Quarantined {
                    reference: reference.clone(),
                    since: since.clone(),
                    withheld: *withheld,
                })
            })
            .collect();
        out.sort_by(|a, b| a.reference.cmp(&b.reference));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_quarantines_until_released_and_off_means_off() {
        let q = Quarantine::default();
        let list: Arc<str> = Arc::from("alpha");
        let rule = Rule { min: 5, factor: 10 };
        let outcomes: Vec<(bool, bool)> = (0..8).map(|_| q.observe(rule, &list, "meme")).collect();
        assert_eq!(outcomes[..5], [(false, false); 5]);
        assert_eq!(outcomes[5], (true, true));
        assert_eq!(outcomes[6], (true, false));
        // Other entries are not affected.
        assert_eq!(q.observe(rule, &list, "other"), (false, false));
        let shown = q.of("alpha");
        assert_eq!(shown.len(), 1);
        assert_eq!(
            (shown[0].reference.as_str(), shown[0].withheld),
            ("meme", 3)
        );
        assert!(q.release("alpha", "meme"));
        assert!(!q.release("alpha", "meme"));
        assert_eq!(q.observe(rule, &list, "meme"), (false, false));
        assert!(q.of("alpha").is_empty());
        let off = Rule { min: 0, factor: 10 };
        assert!((0..100).all(|_| q.observe(off, &list, "x") == (false, false)));
    }
}

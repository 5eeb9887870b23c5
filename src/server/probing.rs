//! Probing detection, per partner. A partner walking a perceptual list (hill-climbing on the
//! distances it is told, or circling an entry just outside its threshold) sends queries that
//! land *near* listed entries over and over: near misses, and inexact matches of an entry it
//! has already matched. A platform matching re-encoded copies spreads its inexact matches
//! over many entries and rarely repeats one within the hour; a walker repeats one entry at
//! every step.
//!
//! Each such probe-like query raises a level that drains at `limit` per hour (a leaky
//! bucket, so a steady honest rate below the limit never trips it). Past the limit the
//! partner is flagged for an hour, and the configured action applies to its perceptual
//! queries: `alert` (a metric and a log line, nothing else), `throttle` (one request with
//! perceptual queries per ten seconds) or `refuse` (403 until the flag expires). Exact kinds
//! are always answered: an exact hash cannot be walked.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub use crate::config::ProbingAction;

/// How long a flag lasts, and the period over which `limit` probes are allowed.
pub const WINDOW: Duration = Duration::from_secs(3600);
/// While throttled, one request with perceptual queries per this long.
pub const THROTTLE_EVERY: Duration = Duration::from_secs(10);
/// Entries remembered per partner (the oldest hour's are forgotten first).
const MAX_REMEMBERED: usize = 4096;

/// Why a request of a flagged partner is not answered now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Held {
    /// Refused for this many more seconds.
    Refused(u64),
    /// Throttled: retry after this many seconds.
    Throttled(u64),
}

#[derive(Debug)]
pub struct Probing {
    pub action: ProbingAction,
    /// Probe-like queries allowed per [`WINDOW`].
    pub limit: u32,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    level: f64,
    last: Instant,
    /// Entries (list, reference) matched inexactly since `since`, with their count.
    seen: HashMap<(Arc<str>, String), u32>,
    since: Instant,
    flagged_until: Option<Instant>,
    last_let_through: Option<Instant>,
}

impl Probing {
    pub fn new(action: ProbingAction, limit: u32) -> Probing {
        let now = Instant::now();
        Probing {
            action,
            limit,
            state: Mutex::new(State {
                level: 0.0,
                last: now,
                seen: HashMap::new(),
                since: now,
                flagged_until: None,
                last_let_through: None,
            }),
        }
    }

    /// Counts what one answer showed: `near_misses` (an estimate, already scaled by the
    /// sampling) and the entries matched inexactly by perceptual queries. Returns `true`
    /// when this flags the partner (it was not flagged before).
    pub fn observe<'a>(
        &self,
        near_misses: u64,
        inexact: impl IntoIterator<Item = (&'a Arc<str>, &'a str)>,
    ) -> bool {
        let now = Instant::now();
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let drained = now.duration_since(s.last).as_secs_f64() / WINDOW.as_secs_f64();
        s.level = (s.level - drained * f64::from(self.limit)).max(0.0);
        s.last = now;
        if now.duration_since(s.since) > WINDOW {
            s.seen.clear();
            s.since = now;
        }
        let mut probes = near_misses as f64;
        for (list, reference) in inexact {
            let key = (Arc::clone(list), reference.to_owned());
            let full = s.seen.len() >= MAX_REMEMBERED;
            match s.seen.get_mut(&key) {
                // The same entry again: a step of a walk.
                Some(n) => {
                    *n += 1;
                    probes += 1.0;
                }
                None if !full => {
                    s.seen.insert(key, 1);
                }
                None => {}
            }
        }
        s.level += probes;
        let flagged = s.flagged_until.is_some_and(|t| t > now);
        if s.level > f64::from(self.limit) {
            s.flagged_until = Some(now + WINDOW);
            return !flagged;
        }
        false
    }

    /// Whether a request with perceptual queries is answered now.
    pub fn admit(&self) -> Result<(), Held> {
        let now = Instant::now();
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let Some(until) = s.flagged_until.filter(|&t| t > now) else {
            return Ok(());
        };
        match self.action {
            ProbingAction::Alert => Ok(()),
            ProbingAction::Refuse => Err(Held::Refused(until.duration_since(now).as_secs().max(1))),
            ProbingAction::Throttle => match s.last_let_through {
                Some(t) if now.duration_since(t) < THROTTLE_EVERY => Err(Held::Throttled(
                    (THROTTLE_EVERY - now.duration_since(t)).as_secs().max(1),
                )),
                _ => {
                    s.last_let_through = Some(now);
                    Ok(())
                }
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_walk_on_one_entry_flags_and_spread_matches_do_not() {
        let p = Probing::new(ProbingAction::Refuse, 10);
        let list: Arc<str> = Arc::from("alpha");
        // Fifty different entries matched inexactly once each: a platform, not a walker.
        let refs: Vec<String> = (0..50).map(|i| format!("r{i}")).collect();
        for r in &refs {
            assert!(!p.observe(0, [(&list, r.as_str())]));
        }
        assert_eq!(p.admit(), Ok(()));
        // One entry, again and again: flagged once, then refused.
        let mut flags = 0;
        for _ in 0..20 {
            flags += usize::from(p.observe(0, [(&list, "r7")]));
        }
        assert_eq!(flags, 1);
        assert!(matches!(p.admit(), Err(Held::Refused(s)) if s > 3000));
    }

    #[test]
    fn near_misses_count_and_throttling_lets_one_through() {
        let p = Probing::new(ProbingAction::Throttle, 100);
        assert!(!p.observe(100, []));
        assert!(p.observe(1, []));
        assert_eq!(p.admit(), Ok(()));
        assert!(matches!(p.admit(), Err(Held::Throttled(_))));
        let alert = Probing::new(ProbingAction::Alert, 1);
        assert!(alert.observe(5, []));
        assert_eq!(alert.admit(), Ok(()));
    }
}

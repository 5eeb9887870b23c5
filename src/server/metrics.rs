//! Prometheus metrics (text format at `/metrics`), with the `prometheus-client` crate.
//!
//! | metric | labels | what |
//! |---|---|---|
//! | `hashsieve_http_requests_total` | endpoint, status | requests answered |
//! | `hashsieve_http_request_duration_seconds` | endpoint | latency histogram |
//! | `hashsieve_queries_total` | partner | hashes looked up |
//! | `hashsieve_matches_total` | list | matched entries reported |
//! | `hashsieve_near_misses_total` | partner | queries that land just outside a list's threshold |
//! | `hashsieve_probing_flags_total` | partner | times a partner was flagged as probing a list |
//! | `hashsieve_quarantined_total` | list | entries quarantined by a flood of matches |
//! | `hashsieve_quarantine_withheld_total` | list | matches of quarantined entries not reported |
//! | `hashsieve_index_version` | list | version served |
//! | `hashsieve_update_refusals_total` | list | sets or deltas refused |

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

type Labels = Vec<(&'static str, String)>;

pub struct Metrics {
    registry: Registry,
    requests: Family<Labels, Counter>,
    latency: Family<Labels, Histogram>,
    queries: Family<Labels, Counter>,
    matches: Family<Labels, Counter>,
    near_misses: Family<Labels, Counter>,
    probing_flags: Family<Labels, Counter>,
    quarantined: Family<Labels, Counter>,
    withheld: Family<Labels, Counter>,
    suppressed: Family<Labels, Counter>,
    versions: Family<Labels, Gauge>,
    refusals: Family<Labels, Counter>,
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("hashsieve");
        let requests = Family::<Labels, Counter>::default();
        // 20 us .. ~1.3 s.
        let latency = Family::<Labels, Histogram>::new_with_constructor(
            (|| Histogram::new(exponential_buckets(2e-5, 2.0, 17))) as fn() -> Histogram,
        );
        let queries = Family::<Labels, Counter>::default();
        let matches = Family::<Labels, Counter>::default();
        let near_misses = Family::<Labels, Counter>::default();
        let probing_flags = Family::<Labels, Counter>::default();
        let quarantined = Family::<Labels, Counter>::default();
        let withheld = Family::<Labels, Counter>::default();
        let suppressed = Family::<Labels, Counter>::default();
        let versions = Family::<Labels, Gauge>::default();
        let refusals = Family::<Labels, Counter>::default();
        registry.register("http_requests", "HTTP requests answered", requests.clone());
        registry.register(
            "http_request_duration_seconds",
            "HTTP request latency (to the response head)",
            latency.clone(),
        );
        registry.register("queries", "Hashes looked up, by partner", queries.clone());
        registry.register(
            "matches",
            "Matched entries reported, by list",
            matches.clone(),
        );
        registry.register(
            "near_misses",
            "Queries within 16 bits beyond a list's threshold, by partner (probing)",
            near_misses.clone(),
        );
        registry.register(
            "probing_flags",
            "Times a partner was flagged as probing a perceptual list, by partner",
            probing_flags.clone(),
        );
        registry.register(
            "quarantined",
            "Entries quarantined by a flood of matches, by list",
            quarantined.clone(),
        );
        registry.register(
            "quarantine_withheld",
            "Matches of quarantined entries not reported, by list",
            withheld.clone(),
        );
        registry.register(
            "suppressed",
            "Matches not reported because the query matched an allow list, by list and allow list",
            suppressed.clone(),
        );
        registry.register("index_version", "List version served", versions.clone());
        registry.register(
            "update_refusals",
            "Sets or deltas refused, by list",
            refusals.clone(),
        );
        Metrics {
            registry,
            requests,
            latency,
            queries,
            matches,
            near_misses,
            probing_flags,
            quarantined,
            withheld,
            suppressed,
            versions,
            refusals,
        }
    }

    pub fn request(&self, endpoint: &str, status: u16, seconds: f64) {
        self.requests
            .get_or_create(&vec![
                ("endpoint", endpoint.to_owned()),
                ("status", status.to_string()),
            ])
            .inc();
        self.latency
            .get_or_create(&vec![("endpoint", endpoint.to_owned())])
            .observe(seconds);
    }

    pub fn queries(&self, partner: &str, n: u64) {
        self.queries
            .get_or_create(&vec![("partner", partner.to_owned())])
            .inc_by(n);
    }

    pub fn matched(&self, list: &str, n: u64) {
        self.matches
            .get_or_create(&vec![("list", list.to_owned())])
            .inc_by(n);
    }

    pub fn near_misses(&self, partner: &str, n: u64) {
        self.near_misses
            .get_or_create(&vec![("partner", partner.to_owned())])
            .inc_by(n);
    }

    pub fn probing_flagged(&self, partner: &str) {
        self.probing_flags
            .get_or_create(&vec![("partner", partner.to_owned())])
            .inc();
    }

    pub fn quarantined(&self, list: &str) {
        self.quarantined
            .get_or_create(&vec![("list", list.to_owned())])
            .inc();
    }

    pub fn withheld(&self, list: &str, n: u64) {
        self.withheld
            .get_or_create(&vec![("list", list.to_owned())])
            .inc_by(n);
    }

    pub fn suppressed(&self, list: &str, allow_list: &str) {
        self.suppressed
            .get_or_create(&vec![
                ("list", list.to_owned()),
                ("allow_list", allow_list.to_owned()),
            ])
            .inc();
    }

    pub fn index_version(&self, list: &str, version: u64) {
        self.versions
            .get_or_create(&vec![("list", list.to_owned())])
            .set(i64::try_from(version).unwrap_or(i64::MAX));
    }

    pub fn update_refused(&self, list: &str) {
        self.refusals
            .get_or_create(&vec![("list", list.to_owned())])
            .inc();
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}

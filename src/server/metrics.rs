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

use std::hash::{Hash, Hasher};
use std::sync::Arc;

use axum::extract::MatchedPath;
use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

// The label sets hold shared strings (list and partner names, axum's route patterns), so that
// counting a request, the hot path of every lookup, copies and allocates nothing.

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    endpoint: Endpoint,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EndpointLabel {
    endpoint: Endpoint,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PartnerLabel {
    partner: Arc<str>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ListLabel {
    list: Arc<str>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SuppressedLabels {
    list: Arc<str>,
    allow_list: Arc<str>,
}

/// The route a request matched (its pattern, `/v1/match/{kind}/{hash}`, never the path with
/// the hash in it), or none: a finite set of label values.
#[derive(Clone, Debug)]
pub struct Endpoint(Option<MatchedPath>);

impl Endpoint {
    pub fn new(route: Option<&MatchedPath>) -> Endpoint {
        Endpoint(route.cloned())
    }

    fn as_str(&self) -> &str {
        self.0.as_ref().map_or("unmatched", MatchedPath::as_str)
    }
}

impl PartialEq for Endpoint {
    fn eq(&self, other: &Endpoint) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for Endpoint {}

impl Hash for Endpoint {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

impl EncodeLabelValue for Endpoint {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> std::fmt::Result {
        EncodeLabelValue::encode(&self.as_str(), encoder)
    }
}

pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    latency: Family<EndpointLabel, Histogram>,
    queries: Family<PartnerLabel, Counter>,
    matches: Family<ListLabel, Counter>,
    near_misses: Family<PartnerLabel, Counter>,
    probing_flags: Family<PartnerLabel, Counter>,
    quarantined: Family<ListLabel, Counter>,
    withheld: Family<ListLabel, Counter>,
    suppressed: Family<SuppressedLabels, Counter>,
    versions: Family<ListLabel, Gauge>,
    refusals: Family<ListLabel, Counter>,
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("hashsieve");
        let requests = Family::<RequestLabels, Counter>::default();
        // 20 us .. ~1.3 s.
        let latency = Family::<EndpointLabel, Histogram>::new_with_constructor(
            (|| Histogram::new(exponential_buckets(2e-5, 2.0, 17))) as fn() -> Histogram,
        );
        let queries = Family::<PartnerLabel, Counter>::default();
        let matches = Family::<ListLabel, Counter>::default();
        let near_misses = Family::<PartnerLabel, Counter>::default();
        let probing_flags = Family::<PartnerLabel, Counter>::default();
        let quarantined = Family::<ListLabel, Counter>::default();
        let withheld = Family::<ListLabel, Counter>::default();
        let suppressed = Family::<SuppressedLabels, Counter>::default();
        let versions = Family::<ListLabel, Gauge>::default();
        let refusals = Family::<ListLabel, Counter>::default();
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

    pub fn request(&self, endpoint: Endpoint, status: u16, seconds: f64) {
        let endpoint = EndpointLabel { endpoint };
        self.latency.get_or_create(&endpoint).observe(seconds);
        self.requests
            .get_or_create(&RequestLabels {
                endpoint: endpoint.endpoint,
                status,
            })
            .inc();
    }

    pub fn queries(&self, partner: &Arc<str>, n: u64) {
        self.queries
            .get_or_create(&partner_label(partner))
            .inc_by(n);
    }

    pub fn matched(&self, list: &str, n: u64) {
        self.matches.get_or_create(&list_label(list)).inc_by(n);
    }

    pub fn near_misses(&self, partner: &Arc<str>, n: u64) {
        self.near_misses
            .get_or_create(&partner_label(partner))
            .inc_by(n);
    }

    pub fn probing_flagged(&self, partner: &Arc<str>) {
        self.probing_flags
            .get_or_create(&partner_label(partner))
            .inc();
    }

    pub fn quarantined(&self, list: &str) {
        self.quarantined.get_or_create(&list_label(list)).inc();
    }

    pub fn withheld(&self, list: &str, n: u64) {
        self.withheld.get_or_create(&list_label(list)).inc_by(n);
    }

    pub fn suppressed(&self, list: &str, allow_list: &str) {
        self.suppressed
            .get_or_create(&SuppressedLabels {
                list: list.into(),
                allow_list: allow_list.into(),
            })
            .inc();
    }

    pub fn index_version(&self, list: &str, version: u64) {
        self.versions
            .get_or_create(&list_label(list))
            .set(i64::try_from(version).unwrap_or(i64::MAX));
    }

    pub fn update_refused(&self, list: &str) {
        self.refusals.get_or_create(&list_label(list)).inc();
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}

fn partner_label(partner: &Arc<str>) -> PartnerLabel {
    PartnerLabel {
        partner: Arc::clone(partner),
    }
}

/// Copies the name: lists are counted on matches and updates, not on every request.
fn list_label(list: &str) -> ListLabel {
    ListLabel { list: list.into() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_render_as_before() {
        let m = Metrics::new();
        m.request(Endpoint::new(None), 404, 0.001);
        m.request(Endpoint::new(None), 404, 0.001);
        m.queries(&Arc::from("isp-one"), 3);
        m.suppressed("alpha", "allowed");
        let text = m.render();
        for line in [
            "hashsieve_http_requests_total{endpoint=\"unmatched\",status=\"404\"} 2",
            "hashsieve_http_request_duration_seconds_count{endpoint=\"unmatched\"} 2",
            "hashsieve_queries_total{partner=\"isp-one\"} 3",
            "hashsieve_suppressed_total{list=\"alpha\",allow_list=\"allowed\"} 1",
        ] {
            assert!(text.contains(line), "{line} not in\n{text}");
        }
    }
}

//! The configuration file as written: what `hashsieve.toml` (and a `partners_file`) may hold,
//! each key with its default. [`super::Config::validate`] turns it into the checked form.

use std::path::PathBuf;

use serde::Deserialize;

use super::{DistancePolicy, ProbingAction};

/// The file as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    #[serde(default = "default_listen")]
    pub listen: String,
    #[serde(default = "default_state_dir")]
    pub state_dir: PathBuf,
    #[serde(default = "default_audit_log")]
    pub audit_log: PathBuf,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    #[serde(default)]
    pub limits: Limits,
    #[serde(default)]
    pub lists: Vec<RawList>,
    #[serde(default)]
    pub partners: Vec<RawPartner>,
    #[serde(default)]
    pub admins: Vec<RawAdmin>,
    /// More `[[partners]]` and `[[admins]]` from a file of their own (a Kubernetes Secret
    /// beside a ConfigMap), relative to this file's directory.
    pub partners_file: Option<PathBuf>,
}

/// What `partners_file` may hold.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawKeys {
    #[serde(default)]
    pub partners: Vec<RawPartner>,
    #[serde(default)]
    pub admins: Vec<RawAdmin>,
}

pub(super) fn default_listen() -> String {
    "127.0.0.1:8080".into()
}
pub(super) fn default_state_dir() -> PathBuf {
    "hashsieve-state".into()
}
pub(super) fn default_audit_log() -> PathBuf {
    "hashsieve-audit.jsonl".into()
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    #[serde(default = "default_max_batch")]
    pub max_batch: usize,
    /// Most frames one `POST /v1/match/video` may send (at a hash a second, 20 000 is five
    /// and a half hours of video).
    #[serde(default = "default_max_video_frames")]
    pub max_video_frames: usize,
    #[serde(default = "default_max_body_bytes")]
    pub max_body_bytes: usize,
    #[serde(default = "default_request_timeout_ms")]
    pub request_timeout_ms: u64,
    /// Largest set or delta accepted from a source or an upload.
    #[serde(default = "default_max_set_bytes")]
    pub max_set_bytes: u64,
    /// The audit log is rotated (renamed to `.1`, replacing the previous one) past this size.
    #[serde(default = "default_audit_rotate_bytes")]
    pub audit_rotate_bytes: u64,
    /// Count, per partner, perceptual queries with no match but an entry within this many
    /// bits beyond the threshold (probing). 0 turns it off.
    #[serde(default = "default_near_miss_bits")]
    pub near_miss_bits: u32,
    /// Look for near misses in one of this many perceptual queries (chosen at random) and
    /// count each as this many: a wide search costs up to ~40 times a normal one (64-bit
    /// kinds at 8 + 8 bits). A partner probing a list sends thousands of near queries, so a
    /// sample still shows it.
    #[serde(default = "default_near_miss_sample")]
    pub near_miss_sample: u32,
    /// After SIGTERM: `/readyz` answers 503 at once and the service keeps answering for this
    /// long (so that a load balancer stops sending it requests), then stops accepting,
    /// drains what is in flight (for at most `request_timeout_ms`) and exits.
    #[serde(default = "default_shutdown_grace_ms")]
    pub shutdown_grace_ms: u64,
    /// Longest one download from an HTTPS source may take (the listing, a file, a
    /// signature): a source that sends one byte a second cannot hold the updater longer.
    #[serde(default = "default_fetch_timeout_ms")]
    pub fetch_timeout_ms: u64,
    /// A connection must send a request's headers within this long of being ready for one
    /// (also while idle between requests), or it is closed: slow clients cannot hold
    /// connections forever.
    #[serde(default = "default_header_timeout_ms")]
    pub header_timeout_ms: u64,
}

pub(super) fn default_max_batch() -> usize {
    10_000
}
pub(super) fn default_max_video_frames() -> usize {
    20_000
}
pub(super) fn default_max_body_bytes() -> usize {
    16 << 20
}
pub(super) fn default_request_timeout_ms() -> u64 {
    5_000
}
pub(super) fn default_max_set_bytes() -> u64 {
    crate::hashset::trust::DEFAULT_MAX_BYTES
}
pub(super) fn default_audit_rotate_bytes() -> u64 {
    256 << 20
}
pub(super) fn default_near_miss_bits() -> u32 {
    16
}
pub(super) fn default_shutdown_grace_ms() -> u64 {
    5_000
}
pub(super) fn default_header_timeout_ms() -> u64 {
    10_000
}
pub(super) fn default_fetch_timeout_ms() -> u64 {
    120_000
}
pub(super) fn default_near_miss_sample() -> u32 {
    128
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_batch: default_max_batch(),
            max_video_frames: default_max_video_frames(),
            max_body_bytes: default_max_body_bytes(),
            request_timeout_ms: default_request_timeout_ms(),
            max_set_bytes: default_max_set_bytes(),
            audit_rotate_bytes: default_audit_rotate_bytes(),
            near_miss_bits: default_near_miss_bits(),
            near_miss_sample: default_near_miss_sample(),
            shutdown_grace_ms: default_shutdown_grace_ms(),
            fetch_timeout_ms: default_fetch_timeout_ms(),
            header_timeout_ms: default_header_timeout_ms(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawList {
    pub name: String,
    pub source: String,
    pub public_keys: Vec<String>,
    /// How many of `public_keys` must have signed each file (k of n).
    #[serde(default = "default_threshold")]
    pub threshold: usize,
    #[serde(default = "default_poll_seconds")]
    pub poll_seconds: u64,
    /// Report the matches of a low-quality PDQ query (verdict `low_quality`) to partners.
    #[serde(default)]
    pub report_low_quality: bool,
    /// For `s3://` sources: the store's endpoint when `AWS_ENDPOINT_URL` is not set.
    #[serde(default)]
    pub s3_endpoint: Option<String>,
    /// Flood quarantine: matches per hour of one entry (across partners) that always count
    /// as a flood; 0 (the default) turns it off.
    #[serde(default)]
    pub quarantine_min: u32,
    /// An entry is also allowed this many times its own hourly history.
    #[serde(default = "default_quarantine_factor")]
    pub quarantine_factor: u32,
    /// The largest version step one file may take above the accepted version.
    #[serde(default = "default_max_version_step")]
    pub max_version_step: u64,
    /// Makes this an allow list: its entries suppress matches of these lists.
    #[serde(default)]
    pub suppresses: Vec<String>,
    /// The operator's thresholds per perceptual kind (`{ pdq = 24 }`): lower the set's, never
    /// raise them.
    #[serde(default)]
    pub thresholds: std::collections::BTreeMap<String, u32>,
    /// The operator's minimum shares of frames for a video match
    /// (`{ query_percent = 90, compared_percent = 10 }`): raise the set's, never lower them.
    #[serde(default)]
    pub video: Option<VideoShareRaw>,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VideoShareRaw {
    #[serde(default)]
    pub query_percent: f64,
    #[serde(default)]
    pub compared_percent: f64,
}

pub(super) fn default_quarantine_factor() -> u32 {
    10
}

pub(super) fn default_threshold() -> usize {
    1
}

/// Versions numbered one by one, or by date (`2026120201`), never step this far at once; a
/// stolen key that signs version 2^63 would otherwise lock out every honest update after it.
pub(super) fn default_max_version_step() -> u64 {
    1_000_000
}

pub(super) fn default_poll_seconds() -> u64 {
    5
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPartner {
    pub name: String,
    pub key_sha256: String,
    pub lists: Vec<String>,
    #[serde(default = "default_rate")]
    pub rate_per_second: u32,
    /// Requests of this partner answered at once; more are refused (429) until one ends, so
    /// that one partner's flood of large batches cannot take every core from the others.
    #[serde(default = "default_max_concurrent")]
    pub max_concurrent: u32,
    #[serde(default)]
    pub distance: DistancePolicy,
    /// What to do when the partner's queries look like a walk of a perceptual list.
    #[serde(default)]
    pub probing: ProbingAction,
    /// Probe-like queries (near misses, repeated inexact matches of one entry) per hour
    /// before `probing` applies.
    #[serde(default = "default_probing_limit")]
    pub probing_limit: u32,
}

pub(super) fn default_probing_limit() -> u32 {
    200
}

pub(super) fn default_rate() -> u32 {
    1000
}
pub(super) fn default_max_concurrent() -> u32 {
    8
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAdmin {
    pub name: String,
    pub key_sha256: String,
}

//! The service configuration (`hashsieve.toml`): parsed strictly (an unknown key is an error,
//! named with its line), then validated so that every later step can rely on it; every
//! validation error names the key (`lists[1].source`) and says what is wrong.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use minisign::PublicKey;
use serde::Deserialize;

use crate::hashset::signing::parse_public_key;
use crate::kinds::HashKind;
pub use raw::{Limits, RawAdmin, RawConfig, RawList, RawPartner};
use raw::{
    RawKeys, default_audit_log, default_listen, default_max_version_step, default_poll_seconds,
    default_state_dir,
};

mod raw;

/// What a partner learns about a match's distance.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DistancePolicy {
    /// The exact Hamming distance.
    #[default]
    Exact,
    /// Rounded up to a multiple of 8 (0 stays 0): enough to rank, too coarse to walk the list.
    Coarse,
    /// No distance at all.
    None,
}

impl DistancePolicy {
    /// The distance as this partner may see it.
    pub fn apply(self, d: u32) -> Option<u32> {
        match self {
            DistancePolicy::Exact => Some(d),
            DistancePolicy::Coarse => Some(d.div_ceil(8) * 8),
            DistancePolicy::None => None,
        }
    }
}

/// What happens to a partner whose queries look like a walk of a perceptual list
/// (`crate::server::probing`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProbingAction {
    /// A metric and a log line; the partner is answered as before.
    #[default]
    Alert,
    /// One request with perceptual queries per ten seconds.
    Throttle,
    /// Requests with perceptual queries refused (403) for an hour.
    Refuse,
}

/// Where a list's signed files come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A local directory holding `<list>-<version>.hset` / `.hdelta` and their `.minisig`.
    Dir(PathBuf),
    /// A base URL (ending in `/`) serving the same files plus `<list>.files`, a listing of
    /// their names one per line, polled with conditional requests.
    Http(String),
    /// Only admin uploads (`POST /v1/admin/hashsets/{list}`).
    Upload,
    /// An object-storage prefix (`s3://bucket/prefix/`, any S3-compatible store) holding the
    /// same files as a directory, found by listing it; `endpoint` is the list's
    /// `s3_endpoint` (`AWS_ENDPOINT_URL` wins when set).
    S3 {
        url: String,
        endpoint: Option<String>,
    },
}

/// A validated list.
#[derive(Debug, Clone)]
pub struct ListConfig {
    pub name: String,
    pub source: Source,
    pub public_keys: Vec<PublicKey>,
    /// How many distinct keys of `public_keys` must sign each file (1 ≤ k ≤ n).
    pub threshold: usize,
    pub poll_seconds: u64,
    pub report_low_quality: bool,
    pub max_version_step: u64,
    /// Flood quarantine (`min == 0`: off).
    pub quarantine_min: u32,
    pub quarantine_factor: u32,
    /// Non-empty: an allow list whose entries suppress matches of these lists.
    pub suppresses: Vec<String>,
    /// The operator's caps on the set's thresholds, perceptual kinds in kind order.
    pub thresholds: Vec<(HashKind, u32)>,
    /// The operator's minimum shares of frames for a video match (raise the set's).
    pub video_share: Option<crate::hashset::format::VideoShare>,
}

impl ListConfig {
    /// What the index applies to this list on top of its set's rules.
    pub fn policy(&self) -> crate::index::ListPolicy {
        crate::index::ListPolicy {
            suppresses: self.suppresses.clone(),
            thresholds: self.thresholds.clone(),
            video_share: self.video_share,
        }
    }
}

/// A validated partner.
#[derive(Debug, Clone)]
pub struct Partner {
    pub name: String,
    pub key_sha256: [u8; 32],
    pub lists: BTreeSet<String>,
    pub rate_per_second: u32,
    pub max_concurrent: u32,
    pub distance: DistancePolicy,
    pub probing: ProbingAction,
    pub probing_limit: u32,
}

/// A validated admin.
#[derive(Debug, Clone)]
pub struct Admin {
    pub name: String,
    pub key_sha256: [u8; 32],
}

/// Certificate chain and private key files (PEM) for serving HTTPS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tls {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    /// Serve HTTPS with these (rustls); `None`: plain HTTP.
    pub tls: Option<Tls>,
    pub state_dir: PathBuf,
    pub audit_log: PathBuf,
    pub limits: Limits,
    pub lists: Vec<ListConfig>,
    pub partners: Vec<Partner>,
    pub admins: Vec<Admin>,
}

/// Why a configuration cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: cannot read: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Syntax { path: PathBuf, message: String },
    #[error("{path}: {key}: {message}")]
    Invalid {
        path: PathBuf,
        key: String,
        message: String,
    },
}

impl Config {
    /// Reads and validates `path`. Relative paths in the file (state dir, audit log, `dir:`
    /// sources) are taken relative to the file's directory.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        Config::load_listening(path, None)
    }

    /// [`Config::load`] with `listen` (`serve --listen`) in place of the file's, validated
    /// as if the file said it.
    pub fn load_listening(path: &Path, listen: Option<SocketAddr>) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let mut raw: RawConfig = toml::from_str(&text).map_err(|e| ConfigError::Syntax {
            path: path.to_owned(),
            message: e.to_string().trim_end().replace('\n', " "),
        })?;
        if let Some(listen) = listen {
            raw.listen = listen.to_string();
        }
        if let Some(file) = &raw.partners_file {
            let file = path.parent().unwrap_or(Path::new("")).join(file);
            let text = std::fs::read_to_string(&file).map_err(|source| ConfigError::Read {
                path: file.clone(),
                source,
            })?;
            let keys: RawKeys = toml::from_str(&text).map_err(|e| ConfigError::Syntax {
                path: file.clone(),
                message: e.to_string().trim_end().replace('\n', " "),
            })?;
            raw.partners.extend(keys.partners);
            raw.admins.extend(keys.admins);
        }
        let base = path.parent().unwrap_or(Path::new(""));
        Config::validate(raw, path, base)
    }

    /// Validates a parsed file (`path` names it in errors; `base` anchors relative paths).
    pub fn validate(raw: RawConfig, path: &Path, base: &Path) -> Result<Config, ConfigError> {
        let invalid = |key: String, message: String| ConfigError::Invalid {
            path: path.to_owned(),
            key,
            message,
        };
        let listen: SocketAddr = raw.listen.parse().map_err(|e| {
            invalid(
                "listen".into(),
                format!("{:?} is not an address:port ({e})", raw.listen),
            )
        })?;
        let tls = match (&raw.tls_cert, &raw.tls_key) {
            (None, None) => None,
            (Some(cert), Some(key)) => Some(Tls {
                cert: base.join(cert),
                key: base.join(key),
            }),
            (Some(_), None) => {
                return Err(invalid(
                    "tls_key".into(),
                    "tls_cert is set, so the private key file (PEM) is needed too".into(),
                ));
            }
            (None, Some(_)) => {
                return Err(invalid(
                    "tls_cert".into(),
                    "tls_key is set, so the certificate chain file (PEM) is needed too".into(),
                ));
            }
        };
        let l = &raw.limits;
        for (key, value) in [
            ("limits.max_batch", l.max_batch as u64),
            ("limits.max_video_frames", l.max_video_frames as u64),
            ("limits.max_body_bytes", l.max_body_bytes as u64),
            ("limits.request_timeout_ms", l.request_timeout_ms),
            ("limits.max_set_bytes", l.max_set_bytes),
            ("limits.audit_rotate_bytes", l.audit_rotate_bytes),
            ("limits.near_miss_sample", u64::from(l.near_miss_sample)),
            ("limits.fetch_timeout_ms", l.fetch_timeout_ms),
            ("limits.header_timeout_ms", l.header_timeout_ms),
        ] {
            if value == 0 {
                return Err(invalid(key.into(), "must be greater than 0".into()));
            }
        }
        let mut names = BTreeSet::new();
        let mut lists = Vec::new();
        for (i, list) in raw.lists.iter().enumerate() {
            let key = |field: &str| format!("lists[{i}].{field}");
            // The rule the hash sets' headers follow: a name a set cannot carry would have
            // every set for the list refused.
            if let Err(e) = crate::hashset::validate_list_name(&list.name) {
                let detail = match e {
                    crate::hashset::FormatError::Invalid { detail, .. } => detail,
                    other => other.to_string(),
                };
                return Err(invalid(key("name"), detail));
            }
            if !names.insert(list.name.clone()) {
                return Err(invalid(
                    key("name"),
                    format!("list {:?} is configured twice", list.name),
                ));
            }
            let source = if let Some(dir) = list.source.strip_prefix("dir:") {
                if dir.is_empty() {
                    return Err(invalid(key("source"), "dir: needs a directory".into()));
                }
                Source::Dir(base.join(dir))
            } else if list.source == "upload" {
                Source::Upload
            } else if list.source.starts_with("https://") || list.source.starts_with("http://") {
                Source::Http(
                    source_url(&list.source).map_err(|why| {
                        invalid(key("source"), format!("{:?}: {why}", list.source))
                    })?,
                )
            } else if list.source.starts_with("s3://") {
                let (bucket, prefix) = crate::objstore::parse_url(&list.source)
                    .map_err(|why| invalid(key("source"), format!("{:?}: {why}", list.source)))?;
                if let Some(endpoint) = &list.s3_endpoint {
                    source_url(endpoint).map_err(|why| {
                        invalid(key("s3_endpoint"), format!("{endpoint:?}: {why}"))
                    })?;
                }
                Source::S3 {
                    url: format!("s3://{bucket}/{prefix}"),
                    endpoint: list.s3_endpoint.clone(),
                }
            } else {
                return Err(invalid(
                    key("source"),
                    format!(
                        "{:?}: expected dir:PATH, https://host/path/, s3://bucket/prefix/ or upload",
                        list.source
                    ),
                ));
            };
            if list.s3_endpoint.is_some() && !matches!(source, Source::S3 { .. }) {
                return Err(invalid(key("s3_endpoint"), "only for s3:// sources".into()));
            }
            if list.public_keys.is_empty() {
                return Err(invalid(
                    key("public_keys"),
                    "at least one minisign public key is needed".into(),
                ));
            }
            let mut keys = Vec::new();
            for (k, text) in list.public_keys.iter().enumerate() {
                keys.push(
                    parse_public_key(text)
                        .map_err(|e| invalid(format!("lists[{i}].public_keys[{k}]"), e))?,
                );
            }
            let ids: BTreeSet<&[u8]> = keys.iter().map(PublicKey::keynum).collect();
            if ids.len() != keys.len() {
                return Err(invalid(
                    key("public_keys"),
                    "the same key is listed twice".into(),
                ));
            }
            if list.threshold == 0 || list.threshold > keys.len() {
                return Err(invalid(
                    key("threshold"),
                    format!(
                        "must be between 1 and the number of public_keys ({}), got {}",
                        keys.len(),
                        list.threshold
                    ),
                ));
            }
            if list.quarantine_factor == 0 {
                return Err(invalid(
                    key("quarantine_factor"),
                    "must be greater than 0".into(),
                ));
            }
            if list.max_version_step == 0 {
                return Err(invalid(
                    key("max_version_step"),
                    "must be greater than 0".into(),
                ));
            }
            if list.poll_seconds == 0 {
                return Err(invalid(
                    key("poll_seconds"),
                    "must be greater than 0".into(),
                ));
            }
            let mut thresholds = Vec::new();
            for (name, &distance) in &list.thresholds {
                let at = || format!("lists[{i}].thresholds.{name}");
                let kind: HashKind = name
                    .parse()
                    .map_err(|e: crate::kinds::UnknownKind| invalid(at(), e.to_string()))?;
                if !kind.is_perceptual() {
                    return Err(invalid(
                        at(),
                        format!("{kind} is an exact kind; only perceptual kinds have thresholds"),
                    ));
                }
                if distance > kind.max_threshold() {
                    return Err(invalid(
                        at(),
                        format!(
                            "{distance} is above the largest {kind} threshold, {}",
                            kind.max_threshold()
                        ),
                    ));
                }
                thresholds.push((kind, distance));
            }
            thresholds.sort();
            let video_share = list
                .video
                .map(|v| {
                    crate::hashset::format::VideoShare::from_percents(
                        v.query_percent,
                        v.compared_percent,
                    )
                    .map_err(|e| invalid(key("video"), e))
                })
                .transpose()?;
            lists.push(ListConfig {
                video_share,
                suppresses: list.suppresses.clone(),
                thresholds,
                name: list.name.clone(),
                source,
                public_keys: keys,
                threshold: list.threshold,
                poll_seconds: list.poll_seconds,
                report_low_quality: list.report_low_quality,
                max_version_step: list.max_version_step,
                quarantine_min: list.quarantine_min,
                quarantine_factor: list.quarantine_factor,
            });
        }
        for (i, list) in lists.iter().enumerate() {
            for (k, target) in list.suppresses.iter().enumerate() {
                let at = format!("lists[{i}].suppresses[{k}]");
                let Some(t) = lists.iter().find(|l| l.name == *target) else {
                    return Err(invalid(
                        at,
                        format!("no list named {target:?} is configured"),
                    ));
                };
                if t.name == list.name {
                    return Err(invalid(at, "a list cannot suppress itself".into()));
                }
                if !t.suppresses.is_empty() {
                    return Err(invalid(
                        at,
                        format!(
                            "{target:?} is itself an allow list, whose matches are never reported"
                        ),
                    ));
                }
            }
        }
        let mut digests = BTreeSet::new();
        let mut partner_names = BTreeSet::new();
        let mut partners = Vec::new();
        for (i, p) in raw.partners.iter().enumerate() {
            let key = |field: &str| format!("partners[{i}].{field}");
            if !valid_name(&p.name) || !partner_names.insert(p.name.clone()) {
                return Err(invalid(
                    key("name"),
                    format!(
                        "{:?}: names must be unique, 1-64 letters, digits, '-', '_' or '.'",
                        p.name
                    ),
                ));
            }
            let digest = parse_digest(&p.key_sha256).map_err(|m| invalid(key("key_sha256"), m))?;
            if !digests.insert(digest) {
                return Err(invalid(
                    key("key_sha256"),
                    "the same key is configured twice".into(),
                ));
            }
            for (k, list) in p.lists.iter().enumerate() {
                if !names.contains(list) {
                    return Err(invalid(
                        format!("partners[{i}].lists[{k}]"),
                        format!("no list named {list:?} is configured"),
                    ));
                }
            }
            if p.rate_per_second == 0 {
                return Err(invalid(
                    key("rate_per_second"),
                    "must be greater than 0".into(),
                ));
            }
            if p.probing_limit == 0 {
                return Err(invalid(
                    key("probing_limit"),
                    "must be greater than 0".into(),
                ));
            }
            if p.max_concurrent == 0 {
                return Err(invalid(
                    key("max_concurrent"),
                    "must be greater than 0".into(),
                ));
            }
            partners.push(Partner {
                name: p.name.clone(),
                key_sha256: digest,
                lists: p.lists.iter().cloned().collect(),
                rate_per_second: p.rate_per_second,
                max_concurrent: p.max_concurrent,
                distance: p.distance,
                probing: p.probing,
                probing_limit: p.probing_limit,
            });
        }
        let mut admins = Vec::new();
        for (i, a) in raw.admins.iter().enumerate() {
            let key = |field: &str| format!("admins[{i}].{field}");
            if !valid_name(&a.name) {
                return Err(invalid(
                    key("name"),
                    format!("{:?} is not a valid name", a.name),
                ));
            }
            let digest = parse_digest(&a.key_sha256).map_err(|m| invalid(key("key_sha256"), m))?;
            if !digests.insert(digest) {
                return Err(invalid(
                    key("key_sha256"),
                    "admin keys must differ from partner keys and from each other".into(),
                ));
            }
            admins.push(Admin {
                name: a.name.clone(),
                key_sha256: digest,
            });
        }
        if !listen.ip().is_loopback() && partners.is_empty() {
            return Err(invalid(
                "listen".into(),
                format!(
                    "{listen} is not a loopback address and no [[partners]] are configured: refusing to serve lists to anyone unauthenticated"
                ),
            ));
        }
        Ok(Config {
            listen,
            tls,
            state_dir: base.join(&raw.state_dir),
            audit_log: base.join(&raw.audit_log),
            limits: raw.limits,
            lists,
            partners,
            admins,
        })
    }

    /// The built-in demo: the bundled example lists (from `hashsets-example/` under `root`)
    /// on 127.0.0.1:8080 (or `listen`), no partners (unauthenticated, loopback only), no
    /// admins.
    pub fn demo(root: &Path, listen: Option<SocketAddr>) -> Result<Config, ConfigError> {
        let ex = root.join("hashsets-example");
        let key_path = ex.join("example-only.pub");
        let key = std::fs::read_to_string(&key_path).map_err(|source| ConfigError::Read {
            path: key_path.clone(),
            source,
        })?;
        let list = |name: &str| RawList {
            name: name.into(),
            source: format!("dir:{}", ex.join(name).display()),
            public_keys: vec![key.clone()],
            threshold: 1,
            poll_seconds: default_poll_seconds(),
            report_low_quality: false,
            s3_endpoint: None,
            max_version_step: default_max_version_step(),
            quarantine_min: 0,
            quarantine_factor: raw::default_quarantine_factor(),
            suppresses: Vec::new(),
            thresholds: Default::default(),
            video: None,
        };
        let raw = RawConfig {
            listen: listen.map_or_else(default_listen, |l| l.to_string()),
            state_dir: default_state_dir(),
            audit_log: default_audit_log(),
            tls_cert: None,
            tls_key: None,
            // A local demo has no load balancer to tell that it is going: stop at once.
            limits: Limits {
                shutdown_grace_ms: 0,
                ..Limits::default()
            },
            lists: vec![list("alpha"), list("beta")],
            partners: Vec::new(),
            admins: Vec::new(),
            partners_file: None,
        };
        Config::validate(raw, Path::new("<built-in demo config>"), root)
    }

    /// True when anyone who can reach the port may match (no partner keys configured).
    pub fn is_open_demo(&self) -> bool {
        self.partners.is_empty()
    }
}

/// An `https://` (or, to this machine only, `http://`) source as a base URL ending in `/`.
/// Plain HTTP is refused beyond loopback: lists are sensitive, so anything that crosses a
/// network must be `https://`.
fn source_url(raw: &str) -> Result<String, String> {
    let mut url = reqwest::Url::parse(raw).map_err(|e| format!("not a URL ({e})"))?;
    let host = url.host_str().ok_or("no host")?;
    let loopback = host == "localhost"
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    if url.scheme() == "http" && !loopback {
        return Err(
            "plain http:// only to this machine (127.0.0.1, [::1], localhost); lists travel over https://"
                .into(),
        );
    }
    if url.query().is_some() || url.fragment().is_some() || !url.username().is_empty() {
        return Err("a base URL takes no query, fragment or user name".into());
    }
    if !url.path().ends_with('/') {
        let path = format!("{}/", url.path());
        url.set_path(&path);
    }
    Ok(url.into())
}

/// Partner and admin names: they appear in metrics labels and the audit log.
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

fn parse_digest(hex: &str) -> Result<[u8; 32], String> {
    let value = crate::kinds::HashValue::parse(crate::kinds::HashKind::Sha256, hex)
        .map_err(|e| format!("expected the SHA-256 of the API key as 64 hex digits: {e}"))?;
    let mut out = [0u8; 32];
    out.copy_from_slice(value.as_bytes());
    Ok(out)
}

#[cfg(test)]
mod tests;

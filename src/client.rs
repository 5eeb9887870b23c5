//! The partner's client for `POST /v1/match` (and `/v1/match/video`): sends hashes (never files) in batches with the
//! partner's bearer key, waits and retries when rate-limited, and turns problem+json answers
//! into errors that say what the server said.

use std::time::Duration;

use serde_json::Value;

use crate::index::Query;
use crate::index::vpdq::Frame;
use crate::wire::{
    FrameIn, MatchRequest, MatchResponse, QueryIn, URL_PREFIX_BYTES, UrlPrefixRequest,
    UrlPrefixResponse, VideoRequest, VideoResponse,
};

/// Why a batch could not be matched.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("{url}: request failed")]
    Http {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("{url}: {status} {title}: {detail}")]
    Problem {
        url: String,
        status: u16,
        title: String,
        detail: String,
    },
    #[error("{url}: unexpected answer: {detail}")]
    Unexpected { url: String, detail: String },
    #[error("{path}: {detail}")]
    CaCert { path: String, detail: String },
}

/// A connection to one hashsieve service.
pub struct Client {
    /// The service's root URL, without a trailing slash.
    base: String,
    key: Option<String>,
    http: reqwest::blocking::Client,
    /// Retries of a rate-limited batch before giving up.
    max_retries: u32,
}

impl Client {
    /// `base` is the service's root URL (`https://hashsieve.example.org`); `key` the
    /// partner's API key (none for a local demo); `ca_cert` a PEM file of certificate
    /// authorities to trust besides the platform's (a service behind a private CA).
    pub fn new(
        base: &str,
        key: Option<String>,
        ca_cert: Option<&std::path::Path>,
    ) -> Result<Client, ClientError> {
        let mut client = Client::with_timeout(base, key, ca_cert, Duration::from_secs(120))?;
        client.max_retries = 5;
        Ok(client)
    }

    /// [`Client::new`] with each request bounded by `timeout` (a proxy's helper cannot wait
    /// the two minutes a large batch may take) and no retry when rate-limited.
    pub fn with_timeout(
        base: &str,
        key: Option<String>,
        ca_cert: Option<&std::path::Path>,
        timeout: Duration,
    ) -> Result<Client, ClientError> {
        let base = base.trim_end_matches('/').to_owned();
        let mut builder = reqwest::blocking::Client::builder()
            .timeout(timeout)
            .user_agent(concat!("hashsieve/", env!("CARGO_PKG_VERSION")));
        if let Some(path) = ca_cert {
            let bad = |detail: String| ClientError::CaCert {
                path: path.display().to_string(),
                detail,
            };
            let pem = std::fs::read(path).map_err(|e| bad(format!("cannot read: {e}")))?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| bad(format!("not PEM certificates: {e}")))?;
            if certs.is_empty() {
                return Err(bad("no certificate in the file".to_owned()));
            }
            for cert in certs {
                builder = builder.add_root_certificate(cert);
            }
        }
        let http = builder.build().map_err(|source| ClientError::Http {
            url: base.clone(),
            source,
        })?;
        Ok(Client {
            base,
            key,
            http,
            max_retries: 0,
        })
    }

    /// Matches one batch (at most the server's `max_batch` queries): one verdict per query,
    /// in order, and the list versions it was matched against.
    pub fn match_batch(&self, queries: &[Query]) -> Result<MatchResponse<'static>, ClientError> {
        let body = MatchRequest {
            queries: queries.iter().map(QueryIn::of).collect(),
            lists: None,
        };
        let (url, parsed): (String, MatchResponse<'static>) = self.post("/v1/match", &body)?;
        if parsed.results.len() != queries.len() {
            return Err(ClientError::Unexpected {
                url,
                detail: format!(
                    "{} results for {} queries",
                    parsed.results.len(),
                    queries.len()
                ),
            });
        }
        Ok(parsed)
    }

    /// Matches one video, given as its frames (at most the server's
    /// `limits.max_video_frames`): the listed videos and images it matches.
    pub fn match_video(&self, frames: &[Frame]) -> Result<VideoResponse<'static>, ClientError> {
        let body = VideoRequest {
            frames: frames.iter().map(FrameIn::of).collect(),
            lists: None,
        };
        let (_, parsed) = self.post("/v1/match/video", &body)?;
        Ok(parsed)
    }

    /// The listed `url` entries whose hashes start with these prefixes (privacy mode; at
    /// most the server's `max_batch` prefixes).
    pub fn url_prefixes(
        &self,
        prefixes: &[[u8; URL_PREFIX_BYTES]],
    ) -> Result<UrlPrefixResponse<'static>, ClientError> {
        let body = UrlPrefixRequest {
            prefixes: prefixes
                .iter()
                .map(|p| crate::kinds::hex_lower(p))
                .collect(),
            lists: None,
        };
        let (url, parsed): (String, UrlPrefixResponse<'static>) =
            self.post("/v1/match/url-prefixes", &body)?;
        let asked = |hash: &str| {
            prefixes
                .iter()
                .any(|p| hash.starts_with(&crate::kinds::hex_lower(p)))
        };
        if let Some(e) = parsed.entries.iter().find(|e| !asked(&e.hash)) {
            return Err(ClientError::Unexpected {
                url,
                detail: format!("entry {} has none of the prefixes asked for", e.hash),
            });
        }
        Ok(parsed)
    }

    /// POSTs `body` as JSON to `path`, waiting and retrying while rate-limited; the URL and
    /// the parsed answer, or the server's problem as an error.
    fn post<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        body: &impl serde::Serialize,
    ) -> Result<(String, T), ClientError> {
        let url = format!("{}{path}", self.base);
        let mut attempt = 0;
        loop {
            let mut request = self.http.post(&url).json(body);
            if let Some(key) = &self.key {
                request = request.bearer_auth(key);
            }
            let response = request.send().map_err(|source| ClientError::Http {
                url: url.clone(),
                source,
            })?;
            let status = response.status();
            if status == reqwest::StatusCode::TOO_MANY_REQUESTS && attempt < self.max_retries {
                let wait = response
                    .headers()
                    .get(reqwest::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse::<u64>().ok())
                    .unwrap_or(1)
                    .min(60);
                attempt += 1;
                std::thread::sleep(Duration::from_secs(wait));
                continue;
            }
            let text = response.text().map_err(|source| ClientError::Http {
                url: url.clone(),
                source,
            })?;
            if !status.is_success() {
                let problem: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
                let field = |name: &str| {
                    problem[name]
                        .as_str()
                        .map(str::to_owned)
                        .unwrap_or_else(|| text.chars().take(200).collect())
                };
                return Err(ClientError::Problem {
                    url,
                    status: status.as_u16(),
                    title: field("title"),
                    detail: field("detail"),
                });
            }
            let parsed: T = serde_json::from_str(&text).map_err(|e| ClientError::Unexpected {
                url: url.clone(),
                detail: e.to_string(),
            })?;
            return Ok((url, parsed));
        }
    }
}

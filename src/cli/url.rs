//! `hashsieve url expressions | check | squid-helper`: URLs checked by the hashes of their
//! Safe Browsing expressions ([`crate::urls`]), against signed sets here or a service, which
//! sees the expression hashes (or, in privacy mode, 4-byte prefixes of them), never a URL.

use std::collections::HashMap;
use std::ffi::OsString;
use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use serde::Serialize;

use super::Outcome;
use crate::client::Client;
use crate::index::{Index, MatchOptions, Query};
use crate::kinds::{HashKind, HashValue, hex_lower};
use crate::urls::{Canonical, Expression, ExpressionKind};
use crate::wire::{MatchOut, URL_PREFIX_BYTES, VerdictOut};

#[derive(Debug, clap::Subcommand)]
pub(crate) enum UrlCommand {
    /// Print each URL's canonical form and the expressions a lookup checks, each with its
    /// SHA-256 (what a `url` list entry holds): one NDJSON record per URL.
    Expressions {
        /// URLs (a scheme is optional: `example.com/a` is `http://example.com/a`).
        #[arg(required = true, value_name = "URL")]
        urls: Vec<OsString>,
    },
    /// Check URLs against URL lists: one NDJSON verdict per URL naming what matched (the
    /// host, a path prefix, or the exact URL). Only expression hashes leave this machine
    /// (with --privacy, only 4-byte prefixes of them). Exit 1 when any URL is listed.
    Check {
        #[command(flatten)]
        against: Against,
        #[arg(required = true, value_name = "URL")]
        urls: Vec<OsString>,
    },
    /// Squid external ACL helper: reads one URL per line (`[channel-ID] URL`, as Squid sends
    /// it with or without `concurrency=`), answers `OK` for a listed URL and `ERR` otherwise.
    /// See docs/operations.md, "Blocking URLs with Squid".
    SquidHelper {
        #[command(flatten)]
        against: Against,
        /// When the service cannot be asked: `open` lets the request through (ERR), `closed`
        /// blocks it (OK). Either way the helper says why in Squid's log (message=).
        #[arg(long, value_enum, default_value = "open")]
        fail: FailMode,
        /// How long an answer is reused for the same URL (0: never).
        #[arg(long, value_name = "SECONDS", default_value_t = 60)]
        cache_seconds: u64,
        /// Give up on the service after this long and answer per --fail.
        #[arg(long, value_name = "MS", default_value_t = 2000)]
        timeout_ms: u64,
    },
}

/// What URLs are checked against: signed sets here, or a service.
#[derive(Debug, clap::Args)]
pub(crate) struct Against {
    /// The hashsieve service to ask (partner key from --api-key-env).
    #[arg(long, value_name = "URL", required_unless_present = "hashsets")]
    server: Option<String>,
    /// The environment variable holding the partner's API key (with --server).
    #[arg(
        long = "api-key-env",
        value_name = "VAR",
        default_value = "HASHSIEVE_API_KEY"
    )]
    api_key_env: String,
    /// With --server: also trust the certificate authorities in this PEM file.
    #[arg(long = "ca-cert", value_name = "PEM", requires = "server")]
    ca_cert: Option<PathBuf>,
    /// With --server: send 4-byte prefixes of the expression hashes, never the hashes, and
    /// compare the full hashes the service returns here (it cannot tell which URL it was).
    #[arg(long, requires = "server")]
    privacy: bool,
    /// A signed URL list to check against instead of a service (repeatable).
    #[arg(
        long = "hashset",
        value_name = "SET",
        conflicts_with = "server",
        requires = "public_keys"
    )]
    hashsets: Vec<PathBuf>,
    /// The public key the sets must be signed with (repeat during a key rotation).
    #[arg(long = "public-key", value_name = "FILE", conflicts_with = "server")]
    public_keys: Vec<PathBuf>,
    /// How many distinct --public-key keys must have signed each set (k of n).
    #[arg(long, value_name = "K", default_value_t = 1, conflicts_with = "server")]
    threshold: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum FailMode {
    Open,
    Closed,
}

pub(crate) fn run(command: UrlCommand) -> anyhow::Result<Outcome> {
    match command {
        UrlCommand::Expressions { urls } => expressions(&urls),
        UrlCommand::Check { against, urls } => {
            let judge = Judge::new(&against, None)?;
            check(&judge, &urls)
        }
        UrlCommand::SquidHelper {
            against,
            fail,
            cache_seconds,
            timeout_ms,
        } => {
            let judge = Judge::new(&against, Some(Duration::from_millis(timeout_ms.max(1))))?;
            let stdin = std::io::stdin();
            let stdout = std::io::stdout();
            squid_helper(
                &judge,
                fail,
                Duration::from_secs(cache_seconds),
                stdin.lock(),
                stdout.lock(),
            )
        }
    }
}

/// The bytes of a command-line URL (any bytes on Unix; elsewhere its text).
fn arg_bytes(arg: &OsString) -> Vec<u8> {
    #[cfg(unix)]
    {
        use std::os::unix::ffi::OsStrExt as _;
        arg.as_bytes().to_vec()
    }
    #[cfg(not(unix))]
    {
        arg.to_string_lossy().into_owned().into_bytes()
    }
}

#[derive(Serialize)]
struct ExpressionOut<'a> {
    expression: &'a str,
    kind: &'static str,
    sha256: String,
}

fn expressions(urls: &[OsString]) -> anyhow::Result<Outcome> {
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut bad = 0usize;
    for arg in urls {
        let url = arg.to_string_lossy();
        let record = match Canonical::parse(&arg_bytes(arg)) {
            Ok(c) => {
                let expressions = c.expressions();
                serde_json::json!({
                    "url": url,
                    "canonical": c.to_string(),
                    "expressions": expressions.iter().map(|e| ExpressionOut {
                        expression: &e.text,
                        kind: e.kind.name(),
                        sha256: hex_lower(&e.hash()),
                    }).collect::<Vec<_>>(),
                })
            }
            Err(e) => {
                bad += 1;
                eprintln!("hashsieve: {url}: {e}");
                serde_json::json!({ "url": url, "error": e.to_string() })
            }
        };
        serde_json::to_writer(&mut out, &record)?;
        out.write_all(b"\n")?;
    }
    out.flush()?;
    Ok(Outcome::of(bad > 0, false))
}

/// One listed entry a URL matched, and which of its expressions matched it.
#[derive(Debug, Clone, Serialize)]
struct UrlMatch {
    expression: String,
    expression_kind: &'static str,
    #[serde(flatten)]
    entry: MatchOut<'static>,
}

/// Where verdicts come from.
enum Judge {
    /// Verified sets, indexed here.
    Local(Index),
    /// A service: the expression hashes in a batch, or (`privacy`) their prefixes.
    Server { client: Client, privacy: bool },
}

/// Queries per request to a service (the default `limits.max_batch` is 10 000).
const REQUEST_QUERIES: usize = 1000;

impl Judge {
    /// `timeout`: the helper's bound on each request (no retry when rate-limited); `None`
    /// for the client's defaults (two minutes, waiting out rate limits).
    fn new(against: &Against, timeout: Option<Duration>) -> anyhow::Result<Judge> {
        if let Some(url) = &against.server {
            let key = std::env::var(&against.api_key_env)
                .ok()
                .filter(|k| !k.trim().is_empty());
            let ca = against.ca_cert.as_deref();
            let client = match timeout {
                Some(t) => Client::with_timeout(url, key, ca, t)?,
                None => Client::new(url, key, ca)?,
            };
            return Ok(Judge::Server {
                client,
                privacy: against.privacy,
            });
        }
        if against.hashsets.is_empty() {
            bail!("give --server URL, or --hashset SET with --public-key FILE");
        }
        let keys = against
            .public_keys
            .iter()
            .map(|p| super::hashset::load_public_key(p))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let policy = super::hashset::threshold_policy(keys, against.threshold)?;
        let sets = super::hashset::verify_full_sets(&against.hashsets, &policy)?
            .map_err(|refusal| anyhow::anyhow!("refused: {refusal}"))?;
        Ok(Judge::Local(
            Index::build(sets).context("building the index")?,
        ))
    }

    /// The matches of each URL, in order.
    fn judge(&self, urls: &[Canonical]) -> anyhow::Result<Vec<Vec<UrlMatch>>> {
        let expressions: Vec<Vec<Expression>> = urls.iter().map(Canonical::expressions).collect();
        let flat: Vec<(usize, &Expression, [u8; 32])> = expressions
            .iter()
            .enumerate()
            .flat_map(|(u, es)| es.iter().map(move |e| (u, e, e.hash())))
            .collect();
        let mut found: Vec<Vec<UrlMatch>> = vec![Vec::new(); urls.len()];
        let mut record = |u: usize, e: &Expression, entry: MatchOut<'static>| {
            found[u].push(UrlMatch {
                expression: e.text.clone(),
                expression_kind: e.kind.name(),
                entry,
            });
        };
        let queries: Vec<Query> = flat
            .iter()
            .map(|(_, _, h)| Query {
                hash: HashValue::from_bytes(HashKind::Url, h).expect("32 bytes"),
                quality: None,
            })
            .collect();
        match self {
            Judge::Local(index) => {
                let verdicts = index.match_batch(&queries, &MatchOptions::ALL).verdicts;
                for ((u, e, _), v) in flat.iter().zip(verdicts.iter()) {
                    let out = VerdictOut::new(v, None, Some);
                    for m in out.matches {
                        record(*u, e, owned(m));
                    }
                }
            }
            Judge::Server {
                client,
                privacy: false,
            } => {
                for (part, qs) in flat
                    .chunks(REQUEST_QUERIES)
                    .zip(queries.chunks(REQUEST_QUERIES))
                {
                    let answer = client.match_batch(qs)?;
                    for ((u, e, _), v) in part.iter().zip(answer.results) {
                        for m in v.matches {
                            record(*u, e, m);
                        }
                    }
                }
            }
            Judge::Server {
                client,
                privacy: true,
            } => {
                let mut prefixes: Vec<[u8; URL_PREFIX_BYTES]> = flat
                    .iter()
                    .map(|(_, _, h)| {
                        let mut p = [0u8; URL_PREFIX_BYTES];
                        p.copy_from_slice(&h[..URL_PREFIX_BYTES]);
                        p
                    })
                    .collect();
                prefixes.sort_unstable();
                prefixes.dedup();
                let mut listed: HashMap<String, Vec<MatchOut<'static>>> = HashMap::new();
                for part in prefixes.chunks(REQUEST_QUERIES) {
                    for e in client.url_prefixes(part)?.entries {
                        listed.entry(e.hash.into_owned()).or_default().push(e.entry);
                    }
                }
                for (u, e, h) in &flat {
                    for m in listed.get(&hex_lower(h)).into_iter().flatten() {
                        record(*u, e, m.clone());
                    }
                }
            }
        }
        for matches in &mut found {
            // The most severe first, then the most specific expression.
            matches.sort_by_key(|m| {
                (
                    m.entry.severity.unwrap_or(u16::MAX),
                    std::cmp::Reverse(m.expression_kind == ExpressionKind::Url.name()),
                )
            });
        }
        Ok(found)
    }
}

fn owned(m: MatchOut<'_>) -> MatchOut<'static> {
    MatchOut {
        list: m.list.into_owned().into(),
        version: m.version,
        kind: m.kind.into_owned().into(),
        severity: m.severity,
        category: m.category.into_owned().into(),
        reference: m.reference.into_owned().into(),
        distance: m.distance,
    }
}

#[derive(Serialize)]
struct CheckOut<'a> {
    url: &'a str,
    canonical: String,
    verdict: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    severity: Option<u16>,
    matches: &'a [UrlMatch],
}

fn check(judge: &Judge, urls: &[OsString]) -> anyhow::Result<Outcome> {
    let mut parsed: Vec<(usize, Canonical)> = Vec::new();
    let mut errors: Vec<(usize, String)> = Vec::new();
    for (i, arg) in urls.iter().enumerate() {
        match Canonical::parse(&arg_bytes(arg)) {
            Ok(c) => parsed.push((i, c)),
            Err(e) => errors.push((i, e.to_string())),
        }
    }
    let canonical: Vec<Canonical> = parsed.iter().map(|(_, c)| c.clone()).collect();
    let verdicts = judge.judge(&canonical)?;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut listed = false;
    let mut verdicts = parsed.iter().zip(verdicts).peekable();
    let mut errors = errors.into_iter().peekable();
    for (i, arg) in urls.iter().enumerate() {
        let url = arg.to_string_lossy();
        if let Some((_, why)) = errors.next_if(|(j, _)| *j == i) {
            eprintln!("hashsieve: {url}: {why}");
            serde_json::to_writer(&mut out, &serde_json::json!({"url": url, "error": why}))?;
        } else if let Some(((_, c), matches)) = verdicts.next_if(|((j, _), _)| *j == i) {
            listed |= !matches.is_empty();
            let line = CheckOut {
                url: &url,
                canonical: c.to_string(),
                verdict: if matches.is_empty() {
                    "no_match"
                } else {
                    "match"
                },
                severity: matches.iter().filter_map(|m| m.entry.severity).min(),
                matches: &matches,
            };
            serde_json::to_writer(&mut out, &line)?;
        }
        out.write_all(b"\n")?;
    }
    out.flush()?;
    let bad = urls.len() - canonical.len();
    Ok(Outcome::of(bad > 0, listed))
}

/// Answers Squid's external ACL requests until stdin ends. Each line is `[channel-ID] URL
/// [acl arguments]`: a first token of digits followed by more is a channel ID (Squid's
/// `concurrency=`), echoed at the start of the answer. The URL is %-decoded once (Squid
/// URL-quotes format values by default) and canonicalised.
fn squid_helper(
    judge: &Judge,
    fail: FailMode,
    cache_for: Duration,
    input: impl BufRead,
    mut output: impl Write,
) -> anyhow::Result<Outcome> {
    /// Answers kept at most (then the cache starts over): a day of a busy proxy's distinct
    /// URLs is far more, so this bounds memory, not the hit rate of repeated lookups.
    const MAX_CACHED: usize = 100_000;
    let mut cache: HashMap<String, (bool, Instant)> = HashMap::new();
    for line in input.split(b'\n') {
        let line = line.context("reading Squid's requests")?;
        let line = line.strip_suffix(b"\r").unwrap_or(&line);
        let tokens: Vec<&[u8]> = line
            .split(|b| b.is_ascii_whitespace())
            .filter(|t| !t.is_empty())
            .collect();
        let (channel, url) = match tokens.as_slice() {
            [] => (None, None),
            [id, url, ..] if id.iter().all(u8::is_ascii_digit) => (Some(*id), Some(*url)),
            [url, ..] => (None, Some(*url)),
        };
        let answer = match url {
            None => "BH message=\"no URL on the request line\"".to_owned(),
            Some(url) => {
                let decoded = percent_decode_once(url);
                match Canonical::parse(&decoded) {
                    Err(e) => {
                        // Not a URL any list can hold: let it pass, and say why in Squid's
                        // log without repeating the URL (nothing logs a URL not listed).
                        format!(
                            "ERR message={}",
                            quote(&format!("hashsieve: {}", e.reason()))
                        )
                    }
                    Ok(c) => {
                        let key = c.to_string();
                        let cached = cache
                            .get(&key)
                            .filter(|(_, at)| at.elapsed() < cache_for)
                            .map(|(listed, _)| *listed);
                        let listed = match cached {
                            Some(listed) => Ok(listed),
                            None => judge
                                .judge(std::slice::from_ref(&c))
                                .map(|v| !v[0].is_empty()),
                        };
                        match listed {
                            Ok(listed) => {
                                if cache_for > Duration::ZERO {
                                    if cache.len() >= MAX_CACHED {
                                        cache.clear();
                                    }
                                    cache.insert(key, (listed, Instant::now()));
                                }
                                if listed {
                                    "OK message=\"listed by hashsieve\"".to_owned()
                                } else {
                                    "ERR".to_owned()
                                }
                            }
                            Err(e) => {
                                let why = quote(&format!("hashsieve unavailable: {e:#}"));
                                match fail {
                                    FailMode::Open => format!("ERR message={why}"),
                                    FailMode::Closed => format!("OK message={why}"),
                                }
                            }
                        }
                    }
                }
            }
        };
        if let Some(id) = channel {
            output.write_all(id)?;
            output.write_all(b" ")?;
        }
        output.write_all(answer.as_bytes())?;
        output.write_all(b"\n")?;
        // Squid waits for each answer: never leave one in the buffer.
        output.flush()?;
    }
    Ok(Outcome::Ok)
}

/// `%XX` decoded once; anything else as it is.
fn percent_decode_once(token: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(token.len());
    let mut i = 0;
    while i < token.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if token[i] == b'%'
            && i + 2 < token.len()
            && let (Some(h), Some(l)) = (hex(token[i + 1]), hex(token[i + 2]))
        {
            out.push((h << 4 | l) as u8);
            i += 3;
        } else {
            out.push(token[i]);
            i += 1;
        }
    }
    out
}

/// A keyword value for Squid: in double quotes, with `"` and `\` escaped, one line.
fn quote(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars().take(300) {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            '\n' | '\r' => out.push(' '),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decoding_once_undoes_squid_quoting_only() {
        assert_eq!(percent_decode_once(b"http://h/a%252Fb"), b"http://h/a%2Fb");
        assert_eq!(percent_decode_once(b"http://h/%"), b"http://h/%");
        assert_eq!(percent_decode_once(b"%4"), b"%4");
        assert_eq!(percent_decode_once(b"a%20b%zz"), b"a b%zz");
    }

    #[test]
    fn messages_are_quoted_for_squid() {
        assert_eq!(quote("a \"b\" \\ c\nd"), "\"a \\\"b\\\" \\\\ c d\"");
    }
}

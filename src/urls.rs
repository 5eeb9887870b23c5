//! URLs as lists hold them: canonical form and lookup expressions, as Google Safe Browsing
//! defines them, so a list can be matched by the SHA-256 of expressions alone.
//!
//! [`Canonical::parse`] canonicalises a URL (tab/CR/LF removed, fragment dropped, repeated
//! percent-unescaping, host normalisation including numeric IPv4 forms and IDN, path `.`/`..`
//! and `//` resolution, re-escaping); [`Canonical::expressions`] gives the at most 5 host
//! suffixes × 6 path prefixes a lookup checks; [`expression_hash`] is what a `url` entry holds.
//!
//! Hand-written: URL crates implement the WHATWG parser, which differs from Safe Browsing's
//! rules (repeated unescaping, escaping of `%` and `#`, dropped ports and user info), and no
//! maintained crate implements the latter. IDN hosts go through the `idna` crate (UTS 46).

use std::net::Ipv6Addr;

use sha2::{Digest as _, Sha256};

/// Longest URL accepted, in bytes (Squid's own limit is 8 KiB; browsers allow about 2 MB but
/// nothing listed is that long, and everything here is linear in the length anyway).
pub const MAX_URL_BYTES: usize = 64 * 1024;

/// Longest host after normalisation (DNS allows 253; the margin is for escapes).
const MAX_HOST_BYTES: usize = 1024;

/// Host suffixes checked per URL (the host itself and up to 4 shorter ones).
pub const MAX_HOSTS: usize = 5;

/// Path prefixes tried from the root (`/`, `/a/`, `/a/b/`, `/a/b/c/`), besides the exact path.
pub const MAX_PATH_PREFIXES: usize = 4;

/// Why a string is not a URL that can be canonicalised.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    #[error("the URL is empty")]
    Empty,
    #[error("the URL is {0} bytes long, the limit is {MAX_URL_BYTES}")]
    TooLong(usize),
    #[error("the URL {url:?} has no host")]
    NoHost { url: String },
    #[error(
        "the host of {url:?} is {len} bytes long after normalisation, the limit is {MAX_HOST_BYTES}"
    )]
    HostTooLong { url: String, len: usize },
    #[error("the URL {url:?} has a bad port {port:?}: a port is a number up to 65535")]
    BadPort { url: String, port: String },
    #[error("the host of {url:?} holds {found:?}, which no host name can")]
    BadHost { url: String, found: char },
    #[error("the URL {url:?} has a bad IPv6 host {host:?}")]
    BadIpv6 { url: String, host: String },
}

impl UrlError {
    /// What is wrong, without the URL itself (for logs that must not hold unlisted URLs).
    pub fn reason(&self) -> &'static str {
        match self {
            UrlError::Empty => "the URL is empty",
            UrlError::TooLong(_) => "the URL is too long",
            UrlError::NoHost { .. } => "the URL has no host",
            UrlError::HostTooLong { .. } => "the host is too long",
            UrlError::BadPort { .. } => "the port is not a number up to 65535",
            UrlError::BadHost { .. } => "the host holds a character no host name can",
            UrlError::BadIpv6 { .. } => "the IPv6 host is not an address",
        }
    }
}

/// What an expression covers: it decides how a listed entry reads in a verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ExpressionKind {
    /// `host/`: every URL on the host (or, for a suffix, on its subdomains).
    Host,
    /// `host/dir/`: every URL under the directory.
    PathPrefix,
    /// `host/path` or `host/path?query`: the URL itself.
    Url,
}

impl ExpressionKind {
    pub const fn name(self) -> &'static str {
        match self {
            ExpressionKind::Host => "host",
            ExpressionKind::PathPrefix => "path_prefix",
            ExpressionKind::Url => "url",
        }
    }
}

/// One lookup expression of a URL: `host` + `path` (+ `?query`), without the scheme.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expression {
    pub text: String,
    pub kind: ExpressionKind,
}

impl Expression {
    /// The SHA-256 of the expression: what a `url` list entry and query hold.
    pub fn hash(&self) -> [u8; 32] {
        expression_hash(&self.text)
    }
}

/// The SHA-256 of an expression's text.
pub fn expression_hash(expression: &str) -> [u8; 32] {
    Sha256::digest(expression.as_bytes()).into()
}

/// A canonical URL: every part already escaped as Safe Browsing writes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Canonical {
    scheme: String,
    host: String,
    /// The host is an IPv4 or IPv6 address: it has no suffixes.
    is_ip: bool,
    /// Starts with `/`.
    path: String,
    /// After the first `?`, when there is one (it may be empty).
    query: Option<String>,
}

impl Canonical {
    /// Canonicalises `input`, the bytes of a URL (not necessarily UTF-8: a proxy passes on
    /// what it received). A URL without a scheme is taken as `http://`.
    pub fn parse(input: &[u8]) -> Result<Canonical, UrlError> {
        if input.len() > MAX_URL_BYTES {
            return Err(UrlError::TooLong(input.len()));
        }
        let url_text = || {
            String::from_utf8_lossy(input)
                .chars()
                .take(200)
                .collect::<String>()
        };
        let cleaned: Vec<u8> = input
            .iter()
            .copied()
            .filter(|b| !matches!(b, b'\t' | b'\r' | b'\n'))
            .collect();
        let trimmed = trim_spaces(&cleaned);
        let without_fragment = match trimmed.iter().position(|&b| b == b'#') {
            Some(at) => &trimmed[..at],
            None => trimmed,
        };
        if without_fragment.is_empty() {
            return Err(UrlError::Empty);
        }
        let (scheme, rest) = split_scheme(without_fragment);
        let authority_end = rest
            .iter()
            .position(|&b| b == b'/' || b == b'?')
            .unwrap_or(rest.len());
        let (authority, after) = rest.split_at(authority_end);
        let (raw_path, raw_query) = match after.iter().position(|&b| b == b'?') {
            Some(at) => (&after[..at], Some(&after[at + 1..])),
            None => (after, None),
        };
        let host_port = match authority.iter().rposition(|&b| b == b'@') {
            Some(at) => &authority[at + 1..],
            None => authority,
        };
        let raw_host = strip_port(host_port).map_err(|port| UrlError::BadPort {
            url: url_text(),
            port,
        })?;
        let (host, is_ip) = normalize_host(raw_host).map_err(|()| UrlError::BadIpv6 {
            url: url_text(),
            host: String::from_utf8_lossy(raw_host).into_owned(),
        })?;
        if host.is_empty() {
            return Err(UrlError::NoHost { url: url_text() });
        }
        // Unescaped delimiters would make the canonical form parse differently.
        if let Some(found) = host
            .chars()
            .find(|c| !is_ip && matches!(c, ':' | '/' | '?' | '@' | '[' | ']' | '\\'))
        {
            return Err(UrlError::BadHost {
                url: url_text(),
                found,
            });
        }
        if host.len() > MAX_HOST_BYTES {
            return Err(UrlError::HostTooLong {
                url: url_text(),
                len: host.len(),
            });
        }
        Ok(Canonical {
            scheme,
            host,
            is_ip,
            path: normalize_path(raw_path),
            query: raw_query.map(|q| escape(&unescape_fully(q))),
        })
    }

    /// Canonicalises a URL given as text.
    pub fn parse_str(input: &str) -> Result<Canonical, UrlError> {
        Canonical::parse(input.as_bytes())
    }

    pub fn host(&self) -> &str {
        &self.host
    }

    /// The expression of the whole URL without its scheme: what a listed exact URL, path
    /// prefix or host (`host/`) is written as in a list.
    pub fn expression(&self) -> String {
        let mut e = format!("{}{}", self.host, self.path);
        if let Some(q) = &self.query {
            e.push('?');
            e.push_str(q);
        }
        e
    }

    /// The kind of entry [`Canonical::expression`] makes when listed.
    pub fn expression_kind(&self) -> ExpressionKind {
        classify(&self.path, self.query.is_some(), &self.path, true)
    }

    /// The host suffixes a lookup checks: the host, then up to 4 formed from its last 5
    /// components by removing the first one at a time, never the top-level domain alone.
    /// An IP address has only itself.
    pub fn host_suffixes(&self) -> Vec<&str> {
        let mut hosts = vec![self.host.as_str()];
        if self.is_ip {
            return hosts;
        }
        let starts: Vec<usize> = std::iter::once(0)
            .chain(
                self.host
                    .bytes()
                    .enumerate()
                    .filter(|&(_, b)| b == b'.')
                    .map(|(i, _)| i + 1),
            )
            .collect();
        // Suffixes start after one of the last MAX_HOSTS - 1 dots but the very last one.
        let n = starts.len();
        let first = n.saturating_sub(MAX_HOSTS).max(1);
        for &start in starts.get(first..n - 1).unwrap_or_default() {
            hosts.push(&self.host[start..]);
        }
        hosts
    }

    /// The path prefixes a lookup checks: the exact path with its query, the exact path,
    /// then `/` and each directory below it, at most [`MAX_PATH_PREFIXES`] of those; repeats
    /// removed.
    pub fn path_prefixes(&self) -> Vec<(String, ExpressionKind)> {
        let mut paths: Vec<(String, ExpressionKind)> = Vec::with_capacity(6);
        let mut add = |text: String, kind: ExpressionKind| {
            if !paths.iter().any(|(p, _)| *p == text) {
                paths.push((text, kind));
            }
        };
        if let Some(q) = &self.query {
            add(format!("{}?{q}", self.path), ExpressionKind::Url);
        }
        add(
            self.path.clone(),
            classify(&self.path, false, &self.path, true),
        );
        // Directories: every `/` of the path ends one.
        for (end, _) in self
            .path
            .bytes()
            .enumerate()
            .filter(|&(_, b)| b == b'/')
            .take(MAX_PATH_PREFIXES)
        {
            let prefix = &self.path[..=end];
            add(
                prefix.to_owned(),
                classify(prefix, false, &self.path, false),
            );
        }
        paths
    }

    /// Every expression a lookup of this URL checks (at most 30), host by host.
    pub fn expressions(&self) -> Vec<Expression> {
        let paths = self.path_prefixes();
        self.host_suffixes()
            .into_iter()
            .flat_map(|host| {
                paths.iter().map(move |(path, kind)| Expression {
                    text: format!("{host}{path}"),
                    kind: *kind,
                })
            })
            .collect()
    }
}

impl std::fmt::Display for Canonical {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}://{}{}", self.scheme, self.host, self.path)?;
        if let Some(q) = &self.query {
            write!(f, "?{q}")?;
        }
        Ok(())
    }
}

/// The kind of the path expression `path`: the root is the host, the URL's own path
/// (`exact`) the URL, anything else a directory.
fn classify(path: &str, with_query: bool, full: &str, exact: bool) -> ExpressionKind {
    if path == "/" && !with_query {
        ExpressionKind::Host
    } else if exact || path == full {
        ExpressionKind::Url
    } else {
        ExpressionKind::PathPrefix
    }
}

/// Leading and trailing spaces (and other control bytes) are not part of a URL.
fn trim_spaces(bytes: &[u8]) -> &[u8] {
    let start = bytes.iter().position(|&b| b > b' ').unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|&b| b > b' ')
        .map_or(start, |e| e + 1);
    &bytes[start..end]
}

/// `scheme://rest` → (lowercased scheme, rest); no scheme → `http`.
fn split_scheme(url: &[u8]) -> (String, &[u8]) {
    let name_end = url
        .iter()
        .position(|&b| !(b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.')))
        .unwrap_or(url.len());
    if name_end > 0 && url[0].is_ascii_alphabetic() && url[name_end..].starts_with(b"://") {
        let scheme = String::from_utf8_lossy(&url[..name_end]).to_ascii_lowercase();
        (scheme, &url[name_end + 3..])
    } else {
        ("http".to_owned(), url)
    }
}

/// The host part of `host[:port]` (ports are not part of an expression, but a bad one means
/// the input is not a URL).
fn strip_port(host_port: &[u8]) -> Result<&[u8], String> {
    let colon = if host_port.first() == Some(&b'[') {
        match host_port.iter().position(|&b| b == b']') {
            Some(close) => host_port[close + 1..]
                .first()
                .filter(|&&b| b == b':')
                .map(|_| close + 1),
            None => None,
        }
    } else {
        host_port.iter().rposition(|&b| b == b':')
    };
    let Some(colon) = colon else {
        return Ok(host_port);
    };
    let port = &host_port[colon + 1..];
    let valid = port.is_empty()
        || (port.len() <= 5
            && port.iter().all(u8::is_ascii_digit)
            && std::str::from_utf8(port)
                .ok()
                .and_then(|p| p.parse::<u16>().ok())
                .is_some());
    if valid {
        Ok(&host_port[..colon])
    } else {
        Err(String::from_utf8_lossy(port).chars().take(40).collect())
    }
}

/// The canonical host and whether it is an IP address; `Err` for a bracketed host that is not
/// an IPv6 address.
fn normalize_host(raw: &[u8]) -> Result<(String, bool), ()> {
    let unescaped = unescape_fully(raw);
    if unescaped.first() == Some(&b'[') {
        let inner = unescaped
            .strip_prefix(b"[")
            .and_then(|h| h.strip_suffix(b"]"))
            .ok_or(())?;
        let addr: Ipv6Addr = std::str::from_utf8(inner)
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or(())?;
        return Ok((format!("[{addr}]"), true));
    }
    // IDN: a host of valid UTF-8 with non-ASCII characters becomes its ASCII (punycode) form;
    // anything else is taken byte for byte and escaped below.
    // Only a host of letters, digits, `-` and `.` besides its non-ASCII characters is taken
    // as IDN, and only an answer of those is kept: punycode moves the ASCII characters
    // together, which could turn `%`s into new escapes and the canonical form unstable.
    let ldh = |b: u8| b.is_ascii_alphanumeric() || b == b'-' || b == b'.';
    let mut host: Vec<u8> = match std::str::from_utf8(&unescaped) {
        Ok(text) if !text.is_ascii() && text.bytes().all(|b| b >= 0x80 || ldh(b)) => {
            match idna::domain_to_ascii(text) {
                Ok(ascii) if !ascii.is_empty() && ascii.bytes().all(ldh) => ascii.into_bytes(),
                _ => unescaped,
            }
        }
        _ => unescaped,
    };
    host.make_ascii_lowercase();
    // Dots: none leading or trailing, runs of them become one.
    let mut dotted: Vec<u8> = Vec::with_capacity(host.len());
    for &b in &host {
        if b == b'.' && dotted.last().is_none_or(|&last| last == b'.') {
            continue;
        }
        dotted.push(b);
    }
    if dotted.last() == Some(&b'.') {
        dotted.pop();
    }
    if let Some(ip) = parse_ipv4(&dotted) {
        let [a, b, c, d] = ip.to_be_bytes();
        return Ok((format!("{a}.{b}.{c}.{d}"), true));
    }
    Ok((escape(&dotted), false))
}

/// An IPv4 address in any form `inet_aton` takes: 1 to 4 parts, each decimal, octal (leading
/// `0`) or hexadecimal (`0x`), the last filling the bytes that remain (`3279880203`,
/// `195.127.11`, `0xc3.0177.0.013`).
fn parse_ipv4(host: &[u8]) -> Option<u32> {
    let parts: Vec<&[u8]> = host.split(|&b| b == b'.').collect();
    if parts.is_empty() || parts.len() > 4 {
        return None;
    }
    let values: Vec<u64> = parts
        .iter()
        .map(|p| parse_ip_part(p))
        .collect::<Option<_>>()?;
    let (last, leading) = values.split_last()?;
    if leading.iter().any(|&v| v > 255) {
        return None;
    }
    let last_bits = 8 * (5 - values.len()) as u32;
    if *last >= 1u64 << last_bits {
        return None;
    }
    let mut ip: u64 = 0;
    for &v in leading {
        ip = (ip << 8) | v;
    }
    Some(((ip << last_bits) | last) as u32)
}

fn parse_ip_part(part: &[u8]) -> Option<u64> {
    if part.is_empty() || part.len() > 12 {
        return None;
    }
    let text = std::str::from_utf8(part).ok()?;
    if let Some(hex) = text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        if hex.is_empty() {
            return Some(0);
        }
        if !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        u64::from_str_radix(hex, 16).ok()
    } else if text.len() > 1 && text.starts_with('0') {
        if !text.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
            return None;
        }
        u64::from_str_radix(text, 8).ok()
    } else {
        if !text.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        text.parse().ok()
    }
}

/// The path unescaped, with `.` and `..` segments resolved and runs of `/` made one, then
/// escaped again. An empty path is `/`.
fn normalize_path(raw: &[u8]) -> String {
    let unescaped = unescape_fully(raw);
    let mut segments: Vec<&[u8]> = Vec::new();
    for segment in unescaped.split(|&b| b == b'/') {
        match segment {
            b"" | b"." => {}
            b".." => {
                segments.pop();
            }
            _ => segments.push(segment),
        }
    }
    // A path that names a directory (`/a/`, `/a/.`, `/a/b/..`) keeps its final slash.
    let last = unescaped.rsplit(|&b| b == b'/').next().unwrap_or_default();
    let ends_with_slash = matches!(last, b"" | b"." | b"..");
    let mut path: Vec<u8> = Vec::with_capacity(unescaped.len() + 1);
    path.push(b'/');
    for (i, s) in segments.iter().enumerate() {
        if i > 0 {
            path.push(b'/');
        }
        path.extend_from_slice(s);
    }
    if ends_with_slash && !segments.is_empty() {
        path.push(b'/');
    }
    escape(&path)
}

/// Percent-unescapes until no `%XX` is left, in one pass: each byte is appended to the output
/// and, whenever the output then ends in `%XX`, those three become the byte they encode (which
/// may complete another `%XX` before it). The result equals unescaping the whole string again
/// and again until it stops changing, which costs quadratic time on `%252525...`.
fn unescape_fully(input: &[u8]) -> Vec<u8> {
    let mut out: Vec<u8> = Vec::with_capacity(input.len());
    for &b in input {
        out.push(b);
        while let [.., b'%', hi, lo] = out[..] {
            let (Some(hi), Some(lo)) = (hex_value(hi), hex_value(lo)) else {
                break;
            };
            out.truncate(out.len() - 3);
            out.push(hi << 4 | lo);
        }
    }
    out
}

fn hex_value(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

/// Escapes the bytes Safe Browsing escapes: controls and space, `#`, `%`, and everything from
/// 0x7f up, as `%XX` with upper-case digits.
fn escape(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for &b in bytes {
        if b <= b' ' || b >= 0x7f || b == b'#' || b == b'%' {
            out.push_str(&format!("%{b:02X}"));
        } else {
            out.push(b as char);
        }
    }
    out
}

#[cfg(test)]
mod tests;

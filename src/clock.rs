//! Wall-clock time as the formats and the API write it: Unix seconds, and RFC 3339 text.

/// RFC 3339 text of a Unix time (UTC), as used in headers, comments and JSON.
pub fn rfc3339(unix: i64) -> String {
    use time::format_description::well_known::Rfc3339;
    time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_else(|| format!("@{unix}"))
}

/// Parses RFC 3339 into Unix seconds.
pub fn parse_rfc3339(text: &str) -> Result<i64, String> {
    use time::format_description::well_known::Rfc3339;
    time::OffsetDateTime::parse(text, &Rfc3339)
        .map(|t| t.unix_timestamp())
        .map_err(|e| format!("{text:?} is not an RFC 3339 time (like 2026-12-31T00:00:00Z): {e}"))
}

/// The current Unix time in seconds.
pub fn now_unix() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// Whether something that expires at `expires` may still be used at `now` (both Unix
/// seconds): the one expiry rule for sets, deltas and what the service serves.
pub fn serving(expires: i64, now: i64) -> bool {
    now < expires
}

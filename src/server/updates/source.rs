//! Where a list's signed files come from. A [`Source`] lists the files it holds now and
//! fetches one with its signature; the updater decides which to offer to the verifier. One
//! implementation per kind of source: a local directory ([`DirSource`]), an HTTPS base URL
//! with a listing ([`HttpsSource`]) and an object-storage prefix ([`S3Source`]); admin
//! uploads need none (they arrive as commands).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use crate::hashset::trust::{self, Refusal};
use crate::objstore::{Bucket, Object, ObjectError};

/// A file a source holds: its name (`<list>-<version>.hset` or `.hdelta`) and where it is.
#[derive(Debug, Clone)]
pub(super) struct Listed {
    pub name: String,
    /// A path (directories) or a URL (HTTPS), shown in refusals and logs.
    pub location: PathBuf,
}

/// What identifies a file's current content cheaply (sizes and modification times of the
/// file and its signature, or the listing it was named in): a file refused once is offered
/// again only when its stamp changes, so that a signature arriving after its file gets the
/// file looked at again, and a broken file is not re-verified on every poll.
pub(super) type Stamp = Vec<(u64, Option<SystemTime>)>;

/// A place that publishes a list's signed sets and deltas.
pub(super) trait Source: Send {
    /// The files the source holds now (an unchanged listing may cost a conditional request
    /// and nothing more: the source answers from the last one).
    fn list(&mut self, list: &str) -> Result<Vec<Listed>, String>;

    /// The stamp of `file` and its first `signatures` signature files (see [`Stamp`]).
    fn stamp(&self, file: &Listed, signatures: usize) -> Stamp;

    /// The file's bytes (at most `max_bytes`) and those of its first `signatures` signature
    /// files (`NAME.minisig`, `NAME.2.minisig`, ...) that are published; the verifier refuses
    /// a file without enough, and it is looked at again when more arrive.
    fn fetch(
        &self,
        file: &Listed,
        max_bytes: u64,
        signatures: usize,
    ) -> Result<(Vec<u8>, Vec<String>), Refusal>;
}

/// A local directory holding the files side by side.
pub(super) struct DirSource {
    pub dir: PathBuf,
}

impl Source for DirSource {
    fn list(&mut self, _list: &str) -> Result<Vec<Listed>, String> {
        let entries = std::fs::read_dir(&self.dir).map_err(|e| {
            format!(
                "{}: cannot read the source directory: {e}",
                self.dir.display()
            )
        })?;
        Ok(entries
            .flatten()
            .map(|e| Listed {
                name: e.file_name().to_string_lossy().into_owned(),
                location: e.path(),
            })
            .collect())
    }

    fn stamp(&self, file: &Listed, signatures: usize) -> Stamp {
        let of = |p: &Path| {
            std::fs::metadata(p)
                .map(|m| (m.len(), m.modified().ok()))
                .unwrap_or((0, None))
        };
        std::iter::once(of(&file.location))
            .chain((1..=signatures).map(|n| of(&trust::nth_signature_path(&file.location, n))))
            .collect()
    }

    fn fetch(
        &self,
        file: &Listed,
        max_bytes: u64,
        signatures: usize,
    ) -> Result<(Vec<u8>, Vec<String>), Refusal> {
        let bytes = trust::read_limited(&file.location, max_bytes)?;
        let signatures = trust::read_signatures(&file.location, signatures)?;
        Ok((bytes, signatures))
    }
}

/// An `https://` base URL (or `http://` to loopback) serving the files and `<list>.files`, a
/// listing of their names one per line (a URL cannot be listed otherwise). The listing is
/// fetched with `If-None-Match` / `If-Modified-Since` from its last validators.
pub(super) struct HttpsSource {
    pub base: String,
    pub http: reqwest::blocking::Client,
    /// Longest one download may take, body included.
    pub timeout: Duration,
    etag: Option<String>,
    modified: Option<String>,
    /// The last listing, answered again while the source says it has not changed.
    last: Vec<Listed>,
    /// Counts listings that changed: a file's stamp, so that files refused before are looked
    /// at again once the listing changes (they may have been fixed).
    generation: u64,
}

/// A body that fails once its deadline has passed. The HTTP client's own timeout bounds each
/// read, not the whole body, so a source sending one byte a second would otherwise hold
/// the updater for as long as the size limit allows.
struct Deadline<R> {
    inner: R,
    deadline: Instant,
}

impl<R> Deadline<R> {
    fn new(inner: R, deadline: Instant) -> Deadline<R> {
        Deadline { inner, deadline }
    }
}

impl<R: std::io::Read> std::io::Read for Deadline<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if Instant::now() > self.deadline {
            return Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "the download took longer than limits.fetch_timeout_ms",
            ));
        }
        self.inner.read(buf)
    }
}

/// An error with its causes (reqwest says "error sending request" and keeps the why, a
/// timeout or a refused redirect, in its sources).
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let more = s.to_string();
        if !text.contains(&more) {
            text = format!("{text}: {more}");
        }
        source = s.source();
    }
    text
}

/// Redirects are followed only within the source's own origin (scheme, host and port), at
/// most five: a source must not be able to send the updater to another host (an internal
/// address, say).
pub(super) fn same_origin_redirects() -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::custom(|attempt| {
        let origin = |u: &reqwest::Url| {
            (
                u.scheme().to_owned(),
                u.host_str().map(str::to_owned),
                u.port_or_known_default(),
            )
        };
        let first = attempt.previous().first().map(origin);
        if attempt.previous().len() > 5 {
            attempt.error("more than 5 redirects")
        } else if first.is_some_and(|f| f != origin(attempt.url())) {
            let to = attempt.url().to_string();
            attempt.error(format!("redirect to another origin ({to}) refused"))
        } else {
            attempt.follow()
        }
    })
}

/// Longest listing accepted (a million names would be ~40 MB: far more than any list needs).
const MAX_LISTING_BYTES: u64 = 1 << 20;

impl HttpsSource {
    pub fn new(base: String, http: reqwest::blocking::Client, timeout: Duration) -> HttpsSource {
        HttpsSource {
            base,
            http,
            timeout,
            etag: None,
            modified: None,
            last: Vec::new(),
            generation: 0,
        }
    }

    /// GETs `url` within `max_bytes`; `None` for a 404 (a signature not published yet).
    fn get(&self, url: &str, max_bytes: u64) -> Result<Option<Vec<u8>>, Refusal> {
        let io = |detail: String| Refusal::Io {
            path: PathBuf::from(url),
            source: std::io::Error::other(detail),
        };
        let started = Instant::now();
        let r = self.http.get(url).send().map_err(|e| io(chain(&e)))?;
        if r.status() == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !r.status().is_success() {
            return Err(io(format!("HTTP {}", r.status())));
        }
        let declared = r.content_length();
        let body = Deadline::new(r, started + self.timeout);
        trust::read_capped(Path::new(url), body, declared, max_bytes).map(Some)
    }
}

impl Source for HttpsSource {
    fn list(&mut self, list: &str) -> Result<Vec<Listed>, String> {
        let url = format!("{}{list}.files", self.base);
        let mut request = self.http.get(&url);
        if let Some(etag) = &self.etag {
            request = request.header(reqwest::header::IF_NONE_MATCH, etag);
        }
        if let Some(modified) = &self.modified {
            request = request.header(reqwest::header::IF_MODIFIED_SINCE, modified);
        }
        let started = Instant::now();
        let response = request
            .send()
            .map_err(|e| format!("{url}: {}", chain(&e)))?;
        if response.status() == reqwest::StatusCode::NOT_MODIFIED {
            return Ok(self.last.clone());
        }
        if !response.status().is_success() {
            return Err(format!("{url}: HTTP {}", response.status()));
        }
        let header = |name| {
            response
                .headers()
                .get(name)
                .and_then(|v: &reqwest::header::HeaderValue| v.to_str().ok())
                .map(str::to_owned)
        };
        let (etag, modified) = (
            header(reqwest::header::ETAG),
            header(reqwest::header::LAST_MODIFIED),
        );
        let declared = response.content_length();
        let body = Deadline::new(response, started + self.timeout);
        let text = trust::read_capped(Path::new(&url), body, declared, MAX_LISTING_BYTES)
            .map_err(|e| e.to_string())?;
        let text = String::from_utf8(text).map_err(|_| format!("{url}: listing is not UTF-8"))?;
        self.etag = etag;
        self.modified = modified;
        self.generation += 1;
        self.last = crate::hashset::listed_names(&text)
            .map(|f| Listed {
                name: f.to_owned(),
                location: PathBuf::from(format!("{}{f}", self.base)),
            })
            .collect();
        Ok(self.last.clone())
    }

    fn stamp(&self, _file: &Listed, _signatures: usize) -> Stamp {
        vec![(self.generation, None)]
    }

    fn fetch(
        &self,
        file: &Listed,
        max_bytes: u64,
        signatures: usize,
    ) -> Result<(Vec<u8>, Vec<String>), Refusal> {
        let url = file.location.to_string_lossy().into_owned();
        let bytes = self.get(&url, max_bytes)?.ok_or_else(|| Refusal::Io {
            path: PathBuf::from(&url),
            source: std::io::Error::other("HTTP 404"),
        })?;
        let mut found = Vec::new();
        for n in 1..=signatures {
            let sig_url = format!("{}{}", self.base, trust::signature_name(&file.name, n));
            if let Some(s) = self.get(&sig_url, trust::MAX_SIGNATURE_BYTES)? {
                found.push(String::from_utf8_lossy(&s).into_owned());
            }
        }
        Ok((bytes, found))
    }
}

/// An `s3://bucket/prefix/`: the files are the objects directly under the prefix, found by
/// one list call per poll (which also tells each object's size, time and ETag, so an
/// unchanged bucket costs nothing more); a file is fetched only if it is still the object
/// listed (`If-Match` its ETag).
pub(super) struct S3Source {
    pub bucket: Bucket,
    /// The last listing, by name.
    listed: Vec<Object>,
}

impl S3Source {
    pub fn new(bucket: Bucket) -> S3Source {
        S3Source {
            bucket,
            listed: Vec::new(),
        }
    }

    fn object(&self, name: &str) -> Option<&Object> {
        self.listed
            .binary_search_by(|o| o.name.as_str().cmp(name))
            .ok()
            .map(|i| &self.listed[i])
    }

    fn refusal(location: &Path, e: ObjectError) -> Refusal {
        match e {
            ObjectError::TooLarge { size, limit, .. } => Refusal::TooLarge {
                path: location.to_owned(),
                size,
                limit,
            },
            other => Refusal::Io {
                path: location.to_owned(),
                source: std::io::Error::other(other.to_string()),
            },
        }
    }
}

impl Source for S3Source {
    fn list(&mut self, _list: &str) -> Result<Vec<Listed>, String> {
        self.listed = self.bucket.list().map_err(|e| e.to_string())?;
        Ok(self
            .listed
            .iter()
            .map(|o| Listed {
                name: o.name.clone(),
                location: PathBuf::from(format!("{}{}", self.bucket.url(), o.name)),
            })
            .collect())
    }

    fn stamp(&self, file: &Listed, signatures: usize) -> Stamp {
        let of = |name: &str| {
            self.object(name)
                .map_or((0, None), |o| (o.size, Some(o.modified)))
        };
        std::iter::once(of(&file.name))
            .chain((1..=signatures).map(|n| of(&trust::signature_name(&file.name, n))))
            .collect()
    }

    fn fetch(
        &self,
        file: &Listed,
        max_bytes: u64,
        signatures: usize,
    ) -> Result<(Vec<u8>, Vec<String>), Refusal> {
        let etag = self.object(&file.name).and_then(|o| o.etag.as_deref());
        let bytes = self
            .bucket
            .get(&file.name, etag, max_bytes)
            .map_err(|e| Self::refusal(&file.location, e))?
            .ok_or_else(|| Refusal::Io {
                path: file.location.clone(),
                source: std::io::Error::other("no such object (deleted since it was listed)"),
            })?;
        let mut found = Vec::new();
        for n in 1..=signatures {
            let name = trust::signature_name(&file.name, n);
            let Some(o) = self.object(&name) else {
                continue;
            };
            let signature = self
                .bucket
                .get(&name, o.etag.as_deref(), trust::MAX_SIGNATURE_BYTES)
                .map_err(|e| Self::refusal(&file.location, e))?;
            found.extend(signature.map(|s| String::from_utf8_lossy(&s).into_owned()));
        }
        Ok((bytes, found))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_directory_lists_its_files_and_stamps_their_signatures() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a-1.hset"), b"set").unwrap();
        let mut source = DirSource {
            dir: dir.path().to_owned(),
        };
        let files = source.list("a").unwrap();
        assert_eq!(files.len(), 1);
        let before = source.stamp(&files[0], 2);
        let (bytes, signatures) = source.fetch(&files[0], 100, 2).unwrap();
        assert_eq!((bytes.as_slice(), signatures.len()), (&b"set"[..], 0));
        // The signature arriving changes the stamp: the file is looked at again.
        std::fs::write(dir.path().join("a-1.hset.minisig"), b"sig").unwrap();
        let one = source.stamp(&files[0], 2);
        assert_ne!(one, before);
        // So does a second signature (a threshold list), which is fetched too.
        std::fs::write(dir.path().join("a-1.hset.2.minisig"), b"sig2").unwrap();
        assert_ne!(source.stamp(&files[0], 2), one);
        let (_, signatures) = source.fetch(&files[0], 100, 2).unwrap();
        assert_eq!(signatures, ["sig", "sig2"]);
        assert!(
            source.fetch(&files[0], 2, 1).is_err(),
            "over the size limit"
        );
        let gone = DirSource {
            dir: dir.path().join("missing"),
        }
        .list("a");
        assert!(
            gone.unwrap_err()
                .contains("cannot read the source directory")
        );
    }
}

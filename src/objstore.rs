//! Object storage (S3 and every S3-compatible store: MinIO, Ceph, R2, GCS's S3 API), as the
//! service's `s3://` sources and `hashsieve hashset publish --to s3://` use it: list the
//! objects directly under a prefix, get one (capped in size while it streams, and only if it
//! is still the object that was listed), put one.
//!
//! The client is `object_store`'s (its `aws` feature), configured the way every S3 client is:
//! `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY` / `AWS_SESSION_TOKEN`, web identity
//! (`AWS_WEB_IDENTITY_TOKEN_FILE` + `AWS_ROLE_ARN`, as Kubernetes service accounts provide) or
//! instance metadata for credentials, `AWS_REGION`, and `AWS_ENDPOINT_URL` (or the list's
//! `s3_endpoint`) for a store other than AWS. Requests are path-style unless
//! `AWS_VIRTUAL_HOSTED_STYLE_REQUEST=true`. The calls are blocking: each [`Bucket`] drives its
//! requests on a small runtime of its own, so the updater thread and the CLI need no async.

use std::time::{Duration, SystemTime};

use futures_util::StreamExt;
use object_store::aws::{AmazonS3, AmazonS3Builder, AmazonS3ConfigKey};
use object_store::path::Path as ObjectPath;
use object_store::{
    ClientOptions, GetOptions, ObjectStore, ObjectStoreExt, PutPayload, RetryConfig,
};

/// Why a bucket cannot be used, or a request failed. The text starts with the `s3://` URL.
#[derive(Debug, thiserror::Error)]
pub enum ObjectError {
    #[error("{url}: {detail}")]
    Config { url: String, detail: String },
    #[error("{url}: {what}: {source}")]
    Request {
        url: String,
        what: String,
        #[source]
        source: object_store::Error,
    },
    #[error("{url}: {size} bytes is over the size limit of {limit} bytes")]
    TooLarge { url: String, size: u64, limit: u64 },
    #[error(
        "{url}: more than {limit} objects under the prefix; give each list a prefix of its own holding only its files"
    )]
    TooManyObjects { url: String, limit: usize },
    #[error(
        "{url}: changed while it was being read (listed with ETag {listed}); read again on the next poll"
    )]
    Changed { url: String, listed: String },
}

/// Most objects a listing looks at (a list's prefix holds a few hundred files at most).
pub const MAX_OBJECTS: usize = 100_000;

/// One object directly under the prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Object {
    /// Its name below the prefix (no `/`).
    pub name: String,
    pub size: u64,
    pub modified: SystemTime,
    pub etag: Option<String>,
}

/// A bucket and a prefix in it.
pub struct Bucket {
    store: AmazonS3,
    /// `s3://bucket/prefix/`, for messages.
    url: String,
    /// The prefix as object_store spells it (no trailing `/`; empty for the bucket's root).
    prefix: ObjectPath,
    runtime: tokio::runtime::Runtime,
}

/// `s3://bucket/prefix/` split into the bucket and the prefix (empty, or ending in `/`).
pub fn parse_url(url: &str) -> Result<(String, String), String> {
    let rest = url
        .strip_prefix("s3://")
        .ok_or("expected s3://bucket/prefix/")?;
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    let valid_bucket = (3..=63).contains(&bucket.len())
        && bucket
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        && !bucket.starts_with(['-', '.'])
        && !bucket.ends_with(['-', '.']);
    if !valid_bucket {
        return Err(format!(
            "{bucket:?} is not a bucket name (3-63 characters of a-z, 0-9, '-' and '.')"
        ));
    }
    let prefix = prefix.trim_matches('/');
    if prefix.split('/').any(|part| part == ".." || part == ".") || prefix.contains("//") {
        return Err("the prefix may not hold '.', '..' or empty parts".into());
    }
    let prefix = if prefix.is_empty() {
        String::new()
    } else {
        format!("{prefix}/")
    };
    Ok((bucket.to_owned(), prefix))
}

/// Whether a URL names this machine (plain `http://` is accepted only there).
pub fn is_loopback_url(url: &str) -> bool {
    reqwest::Url::parse(url).is_ok_and(|u| {
        u.host_str().is_some_and(|host| {
            host == "localhost"
                || host
                    .trim_start_matches('[')
                    .trim_end_matches(']')
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback())
        })
    })
}

impl Bucket {
    /// The bucket of `url` (`s3://bucket/prefix/`), configured from the environment;
    /// `endpoint` (a list's `s3_endpoint`) is used when `AWS_ENDPOINT_URL` is not set.
    /// Plain `http://` endpoints are accepted on loopback only, as for URL sources.
    pub fn open(url: &str, endpoint: Option<&str>) -> Result<Bucket, ObjectError> {
        let config = |detail: String| ObjectError::Config {
            url: url.to_owned(),
            detail,
        };
        let (bucket, prefix) = parse_url(url).map_err(config)?;
        let mut builder = AmazonS3Builder::from_env().with_bucket_name(&bucket);
        if builder
            .get_config_value(&AmazonS3ConfigKey::Endpoint)
            .is_none()
            && let Some(endpoint) = endpoint
        {
            builder = builder.with_endpoint(endpoint);
        }
        if builder
            .get_config_value(&AmazonS3ConfigKey::Region)
            .is_none()
        {
            builder = builder.with_region("us-east-1");
        }
        let plain = builder
            .get_config_value(&AmazonS3ConfigKey::Endpoint)
            .filter(|e| e.starts_with("http://"));
        if let Some(e) = &plain
            && !is_loopback_url(e)
        {
            return Err(config(format!(
                "endpoint {e}: plain http:// only to this machine; lists travel over https://"
            )));
        }
        let store = builder
            .with_client_options(
                ClientOptions::new()
                    .with_connect_timeout(Duration::from_secs(5))
                    .with_timeout(Duration::from_secs(60)),
            )
            .with_allow_http(plain.is_some())
            .with_retry(RetryConfig {
                max_retries: 2,
                retry_timeout: Duration::from_secs(30),
                ..RetryConfig::default()
            })
            .build()
            .map_err(|e| config(e.to_string()))?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| config(format!("cannot start the client's runtime: {e}")))?;
        Ok(Bucket {
            store,
            url: format!("s3://{bucket}/{prefix}"),
            prefix: ObjectPath::from(prefix.trim_end_matches('/')),
            runtime,
        })
    }

    /// `s3://bucket/prefix/`.
    pub fn url(&self) -> &str {
        &self.url
    }

    fn path(&self, name: &str) -> ObjectPath {
        if self.prefix.as_ref().is_empty() {
            ObjectPath::from(name)
        } else {
            self.prefix.clone().join(name)
        }
    }

    fn request(&self, what: impl Into<String>) -> impl FnOnce(object_store::Error) -> ObjectError {
        let (url, what) = (self.url.clone(), what.into());
        move |source| ObjectError::Request { url, what, source }
    }

    /// The objects directly under the prefix (one list call; "folders" below it are not
    /// descended into), by name.
    pub fn list(&self) -> Result<Vec<Object>, ObjectError> {
        use futures_util::TryStreamExt as _;
        let prefix = (!self.prefix.as_ref().is_empty()).then_some(&self.prefix);
        let depth = self.prefix.parts().count() + 1;
        // Page by page, and no further than MAX_OBJECTS: a prefix holding a million names
        // (by mistake or by malice) costs bounded time and memory, not all of them.
        let mut stream = self.store.list(prefix);
        let mut objects = Vec::new();
        self.runtime.block_on(async {
            while let Some(meta) = stream
                .try_next()
                .await
                .map_err(self.request("cannot list"))?
            {
                if objects.len() == MAX_OBJECTS {
                    return Err(ObjectError::TooManyObjects {
                        url: self.url.clone(),
                        limit: MAX_OBJECTS,
                    });
                }
                // Objects directly under the prefix only (not in "subdirectories").
                if meta.location.parts().count() != depth {
                    continue;
                }
                if let Some(name) = meta.location.filename() {
                    objects.push(Object {
                        name: name.to_owned(),
                        size: meta.size,
                        modified: meta.last_modified.into(),
                        etag: meta.e_tag,
                    });
                }
            }
            Ok(())
        })?;
        objects.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(objects)
    }

    /// Object `name`'s bytes, or `None` if there is none. Refused past `max_bytes` (read no
    /// further) and, when `etag` is given, if the object is no longer the one listed.
    pub fn get(
        &self,
        name: &str,
        etag: Option<&str>,
        max_bytes: u64,
    ) -> Result<Option<Vec<u8>>, ObjectError> {
        let url = format!("{}{name}", self.url);
        let options = GetOptions::new().with_if_match(etag.map(str::to_owned));
        self.runtime.block_on(async {
            let result = match self.store.get_opts(&self.path(name), options).await {
                Ok(r) => r,
                Err(object_store::Error::NotFound { .. }) => return Ok(None),
                Err(object_store::Error::Precondition { .. }) => {
                    return Err(ObjectError::Changed {
                        url,
                        listed: etag.unwrap_or_default().to_owned(),
                    });
                }
                Err(source) => {
                    return Err(ObjectError::Request {
                        url,
                        what: "cannot read".into(),
                        source,
                    });
                }
            };
            let size = result.meta.size;
            if size > max_bytes {
                return Err(ObjectError::TooLarge {
                    url,
                    size,
                    limit: max_bytes,
                });
            }
            let mut bytes = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
            let mut stream = result.into_stream();
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(|source| ObjectError::Request {
                    url: url.clone(),
                    what: "cannot read".into(),
                    source,
                })?;
                // The store may send more than it declared: the cap holds while streaming.
                if (bytes.len() + chunk.len()) as u64 > max_bytes {
                    return Err(ObjectError::TooLarge {
                        url,
                        size: (bytes.len() + chunk.len()) as u64,
                        limit: max_bytes,
                    });
                }
                bytes.extend_from_slice(&chunk);
            }
            Ok(Some(bytes))
        })
    }

    /// Writes object `name` (one request: S3 makes it visible whole or not at all).
    pub fn put(&self, name: &str, bytes: Vec<u8>) -> Result<(), ObjectError> {
        let path = self.path(name);
        self.runtime
            .block_on(self.store.put(&path, PutPayload::from(bytes)))
            .map(|_| ())
            .map_err(self.request(format!("cannot write {name}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_name_a_bucket_and_a_prefix() {
        assert_eq!(
            parse_url("s3://lists/hotline/alpha").unwrap(),
            ("lists".into(), "hotline/alpha/".into())
        );
        assert_eq!(
            parse_url("s3://lists/").unwrap(),
            ("lists".into(), String::new())
        );
        assert_eq!(
            parse_url("s3://lists").unwrap(),
            ("lists".into(), String::new())
        );
        for bad in [
            "https://lists/a",
            "s3://",
            "s3://Lists/a",
            "s3://ab/a",
            "s3://-lists/a",
            "s3://lists/../other",
            "s3://lists/a//b",
        ] {
            assert!(parse_url(bad).is_err(), "{bad}");
        }
        assert!(is_loopback_url("http://127.0.0.1:9000"));
        assert!(is_loopback_url("http://[::1]:9000/"));
        assert!(is_loopback_url("http://localhost:9000"));
        assert!(!is_loopback_url("http://minio.example:9000"));
    }
}

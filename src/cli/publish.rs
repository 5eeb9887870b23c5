//! `hashsieve hashset publish --to <dir:PATH | s3://bucket/prefix/> FILE...`: puts signed
//! sets and deltas where the service polls for them, each under its canonical name
//! (`<list>-<version>.hset` / `.hdelta`), the signature before the file, so that a poller
//! never finds a file whose signature is not there yet. A directory also gets
//! `<list>.files`, the listing an HTTPS source needs, written last.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, anyhow, bail};

use super::Outcome;
use crate::fsutil::write_atomic;
use crate::hashset::signing::{Published, check_comment};
use crate::hashset::trust;
use crate::hashset::{file_name, parse_file_name};
use crate::objstore::Bucket;

#[derive(Debug, clap::Args)]
pub(crate) struct PublishArgs {
    /// Where: `dir:PATH` (created if missing), or `s3://bucket/prefix/` (configured by the
    /// standard AWS_* variables; AWS_ENDPOINT_URL for an S3-compatible store).
    #[arg(long, value_name = "dir:PATH | s3://bucket/prefix/")]
    to: String,
    /// Verify each file against these public keys first (repeat during a rotation, or for a
    /// threshold); without it, only that each file and its signatures belong together is
    /// checked.
    #[arg(long = "public-key", value_name = "FILE")]
    public_keys: Vec<PathBuf>,
    /// With --public-key: how many distinct keys must have signed each file.
    #[arg(long, default_value_t = 1, requires = "public_keys")]
    threshold: usize,
    /// Signed .hset or .hdelta files, each with its FILE.minisig (and for a threshold list
    /// FILE.2.minisig, ...) beside it; all of its signatures are published.
    #[arg(required = true, value_name = "FILE")]
    files: Vec<PathBuf>,
}

/// One file ready to publish.
struct Ready {
    path: PathBuf,
    list: String,
    version: u64,
    name: String,
    bytes: Vec<u8>,
    /// Its signatures, in the order of their file names (`.minisig`, `.2.minisig`, ...).
    signatures: Vec<String>,
}

/// Where files go.
enum Target {
    Dir(PathBuf),
    Bucket(Bucket),
}

impl Target {
    fn parse(to: &str) -> anyhow::Result<Target> {
        if let Some(dir) = to.strip_prefix("dir:") {
            if dir.is_empty() {
                bail!("--to dir: needs a directory");
            }
            return Ok(Target::Dir(PathBuf::from(dir)));
        }
        if to.starts_with("s3://") {
            return Ok(Target::Bucket(Bucket::open(to, None)?));
        }
        bail!("--to {to:?}: expected dir:PATH or s3://bucket/prefix/")
    }

    /// The bytes already published under `name`, if any.
    fn existing(&self, name: &str, limit: u64) -> anyhow::Result<Option<Vec<u8>>> {
        match self {
            Target::Dir(dir) => match std::fs::read(dir.join(name)) {
                Ok(bytes) => Ok(Some(bytes)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(anyhow!("{}: cannot read: {e}", dir.join(name).display())),
            },
            Target::Bucket(bucket) => Ok(bucket.get(name, None, limit)?),
        }
    }

    fn put(&self, name: &str, bytes: &[u8]) -> anyhow::Result<()> {
        match self {
            Target::Dir(dir) => write_atomic(&dir.join(name), bytes)
                .with_context(|| format!("{}: cannot write", dir.join(name).display())),
            Target::Bucket(bucket) => Ok(bucket.put(name, bytes.to_vec())?),
        }
    }

    fn describe(&self, name: &str) -> String {
        match self {
            Target::Dir(dir) => dir.join(name).display().to_string(),
            Target::Bucket(bucket) => format!("{}{name}", bucket.url()),
        }
    }
}

pub(crate) fn run(args: PublishArgs) -> anyhow::Result<Outcome> {
    let keys = args
        .public_keys
        .iter()
        .map(|p| super::hashset::load_public_key(p))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut ready = Vec::new();
    for path in &args.files {
        match prepare(path, &keys, args.threshold)? {
            Ok(file) => ready.push(file),
            Err(refusal) => {
                eprintln!("hashsieve: refused, nothing published: {refusal}");
                return Ok(Outcome::Finding);
            }
        }
    }
    // Oldest first, so that a poller sees the versions appear in order.
    ready.sort_by(|a, b| (&a.list, a.version).cmp(&(&b.list, b.version)));
    let target = Target::parse(&args.to)?;
    if let Target::Dir(dir) = &target {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("{}: cannot create", dir.display()))?;
    }
    for file in &ready {
        let already = match target.existing(&file.name, file.bytes.len() as u64)? {
            Some(bytes) if bytes == file.bytes => true,
            Some(_) => bail!(
                "{}: a different file is already published under this name; publish it as a new version",
                target.describe(&file.name)
            ),
            None => false,
        };
        // Signatures of the same file are always safe to (re)write: a co-signer's signature
        // arriving after the file was published is how a threshold list reaches k.
        for (n, signature) in file.signatures.iter().enumerate() {
            target.put(
                &trust::signature_name(&file.name, n + 1),
                signature.as_bytes(),
            )?;
        }
        if already {
            eprintln!(
                "{}: already published ({} signature(s) now beside it)",
                target.describe(&file.name),
                file.signatures.len()
            );
            continue;
        }
        target.put(&file.name, &file.bytes)?;
        eprintln!(
            "published {} as {}",
            file.path.display(),
            target.describe(&file.name)
        );
    }
    if let Target::Dir(dir) = &target {
        let mut lists: Vec<&str> = ready.iter().map(|f| f.list.as_str()).collect();
        lists.dedup();
        for list in lists {
            write_listing(dir, list)?;
        }
    }
    Ok(Outcome::Ok)
}

/// Reads `path` and its signatures and checks they belong together (and, with `keys`, that
/// at least `threshold` of them are good). `Ok(Err(reason))` for a refused file.
fn prepare(
    path: &Path,
    keys: &[minisign::PublicKey],
    threshold: usize,
) -> anyhow::Result<Result<Ready, String>> {
    let bytes = std::fs::read(path).with_context(|| format!("{}: cannot read", path.display()))?;
    // Published as `.minisig`, `.2.minisig`, ... in the order found (the slot carries no
    // meaning: every signature is checked against every key).
    let signatures = match trust::read_signatures(path, trust::MAX_SIGNATURES) {
        Ok(s) => s,
        Err(refusal) => return Ok(Err(refusal.to_string())),
    };
    if signatures.is_empty() {
        bail!(
            "{}: cannot read its signature {}; sign it first (hashsieve hashset sign)",
            path.display(),
            trust::signature_path(path).display()
        );
    }
    let published = if keys.is_empty() {
        let published = match Published::parse(bytes.clone()) {
            Ok(p) => p,
            Err(e) => return Ok(Err(format!("{}: {e}", path.display()))),
        };
        for (n, signature) in signatures.iter().enumerate() {
            let sig_path = trust::nth_signature_path(path, n + 1);
            let comment = minisign::SignatureBox::from_string(signature)
                .and_then(|s| s.trusted_comment())
                .map_err(|e| anyhow!("{}: unreadable signature: {e}", sig_path.display()))?;
            if let Err(e) = check_comment(&comment, &published) {
                return Ok(Err(format!(
                    "{}: the signature is not this file's ({}): {e}",
                    path.display(),
                    sig_path.display()
                )));
            }
        }
        published
    } else {
        let policy = super::hashset::threshold_policy(keys.to_vec(), threshold)?;
        match trust::verify_bytes(path, bytes.clone(), &signatures, &policy, None) {
            Ok(p) => p,
            Err(refusal) => return Ok(Err(refusal.to_string())),
        }
    };
    let is_delta = matches!(published, Published::Delta(_));
    let (list, version) = (published.list().to_owned(), published.version());
    Ok(Ok(Ready {
        path: path.to_owned(),
        name: file_name(&list, version, is_delta),
        list,
        version,
        bytes,
        signatures,
    }))
}

/// Rewrites `dir/<list>.files`: every `<list>-<version>.hset|.hdelta` in `dir` whose
/// signature is there too, in version order, one per line.
fn write_listing(dir: &Path, list: &str) -> anyhow::Result<()> {
    let mut names: Vec<(u64, String)> = std::fs::read_dir(dir)
        .with_context(|| format!("{}: cannot read", dir.display()))?
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let (version, _) = parse_file_name(list, &name)?;
            dir.join(format!("{name}.minisig"))
                .exists()
                .then_some((version, name))
        })
        .collect();
    names.sort();
    let text: String = names.iter().map(|(_, n)| format!("{n}\n")).collect();
    let path = dir.join(format!("{list}.files"));
    write_atomic(&path, text.as_bytes())
        .with_context(|| format!("{}: cannot write", path.display()))
}

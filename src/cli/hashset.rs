//! `hashsieve keygen` and `hashsieve hashset build | sign | verify | inspect | diff | apply`:
//! the list maintainer's tools.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, anyhow, bail};
use clap::Subcommand;
use minisign::{KeyPair, PublicKey, SecretKey, SecretKeyBox};

use super::Outcome;
use crate::clock::{now_unix, parse_rfc3339, rfc3339};
use crate::fsutil::{write_atomic, write_secret_atomic};
use crate::hashset::delta::{DeltaFile, diff};
use crate::hashset::format::{EntryTable, HashSetFile, Header, VideoShare};
use crate::hashset::input::read_entries;
use crate::hashset::signing::{Published, key_id, parse_public_key, sign};
use crate::hashset::trust::{self, Policy, Refusal, TrustState};
use crate::kinds::{HashKind, hex_lower};

/// Environment variable holding the secret-key password (for scripts; otherwise we prompt).
const PASSWORD_ENV: &str = "HASHSIEVE_PASSWORD";

/// A set built without --expires is valid for this long: a list that never expires could be
/// frozen by an attacker who withholds updates.
const DEFAULT_VALIDITY_DAYS: i64 = 30;

#[derive(Debug, clap::Args)]
pub(crate) struct KeygenArgs {
    /// Where to write the secret key (minisign format).
    #[arg(long, value_name = "FILE")]
    secret_key: PathBuf,
    /// Where to write the public key (minisign format).
    #[arg(long, value_name = "FILE")]
    public_key: PathBuf,
    /// Do not protect the secret key with a password (otherwise taken from $HASHSIEVE_PASSWORD
    /// or asked for on the terminal).
    #[arg(long)]
    unencrypted: bool,
    /// Overwrite existing key files.
    #[arg(long)]
    force: bool,
}

#[derive(Debug, Subcommand)]
pub(crate) enum HashsetCommand {
    /// Build a canonical hash set from CSV (kind,hash,category,ref) or `hashsieve hash` NDJSON.
    Build(BuildArgs),
    /// Sign a set or delta; writes FILE.minisig with a trusted comment that binds the file. A
    /// co-signer of a threshold list runs it too: when FILE.minisig is another key's, the
    /// signature goes to the next free FILE.2.minisig, FILE.3.minisig, ... (this key's own
    /// earlier signature is replaced where it is).
    Sign {
        /// The secret key (password from $HASHSIEVE_PASSWORD or the terminal).
        #[arg(long, value_name = "FILE")]
        secret_key: PathBuf,
        /// The .hset or .hdelta file to sign.
        #[arg(value_name = "SET")]
        set: PathBuf,
    },
    /// Verify a set or delta and its FILE.minisig: exit 0 valid, 1 refused (reason on stderr),
    /// 2 usage or I/O error.
    Verify(VerifyArgs),
    /// Describe a set or delta.
    Inspect {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
        /// Print only the trusted comment to give `minisign -S -t`.
        #[arg(long, conflicts_with = "json")]
        trusted_comment: bool,
        #[arg(value_name = "SET")]
        set: PathBuf,
    },
    /// Write the delta that turns OLD into NEW (same list, newer version).
    Diff {
        old: PathBuf,
        new: PathBuf,
        #[arg(short = 'o', long = "output", value_name = "DELTA.hdelta")]
        output: PathBuf,
    },
    /// Publish signed sets and deltas to a directory or an object store, each under its
    /// canonical name, the signature before the file (and for a directory, the `<list>.files`
    /// listing of an HTTPS source last).
    Publish(super::publish::PublishArgs),
    /// Apply a delta to its base set; the result is checked against the digest the delta
    /// promises before anything is written.
    Apply {
        base: PathBuf,
        delta: PathBuf,
        #[arg(short = 'o', long = "output", value_name = "NEW.hset")]
        output: PathBuf,
    },
}

#[derive(Debug, clap::Args)]
pub(crate) struct BuildArgs {
    /// List name: a-z, 0-9, '.', '_', '-'.
    #[arg(long)]
    name: String,
    /// List version; every published version must be higher than the last.
    #[arg(long)]
    version: u64,
    /// Expiry (RFC 3339); default: 30 days after --created.
    #[arg(long, value_name = "RFC3339")]
    expires: Option<String>,
    /// Creation time (RFC 3339); default: $SOURCE_DATE_EPOCH if set, else now. Fix it to make
    /// reproducible builds.
    #[arg(long, value_name = "RFC3339")]
    created: Option<String>,
    /// Match threshold for a perceptual kind, e.g. pdq=31 (repeatable).
    #[arg(long = "threshold", value_name = "KIND=D")]
    thresholds: Vec<String>,
    #[arg(long, default_value = "")]
    description: String,
    /// The categories from the most severe down (e.g. A,B,C): verdicts list the most severe
    /// match first and carry its rank as "severity" (1 = first).
    #[arg(long, value_name = "CATEGORIES", value_delimiter = ',')]
    severity: Vec<String>,
    /// A listed video matches a query video when at least this share of the query's frames
    /// (quality 50 and up, each hash once) is within the vpdq threshold of its frames.
    #[arg(long, value_name = "PERCENT", default_value_t = 80.0)]
    video_query_percent: f64,
    /// ... and at least this share of the listed video's frames is matched.
    #[arg(long, value_name = "PERCENT", default_value_t = 0.0)]
    video_compared_percent: f64,
    #[arg(short = 'o', long = "output", value_name = "OUT.hset")]
    output: PathBuf,
    /// Entry files: CSV with header kind,hash,category,ref, or `hashsieve hash` NDJSON. A
    /// `url` row's hash is a URL pattern (a host, a path prefix ending in /, or an exact URL),
    /// canonicalised and hashed here, or an expression hash (64 hex); the set holds only
    /// hashes.
    #[arg(required = true, value_name = "ENTRIES")]
    entries: Vec<PathBuf>,
}

#[derive(Debug, clap::Args)]
pub(crate) struct VerifyArgs {
    /// A trusted public key (repeat during a key rotation, or for a threshold).
    #[arg(long = "public-key", value_name = "FILE", required = true)]
    public_keys: Vec<PathBuf>,
    /// How many distinct keys of --public-key must have signed (k of n): FILE.minisig,
    /// FILE.2.minisig, ... are read.
    #[arg(long, value_name = "K", default_value_t = 1)]
    threshold: usize,
    /// Trust state to check against and update: refuses versions not above the last accepted
    /// one (rollback, replay) and records this one.
    #[arg(long, value_name = "FILE")]
    state: Option<PathBuf>,
    /// Refuse files larger than this many bytes.
    #[arg(long, value_name = "N", default_value_t = trust::DEFAULT_MAX_BYTES)]
    max_bytes: u64,
    #[arg(value_name = "SET")]
    set: PathBuf,
}

pub(crate) fn run(cmd: HashsetCommand) -> anyhow::Result<Outcome> {
    match cmd {
        HashsetCommand::Build(args) => build(args),
        HashsetCommand::Sign { secret_key, set } => sign_file(&secret_key, &set),
        HashsetCommand::Verify(args) => verify(args),
        HashsetCommand::Publish(args) => super::publish::run(args),
        HashsetCommand::Inspect {
            json,
            trusted_comment,
            set,
        } => inspect(&set, json, trusted_comment),
        HashsetCommand::Diff { old, new, output } => {
            let old_set = read_set(&old)?;
            let new_set = read_set(&new)?;
            let bytes = diff(&old_set, &new_set)
                .with_context(|| format!("{} -> {}", old.display(), new.display()))?;
            // Parsing what we made checks it before it is written, and gives the summary.
            let delta = DeltaFile::parse(bytes).context("the delta just made does not parse")?;
            write_atomic(&output, delta.bytes())
                .with_context(|| format!("{}: cannot write", output.display()))?;
            eprintln!(
                "wrote {}: {} version {} -> {}, {} removed, {} added",
                output.display(),
                delta.header().name,
                delta.base_version(),
                delta.header().version,
                delta.remove_count(),
                delta.add_count()
            );
            Ok(Outcome::Ok)
        }
        HashsetCommand::Apply {
            base,
            delta,
            output,
        } => {
            let base_set = read_set(&base)?;
            let bytes = std::fs::read(&delta)
                .with_context(|| format!("{}: cannot read", delta.display()))?;
            let delta_file =
                DeltaFile::parse(bytes).with_context(|| format!("{}", delta.display()))?;
            let new_bytes = delta_file.apply(&base_set).with_context(|| {
                format!("{}: cannot apply to {}", delta.display(), base.display())
            })?;
            write_atomic(&output, &new_bytes)
                .with_context(|| format!("{}: cannot write", output.display()))?;
            eprintln!(
                "wrote {}: {} version {}, digest {}",
                output.display(),
                delta_file.header().name,
                delta_file.header().version,
                hex_lower(&delta_file.result_digest())
            );
            Ok(Outcome::Ok)
        }
    }
}

fn read_set(path: &Path) -> anyhow::Result<HashSetFile> {
    let bytes = std::fs::read(path).with_context(|| format!("{}: cannot read", path.display()))?;
    HashSetFile::parse(bytes).with_context(|| format!("{}", path.display()))
}

fn read_published(path: &Path) -> anyhow::Result<Published> {
    let bytes = std::fs::read(path).with_context(|| format!("{}: cannot read", path.display()))?;
    Published::parse(bytes).with_context(|| format!("{}", path.display()))
}

fn build(args: BuildArgs) -> anyhow::Result<Outcome> {
    let created = match (&args.created, std::env::var("SOURCE_DATE_EPOCH")) {
        (Some(text), _) => parse_rfc3339(text).map_err(|e| anyhow!("--created: {e}"))?,
        (None, Ok(epoch)) => epoch
            .trim()
            .parse::<i64>()
            .map_err(|_| anyhow!("SOURCE_DATE_EPOCH={epoch:?} is not a number of seconds"))?,
        (None, Err(_)) => now_unix(),
    };
    let expires = match &args.expires {
        Some(text) => parse_rfc3339(text).map_err(|e| anyhow!("--expires: {e}"))?,
        None => created + DEFAULT_VALIDITY_DAYS * 86_400,
    };
    let mut thresholds = Vec::new();
    for t in &args.thresholds {
        let (kind, d) = t
            .split_once('=')
            .ok_or_else(|| anyhow!("--threshold {t:?}: expected KIND=DISTANCE, like pdq=31"))?;
        let kind: HashKind = kind
            .parse()
            .map_err(|e| anyhow!("--threshold {t:?}: {e}"))?;
        let d: u32 = d
            .parse()
            .map_err(|_| anyhow!("--threshold {t:?}: {d:?} is not a whole number"))?;
        if thresholds.iter().any(|(k, _)| *k == kind) {
            bail!("--threshold {kind} is given twice");
        }
        thresholds.push((kind, d));
    }
    thresholds.sort();
    let header = Header {
        name: args.name,
        version: args.version,
        created,
        expires,
        description: args.description,
        thresholds,
        severity: args.severity,
        video_share: VideoShare::from_percents(
            args.video_query_percent,
            args.video_compared_percent,
        )
        .map_err(|e| anyhow!("--video-{e}"))?,
    };
    header.validate().context("invalid header")?;
    let mut table = EntryTable::new();
    let mut rows = 0;
    for path in &args.entries {
        let read = read_entries(path, &mut table).map_err(|e| anyhow!("{e}"))?;
        rows += read.rows;
        for warning in read.warnings {
            eprintln!("hashsieve: warning: {warning}");
        }
    }
    let (bytes, digest) = table.to_set_bytes(&header)?;
    let set = HashSetFile::parse(bytes).context("the set just built does not parse")?;
    write_atomic(&args.output, set.bytes())
        .with_context(|| format!("{}: cannot write", args.output.display()))?;
    eprintln!(
        "wrote {}: {} version {}, {} entries from {rows} rows, expires {}, digest {}",
        args.output.display(),
        header.name,
        header.version,
        set.len(),
        rfc3339(expires),
        hex_lower(&digest)
    );
    Ok(Outcome::Ok)
}

/// The password for a secret key: $HASHSIEVE_PASSWORD, or asked on the terminal.
fn password(confirm: bool) -> anyhow::Result<String> {
    if let Ok(p) = std::env::var(PASSWORD_ENV) {
        return Ok(p);
    }
    if !std::io::stdin().is_terminal() {
        bail!("the secret key needs a password: set ${PASSWORD_ENV} (or use an unencrypted key)");
    }
    let p = rpassword::prompt_password("Password: ")?;
    if confirm && rpassword::prompt_password("Password (again): ")? != p {
        bail!("the passwords differ");
    }
    Ok(p)
}

pub(crate) fn keygen(args: KeygenArgs) -> anyhow::Result<Outcome> {
    for path in [&args.secret_key, &args.public_key] {
        if path.exists() && !args.force {
            bail!(
                "{}: already exists (use --force to overwrite)",
                path.display()
            );
        }
    }
    let pair = if args.unencrypted {
        KeyPair::generate_unencrypted_keypair()
    } else {
        KeyPair::generate_encrypted_keypair(Some(password(true)?))
    }
    .map_err(|e| anyhow!("cannot generate a key pair: {e}"))?;
    let id = key_id(pair.pk.keynum());
    let sk_text = pair
        .sk
        .to_box(Some(&format!("hashsieve secret key {id}")))
        .map_err(|e| anyhow!("{e}"))?
        .into_string();
    let pk_text = pair.pk.to_box().map_err(|e| anyhow!("{e}"))?.into_string();
    write_secret_atomic(&args.secret_key, sk_text.as_bytes())
        .with_context(|| format!("{}: cannot write", args.secret_key.display()))?;
    write_atomic(&args.public_key, pk_text.as_bytes())
        .with_context(|| format!("{}: cannot write", args.public_key.display()))?;
    eprintln!(
        "key {id}: secret key in {}, public key in {} ({})",
        args.secret_key.display(),
        args.public_key.display(),
        pair.pk.to_base64()
    );
    Ok(Outcome::Ok)
}

fn load_secret_key(path: &Path) -> anyhow::Result<SecretKey> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("{}: cannot read", path.display()))?;
    let sk_box = SecretKeyBox::from_string(&text)
        .map_err(|e| anyhow!("{}: not a minisign secret key: {e}", path.display()))?;
    if let Ok(sk) = SecretKey::from_unencrypted_box(sk_box.clone()) {
        return Ok(sk);
    }
    SecretKey::from_box(sk_box, Some(password(false)?))
        .map_err(|e| anyhow!("{}: {e}", path.display()))
}

/// A minisign public key file; errors name it.
pub(crate) fn load_public_key(path: &Path) -> anyhow::Result<PublicKey> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("{}: cannot read", path.display()))?;
    parse_public_key(&text).map_err(|e| anyhow!("{}: {e}", path.display()))
}

fn sign_file(secret_key: &Path, set: &Path) -> anyhow::Result<Outcome> {
    let published = read_published(set)?;
    let sk = load_secret_key(secret_key)?;
    let signature = sign(&published, &sk).map_err(|e| anyhow!("{}: {e}", set.display()))?;
    let sig_path = signature_slot(set, &key_id(sk.keynum()))?;
    write_atomic(&sig_path, signature.as_bytes())
        .with_context(|| format!("{}: cannot write", sig_path.display()))?;
    eprintln!(
        "wrote {} ({})",
        sig_path.display(),
        published.trusted_comment()
    );
    Ok(Outcome::Ok)
}

/// A policy trusting `keys`, `threshold` of which must sign; a threshold of 0 or above the
/// number of keys is a usage error (it would refuse everything).
/// Verifies each of `paths` as a full set under `policy` (`match` and `url check` index them):
/// the sets, or the first refusal as `Ok(Err(reason))`; a delta is a usage error.
pub(crate) fn verify_full_sets(
    paths: &[PathBuf],
    policy: &Policy,
) -> anyhow::Result<Result<Vec<std::sync::Arc<HashSetFile>>, String>> {
    let mut sets = Vec::with_capacity(paths.len());
    for path in paths {
        match trust::verify_path(path, policy, None) {
            Ok(Published::Set(set)) => sets.push(std::sync::Arc::new(set)),
            Ok(Published::Delta(_)) => bail!(
                "{}: is a delta; matching needs full sets (hashsieve hashset apply BASE DELTA -o NEW.hset)",
                path.display()
            ),
            Err(refusal) => return Ok(Err(format!("{refusal:#}"))),
        }
    }
    Ok(Ok(sets))
}

pub(crate) fn threshold_policy(keys: Vec<PublicKey>, threshold: usize) -> anyhow::Result<Policy> {
    if threshold == 0 || threshold > keys.len() {
        bail!(
            "--threshold {threshold}: must be between 1 and the number of --public-key keys ({})",
            keys.len()
        );
    }
    let mut policy = Policy::new(keys);
    policy.threshold = threshold;
    Ok(policy)
}

/// Where `key`'s signature of `set` goes: the slot that already holds one by this key, else
/// the first free one (FILE.minisig, FILE.2.minisig, ...).
fn signature_slot(set: &Path, key: &str) -> anyhow::Result<PathBuf> {
    let mut free = None;
    for n in 1..=trust::MAX_SIGNATURES {
        let path = trust::nth_signature_path(set, n);
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                if crate::hashset::signing::signature_key_id(&text).as_deref() == Some(key) {
                    return Ok(path);
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                free.get_or_insert(path);
            }
            Err(e) => bail!("{}: cannot read: {e}", path.display()),
        }
    }
    free.ok_or_else(|| {
        anyhow!(
            "{}: already has {} signatures by other keys",
            set.display(),
            trust::MAX_SIGNATURES
        )
    })
}

fn verify(args: VerifyArgs) -> anyhow::Result<Outcome> {
    let keys = args
        .public_keys
        .iter()
        .map(|p| load_public_key(p))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut policy = threshold_policy(keys, args.threshold)?;
    policy.max_bytes = args.max_bytes;
    let state = match &args.state {
        Some(path) => Some(TrustState::load(path)?),
        None => None,
    };
    match trust::verify_path(&args.set, &policy, state.as_ref()) {
        Ok(published) => {
            if let (Some(path), Some(mut state)) = (&args.state, state) {
                state.record(
                    published.list(),
                    published.version(),
                    published.digest(),
                    policy.now,
                );
                state.save(path)?;
            }
            println!(
                "{}: valid: {}",
                args.set.display(),
                published.trusted_comment()
            );
            Ok(Outcome::Ok)
        }
        Err(Refusal::Io { path, source }) => {
            Err(anyhow!("{}: cannot read: {source}", path.display()))
        }
        Err(refusal) => {
            eprintln!("hashsieve: refused: {refusal:#}");
            Ok(Outcome::Finding)
        }
    }
}

fn inspect(path: &Path, json: bool, trusted_comment: bool) -> anyhow::Result<Outcome> {
    let published = read_published(path)?;
    if trusted_comment {
        println!("{}", published.trusted_comment());
        return Ok(Outcome::Ok);
    }
    let header = match &published {
        Published::Set(s) => s.header(),
        Published::Delta(d) => d.header(),
    };
    let thresholds: serde_json::Map<String, serde_json::Value> = HashKind::ALL
        .iter()
        .filter(|k| k.is_perceptual())
        .map(|&k| (k.name().to_owned(), header.threshold(k).into()))
        .collect();
    let mut doc = serde_json::json!({
        "type": match published { Published::Set(_) => "set", Published::Delta(_) => "delta" },
        "list": header.name,
        "version": header.version,
        "created": rfc3339(header.created),
        "expires": rfc3339(header.expires),
        "description": header.description,
        "thresholds": thresholds,
        "severity": header.severity,
        "video_share": {
            "query_percent": header.video_share.query_percent(),
            "compared_percent": header.video_share.compared_percent(),
        },
        "digest": hex_lower(&published.digest()),
        "trusted_comment": published.trusted_comment(),
    });
    match &published {
        Published::Set(s) => {
            let counts: serde_json::Map<String, serde_json::Value> = s
                .counts()
                .into_iter()
                .map(|(k, n)| (k.name().to_owned(), n.into()))
                .collect();
            doc["entries"] = s.len().into();
            // Each set is written in the oldest format version that holds it.
            doc["format_version"] = crate::hashset::format::version_for(
                s.header(),
                s.counts().into_iter().map(|(k, _)| k),
            )
            .into();
            doc["counts"] = counts.into();
            doc["categories"] = s.categories().into();
            doc["videos"] = s.videos().into();
        }
        Published::Delta(d) => {
            doc["base_version"] = d.base_version().into();
            doc["base_digest"] = hex_lower(&d.base_digest()).into();
            doc["result_digest"] = hex_lower(&d.result_digest()).into();
            doc["removes"] = d.remove_count().into();
            doc["adds"] = d.add_count().into();
        }
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&doc)?);
    } else if let serde_json::Value::Object(map) = doc {
        for (k, v) in map {
            match v {
                serde_json::Value::String(s) => println!("{k}: {s}"),
                other => println!("{k}: {other}"),
            }
        }
    }
    Ok(Outcome::Ok)
}

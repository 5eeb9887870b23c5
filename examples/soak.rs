//! The soak: `hashsieve serve` at saturation (mixed batches, single GETs and NDJSON streams
//! from three partners) while it applies hot swaps to three lists in turn, one fed by a
//! directory, one by an object store, one by admin uploads, each swap a signed delta that
//! adds and removes entries. Every answer is checked against the version it reports; at
//! every swap the server's RSS, open file descriptors, mapped index files and state-dir
//! size are sampled, and the growth per swap after warm-up is reported.
//!
//! Run it with `scripts/soak.sh` (which starts the object store); by hand:
//! `cargo run --release --example soak -- --hashsieve target/release/hashsieve --seconds 60`.
//! Exit status 0 only when no request failed, no answer was inconsistent, every swap was
//! served, and nothing that must be released (descriptors, mapped index files) piled up.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::Parser;
use hashsieve::hashset::delta::diff;
use hashsieve::hashset::format::{EntryTable, HashSetFile, Header};
use hashsieve::hashset::signing::{Published, sign};
use hashsieve::kinds::{HashKind, HashValue, hex_lower};
use minisign::KeyPair;
use rand::{RngExt as _, SeedableRng as _};
use serde_json::{Value, json};

#[derive(Parser)]
struct Args {
    /// The `hashsieve` binary to soak.
    #[arg(long)]
    hashsieve: PathBuf,
    /// How long to keep the load on.
    #[arg(long, default_value_t = 60)]
    seconds: u64,
    /// Hot swaps to apply over that time (spread evenly, lists in turn).
    #[arg(long, default_value_t = 20)]
    swaps: u64,
    /// PDQ entries per list.
    #[arg(long, default_value_t = 100_000)]
    entries: usize,
    /// Entries each delta adds and removes.
    #[arg(long, default_value_t = 100)]
    churn: usize,
    /// Load threads (batches, GETs and streams in turn).
    #[arg(long, default_value_t = 4)]
    threads: usize,
    /// `s3://bucket/prefix/` for the object-store list (its store from the AWS_* variables);
    /// without it that list takes uploads too.
    #[arg(long)]
    s3: Option<String>,
    /// Swaps counted as warm-up before growth is measured.
    #[arg(long, default_value_t = 5)]
    warmup: usize,
    /// Write every sample here (JSON lines).
    #[arg(long)]
    samples: Option<PathBuf>,
}

const ADMIN: &str = "soak-admin-key";
const PARTNERS: [&str; 3] = ["soak-batches-key", "soak-gets-key", "soak-streams-key"];

/// How a list's updates arrive.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Feed {
    Dir,
    S3,
    Upload,
}

struct List {
    name: &'static str,
    feed: Feed,
    /// The entries of the current version (PDQ), its marker excluded.
    entries: Vec<HashValue>,
    current: HashSetFile,
    /// The version last published, read by the load threads to pick markers.
    published: Arc<AtomicU64>,
}

/// The MD5 only version `v` of list number `list` holds.
fn marker(list: usize, v: u64) -> String {
    format!("{:08x}{:024x}", 0x50a4_0000_u32 + list as u32, v)
}

fn random_pdq(rng: &mut rand::rngs::SmallRng) -> HashValue {
    let raw: [u8; 32] = rng.random();
    HashValue::from_bytes(HashKind::Pdq, &raw).expect("32 bytes")
}

fn build(name: &str, list: usize, version: u64, entries: &[HashValue]) -> HashSetFile {
    let mut t = EntryTable::new();
    for (i, h) in entries.iter().enumerate() {
        t.push(*h, "synthetic", &format!("E{i}")).expect("entry");
    }
    let m = HashValue::parse(HashKind::Md5, &marker(list, version)).expect("marker");
    t.push(m, "marker", &format!("M{version}")).expect("marker");
    let now = hashsieve::clock::now_unix();
    let header = Header {
        name: name.into(),
        version,
        created: now - 60,
        expires: now + 7 * 86_400,
        description: "soak test list (synthetic)".into(),
        thresholds: vec![],
        severity: Vec::new(),
        video_share: Default::default(),
    };
    HashSetFile::parse(t.to_set_bytes(&header).expect("set").0).expect("parse")
}

/// Resident memory (KiB) split as /proc reports it.
fn proc_status(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn dir_bytes(dir: &Path) -> u64 {
    let mut total = 0;
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            match e.metadata() {
                Ok(m) if m.is_dir() => total += dir_bytes(&e.path()),
                Ok(m) => total += m.len(),
                Err(_) => {}
            }
        }
    }
    total
}

/// One sample of the server's resources.
fn sample(pid: u32, state: &Path) -> Value {
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap_or_default();
    let mut mapped: Vec<&str> = maps
        .lines()
        .filter(|l| l.contains(".hidx"))
        .filter_map(|l| l.split_whitespace().nth(5))
        .collect();
    mapped.sort_unstable();
    mapped.dedup();
    let deleted = maps
        .lines()
        .filter(|l| l.contains(".hidx") && l.ends_with("(deleted)"))
        .count();
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count());
    json!({
        "rss_kib": proc_status(pid, "VmRSS:"),
        "rss_anon_kib": proc_status(pid, "RssAnon:"),
        "rss_file_kib": proc_status(pid, "RssFile:"),
        "fds": fds,
        "mapped_index_files": mapped.len(),
        "mapped_deleted": deleted,
        "state_dir_bytes": dir_bytes(state),
    })
}

#[derive(Default)]
struct Tally {
    requests: u64,
    failed: u64,
    server_errors: u64,
    inconsistent: u64,
    queries: u64,
    /// Microseconds per request, by kind (batch, get, stream).
    latency: [Vec<u32>; 3],
    first_failure: Option<String>,
}

impl Tally {
    fn fail(&mut self, what: String) {
        self.failed += 1;
        self.first_failure.get_or_insert(what);
    }
}

/// Checks one verdict for `marker(list, k)` against the version `served` that answered.
fn consistent(verdict: &Value, list: &str, k: u64, served: Option<u64>) -> bool {
    let matched: Vec<u64> = verdict["matches"]
        .as_array()
        .map(|ms| {
            ms.iter()
                .filter(|m| m["list"] == list)
                .filter_map(|m| m["version"].as_u64())
                .collect()
        })
        .unwrap_or_default();
    // A match names its version, which must be the marker's; and with the answering
    // version known, the marker matches exactly when it is that version's.
    let listed = !matched.is_empty();
    matched.iter().all(|&v| v == k) && served.is_none_or(|s| listed == (s == k))
}

fn load(
    thread: usize,
    base: String,
    lists: Vec<(&'static str, Arc<AtomicU64>)>,
    stop: Arc<AtomicBool>,
    tally: Arc<Mutex<Tally>>,
) {
    let client = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client");
    let mut rng = rand::rngs::SmallRng::seed_from_u64(thread as u64);
    let mut local = Tally::default();
    let mut round = 0usize;
    while !stop.load(Ordering::Relaxed) {
        round += 1;
        let kind = (thread + round) % 3;
        let key = PARTNERS[kind];
        // Markers around each list's newest version: the one before, it, the one after.
        let mut probes = Vec::new();
        for (i, (name, published)) in lists.iter().enumerate() {
            let v = published.load(Ordering::Acquire);
            for k in [v.saturating_sub(1).max(1), v, v + 1] {
                probes.push((i, *name, k));
            }
        }
        let started = Instant::now();
        let outcome: Result<(), (bool, String)> = (|| {
            match kind {
                0 => {
                    // A batch: the markers and 200 random PDQ hashes.
                    let mut queries: Vec<Value> = probes
                        .iter()
                        .map(|(i, _, k)| json!({"kind": "md5", "hash": marker(*i, *k)}))
                        .collect();
                    for _ in 0..200 {
                        queries
                            .push(json!({"kind": "pdq", "hash": random_pdq(&mut rng).to_string()}));
                    }
                    let r = client
                        .post(format!("{base}/v1/match"))
                        .bearer_auth(key)
                        .json(&json!({ "queries": queries }))
                        .send()
                        .map_err(|e| (false, e.to_string()))?;
                    let status = r.status();
                    let body: Value = r
                        .json()
                        .map_err(|e| (status.is_server_error(), format!("{status}: {e}")))?;
                    if !status.is_success() {
                        return Err((status.is_server_error(), format!("batch: {status} {body}")));
                    }
                    local.queries += queries.len() as u64;
                    for (n, (_, name, k)) in probes.iter().enumerate() {
                        let served = body["lists"][name].as_u64();
                        if !consistent(&body["results"][n], name, *k, served) {
                            local.inconsistent += 1;
                        }
                    }
                }
                1 => {
                    let (i, name, k) = probes[rng.random_range(0..probes.len())];
                    let r = client
                        .get(format!("{base}/v1/match/md5/{}", marker(i, k)))
                        .bearer_auth(key)
                        .send()
                        .map_err(|e| (false, e.to_string()))?;
                    let status = r.status();
                    let body: Value = r
                        .json()
                        .map_err(|e| (status.is_server_error(), format!("{status}: {e}")))?;
                    if !status.is_success() {
                        return Err((status.is_server_error(), format!("get: {status} {body}")));
                    }
                    local.queries += 1;
                    if !consistent(&body, name, k, body["lists"][name].as_u64()) {
                        local.inconsistent += 1;
                    }
                }
                _ => {
                    // A stream: the markers, then 1000 random PDQ lines.
                    let mut text = String::new();
                    for (i, _, k) in &probes {
                        text.push_str(&format!("md5:{}\n", marker(*i, *k)));
                    }
                    for _ in 0..1000 {
                        text.push_str(&format!("pdq:{}\n", random_pdq(&mut rng)));
                    }
                    let r = client
                        .post(format!("{base}/v1/match/ndjson"))
                        .bearer_auth(key)
                        .header("content-type", "application/x-ndjson")
                        .body(text)
                        .send()
                        .map_err(|e| (false, e.to_string()))?;
                    let status = r.status();
                    let body = r
                        .text()
                        .map_err(|e| (status.is_server_error(), format!("{status}: {e}")))?;
                    if !status.is_success() {
                        return Err((status.is_server_error(), format!("stream: {status} {body}")));
                    }
                    let lines: Vec<&str> = body.lines().collect();
                    if lines.len() != probes.len() + 1000 {
                        return Err((false, format!("stream: {} lines answered", lines.len())));
                    }
                    local.queries += lines.len() as u64;
                    for (n, (_, name, k)) in probes.iter().enumerate() {
                        let verdict: Value =
                            serde_json::from_str(lines[n]).map_err(|e| (false, e.to_string()))?;
                        if !consistent(&verdict, name, *k, None) {
                            local.inconsistent += 1;
                        }
                    }
                }
            }
            Ok(())
        })();
        local.requests += 1;
        local.latency[kind].push(started.elapsed().as_micros() as u32);
        if let Err((server_error, e)) = outcome {
            local.server_errors += u64::from(server_error);
            local.fail(e);
        }
        if round.is_multiple_of(256) {
            merge(&tally, &mut local);
        }
    }
    merge(&tally, &mut local);
}

fn merge(into: &Mutex<Tally>, from: &mut Tally) {
    let mut t = into.lock().unwrap_or_else(|e| e.into_inner());
    t.requests += from.requests;
    t.failed += from.failed;
    t.server_errors += from.server_errors;
    t.inconsistent += from.inconsistent;
    t.queries += from.queries;
    for (a, b) in t.latency.iter_mut().zip(from.latency.iter_mut()) {
        a.append(b);
    }
    if t.first_failure.is_none() {
        t.first_failure = from.first_failure.take();
    }
    *from = Tally::default();
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    f64::from(sorted[i]) / 1000.0
}

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status();
        let _ = self.0.wait();
    }
}

fn sha256_hex(s: &str) -> String {
    use sha2::Digest as _;
    hex_lower(&sha2::Sha256::digest(s.as_bytes()))
}

/// Where and how the lists' files go: signed by `key`, to the directory, the bucket or the
/// upload endpoint of the server at `base`.
struct Publisher {
    key: KeyPair,
    dir: PathBuf,
    bucket: Option<hashsieve::objstore::Bucket>,
    http: reqwest::blocking::Client,
    base: String,
}

impl Publisher {
    fn publish(&self, list: &List, name: &str, bytes: &[u8]) -> anyhow::Result<()> {
        let (dir, http, base) = (&self.dir, &self.http, &self.base);
        let published = Published::parse(bytes.to_vec())?;
        let signature = sign(&published, &self.key.sk).map_err(anyhow::Error::msg)?;
        match list.feed {
            Feed::Dir => {
                hashsieve::fsutil::write_atomic(
                    &dir.join(format!("{name}.minisig")),
                    signature.as_bytes(),
                )?;
                hashsieve::fsutil::write_atomic(&dir.join(name), bytes)?;
            }
            Feed::S3 => {
                let bucket = self.bucket.as_ref().context("no bucket")?;
                bucket.put(&format!("{name}.minisig"), signature.into_bytes())?;
                bucket.put(name, bytes.to_vec())?;
            }
            Feed::Upload => {
                let form = reqwest::blocking::multipart::Form::new()
                    .part(
                        "file",
                        reqwest::blocking::multipart::Part::bytes(bytes.to_vec())
                            .file_name(name.to_owned()),
                    )
                    .part(
                        "signature",
                        reqwest::blocking::multipart::Part::bytes(signature.into_bytes()),
                    );
                let r = http
                    .post(format!("{base}/v1/admin/hashsets/{}", list.name))
                    .bearer_auth(ADMIN)
                    .multipart(form)
                    .send()?;
                if !r.status().is_success() {
                    bail!("upload to {}: {} {}", list.name, r.status(), r.text()?);
                }
            }
        }
        Ok(())
    }
}

fn serving(http: &reqwest::blocking::Client, base: &str) -> anyhow::Result<Vec<(String, u64)>> {
    let doc: Value = http
        .get(format!("{base}/v1/lists"))
        .bearer_auth(ADMIN)
        .send()?
        .json()?;
    Ok(doc["lists"]
        .as_array()
        .map(|ls| {
            ls.iter()
                .map(|l| {
                    (
                        l["name"].as_str().unwrap_or_default().to_owned(),
                        l["version"].as_u64().unwrap_or(0),
                    )
                })
                .collect()
        })
        .unwrap_or_default())
}

fn wait_served(
    http: &reqwest::blocking::Client,
    base: &str,
    list: &str,
    version: u64,
) -> anyhow::Result<Duration> {
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(60) {
        if serving(http, base)?
            .iter()
            .any(|(n, v)| n == list && *v == version)
        {
            return Ok(t.elapsed());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    bail!("{list} version {version} not served within 60 s")
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let work = tempfile::tempdir()?;
    let w = work.path();
    let key = KeyPair::generate_unencrypted_keypair().map_err(anyhow::Error::msg)?;
    let public_key = key.pk.to_base64();
    let bucket = match &args.s3 {
        Some(url) => Some(hashsieve::objstore::Bucket::open(url, None)?),
        None => None,
    };
    let has_bucket = bucket.is_some();
    let feeds = [
        ("dirlist", Feed::Dir),
        ("s3list", if has_bucket { Feed::S3 } else { Feed::Upload }),
        ("uplist", Feed::Upload),
    ];
    std::fs::create_dir_all(w.join("published"))?;
    let mut rng = rand::rngs::SmallRng::seed_from_u64(2026);
    let t = Instant::now();
    let mut lists: Vec<List> = feeds
        .iter()
        .enumerate()
        .map(|(i, (name, feed))| {
            let entries: Vec<HashValue> = (0..args.entries).map(|_| random_pdq(&mut rng)).collect();
            let current = build(name, i, 1, &entries);
            List {
                name,
                feed: *feed,
                entries,
                current,
                published: Arc::new(AtomicU64::new(1)),
            }
        })
        .collect();
    eprintln!(
        "soak: built 3 lists of {} PDQ entries in {:?}",
        args.entries,
        t.elapsed()
    );

    let source = |l: &List| match l.feed {
        Feed::Dir => format!("source = \"dir:{}\"", w.join("published").display()),
        Feed::S3 => format!("source = \"{}\"", args.s3.as_deref().unwrap_or_default()),
        Feed::Upload => "source = \"upload\"".to_owned(),
    };
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let mut config = format!(
        "listen = \"127.0.0.1:{port}\"\nstate_dir = \"{}\"\naudit_log = \"{}\"\n\n[limits]\nshutdown_grace_ms = 0\nmax_batch = 10000\n",
        w.join("state").display(),
        w.join("audit.jsonl").display()
    );
    for l in &lists {
        config.push_str(&format!(
            "\n[[lists]]\nname = \"{}\"\n{}\npublic_keys = [\"{}\"]\npoll_seconds = 1\n",
            l.name,
            source(l),
            public_key
        ));
    }
    for (i, p) in PARTNERS.iter().enumerate() {
        config.push_str(&format!(
            "\n[[partners]]\nname = \"partner-{i}\"\nkey_sha256 = \"{}\"\nlists = [\"dirlist\", \"s3list\", \"uplist\"]\nrate_per_second = 100000000\n",
            sha256_hex(p)
        ));
    }
    config.push_str(&format!(
        "\n[[admins]]\nname = \"soak\"\nkey_sha256 = \"{}\"\n",
        sha256_hex(ADMIN)
    ));
    std::fs::write(w.join("hashsieve.toml"), &config)?;
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(300))
        .build()?;

    let publisher = Publisher {
        key,
        dir: w.join("published"),
        bucket,
        http: http.clone(),
        base: base.clone(),
    };
    // Version 1 of the directory and object-store lists is there before the start.
    for l in &lists {
        if l.feed != Feed::Upload {
            let name = format!("{}-1.hset", l.name);
            publisher.publish(l, &name, l.current.bytes())?;
        }
    }
    let log = std::fs::File::create(w.join("serve.log"))?;
    let server = Server(
        Command::new(&args.hashsieve)
            .args(["serve", "--config"])
            .arg(w.join("hashsieve.toml"))
            .env("HASHSIEVE_LOG", "warn")
            .stderr(Stdio::from(log))
            .spawn()
            .with_context(|| format!("{}: cannot start", args.hashsieve.display()))?,
    );
    let pid = server.0.id();
    let t = Instant::now();
    while http.get(format!("{base}/healthz")).send().is_err() {
        if t.elapsed() > Duration::from_secs(120) {
            bail!(
                "the server did not start: {}",
                std::fs::read_to_string(w.join("serve.log"))?
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    for l in &lists {
        if l.feed == Feed::Upload {
            let name = format!("{}-1.hset", l.name);
            publisher.publish(l, &name, l.current.bytes())?;
        }
        wait_served(&http, &base, l.name, 1)?;
    }
    eprintln!(
        "soak: serving version 1 of every list after {:?}; load on",
        t.elapsed()
    );

    let stop = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Mutex::new(Tally::default()));
    let shared: Vec<(&'static str, Arc<AtomicU64>)> = lists
        .iter()
        .map(|l| (l.name, Arc::clone(&l.published)))
        .collect();
    let threads: Vec<_> = (0..args.threads)
        .map(|i| {
            let (base, shared, stop, tally) = (
                base.clone(),
                shared.clone(),
                Arc::clone(&stop),
                Arc::clone(&tally),
            );
            std::thread::spawn(move || load(i, base, shared, stop, tally))
        })
        .collect();

    let mut samples = vec![sample(pid, &w.join("state"))];
    let mut out = match &args.samples {
        Some(p) => Some(std::fs::File::create(p)?),
        None => None,
    };
    let started = Instant::now();
    let every = Duration::from_secs(args.seconds) / args.swaps.max(1) as u32;
    let mut delays = Vec::new();
    for swap in 0..args.swaps {
        let due = every * (swap as u32 + 1);
        if let Some(wait) = due.checked_sub(started.elapsed()) {
            std::thread::sleep(wait);
        }
        let i = swap as usize % lists.len();
        let l = &mut lists[i];
        let old_version = l.current.header().version;
        let version = old_version + 1;
        for _ in 0..args.churn.min(l.entries.len()) {
            let at = rng.random_range(0..l.entries.len());
            l.entries.swap_remove(at);
        }
        for _ in 0..args.churn {
            l.entries.push(random_pdq(&mut rng));
        }
        let next = build(l.name, i, version, &l.entries);
        let delta = diff(&l.current, &next)?;
        let name = format!("{}-{version}.hdelta", l.name);
        let t = Instant::now();
        publisher.publish(l, &name, &delta)?;
        let took = t.elapsed() + wait_served(&http, &base, l.name, version)?;
        delays.push(took);
        l.current = next;
        l.published.store(version, Ordering::Release);
        let mut s = sample(pid, &w.join("state"));
        s["swap"] = json!(swap + 1);
        s["list"] = json!(l.name);
        s["version"] = json!(version);
        s["publish_to_serve_ms"] = json!(took.as_millis() as u64);
        s["elapsed_s"] = json!(started.elapsed().as_secs());
        eprintln!("soak: {s}");
        if let Some(f) = out.as_mut() {
            writeln!(f, "{s}")?;
        }
        samples.push(s);
    }
    if let Some(rest) = Duration::from_secs(args.seconds).checked_sub(started.elapsed()) {
        std::thread::sleep(rest);
    }
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        let _ = t.join();
    }
    let elapsed = started.elapsed();
    drop(server);

    let mut tally = Arc::try_unwrap(tally)
        .map_err(|_| anyhow::anyhow!("load threads still hold the tally"))?
        .into_inner()
        .unwrap_or_else(|e| e.into_inner());
    for l in &mut tally.latency {
        l.sort_unstable();
    }
    // Growth per swap after warm-up: least squares over the samples past it.
    let warm: Vec<&Value> = samples.iter().skip(args.warmup + 1).collect();
    let slope = |field: &str| -> f64 {
        let n = warm.len() as f64;
        if n < 2.0 {
            return 0.0;
        }
        let xs: Vec<f64> = (0..warm.len()).map(|x| x as f64).collect();
        let ys: Vec<f64> = warm
            .iter()
            .map(|s| s[field].as_f64().unwrap_or(0.0))
            .collect();
        let (mx, my) = (xs.iter().sum::<f64>() / n, ys.iter().sum::<f64>() / n);
        let cov: f64 = xs.iter().zip(&ys).map(|(x, y)| (x - mx) * (y - my)).sum();
        let var: f64 = xs.iter().map(|x| (x - mx) * (x - mx)).sum();
        cov / var
    };
    let first = &samples[0];
    let last = samples.last().unwrap_or(first);
    delays.sort();
    let summary = json!({
        "seconds": elapsed.as_secs_f64().round(),
        "swaps": args.swaps,
        "entries_per_list": args.entries,
        "feeds": feeds.iter().map(|(n, f)| format!("{n}: {f:?}")).collect::<Vec<_>>(),
        "requests": tally.requests,
        "queries": tally.queries,
        "requests_per_second": (tally.requests as f64 / elapsed.as_secs_f64()).round(),
        "failed": tally.failed,
        "server_errors": tally.server_errors,
        "inconsistent": tally.inconsistent,
        "first_failure": tally.first_failure,
        "latency_ms_p50_p99": {
            "batch_209": [percentile(&tally.latency[0], 0.5), percentile(&tally.latency[0], 0.99)],
            "get": [percentile(&tally.latency[1], 0.5), percentile(&tally.latency[1], 0.99)],
            "stream_1009": [percentile(&tally.latency[2], 0.5), percentile(&tally.latency[2], 0.99)],
        },
        "publish_to_serve_ms_median_max": [
            delays.get(delays.len() / 2).map_or(0, |d| d.as_millis() as u64),
            delays.last().map_or(0, |d| d.as_millis() as u64),
        ],
        "rss_kib_start_end": [first["rss_kib"], last["rss_kib"]],
        "rss_kib_per_swap_after_warmup": slope("rss_kib").round(),
        "rss_anon_kib_per_swap_after_warmup": slope("rss_anon_kib").round(),
        "fds_start_end": [first["fds"], last["fds"]],
        "mapped_index_files_end": last["mapped_index_files"],
        "mapped_deleted_end": last["mapped_deleted"],
        "state_dir_bytes_start_end": [first["state_dir_bytes"], last["state_dir_bytes"]],
    });
    println!("{}", serde_json::to_string_pretty(&summary)?);
    let fds_grew = last["fds"].as_u64().unwrap_or(0) > first["fds"].as_u64().unwrap_or(0) + 16;
    let maps_piled = last["mapped_index_files"].as_u64().unwrap_or(0) > lists.len() as u64
        || last["mapped_deleted"].as_u64().unwrap_or(0) > 0;
    if tally.failed > 0 || tally.inconsistent > 0 || tally.requests == 0 || fds_grew || maps_piled {
        bail!("the soak failed: see the summary above");
    }
    Ok(())
}

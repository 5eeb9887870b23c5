//! URL lists end to end: built from plain URL patterns (the set holds only hashes), signed,
//! updated by a delta, served, and checked with `hashsieve url check` here, through the
//! service and in privacy mode; allow lists, operator thresholds and severity through the
//! HTTP API; and the Squid helper in front of real Squid.

use std::io::{BufRead, Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::blocking::Client;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::server::{ServeChild, spawn_serve_with};
use crate::util::{hashsieve, ndjson, stderr};

const PARTNER: &str = "url-partner-key";
const ADMIN: &str = "url-admin-key";

fn sha256_hex(s: &str) -> String {
    Sha256::digest(s.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn ok(command: &mut Command) -> std::process::Output {
    let out = command.output().unwrap();
    assert!(out.status.success(), "{command:?}: {}", stderr(&out));
    out
}

/// A 256-bit PDQ-like hash from a seed, and the same with `bits` bits flipped.
fn pdq(seed: u8) -> [u8; 32] {
    let mut h = [0u8; 32];
    for (i, b) in h.iter_mut().enumerate() {
        *b = (i as u8)
            .wrapping_mul(37)
            .wrapping_add(seed.wrapping_mul(91))
            ^ 0x5a;
    }
    h
}

fn flipped(mut h: [u8; 32], bits: usize) -> [u8; 32] {
    for i in 0..bits {
        h[i / 8 * 3 % 32] ^= 1 << (i % 8);
    }
    h
}

fn hex(h: &[u8]) -> String {
    h.iter().map(|b| format!("{b:02x}")).collect()
}

fn distance(a: &[u8; 32], b: &[u8; 32]) -> u32 {
    a.iter().zip(b).map(|(x, y)| (x ^ y).count_ones()).sum()
}

/// Keys, lists built and signed, published into `published/<list>`, and a config.
struct Env {
    dir: tempfile::TempDir,
}

impl Env {
    fn new() -> Env {
        let dir = tempfile::tempdir().unwrap();
        ok(hashsieve().current_dir(dir.path()).args([
            "keygen",
            "--secret-key",
            "k.key",
            "--public-key",
            "k.pub",
            "--unencrypted",
        ]));
        let env = Env { dir };
        env.write(
            "urls-1.csv",
            "kind,hash,category,ref\n\
             url,blocked.example,A,u-host\n\
             url,http://shop.example/bad/,B,u-prefix\n\
             url,http://news.example/story.html?id=7,C,u-exact\n\
             url,http://shop.example/bad/withdrawn.html,B,u-fp\n",
        );
        env.build("urls", 1, &["--severity", "A,B,C"], "urls-1.csv");
        env.publish("urls", "urls-1.hset");
        env.write(
            "allow.csv",
            &format!(
                "kind,hash,category,ref\n\
                 url,http://shop.example/bad/withdrawn.html,,fp-1\n\
                 pdq,{},meme,fp-2\n",
                hex(&pdq(3))
            ),
        );
        env.build("allow", 1, &[], "allow.csv");
        env.publish("allow", "allow-1.hset");
        // alpha: the severity order puts C's exact hit after A's near one.
        env.write(
            "alpha.csv",
            &format!(
                "kind,hash,category,ref\n\
                 pdq,{p1},C,a-exact\n\
                 pdq,{p1near},A,a-near\n\
                 pdq,{p2},B,a-capped\n\
                 pdq,{p3near},B,a-meme\n",
                p1 = hex(&pdq(1)),
                p1near = hex(&flipped(pdq(1), 4)),
                p2 = hex(&pdq(2)),
                p3near = hex(&flipped(pdq(3), 3)),
            ),
        );
        env.build("alpha", 1, &["--severity", "A,B,C"], "alpha.csv");
        env.publish("alpha", "alpha-1.hset");
        let key = std::fs::read_to_string(env.path("k.pub")).unwrap();
        let key = key.lines().nth(1).unwrap().trim().to_owned();
        env.write(
            "hashsieve.toml",
            &format!(
                r#"
listen = "127.0.0.1:0"
state_dir = "state"
audit_log = "audit.jsonl"

[limits]
shutdown_grace_ms = 0

[[lists]]
name = "urls"
source = "dir:published/urls"
public_keys = ["{key}"]
poll_seconds = 1

[[lists]]
name = "alpha"
source = "dir:published/alpha"
public_keys = ["{key}"]
poll_seconds = 1
thresholds = {{ pdq = 24 }}

[[lists]]
name = "allow"
source = "dir:published/allow"
public_keys = ["{key}"]
poll_seconds = 1
suppresses = ["urls", "alpha"]

[[partners]]
name = "isp"
key_sha256 = "{partner}"
lists = ["urls", "alpha"]

[[admins]]
name = "ops"
key_sha256 = "{admin}"
"#,
                partner = sha256_hex(PARTNER),
                admin = sha256_hex(ADMIN),
            ),
        );
        env
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn write(&self, rel: &str, text: &str) {
        std::fs::write(self.path(rel), text).unwrap();
    }

    fn build(&self, name: &str, version: u64, extra: &[&str], csv: &str) {
        let out = format!("{name}-{version}.hset");
        let mut args = vec![
            "hashset".to_owned(),
            "build".into(),
            "--name".into(),
            name.into(),
            "--version".into(),
            version.to_string(),
            "-o".into(),
            out.clone(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        args.push(csv.into());
        ok(hashsieve().current_dir(self.path("")).args(&args));
        ok(hashsieve().current_dir(self.path("")).args([
            "hashset",
            "sign",
            "--secret-key",
            "k.key",
            &out,
        ]));
    }

    /// Copies a signed file into the list's published dir (signature first).
    fn publish(&self, list: &str, file: &str) {
        let to = self.path(&format!("published/{list}"));
        std::fs::create_dir_all(&to).unwrap();
        std::fs::copy(
            self.path(&format!("{file}.minisig")),
            to.join(format!("{file}.minisig")),
        )
        .unwrap();
        std::fs::copy(self.path(file), to.join(file)).unwrap();
    }

    fn serve(&self) -> (ServeChild, String) {
        let mut command = Command::new(env!("CARGO_BIN_EXE_hashsieve"));
        command.env("RUST_LOG", "warn,hashsieve=info");
        let (child, _log, _lines, addr) = spawn_serve_with(
            command,
            self.dir.path(),
            &["serve", "--config", "hashsieve.toml"],
            "http",
        );
        let base = format!("http://{addr}");
        wait_for_versions(&base, &[("urls", 1), ("alpha", 1), ("allow", 1)]);
        (child, base)
    }

    /// `hashsieve url check` with `how`, the NDJSON and the exit code.
    fn check(&self, how: &[&str], urls: &[&str]) -> (Vec<Value>, i32) {
        let out = hashsieve()
            .current_dir(self.path(""))
            .env("HASHSIEVE_API_KEY", PARTNER)
            .args(["url", "check"])
            .args(how)
            .args(urls)
            .output()
            .unwrap();
        (ndjson(&out.stdout), out.status.code().unwrap())
    }
}

fn wait_for_versions(base: &str, want: &[(&str, u64)]) {
    let client = Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(r) = client.get(format!("{base}/readyz")).send()
            && let Ok(body) = r.json::<Value>()
            && want.iter().all(|(l, v)| body["lists"][l] == json!(v))
        {
            return;
        }
        assert!(Instant::now() < deadline, "not serving {want:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Per URL of a `url check` run, what matched it: `(expression_kind, ref)`.
fn matched(lines: &[Value]) -> Vec<Vec<(String, String)>> {
    lines
        .iter()
        .map(|l| {
            l["matches"]
                .as_array()
                .map(|ms| {
                    ms.iter()
                        .map(|m| {
                            (
                                m["expression_kind"].as_str().unwrap().to_owned(),
                                m["ref"].as_str().unwrap().to_owned(),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default()
        })
        .collect()
}

const PROBES: &[&str] = &[
    "http://blocked.example/",
    "https://www.Blocked.Example:8443/any/page?x=1",
    "http://shop.example/bad/item.html",
    "http://shop.example/bad/deeper/still/x?y",
    "http://shop.example/good/item.html",
    "http://news.example/story.html?id=7",
    "http://news.example/story.html?id=8",
    "http://shop.example/bad/withdrawn.html",
    "http://evil.example/",
];

#[test]
fn url_lists_round_trip_build_sign_delta_serve_and_check() {
    let env = Env::new();
    // The set holds hashes only: no pattern's text is in the file.
    let bytes = std::fs::read(env.path("urls-1.hset")).unwrap();
    for needle in ["blocked.example", "shop.example", "news.example", "story"] {
        assert!(
            !bytes.windows(needle.len()).any(|w| w == needle.as_bytes()),
            "{needle} is in the set"
        );
    }
    let local = ["--hashset", "urls-1.hset", "--public-key", "k.pub"];
    let (lines, code) = env.check(&local, PROBES);
    assert_eq!(code, 1);
    let s = |kind: &str, r: &str| (kind.to_owned(), r.to_owned());
    let expected_v1 = vec![
        vec![s("host", "u-host")],
        vec![s("host", "u-host")],
        vec![s("path_prefix", "u-prefix")],
        vec![s("path_prefix", "u-prefix")],
        vec![],
        vec![s("url", "u-exact")],
        vec![],
        // Offline there is no allow list: the withdrawn URL is listed twice.
        vec![s("url", "u-fp"), s("path_prefix", "u-prefix")],
        vec![],
    ];
    let got = matched(&lines);
    assert_eq!(got, expected_v1);
    assert_eq!(
        lines[1]["canonical"],
        "https://www.blocked.example/any/page?x=1"
    );
    assert_eq!(lines[0]["severity"], 1);

    let (_server, base) = env.serve();
    let server = ["--server", base.as_str()];
    let privacy = ["--server", base.as_str(), "--privacy"];
    // Through the service the allow list withdraws the false positive's own entry; the
    // listed directory above it still covers it (suppression is per expression), and
    // nothing else changes.
    let mut expected_served = expected_v1.clone();
    expected_served[7] = vec![s("path_prefix", "u-prefix")];
    for how in [&server[..], &privacy[..]] {
        let (lines, code) = env.check(how, PROBES);
        assert_eq!(code, 1, "{how:?}");
        let got = matched(&lines);
        assert_eq!(got, expected_served, "{how:?}");
    }

    // Version 2 by a delta: the exact URL withdrawn, a host added.
    env.write(
        "urls-2.csv",
        "kind,hash,category,ref\n\
         url,blocked.example,A,u-host\n\
         url,http://shop.example/bad/,B,u-prefix\n\
         url,http://shop.example/bad/withdrawn.html,B,u-fp\n\
         url,evil.example,A,u-host-2\n",
    );
    env.build("urls", 2, &["--severity", "A,B,C"], "urls-2.csv");
    ok(hashsieve().current_dir(env.path("")).args([
        "hashset",
        "diff",
        "urls-1.hset",
        "urls-2.hset",
        "-o",
        "urls-2.hdelta",
    ]));
    ok(hashsieve().current_dir(env.path("")).args([
        "hashset",
        "sign",
        "--secret-key",
        "k.key",
        "urls-2.hdelta",
    ]));
    env.publish("urls", "urls-2.hdelta");
    wait_for_versions(&base, &[("urls", 2)]);
    let mut expected_v2 = expected_served.clone();
    expected_v2[5] = vec![];
    expected_v2[8] = vec![s("host", "u-host-2")];
    for how in [&server[..], &privacy[..]] {
        let (lines, _) = env.check(how, PROBES);
        let got = matched(&lines);
        assert_eq!(got, expected_v2, "{how:?}");
        assert!(lines.iter().all(|l| {
            l["matches"]
                .as_array()
                .unwrap()
                .iter()
                .all(|m| m["version"] == 2)
        }));
    }
    // Nothing listed, bad input: exit 0 for the first, 2 with a precise error for the second.
    let (lines, code) = env.check(&server, &["http://fine.example/"]);
    assert_eq!((code, lines[0]["verdict"].as_str()), (0, Some("no_match")));
    let (lines, code) = env.check(&server, &["http://[zz::1]/", "http://fine.example/"]);
    assert_eq!(code, 2);
    assert!(lines[0]["error"].as_str().unwrap().contains("IPv6"));
    assert_eq!(lines[1]["verdict"], "no_match");
}

fn post(base: &str, path: &str, body: &Value) -> (u16, Value) {
    let r = Client::new()
        .post(format!("{base}{path}"))
        .bearer_auth(PARTNER)
        .json(body)
        .send()
        .unwrap();
    (r.status().as_u16(), r.json().unwrap())
}

#[test]
fn allow_lists_operator_thresholds_and_severity_through_the_api() {
    let env = Env::new();
    let (_server, base) = env.serve();
    let q = |h: [u8; 32]| json!({"kind": "pdq", "hash": hex(&h), "quality": 90});
    let capped_far = flipped(pdq(2), 28);
    let capped_near = flipped(pdq(2), 20);
    assert_eq!(distance(&capped_far, &pdq(2)), 28);
    let (status, body) = post(
        &base,
        "/v1/match",
        &json!({"queries": [q(pdq(1)), q(capped_far), q(capped_near), q(pdq(3)), q(flipped(pdq(3), 1))]}),
    );
    assert_eq!(status, 200, "{body}");
    let results = body["results"].as_array().unwrap();
    // Severity first: A at distance 4 before C at distance 0; the verdict carries A's rank.
    let refs: Vec<&str> = results[0]["matches"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["ref"].as_str().unwrap())
        .collect();
    assert_eq!(refs, ["a-near", "a-exact"]);
    assert_eq!(results[0]["severity"], 1);
    assert_eq!(results[0]["matches"][0]["severity"], 1);
    assert_eq!(results[0]["matches"][1]["severity"], 3);
    // The operator's pdq = 24 under the set's 31: 28 bits away is no match, 20 is.
    assert_eq!(results[1]["verdict"], "no_match");
    assert_eq!(results[2]["verdict"], "match");
    assert_eq!(results[2]["matches"][0]["ref"], "a-capped");
    // The allow list's meme suppresses alpha's near copy of it, exactly and within its own
    // threshold; the partner sees no_match, and never the allow list itself.
    assert_eq!(results[3]["verdict"], "no_match");
    assert_eq!(results[4]["verdict"], "no_match");
    assert!(!body["lists"].as_object().unwrap().contains_key("allow"));
    // The same through a single GET.
    let single: Value = Client::new()
        .get(format!("{base}/v1/match/pdq/{}", hex(&pdq(3))))
        .bearer_auth(PARTNER)
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(single["verdict"], "no_match");
    // The operator sees each suppression in the metrics and the audit log.
    let metrics = Client::new()
        .get(format!("{base}/metrics"))
        .send()
        .unwrap()
        .text()
        .unwrap();
    let line = metrics
        .lines()
        .find(|l| l.starts_with("hashsieve_suppressed_total{") && l.contains("list=\"alpha\""))
        .unwrap_or_else(|| panic!("no suppression metric in:\n{metrics}"));
    assert!(
        line.contains("allow_list=\"allow\"") && line.ends_with(" 3"),
        "{line}"
    );
    let audit = std::fs::read_to_string(env.path("audit.jsonl")).unwrap();
    let suppressed: Vec<Value> = audit
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|r| r.get("suppressed_by").is_some())
        .collect();
    assert_eq!(suppressed.len(), 3, "{audit}");
    assert_eq!(suppressed[0]["ref"], "a-meme");
    assert_eq!(suppressed[0]["suppressed_by"]["list"], "allow");
    assert_eq!(suppressed[0]["suppressed_by"]["ref"], "fp-2");
    // /v1/lists shows the effective thresholds, the allow list and the severity order.
    let lists: Value = Client::new()
        .get(format!("{base}/v1/lists"))
        .bearer_auth(ADMIN)
        .send()
        .unwrap()
        .json()
        .unwrap();
    let list = |name: &str| {
        lists["lists"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["name"] == name)
            .unwrap()
            .clone()
    };
    assert_eq!(list("alpha")["thresholds"], json!({"pdq": 24}));
    assert_eq!(list("allow")["thresholds"], json!({"pdq": 31}));
    assert_eq!(list("allow")["suppresses"], json!(["urls", "alpha"]));
    assert_eq!(list("urls")["severity"], json!(["A", "B", "C"]));

    // Privacy mode: full hashes by prefix, the suppressed entry left out, bad prefixes a 422.
    let withdrawn = sha256_hex("shop.example/bad/withdrawn.html");
    let prefix = sha256_hex("shop.example/bad/");
    let (status, body) = post(
        &base,
        "/v1/match/url-prefixes",
        &json!({"prefixes": [&withdrawn[..8], &prefix[..8], "00000000"]}),
    );
    assert_eq!(status, 200, "{body}");
    let hashes: Vec<&str> = body["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["hash"].as_str().unwrap())
        .collect();
    assert_eq!(hashes, [prefix.as_str()]);
    assert_eq!(body["entries"][0]["ref"], "u-prefix");
    for bad in [
        json!({"prefixes": ["abc"]}),
        json!({"prefixes": ["zzzzzzzz"]}),
    ] {
        let (status, body) = post(&base, "/v1/match/url-prefixes", &bad);
        assert_eq!(status, 422, "{body}");
        assert_eq!(body["type"], "urn:hashsieve:problem:invalid-query");
    }
    let (status, _) = post(&base, "/v1/match/url-prefixes", &json!({"prefix": []}));
    assert_eq!(status, 400);
}

#[test]
fn the_squid_helper_speaks_the_protocol_and_fails_as_told() {
    let env = Env::new();
    let helper = |args: &[&str], input: &str| {
        let mut child = hashsieve()
            .current_dir(env.path(""))
            .args(["url", "squid-helper"])
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
        String::from_utf8(out.stdout).unwrap()
    };
    let local = ["--hashset", "urls-1.hset", "--public-key", "k.pub"];
    // Without and with channel IDs; Squid URL-quotes %-escapes (a%252F is a%2F).
    let answers = helper(
        &local,
        "http://blocked.example/x\n\
         0 http://shop.example/bad/a%252Fb\n\
         7 http://shop.example/good/ extra-acl-arg\n\
         12 blocked.example:443\n\
         http://[bad\n\
         \n",
    );
    let lines: Vec<&str> = answers.lines().collect();
    assert_eq!(lines.len(), 6, "{answers}");
    assert!(lines[0].starts_with("OK"), "{answers}");
    assert!(lines[1].starts_with("0 OK"), "{answers}");
    assert_eq!(lines[2], "7 ERR");
    assert!(lines[3].starts_with("12 OK"), "{answers}");
    assert!(lines[4].starts_with("ERR message=\"") && lines[4].contains("IPv6"));
    assert!(
        !lines[4].contains("[bad"),
        "the helper repeats an unlisted URL: {answers}"
    );
    assert!(lines[5].starts_with("BH"));
    // A service that cannot be reached: open lets through, closed blocks, both say why.
    let gone = ["--server", "http://127.0.0.1:9", "--timeout-ms", "500"];
    let open = helper(
        &[&gone[..], &["--fail", "open"]].concat(),
        "http://x.example/\n",
    );
    assert!(
        open.starts_with("ERR message=\"hashsieve unavailable"),
        "{open}"
    );
    let closed = helper(
        &[&gone[..], &["--fail", "closed"]].concat(),
        "3 http://x.example/\n",
    );
    assert!(
        closed.starts_with("3 OK message=\"hashsieve unavailable"),
        "{closed}"
    );
}

/// An origin server on loopback: every request gets 200 and "origin:" + its request line.
fn origin() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            std::thread::spawn(move || {
                let mut reader = std::io::BufReader::new(stream.try_clone().unwrap());
                let mut first = String::new();
                if reader.read_line(&mut first).is_err() {
                    return;
                }
                let mut line = String::new();
                while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                    line.clear();
                }
                let body = format!("origin: {}", first.trim());
                let _ = write!(
                    stream,
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            });
        }
    });
    port
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Real Squid from the distribution on loopback, its external ACL pointing at our helper
/// (asking the service), a deny_info block page, and an origin behind it as a parent.
#[test]
fn squid_blocks_listed_urls_through_the_helper() {
    let Some(squid) = ["/usr/sbin/squid", "/usr/local/sbin/squid"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
    else {
        assert!(
            std::env::var_os("HASHSIEVE_REQUIRE_SQUID").is_none(),
            "HASHSIEVE_REQUIRE_SQUID is set but squid is not installed"
        );
        eprintln!("SKIPPED: squid is not installed (apt-get install squid)");
        return;
    };
    let env = Env::new();
    let (_server, base) = env.serve();
    let origin_port = origin();
    let proxy_port = free_port();
    let d = env.path("squid");
    std::fs::create_dir_all(d.join("errors")).unwrap();
    // Squid's own templates, and our block page beside them.
    let templates = [
        "/usr/share/squid/errors/templates",
        "/usr/share/squid/errors/en",
    ]
    .into_iter()
    .map(Path::new)
    .find(|p| p.join("ERR_ACCESS_DENIED").exists())
    .expect("squid's error templates");
    for e in std::fs::read_dir(templates).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), d.join("errors").join(e.file_name())).unwrap();
    }
    std::fs::write(
        d.join("errors/ERR_HASHSIEVE"),
        "<html><body><h1>Blocked by hashsieve</h1><p>%U is on a list this network blocks.</p></body></html>\n",
    )
    .unwrap();
    let helper = env!("CARGO_BIN_EXE_hashsieve");
    let conf = format!(
        r#"http_port 127.0.0.1:{proxy_port}
pid_filename {d}/squid.pid
cache_log {d}/cache.log
access_log stdio:{d}/access.log
error_directory {d}/errors
coredump_dir {d}
cache deny all
cache_mem 4 MB
shutdown_lifetime 0 seconds
dns_v4_first on
external_acl_type hashsieve ttl=0 negative_ttl=0 children-max=2 children-startup=1 concurrency=4 %URI {helper} url squid-helper --server {base} --fail closed
acl listed external hashsieve
deny_info ERR_HASHSIEVE listed
acl lo src 127.0.0.1/32
http_access deny listed
http_access allow lo
http_access deny all
cache_peer 127.0.0.1 parent {origin_port} 0 no-query originserver name=origin
never_direct allow all
"#,
        d = d.display(),
    );
    std::fs::write(d.join("squid.conf"), conf).unwrap();
    // Squid drops root for its own user, which must reach the dir and its logs.
    for p in [env.path(""), d.clone(), d.join("errors")] {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o777)).unwrap();
    }
    let mut child = Command::new(&squid)
        .args(["-N", "-f"])
        .arg(d.join("squid.conf"))
        .env("HASHSIEVE_API_KEY", PARTNER)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut stderr_pipe = child.stderr.take().unwrap();
    let _squid = Kill(child);
    let proxy = reqwest::Proxy::all(format!("http://127.0.0.1:{proxy_port}")).unwrap();
    let client = Client::builder()
        .proxy(proxy)
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(r) = client.get("http://ready.example/").send()
            && r.status() == 200
        {
            break;
        }
        if Instant::now() > deadline {
            let mut err = String::new();
            let _ = stderr_pipe.read_to_string(&mut err);
            let log = std::fs::read_to_string(d.join("cache.log")).unwrap_or_default();
            panic!("squid did not come up: {err}\n{log}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    for (url, blocked) in [
        ("http://blocked.example/", true),
        ("http://www.blocked.example/some/page.html?q=1", true),
        ("http://shop.example/bad/thing.html", true),
        ("http://shop.example/bad/deeper/x/y/z.html", true),
        ("http://news.example/story.html?id=7", true),
        ("http://news.example/story.html?id=8", false),
        ("http://shop.example/good/thing.html", false),
        ("http://notblocked.example/", false),
        ("http://shop.example/bad/withdrawn.html", true),
    ] {
        let r = client.get(url).send().unwrap();
        let status = r.status().as_u16();
        let body = r.text().unwrap();
        if blocked {
            assert_eq!(status, 403, "{url}: {body}");
            assert!(body.contains("Blocked by hashsieve"), "{url}: {body}");
        } else {
            assert_eq!(status, 200, "{url}: {body}");
            assert!(body.starts_with("origin: GET "), "{url}: {body}");
        }
    }
    // HTTPS through the proxy is a CONNECT: judged by its host alone.
    let connect = |host: &str| {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", proxy_port)).unwrap();
        write!(s, "CONNECT {host}:443 HTTP/1.1\r\nHost: {host}:443\r\n\r\n").unwrap();
        let mut head = [0u8; 64];
        let n = s.read(&mut head).unwrap();
        String::from_utf8_lossy(&head[..n]).into_owned()
    };
    assert!(connect("www.blocked.example").contains(" 403 "));
    // A host listed only under a path is not blocked at CONNECT (Squid then fails to tunnel
    // to the test's plain origin, which is not a block).
    assert!(!connect("shop.example").contains(" 403 "));
    // Squid's own log agrees: the blocked requests were denied by the proxy itself.
    std::thread::sleep(Duration::from_millis(300));
    let log = std::fs::read_to_string(d.join("access.log")).unwrap_or_default();
    let denied = log.lines().filter(|l| l.contains("TCP_DENIED/403")).count();
    assert_eq!(denied, 7, "{log}");
}

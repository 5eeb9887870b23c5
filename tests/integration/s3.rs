//! `s3://` sources and `hashset publish --to s3://` against a real S3 API on loopback:
//! `moto_server` (PyPI `moto[server]`; requests are signed with the standard AWS variables).
//! Skipped with a message when it is not installed; `.ci/run` installs it and sets
//! `HASHSIEVE_REQUIRE_MOTO=1`, which makes a skip a failure.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::blocking::Client;
use serde_json::Value;

use crate::server::spawn_serve_with;
use crate::util::{repo, stderr};

/// A `moto_server` on a free loopback port, killed on drop.
struct Moto {
    child: Child,
    port: u16,
    /// The Python beside it (its venv has boto3), to write objects the way a third party
    /// would.
    python: PathBuf,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `moto_server` from `$HASHSIEVE_MOTO_SERVER` or the PATH.
fn moto_binary() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("HASHSIEVE_MOTO_SERVER") {
        return Some(PathBuf::from(p));
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("moto_server"))
            .find(|p| p.is_file())
    })
}

fn start_moto() -> Option<Moto> {
    let Some(binary) = moto_binary() else {
        assert!(
            std::env::var_os("HASHSIEVE_REQUIRE_MOTO").is_none(),
            "HASHSIEVE_REQUIRE_MOTO is set but moto_server was not found"
        );
        eprintln!(
            "SKIPPED: moto_server not found (pip install 'moto[server]', or set HASHSIEVE_MOTO_SERVER); CI always runs this test"
        );
        return None;
    };
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(&binary)
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start moto_server");
    let python = binary.with_file_name("python3");
    let python = if python.exists() {
        python
    } else {
        PathBuf::from("python3")
    };
    let moto = Moto {
        child,
        port,
        python,
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "moto_server did not start");
        std::thread::sleep(Duration::from_millis(100));
    }
    moto.boto(&["create_bucket", "lists"], None);
    Some(moto)
}

impl Moto {
    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Runs one boto3 S3 call: `create_bucket BUCKET`, or `put BUCKET KEY` with `body`.
    fn boto(&self, args: &[&str], body: Option<&[u8]>) {
        let script = r#"
import sys, boto3
s3 = boto3.client("s3", endpoint_url=sys.argv[1], region_name="us-east-1",
                  aws_access_key_id="test", aws_secret_access_key="test")
if sys.argv[2] == "create_bucket":
    s3.create_bucket(Bucket=sys.argv[3])
else:
    s3.put_object(Bucket=sys.argv[3], Key=sys.argv[4], Body=sys.stdin.buffer.read())
"#;
        let mut child = Command::new(&self.python)
            .arg("-c")
            .arg(script)
            .arg(self.endpoint())
            .args(args)
            .stdin(Stdio::piped())
            .spawn()
            .expect("python3 with boto3 (installed with moto)");
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(body.unwrap_or_default()).unwrap();
        drop(stdin);
        assert!(child.wait().unwrap().success(), "boto3 {args:?}");
    }

    /// `hashsieve` with the AWS variables a user would set for this store.
    fn hashsieve(&self) -> Command {
        let mut c = crate::util::hashsieve();
        c.env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .env("AWS_REGION", "us-east-1")
            .env("AWS_ENDPOINT_URL", self.endpoint())
            .env_remove("AWS_PROFILE");
        c
    }
}

fn lists(client: &Client, base: &str) -> Value {
    client
        .get(format!("{base}/v1/lists"))
        .send()
        .unwrap()
        .json()
        .unwrap()
}

fn alpha(client: &Client, base: &str) -> Value {
    lists(client, base)["lists"][0].clone()
}

fn wait_for(what: &str, limit: Duration, mut ok: impl FnMut() -> bool) -> Duration {
    let started = Instant::now();
    while !ok() {
        assert!(started.elapsed() < limit, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
    started.elapsed()
}

#[test]
fn an_s3_source_serves_what_is_published_and_survives_the_store() {
    let Some(mut moto) = start_moto() else { return };
    let dir = tempfile::tempdir().unwrap();
    let example = repo().join("hashsets-example/alpha");
    let copy = |name: &str| -> PathBuf {
        let to = dir.path().join(name);
        std::fs::copy(example.join(name), &to).unwrap();
        std::fs::copy(
            example.join(format!("{name}.minisig")),
            dir.path().join(format!("{name}.minisig")),
        )
        .unwrap();
        to
    };
    let (v1, v2) = (copy("alpha-1.hset"), copy("alpha-2.hdelta"));

    // Publishing: version 1 under its canonical name, signature first.
    let out = moto
        .hashsieve()
        .args(["hashset", "publish", "--to", "s3://lists/hotline/alpha/"])
        .arg(&v1)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("s3://lists/hotline/alpha/alpha-1.hset"));
    // Again: nothing to do. A different file under a published name: refused.
    let again = moto
        .hashsieve()
        .args(["hashset", "publish", "--to", "s3://lists/hotline/alpha/"])
        .arg(&v1)
        .output()
        .unwrap();
    assert!(again.status.success() && stderr(&again).contains("already published"));

    let key = std::fs::read_to_string(repo().join("hashsets-example/example-only.pub")).unwrap();
    let key = key.lines().nth(1).unwrap().trim().to_owned();
    std::fs::write(
        dir.path().join("s3.toml"),
        format!(
            r#"
listen = "127.0.0.1:0"
state_dir = "state"
audit_log = "audit.jsonl"
[limits]
shutdown_grace_ms = 0
[[lists]]
name = "alpha"
source = "s3://lists/hotline/alpha/"
public_keys = ["{key}"]
poll_seconds = 1
"#
        ),
    )
    .unwrap();
    let (mut child, _rx, _log, addr) = spawn_serve_with(
        moto.hashsieve(),
        dir.path(),
        &["serve", "--config", "s3.toml"],
        "http",
    );
    let client = Client::new();
    let base = format!("http://{addr}");
    wait_for("version 1 served", Duration::from_secs(20), || {
        alpha(&client, &base)["version"] == 1
    });

    // A delta whose signature comes late (a publisher writing in the wrong order): waited
    // for, not refused; served once the signature is there.
    let delta = std::fs::read(&v2).unwrap();
    moto.boto(
        &["put", "lists", "hotline/alpha/alpha-2.hdelta"],
        Some(&delta),
    );
    std::thread::sleep(Duration::from_millis(2500));
    let status = alpha(&client, &base);
    assert_eq!(status["version"], 1);
    assert!(status["last_refusal"].is_null(), "{status}");
    let signature = std::fs::read(dir.path().join("alpha-2.hdelta.minisig")).unwrap();
    let uploaded = Instant::now();
    moto.boto(
        &["put", "lists", "hotline/alpha/alpha-2.hdelta.minisig"],
        Some(&signature),
    );
    wait_for("version 2 served", Duration::from_secs(10), || {
        alpha(&client, &base)["version"] == 2
    });
    eprintln!(
        "delta served {:.2} s after its signature was uploaded",
        uploaded.elapsed().as_secs_f64()
    );

    // Garbage under a newer name: refused with the reason, version 2 keeps serving.
    moto.boto(
        &["put", "lists", "hotline/alpha/alpha-3.hset"],
        Some(b"not a set"),
    );
    moto.boto(
        &["put", "lists", "hotline/alpha/alpha-3.hset.minisig"],
        Some(b"not a signature"),
    );
    wait_for("garbage refused", Duration::from_secs(10), || {
        alpha(&client, &base)["last_refusal"]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("alpha-3.hset"))
    });
    assert_eq!(alpha(&client, &base)["version"], 2);

    // The store goes away: the last good version keeps serving, and the error shows.
    let _ = moto.child.kill();
    let _ = moto.child.wait();
    wait_for("the source error shown", Duration::from_secs(20), || {
        alpha(&client, &base)["last_refusal"]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("s3://lists/hotline/alpha/") && r.contains("cannot list"))
    });
    let ready = client.get(format!("{base}/readyz")).send().unwrap();
    assert_eq!(ready.status(), reqwest::StatusCode::OK);
    let metrics = client
        .get(format!("{base}/metrics"))
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(
        metrics.contains("hashsieve_update_refusals_total{list=\"alpha\"}"),
        "{metrics}"
    );
    assert!(child.terminate().success());
}

#[test]
fn publish_to_a_directory_writes_the_listing_last_and_refuses_strangers() {
    let dir = tempfile::tempdir().unwrap();
    let example = repo().join("hashsets-example/alpha");
    let to = dir.path().join("pub");
    let out = crate::util::hashsieve()
        .args(["hashset", "publish", "--to"])
        .arg(format!("dir:{}", to.display()))
        .arg("--public-key")
        .arg(repo().join("hashsets-example/example-only.pub"))
        .arg(example.join("alpha-2.hdelta"))
        .arg(example.join("alpha-1.hset"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let listing = std::fs::read_to_string(to.join("alpha.files")).unwrap();
    assert_eq!(listing, "alpha-1.hset\nalpha-2.hdelta\n");
    for name in ["alpha-1.hset", "alpha-2.hdelta"] {
        assert_eq!(
            std::fs::read(to.join(name)).unwrap(),
            std::fs::read(example.join(name)).unwrap()
        );
        assert!(to.join(format!("{name}.minisig")).exists());
    }
    // A file whose signature is another file's is not published.
    let odd = dir.path().join("odd.hset");
    std::fs::copy(example.join("alpha-1.hset"), &odd).unwrap();
    std::fs::copy(
        example.join("alpha-2.hdelta.minisig"),
        dir.path().join("odd.hset.minisig"),
    )
    .unwrap();
    let out = crate::util::hashsieve()
        .args(["hashset", "publish", "--to"])
        .arg(format!("dir:{}", to.display()))
        .arg(&odd)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("the signature is not this file's"),
        "{}",
        stderr(&out)
    );
    // Unsigned: a usage error naming the missing signature.
    std::fs::remove_file(dir.path().join("odd.hset.minisig")).unwrap();
    let out = crate::util::hashsieve()
        .args(["hashset", "publish", "--to"])
        .arg(format!("dir:{}", to.display()))
        .arg(&odd)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("odd.hset.minisig"),
        "{}",
        stderr(&out)
    );
}

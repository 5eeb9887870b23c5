//! Sources that fight back: an HTTP source on loopback that, file by file, sends an endless
//! body, one byte a second, a `Content-Length` that lies either way, a 500, a reset, a
//! redirect to another host, a listing of a million names, names that climb out of the base
//! URL, and a validly signed set numbered 2^63. Each try must end in bounded time and
//! memory, with the old version serving, the reason in `/v1/lists`, and the next honest
//! update applied.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::survive::{Running, Service};

/// What the source does to the request for the newest set (everything else is honest).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Trick {
    Honest,
    EndlessBody,
    OneByteASecond,
    ShortBody,
    HugeLength,
    Error500,
    Reset,
    RedirectAway,
    MillionNames,
    ClimbingNames,
}

struct Hostile {
    base: String,
    trick: Arc<Mutex<Trick>>,
    /// Every path requested, to show none left the base URL.
    requested: Arc<Mutex<Vec<String>>>,
}

impl Hostile {
    /// Serves `dir` (the honest files) on a loopback port, with tricks.
    fn start(dir: PathBuf) -> Hostile {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let trick = Arc::new(Mutex::new(Trick::Honest));
        let requested = Arc::new(Mutex::new(Vec::new()));
        let (t, r) = (Arc::clone(&trick), Arc::clone(&requested));
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (dir, t, r) = (dir.clone(), Arc::clone(&t), Arc::clone(&r));
                std::thread::spawn(move || {
                    let _ = serve(stream, &dir, port, &t, &r);
                });
            }
        });
        Hostile {
            base: format!("http://127.0.0.1:{port}/"),
            trick,
            requested,
        }
    }

    fn set(&self, trick: Trick) {
        *self.trick.lock().unwrap() = trick;
    }
}

/// The newest `alpha-N.hset` in `dir`, by version.
fn newest(dir: &std::path::Path) -> Option<String> {
    std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let (v, _) = hashsieve::hashset::parse_file_name("alpha", &name)?;
            Some((v, name))
        })
        .max()
        .map(|(_, n)| n)
}

fn serve(
    mut stream: TcpStream,
    dir: &std::path::Path,
    port: u16,
    trick: &Mutex<Trick>,
    requested: &Mutex<Vec<String>>,
) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line == "\r\n" {
            break;
        }
    }
    let path = request_line
        .split_whitespace()
        .nth(1)
        .unwrap_or("/")
        .to_owned();
    requested.lock().unwrap().push(path.clone());
    let trick = *trick.lock().unwrap();
    let name = path.trim_start_matches('/');
    let head = |status: &str, length: Option<u64>, extra: &str| {
        let length = length.map_or(String::new(), |n| format!("content-length: {n}\r\n"));
        format!("HTTP/1.1 {status}\r\n{length}{extra}connection: close\r\n\r\n")
    };
    if name == "alpha.files" {
        let body = match trick {
            Trick::MillionNames => {
                // Streamed, never held: 1,000,000 plausible names.
                let line_len = "alpha-1000000.hset\n".len() as u64;
                stream.write_all(head("200 OK", Some(1_000_000 * line_len), "").as_bytes())?;
                for i in 0..1_000_000u64 {
                    writeln!(stream, "alpha-{i:07}.hset")?;
                }
                return Ok(());
            }
            _ => {
                let mut names: Vec<String> = std::fs::read_dir(dir)?
                    .flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| n.ends_with(".hset"))
                    .collect();
                if trick == Trick::ClimbingNames {
                    names.extend(
                        [
                            "../alpha-99.hset",
                            "/etc/alpha-99.hset",
                            "..\\alpha-99.hset",
                            "sub/../../alpha-99.hset",
                            ".alpha-99.hset",
                        ]
                        .map(String::from),
                    );
                }
                names.join("\n") + "\n"
            }
        };
        stream.write_all(head("200 OK", Some(body.len() as u64), "").as_bytes())?;
        return stream.write_all(body.as_bytes());
    }
    let Ok(bytes) = std::fs::read(dir.join(name)) else {
        return stream.write_all(head("404 Not Found", Some(0), "").as_bytes());
    };
    let is_newest_set = newest(dir).as_deref() == Some(name);
    if !is_newest_set {
        stream.write_all(head("200 OK", Some(bytes.len() as u64), "").as_bytes())?;
        return stream.write_all(&bytes);
    }
    match trick {
        Trick::EndlessBody => {
            stream.write_all(head("200 OK", None, "transfer-encoding: chunked\r\n").as_bytes())?;
            let chunk = vec![0x5a; 64 * 1024];
            loop {
                write!(stream, "{:x}\r\n", chunk.len())?;
                stream.write_all(&chunk)?;
                stream.write_all(b"\r\n")?;
            }
        }
        Trick::OneByteASecond => {
            stream.write_all(head("200 OK", Some(bytes.len() as u64), "").as_bytes())?;
            for b in &bytes {
                stream.write_all(&[*b])?;
                std::thread::sleep(Duration::from_secs(1));
            }
            Ok(())
        }
        Trick::ShortBody => {
            stream.write_all(head("200 OK", Some(bytes.len() as u64), "").as_bytes())?;
            stream.write_all(&bytes[..bytes.len() / 2])
        }
        Trick::HugeLength => {
            stream.write_all(head("200 OK", Some(1 << 40), "").as_bytes())?;
            stream.write_all(&bytes)
        }
        Trick::Error500 => {
            stream.write_all(head("500 Internal Server Error", Some(0), "").as_bytes())
        }
        Trick::Reset => {
            // Hang up without an answer.
            drop(reader);
            stream.shutdown(std::net::Shutdown::Both)
        }
        Trick::RedirectAway => {
            let to = format!("location: http://127.0.0.2:{port}/{name}\r\n");
            stream.write_all(head("302 Found", Some(0), &to).as_bytes())
        }
        Trick::Honest | Trick::MillionNames | Trick::ClimbingNames => {
            stream.write_all(head("200 OK", Some(bytes.len() as u64), "").as_bytes())?;
            stream.write_all(&bytes)
        }
    }
}

/// Resident memory of process `pid`, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// Waits for a refusal other than `before` and returns it.
fn next_refusal(run: &Running, before: &str, within: Duration) -> String {
    let deadline = Instant::now() + within;
    loop {
        let status = run.lists();
        let reason = status["last_refusal"]["reason"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let at = status["last_refusal"]["at"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let seen = format!("{at} {reason}");
        if !reason.is_empty() && seen != before {
            return seen;
        }
        assert!(
            Instant::now() < deadline,
            "no refusal within {within:?}: {status}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn sources_that_fight_back_cost_bounded_time_and_the_next_honest_update_applies() {
    let dir = tempfile::tempdir().unwrap();
    let hostile = Hostile::start(dir.path().to_owned());
    let service = Service::with_source(
        1,
        1,
        &hostile.base,
        "max_set_bytes = 1048576\nfetch_timeout_ms = 2000",
        "max_version_step = 1000",
        "",
    );
    let publish = |v: u64| {
        let name = format!("alpha-{v}.hset");
        let bytes = crate::survive::set_bytes("alpha", v, 100);
        crate::survive::publish(dir.path(), &name, &bytes, &[&service.keys[0]]);
    };
    publish(1);
    let run = service.start();
    run.wait_serving(1, Duration::from_secs(20));
    let pid = run.child.id();
    let rss_before = rss_kib(pid);

    let tries: [(Trick, &str); 9] = [
        (Trick::EndlessBody, "over the size limit of 1048576 bytes"),
        (
            Trick::OneByteASecond,
            "took longer than limits.fetch_timeout_ms",
        ),
        (Trick::ShortBody, "body error"),
        (
            Trick::HugeLength,
            "1099511627776 bytes is over the size limit",
        ),
        (Trick::Error500, "HTTP 500"),
        (Trick::Reset, "connection closed"),
        (Trick::RedirectAway, "redirect to another origin"),
        (
            Trick::MillionNames,
            "alpha.files: 19000000 bytes is over the size limit",
        ),
        (Trick::ClimbingNames, ""),
    ];
    let mut version = 1;
    let mut before = String::new();
    let mut report = Vec::new();
    for (trick, expected) in tries {
        hostile.set(trick);
        version += 1;
        publish(version);
        let t = Instant::now();
        run.hup();
        if trick != Trick::ClimbingNames {
            before = next_refusal(&run, &before, Duration::from_secs(15));
            let took = t.elapsed();
            assert!(before.contains(expected), "{trick:?}: {before}");
            assert_eq!(
                run.serving(),
                Some(version - 1),
                "{trick:?}: old version serves"
            );
            assert!(run.matches_marker(version - 1), "{trick:?}");
            report.push(format!("{trick:?}: refused in {took:?}"));
        }
        // The honest source again: the same file now applies, with no operator action.
        hostile.set(Trick::Honest);
        run.hup();
        run.wait_serving(version, Duration::from_secs(15));
        assert!(run.matches_marker(version), "{trick:?}");
    }
    // Nothing outside the base URL was ever asked for.
    let requested = hostile.requested.lock().unwrap().clone();
    assert!(
        requested
            .iter()
            .all(|p| !p.contains("..") && !p.contains("etc") && !p.contains('\\')),
        "{requested:?}"
    );
    // Memory stayed bounded: the endless body and the million names cost at most the
    // limits (1 MiB for a file, 1 MiB for a listing), not what was sent.
    let rss_after = rss_kib(pid);
    assert!(
        rss_after < rss_before + 64 * 1024,
        "RSS grew from {rss_before} KiB to {rss_after} KiB"
    );

    // A set signed by the trusted key, numbered 2^63: a fast-forward, refused; the
    // maintainer's next honest version still applies.
    publish(1 << 63);
    run.hup();
    before = next_refusal(&run, &before, Duration::from_secs(15));
    assert!(before.contains("fast-forward"), "{before}");
    assert_eq!(run.serving(), Some(version));
    std::fs::remove_file(dir.path().join(format!("alpha-{}.hset", 1u64 << 63))).unwrap();
    version += 1;
    publish(version);
    run.hup();
    run.wait_serving(version, Duration::from_secs(15));
    eprintln!(
        "hostile source: {}; RSS {rss_before} -> {rss_after} KiB",
        report.join("; ")
    );
    run.stop();
}

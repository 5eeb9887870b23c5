//! vPDQ against Meta's reference (the `vpdq` package, built from source against this
//! machine's FFmpeg): Meta's sample videos and videos FFmpeg generates here (several codecs,
//! 29.97 and variable frame rates, odd sizes, rotation metadata), hashed by both with the same
//! settings: frame numbers identical, timestamps equal, hashes bit-exact on at least 99% of
//! frames and never more than 8 bits off, qualities equal.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::util::{hashsieve, stderr};

/// One frame line: `frameNumber,quality,pdqHex,timestamp`.
type Line = (u64, u8, [u8; 32], String);

fn parse_lines(text: &str) -> Vec<Line> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let f: Vec<&str> = l.trim().split(',').collect();
            assert_eq!(f.len(), 4, "{l}");
            let mut h = [0u8; 32];
            for (i, b) in h.iter_mut().enumerate() {
                *b = u8::from_str_radix(&f[2][2 * i..2 * i + 2], 16).unwrap();
            }
            (
                f[0].parse().unwrap(),
                f[1].parse().unwrap(),
                h,
                f[3].to_owned(),
            )
        })
        .collect()
}

fn ours(video: &Path, seconds_per_hash: &str) -> Vec<Line> {
    let out = hashsieve()
        .args([
            "hash",
            "--kinds",
            "pdq",
            "--vpdq-format",
            "reference",
            "--seconds-per-hash",
        ])
        .arg(seconds_per_hash)
        .arg(video)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}: {}",
        video.display(),
        stderr(&out)
    );
    parse_lines(&String::from_utf8(out.stdout).unwrap())
}

/// The Python with Meta's `vpdq` installed: `$HASHSIEVE_VPDQ_PYTHON`, else none.
fn reference_python() -> Option<PathBuf> {
    let python = std::env::var_os("HASHSIEVE_VPDQ_PYTHON").map(PathBuf::from)?;
    let ok = Command::new(&python)
        .args(["-c", "import vpdq"])
        .status()
        .is_ok_and(|s| s.success());
    ok.then_some(python)
}

fn reference(python: &Path, video: &Path, seconds_per_hash: &str) -> Vec<Line> {
    let script = "import sys, vpdq\n\
        for f in vpdq.computeHash(sys.argv[1], seconds_per_hash=float(sys.argv[2]), thread_count=1):\n\
        \x20   print(f'{f.frame_number},{f.quality},{f.hex},{f.timestamp:.3f}')\n";
    let out = Command::new(python)
        .args(["-c", script])
        .arg(video)
        .arg(seconds_per_hash)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "vpdq on {}: {}",
        video.display(),
        stderr(&out)
    );
    parse_lines(&String::from_utf8(out.stdout).unwrap())
}

/// Compares one video's lines; returns (frames, bit-exact frames).
fn compare(name: &str, ours: &[Line], theirs: &[Line]) -> (usize, usize) {
    let frames = |l: &[Line]| l.iter().map(|f| f.0).collect::<Vec<_>>();
    assert_eq!(frames(ours), frames(theirs), "{name}: frame numbers differ");
    assert!(!ours.is_empty(), "{name}: no frames");
    let mut exact = 0;
    for (a, b) in ours.iter().zip(theirs) {
        let d: u32 =
            a.2.iter()
                .zip(&b.2)
                .map(|(x, y)| (x ^ y).count_ones())
                .sum();
        assert!(d <= 8, "{name}: frame {} is {d} bits off", a.0);
        assert_eq!(a.1, b.1, "{name}: frame {} quality", a.0);
        assert_eq!(a.3, b.3, "{name}: frame {} timestamp", a.0);
        exact += usize::from(d == 0);
    }
    (ours.len(), exact)
}

/// Small benign videos made here by FFmpeg's test sources: codecs, rates, sizes, metadata.
fn generated(dir: &Path) -> Vec<PathBuf> {
    let cases: &[(&str, &[&str])] = &[
        (
            "testsrc2-h264-2997.mp4",
            &[
                "-f",
                "lavfi",
                "-i",
                "testsrc2=size=320x240:rate=30000/1001:duration=4",
                "-c:v",
                "libx264",
                "-pix_fmt",
                "yuv420p",
            ],
        ),
        (
            "mandelbrot-vp9.webm",
            &[
                "-f",
                "lavfi",
                "-i",
                "mandelbrot=size=160x120:rate=25",
                "-t",
                "3",
                "-c:v",
                "libvpx-vp9",
                "-b:v",
                "200k",
            ],
        ),
        (
            "life-mpeg4-odd.avi",
            &[
                "-f",
                "lavfi",
                "-i",
                "life=size=161x97:rate=15:mold=10",
                "-t",
                "4",
                "-c:v",
                "mpeg4",
            ],
        ),
        (
            "smptehdbars-mjpeg.mkv",
            &[
                "-f",
                "lavfi",
                "-i",
                "smptehdbars=size=256x144:rate=24",
                "-t",
                "2",
                "-c:v",
                "mjpeg",
            ],
        ),
        (
            "testsrc-rotated.mov",
            &[
                "-f",
                "lavfi",
                "-i",
                "testsrc=size=176x144:rate=30",
                "-t",
                "2",
                "-c:v",
                "libx264",
                "-metadata:s:v",
                "rotate=90",
            ],
        ),
        (
            "testsrc2-vfr.mkv",
            &[
                "-f",
                "lavfi",
                "-i",
                "testsrc2=size=200x150:rate=30:duration=4",
                "-vf",
                "select='not(mod(n\\,3))+lt(n\\,20)'",
                "-fps_mode",
                "vfr",
                "-c:v",
                "libx264",
            ],
        ),
    ];
    let mut made = Vec::new();
    for (name, args) in cases {
        let path = dir.join(name);
        let out = Command::new("ffmpeg")
            .args(["-hide_banner", "-loglevel", "error", "-y"])
            .args(*args)
            .arg(&path)
            .output()
            .unwrap();
        assert!(out.status.success(), "ffmpeg {name}: {}", stderr(&out));
        made.push(path);
    }
    made
}

#[test]
fn vpdq_agrees_with_metas_reference() {
    let Some(python) = reference_python() else {
        assert!(
            std::env::var_os("HASHSIEVE_REQUIRE_VPDQ").is_none(),
            "HASHSIEVE_REQUIRE_VPDQ is set but HASHSIEVE_VPDQ_PYTHON has no vpdq"
        );
        eprintln!(
            "SKIPPED: Meta's vpdq reference is not installed (pip install vpdq; set HASHSIEVE_VPDQ_PYTHON)"
        );
        return;
    };
    let mut videos: Vec<PathBuf> = Vec::new();
    let shared = crate::util::repo().join("../shared/video/videos");
    if let Ok(entries) = std::fs::read_dir(&shared) {
        let mut found: Vec<PathBuf> = entries.map(|e| e.unwrap().path()).collect();
        found.sort();
        videos.extend(found);
    } else {
        eprintln!(
            "note: {} is missing; only generated videos",
            shared.display()
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let has_ffmpeg = Command::new("ffmpeg").arg("-version").output().is_ok();
    if has_ffmpeg {
        videos.extend(generated(dir.path()));
    } else {
        eprintln!("note: ffmpeg is not installed; no generated videos");
    }
    assert!(!videos.is_empty());
    let (mut frames, mut exact) = (0, 0);
    for video in &videos {
        let name = video.file_name().unwrap().to_string_lossy().into_owned();
        // One frame a second (the default) for all; every frame (as Meta published its
        // hashes) for the generated videos and one sample of each kind, to keep the suite
        // short (`HASHSIEVE_VPDQ_ALL=1`: all of them every frame too, as `docs/conformance.md` quotes).
        let every_frame = std::env::var_os("HASHSIEVE_VPDQ_ALL").is_some()
            || !video.starts_with(&shared)
            || [
                "chair-19-sd-bar.mp4",
                "doorknob-hd-no-bar.mp4",
                "pattern-hd-no-bar.mp4",
                "test-padded-dimensions.mp4",
            ]
            .contains(&name.as_str());
        let rates: &[&str] = if every_frame { &["0", "1"] } else { &["1"] };
        for &sph in rates {
            let (f, e) = compare(
                &format!("{name} at {sph} s/hash"),
                &ours(video, sph),
                &reference(&python, video, sph),
            );
            frames += f;
            exact += e;
        }
    }
    eprintln!(
        "vpdq: {exact} of {frames} frames bit-exact over {} videos",
        videos.len()
    );
    assert!(
        exact * 100 >= frames * 99,
        "{exact} of {frames} frames bit-exact"
    );
}

#[test]
fn unreadable_and_oversized_videos_get_an_error_and_their_digests() {
    let dir = tempfile::tempdir().unwrap();
    // An MP4 head with nothing behind it.
    let broken = dir.path().join("broken.mp4");
    std::fs::write(&broken, b"\0\0\0\x18ftypisom\0\0\x02\0isomiso2avc1mp41").unwrap();
    let out = hashsieve().args(["hash"]).arg(&broken).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let record: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(record["sha256"].is_string() && record["md5"].is_string());
    assert!(record.get("vpdq").is_none());
    let error = record["error"].as_str().unwrap();
    assert!(error.contains("video"), "{error}");
    let Some(sample) = ["chair-19-sd-bar.mp4"]
        .iter()
        .map(|n| crate::util::repo().join("../shared/video/videos").join(n))
        .find(|p| p.exists())
    else {
        eprintln!("SKIPPED (limits part): ../shared/video is missing");
        return;
    };
    if cfg!(not(feature = "video")) {
        return;
    }
    for (flag, value, want) in [
        ("--max-video-seconds", "5", "s long, the limit is 5 s"),
        ("--max-pixels", "100000", "pixels, the limit is 100000"),
    ] {
        let out = hashsieve()
            .args(["hash", "--kinds", "pdq,sha256", flag, value])
            .arg(&sample)
            .output()
            .unwrap();
        let record: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert!(record["sha256"].is_string());
        assert!(
            record["error"].as_str().unwrap().contains(want),
            "{flag}: {record}"
        );
    }
    // The NDJSON record of a video: frames with their timestamps, one a second.
    let out = hashsieve()
        .args(["hash", "--kinds", "pdq"])
        .arg(&sample)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let record: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let frames = record["vpdq"].as_array().unwrap();
    assert_eq!(frames[0]["frame"], 0);
    assert_eq!(frames[1]["frame"], 30);
    assert_eq!(frames[1]["timestamp"], 1.0);
    assert_eq!(frames[1]["pdq"].as_str().unwrap().len(), 64);
    assert!(
        record.get("pdq").is_none(),
        "a video has no still-image pdq"
    );
}

/// The frames of a video as `hashsieve hash` prints them.
fn frames_of(video: &Path, seconds_per_hash: &str) -> Vec<hashsieve::index::vpdq::Frame> {
    let out = hashsieve()
        .args([
            "hash",
            "--kinds",
            "pdq",
            "--seconds-per-hash",
            seconds_per_hash,
        ])
        .arg(video)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}: {}",
        video.display(),
        stderr(&out)
    );
    let record: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    record["vpdq"]
        .as_array()
        .unwrap_or_else(|| panic!("{}: no vpdq in {record}", video.display()))
        .iter()
        .map(|f| {
            let hex = f["pdq"].as_str().unwrap();
            let mut pdq = [0u8; 32];
            for (i, b) in pdq.iter_mut().enumerate() {
                *b = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap();
            }
            hashsieve::index::vpdq::Frame {
                pdq,
                quality: f["quality"].as_u64().unwrap() as u8,
            }
        })
        .collect()
}

/// Frames that count, from reference-format lines.
fn counted(lines: &[Line]) -> Vec<[u8; 32]> {
    let frames: Vec<hashsieve::index::vpdq::Frame> = lines
        .iter()
        .map(|l| hashsieve::index::vpdq::Frame {
            pdq: l.2,
            quality: l.1,
        })
        .collect();
    hashsieve::index::vpdq::frames_that_count(&frames)
}

/// The share-of-frames rule on real variants: a re-encode at a low bitrate and a copy without
/// its first and last 10% still match the original, and an unrelated video does not, by our
/// hashes and through a signed list and `hashsieve match`; for a half-size copy, a 5% crop
/// and a watermark, our percentages stay within 5 points of those the reference's own hashes
/// give under the same rule (PDQ is not crop-invariant: what matters is that we agree).
/// (With the original also sampled one frame a second, the trimmed copy's frames fall 0.2 s
/// off the original's and only 17% of them match.)
#[test]
fn variants_of_a_video_match_it_by_share_of_frames() {
    use hashsieve::index::vpdq::{
        DEFAULT_COMPARED_PERCENT, DEFAULT_QUERY_PERCENT, frames_that_count, share,
    };
    let videos = crate::util::repo().join("../shared/video/videos");
    let original = videos.join("chair-orig-22-sd-bar.mp4");
    let unrelated = videos.join("pattern-hd-no-bar.mp4");
    if cfg!(not(feature = "video")) || !original.exists() {
        eprintln!("SKIPPED: needs the video feature and ../shared/video");
        return;
    }
    if Command::new("ffmpeg").arg("-version").output().is_err() {
        assert!(
            std::env::var_os("HASHSIEVE_REQUIRE_VPDQ").is_none(),
            "HASHSIEVE_REQUIRE_VPDQ is set but ffmpeg is not installed"
        );
        eprintln!("SKIPPED: ffmpeg is not installed (it makes the variants)");
        return;
    }
    let python = reference_python();
    if python.is_none() {
        eprintln!("note: Meta's vpdq is not installed; our percentages only");
    }
    let dir = tempfile::tempdir().unwrap();
    let variant = |name: &str, args: &[&str]| {
        let path = dir.path().join(name);
        let out = Command::new("ffmpeg")
            .args(["-hide_banner", "-loglevel", "error", "-y", "-i"])
            .arg(&original)
            .args(args)
            .arg(&path)
            .output()
            .unwrap();
        assert!(out.status.success(), "ffmpeg {name}: {}", stderr(&out));
        path
    };
    let filtered = |filter: &'static str| ["-vf", filter, "-c:v", "libx264", "-an"];
    let low = variant(
        "low-bitrate.mp4",
        &["-c:v", "libx264", "-b:v", "120k", "-an"],
    );
    let trimmed = variant(
        "trimmed.mp4",
        &["-ss", "2.2", "-t", "17.6", "-c:v", "libx264", "-an"],
    );
    let half = variant("half-size.mp4", &filtered("scale=iw/2:-2"));
    let crop = variant(
        "crop-5.mp4",
        &filtered("crop=trunc(iw*0.95/2)*2:trunc(ih*0.95/2)*2"),
    );
    let mark = variant(
        "watermark.mp4",
        &filtered("drawbox=x=iw*0.05:y=ih*0.05:w=iw*0.3:h=ih*0.12:color=white@0.6:t=fill"),
    );
    // Listed videos are hashed at every frame (as Meta publishes them), queries one frame a
    // second: a clip then finds its frames whatever phase its sampling has.
    let listed = frames_that_count(&frames_of(&original, "0"));
    let theirs_listed = python
        .as_ref()
        .map(|py| counted(&reference(py, &original, "0")));
    for (name, video, expect) in [
        ("low bitrate", &low, Some(true)),
        ("trimmed 10% at both ends", &trimmed, Some(true)),
        ("unrelated", &unrelated, Some(false)),
        ("half size", &half, None),
        ("5% crop", &crop, None),
        ("watermark", &mark, None),
    ] {
        let query = frames_that_count(&frames_of(video, "1"));
        let s = share(&query, &listed, 31);
        let mut line = format!(
            "{name}: ours query {:.1}%, compared {:.1}%",
            s.query_percent, s.compared_percent
        );
        if let (Some(py), Some(theirs_listed)) = (&python, &theirs_listed) {
            let theirs = share(&counted(&reference(py, video, "1")), theirs_listed, 31);
            line += &format!(
                "; reference query {:.1}%, compared {:.1}%",
                theirs.query_percent, theirs.compared_percent
            );
            assert!(
                (s.query_percent - theirs.query_percent).abs() <= 5.0
                    && (s.compared_percent - theirs.compared_percent).abs() <= 5.0,
                "{name}: ours {s:?}, the reference's {theirs:?}"
            );
        }
        eprintln!("{line}");
        if let Some(should_match) = expect {
            assert_eq!(
                s.matches(DEFAULT_QUERY_PERCENT, DEFAULT_COMPARED_PERCENT),
                should_match,
                "{name}: {s:?}"
            );
        }
    }

    // The same through the product: the original listed from its `hashsieve hash` record,
    // signed, and the variants' records matched offline.
    let run = |args: &[&str]| {
        let out = hashsieve()
            .current_dir(dir.path())
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        out
    };
    let record = run(&[
        "hash",
        "--seconds-per-hash",
        "0",
        original.to_str().unwrap(),
    ]);
    std::fs::write(dir.path().join("original.ndjson"), &record.stdout).unwrap();
    run(&[
        "keygen",
        "--secret-key",
        "k.key",
        "--public-key",
        "k.pub",
        "--unencrypted",
    ]);
    run(&[
        "hashset",
        "build",
        "--name",
        "videos",
        "--version",
        "1",
        "-o",
        "videos-1.hset",
        "original.ndjson",
    ]);
    run(&["hashset", "sign", "--secret-key", "k.key", "videos-1.hset"]);
    let mut queries = Vec::new();
    for video in [&low, &trimmed, &unrelated] {
        queries.extend(run(&["hash", video.to_str().unwrap()]).stdout);
    }
    std::fs::write(dir.path().join("queries.ndjson"), &queries).unwrap();
    let out = hashsieve()
        .current_dir(dir.path())
        .args([
            "match",
            "--hashset",
            "videos-1.hset",
            "--public-key",
            "k.pub",
            "queries.ndjson",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let verdicts: Vec<String> = crate::util::ndjson(&out.stdout)
        .iter()
        .filter(|l| l["query"]["kind"] == "vpdq")
        .map(|l| l["verdict"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(verdicts, ["match", "match", "no_match"]);
}

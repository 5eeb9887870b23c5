//! Client-side hashing: what a partner runs on its own machine. Only hashes leave it.
//!
//! [`Worker::hash_file`] streams a file once through the requested cryptographic digests (never
//! holding the whole file in memory), then, if perceptual kinds are wanted and the file looks
//! like an image, decodes it under the reference conventions ([`decode`]) and computes PDQ
//! ([`pdq`]) and the `imagehash`-compatible 64-bit hashes ([`imagehash`]).

pub mod decode;
pub mod imagehash;
pub mod pdq;
#[cfg(feature = "video")]
pub mod video;

use std::fs::File;
use std::io::Read;
use std::path::Path;

use md5::Digest as _;
use serde::Serialize;

use crate::kinds::{HashKind, hex_lower};

/// What to compute for each file.
#[derive(Debug, Clone)]
pub struct HashOptions {
    /// Kinds to compute; order does not matter.
    pub kinds: Vec<HashKind>,
    /// Also report the eight dihedral PDQ hashes.
    pub dihedral: bool,
    /// Images (and video frames) with more pixels than this are refused before decoding.
    pub max_pixels: u64,
    /// Videos: one frame hashed per this many seconds (0: every frame).
    pub seconds_per_hash: f64,
    /// Videos longer than this are refused.
    pub max_video_seconds: f64,
}

impl Default for HashOptions {
    fn default() -> Self {
        HashOptions {
            kinds: HashKind::FILE.to_vec(),
            dihedral: false,
            max_pixels: decode::DEFAULT_MAX_PIXELS,
            seconds_per_hash: 1.0,
            max_video_seconds: DEFAULT_MAX_VIDEO_SECONDS,
        }
    }
}

impl HashOptions {
    fn wants(&self, kind: HashKind) -> bool {
        self.kinds.contains(&kind)
    }

    fn wants_image(&self) -> bool {
        self.kinds.iter().any(|k| k.is_perceptual())
    }
}

/// One NDJSON record of `hashsieve hash`: field names and order are part of the CLI contract.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct FileRecord {
    pub path: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub md5: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sha1: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub blake3: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pdq: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pdq_quality: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pdq_dihedral: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phash: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dhash: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ahash: Option<String>,
    /// A video's selected frames, hashed as Meta's vPDQ does.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vpdq: Option<Vec<VpdqRecord>>,
    /// Why the image (or the file) could not be hashed; the other fields hold what could be.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Per-thread state reused across files (PDQ buffers).
#[derive(Default)]
pub struct Worker {
    pdq: pdq::PdqHasher,
}

impl Worker {
    pub fn new() -> Worker {
        Worker::default()
    }

    /// Hashes one file. Never fails: problems are reported in the record's `error` field.
    pub fn hash_file(&mut self, path: &Path, options: &HashOptions) -> FileRecord {
        let mut record = FileRecord {
            path: path.to_string_lossy().into_owned(),
            ..FileRecord::default()
        };
        let head = match stream_digests(path, options, &mut record) {
            Ok(head) => head,
            Err(e) => {
                record.error = Some(format!("cannot read the file: {e}"));
                return record;
            }
        };
        if !options.wants_image() {
            return record;
        }
        if looks_like_video(&head) {
            if options.wants(HashKind::Pdq) {
                self.hash_video(path, options, &mut record);
            }
            return record;
        }
        let result = decode::sniff_format(&head)
            .ok_or(decode::DecodeError::UnknownFormat)
            .and_then(|format| decode::decode_file(path, format, options.max_pixels));
        match result {
            Ok(image) => self.hash_image(&image, options, &mut record),
            Err(e) => record.error = Some(e.to_string()),
        }
        record
    }

    /// Fills `vpdq` of `record` from the video at `path`.
    #[cfg(feature = "video")]
    fn hash_video(&mut self, path: &Path, options: &HashOptions, record: &mut FileRecord) {
        let video = video::VideoOptions {
            seconds_per_hash: options.seconds_per_hash,
            max_seconds: options.max_video_seconds,
            max_pixels: options.max_pixels,
        };
        match video::hash_video(path, &video, &mut self.pdq) {
            Ok(frames) => {
                record.vpdq = Some(
                    frames
                        .iter()
                        .map(|f| VpdqRecord {
                            frame: f.frame,
                            timestamp: (f64::from(f.timestamp) * 1000.0).round() / 1000.0,
                            pdq: hex_lower(&f.pdq),
                            quality: f.quality,
                        })
                        .collect(),
                )
            }
            Err(e) => record.error = Some(e.to_string()),
        }
    }

    #[cfg(not(feature = "video"))]
    fn hash_video(&mut self, _path: &Path, _options: &HashOptions, record: &mut FileRecord) {
        record.error = Some(
            "this is a video, and this hashsieve was built without video support (cargo feature `video`)"
                .into(),
        );
    }

    /// Fills the perceptual fields of `record` from a decoded image.
    pub fn hash_image(
        &mut self,
        image: &decode::RgbImage,
        options: &HashOptions,
        record: &mut FileRecord,
    ) {
        if options.wants(HashKind::Pdq) {
            let out = self
                .pdq
                .hash_rgb(&image.data, image.width, image.height, options.dihedral);
            record.pdq = Some(hex_lower(&out.hash));
            record.pdq_quality = Some(out.quality);
            record.pdq_dihedral = out
                .dihedral
                .map(|all| all.iter().map(|h| hex_lower(h)).collect());
        }
        let wanted = imagehash::Wanted {
            ahash: options.wants(HashKind::Ahash),
            dhash: options.wants(HashKind::Dhash),
            phash: options.wants(HashKind::Phash),
        };
        if wanted.ahash || wanted.dhash || wanted.phash {
            let grey = image.to_luma8();
            let [ahash, dhash, phash] =
                imagehash::hash_grey(&grey, image.width, image.height, wanted);
            let hex = |v: u64| format!("{v:016x}");
            record.ahash = ahash.map(hex);
            record.dhash = dhash.map(hex);
            record.phash = phash.map(hex);
        }
    }
}

/// One hashed video frame of a [`FileRecord`].
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
pub struct VpdqRecord {
    /// The frame's number in decoding order, from 0.
    pub frame: u64,
    /// Seconds: the frame number over the frame rate, to the millisecond.
    pub timestamp: f64,
    pub pdq: String,
    pub quality: u8,
}

/// Longest video hashed by default: an hour.
pub const DEFAULT_MAX_VIDEO_SECONDS: f64 = 3600.0;

/// Whether `head` (the first bytes of a file) starts like a video container FFmpeg reads:
/// ISO base media (MP4, MOV: `ftyp` at byte 4), Matroska and WebM (EBML), AVI (`RIFF..AVI `).
pub fn looks_like_video(head: &[u8]) -> bool {
    // HEIF and AVIF still images are ISO files too: their brands are not videos.
    let still = |brand: &[u8]| {
        matches!(
            brand,
            b"avif" | b"heic" | b"heix" | b"heim" | b"heis" | b"mif1"
        )
    };
    let iso = head.len() >= 12 && &head[4..8] == b"ftyp" && !still(&head[8..12]);
    let ebml = head.starts_with(&[0x1a, 0x45, 0xdf, 0xa3]);
    let avi = head.len() >= 12 && &head[..4] == b"RIFF" && &head[8..12] == b"AVI ";
    // QuickTime files may start with other atoms before `ftyp` (or none at all).
    let quicktime = head.len() >= 8 && matches!(&head[4..8], b"moov" | b"mdat" | b"wide" | b"free");
    iso || ebml || avi || quicktime
}

/// Bytes kept from the start of the file to recognise the image format.
const HEAD_LEN: usize = 64;

/// Streams the file through the requested digests, filling `bytes` and the digest fields.
/// Returns the first bytes of the file for format sniffing.
fn stream_digests(
    path: &Path,
    options: &HashOptions,
    record: &mut FileRecord,
) -> std::io::Result<Vec<u8>> {
    let mut file = File::open(path)?;
    let mut md5 = options.wants(HashKind::Md5).then(md5::Md5::new);
    let mut sha1 = options.wants(HashKind::Sha1).then(sha1::Sha1::new);
    let mut sha256 = options.wants(HashKind::Sha256).then(sha2::Sha256::new);
    let mut blake3 = options.wants(HashKind::Blake3).then(blake3::Hasher::new);
    let mut buf = vec![0u8; 256 * 1024];
    let mut head = Vec::with_capacity(HEAD_LEN);
    let mut total: u64 = 0;
    loop {
        let n = match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        let chunk = &buf[..n];
        if head.len() < HEAD_LEN {
            let take = (HEAD_LEN - head.len()).min(n);
            head.extend_from_slice(&chunk[..take]);
        }
        total += n as u64;
        if let Some(h) = md5.as_mut() {
            h.update(chunk);
        }
        if let Some(h) = sha1.as_mut() {
            h.update(chunk);
        }
        if let Some(h) = sha256.as_mut() {
            h.update(chunk);
        }
        if let Some(h) = blake3.as_mut() {
            h.update(chunk);
        }
    }
    record.bytes = Some(total);
    record.md5 = md5.map(|h| hex_lower(&h.finalize()));
    record.sha1 = sha1.map(|h| hex_lower(&h.finalize()));
    record.sha256 = sha256.map(|h| hex_lower(&h.finalize()));
    record.blake3 = blake3.map(|h| h.finalize().to_hex().to_string());
    Ok(head)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_of_known_content() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("abc.txt");
        std::fs::write(&path, b"abc").unwrap();
        let record = Worker::new().hash_file(&path, &HashOptions::default());
        assert_eq!(record.bytes, Some(3));
        assert_eq!(
            record.md5.as_deref(),
            Some("900150983cd24fb0d6963f7d28e17f72")
        );
        assert_eq!(
            record.sha1.as_deref(),
            Some("a9993e364706816aba3e25717850c26c9cd0d89d")
        );
        assert_eq!(
            record.sha256.as_deref(),
            Some("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        );
        assert_eq!(
            record.blake3.as_deref(),
            Some("6437b3ac38465133ffb63b75273a8db548c558465d79db03fd359c6cd5bd9d85")
        );
        // Not an image: the digests are there and the error says why the rest is not.
        assert!(record.pdq.is_none());
        assert!(
            record
                .error
                .as_deref()
                .unwrap()
                .contains("not a supported image")
        );
    }

    #[test]
    fn videos_are_recognised_by_their_first_bytes() {
        assert!(looks_like_video(b"\0\0\0\x18ftypisom\0\0\x02\0isomiso2"));
        assert!(looks_like_video(b"\0\0\0\x14ftypqt  \0\0\0\0qt  "));
        assert!(looks_like_video(b"\x1a\x45\xdf\xa3\x9f\x42\x86\x81\x01"));
        assert!(looks_like_video(b"RIFF\x10\0\0\0AVI LIST"));
        assert!(!looks_like_video(b"RIFF\x10\0\0\0WEBPVP8 "));
        assert!(!looks_like_video(b"\0\0\0\x1cftypavif\0\0\0\0avifmif1"));
        assert!(!looks_like_video(b"\0\0\0\x18ftypheic\0\0\0\0mif1heic"));
        assert!(!looks_like_video(b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR"));
        assert!(!looks_like_video(b"\xff\xd8\xff\xe0\0\x10JFIF\0"));
    }

    #[test]
    fn crypto_only_kinds_do_not_try_to_decode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notes.txt");
        std::fs::write(&path, b"not an image").unwrap();
        let options = HashOptions {
            kinds: vec![HashKind::Sha256],
            ..HashOptions::default()
        };
        let record = Worker::new().hash_file(&path, &options);
        assert!(record.error.is_none());
        assert!(record.sha256.is_some() && record.md5.is_none());
    }

    #[test]
    fn missing_file_is_an_error_record() {
        let record =
            Worker::new().hash_file(Path::new("/nonexistent/x.jpg"), &HashOptions::default());
        assert!(
            record
                .error
                .as_deref()
                .unwrap()
                .starts_with("cannot read the file")
        );
        assert!(record.bytes.is_none());
    }
}

//! Hash kinds and hash values: the vocabulary every other module speaks.
//!
//! Text form is lowercase hex everywhere; parsing accepts upper case too and nothing else.
//! Every parse error names the offending value and what was expected, because these errors
//! end up in front of partners debugging their integration.

use std::fmt;
use std::str::FromStr;

/// One of the hash algorithms the service understands.
///
/// The order of the variants is the canonical order of kinds (hash-set files sort entries by
/// it), so it must never change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum HashKind {
    Md5,
    Sha1,
    Sha256,
    Blake3,
    Pdq,
    Phash,
    Dhash,
    Ahash,
    /// SHA-256 of a canonical URL expression ([`crate::urls`]).
    Url,
    /// One frame of a listed video: its PDQ hash (32 bytes) and then its quality (1 byte).
    /// The frames of one video are the `vpdq` entries that share its category and reference.
    /// A list entry only: queries send a video's frames as PDQ ([`HashKind::is_query`]).
    Vpdq,
}

impl HashKind {
    /// Every kind, in canonical order.
    pub const ALL: [HashKind; 10] = [
        HashKind::Md5,
        HashKind::Sha1,
        HashKind::Sha256,
        HashKind::Blake3,
        HashKind::Pdq,
        HashKind::Phash,
        HashKind::Dhash,
        HashKind::Ahash,
        HashKind::Url,
        HashKind::Vpdq,
    ];

    /// The kinds a query may have: all but `vpdq` (a video is matched by its frames' PDQ).
    pub const QUERY: [HashKind; 9] = {
        let mut kinds = [HashKind::Md5; 9];
        let mut i = 0;
        while i < kinds.len() {
            kinds[i] = HashKind::ALL[i];
            i += 1;
        }
        kinds
    };

    /// The kinds `hashsieve hash` computes from a file's bytes: all but `url`, the last.
    pub const FILE: [HashKind; 8] = {
        let mut kinds = [HashKind::Md5; 8];
        let mut i = 0;
        while i < kinds.len() {
            kinds[i] = HashKind::ALL[i];
            i += 1;
        }
        kinds
    };

    /// The name used in the CLI, JSON and file formats.
    pub const fn name(self) -> &'static str {
        match self {
            HashKind::Md5 => "md5",
            HashKind::Sha1 => "sha1",
            HashKind::Sha256 => "sha256",
            HashKind::Blake3 => "blake3",
            HashKind::Pdq => "pdq",
            HashKind::Phash => "phash",
            HashKind::Dhash => "dhash",
            HashKind::Ahash => "ahash",
            HashKind::Url => "url",
            HashKind::Vpdq => "vpdq",
        }
    }

    /// Length of a hash of this kind in bytes.
    pub const fn byte_len(self) -> usize {
        match self {
            HashKind::Md5 => 16,
            HashKind::Sha1 => 20,
            HashKind::Sha256 | HashKind::Blake3 | HashKind::Pdq | HashKind::Url => 32,
            HashKind::Phash | HashKind::Dhash | HashKind::Ahash => 8,
            HashKind::Vpdq => 33,
        }
    }

    /// Length of the part of a hash that distances are measured on, in bits (the largest
    /// possible Hamming distance): all of it, but for `vpdq` only the PDQ hash.
    pub const fn bit_len(self) -> u32 {
        match self {
            HashKind::Vpdq => 256,
            // byte_len is at most 33, so the cast cannot truncate.
            _ => (self.byte_len() * 8) as u32,
        }
    }

    /// Whether a query may have this kind (all but `vpdq`).
    pub const fn is_query(self) -> bool {
        !matches!(self, HashKind::Vpdq)
    }

    /// Perceptual kinds match by Hamming distance; the others only exactly.
    pub const fn is_perceptual(self) -> bool {
        matches!(
            self,
            HashKind::Pdq | HashKind::Phash | HashKind::Dhash | HashKind::Ahash | HashKind::Vpdq
        )
    }

    /// The distance at or under which two hashes of this kind are considered the same picture,
    /// unless a hash set says otherwise (0 for exact kinds).
    pub const fn default_threshold(self) -> u32 {
        match self {
            HashKind::Pdq | HashKind::Vpdq => 31,
            HashKind::Phash | HashKind::Dhash => 8,
            HashKind::Ahash => 6,
            HashKind::Md5
            | HashKind::Sha1
            | HashKind::Sha256
            | HashKind::Blake3
            | HashKind::Url => 0,
        }
    }

    /// The largest threshold the index supports with exact recall for this kind.
    pub const fn max_threshold(self) -> u32 {
        match self {
            HashKind::Pdq | HashKind::Vpdq => 64,
            HashKind::Phash | HashKind::Dhash | HashKind::Ahash => 16,
            HashKind::Md5
            | HashKind::Sha1
            | HashKind::Sha256
            | HashKind::Blake3
            | HashKind::Url => 0,
        }
    }

    /// A stable one-byte code for binary formats (the position in [`HashKind::ALL`]).
    pub const fn code(self) -> u8 {
        match self {
            HashKind::Md5 => 0,
            HashKind::Sha1 => 1,
            HashKind::Sha256 => 2,
            HashKind::Blake3 => 3,
            HashKind::Pdq => 4,
            HashKind::Phash => 5,
            HashKind::Dhash => 6,
            HashKind::Ahash => 7,
            HashKind::Url => 8,
            HashKind::Vpdq => 9,
        }
    }

    /// The inverse of [`HashKind::code`].
    pub fn from_code(code: u8) -> Option<HashKind> {
        HashKind::ALL.get(usize::from(code)).copied()
    }

    /// The kind a query names: any kind but `vpdq`, whose frames are sent as a video.
    pub fn parse_query(name: &str) -> Result<HashKind, String> {
        let kind: HashKind = name.parse().map_err(|e: UnknownKind| e.to_string())?;
        if kind.is_query() {
            Ok(kind)
        } else {
            Err(format!(
                "{kind} is a kind of list entry, not of query: send a video's frames (pdq and quality) to POST /v1/match/video, or its hashsieve hash record to hashsieve match"
            ))
        }
    }

    /// The known kind names joined with commas, for error messages.
    pub fn known_names() -> String {
        HashKind::ALL.map(HashKind::name).join(", ")
    }
}

impl fmt::Display for HashKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The name given was not a known hash kind.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown hash kind {got:?}: known kinds are {}",
    HashKind::known_names()
)]
pub struct UnknownKind {
    pub got: String,
}

impl FromStr for HashKind {
    type Err = UnknownKind;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        HashKind::ALL
            .into_iter()
            .find(|k| k.name().eq_ignore_ascii_case(s))
            .ok_or_else(|| UnknownKind { got: s.to_owned() })
    }
}

/// Why a hex string is not a valid hash of a given kind.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseHashError {
    #[error(
        "{kind} hash {value:?} has {got} hex digits, expected {expected}",
        value = truncate_for_message(value)
    )]
    WrongLength {
        kind: HashKind,
        value: String,
        expected: usize,
        got: usize,
    },
    #[error(
        "{kind} hash {value:?} has a bad hex digit {found:?} at position {position} (counting from 1)",
        value = truncate_for_message(value)
    )]
    BadDigit {
        kind: HashKind,
        value: String,
        /// 1-based character position of the first bad digit.
        position: usize,
        found: char,
    },
    #[error("vpdq frame {value:?}: {why}", value = truncate_for_message(value))]
    BadFrame { value: String, why: String },
}

/// Error messages quote the offending value, but a hostile multi-megabyte "hash" must not be
/// copied into every log line.
fn truncate_for_message(value: &str) -> String {
    const MAX: usize = 80;
    if value.chars().count() <= MAX {
        value.to_owned()
    } else {
        let head: String = value.chars().take(MAX).collect();
        format!("{head}...")
    }
}

/// Marks a byte that is not a hex digit in [`HEX_DIGIT`].
const NOT_HEX: u8 = 0x10;

/// Value of each byte as a hex digit, or [`NOT_HEX`].
const HEX_DIGIT: [u8; 256] = {
    let mut table = [NOT_HEX; 256];
    let mut i = 0;
    while i < 10 {
        table[b'0' as usize + i] = i as u8;
        i += 1;
    }
    let mut i = 0;
    while i < 6 {
        table[b'a' as usize + i] = 10 + i as u8;
        table[b'A' as usize + i] = 10 + i as u8;
        i += 1;
    }
    table
};

/// A hash of a known kind. Stored inline (no allocation): the longest kind is 33 bytes.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct HashValue {
    kind: HashKind,
    bytes: [u8; 33],
}

impl HashValue {
    /// Builds a value from raw bytes; `None` when the length is wrong for the kind.
    pub fn from_bytes(kind: HashKind, raw: &[u8]) -> Option<HashValue> {
        if raw.len() != kind.byte_len() {
            return None;
        }
        let mut bytes = [0u8; 33];
        bytes[..raw.len()].copy_from_slice(raw);
        Some(HashValue { kind, bytes })
    }

    /// Parses hex (either case) of exactly the kind's length.
    pub fn parse(kind: HashKind, hex: &str) -> Result<HashValue, ParseHashError> {
        if kind == HashKind::Vpdq {
            return HashValue::parse_frame(hex);
        }
        let expected = kind.byte_len() * 2;
        // Fast path for the common, valid case: one table lookup per digit, no branches on
        // the digits. Anything invalid falls through to the checks below, which find the
        // first bad character for the message. (The service and `match` parse every query;
        // the checked loop alone was 30% of `hashsieve match` on exact lists.)
        if hex.len() == expected {
            let digits = hex.as_bytes();
            let mut bytes = [0u8; 33];
            let mut invalid = 0u8;
            for (out, pair) in bytes.iter_mut().zip(digits.chunks_exact(2)) {
                let (hi, lo) = (HEX_DIGIT[pair[0] as usize], HEX_DIGIT[pair[1] as usize]);
                invalid |= hi | lo;
                *out = (hi << 4) | (lo & 0x0f);
            }
            if invalid & NOT_HEX == 0 {
                return Ok(HashValue { kind, bytes });
            }
        }
        if let Some((index, found)) = hex
            .chars()
            .enumerate()
            .find(|(_, c)| !c.is_ascii_hexdigit())
        {
            return Err(ParseHashError::BadDigit {
                kind,
                value: hex.to_owned(),
                position: index + 1,
                found,
            });
        }
        // Only ASCII hex digits remain, so bytes == chars.
        if hex.len() != expected {
            return Err(ParseHashError::WrongLength {
                kind,
                value: hex.to_owned(),
                expected,
                got: hex.len(),
            });
        }
        let mut bytes = [0u8; 33];
        for (out, pair) in bytes.iter_mut().zip(hex.as_bytes().chunks_exact(2)) {
            *out = (hex_value(pair[0]) << 4) | hex_value(pair[1]);
        }
        Ok(HashValue { kind, bytes })
    }

    /// A `vpdq` frame written `<64 hex digits>:<quality 0-100>`.
    fn parse_frame(text: &str) -> Result<HashValue, ParseHashError> {
        let bad = |why: &str| ParseHashError::BadFrame {
            value: text.to_owned(),
            why: why.to_owned(),
        };
        let (hex, quality) = text
            .split_once(':')
            .ok_or_else(|| bad("expected <pdq hex>:<quality>"))?;
        let pdq = HashValue::parse(HashKind::Pdq, hex).map_err(|e| bad(&e.to_string()))?;
        let quality: u8 = quality
            .parse()
            .ok()
            .filter(|q| *q <= 100)
            .ok_or_else(|| bad("the quality must be a whole number from 0 to 100"))?;
        let mut code = [0u8; 32];
        code.copy_from_slice(pdq.as_bytes());
        Ok(HashValue::vpdq(&code, quality))
    }

    pub fn kind(&self) -> HashKind {
        self.kind
    }

    /// The hash bytes (exactly `kind().byte_len()` of them).
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.kind.byte_len()]
    }

    /// The 64-bit value of an aHash/dHash/pHash, first bit most significant.
    pub fn as_u64(&self) -> Option<u64> {
        let raw: [u8; 8] = self.as_bytes().try_into().ok()?;
        Some(u64::from_be_bytes(raw))
    }

    /// Hamming distance between two perceptual hashes of the same kind; `None` for exact kinds
    /// or mismatched kinds.
    pub fn hamming(&self, other: &HashValue) -> Option<u32> {
        if self.kind != other.kind || !self.kind.is_perceptual() {
            return None;
        }
        Some(hamming_bytes(self.code(), other.code()))
    }

    /// The bytes distances are measured on: all of them, but for `vpdq` the PDQ hash only.
    pub fn code(&self) -> &[u8] {
        &self.bytes[..self.kind.bit_len() as usize / 8]
    }

    /// A `vpdq` frame from its PDQ hash and quality.
    pub fn vpdq(pdq: &[u8; 32], quality: u8) -> HashValue {
        let mut bytes = [0u8; 33];
        bytes[..32].copy_from_slice(pdq);
        bytes[32] = quality;
        HashValue {
            kind: HashKind::Vpdq,
            bytes,
        }
    }

    /// The quality of a `vpdq` frame (`None` for other kinds).
    pub fn frame_quality(&self) -> Option<u8> {
        (self.kind == HashKind::Vpdq).then_some(self.bytes[32])
    }

    /// The text form: lowercase hex, and for `vpdq` the PDQ hex, `:` and the quality.
    pub fn to_hex(&self) -> String {
        match self.frame_quality() {
            Some(quality) => format!("{}:{quality}", hex_lower(self.code())),
            None => hex_lower(self.as_bytes()),
        }
    }
}

impl fmt::Display for HashValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.code() {
            write!(f, "{b:02x}")?;
        }
        if let Some(quality) = self.frame_quality() {
            write!(f, ":{quality}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for HashValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.kind, self)
    }
}

/// Number of differing bits between two equal-length byte strings.
pub fn hamming_bytes(a: &[u8], b: &[u8]) -> u32 {
    debug_assert_eq!(a.len(), b.len());
    // Work in u64 words where possible: this is used on the PDQ verification path.
    let mut chunks_a = a.chunks_exact(8);
    let mut chunks_b = b.chunks_exact(8);
    let mut total = 0;
    for (x, y) in chunks_a.by_ref().zip(chunks_b.by_ref()) {
        let x = u64::from_ne_bytes(x.try_into().unwrap_or([0; 8]));
        let y = u64::from_ne_bytes(y.try_into().unwrap_or([0; 8]));
        total += (x ^ y).count_ones();
    }
    for (x, y) in chunks_a.remainder().iter().zip(chunks_b.remainder()) {
        total += (x ^ y).count_ones();
    }
    total
}

/// Lowercase hex of arbitrary bytes.
pub fn hex_lower(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    out
}

fn hex_value(digit: u8) -> u8 {
    match digit {
        b'0'..=b'9' => digit - b'0',
        b'a'..=b'f' => digit - b'a' + 10,
        b'A'..=b'F' => digit - b'A' + 10,
        // Callers validate digits first; a zero here could only hide a bug, never corrupt
        // memory.
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fast_and_checked_paths_agree_on_every_character() {
        for c in (0u8..128).map(char::from).chain(['é', 'ÿ', '\u{0}']) {
            for at in [0usize, 17, 31] {
                let mut hex: Vec<char> = "0123456789abcdefABCDEF0123456789".chars().collect();
                hex[at] = c;
                let hex: String = hex.into_iter().collect();
                let parsed = HashValue::parse(HashKind::Md5, &hex);
                assert_eq!(parsed.is_ok(), c.is_ascii_hexdigit(), "{c:?} at {at}");
                if let Ok(v) = parsed {
                    assert_eq!(v.to_hex(), hex.to_ascii_lowercase());
                }
            }
        }
    }

    #[test]
    fn kind_names_round_trip_and_codes_are_positions() {
        for (i, kind) in HashKind::ALL.into_iter().enumerate() {
            assert_eq!(kind.name().parse::<HashKind>().unwrap(), kind);
            assert_eq!(
                kind.name().to_uppercase().parse::<HashKind>().unwrap(),
                kind
            );
            assert_eq!(usize::from(kind.code()), i);
            assert_eq!(HashKind::from_code(kind.code()), Some(kind));
        }
        assert_eq!(HashKind::from_code(10), None);
    }

    #[test]
    fn unknown_kind_lists_the_known_ones() {
        let err = "sha512".parse::<HashKind>().unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("\"sha512\""), "{msg}");
        for kind in HashKind::ALL {
            assert!(msg.contains(kind.name()), "{msg} lacks {kind}");
        }
    }

    #[test]
    fn parse_accepts_any_case_and_displays_lowercase() {
        let v = HashValue::parse(HashKind::Md5, "D41D8CD98F00B204E9800998ECF8427E").unwrap();
        assert_eq!(v.to_string(), "d41d8cd98f00b204e9800998ecf8427e");
        assert_eq!(v.to_hex(), v.to_string());
        assert_eq!(v.as_bytes().len(), 16);
        assert_eq!(format!("{v:?}"), "md5:d41d8cd98f00b204e9800998ecf8427e");
    }

    #[test]
    fn wrong_length_names_expected_and_got() {
        let err = HashValue::parse(HashKind::Sha1, "abcd").unwrap_err();
        assert_eq!(
            err,
            ParseHashError::WrongLength {
                kind: HashKind::Sha1,
                value: "abcd".into(),
                expected: 40,
                got: 4
            }
        );
        assert_eq!(
            err.to_string(),
            "sha1 hash \"abcd\" has 4 hex digits, expected 40"
        );
    }

    #[test]
    fn bad_digit_names_its_position() {
        let err = HashValue::parse(HashKind::Ahash, "00112g3344556677").unwrap_err();
        assert_eq!(
            err,
            ParseHashError::BadDigit {
                kind: HashKind::Ahash,
                value: "00112g3344556677".into(),
                position: 6,
                found: 'g'
            }
        );
        assert!(err.to_string().contains("position 6"));
        // Non-ASCII input is reported by character, not by byte.
        let err = HashValue::parse(HashKind::Ahash, "é").unwrap_err();
        assert!(matches!(
            err,
            ParseHashError::BadDigit {
                position: 1,
                found: 'é',
                ..
            }
        ));
        // Whitespace is not silently trimmed.
        assert!(HashValue::parse(HashKind::Ahash, " 0011223344556677").is_err());
    }

    #[test]
    fn long_garbage_is_truncated_in_messages() {
        let junk = "z".repeat(10_000);
        let msg = HashValue::parse(HashKind::Pdq, &junk)
            .unwrap_err()
            .to_string();
        assert!(msg.len() < 300, "{}", msg.len());
    }

    #[test]
    fn hamming_counts_differing_bits() {
        let a = HashValue::parse(HashKind::Pdq, &"0".repeat(64)).unwrap();
        let b = HashValue::parse(HashKind::Pdq, &"f".repeat(64)).unwrap();
        let c = HashValue::parse(HashKind::Pdq, &format!("{}1", "0".repeat(63))).unwrap();
        assert_eq!(a.hamming(&b), Some(256));
        assert_eq!(a.hamming(&c), Some(1));
        assert_eq!(a.hamming(&a), Some(0));
        let d = HashValue::parse(HashKind::Dhash, "ff00000000000001").unwrap();
        let e = HashValue::parse(HashKind::Dhash, "0000000000000000").unwrap();
        assert_eq!(d.hamming(&e), Some(9));
        assert_eq!(d.as_u64(), Some(0xff00_0000_0000_0001));
        // Exact kinds and mixed kinds have no distance.
        let m = HashValue::parse(HashKind::Md5, &"0".repeat(32)).unwrap();
        assert_eq!(m.hamming(&m), None);
        assert_eq!(a.hamming(&e), None);
    }

    #[test]
    fn from_bytes_checks_length() {
        assert!(HashValue::from_bytes(HashKind::Sha256, &[0; 31]).is_none());
        let v = HashValue::from_bytes(HashKind::Sha256, &[0xab; 32]).unwrap();
        assert_eq!(v.to_hex(), "ab".repeat(32));
    }
}

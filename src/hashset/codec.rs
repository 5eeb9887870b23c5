//! Byte-level reading and writing for the hash-set formats.
//!
//! Untrusted bytes go only through [`Reader`], which cannot panic: every read checks what
//! remains, and lengths read from the input are checked against the remaining bytes before
//! anything is allocated (so a 4-byte "length" cannot make us reserve gigabytes).

use super::FormatError;

/// A cursor over untrusted bytes.
pub struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub fn new(bytes: &'a [u8]) -> Reader<'a> {
        Reader { bytes, pos: 0 }
    }

    pub fn position(&self) -> usize {
        self.pos
    }

    pub fn remaining(&self) -> usize {
        self.bytes.len() - self.pos
    }

    /// Takes the next `n` bytes.
    pub fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], FormatError> {
        if n > self.remaining() {
            return Err(FormatError::Truncated {
                what,
                offset: self.pos,
                needed: n,
                available: self.remaining(),
            });
        }
        let slice = &self.bytes[self.pos..self.pos + n];
        self.pos += n;
        Ok(slice)
    }

    fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], FormatError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N, what)?);
        Ok(out)
    }

    pub fn u8(&mut self, what: &'static str) -> Result<u8, FormatError> {
        Ok(self.array::<1>(what)?[0])
    }

    pub fn u16(&mut self, what: &'static str) -> Result<u16, FormatError> {
        Ok(u16::from_le_bytes(self.array(what)?))
    }

    pub fn u32(&mut self, what: &'static str) -> Result<u32, FormatError> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }

    pub fn u64(&mut self, what: &'static str) -> Result<u64, FormatError> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }

    pub fn i64(&mut self, what: &'static str) -> Result<i64, FormatError> {
        Ok(i64::from_le_bytes(self.array(what)?))
    }

    pub fn digest(&mut self, what: &'static str) -> Result<[u8; 32], FormatError> {
        self.array(what)
    }

    /// A UTF-8 string with a u16 length prefix, at most `max` bytes.
    pub fn str16(&mut self, what: &'static str, max: usize) -> Result<&'a str, FormatError> {
        let len = usize::from(self.u16(what)?);
        self.str_of_len(len, what, max)
    }

    /// A UTF-8 string with a u32 length prefix, at most `max` bytes.
    pub fn str32(&mut self, what: &'static str, max: usize) -> Result<&'a str, FormatError> {
        let len = self.u32(what)? as usize;
        self.str_of_len(len, what, max)
    }

    fn str_of_len(
        &mut self,
        len: usize,
        what: &'static str,
        max: usize,
    ) -> Result<&'a str, FormatError> {
        if len > max {
            return Err(FormatError::TooLong {
                what,
                len,
                max,
                offset: self.pos,
            });
        }
        let offset = self.pos;
        let raw = self.take(len, what)?;
        std::str::from_utf8(raw).map_err(|_| FormatError::BadUtf8 { what, offset })
    }

    /// A count of items that each take at least `min_item_bytes`: refused when the input
    /// cannot possibly hold that many, before the caller allocates for them.
    pub fn count(
        &mut self,
        raw: u64,
        min_item_bytes: usize,
        what: &'static str,
    ) -> Result<usize, FormatError> {
        let fits = (self.remaining() / min_item_bytes.max(1)) as u64;
        if raw > fits {
            return Err(FormatError::Truncated {
                what,
                offset: self.pos,
                needed: usize::try_from(raw.saturating_mul(min_item_bytes as u64))
                    .unwrap_or(usize::MAX),
                available: self.remaining(),
            });
        }
        // raw <= fits <= usize::MAX.
        Ok(raw as usize)
    }

    /// Checks the 8 magic bytes and the u16 format version that open every file.
    pub fn preamble(
        &mut self,
        magic: &[u8; 8],
        kind: &'static str,
        newest: u16,
    ) -> Result<u16, FormatError> {
        if self.take(8, "magic").ok() != Some(&magic[..]) {
            return Err(FormatError::BadMagic { expected: kind });
        }
        let got = self.u16("format version")?;
        if !(1..=newest).contains(&got) {
            return Err(FormatError::UnsupportedVersion {
                got,
                supported: newest,
            });
        }
        Ok(got)
    }

    /// Reads the closing BLAKE3 digest, checks that nothing follows it and that it is the
    /// digest of every byte before it; returns it.
    pub fn digest_trailer(&mut self) -> Result<[u8; 32], FormatError> {
        let body_end = self.pos;
        let stored = self.digest("content digest")?;
        self.finish()?;
        let computed = content_digest(&self.bytes[..body_end]);
        if computed != stored {
            return Err(FormatError::DigestMismatch {
                stored: crate::kinds::hex_lower(&stored),
                computed: crate::kinds::hex_lower(&computed),
            });
        }
        Ok(stored)
    }

    /// Fails unless every byte was consumed.
    pub fn finish(&self) -> Result<(), FormatError> {
        if self.remaining() != 0 {
            return Err(FormatError::TrailingBytes {
                offset: self.pos,
                count: self.remaining(),
            });
        }
        Ok(())
    }
}

/// Appends little-endian fields to a buffer.
#[derive(Default)]
pub struct Writer {
    pub buf: Vec<u8>,
}

impl Writer {
    pub fn u8(&mut self, v: u8) {
        self.buf.push(v);
    }
    pub fn u16(&mut self, v: u16) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    pub fn u32(&mut self, v: u32) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    pub fn u64(&mut self, v: u64) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    pub fn i64(&mut self, v: i64) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    pub fn bytes(&mut self, b: &[u8]) {
        self.buf.extend_from_slice(b);
    }
    /// Callers validate lengths first (names, categories and refs are bounded far below u16).
    pub fn str16(&mut self, s: &str) {
        self.u16(u16::try_from(s.len()).unwrap_or(u16::MAX));
        self.bytes(s.as_bytes());
    }
    pub fn str32(&mut self, s: &str) {
        self.u32(u32::try_from(s.len()).unwrap_or(u32::MAX));
        self.bytes(s.as_bytes());
    }
    /// Appends the BLAKE3 digest of everything written so far and returns it.
    pub fn seal(&mut self) -> [u8; 32] {
        let digest = content_digest(&self.buf);
        self.bytes(&digest);
        digest
    }
}

/// Inputs from this size are hashed on the rayon pool (every core): a 10 M entry set is
/// about 470 MB, and its index twice that, hashed at every start.
const PARALLEL_DIGEST_BYTES: usize = 1 << 20;

/// Adds `bytes` to `hasher`, on every core when they are large.
pub fn digest_update(hasher: &mut blake3::Hasher, bytes: &[u8]) {
    if bytes.len() >= PARALLEL_DIGEST_BYTES {
        hasher.update_rayon(bytes);
    } else {
        hasher.update(bytes);
    }
}

/// The BLAKE3 digest of `bytes` (see [`digest_update`]).
pub fn content_digest(bytes: &[u8]) -> [u8; 32] {
    let mut hasher = blake3::Hasher::new();
    digest_update(&mut hasher, bytes);
    *hasher.finalize().as_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn large_digests_agree_with_the_serial_hash() {
        let bytes: Vec<u8> = (0..3 * PARALLEL_DIGEST_BYTES + 17)
            .map(|i| (i * 31 % 251) as u8)
            .collect();
        for len in [0, 1000, PARALLEL_DIGEST_BYTES, bytes.len()] {
            assert_eq!(
                content_digest(&bytes[..len]),
                *blake3::hash(&bytes[..len]).as_bytes()
            );
        }
    }

    #[test]
    fn reads_what_was_written() {
        let mut w = Writer::default();
        w.u8(7);
        w.u16(513);
        w.u32(70_000);
        w.u64(u64::MAX - 1);
        w.i64(-5);
        w.str16("héllo");
        w.str32("world");
        let mut r = Reader::new(&w.buf);
        assert_eq!(r.u8("a").unwrap(), 7);
        assert_eq!(r.u16("b").unwrap(), 513);
        assert_eq!(r.u32("c").unwrap(), 70_000);
        assert_eq!(r.u64("d").unwrap(), u64::MAX - 1);
        assert_eq!(r.i64("e").unwrap(), -5);
        assert_eq!(r.str16("f", 100).unwrap(), "héllo");
        assert_eq!(r.str32("g", 100).unwrap(), "world");
        r.finish().unwrap();
    }

    #[test]
    fn short_input_and_long_claims_are_errors() {
        let mut r = Reader::new(&[1, 0]);
        assert!(matches!(
            r.u32("x"),
            Err(FormatError::Truncated {
                needed: 4,
                available: 2,
                ..
            })
        ));
        let mut r = Reader::new(&[0xff, 0xff, b'a']);
        assert!(matches!(
            r.str16("s", 10),
            Err(FormatError::TooLong { len: 65535, .. })
        ));
        let mut r = Reader::new(&[3, 0, 0xff, 0xfe, 0xfd]);
        assert!(matches!(r.str16("s", 10), Err(FormatError::BadUtf8 { .. })));
        let r = Reader::new(&[0; 10]);
        let mut r2 = Reader::new(&[0; 10]);
        assert!(r.finish().is_err());
        assert!(r2.count(u64::MAX, 13, "n").is_err());
        assert_eq!(r2.count(0, 13, "n").unwrap(), 0);
    }
}

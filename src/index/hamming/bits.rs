//! Bit helpers of the Hamming search: words and chunks of a code, distances, the ball of
//! values within a radius, and the radix sort of the batch search.

use std::ops::ControlFlow;

/// Word `w` of row `row` (big-endian bytes; an unaligned load).
#[inline(always)]
pub(super) fn word(codes: &[u8], words: usize, row: usize, w: usize) -> u64 {
    let at = (row * words + w) * 8;
    let mut raw = [0u8; 8];
    raw.copy_from_slice(&codes[at..at + 8]);
    u64::from_be_bytes(raw)
}

/// Hamming distance between row `row` of `codes` and the query words `q`.
#[inline(always)]
pub(super) fn distance(codes: &[u8], words: usize, row: usize, q: &[u64]) -> u32 {
    let code = &codes[row * words * 8..(row + 1) * words * 8];
    // Bit order does not matter to a count: the code's bytes in native order against the
    // query word turned to the same order (off the path of the load, unlike `word`).
    code.chunks_exact(8)
        .zip(q)
        .map(|(bytes, &q)| {
            let raw: [u8; 8] = bytes.try_into().unwrap_or_default();
            (u64::from_ne_bytes(raw) ^ q.to_be()).count_ones()
        })
        .sum()
}

/// Scans a bucket of 64-bit codes stored inline (positions `lo..hi` of a chunk table):
/// calls `found(id, distance)` for each within `threshold` of `q`, reading an id only for a
/// match (at 1 M codes the scan is bound by memory bandwidth).
#[inline(always)]
pub(super) fn scan_inline(
    inline: &[u64],
    ids: &[u32],
    (lo, hi): (usize, usize),
    q: u64,
    threshold: u32,
    mut found: impl FnMut(u32, u32),
) {
    for (k, &code) in inline[lo..hi].iter().enumerate() {
        let d = (code ^ q).count_ones();
        if d <= threshold {
            found(ids[lo + k], d);
        }
    }
}

/// A query's big-endian bytes as words (up to four; missing bytes read as zero).
pub(super) fn query_words(query: &[u8]) -> [u64; 4] {
    let mut q = [0u64; 4];
    for (w, bytes) in q.iter_mut().zip(query.chunks_exact(8)) {
        *w = u64::from_be_bytes(bytes.try_into().unwrap_or([0; 8]));
    }
    q
}

/// Bits `start..start + width` of a code (bit 0 = most significant bit of word 0).
#[inline]
pub(super) fn extract(code: &[u64], start: u32, width: u32) -> u32 {
    let word = (start / 64) as usize;
    let offset = start % 64;
    // Join the word with the next one so chunks may straddle a word boundary.
    let hi = u128::from(code[word]) << 64;
    let lo = code.get(word + 1).map_or(0u128, |&w| u128::from(w));
    let joined = hi | lo;
    let shifted = joined >> (128 - offset - width);
    (shifted as u32) & ((1u32 << width) - 1)
}

/// Calls `f` for every `width`-bit value within Hamming distance `radius` of `value`.
pub(super) fn for_each_within(value: u32, width: u32, radius: u32, mut f: impl FnMut(u32)) {
    let _ = try_for_each_within::<()>(value, width, radius, |v| {
        f(v);
        ControlFlow::Continue(())
    });
}

/// Calls `f` for every `width`-bit value within Hamming distance `radius` of `value`, nearest
/// first, until `f` breaks.
pub(super) fn try_for_each_within<B>(
    value: u32,
    width: u32,
    radius: u32,
    mut f: impl FnMut(u32) -> ControlFlow<B>,
) -> ControlFlow<B> {
    f(value)?;
    // Masks of exactly k bits, k = 1..=radius, in increasing order (Gosper's hack).
    for k in 1..=radius {
        let mut mask: u64 = (1u64 << k) - 1;
        let limit = 1u64 << width;
        while mask < limit {
            f(value ^ mask as u32)?;
            let c = mask & mask.wrapping_neg();
            let r = mask + c;
            mask = (((r ^ mask) >> 2) / c) | r;
        }
    }
    ControlFlow::Continue(())
}

/// Bits per pass of [`radix_sort`] (4 096 buckets: the scatter writes that many streams).
pub(super) const RADIX_BITS: u32 = 12;

/// Sorts `items` by `key(item)` (below `2^bits`), least significant digit first, a stable
/// counting sort per [`RADIX_BITS`]-bit digit; `tmp` and `counts` are scratch. One pass
/// counts every digit, then one scatter pass per digit: sequential passes over the items,
/// where a comparison sort would be `log n` passes of unpredictable branches.
pub(super) fn radix_sort<T: Copy + Default>(
    items: &mut Vec<T>,
    tmp: &mut Vec<T>,
    counts: &mut Vec<u32>,
    bits: u32,
    key: impl Fn(T) -> usize,
) {
    let digits = bits.div_ceil(RADIX_BITS) as usize;
    let radix = 1usize << RADIX_BITS;
    let mask = radix - 1;
    counts.clear();
    counts.resize(digits * radix, 0);
    for &x in items.iter() {
        let k = key(x);
        for (d, c) in counts.chunks_exact_mut(radix).enumerate() {
            c[(k >> (d as u32 * RADIX_BITS)) & mask] += 1;
        }
    }
    // Exclusive prefix sums: each bucket's first position (items are fewer than 2^32: a
    // batch holds at most `BATCH_GROUP` queries' probes or `BATCH_CANDIDATES` plus one
    // table's ids).
    for c in counts.chunks_exact_mut(radix) {
        let mut at = 0u32;
        for slot in c.iter_mut() {
            let n = *slot;
            *slot = at;
            at = at.wrapping_add(n);
        }
    }
    for (d, c) in counts.chunks_exact_mut(radix).enumerate() {
        let shift = d as u32 * RADIX_BITS;
        tmp.clear();
        tmp.resize(items.len(), T::default());
        for &x in items.iter() {
            let slot = &mut c[(key(x) >> shift) & mask];
            tmp[*slot as usize] = x;
            *slot += 1;
        }
        std::mem::swap(items, tmp);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enumerates_exactly_the_ball() {
        for (width, radius) in [(8, 0), (8, 2), (12, 3), (16, 1)] {
            let mut seen = Vec::new();
            for_each_within(0b1010, width, radius, |v| seen.push(v));
            let expected: Vec<u32> = (0..1u32 << width)
                .filter(|v| (v ^ 0b1010).count_ones() <= radius)
                .collect();
            seen.sort_unstable();
            assert_eq!(seen, expected, "width {width} radius {radius}");
        }
    }

    #[test]
    fn extract_straddles_words() {
        let code = [0x0123_4567_89ab_cdefu64, 0xfedc_ba98_7654_3210, 0, 0];
        assert_eq!(extract(&code, 0, 16), 0x0123);
        assert_eq!(extract(&code, 56, 16), 0xeffe);
        assert_eq!(extract(&code, 60, 8), 0xff);
    }
}

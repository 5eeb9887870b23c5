//! The layout: how many chunks of which widths a list's codes are cut into, chosen by a cost
//! model of one search (probes and candidates) within a memory budget per code.

/// The search radius of chunk `i` (of `m`, `width` bits wide) at `threshold`: with
/// `threshold = q * m + s`, the first `s + 1` chunks get `q` and the others `q - 1`; `None`
/// when that is negative (the chunk is not searched). Capped at the chunk's width.
pub(super) fn chunk_radius(i: usize, m: u32, threshold: u32, width: u32) -> Option<u32> {
    let (quotient, rest) = (threshold / m, threshold % m);
    let radius = if (i as u32) <= rest {
        quotient
    } else {
        quotient.checked_sub(1)?
    };
    Some(radius.min(width))
}

/// Bytes of directories and id tables per indexed code the chunk width may cost.
pub(super) const INDEX_BUDGET: f64 = 96.0;
/// Bytes of directories and id tables any index may use, however few its codes: a small
/// list cannot afford a useful layout from 96 bytes per code (20 000 PDQ codes would get
/// thirty-two 8-bit chunks whose buckets hold ~80 codes each).
pub(super) const INDEX_FLOOR: f64 = 16.0 * 1024.0 * 1024.0;

/// Whether chunks of `widths` over `n` codes fit [`INDEX_BUDGET`] bytes per code (or
/// [`INDEX_FLOOR`] bytes in all, if more): directory slots plus, per chunk, an id (and for
/// 64-bit codes the code inline: 12 bytes).
pub(super) fn fits_budget(n: usize, widths: &[u32], inline: bool) -> bool {
    let id_bytes = if inline { 12.0 } else { 4.0 };
    let slots: f64 = widths.iter().map(|&w| ((1u64 << w) + 1) as f64).sum();
    let bytes = slots * 4.0 + (n * widths.len()) as f64 * id_bytes;
    bytes <= (INDEX_BUDGET * n as f64).max(INDEX_FLOOR)
}

/// The widest chunk a code of `words` words is cut into (a directory has `2^width` slots).
pub(super) fn max_width(words: usize) -> u32 {
    if words == 1 { 16 } else { 24 }
}

/// The widths of the chunks a `bits`-bit code is cut into for a nominal `width`: as many
/// chunks as `width` needs, the bits spread as evenly as possible, the wider chunks first.
pub(super) fn chunk_widths(bits: u32, width: u32) -> impl Iterator<Item = u32> {
    let m = bits.div_ceil(width);
    let (base, wider) = (bits / m, bits % m);
    (0..m).map(move |i| base + u32::from(i < wider))
}

/// A probe's cost relative to a candidate's, for 256-bit codes: a probe reads a directory
/// slot and then its run of ids (two dependent cache misses), a candidate one random read of
/// its code. For 64-bit codes the candidates sit inline in the run, read in sequence: a
/// candidate costs a fraction of a miss: 1/8 of a probe picks the faster width both in
/// cache and out of it (calibrated with `benches/hamming.rs`: `docs/index-design.md`).
pub(super) const PROBE_COST: f64 = 2.0;
pub(super) const INLINE_CANDIDATE_COST: f64 = 0.25;

/// The expected cost of one search at `threshold` over `n` uniformly spread codes cut into
/// chunks of `widths`: per chunk, the probes of its radius, each with its share of the codes.
pub(super) fn chunk_cost(n: usize, threshold: u32, widths: &[u32], inline: bool) -> f64 {
    let m = widths.len() as u32;
    let candidate = if inline { INLINE_CANDIDATE_COST } else { 1.0 };
    widths
        .iter()
        .enumerate()
        .map(|(i, &w)| {
            let Some(radius) = chunk_radius(i, m, threshold, w) else {
                return 0.0;
            };
            let probes = ball_size(w, radius);
            probes * (PROBE_COST + candidate * n as f64 / (1u64 << w) as f64)
        })
        .sum()
}

/// The number of `width`-bit values within Hamming distance `radius` of one.
pub(super) fn ball_size(width: u32, radius: u32) -> f64 {
    let mut term = 1.0;
    let mut sum = 1.0;
    for k in 1..=radius {
        term = term * f64::from(width - k + 1) / f64::from(k);
        sum += term;
    }
    sum
}

/// The chunk widths of least [`chunk_cost`] at `threshold` among those whose directories and
/// id tables fit [`INDEX_BUDGET`] bytes per code (64-bit codes also store the code beside
/// each id: 12 bytes per id instead of 4). Wider chunks mean fewer candidates per probe but
/// larger radii (more probes); narrower chunks the reverse.
///
/// With `m` chunks, the first `threshold % m + 1` get the larger radius (`chunk_radius`), and
/// they need not be as wide as the others: besides the even spread of `m` chunks, each layout
/// tried gives those chunks one width and spreads the remaining bits evenly over the rest.
/// For 1 M PDQ codes at 31 this picks four 20-bit chunks (radius 2) and ten of 17-18 bits
/// (radius 1): fewer candidates than fourteen even chunks for a few more probes.
pub(super) fn tuned_widths(n: usize, bits: u32, threshold: u32, inline: bool) -> Vec<u32> {
    let top = max_width(if inline { 1 } else { 4 });
    let mut best: Option<(f64, u64, Vec<u32>)> = None;
    for m in bits.div_ceil(top)..=bits / 8 {
        let first = threshold % m + 1;
        let even: Vec<u32> = chunk_widths(bits, bits.div_ceil(m)).collect();
        let even = (even.len() as u32 == m).then_some(even);
        let uneven = (8..=top).filter_map(|wide| layout(bits, m, first, wide, top));
        for widths in even.into_iter().chain(uneven) {
            if !fits_budget(n, &widths, inline) {
                continue;
            }
            let cost = chunk_cost(n, threshold, &widths, inline);
            // Ties (layouts of the same cost) go to the smaller directories.
            let slots: u64 = widths.iter().map(|&w| 1u64 << w).sum();
            if best
                .as_ref()
                .is_none_or(|(c, s, _)| cost.total_cmp(c).then(slots.cmp(s)).is_lt())
            {
                best = Some((cost, slots, widths));
            }
        }
    }
    best.map_or_else(|| chunk_widths(bits, 8).collect(), |(_, _, widths)| widths)
}

/// `m` chunk widths over `bits` bits: the first `first` chunks `wide` bits each, the rest
/// (at least one) spread evenly, wider first; `None` if a chunk would fall outside
/// 8..=`top` bits.
pub(super) fn layout(bits: u32, m: u32, first: u32, wide: u32, top: u32) -> Option<Vec<u32>> {
    let others = m.checked_sub(first).filter(|&o| o > 0)?;
    let rest = bits.checked_sub(first * wide)?;
    let (base, spare) = (rest / others, rest % others);
    let widths: Vec<u32> = (0..first)
        .map(|_| wide)
        .chain((0..others).map(|i| base + u32::from(i < spare)))
        .collect();
    widths
        .iter()
        .all(|w| (8..=top).contains(w))
        .then_some(widths)
}

#[cfg(test)]
mod tests {
    use super::super::HammingIndex;
    use super::*;

    #[test]
    fn tuning_follows_the_threshold_and_the_budget() {
        // 64-bit codes at distance 8: radius-1 chunks beat wide ones with radius 2.
        let w64 = tuned_widths(200_000, 64, 8, true);
        assert!(
            w64.iter().all(|w| (11..16).contains(w)),
            "64-bit widths {w64:?}"
        );
        // More codes need wider chunks (fewer candidates per probe): fewer of them.
        let (big, small) = (
            tuned_widths(10_000_000, 256, 31, false),
            tuned_widths(10_000, 256, 31, false),
        );
        assert!(big.len() <= small.len(), "{big:?} against {small:?}");
        // 1 M PDQ codes at 31: the chunks searched at radius 2 are wider than the others.
        let pdq = tuned_widths(1_000_000, 256, 31, false);
        assert!(pdq[0] > pdq[pdq.len() - 1], "{pdq:?}");
        assert_eq!(chunk_radius(0, pdq.len() as u32, 31, pdq[0]), Some(2));
        // A small list is held to 16 MB in all rather than 96 bytes per code: 20 000 PDQ
        // codes get chunks of 11 bits and more (at 96 bytes per code, thirty-two of 8 bits).
        let small = tuned_widths(20_000, 256, 31, false);
        assert!(small.iter().all(|&w| w >= 11), "{small:?}");
        // Threshold 0 searches the first chunk only: at least as wide as any even layout
        // within the budget allows.
        let widest_even = (8..=24)
            .filter(|&w| fits_budget(1_000_000, &HammingIndex::even_widths(256, w), false))
            .max()
            .unwrap();
        assert!(tuned_widths(1_000_000, 256, 0, false)[0] >= widest_even);
        for (n, bits, t, inline) in [
            (1, 64, 8, true),
            (200_000, 64, 16, true),
            (1_000_000, 256, 31, false),
            (100_000_000, 256, 64, false),
        ] {
            let widths = tuned_widths(n, bits, t, inline);
            assert_eq!(widths.iter().sum::<u32>(), bits, "{n}: {widths:?}");
            let top = max_width(if inline { 1 } else { 4 });
            assert!(widths.iter().all(|w| (8..=top).contains(w)), "{widths:?}");
            assert!(
                widths.iter().all(|&w| w == 8) || fits_budget(n, &widths, inline),
                "{n}: widths {widths:?}"
            );
        }
        assert_eq!(ball_size(16, 2), 137.0);
        assert_eq!(ball_size(8, 8), 256.0);
    }
}

//! PDQ, Meta's 256-bit perceptual hash, implemented from the published algorithm.
//!
//! Agreement with Meta's C++ reference (as wrapped by the `pdqhash` Python package) is bit for
//! bit, so every floating-point operation below happens in the same precision and the same
//! order as there:
//!
//! 1. luma `0.299 R + 0.587 G + 0.114 B`, evaluated in f64 (numpy promotes the uint8 image to
//!    float64 in `pdqhash.compute`) and stored as f32;
//! 2. two passes of a Jarosz box filter along rows then columns, f32 running sums with
//!    Meta's four-phase edge handling, window `(n + 127) / 128`;
//! 3. decimation to 64×64 by sampling at the centres of the target cells;
//! 4. quality: sum of truncated scaled neighbour differences / 90, capped at 100;
//! 5. a 16×16 DCT (rows 1..16 of the 64-point DCT-II, skipping DC), f32 sums in index order;
//! 6. one bit per coefficient: above the median (the 128th smallest of 256).
//!
//! The eight dihedral hashes come from sign flips and transposes of the same 16×16 DCT,
//! exactly as Meta derives them.
//!
//! Speed comes from layout, not from different arithmetic: the box filter runs over many
//! independent lanes at once (all columns together; rows in small transposed blocks), so the
//! compiler can vectorize it while each lane performs the reference's operations in order.

use std::sync::LazyLock;

/// Images smaller than this in either dimension get the all-zero hash and quality 0 (Meta's
/// rule).
pub const MIN_HASHABLE_DIM: usize = 5;

/// PDQ hashes under this quality are too featureless to trust (Meta's recommendation).
pub const MIN_TRUSTED_QUALITY: u8 = 50;

/// A 256-bit PDQ hash in Meta's text order: byte 0 holds bits 255..248.
pub type Pdq256 = [u8; 32];

/// The eight dihedral variants, in Meta's order.
///
/// Names follow the pixel transform each hash approximates (numpy notation on an H×W image):
/// original, `rot90` counter-clockwise, `rot180`, `rot90` clockwise, `flipud`, `fliplr`,
/// transpose, anti-transpose.
pub const DIHEDRAL_NAMES: [&str; 8] = [
    "original",
    "rot90ccw",
    "rot180",
    "rot90cw",
    "flipud",
    "fliplr",
    "transpose",
    "antitranspose",
];

/// The result of hashing one image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PdqOutput {
    pub hash: Pdq256,
    /// 0..=100.
    pub quality: u8,
    /// The eight dihedral hashes (index 0 equals `hash`), when asked for.
    pub dihedral: Option<[Pdq256; 8]>,
}

/// Reusable buffers, so a worker thread hashing many images allocates once.
#[derive(Default)]
pub struct PdqHasher {
    luma: Vec<f32>,
    scratch: Vec<f32>,
}

impl PdqHasher {
    pub fn new() -> PdqHasher {
        PdqHasher::default()
    }

    /// Hashes an 8-bit RGB image (`rgb.len() == width * height * 3`, row-major).
    pub fn hash_rgb(
        &mut self,
        rgb: &[u8],
        width: usize,
        height: usize,
        dihedral: bool,
    ) -> PdqOutput {
        assert_eq!(rgb.len(), width * height * 3, "rgb buffer size");
        self.luma.clear();
        self.luma.extend(rgb.chunks_exact(3).map(|p| {
            (f64::from(p[0]) * 0.299 + f64::from(p[1]) * 0.587 + f64::from(p[2]) * 0.114) as f32
        }));
        self.hash_luma(width, height, dihedral)
    }

    /// Hashes an RGB24 frame whose rows are `stride` bytes apart (a decoder's buffer), whole,
    /// with the luma of Meta's C++ reference (`fillFloatLumaFromRGB`: `f32` coefficients and
    /// arithmetic, left to right), which vPDQ uses; the image path above follows the Python
    /// wrapper's `f64` luma instead.
    pub fn hash_rgb24_rows(
        &mut self,
        rgb: &[u8],
        width: usize,
        height: usize,
        stride: usize,
    ) -> PdqOutput {
        const R: f32 = 0.299;
        const G: f32 = 0.587;
        const B: f32 = 0.114;
        assert!(stride >= width * 3, "row stride");
        self.luma.clear();
        for row in rgb.chunks(stride).take(height) {
            self.luma.extend(
                row[..width * 3]
                    .chunks_exact(3)
                    .map(|p| R * f32::from(p[0]) + G * f32::from(p[1]) + B * f32::from(p[2])),
            );
        }
        assert_eq!(self.luma.len(), width * height, "rgb buffer size");
        self.hash_luma(width, height, false)
    }

    /// Hashes the luma already in `self.luma`.
    fn hash_luma(&mut self, width: usize, height: usize, dihedral: bool) -> PdqOutput {
        if width < MIN_HASHABLE_DIM || height < MIN_HASHABLE_DIM {
            return PdqOutput {
                hash: [0; 32],
                quality: 0,
                dihedral: dihedral.then_some([[0; 32]; 8]),
            };
        }
        let mut block = [[0f32; 64]; 64];
        if width == 64 && height == 64 {
            // Meta's reference skips the blur for input that is already 64×64.
            for (row, src) in block.iter_mut().zip(self.luma.chunks_exact(64)) {
                row.copy_from_slice(src);
            }
        } else {
            self.scratch.resize(self.luma.len(), 0.0);
            downsample(&mut self.luma, &mut self.scratch, height, width, &mut block);
        }
        let quality = quality_metric(&block);
        let dct = dct64_to_16(&block);
        let hash = bits_of(&dct);
        let dihedral = dihedral.then(|| dihedral_hashes(&dct));
        PdqOutput {
            hash,
            quality,
            dihedral,
        }
    }
}

/// Box-filter window along a dimension of `old` pixels for a 64-pixel target
/// (Meta's `computeJaroszFilterWindowSize(old, 64)`).
fn window_size(old: usize) -> usize {
    old.div_ceil(2 * 64)
}

/// Index of the source pixel sampled for output cell `i` of 64 along a dimension of `n`
/// (Meta's `decimateFloat`: centres of the target cells).
fn sample_index(i: usize, n: usize) -> usize {
    (((i as f64 + 0.5) * n as f64) / 64.0) as usize
}

/// Meta's blur-and-decimate: two rounds of (rows, then columns) Jarosz box filtering, then the
/// values at the centres of a 64×64 grid.
///
/// Only 64×64 values of the final result are ever read, so the last two passes compute only
/// what feeds them: the second row pass runs its running sums along every row but divides and
/// stores only at the 64 sampled columns, and the last column pass then runs over those 64
/// columns alone. Every value computed goes through exactly the reference's operations, so the
/// result is bit-identical to filtering the whole image four times (checked in the tests).
fn downsample(
    luma: &mut [f32],
    scratch: &mut [f32],
    rows: usize,
    cols: usize,
    out: &mut [[f32; 64]; 64],
) {
    let row_window = window_size(cols);
    let col_window = window_size(rows);
    let sampled_cols: Vec<usize> = (0..64).map(|j| sample_index(j, cols)).collect();
    box_along_rows(luma, scratch, rows, cols, row_window, None);
    box_lanes(scratch, luma, rows, cols, col_window, None);
    let mut narrow = vec![0f32; rows * 64];
    box_along_rows(
        luma,
        &mut narrow,
        rows,
        cols,
        row_window,
        Some(&sampled_cols),
    );
    let mut narrow_out = vec![0f32; rows * 64];
    box_lanes(&narrow, &mut narrow_out, rows, 64, col_window, None);
    for (i, out_row) in out.iter_mut().enumerate() {
        let src = sample_index(i, rows) * 64;
        out_row.copy_from_slice(&narrow_out[src..src + 64]);
    }
}

/// Rows of this many pixels are filtered together: transposed into a block where each row of
/// the image is one lane.
const ROW_BLOCK: usize = 16;

/// Box-filters each row of `input` (`rows` × `cols`). With `only`, writes just the outputs at
/// those column positions (`output` is then `rows` × `only.len()`).
fn box_along_rows(
    input: &[f32],
    output: &mut [f32],
    rows: usize,
    cols: usize,
    window: usize,
    only: Option<&[usize]>,
) {
    let out_cols = only.map_or(cols, <[usize]>::len);
    let mut block_in = vec![0f32; cols * ROW_BLOCK];
    let mut block_out = vec![0f32; out_cols * ROW_BLOCK];
    let mut r0 = 0;
    while r0 < rows {
        let lanes = ROW_BLOCK.min(rows - r0);
        // Transpose rows r0..r0+lanes into [cols][lanes].
        for l in 0..lanes {
            let src = &input[(r0 + l) * cols..(r0 + l + 1) * cols];
            for (c, &v) in src.iter().enumerate() {
                block_in[c * lanes + l] = v;
            }
        }
        box_lanes(
            &block_in[..cols * lanes],
            &mut block_out[..out_cols * lanes],
            cols,
            lanes,
            window,
            only,
        );
        for l in 0..lanes {
            let dst = &mut output[(r0 + l) * out_cols..(r0 + l + 1) * out_cols];
            for (c, v) in dst.iter_mut().enumerate() {
                *v = block_out[c * lanes + l];
            }
        }
        r0 += lanes;
    }
}

/// Meta's `box1DFloat` applied independently to `lanes` vectors of length `len`, stored as
/// `[len][lanes]` (element `i` of lane `l` at `i * lanes + l`).
///
/// Each lane sees exactly the reference's sequence of f32 operations: a running sum that
/// grows over the first half window, slides with one add and one subtract, then shrinks,
/// divided by the current window size at every output.
///
/// With `only` (sorted positions, repeats allowed), the sums still run over every element but
/// the division and store happen only at those output positions, written densely in that
/// order (`output` is then `[only.len()][lanes]`).
fn box_lanes(
    input: &[f32],
    output: &mut [f32],
    len: usize,
    lanes: usize,
    window: usize,
    only: Option<&[usize]>,
) {
    let half = (window + 2) / 2;
    let phase1 = half - 1;
    let phase2 = window - half + 1;
    let phase3 = len.saturating_sub(window);
    let phase4 = half - 1;
    let mut sum = vec![0f32; lanes];
    let row = |i: usize| &input[i * lanes..(i + 1) * lanes];
    // Where output `oi` goes: its own row, or the slots of `only` that name it.
    let mut next_slot = 0usize;
    let mut emit = |oi: usize, sum: &[f32], n: f32, output: &mut [f32]| match only {
        None => {
            for (o, &s) in output[oi * lanes..(oi + 1) * lanes].iter_mut().zip(sum) {
                *o = s / n;
            }
        }
        Some(positions) => {
            while positions.get(next_slot) == Some(&oi) {
                let slot = next_slot;
                for (o, &s) in output[slot * lanes..(slot + 1) * lanes].iter_mut().zip(sum) {
                    *o = s / n;
                }
                next_slot += 1;
            }
        }
    };
    let (mut li, mut ri, mut oi) = (0usize, 0usize, 0usize);
    let mut current = 0usize;
    for _ in 0..phase1 {
        for (s, &x) in sum.iter_mut().zip(row(ri)) {
            *s += x;
        }
        current += 1;
        ri += 1;
    }
    for _ in 0..phase2 {
        current += 1;
        for (s, &x) in sum.iter_mut().zip(row(ri)) {
            *s += x;
        }
        emit(oi, &sum, current as f32, output);
        ri += 1;
        oi += 1;
    }
    for _ in 0..phase3 {
        for ((s, &add), &sub) in sum.iter_mut().zip(row(ri)).zip(row(li)) {
            *s += add;
            *s -= sub;
        }
        emit(oi, &sum, current as f32, output);
        li += 1;
        ri += 1;
        oi += 1;
    }
    for _ in 0..phase4 {
        current -= 1;
        for (s, &sub) in sum.iter_mut().zip(row(li)) {
            *s -= sub;
        }
        emit(oi, &sum, current as f32, output);
        li += 1;
        oi += 1;
    }
}

/// Meta's image-domain quality metric: counts significant gradients. Each scaled difference
/// is truncated to an integer before summing, exactly as the reference does.
fn quality_metric(block: &[[f32; 64]; 64]) -> u8 {
    let step = |u: f32, v: f32| (((u - v) * 100.0) / 255.0) as i32;
    let mut sum: i32 = 0;
    for pair in block.windows(2) {
        for (&u, &v) in pair[0].iter().zip(&pair[1]) {
            sum += step(u, v).abs();
        }
    }
    for row in block {
        for pair in row.windows(2) {
            sum += step(pair[0], pair[1]).abs();
        }
    }
    // Clamped to 0..=100, so the cast cannot truncate.
    (sum / 90).clamp(0, 100) as u8
}

/// Rows 1..=16 of the 64-point DCT-II matrix, scaled by sqrt(2/64), computed as Meta does
/// (scale factor in f32, cosine in f64, product rounded to f32).
static DCT_MATRIX: LazyLock<[[f32; 64]; 16]> = LazyLock::new(|| {
    let scale = (2.0f64 / 64.0).sqrt() as f32;
    let mut d = [[0f32; 64]; 16];
    for (i, row) in d.iter_mut().enumerate() {
        for (j, v) in row.iter_mut().enumerate() {
            let angle = (std::f64::consts::PI / 2.0 / 64.0) * (i + 1) as f64 * (2 * j + 1) as f64;
            *v = (f64::from(scale) * angle.cos()) as f32;
        }
    }
    d
});

/// `B = D A Dᵀ` with sums accumulated in index order, as in Meta's `dct64To16`.
fn dct64_to_16(a: &[[f32; 64]; 64]) -> [[f32; 16]; 16] {
    let d = &*DCT_MATRIX;
    // T = D A: T[i][j] = sum_k D[i][k] A[k][j], k ascending; vectorized across j.
    let mut t = [[0f32; 64]; 16];
    for (t_row, d_row) in t.iter_mut().zip(d) {
        for (&dk, a_row) in d_row.iter().zip(a) {
            for (tv, &av) in t_row.iter_mut().zip(a_row) {
                *tv += dk * av;
            }
        }
    }
    let mut b = [[0f32; 16]; 16];
    for (b_row, t_row) in b.iter_mut().zip(&t) {
        for (bv, d_row) in b_row.iter_mut().zip(d) {
            let mut sum = 0f32;
            for (&tv, &dv) in t_row.iter().zip(d_row) {
                sum += tv * dv;
            }
            *bv = sum;
        }
    }
    b
}

/// One bit per coefficient, set when it is above the median. The median is the 128th smallest
/// value, which is what Meta's Torben median returns for 256 values.
fn bits_of(dct: &[[f32; 16]; 16]) -> Pdq256 {
    let mut values = [0f32; 256];
    for (dst, src) in values.chunks_exact_mut(16).zip(dct) {
        dst.copy_from_slice(src);
    }
    let mut sorted = values;
    let (_, median, _) = sorted.select_nth_unstable_by(127, f32::total_cmp);
    let median = *median;
    let mut hash = [0u8; 32];
    for (k, &v) in values.iter().enumerate() {
        if v > median {
            // Bit k of Meta's Hash256 is printed at position 255 - k (most significant first).
            hash[31 - k / 8] |= 1 << (k % 8);
        }
    }
    hash
}

/// The eight dihedral hashes from one DCT (Meta's `dct16OriginalTo*`). Reflecting the image
/// negates the odd-frequency coefficients along that axis (here: even indices, since index 0
/// is frequency 1); rotating by 90° also transposes.
fn dihedral_hashes(a: &[[f32; 16]; 16]) -> [Pdq256; 8] {
    let transform = |transpose: bool, sign: &dyn Fn(usize, usize) -> bool| {
        let mut b = [[0f32; 16]; 16];
        for i in 0..16 {
            for j in 0..16 {
                let v = if sign(i, j) { a[i][j] } else { -a[i][j] };
                if transpose {
                    b[j][i] = v;
                } else {
                    b[i][j] = v;
                }
            }
        }
        bits_of(&b)
    };
    let odd = |x: usize| x & 1 == 1;
    [
        bits_of(a),
        transform(true, &|_, j| odd(j)),
        transform(false, &|i, j| !odd(i + j)),
        transform(true, &|i, _| odd(i)),
        transform(false, &|i, _| odd(i)),
        transform(false, &|_, j| odd(j)),
        transform(true, &|_, _| true),
        transform(true, &|i, j| !odd(i + j)),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A direct transcription of Meta's scalar `box1DFloat`, to check the lane version.
    fn box1d_reference(input: &[f32], window: usize) -> Vec<f32> {
        let n = input.len();
        let half = (window + 2) / 2;
        let mut out = vec![0f32; n];
        let (mut li, mut ri, mut oi, mut cur) = (0, 0, 0, 0usize);
        let mut sum = 0f32;
        for _ in 0..half - 1 {
            sum += input[ri];
            cur += 1;
            ri += 1;
        }
        for _ in 0..window - half + 1 {
            sum += input[ri];
            cur += 1;
            out[oi] = sum / cur as f32;
            ri += 1;
            oi += 1;
        }
        for _ in 0..n - window {
            sum += input[ri];
            sum -= input[li];
            out[oi] = sum / cur as f32;
            li += 1;
            ri += 1;
            oi += 1;
        }
        for _ in 0..half - 1 {
            sum -= input[li];
            cur -= 1;
            out[oi] = sum / cur as f32;
            li += 1;
            oi += 1;
        }
        out
    }

    fn pseudo_random(n: usize, seed: u32) -> Vec<f32> {
        let mut x = seed;
        (0..n)
            .map(|_| {
                x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                (x >> 8) as f32 / 65_536.0
            })
            .collect()
    }

    #[test]
    fn lanes_match_scalar_reference_bit_for_bit() {
        for (len, lanes, window) in [(100, 3, 1), (257, 16, 2), (1000, 5, 8), (77, 17, 7)] {
            let input = pseudo_random(len * lanes, len as u32);
            let mut out = vec![0f32; len * lanes];
            box_lanes(&input, &mut out, len, lanes, window, None);
            for l in 0..lanes {
                let lane: Vec<f32> = (0..len).map(|i| input[i * lanes + l]).collect();
                let expected = box1d_reference(&lane, window);
                for i in 0..len {
                    assert_eq!(
                        out[i * lanes + l].to_bits(),
                        expected[i].to_bits(),
                        "len {len} lane {l} i {i}"
                    );
                }
            }
        }
    }

    #[test]
    fn rows_pass_matches_per_row_reference() {
        let (rows, cols) = (37, 203);
        let input = pseudo_random(rows * cols, 7);
        let mut out = vec![0f32; rows * cols];
        box_along_rows(&input, &mut out, rows, cols, window_size(cols), None);
        for r in 0..rows {
            let expected = box1d_reference(&input[r * cols..(r + 1) * cols], window_size(cols));
            assert_eq!(&out[r * cols..(r + 1) * cols], &expected[..]);
        }
    }

    #[test]
    fn sampled_downsample_equals_full_filter_then_decimate() {
        // Sizes below and above 64 (repeated and skipped sample positions), odd and even.
        for (rows, cols) in [(37, 203), (64, 65), (130, 97), (300, 41)] {
            let input = pseudo_random(rows * cols, (rows * cols) as u32);
            // The reference: four full passes over the whole image, then decimation.
            let mut a = input.clone();
            let mut b = vec![0f32; rows * cols];
            for _ in 0..2 {
                for r in 0..rows {
                    let out = box1d_reference(&a[r * cols..(r + 1) * cols], window_size(cols));
                    b[r * cols..(r + 1) * cols].copy_from_slice(&out);
                }
                for c in 0..cols {
                    let column: Vec<f32> = (0..rows).map(|r| b[r * cols + c]).collect();
                    for (r, v) in box1d_reference(&column, window_size(rows))
                        .into_iter()
                        .enumerate()
                    {
                        a[r * cols + c] = v;
                    }
                }
            }
            let mut ours = input.clone();
            let mut scratch = vec![0f32; rows * cols];
            let mut block = [[0f32; 64]; 64];
            downsample(&mut ours, &mut scratch, rows, cols, &mut block);
            for i in 0..64 {
                for j in 0..64 {
                    let expected = a[sample_index(i, rows) * cols + sample_index(j, cols)];
                    assert_eq!(
                        block[i][j].to_bits(),
                        expected.to_bits(),
                        "{rows}x{cols} at {i},{j}"
                    );
                }
            }
        }
    }

    #[test]
    fn window_sizes_follow_meta() {
        assert_eq!(window_size(1024), 8);
        assert_eq!(window_size(1600), 13);
        assert_eq!(window_size(64), 1);
        assert_eq!(window_size(5), 1);
    }

    #[test]
    fn tiny_images_hash_to_zero_with_zero_quality() {
        let out = PdqHasher::new().hash_rgb(&[200; 4 * 100 * 3], 4, 100, true);
        assert_eq!(out.hash, [0; 32]);
        assert_eq!(out.quality, 0);
        assert_eq!(out.dihedral, Some([[0; 32]; 8]));
    }

    #[test]
    fn flat_image_has_zero_quality() {
        let out = PdqHasher::new().hash_rgb(&[90; 100 * 80 * 3], 100, 80, false);
        assert_eq!(out.quality, 0);
        assert_eq!(out.dihedral, None);
    }

    #[test]
    fn dihedral_variants_track_real_pixel_transforms() {
        // A smooth, asymmetric picture: flipping it horizontally must give (nearly) the fliplr
        // hash, and the original hash must be variant 0.
        let (w, h) = (96usize, 64usize);
        let mut rgb = Vec::with_capacity(w * h * 3);
        let mut flipped = Vec::with_capacity(w * h * 3);
        let pixel = |x: usize, y: usize| {
            let v = ((x * x) / 40 + (y * 3) + ((x * y) % 17)) % 256;
            v as u8
        };
        for y in 0..h {
            for x in 0..w {
                rgb.extend([pixel(x, y); 3]);
                flipped.extend([pixel(w - 1 - x, y); 3]);
            }
        }
        let mut hasher = PdqHasher::new();
        let a = hasher.hash_rgb(&rgb, w, h, true);
        let b = hasher.hash_rgb(&flipped, w, h, false);
        let dih = a.dihedral.unwrap();
        assert_eq!(dih[0], a.hash);
        let dist = |x: &Pdq256, y: &Pdq256| crate::kinds::hamming_bytes(x, y);
        assert!(dist(&dih[5], &b.hash) <= 16, "{}", dist(&dih[5], &b.hash));
        assert!(dist(&a.hash, &b.hash) > 32, "{}", dist(&a.hash, &b.hash));
    }
}

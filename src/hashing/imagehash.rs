//! 64-bit aHash, dHash and pHash that interoperate with Python `imagehash` (4.x, `hash_size=8`),
//! the implementation most existing lists were made with.
//!
//! Hand-written rather than taken from `image_hasher`: that crate's resize filter, grey
//! formula, bit order and pHash (it uses a different DCT layout and mean instead of median)
//! all differ from `imagehash`, and no configuration of it reproduces `imagehash`'s values
//! (`docs/conformance.md`, "Known traps"). What has to match is small:
//!
//! - grey: Pillow's `convert("L")` (done by [`RgbImage::to_luma8`](super::decode::RgbImage));
//! - resize: Pillow's LANCZOS (a = 3) separable resampling with its 8-bit fixed-point
//!   arithmetic, horizontal pass first;
//! - aHash: 8×8, bit = pixel > mean; dHash: 9 wide × 8 high, bit = right > left;
//!   pHash: 32×32, 2-D DCT-II (scipy's unnormalised `dct`), top-left 8×8, bit = coeff > median;
//! - bits row-major, first bit most significant (`str(ImageHash)`).

/// Fixed-point precision of Pillow's 8-bit resampling (`PRECISION_BITS = 32 - 8 - 2`).
const PRECISION_BITS: u32 = 22;

/// The three 64-bit hashes of one image, as big-endian u64 (first bit most significant).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageHashes {
    pub ahash: u64,
    pub dhash: u64,
    pub phash: u64,
}

/// Which of the three to compute (the resizes are the expensive part).
#[derive(Debug, Clone, Copy, Default)]
pub struct Wanted {
    pub ahash: bool,
    pub dhash: bool,
    pub phash: bool,
}

/// Computes the requested hashes of a Pillow-"L" grey image.
pub fn hash_grey(grey: &[u8], width: usize, height: usize, wanted: Wanted) -> [Option<u64>; 3] {
    let ahash = wanted.ahash.then(|| average_hash(grey, width, height));
    let dhash = wanted.dhash.then(|| difference_hash(grey, width, height));
    let phash = wanted.phash.then(|| perceptual_hash(grey, width, height));
    [ahash, dhash, phash]
}

/// `imagehash.average_hash(image, 8)`.
pub fn average_hash(grey: &[u8], width: usize, height: usize) -> u64 {
    let small = resize_lanczos(grey, width, height, 8, 8);
    // numpy's mean of 64 uint8 values in f64 is exact here (the sum fits easily).
    let mean = small.iter().map(|&v| f64::from(v)).sum::<f64>() / 64.0;
    bits_msb_first(small.iter().map(|&v| f64::from(v) > mean))
}

/// `imagehash.dhash(image, 8)`: resize to 9 wide by 8 high, compare horizontal neighbours.
pub fn difference_hash(grey: &[u8], width: usize, height: usize) -> u64 {
    let small = resize_lanczos(grey, width, height, 9, 8);
    bits_msb_first(
        small
            .chunks_exact(9)
            .flat_map(|row| row.windows(2).map(|w| w[1] > w[0])),
    )
}

/// `imagehash.phash(image, 8, highfreq_factor=4)`.
pub fn perceptual_hash(grey: &[u8], width: usize, height: usize) -> u64 {
    const N: usize = 32;
    let small = resize_lanczos(grey, width, height, N, N);
    let pixels: Vec<f64> = small.iter().map(|&v| f64::from(v)).collect();
    // scipy.fftpack.dct(dct(pixels, axis=0), axis=1), type II, unnormalised:
    // y[k] = 2 * sum_n x[n] cos(pi k (2n + 1) / 2N). Only the first 8 outputs along each axis
    // are needed.
    let cos: Vec<f64> = (0..8 * N)
        .map(|i| {
            let (k, n) = (i / N, i % N);
            (std::f64::consts::PI * k as f64 * (2 * n + 1) as f64 / (2 * N) as f64).cos()
        })
        .collect();
    // Along axis 0 (down each column), keeping rows k < 8.
    let mut cols = vec![0f64; 8 * N];
    for k in 0..8 {
        for x in 0..N {
            let mut sum = 0.0;
            for n in 0..N {
                sum += pixels[n * N + x] * cos[k * N + n];
            }
            cols[k * N + x] = 2.0 * sum;
        }
    }
    // Along axis 1, keeping columns k < 8.
    let mut low = [0f64; 64];
    for r in 0..8 {
        for k in 0..8 {
            let mut sum = 0.0;
            for n in 0..N {
                sum += cols[r * N + n] * cos[k * N + n];
            }
            low[r * 8 + k] = 2.0 * sum;
        }
    }
    let mut sorted = low;
    sorted.sort_by(f64::total_cmp);
    let median = (sorted[31] + sorted[32]) / 2.0;
    bits_msb_first(low.iter().map(|&v| v > median))
}

fn bits_msb_first(bits: impl Iterator<Item = bool>) -> u64 {
    bits.take(64).fold(0u64, |acc, b| (acc << 1) | u64::from(b))
}

/// Pillow's LANCZOS (a = 3) resampling of an 8-bit grey image, reproducing `ImagingResample`:
/// double-precision coefficients normalised per output pixel, converted to 22-bit fixed point,
/// a horizontal pass over the needed rows, then a vertical pass, each rounding and clipping to
/// 8 bits.
pub fn resize_lanczos(
    src: &[u8],
    width: usize,
    height: usize,
    out_w: usize,
    out_h: usize,
) -> Vec<u8> {
    if width == out_w && height == out_h {
        return src.to_vec();
    }
    let horiz = Coefficients::new(width, out_w);
    let vert = Coefficients::new(height, out_h);
    // Horizontal pass, only over the source rows the vertical pass will read.
    let (first_row, rows) = if width != out_w {
        let first = vert.bounds[0].0;
        let last = vert.bounds[out_h - 1].0 + vert.bounds[out_h - 1].1;
        (first, last - first)
    } else {
        (0, height)
    };
    let tmp: Vec<u8> = if width != out_w {
        let mut tmp = vec![0u8; out_w * rows];
        for y in 0..rows {
            let row = &src[(first_row + y) * width..(first_row + y + 1) * width];
            for (x, out) in tmp[y * out_w..(y + 1) * out_w].iter_mut().enumerate() {
                let (xmin, len) = horiz.bounds[x];
                *out = clip8(dot(&row[xmin..xmin + len], &horiz.row(x)[..len]));
            }
        }
        tmp
    } else {
        src.to_vec()
    };
    let tmp_w = out_w;
    if height == out_h {
        return tmp;
    }
    let shift = if width != out_w { first_row } else { 0 };
    let mut out = vec![0u8; out_w * out_h];
    for y in 0..out_h {
        let (ymin, len) = vert.bounds[y];
        let ymin = ymin - shift;
        let k = &vert.row(y)[..len];
        // Accumulate whole rows at a time (vectorizes across x); integer sums are exact in any
        // order, so this equals Pillow's per-pixel loop.
        let mut acc = vec![1i32 << (PRECISION_BITS - 1); out_w];
        for (i, &kv) in k.iter().enumerate() {
            let src = &tmp[(ymin + i) * tmp_w..(ymin + i + 1) * tmp_w];
            for (a, &p) in acc.iter_mut().zip(src) {
                *a = a.wrapping_add(i32::from(p).wrapping_mul(kv));
            }
        }
        for (o, &a) in out[y * out_w..(y + 1) * out_w].iter_mut().zip(&acc) {
            *o = clip8(a);
        }
    }
    out
}

/// Pillow's fixed-point dot product with its rounding offset. Pillow accumulates in a C `int`;
/// wrapping i32 arithmetic is the same (normalised Lanczos weights keep the sum far inside
/// i32 for 8-bit input anyway) and lets the compiler vectorize.
fn dot(pixels: &[u8], weights: &[i32]) -> i32 {
    pixels
        .iter()
        .zip(weights)
        .fold(1i32 << (PRECISION_BITS - 1), |acc, (&p, &w)| {
            acc.wrapping_add(i32::from(p).wrapping_mul(w))
        })
}

/// Pillow's `clip8`: drop the fraction bits and clamp to 0..=255.
fn clip8(acc: i32) -> u8 {
    (acc >> PRECISION_BITS).clamp(0, 255) as u8
}

/// Per output pixel: the first source index, how many source pixels contribute, and their
/// fixed-point weights (Pillow's `precompute_coeffs` + `normalize_coeffs_8bpc`).
struct Coefficients {
    ksize: usize,
    bounds: Vec<(usize, usize)>,
    weights: Vec<i32>,
}

impl Coefficients {
    fn new(in_size: usize, out_size: usize) -> Coefficients {
        const SUPPORT: f64 = 3.0;
        let scale = in_size as f64 / out_size as f64;
        let filterscale = scale.max(1.0);
        let support = SUPPORT * filterscale;
        let ksize = support.ceil() as usize * 2 + 1;
        let mut bounds = Vec::with_capacity(out_size);
        let mut weights = vec![0i32; out_size * ksize];
        let mut k = vec![0f64; ksize];
        for xx in 0..out_size {
            let center = (xx as f64 + 0.5) * scale;
            let ss = 1.0 / filterscale;
            // Pillow truncates toward zero after adding 0.5 (C int conversion).
            let xmin = ((center - support + 0.5) as i64).max(0) as usize;
            let xmax = ((center + support + 0.5) as i64).min(in_size as i64) as usize;
            let len = xmax.saturating_sub(xmin).min(ksize);
            let mut ww = 0.0;
            for (x, kv) in k.iter_mut().enumerate().take(len) {
                let w = lanczos((x as f64 + xmin as f64 - center + 0.5) * ss);
                *kv = w;
                ww += w;
            }
            let row = &mut weights[xx * ksize..(xx + 1) * ksize];
            for (out, &kv) in row.iter_mut().zip(&k[..len]) {
                let v = if ww != 0.0 { kv / ww } else { kv };
                let scaled = v * f64::from(1u32 << PRECISION_BITS);
                *out = if v < 0.0 {
                    (-0.5 + scaled) as i32
                } else {
                    (0.5 + scaled) as i32
                };
            }
            bounds.push((xmin, len));
        }
        Coefficients {
            ksize,
            bounds,
            weights,
        }
    }

    fn row(&self, i: usize) -> &[i32] {
        &self.weights[i * self.ksize..(i + 1) * self.ksize]
    }
}

fn sinc(x: f64) -> f64 {
    if x == 0.0 {
        1.0
    } else {
        let x = x * std::f64::consts::PI;
        x.sin() / x
    }
}

fn lanczos(x: f64) -> f64 {
    if (-3.0..3.0).contains(&x) {
        sinc(x) * sinc(x / 3.0)
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resize_of_flat_image_is_flat() {
        let src = vec![77u8; 300 * 200];
        for (w, h) in [(8, 8), (9, 8), (32, 32)] {
            let out = resize_lanczos(&src, 300, 200, w, h);
            assert_eq!(out.len(), w * h);
            assert!(out.iter().all(|&v| v == 77), "{w}x{h}: {out:?}");
        }
    }

    #[test]
    fn resize_to_same_size_is_identity() {
        let src: Vec<u8> = (0..64).map(|i| (i * 4) as u8).collect();
        assert_eq!(resize_lanczos(&src, 8, 8, 8, 8), src);
    }

    #[test]
    fn upscaling_small_images_works() {
        // imagehash happily hashes images smaller than 32x32 (pHash upsamples them).
        let src: Vec<u8> = (0..12).map(|i| (i * 20) as u8).collect();
        let out = resize_lanczos(&src, 4, 3, 32, 32);
        assert_eq!(out.len(), 32 * 32);
        let _ = perceptual_hash(&src, 4, 3);
    }

    #[test]
    fn hashes_of_a_gradient_are_as_expected() {
        // Brighter to the right: every dHash bit (right > left) is set, and the aHash has the
        // right half set in every row.
        let (w, h) = (64, 48);
        let grey: Vec<u8> = (0..w * h).map(|i| ((i % w) * 4) as u8).collect();
        assert_eq!(difference_hash(&grey, w, h), u64::MAX);
        assert_eq!(average_hash(&grey, w, h), 0x0f0f_0f0f_0f0f_0f0f);
    }

    #[test]
    fn bit_order_is_row_major_msb_first() {
        assert_eq!(
            bits_msb_first([true, false].into_iter().chain(std::iter::repeat(false))),
            1 << 63
        );
    }
}

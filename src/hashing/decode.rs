//! Image decoding under the reference conventions, so perceptual hashes agree with the lists
//! made by Meta's tools and Python `imagehash` (which both decode with Pillow):
//!
//! - first frame only; EXIF orientation is **not** applied;
//! - alpha is dropped without compositing; grey, palette and 1-bit are expanded to RGB;
//! - 16-bit grey is clipped at 255 (Pillow's `I;16` → `RGB`), other 16-bit samples keep their
//!   high byte (Pillow's `;16B` raw modes);
//! - CMYK JPEGs are read as Adobe-inverted CMYK and converted with Pillow's formula.
//!
//! JPEG goes through libjpeg-turbo's decoder (via the `mozjpeg` crate, which builds it from
//! source), because Pillow uses libjpeg-turbo and a different IDCT or chroma upsampler moves
//! PDQ bits (measured: `docs/conformance.md`). Everything else goes through the `image` crate.
//!
//! Decompression bombs: the pixel count is read from the header and checked against the limit
//! before any pixel buffer is allocated.

use std::fs::File;
use std::io::{BufRead, BufReader, Seek};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;

use image::{DynamicImage, ImageDecoder, ImageFormat, ImageReader, Limits};

/// Default limit on decoded pixels (100 megapixels).
pub const DEFAULT_MAX_PIXELS: u64 = 100_000_000;

/// An 8-bit RGB image, row-major, 3 bytes per pixel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RgbImage {
    pub width: usize,
    pub height: usize,
    pub data: Vec<u8>,
}

impl RgbImage {
    /// Pillow's `convert("L")` of this image: ITU-R 601-2 luma in 16-bit fixed point.
    pub fn to_luma8(&self) -> Vec<u8> {
        self.data
            .chunks_exact(3)
            .map(|p| {
                let v = u32::from(p[0]) * 19_595
                    + u32::from(p[1]) * 38_470
                    + u32::from(p[2]) * 7_471
                    + 0x8000;
                // The weights sum to 65536, so v >> 16 <= 255.
                (v >> 16) as u8
            })
            .collect()
    }
}

/// Why an image could not be decoded. The file's cryptographic hashes are still reported.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("not a supported image format (JPEG, PNG, GIF, WebP, BMP, TIFF)")]
    UnknownFormat,
    #[error(
        "image is {width}x{height} = {pixels} pixels, over the limit of {limit} (raise --max-pixels to allow it)"
    )]
    TooManyPixels {
        width: u64,
        height: u64,
        pixels: u64,
        limit: u64,
    },
    #[error("corrupt or unsupported {format} image: {message}")]
    Corrupt {
        format: &'static str,
        message: String,
    },
    #[error("cannot read the file: {0}")]
    Io(#[from] std::io::Error),
}

/// Guesses the format from the first bytes of a file; `None` when it is not an image we read.
pub fn sniff_format(head: &[u8]) -> Option<ImageFormat> {
    let format = image::guess_format(head).ok()?;
    matches!(
        format,
        ImageFormat::Jpeg
            | ImageFormat::Png
            | ImageFormat::Gif
            | ImageFormat::WebP
            | ImageFormat::Bmp
            | ImageFormat::Tiff
    )
    .then_some(format)
}

/// Decodes the image at `path` (already sniffed as `format`) to 8-bit RGB.
pub fn decode_file(
    path: &Path,
    format: ImageFormat,
    max_pixels: u64,
) -> Result<RgbImage, DecodeError> {
    let reader = BufReader::with_capacity(64 * 1024, File::open(path)?);
    decode_reader(reader, format, max_pixels)
}

/// Decodes an in-memory image to 8-bit RGB.
pub fn decode_bytes(bytes: &[u8], max_pixels: u64) -> Result<RgbImage, DecodeError> {
    let format = sniff_format(bytes).ok_or(DecodeError::UnknownFormat)?;
    decode_reader(std::io::Cursor::new(bytes), format, max_pixels)
}

fn decode_reader<R: BufRead + Seek>(
    reader: R,
    format: ImageFormat,
    max_pixels: u64,
) -> Result<RgbImage, DecodeError> {
    match format {
        ImageFormat::Jpeg => decode_jpeg(reader, max_pixels),
        _ => {
            // The image crate's decoders aim never to panic, but hostile files have found
            // panics in them before; one bad file must not end a run over thousands.
            catch_unwind(AssertUnwindSafe(|| {
                decode_with_image_crate(reader, format, max_pixels)
            }))
            .unwrap_or_else(|payload| {
                Err(DecodeError::Corrupt {
                    format: format_name(format),
                    message: format!("decoder failed: {}", panic_message(payload.as_ref())),
                })
            })
        }
    }
}

/// The text of a panic payload (a `String` or `&str`), for error messages.
fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| (*s).to_owned()))
        .unwrap_or_else(|| "unknown error".to_owned())
}

fn check_pixels(width: u64, height: u64, limit: u64) -> Result<(), DecodeError> {
    let pixels = width.saturating_mul(height);
    if pixels > limit {
        return Err(DecodeError::TooManyPixels {
            width,
            height,
            pixels,
            limit,
        });
    }
    Ok(())
}

fn decode_with_image_crate<R: BufRead + Seek>(
    reader: R,
    format: ImageFormat,
    max_pixels: u64,
) -> Result<RgbImage, DecodeError> {
    let corrupt = |e: image::ImageError| DecodeError::Corrupt {
        format: format_name(format),
        message: e.to_string(),
    };
    let mut reader = ImageReader::new(reader);
    reader.set_format(format);
    let mut limits = Limits::default();
    // Decoded samples are at most 16 bytes per pixel (RGBA f32); leave room for the decoder's
    // own buffers on top.
    limits.max_alloc = Some(max_pixels.saturating_mul(16).saturating_add(64 << 20));
    reader.limits(limits);
    let decoder = reader.into_decoder().map_err(corrupt)?;
    let (width, height) = decoder.dimensions();
    check_pixels(u64::from(width), u64::from(height), max_pixels)?;
    // EXIF orientation is deliberately not applied (reference convention): DynamicImage's
    // from_decoder keeps the stored pixel order.
    let image = DynamicImage::from_decoder(decoder).map_err(corrupt)?;
    Ok(to_reference_rgb(image))
}

/// Converts whatever the decoder produced to RGB the way Pillow's `convert("RGB")` does for the
/// corresponding Pillow mode.
fn to_reference_rgb(image: DynamicImage) -> RgbImage {
    let width = image.width() as usize;
    let height = image.height() as usize;
    let data: Vec<u8> = match image {
        DynamicImage::ImageRgb8(buf) => buf.into_raw(),
        DynamicImage::ImageRgba8(buf) => rgb_from_channels(buf.as_raw(), 4, |p| [p[0], p[1], p[2]]),
        DynamicImage::ImageLuma8(buf) => rgb_from_channels(buf.as_raw(), 1, |p| [p[0]; 3]),
        DynamicImage::ImageLumaA8(buf) => rgb_from_channels(buf.as_raw(), 2, |p| [p[0]; 3]),
        // Pillow opens 16-bit grey as I;16 and clips it when converting to 8 bits.
        DynamicImage::ImageLuma16(buf) => rgb_from_channels(buf.as_raw(), 1, |p| {
            [u8::try_from(p[0]).unwrap_or(u8::MAX); 3]
        }),
        // Pillow reads the other 16-bit modes with their high byte.
        DynamicImage::ImageLumaA16(buf) => rgb_from_channels(buf.as_raw(), 2, |p| [hi(p[0]); 3]),
        DynamicImage::ImageRgb16(buf) => {
            rgb_from_channels(buf.as_raw(), 3, |p| [hi(p[0]), hi(p[1]), hi(p[2])])
        }
        DynamicImage::ImageRgba16(buf) => {
            rgb_from_channels(buf.as_raw(), 4, |p| [hi(p[0]), hi(p[1]), hi(p[2])])
        }
        other => other.into_rgb8().into_raw(),
    };
    RgbImage {
        width,
        height,
        data,
    }
}

fn hi(v: u16) -> u8 {
    v.to_be_bytes()[0]
}

fn rgb_from_channels<T: Copy>(
    samples: &[T],
    channels: usize,
    pixel: impl Fn(&[T]) -> [u8; 3],
) -> Vec<u8> {
    let mut out = Vec::with_capacity(samples.len() / channels * 3);
    for p in samples.chunks_exact(channels) {
        out.extend_from_slice(&pixel(p));
    }
    out
}

fn format_name(format: ImageFormat) -> &'static str {
    match format {
        ImageFormat::Jpeg => "JPEG",
        ImageFormat::Png => "PNG",
        ImageFormat::Gif => "GIF",
        ImageFormat::WebP => "WebP",
        ImageFormat::Bmp => "BMP",
        ImageFormat::Tiff => "TIFF",
        _ => "image",
    }
}

/// JPEG through libjpeg-turbo with Pillow's settings: accurate integer IDCT, fancy upsampling,
/// RGB or grey output; four-channel files as inverted (Adobe) CMYK.
fn decode_jpeg<R: BufRead>(reader: R, max_pixels: u64) -> Result<RgbImage, DecodeError> {
    // libjpeg reports fatal errors by calling an error handler that, in the `mozjpeg` crate,
    // unwinds with the message as payload; catch it here so a corrupt file is an error value.
    let corrupt = |e: std::io::Error| DecodeError::Corrupt {
        format: "JPEG",
        message: e.to_string(),
    };
    let result = catch_unwind(AssertUnwindSafe(|| -> Result<RgbImage, DecodeError> {
        let decompress = mozjpeg::Decompress::new_reader(reader).map_err(corrupt)?;
        let (width, height) = decompress.size();
        check_pixels(width as u64, height as u64, max_pixels)?;
        let rgb = match decompress.image().map_err(corrupt)? {
            mozjpeg::decompress::Format::RGB(mut started) => {
                let data = started.read_scanlines::<u8>().map_err(corrupt)?;
                started.finish().map_err(corrupt)?;
                data
            }
            mozjpeg::decompress::Format::Gray(mut started) => {
                let grey = started.read_scanlines::<u8>().map_err(corrupt)?;
                started.finish().map_err(corrupt)?;
                rgb_from_channels(&grey, 1, |p| [p[0]; 3])
            }
            mozjpeg::decompress::Format::CMYK(mut started) => {
                let cmyk = started.read_scanlines::<u8>().map_err(corrupt)?;
                started.finish().map_err(corrupt)?;
                rgb_from_channels(&cmyk, 4, inverted_cmyk_to_rgb)
            }
        };
        if rgb.len() != width * height * 3 {
            return Err(DecodeError::Corrupt {
                format: "JPEG",
                message: "truncated image data".into(),
            });
        }
        Ok(RgbImage {
            width,
            height,
            data: rgb,
        })
    }));
    match result {
        Ok(decoded) => decoded,
        Err(payload) => {
            let message = panic_message(payload.as_ref());
            let message = message
                .strip_prefix("libjpeg fatal error: ")
                .unwrap_or(&message)
                .to_owned();
            Err(DecodeError::Corrupt {
                format: "JPEG",
                message,
            })
        }
    }
}

/// Pillow reads 4-channel JPEGs as `CMYK;I` (Adobe's inverted convention) and converts CMYK to
/// RGB as `255 - k - c * (255 - k) / 255` per channel, rounded as its `MULDIV255` does.
fn inverted_cmyk_to_rgb(p: &[u8]) -> [u8; 3] {
    let k = 255 - i32::from(p[3]);
    let nk = 255 - k;
    let channel = |stored: u8| {
        let c = 255 - i32::from(stored);
        let tmp = c * nk + 128;
        let muldiv = ((tmp >> 8) + tmp) >> 8;
        (nk - muldiv).clamp(0, 255) as u8
    };
    [channel(p[0]), channel(p[1]), channel(p[2])]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn luma_matches_pillow_fixed_point() {
        let img = RgbImage {
            width: 3,
            height: 1,
            data: vec![255, 255, 255, 0, 0, 0, 10, 200, 30],
        };
        // Pillow: (10*19595 + 200*38470 + 30*7471 + 32768) >> 16 = 8146848 >> 16 = 124
        assert_eq!(img.to_luma8(), vec![255, 0, 124]);
    }

    #[test]
    fn cmyk_conversion_follows_pillow() {
        // Stored (inverted) 255 = no ink; white.
        assert_eq!(inverted_cmyk_to_rgb(&[255, 255, 255, 255]), [255, 255, 255]);
        // Full key ink: black whatever the colour.
        assert_eq!(inverted_cmyk_to_rgb(&[255, 0, 128, 0]), [0, 0, 0]);
        // Full cyan, no key: red channel gone.
        assert_eq!(inverted_cmyk_to_rgb(&[0, 255, 255, 255]), [0, 255, 255]);
    }

    #[test]
    fn pixel_limit_is_checked_before_decoding() {
        // A PNG header claiming 100000 x 100000 pixels, with no data behind it.
        let mut png = Vec::new();
        png.extend_from_slice(b"\x89PNG\r\n\x1a\n");
        let mut ihdr = Vec::new();
        ihdr.extend_from_slice(b"IHDR");
        ihdr.extend_from_slice(&100_000u32.to_be_bytes());
        ihdr.extend_from_slice(&100_000u32.to_be_bytes());
        ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
        png.extend_from_slice(&13u32.to_be_bytes());
        png.extend_from_slice(&ihdr);
        png.extend_from_slice(&crc32(&ihdr).to_be_bytes());
        // A tiny IDAT (an empty zlib stream) and IEND: a well-formed file whose header lies.
        for chunk in [&b"IDAT\x78\x9c\x03\x00\x00\x00\x00\x01"[..], &b"IEND"[..]] {
            png.extend_from_slice(&u32::try_from(chunk.len() - 4).unwrap().to_be_bytes());
            png.extend_from_slice(chunk);
            png.extend_from_slice(&crc32(chunk).to_be_bytes());
        }
        let err = decode_bytes(&png, DEFAULT_MAX_PIXELS).unwrap_err();
        assert!(
            matches!(
                err,
                DecodeError::TooManyPixels {
                    pixels: 10_000_000_000,
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn garbage_jpeg_is_an_error_not_a_panic() {
        let mut bytes = vec![0xff, 0xd8, 0xff, 0xe0, 0x00, 0x10];
        bytes.extend_from_slice(&[0x55; 64]);
        let err = decode_bytes(&bytes, DEFAULT_MAX_PIXELS).unwrap_err();
        assert!(
            matches!(err, DecodeError::Corrupt { format: "JPEG", .. }),
            "{err}"
        );
    }

    #[test]
    fn unknown_format_is_reported() {
        assert!(matches!(
            decode_bytes(b"hello world, not an image", DEFAULT_MAX_PIXELS),
            Err(DecodeError::UnknownFormat)
        ));
    }

    fn crc32(data: &[u8]) -> u32 {
        let mut crc = 0xffff_ffffu32;
        for &b in data {
            crc ^= u32::from(b);
            for _ in 0..8 {
                crc = if crc & 1 == 1 {
                    (crc >> 1) ^ 0xedb8_8320
                } else {
                    crc >> 1
                };
            }
        }
        !crc
    }
}

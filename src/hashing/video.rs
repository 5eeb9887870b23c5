//! vPDQ: Meta's video hash, one PDQ hash per selected frame, computed as Meta's reference
//! (`facebook/ThreatExchange`, `vpdq/`) does, so that lists made with either match the other.
//!
//! - frames come from FFmpeg's decoder for the first video stream, in decoding output order,
//!   numbered from 0; frame `n` is hashed when `n % frame_mod == 0`, where `frame_mod` is
//!   `seconds_per_hash × avg_frame_rate` truncated (at least 1; `r_frame_rate` when the
//!   average is unknown);
//! - each is converted to RGB24 at the stream's own size by swscale's area filter, and hashed
//!   whole by PDQ, without the 512-pixel pre-resize of the image path and with the luma of
//!   Meta's C++ (`f32` arithmetic, [`PdqHasher::hash_rgb24_rows`]);
//! - a frame's timestamp is its number over the frame rate, in `f32` as there.
//!
//! Limits are checked before decoding (the container's duration, the stream's pixels) and
//! again while decoding (a crafted file may lie in its header).

use std::path::Path;

use ffmpeg::format::Pixel;
use ffmpeg::software::scaling;
use ffmpeg_next as ffmpeg;

use super::pdq::{Pdq256, PdqHasher};

/// What to hash of a video, and the limits that protect the machine doing it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct VideoOptions {
    /// One frame per this many seconds (0: every frame).
    pub seconds_per_hash: f64,
    /// Refused before decoding when the container says it is longer, and stopped when the
    /// frames decoded add up to more.
    pub max_seconds: f64,
    /// Refused when a frame has more pixels than this.
    pub max_pixels: u64,
}

/// One hashed frame.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct VpdqFrame {
    /// The frame's number in decoding output order, from 0.
    pub frame: u64,
    /// `frame / frame_rate` in seconds, rounded as Meta's reference does (`f32`).
    pub timestamp: f32,
    pub pdq: Pdq256,
    pub quality: u8,
}

/// Why a video could not be hashed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum VideoError {
    #[error("not a video FFmpeg can read: {0}")]
    Unreadable(String),
    #[error("no video stream in the file")]
    NoVideoStream,
    #[error("the video stream has no frame rate")]
    NoFrameRate,
    #[error("the video is {seconds:.1} s long, the limit is {max} s")]
    TooLong { seconds: f64, max: f64 },
    #[error("frames of {width}x{height} are {pixels} pixels, the limit is {max}")]
    TooLarge {
        width: u32,
        height: u32,
        pixels: u64,
        max: u64,
    },
    #[error(
        "frame {frame} is {width}x{height}, the stream was {stream_width}x{stream_height}: size changes are not supported"
    )]
    SizeChanged {
        frame: u64,
        width: u32,
        height: u32,
        stream_width: u32,
        stream_height: u32,
    },
    #[error("decoding failed at frame {frame}: {detail}")]
    Decode { frame: u64, detail: String },
}

/// Hashes the video at `path`: one [`VpdqFrame`] per selected frame, in frame order.
pub fn hash_video(
    path: &Path,
    options: &VideoOptions,
    pdq: &mut PdqHasher,
) -> Result<Vec<VpdqFrame>, VideoError> {
    let unreadable = |e: ffmpeg::Error| VideoError::Unreadable(e.to_string());
    ffmpeg::init().map_err(unreadable)?;
    // FFmpeg's own messages would interleave with our output; its errors come back here.
    ffmpeg::util::log::set_level(ffmpeg::util::log::Level::Fatal);
    let mut input = ffmpeg::format::input(path).map_err(unreadable)?;
    let duration = input.duration();
    if duration > 0 {
        // In AV_TIME_BASE units (microseconds).
        let seconds = duration as f64 / 1_000_000.0;
        if seconds > options.max_seconds {
            return Err(VideoError::TooLong {
                seconds,
                max: options.max_seconds,
            });
        }
    }
    // The first video stream, as the reference takes it (not FFmpeg's "best").
    let stream = input
        .streams()
        .find(|s| s.parameters().medium() == ffmpeg::media::Type::Video)
        .ok_or(VideoError::NoVideoStream)?;
    let index = stream.index();
    let rate = {
        let avg = stream.avg_frame_rate();
        if avg.numerator() != 0 && avg.denominator() != 0 {
            avg
        } else {
            stream.rate()
        }
    };
    if rate.numerator() == 0 || rate.denominator() == 0 {
        return Err(VideoError::NoFrameRate);
    }
    let frame_rate = f64::from(rate.numerator()) / f64::from(rate.denominator());
    if frame_rate <= 0.0 || !frame_rate.is_finite() {
        return Err(VideoError::NoFrameRate);
    }
    let context = ffmpeg::codec::context::Context::from_parameters(stream.parameters())
        .map_err(unreadable)?;
    let mut decoder = context.decoder().video().map_err(unreadable)?;
    let (width, height) = (decoder.width(), decoder.height());
    let pixels = u64::from(width) * u64::from(height);
    if width == 0 || height == 0 {
        return Err(VideoError::Unreadable(
            "the stream has no frame size".into(),
        ));
    }
    if pixels > options.max_pixels {
        return Err(VideoError::TooLarge {
            width,
            height,
            pixels,
            max: options.max_pixels,
        });
    }
    // Truncated as the reference does (`static_cast<int>`), at least 1.
    let frame_mod = ((options.seconds_per_hash * frame_rate) as u64).max(1);
    let max_frames = (options.max_seconds * frame_rate).ceil() as u64 + 1;
    let mut hasher = FrameHasher {
        scaler: None,
        width,
        height,
        frame_rate: frame_rate as f32,
        frame_mod,
        max_frames,
        next: 0,
        decoded: ffmpeg::frame::Video::empty(),
        rgb: ffmpeg::frame::Video::empty(),
        out: Vec::new(),
    };
    for (s, packet) in input.packets() {
        if s.index() != index {
            continue;
        }
        decoder
            .send_packet(&packet)
            .map_err(|e| VideoError::Decode {
                frame: hasher.next,
                detail: e.to_string(),
            })?;
        hasher.receive(&mut decoder, pdq, options)?;
    }
    decoder.send_eof().map_err(|e| VideoError::Decode {
        frame: hasher.next,
        detail: e.to_string(),
    })?;
    hasher.receive(&mut decoder, pdq, options)?;
    Ok(hasher.out)
}

/// Frames out of the decoder, the selected ones hashed.
struct FrameHasher {
    scaler: Option<scaling::Context>,
    width: u32,
    height: u32,
    frame_rate: f32,
    frame_mod: u64,
    max_frames: u64,
    /// The number the next decoded frame gets.
    next: u64,
    decoded: ffmpeg::frame::Video,
    rgb: ffmpeg::frame::Video,
    out: Vec<VpdqFrame>,
}

impl FrameHasher {
    /// Takes every frame the decoder has ready.
    fn receive(
        &mut self,
        decoder: &mut ffmpeg::decoder::Video,
        pdq: &mut PdqHasher,
        options: &VideoOptions,
    ) -> Result<(), VideoError> {
        while decoder.receive_frame(&mut self.decoded).is_ok() {
            let number = self.next;
            self.next += 1;
            if self.next > self.max_frames {
                return Err(VideoError::TooLong {
                    seconds: number as f64 / f64::from(self.frame_rate),
                    max: options.max_seconds,
                });
            }
            if !number.is_multiple_of(self.frame_mod) {
                continue;
            }
            let (w, h) = (self.decoded.width(), self.decoded.height());
            if (w, h) != (self.width, self.height) {
                return Err(VideoError::SizeChanged {
                    frame: number,
                    width: w,
                    height: h,
                    stream_width: self.width,
                    stream_height: self.height,
                });
            }
            let decode_error = |e: ffmpeg::Error| VideoError::Decode {
                frame: number,
                detail: e.to_string(),
            };
            if self.scaler.is_none() {
                self.scaler = Some(
                    scaling::Context::get(
                        self.decoded.format(),
                        w,
                        h,
                        Pixel::RGB24,
                        self.width,
                        self.height,
                        scaling::Flags::AREA,
                    )
                    .map_err(decode_error)?,
                );
            }
            let scaler = self.scaler.as_mut().expect("created above");
            scaler
                .run(&self.decoded, &mut self.rgb)
                .map_err(decode_error)?;
            let out = pdq.hash_rgb24_rows(
                self.rgb.data(0),
                self.width as usize,
                self.height as usize,
                self.rgb.stride(0),
            );
            self.out.push(VpdqFrame {
                frame: number,
                timestamp: number as f32 / self.frame_rate,
                pdq: out.hash,
                quality: out.quality,
            });
        }
        Ok(())
    }
}

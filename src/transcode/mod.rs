//! Per-frame pixel codecs and rendering.
//!
//! This module owns everything that looks inside pixel data: decoding one
//! frame of any supported transfer syntax into native little-endian samples,
//! encoding native samples into a target transfer syntax, and rendering a
//! frame to JPEG or PNG for `/rendered` requests. It never parses DICOM data
//! sets: callers cut the frame out of the stored file (native frames as raw
//! little-endian bytes, encapsulated frames as the concatenated fragments of
//! that frame) and describe it with a [`PixelDesc`].
//!
//! Everything here is CPU-bound and synchronous; callers run it on a bounded
//! blocking pool, never on the async executor.
//!
//! # What decoding yields
//!
//! [`decode_frame`] returns samples exactly as Explicit VR Little Endian
//! would hold them, colour interleaved (Planar Configuration 0). Samples are
//! normalised: bits above High Bit are the sign extension of the stored value
//! for signed data and zero for unsigned data. The photometric
//! interpretation of the output is:
//!
//! | source | output photometric |
//! |---|---|
//! | native, RLE, JPEG Lossless, JPEG-LS | unchanged (RLE and JPEG-LS do no colour transform) |
//! | JPEG baseline/extended, 3 samples | `RGB` (the JPEG YCbCr transform is undone, chroma upsampled) |
//! | JPEG 2000 / HTJ2K with `YBR_RCT` or `YBR_ICT` | `RGB` (the codestream's MCT is undone) |
//!
//! Lossy reconstructions are clamped to the stored range.
//! | JPEG 2000 / HTJ2K otherwise | unchanged |
//!
//! # What encoding yields
//!
//! [`encode_frame`] is lossless unless the target syntax is lossy
//! (`.50`, `.81`, `.91`, `.203`). JPEG 2000 Part 1 (`.90`, `.91`) cannot be
//! encoded: no encoder reachable from safe Rust exists on this toolchain.
//! See [`can_encode`].

mod htj2k;
mod j2k;
mod jpeg;
mod jpeg_lossless;
mod jpegls;
mod native;
pub mod pool;
mod render;
mod rle;

#[cfg(test)]
mod tests;

pub use render::{render, PaletteLut, RenderFormat, RenderOptions, Rendered, VoiFunction, Window};

/// Transfer syntax UIDs this module knows about.
pub mod ts {
    /// Implicit VR Little Endian.
    pub const IMPLICIT_VR_LE: &str = "1.2.840.10008.1.2";
    /// Explicit VR Little Endian.
    pub const EXPLICIT_VR_LE: &str = "1.2.840.10008.1.2.1";
    /// RLE Lossless.
    pub const RLE_LOSSLESS: &str = "1.2.840.10008.1.2.5";
    /// JPEG Baseline (Process 1).
    pub const JPEG_BASELINE: &str = "1.2.840.10008.1.2.4.50";
    /// JPEG Extended (Process 2 & 4).
    pub const JPEG_EXTENDED: &str = "1.2.840.10008.1.2.4.51";
    /// JPEG Lossless, Non-Hierarchical (Process 14).
    pub const JPEG_LOSSLESS: &str = "1.2.840.10008.1.2.4.57";
    /// JPEG Lossless, Non-Hierarchical, First-Order Prediction (Process 14, SV1).
    pub const JPEG_LOSSLESS_SV1: &str = "1.2.840.10008.1.2.4.70";
    /// JPEG-LS Lossless.
    pub const JPEG_LS_LOSSLESS: &str = "1.2.840.10008.1.2.4.80";
    /// JPEG-LS Lossy (Near-Lossless).
    pub const JPEG_LS_NEAR: &str = "1.2.840.10008.1.2.4.81";
    /// JPEG 2000 Image Compression (Lossless Only).
    pub const J2K_LOSSLESS: &str = "1.2.840.10008.1.2.4.90";
    /// JPEG 2000 Image Compression.
    pub const J2K: &str = "1.2.840.10008.1.2.4.91";
    /// High-Throughput JPEG 2000 Image Compression (Lossless Only).
    pub const HTJ2K_LOSSLESS: &str = "1.2.840.10008.1.2.4.201";
    /// High-Throughput JPEG 2000 with RPCL Options Image Compression (Lossless Only).
    pub const HTJ2K_RPCL: &str = "1.2.840.10008.1.2.4.202";
    /// High-Throughput JPEG 2000 Image Compression.
    pub const HTJ2K: &str = "1.2.840.10008.1.2.4.203";
}

/// Pixel description of a frame (from the instance's attributes).
#[derive(Debug, Clone, PartialEq)]
pub struct PixelDesc {
    pub rows: u16,
    pub columns: u16,
    pub samples_per_pixel: u16,
    pub bits_allocated: u16,
    pub bits_stored: u16,
    pub high_bit: u16,
    pub pixel_representation: u16,
    /// Photometric Interpretation without padding, e.g. `MONOCHROME2`.
    pub photometric: String,
    pub planar_configuration: u16,
}

impl PixelDesc {
    /// Whether samples are two's complement (Pixel Representation 1).
    pub fn is_signed(&self) -> bool {
        self.pixel_representation == 1
    }

    /// Number of samples in one frame (rows × columns × samples per pixel).
    pub fn sample_count(&self) -> usize {
        usize::from(self.rows) * usize::from(self.columns) * usize::from(self.samples_per_pixel)
    }

    /// Size in bytes of one native frame.
    pub fn frame_len(&self) -> usize {
        self.sample_count() * usize::from(self.bits_allocated / 8)
    }
}

/// Decoded native frame: little-endian samples exactly as Explicit VR LE
/// would hold them (interleaved colour, i.e. planar 0, unless
/// `desc.planar_configuration` says otherwise).
#[derive(Debug, Clone, PartialEq)]
pub struct NativeFrame {
    pub desc: PixelDesc,
    pub data: Vec<u8>,
}

/// Quality knobs for lossy targets; ignored by lossless ones.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Quality {
    /// JPEG baseline quality, 1–100.
    pub jpeg: u8,
    /// JPEG-LS NEAR parameter (maximum absolute error per sample) for `.81`.
    pub near_lossless: u8,
    /// Lossy HTJ2K (`.203`) strength. openjph-core has no rate control, so
    /// this sets the quantisation step to `j2k_ratio / 2` stored units
    /// (10 → step 5, maximum error about 4 steps); the achieved ratio is
    /// reported in [`LossyInfo::ratio`].
    pub j2k_ratio: f32,
}

impl Default for Quality {
    fn default() -> Self {
        Quality {
            jpeg: 90,
            near_lossless: 2,
            j2k_ratio: 10.0,
        }
    }
}

/// What a lossy encoding did, for Lossy Image Compression (0028,2110..2114).
#[derive(Debug, Clone, PartialEq)]
pub struct LossyInfo {
    /// Native size divided by encoded size.
    pub ratio: f64,
    /// Lossy Image Compression Method: `ISO_10918_1`, `ISO_14495_1`,
    /// `ISO_15444_1` or `ISO_15444_15`.
    pub method: &'static str,
}

/// One encoded frame.
#[derive(Debug, Clone, PartialEq)]
pub struct Encoded {
    /// The frame's bytes: native samples, or the encapsulated frame
    /// (one fragment's worth; even padding is the caller's job).
    pub bytes: Vec<u8>,
    /// Pixel description of the encoded frame (the photometric may change,
    /// e.g. `YBR_FULL_422` for JPEG baseline colour, `YBR_RCT` for
    /// reversible HTJ2K colour).
    pub desc: PixelDesc,
    /// Set when the encoding lost information.
    pub lossy: Option<LossyInfo>,
}

/// Why a frame could not be transcoded or rendered. Messages are fit for an
/// HTTP 406/500 body.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TranscodeError {
    /// The source transfer syntax has no decoder here.
    #[error("cannot decode transfer syntax {0}")]
    UnsupportedSource(String),
    /// The target transfer syntax has no encoder here, or not for this image.
    #[error("cannot encode to transfer syntax {0}")]
    UnsupportedTarget(String),
    /// The pixel layout (bits, samples, photometric) is not handled.
    #[error("unsupported pixel layout: {0}")]
    UnsupportedPixels(String),
    /// The frame bytes do not match the description or the codec rejected them.
    #[error("corrupt frame: {0}")]
    Corrupt(String),
    /// An encoder failed on valid input.
    #[error("encoder failed: {0}")]
    Encoder(String),
    /// Rendering failed.
    #[error("rendering failed: {0}")]
    Render(String),
}

/// Whether [`decode_frame`] handles this transfer syntax.
pub fn can_decode(ts_uid: &str) -> bool {
    matches!(
        ts_uid,
        ts::IMPLICIT_VR_LE
            | ts::EXPLICIT_VR_LE
            | ts::RLE_LOSSLESS
            | ts::JPEG_BASELINE
            | ts::JPEG_EXTENDED
            | ts::JPEG_LOSSLESS
            | ts::JPEG_LOSSLESS_SV1
            | ts::JPEG_LS_LOSSLESS
            | ts::JPEG_LS_NEAR
            | ts::J2K_LOSSLESS
            | ts::J2K
            | ts::HTJ2K_LOSSLESS
            | ts::HTJ2K_RPCL
            | ts::HTJ2K
    )
}

/// Whether [`encode_frame`] can write this frame in this transfer syntax.
pub fn can_encode(ts_uid: &str, desc: &PixelDesc) -> bool {
    if native::validate(desc).is_err() {
        return false;
    }
    match ts_uid {
        ts::IMPLICIT_VR_LE | ts::EXPLICIT_VR_LE | ts::RLE_LOSSLESS => true,
        ts::JPEG_LOSSLESS | ts::JPEG_LOSSLESS_SV1 => jpeg_lossless::supports(desc),
        ts::JPEG_BASELINE => jpeg::can_encode_baseline(desc),
        ts::JPEG_LS_LOSSLESS | ts::JPEG_LS_NEAR => jpegls::supports(desc),
        ts::HTJ2K_LOSSLESS | ts::HTJ2K_RPCL | ts::HTJ2K => htj2k::supports(desc),
        _ => false,
    }
}

/// Decode one frame of `ts_uid` into native samples (see the module docs
/// for the output photometric).
pub fn decode_frame(
    ts_uid: &str,
    frame: &[u8],
    desc: &PixelDesc,
) -> Result<NativeFrame, TranscodeError> {
    native::validate(desc)?;
    match ts_uid {
        ts::IMPLICIT_VR_LE | ts::EXPLICIT_VR_LE => native::decode(frame, desc),
        ts::RLE_LOSSLESS => rle::decode(frame, desc),
        ts::JPEG_BASELINE | ts::JPEG_EXTENDED | ts::JPEG_LOSSLESS | ts::JPEG_LOSSLESS_SV1 => {
            guard("JPEG decoder", || jpeg::decode(frame, desc))
        }
        ts::JPEG_LS_LOSSLESS | ts::JPEG_LS_NEAR => {
            guard("JPEG-LS decoder", || jpegls::decode(frame, desc))
        }
        ts::J2K_LOSSLESS | ts::J2K => j2k::decode(frame, desc),
        ts::HTJ2K_LOSSLESS | ts::HTJ2K_RPCL | ts::HTJ2K => htj2k::decode(frame, desc),
        other => Err(TranscodeError::UnsupportedSource(other.to_string())),
    }
}

/// Encode a native frame into `target_ts`.
pub fn encode_frame(
    target_ts: &str,
    frame: &NativeFrame,
    quality: Quality,
) -> Result<Encoded, TranscodeError> {
    native::validate(&frame.desc)?;
    // Work on interleaved, normalised samples whatever the caller handed in.
    let frame = native::decode(&frame.data, &frame.desc)?;
    match target_ts {
        ts::IMPLICIT_VR_LE | ts::EXPLICIT_VR_LE => Ok(Encoded {
            bytes: frame.data,
            desc: frame.desc,
            lossy: None,
        }),
        ts::RLE_LOSSLESS => rle::encode(&frame),
        ts::JPEG_LOSSLESS | ts::JPEG_LOSSLESS_SV1 => jpeg_lossless::encode(&frame),
        ts::JPEG_BASELINE => jpeg::encode_baseline(&frame, quality.jpeg),
        ts::JPEG_LS_LOSSLESS => jpegls::encode(&frame, 0),
        ts::JPEG_LS_NEAR => jpegls::encode(&frame, quality.near_lossless),
        ts::HTJ2K_LOSSLESS => guard("HTJ2K encoder", || {
            htj2k::encode(&frame, htj2k::Mode::Lossless)
        }),
        ts::HTJ2K_RPCL => guard("HTJ2K encoder", || {
            htj2k::encode(&frame, htj2k::Mode::LosslessRpcl)
        }),
        ts::HTJ2K => guard("HTJ2K encoder", || {
            htj2k::encode(&frame, htj2k::Mode::Lossy(quality.j2k_ratio))
        }),
        ts::J2K_LOSSLESS | ts::J2K => Err(TranscodeError::UnsupportedTarget(format!(
            "{target_ts} (JPEG 2000 Part 1 encoding is not available; \
             HTJ2K {} is the lossless JPEG 2000 family alternative)",
            ts::HTJ2K_LOSSLESS
        ))),
        other => Err(TranscodeError::UnsupportedTarget(other.to_string())),
    }
}

/// Decode from `src_ts` and encode into `target_ts`. When both are equal
/// the frame is passed through untouched (no generation loss), and so is a
/// change between the two native little-endian syntaxes.
pub fn transcode_frame(
    src_ts: &str,
    frame: &[u8],
    desc: &PixelDesc,
    target_ts: &str,
    quality: Quality,
) -> Result<Encoded, TranscodeError> {
    let native_pair = |t: &str| t == ts::IMPLICIT_VR_LE || t == ts::EXPLICIT_VR_LE;
    if src_ts == target_ts || (native_pair(src_ts) && native_pair(target_ts)) {
        return Ok(Encoded {
            bytes: frame.to_vec(),
            desc: desc.clone(),
            lossy: None,
        });
    }
    if !can_decode(src_ts) {
        return Err(TranscodeError::UnsupportedSource(src_ts.to_string()));
    }
    let native = decode_frame(src_ts, frame, desc)?;
    encode_frame(target_ts, &native, quality)
}

/// Run a codec call, turning a panic inside a third-party codec (they are
/// ports of C and C++ code and index-check rather than validate) into a
/// `Corrupt` error, so one bad frame cannot take a worker down.
fn guard<T>(
    what: &str,
    f: impl FnOnce() -> Result<T, TranscodeError>,
) -> Result<T, TranscodeError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or_else(|_| {
        Err(TranscodeError::Corrupt(format!(
            "{what} gave up on this frame"
        )))
    })
}

/// Native size over encoded size, for [`LossyInfo::ratio`].
fn ratio(desc: &PixelDesc, encoded_len: usize) -> f64 {
    desc.frame_len() as f64 / encoded_len.max(1) as f64
}

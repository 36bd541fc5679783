//! JPEG (ISO 10918-1): decoding of baseline, extended (8-bit) and lossless
//! frames with `jpeg-decoder`, and baseline encoding with `jpeg-encoder`.
//!
//! 12-bit DCT (the 12-bit half of `.51`) is not decodable: `jpeg-decoder`
//! rejects it, and we say so rather than guess. Lossy colour frames come
//! out as `RGB` (the decoder undoes YCbCr and chroma subsampling); lossless
//! frames come out exactly as stored (JPEG lossless has no colour
//! transform).

use super::native::{self, frame_from_samples};
use super::{ratio, Encoded, LossyInfo, NativeFrame, PixelDesc, TranscodeError};

/// What the frame header (SOFn) says.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct FrameHeader {
    pub sof: u8,
    pub precision: u8,
    pub rows: u16,
    pub cols: u16,
    pub components: u8,
}

/// Find the first SOFn marker segment and read it.
pub(crate) fn frame_header(data: &[u8]) -> Option<FrameHeader> {
    if data.get(..2)? != [0xFF, 0xD8] {
        return None;
    }
    let mut i = 2;
    loop {
        // skip fill bytes
        while *data.get(i)? == 0xFF && *data.get(i + 1)? == 0xFF {
            i += 1;
        }
        if *data.get(i)? != 0xFF {
            return None;
        }
        let marker = *data.get(i + 1)?;
        let len = usize::from(u16::from_be_bytes([*data.get(i + 2)?, *data.get(i + 3)?]));
        let is_sof = matches!(marker, 0xC0..=0xCF) && !matches!(marker, 0xC4 | 0xC8 | 0xCC);
        if is_sof {
            let s = data.get(i + 4..i + 10)?;
            return Some(FrameHeader {
                sof: marker,
                precision: s[0],
                rows: u16::from_be_bytes([s[1], s[2]]),
                cols: u16::from_be_bytes([s[3], s[4]]),
                components: s[5],
            });
        }
        if marker == 0xDA || len < 2 {
            return None;
        }
        i += 2 + len;
    }
}

fn err(m: impl std::fmt::Display) -> TranscodeError {
    TranscodeError::Corrupt(format!("JPEG: {m}"))
}

/// Decode a JPEG frame (any of `.50`, `.51`, `.57`, `.70`).
pub(crate) fn decode(frame: &[u8], desc: &PixelDesc) -> Result<NativeFrame, TranscodeError> {
    let h = frame_header(frame).ok_or_else(|| err("no frame header (SOF) found"))?;
    if h.rows != desc.rows || h.cols != desc.columns {
        return Err(err(format!(
            "frame is {}x{}, attributes say {}x{}",
            h.cols, h.rows, desc.columns, desc.rows
        )));
    }
    if u16::from(h.components) != desc.samples_per_pixel {
        return Err(err(format!(
            "{} components, Samples per Pixel is {}",
            h.components, desc.samples_per_pixel
        )));
    }
    let lossless = matches!(h.sof, 0xC3 | 0xC7 | 0xCB | 0xCF);
    if !lossless && h.precision != 8 {
        return Err(TranscodeError::UnsupportedSource(format!(
            "JPEG with {}-bit DCT (only 8-bit lossy JPEG is decodable here)",
            h.precision
        )));
    }
    if matches!(h.sof, 0xC5..=0xC7 | 0xCD..=0xCF) {
        return Err(TranscodeError::UnsupportedSource(
            "hierarchical JPEG".into(),
        ));
    }
    let mut decoder = jpeg_decoder::Decoder::new(frame);
    let pixels = decoder.decode().map_err(err)?;
    let n = desc.sample_count();
    let samples: Vec<i32> = if pixels.len() == n {
        pixels
            .iter()
            .map(|&b| native::normalise(u32::from(b), desc))
            .collect()
    } else if pixels.len() == 2 * n {
        // jpeg-decoder hands out 16-bit samples in native byte order
        pixels
            .chunks_exact(2)
            .map(|c| native::normalise(u32::from(u16::from_ne_bytes([c[0], c[1]])), desc))
            .collect()
    } else {
        return Err(err(format!(
            "decoder produced {} bytes for {n} samples",
            pixels.len()
        )));
    };
    let photometric = if !lossless && desc.samples_per_pixel == 3 {
        "RGB"
    } else {
        desc.photometric.as_str()
    };
    frame_from_samples(&samples, desc, photometric)
}

/// Whether JPEG baseline can carry this frame: 8-bit unsigned samples,
/// monochrome or RGB/YBR_FULL colour.
pub(crate) fn can_encode_baseline(desc: &PixelDesc) -> bool {
    desc.bits_stored <= 8
        && desc.bits_allocated == 8
        && !desc.is_signed()
        && match desc.samples_per_pixel {
            1 => desc.photometric.starts_with("MONOCHROME"),
            3 => desc.photometric == "RGB",
            _ => false,
        }
}

/// Encode 8-bit samples as JPEG baseline. Colour is written as YCbCr with
/// 4:2:2 subsampling, so the encoded photometric is `YBR_FULL_422`.
pub(crate) fn encode_baseline(frame: &NativeFrame, quality: u8) -> Result<Encoded, TranscodeError> {
    let desc = &frame.desc;
    if !can_encode_baseline(desc) {
        return Err(TranscodeError::UnsupportedTarget(format!(
            "{} needs 8-bit unsigned MONOCHROME or RGB samples",
            super::ts::JPEG_BASELINE
        )));
    }
    let samples = native::samples(frame);
    let bytes: Vec<u8> = samples.iter().map(|&v| v.clamp(0, 255) as u8).collect();
    let mut out = Vec::new();
    let mut enc = jpeg_encoder::Encoder::new(&mut out, quality.clamp(1, 100));
    let (color, photometric) = if desc.samples_per_pixel == 3 {
        enc.set_sampling_factor(jpeg_encoder::SamplingFactor::F_2_1);
        (jpeg_encoder::ColorType::Rgb, "YBR_FULL_422".to_string())
    } else {
        (jpeg_encoder::ColorType::Luma, desc.photometric.clone())
    };
    enc.encode(&bytes, desc.columns, desc.rows, color)
        .map_err(|e| TranscodeError::Encoder(format!("JPEG baseline: {e}")))?;
    let mut out_desc = desc.clone();
    out_desc.photometric = photometric;
    out_desc.planar_configuration = 0;
    out_desc.bits_stored = 8;
    out_desc.high_bit = 7;
    Ok(Encoded {
        lossy: Some(LossyInfo {
            ratio: ratio(desc, out.len()),
            method: "ISO_10918_1",
        }),
        bytes: out,
        desc: out_desc,
    })
}

//! JPEG-LS (ISO 14495-1) through CharLS: `.80` lossless and `.81`
//! near-lossless. Samples are coded as their stored bit patterns
//! (P = Bits Stored), so signed data round-trips as two's complement; the
//! photometric is unchanged (no colour transform is used).

use super::native::{self, frame_from_samples, planar_to_interleaved};
use super::{ratio, Encoded, LossyInfo, NativeFrame, PixelDesc, TranscodeError};

/// 2..=16 stored bits, any photometric.
pub(crate) fn supports(desc: &PixelDesc) -> bool {
    desc.bits_stored >= 2
}

fn err(m: impl std::fmt::Display) -> TranscodeError {
    TranscodeError::Corrupt(format!("JPEG-LS: {m}"))
}

/// Interleave mode (ILV) of the first scan, from its SOS segment:
/// 0 none (one scan per component), 1 line, 2 sample.
fn first_scan_interleave(data: &[u8]) -> Option<u8> {
    let mut i = 2;
    loop {
        while *data.get(i)? == 0xFF && *data.get(i + 1)? == 0xFF {
            i += 1;
        }
        if *data.get(i)? != 0xFF {
            return None;
        }
        let marker = *data.get(i + 1)?;
        let len = usize::from(u16::from_be_bytes([*data.get(i + 2)?, *data.get(i + 3)?]));
        if marker == 0xDA {
            let ns = usize::from(*data.get(i + 4)?);
            return data.get(i + 4 + 1 + 2 * ns + 1).copied();
        }
        if len < 2 {
            return None;
        }
        i += 2 + len;
    }
}

/// Decode one JPEG-LS frame.
pub(crate) fn decode(frame: &[u8], desc: &PixelDesc) -> Result<NativeFrame, TranscodeError> {
    let mut codec = charls::CharLS::default();
    let info = codec.get_frame_info(frame).map_err(err)?;
    if info.width != u32::from(desc.columns)
        || info.height != u32::from(desc.rows)
        || info.component_count != i32::from(desc.samples_per_pixel)
    {
        return Err(err(format!(
            "frame is {}x{}x{}, attributes say {}x{}x{}",
            info.width,
            info.height,
            info.component_count,
            desc.columns,
            desc.rows,
            desc.samples_per_pixel
        )));
    }
    if !(2..=16).contains(&info.bits_per_sample) {
        return Err(err(format!("{} bits per sample", info.bits_per_sample)));
    }
    let mut codec = charls::CharLS::default();
    let pixels = codec.decode(frame).map_err(err)?;
    let n = desc.sample_count();
    let wide = info.bits_per_sample > 8;
    let expected = if wide { 2 * n } else { n };
    if pixels.len() != expected {
        return Err(err(format!(
            "decoder produced {} bytes, expected {expected}",
            pixels.len()
        )));
    }
    let mut samples: Vec<i32> = if wide {
        pixels
            .chunks_exact(2)
            .map(|c| native::normalise(u32::from(u16::from_le_bytes([c[0], c[1]])), desc))
            .collect()
    } else {
        pixels
            .iter()
            .map(|&b| native::normalise(u32::from(b), desc))
            .collect()
    };
    if desc.samples_per_pixel == 3 && first_scan_interleave(frame) == Some(0) {
        // ILV none decodes plane by plane
        samples = planar_to_interleaved(&samples, 3);
    }
    frame_from_samples(&samples, desc, &desc.photometric)
}

/// Encode an interleaved, normalised native frame with the given NEAR
/// (0 = lossless).
pub(crate) fn encode(frame: &NativeFrame, near: u8) -> Result<Encoded, TranscodeError> {
    let desc = &frame.desc;
    if !supports(desc) {
        return Err(TranscodeError::UnsupportedTarget(
            "JPEG-LS needs at least 2 stored bits".into(),
        ));
    }
    let bits = u32::from(desc.bits_stored);
    let mask = (1u32 << bits) - 1;
    let samples = native::samples(frame);
    if near > 0 && desc.is_signed() {
        // Near-lossless works on the stored bit patterns: a value within NEAR
        // of the signed extremes could be reconstructed across the wrap
        // (e.g. -32768 as 32766). Refuse rather than corrupt.
        let (lo, hi) = native::range(desc);
        let near = i32::from(near);
        if samples.iter().any(|&v| v < lo + near || v > hi - near) {
            return Err(TranscodeError::UnsupportedTarget(format!(
                "{}: signed samples within NEAR of their range limits",
                super::ts::JPEG_LS_NEAR
            )));
        }
    }
    let src: Vec<u8> = if bits > 8 {
        samples
            .iter()
            .flat_map(|&v| (((v as u32) & mask) as u16).to_le_bytes())
            .collect()
    } else {
        samples.iter().map(|&v| ((v as u32) & mask) as u8).collect()
    };
    let mut codec = charls::CharLS::default();
    if desc.samples_per_pixel == 3 {
        codec
            .set_interleave_mode(charls::InterleaveMode::Sample)
            .map_err(|e| TranscodeError::Encoder(format!("JPEG-LS: {e}")))?;
    }
    let info = charls::FrameInfo {
        width: u32::from(desc.columns),
        height: u32::from(desc.rows),
        bits_per_sample: bits as i32,
        component_count: i32::from(desc.samples_per_pixel),
    };
    let out = codec
        .encode(info, i32::from(near), &src)
        .map_err(|e| TranscodeError::Encoder(format!("JPEG-LS: {e}")))?;
    let lossy = (near > 0).then(|| LossyInfo {
        ratio: ratio(desc, out.len()),
        method: "ISO_14495_1",
    });
    Ok(Encoded {
        bytes: out,
        desc: desc.clone(),
        lossy,
    })
}

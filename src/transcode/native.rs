//! Native (uncompressed little-endian) samples: validation of a
//! [`PixelDesc`], conversion between bytes and normalised `i32` samples,
//! and planar ↔ interleaved reordering. Every codec goes through here so
//! that masking and sign extension are done in one place.

use super::{NativeFrame, PixelDesc, TranscodeError};

/// Check that the description is one this module handles: 8 or 16 bits
/// allocated, 1 or 3 samples per pixel, a sane stored-bits/high-bit pair.
pub(crate) fn validate(desc: &PixelDesc) -> Result<(), TranscodeError> {
    let bad = |m: String| Err(TranscodeError::UnsupportedPixels(m));
    if desc.rows == 0 || desc.columns == 0 {
        return bad(format!("empty frame {}x{}", desc.columns, desc.rows));
    }
    if desc.bits_allocated != 8 && desc.bits_allocated != 16 {
        return bad(format!(
            "Bits Allocated {} (8 or 16 supported)",
            desc.bits_allocated
        ));
    }
    if desc.bits_stored == 0 || desc.bits_stored > desc.bits_allocated {
        return bad(format!(
            "Bits Stored {} with Bits Allocated {}",
            desc.bits_stored, desc.bits_allocated
        ));
    }
    if desc.high_bit + 1 < desc.bits_stored || desc.high_bit >= desc.bits_allocated {
        return bad(format!(
            "High Bit {} with Bits Stored {}",
            desc.high_bit, desc.bits_stored
        ));
    }
    if desc.samples_per_pixel != 1 && desc.samples_per_pixel != 3 {
        return bad(format!("Samples per Pixel {}", desc.samples_per_pixel));
    }
    if desc.pixel_representation > 1 {
        return bad(format!(
            "Pixel Representation {}",
            desc.pixel_representation
        ));
    }
    Ok(())
}

/// Bit shift of the stored value inside the allocated word.
fn shift(desc: &PixelDesc) -> u32 {
    u32::from(desc.high_bit + 1 - desc.bits_stored)
}

/// Turn the stored bits of a raw word into the sample value.
pub(crate) fn normalise(raw: u32, desc: &PixelDesc) -> i32 {
    let bits = u32::from(desc.bits_stored);
    let mask = if bits >= 32 {
        u32::MAX
    } else {
        (1u32 << bits) - 1
    };
    let v = (raw >> shift(desc)) & mask;
    if desc.is_signed() && bits < 32 && v & (1 << (bits - 1)) != 0 {
        (i64::from(v) - (1i64 << bits)) as i32
    } else {
        v as i32
    }
}

/// Smallest and largest value of a sample.
pub(crate) fn range(desc: &PixelDesc) -> (i32, i32) {
    let bits = u32::from(desc.bits_stored);
    if desc.is_signed() {
        (-(1i32 << (bits - 1)), (1i32 << (bits - 1)) - 1)
    } else {
        (0, ((1u32 << bits) - 1) as i32)
    }
}

/// A value from a JPEG 2000 decoder: an unsigned component of signed data
/// holds the stored bit pattern (sign-extend it); anything else is a value,
/// clamped to the stored range (lossy reconstruction may overshoot).
pub(crate) fn from_codec(v: i32, codec_signed: bool, desc: &PixelDesc) -> i32 {
    if desc.is_signed() && !codec_signed {
        normalise(v as u32, desc)
    } else {
        let (lo, hi) = range(desc);
        v.clamp(lo, hi)
    }
}

/// Turn a sample value into the raw word as stored (sign-extended to
/// Bits Allocated for signed data).
pub(crate) fn denormalise(v: i32, desc: &PixelDesc) -> u16 {
    let bits = u32::from(desc.bits_stored);
    let mask = (1u32 << bits) - 1;
    let mut raw = (v as u32) & mask;
    if desc.is_signed() && raw & (1 << (bits - 1)) != 0 {
        raw |= !mask;
    }
    ((raw << shift(desc)) & 0xFFFF) as u16
}

/// Samples of an interleaved native frame, normalised, in stored order.
pub(crate) fn samples(frame: &NativeFrame) -> Vec<i32> {
    let d = &frame.desc;
    if d.bits_allocated == 8 {
        frame
            .data
            .iter()
            .map(|&b| normalise(u32::from(b), d))
            .collect()
    } else {
        frame
            .data
            .chunks_exact(2)
            .map(|c| normalise(u32::from(u16::from_le_bytes([c[0], c[1]])), d))
            .collect()
    }
}

/// Native bytes for normalised interleaved samples.
pub(crate) fn to_bytes(samples: &[i32], desc: &PixelDesc) -> Vec<u8> {
    if desc.bits_allocated == 8 {
        samples
            .iter()
            .map(|&v| denormalise(v, desc) as u8)
            .collect()
    } else {
        let mut out = Vec::with_capacity(samples.len() * 2);
        for &v in samples {
            out.extend_from_slice(&denormalise(v, desc).to_le_bytes());
        }
        out
    }
}

/// Build a native frame from normalised interleaved samples.
pub(crate) fn frame_from_samples(
    samples: &[i32],
    desc: &PixelDesc,
    photometric: &str,
) -> Result<NativeFrame, TranscodeError> {
    if samples.len() != desc.sample_count() {
        return Err(TranscodeError::Corrupt(format!(
            "decoded {} samples, expected {}",
            samples.len(),
            desc.sample_count()
        )));
    }
    let mut out_desc = desc.clone();
    out_desc.planar_configuration = 0;
    out_desc.photometric = photometric.to_string();
    Ok(NativeFrame {
        data: to_bytes(samples, desc),
        desc: out_desc,
    })
}

/// "Decode" native bytes: check the length, interleave planar colour and
/// normalise bits outside the stored range. Extra trailing bytes (odd
/// padding) are ignored.
pub(crate) fn decode(frame: &[u8], desc: &PixelDesc) -> Result<NativeFrame, TranscodeError> {
    validate(desc)?;
    if desc.samples_per_pixel == 3 && desc.photometric == "YBR_FULL_422" {
        // Codecs that carry 4:2:2 decode to RGB; native 4:2:2 is not handled.
        return Err(TranscodeError::UnsupportedPixels(
            "native YBR_FULL_422 (subsampled) samples".to_string(),
        ));
    }
    let len = desc.frame_len();
    let Some(bytes) = frame.get(..len) else {
        return Err(TranscodeError::Corrupt(format!(
            "native frame has {} bytes, expected {len}",
            frame.len()
        )));
    };
    let raw = NativeFrame {
        desc: desc.clone(),
        data: bytes.to_vec(),
    };
    let mut s = samples(&raw);
    if desc.samples_per_pixel == 3 && desc.planar_configuration == 1 {
        s = planar_to_interleaved(&s, 3);
    }
    frame_from_samples(&s, desc, &desc.photometric)
}

/// `RRRGGGBBB` → `RGBRGBRGB`.
pub(crate) fn planar_to_interleaved<T: Copy + Default>(planes: &[T], n: usize) -> Vec<T> {
    let per = planes.len() / n;
    let mut out = vec![T::default(); per * n];
    for c in 0..n {
        for (i, &v) in planes[c * per..(c + 1) * per].iter().enumerate() {
            out[i * n + c] = v;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn desc(bits_stored: u16, signed: bool) -> PixelDesc {
        PixelDesc {
            rows: 1,
            columns: 2,
            samples_per_pixel: 1,
            bits_allocated: 16,
            bits_stored,
            high_bit: bits_stored - 1,
            pixel_representation: u16::from(signed),
            photometric: "MONOCHROME2".into(),
            planar_configuration: 0,
        }
    }

    #[test]
    fn sign_extension_of_12_bit() {
        let d = desc(12, true);
        assert_eq!(normalise(0x0FFF, &d), -1);
        assert_eq!(normalise(0xFFFF, &d), -1);
        assert_eq!(normalise(0x0800, &d), -2048);
        assert_eq!(denormalise(-1, &d), 0xFFFF);
        assert_eq!(denormalise(2047, &d), 0x07FF);
        let u = desc(12, false);
        assert_eq!(normalise(0xF123, &u), 0x123);
    }

    #[test]
    fn planar_to_interleaved_orders_samples() {
        let p = vec![1, 2, 3, 4, 5, 6];
        let i = planar_to_interleaved(&p, 3);
        assert_eq!(i, vec![1, 3, 5, 2, 4, 6]);
    }

    #[test]
    fn short_frame_is_corrupt() {
        assert!(matches!(
            decode(&[0u8; 3], &desc(16, false)),
            Err(TranscodeError::Corrupt(_))
        ));
    }
}

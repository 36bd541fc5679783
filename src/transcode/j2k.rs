//! JPEG 2000 (ISO 15444-1) decoding through OpenJPEG's pure-Rust port
//! (`jpeg2k` with the `openjp2` backend). Accepts raw codestreams and JP2
//! files. A codestream MCT (RCT or ICT) is undone by the decoder, so
//! `YBR_RCT`/`YBR_ICT` frames come out as `RGB`.
//!
//! Part 1 encoding is not offered: the only encoder reachable here is the
//! C-shaped `openjp2` API, which needs `unsafe` to fill an image.

use super::native::{self, frame_from_samples};
use super::{NativeFrame, PixelDesc, TranscodeError};

fn err(m: impl std::fmt::Display) -> TranscodeError {
    TranscodeError::Corrupt(format!("JPEG 2000: {m}"))
}

/// Photometric after decoding: the codestream's MCT has been undone.
pub(crate) fn decoded_photometric(desc: &PixelDesc) -> &str {
    match desc.photometric.as_str() {
        "YBR_RCT" | "YBR_ICT" => "RGB",
        other => other,
    }
}

/// Decode one JPEG 2000 frame (`.90`, `.91`; also reads HTJ2K).
pub(crate) fn decode(frame: &[u8], desc: &PixelDesc) -> Result<NativeFrame, TranscodeError> {
    let image = super::guard("JPEG 2000 decoder", || {
        jpeg2k::Image::from_bytes(frame).map_err(err)
    })?;
    let comps = image.components();
    let spp = usize::from(desc.samples_per_pixel);
    if comps.len() < spp {
        return Err(err(format!(
            "{} components, Samples per Pixel is {spp}",
            comps.len()
        )));
    }
    let (cols, rows) = (u32::from(desc.columns), u32::from(desc.rows));
    let pixels = usize::from(desc.rows) * usize::from(desc.columns);
    for c in &comps[..spp] {
        if c.width() != cols || c.height() != rows || c.data().len() != pixels {
            return Err(err(format!(
                "component is {}x{}, attributes say {cols}x{rows}",
                c.width(),
                c.height()
            )));
        }
    }
    let mut samples = vec![0i32; pixels * spp];
    for (ci, c) in comps[..spp].iter().enumerate() {
        let signed = c.is_signed();
        for (i, &v) in c.data().iter().enumerate() {
            samples[i * spp + ci] = native::from_codec(v, signed, desc);
        }
    }
    frame_from_samples(&samples, desc, decoded_photometric(desc))
}

//! High-Throughput JPEG 2000 (ISO 15444-15) through `openjph-core`, a pure
//! Rust port of OpenJPH.
//!
//! Encoding writes one tile, RPCL progression, reversible 5/3 wavelet for
//! `.201`/`.202` and irreversible 9/7 for `.203`. For `.202` the codestream
//! also carries a TLM marker and tile-parts divided by resolution, so a
//! viewer can fetch a low-resolution prefix.
//!
//! Colour is coded *without* the codestream colour transform, so the
//! photometric stays `RGB`: openjph-core 0.1's RCT/ICT output is
//! self-consistent but OpenJPEG 2.5 decodes it to garbage (see
//! `tests::htj2k_decodes_identically_with_openjpeg`). For the same reason
//! codestreams that use a colour transform are decoded by OpenJPEG; all
//! others by openjph-core, with OpenJPEG as the fallback when it refuses
//! (or panics on) a codestream.

use openjph_core::codestream::Codestream;
use openjph_core::file::{MemInfile, MemOutfile};
use openjph_core::types::{Point, Size};

use super::native::{self, frame_from_samples};
use super::{j2k, ratio, Encoded, LossyInfo, NativeFrame, PixelDesc, TranscodeError};

/// Which HTJ2K flavour to write.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Mode {
    /// `.201`
    Lossless,
    /// `.202`
    LosslessRpcl,
    /// `.203`, with a target compression ratio (approximate).
    Lossy(f32),
}

/// 1..=16 stored bits, any photometric.
pub(crate) fn supports(desc: &PixelDesc) -> bool {
    desc.bits_stored >= 1
}

fn enc_err(m: impl std::fmt::Display) -> TranscodeError {
    TranscodeError::Encoder(format!("HTJ2K: {m}"))
}

/// Wavelet levels: five, fewer for small images so every level has pixels.
fn decompositions(desc: &PixelDesc) -> u32 {
    let min = u32::from(desc.rows.min(desc.columns));
    let mut levels = 0;
    while levels < 5 && (min >> (levels + 1)) >= 8 {
        levels += 1;
    }
    levels
}

/// Encode an interleaved, normalised native frame.
pub(crate) fn encode(frame: &NativeFrame, mode: Mode) -> Result<Encoded, TranscodeError> {
    let desc = &frame.desc;
    let (cols, rows) = (u32::from(desc.columns), u32::from(desc.rows));
    let spp = u32::from(desc.samples_per_pixel);
    let lossless = !matches!(mode, Mode::Lossy(_));
    let mut cs = Codestream::new();
    {
        let siz = cs.access_siz_mut();
        siz.set_image_extent(Point::new(cols, rows));
        siz.set_tile_size(Size::new(cols, rows));
        siz.set_num_components(spp);
        for c in 0..spp {
            siz.set_comp_info(
                c,
                Point::new(1, 1),
                u32::from(desc.bits_stored),
                desc.is_signed(),
            );
        }
    }
    {
        let cod = cs.access_cod_mut();
        cod.set_reversible(lossless);
        cod.set_color_transform(false);
        cod.set_num_decomposition(decompositions(desc));
        cod.set_progression_order("RPCL").map_err(enc_err)?;
    }
    if let Mode::Lossy(target) = mode {
        // No rate control: the step is `target / 2` stored units, expressed
        // relative to the sample range as openjph expects.
        let step = target.max(1.0) / (1u64 << (desc.bits_stored + 1)) as f32;
        cs.access_qcd_mut().set_delta(step);
    }
    if mode == Mode::LosslessRpcl {
        cs.request_tlm_marker(true);
        cs.set_tilepart_divisions(0x1);
    }
    cs.set_planar(0);
    let mut out = MemOutfile::new();
    cs.write_headers(&mut out, &[]).map_err(enc_err)?;
    let samples = native::samples(frame);
    let width = cols as usize;
    let n = spp as usize;
    let mut line = vec![0i32; width];
    for y in 0..rows as usize {
        let row = &samples[y * width * n..(y + 1) * width * n];
        for c in 0..n {
            for (dst, px) in line.iter_mut().zip(row.chunks_exact(n)) {
                *dst = px[c];
            }
            cs.exchange(&line, c as u32).map_err(enc_err)?;
        }
    }
    cs.flush(&mut out).map_err(enc_err)?;
    let bytes = out.get_data().to_vec();
    let mut out_desc = desc.clone();
    out_desc.planar_configuration = 0;
    let lossy = (!lossless).then(|| LossyInfo {
        ratio: ratio(desc, bytes.len()),
        method: "ISO_15444_15",
    });
    Ok(Encoded {
        bytes,
        desc: out_desc,
        lossy,
    })
}

/// Decode one HTJ2K frame.
pub(crate) fn decode(frame: &[u8], desc: &PixelDesc) -> Result<NativeFrame, TranscodeError> {
    match super::guard("HTJ2K decoder", || {
        decode_openjph(frame, desc).map_err(TranscodeError::Corrupt)
    }) {
        Ok(f) => Ok(f),
        Err(first) => j2k::decode(frame, desc).map_err(|second| {
            TranscodeError::Corrupt(format!("HTJ2K: {first}; OpenJPEG also failed: {second}"))
        }),
    }
}

fn decode_openjph(frame: &[u8], desc: &PixelDesc) -> Result<NativeFrame, String> {
    let mut infile = MemInfile::new(frame);
    let mut cs = Codestream::new();
    cs.read_headers(&mut infile).map_err(|e| e.to_string())?;
    if cs.access_cod().is_employing_color_transform() {
        return Err("colour transform: left to OpenJPEG".into());
    }
    let (cols, rows) = (u32::from(desc.columns), u32::from(desc.rows));
    let spp = u32::from(desc.samples_per_pixel);
    {
        let siz = cs.access_siz();
        let ext = siz.get_image_extent();
        let off = siz.get_image_offset();
        if ext.x.saturating_sub(off.x) != cols
            || ext.y.saturating_sub(off.y) != rows
            || u32::from(siz.get_num_components()) < spp
        {
            return Err(format!(
                "codestream is {}x{}x{}, attributes say {cols}x{rows}x{spp}",
                ext.x.saturating_sub(off.x),
                ext.y.saturating_sub(off.y),
                siz.get_num_components()
            ));
        }
        for c in 0..spp {
            let d = siz.get_downsampling(c);
            if d.x != 1 || d.y != 1 {
                return Err("subsampled components".into());
            }
        }
    }
    cs.set_planar(0);
    cs.create(&mut infile).map_err(|e| e.to_string())?;
    let width = cols as usize;
    let n = spp as usize;
    let mut samples = vec![0i32; width * rows as usize * n];
    let total = u32::from(cs.access_siz().get_num_components());
    for y in 0..rows as usize {
        for c in 0..total {
            let line = cs
                .pull(c)
                .ok_or_else(|| format!("codestream ended at line {y}"))?;
            if c >= spp {
                continue;
            }
            if line.len() < width {
                return Err(format!("line {y} has {} samples", line.len()));
            }
            let signed = cs.access_siz().is_signed(c);
            let row = &mut samples[y * width * n..(y + 1) * width * n];
            for (px, &v) in row.chunks_exact_mut(n).zip(&line) {
                px[c as usize] = native::from_codec(v, signed, desc);
            }
        }
    }
    frame_from_samples(&samples, desc, j2k::decoded_photometric(desc)).map_err(|e| e.to_string())
}

//! RLE Lossless (PS3.5 Annex G): a 64-byte header of segment offsets, then
//! one PackBits segment per byte plane (sample by sample, most significant
//! byte first). Each row is packed separately, as G.3.1 asks, and every
//! segment is padded to an even length.

use super::native::{self, frame_from_samples, planar_to_interleaved};
use super::{Encoded, NativeFrame, PixelDesc, TranscodeError};

const HEADER_LEN: usize = 64;
const MAX_SEGMENTS: usize = 15;

fn corrupt(m: impl Into<String>) -> TranscodeError {
    TranscodeError::Corrupt(format!("RLE: {}", m.into()))
}

/// Decode one RLE Lossless frame.
pub(crate) fn decode(frame: &[u8], desc: &PixelDesc) -> Result<NativeFrame, TranscodeError> {
    let header = frame
        .get(..HEADER_LEN)
        .ok_or_else(|| corrupt("frame shorter than its 64-byte header"))?;
    let word = |i: usize| {
        let b = &header[i * 4..i * 4 + 4];
        u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize
    };
    let bytes_per_sample = usize::from(desc.bits_allocated / 8);
    let spp = usize::from(desc.samples_per_pixel);
    let expected = bytes_per_sample * spp;
    let n = word(0);
    if n != expected {
        return Err(corrupt(format!("{n} segments, expected {expected}")));
    }
    let offsets: Vec<usize> = (1..=n).map(word).collect();
    let pixels = usize::from(desc.rows) * usize::from(desc.columns);
    // planes[s][b]: byte plane b (0 = most significant) of sample s
    let mut planes = Vec::with_capacity(n);
    for (i, &start) in offsets.iter().enumerate() {
        let end = offsets.get(i + 1).copied().unwrap_or(frame.len());
        if start < HEADER_LEN || start > end || end > frame.len() {
            return Err(corrupt(format!(
                "segment {i} offsets {start}..{end} out of range"
            )));
        }
        planes.push(
            unpack(&frame[start..end], pixels).map_err(|m| corrupt(format!("segment {i}: {m}")))?,
        );
    }
    // Reassemble samples plane by plane (planar), then interleave.
    let mut values = Vec::with_capacity(pixels * spp);
    for s in 0..spp {
        let sample_planes = &planes[s * bytes_per_sample..(s + 1) * bytes_per_sample];
        for p in 0..pixels {
            let mut raw = 0u32;
            for plane in sample_planes {
                raw = (raw << 8) | u32::from(plane[p]);
            }
            values.push(native::normalise(raw, desc));
        }
    }
    let values = if spp > 1 {
        planar_to_interleaved(&values, spp)
    } else {
        values
    };
    frame_from_samples(&values, desc, &desc.photometric)
}

/// PackBits-decode until `len` bytes are produced.
fn unpack(src: &[u8], len: usize) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(len);
    let mut i = 0;
    while out.len() < len {
        let Some(&h) = src.get(i) else {
            return Err(format!("ended after {} of {len} bytes", out.len()));
        };
        i += 1;
        let h = h as i8;
        if h >= 0 {
            let count = h as usize + 1;
            let lit = src
                .get(i..i + count)
                .ok_or_else(|| "literal run past the end".to_string())?;
            out.extend_from_slice(lit);
            i += count;
        } else if h != -128 {
            let count = (1 - i32::from(h)) as usize;
            let &b = src
                .get(i)
                .ok_or_else(|| "replicate run past the end".to_string())?;
            out.extend(std::iter::repeat_n(b, count));
            i += 1;
        }
    }
    // A run may overshoot the segment when the encoder crossed a row end.
    out.truncate(len);
    Ok(out)
}

/// PackBits-encode one row.
fn pack_row(row: &[u8], out: &mut Vec<u8>) {
    let n = row.len();
    let mut i = 0;
    while i < n {
        let mut run = 1;
        while i + run < n && run < 128 && row[i + run] == row[i] {
            run += 1;
        }
        if run >= 2 {
            out.push((1 - run as i32) as i8 as u8);
            out.push(row[i]);
            i += run;
        } else {
            let start = i;
            i += 1;
            while i < n && i - start < 128 {
                if i + 2 < n && row[i] == row[i + 1] && row[i] == row[i + 2] {
                    break;
                }
                i += 1;
            }
            out.push((i - start - 1) as u8);
            out.extend_from_slice(&row[start..i]);
        }
    }
}

/// Encode an interleaved, normalised native frame.
pub(crate) fn encode(frame: &NativeFrame) -> Result<Encoded, TranscodeError> {
    let desc = &frame.desc;
    let bytes_per_sample = usize::from(desc.bits_allocated / 8);
    let spp = usize::from(desc.samples_per_pixel);
    let cols = usize::from(desc.columns);
    let raw: Vec<u16> = native::samples(frame)
        .into_iter()
        .map(|v| native::denormalise(v, desc))
        .collect();
    let n = bytes_per_sample * spp;
    if n > MAX_SEGMENTS {
        return Err(TranscodeError::UnsupportedTarget(
            "RLE with more than 15 segments".into(),
        ));
    }
    let mut out = vec![0u8; HEADER_LEN];
    out[..4].copy_from_slice(&(n as u32).to_le_bytes());
    let mut plane = Vec::with_capacity(raw.len() / spp);
    for s in 0..spp {
        for b in 0..bytes_per_sample {
            let seg = s * bytes_per_sample + b;
            let offset = out.len() as u32;
            out[4 + seg * 4..8 + seg * 4].copy_from_slice(&offset.to_le_bytes());
            let shift = 8 * (bytes_per_sample - 1 - b);
            plane.clear();
            plane.extend(raw.iter().skip(s).step_by(spp).map(|&w| (w >> shift) as u8));
            for row in plane.chunks(cols) {
                pack_row(row, &mut out);
            }
            if out.len() % 2 == 1 {
                out.push(0);
            }
        }
    }
    Ok(Encoded {
        bytes: out,
        desc: desc.clone(),
        lossy: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packbits_round_trip_edge_cases() {
        let rows: Vec<Vec<u8>> = vec![
            vec![],
            vec![7],
            vec![1, 1],
            vec![1, 2, 3, 3, 3, 3, 4],
            vec![9; 300],
            (0..=255u8).chain(0..=255).collect(),
        ];
        for row in rows {
            let mut packed = Vec::new();
            pack_row(&row, &mut packed);
            assert_eq!(unpack(&packed, row.len()).unwrap(), row);
        }
    }

    #[test]
    fn truncated_segment_is_an_error() {
        assert!(unpack(&[5, 1, 2], 6).is_err());
        assert!(unpack(&[], 1).is_err());
    }
}

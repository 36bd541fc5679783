//! High-Throughput JPEG 2000 (ISO 15444-15) through `openjph-core`, a pure
//! Rust port of OpenJPH.
//!
//! Encoding writes one tile, RPCL progression, reversible 5/3 wavelet for
//! `.201`/`.202` and irreversible 9/7 for `.203`. For `.202` the codestream
//! also carries a TLM marker and tile-parts divided by resolution, so a
//! viewer can fetch a low-resolution prefix. Every codestream openjph-core
//! writes goes through [`repair`], which fixes its packet headers (an
//! encoder bug that made e.g. 16-bit CT undecodable) and writes the TLM and
//! tile-parts itself.
//!
//! Colour is coded *without* the codestream colour transform, so the
//! photometric stays `RGB`: openjph-core 0.1's RCT/ICT output is
//! self-consistent but OpenJPEG 2.5 decodes it to garbage (see
//! `tests::htj2k_decodes_identically_with_openjpeg`). For the same reason
//! codestreams that use a colour transform are decoded by OpenJPEG; all
//! others by openjph-core, with OpenJPEG as the fallback when it refuses
//! (or panics on) a codestream. Codestreams with several tile-parts go to
//! OpenJPEG too: openjph-core 0.1 decodes only the first one, silently.

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
    // TLM and tile-parts for `.202` are written by `repair` (the crate's are
    // wrong).
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
    let bytes = repair(out.get_data(), desc, mode == Mode::LosslessRpcl).map_err(enc_err)?;
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
    if !single_tile_part(frame) {
        // openjph-core 0.1 reads only the first tile-part and returns wrong
        // samples without an error; `.202` has one tile-part per resolution.
        return Err("several tile-parts: left to OpenJPEG".into());
    }
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

// ---------------------------------------------------------------------------
// Codestream repair for openjph-core 0.1's packet writer.
//
// openjph-core 0.1 (`BitBufferWrite::finalize`) pads a packet header to a
// byte boundary *before* applying the bit stuffing that follows an 0xFF
// byte. When an 0xFF falls in the header's last unflushed bits, the header
// comes out one (or more) zero bytes longer than its bits. Every decoder,
// openjph-core's own included, reads the header's bits exactly, so it starts
// the packet body a byte early and the codestream cannot be decoded
// (OpenJPEG 2.5: "Malformed HT codeblock ... 2 <= Scup <= min(Lcup, 4079)").
// An 0xFF byte needs a run of eight one bits, which the header gets from the
// Lblock comma code of codeblocks of 4,096 bytes or more (the 16-bit CT case),
// so small or smooth images rarely hit it; it does not depend on the sign.
//
// The same crate also writes a TLM whose tile-part lengths are all zero and
// count tile-parts it never writes (it always writes one tile-part).
//
// `repair` re-reads each packet header exactly (ISO 15444-1 B.10), replays
// the crate's writer on the same bits to learn how long it made the header
// (checking the replay reproduces the bytes), and writes the header
// correctly. It then rebuilds the tile: one tile-part, or one per resolution
// with a correct TLM for `.202`.
// ---------------------------------------------------------------------------

/// Stuffing-aware reader of packet-header bits.
struct HeaderBits<'a> {
    data: &'a [u8],
    pos: usize,
    cur: u8,
    left: u32,
    /// Writer calls that produced the bits read: (value, bit count).
    calls: Vec<(u32, u32)>,
    /// The bits read, one per entry, for re-encoding.
    bits: Vec<bool>,
}

impl<'a> HeaderBits<'a> {
    fn new(data: &'a [u8]) -> Self {
        HeaderBits {
            data,
            pos: 0,
            cur: 0,
            left: 0,
            calls: Vec::new(),
            bits: Vec::new(),
        }
    }

    fn raw_bit(&mut self) -> Result<u32, String> {
        if self.left == 0 {
            let prev_ff = self.pos > 0 && self.data[self.pos - 1] == 0xFF;
            self.cur = *self
                .data
                .get(self.pos)
                .ok_or("packet header runs past the tile")?;
            self.pos += 1;
            self.left = if prev_ff { 7 } else { 8 };
        }
        self.left -= 1;
        let b = u32::from((self.cur >> self.left) & 1);
        self.bits.push(b == 1);
        Ok(b)
    }

    /// One bit, written by the crate as a one-bit call.
    fn bit(&mut self) -> Result<u32, String> {
        let b = self.raw_bit()?;
        self.calls.push((b, 1));
        Ok(b)
    }

    /// `n` bits, written by the crate in one call.
    fn field(&mut self, n: u32) -> Result<u32, String> {
        let mut v = 0u32;
        for _ in 0..n {
            v = (v << 1) | self.raw_bit()?;
        }
        self.calls.push((v, n));
        Ok(v)
    }
}

/// openjph-core 0.1's `BitBufferWrite`, faithfully, to learn the length of
/// the header it wrote.
fn crate_header_bytes(calls: &[(u32, u32)]) -> Vec<u8> {
    let (mut data, mut buf, mut used, mut unstuff) = (Vec::new(), 0u64, 0u32, false);
    let flush = |data: &mut Vec<u8>, buf: &mut u64, used: &mut u32, unstuff: &mut bool| loop {
        if *unstuff {
            if *used < 7 {
                break;
            }
            data.push(((*buf >> 57) as u8) & 0x7F);
            *buf <<= 7;
            *used -= 7;
            *unstuff = false;
        } else {
            if *used < 8 {
                break;
            }
            let byte = (*buf >> 56) as u8;
            data.push(byte);
            *buf <<= 8;
            *used -= 8;
            *unstuff = byte == 0xFF;
        }
    };
    for &(val, n) in calls {
        buf |= u64::from(val) << (64 - used - n);
        used += n;
        if used >= 32 {
            flush(&mut data, &mut buf, &mut used, &mut unstuff);
        }
    }
    while used > 0 || unstuff {
        if used == 0 {
            data.push(0);
            unstuff = false;
        } else {
            let byte_bits = if unstuff { 7 } else { 8 };
            if used < byte_bits {
                used = byte_bits;
            } else if used % byte_bits != 0 {
                used += byte_bits - used % byte_bits;
            }
            flush(&mut data, &mut buf, &mut used, &mut unstuff);
        }
    }
    data
}

/// A packet header written as ISO 15444-1 B.10.1 says: stuffed, padded with
/// zeros, never ending in 0xFF.
fn standard_header_bytes(bits: &[bool]) -> Vec<u8> {
    let mut out = Vec::new();
    let (mut cur, mut n, mut cap) = (0u8, 0u32, 8u32);
    for &b in bits {
        cur = (cur << 1) | u8::from(b);
        n += 1;
        if n == cap {
            out.push(cur);
            cap = if cur == 0xFF { 7 } else { 8 };
            cur = 0;
            n = 0;
        }
    }
    if n > 0 {
        out.push(cur << (cap - n));
    }
    if out.last() == Some(&0xFF) {
        out.push(0);
    }
    out
}

/// Tag tree decoder (ISO 15444-1 B.10.2) for one packet.
struct TagTree {
    /// Per level (0 = leaves): width, and (low, value) per node.
    levels: Vec<(usize, Vec<(u32, u32)>)>,
}

impl TagTree {
    fn new(w: usize, h: usize) -> Self {
        let mut levels = Vec::new();
        let (mut w, mut h) = (w, h);
        loop {
            levels.push((w, vec![(0, u32::MAX); w * h]));
            if w == 1 && h == 1 {
                break;
            }
            w = w.div_ceil(2);
            h = h.div_ceil(2);
        }
        TagTree { levels }
    }

    /// Decodes the leaf at (x, y) up to `threshold`; returns its value if
    /// it is below the threshold.
    fn decode(
        &mut self,
        r: &mut HeaderBits,
        x: usize,
        y: usize,
        threshold: u32,
    ) -> Result<Option<u32>, String> {
        let mut low = 0;
        for lev in (0..self.levels.len()).rev() {
            let (w, nodes) = &mut self.levels[lev];
            let node = &mut nodes[(y >> lev) * *w + (x >> lev)];
            low = low.max(node.0);
            while low < threshold && low < node.1 {
                if r.bit()? == 1 {
                    node.1 = low;
                } else {
                    low += 1;
                }
            }
            node.0 = low;
        }
        let v = self.levels[0].1[y * self.levels[0].0 + x].1;
        Ok((v < threshold).then_some(v))
    }
}

/// Codeblock grid (columns, rows) of each non-empty subband of resolution
/// `r` in a tile at the origin, in packet order.
fn band_grids(w: u32, h: u32, levels: u32, r: u32, xcb: u32, ycb: u32) -> Vec<(usize, usize)> {
    let ceil_shift = |v: u32, s: u32| (u64::from(v) + (1u64 << s) - 1) >> s;
    let bands: Vec<(u64, u64)> = if r == 0 {
        vec![(ceil_shift(w, levels), ceil_shift(h, levels))]
    } else {
        let n = levels - r + 1;
        let half = 1u32 << (n - 1);
        let lo_w = ceil_shift(w, n);
        let lo_h = ceil_shift(h, n);
        let hi_w = ceil_shift(w.saturating_sub(half), n);
        let hi_h = ceil_shift(h.saturating_sub(half), n);
        vec![(hi_w, lo_h), (lo_w, hi_h), (hi_w, hi_h)]
    };
    bands
        .into_iter()
        .filter(|&(bw, bh)| bw > 0 && bh > 0)
        .map(|(bw, bh)| {
            (
                bw.div_ceil(1 << xcb) as usize,
                bh.div_ceil(1 << ycb) as usize,
            )
        })
        .collect()
}

/// Parses one packet at the start of `data`; returns the packet rewritten
/// with a standard header, and the number of bytes it took in `data`.
fn repair_packet(data: &[u8], grids: &[(usize, usize)]) -> Result<(Vec<u8>, usize), String> {
    let mut r = HeaderBits::new(data);
    let mut body = 0usize;
    if r.bit()? == 1 {
        for &(gw, gh) in grids {
            let mut inclusion = TagTree::new(gw, gh);
            let mut msbs = TagTree::new(gw, gh);
            for y in 0..gh {
                for x in 0..gw {
                    if inclusion.decode(&mut r, x, y, 1)?.is_none() {
                        continue;
                    }
                    msbs.decode(&mut r, x, y, u32::MAX)?;
                    if r.bit()? != 0 {
                        return Err("more than one coding pass".into());
                    }
                    let mut lblock = 3;
                    while r.bit()? == 1 {
                        lblock += 1;
                        if lblock > 32 {
                            return Err("bad Lblock".into());
                        }
                    }
                    body += r.field(lblock)? as usize;
                }
            }
        }
    }
    let written = crate_header_bytes(&r.calls);
    if !data.starts_with(&written) {
        return Err("packet header is not what the writer replay predicts".into());
    }
    let header = standard_header_bytes(&r.bits);
    if !written.starts_with(&header) || written[header.len()..].iter().any(|&b| b != 0) {
        return Err("packet header padding is not zero".into());
    }
    let used = written.len() + body;
    let body_bytes = data
        .get(written.len()..used)
        .ok_or("packet body runs past the tile")?;
    let mut packet = header;
    packet.extend_from_slice(body_bytes);
    Ok((packet, used))
}

/// Rewrites a codestream from [`encode`] with standard packet headers and,
/// when `by_resolution`, one tile-part per resolution plus a correct TLM.
fn repair(cs: &[u8], desc: &PixelDesc, by_resolution: bool) -> Result<Vec<u8>, String> {
    let be16 = |i: usize| -> Result<usize, String> {
        cs.get(i..i + 2)
            .map(|b| usize::from(u16::from_be_bytes([b[0], b[1]])))
            .ok_or_else(|| "truncated codestream".to_string())
    };
    if be16(0)? != 0xFF4F {
        return Err("no SOC".into());
    }
    // Main header: keep every segment but TLM; read COD.
    let mut main = cs[..2].to_vec();
    let mut pos = 2;
    let mut cod = None;
    loop {
        let marker = be16(pos)?;
        if marker == 0xFF90 {
            break;
        }
        let len = be16(pos + 2)?;
        let seg = cs
            .get(pos..pos + 2 + len)
            .ok_or("truncated marker segment")?;
        if marker == 0xFF52 {
            cod = Some(seg.to_vec());
        }
        if marker != 0xFF55 {
            main.extend_from_slice(seg);
        }
        pos += 2 + len;
    }
    let cod = cod.ok_or("no COD")?;
    // Scod, then SGcod: order, layers (2), MCT; SPcod: levels, xcb, ycb, ...
    if cod.len() < 14 || cod[4] & 0x07 != 0 || be16_of(&cod[6..8]) != 1 {
        return Err("COD uses precincts, SOP/EPH or layers".into());
    }
    let (levels, xcb, ycb) = (
        u32::from(cod[9]),
        u32::from(cod[10]) + 2,
        u32::from(cod[11]) + 2,
    );
    // The single tile-part openjph-core writes.
    let psot = cs.get(pos + 6..pos + 10).ok_or("truncated SOT")?;
    let psot = u32::from_be_bytes([psot[0], psot[1], psot[2], psot[3]]) as usize;
    if be16(pos + 12)? != 0xFF93 || cs.get(pos + 11) != Some(&1) || psot < 14 {
        return Err("unexpected tile-part layout".into());
    }
    let tile = cs.get(pos + 14..pos + psot).ok_or("truncated tile")?;
    if cs.get(pos + psot..) != Some(&[0xFF, 0xD9][..]) {
        return Err("data after the tile".into());
    }
    let (w, h) = (u32::from(desc.columns), u32::from(desc.rows));
    let mut per_res: Vec<Vec<u8>> = Vec::new();
    let mut at = 0;
    for r in 0..=levels {
        let grids = band_grids(w, h, levels, r, xcb, ycb);
        let mut res = Vec::new();
        for _ in 0..desc.samples_per_pixel {
            let (packet, used) = repair_packet(&tile[at..], &grids)?;
            res.extend_from_slice(&packet);
            at += used;
        }
        per_res.push(res);
    }
    if at != tile.len() {
        return Err(format!(
            "{} bytes left after the last packet",
            tile.len() - at
        ));
    }
    let parts: Vec<Vec<u8>> = if by_resolution {
        per_res
    } else {
        vec![per_res.concat()]
    };
    let mut out = main;
    if by_resolution {
        // TLM: Ztlm 0, Stlm 0x60 (16-bit Ttlm, 32-bit Ptlm).
        out.extend_from_slice(&[0xFF, 0x55]);
        out.extend_from_slice(&((4 + 6 * parts.len()) as u16).to_be_bytes());
        out.extend_from_slice(&[0, 0x60]);
        for p in &parts {
            out.extend_from_slice(&0u16.to_be_bytes());
            out.extend_from_slice(&((p.len() + 14) as u32).to_be_bytes());
        }
    }
    let count = u8::try_from(parts.len()).map_err(|_| "too many tile-parts")?;
    for (i, p) in parts.iter().enumerate() {
        out.extend_from_slice(&[0xFF, 0x90, 0, 10, 0, 0]);
        out.extend_from_slice(&((p.len() + 14) as u32).to_be_bytes());
        out.extend_from_slice(&[i as u8, count, 0xFF, 0x93]);
        out.extend_from_slice(p);
    }
    out.extend_from_slice(&[0xFF, 0xD9]);
    Ok(out)
}

/// Whether the codestream holds exactly one tile-part that runs to EOC.
fn single_tile_part(cs: &[u8]) -> bool {
    let be16 = |i: usize| cs.get(i..i + 2).map(be16_of);
    let mut pos = 2;
    loop {
        match be16(pos) {
            Some(0xFF90) => break,
            Some(m) if m >= 0xFF00 => match be16(pos + 2) {
                Some(len) => pos += 2 + usize::from(len),
                None => return false,
            },
            _ => return false,
        }
    }
    let Some(psot) = cs.get(pos + 6..pos + 10) else {
        return false;
    };
    let psot = u32::from_be_bytes([psot[0], psot[1], psot[2], psot[3]]) as usize;
    cs.get(pos + 11) == Some(&1) && be16(pos + psot) == Some(0xFFD9)
}

fn be16_of(b: &[u8]) -> u16 {
    u16::from_be_bytes([b[0], b[1]])
}

//! A JPEG Lossless encoder (ISO 10918-1 process 14, selection value 1), for
//! `.70` and `.57`. No Rust crate writes lossless JPEG, and the format is
//! small: first-order prediction from the left neighbour (the row above for
//! the first column), Huffman-coded differences with one table built from
//! the frame's own statistics (Annex K.2), one interleaved scan.
//!
//! Samples are coded as their stored bit patterns (P = Bits Stored), so
//! signed data round-trips as two's complement, as DICOM expects. No
//! colour transform is applied; the photometric is unchanged.

use super::native;
use super::{Encoded, NativeFrame, PixelDesc, TranscodeError};

/// 2..=16 stored bits, any photometric.
pub(crate) fn supports(desc: &PixelDesc) -> bool {
    desc.bits_stored >= 2
}

/// Number of difference categories (SSSS 0..=16) plus the reserved symbol.
const SYMBOLS: usize = 18;
const RESERVED: usize = 17;

/// Huffman code lengths limited to 16 bits (Annex K.2, as libjpeg does it).
/// Returns (BITS[1..=16], HUFFVAL).
fn optimal_table(counts: &[u64; 17]) -> ([u8; 16], Vec<u8>) {
    let mut freq = [0u64; SYMBOLS];
    freq[..17].copy_from_slice(counts);
    freq[RESERVED] = 1;
    let mut codesize = [0usize; SYMBOLS];
    let mut others = [usize::MAX; SYMBOLS];
    loop {
        // c1: least frequent (ties → highest index); c2: next least
        let mut c1 = usize::MAX;
        let mut v = u64::MAX;
        for (i, &f) in freq.iter().enumerate() {
            if f != 0 && f <= v {
                v = f;
                c1 = i;
            }
        }
        let mut c2 = usize::MAX;
        v = u64::MAX;
        for (i, &f) in freq.iter().enumerate() {
            if f != 0 && f <= v && i != c1 {
                v = f;
                c2 = i;
            }
        }
        if c2 == usize::MAX {
            break;
        }
        freq[c1] += freq[c2];
        freq[c2] = 0;
        codesize[c1] += 1;
        while others[c1] != usize::MAX {
            c1 = others[c1];
            codesize[c1] += 1;
        }
        others[c1] = c2;
        codesize[c2] += 1;
        while others[c2] != usize::MAX {
            c2 = others[c2];
            codesize[c2] += 1;
        }
    }
    let mut bits = [0u32; 40];
    for &size in &codesize {
        if size > 0 {
            bits[size] += 1;
        }
    }
    for i in (17..40).rev() {
        while bits[i] > 0 {
            let mut j = i - 2;
            while bits[j] == 0 {
                j -= 1;
            }
            bits[i] -= 2;
            bits[i - 1] += 1;
            bits[j + 1] += 2;
            bits[j] -= 1;
        }
    }
    // drop the reserved code point (the longest code)
    let mut i = 16;
    while bits[i] == 0 {
        i -= 1;
    }
    bits[i] -= 1;
    let mut values = Vec::new();
    for len in 1..40 {
        for (sym, &size) in codesize.iter().enumerate().take(17) {
            if size == len {
                values.push(sym as u8);
            }
        }
    }
    let mut out = [0u8; 16];
    for (o, &b) in out.iter_mut().zip(&bits[1..=16]) {
        *o = b as u8;
    }
    (out, values)
}

/// Canonical codes from BITS/HUFFVAL: (code, length) per symbol.
fn codes(bits: &[u8; 16], values: &[u8]) -> [(u32, u8); 17] {
    let mut table = [(0u32, 0u8); 17];
    let mut code = 0u32;
    let mut k = 0;
    for (len_minus_1, &count) in bits.iter().enumerate() {
        for _ in 0..count {
            if let Some(&sym) = values.get(k) {
                table[usize::from(sym)] = (code, len_minus_1 as u8 + 1);
            }
            code += 1;
            k += 1;
        }
        code <<= 1;
    }
    table
}

struct BitWriter {
    out: Vec<u8>,
    acc: u64,
    n: u32,
}

impl BitWriter {
    fn put(&mut self, value: u32, len: u8) {
        if len == 0 {
            return;
        }
        self.acc = (self.acc << len) | u64::from(value & ((1u32 << len) - 1));
        self.n += u32::from(len);
        while self.n >= 8 {
            self.n -= 8;
            let byte = (self.acc >> self.n) as u8;
            self.out.push(byte);
            if byte == 0xFF {
                self.out.push(0);
            }
        }
    }

    fn finish(mut self) -> Vec<u8> {
        if self.n > 0 {
            let pad = 8 - self.n;
            self.put((1 << pad) - 1, pad as u8);
        }
        self.out
    }
}

fn segment(out: &mut Vec<u8>, marker: u8, body: &[u8]) {
    out.extend_from_slice(&[0xFF, marker]);
    out.extend_from_slice(&((body.len() + 2) as u16).to_be_bytes());
    out.extend_from_slice(body);
}

/// Encode an interleaved, normalised native frame.
pub(crate) fn encode(frame: &NativeFrame) -> Result<Encoded, TranscodeError> {
    let desc = &frame.desc;
    if !supports(desc) {
        return Err(TranscodeError::UnsupportedTarget(
            "JPEG Lossless needs at least 2 stored bits".into(),
        ));
    }
    let p = u32::from(desc.bits_stored);
    let mask = (1u32 << p) - 1;
    let raw: Vec<u32> = native::samples(frame)
        .into_iter()
        .map(|v| (v as u32) & mask)
        .collect();
    let spp = usize::from(desc.samples_per_pixel);
    let cols = usize::from(desc.columns);
    let row_len = cols * spp;
    // differences as (category, extra bits)
    let mut diffs = Vec::with_capacity(raw.len());
    let mut counts = [0u64; 17];
    for (i, &x) in raw.iter().enumerate() {
        let (row, col) = (i / row_len, (i % row_len) / spp);
        let pred = if row == 0 && col == 0 {
            1u32 << (p - 1)
        } else if col == 0 {
            raw[i - row_len]
        } else {
            raw[i - spp]
        };
        let mut d = (x.wrapping_sub(pred) & 0xFFFF) as i32;
        if d > 32768 {
            d -= 65536;
        }
        let ssss = if d == 32768 {
            16
        } else {
            32 - d.unsigned_abs().leading_zeros()
        };
        let extra = if d >= 0 { d as u32 } else { (d - 1) as u32 };
        counts[ssss as usize] += 1;
        diffs.push((ssss as u8, extra));
    }
    let (bits, values) = optimal_table(&counts);
    let table = codes(&bits, &values);

    let mut out = vec![0xFF, 0xD8];
    // SOF3
    let mut sof = vec![desc.bits_stored as u8];
    sof.extend_from_slice(&desc.rows.to_be_bytes());
    sof.extend_from_slice(&desc.columns.to_be_bytes());
    sof.push(spp as u8);
    for c in 0..spp {
        sof.extend_from_slice(&[c as u8 + 1, 0x11, 0]);
    }
    segment(&mut out, 0xC3, &sof);
    // DHT: DC class 0, id 0
    let mut dht = vec![0x00];
    dht.extend_from_slice(&bits);
    dht.extend_from_slice(&values);
    segment(&mut out, 0xC4, &dht);
    // SOS: all components, predictor 1, no point transform
    let mut sos = vec![spp as u8];
    for c in 0..spp {
        sos.extend_from_slice(&[c as u8 + 1, 0x00]);
    }
    sos.extend_from_slice(&[1, 0, 0]);
    segment(&mut out, 0xDA, &sos);
    let mut w = BitWriter { out, acc: 0, n: 0 };
    for (ssss, extra) in diffs {
        let (code, len) = table[usize::from(ssss)];
        w.put(code, len);
        if ssss < 16 {
            w.put(extra, ssss);
        }
    }
    let mut out = w.finish();
    out.extend_from_slice(&[0xFF, 0xD9]);
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
    fn table_is_prefix_free_and_limited() {
        let mut counts = [0u64; 17];
        // a skewed distribution that would want codes longer than 16 bits
        for (i, c) in counts.iter_mut().enumerate() {
            *c = 1u64 << (2 * (16 - i));
        }
        let (bits, values) = optimal_table(&counts);
        assert_eq!(values.len(), 17);
        assert_eq!(bits.iter().map(|&b| usize::from(b)).sum::<usize>(), 17);
        // Kraft inequality, strict (the all-ones code is reserved)
        let kraft: f64 = bits
            .iter()
            .enumerate()
            .map(|(i, &b)| f64::from(b) / f64::from(1u32 << (i + 1)))
            .sum();
        assert!(kraft < 1.0);
    }
}

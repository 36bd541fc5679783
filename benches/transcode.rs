//! Per-frame codec throughput and compressed size (`src/transcode`), on three deterministic
//! synthetic frames shaped like real ones:
//!
//! - `CT`: 512x512, signed 16-bit (Bits Stored 16): reconstruction circle padded with -2048,
//!   air, a body ellipse with a fat ring, lungs with vessels, heart, spine and table, plus
//!   Gaussian noise (sd about 12 HU) and a slow ripple. 512 KiB native.
//! - `CR`: 2500 wide x 3000 high, unsigned 12 bits in 16: collimated field, smooth exposure
//!   gradient, lung fields, mediastinum and rib bands, signal-dependent noise. 15 MB native.
//! - `US`: 640x480 RGB 8-bit: black background, a sector of axially correlated speckle with a
//!   dark cyst and depth attenuation, a colour-Doppler vessel, labels and a depth scale.
//!
//! For each frame and transfer syntax: `encode/<frame>/<syntax>` times `encode_frame` from the
//! native frame and `decode/<frame>/<syntax>` times `decode_frame` of that encoding back to
//! native, both with `Throughput::BytesDecimal(native frame bytes)`, so criterion prints MB/s
//! of pixels. Syntaxes: Explicit VR LE (the copy baseline), RLE `.5`, JPEG Lossless SV1
//! `.4.70`, JPEG-LS `.4.80`, HTJ2K `.4.201`, HTJ2K RPCL `.4.202`, and the lossy `.4.50` (8-bit
//! only, so US), `.4.81` (NEAR 2) and `.4.203` with `Quality::default()`.
//!
//! Before timing, every encoding is decoded and checked (lossless ones bit-exact), and a table
//! of compressed sizes and ratios goes to stderr.
//!
//! ```text
//! cargo bench --bench transcode                    # about 3 minutes on 2 busy cores
//! cargo bench --bench transcode -- 'encode/CT'     # a subset
//! ```
//!
//! Knobs (environment):
//! - `TRANSCODE_BENCH_SECS` (2): measurement time per CT/US benchmark; CR uses flat sampling
//!   with `TRANSCODE_BENCH_CR_SAMPLES` (10) samples of one iteration each.
//! - `TRANSCODE_BENCH_DUMP=<dir>`: also write the frames (`<frame>.raw` native LE samples,
//!   `<frame>.pgm`/`.ppm` for OpenJPH, CT shifted by +32768 to unsigned, which gives the same
//!   JPEG 2000 coefficients after the DC level shift), our encodings (`ours-<frame>-<syntax>`),
//!   `frames.tsv` and `sizes.tsv`. `scripts/bench-codecs.sh` uses this to run the reference
//!   codecs on the very same frames.
//! - `TRANSCODE_BENCH_DUMP_ONLY=1`: stop after the dump, time nothing.

use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, SamplingMode, Throughput};
use tsunagi::transcode::{
    decode_frame, encode_frame, ts, Encoded, NativeFrame, PixelDesc, Quality,
};

// ---------------------------------------------------------------------------------------------
// Deterministic synthetic frames
// ---------------------------------------------------------------------------------------------

/// SplitMix64: tiny, deterministic, good enough for noise.
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Approximately standard normal (Irwin-Hall of four uniforms).
    fn gauss(&mut self) -> f64 {
        let s: f64 = (0..4).map(|_| self.unit()).sum();
        (s - 2.0) * 3f64.sqrt()
    }
}

/// Inside the ellipse centred at (cx, cy) with semi-axes (ax, ay)?
fn in_ellipse(x: f64, y: f64, cx: f64, cy: f64, ax: f64, ay: f64) -> bool {
    let (dx, dy) = ((x - cx) / ax, (y - cy) / ay);
    dx * dx + dy * dy <= 1.0
}

fn mono_desc(rows: u16, columns: u16, bits_stored: u16, signed: bool) -> PixelDesc {
    PixelDesc {
        rows,
        columns,
        samples_per_pixel: 1,
        bits_allocated: 16,
        bits_stored,
        high_bit: bits_stored - 1,
        pixel_representation: u16::from(signed),
        photometric: "MONOCHROME2".into(),
        planar_configuration: 0,
    }
}

/// Axial CT slice of a chest, Hounsfield units stored directly (rescale 1, 0).
fn ct_frame() -> NativeFrame {
    let (w, h) = (512usize, 512usize);
    let mut rng = Rng(0x0C7_5EED);
    let vessels: Vec<(f64, f64, f64)> = (0..40)
        .map(|i| {
            let left = i % 2 == 0;
            let cx = if left { 180.0 } else { 332.0 };
            let a = rng.unit() * std::f64::consts::TAU;
            let r = rng.unit().sqrt() * 55.0;
            (
                cx + r * a.cos() * 0.8,
                240.0 + r * a.sin(),
                1.5 + rng.unit() * 3.5,
            )
        })
        .collect();
    let mut data = Vec::with_capacity(w * h * 2);
    for y in 0..h {
        for x in 0..w {
            let (fx, fy) = (x as f64 + 0.5, y as f64 + 0.5);
            let (dx, dy) = (fx - 256.0, fy - 256.0);
            let hu: f64 = if dx * dx + dy * dy > 256.0 * 256.0 {
                -2048.0 // outside the reconstruction circle: padding, no noise
            } else {
                let base = if (440.0..452.0).contains(&fy) && dx.abs() < 230.0 {
                    250.0 // table
                } else if !in_ellipse(fx, fy, 256.0, 265.0, 205.0, 150.0) {
                    -1000.0 // air
                } else if !in_ellipse(fx, fy, 256.0, 265.0, 190.0, 136.0) {
                    -100.0 // subcutaneous fat
                } else if in_ellipse(fx, fy, 256.0, 372.0, 24.0, 22.0) {
                    if in_ellipse(fx, fy, 256.0, 372.0, 18.0, 16.0) {
                        350.0 // cancellous bone
                    } else {
                        1200.0 // cortex
                    }
                } else if in_ellipse(fx, fy, 285.0, 262.0, 58.0, 50.0) {
                    45.0 // heart
                } else if in_ellipse(fx, fy, 180.0, 240.0, 62.0, 88.0)
                    || in_ellipse(fx, fy, 332.0, 240.0, 62.0, 88.0)
                {
                    if vessels
                        .iter()
                        .any(|&(vx, vy, r)| (fx - vx).powi(2) + (fy - vy).powi(2) < r * r)
                    {
                        30.0
                    } else {
                        -860.0 + 25.0 * ((fy - 150.0) / 180.0) // gravity gradient
                    }
                } else {
                    40.0 + 6.0 * (fx / 23.0).sin() * (fy / 31.0).cos() // soft tissue
                };
                base + 12.0 * rng.gauss()
            };
            let v = hu.round().clamp(-32768.0, 32767.0) as i16;
            data.extend_from_slice(&v.to_le_bytes());
        }
    }
    NativeFrame {
        desc: mono_desc(h as u16, w as u16, 16, true),
        data,
    }
}

/// Chest CR, 12 bits stored in 16, unsigned.
fn cr_frame() -> NativeFrame {
    let (w, h) = (2500usize, 3000usize);
    let mut rng = Rng(0x00C2_5EED);
    let mut data = Vec::with_capacity(w * h * 2);
    for y in 0..h {
        for x in 0..w {
            let (fx, fy) = (x as f64 / w as f64, y as f64 / h as f64);
            let collimated = !(0.04..0.96).contains(&fx) || !(0.03..0.97).contains(&fy);
            let mean = if collimated {
                220.0
            } else {
                let mut v = 1500.0 + 500.0 * fx + 250.0 * fy; // heel effect / exposure gradient
                let lung = |cx: f64| {
                    let (dx, dy) = ((fx - cx) / 0.17, (fy - 0.45) / 0.30);
                    (-(dx * dx + dy * dy).powi(2)).exp()
                };
                let lungs = lung(0.30) + lung(0.70);
                v += 900.0 * lungs;
                // ribs: soft bands across the lung fields
                let rib = 0.5 + 0.5 * (fy * 55.0 + 6.0 * (fx - 0.5).powi(2)).sin();
                v -= 260.0 * lungs * rib.powi(3);
                // mediastinum and spine
                v -= 700.0 * (-((fx - 0.5) / 0.07).powi(2)).exp() * (0.3 + fy);
                // shoulders/soft tissue at the edges
                v -= 500.0 * (-((fx - 0.04) / 0.08).powi(2)).exp();
                v -= 500.0 * (-((fx - 0.96) / 0.08).powi(2)).exp();
                v
            };
            let noisy = mean + 0.35 * mean.max(1.0).sqrt() * rng.gauss();
            let v = noisy.round().clamp(0.0, 4095.0) as u16;
            data.extend_from_slice(&v.to_le_bytes());
        }
    }
    NativeFrame {
        desc: mono_desc(h as u16, w as u16, 12, false),
        data,
    }
}

/// Colour ultrasound: B-mode sector with a colour-Doppler box.
fn us_frame() -> NativeFrame {
    let (w, h) = (640usize, 480usize);
    let mut rng = Rng(0x05_5EED);
    // Speckle: Rayleigh noise, correlated over ~4 px axially and ~2 px laterally.
    let raw: Vec<f64> = (0..w * h)
        .map(|_| (-2.0 * (1.0 - rng.unit()).ln()).sqrt())
        .collect();
    let mut speckle = vec![0.0; w * h];
    for y in 0..h {
        for x in 0..w {
            let mut s = 0.0;
            let mut n = 0.0;
            for yy in y.saturating_sub(2)..(y + 2).min(h) {
                for xx in x.saturating_sub(1)..(x + 1).min(w) {
                    s += raw[yy * w + xx];
                    n += 1.0;
                }
            }
            speckle[y * w + x] = s / n;
        }
    }
    let (ax, ay) = (320.0, 30.0);
    let half_angle = 38f64.to_radians();
    let mut data = vec![0u8; w * h * 3];
    for y in 0..h {
        for x in 0..w {
            let (fx, fy) = (x as f64, y as f64);
            let (dx, dy) = (fx - ax, fy - ay);
            let r = (dx * dx + dy * dy).sqrt();
            let theta = dx.atan2(dy);
            let mut rgb = [0u8; 3];
            if (20.0..440.0).contains(&r) && theta.abs() < half_angle {
                // tissue echogenicity: layers, a bright interface, a dark cyst
                let mut echo = 70.0 + 25.0 * (r / 40.0).sin() + 15.0 * (theta * 9.0).cos();
                if (95.0..105.0).contains(&r) {
                    echo += 90.0;
                }
                if in_ellipse(fx, fy, 280.0, 300.0, 45.0, 30.0) {
                    echo = 8.0;
                }
                echo *= (-r / 900.0).exp(); // attenuation after TGC
                let g = (echo * speckle[y * w + x]).clamp(0.0, 255.0) as u8;
                rgb = [g, g, g];
                // Doppler box with a vessel: red towards, blue away
                let in_box = (180.0..280.0).contains(&fy) && (340.0..460.0).contains(&fx);
                if in_box && in_ellipse(fx, fy, 400.0, 230.0, 50.0, 12.0) {
                    let flow = 1.0 - ((fy - 230.0) / 12.0).powi(2);
                    let v = (flow * 200.0 + 55.0 + 20.0 * rng.gauss()).clamp(0.0, 255.0) as u8;
                    rgb = if fx < 400.0 {
                        [v, v / 5, 0]
                    } else {
                        [0, v / 4, v]
                    };
                }
            }
            // labels and depth scale
            let label =
                (8.0..18.0).contains(&fy) && (12.0..150.0).contains(&fx) && (x / 3) % 3 != 2;
            let scale = (600.0..606.0).contains(&fx) && (y % 40) < 2 && y > 30;
            if label || scale {
                rgb = [230, 230, 230];
            }
            data[(y * w + x) * 3..(y * w + x) * 3 + 3].copy_from_slice(&rgb);
        }
    }
    NativeFrame {
        desc: PixelDesc {
            rows: h as u16,
            columns: w as u16,
            samples_per_pixel: 3,
            bits_allocated: 8,
            bits_stored: 8,
            high_bit: 7,
            pixel_representation: 0,
            photometric: "RGB".into(),
            planar_configuration: 0,
        },
        data,
    }
}

// ---------------------------------------------------------------------------------------------
// Cases
// ---------------------------------------------------------------------------------------------

/// (label used in benchmark ids and reports, transfer syntax UID, lossy?)
const SYNTAXES: &[(&str, &str, bool)] = &[
    ("explicit_le", ts::EXPLICIT_VR_LE, false),
    ("rle", ts::RLE_LOSSLESS, false),
    ("jpeg_lossless_70", ts::JPEG_LOSSLESS_SV1, false),
    ("jpegls_80", ts::JPEG_LS_LOSSLESS, false),
    ("htj2k_201", ts::HTJ2K_LOSSLESS, false),
    ("htj2k_rpcl_202", ts::HTJ2K_RPCL, false),
    ("jpeg_baseline_50", ts::JPEG_BASELINE, true),
    ("jpegls_near_81", ts::JPEG_LS_NEAR, true),
    ("htj2k_lossy_203", ts::HTJ2K, true),
];

struct Case {
    frame: &'static str,
    label: &'static str,
    uid: &'static str,
    native: NativeFrame,
    encoded: Encoded,
}

/// Maximum absolute error and PSNR (against the stored range) of a lossy round trip.
fn error_stats(a: &NativeFrame, b: &NativeFrame) -> (i64, f64) {
    let d = &a.desc;
    let vals = |f: &NativeFrame| -> Vec<i64> {
        if d.bits_allocated == 8 {
            f.data.iter().map(|&v| i64::from(v)).collect()
        } else if d.is_signed() {
            f.data
                .chunks_exact(2)
                .map(|c| i64::from(i16::from_le_bytes([c[0], c[1]])))
                .collect()
        } else {
            f.data
                .chunks_exact(2)
                .map(|c| i64::from(u16::from_le_bytes([c[0], c[1]])))
                .collect()
        }
    };
    let (va, vb) = (vals(a), vals(b));
    let mut max = 0i64;
    let mut sq = 0f64;
    for (x, y) in va.iter().zip(&vb) {
        let e = (x - y).abs();
        max = max.max(e);
        sq += (e * e) as f64;
    }
    let mse = sq / va.len() as f64;
    let peak = ((1u64 << d.bits_stored) - 1) as f64;
    let psnr = if mse == 0.0 {
        f64::INFINITY
    } else {
        10.0 * (peak * peak / mse).log10()
    };
    (max, psnr)
}

/// Encode every frame in every syntax it supports, check the round trip, and print the table.
fn prepare(frames: &[(&'static str, NativeFrame)]) -> (Vec<Case>, String) {
    let mut cases = Vec::new();
    let mut tsv = String::from(
        "frame\tsyntax\tuid\tnative_bytes\tencoded_bytes\tratio\tbits_per_sample\tmax_abs_err\tpsnr_db\n",
    );
    let mut table = String::new();
    let _ = writeln!(
        table,
        "\n{:<5} {:<17} {:>11} {:>11} {:>7} {:>9} {:>8} {:>8}",
        "frame", "syntax", "native B", "encoded B", "ratio", "bits/smp", "max err", "PSNR dB"
    );
    for (name, native) in frames {
        for &(label, uid, lossy) in SYNTAXES {
            if !tsunagi::transcode::can_encode(uid, &native.desc) {
                continue;
            }
            let encoded = encode_frame(uid, native, Quality::default())
                .unwrap_or_else(|e| panic!("{name} {label}: encode: {e}"));
            let back = decode_frame(uid, &encoded.bytes, &encoded.desc)
                .unwrap_or_else(|e| panic!("{name} {label}: decode: {e}"));
            assert_eq!(back.data.len(), native.data.len(), "{name} {label}");
            let (max_err, psnr) = if lossy {
                error_stats(native, &back)
            } else {
                assert!(
                    back.data == native.data,
                    "{name} {label}: lossless round trip is not bit-exact"
                );
                (0, f64::INFINITY)
            };
            let n = native.data.len();
            let ratio = n as f64 / encoded.bytes.len() as f64;
            let bps = encoded.bytes.len() as f64 * 8.0 / native.desc.sample_count() as f64;
            let _ = writeln!(
                table,
                "{:<5} {:<17} {:>11} {:>11} {:>7.2} {:>9.3} {:>8} {:>8}",
                name,
                label,
                n,
                encoded.bytes.len(),
                ratio,
                bps,
                max_err,
                if psnr.is_finite() {
                    format!("{psnr:.1}")
                } else {
                    "exact".into()
                }
            );
            let _ = writeln!(
                tsv,
                "{name}\t{label}\t{uid}\t{n}\t{}\t{ratio:.4}\t{bps:.4}\t{max_err}\t{}",
                encoded.bytes.len(),
                if psnr.is_finite() {
                    format!("{psnr:.2}")
                } else {
                    "inf".into()
                }
            );
            cases.push(Case {
                frame: name,
                label,
                uid,
                native: native.clone(),
                encoded,
            });
        }
    }
    eprintln!("{table}");
    (cases, tsv)
}

/// Write the frames, our encodings and the tables for `scripts/bench-codecs.sh`.
fn dump(dir: &Path, frames: &[(&'static str, NativeFrame)], cases: &[Case], sizes_tsv: &str) {
    std::fs::create_dir_all(dir).expect("create dump dir");
    let mut frames_tsv =
        String::from("frame\trows\tcolumns\tsamples\tbits_allocated\tbits_stored\tsigned\tpnm\n");
    for (name, f) in frames {
        let d = &f.desc;
        std::fs::write(dir.join(format!("{name}.raw")), &f.data).expect("write raw");
        // PGM/PPM for ojph_compress: big-endian 16-bit samples, maxval = 2^bits - 1. Signed
        // samples are shifted by 2^(bits-1) to unsigned, which JPEG 2000's DC level shift maps
        // to the same coefficients as the signed original (OpenJPH 0.9 mishandles signed).
        let (pnm, magic) = if d.samples_per_pixel == 3 {
            (format!("{name}.ppm"), "P6")
        } else {
            (format!("{name}.pgm"), "P5")
        };
        let maxval = (1u32 << d.bits_stored) - 1;
        let mut body = format!("{magic}\n{} {}\n{maxval}\n", d.columns, d.rows).into_bytes();
        if d.bits_allocated == 8 {
            body.extend_from_slice(&f.data);
        } else {
            let shift = if d.is_signed() {
                1u32 << (d.bits_stored - 1)
            } else {
                0
            };
            for c in f.data.chunks_exact(2) {
                let raw = u16::from_le_bytes([c[0], c[1]]);
                let v = if d.is_signed() {
                    (i32::from(raw as i16) + shift as i32) as u16
                } else {
                    raw
                };
                body.extend_from_slice(&v.to_be_bytes());
            }
        }
        std::fs::write(dir.join(&pnm), body).expect("write pnm");
        let _ = writeln!(
            frames_tsv,
            "{name}\t{}\t{}\t{}\t{}\t{}\t{}\t{pnm}",
            d.rows,
            d.columns,
            d.samples_per_pixel,
            d.bits_allocated,
            d.bits_stored,
            u8::from(d.is_signed())
        );
    }
    for c in cases.iter().filter(|c| c.uid != ts::EXPLICIT_VR_LE) {
        std::fs::write(
            dir.join(format!("ours-{}-{}.bin", c.frame, c.label)),
            &c.encoded.bytes,
        )
        .expect("write encoding");
    }
    std::fs::write(dir.join("frames.tsv"), frames_tsv).expect("write frames.tsv");
    std::fs::write(dir.join("sizes.tsv"), sizes_tsv).expect("write sizes.tsv");
    eprintln!("frames, encodings and tables written to {}", dir.display());
}

// ---------------------------------------------------------------------------------------------
// Benchmarks
// ---------------------------------------------------------------------------------------------

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn bench(c: &mut Criterion, cases: &[Case], frames: &[(&'static str, NativeFrame)]) {
    let secs = env_u64("TRANSCODE_BENCH_SECS", 2);
    let cr_samples = env_u64("TRANSCODE_BENCH_CR_SAMPLES", 10).max(10) as usize;
    for op in ["encode", "decode"] {
        for (name, native) in frames {
            let mut g = c.benchmark_group(format!("{op}/{name}"));
            g.throughput(Throughput::BytesDecimal(native.data.len() as u64));
            if native.data.len() > 4_000_000 {
                // CR: a few hundred ms per iteration; time single iterations.
                g.sampling_mode(SamplingMode::Flat)
                    .sample_size(cr_samples)
                    .warm_up_time(Duration::from_millis(500))
                    .measurement_time(Duration::from_secs(secs));
            } else {
                g.sample_size(20)
                    .warm_up_time(Duration::from_millis(700))
                    .measurement_time(Duration::from_secs(secs));
            }
            for case in cases.iter().filter(|k| k.frame == *name) {
                let id = BenchmarkId::from_parameter(case.label);
                if op == "encode" {
                    g.bench_with_input(id, &case.native, |b, f| {
                        b.iter(|| encode_frame(case.uid, f, Quality::default()).unwrap())
                    });
                } else {
                    g.bench_with_input(id, &case.encoded, |b, e| {
                        b.iter(|| decode_frame(case.uid, &e.bytes, &e.desc).unwrap())
                    });
                }
            }
            g.finish();
        }
    }
}

fn main() {
    let t0 = std::time::Instant::now();
    let frames = vec![("CT", ct_frame()), ("CR", cr_frame()), ("US", us_frame())];
    eprintln!("frames generated in {:.1} s", t0.elapsed().as_secs_f64());
    let (cases, sizes_tsv) = prepare(&frames);
    if let Some(dir) = std::env::var_os("TRANSCODE_BENCH_DUMP") {
        dump(Path::new(&dir), &frames, &cases, &sizes_tsv);
    }
    if std::env::var_os("TRANSCODE_BENCH_DUMP_ONLY").is_some() {
        return;
    }
    let mut c = Criterion::default().configure_from_args();
    bench(&mut c, &cases, &frames);
    c.final_summary();
}

//! Round trips through every target on synthetic frames, cross-decoding
//! between independent implementations, and rendering against
//! hand-computed values.

use super::*;

/// Deterministic pseudo-random numbers (LCG), so tests need no crate.
struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> u32 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) as u32
    }
}

fn desc(
    cols: u16,
    rows: u16,
    spp: u16,
    alloc: u16,
    stored: u16,
    signed: bool,
    pi: &str,
) -> PixelDesc {
    PixelDesc {
        rows,
        columns: cols,
        samples_per_pixel: spp,
        bits_allocated: alloc,
        bits_stored: stored,
        high_bit: stored - 1,
        pixel_representation: u16::from(signed),
        photometric: pi.to_string(),
        planar_configuration: 0,
    }
}

/// A smooth ramp plus noise, clipped to the stored range, with the extremes
/// of the range planted at fixed places.
fn frame(d: &PixelDesc, noise: u32, seed: u64) -> NativeFrame {
    let mut rng = Lcg(seed);
    let bits = u32::from(d.bits_stored);
    let (lo, hi) = if d.is_signed() {
        (-(1i64 << (bits - 1)), (1i64 << (bits - 1)) - 1)
    } else {
        (0, (1i64 << bits) - 1)
    };
    let span = hi - lo;
    let (w, h) = (i64::from(d.columns), i64::from(d.rows));
    let mut samples = Vec::with_capacity(d.sample_count());
    for y in 0..h {
        for x in 0..w {
            for c in 0..i64::from(d.samples_per_pixel) {
                let base = lo + span * ((x + y + 7 * c) % (w + h)) / (w + h);
                let n = if noise > 0 {
                    i64::from(rng.next() % noise) - i64::from(noise / 2)
                } else {
                    0
                };
                samples.push((base + n).clamp(lo, hi) as i32);
            }
        }
    }
    samples[0] = lo as i32;
    samples[1] = hi as i32;
    let last = samples.len() - 1;
    samples[last] = lo as i32;
    NativeFrame {
        data: native::to_bytes(&samples, d),
        desc: d.clone(),
    }
}

fn test_frames() -> Vec<(&'static str, NativeFrame)> {
    vec![
        (
            "mono8",
            frame(&desc(67, 45, 1, 8, 8, false, "MONOCHROME2"), 9, 1),
        ),
        (
            "mono8-signed",
            frame(&desc(33, 20, 1, 8, 8, true, "MONOCHROME2"), 9, 2),
        ),
        (
            "mono16",
            frame(&desc(64, 40, 1, 16, 16, false, "MONOCHROME2"), 300, 3),
        ),
        (
            "ct16-signed",
            frame(&desc(70, 50, 1, 16, 16, true, "MONOCHROME2"), 300, 4),
        ),
        (
            "ct12-signed",
            frame(&desc(50, 37, 1, 16, 12, true, "MONOCHROME1"), 40, 5),
        ),
        (
            "mr12",
            frame(&desc(31, 64, 1, 16, 12, false, "MONOCHROME2"), 40, 6),
        ),
        ("rgb8", frame(&desc(48, 35, 3, 8, 8, false, "RGB"), 20, 7)),
        ("ct16-ctlike", ct_like_frame(128, 128)),
        (
            "ct16-fullrange",
            frame(&desc(128, 96, 1, 16, 16, true, "MONOCHROME2"), 4000, 11),
        ),
        (
            "ybr8",
            frame(&desc(20, 20, 3, 8, 8, false, "YBR_FULL"), 20, 8),
        ),
    ]
}

/// A signed 16-bit CT-like slice: air at -2000 around a noisy body disc
/// with a bone ring at 1734, and both range limits planted. Its 64x64
/// codeblocks code to 4 KiB or more, which made openjph-core 0.1 write packet
/// headers no decoder could read (see `htj2k::repair`).
fn ct_like_frame(cols: u16, rows: u16) -> NativeFrame {
    let d = desc(cols, rows, 1, 16, 16, true, "MONOCHROME2");
    let mut rng = Lcg(12);
    let (cx, cy) = (f64::from(cols) / 2.0, f64::from(rows) / 2.0);
    let r0 = cx.min(cy) * 0.9;
    let mut samples = Vec::with_capacity(d.sample_count());
    for y in 0..rows {
        for x in 0..cols {
            let r = (f64::from(x) - cx).hypot(f64::from(y) - cy);
            let v = if r > r0 {
                -2000
            } else if r > r0 - 4.0 {
                1734
            } else {
                40 + (rng.next() % 600) as i32 - 300
            };
            samples.push(v);
        }
    }
    samples[0] = -32768;
    samples[1] = 32767;
    NativeFrame {
        data: native::to_bytes(&samples, &d),
        desc: d,
    }
}

const LOSSLESS: &[&str] = &[
    ts::EXPLICIT_VR_LE,
    ts::IMPLICIT_VR_LE,
    ts::RLE_LOSSLESS,
    ts::JPEG_LOSSLESS,
    ts::JPEG_LOSSLESS_SV1,
    ts::JPEG_LS_LOSSLESS,
    ts::HTJ2K_LOSSLESS,
    ts::HTJ2K_RPCL,
];

#[test]
fn lossless_round_trips_are_bit_exact() {
    for (name, f) in test_frames() {
        for &target in LOSSLESS {
            assert!(can_encode(target, &f.desc), "{name} → {target}");
            let enc = encode_frame(target, &f, Quality::default())
                .unwrap_or_else(|e| panic!("{name} → {target}: {e}"));
            assert!(enc.lossy.is_none());
            let dec = decode_frame(target, &enc.bytes, &enc.desc)
                .unwrap_or_else(|e| panic!("{name} ← {target}: {e}"));
            assert_eq!(dec.desc.photometric, f.desc.photometric, "{name} {target}");
            assert!(dec.data == f.data, "{name} via {target} is not bit-exact");
        }
    }
}

#[test]
fn htj2k_decodes_identically_with_openjpeg() {
    // The encoder is OpenJPH's port; OpenJPEG's port is an independent decoder.
    for (name, f) in test_frames() {
        for &target in &[ts::HTJ2K_LOSSLESS, ts::HTJ2K_RPCL] {
            let enc = encode_frame(target, &f, Quality::default()).expect("encode");
            let dec = j2k::decode(&enc.bytes, &enc.desc).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert!(dec.data == f.data, "{name} {target}: OpenJPEG disagrees");
        }
    }
}

#[test]
fn htj2k_signed16_ct_decodes_everywhere() {
    // Regression: 16-bit CT came out of openjph-core with packet headers one
    // byte too long; openjph-core and OpenJPEG 2.5 both failed on it.
    let frames = [
        ct_like_frame(128, 128),
        ct_like_frame(200, 130),
        frame(&desc(128, 128, 1, 16, 16, true, "MONOCHROME2"), 60000, 13),
        frame(&desc(64, 128, 1, 16, 16, false, "MONOCHROME2"), 60000, 14),
    ];
    for f in &frames {
        for &target in &[ts::HTJ2K_LOSSLESS, ts::HTJ2K_RPCL] {
            assert!(can_encode(target, &f.desc));
            let enc = encode_frame(target, f, Quality::default()).expect("encode");
            let ours = decode_frame(target, &enc.bytes, &enc.desc).expect("decode");
            assert!(ours.data == f.data, "{target}: not bit-exact");
            let opj = j2k::decode(&enc.bytes, &enc.desc).expect("OpenJPEG");
            assert!(opj.data == f.data, "{target}: OpenJPEG disagrees");
        }
        let q = Quality::default();
        let enc = encode_frame(ts::HTJ2K, f, q).expect("encode lossy");
        let ours = decode_frame(ts::HTJ2K, &enc.bytes, &enc.desc).expect("decode lossy");
        let opj = j2k::decode(&enc.bytes, &enc.desc).expect("OpenJPEG lossy");
        let bound = (q.j2k_ratio * 4.0) as i32;
        assert!(
            max_abs_error(&ours, f) <= bound,
            "lossy error {}",
            max_abs_error(&ours, f)
        );
        assert!(
            max_abs_error(&opj, f) <= bound,
            "OpenJPEG lossy error {}",
            max_abs_error(&opj, f)
        );
    }
}

#[test]
fn htj2k_rpcl_has_rpcl_and_tlm() {
    let f = frame(&desc(64, 64, 1, 16, 16, true, "MONOCHROME2"), 50, 9);
    let enc = encode_frame(ts::HTJ2K_RPCL, &f, Quality::default()).expect("encode");
    let b = &enc.bytes;
    let find = |m: [u8; 2]| b.windows(2).position(|w| w == m);
    let cod = find([0xFF, 0x52]).expect("COD marker");
    // Scod(1) then SGcod: progression order byte; RPCL = 2
    assert_eq!(b[cod + 5], 2, "progression order is not RPCL");
    assert!(find([0xFF, 0x55]).is_some(), "no TLM marker");
    // the CAP marker says HTJ2K (Part 15)
    assert!(find([0xFF, 0x50]).is_some(), "no CAP marker");
}

#[test]
fn colour_htj2k_keeps_rgb() {
    let f = frame(&desc(16, 16, 3, 8, 8, false, "RGB"), 10, 10);
    let enc = encode_frame(ts::HTJ2K_LOSSLESS, &f, Quality::default()).expect("encode");
    assert_eq!(enc.desc.photometric, "RGB");
    let dec = decode_frame(ts::HTJ2K_LOSSLESS, &enc.bytes, &enc.desc).expect("decode");
    assert_eq!(dec.desc.photometric, "RGB");
    assert_eq!(dec.data, f.data);
}

#[test]
fn planar_native_input_is_interleaved() {
    let f = frame(&desc(5, 4, 3, 8, 8, false, "RGB"), 0, 11);
    let mut planar_desc = f.desc.clone();
    planar_desc.planar_configuration = 1;
    let s = native::samples(&f);
    let mut planes = Vec::new();
    for c in 0..3 {
        planes.extend(s.iter().skip(c).step_by(3).map(|&v| v as u8));
    }
    let dec = decode_frame(ts::EXPLICIT_VR_LE, &planes, &planar_desc).expect("decode");
    assert_eq!(dec.desc.planar_configuration, 0);
    assert_eq!(dec.data, f.data);
}

fn max_abs_error(a: &NativeFrame, b: &NativeFrame) -> i32 {
    native::samples(a)
        .iter()
        .zip(native::samples(b))
        .map(|(x, y)| (x - y).abs())
        .max()
        .unwrap_or(0)
}

#[test]
fn jpeg_ls_near_lossless_respects_near() {
    for (name, f) in test_frames() {
        for near in [1u8, 3] {
            let q = Quality {
                near_lossless: near,
                ..Quality::default()
            };
            let enc = match encode_frame(ts::JPEG_LS_NEAR, &f, q) {
                // our signed frames hold their range limits on purpose
                Err(TranscodeError::UnsupportedTarget(_)) if f.desc.is_signed() => continue,
                r => r.expect("encode"),
            };
            let info = enc.lossy.clone().expect("lossy info");
            assert_eq!(info.method, "ISO_14495_1");
            let dec = decode_frame(ts::JPEG_LS_NEAR, &enc.bytes, &enc.desc).expect("decode");
            let err = max_abs_error(&f, &dec);
            assert!(err <= i32::from(near), "{name} near {near}: error {err}");
        }
    }
}

#[test]
fn jpeg_ls_near_lossless_signed_without_extremes() {
    let d = desc(40, 30, 1, 16, 16, true, "MONOCHROME2");
    let f = frame(&d, 50, 18);
    let s: Vec<i32> = native::samples(&f).iter().map(|&v| v / 2).collect();
    let f = NativeFrame {
        data: native::to_bytes(&s, &d),
        desc: d,
    };
    let q = Quality {
        near_lossless: 2,
        ..Quality::default()
    };
    let enc = encode_frame(ts::JPEG_LS_NEAR, &f, q).expect("encode");
    let dec = decode_frame(ts::JPEG_LS_NEAR, &enc.bytes, &enc.desc).expect("decode");
    assert!(max_abs_error(&f, &dec) <= 2);
}

#[test]
fn jpeg_baseline_is_close() {
    // smooth images: JPEG at quality 95 stays within a few grey levels
    for d in [
        desc(64, 48, 1, 8, 8, false, "MONOCHROME2"),
        desc(64, 48, 3, 8, 8, false, "RGB"),
    ] {
        let f = frame(&d, 0, 12);
        assert!(can_encode(ts::JPEG_BASELINE, &d));
        let q = Quality {
            jpeg: 95,
            ..Quality::default()
        };
        let enc = encode_frame(ts::JPEG_BASELINE, &f, q).expect("encode");
        let info = enc.lossy.clone().expect("lossy info");
        assert_eq!(info.method, "ISO_10918_1");
        assert!(info.ratio > 1.0);
        if d.samples_per_pixel == 3 {
            assert_eq!(enc.desc.photometric, "YBR_FULL_422");
        }
        let dec = decode_frame(ts::JPEG_BASELINE, &enc.bytes, &enc.desc).expect("decode");
        assert_eq!(dec.desc.photometric, d.photometric);
        // planted black/white extremes next to mid-grey ring; bound the bulk
        let a = native::samples(&f);
        let b = native::samples(&dec);
        let mean: f64 = a
            .iter()
            .zip(&b)
            .map(|(x, y)| f64::from((x - y).abs()))
            .sum::<f64>()
            / a.len() as f64;
        assert!(mean < 3.0, "mean abs error {mean}");
    }
    assert!(!can_encode(
        ts::JPEG_BASELINE,
        &desc(8, 8, 1, 16, 12, false, "MONOCHROME2")
    ));
}

#[test]
fn htj2k_lossy_is_bounded() {
    for (name, f) in test_frames() {
        let q = Quality {
            j2k_ratio: 10.0,
            ..Quality::default()
        };
        let enc = encode_frame(ts::HTJ2K, &f, q).expect("encode");
        let info = enc.lossy.clone().expect("lossy info");
        assert_eq!(info.method, "ISO_15444_15");
        let dec = decode_frame(ts::HTJ2K, &enc.bytes, &enc.desc).expect("decode");
        // the quantisation step is j2k_ratio / 2 stored units; the error
        // stays within four steps even next to the planted range extremes
        let err = max_abs_error(&f, &dec);
        assert!(err <= 20, "{name}: max error {err}");
        assert!(info.ratio > 1.5, "{name}: ratio {}", info.ratio);
    }
}

#[test]
fn part1_j2k_encoding_is_refused_clearly() {
    let f = frame(&desc(8, 8, 1, 8, 8, false, "MONOCHROME2"), 0, 13);
    assert!(!can_encode(ts::J2K_LOSSLESS, &f.desc));
    let e = encode_frame(ts::J2K_LOSSLESS, &f, Quality::default()).unwrap_err();
    assert!(matches!(e, TranscodeError::UnsupportedTarget(_)));
    assert!(e.to_string().contains(ts::J2K_LOSSLESS));
}

#[test]
fn transcode_passes_through_and_converts() {
    let f = frame(&desc(40, 30, 1, 16, 16, true, "MONOCHROME2"), 100, 14);
    let same = transcode_frame(
        ts::RLE_LOSSLESS,
        b"opaque",
        &f.desc,
        ts::RLE_LOSSLESS,
        Quality::default(),
    )
    .expect("passthrough");
    assert_eq!(same.bytes, b"opaque");
    let rle = encode_frame(ts::RLE_LOSSLESS, &f, Quality::default()).expect("rle");
    let ls = transcode_frame(
        ts::RLE_LOSSLESS,
        &rle.bytes,
        &f.desc,
        ts::JPEG_LS_LOSSLESS,
        Quality::default(),
    )
    .expect("rle → jpeg-ls");
    let back = transcode_frame(
        ts::JPEG_LS_LOSSLESS,
        &ls.bytes,
        &ls.desc,
        ts::EXPLICIT_VR_LE,
        Quality::default(),
    )
    .expect("jpeg-ls → native");
    assert_eq!(back.bytes, f.data);
    assert!(matches!(
        transcode_frame(
            "1.2.3",
            b"",
            &f.desc,
            ts::EXPLICIT_VR_LE,
            Quality::default()
        ),
        Err(TranscodeError::UnsupportedSource(_))
    ));
}

#[test]
fn garbage_is_an_error_not_a_panic() {
    let d = desc(16, 16, 1, 16, 16, true, "MONOCHROME2");
    let mut rng = Lcg(15);
    let f = frame(&d, 50, 16);
    for &target in LOSSLESS.iter().skip(2) {
        let enc = encode_frame(target, &f, Quality::default()).expect("encode");
        for cut in [0, 1, 10, enc.bytes.len() / 2] {
            let _ = decode_frame(target, &enc.bytes[..cut], &d);
        }
        let mut noisy = enc.bytes.clone();
        for _ in 0..8 {
            let i = rng.next() as usize % noisy.len();
            noisy[i] ^= 0x5A;
        }
        let _ = decode_frame(target, &noisy, &d);
    }
    let junk: Vec<u8> = (0..200).map(|_| rng.next() as u8).collect();
    for ts_uid in [
        ts::RLE_LOSSLESS,
        ts::JPEG_BASELINE,
        ts::JPEG_LS_LOSSLESS,
        ts::J2K,
        ts::HTJ2K,
    ] {
        assert!(decode_frame(ts_uid, &junk, &d).is_err(), "{ts_uid}");
    }
    // a description that does not match the codestream
    let enc = encode_frame(ts::JPEG_LS_LOSSLESS, &f, Quality::default()).expect("encode");
    let wrong = desc(17, 16, 1, 16, 16, true, "MONOCHROME2");
    assert!(decode_frame(ts::JPEG_LS_LOSSLESS, &enc.bytes, &wrong).is_err());
}

// ---- rendering ----

fn ct_frame(values: &[i16], cols: u16) -> NativeFrame {
    let d = desc(
        cols,
        (values.len() / usize::from(cols)) as u16,
        1,
        16,
        16,
        true,
        "MONOCHROME2",
    );
    NativeFrame {
        data: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        desc: d,
    }
}

fn png_pixels(r: &Rendered) -> image::DynamicImage {
    image::load_from_memory(&r.bytes).expect("valid image")
}

#[test]
fn window_functions_match_the_standard() {
    let lin = Window {
        center: 40.0,
        width: 400.0,
        function: VoiFunction::Linear,
    };
    // C.11.2.1.2.1: x <= c - 0.5 - (w-1)/2 → 0; x > c - 0.5 + (w-1)/2 → max
    assert_eq!(render::apply_window(-160.0, &lin, 255.0), 0.0);
    assert_eq!(render::apply_window(240.0, &lin, 255.0), 255.0);
    // centre: ((40 - 39.5)/399 + 0.5) * 255 = 127.82
    assert!((render::apply_window(40.0, &lin, 255.0) - 127.819_548).abs() < 1e-3);
    let exact = Window {
        center: 0.0,
        width: 100.0,
        function: VoiFunction::LinearExact,
    };
    assert_eq!(render::apply_window(-50.0, &exact, 255.0), 0.0);
    assert!((render::apply_window(25.0, &exact, 255.0) - 191.25).abs() < 1e-9);
    let sig = Window {
        center: 10.0,
        width: 20.0,
        function: VoiFunction::Sigmoid,
    };
    assert!((render::apply_window(10.0, &sig, 255.0) - 127.5).abs() < 1e-9);
    // 255 / (1 + e^-2) = 224.60
    assert!((render::apply_window(20.0, &sig, 255.0) - 224.603).abs() < 1e-2);
}

#[test]
fn render_ct_with_rescale_and_window_png8() {
    // stored + 1024 intercept: HU = stored - 1024
    let f = ct_frame(&[0, 1024, 1064, 2048], 2);
    let opts = RenderOptions {
        rescale: (1.0, -1024.0),
        window: Some(Window {
            center: 40.0,
            width: 80.0,
            function: VoiFunction::LinearExact,
        }),
        format: RenderFormat::Png8,
        ..RenderOptions::default()
    };
    let r = render(&f, &opts).expect("render");
    assert_eq!(r.content_type, "image/png");
    assert_eq!((r.width, r.height), (2, 2));
    let img = png_pixels(&r).to_luma8();
    // HU -1024 → 0; HU 0 → ((0-40)/80+0.5)*255 = 0; HU 40 → 127.5 → 128; HU 1024 → 255
    assert_eq!(img.as_raw(), &vec![0, 0, 128, 255]);
}

#[test]
fn render_defaults_to_header_window_then_min_max() {
    let f = ct_frame(&[-100, 0, 100, 300], 4);
    let header = RenderOptions {
        header_windows: vec![(0.0, 201.0)],
        format: RenderFormat::Png8,
        ..RenderOptions::default()
    };
    let img = png_pixels(&render(&f, &header).expect("render")).to_luma8();
    // LINEAR c=0 w=201: -100 <= -100.5? no → ((−100+0.5)/200+0.5)*255 = 0.6375 → 1
    assert_eq!(img.as_raw(), &vec![1, 128, 255, 255]);
    let minmax = RenderOptions {
        format: RenderFormat::Png16,
        ..RenderOptions::default()
    };
    let img = png_pixels(&render(&f, &minmax).expect("render")).to_luma16();
    // LINEAR_EXACT over [-100, 300]: c=100 w=400; 0 → 0.25*65535 = 16383.75 → 16384
    assert_eq!(img.as_raw(), &vec![0, 16384, 32768, 65535]);
}

#[test]
fn render_inverts_monochrome1() {
    let mut f = ct_frame(&[0, 10], 2);
    f.desc.photometric = "MONOCHROME1".into();
    let opts = RenderOptions {
        format: RenderFormat::Png8,
        ..RenderOptions::default()
    };
    let img = png_pixels(&render(&f, &opts).expect("render")).to_luma8();
    assert_eq!(img.as_raw(), &vec![255, 0]);
    let keep = RenderOptions {
        invert_monochrome1: false,
        ..opts
    };
    let img = png_pixels(&render(&f, &keep).expect("render")).to_luma8();
    assert_eq!(img.as_raw(), &vec![0, 255]);
}

#[test]
fn render_viewport_keeps_aspect_and_jpeg_works() {
    let f = frame(&desc(200, 100, 1, 16, 12, false, "MONOCHROME2"), 10, 17);
    let opts = RenderOptions {
        viewport: Some((64, 64)),
        format: RenderFormat::Jpeg { quality: 80 },
        ..RenderOptions::default()
    };
    let r = render(&f, &opts).expect("render");
    assert_eq!(r.content_type, "image/jpeg");
    assert_eq!((r.width, r.height), (64, 32));
    let img = png_pixels(&r);
    assert_eq!((img.width(), img.height()), (64, 32));
}

#[test]
fn render_colour_and_palette() {
    let rgb = NativeFrame {
        desc: desc(2, 1, 3, 8, 8, false, "RGB"),
        data: vec![255, 0, 0, 0, 0, 255],
    };
    let opts = RenderOptions {
        format: RenderFormat::Png8,
        ..RenderOptions::default()
    };
    let img = png_pixels(&render(&rgb, &opts).expect("render")).to_rgb8();
    assert_eq!(img.as_raw(), &vec![255, 0, 0, 0, 0, 255]);
    // YBR_FULL grey (Y=100, Cb=Cr=128) and pure Y=76,Cb=85,Cr=255 ≈ red
    let ybr = NativeFrame {
        desc: desc(2, 1, 3, 8, 8, false, "YBR_FULL"),
        data: vec![100, 128, 128, 76, 85, 255],
    };
    let img = png_pixels(&render(&ybr, &opts).expect("render")).to_rgb8();
    assert_eq!(&img.as_raw()[..3], &[100, 100, 100]);
    assert!(img.as_raw()[3] > 250 && img.as_raw()[4] < 5 && img.as_raw()[5] < 5);
    let pal = NativeFrame {
        desc: desc(2, 1, 1, 8, 8, false, "PALETTE COLOR"),
        data: vec![0, 1],
    };
    assert!(render(&pal, &opts).is_err());
    let with = RenderOptions {
        palette: Some(PaletteLut {
            first_mapped: 0,
            bits: 16,
            red: vec![0xFFFF, 0],
            green: vec![0, 0],
            blue: vec![0, 0x8000],
        }),
        ..opts
    };
    let img = png_pixels(&render(&pal, &with).expect("render")).to_rgb8();
    assert_eq!(img.as_raw(), &vec![255, 0, 0, 0, 0, 128]);
}

/// Writes encoded frames for the independent decoders in
/// `transcode/check_independent.py` when `TRANSCODE_DUMP` names a folder.
#[test]
#[ignore = "produces files for check_independent.py"]
fn dump_for_independent_decoders() {
    let Ok(dir) = std::env::var("TRANSCODE_DUMP") else {
        return;
    };
    let dir = std::path::PathBuf::from(dir);
    std::fs::create_dir_all(&dir).expect("dump dir");
    for (name, f) in test_frames() {
        let d = &f.desc;
        std::fs::write(dir.join(format!("{name}.raw")), &f.data).expect("write");
        let meta = format!(
            "{} {} {} {} {} {} {}",
            d.rows,
            d.columns,
            d.samples_per_pixel,
            d.bits_allocated,
            d.bits_stored,
            d.pixel_representation,
            d.photometric
        );
        std::fs::write(dir.join(format!("{name}.desc")), meta).expect("write");
        for (ext, target) in [
            ("j2c", ts::HTJ2K_RPCL),
            ("htj2k", ts::HTJ2K_LOSSLESS),
            ("jls", ts::JPEG_LS_LOSSLESS),
            ("ljpg", ts::JPEG_LOSSLESS_SV1),
            ("rle", ts::RLE_LOSSLESS),
        ] {
            let enc = encode_frame(target, &f, Quality::default()).expect("encode");
            std::fs::write(dir.join(format!("{name}.{ext}")), &enc.bytes).expect("write");
        }
    }
}

#[test]
fn decodes_openjpeg_part1_signed_ct() {
    // testdata/ct_signed16_opj.j2k: written by OpenJPEG 2.5 (pylibjpeg-openjpeg
    // `encode`, lossless) from testdata/ct_signed16.raw, 64x64 signed 16-bit,
    // holding both range limits.
    let j2k = include_bytes!("testdata/ct_signed16_opj.j2k");
    let raw = include_bytes!("testdata/ct_signed16.raw");
    let d = desc(64, 64, 1, 16, 16, true, "MONOCHROME2");
    for ts_uid in [ts::J2K_LOSSLESS, ts::J2K] {
        let dec = decode_frame(ts_uid, j2k, &d).expect("decode");
        assert_eq!(dec.data, raw.to_vec());
    }
    // and on to every lossless target, bit-exact
    for &target in LOSSLESS {
        let enc = transcode_frame(ts::J2K_LOSSLESS, j2k, &d, target, Quality::default())
            .expect("transcode");
        let back = decode_frame(target, &enc.bytes, &enc.desc).expect("decode");
        assert_eq!(back.data, raw.to_vec(), "{target}");
    }
}

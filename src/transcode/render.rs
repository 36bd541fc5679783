//! Rendering a decoded frame for `/rendered` and `/thumbnail`:
//! Modality LUT (rescale), VOI window (PS3.3 C.11.2.1.2: LINEAR,
//! LINEAR_EXACT, SIGMOID), MONOCHROME1 inversion, palette colour, colour to
//! 8-bit RGB, viewport scaling with the aspect ratio kept, and JPEG or PNG
//! output.
//!
//! The window is the explicit one if given, else the first header window,
//! else the frame's own min/max after rescale (mapped with LINEAR_EXACT, so
//! the minimum renders black and the maximum white).

use image::{DynamicImage, ImageBuffer, Luma, Rgb};

use super::native;
use super::{NativeFrame, TranscodeError};

/// VOI LUT Function (0028,1056).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VoiFunction {
    Linear,
    LinearExact,
    Sigmoid,
}

/// Window center and width with the function to apply.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Window {
    pub center: f64,
    pub width: f64,
    pub function: VoiFunction,
}

/// Output format.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RenderFormat {
    /// Baseline JPEG with this quality (1–100).
    Jpeg { quality: u8 },
    /// 8-bit PNG (grey or RGB).
    Png8,
    /// 16-bit PNG (grey or RGB), the window mapped onto 0..=65535.
    Png16,
}

/// Palette colour lookup tables (0028,1101..1203).
#[derive(Debug, Clone, PartialEq)]
pub struct PaletteLut {
    /// First stored value mapped (the descriptor's second value).
    pub first_mapped: i32,
    /// Bits per entry (8 or 16, the descriptor's third value).
    pub bits: u16,
    pub red: Vec<u16>,
    pub green: Vec<u16>,
    pub blue: Vec<u16>,
}

/// How to render a frame.
#[derive(Debug, Clone, PartialEq)]
pub struct RenderOptions {
    /// Explicit window (from the request's `window` parameter).
    pub window: Option<Window>,
    /// Rescale Slope and Rescale Intercept.
    pub rescale: (f64, f64),
    /// Window Center/Width pairs from the header (first one is used).
    pub header_windows: Vec<(f64, f64)>,
    /// Header VOI LUT Function for the header windows.
    pub header_function: VoiFunction,
    /// Fit into (width, height), keeping the aspect ratio.
    pub viewport: Option<(u32, u32)>,
    pub format: RenderFormat,
    /// Invert when the photometric is MONOCHROME1 (on by default).
    pub invert_monochrome1: bool,
    /// Needed for PALETTE COLOR frames.
    pub palette: Option<PaletteLut>,
}

impl Default for RenderOptions {
    fn default() -> Self {
        RenderOptions {
            window: None,
            rescale: (1.0, 0.0),
            header_windows: Vec::new(),
            header_function: VoiFunction::Linear,
            viewport: None,
            format: RenderFormat::Jpeg { quality: 90 },
            invert_monochrome1: true,
            palette: None,
        }
    }
}

/// A rendered image.
#[derive(Debug, Clone, PartialEq)]
pub struct Rendered {
    pub bytes: Vec<u8>,
    /// `image/jpeg` or `image/png`.
    pub content_type: &'static str,
    pub width: u32,
    pub height: u32,
}

fn rerr(m: impl std::fmt::Display) -> TranscodeError {
    TranscodeError::Render(m.to_string())
}

/// Map a modality value through a window onto `0..=ymax`
/// (PS3.3 C.11.2.1.2.1 / C.11.2.1.3.1).
pub(crate) fn apply_window(x: f64, w: &Window, ymax: f64) -> f64 {
    let (c, width) = (w.center, w.width);
    match w.function {
        VoiFunction::Linear => {
            let width = width.max(1.0);
            let lo = c - 0.5 - (width - 1.0) / 2.0;
            let hi = c - 0.5 + (width - 1.0) / 2.0;
            if x <= lo {
                0.0
            } else if x > hi || width <= 1.0 {
                ymax
            } else {
                ((x - (c - 0.5)) / (width - 1.0) + 0.5) * ymax
            }
        }
        VoiFunction::LinearExact => {
            let width = if width > 0.0 {
                width
            } else {
                f64::MIN_POSITIVE
            };
            if x <= c - width / 2.0 {
                0.0
            } else if x > c + width / 2.0 {
                ymax
            } else {
                ((x - c) / width + 0.5) * ymax
            }
        }
        VoiFunction::Sigmoid => {
            let width = if width > 0.0 {
                width
            } else {
                f64::MIN_POSITIVE
            };
            ymax / (1.0 + (-4.0 * (x - c) / width).exp())
        }
    }
}

/// Render a decoded frame.
pub fn render(frame: &NativeFrame, opts: &RenderOptions) -> Result<Rendered, TranscodeError> {
    let desc = &frame.desc;
    native::validate(desc)?;
    if frame.data.len() < desc.frame_len() {
        return Err(TranscodeError::Corrupt(
            "native frame is shorter than its description".into(),
        ));
    }
    // Normalise layout (planar → interleaved) first.
    let frame = native::decode(&frame.data, desc)?;
    let samples = native::samples(&frame);
    let (w, h) = (u32::from(desc.columns), u32::from(desc.rows));
    let sixteen = opts.format == RenderFormat::Png16;
    let ymax = if sixteen { 65535.0 } else { 255.0 };
    let photometric = desc.photometric.as_str();

    let img: DynamicImage = if desc.samples_per_pixel == 1 && photometric == "PALETTE COLOR" {
        let lut = opts
            .palette
            .as_ref()
            .ok_or_else(|| rerr("PALETTE COLOR frame without palette tables"))?;
        let shift = if lut.bits > 8 { 8 } else { 0 };
        let last = lut.red.len().min(lut.green.len()).min(lut.blue.len());
        if last == 0 {
            return Err(rerr("empty palette tables"));
        }
        let mut rgb = Vec::with_capacity(samples.len() * 3);
        for &v in &samples {
            let idx =
                (i64::from(v) - i64::from(lut.first_mapped)).clamp(0, last as i64 - 1) as usize;
            for t in [&lut.red, &lut.green, &lut.blue] {
                rgb.push((t[idx] >> shift) as u8);
            }
        }
        rgb_image(w, h, rgb)?
    } else if desc.samples_per_pixel == 1 {
        let (slope, intercept) = opts.rescale;
        let values: Vec<f64> = samples
            .iter()
            .map(|&v| f64::from(v) * slope + intercept)
            .collect();
        let window = opts
            .window
            .or_else(|| {
                opts.header_windows.first().map(|&(center, width)| Window {
                    center,
                    width,
                    function: opts.header_function,
                })
            })
            .unwrap_or_else(|| {
                let (min, max) = values
                    .iter()
                    .fold((f64::MAX, f64::MIN), |(a, b), &v| (a.min(v), b.max(v)));
                Window {
                    center: (min + max) / 2.0,
                    width: (max - min).max(1.0),
                    function: VoiFunction::LinearExact,
                }
            });
        let invert = opts.invert_monochrome1 && photometric == "MONOCHROME1";
        let mapped = values.iter().map(|&x| {
            let y = apply_window(x, &window, ymax).round().clamp(0.0, ymax);
            if invert {
                ymax - y
            } else {
                y
            }
        });
        if sixteen {
            let px: Vec<u16> = mapped.map(|y| y as u16).collect();
            DynamicImage::ImageLuma16(
                ImageBuffer::<Luma<u16>, _>::from_raw(w, h, px)
                    .ok_or_else(|| rerr("buffer size"))?,
            )
        } else {
            let px: Vec<u8> = mapped.map(|y| y as u8).collect();
            DynamicImage::ImageLuma8(
                ImageBuffer::<Luma<u8>, _>::from_raw(w, h, px)
                    .ok_or_else(|| rerr("buffer size"))?,
            )
        }
    } else {
        // Colour: scale the stored range to 8 bits, YBR_FULL → RGB.
        let bits = i32::from(desc.bits_stored);
        let max_in = f64::from((1i32 << bits) - 1);
        let to8 = |v: i32| {
            (f64::from(v.max(0)) * 255.0 / max_in)
                .round()
                .clamp(0.0, 255.0)
        };
        let mut rgb = Vec::with_capacity(samples.len());
        let ybr = photometric.starts_with("YBR");
        for px in samples.chunks_exact(3) {
            let (a, b, c) = (to8(px[0]), to8(px[1]), to8(px[2]));
            let (r, g, bl) = if ybr {
                (
                    a + 1.402 * (c - 128.0),
                    a - 0.344_136 * (b - 128.0) - 0.714_136 * (c - 128.0),
                    a + 1.772 * (b - 128.0),
                )
            } else {
                (a, b, c)
            };
            for v in [r, g, bl] {
                rgb.push(v.round().clamp(0.0, 255.0) as u8);
            }
        }
        rgb_image(w, h, rgb)?
    };

    let img = match opts.viewport {
        Some((vw, vh)) if vw > 0 && vh > 0 && (vw, vh) != (w, h) => {
            let scale = (f64::from(vw) / f64::from(w)).min(f64::from(vh) / f64::from(h));
            let nw = ((f64::from(w) * scale).round() as u32).max(1);
            let nh = ((f64::from(h) * scale).round() as u32).max(1);
            img.resize_exact(nw, nh, image::imageops::FilterType::Triangle)
        }
        _ => img,
    };
    let img = if sixteen && !matches!(img, DynamicImage::ImageLuma16(_)) {
        DynamicImage::ImageRgb16(img.to_rgb16())
    } else {
        img
    };
    let (width, height) = (img.width(), img.height());
    let mut bytes = Vec::new();
    let content_type = match opts.format {
        RenderFormat::Jpeg { quality } => {
            let enc = image::codecs::jpeg::JpegEncoder::new_with_quality(
                &mut bytes,
                quality.clamp(1, 100),
            );
            img.write_with_encoder(enc).map_err(rerr)?;
            "image/jpeg"
        }
        RenderFormat::Png8 | RenderFormat::Png16 => {
            let enc = image::codecs::png::PngEncoder::new(&mut bytes);
            img.write_with_encoder(enc).map_err(rerr)?;
            "image/png"
        }
    };
    Ok(Rendered {
        bytes,
        content_type,
        width,
        height,
    })
}

fn rgb_image(w: u32, h: u32, rgb: Vec<u8>) -> Result<DynamicImage, TranscodeError> {
    Ok(DynamicImage::ImageRgb8(
        ImageBuffer::<Rgb<u8>, _>::from_raw(w, h, rgb).ok_or_else(|| rerr("buffer size"))?,
    ))
}

//! Conversions on the read path: an instance's pixel description (from its precomputed
//! metadata), negotiation that knows what our codecs can produce, and converted frames,
//! whole instances and rendered images. Codec work runs on the bounded pool; converted
//! frames and renderings are kept in the memory tier by (instance, frame, syntax or
//! parameters), and concurrent requests for the same key share one conversion.

use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use dicom_core::value::{PixelFragmentSequence, Value};
use dicom_core::{DataElement, PrimitiveValue, VR};
use dicom_dictionary_std::tags;
use serde_json::{Map, Value as Json};

use super::negotiate::{Choice, Convert};
use super::{ApiError, AppState};
use crate::metrics::Metrics;
use crate::store::derived;
use crate::store::layout::{self, Range};
use crate::store::{InstanceRecord, Selector};
use crate::transcode::{self, pool, PixelDesc, Quality, VoiFunction};
use crate::types::ts;

/// Pixel attributes of an instance, as the codecs and the renderer need them.
#[derive(Debug, Clone)]
pub struct PixelInfo {
    pub desc: PixelDesc,
    pub rescale: (f64, f64),
    pub windows: Vec<(f64, f64)>,
    pub voi_function: VoiFunction,
}

/// What our codecs can convert, for one instance's pixels.
pub struct Codecs<'a>(pub &'a PixelDesc);

impl Convert for Codecs<'_> {
    fn can_convert(&self, from: &str, to: &str) -> bool {
        transcode::can_decode(from) && transcode::can_encode(to, self.0)
    }
}

/// The instance's pixel attributes, read from its stored metadata.
pub async fn pixel_info(state: &AppState, record: &InstanceRecord) -> Result<PixelInfo, ApiError> {
    let index = Arc::clone(state.store.index());
    let (study, sop) = (record.study_uid.clone(), record.sop_instance_uid.clone());
    let meta = tokio::task::spawn_blocking(move || {
        index.metadata(&Selector {
            study: &study,
            series: None,
            instance: Some(&sop),
        })
    })
    .await??;
    let json: Map<String, Json> = meta
        .first()
        .and_then(|m| serde_json::from_str(m).ok())
        .ok_or_else(|| ApiError::Internal("instance metadata missing".into()))?;
    pixel_info_from_json(&json)
}

fn numbers(json: &Map<String, Json>, key: &str) -> Vec<f64> {
    json.get(key)
        .and_then(|v| v["Value"].as_array())
        .map(|a| a.iter().filter_map(Json::as_f64).collect())
        .unwrap_or_default()
}

fn text(json: &Map<String, Json>, key: &str) -> Option<String> {
    json.get(key)?["Value"][0]
        .as_str()
        .map(|s| s.trim().to_string())
}

pub fn pixel_info_from_json(json: &Map<String, Json>) -> Result<PixelInfo, ApiError> {
    let int = |key: &str, what: &str| {
        numbers(json, key)
            .first()
            .map(|v| *v as u16)
            .ok_or_else(|| {
                ApiError::NotAcceptable(format!("the instance has no {what}: it is not an image"))
            })
    };
    let bits_allocated = int("00280100", "Bits Allocated")?;
    let desc = PixelDesc {
        rows: int("00280010", "Rows")?,
        columns: int("00280011", "Columns")?,
        samples_per_pixel: int("00280002", "Samples per Pixel").unwrap_or(1),
        bits_allocated,
        bits_stored: int("00280101", "Bits Stored").unwrap_or(bits_allocated),
        high_bit: int("00280102", "High Bit").unwrap_or(bits_allocated.saturating_sub(1)),
        pixel_representation: int("00280103", "Pixel Representation").unwrap_or(0),
        photometric: text(json, "00280004").unwrap_or_else(|| "MONOCHROME2".into()),
        planar_configuration: int("00280006", "Planar Configuration").unwrap_or(0),
    };
    let slope = numbers(json, "00281053").first().copied().unwrap_or(1.0);
    let intercept = numbers(json, "00281052").first().copied().unwrap_or(0.0);
    let windows = numbers(json, "00281050")
        .into_iter()
        .zip(numbers(json, "00281051"))
        .collect();
    let voi_function = match text(json, "00281056").as_deref() {
        Some("LINEAR_EXACT") => VoiFunction::LinearExact,
        Some("SIGMOID") => VoiFunction::Sigmoid,
        _ => VoiFunction::Linear,
    };
    Ok(PixelInfo {
        desc,
        rescale: (slope, intercept),
        windows,
        voi_function,
    })
}

pub fn quality(state: &AppState) -> Quality {
    let t = &state.config.transcode;
    Quality {
        jpeg: t.jpeg_quality,
        near_lossless: t.near_lossless,
        j2k_ratio: t.htj2k_ratio,
    }
}

/// The stored bytes of one frame: byte ranges of the file, or already in memory.
#[derive(Clone)]
pub enum RawFrame {
    Ranges(PathBuf, Vec<Range>),
    Bytes(Bytes),
}

impl RawFrame {
    pub(in crate::web) fn read(self) -> Result<Vec<u8>, String> {
        match self {
            RawFrame::Ranges(path, ranges) => {
                layout::read_ranges(&path, &ranges).map_err(|e| e.to_string())
            }
            RawFrame::Bytes(b) => Ok(b.to_vec()),
        }
    }
}

/// The syntax the stored frame bytes are in (native storage is cut as little-endian bytes).
pub fn frame_source_ts(record: &InstanceRecord) -> &str {
    super::negotiate::pixel_source_ts(&record.transfer_syntax_uid)
}

fn codec_error(e: impl std::fmt::Display) -> ApiError {
    ApiError::NotAcceptable(format!("the pixel data cannot be converted: {e}"))
}

/// One frame converted as `choice` says (cached in memory, read from the disk tier when
/// prefetch kept it there; one conversion per key).
pub async fn converted_frame(
    state: &AppState,
    record: &InstanceRecord,
    info: &PixelInfo,
    frame_no: u32,
    raw: RawFrame,
    choice: &Choice,
) -> Result<Bytes, ApiError> {
    let key = format!(
        "frame:{}:{}:{frame_no}:{}",
        record.sop_instance_uid, record.sha256, choice.transfer_syntax
    );
    let from = frame_source_ts(record).to_string();
    let to = choice.transfer_syntax.clone();
    let desc = info.desc.clone();
    let q = quality(state);
    let metrics = Arc::clone(&state.metrics);
    let store = Arc::clone(&state.store);
    let (study, sop, version) = (
        record.study_uid.clone(),
        record.sop_instance_uid.clone(),
        record.sha256.clone(),
    );
    state
        .store
        .hot()
        .try_get_with(key, async move {
            let kept = derived::FrameKey {
                study: &study,
                sop: &sop,
                version: &version,
                frame: frame_no,
                ts: &to,
            };
            if let Some(bytes) = store.derived().read(&kept).await {
                return Ok(bytes);
            }
            let to = to.clone();
            let encoded = pool::run(move || {
                let bytes = raw.read()?;
                transcode::transcode_frame(&from, &bytes, &desc, &to, q)
                    .map(|e| Bytes::from(e.bytes))
                    .map_err(|e| e.to_string())
            })
            .await?;
            if encoded.is_ok() {
                Metrics::inc(&metrics.frames_converted_total);
            }
            encoded
        })
        .await
        .map_err(|e: Arc<String>| codec_error(e))
}

/// [`converted_frame`], also kept in the disk tier (prefetch's preparation for reading).
pub async fn keep_converted_frame(
    state: &AppState,
    record: &InstanceRecord,
    info: &PixelInfo,
    frame_no: u32,
    raw: RawFrame,
    choice: &Choice,
) -> Result<(), ApiError> {
    let key = derived::FrameKey {
        study: &record.study_uid,
        sop: &record.sop_instance_uid,
        version: &record.sha256,
        frame: frame_no,
        ts: &choice.transfer_syntax,
    };
    if state.store.derived().contains(&key).await {
        return Ok(());
    }
    let bytes = converted_frame(state, record, info, frame_no, raw, choice).await?;
    state
        .store
        .derived()
        .write(&key, &bytes)
        .await
        .map_err(|e| ApiError::Internal(format!("keeping a converted frame: {e}")))
}

/// A whole instance converted to `target_ts`: every frame transcoded, Photometric
/// Interpretation and the Lossy Image Compression attributes updated (PS3.3 C.7.6.1.1.5).
pub async fn converted_instance(
    state: &AppState,
    record: &InstanceRecord,
    info: &PixelInfo,
    frames: Vec<RawFrame>,
    target_ts: &str,
) -> Result<Bytes, ApiError> {
    let path = state.store.absolute(&record.file_path);
    let from = frame_source_ts(record).to_string();
    let to = target_ts.to_string();
    let desc = info.desc.clone();
    let q = quality(state);
    pool::run(move || build_instance(&path, frames, &from, &desc, &to, q))
        .await
        .map_err(ApiError::Internal)?
}

fn build_instance(
    path: &std::path::Path,
    frames: Vec<RawFrame>,
    from: &str,
    desc: &PixelDesc,
    to: &str,
    q: Quality,
) -> Result<Bytes, ApiError> {
    let mut encoded = Vec::with_capacity(frames.len());
    for raw in frames {
        let bytes = raw.read().map_err(ApiError::Internal)?;
        encoded.push(transcode::transcode_frame(from, &bytes, desc, to, q).map_err(codec_error)?);
    }
    let mut obj = dicom_object::OpenFileOptions::new()
        .read_until(tags::PIXEL_DATA)
        .open_file(path)
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    let new_desc = encoded
        .first()
        .map(|e| e.desc.clone())
        .unwrap_or_else(|| desc.clone());
    let lossy = encoded.iter().find_map(|e| e.lossy.clone());
    let pixel = if to == ts::EXPLICIT_VR_LE || to == ts::IMPLICIT_VR_LE {
        let vr = if new_desc.bits_allocated > 8 {
            VR::OW
        } else {
            VR::OB
        };
        let data: Vec<u8> = encoded.into_iter().flat_map(|e| e.bytes).collect();
        DataElement::new(tags::PIXEL_DATA, vr, PrimitiveValue::from(data))
    } else {
        let fragments: Vec<Vec<u8>> = encoded
            .into_iter()
            .map(|e| {
                let mut b = e.bytes;
                if b.len() % 2 == 1 {
                    b.push(0);
                }
                b
            })
            .collect();
        DataElement::new(
            tags::PIXEL_DATA,
            VR::OB,
            Value::PixelSequence(PixelFragmentSequence::new(Vec::<u32>::new(), fragments)),
        )
    };
    obj.put(pixel);
    obj.put(DataElement::new(
        tags::PHOTOMETRIC_INTERPRETATION,
        VR::CS,
        PrimitiveValue::from(new_desc.photometric.as_str()),
    ));
    if new_desc.samples_per_pixel > 1 {
        obj.put(DataElement::new(
            tags::PLANAR_CONFIGURATION,
            VR::US,
            PrimitiveValue::from(new_desc.planar_configuration),
        ));
    }
    if let Some(l) = lossy {
        mark_lossy(&mut obj, l.ratio, l.method);
    }
    let ts_entry = dicom_encoding::TransferSyntaxIndex::get(
        &dicom_transfer_syntax_registry::TransferSyntaxRegistry,
        to,
    )
    .ok_or_else(|| ApiError::NotAcceptable(format!("unknown transfer syntax {to}")))?;
    obj.update_meta(|m| m.set_transfer_syntax(ts_entry));
    let mut out = Vec::new();
    obj.write_all(&mut out)
        .map_err(|e| ApiError::Internal(format!("cannot write the converted instance: {e}")))?;
    Ok(Bytes::from(out))
}

/// Lossy Image Compression "01", with this step's ratio and method appended to any earlier.
fn mark_lossy(obj: &mut dicom_object::InMemDicomObject, ratio: f64, method: &str) {
    let previous = |obj: &dicom_object::InMemDicomObject, tag| {
        obj.element(tag)
            .ok()
            .and_then(|e| e.to_multi_str().ok().map(|v| v.to_vec()))
            .unwrap_or_default()
    };
    let mut ratios = previous(obj, tags::LOSSY_IMAGE_COMPRESSION_RATIO);
    ratios.push(format!("{ratio:.2}"));
    let mut methods = previous(obj, tags::LOSSY_IMAGE_COMPRESSION_METHOD);
    methods.push(method.to_string());
    obj.put(DataElement::new(
        tags::LOSSY_IMAGE_COMPRESSION,
        VR::CS,
        PrimitiveValue::from("01"),
    ));
    obj.put(DataElement::new(
        tags::LOSSY_IMAGE_COMPRESSION_RATIO,
        VR::DS,
        PrimitiveValue::Strs(ratios.into()),
    ));
    obj.put(DataElement::new(
        tags::LOSSY_IMAGE_COMPRESSION_METHOD,
        VR::CS,
        PrimitiveValue::Strs(methods.into()),
    ));
}

/// A frame rendered with `opts` (cached by instance, frame and parameters).
pub async fn rendered_frame(
    state: &AppState,
    record: &InstanceRecord,
    info: &PixelInfo,
    frame_no: u32,
    raw: RawFrame,
    opts: transcode::RenderOptions,
    cache_key: &str,
) -> Result<(Bytes, &'static str), ApiError> {
    let key = format!(
        "render:{}:{}:{frame_no}:{cache_key}",
        record.sop_instance_uid, record.sha256
    );
    let from = frame_source_ts(record).to_string();
    let desc = info.desc.clone();
    let content_type = match opts.format {
        transcode::RenderFormat::Jpeg { .. } => "image/jpeg",
        _ => "image/png",
    };
    let bytes = state
        .store
        .hot()
        .try_get_with(key, async move {
            pool::run(move || {
                let bytes = raw.read()?;
                let native =
                    transcode::decode_frame(&from, &bytes, &desc).map_err(|e| e.to_string())?;
                transcode::render(&native, &opts)
                    .map(|r| Bytes::from(r.bytes))
                    .map_err(|e| e.to_string())
            })
            .await?
        })
        .await
        .map_err(|e: Arc<String>| codec_error(e))?;
    Ok((bytes, content_type))
}

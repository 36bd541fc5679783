//! Rendered resources (PS3.18 §10.4.1.1.3) and thumbnails (Supplement 203): a frame decoded,
//! put through the Modality LUT and a VOI window (the request's `window`, else the header's,
//! else the frame's range), scaled to `viewport`, and sent as JPEG (`quality`) or PNG.
//! A thumbnail is a small rendering of a representative frame: the middle frame of an
//! instance, the middle instance of a series, the first series of a study.

use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use super::convert::{self, PixelInfo};
use super::search::parse_query_string;
use super::wado::{
    accept, etag_of, frame_source, local_records, lookup, not_modified, raw_frame,
    set_cache_headers, set_header, Target,
};
use super::{pulled, ApiError, AppState};
use crate::store::InstanceRecord;
use crate::transcode::{RenderFormat, RenderOptions, VoiFunction, Window};

/// What the request asked for.
#[derive(Debug, Clone, PartialEq)]
struct RenderRequest {
    window: Option<Window>,
    viewport: Option<(u32, u32)>,
    quality: Option<u8>,
    png: bool,
}

fn parse_request(headers: &HeaderMap, raw: Option<&str>) -> Result<RenderRequest, ApiError> {
    let png = pick_format(headers)?;
    let mut req = RenderRequest {
        window: None,
        viewport: None,
        quality: None,
        png,
    };
    for (k, v) in parse_query_string(raw.unwrap_or(""))? {
        match k.as_str() {
            "window" => req.window = Some(parse_window(&v)?),
            "viewport" => req.viewport = Some(parse_viewport(&v)?),
            "quality" => {
                let q: u8 = v
                    .parse()
                    .ok()
                    .filter(|q| (1..=100).contains(q))
                    .ok_or_else(|| {
                        ApiError::BadRequest(format!(
                            "quality={v:?} must be a number from 1 to 100"
                        ))
                    })?;
                req.quality = Some(q);
            }
            "annotation" | "charset" | "accept" => {}
            other => {
                return Err(ApiError::BadRequest(format!(
                    "unknown rendering parameter {other:?}; supported: window, viewport, quality"
                )))
            }
        }
    }
    Ok(req)
}

/// JPEG unless the client prefers PNG; 406 for anything else.
fn pick_format(headers: &HeaderMap) -> Result<bool, ApiError> {
    for r in accept(headers) {
        match r.media_type.as_str() {
            "image/png" => return Ok(true),
            "image/jpeg" | "image/*" | "*/*" => return Ok(false),
            _ => {}
        }
    }
    Err(ApiError::NotAcceptable(
        "rendered images are available as image/jpeg or image/png".into(),
    ))
}

/// `center,width[,function]` (PS3.18 §8.3.5.1.3).
fn parse_window(v: &str) -> Result<Window, ApiError> {
    let bad = || {
        ApiError::BadRequest(format!(
            "window={v:?} must be center,width[,linear|linear-exact|sigmoid] with width > 0"
        ))
    };
    let parts: Vec<&str> = v.split(',').map(str::trim).collect();
    if parts.len() < 2 || parts.len() > 3 {
        return Err(bad());
    }
    let center: f64 = parts[0].parse().map_err(|_| bad())?;
    let width: f64 = parts[1].parse().map_err(|_| bad())?;
    if !(center.is_finite() && width.is_finite() && width > 0.0) {
        return Err(bad());
    }
    let function = match parts.get(2).map(|f| f.to_ascii_lowercase()) {
        None => VoiFunction::Linear,
        Some(f) if f == "linear" => VoiFunction::Linear,
        Some(f) if f == "linear-exact" || f == "linear_exact" => VoiFunction::LinearExact,
        Some(f) if f == "sigmoid" => VoiFunction::Sigmoid,
        Some(_) => return Err(bad()),
    };
    Ok(Window {
        center,
        width,
        function,
    })
}

/// `vw,vh` (the cropping form with six values is not supported).
fn parse_viewport(v: &str) -> Result<(u32, u32), ApiError> {
    let parts: Vec<u32> = v
        .split(',')
        .map(|p| p.trim().parse::<u32>())
        .collect::<Result<_, _>>()
        .map_err(|_| ApiError::BadRequest(format!("viewport={v:?} must be width,height")))?;
    match parts.as_slice() {
        [w, h] if *w > 0 && *h > 0 && *w <= 8192 && *h <= 8192 => Ok((*w, *h)),
        _ => Err(ApiError::BadRequest(format!(
            "viewport={v:?} must be width,height between 1 and 8192 (cropping is not supported)"
        ))),
    }
}

fn options(
    state: &AppState,
    info: &PixelInfo,
    req: &RenderRequest,
    thumbnail: bool,
) -> RenderOptions {
    let t = &state.config.transcode;
    let default_quality = if thumbnail { 75 } else { t.rendered_quality };
    let viewport = req
        .viewport
        .or_else(|| thumbnail.then_some((t.thumbnail_size, t.thumbnail_size)));
    RenderOptions {
        window: req.window,
        rescale: info.rescale,
        header_windows: info.windows.clone(),
        header_function: info.voi_function,
        viewport,
        format: if req.png {
            RenderFormat::Png8
        } else {
            RenderFormat::Jpeg {
                quality: req.quality.unwrap_or(default_quality),
            }
        },
        ..RenderOptions::default()
    }
}

/// Render one frame of one instance and answer it.
async fn respond(
    state: &AppState,
    headers: &HeaderMap,
    record: &InstanceRecord,
    frame_no: Option<u32>,
    req: RenderRequest,
    thumbnail: bool,
) -> Result<Response, ApiError> {
    let info = convert::pixel_info(state, record).await?;
    let source = frame_source(state, record).await?;
    let count = source.len() as u32;
    let frame = frame_no.unwrap_or(if thumbnail {
        count.div_ceil(2).max(1)
    } else {
        1
    });
    if frame == 0 || frame > count {
        return Err(ApiError::NotFound(format!(
            "frame {frame} does not exist: the instance has {count} frame(s)"
        )));
    }
    let opts = options(state, &info, &req, thumbnail);
    let key = format!("{opts:?}");
    let etag = etag_of([format!(
        "{}:{}:{frame}:{key}",
        record.sop_instance_uid, record.sha256
    )]);
    if let Some(resp) = not_modified(headers, &etag) {
        return Ok(resp);
    }
    let path = state.store.absolute(&record.file_path);
    let raw = raw_frame(&source, &path, frame);
    let (bytes, content_type) =
        convert::rendered_frame(state, record, &info, frame, raw, opts, &key).await?;
    let mut resp = (StatusCode::OK, bytes).into_response();
    set_header(&mut resp, header::CONTENT_TYPE, content_type);
    set_cache_headers(&mut resp, &etag, true);
    Ok(resp)
}

pub async fn instance_rendered(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((study, series, instance)): Path<(String, String, String)>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    instance_image(&state, &headers, (study, series, instance), None, q, false).await
}

pub async fn frame_rendered(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((study, series, instance, frame)): Path<(String, String, String, String)>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let frame = Some(single_frame(&frame)?);
    instance_image(&state, &headers, (study, series, instance), frame, q, false).await
}

pub async fn instance_thumbnail(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((study, series, instance)): Path<(String, String, String)>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    instance_image(&state, &headers, (study, series, instance), None, q, true).await
}

pub async fn frame_thumbnail(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((study, series, instance, frame)): Path<(String, String, String, String)>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let frame = Some(single_frame(&frame)?);
    instance_image(&state, &headers, (study, series, instance), frame, q, true).await
}

/// A rendering or thumbnail of one instance (pulled from its PACS when not cached).
async fn instance_image(
    state: &AppState,
    headers: &HeaderMap,
    (study, series, instance): (String, String, String),
    frame: Option<u32>,
    query: Option<String>,
    thumbnail: bool,
) -> Result<Response, ApiError> {
    let req = parse_request(headers, query.as_deref())?;
    let target = Target::new(&study, Some(&series), Some(&instance))?;
    let record = lookup(state, &target).await?.remove(0);
    respond(state, headers, &record, frame, req, thumbnail).await
}

pub async fn series_thumbnail(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((study, series)): Path<(String, String)>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let req = parse_request(&headers, q.as_deref())?;
    let target = Target::new(&study, Some(&series), None)?;
    let record = representative(&state, &target).await?;
    respond(&state, &headers, &record, None, req, true).await
}

pub async fn study_thumbnail(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(study): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let req = parse_request(&headers, q.as_deref())?;
    let target = Target::new(&study, None, None)?;
    let record = representative(&state, &target).await?;
    respond(&state, &headers, &record, None, req, true).await
}

fn single_frame(list: &str) -> Result<u32, ApiError> {
    list.trim()
        .parse::<u32>()
        .ok()
        .filter(|f| *f >= 1)
        .ok_or_else(|| {
            ApiError::BadRequest(format!(
                "{list:?} is not one frame number (frames start at 1)"
            ))
        })
}

/// The image a series or study thumbnail shows: the middle image of the first series that
/// has images (records come in series, then instance order).
async fn representative(state: &AppState, target: &Target) -> Result<InstanceRecord, ApiError> {
    let mut records = local_records(state, target).await?;
    if records.is_empty() && state.pull.enabled() {
        pulled::ensure_complete(state, target.retrieve_target()).await?;
        records = local_records(state, target).await?;
    }
    let images: Vec<&InstanceRecord> = records.iter().filter(|r| r.rows.is_some()).collect();
    let Some(first) = images.first() else {
        return Err(ApiError::NotFound("no image to make a thumbnail of".into()));
    };
    let series: Vec<&&InstanceRecord> = images
        .iter()
        .filter(|r| r.series_uid == first.series_uid)
        .collect();
    Ok((*series[series.len() / 2]).clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_and_viewport_parameters() {
        let w = parse_window("40,400").unwrap();
        assert_eq!(
            (w.center, w.width, w.function),
            (40.0, 400.0, VoiFunction::Linear)
        );
        assert_eq!(
            parse_window("40,400,sigmoid").unwrap().function,
            VoiFunction::Sigmoid
        );
        assert!(parse_window("40").is_err());
        assert!(parse_window("40,0").is_err());
        assert_eq!(parse_viewport("256,128").unwrap(), (256, 128));
        assert!(parse_viewport("0,10").is_err());
        assert!(parse_viewport("1,2,3,4,5,6").is_err());
    }
}

//! WADO-RS handlers (PS3.18 §10.4): study, series and instance retrieve as streamed
//! `multipart/related; type="application/dicom"`, metadata from the precomputed index JSON,
//! frames cut from the stored pixel data by byte range, and bulk data. Strong ETags on
//! every UID-addressed resource.

use std::path::PathBuf;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use sha2::{Digest, Sha256};

use super::multipart::{self, PartError, PartWriter};
use super::negotiate::{self, Choice, MediaRange};
use super::search::checked_uid;
use super::{base_url, convert, pulled, ApiError, AppState};
use crate::dimse::retrieve_scu::RetrieveTarget;
use crate::metrics::Metrics;
use crate::store::layout::{self, PixelGeometry, Range};
use crate::store::{InstanceRecord, Selector};
use crate::types::ts;

/// UIDs of a WADO-RS path, validated.
pub(super) struct Target {
    study: String,
    series: Option<String>,
    instance: Option<String>,
}

impl Target {
    pub(super) fn new(
        study: &str,
        series: Option<&str>,
        instance: Option<&str>,
    ) -> Result<Self, ApiError> {
        Ok(Target {
            study: checked_uid("study", study)?,
            series: series.map(|s| checked_uid("series", s)).transpose()?,
            instance: instance.map(|s| checked_uid("instance", s)).transpose()?,
        })
    }

    fn selector(&self) -> Selector<'_> {
        Selector {
            study: &self.study,
            series: self.series.as_deref(),
            instance: self.instance.as_deref(),
        }
    }

    pub(super) fn retrieve_target(&self) -> RetrieveTarget {
        RetrieveTarget {
            study: self.study.clone(),
            series: self.series.clone(),
            instance: self.instance.clone(),
        }
    }

    fn describe(&self) -> String {
        match (&self.series, &self.instance) {
            (_, Some(i)) => format!("instance {i}"),
            (Some(s), None) => format!("series {s}"),
            _ => format!("study {}", self.study),
        }
    }
}

/// Records of the target in the cache; an instance not in the cache is pulled from the PACS
/// that holds it first (or waited for, when a running retrieve brings it).
pub(super) async fn lookup(
    state: &AppState,
    target: &Target,
) -> Result<Vec<InstanceRecord>, ApiError> {
    let records = local_records(state, target).await?;
    if !records.is_empty() || !state.pull.enabled() || target.instance.is_none() {
        return found(records, target);
    }
    pulled::ensure_instance(state, target.retrieve_target()).await?;
    found(local_records(state, target).await?, target)
}

fn found(records: Vec<InstanceRecord>, target: &Target) -> Result<Vec<InstanceRecord>, ApiError> {
    if records.is_empty() {
        return Err(ApiError::NotFound(format!(
            "{} is not in the cache",
            target.describe()
        )));
    }
    Ok(records)
}

pub(super) async fn local_records(
    state: &AppState,
    target: &Target,
) -> Result<Vec<InstanceRecord>, ApiError> {
    let index = state.store.index().clone();
    let (study, series, instance) = (
        target.study.clone(),
        target.series.clone(),
        target.instance.clone(),
    );
    let records = tokio::task::spawn_blocking(move || {
        index.instances(&Selector {
            study: &study,
            series: series.as_deref(),
            instance: instance.as_deref(),
        })
    })
    .await??;
    Ok(records)
}

// ---------------------------------------------------------------- retrieve

pub async fn retrieve_study(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(study): Path<String>,
) -> Result<Response, ApiError> {
    retrieve(state, headers, Target::new(&study, None, None)?).await
}

pub async fn retrieve_series(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((study, series)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    retrieve(state, headers, Target::new(&study, Some(&series), None)?).await
}

pub async fn retrieve_instance(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((study, series, instance)): Path<(String, String, String)>,
) -> Result<Response, ApiError> {
    retrieve(
        state,
        headers,
        Target::new(&study, Some(&series), Some(&instance))?,
    )
    .await
}

async fn retrieve(
    state: AppState,
    headers: HeaderMap,
    target: Target,
) -> Result<Response, ApiError> {
    let ranges = accept(&headers);
    let records = local_records(&state, &target).await?;
    let refetch = state.pull.enabled()
        && (records.is_empty() || last_retrieve_incomplete(&state, &target).await?);
    if refetch {
        return pulled::progressive_retrieve(state, target.retrieve_target(), ranges).await;
    }
    let records = found(records, &target)?;
    let mut plan = Vec::with_capacity(records.len());
    let mut refused: Vec<&str> = Vec::new();
    for r in &records {
        match plan_instance(&state, &ranges, r).await {
            Some(p) => plan.push(p),
            None => refused.push(&r.transfer_syntax_uid),
        }
    }
    if plan.is_empty() {
        return Err(not_acceptable(&headers, &refused));
    }
    let etag = etag_of(plan.iter().map(|p| {
        format!(
            "{}:{}:{}",
            p.record.sop_instance_uid, p.record.sha256, p.choice.transfer_syntax
        )
    }));
    if let Some(resp) = not_modified(&headers, &etag) {
        return Ok(resp);
    }
    let boundary = multipart::new_boundary();
    let content_type = multipart::content_type("application/dicom", None, &boundary);
    let (writer, body) = multipart::channel(boundary);
    let skipped = refused.len();
    tokio::spawn(send_instances(state.clone(), writer, plan));
    let mut resp = (StatusCode::OK, body).into_response();
    set_header(&mut resp, header::CONTENT_TYPE, &content_type);
    set_header(&mut resp, header::ETAG, &etag);
    if skipped > 0 {
        set_header(
            &mut resp,
            header::WARNING,
            &format!("299 tsunagi \"{skipped} instance(s) omitted: not available in an acceptable transfer syntax\""),
        );
    }
    Ok(resp)
}

/// How one instance will be sent: as stored or rewritten when that is acceptable, else
/// converted by our codecs when they can produce an acceptable syntax.
pub(super) struct Planned {
    pub record: InstanceRecord,
    pub choice: Choice,
    pub info: Option<convert::PixelInfo>,
}

pub(super) async fn plan_instance(
    state: &AppState,
    ranges: &[MediaRange],
    record: &InstanceRecord,
) -> Option<Planned> {
    let ts = &record.transfer_syntax_uid;
    if let Some(choice) = negotiate::choose_instance(ranges, ts, &negotiate::AsStoredOnly) {
        return Some(Planned {
            record: record.clone(),
            choice,
            info: None,
        });
    }
    let info = convert::pixel_info(state, record).await.ok()?;
    let choice = negotiate::choose_instance(ranges, ts, &convert::Codecs(&info.desc))?;
    Some(Planned {
        record: record.clone(),
        choice,
        info: Some(info),
    })
}

async fn send_instances(state: AppState, mut w: PartWriter, plan: Vec<Planned>) {
    for p in plan {
        match send_instance(&state, &mut w, &p).await {
            Ok(()) => {}
            Err(PartError::Closed) => return,
            Err(PartError::Io(e)) => {
                tracing::error!(sop = %p.record.sop_instance_uid, error = %e, "instance could not be sent");
                w.fail(e).await;
                return;
            }
        }
    }
    let _ = w.finish().await;
}

fn io_error(e: impl std::fmt::Display) -> PartError {
    PartError::Io(std::io::Error::other(e.to_string()))
}

/// One instance as a part: streamed from its file, rewritten to Explicit VR LE, or with its
/// pixel data converted.
pub(super) async fn send_instance(
    state: &AppState,
    w: &mut PartWriter,
    planned: &Planned,
) -> Result<(), PartError> {
    let (record, choice) = (&planned.record, &planned.choice);
    let path = state.store.absolute(&record.file_path);
    let ct = format!(
        "application/dicom; transfer-syntax={}",
        choice.transfer_syntax
    );
    let n = if let (true, Some(info)) = (choice.transcode, &planned.info) {
        let frames = raw_frames(state, record).await.map_err(io_error)?;
        let bytes =
            convert::converted_instance(state, record, info, frames, &choice.transfer_syntax)
                .await
                .map_err(io_error)?;
        let n = bytes.len() as u64;
        w.bytes_part(&ct, bytes)
            .await
            .map_err(|_| PartError::Closed)?;
        n
    } else if choice.rewrite {
        let bytes = tokio::task::spawn_blocking(move || rewrite_explicit_le(&path))
            .await
            .map_err(io_error)?
            .map_err(io_error)?;
        let n = bytes.len() as u64;
        w.bytes_part(&ct, bytes)
            .await
            .map_err(|_| PartError::Closed)?;
        n
    } else {
        w.file_part(&ct, &path).await?
    };
    Metrics::inc(&state.metrics.wado_instances_total);
    Metrics::add(&state.metrics.wado_bytes_total, n);
    Ok(())
}

/// Every frame of an instance as stored bytes (ranges of its file, or parsed).
async fn raw_frames(
    state: &AppState,
    record: &InstanceRecord,
) -> Result<Vec<convert::RawFrame>, ApiError> {
    let path = state.store.absolute(&record.file_path);
    Ok(match frame_source(state, record).await? {
        FrameSource::Ranges(index) => index
            .frames
            .iter()
            .map(|r| convert::RawFrame::Ranges(path.clone(), r.clone()))
            .collect(),
        FrameSource::Decoded(frames) => frames.into_iter().map(convert::RawFrame::Bytes).collect(),
    })
}

/// Rewrite an Implicit VR Little Endian file as Explicit VR Little Endian (same values).
fn rewrite_explicit_le(path: &std::path::Path) -> Result<Bytes, String> {
    use dicom_transfer_syntax_registry::entries::EXPLICIT_VR_LITTLE_ENDIAN;
    let mut obj = dicom_object::open_file(path).map_err(|e| e.to_string())?;
    obj.update_meta(|m| m.set_transfer_syntax(&EXPLICIT_VR_LITTLE_ENDIAN.erased()));
    let mut out = Vec::new();
    obj.write_all(&mut out).map_err(|e| e.to_string())?;
    Ok(Bytes::from(out))
}

// ---------------------------------------------------------------- metadata

pub async fn study_metadata(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(study): Path<String>,
) -> Result<Response, ApiError> {
    metadata(state, headers, Target::new(&study, None, None)?).await
}

pub async fn series_metadata(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((study, series)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    metadata(state, headers, Target::new(&study, Some(&series), None)?).await
}

pub async fn instance_metadata(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((study, series, instance)): Path<(String, String, String)>,
) -> Result<Response, ApiError> {
    metadata(
        state,
        headers,
        Target::new(&study, Some(&series), Some(&instance))?,
    )
    .await
}

async fn metadata(
    state: AppState,
    headers: HeaderMap,
    target: Target,
) -> Result<Response, ApiError> {
    let accepts_json = accept(&headers).iter().any(|r| {
        matches!(
            r.media_type.as_str(),
            "application/dicom+json" | "application/json" | "*/*" | "application/*"
        )
    });
    if !accepts_json {
        return Err(ApiError::NotAcceptable(
            "metadata is available as application/dicom+json".into(),
        ));
    }
    let warning = fill_for_metadata(&state, &target).await?;
    let index = state.store.index().clone();
    let base = base_url(&headers, &state.config);
    let body = tokio::task::spawn_blocking(move || -> Result<Option<String>, ApiError> {
        let objects = index.metadata(&target.selector())?;
        if objects.is_empty() {
            return Ok(None);
        }
        Ok(Some(join_metadata(&objects, &base)))
    })
    .await??;
    let Some(body) = body else {
        return Err(ApiError::NotFound("not in the cache".into()));
    };
    let etag = etag_of(std::iter::once(body.as_str()));
    if let Some(resp) = not_modified(&headers, &etag) {
        return Ok(resp);
    }
    let mut resp = body.into_response();
    set_header(&mut resp, header::CONTENT_TYPE, "application/dicom+json");
    match warning {
        Some(w) => {
            *resp.status_mut() = StatusCode::PARTIAL_CONTENT;
            set_header(&mut resp, header::WARNING, &pulled::warning_value(&w));
        }
        None => set_header(&mut resp, header::ETAG, &etag),
    }
    Ok(resp)
}

async fn last_retrieve_incomplete(state: &AppState, target: &Target) -> Result<bool, ApiError> {
    if target.instance.is_some() {
        return Ok(false);
    }
    let index = Arc::clone(state.store.index());
    let (study, series) = (target.study.clone(), target.series.clone());
    let found =
        tokio::task::spawn_blocking(move || index.incomplete_retrieval(&study, series.as_deref()))
            .await??;
    Ok(found.is_some())
}

/// Metadata is served for complete data only: what is missing from the cache, or still
/// arriving, is retrieved first. Returns a warning when the PACS could not deliver it all.
async fn fill_for_metadata(state: &AppState, target: &Target) -> Result<Option<String>, ApiError> {
    if !state.pull.enabled() {
        return Ok(None);
    }
    let wanted = target.retrieve_target();
    let cached = !local_records(state, target).await?.is_empty();
    if cached
        && !state.pull.is_retrieving(&wanted)
        && !last_retrieve_incomplete(state, target).await?
    {
        return Ok(None);
    }
    if target.instance.is_some() {
        pulled::ensure_instance(state, wanted).await?;
        return Ok(None);
    }
    pulled::ensure_complete(state, wanted).await
}

/// A JSON array of the stored objects with BulkDataURIs made absolute.
fn join_metadata(objects: &[String], base: &str) -> String {
    let base_json = serde_json::to_string(base).unwrap_or_default();
    let base_inner = base_json.trim_matches('"');
    let needle = "\"BulkDataURI\":\"";
    let replacement = format!("{needle}{base_inner}/");
    let mut out = String::with_capacity(objects.iter().map(|o| o.len() + 64).sum());
    out.push('[');
    for (i, o) in objects.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&o.replace(needle, &replacement));
    }
    out.push(']');
    out
}

// ---------------------------------------------------------------- frames

pub async fn frames(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((study, series, instance, list)): Path<(String, String, String, String)>,
) -> Result<Response, ApiError> {
    let target = Target::new(&study, Some(&series), Some(&instance))?;
    let wanted = parse_frame_list(&list)?;
    let record = lookup(&state, &target).await?.remove(0);
    let ranges = accept(&headers);
    let (choice, info) = match negotiate::choose_frames(
        &ranges,
        &record.transfer_syntax_uid,
        &negotiate::AsStoredOnly,
    ) {
        Some(c) => (c, None),
        None => {
            let info = convert::pixel_info(&state, &record).await?;
            let c = negotiate::choose_frames(
                &ranges,
                &record.transfer_syntax_uid,
                &convert::Codecs(&info.desc),
            )
            .ok_or_else(|| not_acceptable(&headers, &[&record.transfer_syntax_uid]))?;
            (c, Some(info))
        }
    };
    let path = state.store.absolute(&record.file_path);
    let source = frame_source(&state, &record).await?;
    let count = source.len();
    if let Some(bad) = wanted.iter().find(|f| **f as usize > count) {
        return Err(ApiError::NotFound(format!(
            "frame {bad} does not exist: the instance has {count} frame(s)"
        )));
    }
    let etag = etag_of(std::iter::once(format!(
        "{}:{}:{list}:{}",
        record.sop_instance_uid, record.sha256, choice.transfer_syntax
    )));
    if let Some(resp) = not_modified(&headers, &etag) {
        return Ok(resp);
    }
    let part_ct = format!(
        "{}; transfer-syntax={}",
        choice.part_type, choice.transfer_syntax
    );
    let boundary = multipart::new_boundary();
    let content_type =
        multipart::content_type(&choice.part_type, Some(&choice.transfer_syntax), &boundary);
    let (mut w, body) = multipart::channel(boundary);
    if let (true, Some(info)) = (choice.transcode, info) {
        let raws: Vec<(u32, convert::RawFrame)> = wanted
            .iter()
            .map(|f| (*f, raw_frame(&source, &path, *f)))
            .collect();
        tokio::spawn(send_converted_frames(
            state, w, record, info, choice, part_ct, raws,
        ));
        let mut resp = (StatusCode::OK, body).into_response();
        set_header(&mut resp, header::CONTENT_TYPE, &content_type);
        set_header(&mut resp, header::ETAG, &etag);
        return Ok(resp);
    }
    match source {
        FrameSource::Ranges(index) => {
            let parts: Vec<Vec<Range>> = wanted
                .iter()
                .map(|f| index.frames[*f as usize - 1].clone())
                .collect();
            tokio::spawn(send_ranges(state, w, path, part_ct, parts, true));
        }
        FrameSource::Decoded(frames) => {
            tokio::spawn(async move {
                for f in wanted {
                    let bytes = frames[f as usize - 1].clone();
                    Metrics::inc(&state.metrics.wado_frames_total);
                    Metrics::add(&state.metrics.wado_bytes_total, bytes.len() as u64);
                    if w.bytes_part(&part_ct, bytes).await.is_err() {
                        return;
                    }
                }
                let _ = w.finish().await;
            });
        }
    }
    let mut resp = (StatusCode::OK, body).into_response();
    set_header(&mut resp, header::CONTENT_TYPE, &content_type);
    set_header(&mut resp, header::ETAG, &etag);
    Ok(resp)
}

pub(super) fn raw_frame(
    source: &FrameSource,
    path: &std::path::Path,
    frame: u32,
) -> convert::RawFrame {
    let i = frame as usize - 1;
    match source {
        FrameSource::Ranges(index) => {
            convert::RawFrame::Ranges(path.to_path_buf(), index.frames[i].clone())
        }
        FrameSource::Decoded(frames) => convert::RawFrame::Bytes(frames[i].clone()),
    }
}

async fn send_converted_frames(
    state: AppState,
    mut w: PartWriter,
    record: InstanceRecord,
    info: convert::PixelInfo,
    choice: Choice,
    part_ct: String,
    raws: Vec<(u32, convert::RawFrame)>,
) {
    for (frame_no, raw) in raws {
        match convert::converted_frame(&state, &record, &info, frame_no, raw, &choice).await {
            Ok(bytes) => {
                Metrics::inc(&state.metrics.wado_frames_total);
                Metrics::add(&state.metrics.wado_bytes_total, bytes.len() as u64);
                if w.bytes_part(&part_ct, bytes).await.is_err() {
                    return;
                }
            }
            Err(e) => {
                tracing::warn!(sop = %record.sop_instance_uid, frame_no, error = %e, "frame conversion failed");
                w.fail(std::io::Error::other(e.to_string())).await;
                return;
            }
        }
    }
    let _ = w.finish().await;
}

/// Where frame bytes come from: byte ranges of the stored file, or (for deflated and
/// big-endian files, whose pixel bytes cannot be cut out as stored) the parsed pixel data.
pub(super) enum FrameSource {
    Ranges(std::sync::Arc<layout::FrameIndex>),
    Decoded(Vec<Bytes>),
}

impl FrameSource {
    pub(super) fn len(&self) -> usize {
        match self {
            FrameSource::Ranges(i) => i.frames.len(),
            FrameSource::Decoded(f) => f.len(),
        }
    }
}

pub(super) async fn frame_source(
    state: &AppState,
    record: &InstanceRecord,
) -> Result<FrameSource, ApiError> {
    match frame_index(state, record).await {
        Ok(index) => Ok(FrameSource::Ranges(index)),
        Err(ApiError::NotAcceptable(_)) if ts::is_native(&record.transfer_syntax_uid) => {
            let geom = geometry(record)?;
            let path = state.store.absolute(&record.file_path);
            let frames =
                tokio::task::spawn_blocking(move || parsed_native_frames(&path, &geom)).await??;
            Ok(FrameSource::Decoded(frames))
        }
        Err(e) => Err(e),
    }
}

/// Native frames of a file the layout walker cannot cut (deflated or big endian): parse the
/// whole data set; dicom-rs gives the values in little-endian order.
fn parsed_native_frames(
    path: &std::path::Path,
    geom: &PixelGeometry,
) -> Result<Vec<Bytes>, ApiError> {
    let obj = dicom_object::open_file(path).map_err(|e| ApiError::Internal(e.to_string()))?;
    let pixels = obj
        .element(dicom_dictionary_std::tags::PIXEL_DATA)
        .map_err(|_| ApiError::NotFound("the instance has no pixel data".into()))?
        .to_bytes()
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    let len = geom.frame_len() as usize;
    if len == 0 {
        return Err(ApiError::Internal("zero-sized frames".into()));
    }
    Ok(pixels
        .chunks_exact(len)
        .take(geom.number_of_frames.max(1) as usize)
        .map(Bytes::copy_from_slice)
        .collect())
}

/// 1-based frame numbers, comma-separated.
fn parse_frame_list(list: &str) -> Result<Vec<u32>, ApiError> {
    let frames: Result<Vec<u32>, _> = list
        .split(',')
        .map(|f| match f.trim().parse::<u32>() {
            Ok(n) if n >= 1 => Ok(n),
            _ => Err(ApiError::BadRequest(format!(
                "frame list {list:?}: {f:?} is not a frame number (frames start at 1)"
            ))),
        })
        .collect();
    let frames = frames?;
    if frames.len() > 10_000 {
        return Err(ApiError::BadRequest(
            "too many frames in one request".into(),
        ));
    }
    Ok(frames)
}

async fn frame_index(
    state: &AppState,
    record: &InstanceRecord,
) -> Result<std::sync::Arc<layout::FrameIndex>, ApiError> {
    let geom = geometry(record)?;
    state
        .store
        .frame_index(record, geom)
        .await
        .map_err(|e| match e.as_ref() {
            layout::LayoutError::NoPixelData => {
                ApiError::NotFound("the instance has no pixel data".into())
            }
            layout::LayoutError::Unsupported(m) => ApiError::NotAcceptable(format!(
                "frames of this instance cannot be served as stored ({m})"
            )),
            other => ApiError::Internal(other.to_string()),
        })
}

fn geometry(record: &InstanceRecord) -> Result<PixelGeometry, ApiError> {
    let get = |v: Option<i64>, what: &str| {
        v.and_then(|x| u32::try_from(x).ok()).ok_or_else(|| {
            ApiError::NotFound(format!("the instance has no {what}: it is not an image"))
        })
    };
    let index = record.clone();
    Ok(PixelGeometry {
        rows: get(index.rows, "Rows")?,
        columns: get(index.columns, "Columns")?,
        bits_allocated: get(index.bits_allocated, "Bits Allocated")?,
        number_of_frames: index
            .number_of_frames
            .and_then(|n| u32::try_from(n).ok())
            .unwrap_or(1),
        samples_per_pixel: index
            .samples_per_pixel
            .and_then(|n| u32::try_from(n).ok())
            .unwrap_or(1),
    })
}

async fn send_ranges(
    state: AppState,
    mut w: PartWriter,
    path: PathBuf,
    part_ct: String,
    parts: Vec<Vec<Range>>,
    frames: bool,
) {
    for ranges in parts {
        match w.ranges_part(&part_ct, &path, &ranges).await {
            Ok(n) => {
                if frames {
                    Metrics::inc(&state.metrics.wado_frames_total);
                }
                Metrics::add(&state.metrics.wado_bytes_total, n);
            }
            Err(PartError::Closed) => return,
            Err(PartError::Io(e)) => {
                tracing::error!(file = %path.display(), error = %e, "frame could not be sent");
                w.fail(e).await;
                return;
            }
        }
    }
    let _ = w.finish().await;
}

// ---------------------------------------------------------------- bulk data

pub async fn bulk(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((study, series, instance, tag_path)): Path<(String, String, String, String)>,
) -> Result<Response, ApiError> {
    let target = Target::new(&study, Some(&series), Some(&instance))?;
    let steps = parse_tag_path(&tag_path)?;
    let record = lookup(&state, &target).await?.remove(0);
    let path = state.store.absolute(&record.file_path);
    let ranges = accept(&headers);
    let octet_ok = ranges.iter().any(|r| {
        matches!(r.part_type(), "application/octet-stream" | "*/*" | "") || r.media_type == "*/*"
    });
    if !octet_ok {
        return Err(ApiError::NotAcceptable(
            "bulk data is available as multipart/related; type=\"application/octet-stream\"".into(),
        ));
    }
    let parts: Vec<Vec<Range>>;
    let ts_param: String;
    if steps.len() == 1 && steps[0] == BulkStep::Tag(0x7FE0, 0x0010) {
        let index = frame_index(&state, &record).await?;
        ts_param = if index.encapsulated {
            record.transfer_syntax_uid.clone()
        } else {
            ts::EXPLICIT_VR_LE.to_string()
        };
        parts = if index.encapsulated {
            index.frames.clone()
        } else {
            vec![index.frames.iter().flatten().copied().collect()]
        };
    } else {
        let bytes = tokio::task::spawn_blocking(move || read_bulk_value(&path, &steps)).await??;
        let boundary = multipart::new_boundary();
        let content_type = multipart::content_type("application/octet-stream", None, &boundary);
        let (mut w, body) = multipart::channel(boundary);
        tokio::spawn(async move {
            if w.bytes_part("application/octet-stream", bytes)
                .await
                .is_ok()
            {
                let _ = w.finish().await;
            }
        });
        let mut resp = (StatusCode::OK, body).into_response();
        set_header(&mut resp, header::CONTENT_TYPE, &content_type);
        return Ok(resp);
    }
    let part_ct = format!("application/octet-stream; transfer-syntax={ts_param}");
    let boundary = multipart::new_boundary();
    let content_type =
        multipart::content_type("application/octet-stream", Some(&ts_param), &boundary);
    let (w, body) = multipart::channel(boundary);
    tokio::spawn(send_ranges(state, w, path, part_ct, parts, false));
    let mut resp = (StatusCode::OK, body).into_response();
    set_header(&mut resp, header::CONTENT_TYPE, &content_type);
    Ok(resp)
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum BulkStep {
    Tag(u16, u16),
    Item(usize),
}

/// `7FE00010` or `00540016/0/00181072`: tags and item indexes.
fn parse_tag_path(path: &str) -> Result<Vec<BulkStep>, ApiError> {
    let bad = || ApiError::BadRequest(format!("bulk data path {path:?} is not TAG[/ITEM/TAG...]"));
    let steps: Vec<BulkStep> = path
        .split('/')
        .enumerate()
        .map(|(i, s)| {
            if i % 2 == 0 {
                if s.len() != 8 {
                    return Err(bad());
                }
                let g = u16::from_str_radix(&s[..4], 16).map_err(|_| bad())?;
                let e = u16::from_str_radix(&s[4..], 16).map_err(|_| bad())?;
                Ok(BulkStep::Tag(g, e))
            } else {
                s.parse().map(BulkStep::Item).map_err(|_| bad())
            }
        })
        .collect::<Result<_, _>>()?;
    if steps.is_empty() || steps.len() % 2 == 0 {
        return Err(bad());
    }
    Ok(steps)
}

/// Read one binary value by parsing the file (values other than Pixel Data are small).
fn read_bulk_value(path: &std::path::Path, steps: &[BulkStep]) -> Result<Bytes, ApiError> {
    use dicom_core::value::Value;
    let obj = dicom_object::open_file(path).map_err(|e| ApiError::Internal(e.to_string()))?;
    let missing = || ApiError::NotFound("no such bulk data element".into());
    let mut current: &dicom_object::InMemDicomObject = &obj;
    let mut iter = steps.iter().peekable();
    while let Some(step) = iter.next() {
        let BulkStep::Tag(g, e) = step else {
            return Err(missing());
        };
        let elem = current
            .element(dicom_core::Tag(*g, *e))
            .map_err(|_| missing())?;
        match (iter.next(), elem.value()) {
            (None, Value::Primitive(p)) => return Ok(Bytes::from(p.to_bytes().into_owned())),
            (Some(BulkStep::Item(i)), Value::Sequence(seq)) => {
                current = seq.items().get(*i).ok_or_else(missing)?;
            }
            _ => return Err(missing()),
        }
    }
    Err(missing())
}

// ---------------------------------------------------------------- helpers

pub(super) fn accept(headers: &HeaderMap) -> Vec<MediaRange> {
    negotiate::parse_accept(headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()))
}

fn not_acceptable(headers: &HeaderMap, stored: &[&str]) -> ApiError {
    let asked = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("*/*");
    let mut stored: Vec<&str> = stored.to_vec();
    stored.sort_unstable();
    stored.dedup();
    ApiError::NotAcceptable(format!(
        "cannot produce {asked:?}: the data is stored as transfer syntax {}; conversions available: \
         to Explicit VR LE, RLE (.5), JPEG Lossless (.70), JPEG-LS (.80, .81), HTJ2K (.201, .202, .203) \
         and JPEG baseline (.50, 8-bit only) from any stored syntax we decode; ask with \
         transfer-syntax=* to receive it as stored",
        stored.join(", ")
    ))
}

/// A strong ETag over the given identity strings.
pub(super) fn etag_of<I, S>(items: I) -> String
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    let mut h = Sha256::new();
    for i in items {
        h.update(i.as_ref().as_bytes());
        h.update(b"\n");
    }
    format!("\"{}\"", &hex::encode(h.finalize())[..32])
}

pub(super) fn not_modified(headers: &HeaderMap, etag: &str) -> Option<Response> {
    let inm = headers.get(header::IF_NONE_MATCH)?.to_str().ok()?;
    let hit = inm.split(',').any(|t| {
        let t = t.trim();
        t == "*" || t == etag || t.strip_prefix("W/") == Some(etag)
    });
    hit.then(|| {
        let mut r = StatusCode::NOT_MODIFIED.into_response();
        set_header(&mut r, header::ETAG, etag);
        r
    })
}

pub(super) fn set_header(resp: &mut Response, name: header::HeaderName, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        resp.headers_mut().insert(name, v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_lists() {
        assert_eq!(parse_frame_list("1,3,2").unwrap(), vec![1, 3, 2]);
        assert!(parse_frame_list("0").is_err());
        assert!(parse_frame_list("a").is_err());
    }

    #[test]
    fn tag_paths() {
        assert_eq!(
            parse_tag_path("7FE00010").unwrap(),
            vec![BulkStep::Tag(0x7FE0, 0x10)]
        );
        assert_eq!(parse_tag_path("00540016/0/00181072").unwrap().len(), 3);
        assert!(parse_tag_path("00540016/0").is_err());
        assert!(parse_tag_path("zz").is_err());
    }

    #[test]
    fn metadata_uris_become_absolute() {
        let o = vec![r#"{"7FE00010":{"vr":"OW","BulkDataURI":"studies/1/series/2/instances/3/bulk/7FE00010"}}"#.to_string()];
        let j = join_metadata(&o, "http://h:1/dicom-web");
        assert!(
            j.contains("\"BulkDataURI\":\"http://h:1/dicom-web/studies/1/"),
            "{j}"
        );
    }
}

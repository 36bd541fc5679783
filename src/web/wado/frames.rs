//! Frames: located once by walking element headers and sent by byte range as stored, or
//! decoded and converted one frame at a time when the client asks for another syntax.
use super::*;

pub async fn frames(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((study, series, instance, list)): Path<(String, String, String, String)>,
) -> Result<Response, ApiError> {
    let target = Target::new(&study, Some(&series), Some(&instance))?;
    let wanted = parse_frame_list(&list)?;
    let record = lookup(&state, &target).await?.remove(0);
    let (choice, info) = negotiate_frames(&state, &headers, &record).await?;
    if choice.single_part && wanted.len() > 1 {
        return Err(ApiError::NotAcceptable(format!(
            "{} is a single-part media type, which carries one frame; ask for \
             multipart/related; type=\"{}\" to receive {} frames",
            choice.part_type,
            choice.part_type,
            wanted.len()
        )));
    }
    let path = state.store.absolute(&record.file_path);
    let source = frame_source(&state, &record).await?;
    let count = source.len();
    if let Some(bad) = wanted.iter().find(|f| **f as usize > count) {
        return Err(ApiError::NotFound(format!(
            "frame {bad} does not exist: the instance has {count} frame(s)"
        )));
    }
    let etag = etag_of(std::iter::once(format!(
        "{}:{}:{list}:{}:{}",
        record.sop_instance_uid, record.sha256, choice.transfer_syntax, choice.single_part
    )));
    if let Some(resp) = not_modified(&headers, &etag) {
        return Ok(resp);
    }
    let part_ct = format!(
        "{}; transfer-syntax={}",
        choice.part_type, choice.transfer_syntax
    );
    if let [frame_no] = wanted[..] {
        if choice.single_part || headers.contains_key(header::RANGE) {
            let raw = raw_frame(&source, &path, frame_no);
            let bytes = match (choice.transcode, info) {
                (true, Some(info)) => {
                    convert::converted_frame(&state, &record, &info, frame_no, raw, &choice).await?
                }
                _ => read_raw(raw).await?,
            };
            count_frame(&state, bytes.len());
            return Ok(addressable_frame(&headers, &etag, &choice, &part_ct, bytes));
        }
    }
    let boundary = boundary_for(&etag);
    let content_type =
        multipart::content_type(&choice.part_type, Some(&choice.transfer_syntax), &boundary);
    let (mut w, body) = multipart::channel(boundary);
    match (choice.transcode, info, source) {
        (true, Some(info), source) => {
            let raws: Vec<(u32, convert::RawFrame)> = wanted
                .iter()
                .map(|f| (*f, raw_frame(&source, &path, *f)))
                .collect();
            tokio::spawn(send_converted_frames(
                state, w, record, info, choice, part_ct, raws,
            ));
        }
        (_, _, FrameSource::Ranges(index)) => {
            let parts: Vec<Vec<Range>> = wanted
                .iter()
                .map(|f| index.frames[*f as usize - 1].clone())
                .collect();
            tokio::spawn(send_ranges(state, w, path, part_ct, parts, true));
        }
        (_, _, FrameSource::Decoded(frames)) => {
            tokio::spawn(async move {
                for f in wanted {
                    let bytes = frames[f as usize - 1].clone();
                    count_frame(&state, bytes.len());
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
    set_cache_headers(&mut resp, &etag, true);
    Ok(resp)
}

/// How to send this instance's frames: the configured preferred syntax when the client lets
/// us choose and the pixels allow it, else as stored when the client accepts that, else
/// converted to what it names; 406 when none of these works.
async fn negotiate_frames(
    state: &AppState,
    headers: &HeaderMap,
    record: &InstanceRecord,
) -> Result<(Choice, Option<convert::PixelInfo>), ApiError> {
    let ranges = accept(headers);
    let stored = record.transfer_syntax_uid.as_str();
    let mut info = None;
    if let Some(preferred_ts) = state.config.transcode.preferred_frame_syntax.as_deref() {
        if let Ok(i) = convert::pixel_info(state, record).await {
            let codecs = convert::Codecs(&i.desc);
            if let Some(c) = negotiate::prefer_frames_syntax(&ranges, stored, preferred_ts, &codecs)
            {
                return Ok((c, Some(i)));
            }
            info = Some(i);
        }
    }
    let as_stored = negotiate::choose_frames(
        negotiate::preferred(&ranges),
        stored,
        &negotiate::AsStoredOnly,
    );
    if let Some(c) = as_stored {
        return Ok((c, None));
    }
    let info = match info {
        Some(i) => i,
        None => convert::pixel_info(state, record).await?,
    };
    let c = negotiate::choose_frames(&ranges, stored, &convert::Codecs(&info.desc))
        .ok_or_else(|| not_acceptable(headers, &[stored]))?;
    Ok((c, Some(info)))
}

/// Frame responses use a boundary derived from their ETag: the same request always gets
/// the very same bytes, so byte ranges of a multipart frame response are well defined.
fn boundary_for(etag: &str) -> String {
    format!("tsunagi-{}", etag.trim_matches('"'))
}

/// One frame as a whole representation that byte ranges address: the bare codestream for a
/// single-part request, else the one-part multipart body the streamed response would be.
fn addressable_frame(
    headers: &HeaderMap,
    etag: &str,
    choice: &Choice,
    part_ct: &str,
    bytes: Bytes,
) -> Response {
    let (body, content_type) = if choice.single_part {
        (bytes, part_ct.to_string())
    } else {
        let boundary = boundary_for(etag);
        (
            multipart::one_part_body(&boundary, part_ct, &bytes),
            multipart::content_type(&choice.part_type, Some(&choice.transfer_syntax), &boundary),
        )
    };
    let mut resp = byte_range::respond(headers, etag, body, &content_type);
    if resp.status() != StatusCode::RANGE_NOT_SATISFIABLE {
        set_cache_headers(&mut resp, etag, true);
    }
    resp
}

async fn read_raw(raw: convert::RawFrame) -> Result<Bytes, ApiError> {
    match raw {
        convert::RawFrame::Bytes(bytes) => Ok(bytes),
        file => tokio::task::spawn_blocking(move || file.read().map(Bytes::from))
            .await?
            .map_err(ApiError::Internal),
    }
}

fn count_frame(state: &AppState, bytes: usize) {
    Metrics::inc(&state.metrics.wado_frames_total);
    Metrics::add(&state.metrics.wado_bytes_total, bytes as u64);
}

pub(in crate::web) fn raw_frame(
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
                count_frame(&state, bytes.len());
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
pub(in crate::web) enum FrameSource {
    Ranges(std::sync::Arc<layout::FrameIndex>),
    Decoded(Vec<Bytes>),
}

impl FrameSource {
    pub(in crate::web) fn len(&self) -> usize {
        match self {
            FrameSource::Ranges(i) => i.frames.len(),
            FrameSource::Decoded(f) => f.len(),
        }
    }
}

pub(in crate::web) async fn frame_source(
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
pub(super) fn parse_frame_list(list: &str) -> Result<Vec<u32>, ApiError> {
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

pub(super) async fn frame_index(
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

pub(super) async fn send_ranges(
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

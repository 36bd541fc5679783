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
    let ranges = accept(&headers);
    let (choice, info) = match negotiate::choose_frames(
        negotiate::preferred(&ranges),
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
        set_cache_headers(&mut resp, &etag, true);
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
    set_cache_headers(&mut resp, &etag, true);
    Ok(resp)
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

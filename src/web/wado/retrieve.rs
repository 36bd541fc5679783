//! Study, series and instance retrieve: each instance as stored, rewritten to Explicit VR
//! LE, or converted, streamed part by part; a cold cache streams from the PACS as it arrives.
use super::*;

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
    Metrics::inc(&state.metrics.cache_hits_total);
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
    let lease = state.store.lease(&target.study);
    tokio::spawn(send_instances(state.clone(), writer, plan, lease));
    let mut resp = (StatusCode::OK, body).into_response();
    set_header(&mut resp, header::CONTENT_TYPE, &content_type);
    set_cache_headers(&mut resp, &etag, target.instance.is_some());
    if skipped > 0 {
        // PS3.18 Table 10.4.3-1: some of the requested instances are not in the payload
        *resp.status_mut() = StatusCode::PARTIAL_CONTENT;
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
pub(in crate::web) struct Planned {
    pub record: InstanceRecord,
    pub choice: Choice,
    pub info: Option<convert::PixelInfo>,
}

pub(in crate::web) async fn plan_instance(
    state: &AppState,
    ranges: &[MediaRange],
    record: &InstanceRecord,
) -> Option<Planned> {
    let ts = &record.transfer_syntax_uid;
    let top = negotiate::preferred(ranges);
    if let Some(choice) = negotiate::choose_instance(top, ts, &negotiate::AsStoredOnly) {
        return Some(Planned {
            record: record.clone(),
            choice,
            info: None,
        });
    }
    let Ok(info) = convert::pixel_info(state, record).await else {
        // no pixels to convert (SR, PDF, ...): any acceptable range as stored
        let choice = negotiate::choose_instance(ranges, ts, &negotiate::AsStoredOnly)?;
        return Some(Planned {
            record: record.clone(),
            choice,
            info: None,
        });
    };
    let choice = negotiate::choose_instance(ranges, ts, &convert::Codecs(&info.desc))?;
    Some(Planned {
        record: record.clone(),
        choice,
        info: Some(info),
    })
}

/// Streams the parts; `_lease` keeps the study from eviction until the last one is sent.
async fn send_instances(
    state: AppState,
    mut w: PartWriter,
    plan: Vec<Planned>,
    _lease: crate::store::StudyLease,
) {
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
pub(in crate::web) async fn send_instance(
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
pub(super) async fn raw_frames(
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

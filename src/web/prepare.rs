//! Prepare for reading: once a prefetched study has arrived, compute what a viewer asks
//! for first so the first look is fast: the frame index of every instance (where each frame
//! lies in its file) and every series thumbnail, both into the memory tier, and, when
//! `transcode.preferred_frame_syntax` is set (e.g. HTJ2K RPCL), every frame in that syntax,
//! kept on disk so that byte-range requests read a file instead of encoding. Series and study
//! metadata need nothing: it is precomputed at ingest. Failures are only logged at debug
//! level; the viewer computes whatever is missing on request.

use axum::extract::{Path, RawQuery, State};
use axum::http::HeaderMap;

use super::wado::{frame_source, local_records, raw_frame, FrameSource, Target};
use super::{convert, negotiate, rendered, AppState};
use crate::jobs::Preparer;
use crate::store::InstanceRecord;

/// The preparer the prefetch scheduler runs after each study.
pub fn preparer(state: AppState) -> Preparer {
    std::sync::Arc::new(move |study: String| {
        let state = state.clone();
        Box::pin(async move { prepare_study(state, study).await })
    })
}

async fn prepare_study(state: AppState, study: String) {
    let Ok(target) = Target::new(&study, None, None) else {
        return;
    };
    let Ok(records) = local_records(&state, &target).await else {
        return;
    };
    let mut series: Vec<String> = Vec::new();
    for r in records.iter().filter(|r| r.rows.is_some()) {
        match frame_source(&state, r).await {
            Ok(source) => keep_preferred_frames(&state, r, &source).await,
            Err(e) => tracing::debug!(error = %e, "prepare: no frame index"),
        }
        if !series.contains(&r.series_uid) {
            series.push(r.series_uid.clone());
        }
    }
    for se in series {
        let shown = rendered::series_thumbnail(
            State(state.clone()),
            HeaderMap::new(),
            Path((study.clone(), se)),
            RawQuery(None),
        )
        .await;
        if let Err(e) = shown {
            tracing::debug!(error = %e, "prepare: no thumbnail");
        }
    }
    tracing::debug!(study = %study, "prepared for reading");
}

/// Every frame of `record` in the preferred frame syntax, kept in the disk tier, when the
/// gateway would send it so to a viewer that lets it choose (OHIF's `transfer-syntax=*`).
async fn keep_preferred_frames(state: &AppState, record: &InstanceRecord, source: &FrameSource) {
    let Some(preferred) = state.config.transcode.preferred_frame_syntax.as_deref() else {
        return;
    };
    let Ok(info) = convert::pixel_info(state, record).await else {
        return;
    };
    let viewer = negotiate::parse_accept(Some(
        "multipart/related; type=application/octet-stream; transfer-syntax=*",
    ));
    let codecs = convert::Codecs(&info.desc);
    let stored = &record.transfer_syntax_uid;
    let Some(choice) = negotiate::prefer_frames_syntax(&viewer, stored, preferred, &codecs) else {
        return;
    };
    let path = state.store.absolute(&record.file_path);
    for frame in 1..=source.len() as u32 {
        let raw = raw_frame(source, &path, frame);
        let kept = convert::keep_converted_frame(state, record, &info, frame, raw, &choice).await;
        if let Err(e) = kept {
            tracing::debug!(error = %e, "prepare: frame not kept");
            return;
        }
    }
}

//! Prepare for reading: once a prefetched study has arrived, compute what a viewer asks
//! for first so the first look is fast: the frame index of every instance (where each frame
//! lies in its file) and every series thumbnail, both into the memory tier. Series and study
//! metadata need nothing: it is precomputed at ingest. Failures are only logged at debug
//! level; the viewer computes whatever is missing on request.

use axum::extract::{Path, RawQuery, State};
use axum::http::HeaderMap;

use super::wado::{frame_source, local_records, Target};
use super::{rendered, AppState};
use crate::jobs::Preparer;

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
        if let Err(e) = frame_source(&state, r).await {
            tracing::debug!(error = %e, "prepare: no frame index");
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

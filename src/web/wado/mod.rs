//! WADO-RS (PS3.18 §10.4): study, series and instance retrieve as streamed
//! `multipart/related; type="application/dicom"` (`retrieve`), metadata from the precomputed
//! index JSON (`metadata`), frames cut from the stored pixel data by byte range or converted
//! (`frames`), and bulk data (`bulk`). This file holds what they share: the validated target
//! of a request, its lookup (pulling from a PACS on a miss), Accept parsing, strong ETags.

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
use super::{base_url, byte_range, convert, pulled, ApiError, AppState};
use crate::dimse::retrieve_scu::RetrieveTarget;
use crate::metrics::Metrics;
use crate::store::layout::{self, PixelGeometry, Range};
use crate::store::{InstanceRecord, Selector};
use crate::types::ts;

mod bulk;
mod frames;
mod metadata;
mod retrieve;

pub use bulk::bulk;
pub use frames::frames;
use frames::{frame_index, send_ranges};
pub(super) use frames::{frame_source, raw_frame, FrameSource};
use metadata::last_retrieve_incomplete;
pub use metadata::{instance_metadata, series_metadata, study_metadata};
pub(super) use retrieve::{plan_instance, send_instance};
pub use retrieve::{retrieve_instance, retrieve_series, retrieve_study};

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
        describe_resource(
            &self.study,
            self.series.as_deref(),
            self.instance.as_deref(),
        )
    }
}

/// How a missing resource is named in a 404 ("instance 1.2.3 is not in the cache").
pub(in crate::web) fn describe_resource(
    study: &str,
    series: Option<&str>,
    instance: Option<&str>,
) -> String {
    match (series, instance) {
        (_, Some(i)) => format!("instance {i}"),
        (Some(s), None) => format!("series {s}"),
        _ => format!("study {study}"),
    }
}

/// Records of the target in the cache; an instance not in the cache is pulled from the PACS
/// that holds it first (or waited for, when a running retrieve brings it).
pub(super) async fn lookup(
    state: &AppState,
    target: &Target,
) -> Result<Vec<InstanceRecord>, ApiError> {
    let records = local_records(state, target).await?;
    if !records.is_empty() {
        Metrics::inc(&state.metrics.cache_hits_total);
    }
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
    if !records.is_empty() {
        state.store.touch(&target.study);
    }
    Ok(records)
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

/// Validators and caching rules: patient data is never stored by shared caches (`private`);
/// what a UID fixes (an instance, its frames, bulk data, renderings) never changes, so it is
/// `immutable`; studies and series can grow, so clients revalidate them with the ETag.
pub(in crate::web) fn set_cache_headers(resp: &mut Response, etag: &str, fixed_by_uid: bool) {
    set_header(resp, header::ETAG, etag);
    let rule = if fixed_by_uid {
        "private, max-age=31536000, immutable"
    } else {
        "private, no-cache"
    };
    set_header(resp, header::CACHE_CONTROL, rule);
}

pub(super) fn set_header(resp: &mut Response, name: header::HeaderName, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        resp.headers_mut().insert(name, v);
    }
}

#[cfg(test)]
mod tests {
    use super::bulk::{parse_tag_path, BulkStep};
    use super::frames::parse_frame_list;
    use super::metadata::join_metadata;

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

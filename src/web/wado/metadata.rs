//! Metadata at study, series and instance level from the precomputed index JSON, with
//! absolute BulkDataURIs; data missing or incomplete in the cache is retrieved first.
use super::*;

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
        None => set_cache_headers(&mut resp, &etag, false),
    }
    Ok(resp)
}

pub(super) async fn last_retrieve_incomplete(
    state: &AppState,
    target: &Target,
) -> Result<bool, ApiError> {
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
pub(super) fn join_metadata(objects: &[String], base: &str) -> String {
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

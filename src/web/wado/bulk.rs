//! Bulk data: Pixel Data as frames or one native part, other binary values by tag path.
use super::*;

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
pub(super) enum BulkStep {
    Tag(u16, u16),
    Item(usize),
}

/// `7FE00010` or `00540016/0/00181072`: tags and item indexes.
pub(super) fn parse_tag_path(path: &str) -> Result<Vec<BulkStep>, ApiError> {
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

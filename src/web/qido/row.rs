//! Building DICOM JSON (PS3.18 F.2) result objects from result rows.

use std::collections::BTreeMap;

use rusqlite::Row;
use serde_json::{json, Map, Value};

use super::attrs::{self, Column, Kind};
use super::matching::PN_GROUPS;
use super::sql::{column_alias, lookup_order, meta_alias, meta_levels};
use super::{QidoError, QidoLevel, QidoQuery};

type Meta = BTreeMap<QidoLevel, Map<String, Value>>;

/// One result object, keys in ascending tag order.
pub(crate) fn row_to_json(
    row: &Row<'_>,
    q: &QidoQuery,
    base_url: &str,
) -> Result<Map<String, Value>, QidoError> {
    let metas = load_metas(row, q, base_url)?;
    let mut out: BTreeMap<u32, Value> = BTreeMap::new();
    if q.include_all {
        // Lower levels first, so the study's and series' own values win.
        for level in q.merged_levels().iter().rev() {
            merge_meta(&mut out, metas.get(level));
        }
    }
    for &tag in &q.returned {
        if let Some(value) = attribute_value(row, q, tag, &metas, base_url)? {
            out.insert(tag, value);
        }
    }
    Ok(out
        .into_iter()
        .map(|(tag, v)| (format!("{tag:08X}"), v))
        .collect())
}

fn load_metas(row: &Row<'_>, q: &QidoQuery, base_url: &str) -> Result<Meta, QidoError> {
    let mut metas = Meta::new();
    for level in meta_levels(q) {
        let text: Option<String> = row.get(meta_alias(level).as_str())?;
        let Some(text) = text else { continue };
        let mut value: Value = serde_json::from_str(&text).map_err(|e| {
            QidoError::Corrupt(format!("{} meta_json is not valid JSON: {e}", level.name()))
        })?;
        absolutize_bulk_uris(&mut value, base_url);
        match value {
            Value::Object(map) => metas.insert(level, map),
            _ => {
                return Err(QidoError::Corrupt(format!(
                    "{} meta_json is not a JSON object",
                    level.name()
                )))
            }
        };
    }
    Ok(metas)
}

fn merge_meta(out: &mut BTreeMap<u32, Value>, meta: Option<&Map<String, Value>>) {
    for (key, value) in meta.into_iter().flatten() {
        if let Some(tag) = parse_key(key) {
            out.insert(tag, value.clone());
        }
    }
}

fn parse_key(key: &str) -> Option<u32> {
    (key.len() == 8)
        .then(|| u32::from_str_radix(key, 16).ok())
        .flatten()
}

/// Makes relative `BulkDataURI`s (relative to the DICOMweb root) absolute, at any depth.
fn absolutize_bulk_uris(value: &mut Value, base_url: &str) {
    match value {
        Value::Object(map) => {
            for (key, v) in map.iter_mut() {
                match v {
                    Value::String(uri) if key == "BulkDataURI" && !uri.contains("://") => {
                        *uri = format!("{base_url}/{}", uri.trim_start_matches('/'));
                    }
                    _ => absolutize_bulk_uris(v, base_url),
                }
            }
        }
        Value::Array(items) => items
            .iter_mut()
            .for_each(|v| absolutize_bulk_uris(v, base_url)),
        _ => {}
    }
}

fn attribute_value(
    row: &Row<'_>,
    q: &QidoQuery,
    tag: u32,
    metas: &Meta,
    base_url: &str,
) -> Result<Option<Value>, QidoError> {
    if let Some(c) = attrs::column_at(tag, q.level) {
        return Ok(Some(column_value(row, c)?));
    }
    if attrs::is_computed(tag) {
        return Ok(Some(computed_value(row, q.level, tag, base_url)?));
    }
    let key = format!("{tag:08X}");
    let found = lookup_order(tag, q.level)
        .into_iter()
        .find_map(|l| metas.get(&l).and_then(|m| m.get(&key)));
    if let Some(v) = found {
        return Ok(Some(v.clone()));
    }
    let belongs = attrs::column(tag).is_none() && attrs::level_of(tag) <= q.level;
    Ok(belongs.then(|| empty(attrs::vr_of(tag).to_string())))
}

fn empty(vr: &str) -> Value {
    json!({ "vr": vr })
}

fn with_values(vr: &str, values: Vec<Value>) -> Value {
    if values.is_empty() {
        empty(vr)
    } else {
        json!({ "vr": vr, "Value": values })
    }
}

fn column_value(row: &Row<'_>, c: &Column) -> rusqlite::Result<Value> {
    let name = column_alias(c);
    let vr = c.vr.to_string();
    if c.kind == Kind::Int {
        let n: Option<i64> = row.get(name.as_str())?;
        return Ok(with_values(vr, n.map(Value::from).into_iter().collect()));
    }
    let text: Option<String> = row.get(name.as_str())?;
    let text = text.unwrap_or_default();
    if text.is_empty() {
        return Ok(empty(vr));
    }
    let to_value = |s: &str| match c.kind {
        Kind::Pn => pn_value(s),
        _ if s.is_empty() => Value::Null,
        _ => Value::from(s),
    };
    Ok(with_values(vr, text.split('\\').map(to_value).collect()))
}

/// A PN value object from '='-joined component groups; empty groups are left out.
fn pn_value(name: &str) -> Value {
    let groups: Map<String, Value> = PN_GROUPS
        .iter()
        .zip(name.split('='))
        .filter(|(_, g)| !g.is_empty())
        .map(|(k, g)| ((*k).to_owned(), Value::from(g)))
        .collect();
    if groups.is_empty() {
        Value::Null
    } else {
        Value::Object(groups)
    }
}

fn computed_value(
    row: &Row<'_>,
    level: QidoLevel,
    tag: u32,
    base_url: &str,
) -> rusqlite::Result<Value> {
    Ok(match tag {
        attrs::SPECIFIC_CHARACTER_SET => json!({ "vr": "CS", "Value": ["ISO_IR 192"] }),
        attrs::INSTANCE_AVAILABILITY => json!({ "vr": "CS", "Value": ["ONLINE"] }),
        _ => json!({ "vr": "UR", "Value": [retrieve_url(row, level, base_url)?] }),
    })
}

fn retrieve_url(row: &Row<'_>, level: QidoLevel, base_url: &str) -> rusqlite::Result<String> {
    let study: String = row.get("s_study_uid")?;
    let mut url = format!("{base_url}/studies/{study}");
    if level >= QidoLevel::Series {
        let series: String = row.get("se_series_uid")?;
        url.push_str(&format!("/series/{series}"));
    }
    if level == QidoLevel::Instance {
        let instance: String = row.get("i_sop_instance_uid")?;
        url.push_str(&format!("/instances/{instance}"));
    }
    Ok(url)
}

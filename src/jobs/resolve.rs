//! Resolution: which studies a job means. A Study Root C-FIND at each upstream the job names
//! (patient ID with its issuer, accession number, study UIDs, date range), filtered by
//! modality (ModalitiesInStudy, or a series-level C-FIND when the PACS does not return it),
//! de-duplicated by UID (the first upstream listed wins) and cut to "the last N".

use dicom_core::{Tag, VR};
use dicom_dictionary_std::tags;
use serde_json::{Map, Value as Json};

use super::db::Found;
use super::model::JobSpec;
use crate::dimse::find_scu::{self, Key, QueryLevel};
use crate::dimse::scu::Upstream;

/// Most studies one job may cover from one upstream.
const MAX_STUDIES: usize = 1000;

/// Why resolution failed (the job is retried later).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct ResolveError(pub String);

/// Search every upstream of the job. An upstream that fails makes the whole resolution fail
/// (a partial list would silently miss studies); the job is resolved again later.
pub async fn resolve(spec: &JobSpec, upstreams: &[&Upstream]) -> Result<Vec<Found>, ResolveError> {
    let mut found: Vec<Found> = Vec::new();
    for up in upstreams {
        for keys in queries(spec) {
            let rows = find(up, QueryLevel::Study, &keys).await?;
            for row in rows {
                let Some(study_uid) = text(&row, tags::STUDY_INSTANCE_UID) else {
                    continue;
                };
                if found.iter().any(|f| f.study_uid == study_uid)
                    || !matches_modalities(spec, up, &row, &study_uid).await?
                {
                    continue;
                }
                found.push(Found {
                    study_uid,
                    upstream: up.name().to_string(),
                    instances: number(&row, tags::NUMBER_OF_STUDY_RELATED_INSTANCES),
                    when: format!(
                        "{}{}",
                        text(&row, tags::STUDY_DATE).unwrap_or_default(),
                        text(&row, tags::STUDY_TIME).unwrap_or_default()
                    ),
                });
            }
        }
    }
    if let Some(n) = spec.last {
        found.sort_by(|a, b| b.when.cmp(&a.when));
        found.truncate(n as usize);
    }
    Ok(found)
}

/// The identifiers to send: one per study UID when UIDs are given (not every PACS takes UID
/// lists), else one.
fn queries(spec: &JobSpec) -> Vec<Vec<Key>> {
    let mut common = Vec::new();
    let mut put =
        |tag: Tag, vr: VR, v: Option<&str>| common.push(Key::new(tag, vr, v.unwrap_or("")));
    put(tags::PATIENT_ID, VR::LO, spec.patient_id.as_deref());
    if spec.issuer.is_some() {
        put(tags::ISSUER_OF_PATIENT_ID, VR::LO, spec.issuer.as_deref());
    }
    put(
        tags::ACCESSION_NUMBER,
        VR::SH,
        spec.accession_number.as_deref(),
    );
    let range = match (&spec.date_from, &spec.date_to) {
        (None, None) => None,
        (f, t) => Some(format!(
            "{}-{}",
            f.as_deref().unwrap_or(""),
            t.as_deref().unwrap_or("")
        )),
    };
    put(tags::STUDY_DATE, VR::DA, range.as_deref());
    put(tags::STUDY_TIME, VR::TM, None);
    put(tags::MODALITIES_IN_STUDY, VR::CS, None);
    put(tags::NUMBER_OF_STUDY_RELATED_INSTANCES, VR::IS, None);
    if spec.study_uids.is_empty() {
        let mut keys = common;
        keys.push(Key::new(tags::STUDY_INSTANCE_UID, VR::UI, ""));
        return vec![keys];
    }
    spec.study_uids
        .iter()
        .map(|uid| {
            let mut keys = common.clone();
            keys.push(Key::new(tags::STUDY_INSTANCE_UID, VR::UI, uid));
            keys
        })
        .collect()
}

async fn find(
    up: &Upstream,
    level: QueryLevel,
    keys: &[Key],
) -> Result<Vec<Map<String, Json>>, ResolveError> {
    let asked =
        tokio::time::timeout(up.timeout(), find_scu::find(up, level, keys, MAX_STUDIES)).await;
    match asked {
        Ok(Ok((rows, _))) => Ok(rows),
        Ok(Err(e)) => Err(ResolveError(format!("searching {}: {e}", up.name()))),
        Err(_) => Err(ResolveError(format!(
            "{} did not answer the search within {:?}",
            up.name(),
            up.timeout()
        ))),
    }
}

/// Does the study have one of the wanted modalities?
async fn matches_modalities(
    spec: &JobSpec,
    up: &Upstream,
    row: &Map<String, Json>,
    study_uid: &str,
) -> Result<bool, ResolveError> {
    if spec.modalities.is_empty() {
        return Ok(true);
    }
    let mut have = values(row, tags::MODALITIES_IN_STUDY);
    if have.is_empty() {
        let keys = [
            Key::new(tags::STUDY_INSTANCE_UID, VR::UI, study_uid),
            Key::new(tags::SERIES_INSTANCE_UID, VR::UI, ""),
            Key::new(tags::MODALITY, VR::CS, ""),
        ];
        for series in find(up, QueryLevel::Series, &keys).await? {
            have.extend(values(&series, tags::MODALITY));
        }
    }
    Ok(have
        .iter()
        .any(|m| spec.modalities.iter().any(|w| w.eq_ignore_ascii_case(m))))
}

fn values(row: &Map<String, Json>, tag: Tag) -> Vec<String> {
    row.get(&crate::dicom_json::tag_key(tag))
        .and_then(|v| v.get("Value"))
        .and_then(Json::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|v| match v {
                    Json::String(s) => Some(s.trim().to_string()),
                    Json::Number(n) => Some(n.to_string()),
                    _ => None,
                })
                .filter(|s| !s.is_empty())
                .collect()
        })
        .unwrap_or_default()
}

fn text(row: &Map<String, Json>, tag: Tag) -> Option<String> {
    values(row, tag).into_iter().next()
}

fn number(row: &Map<String, Json>, tag: Tag) -> Option<i64> {
    text(row, tag).and_then(|s| s.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_query_per_uid_and_date_ranges() {
        let spec = JobSpec {
            patient_id: Some("P".into()),
            study_uids: vec!["1.2".into(), "1.3".into()],
            date_from: Some("20240101".into()),
            ..Default::default()
        };
        let q = queries(&spec);
        assert_eq!(q.len(), 2);
        let date = q[0].iter().find(|k| k.tag == tags::STUDY_DATE).unwrap();
        assert_eq!(date.value, "20240101-");
        assert!(q[1]
            .iter()
            .any(|k| k.tag == tags::STUDY_INSTANCE_UID && k.value == "1.3"));
        assert!(!q[0].iter().any(|k| k.tag == tags::ISSUER_OF_PATIENT_ID));
    }

    #[test]
    fn values_from_dicom_json() {
        let row: Map<String, Json> = serde_json::from_str(
            r#"{"00201208":{"vr":"IS","Value":[12]},"00080061":{"vr":"CS","Value":["CT","SR"]}}"#,
        )
        .unwrap();
        assert_eq!(
            number(&row, tags::NUMBER_OF_STUDY_RELATED_INSTANCES),
            Some(12)
        );
        assert_eq!(values(&row, tags::MODALITIES_IN_STUDY), vec!["CT", "SR"]);
    }
}

//! Federated QIDO-RS: the same search sent as C-FIND to every upstream in parallel, each
//! bounded by its own timeout (a dead hospital delays the answer by at most that), answers
//! cached briefly, merged with the cache's rows by UID (never by position), each row tagged
//! with where it can be retrieved.

use std::sync::Arc;

use dicom_core::{Tag, VR};
use futures::future::join_all;
use serde_json::{json, Map, Value as Json};

use super::Pull;
use crate::dimse::find_scu::{self, Key, QueryLevel};
use crate::dimse::scu::Upstream;
use crate::web::qido::{DimseKey, QidoLevel, QidoQuery};

/// RetrieveAETitle (0008,0054) and RetrieveURL (0008,1190).
const RETRIEVE_AE_TITLE: &str = "00080054";
const RETRIEVE_URL: &str = "00081190";

/// What the upstreams answered.
#[derive(Debug, Default)]
pub struct RemoteRows {
    pub rows: Vec<Map<String, Json>>,
    /// One sentence per upstream that did not answer fully.
    pub warnings: Vec<String>,
}

/// The C-FIND level of a QIDO search, when it can be sent hierarchically.
pub fn find_level(q: &QidoQuery) -> Option<QueryLevel> {
    match q.level {
        QidoLevel::Study => Some(QueryLevel::Study),
        QidoLevel::Series if q.scope.study_uid.is_some() => Some(QueryLevel::Series),
        QidoLevel::Instance if q.scope.study_uid.is_some() && q.scope.series_uid.is_some() => {
            Some(QueryLevel::Image)
        }
        _ => None,
    }
}

/// The UID attribute identifying rows of a level.
pub fn uid_key(level: QidoLevel) -> &'static str {
    match level {
        QidoLevel::Study => "0020000D",
        QidoLevel::Series => "0020000E",
        QidoLevel::Instance => "00080018",
    }
}

impl Pull {
    /// Ask every upstream; never fails, never waits longer than the slowest timeout.
    pub async fn search_upstreams(&self, q: &QidoQuery, base_url: &str) -> RemoteRows {
        let Some(level) = find_level(q) else {
            return RemoteRows {
                rows: Vec::new(),
                warnings: vec![
                    "hospital PACS were not searched: series and instance searches across hospitals need the study (and series) in the path".into(),
                ],
            };
        };
        let keys: Vec<Key> = q.dimse_keys().iter().map(to_find_key).collect();
        let cache_key = cache_key(level, &keys);
        let asks = self
            .upstreams
            .iter()
            .map(|up| self.find_cached(up, level, &keys, &cache_key));
        let answers = join_all(asks).await;
        let mut out = RemoteRows::default();
        for (up, answer) in self.upstreams.iter().zip(answers) {
            match answer {
                Ok(found) => {
                    let (rows, truncated) = found.as_ref();
                    if *truncated {
                        out.warnings.push(format!(
                            "{} returned more than {} matches; refine the search",
                            up.name(),
                            self.config.max_results
                        ));
                    }
                    for row in rows.iter() {
                        let mut row = row.clone();
                        self.remember_location(&row, up);
                        tag_row(&mut row, q.level, &up.config.ae_title, base_url);
                        out.rows.push(row);
                    }
                }
                Err(message) => out.warnings.push(message),
            }
        }
        out
    }

    async fn find_cached(
        &self,
        up: &Arc<Upstream>,
        level: QueryLevel,
        keys: &[Key],
        cache_key: &str,
    ) -> Result<Arc<(Vec<Map<String, Json>>, bool)>, String> {
        let key = format!("{}|{cache_key}", up.name());
        let max = self.config.max_results;
        let timeout = up.timeout();
        self.query_cache
            .try_get_with(key, async {
                let found =
                    tokio::time::timeout(timeout, find_scu::find(up, level, keys, max)).await;
                match found {
                    Ok(Ok(r)) => Ok(Arc::new(r)),
                    Ok(Err(e)) => {
                        tracing::warn!(upstream = up.name(), error = %e, "search failed");
                        Err(format!("{} did not answer the search: {e}", up.name()))
                    }
                    Err(_) => Err(format!(
                        "{} did not answer within {:?}; its results are missing",
                        up.name(),
                        timeout
                    )),
                }
            })
            .await
            .map_err(|e: Arc<String>| e.as_ref().clone())
    }

    /// Remember which PACS holds a study, so a retrieve goes straight there.
    fn remember_location(&self, row: &Map<String, Json>, up: &Upstream) {
        let text = |tag: &str| row.get(tag).and_then(|v| v["Value"][0].as_str());
        if let Some(study) = text("0020000D") {
            self.note_location(study, up.name());
            if let Some(id) = text("00100020") {
                let issuer = text("00100021").unwrap_or_default().to_string();
                let patient = crate::auth::referral::Patient {
                    id: id.to_string(),
                    issuer,
                };
                self.note_patient(study, patient);
            }
        }
    }
}

fn cache_key(level: QueryLevel, keys: &[Key]) -> String {
    let mut s = level.code().to_string();
    for k in keys {
        s.push_str(&format!("|{}={}", k.tag, k.value));
    }
    s
}

fn to_find_key(k: &DimseKey) -> Key {
    let tag = Tag((k.tag >> 16) as u16, (k.tag & 0xFFFF) as u16);
    let value = if k.vr == VR::PN {
        person_name_for_dimse(&k.value)
    } else {
        k.value.clone()
    };
    Key {
        tag,
        vr: k.vr,
        value,
    }
}

/// A QIDO name query matches any component group; in C-FIND a value without '=' is the
/// alphabetic group only. Kanji go to the ideographic group and kana to the phonetic one,
/// with the groups before them left universal.
pub fn person_name_for_dimse(value: &str) -> String {
    if value.is_empty() || value.contains('=') {
        return value.to_string();
    }
    let is_kanji = |c: char| matches!(c, '\u{4E00}'..='\u{9FFF}' | '\u{3400}'..='\u{4DBF}' | '\u{F900}'..='\u{FAFF}');
    let is_kana = |c: char| matches!(c, '\u{3040}'..='\u{30FF}');
    if value.chars().any(is_kanji) {
        format!("*={value}")
    } else if value.chars().any(is_kana) {
        format!("*=*={value}")
    } else {
        value.to_string()
    }
}

/// Add RetrieveAETitle and RetrieveURL (our own WADO-RS) to a row from a PACS.
fn tag_row(row: &mut Map<String, Json>, level: QidoLevel, ae: &str, base_url: &str) {
    row.insert(RETRIEVE_AE_TITLE.into(), json!({"vr": "AE", "Value": [ae]}));
    let uid = |k: &str| {
        row.get(k)
            .and_then(|v| v["Value"][0].as_str())
            .map(str::to_string)
    };
    let url = match level {
        QidoLevel::Study => uid("0020000D").map(|s| format!("{base_url}/studies/{s}")),
        QidoLevel::Series => uid("0020000D")
            .zip(uid("0020000E"))
            .map(|(s, se)| format!("{base_url}/studies/{s}/series/{se}")),
        QidoLevel::Instance => match (uid("0020000D"), uid("0020000E"), uid("00080018")) {
            (Some(s), Some(se), Some(i)) => {
                Some(format!("{base_url}/studies/{s}/series/{se}/instances/{i}"))
            }
            _ => None,
        },
    };
    if let Some(url) = url {
        row.insert(RETRIEVE_URL.into(), json!({"vr": "UR", "Value": [url]}));
    }
    row.insert(
        "00080005".into(),
        json!({"vr": "CS", "Value": ["ISO_IR 192"]}),
    );
}

/// Merge the cache's rows with the upstreams' rows: one row per UID (the cached row wins, as
/// it has exact counts), RetrieveAETitle listing every place that holds it, sorted as QIDO
/// sorts (studies newest first, series and instances by number).
pub fn merge(
    level: QidoLevel,
    local: Vec<Map<String, Json>>,
    remote: Vec<Map<String, Json>>,
    our_ae: &str,
) -> Vec<Map<String, Json>> {
    let key = uid_key(level);
    let mut rows: Vec<Map<String, Json>> = Vec::with_capacity(local.len() + remote.len());
    let mut index: std::collections::HashMap<String, usize> = Default::default();
    for mut row in local {
        add_ae(&mut row, our_ae);
        if let Some(uid) = row_uid(&row, key) {
            index.insert(uid, rows.len());
        }
        rows.push(row);
    }
    for row in remote {
        let Some(uid) = row_uid(&row, key) else {
            continue;
        };
        match index.get(&uid) {
            Some(&i) => {
                let aes: Vec<String> = ae_list(&row);
                for ae in aes {
                    add_ae(&mut rows[i], &ae);
                }
            }
            None => {
                index.insert(uid, rows.len());
                rows.push(row);
            }
        }
    }
    rows.sort_by(|a, b| order(level, a, b));
    rows
}

fn row_uid(row: &Map<String, Json>, key: &str) -> Option<String> {
    row.get(key)?["Value"][0].as_str().map(str::to_string)
}

fn ae_list(row: &Map<String, Json>) -> Vec<String> {
    row.get(RETRIEVE_AE_TITLE)
        .and_then(|v| v["Value"].as_array())
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

fn add_ae(row: &mut Map<String, Json>, ae: &str) {
    let mut aes = ae_list(row);
    if !aes.iter().any(|a| a == ae) {
        aes.push(ae.to_string());
    }
    row.insert(RETRIEVE_AE_TITLE.into(), json!({"vr": "AE", "Value": aes}));
}

fn order(level: QidoLevel, a: &Map<String, Json>, b: &Map<String, Json>) -> std::cmp::Ordering {
    let text = |r: &Map<String, Json>, k: &str| {
        r.get(k)
            .and_then(|v| v["Value"][0].as_str())
            .unwrap_or("")
            .to_string()
    };
    let num = |r: &Map<String, Json>, k: &str| r.get(k).and_then(|v| v["Value"][0].as_i64());
    match level {
        QidoLevel::Study => (text(b, "00080020"), text(b, "00080030"))
            .cmp(&(text(a, "00080020"), text(a, "00080030")))
            .then_with(|| text(a, "0020000D").cmp(&text(b, "0020000D"))),
        QidoLevel::Series => num(a, "00200011")
            .cmp(&num(b, "00200011"))
            .then_with(|| text(a, "0020000E").cmp(&text(b, "0020000E"))),
        QidoLevel::Instance => num(a, "00200013")
            .cmp(&num(b, "00200013"))
            .then_with(|| text(a, "00080018").cmp(&text(b, "00080018"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn study(uid: &str, date: &str) -> Map<String, Json> {
        let v = json!({"0020000D": {"vr": "UI", "Value": [uid]}, "00080020": {"vr": "DA", "Value": [date]}});
        v.as_object().cloned().unwrap()
    }

    #[test]
    fn merge_dedups_by_uid_and_lists_every_source() {
        let mut remote_dup = study("1.1", "20240101");
        remote_dup.insert(
            RETRIEVE_AE_TITLE.into(),
            json!({"vr": "AE", "Value": ["HOSPA"]}),
        );
        let mut remote_new = study("1.2", "20240301");
        remote_new.insert(
            RETRIEVE_AE_TITLE.into(),
            json!({"vr": "AE", "Value": ["HOSPB"]}),
        );
        let merged = merge(
            QidoLevel::Study,
            vec![study("1.1", "20240101")],
            vec![remote_dup, remote_new],
            "TSUNAGI",
        );
        assert_eq!(merged.len(), 2);
        assert_eq!(merged[0]["0020000D"]["Value"][0], "1.2", "newest first");
        assert_eq!(
            merged[1][RETRIEVE_AE_TITLE]["Value"],
            json!(["TSUNAGI", "HOSPA"])
        );
    }

    #[test]
    fn japanese_names_go_to_their_component_group() {
        assert_eq!(person_name_for_dimse("山田*"), "*=山田*");
        assert_eq!(person_name_for_dimse("やまだ*"), "*=*=やまだ*");
        assert_eq!(person_name_for_dimse("YAMADA*"), "YAMADA*");
        assert_eq!(person_name_for_dimse("ﾔﾏﾀﾞ*"), "ﾔﾏﾀﾞ*");
        assert_eq!(person_name_for_dimse("=山田"), "=山田");
    }
}

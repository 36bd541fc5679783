//! Per-facility access: two studies pushed with DCMTK `storescu`, one then recorded as
//! retrieved from `hospital-b` (a row in the index's `retrieval` table, as a pull writes it).
//! A clinic allowed only `"local"` sees the first and not the second, in QIDO (rows dropped,
//! a scoped search as empty as for a missing study) and on every WADO-RS resource type (the same
//! 404 as a missing study); a clinic allowed `hospital-b` the reverse; a caller without a
//! facility sees nothing; the admin role sees all.

mod common;

use common::*;
use serde_json::Value;

const LOCAL_KEY: &str = "clinic-local-key-0123";
const B_KEY: &str = "clinic-b-key-0123456789";
const NO_FACILITY_KEY: &str = "no-facility-key-0123";
const ADMIN_KEY: &str = "admin-key-0123456789ab";

fn sample(path: &str) -> (std::path::PathBuf, Value) {
    let e = manifest()
        .into_iter()
        .find(|e| e["path"] == path)
        .expect("sample");
    (sample_path(&e), e)
}

async fn get_as(url: &str, key: &str) -> (u16, String) {
    let resp = reqwest::Client::new()
        .get(url)
        .header("Authorization", format!("Bearer {key}"))
        .header("Accept", "*/*")
        .send()
        .await
        .expect("request");
    let status = resp.status().as_u16();
    (status, resp.text().await.unwrap_or_default())
}

async fn study_uids(url: &str, key: &str) -> Vec<String> {
    let (status, body) = get_as(url, key).await;
    assert_eq!(status, 200, "{url}: {body}");
    let rows: Value = serde_json::from_str(&body).expect("json");
    rows.as_array()
        .expect("array")
        .iter()
        .filter_map(|r| r["0020000D"]["Value"][0].as_str().map(String::from))
        .collect()
}

/// Every WADO-RS resource of one instance, relative to the DICOMweb root.
fn wado_resources(e: &Value) -> Vec<String> {
    let (st, se, i) = (
        e["study_uid"].as_str().unwrap(),
        e["series_uid"].as_str().unwrap(),
        e["sop_instance_uid"].as_str().unwrap(),
    );
    let inst = format!("studies/{st}/series/{se}/instances/{i}");
    vec![
        format!("studies/{st}"),
        format!("studies/{st}/metadata"),
        format!("studies/{st}/thumbnail"),
        format!("studies/{st}/series/{se}"),
        format!("studies/{st}/series/{se}/metadata"),
        format!("studies/{st}/series/{se}/thumbnail"),
        inst.clone(),
        format!("{inst}/metadata"),
        format!("{inst}/frames/1"),
        format!("{inst}/frames/1/rendered"),
        format!("{inst}/frames/1/thumbnail"),
        format!("{inst}/rendered"),
        format!("{inst}/thumbnail"),
        format!("{inst}/bulk/7FE00010"),
    ]
}

#[tokio::test]
async fn facilities_see_only_their_sources() {
    let Some(storescu_bin) = peer("/usr/bin/storescu", "it pushes the studies") else {
        return;
    };
    let (file_a, a) = sample("p3-ir13-ir87/ct-64.dcm");
    let (file_b, b) = sample("p4-ir87-ir159/sc-64.dcm");
    let (study_a, study_b) = (
        a["study_uid"].as_str().unwrap().to_string(),
        b["study_uid"].as_str().unwrap().to_string(),
    );
    let tmp = tempfile::tempdir().unwrap();
    let keys = format!(
        "[{{name = \"clinic-local\", key = \"{LOCAL_KEY}\", facility = \"clinic-local\"}}, \
          {{name = \"clinic-b\", key = \"{B_KEY}\", facility = \"clinic-b\"}}, \
          {{name = \"nobody\", key = \"{NO_FACILITY_KEY}\"}}, \
          {{name = \"admin\", key = \"{ADMIN_KEY}\", roles = [\"tsunagi-admin\"]}}]"
    );
    let env = [
        ("TSUNAGI_AUTH__MODE", "api-key"),
        ("TSUNAGI_AUTH__API_KEY", keys.as_str()),
        ("TSUNAGI_JOBS__ENABLED", "false"),
    ];
    // Arrays of tables come from the file (./proxy.toml of the gateway's working directory).
    std::fs::write(
        tmp.path().join("proxy.toml"),
        r#"
[[facility]]
name = "clinic-local"
upstreams = ["local"]

[[facility]]
name = "clinic-b"
upstreams = ["hospital-b"]

[[upstream]]
name = "hospital-b"
ae_title = "HOSPB"
address = "127.0.0.1:9"
timeout = "1s"
"#,
    )
    .unwrap();
    let mut gw = Gateway::start_in(&tmp.path().join("cache"), &env);
    gw.hold(tmp);
    for f in [&file_a, &file_b] {
        let (ok, text) = storescu(&storescu_bin, gw.dimse, "-xs", std::slice::from_ref(f));
        assert!(ok, "storescu: {text}");
    }
    let index = rusqlite::Connection::open(gw.dir.join("index.sqlite")).expect("index");
    index
        .busy_timeout(std::time::Duration::from_secs(5))
        .unwrap();
    index
        .execute(
            "INSERT INTO retrieval (target, study_uid, upstream, complete, arrived, message, finished_at)
             VALUES (?1, ?1, 'hospital-b', 1, 1, '', 0)",
            [&study_b],
        )
        .expect("record the retrieval");

    let base = gw.base();
    let studies = format!("{base}/studies");
    assert_eq!(study_uids(&studies, LOCAL_KEY).await, vec![study_a.clone()]);
    assert_eq!(study_uids(&studies, B_KEY).await, vec![study_b.clone()]);
    assert!(study_uids(&studies, NO_FACILITY_KEY).await.is_empty());
    let mut all = study_uids(&studies, ADMIN_KEY).await;
    all.sort();
    let mut both = vec![study_a.clone(), study_b.clone()];
    both.sort();
    assert_eq!(all, both);
    // All-series / all-instances searches are filtered by their study too.
    for level in ["series", "instances"] {
        let uids = study_uids(&format!("{base}/{level}"), LOCAL_KEY).await;
        assert!(uids.iter().all(|u| *u == study_a), "{level}: {uids:?}");
        assert!(!uids.is_empty());
    }

    // A scoped search of a denied study answers as one of a missing study.
    let missing = "1.2.3.4.5.6.7.8.9";
    for tail in ["series", "instances"] {
        let denied = get_as(&format!("{base}/studies/{study_b}/{tail}"), LOCAL_KEY).await;
        let absent = get_as(&format!("{base}/studies/{missing}/{tail}"), LOCAL_KEY).await;
        assert_eq!(denied.0, absent.0, "{tail}");
        assert_eq!(study_uids_of(&denied.1), study_uids_of(&absent.1), "{tail}");
    }

    // Every WADO-RS resource: allowed 200, denied 404 as if missing.
    for (res_b, res_a) in wado_resources(&b).iter().zip(wado_resources(&a)) {
        let (status, body) = get_as(&format!("{base}/{res_b}"), B_KEY).await;
        assert_eq!(status, 200, "clinic-b reads {res_b}: {body}");
        let (status, body) = get_as(&format!("{base}/{res_b}"), LOCAL_KEY).await;
        assert_eq!(status, 404, "clinic-local reads {res_b}: {body}");
        assert!(body.contains("is not in the cache"), "{body}");
        let (status, _) = get_as(&format!("{base}/{res_a}"), LOCAL_KEY).await;
        assert_eq!(status, 200, "clinic-local reads {res_a}");
        let (status, _) = get_as(&format!("{base}/{res_a}"), NO_FACILITY_KEY).await;
        assert_eq!(status, 404, "no facility reads {res_a}");
    }
    // To the same caller, a denied study and a missing one look alike.
    let denied = get_as(&format!("{base}/studies/{study_b}"), LOCAL_KEY).await;
    let absent = get_as(&format!("{base}/studies/{missing}"), LOCAL_KEY).await;
    assert_eq!(denied.0, absent.0);
    assert_eq!(
        denied.1.replace(&study_b, "UID"),
        absent.1.replace(missing, "UID")
    );
}

fn study_uids_of(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or(Value::Null)
}

//! Per-facility access: two studies pushed with DCMTK `storescu`, one then recorded as
//! retrieved from `hospital-b` (a row in the index's `retrieval` table, as a pull writes it).
//! A clinic allowed only `"local"` sees the first and not the second, in QIDO (rows dropped,
//! a scoped search as empty as for a missing study) and on every WADO-RS resource type (the same
//! 404 as a missing study); a clinic allowed `hospital-b` the reverse; a caller without a
//! facility sees nothing; the admin role sees all. Pages are cut after filtering, so a
//! restricted caller's `limit` and `Warning` count only what it may see. A `referred_only`
//! clinic sees a patient's studies only while a referral (`/admin/referrals`) names it.

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

/// A gateway with these API keys and this `proxy.toml` (arrays of tables come from the file,
/// in the gateway's working directory), holding two studies pushed with `storescu`.
fn gateway_with_two_studies(
    storescu_bin: &std::path::Path,
    keys: &str,
    toml: &str,
    files: [&std::path::PathBuf; 2],
) -> Gateway {
    let tmp = tempfile::tempdir().unwrap();
    let env = [
        ("TSUNAGI_AUTH__MODE", "api-key"),
        ("TSUNAGI_AUTH__API_KEY", keys),
        ("TSUNAGI_JOBS__ENABLED", "false"),
    ];
    let mut gw = Gateway::start_with_config_in(&tmp.path().join("cache"), toml, &env);
    gw.hold(tmp);
    for f in files {
        let (ok, text) = storescu(storescu_bin, gw.dimse, "-xs", std::slice::from_ref(f));
        assert!(ok, "storescu: {text}");
    }
    gw
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
    let keys = format!(
        "[{{name = \"clinic-local\", key = \"{LOCAL_KEY}\", facility = \"clinic-local\"}}, \
          {{name = \"clinic-b\", key = \"{B_KEY}\", facility = \"clinic-b\"}}, \
          {{name = \"nobody\", key = \"{NO_FACILITY_KEY}\"}}, \
          {{name = \"admin\", key = \"{ADMIN_KEY}\", roles = [\"tsunagi-admin\"]}}]"
    );
    let toml = r#"
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
"#;
    let gw = gateway_with_two_studies(&storescu_bin, &keys, toml, [&file_a, &file_b]);
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
    // Paging counts only visible rows: the first page of one is clinic-local's study, and
    // nothing says more remain (the admin's second study is not "another result" for it).
    let page = reqwest::Client::new()
        .get(format!("{studies}?limit=1"))
        .header("Authorization", format!("Bearer {LOCAL_KEY}"))
        .send()
        .await
        .expect("page");
    let more = page
        .headers()
        .get_all("warning")
        .iter()
        .any(|w| w.to_str().unwrap_or("").contains("additional results"));
    assert!(!more, "{:?}", page.headers());
    let rows: Value = page.json().await.expect("json");
    assert_eq!(rows[0]["0020000D"]["Value"][0], study_a.as_str());
    let (_, body) = get_as(&format!("{studies}?limit=1&offset=1"), LOCAL_KEY).await;
    assert_eq!(study_uids_of(&body), serde_json::json!([]));

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

async fn send_as(
    method: reqwest::Method,
    url: &str,
    key: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = reqwest::Client::new()
        .request(method, url)
        .header("Authorization", format!("Bearer {key}"));
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.expect("request");
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap_or_default();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

#[tokio::test]
async fn referred_only_clinic_sees_referred_patients() {
    let Some(storescu_bin) = peer("/usr/bin/storescu", "it pushes the studies") else {
        return;
    };
    let (file_a, a) = sample("p3-ir13-ir87/ct-64.dcm");
    let (file_b, b) = sample("p4-ir87-ir159/sc-64.dcm");
    let study_a = a["study_uid"].as_str().unwrap().to_string();
    let keys = format!(
        "[{{name = \"clinic-r\", key = \"{LOCAL_KEY}\", facility = \"clinic-r\"}}, \
          {{name = \"admin\", key = \"{ADMIN_KEY}\", roles = [\"tsunagi-admin\"]}}]"
    );
    let toml = "[[facility]]\nname = \"clinic-r\"\nupstreams = [\"local\"]\nreferred_only = true\n";
    let gw = gateway_with_two_studies(&storescu_bin, &keys, toml, [&file_a, &file_b]);
    let base = gw.base();
    let studies = format!("{base}/studies");
    let referrals = format!("http://{}/admin/referrals", gw.http);

    // No referral yet: nothing, neither in QIDO nor by WADO-RS.
    assert!(study_uids(&studies, LOCAL_KEY).await.is_empty());
    assert_eq!(
        get_as(&format!("{base}/studies/{study_a}"), LOCAL_KEY)
            .await
            .0,
        404
    );

    // Referrals are an admin action, checked against the configuration.
    use reqwest::Method;
    let mut refer = serde_json::json!({"facility": "clinic-r", "patient_id": a["patient_id"]});
    let (status, _) = send_as(Method::POST, &referrals, LOCAL_KEY, Some(refer.clone())).await;
    assert_eq!(status, 403);
    let unknown = serde_json::json!({"facility": "clinic-z", "patient_id": "JP-0003"});
    let (status, body) = send_as(Method::POST, &referrals, ADMIN_KEY, Some(unknown)).await;
    assert_eq!(status, 400, "{body}");
    let wildcard = serde_json::json!({"facility": "clinic-r", "patient_id": "JP-*"});
    assert_eq!(
        send_as(Method::POST, &referrals, ADMIN_KEY, Some(wildcard))
            .await
            .0,
        400
    );

    // An ended referral opens nothing.
    refer["until"] = "2020-01-01T00:00Z".into();
    let (status, body) = send_as(Method::POST, &referrals, ADMIN_KEY, Some(refer.clone())).await;
    assert_eq!(status, 201, "{body}");
    assert!(study_uids(&studies, LOCAL_KEY).await.is_empty());

    // A referral in force opens that patient's study, and only it.
    refer.as_object_mut().unwrap().remove("until");
    let (status, made) = send_as(Method::POST, &referrals, ADMIN_KEY, Some(refer)).await;
    assert_eq!(status, 201, "{made}");
    assert_eq!(made["source"], "admin");
    assert!(made["until"].as_i64().is_some(), "default validity: {made}");
    assert_eq!(study_uids(&studies, LOCAL_KEY).await, vec![study_a.clone()]);
    for (res_a, res_b) in wado_resources(&a).iter().zip(wado_resources(&b)) {
        let (status, body) = get_as(&format!("{base}/{res_a}"), LOCAL_KEY).await;
        assert_eq!(status, 200, "referred patient: {res_a}: {body}");
        let (status, _) = get_as(&format!("{base}/{res_b}"), LOCAL_KEY).await;
        assert_eq!(status, 404, "patient not referred: {res_b}");
    }
    let (status, listed) = send_as(
        Method::GET,
        &format!("{referrals}?facility=clinic-r"),
        ADMIN_KEY,
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(listed.as_array().map(Vec::len), Some(2), "{listed}");

    // Withdrawn: closed again.
    let id = made["id"].as_i64().unwrap();
    let (status, _) = send_as(
        Method::DELETE,
        &format!("{referrals}/{id}"),
        ADMIN_KEY,
        None,
    )
    .await;
    assert_eq!(status, 204);
    assert_eq!(
        send_as(
            Method::DELETE,
            &format!("{referrals}/{id}"),
            ADMIN_KEY,
            None
        )
        .await
        .0,
        404
    );
    assert!(study_uids(&studies, LOCAL_KEY).await.is_empty());
    assert_eq!(
        get_as(&format!("{base}/studies/{study_a}/metadata"), LOCAL_KEY)
            .await
            .0,
        404
    );
}

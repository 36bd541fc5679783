//! Pull-through against two real hospital PACS: DCMTK `dcmqrscp` (hospital A, C-MOVE,
//! `\ISO 2022 IR 87`) and Orthanc (hospital B, C-GET, UTF-8). Federated QIDO finds studies at
//! both and in the cache, de-duplicated by UID; cold WADO-RS reads pull the data and the bytes
//! match the source; concurrent cold requests cause one retrieve; failed sub-operations and
//! dead or silent PACS give clear statuses and warnings while the gateway stays healthy.

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::pacs::*;
use common::*;
use serde_json::Value;

const AS_STORED: &str = "multipart/related; type=\"application/dicom\"; transfer-syntax=*";
const OHIF_FRAMES: &str = "multipart/related; type=application/octet-stream; transfer-syntax=*";

struct Network {
    a: DcmQrScp,
    b: Orthanc,
    gw: Gateway,
}

/// Hospital A (C-MOVE) and B (C-GET) behind a fresh gateway, or None when a peer is missing.
fn network_with(a_files: Vec<std::path::PathBuf>, extra_toml: &str) -> Option<Network> {
    let mut a = DcmQrScp::start("HOSPA", &a_files)?;
    let mut b = Orthanc::hospital_b()?;
    let toml = format!(
        "[pull]\nretries = 0\n\n{}{}{extra_toml}",
        a.upstream_toml("hospital-a", "c-move"),
        b.upstream_toml("hospital-b", "c-get")
    );
    let gw = Gateway::start_with_config(&toml);
    a.allow_move_to("TSUNAGI", gw.dimse);
    b.allow_move_to("TSUNAGI", gw.dimse);
    Some(Network { a, b, gw })
}

fn network() -> Option<Network> {
    network_with(pacs_files("hospa/"), "")
}

fn aes(row: &Value) -> Vec<String> {
    row["00080054"]["Value"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread")]
async fn federated_search_finds_every_hospital_and_the_cache_deduplicated() {
    let Some(net) = network() else { return };
    let storescu_bin = peer("/usr/bin/storescu", "DCMTK pushes a study into the cache").unwrap();
    // the cache holds JP-0001's study from the samples, pushed directly
    let cached: Vec<_> = manifest()
        .into_iter()
        .filter(|e| e["patient_id"] == "JP-0001" && e["modality"] == "CT")
        .map(|e| sample_path(&e))
        .collect();
    let (ok, out) = storescu(&storescu_bin, net.gw.dimse, "-x=", &cached);
    assert!(ok, "{out}");

    let url = format!("{}/studies?PatientID=JP-0001", net.gw.base());
    let (status, _, headers, body) = get(&url, "application/dicom+json").await;
    assert_eq!(status, 200);
    assert!(headers.get("warning").is_none(), "{headers:?}");
    let rows: Value = serde_json::from_slice(&body).unwrap();
    let studies = uids(&rows, "0020000D");
    let expected: BTreeSet<String> = [
        manifest()[0]["study_uid"].as_str().unwrap().to_string(),
        pacs_uid("hospa/jp-0001/", "study_uid"),
        pacs_uid("hospb/jp-0001/", "study_uid"),
    ]
    .into();
    assert_eq!(studies, expected, "cache + hospital A + hospital B");
    for row in rows.as_array().unwrap() {
        let uid = row["0020000D"]["Value"][0].as_str().unwrap();
        let expected_ae = if uid == pacs_uid("hospa/jp-0001/", "study_uid") {
            "HOSPA"
        } else if uid == pacs_uid("hospb/jp-0001/", "study_uid") {
            "HOSPB"
        } else {
            "TSUNAGI"
        };
        assert_eq!(aes(row), vec![expected_ae.to_string()], "{row}");
        let retrieve_url = row["00081190"]["Value"][0].as_str().unwrap();
        assert!(retrieve_url.starts_with(&net.gw.base()), "{retrieve_url}");
        assert_eq!(
            row["00100010"]["Value"][0]["Ideographic"], "山田^太郎",
            "{row}"
        );
    }

    // kanji reach hospital A in ISO 2022 IR 87 and hospital B in UTF-8
    let kanji = format!(
        "{}/studies?PatientName={}",
        net.gw.base(),
        percent_encoding::utf8_percent_encode("山田*", percent_encoding::NON_ALPHANUMERIC)
    );
    let found = uids(&get_json(&kanji).await, "0020000D");
    assert!(
        found.contains(&pacs_uid("hospa/jp-0001/", "study_uid")),
        "{found:?}"
    );
    assert!(
        found.contains(&pacs_uid("hospb/jp-0001/", "study_uid")),
        "{found:?}"
    );

    // once hospital A's study is cached, it is one row held in two places
    let study_a = pacs_uid("hospa/jp-0001/", "study_uid");
    let (status, _, _, _) = get(&format!("{}/studies/{study_a}", net.gw.base()), AS_STORED).await;
    assert_eq!(status, 200);
    let rows = get_json(&url).await;
    let row = rows
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["0020000D"]["Value"][0] == study_a.as_str())
        .expect("hospital A's study");
    assert_eq!(rows.as_array().unwrap().len(), 3, "no duplicate row");
    assert_eq!(aes(row), vec!["TSUNAGI".to_string(), "HOSPA".to_string()]);

    // a search without criteria is answered from the cache only, and says so
    let (_, _, headers, _) = get(
        &format!("{}/studies", net.gw.base()),
        "application/dicom+json",
    )
    .await;
    let warning = headers
        .get("warning")
        .expect("warning")
        .to_str()
        .unwrap()
        .to_string();
    assert!(warning.contains("not searched"), "{warning}");
    drop(net.a);
    drop(net.b);
}

#[tokio::test(flavor = "multi_thread")]
async fn cold_study_reads_pull_from_each_hospital_byte_for_byte() {
    let Some(net) = network() else { return };
    for (prefix, pacs) in [
        ("hospa/jp-0001/", &net.a as &dyn Pacs),
        ("hospb/jp-0001/", &net.b),
    ] {
        let study = pacs_uid(prefix, "study_uid");
        let url = format!("{}/studies/{study}", net.gw.base());
        let (status, ct, _, body) = get(&url, AS_STORED).await;
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
        assert_served_as_stored(&ct, &body, prefix, "after the pull");
        assert_eq!(
            pacs.retrieves_of(&study),
            1,
            "one study-level retrieve at {prefix}"
        );
    }
    // C-GET brought hospital B's JPEG 2000 instances as stored
    let j2k = pacs_entries("hospb/jp-0001/j2k").remove(0);
    let frame = format!(
        "{}/studies/{}/series/{}/instances/{}/frames/1",
        net.gw.base(),
        j2k["study_uid"].as_str().unwrap(),
        j2k["series_uid"].as_str().unwrap(),
        j2k["sop_instance_uid"].as_str().unwrap()
    );
    let (status, ct, _, _) = get(&frame, OHIF_FRAMES).await;
    assert_eq!(status, 200);
    assert!(ct.contains("1.2.840.10008.1.2.4.90"), "{ct}");

    // the C-GET is an import in the audit trail, as a C-STORE pushed to us is
    let study_b = pacs_uid("hospb/jp-0001/", "study_uid");
    let is_cget_import =
        |r: &Value| r["EventID"]["csd-code"] == "110107" && r["Request"] == "C-GET";
    let trail = audit_records(&net.gw.dir.join("audit.jsonl"), |r| {
        r.iter().any(is_cget_import)
    });
    let import = trail
        .iter()
        .find(|r| is_cget_import(r))
        .unwrap_or_else(|| panic!("no Import record for the C-GET: {trail:?}"));
    assert_eq!(import["ActiveParticipant"]["UserID"], "HOSPB", "{import}");
    assert_eq!(import["EventOutcomeIndicator"], 0, "{import}");
    assert_eq!(
        import["ParticipantObject"][0]["ParticipantObjectID"],
        study_b.as_str()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn ten_concurrent_cold_requests_cause_one_retrieve() {
    let Some(net) = network() else { return };
    let study = pacs_uid("hospa/jp-0001/", "study_uid");
    let series = pacs_uid("hospa/jp-0001/", "series_uid");
    let url = format!("{}/studies/{study}/series/{series}/metadata", net.gw.base());
    let requests = (0..10).map(|_| get(&url, "application/dicom+json"));
    for (status, _, _, body) in futures::future::join_all(requests).await {
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
        let objects: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(objects.as_array().unwrap().len(), 12);
    }
    assert_eq!(net.a.retrieves_of(&series), 1, "{:?}", net.a.retrieves());
    // and a frame of a cold instance moves just that instance
    let e = pacs_entries("hospa/jp-0005/").remove(0);
    let frame = format!(
        "{}/studies/{}/series/{}/instances/{}/frames/1",
        net.gw.base(),
        e["study_uid"].as_str().unwrap(),
        e["series_uid"].as_str().unwrap(),
        e["sop_instance_uid"].as_str().unwrap()
    );
    assert_eq!(get(&frame, OHIF_FRAMES).await.0, 200);
    let last = net.a.retrieves().pop().unwrap();
    assert_eq!(last.level, "IMAGE", "{last:?}");
}

/// A copy of a hospital A file whose SOP Instance UID the gateway must refuse (a component
/// with a leading zero), so the PACS reports one failed sub-operation.
fn refused_instance(dir: &std::path::Path) -> std::path::PathBuf {
    let src = pacs_files("hospa/jp-0001/").remove(0);
    let mut obj = dicom_object::open_file(&src).unwrap();
    let bad = "1.2.826.0.1.3680043.10.543.01";
    obj.put(dicom_core::DataElement::new(
        dicom_dictionary_std::tags::SOP_INSTANCE_UID,
        dicom_core::VR::UI,
        dicom_core::PrimitiveValue::from(bad),
    ));
    obj.update_meta(|m| m.media_storage_sop_instance_uid = format!("{bad}\0"));
    let path = dir.join("refused.dcm");
    obj.write_to_file(&path).unwrap();
    path
}

#[tokio::test(flavor = "multi_thread")]
async fn failed_sub_operations_give_partial_content_with_a_warning() {
    let tmp = tempfile::tempdir().unwrap();
    let mut files = pacs_files("hospa/");
    files.push(refused_instance(tmp.path()));
    let Some(net) = network_with(files, "") else {
        return;
    };
    let study = pacs_uid("hospa/jp-0001/", "study_uid");
    let series = pacs_uid("hospa/jp-0001/", "series_uid");
    let url = format!("{}/studies/{study}/series/{series}/metadata", net.gw.base());
    let (status, _, headers, body) = get(&url, "application/dicom+json").await;
    assert_eq!(status, 206, "{}", String::from_utf8_lossy(&body));
    let warning = headers.get("warning").expect("warning").to_str().unwrap();
    assert!(
        warning.starts_with("299 ") && warning.contains("failed"),
        "{warning}"
    );
    let objects: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        objects.as_array().unwrap().len(),
        12,
        "the instances that did arrive"
    );
    let health = get_json(&format!("http://{}/healthz", net.gw.http)).await;
    assert_eq!(health["status"], "ok");
}

#[tokio::test(flavor = "multi_thread")]
async fn dead_and_silent_pacs_never_hold_the_gateway_hostage() {
    // hospital C accepts TCP connections and never says a word
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_addr = silent.local_addr().unwrap();
    let hold = std::thread::spawn(move || {
        let mut held = Vec::new();
        for s in silent.incoming().take(8).flatten() {
            held.push(s);
        }
    });
    let extra = format!(
        "[[upstream]]\nname = \"hospital-c\"\nae_title = \"HOSPC\"\naddress = \"{silent_addr}\"\ntimeout = \"2s\"\n"
    );
    let Some(mut net) = network_with(pacs_files("hospa/"), &extra) else {
        return;
    };
    let url = format!("{}/studies?PatientID=JP-0001", net.gw.base());
    let start = Instant::now();
    let (status, _, headers, body) = get(&url, "application/dicom+json").await;
    let took = start.elapsed();
    assert_eq!(status, 200);
    let warnings: Vec<String> = headers
        .get_all("warning")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .collect();
    assert!(
        warnings.iter().any(|w| w.contains("hospital-c")),
        "{warnings:?}"
    );
    assert!(
        took < Duration::from_secs(20),
        "bounded by hospital-c's timeout, took {took:?}"
    );
    let rows: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(rows.as_array().unwrap().len(), 2, "A and B still answered");

    // hospital A dies: a cold read of its study fails fast with a reason, the gateway lives on
    net.a.stop();
    let study = pacs_uid("hospa/jp-0001/", "study_uid");
    let (status, _, _, body) = get(&format!("{}/studies/{study}", net.gw.base()), AS_STORED).await;
    assert!(
        status == 502 || status == 504,
        "{status}: {}",
        String::from_utf8_lossy(&body)
    );
    assert!(String::from_utf8_lossy(&body).contains("hospital-a"));
    let health = get_json(&format!("http://{}/healthz", net.gw.http)).await;
    assert_eq!(health["status"], "ok");
    drop(net);
    drop(hold);
}

//! End to end: DCMTK `storescu` pushes the samples to the real `tsunagi` binary, several
//! associations at once; QIDO-RS finds them (Japanese names intact), WADO-RS returns the
//! pushed data sets byte for byte, frames and bulk data equal the source.

mod common;

use common::*;
use dicom_core::value::Value as DicomValue;
use dicom_dictionary_std::tags;
use serde_json::Value;

const OHIF_FRAMES: &str = "multipart/related; type=application/octet-stream; transfer-syntax=*";
const DICOM_AS_STORED: &str = "multipart/related; type=\"application/dicom\"; transfer-syntax=*";

/// A gateway loaded with every sample, or None when DCMTK is missing (loud skip).
fn loaded_gateway() -> Option<Gateway> {
    let storescu = peer("/usr/bin/storescu", "DCMTK pushes the samples")?;
    let gw = Gateway::start();
    push_all_samples(&storescu, gw.dimse);
    Some(gw)
}

fn entries_where(key: &str, value: &str) -> Vec<Value> {
    manifest()
        .into_iter()
        .filter(|e| e[key].as_str() == Some(value))
        .collect()
}

fn pn_string(v: &Value) -> String {
    let pn = &v["Value"][0];
    ["Alphabetic", "Ideographic", "Phonetic"]
        .iter()
        .map(|k| pn[*k].as_str().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("=")
        .trim_end_matches('=')
        .to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn search_finds_every_pushed_study_with_names_intact() {
    let Some(gw) = loaded_gateway() else { return };
    let studies = get_json(&format!("{}/studies", gw.base())).await;
    let studies = studies.as_array().expect("array");
    let manifest = manifest();
    let mut expected: Vec<&str> = manifest
        .iter()
        .filter_map(|e| e["study_uid"].as_str())
        .collect();
    expected.sort();
    expected.dedup();
    assert_eq!(studies.len(), expected.len());
    for s in studies {
        let uid = s["0020000D"]["Value"][0].as_str().expect("study uid");
        let entry = manifest
            .iter()
            .find(|e| e["study_uid"] == uid)
            .expect("known study");
        assert_eq!(
            pn_string(&s["00100010"]),
            entry["patient_name"].as_str().unwrap()
        );
        let n_instances = manifest.iter().filter(|e| e["study_uid"] == uid).count();
        assert_eq!(
            s["00201208"]["Value"][0], n_instances,
            "NumberOfStudyRelatedInstances"
        );
        let url = s["00081190"]["Value"][0].as_str().expect("RetrieveURL");
        assert!(url.ends_with(&format!("/dicom-web/studies/{uid}")), "{url}");
    }
    let first = &manifest[0];
    let study = studies
        .iter()
        .find(|s| s["0020000D"]["Value"][0] == first["study_uid"])
        .unwrap();
    assert_eq!(study["00080061"]["Value"], serde_json::json!(["CT", "MR"]));
}

#[tokio::test(flavor = "multi_thread")]
async fn kanji_and_kana_queries_find_japanese_patients() {
    let Some(gw) = loaded_gateway() else { return };
    let q = |v: &str| {
        format!(
            "{}/studies?PatientName={}",
            gw.base(),
            percent_encoding::utf8_percent_encode(v, percent_encoding::NON_ALPHANUMERIC)
        )
    };
    // patients 1 (\ISO 2022 IR 87) and 3 (ISO 2022 IR 13\ISO 2022 IR 87) are both 山田^太郎
    let hits = get_json(&q("山田*")).await;
    let ids: Vec<&str> = hits
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s["00100020"]["Value"][0].as_str())
        .collect();
    assert_eq!(ids.len(), 2, "{hits}");
    assert!(
        ids.contains(&"JP-0001") && ids.contains(&"JP-0003"),
        "{ids:?}"
    );
    assert_eq!(
        get_json(&q("やまだ^たろう"))
            .await
            .as_array()
            .unwrap()
            .len(),
        2
    );
    let katakana = get_json(&q("ﾔﾏﾀﾞ*")).await;
    assert_eq!(katakana.as_array().unwrap().len(), 1);
    assert_eq!(katakana[0]["00100020"]["Value"][0], "JP-0003");
    let utf8 = get_json(&q("鈴木*")).await;
    assert_eq!(utf8[0]["00100020"]["Value"][0], "JP-0002");
    let ir159 = get_json(&q("森^鷗外")).await;
    assert_eq!(
        ir159[0]["00100020"]["Value"][0], "JP-0004",
        "JIS X 0212 name"
    );
    let tag_key = get_json(&format!("{}/studies?00100020=JP-0002", gw.base())).await;
    assert_eq!(tag_key.as_array().unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn retrieve_returns_pushed_data_sets_byte_for_byte() {
    let Some(gw) = loaded_gateway() else { return };
    for e in manifest() {
        let url = format!(
            "{}/studies/{}/series/{}/instances/{}",
            gw.base(),
            e["study_uid"].as_str().unwrap(),
            e["series_uid"].as_str().unwrap(),
            e["sop_instance_uid"].as_str().unwrap()
        );
        let (status, ct, headers, body) = get(&url, DICOM_AS_STORED).await;
        assert_eq!(status, 200, "{url}");
        assert!(headers.get("etag").is_some());
        let parts = multipart_parts(&ct, &body);
        assert_eq!(parts.len(), 1);
        let ts = e["transfer_syntax"].as_str().unwrap();
        assert!(
            parts[0].0.contains(&format!("transfer-syntax={ts}")),
            "{}",
            parts[0].0
        );
        let source = std::fs::read(sample_path(&e)).unwrap();
        assert!(
            data_set_bytes(&parts[0].1) == data_set_bytes(&source),
            "data set of {} differs",
            e["path"]
        );
    }
    // a whole study streams as one part per instance
    let first = &manifest()[0];
    let url = format!(
        "{}/studies/{}",
        gw.base(),
        first["study_uid"].as_str().unwrap()
    );
    let (status, ct, _, body) = get(&url, DICOM_AS_STORED).await;
    assert_eq!(status, 200);
    let n = entries_where("study_uid", first["study_uid"].as_str().unwrap()).len();
    assert_eq!(multipart_parts(&ct, &body).len(), n);
}

#[tokio::test(flavor = "multi_thread")]
async fn default_syntax_is_explicit_le_even_for_compressed_instances() {
    let Some(gw) = loaded_gateway() else { return };
    let url = |e: &Value| {
        format!(
            "{}/studies/{}/series/{}/instances/{}",
            gw.base(),
            e["study_uid"].as_str().unwrap(),
            e["series_uid"].as_str().unwrap(),
            e["sop_instance_uid"].as_str().unwrap()
        )
    };
    let implicit = entries_where("transfer_syntax", "1.2.840.10008.1.2").remove(0);
    let (status, ct, _, body) = get(
        &url(&implicit),
        "multipart/related; type=\"application/dicom\"",
    )
    .await;
    assert_eq!(status, 200);
    let part = multipart_parts(&ct, &body).remove(0);
    assert!(
        part.0.contains("transfer-syntax=1.2.840.10008.1.2.1"),
        "{}",
        part.0
    );
    let served = dicom_object::from_reader(&part.1[128..]).expect("served instance parses");
    assert_eq!(
        served.meta().transfer_syntax().trim_end_matches('\0'),
        "1.2.840.10008.1.2.1"
    );
    let source = dicom_object::open_file(sample_path(&implicit)).unwrap();
    let pixels = |o: &dicom_object::DefaultDicomObject| {
        o.element(tags::PIXEL_DATA)
            .unwrap()
            .to_bytes()
            .unwrap()
            .to_vec()
    };
    assert_eq!(pixels(&served), pixels(&source));

    // a compressed instance without transfer-syntax=* is decompressed to Explicit VR LE
    // (the JPEG 2000 sample was made from ct-04, so its pixels are ct-04's)
    let j2k = entries_where("transfer_syntax", "1.2.840.10008.1.2.4.90").remove(0);
    let (status, ct, _, body) =
        get(&url(&j2k), "multipart/related; type=\"application/dicom\"").await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let part = multipart_parts(&ct, &body).remove(0);
    assert!(
        part.0.contains("transfer-syntax=1.2.840.10008.1.2.1"),
        "{}",
        part.0
    );
    let decompressed = dicom_object::from_reader(&part.1[128..]).expect("served instance parses");
    let ct04 = manifest()
        .into_iter()
        .find(|e| e["path"] == "p1-ir87/ct/ct-04.dcm")
        .unwrap();
    let original = dicom_object::open_file(sample_path(&ct04)).unwrap();
    assert!(
        pixels(&decompressed) == pixels(&original),
        "lossless decode"
    );

    // a syntax we cannot produce is 406 with the reason
    let (status, _, _, body) = get(
        &url(&implicit),
        "multipart/related; type=\"application/dicom\"; transfer-syntax=1.2.840.10008.1.2.4.100",
    )
    .await;
    assert_eq!(status, 406);
    assert!(String::from_utf8_lossy(&body).contains("transfer-syntax=*"));
}

/// The bytes of each frame of a source file, read independently with dicom-rs.
fn source_frames(e: &Value) -> Vec<Vec<u8>> {
    let obj = dicom_object::open_file(sample_path(e)).unwrap();
    let frames = e["number_of_frames"].as_u64().unwrap_or(1) as usize;
    let pixel = obj.element(tags::PIXEL_DATA).unwrap();
    match pixel.value() {
        DicomValue::PixelSequence(seq) => {
            let frags = seq.fragments();
            assert_eq!(frags.len(), frames, "samples have one fragment per frame");
            frags.to_vec()
        }
        _ => {
            let bytes = pixel.to_bytes().unwrap();
            let len = bytes.len() / frames;
            bytes.chunks(len).take(frames).map(|c| c.to_vec()).collect()
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn frames_equal_the_source_pixel_data() {
    let Some(gw) = loaded_gateway() else { return };
    for e in manifest().into_iter().filter(|e| e["rows"].is_number()) {
        let expected = source_frames(&e);
        let list: Vec<String> = (1..=expected.len()).map(|i| i.to_string()).collect();
        let url = format!(
            "{}/studies/{}/series/{}/instances/{}/frames/{}",
            gw.base(),
            e["study_uid"].as_str().unwrap(),
            e["series_uid"].as_str().unwrap(),
            e["sop_instance_uid"].as_str().unwrap(),
            list.join(",")
        );
        let (status, ct, _, body) = get(&url, OHIF_FRAMES).await;
        assert_eq!(status, 200, "{url}: {}", String::from_utf8_lossy(&body));
        let parts = multipart_parts(&ct, &body);
        assert_eq!(parts.len(), expected.len(), "{}", e["path"]);
        for (i, (headers, bytes)) in parts.iter().enumerate() {
            assert!(headers.contains("transfer-syntax="), "{headers}");
            assert!(
                bytes == &expected[i],
                "frame {} of {} differs",
                i + 1,
                e["path"]
            );
        }
        let beyond = url.replace(&format!("/frames/{}", list.join(",")), "/frames/999");
        assert_eq!(get(&beyond, OHIF_FRAMES).await.0, 404);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn metadata_has_japanese_names_and_working_bulk_uris() {
    let Some(gw) = loaded_gateway() else { return };
    let ct = entries_where("modality", "CT");
    let e = &ct[0];
    let url = format!(
        "{}/studies/{}/series/{}/metadata",
        gw.base(),
        e["study_uid"].as_str().unwrap(),
        e["series_uid"].as_str().unwrap()
    );
    let meta = get_json(&url).await;
    let objects = meta.as_array().unwrap();
    let in_series = entries_where("series_uid", e["series_uid"].as_str().unwrap()).len();
    assert_eq!(objects.len(), in_series);
    assert_eq!(
        pn_string(&objects[0]["00100010"]),
        e["patient_name"].as_str().unwrap()
    );
    assert_eq!(objects[0]["00081030"]["Value"][0], e["study_description"]);
    let bulk = objects[0]["7FE00010"]["BulkDataURI"]
        .as_str()
        .expect("pixel BulkDataURI");
    assert!(bulk.starts_with(&gw.base()), "{bulk}");
    let (status, ctype, _, body) =
        get(bulk, "multipart/related; type=\"application/octet-stream\"").await;
    assert_eq!(status, 200);
    let sop = objects[0]["00080018"]["Value"][0].as_str().unwrap();
    let entry = manifest()
        .into_iter()
        .find(|m| m["sop_instance_uid"] == sop)
        .unwrap();
    assert_eq!(
        multipart_parts(&ctype, &body)[0].1,
        source_frames(&entry).concat()
    );

    // behind a reverse proxy the URIs point at the proxy
    let resp = reqwest::Client::new()
        .get(&url)
        .header("X-Forwarded-Host", "viewer.example.jp")
        .header("X-Forwarded-Proto", "https")
        .send()
        .await
        .unwrap();
    let proxied: Value = resp.json().await.unwrap();
    let uri = proxied[0]["7FE00010"]["BulkDataURI"].as_str().unwrap();
    assert!(
        uri.starts_with("https://viewer.example.jp/dicom-web/studies/"),
        "{uri}"
    );

    // encapsulated PDF: the document is bulk data
    let pdf = entries_where("sop_class_uid", "1.2.840.10008.5.1.4.1.1.104.1").remove(0);
    let url = format!(
        "{}/studies/{}/series/{}/instances/{}/metadata",
        gw.base(),
        pdf["study_uid"].as_str().unwrap(),
        pdf["series_uid"].as_str().unwrap(),
        pdf["sop_instance_uid"].as_str().unwrap()
    );
    let meta = get_json(&url).await;
    let doc_uri = meta[0]["00420011"]["BulkDataURI"]
        .as_str()
        .expect("document BulkDataURI");
    let (status, ctype, _, body) = get(
        doc_uri,
        "multipart/related; type=\"application/octet-stream\"",
    )
    .await;
    assert_eq!(status, 200);
    let doc = &multipart_parts(&ctype, &body)[0].1;
    assert!(doc.starts_with(b"%PDF"), "PDF bytes");
}

#[tokio::test(flavor = "multi_thread")]
async fn conditional_requests_and_paging() {
    let Some(gw) = loaded_gateway() else { return };
    let e = &manifest()[0];
    let url = format!(
        "{}/studies/{}/series/{}/metadata",
        gw.base(),
        e["study_uid"].as_str().unwrap(),
        e["series_uid"].as_str().unwrap()
    );
    let (_, _, headers, _) = get(&url, "application/dicom+json").await;
    let etag = headers
        .get("etag")
        .expect("etag")
        .to_str()
        .unwrap()
        .to_string();
    let resp = reqwest::Client::new()
        .get(&url)
        .header("If-None-Match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 304);

    let (status, _, headers, body) = get(
        &format!("{}/studies?limit=1", gw.base()),
        "application/dicom+json",
    )
    .await;
    assert_eq!(status, 200);
    let page: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(page.as_array().unwrap().len(), 1);
    let warning = headers
        .get("warning")
        .expect("Warning header")
        .to_str()
        .unwrap();
    assert!(
        warning.starts_with("299 ") && warning.contains('3'),
        "{warning}"
    );

    for bad in ["limit=abc", "NoSuchAttribute=1", "StudyDate=2024-01-01"] {
        let (status, _, _, body) = get(
            &format!("{}/studies?{bad}", gw.base()),
            "application/dicom+json",
        )
        .await;
        assert_eq!(status, 400, "{bad}");
        assert!(!body.is_empty(), "400 for {bad} explains itself");
    }
    let (status, _, _, _) = get(&format!("{}/studies/1.2.3", gw.base()), DICOM_AS_STORED).await;
    assert_eq!(status, 404);
    let (status, _, _, _) = get(&format!("{}/studies/..%2Fetc", gw.base()), DICOM_AS_STORED).await;
    assert_eq!(status, 400);
}

#[tokio::test(flavor = "multi_thread")]
async fn deflated_instances_are_kept_as_sent_and_still_serve_frames() {
    let Some(storescu_path) = peer("/usr/bin/storescu", "DCMTK pushes the samples") else {
        return;
    };
    let gw = Gateway::start();
    let e = entries_where("modality", "CT").remove(0);
    // storescu deflates the data set on the wire when it proposes deflate first
    let (ok, out) = storescu(&storescu_path, gw.dimse, "-xd", &[sample_path(&e)]);
    assert!(ok, "{out}");
    let instance = format!(
        "{}/studies/{}/series/{}/instances/{}",
        gw.base(),
        e["study_uid"].as_str().unwrap(),
        e["series_uid"].as_str().unwrap(),
        e["sop_instance_uid"].as_str().unwrap()
    );
    let (status, ct, _, body) = get(&instance, DICOM_AS_STORED).await;
    assert_eq!(status, 200);
    let part = multipart_parts(&ct, &body).remove(0);
    assert!(
        part.0.contains("transfer-syntax=1.2.840.10008.1.2.1.99"),
        "{}",
        part.0
    );
    let (status, ct, _, body) = get(&format!("{instance}/frames/1"), OHIF_FRAMES).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert_eq!(multipart_parts(&ct, &body)[0].1, source_frames(&e)[0]);
    let meta = get_json(&format!("{instance}/metadata")).await;
    assert_eq!(
        pn_string(&meta[0]["00100010"]),
        e["patient_name"].as_str().unwrap()
    );
}

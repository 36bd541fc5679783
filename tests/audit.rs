//! The audit trail: each HTTP access yields exactly one well-formed JSON line (PS3.15 A.5
//! vocabulary) with the right event, outcome, user, address and study; `/healthz` none.

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

const KEY: &str = "auditor-key-0123456789";

async fn get_as(url: &str, key: Option<&str>) -> u16 {
    let mut req = reqwest::Client::new().get(url);
    if let Some(k) = key {
        req = req.header("Authorization", format!("Bearer {k}"));
    }
    req.send().await.expect("request").status().as_u16()
}

fn records(path: &std::path::Path, want: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let lines: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).expect("each line is one JSON record"))
            .collect();
        if lines.len() >= want || Instant::now() > deadline {
            return lines;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test]
async fn one_record_per_access() {
    let tmp = tempfile::tempdir().unwrap();
    let keys = format!("[{{name = \"svc-viewer\", key = \"{KEY}\", roles = [\"tsunagi-admin\"]}}]");
    let env = [
        ("TSUNAGI_AUTH__MODE", "api-key"),
        ("TSUNAGI_AUTH__API_KEY", keys.as_str()),
    ];
    let mut gw = Gateway::start_in(&tmp.path().join("cache"), &env);
    gw.hold(tmp);
    let base = gw.base();
    let missing = "1.2.392.200036.9999.1";
    let asks = [
        (
            format!("{base}/studies?PatientID=JP-0001"),
            Some(KEY),
            200,
            "110112",
            0,
        ),
        (format!("{base}/studies"), None, 401, "110112", 4),
        (
            format!("{base}/studies/{missing}/metadata"),
            Some(KEY),
            404,
            "110103",
            4,
        ),
        (
            format!("http://{}/admin/cache", gw.http),
            Some(KEY),
            200,
            "110100",
            0,
        ),
    ];
    for (url, key, status, _, _) in &asks {
        assert_eq!(get_as(url, *key).await, *status, "{url}");
    }
    assert_eq!(
        get_as(&format!("http://{}/healthz", gw.http), None).await,
        200
    );
    let path = gw.dir.join("audit.jsonl");
    let recs = records(&path, asks.len());
    std::thread::sleep(Duration::from_millis(300));
    let recs_later = records(&path, asks.len());
    assert_eq!(recs.len(), asks.len(), "{recs:#?}");
    assert_eq!(recs_later.len(), asks.len(), "healthz is not audited");
    for (rec, (url, key, _, event, outcome)) in recs.iter().zip(&asks) {
        assert_eq!(rec["EventID"]["csd-code"], *event, "{url}: {rec}");
        assert_eq!(rec["EventID"]["codeSystemName"], "DCM");
        assert_eq!(rec["EventOutcomeIndicator"], *outcome, "{url}: {rec}");
        let user = if key.is_some() {
            "svc-viewer"
        } else {
            "unauthenticated"
        };
        assert_eq!(rec["ActiveParticipant"]["UserID"], user);
        assert_eq!(
            rec["ActiveParticipant"]["NetworkAccessPointID"],
            "127.0.0.1"
        );
        assert!(rec["EventDateTime"].as_str().unwrap().ends_with('Z'));
        assert!(
            !rec.to_string().contains("JP-0001"),
            "no query strings: {rec}"
        );
    }
    assert_eq!(
        recs[2]["ParticipantObject"][0]["ParticipantObjectID"],
        missing
    );
    assert_eq!(
        recs[2]["ParticipantObject"][0]["ParticipantObjectIDTypeCode"]["csd-code"],
        "110180"
    );
}

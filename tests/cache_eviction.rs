//! The cache manages itself: under a small `store.max_size`, a study pinned by a prefetch
//! job survives eviction while unpinned studies go, least recently used first (a WADO-RS
//! read counts as a use); `/admin/cache` and `tsunagi cache stats` report it; purge by study
//! and by patient. The pinned study comes from DCMTK `dcmqrscp` through a prefetch job, the
//! others are pushed with DCMTK `storescu`. Deadlines are generous and polled.

mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::pacs::*;
use common::studies::*;
use common::*;
use serde_json::{json, Value};

const AS_STORED: &str = "multipart/related; type=\"application/dicom\"; transfer-syntax=*";

async fn studies_in_cache(gw: &Gateway) -> Vec<String> {
    let rows = get_json(&format!("{}/studies", gw.base())).await;
    let mut v: Vec<String> = rows
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["0020000D"]["Value"][0].as_str().map(str::to_string))
        .collect();
    v.sort();
    v
}

async fn wait_until_gone(gw: &Gateway, study: &str) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let now = studies_in_cache(gw).await;
        if !now.iter().any(|s| s == study) {
            return now;
        }
        assert!(Instant::now() < deadline, "{study} still cached: {now:?}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn sorted(v: &[&String]) -> Vec<String> {
    let mut v: Vec<String> = v.iter().map(|s| s.to_string()).collect();
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread")]
async fn pinned_studies_survive_and_the_least_recently_used_go_first() {
    let Some(storescu_bin) = peer("/usr/bin/storescu", "DCMTK pushes unpinned studies") else {
        return;
    };
    if peer(DCMODIFY, "dcmodify makes the studies").is_none() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let base: Vec<PathBuf> = pacs_files("hospa/jp-0001/")[..4].to_vec();
    let (pinned_files, pinned) =
        clone_study(&base, &tmp.path().join("p"), "PIN-1", "20240101", "P");
    let mk = |name: &str| {
        clone_study(
            &base,
            &tmp.path().join(name),
            &format!("PAT-{name}"),
            "20240102",
            name,
        )
    };
    let ((a_files, a), (b_files, b), (c_files, c), (d_files, d)) =
        (mk("A"), mk("B"), mk("C"), mk("D"));
    let Some(mut pacs) = DcmQrScp::start("HOSPA", &pinned_files) else {
        return;
    };
    let up = pacs.upstream_toml("hospital-a", "c-move");
    let dir = tmp.path().join("gw").join("cache");

    // a large cache first: the pinned study by a prefetch job, then A and B; A is read
    let mut gw = Gateway::start_with_config_in(&dir, &up, &[]);
    pacs.allow_move_to("TSUNAGI", gw.dimse);
    let url = admin(&gw);
    let job = json!({"patient_id": "PIN-1", "due": "2099-01-01T00:00"});
    let (status, body) = post_json(&format!("{url}/admin/jobs"), job).await;
    assert_eq!(status, 201, "{body}");
    wait_job(&gw, 1, Duration::from_secs(90), |j| j["state"] == "done").await;
    pacs.stop();
    for files in [&a_files, &b_files] {
        let (ok, out) = storescu(&storescu_bin, gw.dimse, "-x=", files);
        assert!(ok, "{out}");
    }
    // A's read must come later than B's arrival on every clock the index keeps (access times
    // in ms, arrival times in s): on a fast machine all of this happens within one second
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (status, _, _, _) = get(&format!("{}/studies/{a}", gw.base()), AS_STORED).await;
    assert_eq!(status, 200);
    let stats = get_json(&format!("{url}/admin/cache")).await; // also flushes the access times
    let three = stats["size_bytes"].as_u64().unwrap();
    assert_eq!(
        (stats["studies"].clone(), stats["pinned_studies"].clone()),
        (json!(3), json!(1))
    );
    gw.kill();

    // room for three and a half studies: each arrival beyond that evicts one
    let max = (three + three / 6).to_string();
    let env = [
        ("TSUNAGI_STORE__MAX_SIZE", max.as_str()),
        ("TSUNAGI_STORE__EVICT_INTERVAL", "1s"),
    ];
    let gw = Gateway::start_with_config_in(&dir, &up, &env);
    let (ok, out) = storescu(&storescu_bin, gw.dimse, "-x=", &c_files);
    assert!(ok, "{out}");
    eprintln!("studies: pinned {pinned}, A {a}, B {b}, C {c}, D {d}");
    let left = wait_until_gone(&gw, &b).await;
    assert_eq!(
        left,
        sorted(&[&pinned, &a, &c]),
        "B (unread) goes before A (read later); the pinned study stays"
    );

    let (ok, out) = storescu(&storescu_bin, gw.dimse, "-x=", &d_files);
    assert!(ok, "{out}");
    let left = wait_until_gone(&gw, &a).await;
    assert_eq!(
        left,
        sorted(&[&pinned, &c, &d]),
        "then A; the pinned study, least recently used of all, stays"
    );

    let url = format!("http://{}", gw.http);
    let stats: Value = get_json(&format!("{url}/admin/cache")).await;
    assert_eq!(stats["evicted_studies"], 2, "{stats:#}");
    assert_eq!(stats["pinned_studies"], 1, "{stats:#}");
    assert!(
        stats["size_bytes"].as_u64().unwrap() <= stats["max_size_bytes"].as_u64().unwrap(),
        "{stats:#}"
    );

    // the CLI: stats, purge by study and by patient
    let u = url.clone();
    let (ok, out) =
        tokio::task::spawn_blocking(move || tsunagi(&["cache", "stats", "--gateway", &u]))
            .await
            .unwrap();
    eprintln!("--- tsunagi cache stats ---\n{out}");
    assert!(
        ok && out.contains("3 studies") && out.contains("pinned      1 studies"),
        "{out}"
    );
    let (u, cc) = (url.clone(), c.clone());
    let (ok, out) = tokio::task::spawn_blocking(move || {
        tsunagi(&["cache", "purge", "--study", &cc, "--gateway", &u])
    })
    .await
    .unwrap();
    assert!(ok && out.contains("purged 1 study"), "{out}");
    let u = url.clone();
    let (ok, out) = tokio::task::spawn_blocking(move || {
        tsunagi(&["cache", "purge", "--patient", "PAT-D", "--gateway", &u])
    })
    .await
    .unwrap();
    assert!(ok && out.contains("purged 1 study"), "{out}");
    assert_eq!(studies_in_cache(&gw).await, vec![pinned.clone()]);
    let resp = reqwest::Client::new()
        .delete(format!("{url}/admin/cache/studies/{c}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 404, "already purged");
}

//! Prefetch jobs against a real hospital PACS (DCMTK `dcmqrscp`, C-MOVE): a job by patient ID
//! pulls every study of that patient and reports 100% (driven by the real CLI with
//! `--wait`), after which the PACS is stopped and WADO-RS serves those studies byte for byte
//! from the cache alone; a closed time window holds the moves back; a gateway killed
//! mid-job (held between studies by a bandwidth cap) finishes the job after a restart
//! without moving a finished study again; a referrals CSV creates the right jobs.
//! Deadlines are generous and polled: nothing here asserts how fast anything is.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::pacs::*;
use common::studies::*;
use common::*;
use serde_json::json;

const AS_STORED: &str = "multipart/related; type=\"application/dicom\"; transfer-syntax=*";

/// A study UID and the files it was made of.
type Study = (String, Vec<PathBuf>);

/// Hospital A with JP-0001's sample study plus two more studies of JP-0001 (12 and 4
/// instances) and JP-0005's study. Returns the PACS and JP-0001's studies with their files.
fn hospital_with_three_studies(tmp: &Path) -> Option<(DcmQrScp, Vec<Study>)> {
    peer(DCMODIFY, "dcmodify makes more studies for the PACS")?;
    let base = pacs_files("hospa/jp-0001/");
    let (s2, uid2) = clone_study(&base, &tmp.join("s2"), "JP-0001", "20240301", "ACC-2");
    let (s3, uid3) = clone_study(&base[..4], &tmp.join("s3"), "JP-0001", "20250110", "ACC-3");
    let mut files = pacs_files("hospa/");
    files.extend(s2.iter().cloned());
    files.extend(s3.iter().cloned());
    let a = DcmQrScp::start("HOSPA", &files)?;
    let studies = vec![
        (pacs_uid("hospa/jp-0001/", "study_uid"), base),
        (uid2, s2),
        (uid3, s3),
    ];
    Some((a, studies))
}

fn data_sets(files: &[PathBuf]) -> Vec<Vec<u8>> {
    let mut v: Vec<Vec<u8>> = files
        .iter()
        .map(|f| data_set_bytes(&std::fs::read(f).expect("read")).to_vec())
        .collect();
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread")]
async fn prefetch_by_patient_pulls_every_study_then_serves_them_without_the_pacs() {
    let tmp = tempfile::tempdir().unwrap();
    let Some((mut a, studies)) = hospital_with_three_studies(tmp.path()) else {
        return;
    };
    let toml = format!(
        "[jobs]\nbackoff = \"1s\"\n\n{}",
        a.upstream_toml("hospital-a", "c-move")
    );
    let gw = Gateway::start_with_config(&toml);
    a.allow_move_to("TSUNAGI", gw.dimse);

    let url = admin(&gw);
    let u = url.clone();
    let (ok, out) = tokio::task::spawn_blocking(move || {
        tsunagi(&[
            "prefetch",
            "--patient",
            "JP-0001",
            "--upstream",
            "hospital-a",
            "--due",
            "2030-12-01T09:00",
            "--wait",
            "--gateway",
            &u,
        ])
    })
    .await
    .unwrap();
    eprintln!("--- tsunagi prefetch --wait ---\n{out}");
    assert!(ok, "{out}");
    assert!(
        out.contains("100.0%") && out.contains("job 1 done"),
        "{out}"
    );

    let job = get_json(&format!("{url}/admin/jobs/1")).await;
    let expected: u64 = studies.iter().map(|(_, f)| f.len() as u64).sum();
    assert_eq!(job["state"], "done", "{job:#}");
    assert_eq!(job["progress"]["percent"], 100.0, "{job:#}");
    assert_eq!(job["progress"]["studies_total"], 3, "{job:#}");
    assert_eq!(job["progress"]["instances_done"], expected, "{job:#}");
    assert!(
        job["progress"]["bytes_done"].as_u64().unwrap() > 0,
        "{job:#}"
    );
    assert_eq!(job["due"], "2030-12-01T09:00:00Z");
    for (uid, _) in &studies {
        assert_eq!(a.retrieves_of(uid), 1, "one C-MOVE per study:\n{}", a.log());
    }
    let stats = get_json(&format!("{url}/admin/cache")).await;
    assert_eq!(
        stats["studies"], 3,
        "JP-0005 stays at the hospital: {stats:#}"
    );
    assert_eq!(stats["pinned_studies"], 3, "{stats:#}");

    a.stop();
    for (uid, files) in &studies {
        let (status, ct, _, body) = get(&format!("{}/studies/{uid}", gw.base()), AS_STORED).await;
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
        let mut parts: Vec<Vec<u8>> = multipart_parts(&ct, &body)
            .into_iter()
            .map(|(_, b)| data_set_bytes(&b).to_vec())
            .collect();
        parts.sort();
        assert_eq!(parts, data_sets(files), "study {uid} from the cache alone");
    }
}

/// A window that opened an hour ago is closed now; `shift_hours` = 3 gives one that opens in
/// three hours (UTC, `jobs.utc_offset` = "Z").
fn window_from_now(shift_hours: i64) -> String {
    let m = tsunagi::clock::minute_of_day(tsunagi::clock::now() + shift_hours * 3600, 0) as i64;
    let e = (m + 1).rem_euclid(1440);
    format!("{:02}:{:02}-{:02}:{:02}", m / 60, m % 60, e / 60, e % 60)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_closed_window_delays_the_work_and_a_restarted_gateway_finishes_the_job() {
    let tmp = tempfile::tempdir().unwrap();
    let Some((mut a, studies)) = hospital_with_three_studies(tmp.path()) else {
        return;
    };
    let up = a.upstream_toml("hospital-a", "c-move");
    let dir = tmp.path().join("gw").join("cache");
    let config =
        |extra: &str| format!("[jobs]\nutc_offset = \"Z\"\nbackoff = \"1s\"\n\n{up}{extra}");

    // 1. outside the window: the job is resolved but nothing moves
    let window = format!("window = \"{}\"\n", window_from_now(3));
    let mut gw = Gateway::start_with_config_in(&dir, &config(&window), &[]);
    a.allow_move_to("TSUNAGI", gw.dimse);
    let (status, job) = post_json(
        &format!("{}/admin/jobs", admin(&gw)),
        json!({"patient_id": "JP-0001", "due": "2030-12-01T09:00"}),
    )
    .await;
    assert_eq!(status, 201, "{job}");
    let id = job["id"].as_i64().unwrap();
    let job = wait_job(&gw, id, Duration::from_secs(60), |j| {
        j["state"] == "queued" && j["message"].as_str().unwrap_or("").contains("window")
    })
    .await;
    assert_eq!(job["progress"]["studies_total"], 3, "{job:#}");
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        a.retrieve_count(),
        0,
        "no C-MOVE outside the window:\n{}",
        a.log()
    );
    gw.kill();

    // 2. window open, but a tiny bandwidth cap holds the job between studies: kill it there
    let mut gw = Gateway::start_with_config_in(&dir, &config("bandwidth = \"20kbit\"\n"), &[]);
    a.allow_move_to("TSUNAGI", gw.dimse);
    let job = wait_job(&gw, id, Duration::from_secs(120), |j| {
        j["progress"]["studies_done"].as_u64().unwrap_or(0) >= 1
    })
    .await;
    assert_eq!(
        job["progress"]["studies_done"], 1,
        "paced after the first study: {job:#}"
    );
    gw.kill();
    let first: Vec<String> = job["studies"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["state"] == "done")
        .map(|s| s["study_uid"].as_str().unwrap().to_string())
        .collect();

    // 3. restarted without the cap: the job resumes and finishes; nothing is moved twice
    let gw = Gateway::start_with_config_in(&dir, &config(""), &[]);
    a.allow_move_to("TSUNAGI", gw.dimse);
    let job = wait_job(&gw, id, Duration::from_secs(180), |j| {
        j["state"] != "queued"
    })
    .await;
    assert_eq!(job["state"], "done", "{job:#}");
    assert_eq!(job["progress"]["percent"], 100.0, "{job:#}");
    for (uid, _) in &studies {
        assert_eq!(
            a.retrieves_of(uid),
            1,
            "{uid} moved once (first: {first:?}):\n{}",
            a.log()
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_referrals_csv_creates_the_right_jobs() {
    let Some(mut a) = DcmQrScp::hospital_a() else {
        return;
    };
    let toml = format!(
        "[jobs]\nutc_offset = \"+09:00\"\n\n[[facility]]\nname = \"clinic-a\"\n\
         upstreams = [\"hospital-a\"]\nreferred_only = true\nreferral_validity = \"30d\"\n\n{}",
        a.upstream_toml("hospital-a", "c-move")
    );
    let gw = Gateway::start_with_config(&toml);
    a.allow_move_to("TSUNAGI", gw.dimse);
    let url = admin(&gw);
    let tmp = tempfile::tempdir().unwrap();

    // a bad line creates nothing
    let bad = tmp.path().join("bad.csv");
    std::fs::write(
        &bad,
        "JP-0001,hospital-a,2030-01-02T09:00\nJP-0002,hospital-a,next tuesday\n",
    )
    .unwrap();
    let b = bad.to_str().unwrap().to_string();
    let u = url.clone();
    let (ok, out) =
        tokio::task::spawn_blocking(move || tsunagi(&["prefetch", "--from", &b, "--gateway", &u]))
            .await
            .unwrap();
    assert!(!ok && out.contains("line 2"), "{out}");
    assert_eq!(get_json(&format!("{url}/admin/jobs")).await, json!([]));

    let csv = tmp.path().join("referrals.csv");
    std::fs::write(
        &csv,
        "# referrals for January\n\
         patient_id,issuer_or_upstream,due,accession_number,modality,referred_to\n\
         JP-0001,hospital-a,2030-01-02T09:00,,CT,clinic-a\n\
         JP-0005,HOSP-A-MRN,2030-01-03T10:30Z,ACC-5,MR\n",
    )
    .unwrap();
    let c = csv.to_str().unwrap().to_string();
    let u = url.clone();
    let (ok, out) =
        tokio::task::spawn_blocking(move || tsunagi(&["prefetch", "--from", &c, "--gateway", &u]))
            .await
            .unwrap();
    assert!(ok, "{out}");
    assert!(
        out.contains("job 1 created, due 2030-01-02T09:00:00+09:00"),
        "{out}"
    );
    assert!(
        out.contains("job 2 created, due 2030-01-03T19:30:00+09:00"),
        "{out}"
    );

    let jobs = get_json(&format!("{url}/admin/jobs")).await;
    let jobs = jobs.as_array().unwrap();
    assert_eq!(jobs.len(), 2);
    let one = jobs.iter().find(|j| j["id"] == 1).unwrap();
    assert_eq!(
        one["spec"],
        json!({"patient_id": "JP-0001", "upstreams": ["hospital-a"], "modalities": ["CT"],
               "due": "2030-01-02T09:00", "priority": 0, "referred_to": "clinic-a"})
    );
    // the first line also refers JP-0001 to clinic-a, until its due time plus 30 days
    let referrals = get_json(&format!("{url}/admin/referrals")).await;
    let due = 1_893_542_400; // 2030-01-02T09:00+09:00
    assert_eq!(
        referrals,
        json!([{"id": 1, "facility": "clinic-a", "patient_id": "JP-0001", "issuer": "",
                "upstream": "hospital-a", "until": due + 30 * 86400, "source": "job:1",
                "created_at": referrals[0]["created_at"]}])
    );
    let two = jobs.iter().find(|j| j["id"] == 2).unwrap();
    assert_eq!(
        two["spec"],
        json!({"patient_id": "JP-0005", "issuer": "HOSP-A-MRN", "accession_number": "ACC-5",
               "modalities": ["MR"], "due": "2030-01-03T10:30Z", "priority": 0})
    );

    // the CT referral brings JP-0001's CT study; `tsunagi jobs` lists both
    let job = wait_job(&gw, 1, Duration::from_secs(120), |j| j["state"] == "done").await;
    assert_eq!(
        job["studies"][0]["study_uid"],
        pacs_uid("hospa/jp-0001/", "study_uid")
    );
    let u = url.clone();
    let (ok, out) = tokio::task::spawn_blocking(move || tsunagi(&["jobs", "--gateway", &u]))
        .await
        .unwrap();
    assert!(
        ok && out.contains("patient JP-0001 @hospital-a") && out.contains("patient JP-0005"),
        "{out}"
    );
    let (ok, out) =
        tokio::task::spawn_blocking(move || tsunagi(&["jobs", "2", "--cancel", "--gateway", &url]))
            .await
            .unwrap();
    assert!(ok || out.contains("already ended"), "{out}");
}

/// With `preferred_frame_syntax` = HTJ2K RPCL, preparing a prefetched study for reading
/// encodes every frame once and keeps it on disk: after a restart (memory tier empty) and with
/// the PACS gone, a viewer's frames come back in RPCL with no encoding at all.
#[tokio::test(flavor = "multi_thread")]
async fn prefetch_keeps_progressive_frames_on_disk() {
    const RPCL: &str = "1.2.840.10008.1.2.4.202";
    let Some(mut a) = DcmQrScp::start("HOSPA", &pacs_files("hospa/jp-0001/")) else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("cache");
    let toml = format!(
        "[transcode]\npreferred_frame_syntax = \"{RPCL}\"\n\n{}",
        a.upstream_toml("hospital-a", "c-move")
    );
    let mut gw = Gateway::start_with_config_in(&dir, &toml, &[]);
    a.allow_move_to("TSUNAGI", gw.dimse);
    let (status, job) = post_json(
        &format!("{}/admin/jobs", admin(&gw)),
        json!({"patient_id": "JP-0001"}),
    )
    .await;
    assert_eq!(status, 201, "{job}");
    let id = job["id"].as_i64().unwrap();
    wait_job(&gw, id, Duration::from_secs(120), |j| j["state"] == "done").await;

    let entries = pacs_entries("hospa/jp-0001/");
    let kept = |dir: &Path| {
        walk(&dir.join("derived"))
            .iter()
            .filter(|p| p.to_string_lossy().contains(RPCL))
            .count()
    };
    let deadline = Instant::now() + Duration::from_secs(120);
    while kept(&dir) < entries.len() {
        assert!(Instant::now() < deadline, "{} frames kept", kept(&dir));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    gw.kill();
    a.stop();
    let gw = Gateway::start_with_config_in(&dir, &toml, &[]);
    for e in &entries {
        let url = format!(
            "{}/studies/{}/series/{}/instances/{}/frames/1",
            gw.base(),
            e["study_uid"].as_str().unwrap(),
            e["series_uid"].as_str().unwrap(),
            e["sop_instance_uid"].as_str().unwrap()
        );
        let ohif = "multipart/related; type=application/octet-stream; transfer-syntax=*";
        let (status, content_type, _, _) = get(&url, ohif).await;
        assert_eq!(status, 200, "{url}");
        assert!(content_type.contains(RPCL), "{content_type}");
    }
    let (_, _, _, metrics) = get(&format!("http://{}/metrics", gw.http), "text/plain").await;
    let metrics = String::from_utf8_lossy(&metrics);
    assert!(
        metrics.contains("\ntsunagi_frames_converted_total 0\n"),
        "frames were encoded again:\n{metrics}"
    );
}

//! Interop with the real OHIF viewer v3 in headless Chromium (`tests/ohif/run-ohif.mjs`, see
//! `tests/ohif/README.md`) after DCMTK pushed every sample to the gateway. It proves that
//! OHIF, through a same-origin reverse proxy, lists the ISO 2022 IR 87 study of JP-0001 in its
//! study list with the right name, date, Japanese description and modalities and loads and
//! decodes all 12 of its images; and that every frame of the JP-0002 study (native
//! multi-frame, RLE, JPEG 2000, JPEG-LS, beside an encapsulated PDF) loads and decodes, with
//! every DICOMweb request answered 2xx and every BulkDataURI pointing back at the proxy.
//!
//! Cold: a study only in a hospital PACS (DCMTK dcmqrscp) behind the gateway loads the same
//! way, pulled through on OHIF's first requests. Progressive: with
//! `transcode.preferred_frame_syntax` set to HTJ2K RPCL, OHIF receives every frame in that
//! syntax (for its `transfer-syntax=*`) and decodes them all.
//!
//! Needs `node`, `tests/ohif/node_modules` (`tests/ohif/setup.sh`) and /usr/bin/chromium;
//! without them the tests skip loudly (a failure under CI=true). Each run is bounded and
//! leaves no browser behind: processes carrying the run's environment marker are checked for.

mod common;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

/// The harness's own budget (`--timeout`); it normally needs 10-20 s.
const HARNESS_TIMEOUT_S: u64 = 150;
/// Hard limit for the node process, past the harness's own timeout and cleanup.
const LIMIT: Duration = Duration::from_secs(HARNESS_TIMEOUT_S + 90);
/// One browser at a time: the machine has two cores.
static BROWSER: Mutex<()> = Mutex::new(());

fn ohif_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/ohif")
}

/// A loaded gateway, or None when DCMTK, the OHIF build or Chromium is missing (loud skip).
fn loaded_gateway() -> Option<Gateway> {
    loaded_gateway_with(&[])
}

/// [`loaded_gateway`] with `TSUNAGI_*` overrides.
fn loaded_gateway_with(env: &[(&str, &str)]) -> Option<Gateway> {
    let storescu = peer("/usr/bin/storescu", "DCMTK pushes the samples")?;
    browser_available()?;
    let gw = Gateway::start_with_env(env);
    push_all_samples(&storescu, gw.dimse);
    Some(gw)
}

/// The OHIF build and Chromium, or a loud skip.
fn browser_available() -> Option<()> {
    let modules = ohif_dir().join("node_modules");
    peer(
        modules.to_str().expect("utf-8 path"),
        "the OHIF viewer test needs it: run tests/ohif/setup.sh",
    )?;
    peer(
        "/usr/bin/chromium",
        "OHIF runs in headless Chromium (tests/ohif/setup.sh)",
    )?;
    Some(())
}

/// The StudyInstanceUID of a patient's study and its manifest entries.
fn study_of(patient_id: &str) -> (String, Vec<Value>) {
    let entries: Vec<Value> = manifest()
        .into_iter()
        .filter(|e| e["patient_id"] == patient_id)
        .collect();
    let uid = entries[0]["study_uid"]
        .as_str()
        .expect("study uid")
        .to_string();
    (uid, entries)
}

/// Images (frames) OHIF should load: every frame of every instance with pixel data.
fn frame_count(entries: &[Value]) -> u64 {
    entries
        .iter()
        .filter(|e| e["rows"].is_number())
        .map(|e| e["number_of_frames"].as_u64().unwrap_or(1))
        .sum()
}

/// Run run-ohif.mjs against the gateway; returns its JSON summary and its stderr.
fn run_ohif(gw: &Gateway, study: &str, extra: &[&str]) -> (Value, String) {
    let _one_browser = BROWSER.lock().unwrap_or_else(|e| e.into_inner());
    let marker = format!("{}-{}", std::process::id(), study);
    let timeout = HARNESS_TIMEOUT_S.to_string();
    let mut child = Command::new("node")
        .arg(ohif_dir().join("run-ohif.mjs"))
        .args([
            "--dicomweb",
            &gw.base(),
            "--study",
            study,
            "--timeout",
            &timeout,
        ])
        .args(extra)
        .env("TSUNAGI_OHIF_RUN", &marker) // inherited by Chromium: finds leftovers
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run node (Node >= 20 is needed for tests/ohif)");
    let out = read_in_background(child.stdout.take());
    let err = read_in_background(child.stderr.take());
    let finished = wait_bounded(&mut child);
    let (stdout, stderr) = (out.join().unwrap(), err.join().unwrap());
    let leftovers = reap_leftovers(&marker);
    assert!(
        finished,
        "run-ohif.mjs still running after {LIMIT:?}; stopped it.\nstdout: {stdout}\nstderr:\n{stderr}"
    );
    assert!(
        leftovers.is_empty(),
        "processes of the OHIF run were left behind (now killed): {leftovers:?}\nstderr:\n{stderr}"
    );
    let summary = stdout
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str(l).ok())
        .unwrap_or_else(|| {
            panic!("no JSON summary from run-ohif.mjs.\nstdout: {stdout}\nstderr:\n{stderr}")
        });
    (summary, stderr)
}

fn read_in_background(pipe: Option<impl Read + Send + 'static>) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut s = String::new();
        if let Some(mut p) = pipe {
            let _ = p.read_to_string(&mut s);
        }
        s
    })
}

/// Wait up to LIMIT; then SIGTERM (the harness closes its browser and server) and, 20 s
/// later, SIGKILL. True when the process finished by itself.
fn wait_bounded(child: &mut Child) -> bool {
    let start = Instant::now();
    let mut terminated_at: Option<Instant> = None;
    loop {
        if child.try_wait().expect("wait for node").is_some() {
            return terminated_at.is_none();
        }
        match terminated_at {
            None if start.elapsed() > LIMIT => {
                let _ = Command::new("kill")
                    .args(["-TERM", &child.id().to_string()])
                    .status();
                terminated_at = Some(Instant::now());
            }
            Some(t) if t.elapsed() > Duration::from_secs(20) => {
                let _ = child.kill();
                let _ = child.wait();
                return false;
            }
            _ => {}
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Processes whose environment carries the run's marker (Chromium and its helpers). Gives
/// them 15 s to exit (Chromium quits once its pipe to node closes), then kills those left,
/// by pid, and returns their command lines.
fn reap_leftovers(marker: &str) -> Vec<String> {
    let needle = format!("TSUNAGI_OHIF_RUN={marker}\0");
    let find = || -> Vec<(u32, String)> {
        let Ok(dir) = std::fs::read_dir("/proc") else {
            return Vec::new();
        };
        dir.filter_map(|d| d.ok()?.file_name().to_str()?.parse::<u32>().ok())
            .filter(|pid| {
                std::fs::read(format!("/proc/{pid}/environ"))
                    .is_ok_and(|env| env.windows(needle.len()).any(|w| w == needle.as_bytes()))
            })
            .map(|pid| {
                let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
                (
                    pid,
                    String::from_utf8_lossy(&cmd)
                        .replace('\0', " ")
                        .trim()
                        .to_string(),
                )
            })
            .collect()
    };
    let deadline = Instant::now() + Duration::from_secs(15);
    while !find().is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(250));
    }
    let left = find();
    for (pid, _) in &left {
        let _ = Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status();
    }
    left.into_iter()
        .map(|(pid, cmd)| format!("{pid}: {cmd}"))
        .collect()
}

fn pretty(v: &Value) -> String {
    serde_json::to_string_pretty(v).unwrap_or_default()
}

fn report(s: &Value) {
    eprintln!(
        "OHIF {}: ok={} images loaded {} decoded {} expected {}, {} DICOMweb requests {}, worklist row {}",
        s["study"], s["ok"], s["images_loaded"], s["images_decoded"], s["images_expected"],
        s["requests"], s["request_kinds"], s["worklist"]["row"]
    );
}

#[test]
fn ohif_lists_the_ir87_study_and_loads_all_its_images() {
    let Some(gw) = loaded_gateway() else { return };
    let (study, entries) = study_of("JP-0001");
    let e = &entries[0];
    let alphabetic = e["patient_name"]
        .as_str()
        .unwrap()
        .split('=')
        .next()
        .unwrap();
    let expected = frame_count(&entries);
    assert_eq!(expected, 12, "JP-0001 has CT 8 + MR 4 images");
    let (summary, stderr) = run_ohif(
        &gw,
        &study,
        &[
            "--expect-images",
            &expected.to_string(),
            "--worklist",
            "--patient-name",
            alphabetic,
            "--study-date",
            e["study_date"].as_str().unwrap(),
            "--description",
            e["study_description"].as_str().unwrap(),
            "--modalities",
            "CT,MR",
        ],
    );
    report(&summary);
    let why = || {
        format!(
            "OHIF summary:\n{}\nharness stderr:\n{stderr}",
            pretty(&summary)
        )
    };
    assert_eq!(summary["ok"], true, "{}", why());
    assert!(
        summary["images_loaded"].as_u64() >= Some(expected),
        "{}",
        why()
    );
    assert!(
        summary["images_decoded"].as_u64() >= Some(expected),
        "{}",
        why()
    );
    assert_eq!(summary["worklist"]["ok"], true, "{}", why());
}

#[test]
fn ohif_loads_every_frame_of_the_compressed_multiframe_study() {
    let Some(gw) = loaded_gateway() else { return };
    let (study, entries) = study_of("JP-0002"); // 10 native + 3 RLE + 1 J2K + 1 JPEG-LS frames
    let summary = assert_opens_fully(&gw, &study, &entries);
    let series = entries
        .iter()
        .map(|e| e["series_uid"].as_str().unwrap())
        .collect::<std::collections::BTreeSet<_>>()
        .len();
    assert_eq!(
        summary["series"]["with_metadata"],
        series,
        "{}",
        pretty(&summary)
    );
}

/// Load a study in OHIF and require every image loaded and decoded, no failed request.
fn assert_opens_fully(gw: &Gateway, study: &str, entries: &[Value]) -> Value {
    let expected = frame_count(entries);
    let (summary, stderr) = run_ohif(gw, study, &["--expect-images", &expected.to_string()]);
    report(&summary);
    let why = || {
        format!(
            "OHIF summary:\n{}\nharness stderr:\n{stderr}",
            pretty(&summary)
        )
    };
    assert_eq!(summary["ok"], true, "{}", why());
    assert_eq!(summary["images_expected"], expected, "{}", why());
    assert_eq!(summary["images_loaded"], expected, "{}", why());
    assert_eq!(summary["images_decoded"], expected, "{}", why());
    summary
}

#[test]
fn ohif_opens_a_study_that_is_only_in_a_hospital_pacs() {
    use common::pacs::{pacs_entries, pacs_files, DcmQrScp, Pacs};
    if browser_available().is_none() {
        return;
    }
    let Some(mut pacs) = DcmQrScp::start("HOSPA", &pacs_files("hospa/jp-0001/")) else {
        return;
    };
    let gw = Gateway::start_with_config(&pacs.upstream_toml("hospital-a", "c-move"));
    pacs.allow_move_to("TSUNAGI", gw.dimse);
    let entries = pacs_entries("hospa/jp-0001/");
    let study = entries[0]["study_uid"].as_str().expect("study uid");
    assert_opens_fully(&gw, study, &entries);
    assert!(
        pacs.retrieve_count() >= 1,
        "the study came from the PACS: {:?}",
        pacs.retrieves()
    );
}

#[test]
fn ohif_decodes_every_frame_sent_as_progressive_htj2k() {
    let Some(gw) = loaded_gateway_with(&[(
        "TSUNAGI_TRANSCODE__PREFERRED_FRAME_SYNTAX",
        "1.2.840.10008.1.2.4.202",
    )]) else {
        return;
    };
    let (study, entries) = study_of("JP-0001");
    assert_opens_fully(&gw, &study, &entries);
    let converted = gw_metric(&gw, "tsunagi_frames_converted_total");
    assert!(
        converted >= frame_count(&entries) as f64,
        "every frame was encoded as HTJ2K RPCL: {converted} conversions"
    );
}

/// A counter from the gateway's /metrics.
fn gw_metric(gw: &Gateway, name: &str) -> f64 {
    let url = format!("http://{}/metrics", gw.http);
    let text = tokio::runtime::Runtime::new()
        .expect("runtime")
        .block_on(async { get(&url, "text/plain").await.3 });
    String::from_utf8_lossy(&text)
        .lines()
        .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
        .unwrap_or(0.0)
}

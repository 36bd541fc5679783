//! The hospital PACS fixtures of `tests/common/pacs.rs` work, with DCMTK as the client (the
//! gateway is only a C-MOVE destination here): each PACS answers C-FIND for its own studies
//! (patient JP-0001 at both, Japanese names in each PACS's own character set), C-MOVEs series
//! into a running gateway, serves C-GET, counts every retrieve it receives, and stops for good.

mod common;

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::pacs::*;
use common::*;

const FINDSCU: &str = "/usr/bin/findscu";
const MOVESCU: &str = "/usr/bin/movescu";
const GETSCU: &str = "/usr/bin/getscu";
const J2K_LOSSLESS: &str = "1.2.840.10008.1.2.4.90";
/// PatientName of JP-0001 in `\ISO 2022 IR 87` (PS3.5 H.3.1), as hospital A stores it.
const JP0001_ISO2022: &[u8] = b"Yamada^Tarou=\x1b$B;3ED\x1b(B^\x1b$BB@O:\x1b(B=\
\x1b$B$d$^$@\x1b(B^\x1b$B$?$m$&\x1b(B";

/// Both hospitals, or None (skipped loudly) when a peer is missing.
fn hospitals() -> Option<(DcmQrScp, Orthanc)> {
    peer(FINDSCU, "DCMTK is the client here")?;
    let t = Instant::now();
    let a = DcmQrScp::hospital_a()?;
    let ta = t.elapsed();
    let b = Orthanc::hospital_b()?;
    eprintln!(
        "hospital A up in {ta:?}, hospital B up and loaded in {:?}",
        t.elapsed() - ta
    );
    Some((a, b))
}

/// Run a DCMTK network tool against `pacs` (`-S`: study root); returns success and output.
fn dcmtk(tool: &str, pacs: &dyn Pacs, args: &[OsString]) -> (bool, String) {
    let out = Command::new(tool)
        .env("TCP_NODELAY", "1")
        .args(["-S", "-aet", "TESTSCU", "-aec", pacs.ae_title()])
        .args(args)
        .arg(pacs.addr().ip().to_string())
        .arg(pacs.addr().port().to_string())
        .output()
        .unwrap_or_else(|e| panic!("run {tool}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success() && !text.contains("E: "), text)
}

/// `-k key=value` arguments.
fn keys(pairs: &[&str]) -> Vec<OsString> {
    pairs
        .iter()
        .flat_map(|k| [OsString::from("-k"), OsString::from(k)])
        .collect()
}

/// StudyInstanceUID values of findscu's responses.
fn found_studies(output: &str) -> BTreeSet<String> {
    output
        .lines()
        .filter(|l| l.starts_with("I: (0020,000d)"))
        .filter_map(|l| Some(l[l.find('[')? + 1..l.find(']')?].to_string()))
        .collect()
}

fn study_uids(prefix: &str) -> BTreeSet<String> {
    pacs_entries(prefix)
        .iter()
        .map(|e| e["study_uid"].as_str().unwrap().to_string())
        .collect()
}

fn series_keys(prefix: &str) -> Vec<OsString> {
    let study = format!("StudyInstanceUID={}", pacs_uid(prefix, "study_uid"));
    let series = format!("SeriesInstanceUID={}", pacs_uid(prefix, "series_uid"));
    keys(&["QueryRetrieveLevel=SERIES", &study, &series])
}

/// C-FIND at STUDY level: JP-0001 has one study at each hospital (not the samples' study, and
/// not the same one twice), and a universal query returns each hospital's two studies.
#[test]
fn each_pacs_finds_its_studies_and_patient_jp_0001_at_both() {
    let Some((a, b)) = hospitals() else { return };
    let samples_study = manifest()[0]["study_uid"].as_str().unwrap().to_string();
    let mut jp0001 = BTreeSet::new();
    for (pacs, prefix) in [(&a as &dyn Pacs, "hospa/"), (&b, "hospb/")] {
        let query = keys(&[
            "QueryRetrieveLevel=STUDY",
            "PatientID=JP-0001",
            "StudyInstanceUID",
        ]);
        let (ok, out) = dcmtk(FINDSCU, pacs, &query);
        assert!(ok, "{}: {out}", pacs.ae_title());
        let found = found_studies(&out);
        assert_eq!(found, study_uids(&format!("{prefix}jp-0001/")), "{out}");
        assert!(!found.contains(&samples_study));
        jp0001.extend(found);

        let all = keys(&["QueryRetrieveLevel=STUDY", "PatientID", "StudyInstanceUID"]);
        let (ok, out) = dcmtk(FINDSCU, pacs, &all);
        assert!(ok, "{out}");
        assert_eq!(found_studies(&out), study_uids(prefix), "{out}");
        assert_eq!(pacs.find_count(), 2, "{}", pacs.log());
        assert_eq!(pacs.retrieve_count(), 0);
    }
    assert_eq!(
        jp0001.len(),
        2,
        "JP-0001 has a different study at each hospital"
    );
}

/// Japanese C-FIND: hospital A matches the `\ISO 2022 IR 87` bytes of JP-0001's name (and
/// only those: its DCMTK cannot convert ISO 2022, so a UTF-8 query finds nothing, which is why
/// its `upstream_toml` sets `character_set = '\ISO 2022 IR 87'`); hospital B matches a UTF-8
/// kanji wildcard and answers in UTF-8.
#[test]
fn japanese_names_match_in_each_pacs_own_character_set() {
    let Some((a, b)) = hospitals() else { return };
    let a_study = study_uids("hospa/jp-0001/");
    let b_study = study_uids("hospb/jp-0001/");

    let mut name = b"PatientName=".to_vec();
    name.extend_from_slice(JP0001_ISO2022);
    let mut query = keys(&[
        "QueryRetrieveLevel=STUDY",
        "SpecificCharacterSet=\\ISO 2022 IR 87",
        "StudyInstanceUID",
    ]);
    query.extend([OsString::from("-k"), raw_arg(&name)]);
    let (ok, out) = dcmtk(FINDSCU, &a, &query);
    assert!(ok, "{out}");
    assert_eq!(found_studies(&out), a_study, "{out}");
    assert!(
        out.contains(std::str::from_utf8(JP0001_ISO2022).unwrap()),
        "{out}"
    );

    let utf8 = keys(&[
        "QueryRetrieveLevel=STUDY",
        "SpecificCharacterSet=ISO_IR 192",
        "PatientName=Yamada^Tarou=山田^太郎=やまだ^たろう",
        "StudyInstanceUID",
    ]);
    let (_, out) = dcmtk(FINDSCU, &a, &utf8);
    assert!(
        found_studies(&out).is_empty(),
        "dcmqrscp now converts character sets; the HOSPA upstream may use UTF-8:\n{out}"
    );

    let wildcard = keys(&[
        "QueryRetrieveLevel=STUDY",
        "SpecificCharacterSet=ISO_IR 192",
        "PatientName=*山田*",
        "StudyInstanceUID",
    ]);
    let (ok, out) = dcmtk(FINDSCU, &b, &wildcard);
    assert!(ok, "{out}");
    assert_eq!(found_studies(&out), b_study, "{out}");
    assert!(
        out.contains("Yamada^Tarou=山田^太郎=やまだ^たろう"),
        "{out}"
    );
}

/// C-MOVE into the real gateway (started from a config naming both PACS as upstreams, then
/// registered at each PACS as move destination): 12 slices from A, 6 + 2 JPEG 2000 from B;
/// the gateway's /healthz counts them, the J2K instances arrive untranscoded, and each PACS
/// logged exactly the moves asked of it.
#[tokio::test]
async fn movescu_moves_series_from_both_pacs_into_the_gateway() {
    let Some((mut a, mut b)) = hospitals() else {
        return;
    };
    if peer(MOVESCU, "DCMTK movescu is the client here").is_none() {
        return;
    }
    let t0 = Instant::now();
    let config = [
        a.upstream_toml("hospa", "c-move"),
        b.upstream_toml("hospb", "c-get"),
    ]
    .concat();
    let gw = Gateway::start_with_config(&config);
    a.allow_move_to("TSUNAGI", gw.dimse);
    b.allow_move_to("TSUNAGI", gw.dimse);
    eprintln!("two PACS + gateway ready in {:?}", t0.elapsed());

    let mut expected = 0;
    for (pacs, prefix) in [
        (&a as &dyn Pacs, "hospa/jp-0001/ct"),
        (&b, "hospb/jp-0001/ct"),
        (&b, "hospb/jp-0001/j2k"),
    ] {
        let t = Instant::now();
        let mut args = vec![OsString::from("-aem"), OsString::from("TSUNAGI")];
        args.extend(series_keys(prefix));
        let (ok, out) = dcmtk(MOVESCU, pacs, &args);
        assert!(ok, "{out}\n{}", pacs.log());
        expected += pacs_entries(prefix).len();
        let health = get_json(&format!("http://{}/healthz", gw.http)).await;
        assert_eq!(health["instances"], expected, "{prefix}: {health}");
        eprintln!("C-MOVE {prefix}: {:?}", t.elapsed());
    }

    let series = |p: &str| pacs_uid(p, "series_uid");
    let moves = a.retrieves();
    assert_eq!(moves.len(), 1, "{moves:?}");
    assert_eq!(moves[0].op, RetrieveOp::Move);
    assert_eq!(moves[0].destination.as_deref(), Some("TSUNAGI"));
    assert_eq!(moves[0].level, "SERIES");
    assert!(
        moves[0].uids.contains(&series("hospa/jp-0001/ct")),
        "{moves:?}"
    );
    let moves = b.retrieves();
    assert_eq!(moves.len(), 2, "{moves:?}");
    assert!(moves.iter().all(|m| m.op == RetrieveOp::Move
        && m.level == "SERIES"
        && m.destination.as_deref() == Some("TSUNAGI")));
    assert_eq!(b.retrieves_of(&series("hospb/jp-0001/j2k")), 1);

    for e in pacs_entries("hospb/jp-0001/j2k") {
        let url = format!(
            "{}/studies/{}/series/{}/instances/{}",
            gw.base(),
            e["study_uid"].as_str().unwrap(),
            e["series_uid"].as_str().unwrap(),
            e["sop_instance_uid"].as_str().unwrap()
        );
        let (status, ct, _, body) = get(
            &url,
            "multipart/related; type=\"application/dicom\"; transfer-syntax=*",
        )
        .await;
        assert_eq!(status, 200, "{url}");
        let parts = multipart_parts(&ct, &body);
        let stored = std::fs::read(pacs_samples_dir().join(e["path"].as_str().unwrap())).unwrap();
        assert_eq!(
            data_set_bytes(&parts[0].1),
            data_set_bytes(&stored),
            "J2K kept as sent"
        );
        assert!(String::from_utf8_lossy(&parts[0].1[..400]).contains(J2K_LOSSLESS));
    }
}

/// SOP instance UIDs of the files getscu wrote (named `<modality>.<SOP instance UID>`).
fn received_sops(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|f| f.unwrap().file_name().to_string_lossy().into_owned())
        .filter_map(|n| n.split_once('.').map(|(_, sop)| sop.to_string()))
        .collect()
}

/// C-GET from each PACS into a temp dir: every instance of the series arrives, and the PACS
/// logged one C-GET for it. (Uncompressed series: DCMTK's getscu offers J2K and uncompressed in
/// one presentation context, Orthanc 1.10 then picks uncompressed and cannot decode J2K.)
#[test]
fn getscu_retrieves_a_series_from_each_pacs() {
    let Some((a, b)) = hospitals() else { return };
    if peer(GETSCU, "DCMTK getscu is the client here").is_none() {
        return;
    }
    for (pacs, prefix) in [
        (&b as &dyn Pacs, "hospb/jp-0001/ct"),
        (&a, "hospa/jp-0005/mr"),
    ] {
        let out_dir = tempfile::tempdir().unwrap();
        let mut args = vec![OsString::from("-od"), out_dir.path().into()];
        args.extend(series_keys(prefix));
        let t = Instant::now();
        let (ok, out) = dcmtk(GETSCU, pacs, &args);
        assert!(ok, "{out}\n{}", pacs.log());
        eprintln!("C-GET {prefix}: {:?}", t.elapsed());
        let expected: BTreeSet<String> = pacs_entries(prefix)
            .iter()
            .map(|e| e["sop_instance_uid"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(received_sops(out_dir.path()), expected, "{out}");
        let gets = pacs.retrieves();
        assert_eq!(gets.len(), 1, "{gets:?}");
        assert_eq!(
            (gets[0].op, gets[0].destination.as_deref()),
            (RetrieveOp::Get, None)
        );
        assert_eq!(pacs.retrieves_of(&pacs_uid(prefix, "series_uid")), 1);
    }
}

/// The retrieve counter misses nothing and invents nothing when requests overlap: four
/// concurrent C-GETs of one series (dcmqrscp serves each in a forked child) count four.
#[test]
fn retrieve_counter_counts_concurrent_requests() {
    let Some((a, b)) = hospitals() else { return };
    if peer(GETSCU, "DCMTK getscu is the client here").is_none() {
        return;
    }
    for (pacs, prefix) in [
        (&a as &(dyn Pacs + Sync), "hospa/jp-0001/ct"),
        (&b, "hospb/jp-0006/mr"),
    ] {
        let mut args = vec![OsString::from("--ignore")];
        args.extend(series_keys(prefix));
        std::thread::scope(|s| {
            let runs: Vec<_> = (0..4)
                .map(|_| s.spawn(|| dcmtk(GETSCU, pacs, &args)))
                .collect();
            for r in runs {
                let (ok, out) = r.join().unwrap();
                assert!(ok, "{out}");
            }
        });
        let series = pacs_uid(prefix, "series_uid");
        assert_eq!(pacs.retrieve_count(), 4, "{:?}", pacs.retrieves());
        assert_eq!(pacs.retrieves_of(&series), 4, "{:?}", pacs.retrieves());
        assert_eq!(pacs.find_count(), 0);
    }
}

/// `stop()` kills the PACS together with the child serving an open association (dcmqrscp
/// forks one per association): associations are refused afterwards, no process of its group
/// is left, and dropping it removes its temp directory.
#[test]
fn stop_refuses_associations_and_leaves_nothing_behind() {
    let Some((mut a, mut b)) = hospitals() else {
        return;
    };
    let (a_dir, b_dir) = (a.dir().to_path_buf(), b.dir().to_path_buf());
    for pacs in [&mut a as &mut dyn Pacs, &mut b] {
        let (ae, addr) = (pacs.ae_title().to_string(), pacs.addr());
        assert!(echo(&ae, addr));
        let held = dicom_ul::ClientAssociationOptions::new()
            .calling_ae_title("HOLDER")
            .called_ae_title(ae.as_str())
            .with_presentation_context("1.2.840.10008.1.1", vec!["1.2.840.10008.1.2"])
            .read_timeout(Duration::from_secs(5))
            .establish(addr)
            .expect("association held open during stop()");
        let pgid = pacs.pid().expect("running");
        let t = Instant::now();
        pacs.stop();
        eprintln!("{ae}: stop() took {:?}", t.elapsed());
        assert!(!echo(&ae, addr), "{ae} still answers after stop()");
        assert!(
            !process_group_alive(pgid),
            "{ae}: a process of its group survived"
        );
        assert!(pacs.pid().is_none());
        drop(held);
    }
    assert!(a_dir.exists() && b_dir.exists());
    drop((a, b));
    assert!(
        !a_dir.exists() && !b_dir.exists(),
        "temp dirs removed on drop"
    );
}

//! Bad input loses nothing: a connection cut in the middle of a C-STORE leaves no file, a
//! malformed or mismatched data set gets the right DIMSE status with an Error Comment, and a
//! gateway killed during ingest restarts with index and files consistent.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::*;
use dicom_ul::association::client::ClientAssociation;
use dicom_ul::pdu::{PDataValue, PDataValueType};
use dicom_ul::{ClientAssociationOptions, Pdu};
use tsunagi::dimse::command::tag;
use tsunagi::dimse::{Command, CommandField, Status};

const CT_STORAGE: &str = "1.2.840.10008.5.1.4.1.1.2";
const EXPLICIT_LE: &str = "1.2.840.10008.1.2.1";

fn associate(dimse: SocketAddr) -> ClientAssociation<std::net::TcpStream> {
    ClientAssociationOptions::new()
        .calling_ae_title("FAULTSCU")
        .called_ae_title("TSUNAGI")
        .with_presentation_context(CT_STORAGE, vec![EXPLICIT_LE])
        .read_timeout(Duration::from_secs(30))
        .establish(dimse)
        .expect("association")
}

fn store_rq(sop: &str) -> Vec<u8> {
    let mut c = Command::new(CommandField::CStoreRq, true);
    c.set_u16(tag::MESSAGE_ID, 1);
    c.set_uid(tag::AFFECTED_SOP_CLASS_UID, CT_STORAGE);
    c.set_uid(tag::AFFECTED_SOP_INSTANCE_UID, sop);
    c.encode()
}

fn pdv(kind: PDataValueType, data: Vec<u8>, is_last: bool) -> Pdu {
    Pdu::PData {
        data: vec![PDataValue {
            presentation_context_id: 1,
            value_type: kind,
            is_last,
            data,
        }],
    }
}

fn ct_sample() -> (String, Vec<u8>) {
    let e = manifest()
        .into_iter()
        .find(|e| e["modality"] == "CT")
        .unwrap();
    let file = std::fs::read(sample_path(&e)).unwrap();
    (
        e["sop_instance_uid"].as_str().unwrap().to_string(),
        data_set_bytes(&file).to_vec(),
    )
}

/// Send a whole C-STORE and return the response command.
fn store(assoc: &mut ClientAssociation<std::net::TcpStream>, sop: &str, data: &[u8]) -> Command {
    assoc
        .send(&pdv(PDataValueType::Command, store_rq(sop), true))
        .unwrap();
    for (i, chunk) in data.chunks(16 * 1024).enumerate() {
        let last = (i + 1) * 16 * 1024 >= data.len();
        assoc
            .send(&pdv(PDataValueType::Data, chunk.to_vec(), last))
            .unwrap();
    }
    match assoc.receive().unwrap() {
        Pdu::PData { data } => Command::decode(&data[0].data).unwrap(),
        other => panic!("unexpected {other:?}"),
    }
}

async fn instance_count(gw: &Gateway) -> u64 {
    let v: serde_json::Value = reqwest::get(format!("http://{}/healthz", gw.http))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    v["instances"].as_u64().unwrap()
}

fn tmp_files(gw: &Gateway) -> usize {
    std::fs::read_dir(gw.dir.join("tmp"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// Wait (bounded) for the gateway to notice a dropped connection.
fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn connection_cut_mid_store_leaves_nothing() {
    let gw = Gateway::start();
    let (sop, data) = ct_sample();
    let mut assoc = associate(gw.dimse);
    assoc
        .send(&pdv(PDataValueType::Command, store_rq(&sop), true))
        .unwrap();
    let half = data[..data.len() / 2].to_vec();
    assoc.send(&pdv(PDataValueType::Data, half, false)).unwrap();
    wait_until("the temp file", || tmp_files(&gw) == 1);
    drop(assoc); // TCP closed without release or abort
    wait_until("the temp file to be removed", || tmp_files(&gw) == 0);
    assert_eq!(instance_count(&gw).await, 0);
    assert!(walk(&gw.dir.join("files")).is_empty(), "no instance file");
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_and_mismatched_data_sets_get_failure_statuses() {
    let gw = Gateway::start();
    let (sop, data) = ct_sample();
    let mut assoc = associate(gw.dimse);

    let garbage: Vec<u8> = (0..4000u32).map(|i| (i * 7919 % 251) as u8).collect();
    let rsp = store(&mut assoc, &sop, &garbage);
    assert_eq!(rsp.status(), Some(Status::CANNOT_UNDERSTAND), "{rsp:?}");
    assert!(rsp.error_comment().is_some_and(|c| !c.is_empty()));

    let rsp = store(&mut assoc, "1.2.3.4.5", &data);
    assert_eq!(
        rsp.status(),
        Some(Status::DATA_SET_DOES_NOT_MATCH_SOP_CLASS)
    );
    assert!(rsp.error_comment().unwrap().contains("SOP Instance UID"));

    let rsp = store(&mut assoc, &sop, &data);
    assert_eq!(rsp.status(), Some(Status::SUCCESS));
    // a re-sent identical instance is idempotent
    let rsp = store(&mut assoc, &sop, &data);
    assert_eq!(rsp.status(), Some(Status::SUCCESS));
    assoc.release().unwrap();
    assert_eq!(instance_count(&gw).await, 1);
    assert_eq!(tmp_files(&gw), 0);
    assert_eq!(walk(&gw.dir.join("files")).len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn killed_during_ingest_restarts_consistent() {
    let Some(storescu) = peer("/usr/bin/storescu", "DCMTK pushes the samples") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("cache");
    let mut gw = Gateway::start_in(&dir, &[]);
    push_all_samples(&storescu, gw.dimse);
    let pushed = manifest().len() as u64;
    assert_eq!(instance_count(&gw).await, pushed);

    // an ingest in progress when the process dies
    let (sop, data) = ct_sample();
    let mut assoc = associate(gw.dimse);
    assoc
        .send(&pdv(PDataValueType::Command, store_rq(&sop), true))
        .unwrap();
    assoc
        .send(&pdv(PDataValueType::Data, data[..1000].to_vec(), false))
        .unwrap();
    wait_until("the temp file", || tmp_files(&gw) == 1);
    gw.kill(); // SIGKILL: no cleanup runs

    // also lose the index entirely and one file: start-up repair must reconcile both ways
    for f in ["index.sqlite", "index.sqlite-wal", "index.sqlite-shm"] {
        let _ = std::fs::remove_file(dir.join(f));
    }
    let files = walk(&dir.join("files"));
    assert_eq!(files.len() as u64, pushed);
    std::fs::remove_file(&files[0]).unwrap();

    let gw = Gateway::start_in(&dir, &[]);
    assert_eq!(tmp_files(&gw), 0, "temp files removed at start-up");
    assert_eq!(
        instance_count(&gw).await,
        pushed - 1,
        "index rebuilt from the files"
    );
    let studies = get_json(&format!("{}/studies", gw.base())).await;
    assert!(!studies.as_array().unwrap().is_empty());
    drop(assoc);
}

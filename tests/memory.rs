//! Memory stays flat as instances grow: a 128 MiB multi-frame instance is received over
//! C-STORE, streamed back over WADO-RS and cut into frames, and the gateway's peak resident
//! memory (VmHWM) grows by far less than the instance.

mod common;

use std::time::Duration;

use common::*;
use dicom_core::{DataElement, PrimitiveValue, VR};
use dicom_dictionary_std::tags;
use dicom_object::InMemDicomObject;
use dicom_transfer_syntax_registry::entries::EXPLICIT_VR_LITTLE_ENDIAN;
use dicom_ul::pdu::{PDataValue, PDataValueType};
use dicom_ul::{ClientAssociationOptions, Pdu};
use futures::StreamExt;
use tsunagi::dimse::command::tag;
use tsunagi::dimse::{Command, CommandField, Status};

const SC_MULTIFRAME_WORD: &str = "1.2.840.10008.5.1.4.1.1.7.3";
const FRAMES: u32 = 256;
const SIDE: u16 = 512;
const MIB: u64 = 1 << 20;

fn peak_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmHWM");
    kb * 1024
}

/// The data set up to (not including) Pixel Data.
fn header(sop: &str) -> Vec<u8> {
    let mut obj = InMemDicomObject::new_empty();
    let mut put = |tag, vr, v: PrimitiveValue| obj.put(DataElement::new(tag, vr, v));
    put(tags::SOP_CLASS_UID, VR::UI, SC_MULTIFRAME_WORD.into());
    put(tags::SOP_INSTANCE_UID, VR::UI, sop.into());
    put(tags::MODALITY, VR::CS, "OT".into());
    put(tags::PATIENT_NAME, VR::PN, "Big^Instance".into());
    put(tags::PATIENT_ID, VR::LO, "MEM-0001".into());
    put(
        tags::STUDY_INSTANCE_UID,
        VR::UI,
        "1.2.826.0.1.3680043.10.99.1".into(),
    );
    put(
        tags::SERIES_INSTANCE_UID,
        VR::UI,
        "1.2.826.0.1.3680043.10.99.1.1".into(),
    );
    put(tags::SAMPLES_PER_PIXEL, VR::US, PrimitiveValue::from(1_u16));
    put(
        tags::PHOTOMETRIC_INTERPRETATION,
        VR::CS,
        "MONOCHROME2".into(),
    );
    put(tags::NUMBER_OF_FRAMES, VR::IS, FRAMES.to_string().into());
    put(tags::ROWS, VR::US, PrimitiveValue::from(SIDE));
    put(tags::COLUMNS, VR::US, PrimitiveValue::from(SIDE));
    put(tags::BITS_ALLOCATED, VR::US, PrimitiveValue::from(16_u16));
    put(tags::BITS_STORED, VR::US, PrimitiveValue::from(16_u16));
    put(tags::HIGH_BIT, VR::US, PrimitiveValue::from(15_u16));
    put(
        tags::PIXEL_REPRESENTATION,
        VR::US,
        PrimitiveValue::from(0_u16),
    );
    let mut out = Vec::new();
    obj.write_dataset_with_ts(&mut out, &EXPLICIT_VR_LITTLE_ENDIAN.erased())
        .expect("encode header");
    out
}

fn frame_len() -> usize {
    SIDE as usize * SIDE as usize * 2
}

/// Frame `i`'s pixel bytes: a pattern that identifies the frame.
fn frame(i: u32) -> Vec<u8> {
    (0..frame_len())
        .map(|b| ((b as u32 + i * 31) % 251) as u8)
        .collect()
}

fn send_big_instance(dimse: std::net::SocketAddr, sop: &str) -> Command {
    let mut assoc = ClientAssociationOptions::new()
        .calling_ae_title("MEMSCU")
        .called_ae_title("TSUNAGI")
        .with_presentation_context(SC_MULTIFRAME_WORD, vec!["1.2.840.10008.1.2.1"])
        .read_timeout(Duration::from_secs(120))
        .establish(dimse)
        .expect("association");
    let mut rq = Command::new(CommandField::CStoreRq, true);
    rq.set_u16(tag::MESSAGE_ID, 1);
    rq.set_uid(tag::AFFECTED_SOP_CLASS_UID, SC_MULTIFRAME_WORD);
    rq.set_uid(tag::AFFECTED_SOP_INSTANCE_UID, sop);
    let pdv = |kind, data, is_last| Pdu::PData {
        data: vec![PDataValue {
            presentation_context_id: 1,
            value_type: kind,
            is_last,
            data,
        }],
    };
    assoc
        .send(&pdv(PDataValueType::Command, rq.encode(), true))
        .unwrap();
    let mut head = header(sop);
    head.extend_from_slice(&[0xE0, 0x7F, 0x10, 0x00, b'O', b'W', 0, 0]);
    head.extend_from_slice(&((frame_len() as u32) * FRAMES).to_le_bytes());
    assoc.send(&pdv(PDataValueType::Data, head, false)).unwrap();
    for i in 0..FRAMES {
        let f = frame(i);
        let mut chunks = f.chunks(64 * 1024).peekable();
        while let Some(c) = chunks.next() {
            let last = i + 1 == FRAMES && chunks.peek().is_none();
            assoc
                .send(&pdv(PDataValueType::Data, c.to_vec(), last))
                .unwrap();
        }
    }
    let rsp = match assoc.receive().unwrap() {
        Pdu::PData { data } => Command::decode(&data[0].data).unwrap(),
        other => panic!("unexpected {other:?}"),
    };
    assoc.release().unwrap();
    rsp
}

#[tokio::test(flavor = "multi_thread")]
async fn memory_stays_flat_for_a_128_mib_instance() {
    let gw = Gateway::start();
    let pid = gw.child.id();
    let baseline = peak_rss(pid);
    let sop = "1.2.826.0.1.3680043.10.99.1.1.1";
    let instance_bytes = frame_len() as u64 * FRAMES as u64;

    let dimse = gw.dimse;
    let rsp = tokio::task::spawn_blocking(move || send_big_instance(dimse, sop))
        .await
        .unwrap();
    assert_eq!(rsp.status(), Some(Status::SUCCESS), "{rsp:?}");
    let after_ingest = peak_rss(pid);

    // retrieve the whole instance, counting bytes as they stream
    let url = format!(
        "{}/studies/1.2.826.0.1.3680043.10.99.1/series/1.2.826.0.1.3680043.10.99.1.1/instances/{sop}",
        gw.base()
    );
    let resp = reqwest::Client::new()
        .get(&url)
        .header(
            "Accept",
            "multipart/related; type=\"application/dicom\"; transfer-syntax=*",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let mut received = 0u64;
    let mut stream = resp.bytes_stream();
    while let Some(chunk) = stream.next().await {
        received += chunk.unwrap().len() as u64;
    }
    assert!(
        received > instance_bytes,
        "whole instance streamed ({received} bytes)"
    );

    // a frame from the middle equals what was sent
    let (status, ct, _, body) = get(
        &format!("{url}/frames/200"),
        "multipart/related; type=application/octet-stream; transfer-syntax=*",
    )
    .await;
    assert_eq!(status, 200);
    assert!(
        multipart_parts(&ct, &body)[0].1 == frame(199),
        "frame 200 differs"
    );
    let after_retrieve = peak_rss(pid);

    eprintln!(
        "peak RSS: baseline {} MiB, after ingest {} MiB, after retrieve {} MiB (instance {} MiB)",
        baseline / MIB,
        after_ingest / MIB,
        after_retrieve / MIB,
        instance_bytes / MIB
    );
    assert!(
        after_retrieve < baseline + 48 * MIB,
        "memory grew by {} MiB for a {} MiB instance",
        (after_retrieve - baseline) / MIB,
        instance_bytes / MIB
    );
}

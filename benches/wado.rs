//! The in-process costs on the WADO-RS read path, each next to a peer measured in the same run:
//!
//! - `negotiate/*`: `parse_accept` + `choose_frames` (OHIF's frame Accept) and
//!   `parse_accept` + `choose_instance` (OHIF-style series retrieve Accept).
//! - `locate/*`: finding a frame's bytes (`layout::locate_pixel_data` + `layout::frame_index`)
//!   in a 512x512 16-bit CT slice, a native multi-frame file (100 frames of 512x512x16) and an
//!   encapsulated multi-frame file (600 fragments of 40 KB, like an XA/US cine). Peer:
//!   `read_frame/*`, reading that frame's bytes (`layout::read_ranges`), which every frame
//!   request does next; and `dicom_rs_header/*`, dicom-object parsing the header up to Pixel
//!   Data (what a gateway without a byte-range walker would do instead).
//! - `metadata/*`: `Index::metadata` for a 200-instance series ingested from real files (the
//!   SQL half of the series metadata request). The JSON join (`web::wado::join_metadata`) is
//!   private, so it is not measured here; `scripts/bench.sh` measures the whole request over
//!   HTTP. Peer: reading the same 200 instances' `meta_json` with one plain SELECT.
//! - `ingest/index_file`: `store::ingest::index_file` on one CT slice, the CPU part of every
//!   C-STORE (parse, charset, DICOM JSON). Peer: `ingest/peer_dicom_rs_header`, dicom-object
//!   parsing the same header without building any index row.
//!
//! Files are generated into a temp dir before anything is timed (`cargo bench --bench wado`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use dicom_dictionary_std::tags;
use tsunagi::store::layout::{self, PixelGeometry};
use tsunagi::store::{ingest, Index, Selector};
use tsunagi::web::negotiate;

#[path = "support/synth.rs"]
mod synth;

const OHIF_FRAME_ACCEPT: &str =
    "multipart/related; type=application/octet-stream; transfer-syntax=*";
const SERIES_ACCEPT: &str = "multipart/related; type=\"application/dicom\"; transfer-syntax=*";
const SERIES_LEN: u32 = 200;

struct Case {
    name: &'static str,
    path: PathBuf,
    ts: &'static str,
    geom: PixelGeometry,
    /// the frame a request asks for (1-based)
    frame: usize,
}

fn geom(rows: u32, columns: u32, bits: u32, frames: u32) -> PixelGeometry {
    PixelGeometry {
        rows,
        columns,
        samples_per_pixel: 1,
        bits_allocated: bits,
        number_of_frames: frames,
    }
}

fn make_files(dir: &Path) -> Vec<Case> {
    let spec = synth::study_spec(7, 10);
    let ct = dir.join("ct.dcm");
    synth::write_instance(
        &ct,
        &spec,
        &spec.sop_uid,
        0,
        &synth::Pixels::Native16 {
            rows: 512,
            columns: 512,
            frames: 1,
        },
    )
    .expect("write ct");
    let mf = dir.join("mf-native.dcm");
    synth::write_instance(
        &mf,
        &spec,
        "2.25.1001",
        0,
        &synth::Pixels::Native16 {
            rows: 512,
            columns: 512,
            frames: 100,
        },
    )
    .expect("write native multi-frame");
    let enc = dir.join("mf-encapsulated.dcm");
    synth::write_instance(
        &enc,
        &spec,
        "2.25.1002",
        0,
        &synth::Pixels::Encapsulated {
            rows: 512,
            columns: 512,
            frames: 600,
            fragment_len: 40_000,
        },
    )
    .expect("write encapsulated multi-frame");
    vec![
        Case {
            name: "ct_512x512x16",
            path: ct,
            ts: synth::EXPLICIT_VR_LE,
            geom: geom(512, 512, 16, 1),
            frame: 1,
        },
        Case {
            name: "native_100_frames",
            path: mf,
            ts: synth::EXPLICIT_VR_LE,
            geom: geom(512, 512, 16, 100),
            frame: 50,
        },
        Case {
            name: "encapsulated_600_frames",
            path: enc,
            ts: synth::JPEG_BASELINE,
            geom: geom(512, 512, 8, 600),
            frame: 300,
        },
    ]
}

fn locate(c: &Case) -> layout::FrameIndex {
    let pixel = layout::locate_pixel_data(&c.path, c.ts).expect("pixel data");
    layout::frame_index(&pixel, &c.geom).expect("frame index")
}

fn bench_negotiate(c: &mut Criterion) {
    let mut g = c.benchmark_group("negotiate");
    g.bench_function("frames_ohif_accept", |b| {
        b.iter(|| {
            let ranges = negotiate::parse_accept(Some(std::hint::black_box(OHIF_FRAME_ACCEPT)));
            negotiate::choose_frames(&ranges, synth::EXPLICIT_VR_LE, &negotiate::AsStoredOnly)
                .expect("acceptable")
        })
    });
    g.bench_function("instance_series_accept", |b| {
        b.iter(|| {
            let ranges = negotiate::parse_accept(Some(std::hint::black_box(SERIES_ACCEPT)));
            negotiate::choose_instance(&ranges, synth::EXPLICIT_VR_LE, &negotiate::AsStoredOnly)
                .expect("acceptable")
        })
    });
    g.finish();
}

fn bench_layout(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temp dir");
    let cases = make_files(dir.path());
    for case in &cases {
        let idx = locate(case);
        let frame = &idx.frames[case.frame - 1];
        let bytes: u64 = frame.iter().map(|r| r.len).sum();
        eprintln!(
            "wado bench: {}: {} frames, frame {} is {} bytes in {} range(s), file {} bytes",
            case.name,
            idx.frames.len(),
            case.frame,
            bytes,
            frame.len(),
            std::fs::metadata(&case.path).map(|m| m.len()).unwrap_or(0)
        );
    }
    let mut g = c.benchmark_group("frame_location");
    g.warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    for case in &cases {
        g.bench_with_input(BenchmarkId::new("locate", case.name), case, |b, case| {
            b.iter(|| locate(case))
        });
        let ranges = locate(case).frames[case.frame - 1].clone();
        g.bench_with_input(
            BenchmarkId::new("read_frame", case.name),
            case,
            |b, case| b.iter(|| layout::read_ranges(&case.path, &ranges).expect("read")),
        );
        g.bench_with_input(
            BenchmarkId::new("dicom_rs_header", case.name),
            case,
            |b, case| {
                b.iter(|| {
                    dicom_object::OpenFileOptions::new()
                        .read_until(tags::PIXEL_DATA)
                        .open_file(&case.path)
                        .expect("open")
                })
            },
        );
    }
    g.finish();

    let mut g = c.benchmark_group("ingest");
    g.warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    g.bench_function("index_file/ct_512x512x16", |b| {
        b.iter(|| ingest::index_file(&cases[0].path, tsunagi::store::bulk_prefix).expect("index"))
    });
    g.bench_function("peer_dicom_rs_header/ct_512x512x16", |b| {
        b.iter(|| {
            dicom_object::OpenFileOptions::new()
                .read_until(tags::PIXEL_DATA)
                .open_file(&cases[0].path)
                .expect("open")
        })
    });
    g.finish();
}

fn bench_metadata(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temp dir");
    let index = Index::open(&dir.path().join("index.sqlite")).expect("index");
    let spec = synth::study_spec(11, 10);
    let mut r = synth::Rng::new(99);
    for slice in 0..SERIES_LEN {
        let sop = r.uid();
        let path = dir.path().join(format!("{slice:03}.dcm"));
        synth::write_instance(
            &path,
            &spec,
            &sop,
            slice,
            &synth::Pixels::Native16 {
                rows: 512,
                columns: 512,
                frames: 1,
            },
        )
        .expect("write slice");
        let inst = ingest::index_file(&path, tsunagi::store::bulk_prefix).expect("index file");
        index.upsert(&inst, &path, 0, "x", 0).expect("upsert");
    }
    let sel = Selector {
        study: &spec.study_uid,
        series: Some(&spec.series_uid),
        instance: None,
    };
    let objects = index.metadata(&sel).expect("metadata");
    let total: usize = objects.iter().map(String::len).sum();
    eprintln!(
        "wado bench: series metadata: {} instances, {} bytes of stored JSON ({} per instance)",
        objects.len(),
        total,
        total / objects.len().max(1)
    );
    let mut g = c.benchmark_group("metadata");
    g.bench_function("index_metadata_200", |b| {
        b.iter(|| index.metadata(&sel).expect("metadata"))
    });
    g.bench_function("peer_plain_select_200", |b| {
        b.iter(|| {
            index
                .read(|c| {
                    let mut st =
                        c.prepare_cached("SELECT meta_json FROM instance WHERE series_uid = ?1")?;
                    let rows = st.query_map([&spec.series_uid], |r| r.get::<_, String>(0))?;
                    rows.collect::<rusqlite::Result<Vec<String>>>()
                })
                .expect("select")
        })
    });
    g.finish();
}

criterion_group!(benches, bench_negotiate, bench_layout, bench_metadata);
criterion_main!(benches);

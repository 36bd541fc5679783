//! The ingest path's parser: a Part 10 file as a peer may send it (after our File Meta
//! header, which we write ourselves) is indexed (dicom-object up to Pixel Data, DICOM JSON,
//! character sets, text values) and its pixel data located (frame offsets), without a panic.
//! The bytes go through a file in /dev/shm because both functions read a stored file.
#![no_main]

use std::io::Write;
use std::path::PathBuf;

use libfuzzer_sys::fuzz_target;
use tsunagi::store::{disk, ingest, layout};

fn scratch() -> PathBuf {
    let dir = if std::path::Path::new("/dev/shm").is_dir() {
        PathBuf::from("/dev/shm")
    } else {
        std::env::temp_dir()
    };
    dir.join(format!("tsunagi-fuzz-{}.dcm", std::process::id()))
}

/// Preamble, DICM and a File Meta group naming `ts`, as the store writes it.
fn part10(ts: &str, data_set: &[u8]) -> Vec<u8> {
    let mut out = disk::part10_header(&disk::FileMeta {
        sop_class_uid: "1.2.840.10008.5.1.4.1.1.7".into(),
        sop_instance_uid: "1.2.3.4".into(),
        transfer_syntax_uid: ts.into(),
        source_ae_title: String::new(),
    });
    out.extend_from_slice(data_set);
    out
}

const SYNTAXES: [&str; 4] = [
    "1.2.840.10008.1.2.1",
    "1.2.840.10008.1.2",
    "1.2.840.10008.1.2.4.90",
    "1.2.840.10008.1.2.1.99",
];

fuzz_target!(|data: &[u8]| {
    let Some((&which, data_set)) = data.split_first() else {
        return;
    };
    let ts = SYNTAXES[usize::from(which) % SYNTAXES.len()];
    let path = scratch();
    let Ok(mut file) = std::fs::File::create(&path) else {
        return;
    };
    if file.write_all(&part10(ts, data_set)).is_err() {
        return;
    }
    drop(file);
    let indexed = ingest::index_file(&path, |a, b, c| format!("{a}/{b}/{c}"));
    let pixel = layout::locate_pixel_data(&path, ts);
    if let (Ok(indexed), Ok(pixel)) = (indexed, pixel) {
        // as WADO-RS frames does (src/web/wado/frames.rs geometry)
        let i = &indexed.instance;
        let get = |v: Option<i64>, default: Option<u32>| {
            v.and_then(|x| u32::try_from(x).ok()).or(default)
        };
        let geom = (|| {
            Some(layout::PixelGeometry {
                rows: get(i.rows, None)?,
                columns: get(i.columns, None)?,
                bits_allocated: get(i.bits_allocated, None)?,
                number_of_frames: get(i.number_of_frames, Some(1))?,
                samples_per_pixel: get(i.samples_per_pixel, Some(1))?,
            })
        })();
        if let Some(geom) = geom {
            let _ = layout::frame_index(&pixel, &geom);
        }
    }
});

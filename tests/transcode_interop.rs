//! On-the-fly transcoding and rendering, checked by independent decoders
//! (`tests/interop/check_transcode.py`: pydicom, pylibjpeg-openjpeg, pylibjpeg-libjpeg,
//! pyjpegls, Pillow, numpy) after DCMTK pushed every sample.
//!
//! It proves that every image sample, asked for by instance or by frames in Explicit VR LE,
//! RLE, JPEG Lossless SV1, JPEG-LS and HTJ2K (plain and RPCL), comes back in that syntax,
//! correctly labelled and encoded, with pixels bit-identical to the source; that the lossy
//! syntaxes (JPEG baseline for 8-bit images only, JPEG-LS near-lossless, HTJ2K lossy) are bounded
//! and carry Lossy Image Compression; that compressed instances are decompressed by default;
//! that impossible requests get 406 with a reason; and that `/rendered` and `/thumbnail` give
//! images of the right size whose pixels equal an independent Modality LUT + VOI window of the
//! source pixels.
//!
//! Needs python3 with `tests/interop/requirements.txt`; without it the test skips loudly
//! (a failure under CI=true, like a missing DCMTK).

mod common;

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// The whole check takes well under a minute on a release build; this bounds a gateway that
/// stalls (or a debug build transcoding slowly).
const LIMIT: Duration = Duration::from_secs(600);

/// The Python modules the check imports.
const MODULES: &str = "pydicom, dicomweb_client, pylibjpeg, openjpeg, libjpeg, jpeg_ls, PIL, numpy";

/// True when python3 can import the decoders; otherwise a loud skip (panic under CI=true).
fn python_decoders_available() -> bool {
    let ok = Command::new("python3")
        .args(["-c", &format!("import {MODULES}")])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        let msg = format!(
            "SKIPPED: python3 with {MODULES} is not available; independent decoders check the \
             gateway's transcoding and rendering. Install them with \
             `python3 -m pip install -r tests/interop/requirements.txt` to run this test."
        );
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("{msg} (CI=true: a missing peer is a failure)");
        }
        eprintln!("\n*** {msg} ***\n");
    }
    ok
}

#[test]
fn transcoded_and_rendered_pixels_match_independent_decoders() {
    let Some(storescu) = peer("/usr/bin/storescu", "DCMTK pushes the samples") else {
        return;
    };
    if !python_decoders_available() {
        return;
    }
    let gw = Gateway::start();
    push_all_samples(&storescu, gw.dimse);

    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop/check_transcode.py");
    let mut child = Command::new("python3")
        .arg(script)
        .arg("--url")
        .arg(gw.base())
        .arg("--samples")
        .arg(samples_dir())
        .env("PYTHONUNBUFFERED", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run python3");
    let mut stdout = child.stdout.take().expect("stdout");
    let mut stderr = child.stderr.take().expect("stderr");
    let out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for python3") {
            break Some(status);
        }
        if start.elapsed() > LIMIT {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let text = format!("{}{}", out.join().unwrap(), err.join().unwrap());
    match status {
        Some(s) if s.success() => eprintln!("{text}"),
        Some(s) => panic!("check_transcode.py failed ({s}):\n{text}"),
        None => panic!("check_transcode.py still running after {LIMIT:?}; killed:\n{text}"),
    }
}

//! Interop with a third-party client stack: pydicom + dicomweb-client
//! (`tests/interop/check_dicomweb.py`) check what the gateway serves after DCMTK pushed every
//! sample. It proves that an independent DICOMweb client finds every study, series and
//! instance with the Japanese names intact (including a kanji `PatientName=山田*` search), and
//! retrieves instances whose pixel arrays, decoded by pydicom / pylibjpeg / pyjpegls, are
//! bit-identical to the source files (native, RLE, JPEG 2000, JPEG-LS, multi-frame), frames
//! byte-identical to the source frames, and series metadata whose absolute BulkDataURIs work.
//!
//! Needs python3 with `tests/interop/requirements.txt`; without it the test skips loudly
//! (a failure under CI=true, like a missing DCMTK).

mod common;

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// The whole check normally takes seconds; this bounds a gateway that stalls.
const LIMIT: Duration = Duration::from_secs(300);

/// True when python3 can import the client stack; otherwise a loud skip (panic under CI=true).
fn python_client_available() -> bool {
    let ok = Command::new("python3")
        .args(["-c", "import pydicom, dicomweb_client, pylibjpeg"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        let msg = "SKIPPED: python3 with pydicom, dicomweb-client and pylibjpeg is not available; \
                   the Python DICOMweb client checks the gateway. Install it with \
                   `python3 -m pip install -r tests/interop/requirements.txt` to run this test.";
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("{msg} (CI=true: a missing peer is a failure)");
        }
        eprintln!("\n*** {msg} ***\n");
    }
    ok
}

#[test]
fn dicomweb_client_reads_back_every_sample_intact() {
    let Some(storescu) = peer("/usr/bin/storescu", "DCMTK pushes the samples") else {
        return;
    };
    if !python_client_available() {
        return;
    }
    let gw = Gateway::start();
    push_all_samples(&storescu, gw.dimse);

    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop/check_dicomweb.py");
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
        Some(s) => panic!("check_dicomweb.py failed ({s}):\n{text}"),
        None => panic!("check_dicomweb.py still running after {LIMIT:?}; killed:\n{text}"),
    }
}

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

use std::time::Duration;

use common::*;

/// Bounds a gateway that stalls (the check normally takes seconds to a minute).
const LIMIT: Duration = Duration::from_secs(300);

#[test]
fn dicomweb_client_reads_back_every_sample_intact() {
    let Some(storescu) = peer("/usr/bin/storescu", "DCMTK pushes the samples") else {
        return;
    };
    if !python_modules(
        "pydicom, dicomweb_client, pylibjpeg",
        "the Python DICOMweb client checks the gateway",
    ) {
        return;
    }
    let gw = Gateway::start();
    push_all_samples(&storescu, gw.dimse);
    run_interop_script("check_dicomweb.py", &gw, LIMIT);
}

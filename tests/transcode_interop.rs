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

use std::time::Duration;

use common::*;

/// Bounds a gateway that stalls (the check normally takes seconds to a minute).
const LIMIT: Duration = Duration::from_secs(600);

#[test]
fn transcoded_and_rendered_pixels_match_independent_decoders() {
    let Some(storescu) = peer("/usr/bin/storescu", "DCMTK pushes the samples") else {
        return;
    };
    if !python_modules(
        "pydicom, dicomweb_client, pylibjpeg, openjpeg, libjpeg, jpeg_ls, PIL, numpy",
        "independent decoders check the gateway's transcoding and rendering",
    ) {
        return;
    }
    let gw = Gateway::start();
    push_all_samples(&storescu, gw.dimse);
    run_interop_script("check_transcode.py", &gw, LIMIT);
}

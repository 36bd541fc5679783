#!/usr/bin/env python3
"""Decode frames written by our encoders with independent decoders.

Usage:
    TRANSCODE_DUMP=/tmp/tdump cargo test dump_for_independent_decoders -- --ignored
    python3 src/transcode/check_independent.py /tmp/tdump

Decoders (none shares code with ours):
    .j2c  HTJ2K RPCL (.202)   OpenJPEG 2.5 C library, `opj_decompress` (libopenjp2-tools),
                              and again through pylibjpeg-openjpeg
    .htj2k HTJ2K (.201)       the same two
    .jls  JPEG-LS (.80)       DCMTK `dcmdjpls` (dcmtk), on a file wrapped by pydicom
    .ljpg JPEG Lossless SV1   libjpeg (pylibjpeg-libjpeg)
    .rle  RLE Lossless        pydicom's RLE decoder, on a file wrapped by pydicom
Prints one line per file and a closing 'N passed, N failed' line; exits 1 on any mismatch.
"""
import os
import subprocess
import sys
import tempfile

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.pixels import pixel_array
from pydicom.uid import generate_uid


def load_desc(path):
    rows, cols, spp, alloc, stored, rep, *pi = open(path).read().split()
    return dict(rows=int(rows), cols=int(cols), spp=int(spp), alloc=int(alloc),
                stored=int(stored), signed=rep == "1", pi=" ".join(pi))


def expected(base, d):
    dtype = {(8, False): "<u1", (8, True): "<i1", (16, False): "<u2", (16, True): "<i2"}[(d["alloc"], d["signed"])]
    a = np.frombuffer(open(base + ".raw", "rb").read(), dtype=dtype).astype(np.int64)
    return a.reshape(d["rows"], d["cols"], d["spp"])


def normalise(a, d):
    """Stored bits, sign-extended, whatever the decoder's convention."""
    bits = d["stored"]
    a = a.astype(np.int64) & ((1 << bits) - 1)
    if d["signed"]:
        a = np.where(a >= (1 << (bits - 1)), a - (1 << bits), a)
    return a


def wrap(d, ts, frame, path):
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ts
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Rows, ds.Columns, ds.SamplesPerPixel = d["rows"], d["cols"], d["spp"]
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = d["alloc"], d["stored"], d["stored"] - 1
    ds.PixelRepresentation = 1 if d["signed"] else 0
    ds.PhotometricInterpretation = d["pi"]
    if d["spp"] == 3:
        ds.PlanarConfiguration = 1 if ts == "1.2.840.10008.1.2.5" else 0
    ds.PixelData = encapsulate([frame])
    ds["PixelData"].VR = "OB"
    ds.save_as(path, enforce_file_format=True)


def decode_j2c(base, d, tmp):
    out = os.path.join(tmp, "out.rawl")
    subprocess.run(["opj_decompress", "-i", base + ".j2c", "-o", out], check=True, capture_output=True)
    dtype = ("<i" if d["signed"] else "<u") + ("1" if d["stored"] <= 8 else "2")
    planes = np.frombuffer(open(out, "rb").read(), dtype=dtype).astype(np.int64)
    return planes.reshape(d["spp"], d["rows"], d["cols"]).transpose(1, 2, 0)


def decode_pylibjpeg_j2c(base, d, tmp, ext="j2c"):
    import openjpeg
    a = openjpeg.decode(open(base + "." + ext, "rb").read())
    return np.asarray(a).astype(np.int64).reshape(d["rows"], d["cols"], d["spp"])


def decode_htj2k(base, d, tmp):
    out = os.path.join(tmp, "out.rawl")
    subprocess.run(["opj_decompress", "-i", base + ".htj2k", "-o", out], check=True, capture_output=True)
    dtype = ("<i" if d["signed"] else "<u") + ("1" if d["stored"] <= 8 else "2")
    planes = np.frombuffer(open(out, "rb").read(), dtype=dtype).astype(np.int64)
    return planes.reshape(d["spp"], d["rows"], d["cols"]).transpose(1, 2, 0)


def decode_jls(base, d, tmp):
    src, dst = os.path.join(tmp, "in.dcm"), os.path.join(tmp, "out.dcm")
    wrap(d, "1.2.840.10008.1.2.4.80", open(base + ".jls", "rb").read(), src)
    subprocess.run(["/usr/bin/dcmdjpls", src, dst], check=True, capture_output=True)
    return pixel_array(dst, as_rgb=False).astype(np.int64).reshape(d["rows"], d["cols"], d["spp"])


def decode_ljpg(base, d, tmp):
    import libjpeg
    a = libjpeg.decode(open(base + ".ljpg", "rb").read())
    return np.asarray(a).astype(np.int64).reshape(d["rows"], d["cols"], d["spp"])


def decode_rle(base, d, tmp):
    path = os.path.join(tmp, "rle.dcm")
    wrap(d, "1.2.840.10008.1.2.5", open(base + ".rle", "rb").read(), path)
    return pixel_array(path, as_rgb=False).astype(np.int64).reshape(d["rows"], d["cols"], d["spp"])


def main(folder):
    passed = failed = 0
    for name in sorted(f[:-5] for f in os.listdir(folder) if f.endswith(".desc")):
        base = os.path.join(folder, name)
        d = load_desc(base + ".desc")
        want = expected(base, d)
        for ext, fn in [("j2c", decode_j2c), ("j2c", decode_pylibjpeg_j2c),
                        ("htj2k", decode_htj2k),
                        ("htj2k", lambda b, d, t: decode_pylibjpeg_j2c(b, d, t, "htj2k")),
                        ("jls", decode_jls), ("ljpg", decode_ljpg), ("rle", decode_rle)]:
            with tempfile.TemporaryDirectory() as tmp:
                try:
                    got = normalise(fn(base, d, tmp), d)
                    ok = np.array_equal(got, normalise(want, d))
                    why = "" if ok else f"{int(np.count_nonzero(got != normalise(want, d)))} samples differ"
                except Exception as e:  # a decoder refusing our stream is a failure
                    ok, why = False, f"{type(e).__name__}: {e}"
            who = "pylibjpeg" if "lambda" in fn.__name__ or "pylibjpeg" in fn.__name__ else ""
            print(f"{'ok  ' if ok else 'FAIL'} {name}.{ext} {who} {why}")
            passed += ok
            failed += not ok
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "/tmp/tdump"))

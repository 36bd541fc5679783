#!/usr/bin/env python3
"""Interop check: pydicom + dicomweb-client, as a third-party DICOMweb client, verify what a
DICOMweb server loaded with tests/dicom-samples serves.

It proves that an independent client stack
  * finds every study, series and instance with QIDO-RS, Japanese names decoded intact
    (all three PN groups), including a kanji search `PatientName=山田*`;
  * retrieves every instance with WADO-RS (the client's default Accept, transfer-syntax=*,
    and Explicit VR Little Endian for native images) as a data set that pydicom reads with the
    same SOPInstanceUID and PatientName as the source file, and whose pixel array, decoded by
    pydicom / pylibjpeg / pyjpegls on both sides, is bit-identical to the source's
    (uncompressed, RLE, JPEG 2000, JPEG-LS, multi-frame); the PDF document comes back intact;
  * gets every frame with retrieve_instance_frames byte-identical to the source frames;
  * gets series metadata whose PixelData / EncapsulatedDocument carry an absolute
    BulkDataURI on the server, and retrieve_bulkdata of it returns the source bytes.

    python3 check_dicomweb.py --url http://127.0.0.1:8080/dicom-web --samples tests/dicom-samples

Prints one line per failed check and a summary; exits 1 on any mismatch, 0 otherwise.
"""

import argparse
import contextlib
import json
import sys
import traceback
from collections import defaultdict
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import pydicom
import requests
from dicomweb_client import DICOMwebClient
from pydicom.dataset import Dataset
from pydicom.encaps import generate_frames

EXPLICIT_LE = "1.2.840.10008.1.2.1"
NATIVE = {"1.2.840.10008.1.2", EXPLICIT_LE}


class Report:
    """Counts checks per group and keeps a message for each failure."""

    def __init__(self):
        self.counts = defaultdict(lambda: [0, 0])  # group -> [checked, failed]
        self.failures = []

    def check(self, group, ok, message):
        self.counts[group][0] += 1
        if not ok:
            self.counts[group][1] += 1
            self.failures.append(f"[{group}] {message}")
            print(f"FAIL [{group}] {message}", flush=True)
        return ok

    @contextlib.contextmanager
    def guard(self, group, what):
        """An exception (HTTP error, decode error...) inside is one failed check."""
        try:
            yield
        except Exception as e:  # noqa: BLE001 - every error is a reported mismatch
            detail = f"{type(e).__name__}: {e}"
            if isinstance(e, requests.HTTPError) and e.response is not None:
                detail += f" -- body: {e.response.text[:300]!r}"
            elif not isinstance(e, requests.RequestException):
                detail += "\n" + "".join(traceback.format_exc(limit=-3))
            self.check(group, False, f"{what}: {detail}")


def pn(value):
    """A PatientName as one Unicode string, all groups ("Alpha=Ideo=Phon")."""
    return str(value) if value is not None else None


def from_json(obj):
    """A QIDO/metadata JSON object as a pydicom Dataset (bulk data left out)."""
    return Dataset.from_json({k: v for k, v in obj.items() if "BulkDataURI" not in v})


def source_frames(src):
    """Each frame of a source file as stored: codestreams, or native bytes cut by size."""
    n = int(src.get("NumberOfFrames", 1) or 1)
    if src.file_meta.TransferSyntaxUID.is_compressed:
        return list(generate_frames(src.PixelData, number_of_frames=n))
    size = src.Rows * src.Columns * src.SamplesPerPixel * src.BitsAllocated // 8
    return [bytes(src.PixelData[i * size:(i + 1) * size]) for i in range(n)]


def pixel_mismatch(served, src):
    """None when the decoded pixel arrays are bit-identical, else what differs."""
    a, b = served.pixel_array, src.pixel_array
    if a.dtype != b.dtype or a.shape != b.shape:
        return f"served {a.dtype}{a.shape}, source {b.dtype}{b.shape}"
    if np.array_equal(a, b):
        return None
    first = tuple(int(i) for i in np.argwhere(a != b)[0])
    return f"{np.count_nonzero(a != b)} values differ, first at {first}: served {a[first]}, source {b[first]}"


def check_searches(client, manifest, r):
    g = "QIDO search"
    studies = defaultdict(list)
    for e in manifest:
        studies[e["study_uid"]].append(e)
    with r.guard(g, "search_for_studies"):
        found = client.search_for_studies()
        r.check(g, len(found) == len(studies), f"search_for_studies: {len(found)} studies, expected {len(studies)}")
        for obj in found:
            ds = from_json(obj)
            entries = studies.get(ds.StudyInstanceUID)
            if not r.check(g, entries is not None, f"unknown study {ds.StudyInstanceUID}"):
                continue
            r.check(g, pn(ds.get("PatientName")) == entries[0]["patient_name"],
                    f"study {ds.StudyInstanceUID}: PatientName {pn(ds.get('PatientName'))!r}, expected {entries[0]['patient_name']!r}")
            n = ds.get("NumberOfStudyRelatedInstances")
            r.check(g, n is not None and int(n) == len(entries),
                    f"study {ds.StudyInstanceUID}: NumberOfStudyRelatedInstances {n}, expected {len(entries)}")
    with r.guard(g, "search_for_studies PatientName=山田*"):
        found = [from_json(o) for o in client.search_for_studies(search_filters={"PatientName": "山田*"})]
        ids = sorted(ds.PatientID for ds in found)
        r.check(g, ids == ["JP-0001", "JP-0003"], f"PatientName=山田* found {ids}, expected ['JP-0001', 'JP-0003']")
        names = {ds.PatientID: pn(ds.get("PatientName")) for ds in found}
        for e in manifest:
            if e["patient_id"] in names:
                r.check(g, names[e["patient_id"]] == e["patient_name"],
                        f"PatientName=山田*: {e['patient_id']} named {names[e['patient_id']]!r}, expected {e['patient_name']!r}")
                del names[e["patient_id"]]
    for study, entries in studies.items():
        series = defaultdict(list)
        for e in entries:
            series[e["series_uid"]].append(e)
        with r.guard(g, f"search_for_series study={study}"):
            got = sorted(from_json(o).SeriesInstanceUID for o in client.search_for_series(study_instance_uid=study))
            r.check(g, got == sorted(series), f"series of study {study}: {got}, expected {sorted(series)}")
        for uid, members in series.items():
            with r.guard(g, f"search_for_instances series={uid}"):
                got = sorted(from_json(o).SOPInstanceUID for o in client.search_for_instances(
                    study_instance_uid=study, series_instance_uid=uid))
                want = sorted(e["sop_instance_uid"] for e in members)
                r.check(g, got == want, f"instances of series {uid}: {len(got)} found, expected {len(want)}")
    with r.guard(g, "search_for_series / search_for_instances (all)"):
        n_series = len({e["series_uid"] for e in manifest})
        got = len(client.search_for_series())
        r.check(g, got == n_series, f"search_for_series(): {got} series, expected {n_series}")
        got = len(client.search_for_instances())
        r.check(g, got == len(manifest), f"search_for_instances(): {got} instances, expected {len(manifest)}")


def check_retrieve(client, e, src, r):
    g = "retrieve_instance"
    ts = e["transfer_syntax"]
    variants = [("default", None), ("transfer-syntax=*", (("application/dicom", "*"),))]
    if ts in NATIVE:
        variants.append(("explicit VR LE", (("application/dicom", EXPLICIT_LE),)))
    for label, media_types in variants:
        what = f"{e['path']} ({label})"
        with r.guard(g, what):
            ds = client.retrieve_instance(e["study_uid"], e["series_uid"], e["sop_instance_uid"], media_types=media_types)
            # "As stored" is the source's syntax, except that a DIMSE sender may have converted
            # Implicit to Explicit VR LE on the wire (storescu does when the SCP accepts that).
            want_ts = {EXPLICIT_LE} if label == "explicit VR LE" else {ts, EXPLICIT_LE} if ts in NATIVE else {ts}
            r.check(g, ds.file_meta.TransferSyntaxUID in want_ts,
                    f"{what}: transfer syntax {ds.file_meta.TransferSyntaxUID}, expected one of {sorted(want_ts)}")
            r.check(g, ds.SOPInstanceUID == src.SOPInstanceUID == e["sop_instance_uid"], f"{what}: SOPInstanceUID {ds.SOPInstanceUID}")
            r.check(g, pn(ds.PatientName) == pn(src.PatientName) == e["patient_name"],
                    f"{what}: PatientName {pn(ds.PatientName)!r}, source {pn(src.PatientName)!r}, manifest {e['patient_name']!r}")
            if label == "transfer-syntax=*":
                r.check(g, ds == src, f"{what}: data set as stored differs from the source file's")
            if "PixelData" in src:
                diff = pixel_mismatch(ds, src)
                r.check(g, diff is None, f"{what}: pixel_array differs from the source: {diff}")
            if "EncapsulatedDocument" in src:
                r.check(g, ds.EncapsulatedDocument == src.EncapsulatedDocument, f"{what}: EncapsulatedDocument differs")


def check_frames(client, e, src, r):
    g = "retrieve_instance_frames"
    expected = source_frames(src)
    numbers = list(range(1, len(expected) + 1))
    uids = (e["study_uid"], e["series_uid"], e["sop_instance_uid"])
    with r.guard(g, f"{e['path']} frames {numbers} (default Accept)"):
        got = client.retrieve_instance_frames(*uids, frame_numbers=numbers)
        r.check(g, len(got) == len(expected), f"{e['path']}: {len(got)} frames returned, expected {len(expected)}")
        for i, (a, b) in enumerate(zip(got, expected), 1):
            r.check(g, a == b, f"{e['path']}: frame {i} differs ({len(a)} bytes, source {len(b)})")
    # one frame per request, as OHIF asks: application/octet-stream, transfer-syntax=*
    for i in numbers:
        with r.guard(g, f"{e['path']} frame {i} (octet-stream, transfer-syntax=*)"):
            got = client.retrieve_instance_frames(*uids, frame_numbers=[i], media_types=(("application/octet-stream", "*"),))
            r.check(g, got == [expected[i - 1]], f"{e['path']}: frame {i} alone differs from the source")


def check_metadata(client, manifest, sources, base_url, r):
    g = "metadata+bulkdata"
    root = urlparse(base_url)
    series = defaultdict(list)
    for e in manifest:
        series[(e["study_uid"], e["series_uid"])].append(e)
    for (study, uid), members in series.items():
        with r.guard(g, f"retrieve_series_metadata {uid}"):
            meta = client.retrieve_series_metadata(study, uid)
            r.check(g, len(meta) == len(members), f"series {uid}: metadata of {len(meta)} instances, expected {len(members)}")
            for obj in meta:
                ds = from_json(obj)
                e = next((m for m in members if m["sop_instance_uid"] == ds.SOPInstanceUID), None)
                if not r.check(g, e is not None, f"series {uid}: unknown instance {ds.SOPInstanceUID} in metadata"):
                    continue
                src = sources[e["path"]]
                r.check(g, pn(ds.get("PatientName")) == e["patient_name"], f"{e['path']}: metadata PatientName {pn(ds.get('PatientName'))!r}")
                for tag, expected in bulk_expectations(src):
                    uri = obj.get(tag, {}).get("BulkDataURI")
                    if not r.check(g, uri is not None, f"{e['path']}: no BulkDataURI for {tag}: {obj.get(tag)}"):
                        continue
                    u = urlparse(uri)
                    absolute = u.scheme == root.scheme and u.netloc == root.netloc and u.path.startswith(root.path + "/")
                    r.check(g, absolute, f"{e['path']}: {tag} BulkDataURI {uri!r} is not absolute under {base_url}")
                    with r.guard(g, f"retrieve_bulkdata {uri}"):
                        got = client.retrieve_bulkdata(uri)
                        r.check(g, got == expected,
                                f"{e['path']}: bulk data of {tag} differs ({[len(p) for p in got]} bytes vs source {[len(p) for p in expected]})")


def bulk_expectations(src):
    """(tag, parts) the bulk data of a source should come back as: native pixel data in one
    part, encapsulated pixel data one part per frame, a document in one part."""
    if "PixelData" in src:
        if src.file_meta.TransferSyntaxUID.is_compressed:
            yield "7FE00010", source_frames(src)
        else:
            yield "7FE00010", [b"".join(source_frames(src))]
    if "EncapsulatedDocument" in src:
        yield "00420011", [bytes(src.EncapsulatedDocument)]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--url", required=True, help="DICOMweb root, e.g. http://127.0.0.1:8080/dicom-web")
    ap.add_argument("--samples", required=True, type=Path, help="folder with manifest.json and the files")
    args = ap.parse_args()
    manifest = json.loads((args.samples / "manifest.json").read_text(encoding="utf-8"))
    sources = {e["path"]: pydicom.dcmread(args.samples / e["path"]) for e in manifest}
    client = DICOMwebClient(args.url.rstrip("/"), timeout=60)
    client.set_http_retry_params(retry=False)  # a failure is reported at once, not retried
    # dicomweb-client 0.61 sends `Host: <host>` without the port on every non-streamed GET, so a
    # server builds its absolute BulkDataURIs for port 80. Send the full host:port, as browsers do.
    client.host = urlparse(args.url).netloc
    r = Report()

    check_searches(client, manifest, r)
    for e in manifest:
        check_retrieve(client, e, sources[e["path"]], r)
        if e["rows"] is not None:
            check_frames(client, e, sources[e["path"]], r)
    check_metadata(client, manifest, sources, args.url.rstrip("/"), r)

    print(f"\npydicom {pydicom.__version__}, dicomweb-client {sys.modules['dicomweb_client'].__version__}, "
          f"numpy {np.__version__}; {len(manifest)} samples against {args.url}")
    for group, (checked, failed) in r.counts.items():
        print(f"  {group:26} {checked - failed:4}/{checked} ok")
    if r.failures:
        print(f"\nFAILED: {len(r.failures)} mismatch(es):")
        for f in r.failures:
            print("  " + f.splitlines()[0])
        return 1
    print("\nOK: every check passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())

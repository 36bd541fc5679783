#!/usr/bin/env python3
"""Deterministic data for the two hospital PACS the pull-through tests run (tests/common/pacs.rs).

    python3 tests/pacs/make_pacs_data.py          # (re)writes tests/dicom-samples/pacs/
    python3 tests/pacs/make_pacs_data.py --check  # also verifies names, charsets and pixels

Hospital A (DCMTK dcmqrscp, AE HOSPA) gets uncompressed files only (dcmqrscp does not
transcode); hospital B (Orthanc, AE HOSPB) also gets JPEG 2000 lossless instances for C-GET.
Patient JP-0001 (the same ID and name as tests/dicom-samples/p1-ir87) has a different study at
each hospital: `\\ISO 2022 IR 87` at A, UTF-8 at B, so federated C-FIND meets both encodings.

The builders (phantoms, modules, fixed file meta, manifest entries) are the ones of
tests/dicom-samples/generate.py, imported from there: same UID scheme (2.25.<uuid5>), same
library versions, byte-identical output on every run.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pydicom
from pydicom.uid import ExplicitVRLittleEndian, JPEG2000Lossless

SAMPLES = Path(__file__).resolve().parents[1] / "dicom-samples"
OUT = SAMPLES / "pacs"

_spec = importlib.util.spec_from_file_location("generate", SAMPLES / "generate.py")
gen = importlib.util.module_from_spec(_spec)
sys.modules["generate"] = gen  # dataclasses look their module up there
_spec.loader.exec_module(gen)
gen.OUT = OUT  # gen.write() writes below gen.OUT

# --------------------------------------------------------------------------- patients, studies
PA2 = gen.Patient("pa2", ("", "ISO 2022 IR 87"), "Ito^Sakura=伊藤^さくら=いとう^さくら",
                  "JP-0005", "19900805", "F", "HOSPA")
# The same person as P1 (same ID, issuer and Unicode name), stored by hospital B in UTF-8.
PB1 = dataclasses.replace(gen.P1, key="pb1", charset=("ISO_IR 192",))
PB2 = gen.Patient("pb2", ("ISO_IR 192",), "Watanabe^Ken=渡辺^健=わたなべ^けん",
                  "JP-0006", "19781224", "M", "HOSPB")

SA1 = gen.Study("pacs/hospa/s1", gen.P1, "20240610", "101500", "HA0001", "胸部CT 経過観察",
                "Sato^Ichiro=佐藤^一郎=さとう^いちろう", "A1")
SA2 = gen.Study("pacs/hospa/s2", PA2, "20240611", "083000", "HA0002", "頭部MRI", "", "A2")
SB1 = gen.Study("pacs/hospb/s1", PB1, "20231120", "143000", "HB0001", "腹部CT",
                "Tanaka^Kenji=田中^健二=たなか^けんじ", "B1")
SB2 = gen.Study("pacs/hospb/s2", PB2, "20240105", "160500", "HB0002", "膝MRI", "", "B2")
gen.STUDIES.update({s.uid: s for s in (SA1, SA2, SB1, SB2)})  # gen.manifest_entry looks up here


def ct_series(study, key: str, number: int, count: int, description: str, rel: str,
              ts=ExplicitVRLittleEndian) -> list[dict]:
    """`count` 64x64 CT slices; compressed losslessly when `ts` is JPEG 2000."""
    out = []
    for k in range(count):
        ds = gen.ct_dataset(study, key, number, 64, k, count, description)
        if ts == JPEG2000Lossless:
            ds.compress(ts, gen.ct_phantom(64, k), encoding_plugin="pylibjpeg",
                        generate_instance_uid=False)
        out.append(gen.write(ds, f"{rel}-{k + 1:02d}.dcm", ts))
    return out


def mr_series(study, key: str, number: int, count: int, description: str, rel: str) -> list[dict]:
    return [gen.write(gen.mr_dataset(study, key, number, 64, k, description),
                      f"{rel}-{k + 1:02d}.dcm", ExplicitVRLittleEndian) for k in range(count)]


def build() -> list[dict]:
    return (ct_series(SA1, "ct", 1, 12, "Chest CT follow-up", "hospa/jp-0001/ct")
            + mr_series(SA2, "mr", 1, 3, "T1 SE axial", "hospa/jp-0005/mr")
            + ct_series(SB1, "ct", 1, 6, "Abdomen CT", "hospb/jp-0001/ct")
            + ct_series(SB1, "j2k", 2, 2, "Abdomen CT J2K", "hospb/jp-0001/j2k",
                        JPEG2000Lossless)
            + mr_series(SB2, "mr", 1, 3, "Knee MR", "hospb/jp-0006/mr"))


def check(manifest: list[dict]) -> None:
    for e in manifest:
        ds = pydicom.dcmread(OUT / e["path"])
        study = gen.STUDIES[ds.StudyInstanceUID]
        assert str(ds.PatientName) == e["patient_name"] == study.patient.name, e["path"]
        assert ds.StudyDescription == e["study_description"], e["path"]
        raw = pydicom.dcmread(OUT / e["path"]).get_item("PatientName").value.rstrip(b" ")
        if e["specific_character_set"] == "\\ISO 2022 IR 87":
            assert b"\x1b$B" in raw and raw.isascii(), e["path"]
        if e["patient_id"] == "JP-0001" and e["path"].startswith("hospa/"):
            assert raw == gen.PS35_H31, raw  # byte for byte the PS3.5 H.3.1 example
        if e["transfer_syntax"] == JPEG2000Lossless:
            k = int(ds.InstanceNumber) - 1
            assert np.array_equal(ds.pixel_array, gen.ct_phantom(64, k)), e["path"]
    assert not [e for e in manifest if e["path"].startswith("hospa/")
                and e["transfer_syntax"] != ExplicitVRLittleEndian], "dcmqrscp: uncompressed only"
    print(f"check: {len(manifest)} files OK")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="verify the written files")
    args = parser.parse_args()
    shutil.rmtree(OUT, ignore_errors=True)
    manifest = sorted(build(), key=lambda e: e["path"])
    text = json.dumps(manifest, ensure_ascii=False, indent=2) + "\n"
    (OUT / "manifest.json").write_text(text, encoding="utf-8")
    print(f"wrote {len(manifest)} files to {OUT}")
    if args.check:
        check(manifest)
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Deterministic 512x512 16-bit CT series for scripts/bench.sh (never committed).

    python3 benches/make_ct.py OUT_DIR [--slices 200]

Writes OUT_DIR/ct-001.dcm ... one Explicit VR Little Endian CT Image Storage instance per
slice (about 520 KB each), all in one study and series, and prints
"study=<uid> series=<uid> first_sop=<uid> files=<n> bytes=<total>" on stdout.

Determinism: UIDs are uuid5-derived (2.25.<int>), dates fixed, pixels are integer numpy
arithmetic plus noise from a seeded PCG64 generator, so a rerun writes identical files.
The header follows a typical CT slice (patient in Japanese with three PN groups, UTF-8).
"""

from __future__ import annotations

import argparse
import uuid
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import UID, CTImageStorage, ExplicitVRLittleEndian


def make_uid(name: str) -> UID:
    return UID(f"2.25.{uuid.uuid5(uuid.NAMESPACE_OID, 'tsunagi/bench/' + name).int}")


STUDY = make_uid("study")
SERIES = make_uid("series")
FOR = make_uid("frame-of-reference")
IMPL = make_uid("implementation")


def phantom(n: int, slices: int, rng: np.random.Generator) -> np.ndarray:
    """A body-like ellipse of soft tissue with lungs and a spine, air outside, HU - 1024."""
    yy, xx = np.mgrid[0:512, 0:512].astype(np.int32)
    cy, cx = 256, 256
    z = n - slices // 2
    a, b = 220 - abs(z) // 4, 160 - abs(z) // 6
    body = ((xx - cx) * b) ** 2 + ((yy - cy) * a) ** 2 < (a * b) ** 2
    lung_l = ((xx - 180) ** 2) * 4 + ((yy - 240) ** 2) * 2 < 70**2 * 4
    lung_r = ((xx - 332) ** 2) * 4 + ((yy - 240) ** 2) * 2 < 70**2 * 4
    spine = (xx - cx) ** 2 + (yy - 350) ** 2 < 22**2
    hu = np.full((512, 512), -1000, dtype=np.int32)
    hu[body] = 40
    hu[body & (lung_l | lung_r)] = -850
    hu[spine] = 700
    hu = hu + rng.integers(-20, 21, size=(512, 512), dtype=np.int32) * body
    return (hu + 1024).clip(0, 4095).astype(np.uint16)


def slice_dataset(n: int, slices: int, rng: np.random.Generator) -> Dataset:
    sop = make_uid(f"sop-{n}")
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = sop
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = IMPL
    meta.ImplementationVersionName = "TSUNAGI_BENCH"

    ds = Dataset()
    ds.file_meta = meta
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = sop
    for kw in ("StudyDate", "SeriesDate", "AcquisitionDate", "ContentDate"):
        setattr(ds, kw, "20240115")
    for kw in ("StudyTime", "SeriesTime", "AcquisitionTime", "ContentTime"):
        setattr(ds, kw, "101500")
    ds.AccessionNumber = "BENCH0001"
    ds.Modality = "CT"
    ds.Manufacturer = "ACME Medical"
    ds.InstitutionName = "つなぎ総合病院"
    ds.ReferringPhysicianName = "Tanaka^Ichirou=田中^一郎=たなか^いちろう"
    ds.StationName = "CT01"
    ds.StudyDescription = "胸部CT"
    code = Dataset()
    code.CodeValue = "ZCT01"
    code.CodingSchemeDesignator = "99LOCAL"
    code.CodeMeaning = "胸部CT"
    ds.ProcedureCodeSequence = Sequence([code])
    ds.SeriesDescription = "Axial 1.25mm"
    ds.ManufacturerModelName = "Synth 9000"
    ds.PatientName = "Yamada^Tarou=山田^太郎=やまだ^たろう"
    ds.PatientID = "BENCH-0001"
    ds.PatientBirthDate = "19700101"
    ds.PatientSex = "M"
    ds.PatientAge = "054Y"
    ds.BodyPartExamined = "CHEST"
    ds.SliceThickness = "1.25"
    ds.KVP = "120"
    ds.DataCollectionDiameter = "500"
    ds.SoftwareVersions = "synth-1.0"
    ds.ProtocolName = "CHEST ROUTINE"
    ds.ReconstructionDiameter = "350"
    ds.GantryDetectorTilt = "0"
    ds.TableHeight = "160"
    ds.RotationDirection = "CW"
    ds.ExposureTime = "500"
    ds.XRayTubeCurrent = "250"
    ds.ConvolutionKernel = "STANDARD"
    ds.PatientPosition = "HFS"
    ds.StudyInstanceUID = STUDY
    ds.SeriesInstanceUID = SERIES
    ds.StudyID = "1"
    ds.SeriesNumber = "2"
    ds.AcquisitionNumber = "1"
    ds.InstanceNumber = str(n + 1)
    z = f"{-125.0 + 1.25 * n:.2f}"
    ds.ImagePositionPatient = ["-175", "-175", z]
    ds.ImageOrientationPatient = ["1", "0", "0", "0", "1", "0"]
    ds.FrameOfReferenceUID = FOR
    ds.PositionReferenceIndicator = "SN"
    ds.SliceLocation = z
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = 512
    ds.Columns = 512
    ds.PixelSpacing = ["0.683594", "0.683594"]
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    ds.WindowCenter = ["40", "-600"]
    ds.WindowWidth = ["400", "1500"]
    ds.RescaleIntercept = "-1024"
    ds.RescaleSlope = "1"
    ds.RescaleType = "HU"
    ds.PixelData = phantom(n, slices, rng).tobytes()
    ds["PixelData"].VR = "OW"
    return ds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--slices", type=int, default=200)
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    rng = np.random.Generator(np.random.PCG64(20240115))
    total = 0
    first = None
    for n in range(args.slices):
        ds = slice_dataset(n, args.slices, rng)
        path = args.out / f"ct-{n + 1:03d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        total += path.stat().st_size
        first = first or ds.SOPInstanceUID
    print(f"study={STUDY} series={SERIES} first_sop={first} files={args.slices} bytes={total}")


if __name__ == "__main__":
    main()

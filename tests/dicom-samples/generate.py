#!/usr/bin/env python3
"""Deterministic generator for Tsunagi's synthetic DICOM test samples.

Every sample is synthetic: fixed UIDs (``2.25.<uuid5(NAMESPACE_OID, name)>``),
fixed dates, fixed file meta and pixel phantoms built from integer-only numpy
arithmetic (no randomness, no floating point), so that two runs - on any
machine with the same library versions - give byte-identical files.

    pip install pydicom==3.0.2 numpy==2.4.6 pylibjpeg==2.1.0 \
        pylibjpeg-openjpeg==2.6.0 pyjpegls==1.5.1   # versions the samples were made with
    python3 tests/dicom-samples/generate.py          # (re)writes samples + manifest.json
    python3 tests/dicom-samples/generate.py --check  # also verifies names/escapes/pixels

Output goes next to this script: one folder per patient and ``manifest.json``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import (
    UID,
    CTImageStorage,
    EncapsulatedPDFStorage,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGLSLossless,
    MRImageStorage,
    MultiFrameGrayscaleByteSecondaryCaptureImageStorage,
    MultiFrameGrayscaleWordSecondaryCaptureImageStorage,
    RLELossless,
    SecondaryCaptureImageStorage,
)

OUT = Path(__file__).resolve().parent
PATIENT_DIRS = ("p1-ir87", "p2-utf8", "p3-ir13-ir87", "p4-ir87-ir159")


def make_uid(name: str) -> UID:
    """Stable UID under the 2.25 (UUID-derived) root."""
    return UID(f"2.25.{uuid.uuid5(uuid.NAMESPACE_OID, 'tsunagi/dicom-samples/' + name).int}")


IMPLEMENTATION_CLASS_UID = make_uid("implementation")
IMPLEMENTATION_VERSION_NAME = "TSUNAGI_SAMPLES1"  # 16 chars, SH maximum


@dataclass(frozen=True)
class Patient:
    key: str
    charset: tuple[str, ...]
    name: str
    patient_id: str
    birth_date: str
    sex: str
    issuer: str = ""


@dataclass(frozen=True)
class Study:
    key: str
    patient: Patient
    date: str
    time: str
    accession: str
    description: str
    referring: str
    study_id: str

    @property
    def uid(self) -> UID:
        return make_uid(f"{self.key}/study")


P1 = Patient("p1", ("", "ISO 2022 IR 87"), "Yamada^Tarou=山田^太郎=やまだ^たろう",
             "JP-0001", "19700101", "M", "HOSPA")
P2 = Patient("p2", ("ISO_IR 192",), "Suzuki^Hanako=鈴木^花子=すずき^はなこ",
             "JP-0002", "19850312", "F", "HOSPA")
P3 = Patient("p3", ("ISO 2022 IR 13", "ISO 2022 IR 87"), "ﾔﾏﾀﾞ^ﾀﾛｳ=山田^太郎=やまだ^たろう",
             "JP-0003", "19620704", "M", "HOSPB")
# 鷗 (U+9DD7) exists only in JIS X 0212 -> ESC $ ( D; the other characters are JIS X 0208.
P4 = Patient("p4", ("", "ISO 2022 IR 87", "ISO 2022 IR 159"), "Mori^Ougai=森^鷗外=もり^おうがい",
             "JP-0004", "19550117", "M", "HOSPB")

S1 = Study("s1", P1, "20240115", "093000", "ACC0001", "胸部CT",
           "Sato^Ichiro=佐藤^一郎=さとう^いちろう", "1")
S2 = Study("s2", P2, "20240220", "141500", "ACC0002", "腹部検査 (画像一式)",
           "Tanaka^Kenji=田中^健二=たなか^けんじ", "2")
S3 = Study("s3", P3, "20240305", "101000", "ACC0003", "頭部CT",
           "Sato^Ichiro=佐藤^一郎=さとう^いちろう", "3")
S4 = Study("s4", P4, "20240410", "160000", "ACC0004", "外来画像",
           "", "4")
STUDIES = {s.uid: s for s in (S1, S2, S3, S4)}


# --------------------------------------------------------------------------- phantoms
def _grid(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Odd integer coordinates 2*i-(n-1): symmetric about the centre, range +-(n-1)."""
    ax = 2 * np.arange(n, dtype=np.int64) - (n - 1)
    return np.meshgrid(ax, ax, indexing="xy")


def _ellipse(x, y, n, cx, cy, a, b) -> np.ndarray:
    """Ellipse mask; centre/semi-axes are per-mille of the half width (exact integers)."""
    cx, cy, a, b = (n * v // 1000 for v in (cx, cy, a, b))
    dx, dy = x - cx, y - cy
    return dx * dx * b * b + dy * dy * a * a <= a * a * b * b


def ct_phantom(n: int, k: int) -> np.ndarray:
    """Chest-like CT slice k as stored int16 values (HU + 1024); -2000 outside the FOV."""
    x, y = _grid(n)
    hu = np.full((n, n), -1000, dtype=np.int64)  # air
    hu[_ellipse(x, y, n, 0, 0, 850, 650)] = 40  # body, soft tissue
    lung = 250 + 25 * min(k, 7 - k)  # lungs grow towards the mid slices
    hu[_ellipse(x, y, n, -380, -50, lung, 2 * lung)] = -820
    hu[_ellipse(x, y, n, 380, -50, lung, 2 * lung)] = -820
    hu[_ellipse(x, y, n, 100, 50, 220 - 10 * k, 180)] = 55  # heart
    hu[_ellipse(x, y, n, 0, 480, 110, 110)] = 700  # vertebra
    hu += ((x * 7 + y * 13 + k * 5) % 21) - 10  # small deterministic texture
    stored = hu + 1024
    stored[x * x + y * y > (n - 1) * (n - 1)] = -2000  # circular FOV padding
    return stored.astype(np.int16)


def mr_phantom(n: int, k: int) -> np.ndarray:
    """Head-like MR slice k, unsigned 12-bit values."""
    x, y = _grid(n)
    img = np.zeros((n, n), dtype=np.int64)
    img[_ellipse(x, y, n, 0, 0, 800, 900)] = 1200  # scalp
    brain = _ellipse(x, y, n, 0, 0, 700, 800)
    img[brain] = 1800 + ((x[brain] + y[brain] + 3 * k) % 64) * 8
    img[_ellipse(x, y, n, -150, 0, 90, 300 - 40 * k)] = 3600  # ventricles (CSF)
    img[_ellipse(x, y, n, 150, 0, 90, 300 - 40 * k)] = 3600
    return np.clip(img, 0, 4095).astype(np.uint16)


def cine_frames(n: int, frames: int) -> np.ndarray:
    """8-bit cine: a bright disc sliding left to right over a ramp background."""
    x, y = _grid(n)
    out = np.empty((frames, n, n), dtype=np.uint8)
    for f in range(frames):
        img = ((x + n) // 2 + (y + n) // 4) % 128
        cx = -700 + 150 * f
        img[_ellipse(x, y, n, cx, 0, 180, 180)] = 255
        out[f] = img
    return out


def word_frames(n: int, frames: int) -> np.ndarray:
    """16-bit frames exercising the full unsigned range (high and low bytes vary)."""
    x, y = _grid(n)
    i, j = (x + n - 1) // 2, (y + n - 1) // 2
    return np.stack([((i * 1000 + j * 37 + f * 5000) % 65536) for f in range(frames)]).astype(np.uint16)


def sc_pattern(n: int) -> np.ndarray:
    """8-bit checkerboard with a diagonal gradient."""
    x, y = _grid(n)
    i, j = (x + n - 1) // 2, (y + n - 1) // 2
    return np.where(((i // 8) + (j // 8)) % 2 == 0, (i + j) * 2, 255 - (i + j) * 2).astype(np.uint8)


def tiny_pdf() -> bytes:
    """A minimal, valid one-page PDF (correct xref offsets)."""
    content = b"BT /F1 14 Tf 20 50 Td (Tsunagi synthetic report - JP-0002) Tj ET"
    objs = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 420 100] /Contents 4 0 R"
        b" /Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d >>\nstream\n" % len(content) + content + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = b"%PDF-1.4\n"
    offsets = []
    for num, obj in enumerate(objs, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % num + obj + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objs) + 1)
    out += b"".join(b"%010d 00000 n \n" % off for off in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objs) + 1, xref)
    return out


# --------------------------------------------------------------------------- dataset helpers
def base_dataset(study: Study, series_key: str, series_number: int, modality: str,
                 series_description: str, sop_class: UID, instance: int) -> Dataset:
    """Patient, General Study, General Series, General Equipment and SOP Common modules."""
    p = study.patient
    ds = Dataset()
    ds.SpecificCharacterSet = list(p.charset) if len(p.charset) > 1 else p.charset[0]
    ds.InstanceCreationDate = study.date
    ds.InstanceCreationTime = study.time
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = make_uid(f"{study.key}/{series_key}/{instance}")
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = study.date
    ds.StudyTime = ds.SeriesTime = ds.ContentTime = study.time
    ds.AccessionNumber = study.accession
    ds.Modality = modality
    ds.Manufacturer = "Tsunagi"
    ds.InstitutionName = "Tsunagi Synthetic Hospital"
    ds.ReferringPhysicianName = study.referring
    ds.StudyDescription = study.description
    ds.SeriesDescription = series_description
    ds.ManufacturerModelName = "generate.py"
    ds.PatientName = p.name
    ds.PatientID = p.patient_id
    ds.IssuerOfPatientID = p.issuer
    ds.PatientBirthDate = p.birth_date
    ds.PatientSex = p.sex
    ds.StudyInstanceUID = study.uid
    ds.SeriesInstanceUID = make_uid(f"{study.key}/{series_key}/series")
    ds.StudyID = study.study_id
    ds.SeriesNumber = series_number
    ds.InstanceNumber = instance
    return ds


def set_pixels(ds: Dataset, arr: np.ndarray, bits_stored: int, signed: bool = False) -> None:
    """Image Pixel module for MONOCHROME2 data (arr is (rows, cols) or (frames, rows, cols))."""
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    if arr.ndim == 3:
        ds.NumberOfFrames = arr.shape[0]
    ds.Rows, ds.Columns = arr.shape[-2:]
    ds.BitsAllocated = arr.dtype.itemsize * 8
    ds.BitsStored = bits_stored
    ds.HighBit = bits_stored - 1
    ds.PixelRepresentation = 1 if signed else 0
    ds.PixelData = arr.astype(arr.dtype.newbyteorder("<")).tobytes()


def add_frame_of_reference(ds: Dataset, study: Study, key: str) -> None:
    ds.FrameOfReferenceUID = make_uid(f"{study.key}/{key}/for")
    ds.PositionReferenceIndicator = ""
    ds.PatientPosition = "HFS"


def add_sc_equipment(ds: Dataset, conversion: str = "WSD") -> None:
    ds.ConversionType = conversion


def write(ds: Dataset, rel: str, ts: UID) -> dict:
    """Attach fixed file meta, write `rel` and return its manifest entry."""
    meta = FileMetaDataset()
    meta.FileMetaInformationVersion = b"\x00\x01"
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = ts
    meta.ImplementationClassUID = IMPLEMENTATION_CLASS_UID
    meta.ImplementationVersionName = IMPLEMENTATION_VERSION_NAME
    ds.file_meta = meta
    path = OUT / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, implicit_vr=(ts == ImplicitVRLittleEndian), little_endian=True,
               enforce_file_format=True)
    return manifest_entry(rel, ds)


def manifest_entry(rel: str, ds: Dataset) -> dict:
    cs = ds.SpecificCharacterSet
    is_image = "PixelData" in ds
    study = STUDIES[ds.StudyInstanceUID]
    return {
        "path": rel,
        "patient_id": str(ds.PatientID),
        "patient_name": study.patient.name,
        "specific_character_set": cs if isinstance(cs, str) else "\\".join(cs),
        "study_uid": str(ds.StudyInstanceUID),
        "series_uid": str(ds.SeriesInstanceUID),
        "sop_instance_uid": str(ds.SOPInstanceUID),
        "sop_class_uid": str(ds.SOPClassUID),
        "modality": str(ds.Modality),
        "transfer_syntax": str(ds.file_meta.TransferSyntaxUID),
        "rows": int(ds.Rows) if is_image else None,
        "columns": int(ds.Columns) if is_image else None,
        "bits_allocated": int(ds.BitsAllocated) if is_image else None,
        "number_of_frames": int(ds.get("NumberOfFrames", 1)) if is_image else None,
        "study_date": str(ds.StudyDate),
        "study_description": study.description,
        "accession_number": str(ds.AccessionNumber),
    }


# --------------------------------------------------------------------------- samples
def ct_dataset(study: Study, series_key: str, series_number: int, n: int, k: int,
               slice_count: int, description: str) -> Dataset:
    """One CT Image Storage slice (uncompressed pixel data)."""
    ds = base_dataset(study, series_key, series_number, "CT", description, CTImageStorage, k + 1)
    add_frame_of_reference(ds, study, series_key)
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.AcquisitionNumber = 1
    ds.KVP = "120"
    ds.BodyPartExamined = "CHEST"
    spacing = 256 // n  # 256 mm field of view
    thickness = 5
    z = thickness * (2 * k - (slice_count - 1)) / 2  # centred on 0, e.g. -17.5 .. 17.5
    half = spacing * (n - 1) / 2
    ds.PatientOrientation = ""
    ds.ImagePositionPatient = [f"{-half:g}", f"{-half:g}", f"{z:g}"]
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.PixelSpacing = [spacing, spacing]
    ds.SliceThickness = thickness
    ds.SliceLocation = z
    set_pixels(ds, ct_phantom(n, k), 16, signed=True)
    ds.PixelPaddingValue = -2000
    ds.RescaleIntercept = -1024
    ds.RescaleSlope = 1
    ds.RescaleType = "HU"
    ds.WindowCenter = [40, -600]
    ds.WindowWidth = [400, 1500]
    ds.WindowCenterWidthExplanation = ["MEDIASTINUM", "LUNG"]
    return ds


def mr_dataset(study: Study, series_key: str, series_number: int, n: int, k: int,
               description: str) -> Dataset:
    """One MR Image Storage slice (12 of 16 bits used)."""
    ds = base_dataset(study, series_key, series_number, "MR", description, MRImageStorage, k + 1)
    add_frame_of_reference(ds, study, series_key)
    ds.ImageType = ["ORIGINAL", "PRIMARY", "OTHER"]
    ds.AcquisitionNumber = 1
    ds.ScanningSequence = "SE"
    ds.SequenceVariant = "NONE"
    ds.ScanOptions = ""
    ds.MRAcquisitionType = "2D"
    ds.RepetitionTime = 500
    ds.EchoTime = 15
    ds.EchoTrainLength = 1
    ds.MagneticFieldStrength = "1.5"
    ds.ImagedNucleus = "1H"
    ds.BodyPartExamined = "HEAD"
    ds.PatientOrientation = ""
    ds.ImagePositionPatient = [-126, -126, 10 * k - 15]
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.PixelSpacing = [4, 4]
    ds.SliceThickness = 10
    ds.SliceLocation = 10 * k - 15
    set_pixels(ds, mr_phantom(n, k), 12)
    ds.WindowCenter = 2048
    ds.WindowWidth = 4096
    return ds


def study1_ct() -> list[dict]:
    return [write(ct_dataset(S1, "ct", 1, 128, k, 8, "Chest CT 5mm"),
                  f"p1-ir87/ct/ct-{k + 1:02d}.dcm", ExplicitVRLittleEndian) for k in range(8)]


def study1_mr() -> list[dict]:
    return [write(mr_dataset(S1, "mr", 2, 64, k, "T1 SE axial"),
                  f"p1-ir87/mr/mr-{k + 1:02d}.dcm", ImplicitVRLittleEndian) for k in range(4)]


def sc_multiframe(study: Study, series_key: str, series_number: int, frames: np.ndarray,
                  sop_class: UID, description: str, bits_stored: int) -> Dataset:
    """Multi-frame Grayscale Byte/Word Secondary Capture with Cine timing."""
    ds = base_dataset(study, series_key, series_number, "OT", description, sop_class, 1)
    add_sc_equipment(ds)
    ds.ImageType = ["DERIVED", "SECONDARY"]
    ds.PatientOrientation = ""
    ds.BurnedInAnnotation = "NO"
    set_pixels(ds, frames, bits_stored)
    ds.FrameTime = 40
    ds.FrameIncrementPointer = pydicom.tag.Tag("FrameTime")
    ds.PresentationLUTShape = "IDENTITY"
    ds.BodyPartExamined = "ABDOMEN"
    ds.RescaleIntercept = 0
    ds.RescaleSlope = 1
    ds.RescaleType = "US"
    return ds


def study2_multiframe() -> list[dict]:
    ds = sc_multiframe(S2, "mf8", 1, cine_frames(64, 10),
                       MultiFrameGrayscaleByteSecondaryCaptureImageStorage, "Cine 8-bit", 8)
    return [write(ds, "p2-utf8/mf8-explicit.dcm", ExplicitVRLittleEndian)]


def study2_rle() -> list[dict]:
    frames = word_frames(64, 3)
    ds = sc_multiframe(S2, "rle", 2, frames,
                       MultiFrameGrayscaleWordSecondaryCaptureImageStorage, "Word SC RLE", 16)
    ds.compress(RLELossless, frames, encoding_plugin="pydicom", generate_instance_uid=False)
    return [write(ds, "p2-utf8/rle-3frames.dcm", RLELossless)]


def study2_j2k() -> list[dict]:
    # Same pixels as p1-ir87/ct/ct-04.dcm, so a decoder can be checked against it.
    ds = ct_dataset(S2, "j2k", 3, 128, 3, 8, "CT J2K lossless")
    ds.compress(JPEG2000Lossless, ct_phantom(128, 3), encoding_plugin="pylibjpeg",
                generate_instance_uid=False)
    return [write(ds, "p2-utf8/j2k-lossless-ct.dcm", JPEG2000Lossless)]


def study2_jls() -> list[dict]:
    # Same pixels as p1-ir87/mr/mr-02.dcm.
    ds = mr_dataset(S2, "jls", 4, 64, 1, "MR JPEG-LS lossless")
    ds.compress(JPEGLSLossless, mr_phantom(64, 1), encoding_plugin="pyjpegls",
                generate_instance_uid=False)
    return [write(ds, "p2-utf8/jls-lossless-mr.dcm", JPEGLSLossless)]


def study2_pdf() -> list[dict]:
    ds = base_dataset(S2, "pdf", 5, "DOC", "Report PDF", EncapsulatedPDFStorage, 1)
    add_sc_equipment(ds)
    del ds.InstitutionName
    ds.AcquisitionDateTime = S2.date + S2.time
    ds.BurnedInAnnotation = "YES"
    ds.DocumentTitle = "検査報告書"
    ds.ConceptNameCodeSequence = Sequence()
    pdf = tiny_pdf()
    ds.MIMETypeOfEncapsulatedDocument = "application/pdf"
    ds.EncapsulatedDocumentLength = len(pdf)
    ds.EncapsulatedDocument = pdf + (b"\x00" if len(pdf) % 2 else b"")
    return [write(ds, "p2-utf8/encapsulated-pdf.dcm", ExplicitVRLittleEndian)]


def study3_ct() -> list[dict]:
    ds = ct_dataset(S3, "ct", 1, 64, 4, 1, "Head CT")
    ds.BodyPartExamined = "HEAD"
    return [write(ds, "p3-ir13-ir87/ct-64.dcm", ExplicitVRLittleEndian)]


def study4_sc() -> list[dict]:
    ds = base_dataset(S4, "sc", 1, "OT", "Scanned page", SecondaryCaptureImageStorage, 1)
    add_sc_equipment(ds, "DF")
    ds.BodyPartExamined = "HEAD"
    ds.ImageType = ["DERIVED", "SECONDARY"]
    ds.PatientOrientation = ""
    set_pixels(ds, sc_pattern(64), 8)
    return [write(ds, "p4-ir87-ir159/sc-64.dcm", ExplicitVRLittleEndian)]


# --------------------------------------------------------------------------- verification
ESC = b"\x1b"
# Byte-exact PatientName encodings from DICOM PS3.5 Annex H (H.3.1 and H.3.2).
PS35_H31 = (b"Yamada^Tarou=\x1b$B;3ED\x1b(B^\x1b$BB@O:\x1b(B="
            b"\x1b$B$d$^$@\x1b(B^\x1b$B$?$m$&\x1b(B")
PS35_H32 = (b"\xd4\xcf\xc0\xde^\xc0\xdb\xb3=\x1b$B;3ED\x1b(J^\x1b$BB@O:\x1b(J="
            b"\x1b$B$d$^$@\x1b(J^\x1b$B$?$m$&\x1b(J")


def check(manifest: list[dict]) -> None:
    """Round-trip names, check ISO 2022 escape bytes and lossless pixel equality."""
    for entry in manifest:
        path = OUT / entry["path"]
        ds = pydicom.dcmread(path)
        study = STUDIES[ds.StudyInstanceUID]
        assert str(ds.PatientName) == entry["patient_name"] == study.patient.name, path
        assert str(ds.ReferringPhysicianName) == study.referring, path
        assert ds.StudyDescription == entry["study_description"], path
        assert ds.file_meta.TransferSyntaxUID == entry["transfer_syntax"], path
        raw = pydicom.dcmread(path).get_item("PatientName").value.rstrip(b" ")
        cs = entry["specific_character_set"]
        expected_raw = {
            "\\ISO 2022 IR 87": PS35_H31,
            "ISO 2022 IR 13\\ISO 2022 IR 87": PS35_H32,
            "ISO_IR 192": entry["patient_name"].encode("utf-8"),
        }.get(cs)
        if expected_raw is not None:
            assert raw == expected_raw, (path, raw)
        if "ISO 2022 IR 159" in cs:  # JIS X 0212 designated, never KS X 1001 etc.
            escapes = {raw[i:i + 4] if raw[i + 2:i + 3] == b"(" else raw[i:i + 3]
                       for i in range(len(raw)) if raw[i:i + 1] == ESC}
            assert escapes == {ESC + b"$B", ESC + b"(B", ESC + b"$(D"}, (path, raw)
        if "PixelData" in ds:
            arr = ds.pixel_array
            frames = entry["number_of_frames"]
            assert arr.shape[-2:] == (entry["rows"], entry["columns"]) and (
                frames == 1 or arr.shape[0] == frames), path
    by_path = {e["path"]: e for e in manifest}
    pairs = [("p2-utf8/j2k-lossless-ct.dcm", "p1-ir87/ct/ct-04.dcm"),
             ("p2-utf8/jls-lossless-mr.dcm", "p1-ir87/mr/mr-02.dcm")]
    for a, b in pairs:
        assert a in by_path and b in by_path
        assert np.array_equal(pydicom.dcmread(OUT / a).pixel_array, pydicom.dcmread(OUT / b).pixel_array), a
    assert np.array_equal(pydicom.dcmread(OUT / "p2-utf8/rle-3frames.dcm").pixel_array, word_frames(64, 3))
    pdf = pydicom.dcmread(OUT / "p2-utf8/encapsulated-pdf.dcm")
    assert pdf.EncapsulatedDocument[: pdf.EncapsulatedDocumentLength] == tiny_pdf()
    print(f"check: {len(manifest)} files OK")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="verify the written files")
    args = parser.parse_args()
    for d in PATIENT_DIRS:
        shutil.rmtree(OUT / d, ignore_errors=True)
    manifest: list[dict] = []
    for build in (study1_ct, study1_mr, study2_multiframe, study2_rle, study2_j2k,
                  study2_jls, study2_pdf, study3_ct, study4_sc):
        manifest += build()
    manifest.sort(key=lambda e: e["path"])
    text = json.dumps(manifest, ensure_ascii=False, indent=2) + "\n"
    (OUT / "manifest.json").write_text(text, encoding="utf-8")
    print(f"wrote {len(manifest)} files to {OUT}")
    if args.check:
        check(manifest)
    return 0


if __name__ == "__main__":
    sys.exit(main())

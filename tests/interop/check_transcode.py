#!/usr/bin/env python3
"""Interop check: on-the-fly transcoding and rendering, verified by independent decoders
(pydicom, pylibjpeg-openjpeg, pylibjpeg-libjpeg, pyjpegls, Pillow, numpy) against what a
DICOMweb server loaded with tests/dicom-samples serves.

It proves, for every image sample (uncompressed CT/MR, 8-bit multi-frame, RLE 16-bit 3 frames,
JPEG 2000 lossless, JPEG-LS lossless, the IR 13 / IR 159 samples), that

  * an instance asked for as `multipart/related; type="application/dicom"; transfer-syntax=TS`
    (PS3.18 §8.7.3.5) comes back as one `application/dicom; transfer-syntax=TS` part whose
    file meta says TS, whose pixel attributes and every other attribute are the source's, whose
    pixel data is encoded as TS says (encapsulated, one fragment set per frame, the right
    codestream markers: RLE segments, SOF3 predictor 1, SOF55 NEAR=0, HTJ2K CAP + reversible
    5-3, RPCL + TLM + base resolution <= 64 for .202), and whose pixels are bit-identical to
    the source's for the lossless targets (Explicit VR LE, RLE, JPEG Lossless SV1, JPEG-LS,
    HTJ2K, HTJ2K RPCL);
  * the lossy targets, asked for by name, are bounded and labelled: JPEG baseline for 8-bit
    samples (406 for 16-bit ones), JPEG-LS near-lossless with max error <= the codestream's
    NEAR, HTJ2K lossy within 5% of the frame's range, each with LossyImageCompression "01"
    and the right LossyImageCompressionMethod; JPEG 2000 (.90) is either produced losslessly
    or refused with 406 and a reason (both accepted, reported);
  * frames asked for as `type=application/octet-stream; transfer-syntax=TS` and as the
    single-frame media types image/jls, image/jphc and image/jpeg (.70) come back one part per
    frame in that syntax, each decoding on its own (the codec libraries directly for the
    single-frame media types) to the source frame;
  * a compressed stored instance asked for without a transfer-syntax comes back decompressed
    as Explicit VR LE, bit-identical;
  * a study asked for in HTJ2K carries every image in HTJ2K; the PDF, which no encapsulated
    syntax can carry, is either announced as missing (206 + Warning) or, when Explicit VR LE is
    acceptable too, sent in it;
  * impossible requests (transfer-syntax=1.2.3.4, type="image/gif") get 406 with a text body,
    and an Accept list is served in the most preferred syntax the server can produce (q-values,
    PS3.18 §8.7.8.1), whether the instance is stored native or compressed;
  * the stock dicomweb-client reads transcoded instances, frames and rendered images;
  * /rendered (instance and frame level; JPEG by default, PNG on request, window, viewport,
    quality) and /thumbnail (study, series, instance) give images of the right size (viewport:
    aspect ratio kept, fitted inside w x h) whose PNG pixels equal, within 1, an independent
    numpy Modality LUT (Rescale Slope/Intercept) + linear VOI window (PS3.3 C.11.2.1.2.1)
    of the source pixels (MONOCHROME1 inverted, if a sample had it).

    python3 check_transcode.py --url http://127.0.0.1:8080/dicom-web --samples tests/dicom-samples

Prints one line per failed check, notes (what was chosen, lossy errors), a summary per group;
exits 1 on any mismatch, 0 otherwise.
"""

import argparse
import contextlib
import io
import json
import sys
import traceback
from collections import defaultdict, namedtuple
from pathlib import Path
from urllib.parse import urlparse

import jpeg_ls
import libjpeg
import numpy as np
import openjpeg
import pydicom
import requests
from dicomweb_client import DICOMwebClient
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate, generate_frames

EXPLICIT_LE = "1.2.840.10008.1.2.1"
RLE = "1.2.840.10008.1.2.5"
JPEG_BASELINE = "1.2.840.10008.1.2.4.50"
JPEG_SV1 = "1.2.840.10008.1.2.4.70"
JLS_LOSSLESS = "1.2.840.10008.1.2.4.80"
JLS_NEAR = "1.2.840.10008.1.2.4.81"
J2K_LOSSLESS = "1.2.840.10008.1.2.4.90"
HTJ2K_LOSSLESS = "1.2.840.10008.1.2.4.201"
HTJ2K_RPCL = "1.2.840.10008.1.2.4.202"
HTJ2K_LOSSY = "1.2.840.10008.1.2.4.203"
J2K_FAMILY = {J2K_LOSSLESS, "1.2.840.10008.1.2.4.91", HTJ2K_LOSSLESS, HTJ2K_RPCL, HTJ2K_LOSSY}

LOSSLESS, LOSSY, OPTIONAL = "lossless", "lossy", "optional"
Target = namedtuple("Target", "uid name kind method")
TARGETS = [
    Target(EXPLICIT_LE, "Explicit VR LE", LOSSLESS, None),
    Target(RLE, "RLE Lossless", LOSSLESS, None),
    Target(JPEG_SV1, "JPEG Lossless SV1", LOSSLESS, None),
    Target(JLS_LOSSLESS, "JPEG-LS lossless", LOSSLESS, None),
    Target(HTJ2K_LOSSLESS, "HTJ2K lossless", LOSSLESS, None),
    Target(HTJ2K_RPCL, "HTJ2K RPCL lossless", LOSSLESS, None),
    Target(JPEG_BASELINE, "JPEG baseline", LOSSY, "ISO_10918_1"),
    Target(JLS_NEAR, "JPEG-LS near-lossless", LOSSY, "ISO_14495_1"),
    Target(HTJ2K_LOSSY, "HTJ2K lossy", LOSSY, "ISO_15444_15"),
    Target(J2K_LOSSLESS, "JPEG 2000 lossless", OPTIONAL, None),
]
# Single-frame media types for /frames: (type, transfer-syntax asked for or None, syntax expected).
SINGLE_FRAME_TYPES = [
    ("image/jls", None, JLS_LOSSLESS),
    ("image/jphc", None, HTJ2K_LOSSLESS),
    ("image/jpeg", JPEG_SV1, JPEG_SV1),
]

PIXEL_ATTRIBUTES = ("Rows", "Columns", "SamplesPerPixel", "BitsAllocated", "BitsStored", "HighBit",
                    "PixelRepresentation", "PhotometricInterpretation")
# What a lossy encoding may add or change besides the pixel data (PS3.3 C.7.6.1.1.5, C.7.6.1.1.2).
LOSSY_MAY_CHANGE = {"LossyImageCompression", "LossyImageCompressionRatio", "LossyImageCompressionMethod",
                    "ImageType", "DerivationDescription", "DerivationCodeSequence", "SourceImageSequence",
                    "SOPInstanceUID"}
ENCAPSULATION_MAY_ADD = {"ExtendedOffsetTable", "ExtendedOffsetTableLengths"}
LOSSY_MAX_FRACTION = 0.05  # HTJ2K lossy: max error <= 5% of the frame's value range
JPEG_MEAN_FRACTION = 0.02  # JPEG baseline: mean error <= 2% of the frame's value range


class Report:
    """Counts checks per group, keeps a message for each failure, and what is worth reading:
    notes (counted by key, the first message kept) and the worst value of each measure."""

    def __init__(self):
        self.counts = defaultdict(lambda: [0, 0])  # group -> [checked, failed]
        self.failures = []
        self.notes = defaultdict(dict)  # group -> {key: [count, first message]}
        self.worst = defaultdict(dict)  # group -> {measure: [worst value, where, count]}

    def check(self, group, ok, message):
        self.counts[group][0] += 1
        if not ok:
            self.counts[group][1] += 1
            self.failures.append(f"[{group}] {message}")
            print(f"FAIL [{group}] {message}", flush=True)
        return ok

    def note(self, group, key, message=None):
        entry = self.notes[group].setdefault(key, [0, message or key])
        entry[0] += 1

    def measure(self, group, name, value, where):
        entry = self.worst[group].setdefault(name, [value, where, 0])
        if value > entry[0]:
            entry[:2] = value, where
        entry[2] += 1

    @contextlib.contextmanager
    def guard(self, group, what):
        """An exception (HTTP error, decode error...) inside is one failed check."""
        try:
            yield
        except Exception as e:  # noqa: BLE001 - every error is a reported mismatch
            detail = f"{type(e).__name__}: {e}"
            if isinstance(e, requests.HTTPError) and e.response is not None:
                detail += f" -- body: {e.response.text[:300]!r}"
            elif not isinstance(e, (requests.RequestException, Unexpected)):
                detail += "\n" + "".join(traceback.format_exc(limit=-3))
            self.check(group, False, f"{what}: {detail}")


class Unexpected(Exception):
    """A response that is not what the contract says (status, media type, part count)."""


# --- HTTP and multipart ----------------------------------------------------------------------

class Server:
    """Plain HTTP to the DICOMweb root, Accept exactly as given, no retries."""

    def __init__(self, url):
        self.url = url.rstrip("/")
        self.http = requests.Session()  # requests' default adapter does not retry

    def get(self, path, accept=None, params=None):
        headers = {"Accept": accept} if accept is not None else {}
        return self.http.get(self.url + path, headers=headers, params=params, timeout=120)


def instance_path(e):
    return f"/studies/{e['study_uid']}/series/{e['series_uid']}/instances/{e['sop_instance_uid']}"


def parse_media_type(value):
    """`type/subtype; k=v; k="v"` as (lower-case type, {lower-case key: unquoted value})."""
    items, cur, quoted = [], "", False
    for c in value:
        if c == '"':
            quoted = not quoted
        if c == ";" and not quoted:
            items.append(cur)
            cur = ""
        else:
            cur += c
    items.append(cur)
    params = {}
    for p in items[1:]:
        if "=" in p:
            k, v = p.split("=", 1)
            params[k.strip().lower()] = v.strip().strip('"')
    return items[0].strip().lower(), params


def multipart_parts(resp):
    """The parts of a multipart/related response as [(Content-Type of the part, body)]."""
    ctype, params = parse_media_type(resp.headers.get("Content-Type", ""))
    if ctype != "multipart/related" or "boundary" not in params:
        raise Unexpected(f"Content-Type {resp.headers.get('Content-Type')!r} is not multipart/related with a boundary")
    body, delim = resp.content, b"--" + params["boundary"].encode()
    pos = body.find(delim)
    if pos < 0:
        raise Unexpected("no multipart delimiter in the body")
    pos += len(delim)
    parts = []
    while not body.startswith(b"--", pos):
        pos += 2  # CRLF after the delimiter
        end = body.find(b"\r\n\r\n", pos)
        if end < 0:
            raise Unexpected(f"part {len(parts) + 1}: no end of headers")
        headers = {}
        for line in body[pos:end].decode("latin-1").split("\r\n"):
            if ":" in line:
                k, v = line.split(":", 1)
                headers[k.strip().lower()] = v.strip()
        nxt = body.find(b"\r\n" + delim, end + 4)
        if nxt < 0:
            raise Unexpected(f"part {len(parts) + 1}: no closing delimiter")
        parts.append((headers.get("content-type", ""), body[end + 4:nxt]))
        pos = nxt + 2 + len(delim)
    return parts


def expect_200(resp, what):
    if resp.status_code != 200:
        raise Unexpected(f"{what}: HTTP {resp.status_code} {resp.headers.get('Content-Type', '')!r}, "
                         f"expected 200 -- body: {resp.text[:300]!r}")


def check_406(r, g, what, resp):
    """406 Not Acceptable with a human-readable text body."""
    ok = r.check(g, resp.status_code == 406, f"{what}: HTTP {resp.status_code}, expected 406 -- body: {resp.text[:200]!r}")
    if ok:
        ctype, _ = parse_media_type(resp.headers.get("Content-Type", ""))
        r.check(g, ctype.startswith("text/") and resp.text.strip() != "",
                f"{what}: 406 without a text body (Content-Type {ctype!r}, {len(resp.content)} bytes)")
    return ok


def check_part_type(r, g, what, part_ctype, media, ts):
    """A part's Content-Type names the media type and the transfer syntax of its bytes."""
    ptype, params = parse_media_type(part_ctype)
    r.check(g, ptype == media, f"{what}: part Content-Type {part_ctype!r}, expected {media}")
    r.check(g, params.get("transfer-syntax") == ts,
            f"{what}: part Content-Type {part_ctype!r} does not say transfer-syntax={ts}")


# --- pixels ----------------------------------------------------------------------------------

def n_frames(ds):
    return int(ds.get("NumberOfFrames", 1) or 1)


def source_frames(src):
    """The source's decoded frames, as int64 arrays (rows, columns[, samples])."""
    arr = src.pixel_array.astype(np.int64)
    return list(arr) if n_frames(src) > 1 else [arr]


def served_frames(ds):
    arr = ds.pixel_array.astype(np.int64)
    return list(arr) if n_frames(ds) > 1 else [arr]


def normalise(a, src):
    """Decoder output as the source's stored values: BitsStored bits, sign-extended if signed."""
    bits = int(src.BitsStored)
    a = np.asarray(a).astype(np.int64) & ((1 << bits) - 1)
    if src.PixelRepresentation == 1:
        a = np.where(a >= (1 << (bits - 1)), a - (1 << bits), a)
    return a.reshape(source_frames(src)[0].shape)


def wrap_frame(data, src, ts):
    """One served frame as a minimal data set with the source's pixel attributes, for pydicom."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ts
    for kw in PIXEL_ATTRIBUTES + ("PlanarConfiguration",):
        if kw in src:
            setattr(ds, kw, src.data_element(kw).value)
    ds.NumberOfFrames = 1
    if ts == EXPLICIT_LE:
        ds.PixelData = data
        ds["PixelData"].VR = "OW" if src.BitsAllocated > 8 else "OB"
    else:
        ds.PixelData = encapsulate([data])
        ds["PixelData"].VR = "OB"
    return ds.pixel_array.astype(np.int64)


def value_range(frame):
    return max(int(frame.max()) - int(frame.min()), 1)


def judge_pixels(r, g, what, target, got, want, near=None):
    """Lossless: bit-identical. Lossy: within the target's bound; the error is noted."""
    if got.shape != want.shape:
        return r.check(g, False, f"{what}: decoded shape {got.shape}, source {want.shape}")
    if target.kind != LOSSY:
        if np.array_equal(got, want):
            return r.check(g, True, "")
        first = tuple(int(i) for i in np.argwhere(got != want)[0])
        return r.check(g, False, f"{what}: {np.count_nonzero(got != want)} values differ, first at {first}: "
                                 f"served {got[first]}, source {want[first]}")
    err = np.abs(got - want)
    worst, mean, rng = int(err.max()), float(err.mean()), value_range(want)
    r.measure(g, "max error / frame range", worst / rng, f"{what} ({worst} of {rng})")
    r.measure(g, "mean error / frame range", mean / rng, f"{what} ({mean:.2f} of {rng})")
    if near is not None:
        r.note(g, f"NEAR {near}", f"codestream NEAR = {near}")
    if target.uid == JLS_NEAR:
        bound = near if near is not None else 3
        return r.check(g, worst <= bound, f"{what}: max error {worst} > NEAR {bound}")
    if target.uid == JPEG_BASELINE:
        return r.check(g, mean <= JPEG_MEAN_FRACTION * rng,
                       f"{what}: mean error {mean:.2f} > {JPEG_MEAN_FRACTION:.0%} of range {rng}")
    return r.check(g, worst <= LOSSY_MAX_FRACTION * rng,
                   f"{what}: max error {worst} > {LOSSY_MAX_FRACTION:.0%} of range {rng}")


# --- codestreams -----------------------------------------------------------------------------

def jpeg_segments(cs):
    """JPEG / JPEG-LS marker segments up to and including SOS: [(marker, payload)]."""
    if cs[:2] != b"\xff\xd8":
        raise Unexpected(f"codestream starts {cs[:4].hex()}, not with SOI")
    pos, out = 2, []
    while pos + 4 <= len(cs):
        if cs[pos] != 0xFF:
            raise Unexpected(f"no marker at byte {pos}")
        marker = cs[pos + 1]
        if marker == 0xFF:
            pos += 1
            continue
        length = int.from_bytes(cs[pos + 2:pos + 4], "big")
        out.append((marker, cs[pos + 4:pos + 2 + length]))
        pos += 2 + length
        if marker == 0xDA:
            return out
    raise Unexpected("no SOS marker")


def j2k_main_header(cs):
    """JPEG 2000 main header segments up to the first SOT: {marker: [payload, ...]}."""
    if cs[:2] != b"\xff\x4f":
        raise Unexpected(f"codestream starts {cs[:4].hex()}, not with SOC")
    pos, out = 2, defaultdict(list)
    while pos + 4 <= len(cs) and cs[pos:pos + 2] != b"\xff\x90":
        marker = int.from_bytes(cs[pos:pos + 2], "big")
        length = int.from_bytes(cs[pos + 2:pos + 4], "big")
        out[marker].append(cs[pos + 4:pos + 2 + length])
        pos += 2 + length
    return out


# Start-of-frame markers: SOF0..SOF15 (JPEG; C4, C8 and CC are DHT, JPG and DAC) and SOF55 (JPEG-LS).
SOF_MARKERS = set(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC} | {0xF7}


def jls_near(cs):
    """NEAR of a JPEG-LS codestream's first scan."""
    sos = [p for m, p in jpeg_segments(cs) if m == 0xDA][0]
    return sos[1 + 2 * sos[0]]


def check_codestream(r, g, what, cs, target, src):
    """The frame is encoded the way its transfer syntax says (markers and parameters)."""
    ts = target.uid
    if ts == RLE:
        segments = int.from_bytes(cs[:4], "little")
        want = src.SamplesPerPixel * src.BitsAllocated // 8
        r.check(g, segments == want, f"{what}: RLE header has {segments} segments, expected {want}")
    elif ts in (JPEG_SV1, JPEG_BASELINE, JLS_LOSSLESS, JLS_NEAR):
        segs = jpeg_segments(cs)
        sof_marker = {JPEG_SV1: 0xC3, JPEG_BASELINE: 0xC0, JLS_LOSSLESS: 0xF7, JLS_NEAR: 0xF7}[ts]
        sofs = [(m, p) for m, p in segs if m in SOF_MARKERS]
        if not r.check(g, [m for m, _ in sofs] == [sof_marker],
                       f"{what}: frame markers {[hex(m) for m, _ in sofs]}, expected SOF {hex(sof_marker)}"):
            return
        precision, sos = sofs[0][1][0], segs[-1][1]
        after = sos[1 + 2 * sos[0]:]  # Ss/NEAR, Se/ILV, Ah|Al
        if ts == JPEG_SV1:
            r.check(g, after[0] == 1 and after[2] & 0x0F == 0,
                    f"{what}: SOS predictor {after[0]}, point transform {after[2] & 0x0F}; SV1 needs 1 and 0")
        elif ts == JPEG_BASELINE:
            r.check(g, precision == 8, f"{what}: baseline JPEG with precision {precision}")
        elif ts == JLS_LOSSLESS:
            r.check(g, after[0] == 0, f"{what}: JPEG-LS lossless with NEAR={after[0]}")
        if ts != JPEG_BASELINE and precision != src.BitsStored:
            r.note(g, f"precision {precision} != BitsStored {src.BitsStored}", f"{what}: codestream precision {precision}, BitsStored {src.BitsStored}")
    elif ts in J2K_FAMILY:
        hdr = j2k_main_header(cs)
        siz, cod = hdr[0xFF51][0], hdr[0xFF52][0]
        rsiz, width, height = int.from_bytes(siz[0:2], "big"), int.from_bytes(siz[2:6], "big"), int.from_bytes(siz[6:10], "big")
        ssiz = siz[36]
        signed, precision = ssiz >> 7, (ssiz & 0x7F) + 1
        # pydicom silently repairs a sign mismatch; other decoders do not (PS3.5 §8.2.4: the
        # codestream's signedness is what Pixel Representation says).
        r.check(g, signed == src.PixelRepresentation,
                f"{what}: codestream {'signed' if signed else 'unsigned'}, PixelRepresentation {src.PixelRepresentation}")
        if precision != src.BitsStored:
            r.note(g, f"precision {precision} != BitsStored {src.BitsStored}", f"{what}: codestream precision {precision}, BitsStored {src.BitsStored}")
        progression, levels, cb_style, transform = cod[1], cod[5], cod[8], cod[9]
        ht = 0xFF50 in hdr and bool(rsiz & 0x4000)
        if ts in (HTJ2K_LOSSLESS, HTJ2K_RPCL, HTJ2K_LOSSY):
            r.check(g, ht and cb_style & 0x40, f"{what}: not an HTJ2K codestream (CAP {0xFF50 in hdr}, "
                                               f"Rsiz {rsiz:#06x}, code-block style {cb_style:#04x})")
        else:
            r.check(g, not ht, f"{what}: HTJ2K codestream (CAP marker) for JPEG 2000 Part 1 syntax {ts}")
        if target.kind != LOSSY:
            r.check(g, transform == 1, f"{what}: wavelet transform {transform}, lossless needs 1 (reversible 5-3)")
        if ts == HTJ2K_RPCL:  # PS3.5 §10.18
            r.check(g, progression == 2, f"{what}: progression order {progression}, .202 needs 2 (RPCL)")
            r.check(g, 0xFF55 in hdr, f"{what}: no TLM marker, .202 needs one")
            base = min(-(-width // (1 << levels)), -(-height // (1 << levels)))
            r.check(g, base <= 64, f"{what}: {levels} decompositions leave a {base}-pixel base resolution, .202 needs <= 64")


# --- the served data set ---------------------------------------------------------------------

def compare_attributes(r, g, what, ds, src, target):
    """Every attribute other than the pixel data is the source's (lossy: a known few may change)."""
    may_change = LOSSY_MAY_CHANGE if target.kind == LOSSY else set()
    may_add = may_change | (ENCAPSULATION_MAY_ADD if target.uid != EXPLICIT_LE else set())
    changed, missing, added = [], [], []
    for elem in src:
        if elem.tag.group == 0x0002 or elem.tag == 0x7FE00010 or elem.keyword in may_change:
            continue
        if elem.tag not in ds:
            missing.append(elem.keyword or str(elem.tag))
        elif not same_value(ds[elem.tag], elem):
            changed.append(elem.keyword or str(elem.tag))
    for elem in ds:
        if elem.tag not in src and elem.tag.group != 0x0002 and elem.keyword not in may_add:
            added.append(elem.keyword or str(elem.tag))
    r.check(g, not (changed or missing or added),
            f"{what}: attributes changed {changed}, missing {missing}, added {added}")
    for kw in sorted(may_change - {"LossyImageCompression", "LossyImageCompressionMethod", "LossyImageCompressionRatio"}):
        if kw in ds and (kw not in src or not same_value(ds[kw], src[kw])):
            r.note(g, f"{kw} changed", f"{what}: {kw} = {ds[kw].value!r}, source {src.get(kw)!r}")


def same_value(a, b):
    """Values equal, whatever VR an implicit-VR source was read with."""
    if a.VR == "SQ" or b.VR == "SQ":
        return len(a.value) == len(b.value) and all(
            all(t in y and same_value(y[t], x[t]) for t in x.keys()) and len(x) == len(y)
            for x, y in zip(b.value, a.value))
    return a.value == b.value


def check_dataset(r, g, what, ds, src, target):
    """A served data set in `target`: meta, attributes, encapsulation, codestreams, pixels."""
    if not r.check(g, ds.file_meta.TransferSyntaxUID == target.uid,
                   f"{what}: file meta TransferSyntaxUID {ds.file_meta.TransferSyntaxUID}, expected {target.uid}"):
        return
    for kw in PIXEL_ATTRIBUTES:
        r.check(g, ds.get(kw) == src.get(kw), f"{what}: {kw} {ds.get(kw)!r}, source {src.get(kw)!r}")
    r.check(g, n_frames(ds) == n_frames(src), f"{what}: NumberOfFrames {n_frames(ds)}, source {n_frames(src)}")
    compare_attributes(r, g, what, ds, src, target)
    if target.kind == LOSSY:
        r.check(g, ds.get("LossyImageCompression") == "01",
                f"{what}: LossyImageCompression {ds.get('LossyImageCompression')!r}, a lossy result needs '01'")
        methods = ds.get("LossyImageCompressionMethod")
        methods = list(methods) if isinstance(methods, (list, pydicom.multival.MultiValue)) else [methods]
        r.check(g, methods[-1] == target.method,
                f"{what}: LossyImageCompressionMethod {methods}, expected the last to be {target.method}")
        ratio = ds.get("LossyImageCompressionRatio")
        if ratio is not None:
            r.measure(g, "LossyImageCompressionRatio", float(ratio[-1] if isinstance(ratio, pydicom.multival.MultiValue) else ratio), what)
    else:
        r.check(g, ds.get("LossyImageCompression") in (None, "00"),
                f"{what}: LossyImageCompression {ds.get('LossyImageCompression')!r} for a lossless result")
    nears = [None] * n_frames(src)
    if target.uid != EXPLICIT_LE:
        codestreams = list(generate_frames(ds.PixelData, number_of_frames=n_frames(ds)))
        r.check(g, len(codestreams) == n_frames(src), f"{what}: {len(codestreams)} encapsulated frames, expected {n_frames(src)}")
        for i, cs in enumerate(codestreams, 1):
            check_codestream(r, g, f"{what} frame {i}", cs, target, src)
        if target.uid == JLS_NEAR:
            nears = [jls_near(cs) for cs in codestreams]
    for i, (got, want, near) in enumerate(zip(served_frames(ds), source_frames(src), nears), 1):
        judge_pixels(r, g, f"{what} frame {i}", target, got, want, near)


def expected_outcome(target, src):
    """'ok', '406' (the contract forbids it for this image) or 'either'."""
    if target.uid == JPEG_BASELINE and src.BitsAllocated != 8:
        return "406"
    return "either" if target.kind == OPTIONAL else "ok"


def settle_refusal(r, g, what, resp, target, src):
    """Handle the 406 cases; True when the response needs no further checks."""
    outcome = expected_outcome(target, src)
    if outcome == "406":
        check_406(r, g, what, resp)
        return True
    if outcome == "either" and resp.status_code == 406:
        if check_406(r, g, what, resp):
            r.note(g, "refused with 406", f"refused with 406, e.g. {what}: {resp.text.strip()[:200]!r}")
        return True
    if outcome == "either":
        how = "as stored" if src.file_meta.TransferSyntaxUID == target.uid else "by encoding"
        r.note(g, f"produced {how}", f"produced {how} (HTTP {resp.status_code}), e.g. {what}")
    return False


# --- groups ----------------------------------------------------------------------------------

def check_instance_targets(srv, e, src, r):
    """Instance retrieve in every target syntax (PS3.18 §8.7.3.5)."""
    for target in TARGETS:
        g = f"instance -> {target.name}"
        what = f"{e['path']} as {target.uid}"
        with r.guard(g, what):
            resp = srv.get(instance_path(e), f'multipart/related; type="application/dicom"; transfer-syntax={target.uid}')
            if settle_refusal(r, g, what, resp, target, src):
                continue
            expect_200(resp, what)
            parts = multipart_parts(resp)
            if not r.check(g, len(parts) == 1, f"{what}: {len(parts)} parts, expected 1"):
                continue
            check_part_type(r, g, what, parts[0][0], "application/dicom", target.uid)
            ds = pydicom.dcmread(io.BytesIO(parts[0][1]))
            check_dataset(r, g, what, ds, src, target)


def frame_numbers(src):
    n = n_frames(src)
    return sorted({1, min(2, n), n})


def check_frames_octet_stream(srv, e, src, r):
    """/frames/1,2,... as application/octet-stream in every target syntax, each part decoded alone."""
    numbers = frame_numbers(src)
    want = source_frames(src)
    path = f"{instance_path(e)}/frames/{','.join(map(str, numbers))}"
    for target in TARGETS:
        g = f"frames octet-stream -> {target.name}"
        what = f"{e['path']} frames {numbers} as {target.uid}"
        with r.guard(g, what):
            resp = srv.get(path, f"multipart/related; type=application/octet-stream; transfer-syntax={target.uid}")
            if settle_refusal(r, g, what, resp, target, src):
                continue
            expect_200(resp, what)
            parts = multipart_parts(resp)
            if not r.check(g, len(parts) == len(numbers), f"{what}: {len(parts)} parts, expected {len(numbers)}"):
                continue
            for n, (ctype, data) in zip(numbers, parts):
                fwhat = f"{e['path']} frame {n} as {target.uid}"
                check_part_type(r, g, fwhat, ctype, "application/octet-stream", target.uid)
                if target.uid != EXPLICIT_LE:
                    check_codestream(r, g, fwhat, data, target, src)
                near = jls_near(data) if target.uid == JLS_NEAR else None
                judge_pixels(r, g, fwhat, target, wrap_frame(data, src, target.uid), want[n - 1], near)


def decode_with_codec(media, data):
    """Decode a single-frame codestream with its codec library, not through pydicom."""
    if media == "image/jls":
        return jpeg_ls.decode(np.frombuffer(data, dtype=np.uint8))
    if media == "image/jphc":
        return openjpeg.decode(data)
    return libjpeg.decode(data)


def check_frames_single_frame_types(srv, e, src, r):
    """/frames as image/jls, image/jphc and image/jpeg (.70), decoded by the codec libraries."""
    numbers = frame_numbers(src)
    want = source_frames(src)
    path = f"{instance_path(e)}/frames/{','.join(map(str, numbers))}"
    for media, asked_ts, ts in SINGLE_FRAME_TYPES:
        g = f"frames {media}" + (f" ({asked_ts})" if asked_ts else "")
        accept = f'multipart/related; type="{media}"' + (f"; transfer-syntax={asked_ts}" if asked_ts else "")
        what = f"{e['path']} frames {numbers} as {accept!r}"
        target = next(t for t in TARGETS if t.uid == ts)
        with r.guard(g, what):
            resp = srv.get(path, accept)
            expect_200(resp, what)
            parts = multipart_parts(resp)
            if not r.check(g, len(parts) == len(numbers), f"{what}: {len(parts)} parts, expected {len(numbers)}"):
                continue
            for n, (ctype, data) in zip(numbers, parts):
                fwhat = f"{e['path']} frame {n} as {media}"
                check_part_type(r, g, fwhat, ctype, media, ts)
                check_codestream(r, g, fwhat, data, target, src)
                judge_pixels(r, g, fwhat, target, normalise(decode_with_codec(media, data), src), want[n - 1])


def check_default_decompressed(srv, e, src, r):
    """A compressed stored instance without transfer-syntax comes back as Explicit VR LE."""
    g = "default Accept -> Explicit VR LE"
    what = f"{e['path']} (stored {e['transfer_syntax']}) with no transfer-syntax"
    with r.guard(g, what):
        resp = srv.get(instance_path(e), 'multipart/related; type="application/dicom"')
        expect_200(resp, what)
        parts = multipart_parts(resp)
        if r.check(g, len(parts) == 1, f"{what}: {len(parts)} parts, expected 1"):
            check_part_type(r, g, what, parts[0][0], "application/dicom", EXPLICIT_LE)
            check_dataset(r, g, what, pydicom.dcmread(io.BytesIO(parts[0][1])), src, TARGETS[0])


def retrieve_datasets(resp):
    """The data sets of a multipart/related application/dicom response, with their part types."""
    return [(ctype, pydicom.dcmread(io.BytesIO(data))) for ctype, data in multipart_parts(resp)]


def check_study_retrieve(srv, manifest, sources, r):
    """Whole studies in HTJ2K. Alone, an instance without pixel data cannot be sent (PS3.5 A.4:
    encapsulated syntaxes need Pixel Data), so the answer must say it is partial (206 + Warning,
    PS3.18 Table 10.4.3-1); with Explicit VR LE as a second choice every instance comes, each
    part in the most preferred syntax it can have (PS3.18 §8.7.8.1)."""
    g = "study retrieve -> HTJ2K lossless"
    target = next(t for t in TARGETS if t.uid == HTJ2K_LOSSLESS)
    only = f'multipart/related; type="application/dicom"; transfer-syntax={HTJ2K_LOSSLESS}'
    with_fallback = f'{only}, multipart/related; type="application/dicom"; transfer-syntax={EXPLICIT_LE}; q=0.5'
    for study in sorted({e["study_uid"] for e in manifest}):
        members = {e["sop_instance_uid"]: e for e in manifest if e["study_uid"] == study}
        for label, accept in (("HTJ2K only", only), ("HTJ2K, else Explicit VR LE", with_fallback)):
            what = f"study {study} ({label})"
            with r.guard(g, what):
                resp = srv.get(f"/studies/{study}", accept)
                if resp.status_code not in (200, 206):
                    expect_200(resp, what)
                got = {ds.SOPInstanceUID: (ctype, ds) for ctype, ds in retrieve_datasets(resp)}
                omitted = sorted(members[u]["path"] for u in set(members) - set(got))
                r.check(g, set(got) <= set(members), f"{what}: unknown instances {sorted(set(got) - set(members))}")
                if label == "HTJ2K only":
                    r.check(g, all("PixelData" not in sources[members[u]["path"]] for u in set(members) - set(got)),
                            f"{what}: image instances omitted: {omitted}")
                    if omitted:
                        r.check(g, resp.status_code == 206 and "Warning" in resp.headers,
                                f"{what}: {omitted} omitted but HTTP {resp.status_code} (Warning: {resp.headers.get('Warning')!r}); "
                                "PS3.18 Table 10.4.3-1: 200 means every target resource is in the payload, 206 some")
                        r.note(g, "omitted", f"{what}: omitted {omitted}, HTTP {resp.status_code}, Warning {resp.headers.get('Warning')!r}")
                    else:
                        r.check(g, resp.status_code == 200, f"{what}: nothing omitted but HTTP {resp.status_code}")
                else:
                    r.check(g, not omitted and resp.status_code == 200, f"{what}: HTTP {resp.status_code}, omitted {omitted}")
                for uid, (ctype, ds) in got.items():
                    e = members.get(uid)
                    if e is None:
                        continue
                    src = sources[e["path"]]
                    pwhat = f"{what}: {e['path']}"
                    if "PixelData" in src:
                        check_part_type(r, g, pwhat, ctype, "application/dicom", HTJ2K_LOSSLESS)
                        check_dataset(r, g, pwhat, ds, src, target)
                    else:
                        if label == "HTJ2K only":
                            r.note(g, "sent unasked", f"{pwhat}: no pixel data, sent in {ctype!r} though only HTJ2K was acceptable")
                        check_part_type(r, g, pwhat, ctype, "application/dicom", EXPLICIT_LE)
                        r.check(g, ds.file_meta.TransferSyntaxUID == EXPLICIT_LE,
                                f"{pwhat}: no pixel data, sent as {ds.file_meta.TransferSyntaxUID}")
                        if "EncapsulatedDocument" in src:
                            r.check(g, ds.EncapsulatedDocument == src.EncapsulatedDocument, f"{pwhat}: document differs")


def check_negotiation(srv, manifest, sources, r):
    """Impossible requests get 406 with a reason; an Accept list is honoured by preference
    (q-values, PS3.18 §8.7.8.1 and RFC 7231 §5.3.1), falling back to what is possible."""
    g = "negotiation and 406"
    images = [e for e in manifest if e["rows"] is not None]
    mr = next(e for e in images if e["modality"] == "MR")
    inst, frames = instance_path(mr), f"{instance_path(mr)}/frames/1"
    refused = [
        ("instance", inst, 'multipart/related; type="application/dicom"; transfer-syntax=1.2.3.4'),
        ("instance", inst, 'multipart/related; type="image/gif"'),
        ("frames/1", frames, "multipart/related; type=application/octet-stream; transfer-syntax=1.2.3.4"),
        ("frames/1", frames, 'multipart/related; type="image/gif"'),
    ]
    for label, path, accept in refused:
        what = f"{mr['path']} {label} Accept {accept!r}"
        with r.guard(g, what):
            check_406(r, g, what, srv.get(path, accept))
    dicom = 'multipart/related; type="application/dicom"; transfer-syntax='
    # one sample per way of being stored: Explicit VR LE, Implicit VR LE, compressed
    stored_kinds = [next(e for e in images if e["transfer_syntax"] == ts) for ts in (EXPLICIT_LE, "1.2.840.10008.1.2", JLS_LOSSLESS)]
    stored_kinds[0] = next(e for e in images if e["transfer_syntax"] == EXPLICIT_LE and e["bits_allocated"] == 8)
    cases = [(mr, f"{dicom}1.2.3.4, {dicom}{HTJ2K_RPCL}; q=0.5", HTJ2K_RPCL)]
    for e in stored_kinds:
        stored = EXPLICIT_LE if e["transfer_syntax"] == "1.2.840.10008.1.2" else e["transfer_syntax"]
        cases.append((e, f"{dicom}{stored}; q=0.5, {dicom}{HTJ2K_RPCL}", HTJ2K_RPCL))
        cases.append((e, f"{dicom}{RLE}; q=0.4, {dicom}{stored}; q=0.9", stored))
    for e, accept, want in cases:
        what = f"{e['path']} (stored {e['transfer_syntax']}) Accept {accept!r}"
        with r.guard(g, what):
            resp = srv.get(instance_path(e), accept)
            expect_200(resp, what)
            parts = multipart_parts(resp)
            if r.check(g, len(parts) == 1, f"{what}: {len(parts)} parts, expected 1"):
                check_part_type(r, g, what, parts[0][0], "application/dicom", want)
                ds = pydicom.dcmread(io.BytesIO(parts[0][1]))
                check_dataset(r, g, what, ds, sources[e["path"]], next(t for t in TARGETS if t.uid == want))


def check_stock_client(client, e, src, r):
    """dicomweb-client (which knows no HTJ2K) asks for what it knows and gets it."""
    g = "dicomweb-client"
    uids = (e["study_uid"], e["series_uid"], e["sop_instance_uid"])
    for ts in (EXPLICIT_LE, RLE, JPEG_SV1, JLS_LOSSLESS):
        what = f"{e['path']} retrieve_instance as {ts}"
        with r.guard(g, what):
            ds = client.retrieve_instance(*uids, media_types=(("application/dicom", ts),))
            r.check(g, ds.file_meta.TransferSyntaxUID == ts, f"{what}: transfer syntax {ds.file_meta.TransferSyntaxUID}")
            r.check(g, np.array_equal(ds.pixel_array, src.pixel_array), f"{what}: pixel_array differs from the source")
    numbers = frame_numbers(src)
    for media, ts in (("image/jls", JLS_LOSSLESS), ("image/jpeg", JPEG_SV1)):
        what = f"{e['path']} retrieve_instance_frames {numbers} as {media} {ts}"
        with r.guard(g, what):
            got = client.retrieve_instance_frames(*uids, frame_numbers=numbers, media_types=((media, ts),))
            r.check(g, len(got) == len(numbers), f"{what}: {len(got)} frames, expected {len(numbers)}")
            for n, data in zip(numbers, got):
                r.check(g, np.array_equal(wrap_frame(data, src, ts), source_frames(src)[n - 1]), f"{what}: frame {n} differs")
    if n_frames(src) == 1:
        what = f"{e['path']} retrieve_instance_rendered image/png"
        with r.guard(g, what):
            png = client.retrieve_instance_rendered(*uids, media_types=("image/png",))
            img = Image.open(io.BytesIO(png))
            r.check(g, img.format == "PNG" and img.size == (src.Columns, src.Rows),
                    f"{what}: {img.format} {img.size}, expected PNG {(src.Columns, src.Rows)}")


# --- rendering -------------------------------------------------------------------------------

def header_window(src):
    """The first Window Center/Width of the header, or None."""
    if "WindowCenter" not in src or "WindowWidth" not in src:
        return None
    first = lambda v: float(v[0] if isinstance(v, pydicom.multival.MultiValue) else v)  # noqa: E731
    return first(src.WindowCenter), first(src.WindowWidth)


def modality_values(frame, src):
    """Modality LUT: stored values through Rescale Slope and Intercept (PS3.3 C.11.1)."""
    slope = float(src.get("RescaleSlope", 1) or 1)
    intercept = float(src.get("RescaleIntercept", 0) or 0)
    return frame.astype(np.float64) * slope + intercept


def expected_render(frame, src, center, width, ymax=255.0):
    """Linear VOI window of PS3.3 C.11.2.1.2.1 on the modality values, MONOCHROME1 inverted."""
    x = modality_values(frame, src)
    c, w = center, width
    y = ((x - (c - 0.5)) / (w - 1) + 0.5) * ymax
    y = np.where(x <= c - 0.5 - (w - 1) / 2, 0.0, np.where(x > c - 0.5 + (w - 1) / 2, ymax, y))
    if str(src.PhotometricInterpretation).strip() == "MONOCHROME1":
        y = ymax - y
    return y


def windows_for(src, frame):
    """The header's first window (if any) and one that clips both ends of this frame's values."""
    x = modality_values(frame, src)
    lo, hi = float(x.min()), float(x.max())
    out = [("clipping", (lo + hi) / 2, max((hi - lo) / 2, 2.0))]
    if header_window(src):
        out.insert(0, ("header", *header_window(src)))
    # the values exactly as sent in the query
    return [(label, float(fmt(c)), float(fmt(w))) for label, c, w in out]


def fmt(v):
    return f"{v:g}"


def open_image(resp, what, media):
    expect_200(resp, what)
    ctype, _ = parse_media_type(resp.headers.get("Content-Type", ""))
    if ctype != media:
        raise Unexpected(f"{what}: Content-Type {ctype!r}, expected {media}")
    img = Image.open(io.BytesIO(resp.content))
    img.load()
    return img


def check_png_pixels(r, g, what, img, frame, src, center, width):
    """An 8-bit (or 16-bit) grey PNG equals the independent rendering within 1."""
    if not r.check(g, img.mode in ("L", "I;16", "I"), f"{what}: PNG mode {img.mode}, expected grey"):
        return
    ymax = 255.0 if img.mode == "L" else 65535.0
    got = np.asarray(img).astype(np.float64)
    want = expected_render(frame, src, center, width, ymax)
    if not r.check(g, got.shape == want.shape, f"{what}: PNG {got.shape}, expected {want.shape}"):
        return
    diff = np.abs(got - want)
    worst = float(diff.max())
    r.check(g, worst <= 1.0, f"{what}: {int(np.count_nonzero(diff > 1))} pixels off by more than 1 "
                             f"(worst {worst:.1f} at {tuple(int(i) for i in np.argwhere(diff == diff.max())[0])})")


def check_fit(r, g, what, size, source_size, viewport):
    """Fitted inside the viewport, aspect ratio kept, touching it on one side (within 1 pixel)."""
    (w, h), (sw, sh), (vw, vh) = size, source_size, viewport
    scale = min(vw / sw, vh / sh)
    ew, eh = sw * scale, sh * scale
    r.check(g, w <= vw and h <= vh and abs(w - ew) <= 1 and abs(h - eh) <= 1,
            f"{what}: {w}x{h}, expected {ew:g}x{eh:g} (source {sw}x{sh} fitted into {vw}x{vh})")


def check_rendered_instance(srv, e, src, r):
    """/rendered of a single-frame instance: JPEG default, PNG pixels, window, viewport, quality."""
    g = "rendered instance"
    path = f"{instance_path(e)}/rendered"
    frame = source_frames(src)[0]
    size = (src.Columns, src.Rows)
    with r.guard(g, f"{e['path']} /rendered (Accept */*)"):
        img = open_image(srv.get(path), f"{e['path']} /rendered", "image/jpeg")
        r.check(g, img.format == "JPEG" and img.size == size, f"{e['path']} /rendered: {img.format} {img.size}, expected JPEG {size}")
    for label, c, w in windows_for(src, frame):
        what = f"{e['path']} /rendered PNG window={fmt(c)},{fmt(w)},linear ({label})"
        with r.guard(g, what):
            img = open_image(srv.get(path, "image/png", {"window": f"{fmt(c)},{fmt(w)},linear"}), what, "image/png")
            check_png_pixels(r, g, what, img, frame, src, c, w)
    if header_window(src):
        what = f"{e['path']} /rendered PNG, no window (header window {header_window(src)})"
        with r.guard(g, what):
            img = open_image(srv.get(path, "image/png"), what, "image/png")
            check_png_pixels(r, g, what, img, frame, src, *header_window(src))
    for vw, vh in ((size[0] // 2, size[1]), (size[0] * 2, size[1] // 4), (size[0] * 2, size[1] * 2)):
        what = f"{e['path']} /rendered viewport={vw},{vh}"
        with r.guard(g, what):
            img = open_image(srv.get(path, "image/png", {"viewport": f"{vw},{vh}"}), what, "image/png")
            check_fit(r, g, what, img.size, size, (vw, vh))
    what = f"{e['path']} /rendered JPEG quality=10 vs 95"
    with r.guard(g, what):
        c, w = windows_for(src, frame)[0][1:]
        params = {"window": f"{fmt(c)},{fmt(w)},linear"}
        low = srv.get(path, "image/jpeg", {**params, "quality": "10"})
        high = srv.get(path, "image/jpeg", {**params, "quality": "95"})
        images = [open_image(resp, f"{what} ({q})", "image/jpeg") for resp, q in ((low, 10), (high, 95))]
        r.check(g, all(i.size == size for i in images), f"{what}: sizes {[i.size for i in images]}, expected {size}")
        r.check(g, len(low.content) < len(high.content), f"{what}: quality=10 is {len(low.content)} bytes, quality=95 {len(high.content)}")
        err = np.abs(np.asarray(images[1].convert("L")).astype(np.float64) - expected_render(frame, src, c, w))
        r.measure(g, "JPEG quality=95 mean grey-level error", float(err.mean()), e["path"])
        r.check(g, err.mean() <= 4.0, f"{what}: quality=95 image is {err.mean():.1f} grey levels off on average")


def check_rendered_frames(srv, e, src, r):
    """/frames/{n}/rendered as PNG with a window equals the independent rendering of frame n."""
    g = "rendered frames"
    frames = source_frames(src)
    for n in frame_numbers(src):
        path = f"{instance_path(e)}/frames/{n}/rendered"
        for label, c, w in windows_for(src, frames[n - 1]):
            what = f"{e['path']} /frames/{n}/rendered PNG window={fmt(c)},{fmt(w)},linear ({label})"
            with r.guard(g, what):
                img = open_image(srv.get(path, "image/png", {"window": f"{fmt(c)},{fmt(w)},linear"}), what, "image/png")
                check_png_pixels(r, g, what, img, frames[n - 1], src, c, w)
        what = f"{e['path']} /frames/{n}/rendered (Accept */*) viewport=32,32"
        with r.guard(g, what):
            img = open_image(srv.get(path, None, {"viewport": "32,32"}), what, "image/jpeg")
            check_fit(r, g, what, img.size, (src.Columns, src.Rows), (32, 32))
    if n_frames(src) > 1:
        what = f"{e['path']} (multi-frame) /rendered as image/jpeg"
        with r.guard(g, what):
            resp = srv.get(f"{instance_path(e)}/rendered", "image/jpeg")
            r.note(g, f"{what}: HTTP {resp.status_code} {resp.headers.get('Content-Type')}")


def check_thumbnails(srv, manifest, sources, r):
    """Sup 203 /thumbnail at study, series and instance level: an image, fitted to a viewport."""
    g = "thumbnail"
    image_entries = [e for e in manifest if e["rows"] is not None]
    targets = []
    for study in sorted({e["study_uid"] for e in manifest}):
        targets.append((f"study {study}", f"/studies/{study}", None))
    for series in sorted({(e["study_uid"], e["series_uid"]) for e in manifest}):
        members = [e for e in manifest if (e["study_uid"], e["series_uid"]) == series]
        images = [e for e in members if e["rows"] is not None]
        targets.append((f"series {series[1]}", f"/studies/{series[0]}/series/{series[1]}", images[0] if images else "none"))
    for e in image_entries:
        targets.append((f"instance {e['path']}", instance_path(e), e))
    for label, path, e in targets:
        if e == "none":
            with r.guard(g, f"{label} (no image) /thumbnail"):
                resp = srv.get(f"{path}/thumbnail")
                r.note(g, f"{label} (no image) /thumbnail: HTTP {resp.status_code} {resp.headers.get('Content-Type')}")
            continue
        what = f"{label} /thumbnail"
        with r.guard(g, what):
            img = open_image(srv.get(f"{path}/thumbnail"), what, "image/jpeg")
            r.check(g, img.format == "JPEG" and min(img.size) > 0, f"{what}: {img.format} {img.size}")
            if e is not None:
                src = sources[e["path"]]
                ratio, want = img.size[0] / img.size[1], src.Columns / src.Rows
                r.check(g, abs(ratio - want) <= 0.05, f"{what}: {img.size} does not keep the {src.Columns}x{src.Rows} aspect ratio")
        what = f"{label} /thumbnail image/png viewport=32,32"
        with r.guard(g, what):
            img = open_image(srv.get(f"{path}/thumbnail", "image/png", {"viewport": "32,32"}), what, "image/png")
            if e is not None:
                src = sources[e["path"]]
                check_fit(r, g, what, img.size, (src.Columns, src.Rows), (32, 32))
            else:
                r.check(g, max(img.size) <= 32 and max(img.size) >= 31, f"{what}: {img.size} does not fit 32x32")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--url", required=True, help="DICOMweb root, e.g. http://127.0.0.1:8080/dicom-web")
    ap.add_argument("--samples", required=True, type=Path, help="folder with manifest.json and the files")
    args = ap.parse_args()
    manifest = json.loads((args.samples / "manifest.json").read_text(encoding="utf-8"))
    sources = {e["path"]: pydicom.dcmread(args.samples / e["path"]) for e in manifest}
    images = [e for e in manifest if e["rows"] is not None]
    srv = Server(args.url)
    client = DICOMwebClient(args.url.rstrip("/"), timeout=120)
    client.set_http_retry_params(retry=False)  # a failure is reported at once, not retried
    # dicomweb-client 0.61 sends `Host: <host>` without the port on every non-streamed GET.
    client.host = urlparse(args.url).netloc
    r = Report()

    for e in images:
        src = sources[e["path"]]
        check_instance_targets(srv, e, src, r)
        check_frames_octet_stream(srv, e, src, r)
        check_frames_single_frame_types(srv, e, src, r)
        if src.file_meta.TransferSyntaxUID.is_compressed:
            check_default_decompressed(srv, e, src, r)
        check_stock_client(client, e, src, r)
    check_study_retrieve(srv, manifest, sources, r)
    check_negotiation(srv, manifest, sources, r)
    monochrome1 = [e["path"] for e in images if str(sources[e["path"]].PhotometricInterpretation).strip() == "MONOCHROME1"]
    r.note("rendered instance", f"MONOCHROME1 samples (inversion checked): {monochrome1 or 'none, inversion not exercised'}")
    for e in images:
        if n_frames(sources[e["path"]]) == 1:
            check_rendered_instance(srv, e, sources[e["path"]], r)
        check_rendered_frames(srv, e, sources[e["path"]], r)
    check_thumbnails(srv, manifest, sources, r)

    print(f"\npydicom {pydicom.__version__}, pylibjpeg-openjpeg {openjpeg.__version__}, pylibjpeg-libjpeg "
          f"{libjpeg.__version__}, pyjpegls {jpeg_ls.__version__}, Pillow {Image.__version__}, numpy {np.__version__}; "
          f"{len(images)} image samples against {args.url}")
    for group in list(dict.fromkeys(list(r.notes) + list(r.worst))):
        print(f"\n[{group}]")
        for count, message in r.notes[group].values():
            print(f"  {message}" + (f" (x{count})" if count > 1 else ""))
        for name, (value, where, count) in r.worst[group].items():
            print(f"  worst {name}: {value:.4g} at {where} ({count} measured)")
    print()
    for group, (checked, failed) in r.counts.items():
        print(f"  {'FAIL' if failed else 'ok  '} {group:46} {checked - failed:5}/{checked}")
    if r.failures:
        print(f"\nFAILED: {len(r.failures)} mismatch(es):")
        for f in r.failures[:60]:
            print("  " + f.splitlines()[0])
        if len(r.failures) > 60:
            print(f"  ... and {len(r.failures) - 60} more (each printed above as FAIL)")
        return 1
    print("\nOK: every check passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())

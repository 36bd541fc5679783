#!/usr/bin/env python3
"""A viewer opening one CT series over DICOMweb, for scripts/bench-link.sh (run that).

    viewer.py --base URL --study UID --mode MODE [--expect FILE] [--save DIR] [--probe]

Does what a browser running OHIF does, on HTTP/1.1 with keep-alive and at most --workers
(6) connections, sending `Accept-Encoding: gzip` (a browser also offers deflate, br, zstd):

  1. GET {base}/studies?limit=101&offset=0&fuzzymatching=true&includefield=...&StudyInstanceUID=S
  2. GET {base}/studies/S/series?includefield=...
  3. GET {base}/studies/S/series/SE/metadata (application/dicom+json), slices ordered by
     InstanceNumber
  4. the frames, with --workers connections taking jobs from one queue in slice order:

  stored       frames/1, `multipart/related; type=application/octet-stream; transfer-syntax=*`
               (OHIF's default): usable and full when the frame has arrived
  htj2k        frames/1, the same with `transfer-syntax=1.2.840.10008.1.2.4.201` (lossless
               HTJ2K): usable and full when the frame has arrived
  progressive  frames/1, `image/jphc; transfer-syntax=1.2.840.10008.1.2.4.202` (HTJ2K RPCL)
               with `Range: bytes=0-{K-1}` for every slice (usable: a low resolution), then
               `Range: bytes=K-` for every slice (full)
  preview      frames/1/rendered (`image/jpeg`; --preview-query, by default the header's first
               VOI window from the metadata as `window=C,W,linear`) for every slice (usable),
               then frames/1 as in `stored` (full)

Timing starts before the QIDO request. Prints one JSON object: first_usable_s (the first
image a viewer can display), all_usable_s (every slice displayable, at some fidelity),
all_full_s (every frame at full fidelity), metadata_s,
rx_bytes (every byte read from the sockets: response heads and bodies as sent, i.e.
compressed and with chunked framing), tx_bytes, requests, connections, per-kind counts and
bytes, and `errors` (empty when every answer was what the mode asks for; each frame's pixels
are checked against --expect's SHA-1 when the server sent them uncompressed).

--save DIR writes the middle slice's codestream (htj2k: full.j2k; progressive: prefix.j2k and
full.j2k) for the caller's decoding check. --probe makes only the mode's first frame request
(of the first slice of --expect) and prints its status and the reason when it is unusable.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import queue
import re
import socket
import sys
import threading
import time
import urllib.parse
import zlib

FRAME_STORED = "multipart/related; type=application/octet-stream; transfer-syntax=*"
FRAME_HTJ2K = "multipart/related; type=application/octet-stream; transfer-syntax=1.2.840.10008.1.2.4.201"
FRAME_RPCL = "image/jphc; transfer-syntax=1.2.840.10008.1.2.4.202"
JSON = "application/dicom+json"
SOC = b"\xff\x4f\xff\x51"  # JPEG 2000 codestream: SOC then SIZ
STUDY_FIELDS = "00081030%2C00080060%2C00080090%2C00100030"
SERIES_FIELDS = "00080021%2C00080031%2C0008103E%2C00200011"


class HttpError(Exception):
    pass


class Response:
    def __init__(self) -> None:
        self.status = 0
        self.headers: dict[str, str] = {}
        self.body = b""  # as sent (still compressed)
        self.rx = 0  # socket bytes of this response: head + body with its framing
        self.t_done = 0.0

    def header(self, name: str, default: str = "") -> str:
        return self.headers.get(name.lower(), default)

    def decoded(self) -> bytes:
        enc = self.header("content-encoding").strip().lower()
        if enc in ("", "identity"):
            return self.body
        if enc == "gzip":
            return gzip.decompress(self.body)
        if enc == "deflate":
            return zlib.decompress(self.body)
        raise HttpError(f"unexpected Content-Encoding {enc!r}")


class Conn:
    """One keep-alive HTTP/1.1 connection on a plain socket, counting every byte."""

    def __init__(self, host: str, port: int, t0: float, timeout: float) -> None:
        self.host, self.port, self.t0, self.timeout = host, port, t0, timeout
        self.sock: socket.socket | None = None
        self.buf = bytearray()
        self.rx = self.tx = 0
        self.opened = 0

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
        self.sock = None
        self.buf.clear()

    def _fill(self) -> bool:
        data = self.sock.recv(256 * 1024)
        if not data:
            return False
        self.rx += len(data)
        self.buf += data
        return True

    def _take(self, n: int) -> bytes:
        while len(self.buf) < n:
            if not self._fill():
                raise HttpError("connection closed in the body")
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    def _line(self) -> bytes:
        while True:
            i = self.buf.find(b"\r\n")
            if i >= 0:
                out = bytes(self.buf[:i])
                del self.buf[: i + 2]
                return out
            if not self._fill():
                raise HttpError("connection closed in a line")

    def get(self, path: str, headers: dict[str, str]) -> Response:
        for attempt in (1, 2):
            fresh = self.sock is None
            if fresh:
                self.sock = socket.create_connection((self.host, self.port), timeout=self.timeout)
                self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                self.opened += 1
            try:
                return self._exchange(path, headers)
            except (HttpError, OSError):
                # a keep-alive connection the server closed while idle: once more, fresh
                self.close()
                if fresh or attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def _exchange(self, path: str, headers: dict[str, str]) -> Response:
        lines = [f"GET {path} HTTP/1.1", f"Host: {self.host}:{self.port}",
                 "Connection: keep-alive", "User-Agent: tsunagi-bench-link/1"]
        lines += [f"{k}: {v}" for k, v in headers.items()]
        req = ("\r\n".join(lines) + "\r\n\r\n").encode()
        self.sock.sendall(req)
        self.tx += len(req)
        rx0 = self.rx - len(self.buf)  # bytes already buffered belong to this response
        r = Response()
        status = self._line()
        m = re.match(rb"HTTP/1\.[01] (\d{3})", status)
        if not m:
            raise HttpError(f"bad status line {status[:80]!r}")
        r.status = int(m.group(1))
        while True:
            line = self._line()
            if not line:
                break
            k, _, v = line.decode("latin-1").partition(":")
            k = k.strip().lower()
            r.headers[k] = f"{r.headers[k]}, {v.strip()}" if k in r.headers else v.strip()
        te = r.header("transfer-encoding").lower()
        if "chunked" in te:
            parts = []
            while True:
                size = int(self._line().split(b";")[0].strip(), 16)
                if size == 0:
                    while self._line():  # trailers
                        pass
                    break
                parts.append(self._take(size))
                self._take(2)
            r.body = b"".join(parts)
        elif "content-length" in r.headers:
            r.body = self._take(int(r.header("content-length")))
        elif r.status in (204, 304):
            r.body = b""
        else:
            while self._fill():
                pass
            r.body = bytes(self.buf)
            self.buf.clear()
            self.close()
        r.rx = self.rx - len(self.buf) - rx0
        r.t_done = time.perf_counter() - self.t0
        if r.header("connection").lower() == "close":
            self.close()
        return r


def boundary_of(content_type: str) -> bytes | None:
    for param in content_type.split(";")[1:]:
        k, _, v = param.strip().partition("=")
        if k.strip().lower() == "boundary":
            return v.strip().strip('"').encode()
    return None


def first_part(resp: Response) -> tuple[str, bytes]:
    """(part Content-Type, payload) of a multipart/related answer."""
    body = resp.decoded()
    b = boundary_of(resp.header("content-type"))
    if b is None:
        raise HttpError(f"not multipart: {resp.header('content-type')!r}")
    delim = b"--" + b
    start = body.find(delim)
    head_end = body.find(b"\r\n\r\n", start)
    if start < 0 or head_end < 0:
        raise HttpError("no part in the multipart body")
    ctype = ""
    for line in body[start + len(delim):head_end].split(b"\r\n"):
        k, _, v = line.decode("latin-1").partition(":")
        if k.strip().lower() == "content-type":
            ctype = v.strip()
    end = body.find(b"\r\n" + delim, head_end + 4)
    if end < 0:
        raise HttpError("the part is not terminated")
    return ctype, body[head_end + 4:end]


def describe(resp: Response) -> str:
    text = resp.decoded()[:300].decode("utf-8", "replace") if resp.body else ""
    detail = re.search(r'"Details"\s*:\s*"([^"]*)"', text)
    text = detail.group(1) if detail else " ".join(text.split())[:200]
    ctype = resp.header("content-type")
    return f"HTTP {resp.status}" + (f" ({ctype})" if ctype else "") + (f": {text}" if text else "")


class Viewer:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        u = urllib.parse.urlsplit(args.base)
        self.host, self.port, self.root = u.hostname, u.port or 80, u.path.rstrip("/")
        self.t0 = time.perf_counter()
        self.conns = [Conn(self.host, self.port, self.t0, args.timeout) for _ in range(args.workers)]
        self.expect = json.load(open(args.expect)) if args.expect else {}
        self.lock = threading.Lock()
        self.errors: list[str] = []
        self.kinds: dict[str, dict] = {}
        self.usable: dict[str, float] = {}  # sop -> time its first displayable image arrived
        self.full: dict[str, float] = {}  # sop -> time at full fidelity
        self.saved: dict[str, bytes] = {}
        self.prefix_total: dict[str, int] = {}
        self.save_sop = ""
        self.windows: dict[str, str] = {}

    def error(self, msg: str) -> None:
        with self.lock:
            if len(self.errors) < 20:
                self.errors.append(msg)

    def count(self, kind: str, r: Response, took: float = 0.0) -> None:
        with self.lock:
            k = self.kinds.setdefault(kind, {"n": 0, "rx": 0, "body": 0, "statuses": {}, "seconds": 0.0})
            k["n"] += 1
            k["seconds"] += took  # request sent .. response complete, summed
            k["rx"] += r.rx
            k["body"] += len(r.body)
            k["statuses"][str(r.status)] = k["statuses"].get(str(r.status), 0) + 1

    def json_get(self, conn: Conn, path: str, kind: str):
        r = conn.get(self.root + path, {"Accept": JSON, "Accept-Encoding": "gzip"})
        self.count(kind, r)
        if r.status != 200:
            raise HttpError(f"{kind}: {describe(r)}")
        return json.loads(r.decoded())

    # -------------------------------------------------------------- the series

    def open_series(self) -> list[str]:
        a = self.args
        c = self.conns[0]
        studies = self.json_get(c, f"/studies?limit=101&offset=0&fuzzymatching=true&includefield="
                                   f"{STUDY_FIELDS}&StudyInstanceUID={a.study}", "qido-studies")
        if len(studies) != 1:
            raise HttpError(f"QIDO found {len(studies)} studies")
        series = self.json_get(c, f"/studies/{a.study}/series?includefield={SERIES_FIELDS}",
                               "qido-series")
        uids = [s["0020000E"]["Value"][0] for s in series]
        if len(uids) != 1:
            raise HttpError(f"QIDO found {len(uids)} series")
        self.series = uids[0]
        meta = self.json_get(c, f"/studies/{a.study}/series/{self.series}/metadata", "metadata")
        self.metadata_s = time.perf_counter() - self.t0

        def number(ds: dict) -> int:
            v = ds.get("00200013", {}).get("Value", [0])[0]
            return int(v)

        meta.sort(key=number)
        self.windows = {}  # sop -> "center,width" from the header, for the rendered preview
        for ds in meta:
            c, w = ds.get("00281050", {}).get("Value"), ds.get("00281051", {}).get("Value")
            if c and w:
                self.windows[ds["00080018"]["Value"][0]] = f"{float(c[0]):g},{float(w[0]):g}"
        return [ds["00080018"]["Value"][0] for ds in meta]

    def frame_path(self, sop: str, rendered: bool = False) -> str:
        p = f"{self.root}/studies/{self.args.study}/series/{self.series}/instances/{sop}/frames/1"
        if rendered:
            q = self.args.preview_query
            if q == "auto":  # the header's first VOI window, as a viewer would pass it
                win = self.windows.get(sop)
                q = f"window={win},linear" if win else ""
            p += "/rendered" + (f"?{q}" if q else "")
        return p

    # -------------------------------------------------------------- one job

    def job(self, conn: Conn, kind: str, sop: str) -> tuple[Response, str | None]:
        a = self.args
        h = {"Accept-Encoding": "gzip"}
        if kind == "stored":
            h["Accept"] = FRAME_STORED
        elif kind == "htj2k":
            h["Accept"] = FRAME_HTJ2K
        elif kind == "prefix":
            h["Accept"] = FRAME_RPCL
            h["Range"] = f"bytes=0-{a.range_bytes - 1}"
        elif kind == "rest":
            h["Accept"] = FRAME_RPCL
            h["Range"] = f"bytes={a.range_bytes}-"
        elif kind == "preview":
            h["Accept"] = "image/jpeg"
        t = time.perf_counter() - self.t0
        r = conn.get(self.frame_path(sop, rendered=(kind == "preview")), h)
        self.count(kind, r, r.t_done - t)
        problem = self.check(kind, sop, r)
        if problem:
            self.error(f"{kind} {sop}: {problem}")
        return r, problem

    def check(self, kind: str, sop: str, r: Response) -> str | None:
        """Record the answer's times; a reason when it is not what `kind` asks for."""
        now = r.t_done
        if kind in ("stored", "htj2k"):
            if r.status != 200:
                return describe(r)
            ctype, payload = first_part(r)
            if kind == "htj2k":
                if "1.2.840.10008.1.2.4.201" not in ctype or not payload.startswith(SOC):
                    return f"not HTJ2K: part {ctype!r}"
            else:
                native = "transfer-syntax=1.2.840.10008.1.2.1" in ctype.replace('"', "") or \
                    "transfer-syntax" not in ctype
                want = self.expect.get("sha1", {}).get(sop)
                if native and want and hashlib.sha1(payload).hexdigest() != want:
                    return f"pixels differ from the source ({len(payload)} bytes, part {ctype!r})"
            with self.lock:
                self.usable.setdefault(sop, now)
                self.full[sop] = now
                if sop == self.save_sop and kind == "htj2k":
                    self.saved["full"] = payload
            return None
        if kind == "prefix":
            body = r.decoded()
            if r.status == 200 and r.header("content-type").startswith("image/jphc"):
                with self.lock:  # the server ignored the range: the whole codestream came
                    self.usable.setdefault(sop, now)
                    self.full[sop] = now
                    self.kinds["prefix"]["ranges_ignored"] = self.kinds["prefix"].get("ranges_ignored", 0) + 1
                return None
            if r.status != 206:
                return describe(r)
            m = re.match(r"bytes (\d+)-(\d+)/(\d+)", r.header("content-range"))
            if not m or int(m.group(1)) != 0 or len(body) != int(m.group(2)) + 1:
                return f"bad Content-Range {r.header('content-range')!r} for {len(body)} bytes"
            if not body.startswith(SOC):
                return "the prefix is not a JPEG 2000 codestream"
            total = int(m.group(3))
            with self.lock:
                self.usable.setdefault(sop, now)
                self.prefix_total[sop] = total
                if total <= len(body):
                    self.full[sop] = now
                if sop == self.save_sop:
                    self.saved["prefix"] = body
            return None
        if kind == "rest":
            body = r.decoded()
            if r.status != 206:
                return describe(r)
            m = re.match(r"bytes (\d+)-(\d+)/(\d+)", r.header("content-range"))
            if not m or int(m.group(1)) != self.args.range_bytes or \
                    int(m.group(3)) != self.prefix_total.get(sop) or \
                    len(body) != int(m.group(2)) - int(m.group(1)) + 1:
                return f"bad Content-Range {r.header('content-range')!r} for {len(body)} bytes"
            with self.lock:
                self.full[sop] = now
                if sop == self.save_sop and "prefix" in self.saved:
                    self.saved["full"] = self.saved["prefix"] + body
            return None
        if kind == "preview":
            if r.status != 200:
                return describe(r)
            if not r.decoded().startswith(b"\xff\xd8"):
                return f"not a JPEG: {r.header('content-type')!r}"
            with self.lock:
                self.usable.setdefault(sop, now)
            return None
        return f"unknown kind {kind}"

    # -------------------------------------------------------------- the load

    def jobs(self, sops: list[str]) -> list[tuple[str, str]]:
        m = self.args.mode
        if m == "stored":
            return [("stored", s) for s in sops]
        if m == "htj2k":
            return [("htj2k", s) for s in sops]
        if m == "progressive":
            return [("prefix", s) for s in sops] + [("rest", s) for s in sops]
        if m == "preview":
            return [("preview", s) for s in sops] + [("stored", s) for s in sops]
        raise SystemExit(f"unknown mode {m}")

    def run_jobs(self, jobs: list[tuple[str, str]]) -> None:
        q: queue.Queue = queue.Queue()
        for j in jobs:
            q.put(j)
        deps: dict[str, threading.Event] = {}
        if self.args.mode == "progressive":  # a remainder needs its prefix's total length
            deps = {s: threading.Event() for k, s in jobs if k == "prefix"}

        def worker(conn: Conn) -> None:
            while True:
                try:
                    kind, sop = q.get_nowait()
                except queue.Empty:
                    return
                try:
                    if kind == "rest":
                        deps[sop].wait()
                        if sop in self.full:  # the prefix was the whole codestream
                            continue
                    self.job(conn, kind, sop)
                except Exception as e:  # noqa: BLE001 - reported
                    self.error(f"{kind} {sop}: {type(e).__name__}: {e}")
                finally:
                    if kind == "prefix":
                        deps[sop].set()

        threads = [threading.Thread(target=worker, args=(c,)) for c in self.conns]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    def load(self) -> dict:
        out: dict = {"mode": self.args.mode, "base": self.args.base}
        try:
            sops = self.open_series()
            if self.args.limit:
                sops = sops[: self.args.limit]
            self.save_sop = sops[len(sops) // 2]
            self.run_jobs(self.jobs(sops))
            missing = [s for s in sops if s not in self.full]
            if missing and not self.errors:
                self.error(f"{len(missing)} of {len(sops)} frames never arrived at full fidelity")
            out["slices"] = len(sops)
            out["metadata_s"] = self.metadata_s
            out["first_usable_s"] = min(self.usable.values()) if self.usable else None
            out["all_usable_s"] = max(self.usable.values()) if len(self.usable) == len(sops) else None
            out["all_full_s"] = max(self.full.values()) if not missing else None
            out["saved_sop"] = self.save_sop
        except Exception as e:  # noqa: BLE001 - reported
            self.error(f"{type(e).__name__}: {e}")
        out["wall_s"] = time.perf_counter() - self.t0
        out["rx_bytes"] = sum(c.rx for c in self.conns)
        out["tx_bytes"] = sum(c.tx for c in self.conns)
        out["connections"] = sum(c.opened for c in self.conns)
        out["requests"] = sum(k["n"] for k in self.kinds.values())
        out["kinds"] = self.kinds
        out["errors"] = self.errors
        if self.args.save:
            for name, data in self.saved.items():
                with open(f"{self.args.save}/{name}.j2k", "wb") as f:
                    f.write(data)
        for c in self.conns:
            c.close()
        return out

    def probe(self) -> dict:
        """The mode's first frame request, for the first slice of --expect."""
        sop = self.expect["sops"][0]
        self.series = self.expect["series"]
        kind = {"stored": "stored", "htj2k": "htj2k", "progressive": "prefix",
                "preview": "preview"}[self.args.mode]
        out: dict = {"mode": self.args.mode, "request": kind}
        try:
            r, problem = self.job(self.conns[0], kind, sop)
            out["status"] = r.status
            out["content_type"] = r.header("content-type")
            out["content_range"] = r.header("content-range") or None
            out["ok"], out["reason"] = problem is None, problem
        except Exception as e:  # noqa: BLE001 - reported
            out["ok"], out["reason"] = False, f"{type(e).__name__}: {e}"
        self.conns[0].close()
        return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", required=True, help="the DICOMweb root, http://host:port/path")
    ap.add_argument("--study", required=True)
    ap.add_argument("--mode", required=True, choices=["stored", "htj2k", "progressive", "preview"])
    ap.add_argument("--workers", type=int, default=6)
    ap.add_argument("--range-bytes", type=int, default=65536)
    ap.add_argument("--preview-query", default="auto",
                    help="rendered parameters; auto: window=C,W,linear from the metadata; '' none")
    ap.add_argument("--expect", help="JSON: series, sops (slice order), sha1 {sop: hex}")
    ap.add_argument("--save", help="directory for the middle slice's codestream(s)")
    ap.add_argument("--limit", type=int, default=0, help="only the first N slices")
    ap.add_argument("--timeout", type=float, default=600.0)
    ap.add_argument("--probe", action="store_true")
    args = ap.parse_args()
    v = Viewer(args)
    print(json.dumps(v.probe() if args.probe else v.load()))


if __name__ == "__main__":
    main()

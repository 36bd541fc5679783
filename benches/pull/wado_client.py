#!/usr/bin/env python3
"""Timed WADO-RS requests for scripts/bench-pull.sh.

    wado_client.py [--timeout S] KIND=URL [KIND=URL ...]

KIND is `series` (multipart/related; type="application/dicom"; transfer-syntax=*),
`metadata` (application/dicom+json, gzip as a browser asks) or `frames`
(multipart/related; type=application/octet-stream; transfer-syntax=*, as OHIF asks). All
requests start together (one thread each) and are timed from one common t0; prints one JSON
object per request on stdout:

  kind, status, headers_s (response head received), ttfb_s (first body byte),
  first_part_s (multipart: the first part fully received, by its Content-Length, else when
  the next delimiter is seen), first_part_delim_s (the delimiter after the first part seen:
  when a parser that splits on boundaries alone could hand the part on),
  total_s (body complete), bytes, parts (multipart parts), complete (closing delimiter seen
  or JSON parsed), instances (metadata: JSON array length), warning, error.
"""

from __future__ import annotations

import gzip
import http.client
import json
import sys
import threading
import time
import urllib.parse

ACCEPT = {
    "series": 'multipart/related; type="application/dicom"; transfer-syntax=*',
    "metadata": "application/dicom+json",
    "frames": "multipart/related; type=application/octet-stream; transfer-syntax=*",
}


def boundary_of(content_type: str) -> bytes | None:
    for param in content_type.split(";")[1:]:
        k, _, v = param.strip().partition("=")
        if k.strip().lower() == "boundary":
            return v.strip().strip('"').encode()
    return None


def fetch(kind: str, url: str, t0: float, timeout: float) -> dict:
    out: dict = {"kind": kind, "url": url, "t0_unix": time.time() - (time.perf_counter() - t0)}
    u = urllib.parse.urlsplit(url)
    try:
        conn = http.client.HTTPConnection(u.hostname, u.port, timeout=timeout)
        headers = {"Accept": ACCEPT[kind]}
        if kind == "metadata":
            headers["Accept-Encoding"] = "gzip"
        conn.request("GET", u.path + (f"?{u.query}" if u.query else ""), headers=headers)
        resp = conn.getresponse()
        out["headers_s"] = time.perf_counter() - t0
        out["status"] = resp.status
        out["warning"] = resp.getheader("Warning")
        ctype = resp.getheader("Content-Type", "")
        delim = boundary_of(ctype)
        delim = b"--" + delim if delim else None
        seen = 0  # delimiters seen
        tail = b""
        last = b""
        head = b""  # the body's first bytes, until the first part's headers are parsed
        part_end = None  # offset just past the first part's body, from its Content-Length
        body = []
        total = 0
        while True:
            data = resp.read1(256 * 1024)
            if not data:
                break
            now = time.perf_counter() - t0
            if total == 0:
                out["ttfb_s"] = now
            total += len(data)
            if delim is not None:
                if part_end is None and len(head) < (1 << 20):
                    head += data
                    start = head.find(delim)
                    end = head.find(b"\r\n\r\n", start) if start >= 0 else -1
                    if end >= 0:
                        part_end = -1
                        for line in head[start:end].split(b"\r\n")[1:]:
                            k, _, v = line.partition(b":")
                            if k.strip().lower() == b"content-length":
                                part_end = end + 4 + int(v)
                if "first_part_s" not in out and part_end is not None and 0 <= part_end <= total:
                    out["first_part_s"] = now
                window = tail + data  # tail is too short to hold a whole delimiter
                n = window.count(delim)
                if seen < 2 <= seen + n:
                    out["first_part_delim_s"] = now
                    out.setdefault("first_part_s", now)  # parts without Content-Length
                seen += n
                tail = window[-(len(delim) - 1) :]
                last = (last + data)[-(len(delim) + 8) :]
            else:
                body.append(data)
        out["total_s"] = time.perf_counter() - t0
        out["bytes"] = total
        if delim is not None:
            out["parts"] = max(seen - 1, 0)
            out["complete"] = last.rstrip().endswith(delim + b"--")
        elif kind == "metadata":
            raw = b"".join(body)
            if resp.getheader("Content-Encoding", "") == "gzip":
                raw = gzip.decompress(raw)
            try:
                doc = json.loads(raw)
                out["instances"] = len(doc) if isinstance(doc, list) else None
                out["complete"] = True
            except ValueError as e:
                out["error"] = f"bad JSON: {e}"
                out["complete"] = False
        conn.close()
    except Exception as e:  # noqa: BLE001 - reported, not raised
        out["error"] = f"{type(e).__name__}: {e}"
        out["total_s"] = time.perf_counter() - t0
    return out


def main() -> None:
    args = sys.argv[1:]
    timeout = 900.0
    if args[:1] == ["--timeout"]:
        timeout, args = float(args[1]), args[2:]
    jobs = [a.split("=", 1) for a in args]
    results: list = [None] * len(jobs)
    t0 = time.perf_counter()

    def run(i: int, kind: str, url: str) -> None:
        results[i] = fetch(kind, url, t0, timeout)

    threads = [threading.Thread(target=run, args=(i, k, u)) for i, (k, u) in enumerate(jobs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for r in results:
        print(json.dumps(r))


if __name__ == "__main__":
    main()

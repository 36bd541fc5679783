#!/usr/bin/env python3
"""Helpers for scripts/bench.sh: parse wrk output, check bodies, and write the report.

    bench_report.py wrk FILE                -> "rps p50_ms p99_ms errors" (errors: non-2xx + socket)
    bench_report.py count-json FILE         -> number of objects in a JSON array
    bench_report.py parts FILE              -> "parts bytes_in_parts" of a multipart/related body
    bench_report.py report RESULTS.tsv OUT.md [CONTEXT...]
                                            -> the final table (stdout and OUT.md)

RESULTS.tsv lines: key <TAB> value, one per repetition (keys repeat; the report takes medians).
"""

from __future__ import annotations

import re
import statistics
import sys
from collections import defaultdict
from pathlib import Path


def to_ms(v: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m)", v.strip())
    if not m:
        raise ValueError(f"unparsed wrk latency {v!r}")
    n, unit = float(m.group(1)), m.group(2)
    return n * {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}[unit]


def wrk(path: str) -> str:
    text = Path(path).read_text()
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
    lat = dict(re.findall(r"^\s+(50|99)%\s+(\S+)$", text, re.M))
    p50 = to_ms(lat["50"]) if "50" in lat else float("nan")
    p99 = to_ms(lat["99"]) if "99" in lat else float("nan")
    errors = sum(int(x) for x in re.findall(r"Non-2xx or 3xx responses:\s+(\d+)", text))
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    if sock:
        errors += sum(int(x) for x in sock.groups())
    return f"{rps:.1f} {p50:.3f} {p99:.3f} {errors}"


def count_json(path: str) -> str:
    import json

    return str(len(json.loads(Path(path).read_bytes())))


def parts(path: str) -> str:
    body = Path(path).read_bytes()
    first = body.split(b"\r\n", 1)[0]
    if not first.startswith(b"--"):
        raise SystemExit("not a multipart body")
    delim = b"\r\n" + first
    n, total = 0, 0
    for chunk in (b"\r\n" + body).split(delim)[1:]:
        if chunk.startswith(b"--"):
            break
        head, _, content = chunk.partition(b"\r\n\r\n")
        m = re.search(rb"Content-Length:\s*(\d+)", head, re.I)
        if m and int(m.group(1)) != len(content):
            raise SystemExit(f"part {n}: Content-Length {m.group(1)!r} but {len(content)} bytes")
        n += 1
        total += len(content)
    return f"{n} {total}"


# (label, tsunagi key, peer label, peer key, unit, better)
ROWS = [
    ("C-STORE ingest, 200 x 512x512 CT, 1 association (storescu)", "cstore_tsunagi_ips",
     "DCMTK storescp -od (no fsync)", "cstore_storescp_ips", "instances/s", "higher"),
    ("WADO-RS series retrieve, 200 instances, 1 request (curl)", "series_tsunagi_mbps",
     "nginx, same 200 files, 1 curl, keep-alive", "series_nginx_mbps", "MB/s", "higher"),
    ("WADO-RS single frame, OHIF Accept, wrk 8 conns", "frame_tsunagi_rps",
     "nginx, same response bytes", "frame_nginx_rps", "requests/s", "higher"),
    ("WADO-RS single frame, OHIF Accept, wrk 1 conn", "frame1_tsunagi_rps",
     "nginx, same response bytes", "frame1_nginx_rps", "requests/s", "higher"),
    ("WADO-RS single frame, OHIF Accept, wrk 1 conn, p99", "frame1_tsunagi_p99",
     "nginx, same response bytes", "frame1_nginx_p99", "ms", "lower"),
    ("QIDO study list, {studies} studies, 1 conn, p50", "qido_tsunagi_p50",
     "nginx, same JSON (gzip 6)", "qido_nginx_p50", "ms", "lower"),
    ("QIDO study list, {studies} studies, 1 conn, p99", "qido_tsunagi_p99",
     "nginx, same JSON (gzip 6)", "qido_nginx_p99", "ms", "lower"),
    ("QIDO study list, {studies} studies, wrk 8 conns", "qido8_tsunagi_rps",
     "nginx, same JSON (gzip 6)", "qido8_nginx_rps", "requests/s", "higher"),
    ("QIDO PatientName=*PHANT*, {studies} studies, 1 conn, p50", "qidophant_tsunagi_p50",
     "nginx, same JSON (gzip 6)", "qidophant_nginx_p50", "ms", "lower"),
    ("WADO-RS series metadata, 200 instances, 1 conn, p50", "meta_tsunagi_p50",
     "nginx, same JSON (gzip 6)", "meta_nginx_p50", "ms", "lower"),
]


def fmt(v: float) -> str:
    if v != v:
        return "n/a"
    if v >= 100:
        return f"{v:,.0f}"
    if v >= 10:
        return f"{v:.1f}"
    return f"{v:.3g}"


def report(results: str, out: str, context: list[str]) -> None:
    vals: dict[str, list[float]] = defaultdict(list)
    for line in Path(results).read_text().splitlines():
        if line.strip():
            k, v = line.split("\t")
            vals[k].append(float(v))

    def med(k: str) -> tuple[float, str]:
        xs = vals.get(k, [])
        if not xs:
            return float("nan"), "n/a"
        spread = f"{fmt(min(xs))}-{fmt(max(xs))}" if len(xs) > 1 else "1 run"
        return statistics.median(xs), f"n={len(xs)}, {spread}"

    lines = [
        "| measurement | tsunagi | peer | peer value | tsunagi / peer | unit (better) |",
        "|---|---|---|---|---|---|",
    ]
    import os

    studies = f"{int(os.environ.get('BENCH_STUDIES', '10000')):,}"
    for label, tk, plabel, pk, unit, better in ROWS:
        label = label.format(studies=studies)
        t, tsp = med(tk)
        p, psp = med(pk)
        ratio = t / p if p == p and t == t and p else float("nan")
        lines.append(
            f"| {label} | {fmt(t)} ({tsp}) | {plabel} | {fmt(p)} ({psp}) | "
            f"{ratio:.2f} | {unit} ({better}) |"
        )
    extra = sorted(k for k in vals if k.startswith("info_"))
    if extra:
        lines += ["", "| other figure | value (median) |", "|---|---|"]
        lines += [f"| {k[5:]} | {fmt(statistics.median(vals[k]))} |" for k in extra]
    text = "\n".join(["# Tsunagi load bench", "", *context, "", *lines, ""])
    Path(out).write_text(text)
    print(text)


def main() -> None:
    cmd, *args = sys.argv[1:]
    if cmd == "wrk":
        print(wrk(args[0]))
    elif cmd == "count-json":
        print(count_json(args[0]))
    elif cmd == "parts":
        print(parts(args[0]))
    elif cmd == "report":
        report(args[0], args[1], args[2:])
    else:
        raise SystemExit(f"unknown command {cmd}")


if __name__ == "__main__":
    main()

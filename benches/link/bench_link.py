#!/usr/bin/env python3
"""The shaped-link viewer benchmark behind scripts/bench-link.sh (run that, not this).

Two network namespaces joined by a veth pair, tbf at RATE on both ends, RTT_MS of round trip
added in user space by benches/pull/relay.py (RTT_MS / 2 each way; no netem on this kernel):

  tsunagi-link-srv   Tsunagi (HTTP :8080, DIMSE :11112) and Orthanc 1.10 + DICOMweb 1.7
                     (HTTP :8042, DICOM :4242), both holding the same CT series (warm: loaded
                     with DCMTK storescu before anything is timed)
  tsunagi-link-view  the viewer (benches/link/viewer.py) and the relays it connects through:
                     127.0.0.1:18080 -> Tsunagi, 127.0.0.1:18042 -> Orthanc

For each delivery mode (stored, htj2k, progressive, preview; see viewer.py) each server is
probed once (the mode's first frame request: a server that cannot answer it is reported n/a
with the status it gave), loaded once on the servers' own loopback (untimed warm-up, which
also fills Tsunagi's codestream cache; its times are reported), then RUNS times over the
link, servers alternating. Every run of htj2k / progressive decodes the middle slice with
OpenJPEG's opj_decompress: the full codestream must equal the source pixels, the progressive
prefix must decode at -r 2.

Environment (set by bench-link.sh): ROOT, BIN, WORK, RATE, RTT_MS, SLICES, RUNS, RANGE_BYTES,
PREVIEW_QUERY, WORKERS, MODES, BENCH_COMMAND. Every process runs in its own process group,
listed in $WORK/pids for the shell's trap, and is stopped at the end, on error and on
SIGINT/SIGTERM; the namespaces are deleted.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(os.environ["ROOT"])
sys.path.insert(0, str(ROOT / "benches" / "pull"))
import bench_pull as bp  # noqa: E402 - Procs, run, wait_until, parse_rate, Failed

BIN = Path(os.environ["BIN"])
WORK = Path(os.environ["WORK"])
HERE = ROOT / "benches" / "link"
RELAY_PY = ROOT / "benches" / "pull" / "relay.py"
RATE = os.environ.get("RATE", "10mbit")
RTT_MS = float(os.environ.get("RTT_MS", "20"))
SLICES = int(os.environ.get("SLICES", "200"))
RUNS = int(os.environ.get("RUNS", "3"))
RANGE_BYTES = int(os.environ.get("RANGE_BYTES", "65536"))
PREVIEW_QUERY = os.environ.get("PREVIEW_QUERY", "auto")
WORKERS = int(os.environ.get("WORKERS", "6"))
MODES = os.environ.get("MODES", "stored htj2k progressive preview").split()
REPORT = ROOT / "target" / "bench-link-report.md"

NS_VIEW, NS_SRV = "tsunagi-link-view", "tsunagi-link-srv"
DEV_VIEW, DEV_SRV = "tl-view", "tl-srv"
VIEW_IP, SRV_IP = "10.78.0.1", "10.78.0.2"
SERVERS = {  # name: (HTTP port in the server namespace, relay port in the viewer's)
    "tsunagi": (8080, 18080),
    "orthanc": (8042, 18042),
}
TS_DIMSE, OR_DICOM = 11112, 4242
TEST_PORT, R_TEST_UP, R_TEST_DOWN = 20100, 20101, 20102
ORTHANC = "/usr/sbin/Orthanc"
ORTHANC_DICOMWEB = "/usr/share/orthanc/plugins/libOrthancDicomWeb.so"
STORESCU = "/usr/bin/storescu"
MODE_TEXT = {
    "stored": "as stored (OHIF's default request)",
    "htj2k": "lossless HTJ2K (.201)",
    "progressive": f"progressive HTJ2K RPCL (.202), first {RANGE_BYTES // 1024} KiB then the rest",
    "preview": "rendered JPEG preview" + (" (the header's window)" if PREVIEW_QUERY == "auto" else
                                          f" (?{PREVIEW_QUERY})" if PREVIEW_QUERY else
                                          " (server's default rendering)") + ", then as stored",
}
PY = sys.executable
PROCS = bp.PROCS
run, wait_until, log_says, Failed = bp.run, bp.wait_until, bp.log_says, bp.Failed


def say(msg: str) -> None:
    print(f"[bench-link {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- the link


def ns_teardown() -> None:
    for ns in (NS_VIEW, NS_SRV):
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)


def ns_setup(rate_bps: float) -> None:
    ns_teardown()  # left over by a run that was killed hard
    for ns in (NS_VIEW, NS_SRV):
        run(["ip", "netns", "add", ns])
        run(["ip", "-n", ns, "link", "set", "lo", "up"])
    run(["ip", "link", "add", DEV_VIEW, "netns", NS_VIEW, "type", "veth",
         "peer", "name", DEV_SRV, "netns", NS_SRV])
    burst = max(32 * 1024, int(rate_bps / 8 / 100))  # 10 ms of data, at least 32 KiB
    for ns, dev, ip in ((NS_VIEW, DEV_VIEW, VIEW_IP), (NS_SRV, DEV_SRV, SRV_IP)):
        run(["ip", "-n", ns, "addr", "add", f"{ip}/24", "dev", dev])
        run(["ip", "-n", ns, "link", "set", dev, "up"])
        run(["tc", "-n", ns, "qdisc", "add", "dev", dev, "root", "tbf", "rate", RATE,
             "burst", str(burst), "latency", "100ms"])


def relay(ns: str, listen: str, target: str, tag: str):
    log = WORK / "logs" / f"relay-{tag}.log"
    log.write_text("")
    p = PROCS.spawn(f"relay {tag}", [PY, str(RELAY_PY), "relay", listen, target,
                                     "--delay-ms", str(RTT_MS / 2)], log, ns=ns)
    wait_until(f"relay {tag}", log_says(log, "relay ready"), 15, p, log)
    return p


def verify_link(rate_bps: float) -> dict:
    """Echo round trips and a timed transfer each way, through relays like the viewer's."""
    procs = []
    try:
        for ns in (NS_VIEW, NS_SRV):
            log = WORK / "logs" / f"testsrv-{ns}.log"
            p = PROCS.spawn("testsrv", [PY, str(RELAY_PY), "testsrv", f"0.0.0.0:{TEST_PORT}"],
                            log, ns=ns)
            procs.append(p)
            wait_until("testsrv", log_says(log, "testsrv ready"), 15, p, log)
        procs.append(relay(NS_VIEW, f"127.0.0.1:{R_TEST_UP}", f"{SRV_IP}:{TEST_PORT}", "test-up"))
        procs.append(relay(NS_SRV, f"127.0.0.1:{R_TEST_DOWN}", f"{VIEW_IP}:{TEST_PORT}", "test-down"))
        nbytes = int(min(5_000_000, rate_bps / 8 * 4))  # about 4 s of the link

        def probe(ns: str, target: str) -> dict:
            p = run([PY, str(RELAY_PY), "probe", target, "--bytes", str(nbytes), "--pings", "10"],
                    ns=ns, timeout=600)
            return json.loads(p.stdout)

        out = {"up": probe(NS_VIEW, f"127.0.0.1:{R_TEST_UP}"),        # viewer -> servers
               "down": probe(NS_SRV, f"127.0.0.1:{R_TEST_DOWN}")}     # servers -> viewer
        for k in ("up", "down"):
            o = out[k]
            say(f"link check {k:4s}: {o['bytes'] / 1e6:.1f} MB in {o['seconds']:.2f} s = "
                f"{o['mbit_s']:.2f} Mbit/s (nominal {rate_bps / 1e6:g}), echo RTT {o['rtt_ms']:.1f} ms")
            if not 0.7 * rate_bps / 1e6 <= o["mbit_s"] <= 1.15 * rate_bps / 1e6:
                raise Failed(f"link check {k}: {o['mbit_s']:.2f} Mbit/s, expected about {rate_bps / 1e6:g}")
            if not 0.9 * RTT_MS <= o["rtt_ms"] <= RTT_MS + 10:
                raise Failed(f"link check {k}: RTT {o['rtt_ms']:.1f} ms, expected about {RTT_MS:g}")
        return out
    finally:
        for p in procs:
            PROCS.stop(p)


def veth_rx(ns: str, dev: str) -> int:
    p = run(["ip", "-n", ns, "-s", "-j", "link", "show", "dev", dev])
    return int(json.loads(p.stdout)[0]["stats64"]["rx"]["bytes"])


# --------------------------------------------------------------------------- the servers


def http_get(ns: str, url: str) -> str:
    p = run(["curl", "-sS", "-m", "5", "-f", url], ns=ns, check=False, timeout=30)
    if p.returncode != 0:
        raise Failed(f"GET {url}: {p.stderr.strip()}")
    return p.stdout


def store(ns: str, ae: str, port: int, files: list[str], log: Path) -> None:
    p = run([STORESCU, "-aet", "BENCHLOAD", "-aec", ae, "127.0.0.1", str(port)] + files,
            ns=ns, check=False, timeout=900)
    log.write_text(p.stdout + p.stderr)
    if p.returncode != 0:
        raise Failed(f"storescu to {ae} exited {p.returncode}: {p.stderr[-1500:]}")


def count_instances(ns: str, port: int, ct: dict) -> int:
    url = (f"http://127.0.0.1:{port}/dicom-web/studies/{ct['study']}/series/"
           f"{ct['series']}/instances?includefield=00080018")
    return len(json.loads(http_get(ns, url)))


def start_tsunagi(ct: dict, files: list[str]) -> dict:
    d = WORK / "tsunagi"
    d.mkdir()
    log = WORK / "logs" / "tsunagi.log"
    p = PROCS.spawn("tsunagi", [str(BIN), "serve"], log, ns=NS_SRV, cwd=d, env={
        "TSUNAGI_HTTP__LISTEN": f"0.0.0.0:{SERVERS['tsunagi'][0]}",
        "TSUNAGI_DIMSE__LISTEN": f"127.0.0.1:{TS_DIMSE}",
        "TSUNAGI_STORE__PATH": str(d / "cache"),
        "RUST_LOG": os.environ.get("BENCH_RUST_LOG", "info,dicom_parser=error"), "NO_COLOR": "1"})
    wait_until("tsunagi", log_says(log, "tsunagi ready"), 120, p, log)
    t = time.perf_counter()
    store(NS_SRV, "TSUNAGI", TS_DIMSE, files, WORK / "logs" / "storescu-tsunagi.log")
    n = count_instances(NS_SRV, SERVERS["tsunagi"][0], ct)
    if n != ct["files"]:
        raise Failed(f"Tsunagi holds {n} of {ct['files']} instances")
    say(f"Tsunagi holds the series ({n} instances, stored in {time.perf_counter() - t:.1f} s)")
    version = run([str(BIN), "--version"], check=False).stdout.strip()
    return {"version": version}


def start_orthanc(ct: dict, files: list[str]) -> dict:
    d = WORK / "orthanc"
    d.mkdir()
    cfg = {
        "Name": "BENCH", "DicomAet": "ORTHANC", "DicomPort": OR_DICOM,
        "HttpPort": SERVERS["orthanc"][0], "StorageDirectory": str(d / "db"),
        "IndexDirectory": str(d / "db"), "Plugins": [ORTHANC_DICOMWEB],
        "RemoteAccessAllowed": True, "AuthenticationEnabled": False,
        "DicomAlwaysAllowStore": True, "DicomCheckCalledAet": False,
        "KeepAlive": True, "SaveJobs": False,  # 1.10 has no KeepAliveTimeout: 1 s, fixed
        "DicomWeb": {"Enable": True, "Root": "/dicom-web/"},
    }
    (d / "orthanc.json").write_text(json.dumps(cfg, indent=1))
    log = WORK / "logs" / "orthanc.log"
    p = PROCS.spawn("orthanc", [ORTHANC, "--no-jobs", str(d / "orthanc.json")], log, ns=NS_SRV, cwd=d)
    port = SERVERS["orthanc"][0]

    def up() -> bool:
        try:
            return f'"DicomPort" : {OR_DICOM}' in http_get(NS_SRV, f"http://127.0.0.1:{port}/system")
        except Failed:
            return False

    wait_until("orthanc", up, 60, p, log)
    t = time.perf_counter()
    store(NS_SRV, "ORTHANC", OR_DICOM, files, WORK / "logs" / "storescu-orthanc.log")
    n = count_instances(NS_SRV, port, ct)
    if n != ct["files"]:
        raise Failed(f"Orthanc holds {n} of {ct['files']} instances")
    say(f"Orthanc holds the series ({n} instances, stored in {time.perf_counter() - t:.1f} s)")
    system = json.loads(http_get(NS_SRV, f"http://127.0.0.1:{port}/system"))
    plugin = json.loads(http_get(NS_SRV, f"http://127.0.0.1:{port}/plugins/dicom-web"))
    return {"version": f"Orthanc {system.get('Version')} + DICOMweb plugin {plugin.get('Version')}"}


# --------------------------------------------------------------------------- the viewer


def viewer(ns: str, port: int, mode: str, ct: dict, save: Path | None = None,
           probe: bool = False) -> dict:
    argv = [PY, str(HERE / "viewer.py"), "--base", f"http://127.0.0.1:{port}/dicom-web",
            "--study", ct["study"], "--mode", mode, "--workers", str(WORKERS),
            "--range-bytes", str(RANGE_BYTES), "--preview-query", PREVIEW_QUERY,
            "--expect", str(WORK / "expect.json")]
    if save:
        save.mkdir(parents=True, exist_ok=True)
        argv += ["--save", str(save)]
    if probe:
        argv.append("--probe")
    p = run(argv, ns=ns, timeout=3600)
    return json.loads(p.stdout)


# --------------------------------------------------------------------------- decoding checks


def read_pgm(path: Path):
    """A binary PGM as opj_decompress writes it (with a comment line)."""
    import numpy as np
    data = path.read_bytes()
    fields, pos = [], 0
    while len(fields) < 4:  # magic, width, height, maxval; '#' starts a comment
        m = re.compile(rb"\s*(#[^\n]*\n|\S+)").match(data, pos)
        if not m:
            raise Failed(f"{path}: not a binary PGM")
        pos = m.end()
        if not m.group(1).startswith(b"#"):
            fields.append(m.group(1))
    if fields[0] != b"P5":
        raise Failed(f"{path}: not a binary PGM")
    w, h, maxval = (int(f) for f in fields[1:])
    dtype = ">u2" if maxval > 255 else "u1"
    return np.frombuffer(data[pos + 1:], dtype=dtype, count=w * h).reshape(h, w)


def source_pixels(ct: dict, sop: str):
    import numpy as np
    import pydicom
    ds = pydicom.dcmread(ct["paths"][sop])
    return np.frombuffer(ds.PixelData, dtype="<u2").reshape(ds.Rows, ds.Columns)


def opj(src: Path, out: Path, extra: list[str]) -> tuple[bool, str]:
    p = run(["opj_decompress", "-i", str(src), "-o", str(out)] + extra, check=False, timeout=120)
    return p.returncode == 0 and out.exists(), (p.stderr or p.stdout).strip()[-300:]


def check_decodes(ct: dict, mode: str, sop: str, d: Path) -> dict:
    """The middle slice: full codestream bit-exact; a progressive prefix decodes at -r 2."""
    import numpy as np
    out: dict = {"sop": sop}
    src = source_pixels(ct, sop)
    full = d / "full.j2k"
    if full.exists():
        ok, msg = opj(full, d / "full.pgm", [])
        if ok:
            img = read_pgm(d / "full.pgm")
            out["full_bytes"] = full.stat().st_size
            out["bit_exact"] = bool(img.shape == src.shape and np.array_equal(img.astype(np.uint16), src))
        else:
            out["bit_exact"], out["full_error"] = False, msg
    else:
        out["bit_exact"], out["full_error"] = False, "no full codestream was received"
    if mode == "progressive":
        prefix = d / "prefix.j2k"
        ok, msg = (opj(prefix, d / "prefix.pgm", ["-allow-partial", "-r", "2"]) if prefix.exists()
                   else (False, "no prefix was received"))
        out["prefix_bytes"] = prefix.stat().st_size if prefix.exists() else 0
        out["prefix_decodes"] = ok
        if ok:
            img = read_pgm(d / "prefix.pgm").astype(np.float64)
            h, w = src.shape[0] // 4, src.shape[1] // 4
            ref = src.astype(np.float64).reshape(h, 4, w, 4).mean(axis=(1, 3))
            out["prefix_size"] = f"{img.shape[1]}x{img.shape[0]}"
            if img.shape == ref.shape:
                mse = float(np.mean((img - ref) ** 2))
                out["prefix_psnr_db"] = 99.0 if mse == 0 else 10 * np.log10(4095.0 ** 2 / mse)
        else:
            out["prefix_error"] = msg
    return out


# --------------------------------------------------------------------------- report


def med(xs: list[float]) -> float:
    return statistics.median(xs)


def fmt_s(xs: list[float]) -> str:
    if not xs:
        return "-"
    spread = f" ({min(xs):.2f}–{max(xs):.2f})" if len(xs) > 1 else ""
    return f"{med(xs):.2f}{spread}"


def report(ctx: dict) -> str:
    ct, res, probes, rate_bps = ctx["ct"], ctx["results"], ctx["probes"], ctx["rate_bps"]
    floor = ct["pixel_bytes"] * 8 / rate_bps
    L = ["# Tsunagi shaped-link viewer benchmark", ""]
    L.append(f"Command: `{ctx['command']}`  ")
    L.append(f"Commit: {ctx['commit']}; started {ctx['started_utc']}; wall time {ctx['wall_s']:.0f} s  ")
    L.append(f"Load average (1, 5, 15 min): before {ctx['load_before']}, after {ctx['load_after']}; "
             f"{os.cpu_count()} CPUs, host {os.uname().nodename}, kernel {os.uname().release}  ")
    L.append(f"Servers: {ctx['versions']['tsunagi']} (default configuration); "
             f"{ctx['versions']['orthanc']}; client benches/link/viewer.py (Python {sys.version.split()[0]}), "
             f"decoder {ctx['opj_version']}")
    L.append("")
    L.append(f"Link: {RATE} (tbf on both ends of a veth pair), {RTT_MS:g} ms RTT added by "
             f"benches/pull/relay.py. Check: viewer → servers {ctx['link']['up']['mbit_s']:.2f} Mbit/s, "
             f"servers → viewer {ctx['link']['down']['mbit_s']:.2f} Mbit/s, echo RTT "
             f"{ctx['link']['down']['rtt_ms']:.1f} ms.  ")
    L.append(f"Series: {ct['files']} slices of 512x512 16-bit CT (Explicit VR LE, benches/make_ct.py), "
             f"{ct['pixel_bytes']:,} bytes of pixel data; floor = pixel bytes / link rate = "
             f"**{floor:.1f} s**.  ")
    L.append(f"Viewer: HTTP/1.1, {WORKERS} keep-alive connections, `Accept-Encoding: gzip`; QIDO "
             f"study + series, series metadata, then the frames in slice order. Medians of {RUNS} "
             f"run(s) (min–max); servers alternate within each run; warm (series stored before, one "
             f"untimed loopback load per mode first).")
    L.append("")
    L.append("| mode | server | first image s | every slice usable s | all images s | MB on the wire | MB at the veth | all / floor | Tsunagi / Orthanc: first, all, MB |")
    L.append("|---|---|---|---|---|---|---|---|---|")
    for mode in MODES:
        for server in ("tsunagi", "orthanc"):
            label = f"{mode}: {MODE_TEXT[mode]}"
            pr = probes[server][mode]
            if not pr["ok"]:
                L.append(f"| {label} | {server} | n/a | n/a | n/a | n/a | n/a | n/a | it answered "
                         f"{(pr.get('reason') or '')[:160].replace('|', '/')} |")
                continue
            R = res[server][mode]
            cmp = "-"
            if server == "tsunagi":
                other, tag = mode, ""
                if not probes["orthanc"][mode]["ok"]:
                    other, tag = "stored", " (vs Orthanc as stored)"
                O = res["orthanc"].get(other)
                if O and O["first"]:
                    cmp = (f"{med(R['first']) / med(O['first']):.2f}×, {med(R['all']) / med(O['all']):.2f}×, "
                           f"{med(R['rx']) / med(O['rx']):.2f}×{tag}")
            L.append(f"| {label} | {server} | {fmt_s(R['first'])} | {fmt_s(R['usable'])} | {fmt_s(R['all'])} | "
                     f"{med(R['rx']) / 1e6:.1f} | {med(R['veth']) / 1e6:.1f} | "
                     f"{med(R['all']) / floor:.2f}× | {cmp} |")
    L.append("")
    L.append("First image: from the QIDO request until the first displayable image has arrived "
             "(a whole frame; progressive: the first range; preview: the first JPEG). Every slice "
             "usable: until each slice has one (the viewer can scroll the whole stack). All images: "
             "until every frame has arrived at full fidelity. MB on the wire: bytes the viewer read "
             "from its sockets (response heads and bodies as sent: compressed, with chunked framing), "
             "all requests of the load. MB at the veth: IP bytes received by the viewer's interface "
             "(TCP/IP headers included).")
    L.append("")
    L.append("| check (every run, middle slice, OpenJPEG opj_decompress) | result |")
    L.append("|---|---|")
    for server, mode, r, chk in ctx["checks"]:
        what = f"{server} {mode} run {r}"
        full = "bit-exact vs the source pixels" if chk.get("bit_exact") else \
            f"NOT bit-exact: {chk.get('full_error', 'pixels differ')}"
        text = f"full codestream ({chk.get('full_bytes', 0):,} B): {full}"
        if mode == "progressive":
            if chk.get("prefix_decodes"):
                text += (f"; first {chk['prefix_bytes']:,} B decode at -r 2 to {chk.get('prefix_size')}, "
                         f"PSNR {chk.get('prefix_psnr_db', 0):.1f} dB vs the 4x4 mean of the source")
            else:
                text += f"; the prefix does NOT decode: {chk.get('prefix_error')}"
        L.append(f"| {what} | {text} |")
    for server in ("tsunagi", "orthanc"):
        for mode in MODES:
            pr = probes[server][mode]
            if not pr["ok"]:
                L.append(f"| {server} {mode}: probe (the mode's first request) | n/a: {pr.get('reason')} |")
    if {"stored", "preview"} & set(MODES):
        L.append("| every as-stored frame, both servers | SHA-1 of the received pixels = the source's |")
    L.append("")
    L.append("Requests of one load (the last run): count × mean bytes read per response (head + body "
             "as sent) in the mean time from sending the request to the end of the response (frames, "
             "6 at a time sharing the link), and the TCP connections it took (6 when every keep-alive connection lasts; "
             "Orthanc 1.10 closes one after 1 s, its fixed keep-alive timeout, and the viewer reconnects "
             "as a browser does).")
    L.append("")
    L.append("| mode | server | requests | connections |")
    L.append("|---|---|---|---|")
    for mode in MODES:
        for server in ("tsunagi", "orthanc"):
            R = res[server].get(mode)
            if R:
                parts = [f"{k} {x['n']} × {x['rx'] / max(x['n'], 1) / 1e3:.1f} kB"
                         + (f" in {x['seconds'] / x['n'] * 1e3:.0f} ms" if x.get("seconds") else "")
                         for k, x in R["kinds"].items()]
                L.append(f"| {mode} | {server} | {'; '.join(parts)} | {R['connections']} |")
    L.append("")
    L.append("Untimed warm-up on the servers' loopback (no link; Tsunagi encodes its HTJ2K codestreams "
             "here, later loads read them from its memory tier):")
    L.append("")
    L.append("| mode | server | first image s | all images s |")
    L.append("|---|---|---|---|")
    for (server, mode), w in ctx["warmup"].items():
        L.append(f"| {mode} | {server} | {w['first_usable_s']:.3f} | {w['all_full_s']:.3f} |")
    L.append("")
    L.append("## Closing note")
    L.append("")
    L.extend(closing(ctx, floor))
    return "\n".join(L) + "\n"


def closing(ctx: dict, floor: float) -> list[str]:
    res, probes = ctx["results"], ctx["probes"]
    T, O = res["tsunagi"], res["orthanc"]
    out = []
    link = f"{RATE}, {RTT_MS:g} ms RTT"
    ct_bytes = ctx["ct"]["pixel_bytes"]
    if "stored" in T and "stored" in O:
        t, o = T["stored"], O["stored"]
        out.append(f"- Same request (OHIF's default, as stored), same link ({link}), same run: Tsunagi "
                   f"first image {med(t['first']):.2f} s vs Orthanc {med(o['first']):.2f} s "
                   f"({med(t['first']) / med(o['first']):.2f}×); bytes on the wire "
                   f"{med(t['rx']) / 1e6:.1f} MB vs {med(o['rx']) / 1e6:.1f} MB "
                   f"({med(t['rx']) / med(o['rx']):.2f}×; {med(t['rx']) / ct_bytes:.0%} vs "
                   f"{med(o['rx']) / ct_bytes:.0%} of the raw pixel bytes); all images {med(t['all']):.1f} s vs "
                   f"{med(o['all']):.1f} s = {med(t['all']) / floor:.2f}× vs {med(o['all']) / floor:.2f}× "
                   f"the floor ({floor:.1f} s).")
    best_o = min((m for m in O), key=lambda m: med(O[m]["first"]), default=None)
    for mode in MODES:
        if mode == "stored" or mode not in T:
            continue
        t = T[mode]
        other = mode if mode in O else "stored"
        o = O.get(other)
        if not o:
            continue
        vs = "the same mode" if other == mode else \
            f"Orthanc as stored (it cannot do {mode}: HTTP {probes['orthanc'][mode].get('status')})"
        usable = f"every slice usable {med(t['usable']):.1f} s"
        if "stored" in O:
            usable += f" (Orthanc as stored: {med(O['stored']['usable']):.1f} s)"
        out.append(f"- {MODE_TEXT[mode]}: Tsunagi first image {med(t['first']):.2f} s, {usable}, "
                   f"{med(t['rx']) / 1e6:.1f} MB on the wire, all images {med(t['all']):.1f} s = "
                   f"{med(t['all']) / floor:.2f}× the floor; against {vs}: "
                   f"{med(t['first']) / med(o['first']):.2f}× the first-image time, "
                   f"{med(t['rx']) / med(o['rx']):.2f}× the bytes, "
                   f"{med(t['all']) / med(o['all']):.2f}× the all-images time.")
    if best_o:
        best_t = min(T, key=lambda m: med(T[m]["first"]))
        out.append(f"- Fastest first image: Tsunagi {med(T[best_t]['first']):.2f} s ({best_t}) vs "
                   f"Orthanc {med(O[best_o]['first']):.2f} s ({best_o}); fewest bytes: Tsunagi "
                   f"{min(med(T[m]['rx']) for m in T) / 1e6:.1f} MB "
                   f"({min(T, key=lambda m: med(T[m]['rx']))}) vs Orthanc "
                   f"{min(med(O[m]['rx']) for m in O) / 1e6:.1f} MB "
                   f"({min(O, key=lambda m: med(O[m]['rx']))}).")
    return out


# --------------------------------------------------------------------------- main


def prepare_ct() -> dict:
    import pydicom
    ct = json.loads((WORK / "ct.json").read_text())
    files = sorted(str(p) for p in (WORK / "ct").glob("ct-*.dcm"))
    sops, sha, paths, pixel_bytes = [], {}, {}, 0
    for f in files:
        ds = pydicom.dcmread(f)
        sop = str(ds.SOPInstanceUID)
        sops.append(sop)
        sha[sop] = hashlib.sha1(ds.PixelData).hexdigest()
        paths[sop] = f
        pixel_bytes += len(ds.PixelData)
    (WORK / "expect.json").write_text(json.dumps({"series": ct["series"], "sops": sops, "sha1": sha}))
    ct.update(files_list=files, paths=paths, pixel_bytes=pixel_bytes)
    return ct


def loadavg() -> str:
    return ", ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> int:
    started = time.time()
    rate_bps = bp.parse_rate(RATE)

    def on_signal(signum, _frame):
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)
    (WORK / "logs").mkdir(exist_ok=True)
    ctx: dict = {"command": os.environ.get("BENCH_COMMAND", "scripts/bench-link.sh"),
                 "commit": os.environ.get("BENCH_COMMIT", "?"), "load_before": loadavg(),
                 "started_utc": time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(started)),
                 "rate_bps": rate_bps, "warmup": {}, "checks": []}
    opj_v = run(["opj_decompress", "-h"], check=False).stdout
    m = re.search(r"openjp2 library v([0-9.]+[0-9])", opj_v)
    ctx["opj_version"] = f"OpenJPEG {m.group(1)}" if m else "opj_decompress"
    ct = ctx["ct"] = prepare_ct()
    try:
        ns_setup(rate_bps)
        ctx["link"] = verify_link(rate_bps)
        ctx["versions"] = {"tsunagi": start_tsunagi(ct, ct["files_list"])["version"],
                           "orthanc": start_orthanc(ct, ct["files_list"])["version"]}
        probes: dict = {s: {} for s in SERVERS}
        for server, (port, _) in SERVERS.items():
            for mode in MODES:
                pr = viewer(NS_SRV, port, mode, ct, probe=True)
                probes[server][mode] = pr
                say(f"probe {server} {mode}: HTTP {pr.get('status')}" +
                    ("" if pr["ok"] else f" -> n/a ({pr['reason']})"))
                if pr["ok"]:
                    w = viewer(NS_SRV, port, mode, ct)
                    if w["errors"]:
                        raise Failed(f"warm-up {server} {mode}: {w['errors']}")
                    ctx["warmup"][(server, mode)] = w
                    say(f"warm-up {server} {mode} (loopback): first image {w['first_usable_s']:.3f} s, "
                        f"all {w['all_full_s']:.3f} s")
        ctx["probes"] = probes
        for server, (port, rport) in SERVERS.items():
            relay(NS_VIEW, f"127.0.0.1:{rport}", f"{SRV_IP}:{port}", server)
        results: dict = {s: {} for s in SERVERS}
        ctx["results"] = results
        for r in range(1, RUNS + 1):
            order = list(SERVERS) if r % 2 else list(reversed(SERVERS))
            for mode in MODES:
                for server in order:
                    if not probes[server][mode]["ok"]:
                        continue
                    save = WORK / "samples" / f"{server}-{mode}-{r}"
                    before = veth_rx(NS_VIEW, DEV_VIEW)
                    v = viewer(NS_VIEW, SERVERS[server][1], mode, ct, save=save)
                    veth = veth_rx(NS_VIEW, DEV_VIEW) - before
                    (WORK / "logs" / f"viewer-{server}-{mode}-{r}.json").write_text(json.dumps(v, indent=1))
                    if v["errors"]:
                        raise Failed(f"{server} {mode} run {r}: {v['errors']}")
                    R = results[server].setdefault(mode, {"first": [], "usable": [], "all": [], "rx": [],
                                                          "veth": [], "meta": []})
                    R["first"].append(v["first_usable_s"])
                    R["usable"].append(v["all_usable_s"])
                    R["all"].append(v["all_full_s"])
                    R["rx"].append(v["rx_bytes"])
                    R["veth"].append(veth)
                    R["meta"].append(v["metadata_s"])
                    R["kinds"] = v["kinds"]  # the last run's: requests and bytes per kind
                    R["connections"] = v["connections"]
                    say(f"run {r} {mode:11s} {server:7s}: metadata {v['metadata_s']:.2f} s, first image "
                        f"{v['first_usable_s']:.2f} s, all usable {v['all_usable_s']:.2f} s, "
                        f"all full {v['all_full_s']:.2f} s, "
                        f"{v['rx_bytes'] / 1e6:.1f} MB read ({veth / 1e6:.1f} MB at the veth), "
                        f"{v['requests']} requests on {v['connections']} connections")
                    if mode in ("htj2k", "progressive"):
                        chk = check_decodes(ct, mode, v["saved_sop"], save)
                        ctx["checks"].append((server, mode, r, chk))
                        say(f"run {r} {mode} {server}: decoding check {json.dumps(chk)}")
    finally:
        PROCS.stop_all()
        ns_teardown()
    ctx["wall_s"] = time.time() - started
    ctx["load_after"] = loadavg()
    text = report(ctx)
    REPORT.parent.mkdir(parents=True, exist_ok=True)
    REPORT.write_text(text)
    print(text)
    say(f"report written to {REPORT}")
    bad = [c for c in ctx["checks"] if not c[3].get("bit_exact") or
           (c[1] == "progressive" and not c[3].get("prefix_decodes"))]
    if bad:
        say(f"FAILED: {len(bad)} decoding check(s) failed (see the report)")
        return 1
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except Failed as e:
        say(f"FAILED: {e}")
        sys.exit(1)
    except KeyboardInterrupt:
        say("interrupted")
        sys.exit(130)

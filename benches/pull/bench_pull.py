#!/usr/bin/env python3
"""The pull-through benchmark behind scripts/bench-pull.sh (run that, not this).

A DCMTK dcmqrscp hospital PACS (HOSPA) holds one CT series. Measured in one run, in two
scenarios (each in network namespaces of its own, so no port is shared with anything else):

  loopback  PACS, gateway, clients on one loopback (namespace tsunagi-bench-lo)
  shaped    PACS in tsunagi-bench-pacs, gateway and clients in tsunagi-bench-gw, joined by a
            veth pair limited to RATE by tbf on both ends, with DELAY_MS one way added by
            benches/pull/relay.py on every connection that crosses (both directions)

and in each, RUNS rounds of:

  floor     DCMTK movescu (study root, SERIES) -> dcmqrscp -> DCMTK storescp -od (both DCMTK
            tools on the gateway side): time to the first file and total
  series    cold Tsunagi (fresh cache): GET .../series/{se} (multipart, transfer-syntax=*):
            time to first byte, to the first whole part, total
  metadata  cold GET .../series/{se}/metadata: first byte and total (on the shaped link it is
            sent together with the series request and joins its retrieve, unless METADATA=
            separate; METADATA=joint does the same on loopback)
  frames    cold GET .../instances/{first}/frames/1 (OHIF's Accept): first byte and total

Environment (set by bench-pull.sh): ROOT, BIN, WORK, RATE, DELAY_MS, SLICES, RUNS, METADATA,
BENCH_RUST_LOG. Every process is started in its own session and stopped (process group) at
the end, on error and on SIGINT/SIGTERM; the namespaces are deleted. Live process groups are
listed in $WORK/pids for the shell's trap.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(os.environ["ROOT"])
BIN = Path(os.environ["BIN"])
WORK = Path(os.environ["WORK"])
HERE = ROOT / "benches" / "pull"
RATE = os.environ.get("RATE", "10mbit")
DELAY_MS = float(os.environ.get("DELAY_MS", "10"))
SLICES = int(os.environ.get("SLICES", "200"))
RUNS = int(os.environ.get("RUNS", "3"))
METADATA = os.environ.get("METADATA", "")  # "", "joint" or "separate"
RUST_LOG = os.environ.get("BENCH_RUST_LOG", "info,dicom_parser=error")
REPORT = ROOT / "target" / "bench-pull-report.md"

NS_LO = "tsunagi-bench-lo"
NS_GW = "tsunagi-bench-gw"
NS_PACS = "tsunagi-bench-pacs"
GW_IP, PACS_IP = "10.77.0.1", "10.77.0.2"
PACS_AE, GW_AE, SCP_AE, MOVE_AE = "HOSPA", "TSUNAGI", "STORESCP", "BENCHMOVE"
PACS_PORT, SCP_PORT = 11112, 11113
# relays: gateway side -> PACS; PACS side -> storescp; PACS side -> gateway DIMSE
R_UP, R_SCP, R_GW = 21104, 21113, 21112
TEST_PORT, R_TEST_UP, R_TEST_DOWN = 20100, 20101, 20102

DCMQRSCP, DCMQRIDX = "/usr/bin/dcmqrscp", "/usr/bin/dcmqridx"
MOVESCU, STORESCP, ECHOSCU = "/usr/bin/movescu", "/usr/bin/storescp", "/usr/bin/echoscu"
PY = sys.executable


def say(msg: str) -> None:
    print(f"[bench-pull {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


class Failed(Exception):
    pass


def run(argv: list[str], ns: str | None = None, check: bool = True, timeout: float = 120):
    cmd = (["ip", "netns", "exec", ns] if ns else []) + argv
    env = dict(os.environ, TCP_NODELAY="1")
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    if check and p.returncode != 0:
        raise Failed(f"{' '.join(cmd)} exited {p.returncode}: {p.stderr.strip()[-2000:]}")
    return p


def parse_rate(rate: str) -> float:
    """tc's rate syntax (bit, kbit, mbit, gbit, or bps/kbps/mbps = bytes) in bits/s."""
    m = re.fullmatch(r"([0-9.]+)\s*([a-zA-Z]*)", rate.strip())
    if not m:
        raise Failed(f"RATE={rate!r} is not a tc rate such as 10mbit")
    n, unit = float(m.group(1)), m.group(2).lower()
    bits = {"": 1, "bit": 1, "kbit": 1e3, "mbit": 1e6, "gbit": 1e9, "tbit": 1e12}
    byts = {"bps": 8, "kbps": 8e3, "mbps": 8e6, "gbps": 8e9}
    if unit in bits:
        return n * bits[unit]
    if unit in byts:
        return n * byts[unit]
    raise Failed(f"RATE={rate!r}: unknown unit {unit!r}")


# --------------------------------------------------------------------------- processes


class Procs:
    """Every long-lived process, each the leader of its own session / process group."""

    def __init__(self) -> None:
        self.live: dict[int, tuple[str, subprocess.Popen]] = {}
        self.pidfile = WORK / "pids"

    def _write(self) -> None:
        self.pidfile.write_text("".join(f"{pid}\n" for pid in self.live))

    def spawn(self, name: str, argv: list[str], log: Path, ns: str | None = None,
              cwd: Path | None = None, env: dict | None = None) -> subprocess.Popen:
        cmd = (["ip", "netns", "exec", ns] if ns else []) + argv
        full_env = dict(os.environ, TCP_NODELAY="1")
        full_env.update(env or {})
        with open(log, "ab") as f:
            p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=f, stderr=f, cwd=cwd,
                                 env=full_env, start_new_session=True)
        self.live[p.pid] = (name, p)
        self._write()
        return p

    def stop(self, p: subprocess.Popen | None, grace: float = 5.0) -> None:
        if p is None:
            return
        for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(p.pid, sig)  # the group: dcmqrscp forks one child per association
            except ProcessLookupError:
                pass
            try:
                p.wait(timeout=wait)
                if sig == signal.SIGTERM:
                    try:  # children left in the group
                        os.killpg(p.pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                break
            except subprocess.TimeoutExpired:
                continue
        self.live.pop(p.pid, None)
        self._write()

    def stop_all(self) -> None:
        for _, p in list(self.live.values()):
            self.stop(p, grace=2.0)


PROCS = Procs()


def wait_until(what: str, cond, timeout: float, proc: subprocess.Popen | None = None,
               log: Path | None = None) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if cond():
            return
        if proc is not None and proc.poll() is not None:
            tail = log.read_text(errors="replace")[-3000:] if log else ""
            raise Failed(f"{what}: the process exited ({proc.returncode})\n{tail}")
        if time.monotonic() > deadline:
            tail = log.read_text(errors="replace")[-3000:] if log else ""
            raise Failed(f"{what}: not ready after {timeout:.0f} s\n{tail}")
        time.sleep(0.05)


def log_says(log: Path, text: str):
    return lambda: log.exists() and text in log.read_text(errors="replace")


def echo_ok(ns: str, ae: str, host: str, port: int) -> bool:
    p = run([ECHOSCU, "-to", "5", "-ta", "5", "-aet", "BENCHECHO", "-aec", ae, host, str(port)],
            ns=ns, check=False, timeout=30)
    return p.returncode == 0


# --------------------------------------------------------------------------- namespaces


def ns_teardown() -> None:
    for ns in (NS_LO, NS_GW, NS_PACS):
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)


def ns_setup(rate_bps: float) -> None:
    ns_teardown()  # left over by a run that was killed hard
    for ns in (NS_LO, NS_GW, NS_PACS):
        run(["ip", "netns", "add", ns])
        run(["ip", "-n", ns, "link", "set", "lo", "up"])
    run(["ip", "link", "add", "tb-gw", "netns", NS_GW, "type", "veth",
         "peer", "name", "tb-pacs", "netns", NS_PACS])
    burst = max(32 * 1024, int(rate_bps / 8 / 100))  # 10 ms of data, at least 32 KiB
    for ns, dev, ip in ((NS_GW, "tb-gw", GW_IP), (NS_PACS, "tb-pacs", PACS_IP)):
        run(["ip", "-n", ns, "addr", "add", f"{ip}/24", "dev", dev])
        run(["ip", "-n", ns, "link", "set", dev, "up"])
        run(["tc", "-n", ns, "qdisc", "add", "dev", dev, "root", "tbf", "rate", RATE,
             "burst", str(burst), "latency", "100ms"])


# --------------------------------------------------------------------------- peers


class Scenario:
    """Where everything runs and how each side reaches the other."""

    def __init__(self, name: str, shaped: bool) -> None:
        self.name, self.shaped = name, shaped
        self.ns_gw = NS_GW if shaped else NS_LO
        self.ns_pacs = NS_PACS if shaped else NS_LO
        # what the gateway side dials for the PACS
        self.pacs_addr = ("127.0.0.1", R_UP if shaped else PACS_PORT)
        self.logs = WORK / "logs" / name
        self.logs.mkdir(parents=True, exist_ok=True)
        self.pacs: subprocess.Popen | None = None
        self.relays: list[subprocess.Popen] = []
        self.gw_relay: subprocess.Popen | None = None
        self.hosttable: tuple | None = None

    def relay(self, ns: str, listen: str, target: str, tag: str) -> subprocess.Popen:
        log = self.logs / f"relay-{tag}.log"
        log.write_text("")
        p = PROCS.spawn(f"relay {tag}", [PY, str(HERE / "relay.py"), "relay", listen, target,
                                         "--delay-ms", str(DELAY_MS)], log, ns=ns)
        wait_until(f"relay {tag}", log_says(log, "relay ready"), 15, p, log)
        return p

    def start(self) -> None:
        if self.shaped:
            self.relays.append(self.relay(NS_GW, f"127.0.0.1:{R_UP}",
                                          f"{PACS_IP}:{PACS_PORT}", "up"))
            self.relays.append(self.relay(NS_PACS, f"127.0.0.1:{R_SCP}",
                                          f"{GW_IP}:{SCP_PORT}", "scp"))

    def point_pacs_at_gateway(self, dimse_port: int) -> None:
        """Make the gateway's DIMSE port reachable as move destination TSUNAGI."""
        if self.shaped:  # the PACS's HostTable names the relay; the relay learns the port
            PROCS.stop(self.gw_relay)
            self.gw_relay = self.relay(NS_PACS, f"127.0.0.1:{R_GW}",
                                       f"{GW_IP}:{dimse_port}", "gw")
            self.start_pacs(("127.0.0.1", R_GW), ("127.0.0.1", R_SCP))
        else:
            self.start_pacs(("127.0.0.1", dimse_port), ("127.0.0.1", SCP_PORT))

    def start_pacs(self, gateway: tuple, storescp: tuple) -> None:
        """(Re)start dcmqrscp when its HostTable changes."""
        if self.pacs is not None and self.pacs.poll() is None and self.hosttable == (gateway, storescp):
            return
        PROCS.stop(self.pacs)
        cfg = (HERE / "dcmqrscp.cfg.in").read_text()
        for k, v in {"PORT": PACS_PORT, "GATEWAY_AE": GW_AE, "GATEWAY_HOST": gateway[0],
                     "GATEWAY_PORT": gateway[1], "STORESCP_AE": SCP_AE,
                     "STORESCP_HOST": storescp[0], "STORESCP_PORT": storescp[1],
                     "PACS_AE": PACS_AE, "STORAGE": WORK / "pacs"}.items():
            cfg = cfg.replace(f"@{k}@", str(v))
        path = self.logs / "dcmqrscp.cfg"
        path.write_text(cfg)
        log = self.logs / "dcmqrscp.log"
        argv = [DCMQRSCP] + (["-v"] if os.environ.get("BENCH_VERBOSE") else []) + \
            ["-c", str(path), str(PACS_PORT)]
        self.pacs = PROCS.spawn("dcmqrscp", argv, log, ns=self.ns_pacs, cwd=self.logs)
        wait_until("dcmqrscp", lambda: echo_ok(self.ns_pacs, PACS_AE, "127.0.0.1", PACS_PORT),
                   30, self.pacs, log)
        self.hosttable = (gateway, storescp)

    def stop(self) -> None:
        for p in [self.gw_relay, self.pacs, *self.relays]:
            PROCS.stop(p)
        self.relays, self.gw_relay, self.pacs = [], None, None


class Gateway:
    def __init__(self, sc: Scenario, tag: str) -> None:
        self.dir = WORK / "gw" / f"{sc.name}-{tag}"
        if self.dir.exists():
            shutil.rmtree(self.dir)
        self.dir.mkdir(parents=True)
        self.log = sc.logs / f"gateway-{tag}.log"
        dimse_listen = "0.0.0.0:0" if sc.shaped else "127.0.0.1:0"
        (self.dir / "proxy.toml").write_text(f"""\
[dimse]
ae_title = "{GW_AE}"
listen = "{dimse_listen}"

[http]
listen = "127.0.0.1:0"

[store]
path = "{self.dir / 'cache'}"

[pull]
wait = "900s"   # the shaped link may take minutes; the bench wants the time, not a 504

[[upstream]]
name = "hospa"
ae_title = "{PACS_AE}"
address = "{sc.pacs_addr[0]}:{sc.pacs_addr[1]}"
retrieve = "c-move"
""")
        # BENCH_GW_WRAPPER: a command prefix for the gateway ({log} = its log path), e.g.
        # "strace -f -qq -c -e trace=fsync,fdatasync -o {log}.strace"
        wrapper = os.environ.get("BENCH_GW_WRAPPER", "").replace("{log}", str(self.log)).split()
        self.proc = PROCS.spawn("tsunagi", wrapper + [str(BIN), "serve", "--config", "proxy.toml"],
                                self.log, ns=sc.ns_gw, cwd=self.dir,
                                env={"RUST_LOG": RUST_LOG, "NO_COLOR": "1"})
        wait_until("tsunagi", log_says(self.log, "tsunagi ready"), 120, self.proc, self.log)
        line = next(l for l in self.log.read_text(errors="replace").splitlines()
                    if "tsunagi ready" in l)
        line = re.sub(r"\x1b\[[0-9;]*m", "", line)
        http = re.search(r"\bhttp=([0-9.]+:\d+)", line)
        dimse = re.search(r"\bdimse=([0-9.]+):(\d+)", line)
        if not (http and dimse):
            raise Failed(f"cannot parse the ports from: {line}")
        self.http = http.group(1)
        self.dimse_port = int(dimse.group(2))

    def stop(self) -> None:
        PROCS.stop(self.proc, grace=10.0)


# --------------------------------------------------------------------------- measurements


def floor_run(sc: Scenario, ct: dict, r: int) -> dict:
    """movescu -> dcmqrscp -> storescp -od, both DCMTK tools on the gateway side."""
    out = WORK / "floor" / f"{sc.name}-{r}"
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    log = sc.logs / f"storescp-{r}.log"
    scp = PROCS.spawn("storescp", [STORESCP, "-aet", SCP_AE, "-pdu", "131072", "-dhl",
                                   "-od", str(out), str(SCP_PORT)], log, ns=sc.ns_gw)
    try:
        wait_until("storescp", lambda: echo_ok(sc.ns_gw, SCP_AE, "127.0.0.1", SCP_PORT),
                   15, scp, log)
        host, port = sc.pacs_addr
        argv = ["ip", "netns", "exec", sc.ns_gw, MOVESCU, "-S", "-aet", MOVE_AE, "-aec", PACS_AE,
                "-aem", SCP_AE, "-k", "QueryRetrieveLevel=SERIES",
                "-k", f"StudyInstanceUID={ct['study']}", "-k", f"SeriesInstanceUID={ct['series']}",
                host, str(port)]
        mlog = sc.logs / f"movescu-{r}.log"
        first = None
        with open(mlog, "wb") as f:
            t0 = time.perf_counter()
            mv = subprocess.Popen(argv, stdout=f, stderr=f, stdin=subprocess.DEVNULL,
                                  env=dict(os.environ, TCP_NODELAY="1"), start_new_session=True)
            PROCS.live[mv.pid] = ("movescu", mv)
            PROCS._write()
            deadline = time.monotonic() + 1800
            while mv.poll() is None:
                if first is None and any(True for _ in os.scandir(out)):
                    first = time.perf_counter() - t0
                if time.monotonic() > deadline:
                    raise Failed("movescu did not finish in 30 minutes")
                time.sleep(0.002 if first is None else 0.05)
            total = time.perf_counter() - t0
            PROCS.live.pop(mv.pid, None)
            PROCS._write()
        files = list(out.iterdir())
        nbytes = sum(p.stat().st_size for p in files)
        if mv.returncode != 0 or len(files) != ct["files"]:
            raise Failed(f"floor run {r}: movescu exit {mv.returncode}, {len(files)} of "
                         f"{ct['files']} files\n{mlog.read_text(errors='replace')[-2000:]}")
        return {"first_s": first if first is not None else total, "total_s": total,
                "files": len(files), "bytes": nbytes}
    finally:
        PROCS.stop(scp)
        shutil.rmtree(out, ignore_errors=True)


def client(sc: Scenario, jobs: list[tuple[str, str]]) -> list[dict]:
    p = run([PY, str(HERE / "wado_client.py"), "--timeout", "1800"] +
            [f"{k}={u}" for k, u in jobs], ns=sc.ns_gw, timeout=1900)
    return [json.loads(l) for l in p.stdout.splitlines() if l.strip()]


def gateway_run(sc: Scenario, ct: dict, r: int, kinds: list[str]) -> dict[str, dict]:
    """Fresh gateway and cache; request `kinds` together; check the answers."""
    gw = Gateway(sc, f"{'+'.join(kinds)}-{r}")
    try:
        sc.point_pacs_at_gateway(gw.dimse_port)
        base = f"http://{gw.http}/dicom-web/studies/{ct['study']}/series/{ct['series']}"
        urls = {"series": base, "metadata": f"{base}/metadata",
                "frames": f"{base}/instances/{ct['first_sop']}/frames/1"}
        results = {res["kind"]: res for res in client(sc, [(k, urls[k]) for k in kinds])}
        (sc.logs / f"client-{'+'.join(kinds)}-{r}.json").write_text(json.dumps(results, indent=1))
    finally:
        gw.stop()
    for k, res in results.items():
        problem = res.get("error")
        if not problem and res.get("status") != 200:
            problem = f"status {res.get('status')} (Warning: {res.get('warning')})"
        if not problem and k == "series" and (res.get("parts") != ct["files"] or not res.get("complete")):
            problem = f"{res.get('parts')} of {ct['files']} parts, complete={res.get('complete')}"
        if not problem and k == "metadata" and res.get("instances") != ct["files"]:
            problem = f"{res.get('instances')} of {ct['files']} instances"
        if not problem and k == "frames" and res.get("parts") != 1:
            problem = f"{res.get('parts')} parts"
        if problem:
            tail = gw.log.read_text(errors="replace")[-3000:]
            raise Failed(f"{sc.name} {k} run {r}: {problem}\n--- gateway log tail ---\n{tail}")
        res["log"] = str(gw.log)
    return results


def verify_link(sc: Scenario, rate_bps: float) -> dict:
    """Echo round trips and a timed 5 MB transfer, each direction, through the relays."""
    procs = []
    try:
        for ns in (NS_GW, NS_PACS):
            log = sc.logs / f"testsrv-{ns}.log"
            log.write_text("")
            p = PROCS.spawn("testsrv", [PY, str(HERE / "relay.py"), "testsrv",
                                        f"0.0.0.0:{TEST_PORT}"], log, ns=ns)
            procs.append(p)
            wait_until("testsrv", log_says(log, "testsrv ready"), 15, p, log)
        procs.append(sc.relay(NS_GW, f"127.0.0.1:{R_TEST_UP}", f"{PACS_IP}:{TEST_PORT}", "test-up"))
        procs.append(sc.relay(NS_PACS, f"127.0.0.1:{R_TEST_DOWN}", f"{GW_IP}:{TEST_PORT}", "test-down"))
        nbytes = int(os.environ.get("LINK_CHECK_BYTES", "5000000"))

        def probe(ns: str, target: str, n: int) -> dict:
            p = run([PY, str(HERE / "relay.py"), "probe", target, "--bytes", str(n),
                     "--pings", "10"], ns=ns, timeout=600)
            return json.loads(p.stdout)

        out = {
            "raw": probe(NS_GW, f"{PACS_IP}:{TEST_PORT}", 200_000),  # the veth alone: no delay
            "up": probe(NS_GW, f"127.0.0.1:{R_TEST_UP}", nbytes),    # gateway -> PACS
            "down": probe(NS_PACS, f"127.0.0.1:{R_TEST_DOWN}", nbytes),  # PACS -> gateway
        }
        for k in ("up", "down"):
            o = out[k]
            say(f"link check {k:4s}: {o['bytes'] / 1e6:.1f} MB in {o['seconds']:.2f} s "
                f"(expected ~{o['bytes'] * 8 / rate_bps:.2f} s) = {o['mbit_s']:.2f} Mbit/s, "
                f"echo RTT {o['rtt_ms']:.1f} ms")
        say(f"link check raw veth (no relay): echo RTT {out['raw']['rtt_ms']:.2f} ms")
        for k in ("up", "down"):
            o = out[k]
            if not (0.7 * rate_bps / 1e6 <= o["mbit_s"] <= 1.15 * rate_bps / 1e6):
                raise Failed(f"link check {k}: {o['mbit_s']:.2f} Mbit/s, expected about {rate_bps / 1e6:.2f}")
            if not (2 * DELAY_MS * 0.9 <= o["rtt_ms"] <= 2 * DELAY_MS + 10):
                raise Failed(f"link check {k}: RTT {o['rtt_ms']:.1f} ms, expected about {2 * DELAY_MS:.0f}")
        return out
    finally:
        for p in procs:
            PROCS.stop(p)


# --------------------------------------------------------------------------- report


def med(xs: list[float]) -> float:
    return statistics.median(xs)


def fmt_s(xs: list[float]) -> str:
    if not xs:
        return "-"
    m = med(xs)
    spread = f" ({min(xs):.3f}–{max(xs):.3f})" if len(xs) > 1 else ""
    return f"{m:.3f}{spread}"


def ratio(a: list[float], b: list[float]) -> str:
    return f"{med(a) / med(b):.2f}×" if a and b and med(b) > 0 else "-"


def report(ct: dict, results: dict, link: dict | None, rate_bps: float, started: float,
           meta_mode: dict) -> str:
    L = []
    L.append("# Tsunagi pull-through benchmark")
    L.append("")
    L.append(f"Series: {ct['files']} slices, 512x512 16-bit CT, {ct['bytes']:,} bytes "
             f"(Explicit VR LE) in DCMTK dcmqrscp as {PACS_AE}. Medians of {RUNS} run(s), "
             f"(min–max); ratios are median / median of the floor measured in the same run.")
    L.append(f"Floor: DCMTK movescu (study root, SERIES) -> dcmqrscp -> DCMTK storescp -od "
             f"(max PDU 128 KiB, no fsync). Tsunagi: fresh gateway and cache per request set, "
             f"C-MOVE to its own SCP (every instance fsynced before its C-STORE-RSP).")
    L.append("")
    L.append("| scenario | measurement | median s (min–max) | vs floor |")
    L.append("|---|---|---|---|")
    for name in ("loopback", "shaped"):
        if name not in results:
            continue
        R = results[name]
        fl_first, fl_total = R["floor_first"], R["floor_total"]
        label = name if name == "loopback" else f"shaped {RATE}, {2 * DELAY_MS:g} ms RTT"
        rows = [
            ("floor: first file", fl_first, "1.00× (first)"),
            ("floor: total", fl_total, "1.00× (total)"),
            ("series: first byte", R["series_ttfb"], ratio(R["series_ttfb"], fl_first) + " of first"),
            ("series: first instance", R["series_first"], ratio(R["series_first"], fl_first) + " of first"),
            ("series: first delimiter after it", R["series_first_delim"], ratio(R["series_first_delim"], fl_first) + " of first"),
            ("series: total", R["series_total"], ratio(R["series_total"], fl_total) + " of total"),
            (f"metadata ({meta_mode[name]}): first byte", R["meta_ttfb"], ratio(R["meta_ttfb"], fl_total) + " of total"),
            (f"metadata ({meta_mode[name]}): total", R["meta_total"], ratio(R["meta_total"], fl_total) + " of total"),
            ("frames/1 cold: first byte", R["frames_ttfb"], ratio(R["frames_ttfb"], fl_first) + " of first"),
            ("frames/1 cold: total", R["frames_total"], ratio(R["frames_total"], fl_first) + " of first"),
        ]
        for what, xs, vs in rows:
            L.append(f"| {label} | {what} | {fmt_s(xs)} | {vs} |")
    if link:
        L.append("")
        L.append(f"Shaped link: veth between namespaces {NS_GW} and {NS_PACS}, tbf {RATE} on "
                 f"both ends, {DELAY_MS:g} ms one way per direction added by benches/pull/relay.py.")
        ideal = ct["bytes"] * 8 / rate_bps
        L.append("")
        L.append("| link check | value |")
        L.append("|---|---|")
        for k, what in (("up", "gateway → PACS"), ("down", "PACS → gateway")):
            o = link[k]
            L.append(f"| {what}: {o['bytes'] / 1e6:.1f} MB through the relay | {o['seconds']:.2f} s "
                     f"= {o['mbit_s']:.2f} Mbit/s (nominal {rate_bps / 1e6:g}) |")
            L.append(f"| {what}: echo round trip through the relay | {o['rtt_ms']:.1f} ms |")
        L.append(f"| veth alone: echo round trip | {link['raw']['rtt_ms']:.2f} ms |")
        L.append(f"| series bytes / link rate | {ideal:.1f} s |")
        if "shaped" in results:
            R = results["shaped"]
            L.append(f"| floor total / (bytes / rate) | {med(R['floor_total']) / ideal:.2f}× |")
            L.append(f"| Tsunagi series total / (bytes / rate) | {med(R['series_total']) / ideal:.2f}× |")
    L.append("")
    L.append(f"Wall time {time.time() - started:.0f} s; RATE={RATE} DELAY_MS={DELAY_MS:g} "
             f"SLICES={SLICES} RUNS={RUNS}; host {os.uname().nodename}, {os.cpu_count()} CPUs.")
    return "\n".join(L) + "\n"


# --------------------------------------------------------------------------- main


def scenario_rounds(sc: Scenario, ct: dict, meta_mode: str) -> dict:
    R = {k: [] for k in ("floor_first", "floor_total", "series_ttfb", "series_first",
                         "series_first_delim", "series_total", "meta_ttfb", "meta_total", "frames_ttfb", "frames_total")}
    if sc.shaped:  # fixed HostTable: both destinations are relays in the PACS namespace
        sc.start_pacs(("127.0.0.1", R_GW), ("127.0.0.1", R_SCP))
    else:  # the gateway's entry is filled in when a gateway starts
        sc.start_pacs(("127.0.0.1", 1), ("127.0.0.1", SCP_PORT))
    for r in range(1, RUNS + 1):
        f = floor_run(sc, ct, r)
        R["floor_first"].append(f["first_s"])
        R["floor_total"].append(f["total_s"])
        say(f"{sc.name} run {r}: floor first file {f['first_s']:.3f} s, total {f['total_s']:.3f} s")
        kinds = ["series", "metadata"] if meta_mode == "joint" else ["series"]
        res = gateway_run(sc, ct, r, kinds)
        s = res["series"]
        R["series_ttfb"].append(s["ttfb_s"])
        R["series_first"].append(s["first_part_s"])
        R["series_first_delim"].append(s.get("first_part_delim_s", s["total_s"]))
        R["series_total"].append(s["total_s"])
        say(f"{sc.name} run {r}: series first byte {s['ttfb_s']:.3f} s, first instance "
            f"{s['first_part_s']:.3f} s (next delimiter {R['series_first_delim'][-1]:.3f} s), total {s['total_s']:.3f} s ({s['bytes']:,} bytes)")
        if meta_mode != "joint":
            res = gateway_run(sc, ct, r, ["metadata"])
        m = res["metadata"]
        R["meta_ttfb"].append(m["ttfb_s"])
        R["meta_total"].append(m["total_s"])
        say(f"{sc.name} run {r}: metadata ({meta_mode}) first byte {m['ttfb_s']:.3f} s, "
            f"total {m['total_s']:.3f} s")
        fr = gateway_run(sc, ct, r, ["frames"])["frames"]
        R["frames_ttfb"].append(fr["ttfb_s"])
        R["frames_total"].append(fr["total_s"])
        say(f"{sc.name} run {r}: frames/1 first byte {fr['ttfb_s']:.3f} s, total {fr['total_s']:.3f} s")
    return R


def main() -> int:
    started = time.time()
    rate_bps = parse_rate(RATE)

    def on_signal(signum, _frame):
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)
    ct = json.loads((WORK / "ct.json").read_text())
    results: dict = {}
    link = None
    meta_mode = {"loopback": METADATA or "separate", "shaped": METADATA or "joint"}
    scenarios = [s for s in os.environ.get("SCENARIOS", "loopback shaped").split() if s]
    try:
        # dcmqridx: the PACS's index over the generated files
        run([DCMQRIDX, str(WORK / "pacs")] + sorted(str(p) for p in (WORK / "pacs").glob("ct-*.dcm")))
        ns_setup(rate_bps)
        for name in scenarios:
            sc = Scenario(name, shaped=(name == "shaped"))
            try:
                say(f"--- {name} ---")
                if sc.shaped:
                    link = verify_link(sc, rate_bps)
                sc.start()
                results[name] = scenario_rounds(sc, ct, meta_mode[name])
            finally:
                sc.stop()
    finally:
        PROCS.stop_all()
        ns_teardown()
    text = report(ct, results, link, rate_bps, started, meta_mode)
    REPORT.parent.mkdir(parents=True, exist_ok=True)
    REPORT.write_text(text)
    (WORK / "results.json").write_text(json.dumps({"ct": ct, "results": results, "link": link}, indent=1))
    print(text)
    say(f"report written to {REPORT}")
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

#!/usr/bin/env python3
"""Reference codecs on the frames `benches/transcode.rs` dumped (TRANSCODE_BENCH_DUMP).

    refs.py FRAMES_DIR CHARLS_BENCH OUT_JSON

- HTJ2K: Debian's OpenJPH 0.9 command-line tools, with the settings tsunagi's encoder uses
  (5 decompositions, 64x64 code blocks, RPCL, no colour transform). `.201`/`.202`:
  `-reversible true`; `.203`: `-reversible false -qstep Q`, Q found by bisection so that
  OpenJPH's PSNR matches ours (tsunagi's step for `Quality::default()` is 5 stored units,
  5/2^bits relative, but openjph-core's delta quantises about twice as coarsely as OpenJPH's
  -qstep of the same value; the nominal-step result is kept in the JSON). OpenJPH 0.9 cannot write
  tile-parts or TLM, so its `.202` figure is the plain RPCL codestream. Times are the tools'
  own "Elapsed time" (clock(): CPU time after argument parsing), which includes reading and
  writing the PGM/PPM and codestream from the page cache; the process wall time is kept too.
  Signed CT goes through OpenJPH as the +32768-shifted unsigned image (same coefficients
  after the DC level shift): the 0.9 tools clip negative samples.
  Every lossless round trip is checked bit-exact, and ojph_expand also decodes tsunagi's own
  `.201` codestream (unsigned frames only), checked bit-exact and timed.
- JPEG-LS: Debian's CharLS 2.4 through benches/codecs/charls_bench.c, timed in process
  (no I/O), NEAR 0 for `.80` and 2 for `.81`; it also decodes tsunagi's codestreams.

Medians over several runs. Writes one JSON object per (frame, syntax) to OUT_JSON.
"""
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time

ITERS = {"CT": 15, "US": 15, "CR": 7}
CHARLS_SECS = {"CT": 1.0, "US": 1.0, "CR": 2.0}


def read_tsv(path):
    with open(path) as f:
        head, *rows = [line.rstrip("\n").split("\t") for line in f if line.strip()]
    return [dict(zip(head, r)) for r in rows]


def pnm_pixels(path):
    """The sample bytes of a binary PGM/PPM (header skipped)."""
    with open(path, "rb") as f:
        data = f.read()
    fields, pos = [], 0
    while len(fields) < 4:
        while data[pos : pos + 1].isspace():
            pos += 1
        if data[pos : pos + 1] == b"#":
            pos = data.index(b"\n", pos) + 1
            continue
        end = pos
        while not data[end : end + 1].isspace():
            end += 1
        fields.append(data[pos:end])
        pos = end
    return data[pos + 1 :]


def pnm_array(path):
    """The samples of a PGM/PPM as a float64 numpy array."""
    import numpy as np
    with open(path, "rb") as f:
        maxval = int(f.read(64).split()[3])
    return np.frombuffer(pnm_pixels(path), ">u2" if maxval > 255 else "u1").astype(np.float64)


def psnr(a, b, bits):
    import numpy as np
    mse = float(np.mean((a - b) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(((1 << bits) - 1) ** 2 / mse)


def run_tool(args):
    """Run an OpenJPH tool; return (reported CPU seconds, wall seconds)."""
    t = time.perf_counter()
    p = subprocess.run(args, capture_output=True, text=True)
    wall = time.perf_counter() - t
    if p.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed: {p.stdout}{p.stderr}")
    m = re.search(r"Elapsed time = ([0-9.eE+-]+)", p.stdout + p.stderr)
    if not m:
        raise SystemExit(f"{args[0]} printed no elapsed time: {p.stdout}{p.stderr}")
    return float(m.group(1)), wall


def timed(args, n):
    cpu, wall = zip(*(run_tool(args) for _ in range(n)))
    return statistics.median(cpu), statistics.median(wall)


def match_quality(frame, args, code, out, pnm, bits, target):
    """The -qstep at which OpenJPH reaches our PSNR (openjph-core's quantisation step is not
    OpenJPH's -qstep: at the same nominal value OpenJPH quantises ~2x finer), so that sizes
    compare at equal quality. Returns (qstep, facts)."""
    orig = pnm_array(pnm)

    def trial(q):
        run_tool(args + ["-qstep", repr(q)])
        run_tool(["ojph_expand", "-i", code, "-o", out])
        return psnr(orig, pnm_array(out), bits), os.path.getsize(code)

    nominal = 5.0 / (1 << bits)
    p0, s0 = trial(nominal)
    facts = {"nominal_qstep": nominal, "nominal_psnr": p0, "nominal_bytes": s0}
    # PSNR falls as the step grows: bracket, then bisect in log space
    lo, hi, p = nominal, nominal, p0
    if p0 > target:
        while p > target and hi < 1.0:
            lo, hi = hi, hi * 2
            p, _ = trial(hi)
    else:
        while p < target and lo > 1e-5:
            hi, lo = lo, lo / 2
            p, _ = trial(lo)
    q = (lo * hi) ** 0.5
    for _ in range(10):
        q = (lo * hi) ** 0.5
        p, _ = trial(q)
        if abs(p - target) < 0.1:
            break
        lo, hi = (q, hi) if p > target else (lo, q)
    facts.update({"qstep": q, "psnr": p})
    return q, facts


def ojph(frame, frames_dir, work, syntax, n, target_psnr=None):
    pnm = os.path.join(frames_dir, frame["pnm"])
    ext = os.path.splitext(pnm)[1]
    bits = int(frame["bits_stored"])
    code = os.path.join(work, f"ref-{frame['frame']}-{syntax}.j2c")
    out = os.path.join(work, f"ref-{frame['frame']}-{syntax}{ext}")
    args = ["ojph_compress", "-i", pnm, "-o", code, "-num_decomps", "5",
            "-block_size", "{64,64}", "-prog_order", "RPCL"]
    if int(frame["samples"]) == 3:
        args += ["-colour_trans", "false"]
    lossless = syntax != "htj2k_lossy_203"
    extra = {}
    if lossless:
        args += ["-reversible", "true"]
    else:
        args += ["-reversible", "false"]
        qstep, extra = match_quality(frame, args, code, out, pnm, bits, target_psnr)
        args += ["-qstep", repr(qstep)]
    enc_cpu, enc_wall = timed(args, n)
    dec_cpu, dec_wall = timed(["ojph_expand", "-i", code, "-o", out], n)
    exact = pnm_pixels(out) == pnm_pixels(pnm)
    if lossless and not exact:
        raise SystemExit(f"ojph round trip of {frame['frame']} is not bit-exact")
    r = {"ref": "OpenJPH 0.9 ojph_compress/ojph_expand", "encoded_bytes": os.path.getsize(code),
         "enc_s": enc_cpu, "dec_s": dec_cpu, "enc_wall_s": enc_wall, "dec_wall_s": dec_wall,
         "exact": exact, "timing": "tool-reported CPU time incl. PNM/codestream file I/O",
         "iters": n, **extra}
    ours = os.path.join(frames_dir, f"ours-{frame['frame']}-{syntax}.bin")
    if syntax == "htj2k_201" and frame["signed"] == "0" and os.path.exists(ours):
        oc = os.path.join(work, f"ours-{frame['frame']}.j2c")
        os.symlink(ours, oc)
        oo = os.path.join(work, f"ours-{frame['frame']}{ext}")
        cpu, _ = timed(["ojph_expand", "-i", oc, "-o", oo], n)
        r["ours_dec_s"] = cpu
        r["ours_exact"] = pnm_pixels(oo) == pnm_pixels(pnm)
    return r


def charls(frame, frames_dir, charls_bin, syntax):
    near = 0 if syntax == "jpegls_80" else 2
    args = [charls_bin, os.path.join(frames_dir, f"{frame['frame']}.raw"), frame["columns"],
            frame["rows"], frame["samples"], frame["bits_allocated"], frame["bits_stored"],
            str(near), str(CHARLS_SECS[frame["frame"]])]
    ours = os.path.join(frames_dir, f"ours-{frame['frame']}-{syntax}.bin")
    if os.path.exists(ours):
        args.append(ours)
    p = subprocess.run(args, capture_output=True, text=True)
    if p.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed: {p.stdout}{p.stderr}")
    kv = dict(item.split("=", 1) for item in p.stdout.split())
    r = {"ref": "CharLS 2.4 (libcharls, in process)", "encoded_bytes": int(kv["encoded_bytes"]),
         "enc_s": float(kv["enc_s"]), "dec_s": float(kv["dec_s"]),
         "exact": kv["max_err"] == "0", "max_err": int(kv["max_err"]),
         "timing": "in-process, no I/O", "iters": int(kv["enc_iters"])}
    if "ours_dec_s" in kv:
        r["ours_dec_s"] = float(kv["ours_dec_s"])
        r["ours_exact"] = kv["ours_max_err"] == "0"
    return r


def main():
    frames_dir, charls_bin, out_json = sys.argv[1:4]
    frames = read_tsv(os.path.join(frames_dir, "frames.tsv"))
    sizes = {(r["frame"], r["syntax"]): r for r in read_tsv(os.path.join(frames_dir, "sizes.tsv"))}
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-codecs-") as work:
        for f in frames:
            n = ITERS.get(f["frame"], 7)
            for syntax in ["htj2k_201", "htj2k_rpcl_202", "htj2k_lossy_203"]:
                if syntax == "htj2k_rpcl_202":
                    continue  # same OpenJPH codestream as .201; copied below
                print(f"[refs] {f['frame']} {syntax} (OpenJPH x{n})", file=sys.stderr)
                target = float(sizes[(f["frame"], syntax)]["psnr_db"])
                r = ojph(f, frames_dir, work, syntax, n, target)
                results.append({"frame": f["frame"], "syntax": syntax, **r})
                if syntax == "htj2k_201":
                    rp = {k: v for k, v in r.items() if not k.startswith("ours_")}
                    rp["note"] = "OpenJPH 0.9 writes no tile-parts/TLM: same codestream as .201"
                    results.append({"frame": f["frame"], "syntax": "htj2k_rpcl_202", **rp})
            for syntax in ["jpegls_80", "jpegls_near_81"]:
                print(f"[refs] {f['frame']} {syntax} (CharLS)", file=sys.stderr)
                r = charls(f, frames_dir, charls_bin, syntax)
                results.append({"frame": f["frame"], "syntax": syntax, **r})
    with open(out_json, "w") as fh:
        json.dump(results, fh, indent=1)


if __name__ == "__main__":
    main()

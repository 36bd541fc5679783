#!/usr/bin/env python3
"""Join criterion's results for `benches/transcode.rs`, the sizes it dumped and the reference
codecs' figures (refs.py) into one table.

    report.py FRAMES_DIR CRITERION_DIR REFS_JSON SINCE_EPOCH HEADER_MD OUT_MD

Only criterion results written after SINCE_EPOCH count (older ones are shown as "stale").
Throughput is MB/s of native pixel bytes (10^6 bytes/s) from criterion's median estimate.
"""
import glob
import json
import os
import sys

FRAMES = ["CT", "CR", "US"]
SYNTAXES = [
    ("explicit_le", "Explicit VR LE (copy)"),
    ("rle", "RLE .5"),
    ("jpeg_lossless_70", "JPEG Lossless SV1 .70"),
    ("jpegls_80", "JPEG-LS .80"),
    ("htj2k_201", "HTJ2K .201"),
    ("htj2k_rpcl_202", "HTJ2K RPCL .202"),
    ("jpeg_baseline_50", "JPEG baseline .50 (q90)"),
    ("jpegls_near_81", "JPEG-LS near .81 (NEAR 2)"),
    ("htj2k_lossy_203", "HTJ2K lossy .203 (step 5)"),
]
# below this ours/reference speed ratio a codec is flagged as unexpectedly slow
SLOW = 0.5


def read_tsv(path):
    with open(path) as f:
        head, *rows = [line.rstrip("\n").split("\t") for line in f if line.strip()]
    return [dict(zip(head, r)) for r in rows]


def criterion_results(root, since):
    """{(op, frame, label): (median seconds, fresh?)}"""
    out = {}
    for bj in glob.glob(os.path.join(root, "*", "*", "new", "benchmark.json")):
        with open(bj) as f:
            meta = json.load(f)
        group = meta.get("group_id", "")
        if "/" not in group:
            continue
        op, frame = group.split("/", 1)
        label = meta.get("value_str") or meta.get("function_id")
        est = os.path.join(os.path.dirname(bj), "estimates.json")
        with open(est) as f:
            ns = json.load(f)["median"]["point_estimate"]
        out[(op, frame, label)] = (ns * 1e-9, os.path.getmtime(est) >= since)
    return out


def mbps(nbytes, secs):
    return nbytes / secs / 1e6 if secs else None


def fmt(v, digits=1):
    if v is None:
        return "—"
    if isinstance(v, str):
        return v
    if v >= 100:
        return f"{v:.0f}"
    return f"{v:.{digits}f}"


def main():
    frames_dir, crit_dir, refs_json, since, header_md, out_md = sys.argv[1:7]
    since = float(since)
    sizes = {(r["frame"], r["syntax"]): r for r in read_tsv(os.path.join(frames_dir, "sizes.tsv"))}
    frames = {r["frame"]: r for r in read_tsv(os.path.join(frames_dir, "frames.tsv"))}
    crit = criterion_results(crit_dir, since)
    with open(refs_json) as f:
        refs = {(r["frame"], r["syntax"]): r for r in json.load(f)}

    lines = []
    flags = []
    lines.append(
        "| frame | syntax | our enc MB/s | our dec MB/s | our size B | our ratio | reference "
        "| ref enc MB/s | ref dec MB/s | ref size B | ref ratio | enc ours/ref | dec ours/ref "
        "| size ours/ref | ref decoding our stream MB/s |"
    )
    lines.append("|" + "---|" * 15)
    for fr in FRAMES:
        if fr not in frames:
            continue
        for label, title in SYNTAXES:
            s = sizes.get((fr, label))
            if not s:
                continue
            native = int(s["native_bytes"])
            ours_bytes = int(s["encoded_bytes"])
            cells = {}
            for op in ("encode", "decode"):
                got = crit.get((op, fr, label))
                if got is None:
                    cells[op] = None
                elif not got[1]:
                    cells[op] = "stale"
                else:
                    cells[op] = mbps(native, got[0])
            lossy = s["max_abs_err"] != "0"
            size_note = f" (max err {s['max_abs_err']}, {s['psnr_db']} dB)" if lossy else ""
            ref = refs.get((fr, label))
            row = [fr, title, fmt(cells["encode"]), fmt(cells["decode"]),
                   f"{ours_bytes}{size_note}", f"{float(s['ratio']):.2f}"]
            if ref:
                renc = mbps(native, ref["enc_s"])
                rdec = mbps(native, ref["dec_s"])
                rsize = ref["encoded_bytes"]
                name = ref["ref"]
                if fr == "CT" and name.startswith("OpenJPH"):
                    name += " (CT +32768 as unsigned)"
                if "psnr" in ref:
                    name += (f" at -qstep {ref['qstep']:.3g} ({ref['psnr']:.1f} dB, matched to "
                             f"ours; at the nominal {ref['nominal_qstep']:.3g}: "
                             f"{ref['nominal_bytes']} B, {ref['nominal_psnr']:.1f} dB)")
                if ref.get("note"):
                    name += f"; {ref['note']}"
                enc_ratio = (cells["encode"] / renc
                             if isinstance(cells["encode"], float) and renc else None)
                dec_ratio = (cells["decode"] / rdec
                             if isinstance(cells["decode"], float) and rdec else None)
                ours_dec = mbps(native, ref["ours_dec_s"]) if "ours_dec_s" in ref else None
                od = fmt(ours_dec)
                if "ours_exact" in ref:
                    od += " (exact)" if ref["ours_exact"] else " (NOT exact)"
                row += [name, fmt(renc), fmt(rdec), str(rsize), f"{native / rsize:.2f}",
                        fmt(enc_ratio, 2), fmt(dec_ratio, 2), f"{ours_bytes / rsize:.3f}", od]
                for what, r, ours_v, ref_v in (("encode", enc_ratio, cells["encode"], renc),
                                               ("decode", dec_ratio, cells["decode"], rdec)):
                    if r is not None and r < SLOW:
                        flags.append(
                            f"- **{fr} {title} {what}**: {fmt(ours_v)} MB/s vs {fmt(ref_v)} MB/s "
                            f"for {ref['ref']} ({r:.2f}x)")
            else:
                row += ["—"] * 9
            lines.append("| " + " | ".join(row) + " |")

    with open(header_md) as f:
        header = f.read()
    body = header + "\n" + "\n".join(lines) + "\n"
    body += (
        "\nMB/s = 10^6 bytes of native pixels (Explicit VR LE frame) per second; ours from "
        "criterion's median, references from the median of their runs. Ratios > 1 mean ours "
        "is faster (enc, dec) or larger (size).\n")
    body += f"\n### Flagged: ours below {SLOW}x the reference\n\n"
    body += ("\n".join(flags) if flags else "none") + "\n"
    with open(out_md, "w") as f:
        f.write(body)
    print(body)


if __name__ == "__main__":
    main()

"""``ecgcore info FILE...``: format, rate, duration, leads, amplitude ranges, quality flags."""

from __future__ import annotations

import json
import sys

import ecgcore

from ._common import expand_inputs, report_failure


def add_parser(sub):
    p = sub.add_parser("info", help="describe ECG files", description=__doc__)
    p.add_argument("inputs", nargs="+", metavar="FILE", help="files, directories or globs")
    p.add_argument("--json", action="store_true", help="one JSON object per file (JSON lines)")
    return p


def _text(d: dict) -> str:
    lines = [f"{d['source']}",
             f"  format    {d['format']}",
             f"  fs        {d['fs']:g} Hz",
             f"  duration  {d['duration_s']:.3f} s ({d['n_samples']} samples)",
             f"  leads     {' '.join(d['leads'])}"]
    if d["derived"]:
        lines.append(f"  derived   {' '.join(d['derived'])}")
    if d.get("median"):
        lines.append(f"  median    {d['median']['n_samples']} samples @ {d['median']['fs']:g} Hz")
    q = d["quality"]
    lines.append("  lead      min mV    max mV   flags")
    for lead, (lo, hi) in d["amplitude_range_mv"].items():
        ql = q["leads"][lead]
        flags = [k for k in ("flat", "clipped", "implausible_amplitude") if ql[k]]
        if ql["nan_fraction"] > 0:
            flags.insert(0, f"nan {100 * ql['nan_fraction']:.1f}%")
        lo_s = "nan" if lo is None else f"{lo:9.3f}"
        hi_s = "nan" if hi is None else f"{hi:9.3f}"
        lines.append(f"  {lead:<6} {lo_s:>9} {hi_s:>9}   {', '.join(flags) or 'ok'}")
    rec_flags = [k for k, v in q["flags"].items() if v]
    if rec_flags:
        lines.append(f"  record flags: {', '.join(rec_flags)}")
    return "\n".join(lines)


def run(args) -> int:
    failed = 0
    paths = expand_inputs(args.inputs)
    if not paths:
        print("ecgcore info: no input files", file=sys.stderr)
        return 1
    for path in paths:
        try:
            rec = ecgcore.read(path)
        except ecgcore.ReadError as exc:
            report_failure(path, exc)
            failed += 1
            continue
        d = rec.to_dict()
        print(json.dumps(d) if args.json else _text(d))
    if failed:   # the failures scrolled by among the descriptions: count them at the end
        print(f"ecgcore info: {len(paths) - failed} described, {failed} failed (named above)", file=sys.stderr)
    return 1 if failed else 0

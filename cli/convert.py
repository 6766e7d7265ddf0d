"""``ecgcore convert IN... --to wfdb|npy --out DIR``: rewrite records in another format."""

from __future__ import annotations

import os
import sys

import ecgcore

from ._common import expand_inputs, report_failure


def add_parser(sub):
    p = sub.add_parser("convert", help="convert ECG files to WFDB or NPY", description=__doc__)
    p.add_argument("inputs", nargs="+", metavar="IN")
    p.add_argument("--to", choices=("wfdb", "npy"), default="wfdb")
    p.add_argument("--out", required=True, metavar="DIR")
    p.add_argument("--fmt", choices=("16", "212"), default="16",
                   help="WFDB signal format (default 16)")
    p.add_argument("--conform", action="store_true", help="write the standard 12 leads")
    return p


def _stem(path: str) -> str:
    base = os.path.basename(path)
    for suf in (".hea",):
        if base.endswith(suf):
            base = base[: -len(suf)]
    return os.path.splitext(base)[0] if "." in base else base


def run(args) -> int:
    os.makedirs(args.out, exist_ok=True)
    failed = 0
    for path in expand_inputs(args.inputs):
        try:
            rec = ecgcore.read(path)
            if args.conform:
                rec = rec.conform()
            target = os.path.join(args.out, _stem(path))
            if args.to == "wfdb":
                ecgcore.write(rec, target, format="wfdb", fmt=int(args.fmt))
            else:
                ecgcore.write(rec, target + ".npy", format="npy")
        except ecgcore.ECGError as exc:
            report_failure(path, exc)
            failed += 1
    if failed:
        print(f"ecgcore convert: {failed} input(s) failed", file=sys.stderr)
    return 1 if failed else 0

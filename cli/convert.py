"""``ecgcore convert IN... --to wfdb|npy --out DIR``: rewrite records in another format.

Each record becomes ``DIR/<name>``, where the name is the record's path relative to
the inputs' common folder without its suffix (a container's records go to
``DIR/<file>/<exam id>``), so records of one name never overwrite each other. A
record that cannot be read or written is named on stderr and the batch goes on.
"""

from __future__ import annotations

import os
import sys

import ecgcore

from ._common import expand_inputs, output_names, report_failure


def add_parser(sub):
    p = sub.add_parser("convert", help="convert ECG files to WFDB or NPY", description=__doc__)
    p.add_argument("inputs", nargs="+", metavar="IN")
    p.add_argument("--to", choices=("wfdb", "npy"), default="wfdb")
    p.add_argument("--out", required=True, metavar="DIR")
    p.add_argument("--fmt", choices=("16", "212"), default="16",
                   help="WFDB signal format (default 16)")
    p.add_argument("--conform", action="store_true", help="write the standard 12 leads")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def run(args) -> int:
    from tqdm import tqdm

    paths = expand_inputs(args.inputs)
    if not paths:
        print("ecgcore convert: no input files", file=sys.stderr)
        return 2
    os.makedirs(args.out, exist_ok=True)
    failed = 0
    bar = tqdm(total=len(paths), desc="ecgcore convert", unit="rec", file=sys.stderr,
               disable=args.no_progress, dynamic_ncols=True)
    for path, name in zip(paths, output_names(paths)):
        target = os.path.join(args.out, *name.split("/"))
        try:
            rec = ecgcore.read(path)
            if args.conform:
                rec = rec.conform()
            os.makedirs(os.path.dirname(target), exist_ok=True)
            if args.to == "wfdb":
                ecgcore.write(rec, target, format="wfdb", fmt=int(args.fmt))
            else:
                ecgcore.write(rec, target + ".npy", format="npy")
        except Exception as exc:  # noqa: BLE001 - a batch never stops for one bad record
            bar.clear()
            report_failure(path, exc)
            failed += 1
            bar.set_postfix(failed=failed, refresh=False)
        bar.update(1)
    bar.close()
    if failed:
        print(f"ecgcore convert: {failed} input(s) failed", file=sys.stderr)
    return 1 if failed else 0

"""``ecgcore delineate INPUT... --out marks.csv|parquet``: P/QRS/T marks of many ECGs.

One row per (record, beat, lead), lead ``global`` first: the nine marks as sample
indices (-1 = absent), the beat class and quality, and the record's flags.
The inputs run in chunks (``--chunk`` records each) on worker processes
(``--workers``) or a dask cluster (``--engine dask``, ``--scheduler``); each
chunk writes its part under ``<out>.parts/`` and the parts are joined, in input
order, into the output at the end (written to a temporary name and renamed).
A record that fails goes to ``<out>.errors.jsonl`` next to the output (``marks.csv``
-> ``marks.errors.jsonl``) and does not
stop the batch. ``--resume`` skips inputs already in the output and the
finished chunks of a killed run. Exit 0 all ok, 1 some inputs failed, 2 usage.
"""

from __future__ import annotations


def add_parser(sub):
    p = sub.add_parser("delineate", help="P/QRS/T marks of many ECGs", description=__doc__)
    _common_args(p, "marks.csv")
    return p


def _common_args(p, example):
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="files, directories or globs")
    p.add_argument("--out", required=True, help=f"output table (.csv or .parquet), e.g. {example}")
    p.add_argument("--workers", type=int, default=1,
                   help="worker processes (local engine) or LocalCluster workers (dask "
                        "without --scheduler); default 1")
    p.add_argument("--chunk", type=int, default=64, metavar="K",
                   help="records per chunk, i.e. per part file and task (default 64)")
    p.add_argument("--engine", choices=("local", "dask"), default="local",
                   help="local process pool (default) or dask.distributed")
    p.add_argument("--scheduler", default=None, metavar="ADDR",
                   help="dask.distributed scheduler address (with --engine dask; without it "
                        "a LocalCluster on 127.0.0.1 is started)")
    p.add_argument("--resume", action="store_true",
                   help="skip inputs already in the output and the finished chunks of a "
                        "killed run")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args) -> int:
    from ._tables import run_table_batch
    return run_table_batch(args, "delineate")

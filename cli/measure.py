"""``ecgcore measure INPUT... --out measures.csv``: intervals, axes, amplitudes and P-wave
indices of many ECGs, one row per record (see ``ecgcore.measure``).

NaN cells have their reason in the ``reasons`` column (JSON). Chunks, workers,
dask engine, progress bar, ``<out>.errors.jsonl`` and ``--resume`` as in
``ecgcore delineate``.
"""

from __future__ import annotations

from .delineate import _common_args


def add_parser(sub):
    p = sub.add_parser("measure", help="ECG measurements and P-wave indices of many ECGs",
                       description=__doc__)
    _common_args(p, "measures.csv")
    return p


def run(args) -> int:
    from ._tables import run_table_batch
    return run_table_batch(args, "measure")

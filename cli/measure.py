"""``ecgcore measure INPUT... --out measures.csv``: intervals, axes, amplitudes and P-wave
indices of many ECGs, one row per record (see ``ecgcore.measure``).

NaN cells have their reason in the ``reasons`` column (JSON). Parallel workers,
progress bar, ``errors.jsonl`` and ``--resume`` as in ``ecgcore delineate``.
"""

from __future__ import annotations

import json

from .delineate import _common_args, run_batch


def add_parser(sub):
    p = sub.add_parser("measure", help="ECG measurements and P-wave indices of many ECGs",
                       description=__doc__)
    _common_args(p, "measures.csv")
    return p


def _measure_one(path):
    try:
        import ecgcore
        from ecgcore.delineation import measure
        rec = ecgcore.read(path)
        m = measure(rec)
        m["reasons"] = json.dumps(m.get("reasons", {}))
        row = {"source": path, "fs": rec.fs, **m}
        return path, [row], None
    except Exception as exc:  # noqa: BLE001 - a batch never stops for one bad file
        return path, None, f"{type(exc).__name__}: {exc}"


def run(args) -> int:
    return run_batch(args, _measure_one, "measure")

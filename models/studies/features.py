"""The P-wave-index feature table of the atrial-cardiopathy study, from ``ecgcore.measure``.

DL-AtCM's P-wave-index baseline (facts/dl_atcm.md §9) uses four indices,
means over beats: P duration, PR (PQ) interval, P amplitude in lead II and
the P axis. :data:`PWAVE_INDICES` maps them to ``ecgcore.measure`` keys;
:data:`PWAVE_EXTENDED` adds the other atrial markers ``measure`` provides
(PTFV1, interatrial block, deep terminal negativity of P in V1, P-wave
dispersion).

The published code's bugs are avoided by construction:

1. it delineated lead I while documenting lead II: ``measure`` uses the
   multi-lead global marks, and P amplitude is read from lead II by name;
2. amplitudes came from z-scored signals rescaled by an external column:
   ``measure`` works on the record in mV and reports µV;
3. the loop stopped after ~101 files: every record gives a row, and failed
   records give a row of NaN with the error kept, never a silent drop.

The two DL-AtCM design choices are options: ``amplitude_reference="onset"``
measures the P peak against the P-onset sample (their definition) instead of
the isoelectric baseline (the default); the P axis is from net areas in I and
aVF (theirs is from peak-minus-onset amplitudes).
"""

from __future__ import annotations

import numpy as np

from ecgcore.stats import EvaluationError

__all__ = ["PWAVE_INDICES", "PWAVE_EXTENDED", "IAB_CODES", "pwave_feature_table", "encode_columns", "encode_column"]

#: DL-AtCM's four P-wave indices -> ecgcore.measure keys
PWAVE_INDICES = ("p_duration_ms", "pr_interval_ms", "p_amplitude_ii_uv", "p_axis_deg")
#: plus PTFV1 (µV·ms), interatrial block (0 none / 1 partial / 2 advanced), DTNPV1 (0/1), P dispersion
PWAVE_EXTENDED = PWAVE_INDICES + ("ptfv1_uvms", "interatrial_block", "dtnpv1", "p_dispersion_ms")
#: ordinal code of ``measure``'s interatrial-block label ("" = unknown -> NaN)
IAB_CODES = {"none": 0.0, "partial": 1.0, "advanced": 2.0}


def _as_frame(data):
    import pandas as pd
    if isinstance(data, pd.DataFrame):
        return data
    if isinstance(data, dict):
        return pd.DataFrame(data)
    raise EvaluationError(f"expected a pandas DataFrame or a dict of columns, got {type(data).__name__}")


def encode_column(col, name):
    """One table column as float64: IAB labels to codes, booleans to 0/1, None/'' to NaN."""
    a = np.asarray(col, dtype=object)
    if name == "interatrial_block":
        return np.array([IAB_CODES.get(str(v), np.nan) if v is not None else np.nan for v in a])
    out = np.empty(len(a))
    for i, v in enumerate(a):
        if v is None or (isinstance(v, str) and v.strip().lower() in ("", "nan", "none", "na")):
            out[i] = np.nan
        elif isinstance(v, (bool, np.bool_)):
            out[i] = float(v)
        elif isinstance(v, str) and v.strip().lower() in ("true", "false"):
            out[i] = float(v.strip().lower() == "true")
        else:
            try:
                out[i] = float(v)
            except (TypeError, ValueError):
                raise EvaluationError(f"column {name!r}: value {v!r} is not numeric") from None
    return out


def encode_columns(table, columns) -> np.ndarray:
    """(rows, len(columns)) float64 matrix of table columns, NaN where missing."""
    df = _as_frame(table)
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise EvaluationError(f"table has no column {missing[0]!r} (columns: {', '.join(map(str, df.columns))})")
    if not len(columns):
        return np.zeros((len(df), 0))
    return np.column_stack([encode_column(df[c].to_numpy(), c) for c in columns])


def pwave_feature_table(records, indices=PWAVE_INDICES, amplitude_reference: str = "isoelectric",
                        workers: int = 1, ids=None):
    """P-wave indices of many records as a DataFrame (one row per record, in input order).

    Parameters
    ----------
    records : iterable of Record or paths, or a DataFrame from
        :func:`ecgcore.delineation.measures.measure_many` (then nothing is re-measured)
    indices : sequence of str
        ``measure`` keys to keep (:data:`PWAVE_INDICES` or :data:`PWAVE_EXTENDED`).
    amplitude_reference : {"isoelectric", "onset"}
        P amplitude in II against the isoelectric line (``p_amplitude_ii_uv``)
        or against the P-onset sample as DL-AtCM (``p_amplitude_ii_onset_uv``);
        the column keeps the name ``p_amplitude_ii_uv`` either way.
    workers : int
        Processes for ``measure_many``.
    ids : sequence, optional
        Record ids for an ``id`` column (default: each record's source).

    Returns
    -------
    pandas.DataFrame
        ``id``, the index columns (floats; ``interatrial_block`` coded
        0/1/2, ``dtnpv1`` 0/1, NaN where not measurable, e.g. AF), ``error``
        ("" when measured). Records that fail keep their row with NaN values.
    """
    import pandas as pd
    if amplitude_reference not in ("isoelectric", "onset"):
        raise EvaluationError(f"amplitude_reference must be 'isoelectric' or 'onset', not {amplitude_reference!r}")
    if isinstance(records, pd.DataFrame):
        m = records
    else:
        from ecgcore.delineation.measures import measure_many
        m = measure_many(list(records), workers=workers, as_frame=True)
    src_key = {"p_amplitude_ii_uv": "p_amplitude_ii_onset_uv" if amplitude_reference == "onset"
               else "p_amplitude_ii_uv"}
    out = {"id": list(ids) if ids is not None else
           (m["source"].astype(str).tolist() if "source" in m.columns else list(range(len(m))))}
    if len(out["id"]) != len(m):
        raise EvaluationError(f"{len(out['id'])} ids for {len(m)} records")
    for key in indices:
        col = src_key.get(key, key)
        out[key] = encode_column(m[col].to_numpy(), key) if col in m.columns else np.full(len(m), np.nan)
    err = m["error"].fillna("").astype(str).tolist() if "error" in m.columns else [""] * len(m)
    out["error"] = err
    return pd.DataFrame(out)

"""One chunk of the pipeline: read its records, preprocess them in batches, write its shard.

Runs in a pool process or a dask worker; everything it receives and returns
is plain data (lists, dicts, strings), so it pickles cheaply.
"""

from __future__ import annotations

import os
import time

import numpy as np

from ..errors import ECGError, PreprocessError
from .. import presets as _presets
from .shards import shard_name, sidecar_name, write_json_atomic, write_npy_parts_atomic

__all__ = ["process_chunk", "BATCH"]

#: records per kernel call: large enough to amortise Python, small enough to stay in cache
BATCH = 64
#: steps whose cost is one pass over memory (no filter state, no sorting)
_LIGHT_OPS = {"trim_zero_padding", "nan_to_num", "scale", "resample", "zscore", "crop_or_pad",
              "segment"}


def _error(item, exc: BaseException) -> dict:
    return {"path": item[0], "record_id": item[1], "error": type(exc).__name__,
            "message": getattr(exc, "reason", None) or str(exc)}


def _quality(x: np.ndarray, leads, fs: float = 0.0, full: bool = False) -> list[str]:
    """Per-record flags of a (n, leads, T) input batch, ``;``-joined ``kind:LEAD`` items.

    Basic (default): ``nan`` and ``flat`` (peak-to-peak < 1 µV) leads, two whole-batch
    reductions. ``full`` adds, from :func:`ecgcore.signal.quality` (about 10 ms per
    record, so off by default), ``clipped`` (> 1 % of samples on the lead's extremes)
    and ``amplitude`` (robust peak-to-peak outside 0.05-10 mV), the thresholds of
    :class:`ecgcore.record.QualityReport`.
    """
    if full:
        from ..signal import quality
        q = quality(x, fs)
        live = ~q["flat"]
        bad = {"nan": q["nan_fraction"] > 0, "flat": q["flat"],
               "clipped": live & (q["clipping_fraction"] > 0.01),
               "amplitude": live & ((q["amplitude"] < 0.05) | (q["amplitude"] > 10.0))}
        return [";".join(f"{kind}:{leads[j]}" for kind, m in bad.items()
                         for j in np.flatnonzero(m[i])) for i in range(x.shape[0])]
    with np.errstate(invalid="ignore"):
        # max/min propagate NaN, so one NaN sample marks the lead (no nan-aware pass needed)
        ptp = x.max(axis=-1) - x.min(axis=-1) if x.shape[-1] else np.zeros(x.shape[:2])
    nan = np.isnan(ptp)
    flat = ~nan & (ptp < 1e-3)
    out = []
    for i in range(x.shape[0]):
        f = [f"nan:{leads[j]}" for j in np.flatnonzero(nan[i])]
        f += [f"flat:{leads[j]}" for j in np.flatnonzero(flat[i])]
        out.append(";".join(f))
    return out


def _run_group(xs, fs, preset, recs, sources, full_quality=False):
    """Preprocess same-shape inputs in sub-batches; isolate a failing record.

    Returns per-record outputs, errors and quality-flag strings.
    """
    results = [None] * len(xs)
    errors = [None] * len(xs)
    flags = [""] * len(xs)
    needs = _presets._needs_records(preset)
    if not needs and all(st["op"] in _LIGHT_OPS for st in preset["steps"]):
        # memory-bound steps only: one call per record on its own array is cheaper
        # than first copying the records into a batch
        for i, x in enumerate(xs):
            flags[i] = _quality(x[None], preset["leads"], fs, full_quality)[0]
            try:
                results[i] = _presets._run_steps(x[None], fs, preset["steps"],
                                                 where=sources[i])[0]
            except Exception as exc:
                errors[i] = exc
        return results, errors, flags
    for a in range(0, len(xs), BATCH):
        idx = list(range(a, min(a + BATCH, len(xs))))
        batch = np.stack([xs[i] for i in idx])
        for j, f in enumerate(_quality(batch, preset["leads"], fs, full_quality)):
            flags[idx[j]] = f
        try:
            out = _presets._run_steps(batch, fs, preset["steps"],
                                      records=[recs[i] for i in idx] if needs else None)
            for j, i in enumerate(idx):
                results[i] = out[j]
        except Exception:
            # one bad record spoils the batch: redo these one at a time
            for i in idx:
                try:
                    results[i] = _presets._run_steps(
                        xs[i][None], fs, preset["steps"], where=sources[i],
                        records=[recs[i]] if needs else None)[0]
                except Exception as exc:
                    errors[i] = exc
    return results, errors, flags


def process_chunk(task: dict) -> dict:
    """Read, preprocess and write chunk ``task["chunk"]``; return its sidecar.

    ``task`` holds ``chunk`` (int), ``items`` (list of (path, record_id,
    labels)), ``preset`` (validated dict), ``out_dir``, ``dtype`` and
    ``shape`` ((leads, samples) every output must have).
    """
    delay = float(os.environ.get("ECGCORE_PIPELINE_CHUNK_DELAY", "0") or 0)
    if delay:  # test hook: lets the crash/resume test kill a run mid-way
        time.sleep(delay)
    from ..io import read
    chunk, items, preset = task["chunk"], task["items"], task["preset"]
    out_dir, dtype = task["out_dir"], np.dtype(task["dtype"])
    leads_n, length = task["shape"]
    t0 = time.perf_counter()
    prepared = {}  # item index -> (x, fs, conformed record, format, n_samples_in)
    errors: dict[int, dict] = {}
    for k, item in enumerate(items):
        try:
            rec = read(item[0])
            if isinstance(rec, (list, tuple)):
                raise PreprocessError("file holds several records; list them in a manifest",
                                      item[0])
            x, fs, crec = _presets._prepare(rec, preset)
            if x.shape[-1] == 0:
                raise PreprocessError("record has no samples", item[0])
            prepared[k] = (x, fs, crec, rec.meta.get("format"), rec.n_samples)
        except ECGError as exc:
            errors[k] = _error(item, exc)
        except Exception as exc:  # a reader bug must not stop a biobank run
            errors[k] = _error(item, exc)
    t_read = time.perf_counter() - t0

    t1 = time.perf_counter()
    groups: dict[tuple, list[int]] = {}
    for k, (x, fs, *_rest) in prepared.items():
        groups.setdefault((float(fs), x.shape), []).append(k)
    outputs: dict[int, np.ndarray] = {}
    flags: dict[int, str] = {}
    for (fs, _shape), ks in groups.items():
        xs = [prepared[k][0] for k in ks]
        try:
            res, errs, q = _run_group(xs, fs, preset, [prepared[k][2] for k in ks],
                                      [items[k][0] for k in ks],
                                      task.get("quality", "basic") == "full")
        except Exception as exc:  # unexpected kernel failure: fail these records, not the run
            res, errs, q = [None] * len(ks), [exc] * len(ks), [""] * len(ks)
        for j, k in enumerate(ks):
            if errs[j] is not None:
                errors[k] = _error(items[k], errs[j])
            elif res[j].shape[1:] != (leads_n, length):
                errors[k] = _error(items[k], PreprocessError(
                    f"output shape {res[j].shape[1:]} differs from the dataset's "
                    f"{(leads_n, length)}", items[k][0]))
            elif res[j].shape[0] == 0:
                errors[k] = _error(items[k], PreprocessError("record gives no segment",
                                                             items[k][0]))
            else:
                outputs[k] = res[j]
                f = q[j]
                extra = prepared[k][2].meta.get("missing_leads")
                if extra:
                    f = ";".join(filter(None, [f] + [f"missing:{m}" for m in extra]))
                qf = prepared[k][2].meta.get("quality_flags") or {}
                f = ";".join(filter(None, [f] + [str(n) for n, v in sorted(qf.items()) if v]))
                flags[k] = f
    t_proc = time.perf_counter() - t1

    t2 = time.perf_counter()
    order = sorted(outputs)
    n_rows = sum(outputs[k].shape[0] for k in order)
    records, offset = [], 0
    for k in order:
        x, fs, crec, fmt, n_in = prepared[k]
        n = outputs[k].shape[0]
        records.append({"record_id": items[k][1], "source": items[k][0], "offset": offset,
                        "n_segments": n, "fs": fs, "n_samples": int(n_in),
                        "format": fmt or "", "quality_flags": flags[k],
                        "labels": [list(p) for p in items[k][2]]})
        offset += n
    # streamed: the per-record outputs go to the file in order, never concatenated
    write_npy_parts_atomic(os.path.join(out_dir, shard_name(chunk)),
                           (outputs[k] for k in order), (n_rows, leads_n, length), dtype)
    t_write = time.perf_counter() - t2
    sidecar = {"chunk": chunk, "shard": shard_name(chunk), "n_segments": int(n_rows),
               "n_inputs": len(items), "records": records,
               "errors": [errors[k] for k in sorted(errors)],
               "timings": {"read_s": t_read, "preprocess_s": t_proc, "write_s": t_write}}
    # the sidecar last: its presence means the shard is complete
    write_json_atomic(os.path.join(out_dir, sidecar_name(chunk)), sidecar)
    return sidecar

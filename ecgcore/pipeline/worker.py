"""One chunk of the pipeline: read its records, preprocess them in batches, write its shard.

Runs in a pool process or a dask worker; everything it receives and returns
is plain data (lists, dicts, strings), so it pickles cheaply.
"""

from __future__ import annotations

import os
import time

import numpy as np

from ..errors import PreprocessError
from .._kernels.norm import ptp_rows  # one pass per lead: min, max and NaN together
from .. import presets as _presets
from .shards import (ShardWriter, shard_name, sidecar_name, write_json_atomic,
                     write_npy_parts_atomic)

__all__ = ["process_chunk", "process_chunk_summary", "summarize", "BATCH"]

#: records per kernel call: large enough to amortise Python, small enough to stay in cache
BATCH = 64
#: steps whose cost is one pass over memory (no filter state, no sorting)
_LIGHT_OPS = {"trim_zero_padding", "nan_to_num", "scale", "resample", "zscore", "crop_or_pad",
              "segment"}


def _error(item, exc: BaseException) -> dict:
    return {"path": item[0], "record_id": item[1], "error": type(exc).__name__,
            "message": getattr(exc, "reason", None) or str(exc)}


_FLAT_MV = np.float32(1e-3)


def _quality(x: np.ndarray, leads, fs: float = 0.0, full: bool = False) -> list[str]:
    """Per-record flags of a (n, leads, T) input batch, ``;``-joined ``kind:LEAD`` items.

    Basic (default): ``nan`` and ``flat`` (peak-to-peak < 1 µV) leads, one pass over
    the signal (:func:`ecgcore._kernels.norm.ptp_rows`; numpy's two reductions for input
    that is not C-contiguous float32). ``full`` adds, from
    :func:`ecgcore.signal.quality` (about 10 ms per
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
    if x.dtype == np.float32 and x.flags.c_contiguous and x.shape[-1] and x.size:
        # one pass per lead (min, max and NaN together) instead of two reductions; the
        # same float32 max - min, NaN for a lead with a NaN; returns the leads below
        # 1 µV or NaN (the threshold in float32, as numpy compares a float32 array)
        ptp = np.empty(x.shape[0] * x.shape[1], np.float32)
        if not ptp_rows(x.reshape(-1, x.shape[-1]), _FLAT_MV, ptp):
            return [""] * x.shape[0]
        ptp = ptp.reshape(x.shape[:2])
    else:
        with np.errstate(invalid="ignore"):
            # max/min propagate NaN, so one NaN sample marks the lead (no nan-aware pass)
            ptp = x.max(axis=-1) - x.min(axis=-1) if x.shape[-1] else np.zeros(x.shape[:2])
            # the common case in one comparison (NaN compares false): no flag at all
            if (ptp >= 1e-3).all():
                return [""] * x.shape[0]
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


def _is_light(preset: dict) -> bool:
    return (not _presets._needs_records(preset)
            and all(st["op"] in _LIGHT_OPS for st in preset["steps"]))


_MALLOC_TUNED = []


def _tune_malloc() -> None:
    """Keep freed memory in this process's heap instead of returning it to the kernel.

    Every record allocates and frees the same few arrays of 100-250 kB (the
    signal file's bytes, the decoded signal, the preset's output). With
    glibc's defaults, whether those come back as fresh pages depends on the
    heap's state (its dynamic mmap threshold and the 2x trim threshold of
    the top chunk): measured on 12 x 5000 records, the same read cost 60 µs
    in one process and 128 µs in another, 56 page faults a record. With
    ``M_MMAP_THRESHOLD`` 16 MiB and ``M_TRIM_THRESHOLD`` 64 MiB the arrays are
    reused from the heap after the first record; a worker keeps at most
    64 MiB of freed memory. Called once per process; a no-op without glibc.
    """
    if _MALLOC_TUNED:
        return
    _MALLOC_TUNED.append(True)
    try:
        import ctypes
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # not glibc (macOS, Windows): nothing to tune
        return
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt(-3, 16 << 20)  # M_MMAP_THRESHOLD (setting it also stops the dynamic adjustment)
    mallopt(-1, 64 << 20)  # M_TRIM_THRESHOLD


def _read_prepare(read, item, preset):
    """(x, fs, conformed record, format, n_samples_in) of one item; raises on failure."""
    rec = read(item[0])
    if isinstance(rec, (list, tuple)):
        raise PreprocessError("file holds several records; list them in a manifest", item[0])
    x, fs, crec = _presets._prepare(rec, preset)
    if x.shape[-1] == 0:
        raise PreprocessError("record has no samples", item[0])
    return x, fs, crec, rec.meta.get("format"), rec.n_samples


def _check_output(item, res, leads_n, length):
    """A PreprocessError for an output that cannot go in the shard, else None."""
    if res.shape[1:] != (leads_n, length):
        return PreprocessError(f"output shape {res.shape[1:]} differs from the dataset's "
                               f"{(leads_n, length)}", item[0])
    if res.shape[0] == 0:
        return PreprocessError("record gives no segment", item[0])
    return None


def _all_flags(q: str, crec) -> str:
    extra = crec.meta.get("missing_leads")
    f = q
    if extra:
        f = ";".join(filter(None, [f] + [f"missing:{m}" for m in extra]))
    qf = crec.meta.get("quality_flags") or {}
    if qf:
        f = ";".join(filter(None, [f] + [str(n) for n, v in sorted(qf.items()) if v]))
    return f


def _record_row(item, offset, n, fs, fmt, n_in, flags):
    return {"record_id": item[1], "source": item[0], "offset": offset,
            "n_segments": n, "fs": fs, "n_samples": int(n_in),
            "format": fmt or "", "quality_flags": flags,
            "labels": [list(p) for p in item[2]]}


def _stream_chunk(read, items, preset, leads_n, length, full_quality, errors, records, writer):
    """Light presets: read, preprocess and write each record in turn (in item order).

    Nothing of a record outlives its turn: its rows go to the shard file at
    once, so the next record's arrays reuse the same memory instead of a
    chunk's worth of fresh pages (which cost as much as the decoding).
    Returns (read seconds, preprocess seconds, write seconds).
    """
    perf = time.perf_counter
    steps, leads = preset["steps"], preset["leads"]
    offset = 0
    t_read = t_proc = t_write = 0.0
    for k, item in enumerate(items):
        t0 = perf()
        try:
            x, fs, crec, fmt, n_in = _read_prepare(read, item, preset)
        except Exception as exc:  # ECGError or a reader bug: never stop a biobank run
            errors[k] = _error(item, exc)
            t_read += perf() - t0
            continue
        t1 = perf()
        t_read += t1 - t0
        q = _quality(x[None], leads, fs, full_quality)[0]
        try:
            res = _presets._run_steps(x[None], fs, steps, where=item[0])[0]
        except Exception as exc:
            errors[k] = _error(item, exc)
            t_proc += perf() - t1
            continue
        bad = _check_output(item, res, leads_n, length)
        t2 = perf()
        t_proc += t2 - t1
        if bad is not None:
            errors[k] = _error(item, bad)
            continue
        n = res.shape[0]
        writer.append(res)
        records.append(_record_row(item, offset, n, fs, fmt, n_in, _all_flags(q, crec)))
        offset += n
        t_write += perf() - t2
    return t_read, t_proc, t_write


def _batch_chunk(read, items, preset, leads_n, length, full_quality, errors, records):
    """Presets with filters or per-record sources: read the chunk, then preprocess
    same-shape records in batches. Returns (output parts in order, seconds, seconds)."""
    t0 = time.perf_counter()
    prepared = {}  # item index -> (x, fs, conformed record, format, n_samples_in)
    for k, item in enumerate(items):
        try:
            prepared[k] = _read_prepare(read, item, preset)
        except Exception as exc:  # ECGError or a reader bug: never stop a biobank run
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
                                      [items[k][0] for k in ks], full_quality)
        except Exception as exc:  # unexpected kernel failure: fail these records, not the run
            res, errs, q = [None] * len(ks), [exc] * len(ks), [""] * len(ks)
        for j, k in enumerate(ks):
            if errs[j] is not None:
                errors[k] = _error(items[k], errs[j])
                continue
            bad = _check_output(items[k], res[j], leads_n, length)
            if bad is not None:
                errors[k] = _error(items[k], bad)
            else:
                outputs[k] = res[j]
                flags[k] = _all_flags(q[j], prepared[k][2])
    t_proc = time.perf_counter() - t1
    offset = 0
    parts = []
    for k in sorted(outputs):
        _x, fs, _crec, fmt, n_in = prepared[k]
        n = outputs[k].shape[0]
        records.append(_record_row(items[k], offset, n, fs, fmt, n_in, flags[k]))
        parts.append(outputs[k])
        offset += n
    return parts, offset, t_read, t_proc


def process_chunk(task: dict) -> dict:
    """Read, preprocess and write chunk ``task["chunk"]``; return its sidecar.

    ``task`` holds ``chunk`` (int), ``items`` (list of (path, record_id,
    labels)), ``preset`` (validated dict), ``out_dir``, ``dtype`` and
    ``shape`` ((leads, samples) every output must have); with ``render``
    true the returned dict (not the file) also holds ``parts``, the chunk's
    manifest text (:func:`~.manifest.render_chunk`).
    """
    delay = float(os.environ.get("ECGCORE_PIPELINE_CHUNK_DELAY", "0") or 0)
    if delay:  # test hook: lets the crash/resume test kill a run mid-way
        time.sleep(delay)
    _tune_malloc()
    from ..io import read  # a .hea path goes straight to the WFDB reader (no sniffing)
    cpu0 = time.process_time()
    wall0 = time.time()
    chunk, items, preset = task["chunk"], task["items"], task["preset"]
    out_dir, dtype = task["out_dir"], np.dtype(task["dtype"])
    leads_n, length = task["shape"]
    full_quality = task.get("quality", "basic") == "full"
    errors: dict[int, dict] = {}
    records: list[dict] = []
    shard = os.path.join(out_dir, shard_name(chunk))
    if _is_light(preset):
        with ShardWriter(shard, (leads_n, length), dtype) as writer:
            t_read, t_proc, t_write = _stream_chunk(read, items, preset, leads_n, length,
                                                    full_quality, errors, records, writer)
            t2 = time.perf_counter()
        t_write += time.perf_counter() - t2
        n_rows = writer.rows
    else:
        parts, n_rows, t_read, t_proc = _batch_chunk(read, items, preset, leads_n, length,
                                                     full_quality, errors, records)
        t2 = time.perf_counter()
        # streamed: the outputs go to the file in order, never concatenated
        write_npy_parts_atomic(shard, parts, (n_rows, leads_n, length), dtype)
        t_write = time.perf_counter() - t2
    errs = [errors[k] for k in sorted(errors)]
    rendered = None
    if task.get("render"):  # the driver's manifest text, inside this chunk's CPU time
        from .manifest import render_chunk
        rendered = render_chunk({"shard": shard_name(chunk), "records": records, "errors": errs})
    sidecar = {"chunk": chunk, "shard": shard_name(chunk), "n_segments": int(n_rows),
               "n_inputs": len(items), "records": records, "errors": errs,
               "timings": {"read_s": t_read, "preprocess_s": t_proc, "write_s": t_write,
                           "cpu_s": time.process_time() - cpu0,
                           # wall-clock span (epoch seconds): benchmarks measure the
                           # engine's throughput between first start and last end
                           "start": wall0, "end": time.time()}}
    # the sidecar last: its presence means the shard is complete
    write_json_atomic(os.path.join(out_dir, sidecar_name(chunk)), sidecar)
    if rendered is not None:
        sidecar = {**sidecar, "parts": rendered}  # returned, not written
    return sidecar


def summarize(sidecar: dict, render: bool = False) -> dict:
    """The few numbers of a sidecar the driver needs while a run goes on.

    With ``render``, also ``parts``: the chunk's manifest rows and error lines
    as text (:func:`~.manifest.render_chunk`), so that the driver only appends.
    """
    from .manifest import render_chunk
    out = {"chunk": sidecar["chunk"], "n_inputs": sidecar["n_inputs"],
           "n_records": len(sidecar["records"]), "n_errors": len(sidecar["errors"]),
           "n_segments": sum(r["n_segments"] for r in sidecar["records"]),
           "error_types": [e["error"] for e in sidecar["errors"]],
           "timings": sidecar["timings"]}
    if render:
        out["parts"] = sidecar.get("parts") or render_chunk(sidecar)
    return out


def process_chunk_summary(task: dict) -> dict:
    """:func:`process_chunk`, returning only :func:`summarize` of its sidecar.

    What the engines run: the full sidecar is on disk already, so the pool
    does not pickle a chunk's record rows back to the parent, only the
    chunk's manifest text, rendered here in parallel (the driver appends it).
    """
    return summarize(process_chunk(task), render=True)

"""The pipeline driver: plan chunks, skip finished ones, run an engine, merge the outputs."""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import platform
import sys
import time

import numpy as np

from .._version import __version__
from ..errors import ConfigError
from .. import presets as _presets
from .discover import InputItem, items_from_paths, sort_items
from .manifest import MANIFEST_COLUMNS, ManifestStream, SidecarFiles, write_outputs
from .shards import completed_chunks, remove_temporaries, write_json_atomic

__all__ = ["run_pipeline", "plan_chunks"]

_PLAN = "plan.json"


def plan_chunks(items, chunk_size: int) -> list[list[InputItem]]:
    """Chunk ``i`` = ``items[i*K:(i+1)*K]`` (items already sorted)."""
    return [items[i: i + chunk_size] for i in range(0, len(items), chunk_size)]


def _inputs_hash(items) -> str:
    h = hashlib.sha256()
    for it in items:
        h.update(json.dumps([it.path, it.record_id, list(it.labels)]).encode())
        h.update(b"\n")
    return h.hexdigest()


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def run_pipeline(items, preset="ecgfm", out: str = "dataset", workers: int | None = None,
                 engine: str = "local", scheduler: str | None = None, chunk_size: int = 256,
                 dtype: str = "float32", resume: bool = False, progress: bool = True,
                 manifest_format: str = "csv", quality: str = "basic") -> dict:
    """Preprocess many records into a sharded dataset directory; return the summary.

    Parameters
    ----------
    items : sequence of InputItem or str
        Records to process (paths, or items from :func:`read_manifest`).
    preset : str or mapping
        A preset with a fixed output shape (every record gives
        (n_segments, leads, samples) with the same leads and samples).
    out : str
        Dataset directory. Without ``resume`` it must not hold a dataset.
    workers : int, optional
        Processes (local engine) or LocalCluster workers (dask without a
        scheduler); default ``os.cpu_count()``.
    engine : {"local", "dask"}
    scheduler : str, optional
        dask.distributed scheduler address.
    chunk_size : int
        Records per chunk = per shard; memory is bounded by workers x chunk size.
    dtype : {"float32", "float16"}
        Shard dtype.
    resume : bool
        Continue a killed run: finished shards are kept, the others redone.
    progress : bool
        Show a tqdm bar with records/s.
    manifest_format : {"csv", "parquet"}
    quality : {"basic", "full"}
        Flags in the manifest: NaN and flat leads, or also clipped leads and
        implausible amplitudes (slower, ecgcore.signal.quality).

    Returns
    -------
    dict
        The content of ``summary.json``.

    Raises
    ------
    ConfigError
        Bad preset or options, an existing dataset without ``resume``, or a
        resumed dataset whose plan (preset, inputs, chunk size, dtype) differs.
    """
    started, t0 = _now(), time.perf_counter()
    p = _presets.get_preset(preset)
    n_seg, leads_n, length = _presets.output_shape(p)
    if length is None:
        raise ConfigError(f"preset {p['name']!r} has no fixed output length (end it with "
                          f"'segment', 'crop_or_pad' or 'median_beats') so it cannot fill shards")
    if dtype not in ("float32", "float16"):
        raise ConfigError(f"dtype must be float32 or float16, got {dtype!r}")
    if engine not in ("local", "dask"):
        raise ConfigError(f"engine must be 'local' or 'dask', got {engine!r}")
    if manifest_format not in ("csv", "parquet"):
        raise ConfigError(f"manifest format must be csv or parquet, got {manifest_format!r}")
    if manifest_format == "parquet":
        try:
            import pyarrow  # noqa: F401
        except ImportError:
            raise ConfigError("a parquet manifest needs pyarrow; use the CSV manifest") from None
    if quality not in ("basic", "full"):
        raise ConfigError(f"quality must be 'basic' or 'full', got {quality!r}")
    if not isinstance(chunk_size, int) or chunk_size < 1:
        raise ConfigError(f"chunk size must be a positive integer, got {chunk_size!r}")
    workers = int(workers or os.cpu_count() or 1)
    if workers < 1:
        raise ConfigError(f"workers must be >= 1, got {workers}")
    items = list(items)
    plain = [os.fspath(it) for it in items if not isinstance(it, InputItem)]
    items = sort_items([it for it in items if isinstance(it, InputItem)]
                       + items_from_paths(plain))
    chunks = plan_chunks(items, chunk_size)
    out = os.path.abspath(out)
    plan = {"format": "ecgcore-dataset/1", "preset": p, "chunk_size": chunk_size, "dtype": dtype,
            "n_inputs": len(items), "n_chunks": len(chunks), "inputs_sha256": _inputs_hash(items),
            "shape": [leads_n, length], "quality": quality}
    plan_path = os.path.join(out, _PLAN)
    if os.path.isfile(plan_path):
        if not resume:
            raise ConfigError("holds a dataset already; pass --resume to continue it or choose "
                              "another --out", out)
        with open(plan_path, encoding="utf-8") as f:
            old = json.load(f)
        for key in ("preset", "chunk_size", "dtype", "inputs_sha256", "quality"):
            if old.get(key) != json.loads(json.dumps(plan[key])):
                raise ConfigError(f"cannot resume: {key!r} differs from the interrupted run "
                                  f"(same inputs, preset, chunk size and dtype needed)", out)
    else:
        if os.path.isdir(out) and os.listdir(out) and not resume:
            raise ConfigError("output directory exists and is not empty", out)
        os.makedirs(out, exist_ok=True)
        write_json_atomic(plan_path, plan)
    remove_temporaries(out)
    done = completed_chunks(out, len(chunks)) if resume else {}
    todo = [i for i in range(len(chunks)) if i not in done]
    tasks = [{"chunk": i, "items": [tuple(it) for it in chunks[i]], "preset": p,
              "out_dir": out, "dtype": dtype, "shape": (leads_n, length), "quality": quality,
              "render": True}
             for i in todo]
    # The parent keeps no sidecar: the workers return counts and their chunk's
    # manifest text (worker.summarize), which `stream` appends in chunk order
    # while the run goes on; resumed chunks are read from disk in their turn.
    # The parent's memory and its garbage collector's work stay flat, and the
    # manifest costs it an append per chunk, not a serial pass after the run.
    resumed = set(done)
    # a running count: summing over all chunks per finished chunk is quadratic in
    # the chunk count (4e4 chunks for 1e7 records) and runs in the collecting parent
    n_failed = [sum(len(s["errors"]) for s in done.values())]
    n_resumed = len(done)
    del done
    bar = None
    if progress and tasks:
        from tqdm.auto import tqdm
        bar = tqdm(total=sum(len(t["items"]) for t in tasks), unit="rec", desc=p["name"],
                   file=sys.stderr, dynamic_ncols=True)

    def on_done(result):
        stream.add(result)
        n_failed[0] += result["n_errors"]
        if bar is not None:
            bar.update(result["n_inputs"])
            bar.set_postfix(failed=n_failed[0], refresh=False)

    stream = ManifestStream(out, len(chunks), resumed, manifest_format)
    t_run, c_run = time.perf_counter(), time.process_time()
    try:
        if engine == "local":
            from .engine_local import run_local
            run_local(tasks, workers, on_done)
        else:
            from .engine_dask import run_dask
            run_dask(tasks, scheduler, workers, on_done)
    except BaseException:
        stream.abort()
        raise
    finally:
        if bar is not None:
            bar.close()
    run_s, run_cpu = time.perf_counter() - t_run, time.process_time() - c_run
    t_man, c_man = time.perf_counter(), time.process_time()
    counts = stream.finish()
    if counts is None:  # label columns differ between chunks, or a parquet manifest
        label_cols = ([c for c in stream.label_union if c not in MANIFEST_COLUMNS]
                      if stream.complete else None)
        counts = write_outputs(out, SidecarFiles(out, range(len(chunks)), label_cols),
                               manifest_format)
    man_s, man_cpu = time.perf_counter() - t_man, time.process_time() - c_man
    wall = time.perf_counter() - t0
    processed = sum(len(t["items"]) for t in tasks)
    summary = {
        **counts,
        "shards_resumed": n_resumed, "shards_written": len(tasks),
        "preset": p, "shape": [leads_n, length], "dtype": dtype, "chunk_size": chunk_size,
        "engine": engine, "workers": workers, "scheduler": scheduler, "quality": quality,
        # this process's CPU seconds while the engine ran (with workers, the cost of
        # collecting results: it should stay near zero) and while merging the manifest
        "timings": {"wall_s": wall, "engine_s": run_s, "engine_cpu_s": run_cpu,
                    "manifest_s": man_s, "manifest_cpu_s": man_cpu,
                    "records_per_s": processed / run_s if run_s > 0 else None},
        "versions": {"ecgcore": __version__, "numpy": np.__version__,
                     "python": platform.python_version()},
        "started": started, "finished": _now(), "out": out,
    }
    write_json_atomic(os.path.join(out, "summary.json"), summary)
    return summary

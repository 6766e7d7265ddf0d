"""Chunked batch driver of ``ecgcore delineate`` and ``ecgcore measure``.

The inputs are split into chunks; each chunk is one task (on a local process
pool or a dask cluster) that reads its records, turns each into table rows and
writes one *part* under ``<out>.parts/``: the rows (``part-NNNNNN.csv`` or
``.parquet``, absent when no record of the chunk gave rows), then the chunk's
sidecar ``part-NNNNNN.json`` (its sources in order and its errors). Both are
written to a temporary name and renamed, and the sidecar comes last, so a
sidecar means a finished chunk: a killed run leaves only finished parts and
temporaries, and ``--resume`` keeps the former. At the end the parent streams
the parts, in input order, into the final table (CSV: one header; parquet: a
``pyarrow.parquet.ParquetWriter`` fed part by part, so memory is bounded by one
part), renames it into place, writes ``<out>.errors.jsonl`` (``marks.csv`` ->
``marks.errors.jsonl``) and removes the parts.

The task functions here are module-level so that dask workers can import them
(``ecgcore.cli._tables.process_table_chunk``).
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import sys
import time

from ecgcore._atomic import TMP_TAG, atomic_path as _atomic

__all__ = ["process_table_chunk", "run_table_batch", "delineate_frame", "measure_frame"]

_PART = "part-{:06d}"
_DELAY_ENV = "ECGCORE_TABLES_CHUNK_DELAY"


# ---------------------------------------------------------------- per-record rows
def delineate_frame(path):
    """One record's marks: one row per (beat, lead), lead ``global`` first."""
    import ecgcore
    from ecgcore.delineation import delineate
    rec = ecgcore.read(path)
    d = delineate(rec)
    df = d.to_frame()
    df.insert(0, "source", path)
    df["fs"] = rec.fs
    df["no_atrial_activity"] = bool(d.flags.get("no_atrial_activity", False))
    df["flags"] = json.dumps({k: v for k, v in d.flags.items()}, default=str)
    return df


def measure_frame(path):
    """One record's measurements: a one-row table (``reasons`` as JSON)."""
    import pandas as pd

    import ecgcore
    from ecgcore.delineation import measure
    rec = ecgcore.read(path)
    m = measure(rec)
    m["reasons"] = json.dumps(m.get("reasons", {}))
    return pd.DataFrame([{"source": path, "fs": rec.fs, **m}])


_FRAMES = {"delineate": delineate_frame, "measure": measure_frame}


# ---------------------------------------------------------------- parts on disk
def _part_paths(parts_dir: str, part: int, fmt: str) -> tuple[str, str]:
    base = os.path.join(parts_dir, _PART.format(part))
    return base + "." + fmt, base + ".json"


def _write_csv_part(path: str, frames) -> None:
    with _atomic(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as f:
        if all(list(df.columns) == list(frames[0].columns) for df in frames):
            # record by record, as the unchunked driver did: a record's own
            # dtypes decide its number formatting (no int -> float upcast
            # because another record of the chunk has a NaN there)
            for i, df in enumerate(frames):
                df.to_csv(f, header=(i == 0), index=False)
        else:  # records with different columns: align them on their union
            import pandas as pd
            pd.concat(frames, ignore_index=True).to_csv(f, index=False)


def _write_parquet_part(path: str, frames) -> None:
    import pandas as pd
    with _atomic(path) as tmp:
        pd.concat(frames, ignore_index=True).to_parquet(tmp, index=False)


def _write_json_atomic(path: str, obj) -> None:
    with _atomic(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        json.dump(obj, f)


def process_table_chunk(task: dict) -> dict:
    """Read and tabulate one chunk of records and write its part; return a summary.

    Parameters
    ----------
    task : dict
        ``kind`` ("delineate" or "measure"), ``part`` (int, the part number),
        ``paths`` (the chunk's sources, in input order), ``parts_dir`` and
        ``fmt`` ("csv" or "parquet").

    Returns
    -------
    dict
        ``part``, ``n_inputs``, ``n_rows`` and ``errors`` (one
        ``{"path", "error", "message"}`` per failed record: the exception type and
        its reason, as ``ecgcore preprocess`` writes them). A record that cannot be read
        or tabulated becomes an error entry; it never fails the chunk.
    """
    delay = float(os.environ.get(_DELAY_ENV, "0") or 0)
    if delay:  # test hook: lets the kill/resume test stop a run between chunks
        time.sleep(delay)
    make = _FRAMES[task["kind"]]
    frames, errors, ok = [], [], []
    for path in task["paths"]:
        try:
            df = make(path)
        except Exception as exc:  # noqa: BLE001 - a batch never stops for one bad record
            # the schema of ecgcore preprocess's errors.jsonl: type and message apart
            errors.append({"path": path, "error": type(exc).__name__,
                           "message": getattr(exc, "reason", None) or str(exc)})
            continue
        ok.append(path)
        if len(df):
            frames.append(df)
    data_path, side_path = _part_paths(task["parts_dir"], task["part"], task["fmt"])
    n_rows = sum(len(df) for df in frames)
    if frames:
        (_write_csv_part if task["fmt"] == "csv" else _write_parquet_part)(data_path, frames)
    # the sidecar last: its existence marks a finished chunk (the rows are on disk)
    _write_json_atomic(side_path, {"part": task["part"], "sources": list(task["paths"]),
                                   "ok": ok, "errors": errors, "n_rows": n_rows,
                                   "file": os.path.basename(data_path) if frames else None})
    return {"part": task["part"], "n_inputs": len(task["paths"]), "n_rows": n_rows,
            "errors": errors}


def _finished_parts(parts_dir: str) -> list[dict]:
    """Sidecars of the finished parts of an interrupted run (temporaries removed)."""
    found = []
    for tmp in glob.glob(os.path.join(parts_dir, f"*{TMP_TAG}*")):
        os.remove(tmp)  # a write the kill interrupted
    for side in sorted(glob.glob(os.path.join(parts_dir, "part-*.json"))):
        try:
            with open(side, encoding="utf-8") as f:
                meta = json.load(f)
        except (OSError, ValueError):
            continue  # not ours, or unreadable: its chunk is redone
        if meta.get("file") and not os.path.isfile(os.path.join(parts_dir, meta["file"])):
            continue
        found.append(meta)
    return found


def _remove_part(parts_dir: str, meta: dict) -> None:
    for name in (meta.get("file"), _PART.format(meta["part"]) + ".json"):
        if name and os.path.exists(os.path.join(parts_dir, name)):
            os.remove(os.path.join(parts_dir, name))


def _sources_in(out: str, ext: str) -> set[str]:
    """The ``source`` values of an existing final table (only that column is read)."""
    import pandas as pd
    if ext == ".csv":
        head = pd.read_csv(out, nrows=0)
        if "source" not in head.columns:
            return set()
        col = pd.read_csv(out, usecols=["source"])["source"]
    else:
        import pyarrow.parquet as pq
        if "source" not in pq.read_schema(out).names:
            return set()
        col = pd.read_parquet(out, columns=["source"])["source"]
    return set(col.astype(str))


# ---------------------------------------------------------------- assembly
def _csv_header(path: str) -> str:
    with open(path, encoding="utf-8", newline="") as f:
        return f.readline()


def _assemble_csv(files: list[str], out: str) -> None:
    headers = [_csv_header(p) for p in files]
    with _atomic(out) as tmp, open(tmp, "w", encoding="utf-8", newline="") as dst:
        if all(h == headers[0] for h in headers):
            # the common case: bytes streamed, one header
            for i, p in enumerate(files):
                with open(p, encoding="utf-8", newline="") as src:
                    if i:
                        src.readline()
                    shutil.copyfileobj(src, dst, 1 << 20)
        else:  # parts with different columns: align every part on the union
            import pandas as pd
            cols: list[str] = []
            for p in files:
                cols += [c for c in pd.read_csv(p, nrows=0).columns if c not in cols]
            header = True
            for p in files:
                for block in pd.read_csv(p, chunksize=100_000):
                    block.reindex(columns=cols).to_csv(dst, header=header, index=False)
                    header = False


def _assemble_parquet(files: list[str], out: str) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq
    schemas = [pq.read_schema(p) for p in files]
    if all(s.equals(schemas[0], check_metadata=False) for s in schemas):
        schema = schemas[0]
    else:
        # a column int64 in one part and double in another (a NaN there), or all
        # null in one part: the types a single concatenation would have given
        schema = pa.unify_schemas(schemas, promote_options="permissive")
        schema = schema.with_metadata(schemas[0].metadata)
    with _atomic(out) as tmp, pq.ParquetWriter(tmp, schema) as writer:
        for p in files:
            pf = pq.ParquetFile(p)
            for i in range(pf.num_row_groups):  # one row group in memory at a time
                t = pf.read_row_group(i)
                if not t.schema.equals(schema, check_metadata=False):
                    t = pa.table([t.column(f.name).cast(f.type) if f.name in t.column_names
                                  else pa.nulls(t.num_rows, f.type) for f in schema],
                                 schema=schema)
                writer.write_table(t)


# ---------------------------------------------------------------- driver
def _plan(positions: list[int], chunk: int) -> list[list[int]]:
    """Chunks of ``positions`` that never span a gap, so each part is a contiguous
    run of the input list and sorting parts by their first input restores the
    input order, whichever chunks a killed run had finished."""
    runs, cur = [], []
    for i in positions:
        if cur and i != cur[-1] + 1:
            runs.append(cur)
            cur = []
        cur.append(i)
    if cur:
        runs.append(cur)
    return [run[k: k + chunk] for run in runs for k in range(0, len(run), chunk)]


def run_table_batch(args, kind: str) -> int:
    """Shared driver of ``ecgcore delineate`` and ``ecgcore measure``.

    Exit status 0 when every record gave its rows, 1 when some failed (listed
    in ``<out>.errors.jsonl`` next to the output) or the run stopped, 2 on a usage
    error.
    """
    from ._common import expand_inputs
    name = f"ecgcore {kind}"
    out = args.out
    ext = os.path.splitext(out)[1].lower()
    if ext not in (".csv", ".parquet"):
        print(f"{name}: --out must end in .csv or .parquet, got {out!r}", file=sys.stderr)
        return 2
    if ext == ".parquet":
        import importlib.util
        if importlib.util.find_spec("pyarrow") is None:
            print(f"{name}: writing parquet needs pyarrow (pip install pyarrow); "
                  f"use a .csv output instead", file=sys.stderr)
            return 2
    chunk = getattr(args, "chunk", 64)
    if chunk < 1:
        print(f"{name}: --chunk must be >= 1, got {chunk}", file=sys.stderr)
        return 2
    workers = args.workers if args.workers is not None else 1
    if workers < 1:
        print(f"{name}: --workers must be >= 1, got {workers}", file=sys.stderr)
        return 2
    engine = getattr(args, "engine", "local")
    scheduler = getattr(args, "scheduler", None)
    if scheduler and engine != "dask":
        print(f"{name}: --scheduler needs --engine dask", file=sys.stderr)
        return 2
    paths = expand_inputs(args.inputs)
    if not paths:
        print(f"{name}: no input files", file=sys.stderr)
        return 2
    fmt = ext[1:]
    out = os.path.abspath(out)
    parts_dir = out + ".parts"
    # named after the output: two tables written into one folder (measure, then delineate)
    # keep their own lists instead of the second run emptying the first's
    err_path = os.path.splitext(out)[0] + ".errors.jsonl"

    # ---- what is done already: the final table (today's --resume) and the
    # finished parts of a killed run
    done_final: set[str] = set()
    kept: list[dict] = []
    had_final = False
    if args.resume:
        if os.path.exists(out):
            had_final = True
            done_final = _sources_in(out, ext)
        if os.path.isdir(parts_dir):
            for meta in _finished_parts(parts_dir):
                if had_final and meta["ok"] and set(meta["ok"]) <= done_final:
                    # killed after the final table was renamed into place and
                    # before the parts were removed: these rows are in it already
                    _remove_part(parts_dir, meta)
                else:
                    kept.append(meta)
    else:
        if os.path.exists(out):
            os.remove(out)
        if os.path.isdir(parts_dir):
            shutil.rmtree(parts_dir)  # a killed run's parts, not resumed: start over
    os.makedirs(parts_dir, exist_ok=True)
    done_parts = {s for meta in kept for s in meta["sources"]}
    todo = [i for i, p in enumerate(paths) if p not in done_final and p not in done_parts]
    if engine == "local" and workers > 1:
        # a small batch still keeps every worker busy: at least 4 chunks a worker
        # (the chunking never changes the table, only the number of parts)
        chunk = max(1, min(chunk, -(-len(todo) // (4 * workers))))
    first_part = max((m["part"] for m in kept), default=-1) + 1
    tasks = [{"kind": kind, "part": first_part + j, "paths": [paths[i] for i in idx],
              "parts_dir": parts_dir, "fmt": fmt}
             for j, idx in enumerate(_plan(todo, chunk))]

    # ---- run
    results: list[dict] = []
    try:
        from tqdm import tqdm
    except ImportError:  # the bar is optional
        tqdm = None
    bar = (tqdm(total=len(todo), desc=name, unit="rec", file=sys.stderr,
                disable=args.no_progress, dynamic_ncols=True) if tqdm else None)
    n_failed = [sum(len(m["errors"]) for m in kept)]

    def on_done(res):
        results.append(res)
        for e in res["errors"]:
            # the reason usually names the file already: do not say it twice
            text = e["message"] if e["path"] in e["message"] else f"{e['path']}: {e['message']}"
            msg = f"{name}: {e['error']}: {text}"
            if bar is not None:
                bar.write(msg, file=sys.stderr)  # above the bar, not through it
            else:
                print(msg, file=sys.stderr)
        n_failed[0] += len(res["errors"])
        if bar is not None:
            bar.update(res["n_inputs"])
            bar.set_postfix(failed=n_failed[0], refresh=False)

    try:
        if not tasks:
            pass
        elif engine == "dask":
            from ecgcore.pipeline.engine_dask import run_dask
            run_dask(tasks, scheduler, workers, on_done, fn=process_table_chunk)
        else:
            from ecgcore.pipeline.engine_local import run_local
            import multiprocessing as mp
            if workers > 1 and len(tasks) > 1 and "forkserver" not in mp.get_all_start_methods():
                # spawned workers: compile once here, so that they load numba's cache
                # instead of each compiling the same kernels at once
                from ecgcore.delineation.waves import warm_kernels
                warm_kernels()
            # with a forkserver the server loads the kernels once and the workers inherit them
            run_local(tasks, workers, on_done, fn=process_table_chunk,
                      preload=("ecgcore.delineation._preload",))
    except KeyboardInterrupt:
        print(f"{name}: interrupted; finished chunks are kept in {parts_dir}: run again "
              f"with --resume", file=sys.stderr)
        return 1
    except Exception as exc:  # noqa: BLE001 - the engine failed, not a record
        from ecgcore.errors import ConfigError
        print(f"{name}: {type(exc).__name__}: {exc}; finished chunks are kept in "
              f"{parts_dir}: run again with --resume", file=sys.stderr)
        return 2 if isinstance(exc, ConfigError) else 1
    finally:
        if bar is not None:
            bar.close()

    # ---- assemble in input order: the old table, then the parts by first input
    first_pos: dict[str, int] = {}
    for i, p in enumerate(paths):
        first_pos.setdefault(p, i)
    metas = kept + [{"part": r["part"], "sources": t["paths"], "errors": r["errors"],
                     "file": os.path.basename(_part_paths(parts_dir, r["part"], fmt)[0])
                     if r["n_rows"] else None}
                    for r, t in zip(sorted(results, key=lambda r: r["part"]),
                                    sorted(tasks, key=lambda t: t["part"]))]
    inf = len(paths)
    metas.sort(key=lambda m: (min((first_pos.get(s, inf) for s in m["sources"]), default=inf),
                              m["part"]))
    files = ([out] if had_final else []) + [os.path.join(parts_dir, m["file"])
                                            for m in metas if m.get("file")]
    if files:
        (_assemble_csv if fmt == "csv" else _assemble_parquet)(files, out)
    errors = [e for m in metas for e in m["errors"]]
    with open(err_path, "a" if args.resume else "w", encoding="utf-8") as f:
        for e in errors:
            f.write(json.dumps(e) + "\n")
    shutil.rmtree(parts_dir, ignore_errors=True)
    n_done = sum(len(m["sources"]) for m in metas)
    n_skipped = sum(p in done_final for p in paths)
    print(f"{name}: {n_done - len(errors)} ok, {len(errors)} failed, "
          f"{n_skipped} skipped (resume)"
          + (f", {len(done_parts)} from the interrupted run's parts" if kept else "")
          + f" -> {out}"
          + (f" (errors in {err_path})" if errors else ""), file=sys.stderr)
    return 1 if errors else 0

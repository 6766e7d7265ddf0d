"""Image datasets for image models (the scar / LVEF study's ``mtecg`` input), on disk and in training.

:func:`build_image_dataset` turns ECG pages (PNG/JPEG/TIFF/BMP/PDF) and signal
records (files in any format ecgcore reads, or in-memory
:class:`~ecgcore.Record` objects, drawn with :func:`ecgcore.plot`) into the
network input of :func:`ecgcore.models.image_pipeline.prepare_image` and
writes them in the on-disk conventions of ``ecgcore preprocess``
(:mod:`ecgcore.pipeline`): one ``.npy`` shard per chunk written atomically,
a JSON sidecar per shard (its presence marks the shard complete, so
``resume=True`` redoes only unfinished chunks), ``manifest.csv``,
``errors.jsonl`` (one line per input that failed, the run goes on) and
``summary.json`` whose ``preset`` is an *image preset* (below).

Shards hold the resized page as **uint8 (n, 3, size, size) RGB**, a quarter
of the float32 size; :class:`ImageArrays` applies the ImageNet normalisation
on read with the very arithmetic of
:func:`~ecgcore.models.image_pipeline.normalize`, so a training item is
bit-identical to what :class:`ecgcore.ECGClassifier` feeds the network for
the same page.

An image preset is a plain dict, stored in ``summary.json`` and in every
training checkpoint::

    {"name": "mtecg", "kind": "image", "size": 384, "channels": 3,
     "prepare": {"crop_box": "auto2", "grid": "keep", "rearrange": False,
                 "dpi": 300.0, "render": {}}, ...}

(``"auto2"`` names the version of the lead-area detector; presets stored before
it existed say ``"auto"``, which keeps meaning the version-1 detector.)

It is not a signal preset of :mod:`ecgcore.presets` (those are chains of
signal kernels giving (n_segments, leads, samples) float arrays); the
training engine recognises it by ``kind == "image"``.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import sys
import time
from collections.abc import Mapping

import numpy as np

from ecgcore.errors import ConfigError

__all__ = ["image_preset", "is_image_preset", "prepare_options", "build_image_dataset", "ImageArrays",
           "normalize_chw", "read_labels_csv", "IMAGE_SUFFIXES"]

#: File suffixes dropped from record ids of image inputs (signal files use the pipeline's rules).
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".pdf")
_PLAN = "plan.json"
_CROP_NAMES = ("auto", "auto1", "auto2", "old", "new")


def image_preset(size: int = 384, crop_box="auto", grid: str = "keep", rearrange: bool = False,
                 dpi: float = 300.0, render: dict | None = None, name: str = "mtecg") -> dict:
    """The image preset (a JSON-able dict) for the given :func:`prepare_image` options.

    Parameters
    ----------
    size : int
        Side of the square network input in pixels (the study: 384).
    crop_box, grid, rearrange, dpi, render
        As in :func:`ecgcore.models.image_pipeline.prepare_image`; ``render`` is
        passed to :func:`~ecgcore.models.image_pipeline.render_record` for signal
        inputs (``layout``, ``dpi``, ``grid``, ``line_width``).
    name : str
        Preset name that models ask for (``mtecg_image`` models expect ``"mtecg"``).

    Raises
    ------
    ConfigError
        An option that :func:`prepare_image` would refuse.
    """
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 8:
        raise ConfigError(f"image size must be an integer of at least 8 pixels, got {size!r}")
    if isinstance(crop_box, str):
        if crop_box not in _CROP_NAMES:
            raise ConfigError(f"crop_box must be 'auto', 'auto1', 'auto2', None, 'old', 'new' or a box, "
                              f"not {crop_box!r}")
        if crop_box == "auto":
            # a new preset records the detector version it was made with: a stored plain
            # "auto" (older presets and checkpoints) keeps meaning the version-1 detector
            from ecgcore.models.image_pipeline import AUTO_CROP_VERSION
            crop_box = f"auto{AUTO_CROP_VERSION}"
        box = crop_box
    elif crop_box is None:
        box = None
    else:
        box = [int(v) for v in crop_box]
        if len(box) != 4:
            raise ConfigError(f"crop_box must have 4 numbers (left, top, right, bottom), got {crop_box!r}")
    if grid not in ("keep", "remove"):
        raise ConfigError(f"grid must be 'keep' or 'remove', not {grid!r}")
    if not float(dpi) > 0:
        raise ConfigError(f"dpi must be positive, got {dpi!r}")
    render = dict(render or {})
    unknown = sorted(set(render) - {"layout", "dpi", "grid", "line_width"})
    if unknown:
        raise ConfigError(f"render: unknown option {unknown[0]!r} (layout, dpi, grid, line_width)")
    return {"name": str(name), "kind": "image",
            "description": f"ECG page as a {size} x {size} RGB image (crop, resize without keeping the "
                           f"aspect ratio, ImageNet normalisation on read)",
            "reference": "facts/mtecg.md §1-§2 (Boribalburephan et al., Sci Rep 2024)",
            "size": int(size), "channels": 3, "storage": "uint8 (3, H, W) RGB",
            "prepare": {"crop_box": box, "grid": grid, "rearrange": bool(rearrange), "dpi": float(dpi),
                        "render": render},
            "input_contract": {"channels": 3, "height": int(size), "width": int(size),
                               "units": "ImageNet-normalised RGB", "dtype": "float32"}}


def is_image_preset(preset) -> bool:
    """True for a dict made by :func:`image_preset` (as stored in datasets and checkpoints)."""
    return isinstance(preset, Mapping) and preset.get("kind") == "image"


def prepare_options(preset) -> dict:
    """Keyword arguments of :func:`prepare_image` (and ``ECGClassifier(image_options=...)``) of a preset."""
    if not is_image_preset(preset):
        raise ConfigError(f"not an image preset: {preset!r:.80}")
    p = dict(preset["prepare"])
    opts = {"crop_box": p["crop_box"], "grid": p["grid"], "rearrange": p["rearrange"], "dpi": p["dpi"],
            "render": dict(p.get("render") or {}) or None}
    opts["size"] = int(preset["size"])
    return opts


def normalize_chw(x: np.ndarray) -> np.ndarray:
    """(..., 3, H, W) uint8 -> float32 ``(x / 255 - mean) / std`` with ImageNet statistics.

    The same float32 operations, in the same order, as
    :func:`ecgcore.models.image_pipeline.normalize` (which works on (H, W, 3)).
    """
    from ecgcore.models.image_pipeline import IMAGENET_MEAN, IMAGENET_STD
    f = np.asarray(x).astype(np.float32) / 255.0
    f = (f - IMAGENET_MEAN[:, None, None]) / IMAGENET_STD[:, None, None]
    return np.ascontiguousarray(f, dtype=np.float32)


class ImageArrays:
    """Training view of an image dataset: ``array(i)`` is the normalised (3, H, W) float32 image.

    Wraps an :class:`ecgcore.data.ECGDataset` over uint8 shards (what the
    training :class:`~ecgcore.models.train.data.Store` needs: ``array`` and ``len``).
    """

    def __init__(self, dataset):
        self.dataset = dataset
        self.record_ids = dataset.record_ids
        self.segment_index = dataset.segment_index

    def __len__(self):
        return len(self.dataset)

    def array(self, i):
        return normalize_chw(self.dataset.array(i))

    def summary(self):
        return self.dataset.summary()


# ---------------------------------------------------------------------------
# building a dataset
# ---------------------------------------------------------------------------

def _record_id_for_path(path: str) -> str:
    base = os.path.basename(path)
    low = base.lower()
    for suf in IMAGE_SUFFIXES:
        if low.endswith(suf):
            return base[: -len(suf)]
    from ecgcore.pipeline.discover import record_id_for
    return record_id_for(path, None)


def _disambiguate(items) -> list[tuple]:
    """Items whose id came from a file name shared with another input (``a/p1.png``,
    ``b/p1.png``) get their folder relative to those inputs' common folder in front
    (``a/p1``, ``b/p1``; where even that clashes, a WFDB record beside its ``.npz``, the
    full relative path); ids given by the caller or a manifest are kept, so a clash
    among those stays an error. Drops the items' last field (whether the id came from
    the file name)."""
    from collections import Counter
    n = Counter(it[0] for it in items)
    clash = [k for k, it in enumerate(items) if it[4] and n[it[0]] > 1]
    out = [it[:4] for it in items]
    if not clash:
        return out
    files = [items[k][2].rsplit("::", 1)[0] if "::" in items[k][2] else items[k][2] for k in clash]
    root = os.path.commonpath([os.path.dirname(f) for f in files])
    ids = []
    for k, f in zip(clash, files):
        rel = os.path.relpath(os.path.dirname(f), root).replace(os.sep, "/")
        ids.append(items[k][0] if rel == "." else f"{rel}/{items[k][0]}")
    n2 = Counter(ids)
    if any(n2[i] > 1 for i in ids):
        from ecgcore.pipeline.discover import items_from_paths
        full = [it.record_id for it in items_from_paths([items[k][2] for k in clash])]
        ids = [i if n2[i] == 1 else fi for i, fi in zip(ids, full)]
    for k, i in zip(clash, ids):
        out[k] = (i,) + out[k][1:]
    return out


def _items(inputs) -> list[tuple]:
    """(record_id, source text, path or Record, labels) per input, sorted by id; ids must be unique."""
    import ecgcore
    from ecgcore.pipeline.discover import is_manifest_csv, read_manifest
    if isinstance(inputs, (str, os.PathLike, ecgcore.Record)):
        inputs = [inputs]
    if isinstance(inputs, Mapping):
        inputs = list(inputs.items())
    items = []
    for k, x in enumerate(inputs):
        rid = None
        if isinstance(x, tuple) and len(x) == 2 and isinstance(x[0], str):
            rid, x = x
        if isinstance(x, (str, os.PathLike)):
            path = os.path.abspath(os.fspath(x))
            if rid is None and is_manifest_csv(path):
                items += [(it.record_id, it.path, it.path, tuple(it.labels)) for it in read_manifest(path)]
                continue
            items.append((rid or _record_id_for_path(path), path, path, (), rid is None))
        elif isinstance(x, ecgcore.Record):
            if rid is None:
                rid = str(x.meta.get("record_id") or x.source or f"record{k:06d}")
            items.append((rid, str(x.source or rid), x, (), False))
        else:
            raise ConfigError(f"input {k}: expected a path, an ecgcore.Record or a (record_id, path|Record) "
                              f"pair, not {type(x).__name__}")
    items = _disambiguate([it if len(it) == 5 else it + (False,) for it in items])
    items.sort(key=lambda it: it[0])
    for a, b in zip(items, items[1:]):
        if a[0] == b[0]:
            raise ConfigError(f"record id {a[0]!r} is used by two inputs ({a[1]} and {b[1]}); give unique ids")
    return items


def read_labels_csv(path, id_col: str = "record_id") -> tuple[dict, list]:
    """``{record_id: ((column, value), ...)}`` and the label columns of a labels CSV (values as text).

    Raises
    ------
    ConfigError
        Unreadable file, no ``id_col`` column, or a record id given twice.
    """
    import csv
    path = os.fspath(path)
    out = {}
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            cols = [(c or "").strip() for c in (reader.fieldnames or [])]
            if id_col not in cols:
                raise ConfigError(f"labels CSV has no {id_col!r} column (columns: {', '.join(cols) or 'none'})",
                                  path)
            label_cols = [c for c in cols if c and c not in (id_col, "path")]
            for line, row in enumerate(reader, start=2):
                row = {(k or "").strip(): (v or "").strip() for k, v in row.items() if k}
                rid = row.get(id_col, "")
                if not rid:
                    continue
                if rid in out:
                    raise ConfigError(f"line {line}: record id {rid!r} appears twice", path)
                out[rid] = tuple((c, row.get(c, "")) for c in label_cols)
    except OSError as exc:
        raise ConfigError(f"cannot read labels: {exc.strerror or exc}", path) from None
    except (UnicodeDecodeError, csv.Error) as exc:
        raise ConfigError(f"labels file is not a readable CSV: {exc}", path) from None
    return out, label_cols


def _join_labels(items, table: dict) -> tuple[list, int]:
    """Items with the labels of their record id added (a manifest's own columns win); matched count."""
    out, n = [], 0
    for rid, src, x, labels in items:
        extra = table.get(rid)
        if extra is not None:
            n += 1
            have = {c for c, _ in labels}
            labels = tuple(labels) + tuple((c, v) for c, v in extra if c not in have)
        out.append((rid, src, x, labels))
    return out, n


def _inputs_hash(items) -> str:
    h = hashlib.sha256()
    for rid, src, x, labels in items:
        h.update(json.dumps([rid, src, list(labels)]).encode())
        if not isinstance(x, str):  # an in-memory record: its samples identify it
            h.update(np.ascontiguousarray(x.signal).tobytes())
            h.update(repr(float(x.fs)).encode())
        h.update(b"\n")
    return h.hexdigest()


def _process_chunk(task: dict) -> dict:
    """Prepare the images of one chunk, write its shard then its sidecar; return the sidecar."""
    from ecgcore.models.image_pipeline import prepare_image, resize_bilinear
    from ecgcore.pipeline.shards import ShardWriter, shard_name, sidecar_name, write_json_atomic
    chunk, preset, out = task["chunk"], task["preset"], task["out_dir"]
    opts = prepare_options(preset)
    size = opts.pop("size")
    records, errors = [], []
    t_read = t_proc = t_write = 0.0
    cpu0 = time.process_time()
    with ShardWriter(os.path.join(out, shard_name(chunk)), (3, size, size), np.uint8) as writer:
        for rid, src, x, labels in task["items"]:
            t0 = time.perf_counter()
            try:
                # size=8: the normalised tensor is not stored; the 8-bit page is resized below
                prep = prepare_image(x, size=8, **opts)
            except Exception as exc:  # ReadError, PreprocessError or a reader bug: never stop the run
                errors.append({"path": src, "record_id": rid, "error": type(exc).__name__,
                               "message": getattr(exc, "reason", None) or str(exc)})
                t_read += time.perf_counter() - t0
                continue
            t1 = time.perf_counter()
            img = resize_bilinear(prep.image, size, size)   # the pixels prepare_image(size=size) normalises
            t2 = time.perf_counter()
            writer.append(np.ascontiguousarray(img.transpose(2, 0, 1))[None])
            is_rec = prep.source == "record"
            rec = x if not isinstance(x, str) else None
            records.append({"record_id": rid, "source": src, "offset": writer.rows - 1, "n_segments": 1,
                            "fs": float(rec.fs) if rec is not None else "",
                            "n_samples": int(rec.n_samples) if rec is not None else 0,
                            "format": "record" if is_rec else prep.source,
                            "quality_flags": "", "labels": [list(p) for p in labels]})
            t_read += t1 - t0
            t_proc += t2 - t1
            t_write += time.perf_counter() - t2
    sidecar = {"chunk": chunk, "shard": shard_name(chunk), "n_segments": len(records),
               "n_inputs": len(task["items"]), "records": records, "errors": errors,
               "timings": {"read_s": t_read, "preprocess_s": t_proc, "write_s": t_write,
                           "cpu_s": time.process_time() - cpu0}}
    write_json_atomic(os.path.join(out, sidecar_name(chunk)), sidecar)  # last: the shard is complete
    return sidecar


def _run(tasks, workers: int, on_done) -> None:
    # the pipeline's bounded process pool (at most 2 chunks per worker in flight)
    from ecgcore.pipeline.engine_local import run_local
    run_local(tasks, workers, on_done, fn=_process_chunk)


def build_image_dataset(inputs, out, size: int = 384, *, crop_box="auto", grid: str = "keep",
                        rearrange: bool = False, dpi: float = 300.0, render: dict | None = None,
                        name: str = "mtecg", chunk_size: int = 256, workers: int = 1,
                        resume: bool = False, progress: bool = False, labels=None,
                        id_col: str = "record_id") -> dict:
    """Write an image dataset for image models; return its summary.

    Parameters
    ----------
    inputs : path, Record, or a sequence / mapping of them
        Image and PDF files (decided from their bytes), signal files in any
        format :func:`ecgcore.read` knows, :class:`~ecgcore.Record` objects,
        ``(record_id, path_or_record)`` pairs, a ``{record_id: path_or_record}``
        mapping, or a manifest CSV with a ``path`` column (as ``ecgcore
        preprocess`` takes; its other columns go to the manifest as labels).
        Record ids: the file name without its suffix, ``record.source`` for
        records (the simulator's ``simulated:i``), or the given id.
    out : str
        Dataset directory; without ``resume`` it must be new or empty.
    size : int
        Side of the square image (the study: 384).
    crop_box, grid, rearrange, dpi, render, name
        See :func:`image_preset`.
    chunk_size : int
        Images per shard.
    workers : int
        Processes (1 = in this process). Drawing records with matplotlib is
        the costly step (~0.1 s per 10-s record at 25 dpi).
    resume : bool
        Continue a killed run: complete shards are kept, the rest redone.
    progress : bool
        A tqdm bar.
    labels : str or mapping, optional
        A labels CSV (``id_col`` plus label columns, as training's ``data.labels``)
        or ``{record_id: {column: value}}``: joined to the inputs by record id and
        written as columns of ``manifest.csv``. Inputs without a row are kept
        (unlabelled); the summary's ``labels`` counts them.
    id_col : str
        Record-id column of the labels CSV.

    Returns
    -------
    dict
        The content of ``summary.json`` (counts, ``preset``, ``shape`` [3, size, size],
        ``dtype`` "uint8", timings, versions, and with ``labels`` the join counts).

    Raises
    ------
    ConfigError
        Bad options, duplicate record ids, a non-empty ``out`` without
        ``resume``, or a resumed run whose inputs or options differ.
        Inputs that cannot be read are not raised: they go to ``errors.jsonl``.
    """
    from ecgcore._version import __version__
    from ecgcore.pipeline.manifest import write_outputs
    from ecgcore.pipeline.shards import completed_chunks, remove_temporaries, write_json_atomic
    started, t0 = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"), time.perf_counter()
    preset = image_preset(size, crop_box, grid, rearrange, dpi, render, name)
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise ConfigError(f"chunk size must be a positive integer, got {chunk_size!r}")
    workers = int(workers or 1)
    if workers < 1:
        raise ConfigError(f"workers must be >= 1, got {workers}")
    items = _items(inputs)
    label_info = None
    if labels is not None:
        if isinstance(labels, Mapping):
            table = {str(k): tuple((str(c), "" if v is None else str(v)) for c, v in dict(row).items())
                     for k, row in labels.items()}
            src = "mapping"
        else:
            table, _ = read_labels_csv(labels, id_col)
            src = os.path.abspath(os.fspath(labels))
        items, n_match = _join_labels(items, table)
        label_info = {"source": src, "n_labelled": n_match, "n_unlabelled": len(items) - n_match,
                      "unlabelled_ids": [it[0] for it in items if it[0] not in table][:20]}
    chunks = [items[i:i + chunk_size] for i in range(0, len(items), chunk_size)]
    out = os.path.abspath(os.fspath(out))
    plan = {"format": "ecgcore-dataset/1", "kind": "image", "preset": preset, "chunk_size": chunk_size,
            "dtype": "uint8", "n_inputs": len(items), "n_chunks": len(chunks),
            "inputs_sha256": _inputs_hash(items), "shape": [3, preset["size"], preset["size"]]}
    plan_path = os.path.join(out, _PLAN)
    if os.path.isfile(plan_path):
        if not resume:
            raise ConfigError("holds a dataset already; pass resume=True to continue it or choose "
                              "another output directory", out)
        with open(plan_path, encoding="utf-8") as f:
            old = json.load(f)
        for key in ("preset", "chunk_size", "dtype", "inputs_sha256"):
            if old.get(key) != json.loads(json.dumps(plan[key])):
                raise ConfigError(f"cannot resume: {key!r} differs from the interrupted run "
                                  f"(same inputs, options and chunk size needed)", out)
    else:
        if os.path.isdir(out) and os.listdir(out):
            raise ConfigError("output directory exists and is not empty", out)
        os.makedirs(out, exist_ok=True)
        write_json_atomic(plan_path, plan)
    remove_temporaries(out)
    done = completed_chunks(out, len(chunks)) if resume else {}
    tasks = [{"chunk": i, "items": chunks[i], "preset": preset, "out_dir": out}
             for i in range(len(chunks)) if i not in done]
    sidecars = dict(done)
    bar = None
    if progress and tasks:
        from tqdm.auto import tqdm
        bar = tqdm(total=sum(len(t["items"]) for t in tasks), unit="img", desc=name, file=sys.stderr,
                   dynamic_ncols=True)

    def on_done(sc):
        sidecars[sc["chunk"]] = sc
        if bar is not None:
            bar.update(sc["n_inputs"])

    t_run = time.perf_counter()
    try:
        _run(tasks, workers, on_done)
    finally:
        if bar is not None:
            bar.close()
    run_s = time.perf_counter() - t_run
    counts = write_outputs(out, sidecars.values(), "csv")
    processed = sum(len(t["items"]) for t in tasks)
    summary = {**counts, "shards_resumed": len(done), "shards_written": len(tasks), "kind": "image",
               "preset": preset, "shape": plan["shape"], "dtype": "uint8", "chunk_size": chunk_size,
               "engine": "local", "workers": workers, "labels": label_info,
               "timings": {"wall_s": time.perf_counter() - t0, "engine_s": run_s,
                           "records_per_s": processed / run_s if run_s > 0 else None},
               "versions": {"ecgcore": __version__, "numpy": np.__version__},
               "started": started,
               "finished": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"), "out": out}
    write_json_atomic(os.path.join(out, "summary.json"), summary)
    return summary

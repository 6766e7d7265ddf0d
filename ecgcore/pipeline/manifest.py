"""The manifest table, errors.jsonl and summary counts, rebuilt from the shard sidecars."""

from __future__ import annotations

import csv
import io
import json
import os

from .shards import _tmp, sidecar_name

__all__ = ["MANIFEST_COLUMNS", "build_manifest", "write_outputs", "SidecarFiles",
           "render_chunk", "ManifestStream"]

MANIFEST_COLUMNS = ["record_id", "source", "segment_index", "n_segments", "shard", "offset",
                    "fs", "n_samples", "format", "quality_flags"]


class SidecarFiles:
    """The sidecars of some chunks of a dataset, read from disk one at a time in chunk order.

    The driver passes this to :func:`write_outputs` instead of keeping every
    sidecar in memory: for 10^7 records those are tens of millions of Python
    objects, gigabytes of memory in the parent and full garbage-collector
    passes over them while chunks are still being collected.
    """

    def __init__(self, out_dir: str, chunks, label_cols=None):
        self.out_dir = out_dir
        self.chunks = sorted(int(c) for c in chunks)
        #: the label columns in manifest order, when the caller knows them (saves a pass)
        self.label_cols = None if label_cols is None else list(label_cols)

    def __len__(self) -> int:
        return len(self.chunks)

    def __iter__(self):
        for i in self.chunks:
            with open(os.path.join(self.out_dir, sidecar_name(i)), encoding="utf-8") as f:
                yield json.load(f)


def _label_columns(sidecars) -> list[str]:
    label_cols: list[str] = []
    seen = set(MANIFEST_COLUMNS)
    for s in sidecars:
        for r in s["records"]:
            for c, _v in r.get("labels", ()):
                if c not in seen:
                    seen.add(c)
                    label_cols.append(c)
    return label_cols


def _row_tuples(s: dict, label_cols: list[str]) -> list[tuple]:
    """The manifest rows of one sidecar as tuples in column order (MANIFEST_COLUMNS + labels)."""
    shard = s["shard"]
    rows = []
    for r in s["records"]:
        rid, src, n, off = r["record_id"], r["source"], r["n_segments"], r["offset"]
        tail = (r["fs"], r["n_samples"], r["format"], r["quality_flags"])
        if label_cols:
            labels = dict(tuple(p) for p in r.get("labels", ()))
            tail += tuple(labels.get(c, "") for c in label_cols)
        rows.extend((rid, src, j, n, shard, off + j) + tail for j in range(n))
    return rows


def build_manifest(sidecars) -> tuple[list[dict], list[str]]:
    """One row per segment, in shard order then offset order; columns."""
    sidecars = sorted(sidecars, key=lambda s: s["chunk"])
    label_cols = _label_columns(sidecars)
    cols = MANIFEST_COLUMNS + label_cols
    return [dict(zip(cols, t)) for s in sidecars for t in _row_tuples(s, label_cols)], cols


def write_outputs(out_dir: str, sidecars, fmt: str = "csv") -> dict:
    """Write manifest.csv (or .parquet), errors.jsonl; return the counts.

    ``sidecars`` is an iterable of sidecar dicts (any order) or a
    :class:`SidecarFiles`, which is streamed, one sidecar in memory at a time
    for the CSV manifest (with a first pass for the label columns unless it
    carries them). The bytes written are the same either way.
    """
    label_cols = None
    if isinstance(sidecars, SidecarFiles):
        label_cols = sidecars.label_cols
    else:
        sidecars = sorted(sidecars, key=lambda s: s["chunk"])
    if label_cols is None:
        label_cols = _label_columns(sidecars)
    cols = MANIFEST_COLUMNS + label_cols
    counts = {"n_inputs": 0, "n_records_ok": 0, "n_records_failed": 0, "errors_by_type": {},
              "n_segments": 0, "n_shards": 0,
              "timings_sum_s": {"read_s": 0.0, "preprocess_s": 0.0, "write_s": 0.0}}
    by_type = counts["errors_by_type"]
    sums = counts["timings_sum_s"]
    err_path = os.path.join(out_dir, "errors.jsonl")
    err_tmp = _tmp(err_path)
    parquet_cols = [[] for _ in cols] if fmt == "parquet" else None
    if fmt == "parquet":
        man_path = os.path.join(out_dir, "manifest.parquet")
        man_tmp = _tmp(man_path)
        man = None
    else:
        man_path = os.path.join(out_dir, "manifest.csv")
        man_tmp = _tmp(man_path)
        # newline="": the csv writer's own "\n" terminator, as the in-memory
        # DictWriter route wrote it
        man = open(man_tmp, "w", encoding="utf-8", newline="")
    try:
        with open(err_tmp, "w", encoding="utf-8", newline="") as ef:
            if man is not None:
                w = csv.writer(man, lineterminator="\n")
                w.writerow(cols)
            for s in sidecars:
                rows = _row_tuples(s, label_cols)
                if man is not None:
                    w.writerows(rows)  # one C call per chunk, not a Python dict per row
                else:
                    for col, vals in zip(parquet_cols, zip(*rows) if rows else [()] * len(cols)):
                        col.extend(vals)
                for e in s["errors"]:
                    ef.write(json.dumps(e, sort_keys=True) + "\n")
                    by_type[e["error"]] = by_type.get(e["error"], 0) + 1
                counts["n_inputs"] += s["n_inputs"]
                counts["n_records_ok"] += len(s["records"])
                counts["n_records_failed"] += len(s["errors"])
                counts["n_segments"] += len(rows)
                counts["n_shards"] += 1
                for k in sums:
                    sums[k] += s["timings"][k]
        if man is not None:
            man.close()
        else:
            import pyarrow as pa
            import pyarrow.parquet as pq
            pq.write_table(pa.table(dict(zip(cols, parquet_cols))), man_tmp)
    except BaseException:
        if man is not None:
            man.close()
        for p in (man_tmp, err_tmp):
            try:
                os.remove(p)
            except OSError:
                pass
        raise
    os.replace(man_tmp, man_path)
    os.replace(err_tmp, err_path)
    return counts


def render_chunk(sidecar: dict) -> dict:
    """One chunk's part of the outputs, rendered where the chunk ran.

    Returns ``label_cols`` (the chunk's label columns, first-seen order),
    ``csv`` (its manifest rows with those label columns, no header) and
    ``errors`` (its errors.jsonl lines). When every chunk with records has
    the same label columns, the manifest is the header followed by these
    texts in chunk order: byte for byte what :func:`write_outputs` writes.
    """
    label_cols = _label_columns([sidecar])
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(_row_tuples(sidecar, label_cols))
    return {"label_cols": label_cols, "csv": buf.getvalue(),
            "errors": "".join(json.dumps(e, sort_keys=True) + "\n" for e in sidecar["errors"])}


class ManifestStream:
    """Writes manifest.csv and errors.jsonl while a run goes on, from rendered chunk parts.

    The workers render their chunk's rows (:func:`render_chunk`, in parallel);
    this object, in the driver, appends them in chunk order as they arrive
    (finished chunks wait in a buffer bounded by the engine's in-flight window)
    and takes resumed chunks from their sidecar files when their turn comes.
    The driver's share of the manifest is then an append per chunk instead of
    a serial pass over every sidecar after the last chunk.

    :meth:`finish` returns the counts, or None when the stream cannot give the
    exact table (label columns that differ between chunks, a parquet
    manifest): the caller then rebuilds with :func:`write_outputs`.
    """

    def __init__(self, out_dir: str, n_chunks: int, resumed, fmt: str = "csv"):
        self.out_dir = out_dir
        self.n_chunks = int(n_chunks)
        self.resumed = set(resumed)
        self.next = 0
        self.buffer: dict[int, dict] = {}
        self.label_union: dict[str, None] = {}  # every chunk's label columns, in chunk order
        self.cols = None  # the label columns of the first chunk with records
        self.ok = fmt == "csv"
        self.complete = False
        self.counts = {"n_inputs": 0, "n_records_ok": 0, "n_records_failed": 0,
                       "errors_by_type": {}, "n_segments": 0, "n_shards": 0,
                       "timings_sum_s": {"read_s": 0.0, "preprocess_s": 0.0, "write_s": 0.0}}
        self.man_path = os.path.join(out_dir, "manifest.csv")
        self.err_path = os.path.join(out_dir, "errors.jsonl")
        self.man_tmp, self.err_tmp = _tmp(self.man_path), _tmp(self.err_path)
        self.man = open(self.man_tmp, "w", encoding="utf-8", newline="") if self.ok else None
        self.err = open(self.err_tmp, "w", encoding="utf-8", newline="")

    def add(self, summary: dict) -> None:
        """A finished chunk: its :func:`~.worker.summarize` result with ``parts``."""
        self.buffer[summary["chunk"]] = summary
        self._drain()

    def _drain(self) -> None:
        while self.next < self.n_chunks:
            i = self.next
            if i in self.buffer:
                self._append(self.buffer.pop(i))
            elif i in self.resumed:
                from .worker import summarize
                with open(os.path.join(self.out_dir, sidecar_name(i)), encoding="utf-8") as f:
                    self._append(summarize(json.load(f), render=True))
            else:
                break
            self.next += 1

    def _append(self, sm: dict) -> None:
        parts = sm["parts"]
        for c in parts["label_cols"]:
            self.label_union.setdefault(c)
        if sm["n_records"] and self.man is not None:
            if self.cols is None:
                self.cols = parts["label_cols"]
                csv.writer(self.man, lineterminator="\n").writerow(MANIFEST_COLUMNS + self.cols)
            if parts["label_cols"] != self.cols:
                self.ok = False  # rebuilt from the sidecars at the end
                self.man.close()
                self.man = None
            else:
                self.man.write(parts["csv"])
        self.err.write(parts["errors"])
        c = self.counts
        c["n_inputs"] += sm["n_inputs"]
        c["n_records_ok"] += sm["n_records"]
        c["n_records_failed"] += sm["n_errors"]
        for t in sm["error_types"]:
            c["errors_by_type"][t] = c["errors_by_type"].get(t, 0) + 1
        c["n_segments"] += sm["n_segments"]
        c["n_shards"] += 1
        for k in c["timings_sum_s"]:
            c["timings_sum_s"][k] += sm["timings"][k]

    def finish(self) -> "dict | None":
        """Close and move the files into place; the counts, or None (see the class)."""
        self._drain()  # resumed chunks after the last new one (or a run with no new chunk)
        self.complete = complete = self.next == self.n_chunks and not self.buffer
        self.err.close()
        if self.man is not None:
            if self.cols is None:  # no record in any chunk: the header alone
                csv.writer(self.man, lineterminator="\n").writerow(MANIFEST_COLUMNS)
            self.man.close()
        if not (self.ok and complete):
            self.abort()
            return None
        os.replace(self.man_tmp, self.man_path)
        os.replace(self.err_tmp, self.err_path)
        return self.counts

    def abort(self) -> None:
        """Close and remove the temporary files."""
        for f in (self.man, self.err):
            if f is not None and not f.closed:
                f.close()
        for p in (self.man_tmp, self.err_tmp):
            try:
                os.remove(p)
            except OSError:
                pass

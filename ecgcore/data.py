"""Datasets over the shards written by ``ecgcore preprocess`` (torch imported lazily).

``import ecgcore.data`` needs only numpy: the shards are ``.npy`` files opened
with ``np.load(mmap_mode="r")``, so a dataset of any size costs no memory
until items are read, and DataLoader workers share the page cache.
"""

from __future__ import annotations

import csv
import json
import math
import os
from typing import Sequence

import numpy as np

from .errors import ConfigError

__all__ = ["ECGDataset", "RecordView", "read_manifest_table"]


def read_manifest_table(root: str) -> tuple[list[str], dict[str, list[str]]]:
    """Columns and column values (strings) of a dataset's manifest (CSV or parquet)."""
    pq_path = os.path.join(root, "manifest.parquet")
    csv_path = os.path.join(root, "manifest.csv")
    if os.path.isfile(csv_path):
        with open(csv_path, newline="", encoding="utf-8") as f:
            reader = csv.reader(f)
            header = next(reader, None)
            if header is None:
                raise ConfigError("manifest.csv is empty", csv_path)
            cols: dict[str, list[str]] = {h: [] for h in header}
            lists = [cols[h] for h in header]
            for row in reader:
                for lst, v in zip(lists, row):
                    lst.append(v)
        return header, cols
    if os.path.isfile(pq_path):
        import pyarrow.parquet as pq
        table = pq.read_table(pq_path)
        return table.column_names, {c: [str(v) for v in table.column(c).to_pylist()]
                                    for c in table.column_names}
    raise ConfigError("not an ecgcore dataset (no manifest.csv or manifest.parquet)", root)


def _to_float(v: str) -> float:
    v = (v or "").strip()
    if v == "" or v.lower() in ("nan", "na", "none", "null"):
        return math.nan
    if v.lower() in ("true", "yes"):
        return 1.0
    if v.lower() in ("false", "no"):
        return 0.0
    try:
        return float(v)
    except ValueError:
        raise ConfigError(f"label value {v!r} is not a number") from None


class RecordView:
    """All segments of one record.

    Attributes
    ----------
    record_id : str
    indices : ndarray of int
        Item indices of the record's segments in the dataset, in segment order.
    """

    __slots__ = ("dataset", "record_id", "indices")

    def __init__(self, dataset: "ECGDataset", record_id: str, indices: np.ndarray):
        self.dataset = dataset
        self.record_id = record_id
        self.indices = indices

    def __len__(self) -> int:
        return len(self.indices)

    @property
    def segments(self) -> np.ndarray:
        """(n_segments, leads, samples) float32 array."""
        return np.stack([self.dataset.array(i) for i in self.indices])

    @property
    def labels(self) -> np.ndarray:
        """The record's label vector (NaN where missing)."""
        return self.dataset.label_array(self.indices[0]) if len(self.indices) else \
            np.full(len(self.dataset.label_cols), np.nan, np.float32)

    def tensors(self):
        """(segments tensor (n, leads, samples), label tensor)."""
        import torch
        return torch.from_numpy(self.segments), torch.from_numpy(self.labels)

    def __repr__(self) -> str:
        return f"<RecordView {self.record_id!r}: {len(self)} segments>"


class ECGDataset:
    """A torch-style Dataset over a preprocessed, sharded dataset directory.

    Parameters
    ----------
    root : str
        Directory written by ``ecgcore preprocess``.
    labels : str, optional
        A CSV with ``id_col`` and the label columns. Without it, label columns
        are taken from the manifest (labels carried over from an input manifest).
    label_cols : sequence of str, optional
        Label columns, in output order. Missing values become NaN.
    id_col : str
        The record id column of ``labels``.
    transform : callable, optional
        Applied to each segment tensor.

    Items are ``(segment, label)``: a float32 tensor (leads, samples) and a
    float32 tensor (len(label_cols),). :meth:`records` groups segments by
    record (for per-ECG aggregation of segment predictions).
    """

    def __init__(self, root: str, labels: str | None = None,
                 label_cols: Sequence[str] | None = None, id_col: str = "record_id",
                 transform=None):
        self.root = os.fspath(root)
        header, cols = read_manifest_table(self.root)
        for need in ("record_id", "shard", "offset"):
            if need not in cols:
                raise ConfigError(f"manifest has no {need!r} column", self.root)
        self.record_ids = cols["record_id"]
        self.segment_index = np.asarray(cols.get("segment_index", [0] * len(self.record_ids)),
                                        dtype=np.int64)
        shard_names = cols["shard"]
        self.shard_files = sorted(set(shard_names))
        lookup = {s: i for i, s in enumerate(self.shard_files)}
        self._shard_of = np.fromiter((lookup[s] for s in shard_names), np.int32,
                                     len(shard_names))
        self._offset = np.asarray(cols["offset"], dtype=np.int64)
        self._arrays: list | None = None
        self.transform = transform
        self.label_cols = list(label_cols or [])
        self._labels = self._load_labels(labels, id_col, cols)

    def _load_labels(self, path, id_col, cols) -> np.ndarray:
        n, k = len(self.record_ids), len(self.label_cols)
        out = np.full((n, k), np.nan, np.float32)
        if not k:
            return out
        if path is None:
            missing = [c for c in self.label_cols if c not in cols]
            if missing:
                raise ConfigError(f"label column {missing[0]!r} is not in the manifest; pass "
                                  f"labels=CSV", self.root)
            for j, c in enumerate(self.label_cols):
                out[:, j] = [_to_float(v) for v in cols[c]]
            return out
        table: dict[str, list[float]] = {}
        try:
            with open(path, newline="", encoding="utf-8-sig") as f:
                reader = csv.DictReader(f)
                fields = reader.fieldnames or []
                for c in [id_col] + self.label_cols:
                    if c not in fields:
                        raise ConfigError(f"labels CSV has no column {c!r}", path)
                for row in reader:
                    vals = []
                    for c in self.label_cols:
                        try:
                            vals.append(_to_float(row[c]))
                        except ConfigError as exc:
                            raise ConfigError(f"record {row[id_col]!r}, column {c!r}: "
                                              f"{exc.reason}", path) from None
                    table[row[id_col].strip()] = vals
        except OSError as exc:
            raise ConfigError(f"cannot read labels: {exc.strerror or exc}", path) from None
        for i, rid in enumerate(self.record_ids):
            v = table.get(rid)
            if v is not None:
                out[i] = v
        return out

    # -- array access (no torch) --------------------------------------------
    def _shards(self):
        if self._arrays is None:  # opened lazily: after fork, in each DataLoader worker
            self._arrays = [np.load(os.path.join(self.root, s), mmap_mode="r")
                            for s in self.shard_files]
        return self._arrays

    def __len__(self) -> int:
        return len(self.record_ids)

    def array(self, i: int) -> np.ndarray:
        """Segment ``i`` as a float32 numpy array (leads, samples)."""
        if not -len(self) <= i < len(self):
            raise IndexError(f"item {i} out of range for {len(self)} segments")
        i %= len(self)
        a = self._shards()[self._shard_of[i]][self._offset[i]]
        return np.array(a, dtype=np.float32)

    def label_array(self, i: int) -> np.ndarray:
        return self._labels[i].copy()

    @property
    def labels(self) -> np.ndarray:
        """(n_segments, n_labels) float32 label matrix (NaN = missing)."""
        return self._labels

    def __getitem__(self, i: int):
        import torch
        x = torch.from_numpy(self.array(int(i)))
        if self.transform is not None:
            x = self.transform(x)
        return x, torch.from_numpy(self.label_array(int(i)))

    def records(self) -> list[RecordView]:
        """One :class:`RecordView` per record, in dataset order."""
        groups: dict[str, list[int]] = {}
        for i, rid in enumerate(self.record_ids):
            groups.setdefault(rid, []).append(i)
        return [RecordView(self, rid, np.asarray(sorted(ix, key=lambda j: self.segment_index[j])))
                for rid, ix in groups.items()]

    def record(self, record_id: str) -> RecordView:
        ix = [i for i, r in enumerate(self.record_ids) if r == record_id]
        if not ix:
            raise KeyError(record_id)
        return RecordView(self, record_id, np.asarray(ix))

    def summary(self) -> dict:
        path = os.path.join(self.root, "summary.json")
        with open(path, encoding="utf-8") as f:
            return json.load(f)

    def __getstate__(self):  # do not pickle open memory maps into DataLoader workers
        state = dict(self.__dict__)
        state["_arrays"] = None
        return state

    def __repr__(self) -> str:
        return (f"<ECGDataset {self.root!r}: {len(self)} segments in {len(self.shard_files)} "
                f"shards, labels {self.label_cols}>")

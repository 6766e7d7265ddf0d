"""Training data: a preprocessed dataset joined with a labels CSV, splits, target scaling.

* :func:`load_store` joins an ``ecgcore preprocess`` dataset (segments) with a
  labels CSV (one row per record: targets, clinical variables, patient id) or
  builds an in-memory store from simulated records (``data.source:
  simulated``, used by the smoke config and the tests).
* :func:`make_splits` assigns *patients*, never single records, to
  train / validation / test: a seeded random split, a split column, or
  grouped stratified k-fold with an inner patient-grouped validation split
  (the best epoch and thresholds are chosen there, never on the reported fold).
* :class:`TargetScaler` standardises regression targets with training-split
  statistics that are stored in checkpoints; :class:`ClinicalScaler` imputes
  and scales clinical variables the same way.
* :class:`SegmentDataset` yields ``(x, y, clinical, index)`` with NaN labels
  kept (the loss masks them) and seeded per-item augmentations that do not
  depend on the number of DataLoader workers.
* :class:`RecordDataset` (``data.aggregate: attention``) yields all segments
  of one record, ``(x (segments, leads, samples), y, clinical, index)``;
  :func:`collate_records` pads a batch of records to its longest one and
  adds the boolean segment mask.
"""

from __future__ import annotations

import csv
import math
import os
from dataclasses import dataclass, field

import numpy as np

from ecgcore.errors import ConfigError

__all__ = ["Store", "load_store", "make_splits", "grouped_split", "grouped_stratified_kfold",
           "TargetScaler", "ClinicalScaler", "SegmentDataset", "RecordDataset", "collate_records",
           "augment", "task_columns", "simulated_targets"]


@dataclass
class Store:
    """Segments plus one row of labels per record.

    ``arrays`` has ``array(i) -> (leads, samples)`` and ``len``; ``seg_record[i]``
    is the record row of segment ``i``.
    """
    arrays: object
    seg_record: np.ndarray
    record_ids: list
    patients: np.ndarray
    targets: np.ndarray          # (n_records, n_tasks) float32, NaN = missing
    clinical: np.ndarray         # (n_records, n_clinical) float32, NaN = missing
    preset: dict
    split_col: np.ndarray | None = None
    extra: dict = field(default_factory=dict)

    @property
    def n_records(self) -> int:
        return len(self.record_ids)


class _ArrayStore:
    def __init__(self, x: np.ndarray):
        self.x = np.ascontiguousarray(x, dtype=np.float32)

    def __len__(self):
        return len(self.x)

    def array(self, i):
        return self.x[i]


def task_columns(cfg) -> list[str]:
    return [t["column"] or t["name"] for t in cfg["tasks"]]


def _to_float(v: str, where: str) -> float:
    v = (v or "").strip()
    if v == "" or v.lower() in ("nan", "na", "n/a", "none", "null"):
        return math.nan
    low = v.lower()
    if low in ("true", "yes"):
        return 1.0
    if low in ("false", "no"):
        return 0.0
    try:
        return float(v)
    except ValueError:
        raise ConfigError(f"{where}: value {v!r} is not a number") from None


def _read_labels(path, id_col, numeric_cols, extra_cols):
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            fields = reader.fieldnames or []
            for c in [id_col] + list(numeric_cols) + [c for c in extra_cols if c]:
                if c not in fields:
                    raise ConfigError(f"labels CSV has no column {c!r} (columns: {', '.join(fields)})", path)
            table = {}
            for line, row in enumerate(reader, start=2):
                rid = (row[id_col] or "").strip()
                if rid in table:
                    raise ConfigError(f"line {line}: record id {rid!r} appears twice", path)
                nums = [_to_float(row[c], f"line {line}, column {c!r}") for c in numeric_cols]
                table[rid] = (nums, {c: (row[c] or "").strip() for c in extra_cols if c})
    except OSError as exc:
        raise ConfigError(f"cannot read labels: {exc.strerror or exc}", path) from None
    return table


def simulated_targets(rec) -> dict:
    """Ground-truth targets of a simulated record from its fiducial points."""
    fid, fs = rec.meta["fiducials"], rec.fs
    on, off = fid["QRS_on"], fid["QRS_off"]
    ok = (on >= 0) & (off >= 0)
    qrs = float(np.mean(off[ok] - on[ok]) / fs * 1000) if ok.any() else math.nan
    p_on = fid["P_on"]
    okp = (p_on >= 0) & (on >= 0)
    pr = float(np.mean(on[okp] - p_on[okp]) / fs * 1000) if okp.sum() >= 2 else math.nan
    hr = float(rec.meta["heart_rate_bpm"])
    return {"heart_rate_bpm": hr, "qrs_duration_ms": qrs, "pr_interval_ms": pr,
            "tachycardia": float(hr > 100), "af": float(rec.meta["rhythm"] in ("af", "flutter"))}


def _simulated_store(cfg, preset) -> Store:
    import ecgcore
    from ecgcore.presets import preprocess
    s = cfg["data"]["simulate"]
    hr = tuple(float(v) for v in s["heart_rate"])
    recs = ecgcore.simulate(n=s["n"], seed=s["seed"], duration=s["duration"], rhythm=s["rhythm"],
                            noise=s["noise"], heart_rate=hr)
    cols = task_columns(cfg)
    segs, seg_rec, rows = [], [], []
    for r, rec in enumerate(recs):
        t = simulated_targets(rec)
        missing = [c for c in cols if c not in t]
        if missing:
            raise ConfigError(f"data.source simulated provides the targets {sorted(t)}; "
                              f"not {missing[0]!r}")
        x = preprocess(rec, preset)
        segs.append(x)
        seg_rec += [r] * len(x)
        rows.append([t[c] for c in cols])
    ids = [f"sim{i:05d}" for i in range(len(recs))]
    if cfg["data"]["clinical"]:
        raise ConfigError("data.clinical: simulated data has no clinical variables")
    return Store(_ArrayStore(np.concatenate(segs)), np.asarray(seg_rec, np.int64), ids,
                 np.asarray(ids), np.asarray(rows, np.float32).reshape(len(ids), len(cols)),
                 np.zeros((len(ids), 0), np.float32), preset)


def load_store(cfg, preset=None) -> Store:
    """Build the :class:`Store` of a validated config (see module docstring)."""
    d = cfg["data"]
    if d["source"] == "simulated":
        if preset is None:
            raise ConfigError("data.source simulated: no preset known (set data.preset or model.preset)")
        return _simulated_store(cfg, preset)
    from ecgcore.data import ECGDataset
    root = d["dataset"]
    if not os.path.isdir(root):
        raise ConfigError("data.dataset: not a directory", root)
    ds = ECGDataset(root)
    try:
        summary = ds.summary()
    except (OSError, ValueError):
        raise ConfigError("data.dataset: no readable summary.json (not written by 'ecgcore preprocess'?)",
                          root) from None
    ds_preset = summary.get("preset")
    uniq = list(dict.fromkeys(ds.record_ids))
    row_of = {rid: i for i, rid in enumerate(uniq)}
    seg_record = np.fromiter((row_of[r] for r in ds.record_ids), np.int64, len(ds.record_ids))
    cols = task_columns(cfg)
    clin_cols = list(d["clinical"])
    split_col = d["split"]["column"] if d["split"]["method"] == "column" else None
    targets = np.full((len(uniq), len(cols)), np.nan, np.float32)
    clinical = np.full((len(uniq), len(clin_cols)), np.nan, np.float32)
    patients = np.asarray(uniq, dtype=object)
    splits = np.full(len(uniq), "", dtype=object) if split_col else None
    if d["labels"] is None:
        raise ConfigError("data.labels: a labels CSV is required for training (targets per record)")
    table = _read_labels(d["labels"], d["id_col"], cols + clin_cols, [d["patient_col"], split_col])
    n_found = 0
    for rid, r in row_of.items():
        hit = table.get(rid)
        if hit is None:
            continue
        n_found += 1
        nums, extra = hit
        targets[r] = nums[:len(cols)]
        clinical[r] = nums[len(cols):]
        if d["patient_col"]:
            patients[r] = extra[d["patient_col"]] or rid
        if split_col:
            splits[r] = extra[split_col].lower()
    if n_found == 0:
        raise ConfigError(f"no record id of the dataset appears in column {d['id_col']!r} of the labels "
                          f"CSV (dataset ids look like {uniq[:3]})", d["labels"])
    arrays = ds
    from .images import ImageArrays, is_image_preset
    if is_image_preset(ds_preset):  # uint8 page images: ImageNet-normalised on read
        aug = d["augment"]
        on = [k for k in ("crop", "scale", "noise", "shift", "mask") if aug.get(k)]
        if on:
            raise ConfigError(f"data.augment.{on[0]}: signal augmentations do not apply to an image "
                              f"dataset (preset {ds_preset.get('name')!r}); set it to 0/null (image augmentations are "
                              f"set in model.options.augment: rotate, scale, translate, brightness, "
                              f"contrast, blur, jpeg)", root)
        arrays = ImageArrays(ds)
    return Store(arrays, seg_record, uniq, np.asarray(patients, dtype=str), targets, clinical,
                 ds_preset, splits, {"n_labelled": n_found})


# ---------------------------------------------------------------------------
# splits (patient level)
# ---------------------------------------------------------------------------

def grouped_split(groups, fractions, seed, strata=None):
    """Assign each unique group to 0/1/2 (train/val/test) with the given fractions.

    Groups are shuffled with ``numpy.random.default_rng(seed)``; with ``strata``
    (one label per group) each stratum is split separately so that every split
    keeps its prevalence. Returns a dict group -> split index.
    """
    groups = np.asarray(groups)
    uniq = np.unique(groups)
    rng = np.random.default_rng(seed)
    if strata is None:
        buckets = [uniq]
    else:
        st = np.asarray([strata[g] for g in uniq])
        buckets = [uniq[st == s] for s in np.unique(st)]
    out = {}
    cum = np.cumsum(fractions)
    for b in buckets:
        b = b[rng.permutation(len(b))]
        n = len(b)
        # rounding of cumulative counts keeps the total exact
        edges = [int(round(c * n)) for c in cum]
        edges[-1] = n
        start = 0
        for k, e in enumerate(edges):
            for g in b[start:e]:
                out[g] = k
            start = e
    return out


def grouped_stratified_kfold(groups, strata, n_splits, seed):
    """Fold index per group: groups of each stratum dealt round-robin after a seeded shuffle.

    Every group lands in exactly one fold; each fold gets a near-equal share
    of every stratum (the stratum of a group is its most frequent label).
    """
    uniq = np.unique(np.asarray(groups))
    rng = np.random.default_rng(seed)
    st = np.asarray([strata.get(g, "") for g in uniq]) if strata else np.zeros(len(uniq), dtype=str)
    fold = {}
    offset = 0
    for s in np.unique(st):
        members = uniq[st == s]
        members = members[rng.permutation(len(members))]
        for k, g in enumerate(members):
            fold[g] = (k + offset) % n_splits
        offset += len(members)  # the next stratum starts where this one stopped: balanced fold sizes
    return fold


def _group_strata(store: Store, cfg):
    """Stratum label per patient: binary/multiclass targets joined as a string (as in CCTA)."""
    cls = [j for j, t in enumerate(cfg["tasks"]) if t["type"] != "regression"]
    if not cls or not cfg["data"]["split"]["stratify"]:
        return None
    keys = {}
    for r in range(store.n_records):
        vals = store.targets[r, cls]
        keys.setdefault(store.patients[r], []).append(
            "".join("n" if np.isnan(v) else str(int(v)) for v in vals))
    # a patient's stratum is the most frequent label string among its records
    return {g: max(set(v), key=v.count) for g, v in keys.items()}


def make_splits(store: Store, cfg) -> dict:
    """Record indices per split: ``{"train": ..., "val": ..., "test": ...}`` (patients never cross)."""
    sp = cfg["data"]["split"]
    method = sp["method"]
    rec_split = np.empty(store.n_records, dtype=object)
    if method == "column":
        names = {"train": "train", "training": "train", "val": "val", "valid": "val",
                 "validation": "val", "dev": "val", "test": "test", "testing": "test"}
        for r, s in enumerate(store.split_col):
            rec_split[r] = names.get(s, "unused")
        for g in np.unique(store.patients):
            s = set(rec_split[store.patients == g]) - {"unused"}
            if len(s) > 1:
                raise ConfigError(f"data.split.column: patient {g!r} appears in splits {sorted(s)}; "
                                  f"patients must not cross splits")
    else:
        strata = _group_strata(store, cfg)
        if method == "random":
            assign = grouped_split(store.patients, sp["fractions"], sp["seed"], strata)
            for r, g in enumerate(store.patients):
                rec_split[r] = ("train", "val", "test")[assign[g]]
        else:
            n_pat = len(set(store.patients))
            if sp["folds"] > n_pat:
                # a fold without a patient would train a model that is never tested
                raise ConfigError(f"data.split.folds: {sp['folds']} folds but only {n_pat} patients; "
                                  f"use at most {n_pat} folds")
            fold = grouped_stratified_kfold(store.patients, strata, sp["folds"], sp["seed"])
            rest = [g for g in fold if fold[g] != sp["fold"]]
            vf = float(sp["val_fraction"])
            inner = grouped_split(np.asarray(rest), [1 - vf, vf, 0.0], sp["seed"] + 1 + sp["fold"],
                                  {g: strata[g] for g in rest} if strata else None)
            for r, g in enumerate(store.patients):
                rec_split[r] = "test" if fold[g] == sp["fold"] else ("train", "val")[inner[g]]
    out = {k: np.flatnonzero(rec_split == k) for k in ("train", "val", "test")}
    if len(out["train"]) == 0:
        raise ConfigError("data.split: the training split is empty")
    if len(out["val"]) == 0:
        raise ConfigError("data.split: the validation split is empty (the best epoch and thresholds "
                          "are chosen on it; give it a non-zero fraction)")
    return out


def segments_of(store: Store, records) -> np.ndarray:
    mask = np.zeros(store.n_records, bool)
    mask[np.asarray(records, np.int64)] = True
    return np.flatnonzero(mask[store.seg_record])


# ---------------------------------------------------------------------------
# scaling
# ---------------------------------------------------------------------------

class TargetScaler:
    """z-scores of regression targets with training-split mean and SD (population SD, as StandardScaler)."""

    def __init__(self, mean, std):
        self.mean = np.asarray(mean, np.float64)
        self.std = np.asarray(std, np.float64)

    @classmethod
    def fit(cls, targets, tasks):
        n = targets.shape[1]
        mean, std = np.zeros(n), np.ones(n)
        for j, t in enumerate(tasks):
            if t["type"] == "regression" and t["standardize"]:
                col = targets[:, j][~np.isnan(targets[:, j])]
                if col.size:
                    mean[j] = col.mean()
                    sd = col.std()
                    std[j] = sd if sd > 0 else 1.0
        return cls(mean, std)

    def transform(self, y):
        return ((y - self.mean) / self.std).astype(np.float32)

    def inverse(self, y):
        return y * self.std + self.mean

    def state(self) -> dict:
        return {"mean": self.mean.tolist(), "std": self.std.tolist()}

    @classmethod
    def from_state(cls, s):
        return cls(s["mean"], s["std"])


class ClinicalScaler:
    """Median imputation then min-max or z-score scaling, all fitted on the training split."""

    def __init__(self, fill, shift, scale):
        self.fill = np.asarray(fill, np.float64)
        self.shift = np.asarray(shift, np.float64)
        self.scale = np.asarray(scale, np.float64)

    @classmethod
    def fit(cls, x, impute="median", scaling="minmax"):
        k = x.shape[1]
        fill, shift, scale = np.zeros(k), np.zeros(k), np.ones(k)
        for j in range(k):
            col = x[:, j][~np.isnan(x[:, j])]
            if col.size == 0:
                continue
            fill[j] = np.median(col) if impute == "median" else 0.0
            if scaling == "minmax":
                shift[j], span = col.min(), col.max() - col.min()
                scale[j] = span if span > 0 else 1.0
            elif scaling == "zscore":
                shift[j], sd = col.mean(), col.std()
                scale[j] = sd if sd > 0 else 1.0
        return cls(fill, shift, scale)

    def transform(self, x):
        x = np.where(np.isnan(x), self.fill, x)
        return ((x - self.shift) / self.scale).astype(np.float32)

    def state(self) -> dict:
        return {"fill": self.fill.tolist(), "shift": self.shift.tolist(), "scale": self.scale.tolist()}

    @classmethod
    def from_state(cls, s):
        return cls(s["fill"], s["shift"], s["scale"])


# ---------------------------------------------------------------------------
# augmentation and the torch dataset
# ---------------------------------------------------------------------------

def augment(x: np.ndarray, rng: np.random.Generator, spec: dict) -> np.ndarray:
    """Random crop-and-stretch, amplitude scale, Gaussian noise, circular shift, zero mask.

    ``crop``: up to that many samples cut at each end, then linear
    re-interpolation to the original length (the LVH external-tuning
    augmentation); ``scale``: one factor from U(low, high); ``noise``: per-lead
    Gaussian noise with SD ~ U(0, noise); ``shift``: roll by up to that fraction
    of the length; ``mask``: probability of zeroing one span of 2-10 % of the
    length across all leads.
    """
    x = np.array(x, dtype=np.float32, copy=True)
    n = x.shape[-1]
    if spec.get("crop"):
        a, b = rng.integers(0, spec["crop"] + 1, size=2)
        if a + b < n - 2:
            src = np.linspace(a, n - 1 - b, n)
            i0 = np.floor(src).astype(np.int64)
            i1 = np.minimum(i0 + 1, n - 1)
            w = (src - i0).astype(np.float32)
            x = x[:, i0] * (1 - w) + x[:, i1] * w
    if spec.get("scale"):
        lo, hi = spec["scale"]
        x *= np.float32(rng.uniform(lo, hi))
    if spec.get("noise"):
        sd = rng.uniform(0, spec["noise"], size=(x.shape[0], 1))
        x += (rng.standard_normal(x.shape) * sd).astype(np.float32)
    if spec.get("shift"):
        k = int(spec["shift"] * n)
        if k:
            x = np.roll(x, int(rng.integers(-k, k + 1)), axis=-1)
    if spec.get("mask") and rng.random() < spec["mask"]:
        span = int(n * rng.uniform(0.02, 0.1))
        start = int(rng.integers(0, max(n - span, 1)))
        x[:, start:start + span] = 0
    return np.ascontiguousarray(x, dtype=np.float32)


def _torch_dataset_base():
    import torch
    return torch.utils.data.Dataset


class SegmentDataset(_torch_dataset_base()):
    """Items ``(x, y, clinical, k)`` for the segments ``seg_idx`` of a store.

    ``y`` holds the (scaled) targets of the segment's record with NaN where
    missing; ``k`` is the position in ``seg_idx``. Augmentation draws come
    from ``default_rng([epoch_seed, segment])``: reproducible, and independent
    of the number of workers and of their scheduling.
    """

    def __init__(self, store: Store, seg_idx, targets, clinical, aug: dict | None = None):
        self.store = store
        self.seg_idx = np.asarray(seg_idx, np.int64)
        self.targets = targets
        self.clinical = clinical
        self.aug = aug if aug and any(aug.get(k) for k in ("crop", "scale", "noise", "shift", "mask")) else None
        self.epoch_seed = 0

    def __len__(self):
        return len(self.seg_idx)

    def __getitem__(self, k):
        import torch
        i = int(self.seg_idx[k])
        r = int(self.store.seg_record[i])
        x = np.asarray(self.store.arrays.array(i), dtype=np.float32)
        if self.aug is not None:
            x = augment(x, np.random.default_rng([self.epoch_seed, i]), self.aug)
        return (torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(self.targets[r]),
                torch.from_numpy(self.clinical[r]), k)


class RecordDataset(_torch_dataset_base()):
    """Items ``(x, y, clinical, k)`` with ``x`` all segments of record ``records[k]``: (S, leads, samples).

    Used for record-level training (``data.aggregate: attention``). Segments
    keep their order in the store; each is augmented with
    ``default_rng([epoch_seed, segment])``, exactly as :class:`SegmentDataset`
    would. With ``max_segments`` (training only), a record with more segments
    keeps a random subset of that size, drawn from
    ``default_rng([epoch_seed, record, 1])`` and kept in store order. Records
    without any segment are left out (``self.records`` lists those kept).
    """

    def __init__(self, store: Store, records, targets, clinical, aug: dict | None = None,
                 max_segments: int | None = None):
        self.store = store
        by_rec: dict = {}
        for i, r in enumerate(np.asarray(store.seg_record, np.int64)):
            by_rec.setdefault(int(r), []).append(i)
        records = np.asarray(records, np.int64)
        self.records = np.asarray([r for r in records if int(r) in by_rec], np.int64)
        self.segs = [np.asarray(by_rec[int(r)], np.int64) for r in self.records]
        self.targets = targets
        self.clinical = clinical
        self.aug = aug if aug and any(aug.get(k) for k in ("crop", "scale", "noise", "shift", "mask")) else None
        self.max_segments = max_segments
        self.epoch_seed = 0

    def __len__(self):
        return len(self.records)

    @property
    def n_segments(self) -> np.ndarray:
        return np.asarray([len(s) for s in self.segs], np.int64)

    def __getitem__(self, k):
        import torch
        r = int(self.records[k])
        seg = self.segs[k]
        if self.max_segments and len(seg) > self.max_segments:
            pick = np.random.default_rng([self.epoch_seed, r, 1]).choice(len(seg), self.max_segments,
                                                                          replace=False)
            seg = seg[np.sort(pick)]
        xs = []
        for i in seg:
            x = np.asarray(self.store.arrays.array(int(i)), dtype=np.float32)
            if self.aug is not None:
                x = augment(x, np.random.default_rng([self.epoch_seed, int(i)]), self.aug)
            xs.append(x)
        return (torch.from_numpy(np.ascontiguousarray(np.stack(xs))), torch.from_numpy(self.targets[r]),
                torch.from_numpy(self.clinical[r]), k)


def collate_records(batch):
    """Pad records to the batch's largest segment count: ``(x, mask, y, clinical, k)``.

    ``x`` is (B, S_max, leads, samples) with zeros in the padding, ``mask``
    (B, S_max) bool, True for real segments.
    """
    import torch
    n = [int(b[0].shape[0]) for b in batch]
    s_max = max(n)
    x0 = batch[0][0]
    x = x0.new_zeros((len(batch), s_max) + tuple(x0.shape[1:]))
    mask = torch.zeros((len(batch), s_max), dtype=torch.bool)
    for j, b in enumerate(batch):
        x[j, :n[j]] = b[0]
        mask[j, :n[j]] = True
    y = torch.stack([b[1] for b in batch])
    c = torch.stack([b[2] for b in batch])
    k = torch.as_tensor([int(b[3]) for b in batch], dtype=torch.int64)
    return x, mask, y, c, k


# ---------------------------------------------------------------------------
# helpers for evaluation of a dataset with a checkpoint
# ---------------------------------------------------------------------------

class ECGDatasetRows:
    """Segments of a preprocessed dataset grouped by record (for ``ecgcore evaluate``)."""

    def __init__(self, root):
        from ecgcore.data import ECGDataset
        if not os.path.isdir(root):
            raise ConfigError("not a dataset directory", root)
        self.ds = ECGDataset(root)
        try:
            self.preset = self.ds.summary().get("preset")
        except (OSError, ValueError):
            raise ConfigError("no readable summary.json (not written by 'ecgcore preprocess'?)", root) from None
        self._by = {}
        for i, r in enumerate(self.ds.record_ids):
            self._by.setdefault(r, []).append(i)
        self.record_ids = list(self._by)

    def fingerprint(self, rid) -> int:
        """CRC-32 of the record's first segment as stored (float32 bytes): which record an id
        names. Two cohorts that number their records alike (``1``, ``2``, ... or ``r01``) share
        ids but not signals, so an id alone cannot say that a record was trained on."""
        import zlib
        j = min(self._by[rid], key=lambda i: self.ds.segment_index[i])
        return zlib.crc32(np.ascontiguousarray(self.ds.array(j), dtype=np.float32).tobytes())

    def segments(self, rid):
        ix = sorted(self._by[rid], key=lambda j: self.ds.segment_index[j])
        x = np.stack([self.ds.array(i) for i in ix])
        from .images import is_image_preset, normalize_chw
        return normalize_chw(x) if is_image_preset(self.preset) else x


def read_record_labels(path, id_col, numeric_cols, patient_col=None) -> dict:
    """record id -> (list of floats, patient id or None) from a labels CSV."""
    table = _read_labels(path, id_col, numeric_cols, [patient_col])
    return {k: (v[0], v[1].get(patient_col) if patient_col else None) for k, v in table.items()}

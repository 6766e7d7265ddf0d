"""Inference with a training checkpoint: rebuild, run segments, aggregate per record, decode outputs.

Used by ``ecgcore evaluate`` / ``ecgcore predict`` and by the engine for
validation. Segment outputs are aggregated per record (mean or max of the
de-standardised regression outputs and of the probabilities); regression
outputs are mapped back to target units with the stored training statistics.

With ``data.aggregate: attention`` the aggregation is part of the network:
:func:`attach_segment_pool` gives the model an attention
:class:`~ecgcore.models.heads.SegmentAggregator` as ``model.segment_pool``
(its weights are in the checkpoint's ``model_state`` under
``segment_pool.*``), and :func:`record_forward` runs the backbone on every
real segment of a padded batch of records, pools the segment features of
each record with attention and applies the head once per record.
"""

from __future__ import annotations

import numpy as np
import torch

from ecgcore.errors import CheckpointError, ConfigError, PreprocessError

__all__ = ["output_layout", "as_matrix", "run_segments", "decode", "aggregate_records",
           "load_for_inference", "check_device", "predict_records", "predict_files", "clinical_rows",
           "attach_segment_pool",
           "record_forward", "RecordNet", "run_records", "is_record_level"]


def output_layout(tasks) -> list[tuple[str, int, int]]:
    """(task name, first output column, number of columns) in output order."""
    out, start = [], 0
    for t in tasks:
        n = t["n_classes"] if t["type"] == "multiclass" else 1
        out.append((t["name"], start, n))
        start += n
    return out


def as_matrix(out, tasks) -> torch.Tensor:
    """Model output as one (batch, n_outputs) tensor (dict heads are concatenated in task order)."""
    if isinstance(out, dict):
        try:
            return torch.cat([out[t["name"]] for t in tasks], dim=1)
        except KeyError as exc:
            raise ConfigError(f"the model's multitask head has no output named {exc.args[0]!r}") from None
    if out.ndim == 1:
        out = out[:, None]
    return out


def run_segments(model, loader, device, tasks, amp=False) -> tuple[np.ndarray, np.ndarray]:
    """Raw outputs (n, n_outputs) and item positions for every batch of ``loader``, model in eval mode."""
    model.eval()
    outs, pos = [], []
    with torch.no_grad():
        for batch in loader:
            x, _, c, k = batch
            x = x.to(device, non_blocking=True)
            c = c.to(device) if c.shape[-1] else None
            with torch.autocast("cuda", enabled=bool(amp) and x.device.type == "cuda"):
                o = model(x, clinical=c) if c is not None else model(x)
            outs.append(as_matrix(o, tasks).float().cpu().numpy())
            pos.append(np.asarray(k))
    if not outs:
        return np.zeros((0, 0), np.float32), np.zeros(0, np.int64)
    return np.concatenate(outs), np.concatenate(pos)


# ---------------------------------------------------------------------------
# record-level models (attention pooling of segment features)
# ---------------------------------------------------------------------------

def attach_segment_pool(model, spec: dict | None = None):
    """Give ``model`` an attention pool of segment features as ``model.segment_pool``; returns it.

    ``spec`` is the config's ``data.attention`` (``hidden``, ``gated``). The
    pool's width is the model's ``num_features`` (the pooled vector the head
    reads). Image models are refused: one page is one record.
    """
    from ecgcore.models.heads import SegmentAggregator
    spec = spec or {}
    c = getattr(model, "input_contract", {}) or {}
    if "channels" in c:
        raise ConfigError(f"data.aggregate: attention pools the segments of a signal record; model "
                          f"{getattr(model, 'model_name', '')!r} reads one image per record (use mean)")
    width = getattr(model, "num_features", None)
    if not width:
        raise ConfigError(f"data.aggregate: attention needs the model's feature width (num_features); "
                          f"{type(model).__name__} has none")
    model.segment_pool = SegmentAggregator("attention", int(width), int(spec.get("hidden", 128)),
                                           bool(spec.get("gated", False)))
    return model


def is_record_level(ck_or_cfg) -> bool:
    """True when a checkpoint (or a validated config) aggregates segments by attention."""
    cfg = ck_or_cfg.get("config", ck_or_cfg) if isinstance(ck_or_cfg, dict) else {}
    return ((cfg.get("data") or {}).get("aggregate") == "attention")


def record_forward(model, x, mask, clinical=None):
    """Record-level outputs of a padded batch: backbone per real segment, attention pool, head.

    Parameters
    ----------
    model : ECGModel with ``segment_pool`` (see :func:`attach_segment_pool`)
    x : Tensor (batch, segments, leads, samples)
        Padded records; padding positions are never run through the backbone.
    mask : Tensor (batch, segments) bool
        True for real segments.
    clinical : Tensor (batch, n_clinical), optional

    Returns
    -------
    The head's output for the batch of records (tensor or dict).
    """
    pool = getattr(model, "segment_pool", None)
    if pool is None:
        raise ConfigError("this model has no segment_pool; attach one with attach_segment_pool() "
                          "(checkpoints trained with data.aggregate: attention get it from load_for_inference)")
    if x.ndim < 3 or mask.shape != x.shape[:2]:
        raise ConfigError(f"record_forward: x must be (batch, segments, ...) with a (batch, segments) "
                          f"mask; got x {tuple(x.shape)} and mask {tuple(mask.shape)}")
    mask = mask.to(device=x.device, dtype=torch.bool)
    real = x[mask]                      # (n_real, leads, samples): padding never reaches BatchNorm
    if getattr(model, "check_inputs", False):
        model.validate_input(real)
    z = model.pool(model.forward_features(real))
    zs = z.new_zeros(mask.shape + tuple(z.shape[1:]))
    zs[mask] = z
    return model._apply_head(pool(zs, mask), clinical)


class RecordNet(torch.nn.Module):
    """``forward(x, mask, clinical=None)`` = :func:`record_forward` of the wrapped model (DDP wraps this)."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x, mask, clinical=None):
        return record_forward(self.model, x, mask, clinical)


def run_records(model, loader, device, tasks, amp=False) -> tuple[np.ndarray, np.ndarray]:
    """Raw record outputs (n, n_outputs) and item positions for a loader of padded records (eval mode)."""
    model.eval()
    outs, pos = [], []
    with torch.no_grad():
        for x, mask, _, c, k in loader:
            x = x.to(device, non_blocking=True)
            c = c.to(device) if c.shape[-1] else None
            with torch.autocast("cuda", enabled=bool(amp) and x.device.type == "cuda"):
                o = record_forward(model, x, mask.to(device), c)
            outs.append(as_matrix(o, tasks).float().cpu().numpy())
            pos.append(np.asarray(k))
    if not outs:
        return np.zeros((0, 0), np.float32), np.zeros(0, np.int64)
    return np.concatenate(outs), np.concatenate(pos)


def _record_batches(n_segments, max_segments_per_batch):
    """Consecutive groups of records with at most that many segments in all (at least one record)."""
    start, total = 0, 0
    for i, n in enumerate(n_segments):
        if i > start and total + n > max_segments_per_batch:
            yield start, i
            start, total = i, 0
        total += n
    if start < len(n_segments):
        yield start, len(n_segments)


def decode(raw: np.ndarray, tasks, scaler_state) -> dict:
    """Per-task predictions per row: target units (regression), probabilities (binary, multiclass)."""
    out = {}
    mean, std = np.asarray(scaler_state["mean"]), np.asarray(scaler_state["std"])
    for j, (name, start, n) in enumerate(output_layout(tasks)):
        t = tasks[j]
        v = raw[:, start:start + n].astype(np.float64)
        if t["type"] == "regression":
            out[name] = v[:, 0] * std[j] + mean[j]
        elif t["type"] == "binary":
            out[name] = 1.0 / (1.0 + np.exp(-v[:, 0]))
        else:
            e = np.exp(v - v.max(1, keepdims=True))
            out[name] = e / e.sum(1, keepdims=True)
    return out


def aggregate_records(pred: dict, rows: np.ndarray, n_records: int, mode: str = "mean") -> dict:
    """Segment predictions to record predictions (``rows[i]`` = record of segment i); NaN where none."""
    if mode not in ("mean", "max"):
        raise ConfigError(f"aggregate_records: mode must be 'mean' or 'max', not {mode!r} (attention "
                          f"pools segment features inside the model: use predict_records)")
    out = {}
    rows = np.asarray(rows, np.int64)
    counts = np.bincount(rows, minlength=n_records).astype(np.float64)
    for name, v in pred.items():
        shape = (n_records,) + v.shape[1:]
        if mode == "mean":
            acc = np.zeros(shape)
            np.add.at(acc, rows, v)
            with np.errstate(invalid="ignore", divide="ignore"):
                acc = acc / counts.reshape((-1,) + (1,) * (v.ndim - 1))
        else:
            acc = np.full(shape, -np.inf)
            np.maximum.at(acc, rows, v)
            acc[counts == 0] = np.nan
        out[name] = acc
    return out


def check_device(device) -> torch.device:
    """``device`` as a torch device; ConfigError (naming it) when torch does not know it or it is absent."""
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ConfigError(f"device {device!r} is not a torch device ('cpu', 'cuda', 'cuda:1'): {exc}") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"device {device!r} requested but no CUDA device is available")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ConfigError(f"device {device!r}: only {torch.cuda.device_count()} CUDA device(s)")
    if dev.type != "cpu":
        try:   # mps, xpu ...: the only sure test is to put something there
            torch.empty(0, device=dev)
        except (RuntimeError, AssertionError, NotImplementedError) as exc:
            first = str(exc).split(". ")[0].strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ConfigError(f"device {device!r} is not available in this torch build ({first})") from None
    return dev


def load_for_inference(path, device="cpu"):
    """(model in eval mode, checkpoint dict) from a ``best.pt``/``last.pt`` file or a run directory."""
    from ecgcore import models
    from .checkpointing import load_checkpoint
    check_device(device)
    ck = load_checkpoint(path)
    spec = ck["model_spec"]
    try:
        model = models.create(spec["name"], heads=spec["heads"], **spec["config"])
        if is_record_level(ck):
            attach_segment_pool(model, ck["config"]["data"].get("attention"))
        model.load_state_dict(ck["model_state"], strict=True)
    except (RuntimeError, ConfigError) as exc:
        raise CheckpointError(f"weights do not fit model {spec['name']!r}: {exc}", str(path)) from None
    model.to(device).eval()
    return model, ck


def predict_records(model, ck, segments_per_record, clinical=None, batch_size=64, device="cpu"):
    """Predictions for a list of (n_segments, leads, samples) arrays, one per record.

    Returns a dict task -> array over records (aggregated with the
    checkpoint's ``data.aggregate`` rule). With ``attention`` the records are
    run whole: batches of consecutive records holding at most
    ``batch_size`` segments (always at least one record), padded and masked.
    """
    tasks = ck["config"]["tasks"]
    n_clin = len(ck.get("clinical_cols") or [])
    if n_clin and clinical is None:
        raise ConfigError(f"this model fuses {n_clin} clinical variables "
                          f"({', '.join(ck['clinical_cols'])}); supply them")
    xs = [np.asarray(s, np.float32) for s in segments_per_record]
    rows = np.concatenate([np.full(len(s), r, np.int64) for r, s in enumerate(xs)]) if xs else np.zeros(0, np.int64)
    if not xs:
        return {t["name"]: np.zeros(0) for t in tasks}
    X = np.concatenate(xs)
    C = None
    if n_clin:
        from .data import ClinicalScaler
        cs = ClinicalScaler.from_state(ck["clinical_scaler"])
        C = cs.transform(np.asarray(clinical, np.float64))[rows]
    raw = []
    model.eval()
    if is_record_level(ck):
        Cr = cs.transform(np.asarray(clinical, np.float64)) if n_clin else None
        have = [r for r, s in enumerate(xs) if len(s)]   # a record without segments stays NaN
        with torch.no_grad():
            for a, b in _record_batches([len(xs[r]) for r in have], batch_size):
                recs = have[a:b]
                n = [len(xs[r]) for r in recs]
                xb = np.zeros((len(recs), max(n)) + xs[recs[0]].shape[1:], np.float32)
                mb = np.zeros((len(recs), max(n)), bool)
                for j, r in enumerate(recs):
                    xb[j, :n[j]], mb[j, :n[j]] = xs[r], True
                cb = torch.from_numpy(Cr[recs]).to(device) if Cr is not None else None
                o = record_forward(model, torch.from_numpy(xb).to(device), torch.from_numpy(mb).to(device), cb)
                raw.append(as_matrix(o, tasks).float().cpu().numpy())
        n_out = sum(k for _, _, k in output_layout(tasks))
        full = np.full((len(xs), n_out), np.nan, np.float32)
        if raw:
            full[have] = np.concatenate(raw)
        return decode(full, tasks, ck["target_scaler"])
    with torch.no_grad():
        for s in range(0, len(X), batch_size):
            xb = torch.from_numpy(X[s:s + batch_size]).to(device)
            o = model(xb, clinical=torch.from_numpy(C[s:s + batch_size]).to(device)) if C is not None else model(xb)
            raw.append(as_matrix(o, tasks).float().cpu().numpy())
    pred = decode(np.concatenate(raw), tasks, ck["target_scaler"])
    return aggregate_records(pred, rows, len(xs), ck["config"]["data"]["aggregate"])


def clinical_rows(paths, table_path, columns, id_col: str = "record_id"):
    """Each input's clinical variables from a CSV, read as training reads its labels.

    An input's row is the one whose ``id_col`` is the input's record id as
    ``ecgcore preprocess`` names it (its path relative to the inputs' common folder,
    without the format suffix), else its file name without the suffix. Empty cells
    are NaN (imputed by the checkpoint's clinical scaler, as in training).

    Returns
    -------
    values : dict
        input path -> float64 array over ``columns``.
    missing : dict
        input path -> message, for inputs without a row.
    """
    from ecgcore.pipeline.discover import items_from_paths, record_id_for
    from .data import _read_labels
    table = _read_labels(table_path, id_col, list(columns), [])
    values, missing = {}, {}
    for p, item in zip(paths, items_from_paths(paths)):
        keys = list(dict.fromkeys((item.record_id, record_id_for(p, None))))
        hit = next((table[k] for k in keys if k in table), None)
        if hit is None:
            missing[p] = (f"no row with {id_col} {' or '.join(repr(k) for k in keys)} in the clinical "
                          f"table {table_path}")
        else:
            values[p] = np.asarray(hit[0], np.float64)
    return values, missing


def predict_files(paths, checkpoint, device="cpu", batch_size=64, chunk_records: int = 256,
                  clinical=None, id_col: str = "record_id"):
    """Read raw ECG files (any format), preprocess with the checkpoint's preset, predict.

    Files are read and predicted ``chunk_records`` at a time, so memory holds
    one chunk of preprocessed segments, not the whole input list (100,000
    records of a 12 x 5000 preset would be 24 GB).

    A model that fuses clinical variables takes them from ``clinical``, a CSV
    with one row per record (:func:`clinical_rows`; the checkpoint's clinical
    columns, ``id_col`` naming the record).

    Returns ``(rows, failures)``: rows are dicts (``path``, ``n_segments``,
    one column per task output), in input order; failures are
    ``(path, message)`` pairs.
    """
    import ecgcore
    from ecgcore.presets import preprocess
    if chunk_records < 1:
        raise ConfigError(f"chunk_records must be >= 1, got {chunk_records}")
    model, ck = load_for_inference(checkpoint, device)
    preset = ck["preset"]
    cols = list(ck.get("clinical_cols") or [])
    if cols and clinical is None:
        raise ConfigError(f"this model fuses {len(cols)} clinical variables ({', '.join(cols)}): give "
                          f"them in a CSV, one row per record (ecgcore predict --clinical CSV)")
    if clinical is not None and not cols:
        raise ConfigError("this model fuses no clinical variables: leave out the clinical table")
    values, missing = clinical_rows(paths, clinical, cols, id_col) if cols else ({}, {})
    rows, failures = [], []
    segs, ok_paths = [], []

    def flush():
        if not segs:
            return
        clin = np.stack([values[p] for p in ok_paths]) if cols else None
        pred = predict_records(model, ck, segs, clinical=clin, batch_size=batch_size, device=device)
        for i, p in enumerate(ok_paths):
            rows.append(_file_row(p, len(segs[i]), {t["name"]: pred[t["name"]][i] for t in ck["config"]["tasks"]},
                                  ck))
        segs.clear()
        ok_paths.clear()

    for p in paths:
        if p in missing:
            failures.append((p, missing[p]))
            continue
        try:
            rec = ecgcore.read(p)
            x = preprocess(rec, preset)
            if len(x) == 0:
                raise PreprocessError("record gives no complete segment for this preset", p)
            segs.append(x)
            ok_paths.append(p)
        except (ValueError, OSError) as exc:  # ecgcore errors are ValueErrors
            failures.append((p, str(exc)))
        if len(segs) >= chunk_records:
            flush()
    flush()
    return rows, failures


def _file_row(path, n_segments, values, ck) -> dict:
    """One CSV row of ``ecgcore predict``: path, segments, then the columns of every task."""
    row = {"path": path, "n_segments": n_segments}
    for t in ck["config"]["tasks"]:
        v = values[t["name"]]
        if t["type"] == "multiclass":
            for k, pk in enumerate(v):
                row[f"{t['name']}_p{k}"] = float(pk)
        elif t["type"] == "binary":
            row[f"{t['name']}_prob"] = float(v)
            thr = (ck.get("thresholds") or {}).get(t["name"])
            if thr is not None:
                row[f"{t['name']}_pred"] = int(v >= thr)
        else:
            row[t["name"]] = float(v)
    return row

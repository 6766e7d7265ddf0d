"""Declarative preprocessing presets: a Record (or a batch of same-shape arrays) to model input.

A preset is a small dict (or YAML file) naming the leads and an ordered list
of steps, each a kernel of :mod:`ecgcore.signal` with its parameters::

    {"name": "ecgfm", "leads": STANDARD_12,
     "steps": [{"op": "trim_zero_padding"},
               {"op": "resample", "fs": 500, "method": "linear"},
               {"op": "zscore", "scope": "lead", "constant": "zero"},
               {"op": "segment", "length": 2500}]}

:func:`preprocess` turns one record into a float32 ``(n_segments, leads,
samples)`` array; :func:`preprocess_batch` does the same for a stack of
records that share a shape, calling each kernel once on the whole
``(n_records, leads, n)`` array, which is what makes biobank-scale runs fast.

Presets are data, not code: users add their own with :func:`register_preset`
(a dict or a YAML path), and every preset is validated up front, so a typo
in an op or a key is a :class:`~ecgcore.ConfigError` naming it, never a
failure half-way through a million records.

Built-in presets and where their parameters come from (the reference shelf's
fact sheets):

``ecgfm``
    fairseq-signals ``scripts/preprocess/ecg`` (facts/ecgfm.md §1): strip
    CODE-15% zero padding, linear resampling to 500 Hz with pinned end points,
    per-record per-lead z-score (population std) with constant leads set to 0,
    non-overlapping 2500-sample windows, tail dropped. Reproduces the official
    ``preprocessed/`` and ``segmented/`` files (tests/test_presets.py).
``ecgfounder``
    ECGFounder ``dataset.py`` (facts/ecgfounder_ccta.md §1.4 variant 1):
    NaN -> 0, 50 Hz notch (Q 30), 0.67-40 Hz 4th-order Butterworth band-pass,
    running-median baseline of int(0.4 fs)+1 samples, z-score over the whole
    12 x 5000 array with ``std + 1e-8``. The band-pass keeps the published
    8th-order (b, a) ``filtfilt`` semantics (``form: ba``: padding 27, lfilter_zi
    initial conditions) for parity; a ``form: ba`` Butterworth step is computed
    as the design's second-order sections when the rounded (b, a) realises the
    design (``filters.butter_stage(form="ba_sos")``), which is the same filter
    without the single 8th-order recursion's rounding noise and lets float32
    records take the mixed-precision kernel. One deliberate difference,
    documented in the preset's ``notes``: non-500 Hz input is resampled
    linearly to 500 Hz then cropped/zero-padded to 5000 (upstream's resample
    path is broken, facts §1.4).
``ecgfounder_ptbxl_eval``
    ``ptbxl_eval.py`` (variant 2): no filtering, whole-array z-score, then the
    linear resample (a no-op for 10 s at 500 Hz).
``ccta``
    the CCTA fine-tuning repository (variant 3): lead-wise z-score
    (``std + 1e-8``), no filtering, 12 x 5000.
``lvh``
    one median beat, 8 leads (I, II, V1-V6) x 400 samples at 500 Hz in mV
    (facts/lvh.md §1). The beat extraction of the published work is
    unreleased; ecgcore's own is documented in :func:`_median_beat_one`.
"""

from __future__ import annotations

import copy
import importlib
import math
import os
import pickle
import threading
from typing import Mapping, Sequence

import numpy as np

from .errors import ConfigError, PreprocessError
from .record import STANDARD_12, STANDARD_8, Record, normalize_leads

__all__ = ["preprocess", "preprocess_batch", "list_presets", "get_preset", "register_preset",
           "validate_preset", "output_shape", "describe_preset", "BUILTIN_PRESETS"]

_REQUIRED = object()

# op -> {parameter: default}; _REQUIRED marks mandatory parameters. One place
# per fact: this table is the whole grammar of a preset step.
_OPS: dict[str, dict] = {
    "trim_zero_padding": {},
    "nan_to_num": {"value": 0.0},
    "scale": {"factor": _REQUIRED},
    "resample": {"fs": _REQUIRED, "method": "poly"},
    "notch": {"freq": 50.0, "q": 30.0, "zero_phase": True},
    "bandpass": {"low": _REQUIRED, "high": _REQUIRED, "order": 4, "zero_phase": True,
                 "form": "sos"},
    "highpass": {"cutoff": _REQUIRED, "order": 4, "zero_phase": True, "form": "sos"},
    "lowpass": {"cutoff": _REQUIRED, "order": 4, "zero_phase": True, "form": "sos"},
    "median_baseline": {"window_s": _REQUIRED},
    "zscore": {"scope": "lead", "constant": "zero", "eps": 0.0},
    "crop_or_pad": {"length": _REQUIRED},
    "segment": {"length": _REQUIRED, "stride": None, "drop_last": True},
    "median_beats": {"source": "computed", "length": 400, "before": 150, "min_beats": 2},
}
# Ops that change a record's length in a record-dependent way run per record
# before the batched steps, so they may only open the step list.
_PER_RECORD_OPS = {"trim_zero_padding"}
_CHOICES = {
    ("resample", "method"): ("poly", "linear", "fft"),
    ("zscore", "scope"): ("lead", "record"),
    ("zscore", "constant"): ("zero", "nan", "keep"),
    ("median_beats", "source"): ("computed", "device", "auto"),
    ("bandpass", "form"): ("sos", "ba"),
    ("highpass", "form"): ("sos", "ba"),
    ("lowpass", "form"): ("sos", "ba"),
}
_TOP_KEYS = {"name", "description", "reference", "leads", "missing_leads", "derive_leads",
             "steps", "input_contract", "notes", "output_dtype"}

_NOTES_ECGFOUNDER = (
    "The band-pass is the published (b, a) filter with filtfilt's padding (27 samples) and "
    "initial conditions (form: ba), evaluated as the design's second-order sections: the same "
    "filter, within ~1e-6 of the range of the float64 (b, a) recursion, which is that "
    "recursion's own rounding noise (form: sos, sosfiltfilt's padding, is the choice for new "
    "work; it differs mainly near the edges). Non-500 Hz input is "
    "resampled linearly to 500 Hz and cropped or zero-padded to 5000 before filtering (upstream's "
    "resample path is broken; this is ecgcore's choice). z-score uses std + 1e-8 over the whole "
    "12 x 5000 array, as published.")

BUILTIN_PRESETS: dict[str, dict] = {
    "ecgfm": {
        "name": "ecgfm",
        "description": "ECG-FM (fairseq-signals): linear 500 Hz, per-lead z-score, 5 s windows",
        "reference": "facts/ecgfm.md §1; fairseq-signals scripts/preprocess/ecg @ 6b9e137",
        "leads": list(STANDARD_12),
        "missing_leads": "zero",
        "derive_leads": True,
        "steps": [
            {"op": "trim_zero_padding"},
            {"op": "resample", "fs": 500, "method": "linear"},
            {"op": "zscore", "scope": "lead", "constant": "zero"},
            {"op": "segment", "length": 2500},
        ],
        "input_contract": {"fs": 500, "length": 2500, "units": "per-lead z-score",
                           "dtype": "float32", "model": "ECG-FM wav2vec2_cmsc"},
        "notes": "Leading/trailing columns that are exactly 0 in all leads are stripped first "
                 "(CODE-15% padding); an all-zero record is left as is.",
    },
    "ecgfounder": {
        "name": "ecgfounder",
        "description": "ECGFounder official chain: notch 50, band-pass 0.67-40, median baseline, "
                       "whole-array z-score, 12 x 5000",
        "reference": "facts/ecgfounder_ccta.md §1.4 variant 1 (dataset.py + util.filter_bandpass)",
        "leads": list(STANDARD_12),
        "missing_leads": "zero",
        "derive_leads": True,
        "steps": [
            {"op": "nan_to_num", "value": 0.0},
            {"op": "resample", "fs": 500, "method": "linear"},
            {"op": "crop_or_pad", "length": 5000},
            {"op": "notch", "freq": 50.0, "q": 30.0},
            {"op": "bandpass", "low": 0.67, "high": 40.0, "order": 4, "form": "ba"},
            {"op": "median_baseline", "window_s": 0.4},
            {"op": "zscore", "scope": "record", "constant": "zero", "eps": 1e-8},
            {"op": "segment", "length": 5000},
        ],
        "input_contract": {"fs": 500, "length": 5000, "units": "whole-array z-score",
                           "dtype": "float32", "model": "ECGFounder Net1D 12-lead"},
        "notes": _NOTES_ECGFOUNDER,
    },
    "ecgfounder_ptbxl_eval": {
        "name": "ecgfounder_ptbxl_eval",
        "description": "ECGFounder ptbxl_eval.py: no filtering, whole-array z-score, 12 x 5000",
        "reference": "facts/ecgfounder_ccta.md §1.4 variant 2",
        "leads": list(STANDARD_12),
        "missing_leads": "zero",
        "derive_leads": True,
        "steps": [
            {"op": "nan_to_num", "value": 0.0},
            {"op": "zscore", "scope": "record", "constant": "zero", "eps": 1e-8},
            {"op": "resample", "fs": 500, "method": "linear"},
            {"op": "crop_or_pad", "length": 5000},
            {"op": "segment", "length": 5000},
        ],
        "input_contract": {"fs": 500, "length": 5000, "units": "whole-array z-score",
                           "dtype": "float32", "model": "ECGFounder Net1D 12-lead"},
        "notes": "ptbxl_eval.py z-scores before its resample_unequal, which treats the target "
                 "rate as a sample count; for 10 s records that is a linear resample to 500 Hz.",
    },
    "ccta": {
        "name": "ccta",
        "description": "ECGFounder CCTA fine-tuning: lead-wise z-score, no filter, 12 x 5000",
        "reference": "facts/ecgfounder_ccta.md §1.4 variant 3, §2.2",
        "leads": list(STANDARD_12),
        "missing_leads": "zero",
        "derive_leads": True,
        "steps": [
            {"op": "nan_to_num", "value": 0.0},
            {"op": "resample", "fs": 500, "method": "linear"},
            {"op": "crop_or_pad", "length": 5000},
            {"op": "zscore", "scope": "lead", "constant": "zero", "eps": 1e-8},
            {"op": "segment", "length": 5000},
        ],
        "input_contract": {"fs": 500, "length": 5000, "units": "per-lead z-score",
                           "dtype": "float32", "model": "ECGFounder Net1D (use_bn=True), 4 vessels"},
        "notes": "The CCTA README says 'filtering' but its code filters nothing; this follows "
                 "the code. Records that fail to load are reported, never replaced by zeros.",
    },
    "lvh": {
        "name": "lvh",
        "description": "LVH/LV mass: one median beat, 8 leads x 400 samples at 500 Hz, mV",
        "reference": "facts/lvh.md §1 (Naderi, Kaplan et al. 2025)",
        "leads": list(STANDARD_8),
        "missing_leads": "zero",
        "derive_leads": True,
        "steps": [
            {"op": "nan_to_num", "value": 0.0},
            {"op": "resample", "fs": 500, "method": "poly"},
            {"op": "median_beats", "source": "auto", "length": 400, "before": 150,
             "min_beats": 2},
        ],
        "input_contract": {"fs": 500, "length": 400, "units": "mV", "dtype": "float32",
                           "model": "LVH FCN / Soto-2022 ResNet (8 leads)"},
        "notes": "The published median beats come from an unreleased pipeline; ecgcore's are its "
                 "own (ecgcore.median_beats: R at sample 150 of 400, 0.3 s before / "
                 "0.5 s after, 0.5 Hz high-pass) and no parity is claimed. source=auto uses "
                 "the device's median beat when the file has one (MUSE, CardioSoft).",
    },
}

_REGISTRY: dict[str, dict] = {}


# ---------------------------------------------------------------------------
# registry and validation
# ---------------------------------------------------------------------------

def _load_yaml(path: str) -> dict:
    from ._yamlio import load_mapping
    data = load_mapping(path, "preset file")
    if not data:
        raise ConfigError("a preset file must hold a mapping with 'name' and 'steps'", path)
    return data


def validate_preset(preset: Mapping, source: str | None = None) -> dict:
    """Check a preset and return a normalised deep copy with every default filled in.

    Raises
    ------
    ConfigError
        Naming the preset, the step and the offending key: unknown top-level
        keys, unknown ops, unknown or missing step parameters, bad choices,
        lengths and filter orders that are not positive integers, ``eps`` /
        ``value`` that are not finite numbers, flags that are not booleans,
        per-record ops out of place.
    """
    if not isinstance(preset, Mapping):
        raise ConfigError(f"a preset must be a mapping, got {type(preset).__name__}", source)
    name = preset.get("name")
    where = f"preset {name!r}"
    if not isinstance(name, str) or not name:
        raise ConfigError("preset has no 'name' (a non-empty string)", source)
    unknown = sorted(set(preset) - _TOP_KEYS)
    if unknown:
        raise ConfigError(f"{where}: unknown key {unknown[0]!r} (allowed: "
                          f"{', '.join(sorted(_TOP_KEYS))})", source)
    out = copy.deepcopy(dict(preset))
    out.setdefault("description", "")
    out.setdefault("reference", "")
    out.setdefault("notes", "")
    out.setdefault("input_contract", {})
    out.setdefault("output_dtype", "float32")
    if out["output_dtype"] not in ("float32", "float16"):
        raise ConfigError(f"{where}: 'output_dtype' must be float32 or float16", source)
    leads = out.get("leads", list(STANDARD_12))
    if isinstance(leads, str) or not isinstance(leads, Sequence) or not leads:
        raise ConfigError(f"{where}: 'leads' must be a non-empty list of lead names", source)
    out["leads"] = list(normalize_leads(leads))
    if len(set(out["leads"])) != len(out["leads"]):
        raise ConfigError(f"{where}: 'leads' has duplicates", source)
    out.setdefault("missing_leads", "zero")
    if out["missing_leads"] not in ("zero", "nan", "raise"):
        raise ConfigError(f"{where}: 'missing_leads' must be zero, nan or raise, "
                          f"got {out['missing_leads']!r}", source)
    out["derive_leads"] = bool(out.get("derive_leads", True))
    if not isinstance(out["input_contract"], Mapping):
        raise ConfigError(f"{where}: 'input_contract' must be a mapping", source)
    steps = out.get("steps")
    if not isinstance(steps, Sequence) or isinstance(steps, str):
        raise ConfigError(f"{where}: 'steps' must be a list of {{op: ...}} mappings", source)
    norm = []
    seen_batch_op = False
    for i, step in enumerate(steps):
        if not isinstance(step, Mapping) or "op" not in step:
            raise ConfigError(f"{where}: step {i} must be a mapping with an 'op' key", source)
        op = step["op"]
        if op not in _OPS:
            raise ConfigError(f"{where}: step {i}: unknown op {op!r} (known: "
                              f"{', '.join(sorted(_OPS))})", source)
        spec = _OPS[op]
        bad = sorted(set(step) - set(spec) - {"op"})
        if bad:
            raise ConfigError(f"{where}: step {i} ({op}): unknown key {bad[0]!r} (allowed: "
                              f"{', '.join(sorted(spec)) or 'none'})", source)
        full = {"op": op}
        for key, default in spec.items():
            if key in step:
                full[key] = step[key]
            elif default is _REQUIRED:
                raise ConfigError(f"{where}: step {i} ({op}): missing key {key!r}", source)
            else:
                full[key] = default
            choices = _CHOICES.get((op, key))
            if choices and full[key] not in choices:
                raise ConfigError(f"{where}: step {i} ({op}): key {key!r} must be one of "
                                  f"{', '.join(choices)}, got {full[key]!r}", source)
        for key in ("length", "before", "min_beats", "order"):
            if key in full and (not isinstance(full[key], (int, np.integer))
                                or isinstance(full[key], bool) or full[key] < (0 if key == "before" else 1)):
                raise ConfigError(f"{where}: step {i} ({op}): key {key!r} must be a positive "
                                  f"integer, got {full[key]!r}", source)
        if op == "segment" and full["stride"] is not None and (
                not isinstance(full["stride"], (int, np.integer)) or full["stride"] < 1):
            raise ConfigError(f"{where}: step {i} (segment): key 'stride' must be a positive "
                              f"integer or null", source)
        for key in ("fs", "low", "high", "cutoff", "window_s", "freq", "q", "factor"):
            if key in full:
                try:
                    val = float(full[key])
                except (TypeError, ValueError):
                    raise ConfigError(f"{where}: step {i} ({op}): key {key!r} must be a number, "
                                      f"got {full[key]!r}", source) from None
                if key != "factor" and not val > 0:
                    raise ConfigError(f"{where}: step {i} ({op}): key {key!r} must be > 0",
                                      source)
        for key in ("eps", "value"):
            # plain numbers (a string or None would fail deep inside the kernels)
            if key in full and (isinstance(full[key], (bool, np.bool_))
                                or not isinstance(full[key], (int, float, np.integer, np.floating))
                                or not np.isfinite(full[key]) or (key == "eps" and full[key] < 0)):
                raise ConfigError(f"{where}: step {i} ({op}): key {key!r} must be a finite "
                                  f"{'number >= 0' if key == 'eps' else 'number'}, got "
                                  f"{full[key]!r}", source)
        for key in ("zero_phase", "drop_last"):
            if key in full and not isinstance(full[key], (bool, np.bool_)):
                raise ConfigError(f"{where}: step {i} ({op}): key {key!r} must be true or "
                                  f"false, got {full[key]!r}", source)
        if op == "median_beats" and full["before"] >= full["length"]:
            raise ConfigError(f"{where}: step {i} (median_beats): 'before' must be < 'length'",
                              source)
        if op in _PER_RECORD_OPS:
            if seen_batch_op:
                raise ConfigError(f"{where}: step {i}: op {op!r} must come before every other "
                                  f"op (it changes each record's length)", source)
        else:
            seen_batch_op = True
        norm.append(full)
    out["steps"] = norm
    out["input_contract"] = dict(out["input_contract"])
    return out


def register_preset(preset: "Mapping | str | os.PathLike", overwrite: bool = False) -> dict:
    """Add a user preset (a dict or the path of a YAML file); return it validated.

    Parameters
    ----------
    preset : mapping or path
        ``{"name": ..., "leads": [...], "steps": [{"op": ...}, ...]}``.
    overwrite : bool
        Replace an existing user preset of the same name. Built-in presets
        can never be replaced (register a new name instead).
    """
    source = None
    if isinstance(preset, (str, os.PathLike)):
        source = os.fspath(preset)
        preset = _load_yaml(source)
    p = validate_preset(preset, source)
    if p["name"] in BUILTIN_PRESETS:
        raise ConfigError(f"preset name {p['name']!r} is built in; choose another name", source)
    if p["name"] in _REGISTRY and not overwrite:
        raise ConfigError(f"preset {p['name']!r} is already registered (overwrite=True replaces "
                          f"it)", source)
    _REGISTRY[p["name"]] = p
    return copy.deepcopy(p)


def list_presets() -> list[str]:
    """Names of the built-in presets, then the user-registered ones."""
    return list(BUILTIN_PRESETS) + [n for n in _REGISTRY if n not in BUILTIN_PRESETS]


def get_preset(preset: "str | Mapping | os.PathLike") -> dict:
    """Return a validated copy of a preset given by name, dict or YAML path."""
    if isinstance(preset, Mapping):
        return validate_preset(preset)
    key = os.fspath(preset) if isinstance(preset, os.PathLike) else preset
    if not isinstance(key, str):
        raise ConfigError(f"a preset is a name, a mapping or a YAML path, got {type(preset).__name__}")
    if key in BUILTIN_PRESETS:
        return validate_preset(BUILTIN_PRESETS[key])
    if key in _REGISTRY:
        return copy.deepcopy(_REGISTRY[key])
    if key.endswith((".yaml", ".yml")) or os.path.isfile(key):
        return validate_preset(_load_yaml(key), key)
    raise ConfigError(f"unknown preset {key!r}; known: {', '.join(list_presets())}")


_RESOLVED: dict = {}
# id(dict) -> (that dict, its _image, the validated preset): dict presets
_MAPPINGS: dict = {}


def _image(preset: dict):
    """An exact image of a dict preset's content, or None: its pickle, in which values
    keep their types and floats their bits (``-0.0`` is not ``0.0``, ``1`` is not
    ``1.0`` or ``True``, a numpy scalar is not a float). Equal images mean equal
    content; unequal images may also come from the same content shared differently,
    which only costs a needless validation. 3 us for a built-in preset's dict."""
    try:
        return pickle.dumps(preset, pickle.HIGHEST_PROTOCOL)
    except Exception:  # noqa: BLE001 - an unpicklable value: validated on every call
        return None


def _resolve(preset) -> dict:
    """The validated preset for internal use: shared, never to be modified.

    :func:`get_preset` validates and deep-copies on every call (about 60-90 us,
    a tenth of preprocessing one 12 x 5000 record); preprocess() runs it once per
    record. Built-in presets are validated once and reused while their entry in
    ``BUILTIN_PRESETS`` still equals the copy they were validated from; user
    presets are already validated in the registry. A ``dict`` preset is
    validated once and reused while it is the same object with the same content
    (:func:`_image`: 3 us against validation's 50 us and scheduling its fresh
    steps), so a dict changed between calls is validated afresh. Other mappings
    and YAML paths go through :func:`get_preset`.
    """
    if isinstance(preset, str):
        if preset in BUILTIN_PRESETS:
            hit = _RESOLVED.get(preset)
            raw = BUILTIN_PRESETS[preset]
            if hit is None or hit[0] != raw:
                hit = (copy.deepcopy(raw), validate_preset(raw))
                _RESOLVED[preset] = hit
            return hit[1]
        if preset in _REGISTRY:
            return _REGISTRY[preset]
    elif type(preset) is dict:
        image = _image(preset)
        if image is None:
            return get_preset(preset)
        hit = _MAPPINGS.get(id(preset))
        if hit is not None and hit[0] is preset and hit[1] == image:
            return hit[2]
        p = validate_preset(preset)
        if len(_MAPPINGS) >= 16:
            _MAPPINGS.clear()
        _MAPPINGS[id(preset)] = (preset, image, p)  # holds the dict: its id stays its own
        return p
    return get_preset(preset)


def output_shape(preset) -> tuple:
    """``(n_segments, leads, samples)`` of the preset's output; None where it depends on the input.

    The number of segments is known only when a fixed length precedes the
    segmentation (``crop_or_pad``) or for a median beat (1).
    """
    p = get_preset(preset)
    n_seg, length = None, None
    for step in p["steps"]:
        op = step["op"]
        if op in ("resample", "trim_zero_padding"):
            length = None
        elif op == "crop_or_pad":
            length = int(step["length"])
        elif op == "segment":
            L, stride = int(step["length"]), int(step["stride"] or step["length"])
            if length is not None:
                n_seg = (max(0, (length - L) // stride + 1) if step["drop_last"]
                         else -(-max(0, length - L) // stride) + 1)
            else:
                n_seg = None
            length = L
        elif op == "median_beats":
            n_seg, length = 1, int(step["length"])
    if length is not None and n_seg is None and not any(s["op"] in ("segment", "median_beats")
                                                         for s in p["steps"]):
        n_seg = 1
    return (n_seg, len(p["leads"]), length)


def describe_preset(preset) -> str:
    """One line per step, e.g. ``resample(fs=500, method=linear)``."""
    p = get_preset(preset)
    parts = []
    for s in p["steps"]:
        args = ", ".join(f"{k}={v}" for k, v in s.items() if k != "op")
        parts.append(f"{s['op']}({args})")
    return " -> ".join(parts)


# ---------------------------------------------------------------------------
# execution
# ---------------------------------------------------------------------------

_SIGNAL = []


def _signal():
    """ecgcore.signal, imported on first use (it may compile or load kernels); cached,
    since importlib's lookup costs a few µs on every record."""
    if not _SIGNAL:
        _SIGNAL.append(importlib.import_module("ecgcore.signal"))
    return _SIGNAL[0]


def trim_zero_padding(x: np.ndarray) -> np.ndarray:
    """Strip leading and trailing columns that are exactly 0 in every lead.

    This is CODE-15%'s padding rule (facts/ecgfm.md §1.7); an all-zero record
    is returned unchanged. Returns a view.
    """
    if x.shape[-1] == 0:
        return x
    # cheap test first: almost no record is padded
    if x[:, 0].any() and x[:, -1].any():  # the method: numpy's np.any wrapper costs µs per record
        return x
    live = np.flatnonzero(np.any(x != 0, axis=0))
    if live.size == 0:
        return x
    return x[:, live[0]: live[-1] + 1]


def _crop_or_pad(x: np.ndarray, length: int) -> np.ndarray:
    n = x.shape[-1]
    if n == length:
        return x
    if n > length:
        return x[..., :length]
    out = np.zeros(x.shape[:-1] + (length,), x.dtype)
    out[..., :n] = x
    return out


def _segment_batch(x: np.ndarray, length: int, stride, drop_last: bool, where) -> np.ndarray:
    """(n, leads, T) -> (n, n_segments, leads, length), one ecgcore.signal.segment call."""
    out = _signal().segment(x, length, stride=stride, drop_last=drop_last, axis=-1)
    if out.shape[1] == 0:
        raise PreprocessError(f"record of {x.shape[-1]} samples is shorter than one "
                              f"{length}-sample segment", where)
    return out


def _zscore(x: np.ndarray, scope: str, constant: str, eps: float) -> np.ndarray:
    return _signal().zscore(x, scope=scope, constant=constant, axis=-1, eps=eps)


def _all_finite(x: np.ndarray) -> bool:
    """Whether every sample of ``x`` is finite (False may also mean "not sure").

    A NaN or an infinity makes the sum of squares non-finite; finite samples
    keep it finite unless it overflows (samples beyond ~1e19 in float32), and
    then the caller's nan_to_num is merely a needless copy. The sum of squares
    is one BLAS dot over the contiguous samples, a single read without the mask
    ``np.isfinite(x).all()`` writes: 0.018 against 0.042 ms per 12 x 5000 record
    on a batch that is not in cache, the same (12 us) on one record that is.
    """
    if x.dtype.kind != "f":
        return bool(np.isfinite(x).all())
    if not x.flags.c_contiguous or x.size == 0:
        return bool(np.isfinite(x).all())
    flat = x.reshape(-1)
    with np.errstate(over="ignore", invalid="ignore"):
        return bool(np.isfinite(np.dot(flat, flat)))


def _filters_follow(steps, j: int, fs: float) -> bool:
    """Whether step ``j`` (a ``nan_to_num``) reaches a filter step through steps that
    neither read sample values nor change which samples are non-finite: resampling
    to the rate the signal already has (a no-op) and ``crop_or_pad`` (cropping
    commutes with ``nan_to_num``; the padding is zeros). ``fs``: the rate at step ``j``."""
    for s in steps[j + 1:]:
        op = s["op"]
        if op in _PER_RECORD_OPS:
            continue
        if op in _FILTER_OPS:
            return True
        if op == "resample" and float(s["fs"]) == float(fs):
            continue
        if op == "crop_or_pad":
            continue
        return False
    return False


def _finite_after_filters(y: np.ndarray) -> bool:
    """Whether the IIR filters' input was finite, read off their output's first samples.

    A NaN or infinity anywhere in a lead reaches every later state of the forward
    recursion, so the backward pass starts from a non-finite state and carries it
    to sample 0 (inf - inf and 0 * inf give NaN); a finite lead leaves sample 0
    finite unless the filter overflows float32, and then the caller's redo with
    ``nan_to_num`` (a no-op on finite samples) gives the same result. So checking
    one sample per lead replaces a pass over the input (0.02 ms per 12 x 5000
    record). Tested against injected NaN and infinities at every position class
    (tests/test_preset_ecgfounder_route.py).
    """
    if y.shape[-1] == 0:
        return True
    if y.ndim == 3 and y.shape[0] == 1 and type(y) is np.ndarray:
        # one record: math.isfinite over its leads' first samples as a list is
        # 0.7 us, the isfinite/all ufunc pair 2 us
        return all(map(math.isfinite, y[0, :, 0].tolist()))
    return bool(np.isfinite(y[..., 0]).all())


def _resample_batch(x, fs_in, fs_out, method):
    if float(fs_in) == float(fs_out):
        return x
    return _signal().resample(x, fs_in, fs_out, method=method, axis=-1)


_FILTER_OPS = ("notch", "bandpass", "highpass", "lowpass")


def _filter_stages(fs, steps) -> list:
    """Kernel stages of consecutive filter steps (``ecgcore.signal.filters``).

    A Butterworth step with ``form: ba`` (ECGFounder's published band-pass) runs
    as ``butter_stage(form="ba_sos")``: the same (b, a) filter with ``filtfilt``'s
    padding and initial conditions, computed as the design's second-order
    sections when the rounded (b, a) realises the design (else as the (b, a)
    recursion). That keeps float32 records on the kernel's mixed-precision
    path; the output differs from the published float64 (b, a) recursion by
    about that recursion's own rounding noise (~1e-6 of the range). Against
    the published chain the preset's z-scores differ by 4e-6 to 1e-5 for DC
    offsets up to 1e3 and by 7e-5 to 9e-5 at 1e4, where the former two-call
    (b, a) route reached 4e-3 (tests/test_preset_ecgfounder_route.py).
    """
    from .signal import filters as F
    stages = []
    for s in steps:
        if s["op"] == "notch":
            stages.append(F.notch_stage(fs, float(s["freq"]), float(s["q"]), bool(s["zero_phase"])))
        else:
            cut = ((float(s["low"]), float(s["high"])) if s["op"] == "bandpass"
                   else float(s["cutoff"]))
            form = "ba_sos" if s["form"] == "ba" else s["form"]
            stages.append(F.butter_stage(fs, s["op"], cut, int(s["order"]),
                                         bool(s["zero_phase"]), form))
    return stages


_STAGE_CACHE: dict = {}
# Per-thread buffer for a filter output that only feeds the next step (see
# _apply_filters); at most this many bytes are kept.
_SCRATCH = threading.local()
_SCRATCH_MAX = 64 << 20


def _scratch_like(x: np.ndarray):
    """A reused C-contiguous array of x's shape and dtype, or None when x is too large."""
    view = getattr(_SCRATCH, "view", None)
    if view is not None and view.shape == x.shape and view.dtype == x.dtype:
        return view  # the same shape as last time (one record per call): no slicing
    if x.nbytes > _SCRATCH_MAX:
        return None
    buf = getattr(_SCRATCH, "buf", None)
    if buf is None or buf.dtype != x.dtype or buf.size < x.size:
        buf = np.empty(x.size, x.dtype)  # smaller batches reuse a larger buffer
        _SCRATCH.buf = buf
    view = buf[:x.size].reshape(x.shape)
    _SCRATCH.view = view
    return view


def _stages_for(fs: float, steps):
    """``(key, stages)`` of consecutive filter steps at ``fs`` Hz, the stages memoised on key."""
    key = (fs, tuple(tuple(sorted(s.items())) for s in steps))
    stages = _STAGE_CACHE.get(key)
    if stages is None:
        stages = _filter_stages(fs, steps)
        if len(_STAGE_CACHE) >= 64:
            _STAGE_CACHE.clear()
        _STAGE_CACHE[key] = stages
    return key, stages


def _apply_filters(x, fs, steps, reuse: bool = False):
    """Run consecutive filter steps in one fused kernel call (``filters.apply_stages``).

    One call instead of one per step: each block of leads is transposed and
    written once, and the intermediate result stays in float64/mixed precision
    instead of being rounded to float32 between steps. Stages are memoised on
    (fs, steps). ``reuse``: the result only feeds a step that returns a new array
    (the median baseline), so it may go to this thread's scratch buffer, which
    saves the page faults of a fresh batch-sized output on every call.
    """
    key, stages = _stages_for(fs, steps)
    return _apply_stages(x, key, stages, reuse)


def _apply_stages(x, key, stages, reuse: bool, plans: dict | None = None):
    """:func:`_apply_filters` with the stages (and their ``key``) already designed.

    ``plans``: a dict of kernel plans by (length, dtype) that the caller keeps
    with the stages (a filter instruction of :func:`_schedule`), so a one-record
    call does not hash ``key`` to find its plan.
    """
    if (type(x) is np.ndarray and x.ndim >= 2 and x.size and x.flags.c_contiguous
            and (x.dtype == np.float32 or x.dtype == np.float64)):
        y = _run_filter_plan(x, key, stages, reuse, plans)
        if y is not None:
            return y
    from .signal import filters as F
    if (reuse and type(x) is np.ndarray and x.ndim >= 2 and x.size
            and (x.dtype == np.float32 or x.dtype == np.float64)):
        out = _scratch_like(x)
        if out is not None and not np.may_share_memory(out, x):
            return F.apply_stages(x, stages, -1, out=out)
    return F.apply_stages(x, stages, -1)


_PLAN_CACHE: dict = {}


def _run_filter_plan(x: np.ndarray, key, stages, reuse: bool, plans: dict | None = None):
    """``apply_stages`` for a C-contiguous float32/float64 ``x`` with the kernel plan
    parsed once per (filters, length, dtype); None when the checked route must run.

    One record per call is the usual way to run a preset; there, parsing the stages
    (2 us) and ``apply_stages``' argument handling (5 us) were about a tenth of the
    ~55 us per record that a one-record call of the ``ecgfounder`` preset costs more
    than a batched one. Same kernel, same plan, same result.
    """
    n = x.shape[-1]
    plan = plans.get((n, x.dtype.char)) if plans is not None else None
    if plan is None:
        pk = (key, n, x.dtype.char)
        plan = _PLAN_CACHE.get(pk)
        if plan is None:
            if not stages or any(st[5] and n <= st[4] for st in stages):
                return None  # apply_stages copies, or raises the error
            plan = _kernel("chain").prepare(x.dtype == np.float32, n, list(stages), None, True, None, 0)
            if len(_PLAN_CACHE) >= 64:
                _PLAN_CACHE.clear()
            _PLAN_CACHE[pk] = plan
        if plans is not None:
            if len(plans) >= 16:
                plans.clear()
            plans[(n, x.dtype.char)] = plan
    rows = x.reshape(-1, n)
    out = _scratch_like(x) if reuse else None
    if out is not None and not np.may_share_memory(out, x):
        _kernel("chain").run_plan(rows, plan, 0, out.reshape(rows.shape))
        return out
    return _kernel("chain").run_plan(rows, plan, 0).reshape(x.shape)


def _run_steps(x: np.ndarray, fs: float, steps, where=None, records=None) -> np.ndarray:
    """Apply the batched steps to ``x`` (n, leads, T); return (n, n_seg, leads, L) float32.

    ``records`` (the source Records, aligned with ``x``) is needed only by
    ``median_beats`` with a device source. The steps run as their schedule
    (:func:`_schedule`: every decision that depends only on the steps and the
    sampling rate taken once), so a one-record call costs the kernels and little else.
    """
    fs = float(fs)
    return _exec(x, _schedule(steps, fs), where, records)


def _exec(x: np.ndarray, sched, where=None, records=None) -> np.ndarray:
    """Run a schedule (:func:`_schedule`) on ``x``; see :func:`_run_steps`."""
    # whether x is an array this function made (a kernel's output), which the
    # fused z-score may then overwrite; the caller's array never is
    owned = False
    deferred_nan = None  # a nan_to_num value whose check waits for the filters' output
    for ins in sched.instrs:
        kind = ins[0]
        if kind == "filters":
            _, pending, ffs, reuse, key, stages, plans = ins
            if stages is None:  # the design failed when scheduled: raise it here, in order
                y = _apply_filters(x, ffs, pending, reuse=reuse)
            else:
                y = _apply_stages(x, key, stages, reuse, plans)
            if deferred_nan is not None:
                if not _finite_after_filters(y):
                    v = deferred_nan
                    y = _apply_filters(np.nan_to_num(x, nan=v, posinf=v, neginf=v), ffs, pending,
                                       reuse=reuse)
                deferred_nan = None
            x = y
            owned = True
        elif kind == "median":
            _, mfs, window_s, k = ins
            if (k is not None and type(x) is np.ndarray and x.size
                    and (x.dtype == np.float32 or x.dtype == np.float64) and x.flags.c_contiguous):
                # what median_baseline does for such an array, without its argument checks
                x = _kernel("medfilt").running_median(x.reshape(-1, x.shape[-1]), k, True, 0,
                                              False).reshape(x.shape)
            else:
                x = _signal().median_baseline(x, mfs, window_s, axis=-1)
            owned = True
        elif kind == "zseg":
            _, L, scope, constant, eps, direct = ins
            if x.shape[-1] < L:
                raise PreprocessError(f"record of {x.shape[-1]} samples is shorter than one "
                                      f"{L}-sample segment", where)
            # an array of our own is standardised in place when the window is
            # the whole record (no fresh output to write: a third less traffic)
            if (direct is not None and type(x) is np.ndarray and x.ndim == 3
                    and (x.dtype == np.float32 or x.dtype == np.float64) and x.flags.c_contiguous):
                x = _kernel("norm").zscore_segments(x, L, direct[0], direct[1], direct[2], owned)
            else:
                x = _signal().zscore_segments(x, L, scope, constant, float(eps), overwrite=owned)
        elif kind == "nan_defer":
            deferred_nan = float(ins[1]["value"])
        elif kind == "nan":
            # most records are finite: one reduction is cheaper than always building a copy
            if not _all_finite(x):
                v = float(ins[1]["value"])
                x = np.nan_to_num(x, nan=v, posinf=v, neginf=v)
                owned = True
        elif kind == "scale":
            x = x * np.float32(ins[1]["factor"])
            owned = True
        elif kind == "resample":
            prev = x
            x = _resample_batch(x, ins[1], ins[2], ins[3])
            owned = owned if x is prev else True
        elif kind == "zscore":
            x = _zscore(x, ins[1], ins[2], float(ins[3]))
            owned = True
        elif kind == "crop_or_pad":
            n_before = x.shape[-1]
            x = _crop_or_pad(x, ins[1])
            owned = owned or n_before < x.shape[-1]  # padding makes a new array
        elif kind == "segment":
            x = _segment_batch(x, ins[1], ins[2], ins[3], where)
        elif kind == "median_beats":
            x = _median_beats_batch(x, ins[1], ins[2], records=records, where=where)[:, None]
        elif kind == "reraise":
            raise ins[1].with_traceback(None)
        else:  # "raise": a step the schedule found unsupported, raised where the loop reaches it
            raise ConfigError(ins[1])
    if not sched.segmented:
        x = x[:, None]
    return np.asarray(x, dtype=np.float32)


class _Schedule:
    """The instructions :func:`_exec` runs for one step list at one sampling rate."""

    __slots__ = ("instrs", "segmented")


class _StepInfo:
    """What a step list needs known on every call, and its schedules by sampling rate."""

    __slots__ = ("steps", "snapshot", "needs_records", "has_trim", "by_fs")


_INFO_CACHE: dict = {}


def _step_info(steps) -> _StepInfo:
    """The memoised :class:`_StepInfo` of a step list.

    Keyed on the list's identity and served only while the list still equals
    the copy it was built from (one comparison of a few small dicts, well
    under a microsecond), so a step list changed in place is scheduled afresh,
    and a preset re-registered under the same name (a new list) never meets
    the old one's schedule. The entry holds the list, so its id cannot be
    reused by another list while cached. Values that compare equal but are
    not the same (``0.0`` and ``-0.0``, ``1``, ``1.0`` and ``True``) schedule
    alike, as every step value is taken through ``int``/``float``/``bool`` or
    is a positive number; the two whose zero sign reaches the output
    (``nan_to_num``'s value, ``scale``'s factor) are read from the step when run.
    """
    info = _INFO_CACHE.get(id(steps))
    if (info is not None and info.steps is steps
            and info.snapshot == (steps if type(steps) is list else list(steps))):
        return info
    info = _StepInfo()
    info.steps = steps
    # a deep copy: a value nested in a step and changed in place is seen too
    info.snapshot = copy.deepcopy(steps if type(steps) is list else list(steps))
    info.needs_records = any(s["op"] == "median_beats" and s["source"] != "computed"
                             for s in steps)
    info.has_trim = any(s["op"] == "trim_zero_padding" for s in steps)
    info.by_fs = {}
    if len(_INFO_CACHE) >= 64:
        _INFO_CACHE.clear()
    _INFO_CACHE[id(steps)] = info
    return info


def _schedule(steps, fs: float, info: _StepInfo | None = None) -> _Schedule:
    """The schedule of ``steps`` at ``fs`` Hz (a float), memoised with the steps' info."""
    if info is None:
        info = _step_info(steps)
    sc = info.by_fs.get(fs)
    if sc is None:
        sc = _build_schedule(info.steps, fs)
        if len(info.by_fs) >= 16:
            info.by_fs.clear()
        info.by_fs[fs] = sc
    return sc


def _build_schedule(steps, fs: float) -> _Schedule:
    """Walk ``steps`` as the sample loop would and write down what it does.

    Decisions that depend only on the steps and the rate are taken here: which
    ``nan_to_num`` waits for the filters' output (:func:`_filters_follow`), which
    resampling is a no-op, which filters fuse into one kernel call and whether
    their output may go to scratch, the filter design, the median kernel size,
    the fused z-score + segment. A design or argument that fails here is left to
    the loop (the instruction keeps the step, not the design), so errors are
    raised at the same step and in the same order as before.
    """
    sc = _Schedule()
    instrs = []
    segmented = False
    pending: list = []
    skip_next = False
    for j, step in enumerate(steps):
        op = step["op"]
        if op in _PER_RECORD_OPS:
            continue
        if skip_next:  # a segment step already done by the fused z-score
            skip_next = False
            continue
        if segmented:
            instrs.append(("raise", f"op {op!r} after segmentation is not supported"))
            break
        try:
            if op == "nan_to_num":
                # the value is converted when run: validate_preset does not check it, and
                # a bad one must fail at this step, not before the steps ahead of it
                if _filters_follow(steps, j, fs):
                    # checked on the filters' output instead (see _finite_after_filters)
                    instrs.append(("nan_defer", step))
                else:
                    instrs.append(("nan", step))
            elif op == "scale":
                instrs.append(("scale", step))
            elif op == "resample":
                fs_out = float(step["fs"])
                if fs != fs_out:  # else _resample_batch returns its input
                    instrs.append(("resample", fs, fs_out, step["method"]))
                fs = fs_out
            elif op in _FILTER_OPS:
                pending.append(step)
                if j + 1 < len(steps) and steps[j + 1]["op"] in _FILTER_OPS:
                    continue  # consecutive filters run as one fused kernel call
                # the median baseline reads the filtered signal and returns a new array:
                # the filtered one can live in a reused buffer
                feeds_median = j + 1 < len(steps) and steps[j + 1]["op"] == "median_baseline"
                try:
                    key, stages = _stages_for(fs, pending)
                except Exception:  # noqa: BLE001 - raised again, in order, by the loop
                    key, stages = None, None
                instrs.append(("filters", pending, fs, feeds_median, key, stages, {}))
                pending = []
            elif op == "median_baseline":
                window_s = float(step["window_s"])
                try:
                    k = _signal().median_kernel_size(fs, window_s)
                except PreprocessError:  # raised again, in order, by median_baseline
                    k = None
                instrs.append(("median", fs, window_s, k))
            elif op == "zscore":
                nxt = steps[j + 1] if j + 1 < len(steps) else None
                if (nxt is not None and nxt["op"] == "segment" and nxt["drop_last"]
                        and (nxt["stride"] is None or nxt["stride"] == nxt["length"])):
                    # z-score written straight into the windows: one pass instead of two
                    # direct: the kernel's arguments when zscore_segments' checks pass (else
                    # the wrapper runs and raises, after the length check, as before)
                    try:
                        direct = _signal().normalize.zscore_segments_args(
                            step["scope"], step["constant"], float(step["eps"]))
                    except (TypeError, ValueError):   # PreprocessError is a ValueError
                        direct = None
                    instrs.append(("zseg", int(nxt["length"]), step["scope"], step["constant"],
                                   step["eps"], direct))
                    skip_next = True
                    segmented = True
                    continue
                instrs.append(("zscore", step["scope"], step["constant"], step["eps"]))
            elif op == "crop_or_pad":
                instrs.append(("crop_or_pad", int(step["length"])))
            elif op == "segment":
                instrs.append(("segment", int(step["length"]), step["stride"],
                               bool(step["drop_last"])))
                segmented = True
            elif op == "median_beats":
                instrs.append(("median_beats", fs, step))
                segmented = True
            else:  # pragma: no cover - validate_preset rejects unknown ops
                instrs.append(("raise", f"unknown op {op!r}"))
                break
        except Exception as exc:  # noqa: BLE001
            # a value the loop converts at this step fails here: raise it at this step,
            # after the steps ahead of it have run (and raised what they raise), as before
            instrs.append(("reraise", exc))
            break
    sc.instrs = tuple(instrs)
    sc.segmented = segmented
    return sc


_KERNELS: dict = {}


def _kernel(name: str):
    """``ecgcore._kernels.<name>``, imported on first use and cached (as :func:`_signal`)."""
    m = _KERNELS.get(name)
    if m is None:
        m = _KERNELS[name] = importlib.import_module(f"ecgcore._kernels.{name}")
    return m


def _needs_records(p: dict) -> bool:
    """Whether the preset's steps need the source Records (a device median beat)."""
    return _step_info(p["steps"]).needs_records


def prepare_record(record: Record, preset: dict) -> tuple[np.ndarray, float]:
    """The per-record part of a preset: leads by name, then the per-record ops.

    Returns the (leads, n) float32 signal ready for :func:`preprocess_batch`
    and its sampling rate. ``preset`` must already be validated.
    """
    x, fs, _ = _prepare(record, preset)
    return x, fs


def _prepare(record: Record, preset: dict, info: "_StepInfo | None" = None):
    if not isinstance(record, Record):
        raise PreprocessError(f"expected a Record, got {type(record).__name__}")
    want = tuple(preset["leads"])
    try:
        if record.leads == want:
            rec = record  # already in order: no copy (the common case at scale)
            x = rec.signal
        elif (info is not None and not info.needs_records and type(record.leads) is tuple
              and type(record.signal) is np.ndarray and record.signal.dtype == np.float32
              and (idx := _lead_index(record.leads, want)) is not None):
            # every lead present, only the order differs: the rows conform would
            # copy, taken in one indexing call (conform costs twice as much);
            # the conformed Record itself is needed only by a device median beat
            rec = None
            x = record.signal[idx]
        else:
            rec = record.conform(preset["leads"], derive=preset["derive_leads"],
                                 missing=preset["missing_leads"])
            x = rec.signal
    except PreprocessError:
        raise
    except ValueError as exc:
        raise PreprocessError(getattr(exc, "reason", str(exc)), record.source) from None
    if info is None or info.has_trim:
        for step in preset["steps"]:
            if step["op"] == "trim_zero_padding":
                x = trim_zero_padding(x)
    return x, record.fs, rec     # conform keeps the rate


_LEAD_INDEX: dict = {}


def _lead_index(have: tuple, want: tuple):
    """Rows of a record with leads ``have`` that hold ``want``, in order, as
    :meth:`Record.conform` picks them (the last row of a repeated name); None when
    one is absent (derivation or filling is then conform's job). Memoised."""
    key = (have, want)
    idx = _LEAD_INDEX.get(key, False)
    if idx is False:
        pos = {name: i for i, name in enumerate(have)}
        idx = [pos[name] for name in want] if all(name in pos for name in want) else None
        if len(_LEAD_INDEX) >= 256:
            _LEAD_INDEX.clear()
        _LEAD_INDEX[key] = idx
    return idx


def preprocess(record: Record, preset: "str | Mapping" = "ecgfm") -> np.ndarray:
    """Turn one record into model input.

    Parameters
    ----------
    record : Record
        Any record in millivolts; leads are matched by name (aliases and
        derivable limb leads included).
    preset : str or mapping or path
        A preset name (see :func:`list_presets`), a preset dict or a YAML path.

    Returns
    -------
    ndarray, float32, shape (n_segments, n_leads, n_samples)

    Raises
    ------
    ConfigError
        The preset is invalid.
    PreprocessError
        The record cannot be turned into this input (too short for one
        segment, required leads missing with ``missing_leads: raise``, ...).
    """
    p = _resolve(preset)
    info = _step_info(p["steps"])
    x, fs, rec = _prepare(record, p, info)
    where = record.source
    records = [rec] if info.needs_records else None
    if x.shape[-1] == 0:
        raise PreprocessError("record has no samples", where)
    fs = float(fs)
    out = _exec(x[None], _schedule(p["steps"], fs, info), where, records)[0]
    return out.astype(p["output_dtype"], copy=False)


def preprocess_batch(x, fs: float, preset: "str | Mapping" = "ecgfm",
                     leads: Sequence[str] | None = None) -> np.ndarray:
    """Preprocess a stack of same-shape records with one kernel call per step.

    Parameters
    ----------
    x : array_like, shape (n_records, n_leads, n_samples)
        Signals in mV. Without ``leads`` the rows must already be in the
        preset's lead order; with ``leads``, they are reordered by name.
        Samples are taken as float32, as a :class:`~ecgcore.record.Record`
        stores them, so the result equals :func:`preprocess` applied record
        by record (a float64 array, e.g. from ``wfdb.rdsamp``, is converted
        once; kept in float64 the ``ecgfounder`` preset ran 5x slower, on the
        running median's exact float64 path, for a result that differs by
        float32 rounding only).
    fs : float
        Sampling rate shared by all records, Hz.
    preset : str or mapping or path
    leads : sequence of str, optional
        Names of the rows of ``x``.

    Returns
    -------
    ndarray, float32, shape (n_records, n_segments, n_leads, n_samples)
        Records whose per-record steps (zero-padding trim) change their
        length are processed on their own; all must give the same shape.
    """
    p = _resolve(preset)
    arr = np.asarray(x)
    if arr.ndim != 3:
        raise PreprocessError(f"preprocess_batch needs (n_records, leads, samples), got shape "
                              f"{arr.shape}")
    if arr.dtype != np.float32:
        arr = arr.astype(np.float32)
    if leads is not None:
        names = normalize_leads(leads)
        if len(names) != arr.shape[1]:
            raise PreprocessError(f"{len(names)} lead names for {arr.shape[1]} rows")
        if list(names) != p["leads"]:
            idx = []
            for ld in p["leads"]:
                if ld not in names:
                    break
                idx.append(names.index(ld))
            if len(idx) == len(p["leads"]):
                arr = arr[:, idx]
            else:  # derivation or missing leads: go through Record.conform
                recs = [Record(a, fs, names) for a in arr]
                arr = np.stack([prepare_record(r, p)[0] for r in recs])
                return _batch_with_trim(arr, fs, p)
    elif arr.shape[1] != len(p["leads"]):
        raise PreprocessError(f"preset {p['name']!r} needs {len(p['leads'])} leads "
                              f"({', '.join(p['leads'])}), got {arr.shape[1]} rows; pass leads=")
    return _batch_with_trim(arr, fs, p)


def _batch_with_trim(arr: np.ndarray, fs: float, p: dict) -> np.ndarray:
    info = _step_info(p["steps"])
    if info.needs_records:
        recs = [Record(a, fs, p["leads"]) for a in arr]
        return np.stack([preprocess(r, p) for r in recs])
    if arr.shape[0] == 0:
        shape = output_shape(p)
        return np.zeros((0,) + tuple(s or 0 for s in shape), p["output_dtype"])
    if info.has_trim:
        # records padded with zero columns get their own length; the rest stay batched
        padded = ~(np.any(arr[:, :, 0] != 0, axis=1) & np.any(arr[:, :, -1] != 0, axis=1))
        if padded.any():
            out = [None] * arr.shape[0]
            keep = np.flatnonzero(~padded)
            if keep.size:
                res = _run_steps(arr[keep], fs, p["steps"])
                for j, i in enumerate(keep):
                    out[i] = res[j]
            for i in np.flatnonzero(padded):
                out[i] = _run_steps(trim_zero_padding(arr[i])[None], fs, p["steps"])[0]
            shapes = {o.shape for o in out}
            if len(shapes) > 1:
                raise PreprocessError(f"records give different output shapes {sorted(shapes)}; "
                                      f"use preprocess() per record")
            return np.stack(out).astype(p["output_dtype"], copy=False)
    return _exec(arr, _schedule(p["steps"], float(fs), info)).astype(p["output_dtype"],
                                                                     copy=False)


# ---------------------------------------------------------------------------
# median beats (lvh preset)
# ---------------------------------------------------------------------------

def _qrs_envelope(x: np.ndarray, fs: float) -> np.ndarray:
    """QRS energy envelope of a (leads, T) signal: the 80 ms moving average of the
    lead-summed absolute slope of the 5-25 Hz band (where QRS energy sits)."""
    sig = _signal()
    band = np.asarray(sig.bandpass(np.ascontiguousarray(x, dtype=np.float64), fs, 5.0,
                                   min(25.0, 0.45 * fs), order=2, axis=-1))
    slope = np.abs(np.diff(band, axis=-1)).sum(axis=0)
    w = max(1, int(round(0.08 * fs)))
    return np.convolve(slope, np.ones(w) / w, mode="same")


def detect_r_interim(x: np.ndarray, fs: float) -> np.ndarray:
    """Interim QRS locator for the median-beat step, used only when ecgcore.delineation
    is not installed.

    Peaks of :func:`_qrs_envelope` higher than 30 % of its 99th percentile and
    at least 0.3 s apart (``scipy.signal.find_peaks``). The location is the
    centre of QRS energy, which is consistent from beat to beat, and that is
    all beat averaging needs. Returns sample indices (int64).
    """
    from scipy.signal import find_peaks
    env = _qrs_envelope(x, fs)
    if env.size == 0 or not np.isfinite(env).all():
        return np.zeros(0, np.int64)
    top = np.percentile(env, 99)
    if top <= 0:
        return np.zeros(0, np.int64)
    peaks, _ = find_peaks(env, height=0.3 * top, distance=max(1, int(0.3 * fs)))
    return peaks.astype(np.int64)


def _delineate_median_beats():
    """ecgcore.median_beats when that package is present, else None
    (then the interim detector below is used)."""
    try:
        from .delineation import median_beats
    except ImportError:
        return None
    return median_beats


def _window(x: np.ndarray, centres: np.ndarray, before: int, length: int) -> np.ndarray:
    """(leads, T) -> (leads, n_beats, length) windows starting at centre - before;
    samples outside the record are 0."""
    idx = centres[:, None] - before + np.arange(length)[None, :]
    valid = (idx >= 0) & (idx < x.shape[-1])
    out = x[:, np.clip(idx, 0, x.shape[-1] - 1)]
    out[:, ~valid] = 0.0
    return out


def _median_beat_one(x: np.ndarray, fs: float, step: dict, record=None, where=None):
    """One record's median beat, (leads, length).

    ``source="computed"``: :func:`ecgcore.median_beats` (0.5 Hz
    high-pass, R fiducials from ``detect_qrs``, beats ``before`` samples ahead of
    R and ``length`` long, median, outlier beats dropped, median again). Without
    the delineation package, an interim route: 0.5 Hz high-pass, QRS-energy
    centres (:func:`detect_r_interim`), sample-wise median of the whole beats. ``source="device"`` uses the
    median beat stored in the file (MUSE, CardioSoft), resampled to ``fs`` and
    cut around its own QRS centre; ``"auto"`` prefers the device beat.
    """
    before, length = int(step["before"]), int(step["length"])
    med = getattr(record, "median", None) if record is not None else None
    if step["source"] in ("device", "auto") and med is not None:
        # ``record`` was conformed to the preset's leads, and Record.conform
        # conforms its median beat with it
        y = _resample_batch(med.signal[None].astype(np.float32), med.fs, fs, "poly")[0]
        env = _qrs_envelope(y, fs)
        c = np.array([int(np.argmax(env))], np.int64)
        return _window(np.asarray(y, np.float32), c, before, length)[:, 0]
    if step["source"] == "device":
        raise PreprocessError("preset asks for the device median beat but the file has none",
                              where)
    mb = _delineate_median_beats()
    if mb is not None:
        res = mb(np.asarray(x, np.float64), fs=fs, length=length, before=before,
                 min_beats=int(step["min_beats"]))
        beat = np.asarray(getattr(res, "signal", res), np.float32)
        if beat.shape != (x.shape[0], length):
            raise PreprocessError(f"median beat of shape {beat.shape}, expected "
                                  f"{(x.shape[0], length)}", where)
        if not np.isfinite(beat).all():
            reason = (getattr(res, "meta", None) or {}).get("reason", "too few usable beats")
            raise PreprocessError(f"no median beat: {reason} (fewer than {step['min_beats']} "
                                  f"usable beats?)", where)
        return beat
    # interim route: 0.5 Hz high-pass (baseline wander), QRS centres, sample-wise median
    x = np.asarray(_signal().highpass(np.asarray(x, np.float64), fs, 0.5, order=2, axis=-1))
    r = detect_r_interim(x, fs)
    r = r[(r - before >= 0) & (r - before + length <= x.shape[-1])]
    if r.size < int(step["min_beats"]):
        raise PreprocessError(f"only {r.size} complete beats found; the median beat needs "
                              f"{step['min_beats']}", where)
    return np.median(_window(np.asarray(x, np.float32), r, before, length), axis=1)


def _median_beats_batch(x, fs, step, records=None, where=None) -> np.ndarray:
    out = []
    for i in range(x.shape[0]):
        rec = records[i] if records is not None else None
        out.append(_median_beat_one(x[i], fs, step, rec,
                                    where if rec is None else rec.source))
    return np.stack(out).astype(np.float32)

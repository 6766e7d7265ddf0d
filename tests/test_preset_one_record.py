"""Presets one record per call (``preprocess(Record)``, ``preprocess_batch(x[None])``).

The steps run from a memoised schedule (``presets._schedule``): decisions that
depend only on the steps and the sampling rate are taken once, and the kernels
are called directly. Every output here is compared with a plain step-by-step
recomputation through the public ``ecgcore.signal`` functions (no fusion, no
deferred NaN check, no scratch buffer, nothing memoised) and with the batch
path; the caches are exercised where they could go stale: a user preset
re-registered, a built-in preset edited in place, a step list or a mapping
changed between calls, one step list at several sampling rates.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest

import ecgcore
import ecgcore.signal as S
from conftest import shared_path
from ecgcore import presets as P
from ecgcore.errors import ConfigError, PreprocessError
from ecgcore.record import STANDARD_12, Record
from ecgcore.signal import filters as F

_FILTERS = ("notch", "bandpass", "highpass", "lowpass")


def _reference(x: np.ndarray, fs: float, steps) -> np.ndarray:
    """One record (leads, T) through ``steps`` with the public kernels, step by step."""
    x = np.asarray(x, np.float32)
    for s in steps:
        if s["op"] == "trim_zero_padding":
            x = P.trim_zero_padding(x)
    x = x[None]
    fs = float(fs)
    segmented = False
    i = 0
    steps = [s for s in steps if s["op"] != "trim_zero_padding"]
    while i < len(steps):
        s = steps[i]
        op = s["op"]
        if op == "nan_to_num":
            v = float(s["value"])
            x = np.nan_to_num(x, nan=v, posinf=v, neginf=v)
        elif op == "scale":
            x = x * np.float32(s["factor"])
        elif op == "resample":
            if float(s["fs"]) != fs:
                x = S.resample(x, fs, float(s["fs"]), method=s["method"], axis=-1)
            fs = float(s["fs"])
        elif op in _FILTERS:
            group = [s]
            while i + 1 < len(steps) and steps[i + 1]["op"] in _FILTERS:
                i += 1
                group.append(steps[i])
            x = F.apply_stages(x, P._filter_stages(fs, group), -1)
        elif op == "median_baseline":
            x = S.median_baseline(x, fs, float(s["window_s"]), axis=-1)
        elif op == "zscore":
            x = S.zscore(x, scope=s["scope"], constant=s["constant"], axis=-1, eps=float(s["eps"]))
        elif op == "crop_or_pad":
            n, L = x.shape[-1], int(s["length"])
            if n >= L:
                x = x[..., :L]
            else:
                x = np.concatenate([x, np.zeros(x.shape[:-1] + (L - n,), x.dtype)], axis=-1)
        elif op == "segment":
            x = S.segment(x, int(s["length"]), stride=s["stride"], drop_last=s["drop_last"],
                          axis=-1)
            segmented = True
        else:  # pragma: no cover - the presets used here have no other op
            raise AssertionError(op)
        i += 1
    if not segmented:
        x = x[:, None]
    return np.asarray(x, np.float32)[0]


def _records(seed: int, n: int = 3, T: int = 5000, fs: float = 500.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(T) / fs
    x = (np.cumsum(rng.standard_normal((n, 12, T)), axis=-1) * 0.01
         + np.exp(-((t % 0.8) - 0.4) ** 2 / 2e-4) + 0.05 * np.sin(2 * np.pi * 50 * t)
         + rng.uniform(-2, 2, (n, 12, 1)))
    return x.astype(np.float32)


_USER = [
    {"name": "one_sos", "leads": list(STANDARD_12), "steps": [
        {"op": "nan_to_num"}, {"op": "highpass", "cutoff": 0.5},
        {"op": "lowpass", "cutoff": 40, "form": "ba"},
        {"op": "zscore", "scope": "lead", "constant": "keep", "eps": 1e-6},
        {"op": "segment", "length": 1000, "stride": 500}]},
    {"name": "one_scale", "leads": list(STANDARD_12), "steps": [
        {"op": "scale", "factor": 1000}, {"op": "resample", "fs": 250, "method": "poly"},
        {"op": "notch", "freq": 60, "q": 25}, {"op": "median_baseline", "window_s": 0.2},
        {"op": "zscore", "scope": "record", "constant": "nan"},
        {"op": "crop_or_pad", "length": 3000}]},
    {"name": "one_trim", "leads": list(STANDARD_12), "steps": [
        {"op": "trim_zero_padding"}, {"op": "nan_to_num", "value": 1.0},
        {"op": "resample", "fs": 500, "method": "linear"}, {"op": "crop_or_pad", "length": 5000},
        {"op": "bandpass", "low": 1, "high": 45}, {"op": "median_baseline", "window_s": 0.3},
        {"op": "zscore", "scope": "record", "eps": 1e-8}, {"op": "segment", "length": 5000}]},
]


@pytest.fixture(scope="module")
def user_presets():
    for u in _USER:
        P.register_preset(u, overwrite=True)
    yield [u["name"] for u in _USER]
    for u in _USER:
        P._REGISTRY.pop(u["name"], None)


def _check_one(x: np.ndarray, fs: float, name: str, leads=STANDARD_12):
    """preprocess(Record) and preprocess_batch(x[None]) equal the step-by-step reference."""
    steps = P.get_preset(name)["steps"]
    in_order = x if leads is STANDARD_12 else x[[list(leads).index(ld) for ld in STANDARD_12]]
    want = _reference(in_order, fs, steps)
    got = ecgcore.preprocess(Record(x, fs, leads), name)
    np.testing.assert_array_equal(got, want)
    got_b = P.preprocess_batch(x[None], fs, name, leads=None if leads is STANDARD_12 else leads)[0]
    np.testing.assert_array_equal(got_b, want)
    return want


@pytest.mark.parametrize("name", ["ecgfounder", "ccta", "ecgfounder_ptbxl_eval", "ecgfm"])
def test_builtin_one_record_equals_reference_and_batch(name):
    x = _records(1)
    x[1, 3, 100] = np.nan           # NaN mid-lead
    x[2, 0, -1] = np.inf            # inf in the last sample
    x[2, 7, :] = 0.7                # a flat lead
    batch = P.preprocess_batch(x, 500.0, name)
    for i, r in enumerate(x):
        want = _check_one(r, 500.0, name)
        np.testing.assert_array_equal(batch[i], want)
        # the same record read as float64 (wfdb.rdsamp) is taken as float32
        got64 = P.preprocess_batch(r[None].astype(np.float64), 500.0, name)[0]
        np.testing.assert_array_equal(got64, want)


@pytest.mark.parametrize("fs,T", [(250.0, 2500), (360.0, 3600), (1000.0, 10000)])
def test_ecgfounder_other_rates_and_back(fs, T):
    # one step list at several rates: each rate has its own schedule
    x = _records(2, n=1, T=T, fs=fs)[0]
    _check_one(x, fs, "ecgfounder")
    _check_one(_records(3, n=1)[0], 500.0, "ecgfounder")
    _check_one(x, fs, "ecgfounder")


def test_user_presets_one_record(user_presets):
    x = _records(4, n=2)
    x[0, 5, 2000:2100] = np.nan
    for name in user_presets:
        for r in x:
            _check_one(r, 500.0, name)


def test_leads_out_of_order_and_extra_leads():
    x = _records(5, n=2)
    perm = [0, 1, 2, 3, 5, 4, 6, 7, 8, 9, 10, 11]  # aVF before aVL (MIMIC-IV-ECG)
    names = tuple(STANDARD_12[i] for i in perm)
    for name in ("ecgfounder", "ecgfm"):
        for r in x:
            want = _check_one(r[perm], 500.0, name, leads=names)
            in_order = ecgcore.preprocess(Record(r, 500.0, STANDARD_12), name)
            np.testing.assert_array_equal(in_order, want)
            # extra leads are dropped, a repeated name takes its last row, as Record.conform does
            extra = Record(np.concatenate([r[perm], r[:2] * 3]), 500.0, names + ("V4R", "II"))
            ref = extra.conform(STANDARD_12).signal
            np.testing.assert_array_equal(ecgcore.preprocess(extra, name),
                                          _reference(ref, 500.0, P.get_preset(name)["steps"]))
            # limb leads to derive: conform's route
            eight = [0, 1, 6, 7, 8, 9, 10, 11]
            rec8 = Record(r[eight], 500.0, [STANDARD_12[i] for i in eight])
            np.testing.assert_array_equal(
                ecgcore.preprocess(rec8, name),
                _reference(rec8.conform(STANDARD_12).signal, 500.0, P.get_preset(name)["steps"]))


def test_reregistered_user_preset_is_never_served_stale():
    base = copy.deepcopy(_USER[0])
    base["name"] = "one_rereg"
    x = _records(6, n=1)[0]
    try:
        outs = []
        for v, (cut, length) in enumerate([(0.5, 1000), (2.0, 1000), (2.0, 1500)]):
            u = copy.deepcopy(base)
            u["steps"][1]["cutoff"] = cut
            u["steps"][4]["length"] = length
            P.register_preset(u, overwrite=v > 0)
            outs.append(_check_one(x, 500.0, "one_rereg"))
        assert not np.array_equal(outs[0], outs[1]) and outs[1].shape != outs[2].shape
    finally:
        P._REGISTRY.pop("one_rereg", None)


def test_builtin_preset_edited_in_place_is_followed():
    x = _records(7, n=1)[0]
    saved = copy.deepcopy(P.BUILTIN_PRESETS["ecgfounder"])
    try:
        before = _check_one(x, 500.0, "ecgfounder")
        P.BUILTIN_PRESETS["ecgfounder"]["steps"][3]["freq"] = 60.0
        P.BUILTIN_PRESETS["ecgfounder"]["steps"][5]["window_s"] = 0.3
        changed = _check_one(x, 500.0, "ecgfounder")
        assert not np.array_equal(before, changed)
        P.BUILTIN_PRESETS["ecgfounder"]["steps"][6]["eps"] = 1.0
        assert not np.array_equal(_check_one(x, 500.0, "ecgfounder"), changed)
    finally:
        P.BUILTIN_PRESETS["ecgfounder"] = saved
    np.testing.assert_array_equal(ecgcore.preprocess(Record(x, 500.0, STANDARD_12), "ecgfounder"),
                                  before)


def test_step_list_and_mapping_changed_between_calls():
    x = _records(8, n=1)
    # a step list edited in place between calls (how the pipeline worker passes steps)
    steps = P.get_preset("ecgfounder")["steps"]
    first = P._run_steps(x, 500.0, steps)[0]
    np.testing.assert_array_equal(first, _reference(x[0], 500.0, steps))
    steps[3]["q"] = 10.0
    steps[5]["window_s"] = 0.5
    second = P._run_steps(x, 500.0, steps)[0]
    np.testing.assert_array_equal(second, _reference(x[0], 500.0, steps))
    assert not np.array_equal(first, second)
    # values equal under == but not the same: the zero sign of a fill value reaches the output
    fill = P.validate_preset({"name": "fill", "steps": [{"op": "nan_to_num", "value": 0.0},
                                                       {"op": "crop_or_pad", "length": 5000}]})
    steps = fill["steps"]
    y = x.copy()
    y[0, 2, 10:20] = np.nan
    assert not np.signbit(P._run_steps(y, 500.0, steps)[0, 0, 2, 10:20]).any()
    steps[0]["value"] = -0.0
    assert np.signbit(P._run_steps(y, 500.0, steps)[0, 0, 2, 10:20]).all()
    # one mapping object passed again after a change
    m = copy.deepcopy(_USER[2])
    m["name"] = "one_mapping"
    rec = Record(x[0], 500.0, STANDARD_12)
    a = ecgcore.preprocess(rec, m)
    m["steps"][5]["window_s"] = 0.2
    b = ecgcore.preprocess(rec, m)
    np.testing.assert_array_equal(b, _reference(x[0], 500.0, P.validate_preset(m)["steps"]))
    assert not np.array_equal(a, b)


def test_dict_preset_reused_is_validated_again_when_changed():
    # a dict preset is validated once while it keeps its content; a change that
    # compares equal but validates differently (5000 -> 5000.0) is still seen
    x = _records(10, n=1)[0]
    rec = Record(x, 500.0, STANDARD_12)
    m = copy.deepcopy(_USER[2])
    m["name"] = "one_dict"
    first = ecgcore.preprocess(rec, m)
    np.testing.assert_array_equal(first, _reference(x, 500.0, P.validate_preset(m)["steps"]))
    m["steps"][3]["length"] = 5000.0
    with pytest.raises(ConfigError, match="'length' must be a positive integer"):
        ecgcore.preprocess(rec, m)
    m["steps"][3]["length"] = 5000
    np.testing.assert_array_equal(ecgcore.preprocess(rec, m), first)
    # leads reordered in the dict: rows follow the new order
    m["leads"] = list(STANDARD_12)[::-1]
    np.testing.assert_array_equal(ecgcore.preprocess(rec, m),
                                  _reference(x[::-1], 500.0, P.validate_preset(m)["steps"]))
    m["output_dtype"] = "float16"
    assert ecgcore.preprocess(rec, m).dtype == np.float16


def test_errors_keep_their_order():
    x = _records(9, n=1)[0]
    bad_lp = {"name": "one_badlp", "steps": [{"op": "nan_to_num"}, {"op": "lowpass", "cutoff": 300},
                                             {"op": "zscore"}]}
    for _ in range(2):  # the design fails when scheduled and again, in place, when run
        with pytest.raises(PreprocessError, match="cut-off 300"):
            ecgcore.preprocess(Record(x, 500.0, STANDARD_12), bad_lp)
    after_seg = {"name": "one_afterseg", "steps": [{"op": "segment", "length": 1000},
                                                   {"op": "zscore"}]}
    with pytest.raises(ConfigError, match="after segmentation"):
        ecgcore.preprocess(Record(x, 500.0, STANDARD_12), after_seg)
    # a record too short for the segment fails there, before the unsupported step
    with pytest.raises(PreprocessError, match="shorter than one 1000-sample segment"):
        ecgcore.preprocess(Record(x[:, :500], 500.0, STANDARD_12), after_seg)
    # a step list that skipped validation (how the pipeline worker may pass one): a value
    # that does not convert fails at its own step, after the steps ahead of it
    raw = [{"op": "notch", "freq": 50.0, "q": 30.0, "zero_phase": True},
           {"op": "median_baseline", "window_s": "abc"}]
    for _ in range(2):
        with pytest.raises(ValueError, match="could not convert string to float: 'abc'"):
            P._run_steps(x[None], 500.0, raw)
    with pytest.raises(PreprocessError, match="too short for zero-phase filtering"):
        P._run_steps(x[None, :, :5], 500.0, raw)
    # the fused z-score + segment checks the length before the kernel runs
    fused = {"name": "one_fused", "steps": [{"op": "zscore", "scope": "record"},
                                           {"op": "segment", "length": 5000}]}
    with pytest.raises(PreprocessError, match="shorter than one 5000-sample segment"):
        ecgcore.preprocess(Record(x[:, :4000], 500.0, STANDARD_12), fused)


def test_finite_check_on_one_record():
    y = np.zeros((1, 12, 50), np.float32)
    assert P._finite_after_filters(y)
    for v in (np.nan, np.inf, -np.inf):
        z = y.copy()
        z[0, 11, 0] = v
        assert not P._finite_after_filters(z)
        assert not P._finite_after_filters(z.astype(np.float64))
        z[0, 11, 0] = 0
        z[0, 11, 1] = v  # only the first sample is read: the recursion carries it there
        assert P._finite_after_filters(z)


def test_real_records(shared_data):
    paths = [shared_path("data", "ludb", "1.hea"), shared_path("data", "ptbxl", "00001_lr.hea"),
             shared_path("data", "ge_muse", "braveheart_example1.xml")]
    for path in paths:
        rec = ecgcore.read(path)
        conf = rec.conform(STANDARD_12)
        for name in ("ecgfounder", "ccta", "ecgfm"):
            want = _reference(conf.signal, conf.fs, P.get_preset(name)["steps"])
            np.testing.assert_array_equal(ecgcore.preprocess(rec, name), want)
            rev = Record(rec.signal[::-1].copy(), rec.fs, rec.leads[::-1], source=rec.source)
            np.testing.assert_array_equal(ecgcore.preprocess(rev, name), want)

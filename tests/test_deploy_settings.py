"""A model file written from a training run predicts exactly as the run's best.pt.

``ecgcore train`` standardises regression targets and clinical variables and picks
thresholds on validation; these live in ``best.pt``. A ``.safetensors`` written from
the run (its own ``best.safetensors``, ``ecgcore convert-checkpoint``, or
``models.save`` of a model created from best.pt) must carry them, or a regression
head would answer in standardised units.
"""

import json
import struct

import numpy as np
import pytest

import ecgcore
from ecgcore import models
from ecgcore.errors import CheckpointError
from ecgcore.models.classifier import ECGClassifier
from ecgcore.models.train import train
from ecgcore.models.train.config import validate


def _cfg():
    return validate({"seed": 5, "threads": 1,
                     "model": {"name": "fcn_lvh_small", "options": {"n_clinical": 0, "conv_dropout": 0.0,
                                                                    "lin_dropout": 0.0}},
                     "data": {"source": "simulated", "simulate": {"n": 24, "seed": 2}, "batch_size": 8},
                     "tasks": [{"name": "qrs_duration_ms"}, {"name": "tachycardia", "type": "binary"}],
                     "optim": {"name": "adam", "lr": 0.01},
                     "train": {"epochs": 2, "tensorboard": False, "progress": False}})


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("deploy") / "run"
    summary = train(_cfg(), out, progress=False)
    recs = ecgcore.simulate(n=3, fs=500, duration=10, seed=11)
    return out, summary, list(recs) if isinstance(recs, (list, tuple)) else [recs]


def _header(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        return json.loads(f.read(n))["__metadata__"]


def _predictions(clf, recs):
    out = clf.predict_batch(recs)
    return [{t: (r[t]["value"] if "value" in r[t] else r[t]["probability"]) for t in r} for r in out]


def test_model_files_of_a_run_predict_as_its_best_pt(run, tmp_path):
    out, summary, recs = run
    best_pt = out / "checkpoints" / "best.pt"
    want = _predictions(ECGClassifier(best_pt), recs)
    # the regression output is in ms, not standardised units: the target scaler was applied
    scaler = summary["target_scaler"]
    assert scaler["std"][0] > 1 and all(40 < p["qrs_duration_ms"] < 300 for p in want)
    # the run's own best.safetensors, convert-checkpoint, and create(pretrained=best.pt) + save
    conv = tmp_path / "conv.safetensors"
    from ecgcore.cli import main
    assert main(["convert-checkpoint", str(best_pt), str(conv)]) == 0
    api = tmp_path / "api.safetensors"
    m = models.create("fcn_lvh_small", pretrained=best_pt)
    models.save(m, api)
    for path in (out / "best.safetensors", conv, api):
        dep = json.loads(_header(path)["deploy"])
        assert dep["target_scaler"] == scaler and dep["preset"]["name"] == "lvh"
        clf = ECGClassifier(path)
        got = _predictions(clf, recs)
        for g, w in zip(got, want):
            assert g.keys() == w.keys()
            for k in w:
                assert g[k] == pytest.approx(w[k], rel=1e-6, abs=1e-6), (path.name, k)
        # thresholds chosen on validation come along too
        assert ECGClassifier(path, threshold="checkpoint").thresholds == \
            ECGClassifier(best_pt, threshold="checkpoint").thresholds


def test_plain_models_carry_no_settings_and_a_new_head_drops_them(run, tmp_path):
    out, _, recs = run
    with pytest.raises(ecgcore.ConfigError, match="qrs_duration_ms"):   # not a bare TypeError
        models.create("fcn_lvh_small", heads={"qrs_duration_ms": 1})
    fresh = models.create("fcn_lvh_small", heads={"qrs_duration_ms": "regression"})
    models.save(fresh, tmp_path / "fresh.safetensors")
    assert "deploy" not in _header(tmp_path / "fresh.safetensors")
    assert ECGClassifier(tmp_path / "fresh.safetensors").ck is None
    # fine-tuning a new head on the run's backbone: the old scalers do not describe it
    new_head = models.create("fcn_lvh_small", pretrained=out / "best.safetensors", heads={"lvm": "regression"})
    assert new_head.deploy is None
    same = models.create("fcn_lvh_small", pretrained=out / "best.safetensors")
    assert same.deploy is not None and same.deploy["config"]["tasks"][0]["name"] == "qrs_duration_ms"


def test_damaged_settings_are_refused_with_the_file_named(run, tmp_path):
    out, _, _ = run
    m = models.create("fcn_lvh_small", pretrained=out / "best.safetensors")
    path = tmp_path / "bad.safetensors"
    models.save(m, path, deploy={"format": "something-else"})
    with pytest.raises(CheckpointError, match="deploy") as e:
        models.load(path)
    assert "bad.safetensors" in str(e.value)

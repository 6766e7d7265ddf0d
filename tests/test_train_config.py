"""Training config: schema validation names the offending key; overrides; shipped configs validate."""

from __future__ import annotations

import glob
import os

import numpy as np
import pytest

pytest.importorskip("torch")

from ecgcore.errors import ConfigError
from ecgcore.models.train.config import apply_overrides, load_config, validate

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BASE = {"model": {"name": "fcn_lvh_small"}, "data": {"dataset": "x"},
        "tasks": [{"name": "qrs", "type": "regression"}, {"name": "af", "type": "binary"}]}


def _err(cfg):
    with pytest.raises(ConfigError) as ei:
        validate(cfg)
    return str(ei.value)


def test_defaults_are_filled_and_required_keys_enforced():
    cfg = validate(BASE)
    assert cfg["optim"]["name"] == "adam" and cfg["data"]["split"]["fractions"] == [0.6, 0.2, 0.2]
    assert cfg["tasks"][1]["loss"] == "auto" and cfg["tasks"][0]["standardize"] is True
    assert "model.name" in _err({"data": {"dataset": "x"}, "tasks": [{"name": "a"}]})
    assert "tasks" in _err({"model": {"name": "m"}, "data": {"dataset": "x"}})


@pytest.mark.parametrize("patch, key", [
    ({"optim": {"lrr": 1}}, "optim.'lrr'"),
    ({"bogus": 1}, "'bogus'"),
    ({"optim": {"lr": "fast"}}, "optim.lr"),
    ({"train": {"epochs": 2.5}}, "train.epochs"),
    ({"train": {"epochs": True}}, "train.epochs"),
    ({"optim": {"name": "adagrad"}}, "optim.name"),
    ({"data": {"dataset": "x", "split": {"fractions": [0.5, 0.5, 0.5]}}}, "data.split.fractions"),
    ({"data": {"dataset": "x", "augment": {"noize": 0.1}}}, "data.augment.'noize'"),
])
def test_bad_keys_and_types_name_the_key(patch, key):
    cfg = dict(BASE)
    cfg.update(patch)
    assert key in _err(cfg)


def test_list_items_are_addressed_by_index():
    cfg = dict(BASE, tasks=[{"name": "a"}, {"name": "b", "los": "mse"}])
    assert "tasks[1].'los'" in _err(cfg)
    cfg = dict(BASE, tasks=[{"name": "a", "type": "binary", "loss": "mse"}])
    assert "tasks[0].loss" in _err(cfg)
    cfg = dict(BASE, tasks=[{"name": "a", "type": "regression", "pos_weight": 2.0}])
    assert "tasks[0].pos_weight" in _err(cfg)
    cfg = dict(BASE, phases=[{"name": "p", "epochs": 1, "scheduler": {"type": "plateau", "patiense": 2}}])
    assert "phases[0].scheduler.'patiense'" in _err(cfg)


def test_set_overrides_parse_yaml_values():
    raw = apply_overrides(BASE, ["optim.lr=1e-4", "tasks.0.loss=huber", "train.early_stopping=5",
                                 "data.augment.scale=[0.9, 1.1]"])
    cfg = validate(raw)
    assert cfg["optim"]["lr"] == pytest.approx(1e-4) and cfg["tasks"][0]["loss"] == "huber"
    assert cfg["train"]["early_stopping"] == 5 and cfg["data"]["augment"]["scale"] == [0.9, 1.1]
    with pytest.raises(ConfigError, match="tasks"):
        apply_overrides(BASE, ["tasks.7.loss=mse"])
    with pytest.raises(ConfigError, match="key=value"):
        apply_overrides(BASE, ["optim.lr"])


def test_shipped_configs_validate():
    paths = sorted(glob.glob(os.path.join(ROOT, "configs", "*.yaml")))
    names = {os.path.basename(p) for p in paths}
    assert {"smoke.yaml", "ac_cmr.yaml", "dl_af.yaml", "lvh_fcn.yaml", "lvh_fcn_exclude_meta.yaml",
            "lvh_resnet34.yaml", "lvh_external_tune.yaml", "ccta_net1d.yaml"} <= names
    for p in paths:
        cfg = load_config(p)
        assert cfg["tasks"], p


def test_shipped_configs_follow_the_fact_sheets():
    c = load_config(os.path.join(ROOT, "configs", "ac_cmr.yaml"))
    assert [t["name"] for t in c["tasks"]] == ["LA_max", "LA_min", "LAEF", "LA_LV_ratio"]
    assert [p["epochs"] for p in c["phases"]] == [10, 100]
    assert c["phases"][0]["trainable"] == ["head"] and c["phases"][0]["select_best"] is False
    assert c["phases"][1]["lr"] == {"backbone": 1e-5, "head": 1e-3}
    assert c["optim"]["clip_grad_norm"] == 1.0 and c["data"]["split"]["fractions"] == [0.6, 0.2, 0.2]
    c = load_config(os.path.join(ROOT, "configs", "ccta_net1d.yaml"))
    assert [t["name"] for t in c["tasks"]] == ["RCA", "LM", "LAD", "LCx"]
    assert c["loss"]["weighting"] == "uncertainty" and c["loss"]["pcgrad"] and c["optim"]["name"] == "adamw"
    assert c["data"]["split"]["method"] == "kfold" and c["data"]["split"]["folds"] == 5
    assert c["train"]["monitor"] == "val_macro_auroc"
    c = load_config(os.path.join(ROOT, "configs", "lvh_external_tune.yaml"))
    tr = [p["trainable"] for p in c["phases"]]
    assert tr == [["head"], ["head", "in3"], ["head", "in3", "in2"], ["head", "in3", "in2", "in1"]]
    assert c["model"]["freeze_bn"] is True
    c = load_config(os.path.join(ROOT, "configs", "lvh_fcn.yaml"))
    assert c["tasks"][0]["loss"] == "logcosh" and len(c["data"]["clinical"]) == 16
    assert load_config(os.path.join(ROOT, "configs", "lvh_fcn_exclude_meta.yaml"))["data"]["clinical"] == []


def test_load_config_reports_file_and_key(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("model: {name: m}\ndata: {dataset: d}\ntasks: [{name: a}]\noptim: {lr: [1]}\n")
    with pytest.raises(ConfigError) as ei:
        load_config(p)
    assert str(p) in str(ei.value) and "optim.lr" in str(ei.value)
    p.write_text("model: [unclosed\n")
    with pytest.raises(ConfigError, match="YAML"):
        load_config(p)
    assert np.isfinite(validate(BASE)["optim"]["lr"])


def test_attention_aggregation_options():
    cfg = validate(dict(BASE, data={"dataset": "x", "aggregate": "attention"}))
    assert cfg["data"]["attention"] == {"hidden": 128, "gated": False, "max_segments": None}
    cfg = validate(apply_overrides(BASE, ["data.aggregate=attention", "data.attention.gated=true",
                                          "data.attention.max_segments=4"]))
    assert cfg["data"]["attention"]["gated"] is True and cfg["data"]["attention"]["max_segments"] == 4
    assert "data.aggregate" in _err(dict(BASE, data={"dataset": "x", "aggregate": "median"}))
    assert "data.attention.hidden" in _err(dict(BASE, data={"dataset": "x", "attention": {"hidden": 0}}))
    assert "data.attention.max_segments" in _err(dict(BASE, data={"dataset": "x",
                                                                  "attention": {"max_segments": 0}}))
    assert "data.attention.'heads'" in _err(dict(BASE, data={"dataset": "x", "attention": {"heads": 2}}))

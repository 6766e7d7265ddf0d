"""Training configuration: YAML schema, defaults, ``--set`` overrides and validation.

A config is a nested dict read from YAML. :func:`validate` checks it against
:data:`SCHEMA` *before* anything is built or trained: an unknown key, a wrong
type or a value outside its choices raises :class:`ecgcore.errors.ConfigError`
naming the offending key path (``optim.lr``, ``tasks[1].loss``), so a typo
never surfaces hours into a run. Defaults are filled in, so the validated
dict is the complete description of the run and is stored in checkpoints.
"""

from __future__ import annotations

import copy
import os

from ecgcore.errors import ConfigError

__all__ = ["SCHEMA", "load_config", "validate", "apply_overrides", "defaults"]

_REQ = object()     # marks a required key
_NUM = (int, float)

# A field is (types, default, choices-or-None); a nested dict is a sub-schema;
# ("list", item_schema, default) is a list of sub-dicts.
_SCHED = {
    "type": (str, "none", ("none", "plateau", "warmup_cosine", "cosine", "step")),
    "factor": (_NUM, 0.1, None), "patience": (int, 10, None), "min_lr": (_NUM, 0.0, None),
    "mode": (str, "auto", ("auto", "min", "max")),
    "warmup_frac": (_NUM, 0.1, None), "floor": (_NUM, 0.0, None),
    "step_size": (int, 10, None), "gamma": (_NUM, 0.1, None),
}
_TASK = {
    "name": (str, _REQ, None), "column": ((str, type(None)), None, None),
    "type": (str, "regression", ("regression", "binary", "multiclass")),
    "n_classes": (int, 2, None),
    "loss": (str, "auto", ("auto", "mse", "logcosh", "huber", "l1", "bce", "ce")),
    "huber_delta": (_NUM, 1.5, None),
    "standardize": (bool, True, None),
    "pos_weight": ((str, int, float, type(None)), None, None),
    "weight": (_NUM, 1.0, None),
    "threshold_rule": (str, "youden", ("youden", "sensitivity", "specificity", "f1")),
    "threshold_target": ((int, float, type(None)), None, None),
}
_PHASE = {
    "name": (str, _REQ, None), "epochs": (int, _REQ, None),
    "trainable": (list, ["all"], None),
    "lr": ((int, float, dict, type(None)), None, None),
    "weight_decay": ((int, float, dict, type(None)), None, None),
    "scheduler": ((dict, type(None)), None, None),
    "early_stopping": ((int, type(None)), None, None),
    "select_best": (bool, True, None),
    "reload_best": (bool, False, None),
    # DL-AtCM ran the frozen backbone under no_grad; here frozen parameters have requires_grad=False,
    # so a frozen prefix of the network records no autograd graph whatever this flag says
    "frozen_no_grad": (bool, True, None),
}
SCHEMA = {
    "name": (str, "run", None),
    "description": (str, "", None),
    "seed": (int, 0, None),
    "deterministic": (bool, True, None),
    "device": (str, "auto", ("auto", "cpu", "cuda")),
    "threads": ((int, type(None)), None, None),
    "model": {
        "name": (str, _REQ, None),
        "pretrained": ((str, type(None)), None, None),
        "options": (dict, {}, None),
        "heads": ((int, dict, type(None)), None, None),
        "preset": ((str, type(None)), None, None),
        "freeze_bn": (bool, False, None),
    },
    "data": {
        "source": (str, "dataset", ("dataset", "simulated")),
        "dataset": ((str, type(None)), None, None),
        "labels": ((str, type(None)), None, None),
        "id_col": (str, "record_id", None),
        "patient_col": ((str, type(None)), None, None),
        "clinical": (list, [], None),
        "clinical_impute": (str, "median", ("median", "none")),
        "clinical_scale": (str, "minmax", ("minmax", "zscore", "none")),
        "preset": ((str, dict, type(None)), None, None),
        "simulate": {
            "n": (int, 200, None), "seed": (int, 0, None), "duration": (_NUM, 10.0, None),
            "heart_rate": (list, [50, 140], None), "rhythm": (str, "mixed", None),
            "noise": (str, "mild", None),
        },
        "split": {
            "method": (str, "random", ("random", "column", "kfold")),
            "column": (str, "split", None),
            "fractions": (list, [0.6, 0.2, 0.2], None),
            "seed": (int, 42, None),
            "folds": (int, 5, None), "fold": (int, 0, None),
            "stratify": (bool, True, None),
            "val_fraction": (_NUM, 0.2, None),
        },
        "batch_size": (int, 32, None),
        "eval_batch_size": (int, 64, None),
        "num_workers": (int, 0, None),
        "aggregate": (str, "mean", ("mean", "max", "attention")),
        # data.aggregate: attention - batches of records (batch_size counts records), segment
        # features pooled by attention (Ilse et al. 2018) before the head
        "attention": {
            "hidden": (int, 128, None), "gated": (bool, False, None),
            "max_segments": ((int, type(None)), None, None),
        },
        "augment": {
            "crop": (int, 0, None), "scale": ((list, type(None)), None, None),
            "noise": (_NUM, 0.0, None), "shift": (_NUM, 0.0, None),
            "mask": (_NUM, 0.0, None), "paired": (bool, False, None),
        },
    },
    "tasks": ("list", _TASK, _REQ),
    "loss": {
        "weighting": (str, "mean", ("mean", "sum", "uncertainty")),
        "uncertainty_form": (str, "ccta", ("ccta", "kendall")),
        "pcgrad": (bool, False, None),
        "pcgrad_order": (str, "fixed", ("fixed", "random")),
    },
    "optim": {
        "name": (str, "adam", ("adam", "adamw", "sgd")),
        "lr": (_NUM, 1e-3, None), "head_lr": ((int, float, type(None)), None, None),
        "weight_decay": (_NUM, 0.0, None), "momentum": (_NUM, 0.9, None),
        "betas": (list, [0.9, 0.999], None),
        "clip_grad_norm": ((int, float, type(None)), None, None),
        "amp": (bool, True, None),
    },
    "scheduler": _SCHED,
    "train": {
        "epochs": (int, 10, None),
        "early_stopping": (int, 0, None),
        "monitor": (str, "val_loss", None),
        "mode": (str, "auto", ("auto", "min", "max")),
        "max_steps_per_epoch": ((int, type(None)), None, None),
        "progress": (bool, True, None),
        "tensorboard": (bool, True, None),
        "save_every_epoch": (bool, True, None),
    },
    "phases": ("list", _PHASE, []),
    "evaluate": {
        "n_boot": (int, 1000, None), "figures": (bool, False, None),
        "subgroups": (list, [], None), "split": (str, "test", ("test", "val")),
    },
}


def _tname(t) -> str:
    if isinstance(t, tuple):
        return " or ".join(_tname(x) for x in t)
    return {type(None): "null", int: "int", float: "float", str: "str", bool: "bool",
            list: "list", dict: "mapping"}.get(t, t.__name__)


def _check_type(value, types, path):
    ts = types if isinstance(types, tuple) else (types,)
    if isinstance(value, bool) and bool not in ts:   # bool is an int subclass: refuse it for numbers
        raise ConfigError(f"{path}: expected {_tname(types)}, got bool {value!r}")
    if float in ts and isinstance(value, str) and str not in ts:
        try:  # YAML 1.1 reads 1e-4 (no dot) as a string
            return float(value)
        except ValueError:
            pass
    if float in ts and isinstance(value, int) and not isinstance(value, bool):
        return float(value) if int not in ts else value
    if not isinstance(value, ts):
        raise ConfigError(f"{path}: expected {_tname(types)}, got {type(value).__name__} {value!r}")
    return value


def _validate(cfg, schema, path) -> dict:
    if not isinstance(cfg, dict):
        raise ConfigError(f"{path or 'config'}: expected a mapping, got {type(cfg).__name__}")
    unknown = [k for k in cfg if k not in schema]
    if unknown:
        where = f"{path}." if path else ""
        raise ConfigError(f"unknown key {where}{unknown[0]!r}; known keys here: {', '.join(sorted(schema))}")
    out = {}
    for key, spec in schema.items():
        p = f"{path}.{key}" if path else key
        if isinstance(spec, dict):
            out[key] = _validate(cfg.get(key) or {}, spec, p)
        elif spec[0] == "list":
            _, item, default = spec
            if key not in cfg or cfg[key] is None:
                if default is _REQ:
                    raise ConfigError(f"{p}: required key is missing")
                out[key] = copy.deepcopy(default)
                continue
            if not isinstance(cfg[key], list):
                raise ConfigError(f"{p}: expected a list, got {type(cfg[key]).__name__}")
            out[key] = [_validate(v, item, f"{p}[{i}]") for i, v in enumerate(cfg[key])]
        else:
            types, default, choices = spec
            if key not in cfg:
                if default is _REQ:
                    raise ConfigError(f"{p}: required key is missing")
                out[key] = copy.deepcopy(default)
                continue
            v = _check_type(cfg[key], types, p)
            if choices is not None and v not in choices:
                raise ConfigError(f"{p}: {v!r} is not one of {', '.join(map(str, choices))}")
            out[key] = v
    return out


def _semantic(cfg: dict) -> None:
    """Cross-field checks that the schema alone cannot express."""
    d = cfg["data"]
    if d["source"] == "dataset" and not d["dataset"]:
        raise ConfigError("data.dataset: required when data.source is 'dataset'")
    names = [t["name"] for t in cfg["tasks"]]
    if not names:
        raise ConfigError("tasks: at least one task is needed")
    if len(set(names)) != len(names):
        raise ConfigError(f"tasks: duplicate task names {names}")
    for i, t in enumerate(cfg["tasks"]):
        kind, loss = t["type"], t["loss"]
        ok = {"regression": ("auto", "mse", "logcosh", "huber", "l1"), "binary": ("auto", "bce"),
              "multiclass": ("auto", "ce")}[kind]
        if loss not in ok:
            raise ConfigError(f"tasks[{i}].loss: {loss!r} does not fit a {kind} task (use {', '.join(ok)})")
        pw = t["pos_weight"]
        if pw is not None:
            if kind != "binary":
                raise ConfigError(f"tasks[{i}].pos_weight: only binary tasks take a pos_weight")
            if isinstance(pw, str) and pw != "auto":
                raise ConfigError(f"tasks[{i}].pos_weight: must be 'auto' (n_neg/n_pos on the training "
                                  f"split) or a number, not {pw!r}")
            if not isinstance(pw, str) and pw <= 0:
                raise ConfigError(f"tasks[{i}].pos_weight: must be positive")
        if kind == "multiclass" and t["n_classes"] < 2:
            raise ConfigError(f"tasks[{i}].n_classes: a multiclass task needs at least 2 classes")
    fr = d["split"]["fractions"]
    if len(fr) != 3 or any(not isinstance(f, (int, float)) or f < 0 for f in fr) or abs(sum(fr) - 1) > 1e-6:
        raise ConfigError(f"data.split.fractions: need three non-negative numbers summing to 1, got {fr}")
    if d["split"]["method"] == "kfold" and not 0 <= d["split"]["fold"] < d["split"]["folds"]:
        raise ConfigError(f"data.split.fold: must be in 0..{d['split']['folds'] - 1}")
    sc = d["augment"]["scale"]
    if sc is not None and (len(sc) != 2 or not all(isinstance(v, (int, float)) for v in sc)):
        raise ConfigError(f"data.augment.scale: need [low, high], got {sc}")
    for key in ("batch_size", "eval_batch_size"):
        if d[key] < 1:
            raise ConfigError(f"data.{key}: must be >= 1")
    att = d["attention"]
    if att["hidden"] < 1:
        raise ConfigError(f"data.attention.hidden: must be >= 1, got {att['hidden']}")
    if att["max_segments"] is not None and att["max_segments"] < 1:
        raise ConfigError(f"data.attention.max_segments: must be >= 1 or null, got {att['max_segments']}")
    if cfg["optim"]["lr"] <= 0:
        raise ConfigError("optim.lr: must be positive")
    # counts where a negative number would be silently read as something else (a negative
    # early_stopping stopped every run after its first epoch; n_boot 0 failed only in evaluate)
    tr = cfg["train"]
    for key, low in (("epochs", 0), ("early_stopping", 0)):
        if tr[key] < low:
            raise ConfigError(f"train.{key}: must be >= {low}, got {tr[key]}")
    if tr["max_steps_per_epoch"] is not None and tr["max_steps_per_epoch"] < 1:
        raise ConfigError(f"train.max_steps_per_epoch: must be >= 1 or null, got {tr['max_steps_per_epoch']}")
    if cfg["evaluate"]["n_boot"] < 1:
        raise ConfigError(f"evaluate.n_boot: must be >= 1 (bootstrap resamples), got {cfg['evaluate']['n_boot']}")
    if cfg["threads"] is not None and cfg["threads"] < 0:
        raise ConfigError(f"threads: must be >= 0 (0 or null: torch's default), got {cfg['threads']}")
    if cfg["loss"]["pcgrad"] and len(cfg["tasks"]) < 2:
        raise ConfigError("loss.pcgrad: needs at least two tasks")
    for i, ph in enumerate(cfg["phases"]):
        if ph["scheduler"] is not None:
            ph["scheduler"] = _validate(ph["scheduler"], _SCHED, f"phases[{i}].scheduler")
        for key in ("lr", "weight_decay"):
            v = ph[key]
            if isinstance(v, dict):
                for k2, x in v.items():
                    if isinstance(x, bool) or not isinstance(x, (int, float)):
                        raise ConfigError(f"phases[{i}].{key}.{k2}: expected a number, got {x!r}")
        for j, tr in enumerate(ph["trainable"]):
            if not isinstance(tr, str):
                raise ConfigError(f"phases[{i}].trainable[{j}]: expected a module name, got {tr!r}")
        if ph["epochs"] < 0:
            raise ConfigError(f"phases[{i}].epochs: must be >= 0")
        if ph["early_stopping"] is not None and ph["early_stopping"] < 0:
            raise ConfigError(f"phases[{i}].early_stopping: must be >= 0 or null, got {ph['early_stopping']}")
    for j, c in enumerate(d["clinical"]):
        if not isinstance(c, str):
            raise ConfigError(f"data.clinical[{j}]: expected a column name, got {c!r}")


def validate(cfg: dict) -> dict:
    """Check ``cfg`` against :data:`SCHEMA`; return a complete copy with defaults filled in."""
    out = _validate(copy.deepcopy(cfg), SCHEMA, "")
    _semantic(out)
    return out


def defaults() -> dict:
    """The schema's defaults (with placeholder required fields) as a plain dict, for documentation."""
    return validate({"model": {"name": "MODEL"}, "data": {"dataset": "DATASET"},
                     "tasks": [{"name": "TASK"}]})


def _parse_value(text: str):
    import yaml
    try:
        v = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    if isinstance(v, str):  # YAML 1.1 reads '1e-4' (no dot) as a string; a number is meant
        try:
            return float(v) if v.strip().lower() not in ("nan", "inf", "-inf") else v
        except ValueError:
            return v
    return v


def apply_overrides(cfg: dict, overrides) -> dict:
    """Apply ``key.sub=value`` strings (values parsed as YAML) to a raw config.

    List items are addressed by index: ``tasks.0.loss=huber``.
    """
    cfg = copy.deepcopy(cfg)
    for item in overrides or ():
        if "=" not in item:
            raise ConfigError(f"--set {item!r}: expected key=value")
        key, text = item.split("=", 1)
        parts = [p for p in key.strip().split(".") if p]
        if not parts:
            raise ConfigError(f"--set {item!r}: empty key")
        node = cfg
        for depth, part in enumerate(parts[:-1]):
            here = ".".join(parts[:depth + 1])
            if isinstance(node, list):
                if not part.isdigit() or int(part) >= len(node):
                    raise ConfigError(f"--set {key}: {here!r} is not an index of a {len(node)}-item list")
                node = node[int(part)]
            else:
                if part not in node or node[part] is None:
                    node[part] = {}
                node = node[part]
                if not isinstance(node, (dict, list)):
                    raise ConfigError(f"--set {key}: {here!r} is not a mapping")
        last = parts[-1]
        if isinstance(node, list):
            if not last.isdigit() or int(last) >= len(node):
                raise ConfigError(f"--set {key}: {last!r} is not an index of a {len(node)}-item list")
            node[int(last)] = _parse_value(text)
        else:
            node[last] = _parse_value(text)
    return cfg


def load_config(path, overrides=()) -> dict:
    """Read a YAML config, apply ``--set`` overrides, validate; paths are resolved against the file."""
    from ecgcore._yamlio import load_mapping
    path = os.fspath(path)
    raw = load_mapping(path, "config")
    raw = apply_overrides(raw, overrides)
    try:
        cfg = validate(raw)
    except ConfigError as exc:
        raise ConfigError(exc.reason if hasattr(exc, "reason") else str(exc), path) from None
    base = os.path.dirname(os.path.abspath(path))
    for key in ("dataset", "labels"):
        v = cfg["data"][key]
        if v and not os.path.isabs(v) and not os.path.exists(v) and os.path.exists(os.path.join(base, v)):
            cfg["data"][key] = os.path.join(base, v)
    return cfg

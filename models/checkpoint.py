"""Checkpoint reading, strict loading and ecgcore's own safetensors format.

Accepted files:

* official ECG-FM files written by the fairseq-signals trainer: a dict with
  ``cfg`` (the resolved Hydra config; the architecture is read from
  ``cfg['model']``) and ``model`` (the state dict), in the pretrained
  ``wav2vec2_cmsc`` or fine-tuned ``ecg_transformer_classifier`` layout, with
  the 2024 ``weight_g``/``weight_v`` or the current
  ``parametrizations.weight.original0/1`` weight-norm names.  ``model_path``
  in a fine-tuned cfg is never followed (all weights are in the file);
* ECGFounder ``.pth`` files: ``{'state_dict': ..., 'optimizer': ..., 'val_auroc':
  numpy scalar, ...}`` or a bare state dict (also the CCTA ``{'model', 'uw'}`` layout);
* DL-AtCM state dicts (``backbone.*`` + ``regression_heads.*``);
* ecgcore checkpoints: safetensors with the model name, its config and a
  SHA-256 of the tensor data in the header metadata, and, when the model came
  from ``ecgcore train``, its prediction settings (``deploy``: preset, tasks,
  target and clinical scalers, thresholds) as JSON;
* ecgcore training checkpoints (``best.pt`` / ``last.pt`` of ``ecgcore train``,
  format ``ecgcore-train/1``): the model is rebuilt from the stored
  ``model_spec`` (registry name, config, head spec) and ``model_state``; the
  optimiser, RNG and other training state in the file are ignored. A run with
  ``data.aggregate: attention`` is refused: its attention pool is not part of
  the registry model (use ``ecgcore predict`` with the checkpoint).

Security: ``torch.load`` always runs with ``weights_only=True``.  The only
extra globals allowed are numpy's scalar and dtype reconstructors, which the
ECGFounder recipe's ``val_auroc`` needs; anything else is refused.  Every key
and shape is checked before any weight is copied; a mismatch raises
:class:`ecgcore.errors.CheckpointError` listing missing, unexpected and
mis-shaped keys.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import struct
import zipfile

import numpy as np
import torch

from ecgcore._atomic import atomic_path
from ecgcore.errors import CheckpointError, ConfigError, WriteError

from .registry import ECGModel, model_entry

__all__ = ["read_checkpoint", "load_into", "save", "load", "detect_model", "check_state_dict", "deploy_settings"]

_FORMAT = "ecgcore-model-1"
_TRAIN_FORMAT = "ecgcore-train/1"    # ecgcore.models.train.checkpointing.FORMAT
_DEPLOY_FORMAT = "ecgcore-deploy/1"
# What a trained model needs at prediction time besides its weights (the keys of a training
# checkpoint that ECGClassifier and predict_records read): without the target scaler a
# regression head answers in standardised units, without the clinical scaler the fused
# variables are fed unscaled, without the preset the input is prepared differently.
_DEPLOY_KEYS = ("preset", "tasks", "label_columns", "output_layout", "target_scaler", "clinical_cols",
                "clinical_scaler", "thresholds", "best_epoch", "monitor")
_HASH_PLACEHOLDER = "0" * 64


def _numpy_safe_globals():
    import numpy as np
    allowed = [np.dtype]
    for name in ("Float64DType", "Float32DType", "Float16DType", "Int64DType", "Int32DType", "BoolDType"):
        t = getattr(getattr(np, "dtypes", None), name, None)
        if t is not None:
            allowed.append(t)
    core = getattr(np, "_core", None) or np.core
    scalar = core.multiarray.scalar
    # numpy 1.x pickles name it numpy.core.multiarray.scalar, numpy 2.x numpy._core.multiarray.scalar
    allowed += [scalar, (scalar, "numpy.core.multiarray.scalar")]
    return allowed


def _sniff(path: str) -> str:
    with open(path, "rb") as f:
        head = f.read(9)
    if len(head) < 9:
        raise CheckpointError("file is empty or truncated (fewer than 9 bytes)", path)
    if head[:4] == b"PK\x03\x04":
        return "torch-zip"
    n = struct.unpack("<Q", head[:8])[0]
    if head[8:9] == b"{" and n < os.path.getsize(path):
        return "safetensors"
    if head[:1] == b"\x80":
        return "torch-legacy"
    raise CheckpointError("not a PyTorch or safetensors checkpoint (unrecognised leading bytes)", path)


def _torch_load(path: str, kind: str):
    try:
        with torch.serialization.safe_globals(_numpy_safe_globals()):
            return torch.load(path, map_location="cpu", weights_only=True, mmap=(kind == "torch-zip"))
    except pickle.UnpicklingError as exc:
        msg = str(exc).split("\n")
        detail = next((m.strip() for m in msg if "Unsupported global" in m or "GLOBAL" in m), msg[0][:200])
        raise CheckpointError(f"refused to unpickle: the file holds objects other than tensors and plain "
                              f"containers ({detail}); ecgcore never loads arbitrary pickles", path) from None
    except (RuntimeError, EOFError, OSError, zipfile.BadZipFile, ValueError, KeyError, IndexError,
            struct.error, AttributeError, TypeError) as exc:
        raise CheckpointError(f"truncated or corrupt PyTorch checkpoint ({type(exc).__name__}: "
                              f"{str(exc).splitlines()[0][:200] if str(exc) else ''})", path) from None


def _data_sha256(path: str) -> str:
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        f.seek(8 + n)
        h = hashlib.sha256()
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


def _read_safetensors(path: str):
    from safetensors import safe_open
    try:
        with safe_open(path, framework="pt") as f:
            meta = f.metadata() or {}
            sd = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as exc:  # safetensors raises its own SafetensorError and OSError
        raise CheckpointError(f"truncated or corrupt safetensors file ({type(exc).__name__}: {exc})", path) from None
    info = None
    if meta.get("format") == _FORMAT:
        want = meta.get("sha256", "")
        got = _data_sha256(path)
        if want != got:
            raise CheckpointError(f"tensor data does not match the SHA-256 stored in the header "
                                  f"(stored {want[:16]}..., computed {got[:16]}...): the file was modified", path)
        try:
            info = {"name": meta["model"], "config": json.loads(meta["config"]),
                    "heads": json.loads(meta.get("heads", "null")),
                    "deploy": json.loads(meta.get("deploy", "null"))}
        except (KeyError, json.JSONDecodeError) as exc:
            raise CheckpointError(f"ecgcore header metadata is damaged ({exc})", path) from None
        dep = info["deploy"]
        if dep is not None and (not isinstance(dep, dict) or dep.get("format") != _DEPLOY_FORMAT
                                or not isinstance((dep.get("config") or {}).get("tasks"), list)):
            raise CheckpointError("ecgcore header metadata is damaged (its 'deploy' entry is not an "
                                  f"{_DEPLOY_FORMAT} mapping with config.tasks)", path)
    return sd, info


def read_checkpoint(path) -> dict:
    """Read a checkpoint file safely.

    Returns
    -------
    dict
        ``state_dict`` (name -> tensor, official names), ``cfg_model``
        (``cfg['model']`` of a fairseq file, else None), ``ecgcore`` (name,
        config and heads of an ecgcore file, else None), ``kind`` and ``extra``
        (other tensors, e.g. CCTA's ``uw``).
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise CheckpointError("checkpoint file not found", path)
    kind = _sniff(path)
    out = {"path": path, "kind": kind, "cfg_model": None, "ecgcore": None, "extra": {}}
    if kind == "safetensors":
        out["state_dict"], out["ecgcore"] = _read_safetensors(path)
        return out
    obj = _torch_load(path, kind)
    if not isinstance(obj, dict):
        raise CheckpointError(f"top level is a {type(obj).__name__}, not a dict", path)
    if obj.get("format") == _TRAIN_FORMAT:
        out["state_dict"], out["ecgcore"] = _from_training_checkpoint(obj, path)
        out["kind"] += "/ecgcore-train"
        return out
    if "model" in obj and "cfg" in obj:  # fairseq(-signals) trainer file
        sd = obj["model"]
        cfg = obj.get("cfg") or {}
        out["cfg_model"] = cfg.get("model") if isinstance(cfg, dict) else None
        out["kind"] += "/fairseq"
    elif "state_dict" in obj:  # ECGFounder recipe / Lightning
        sd = obj["state_dict"]
        out["kind"] += "/state_dict"
    elif "model" in obj and isinstance(obj["model"], dict) and not torch.is_tensor(obj["model"]):
        sd = obj["model"]  # CCTA {'model', 'uw'}
        out["extra"] = {k: v for k, v in obj.items() if k != "model"}
        out["kind"] += "/model"
    else:
        sd = obj
    if not isinstance(sd, dict) or not sd:
        raise CheckpointError("no state dict found (expected 'model', 'state_dict' or a dict of tensors)", path)
    bad = [k for k, v in sd.items() if not isinstance(k, str) or not torch.is_tensor(v)]
    if bad:
        raise CheckpointError(f"state dict has {len(bad)} entries that are not named tensors "
                              f"(e.g. {bad[:3]!r})", path)
    out["state_dict"] = {(k[len("module."):] if k.startswith("module.") else k): v for k, v in sd.items()}
    return out


def _from_training_checkpoint(obj: dict, path: str):
    """State dict and rebuild info of an ``ecgcore train`` checkpoint (already loaded weights-only)."""
    spec, sd = obj.get("model_spec"), obj.get("model_state")
    if not isinstance(spec, dict) or not isinstance(spec.get("name"), str) or not isinstance(sd, dict):
        raise CheckpointError(f"training checkpoint ({_TRAIN_FORMAT}) without a model_spec or model_state",
                              path)
    if not isinstance(spec.get("config"), dict):
        raise CheckpointError("training checkpoint: model_spec['config'] is not a dict", path)
    bad = [k for k, v in sd.items() if not isinstance(k, str) or not torch.is_tensor(v)]
    if bad:
        raise CheckpointError(f"training checkpoint: model_state has {len(bad)} entries that are not "
                              f"named tensors (e.g. {bad[:3]!r})", path)
    pool = [k for k in sd if k.startswith("segment_pool.")]
    if pool:
        # the attention pool combines segment features before the head: dropping it would silently
        # turn the model into a mean of per-segment heads, which is not what was trained
        raise CheckpointError("this training run pools segments with attention (data.aggregate: attention); "
                              f"its {len(pool)} segment_pool tensors are not part of the registry model "
                              f"{spec['name']!r}, so it cannot be converted to a plain model file: predict "
                              "with 'ecgcore predict --checkpoint' or ecgcore.ECGClassifier instead", path)
    try:
        model_entry(spec["name"])
    except ConfigError:
        raise CheckpointError(f"training checkpoint names model {spec['name']!r}, which is not in the "
                              f"registry", path) from None
    info = {"name": spec["name"], "config": dict(spec["config"]), "heads": spec.get("heads"),
            "source": _TRAIN_FORMAT, "epoch": obj.get("epoch"), "best_epoch": obj.get("best_epoch"),
            "deploy": deploy_settings(obj, path)}
    return {(k[len("module."):] if k.startswith("module.") else k): v for k, v in sd.items()}, info


def _jsonable(v):
    """numpy scalars/arrays and tuples as JSON types (training checkpoints hold a few)."""
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, np.ndarray):
        return v.tolist()
    if isinstance(v, np.generic):
        return v.item()
    return v


def deploy_settings(obj: dict, path: str = "") -> dict | None:
    """The prediction-time settings of an ``ecgcore train`` checkpoint, as a JSON-able dict.

    Stored in the header of a model file written from it (:func:`save`), so that
    :class:`ecgcore.ECGClassifier` on the converted ``.safetensors`` predicts exactly
    as on the ``best.pt`` it came from.
    """
    cfg = obj.get("config")
    if not isinstance(cfg, dict) or not isinstance(cfg.get("tasks"), list):
        return None
    data = cfg.get("data") if isinstance(cfg.get("data"), dict) else {}
    dep = {"format": _DEPLOY_FORMAT,
           "config": {"tasks": cfg["tasks"], "data": {"aggregate": data.get("aggregate", "mean")}}}
    dep.update({k: obj.get(k) for k in _DEPLOY_KEYS})
    dep = _jsonable(dep)
    try:
        json.dumps(dep)
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"training checkpoint: its prediction settings are not plain data ({exc})",
                              path) from None
    return dep


def detect_model(ck: dict) -> str:
    """Guess the registry name from a checkpoint read by :func:`read_checkpoint`."""
    if ck.get("ecgcore"):
        return ck["ecgcore"]["name"]
    keys = ck["state_dict"].keys()
    if ck.get("cfg_model") or any("feature_extractor.conv_layers" in k for k in keys):
        if any(k.startswith("backbone.") for k in keys):
            return "ecgfm_dlatcm"
        return "ecgfm"
    if "first_conv.conv.weight" in keys:
        w = ck["state_dict"]["first_conv.conv.weight"]
        return "ecgfounder_1lead" if w.shape[1] == 1 else "net1d"
    if "in1.0.weight" in keys:
        return "fcn_lvh"
    if "conv_stem.weight" in keys:
        return "efficientnet_b0"
    if "layer1.0.conv1.weight" in keys:
        w = ck["state_dict"]["layer1.0.conv1.weight"]
        return "resnet34_1d" if w.ndim == 3 else ("resnet34d" if "conv1.0.weight" in keys else "resnet50"
                                                  if "layer1.0.conv3.weight" in keys else "resnet34")
    raise CheckpointError("cannot tell which architecture this checkpoint holds; pass the model name",
                          ck.get("path"))


def _family_of(ck) -> str:
    try:
        return model_entry(detect_model(ck))["family"]
    except CheckpointError:
        return "unknown"


def _map_and_config(family: str, ck: dict, config: dict | None):
    """Official -> ecgcore key names, and the architecture options stored in or implied by the checkpoint."""
    sd = ck["state_dict"]
    arch = {}
    if family == "ecgfm":
        from . import ecgfm
        sd = ecgfm.map_official_keys(sd)
        if ck.get("cfg_model"):
            arch.update(ecgfm.config_from_cfg(ck["cfg_model"]))
        if config:  # a fixture-style config.json, a cfg["model"] dict or plain ECGFM options
            src = config.get("finetuned_model") or config.get("pretrained_model") or config
            arch.update(ecgfm.config_from_cfg(src))
            arch.update({k: src[k] for k in ("pos_conv_residual", "pretraining_params", "samples",
                                             "fixed_length") if k in src})
        if "head.fc.weight" in sd and "num_labels" not in arch:
            arch["num_labels"] = int(sd["head.fc.weight"].shape[0])
    elif family == "net1d":
        from . import net1d
        sd = net1d.map_official_keys(sd)
        if config:
            arch.update(net1d.config_from_json(config))
        for k, v in net1d.config_from_state(sd).items():
            arch.setdefault(k, v)
    elif family == "image":
        from . import image
        sd = image.map_official_keys(sd)
        arch.update(config or {})
    else:
        arch.update(config or {})
    return sd, arch


def check_state_dict(model: torch.nn.Module, sd: dict, *, ignore_prefixes=(), optional_prefixes=(),
                     path=None, name="model") -> None:
    """Raise CheckpointError unless ``sd`` has exactly the model's keys and shapes."""
    expected = {k: v for k, v in model.state_dict().items() if not k.startswith(tuple(ignore_prefixes) or ("\0",))}
    given = {k: v for k, v in sd.items() if not k.startswith(tuple(ignore_prefixes) or ("\0",))}
    missing = [k for k in expected if k not in given]
    unexpected = [k for k in given if k not in expected and not k.startswith(tuple(optional_prefixes) or ("\0",))]
    shapes = [f"{k}: checkpoint {tuple(given[k].shape)} vs model {tuple(expected[k].shape)}"
              for k in expected if k in given and tuple(given[k].shape) != tuple(expected[k].shape)]
    dtypes = [f"{k}: checkpoint {given[k].dtype} vs model {expected[k].dtype}"
              for k in expected if k in given and given[k].is_floating_point() != expected[k].is_floating_point()]
    if not (missing or unexpected or shapes or dtypes):
        return

    def lst(items, n=8):
        return ", ".join(items[:n]) + (f", ... ({len(items) - n} more)" if len(items) > n else "")
    parts = []
    if missing:
        parts.append(f"{len(missing)} missing keys: {lst(missing)}")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected keys: {lst(unexpected)}")
    if shapes:
        parts.append(f"{len(shapes)} mis-shaped keys: {lst(shapes, 6)}")
    if dtypes:
        parts.append(f"{len(dtypes)} keys of the wrong kind: {lst(dtypes, 6)}")
    contract = model.describe_contract() if isinstance(model, ECGModel) else ""
    hint = ""
    if missing and len(missing) == len(expected):
        hint = " (no key matches: is this a checkpoint of another architecture?)"
    raise CheckpointError(f"checkpoint does not match {name}{hint}: " + "; ".join(parts)
                          + (f". The model: {contract}" if contract else ""), path)


def load_into(name: str, path, *, heads=None, config: dict | None = None, **kwargs) -> ECGModel:
    """Build ``name`` with the architecture stored in (or implied by) ``path`` and load its weights strictly."""
    entry = model_entry(name)
    ck = read_checkpoint(path)
    family = entry["family"]
    head_from_file = heads is None
    if ck["ecgcore"] is not None:
        info = ck["ecgcore"]
        if model_entry(info["name"])["family"] != family:
            raise CheckpointError(f"this is an ecgcore checkpoint of {info['name']!r}, not of the "
                                  f"{family!r} family that {name!r} belongs to", ck["path"])
        sd = ck["state_dict"]
        arch = dict(info["config"])
        arch.update(config or {})
        if heads is None:
            heads = info["heads"]
    else:
        file_family = _family_of(ck)
        if file_family not in ("unknown", family):
            raise CheckpointError(f"this looks like a {file_family!r} checkpoint "
                                  f"({detect_model(ck)}), not one for {name!r}; "
                                  f"use create({detect_model(ck)!r}, pretrained=...)", ck["path"])
        sd, arch = _map_and_config(family, ck, config)
    arch.update(kwargs)
    try:
        model = entry["builder"](heads=heads, **arch)
    except TypeError as exc:
        raise ConfigError(f"{name}: invalid configuration from checkpoint/config ({exc})") from None
    model.model_name = name
    optional = ()
    if family == "ecgfm":
        from .ecgfm import OPTIONAL_KEYS
        optional = tuple(p for p in OPTIONAL_KEYS if not any(k.startswith(p) for k in model.state_dict()))
    # a backbone-only file (e.g. the ECG-FM pretrained file under DL-AtCM's heads): the head is new
    if head_from_file and not any(k.startswith("head.") for k in sd) and \
            any(k.startswith("head.") for k in model.state_dict()):
        head_from_file = False
    ignore = () if head_from_file else ("head.",)
    check_state_dict(model, sd, ignore_prefixes=ignore, optional_prefixes=optional, path=ck["path"], name=name)
    own = model.state_dict()
    to_load = {k: v.to(own[k].dtype) for k, v in sd.items() if k in own and not k.startswith(ignore or ("\0",))}
    model.load_state_dict(to_load, strict=head_from_file)
    model.eval()
    # the prediction settings travel with the weights they were fitted with, not with a new head
    model.deploy = (ck["ecgcore"] or {}).get("deploy") if head_from_file else None
    model.load_report = {"path": ck["path"], "kind": ck["kind"], "loaded": len(to_load),
                         "ignored": sorted(k for k in sd if k not in to_load), "head_from_file": head_from_file}
    return model


def save(model: ECGModel, path, deploy: dict | None = None) -> None:
    """Write ``model`` as an ecgcore checkpoint: plain safetensors, config JSON and SHA-256 in the header.

    Parameters
    ----------
    model : ECGModel
    path : str or path-like
    deploy : dict, optional
        Prediction-time settings (preset, tasks, target and clinical scalers,
        thresholds) stored as JSON in the header. Default: the ones the model was
        loaded with (``model.deploy``, set when it came from an ``ecgcore train``
        checkpoint or from a file that carried them), so converting a training
        checkpoint keeps its predictions identical.
    """
    from safetensors.torch import save_file
    path = os.fspath(path)
    info = model.export_config()
    if not info["name"]:
        raise ConfigError("model has no registry name; build it with ecgcore.models.create()")
    if deploy is None:
        deploy = getattr(model, "deploy", None)
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    meta = {"format": _FORMAT, "model": info["name"], "config": json.dumps(info["config"]),
            "heads": json.dumps(info["heads"]), "sha256": _HASH_PLACEHOLDER}
    if deploy is not None:
        meta["deploy"] = json.dumps(_jsonable(deploy))
    if os.path.isdir(path):
        raise WriteError("is a directory: name the .safetensors file to write", path)
    # written and hash-patched under a temporary name, then moved into place: a reader (or the
    # model being converted, when OUT is IN) never sees a half-written file or the placeholder hash
    try:
        with atomic_path(path, suffix=".safetensors") as tmp:
            save_file(tensors, tmp, metadata=meta)
            digest = _data_sha256(tmp)
            # patch the fixed-width placeholder in the header in place: the data section does not move
            with open(tmp, "r+b") as f:
                n = struct.unpack("<Q", f.read(8))[0]
                header = f.read(n)
                i = header.find(_HASH_PLACEHOLDER.encode())
                if i < 0:
                    raise RuntimeError("safetensors header layout changed: placeholder not found")
                f.seek(8 + i)
                f.write(digest.encode())
    except OSError as exc:
        raise WriteError(f"cannot write: {exc.strerror or exc}", path) from None
    except Exception as exc:   # safetensors' own SafetensorError (no OSError) for I/O failures
        if type(exc).__name__ != "SafetensorError":
            raise
        raise WriteError(f"cannot write: {exc}", path) from None


def load(path, **kwargs) -> ECGModel:
    """Rebuild and load a model from any supported checkpoint, detecting the architecture."""
    ck = read_checkpoint(path)
    name = detect_model(ck)
    from .registry import create
    return create(name, pretrained=path, **kwargs)

"""Model registry, the common model base class and input-contract checks.

Every network in ecgcore.models derives from :class:`ECGModel`: it splits its
forward pass into ``forward_features`` (the backbone, unpooled) and
``forward_head`` (pooling plus a head from :mod:`ecgcore.models.heads`), and
carries an ``input_contract`` dict saying what it was trained on (leads, fs,
samples, preprocessing preset).  ``forward`` checks an input against that
contract *before* any computation, so a wrong lead count, a wrong length or a
NaN produces a :class:`ecgcore.errors.PreprocessError` that names the contract
instead of a shape error deep inside a convolution.

Builder functions register themselves with :func:`register_model` (timm
style); :func:`create` looks them up, builds the head and optionally loads a
checkpoint.
"""

from __future__ import annotations

import copy
from typing import Callable

import torch
from torch import nn

from ecgcore.errors import ConfigError, PreprocessError

__all__ = ["ECGModel", "register_model", "create", "list_models", "model_entry"]

_REGISTRY: dict[str, dict] = {}


def register_model(name: str | None = None, *, family: str | None = None,
                   description: str = ""):
    """Decorator registering a builder ``fn(heads=None, **config) -> ECGModel``.

    Parameters
    ----------
    name : str, optional
        Registry name; defaults to the function name.
    family : str, optional
        Checkpoint family ('ecgfm', 'net1d', ...) used by the loader to map
        official key names; defaults to the model's ``family`` attribute.
    description : str
        One line shown by :func:`list_models`.
    """
    def deco(fn: Callable) -> Callable:
        key = name or fn.__name__
        if key in _REGISTRY:
            raise ConfigError(f"model name {key!r} is registered twice")
        _REGISTRY[key] = {"builder": fn, "family": family,
                          "description": description or (fn.__doc__ or "").strip().split("\n")[0]}
        return fn
    return deco


def _ensure_builtins():
    # importing the modules runs their @register_model decorators
    from . import ecgfm, image, image_model, lvh, net1d  # noqa: F401


def list_models(pattern: str | None = None) -> list[str]:
    """Names of all registered models, sorted; ``pattern`` is an fnmatch filter."""
    _ensure_builtins()
    names = sorted(_REGISTRY)
    if pattern:
        import fnmatch
        names = [n for n in names if fnmatch.fnmatch(n, pattern)]
    return names


def model_entry(name: str) -> dict:
    """The registry entry (builder, family, description) of ``name``."""
    _ensure_builtins()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ConfigError(f"unknown model {name!r}; known models: {', '.join(sorted(_REGISTRY))}") from None


def create(name: str, *, heads=None, pretrained=None, config: dict | None = None, **kwargs) -> "ECGModel":
    """Build a registered model, optionally loading weights.

    Parameters
    ----------
    name : str
        A name from :func:`list_models`, e.g. ``'ecgfm'``, ``'net1d'``,
        ``'fcn_lvh'``, ``'resnet34d'``.
    heads : None, int, dict or torch.nn.Module
        The head on top of the pooled features (see
        :func:`ecgcore.models.heads.build_head`).  None keeps the model's
        default head, or the head stored in the checkpoint.  When heads are
        given together with ``pretrained``, the checkpoint's head weights are
        ignored (fine-tuning a new head on a pretrained backbone).
    pretrained : str or os.PathLike, optional
        A checkpoint: official ECG-FM ``.pt`` (pretrained or fine-tuned
        layout), ECGFounder ``.pth``, or an ecgcore ``.safetensors`` file.
    config : dict, optional
        Architecture hyper-parameters for checkpoints that do not store them
        (shaped like the fixtures' ``config.json``); merged with ``kwargs``.
    **kwargs
        Architecture options of the builder (e.g. ``use_bn=True``,
        ``pos_conv_residual=False``).

    Returns
    -------
    ECGModel
        In eval mode when weights were loaded, else in train mode as built.
    """
    entry = model_entry(name)
    if pretrained is not None:
        from .checkpoint import load_into
        return load_into(name, pretrained, heads=heads, config=config, **kwargs)
    cfg = dict(config or {})
    cfg.update(kwargs)
    model = entry["builder"](heads=heads, **cfg)
    model.model_name = name
    return model


class ECGModel(nn.Module):
    """Base class: ``forward(x) = forward_head(forward_features(x))``.

    Subclasses set ``input_contract`` (a dict with at least ``leads`` or
    ``channels``, ``fs``, ``samples`` and ``preset``), ``num_features``
    (width of the pooled vector) and ``head``.
    """

    input_contract: dict = {}
    family: str = ""
    #: set to False to skip the input checks (e.g. inside a tight training loop)
    check_inputs: bool = True

    def __init__(self):
        super().__init__()
        self.model_name = ""
        self.config: dict = {}
        self.head_spec = None

    # ---- contract -------------------------------------------------------
    def describe_contract(self) -> str:
        c = self.input_contract
        if "channels" in c:
            return (f"{self.model_name or type(self).__name__} expects float images (batch, {c['channels']}, H, W)"
                    f"{' at ' + str(c.get('height')) + 'x' + str(c.get('width')) if c.get('height') else ''}"
                    f", preprocessed with preset {c.get('preset')!r}")
        length = (f"{c['samples']} samples" if c.get("fixed_length", True)
                  else f"at least {c.get('min_samples', 1)} samples (nominal {c['samples']})")
        leads = c.get("lead_names")
        return (f"{self.model_name or type(self).__name__} expects float input (batch, {c['leads']}, "
                f"{c['samples'] if c.get('fixed_length', True) else 'samples'}): {c['leads']} leads"
                f"{' (' + ', '.join(leads) + ')' if leads else ''} at {c['fs']} Hz, {length}, "
                f"preprocessed with preset {c.get('preset')!r}")

    def validate_input(self, x) -> None:
        """Raise PreprocessError if ``x`` breaks the input contract."""
        c = self.input_contract
        if not isinstance(x, torch.Tensor):
            raise PreprocessError(f"{self.describe_contract()}; got {type(x).__name__}, not a torch.Tensor")
        if not x.is_floating_point():
            raise PreprocessError(f"{self.describe_contract()}; got dtype {x.dtype}")
        if "channels" in c:
            if x.ndim != 4 or x.shape[1] != c["channels"]:
                raise PreprocessError(f"{self.describe_contract()}; got shape {tuple(x.shape)}")
            if min(x.shape[2:]) < c.get("min_size", 32):
                raise PreprocessError(f"{self.describe_contract()}; image {tuple(x.shape[2:])} is smaller "
                                      f"than {c.get('min_size', 32)} pixels")
        else:
            if x.ndim != 3:
                raise PreprocessError(f"{self.describe_contract()}; got shape {tuple(x.shape)} "
                                      f"(need 3 dimensions: batch, leads, samples)")
            if x.shape[1] != c["leads"]:
                raise PreprocessError(f"{self.describe_contract()}; got {x.shape[1]} leads "
                                      f"(shape {tuple(x.shape)})")
            n = x.shape[2]
            if c.get("fixed_length", True):
                if n != c["samples"]:
                    raise PreprocessError(f"{self.describe_contract()}; got {n} samples "
                                          f"(shape {tuple(x.shape)})")
            elif n < c.get("min_samples", 1):
                raise PreprocessError(f"{self.describe_contract()}; got only {n} samples")
        if x.device.type != "meta" and not bool(torch.isfinite(x).all()):
            bad = "NaN" if bool(torch.isnan(x).any()) else "infinite values"
            raise PreprocessError(f"{self.describe_contract()}; the input contains {bad} "
                                  f"(fill or drop missing leads before calling the model)")

    def _check(self, x):
        if self.check_inputs and not torch.compiler.is_compiling():
            self.validate_input(x)

    # ---- forward --------------------------------------------------------
    def forward_features(self, x):  # pragma: no cover - abstract
        raise NotImplementedError

    def pool(self, features):
        """Global average over the time (or spatial) axes of a channels-first map."""
        return features.mean(dim=tuple(range(2, features.ndim)))

    def forward_head(self, features, clinical=None):
        z = self.pool(features)
        return self._apply_head(z, clinical)

    def _apply_head(self, z, clinical):
        n_clin = getattr(self.head, "n_clinical", 0)
        if clinical is None:
            if n_clin:
                raise PreprocessError(f"{self.model_name}: the head fuses {n_clin} clinical variables; "
                                      f"pass clinical=(batch, {n_clin}) tensor")
            return self.head(z)
        if not n_clin:
            raise PreprocessError(f"{self.model_name}: clinical variables were given but the head "
                                  f"does not fuse any (build it with heads={{..., 'n_clinical': m}})")
        if (not torch.compiler.is_compiling()) and (clinical.ndim != 2 or clinical.shape[1] != n_clin
                                                    or clinical.shape[0] != z.shape[0]):
            raise PreprocessError(f"{self.model_name}: clinical must be (batch={z.shape[0]}, {n_clin}); "
                                  f"got {tuple(clinical.shape)}")
        if (not torch.compiler.is_compiling()) and self.check_inputs and not bool(torch.isfinite(clinical).all()):
            raise PreprocessError(f"{self.model_name}: clinical variables contain NaN/inf (impute them first)")
        return self.head(z, clinical)

    def forward(self, x, clinical=None):
        self._check(x)
        return self.forward_head(self.forward_features(x), clinical=clinical)

    # ---- bookkeeping ----------------------------------------------------
    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def export_config(self) -> dict:
        """JSON-serialisable description that :func:`create` can rebuild from."""
        if self.head_spec is not None and isinstance(self.head_spec, nn.Module):
            raise ConfigError("this model's head was passed as a module; pass heads as an int or "
                              "dict spec to make the model serialisable")
        return {"name": self.model_name, "config": copy.deepcopy(self.config),
                "heads": copy.deepcopy(self.head_spec)}

    def official_state_dict(self) -> dict:
        """State dict under the official (reference implementation) key names."""
        return dict(self.state_dict())

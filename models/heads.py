"""Heads on top of pooled backbone features, and segment-to-record aggregation.

Every head is called as ``head(z)`` or, when it fuses clinical variables,
``head(z, clinical)``, with ``z`` the pooled (batch, num_features) vector.

* :class:`LinearHead` - one Linear layer (ECG-FM ``proj``, Net1D ``dense``).
* :class:`MLPHead` / :class:`PerTargetMLPHeads` - DL-AtCM's Linear 768->256 ->
  ReLU -> Dropout -> Linear 256->128 -> ReLU -> Dropout -> Linear 128->1, one
  per target (Xavier-uniform weights, zero biases), keys ``{0,3,6}``.
* :class:`MultiTaskHead` - several named outputs of mixed kinds (regression,
  binary, multiclass); returns a dict.
* :class:`LateFusionHead` - concatenates tabular clinical variables to ``z``
  before an inner head (the LVH study's late fusion).
* :class:`SegmentAggregator` - mean of segment outputs, or attention pooling
  of segment features (Ilse et al. 2018, gated form optional), turning
  per-5-s-segment predictions into per-record ones (the training engine's
  ``data.aggregate: attention`` attaches one to a model as ``segment_pool``,
  see :mod:`ecgcore.models.train.predict`).
"""

from __future__ import annotations

import torch
from torch import nn

from ecgcore.errors import ConfigError

__all__ = ["LinearHead", "IdentityHead", "MLPHead", "PerTargetMLPHeads", "MultiTaskHead",
           "LateFusionHead", "SegmentAggregator", "build_head", "TASK_KINDS"]

TASK_KINDS = ("regression", "binary", "multiclass")


class IdentityHead(nn.Module):
    """Returns the pooled features unchanged (embedding extraction)."""
    n_clinical = 0

    def forward(self, z, clinical=None):
        return z


class LinearHead(nn.Module):
    """``fc``: Linear(in_features, n_out)."""
    n_clinical = 0

    def __init__(self, in_features: int, n_out: int, bias: bool = True, dropout: float = 0.0):
        super().__init__()
        self.dropout = nn.Dropout(dropout) if dropout else nn.Identity()
        self.fc = nn.Linear(in_features, n_out, bias=bias)

    def forward(self, z, clinical=None):
        return self.fc(self.dropout(z))


class MLPHead(nn.Module):
    """Linear -> act -> Dropout blocks then a final Linear, as one ``nn.Sequential`` (keys 0, 3, 6, ...).

    Defaults reproduce DL-AtCM's head: hidden (256, 128), ReLU, Xavier-uniform
    weights and zero biases.
    """
    n_clinical = 0

    def __init__(self, in_features: int, n_out: int = 1, hidden=(256, 128), dropout: float = 0.3,
                 activation: str = "relu", xavier: bool = True):
        super().__init__()
        act = {"relu": nn.ReLU, "leaky_relu": lambda: nn.LeakyReLU(0.01), "gelu": nn.GELU,
               "silu": nn.SiLU}
        if activation not in act:
            raise ConfigError(f"MLPHead activation must be one of {sorted(act)}, not {activation!r}")
        layers, width = [], in_features
        for h in hidden:
            layers += [nn.Linear(width, h), act[activation](), nn.Dropout(dropout)]
            width = h
        layers.append(nn.Linear(width, n_out))
        self.mlp = nn.Sequential(*layers)
        if xavier:
            for m in self.mlp:
                if isinstance(m, nn.Linear):
                    nn.init.xavier_uniform_(m.weight)
                    nn.init.zeros_(m.bias)

    def forward(self, z, clinical=None):
        return self.mlp(z)


class _Seq(nn.Sequential):
    """An MLP whose state-dict keys are exactly ``{0,3,6}.*`` (DL-AtCM layout)."""


class PerTargetMLPHeads(nn.Module):
    """DL-AtCM: one independent MLP per target in ``regression_heads``; outputs concatenated (batch, n_targets)."""
    n_clinical = 0

    def __init__(self, in_features: int = 768, n_targets: int = 4, hidden=(256, 128),
                 dropout: float = 0.3):
        super().__init__()
        self.regression_heads = nn.ModuleList(
            [MLPHead(in_features, 1, hidden, dropout).mlp for _ in range(n_targets)])

    def forward(self, z, clinical=None):
        return torch.cat([h(z) for h in self.regression_heads], dim=1)


class MultiTaskHead(nn.Module):
    """Several named outputs on a shared representation.

    Parameters
    ----------
    in_features : int
    tasks : dict
        ``name -> {"type": "regression"|"binary"|"multiclass", "n": outputs,
        "hidden": [..] (optional MLP), "dropout": p}``.  ``n`` defaults to 1
        (regression, binary) and is required for multiclass.

    Returns a dict ``name -> (batch, n)`` tensor of raw outputs (logits for
    classification).  :meth:`loss` computes the per-task losses (MSE, BCE
    with logits, cross-entropy) as a dict.
    """
    n_clinical = 0

    def __init__(self, in_features: int, tasks: dict):
        super().__init__()
        if not tasks:
            raise ConfigError("MultiTaskHead needs at least one task")
        self.tasks = {}
        heads = {}
        for name, spec in tasks.items():
            if not isinstance(spec, (str, dict)):
                raise ConfigError(f"task {name!r}: expected a task type ({', '.join(TASK_KINDS)}) or a "
                                  f"mapping such as {{'type': 'multiclass', 'n': 3}}, not {spec!r}")
            spec = {"type": spec} if isinstance(spec, str) else dict(spec)
            kind = spec.get("type", "regression")
            if kind not in TASK_KINDS:
                raise ConfigError(f"task {name!r}: type must be one of {TASK_KINDS}, not {kind!r}")
            n = int(spec.get("n", 1))
            if kind == "multiclass" and n < 2:
                raise ConfigError(f"task {name!r}: a multiclass task needs n >= 2 classes")
            if kind == "binary" and n != 1:
                raise ConfigError(f"task {name!r}: a binary task has one logit (n=1)")
            hidden = tuple(spec.get("hidden", ()))
            heads[name] = (MLPHead(in_features, n, hidden, spec.get("dropout", 0.0)) if hidden
                           else LinearHead(in_features, n))
            self.tasks[name] = {"type": kind, "n": n}
        self.heads = nn.ModuleDict(heads)

    def forward(self, z, clinical=None):
        return {name: head(z) for name, head in self.heads.items()}

    def loss(self, outputs: dict, targets: dict) -> dict:
        """Per-task mean losses: MSE (regression), BCE-with-logits (binary), CE (multiclass)."""
        import torch.nn.functional as F
        out = {}
        for name, t in self.tasks.items():
            y, o = targets[name], outputs[name]
            if t["type"] == "regression":
                out[name] = F.mse_loss(o, y.reshape(o.shape).to(o.dtype))
            elif t["type"] == "binary":
                out[name] = F.binary_cross_entropy_with_logits(o, y.reshape(o.shape).to(o.dtype))
            else:
                out[name] = F.cross_entropy(o, y.long().reshape(-1))
        return out


class LateFusionHead(nn.Module):
    """Concatenate ``n_clinical`` tabular variables to the pooled features, then run ``inner``.

    ``inner`` is built for ``in_features + n_clinical`` inputs.  The LVH
    study's head is ``LateFusionHead(128, 16, MLP [Linear(144,144), LeakyReLU,
    Dropout, Linear(144, n_out)])`` (see :func:`lvh_fusion_mlp`).
    """

    def __init__(self, in_features: int, n_clinical: int, inner: nn.Module):
        super().__init__()
        if n_clinical < 1:
            raise ConfigError("LateFusionHead needs n_clinical >= 1")
        self.n_clinical = int(n_clinical)
        self.inner = inner

    def forward(self, z, clinical=None):
        if clinical is None:
            raise ConfigError(f"this head fuses {self.n_clinical} clinical variables; pass clinical=")
        return self.inner(torch.cat([z, clinical.to(z.dtype)], dim=1))


def lvh_fusion_mlp(width: int, n_out: int, dropout: float) -> MLPHead:
    """Linear(width, width) -> LeakyReLU(0.01) -> Dropout -> Linear(width, n_out) (keys mlp.0, mlp.3)."""
    return MLPHead(width, n_out, hidden=(width,), dropout=dropout, activation="leaky_relu", xavier=False)


class SegmentAggregator(nn.Module):
    """Per-record output from per-segment inputs.

    Parameters
    ----------
    mode : {'mean', 'max', 'attention'}
        'mean' / 'max': aggregate the *outputs* of the segments (ECG-FM's
        per-ECG convention uses mean for most labels and max for a few).
        'attention': attention pooling of segment *features* (Ilse et al.,
        ICML 2018): a_s = softmax_s(w^T tanh(V h_s)), record = sum_s a_s h_s;
        with ``gated=True`` the gated form
        a_s = softmax_s(w^T (tanh(V h_s) * sigmoid(U h_s))).
    in_features : int
        Feature width (attention mode only).
    hidden : int
        Width of V (and U) (attention mode only).
    gated : bool
        Gated attention (attention mode only).

    Call ``agg(values, mask=None)`` with values (batch, segments, ...) and an
    optional boolean mask (batch, segments), True for real segments. Masked
    (padding) positions get zero weight and their values are never read, so
    the result of a record does not depend on how much padding its batch
    needed nor on what the padding holds; a record with no real segment gives
    zeros. Attention pooling is invariant to the order of the segments.
    """

    def __init__(self, mode: str = "mean", in_features: int | None = None, hidden: int = 128,
                 gated: bool = False):
        super().__init__()
        if mode not in ("mean", "max", "attention"):
            raise ConfigError(f"SegmentAggregator mode must be 'mean', 'max' or 'attention', not {mode!r}")
        self.mode = mode
        self.gated = bool(gated)
        if mode == "attention":
            if not in_features:
                raise ConfigError("attention pooling needs in_features")
            if int(hidden) < 1:
                raise ConfigError(f"attention pooling needs hidden >= 1, got {hidden}")
            self.V = nn.Linear(in_features, hidden)
            self.w = nn.Linear(hidden, 1, bias=False)
            if self.gated:
                self.U = nn.Linear(in_features, hidden)

    @staticmethod
    def _clean(values, mask):
        # padding may hold anything (even NaN): zero it so 0-weight * value stays 0
        if mask is None:
            return values
        m = mask.reshape(mask.shape + (1,) * (values.ndim - 2))
        return values.masked_fill(~m, 0.0)

    def weights(self, h, mask=None):
        """Attention weights (batch, segments); 0 at masked positions, rows sum to 1 (0 if all masked)."""
        h = self._clean(h, mask)
        a = torch.tanh(self.V(h))
        if self.gated:
            a = a * torch.sigmoid(self.U(h))
        s = self.w(a).squeeze(-1)
        if mask is None:
            return torch.softmax(s, dim=1)
        s = s.masked_fill(~mask, float("-inf"))
        any_real = mask.any(dim=1, keepdim=True)
        # an all-padding row would give softmax(-inf, ...) = NaN; give it zero weights instead
        s = torch.where(any_real, s, torch.zeros_like(s))
        return torch.softmax(s, dim=1) * any_real.to(s.dtype)

    def forward(self, values, mask=None):
        if mask is not None:
            mask = mask.to(torch.bool)
        if self.mode == "attention":
            a = self.weights(values, mask)
            return torch.einsum("bs,bsd->bd", a.to(values.dtype), self._clean(values, mask))
        if mask is None:
            return values.mean(1) if self.mode == "mean" else values.amax(1)
        m = mask.reshape(mask.shape + (1,) * (values.ndim - 2)).to(values.dtype)
        if self.mode == "mean":
            return (self._clean(values, mask) * m).sum(1) / m.sum(1).clamp_min(1)
        return values.masked_fill(m == 0, float("-inf")).amax(1)


def build_head(spec, in_features: int, default=None) -> nn.Module:
    """Build a head from a spec.

    Parameters
    ----------
    spec : None, int, dict or nn.Module
        * None: ``default`` (a callable returning a module) or an IdentityHead;
        * int n: :class:`LinearHead` (in_features -> n);
        * dict with ``"type"``: ``"linear"`` (``n``, ``dropout``), ``"identity"``,
          ``"mlp"`` (``n``, ``hidden``, ``dropout``, ``activation``),
          ``"mlp_per_target"`` (DL-AtCM: ``n`` targets, ``hidden``, ``dropout``),
          ``"multitask"`` (``tasks``: see :class:`MultiTaskHead`);
          add ``"n_clinical": m`` to any of them for late fusion;
        * dict without ``"type"``: shorthand for ``{"type": "multitask", "tasks": spec}``;
        * nn.Module: used as is.
    """
    if spec is None:
        return default() if default is not None else IdentityHead()
    if isinstance(spec, nn.Module):
        return spec
    if isinstance(spec, bool) or not isinstance(spec, (int, dict)):
        raise ConfigError(f"heads must be None, an int, a dict spec or an nn.Module, not {type(spec).__name__}")
    if isinstance(spec, int):
        if spec < 1:
            raise ConfigError(f"heads={spec}: need at least one output")
        return LinearHead(in_features, spec)
    spec = dict(spec)
    if "type" not in spec:
        spec = {"type": "multitask", "tasks": spec}
    n_clin = int(spec.pop("n_clinical", 0) or 0)
    width = in_features + n_clin
    kind = spec["type"]
    if kind == "linear":
        inner = LinearHead(width, int(spec.get("n", 1)), dropout=spec.get("dropout", 0.0))
    elif kind == "identity":
        inner = IdentityHead()
    elif kind == "mlp":
        inner = MLPHead(width, int(spec.get("n", 1)), tuple(spec.get("hidden", (256, 128))),
                        spec.get("dropout", 0.3), spec.get("activation", "relu"), spec.get("xavier", True))
    elif kind == "mlp_per_target":
        inner = PerTargetMLPHeads(width, int(spec.get("n", 1)), tuple(spec.get("hidden", (256, 128))),
                                  spec.get("dropout", 0.3))
    elif kind == "multitask":
        inner = MultiTaskHead(width, spec["tasks"])
    else:
        raise ConfigError(f"unknown head type {kind!r} (linear, identity, mlp, mlp_per_target, multitask)")
    return LateFusionHead(in_features, n_clin, inner) if n_clin else inner

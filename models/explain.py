"""Explanations: input gradients, integrated gradients, Grad-CAM, Grad-CAM++ and per-wave aggregation.

All functions take a model and an input batch and return numpy-free torch
tensors shaped like the input (saliency) or like its signal axes (CAMs,
upsampled linearly to the input length/size).  They put the model in eval
mode for the duration and restore its mode.

References
----------
Simonyan et al., "Deep inside convolutional networks", 2014 (input gradients).
Sundararajan et al., "Axiomatic attribution for deep networks", ICML 2017.
Selvaraju et al., "Grad-CAM", ICCV 2017.
Chattopadhay et al., "Grad-CAM++", WACV 2018.
"""

from __future__ import annotations

import contextlib

import numpy as np
import torch
import torch.nn.functional as F

from ecgcore.errors import ConfigError

__all__ = ["input_gradient", "integrated_gradients", "grad_cam", "grad_cam_pp", "wave_saliency", "WAVES",
           "task_saliency", "SALIENCY_METHODS"]

SALIENCY_METHODS = ("gradient", "integrated_gradients")

WAVES = ("P", "PQ", "QRS", "ST", "T", "TP")


@contextlib.contextmanager
def _eval(model):
    was = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was)


def _score(out, target):
    """Scalar to differentiate: sum over the batch of one output column (DL-AtCM convention)."""
    if isinstance(out, dict):
        if not isinstance(target, tuple):
            raise ConfigError("a multi-task model needs target=(task_name, column)")
        out, target = out[target[0]], target[1]
    if callable(target):
        return target(out)
    if out.ndim == 1:
        return out.sum()
    return out[:, target].sum()


def input_gradient(model, x, target=0, **forward_kw):
    """Vanilla gradient of ``sum_batch output[:, target]`` w.r.t. the input (signed, shaped like x)."""
    with _eval(model):
        x = x.detach().clone().requires_grad_(True)
        (g,) = torch.autograd.grad(_score(model(x, **forward_kw), target), x)
    return g


def integrated_gradients(model, x, target=0, baseline=None, steps: int = 32, **forward_kw):
    """Integrated gradients (x - b) * mean_k grad f(b + a_k (x - b)), a_k at the midpoints of ``steps`` bins.

    Completeness: the attributions of one sample sum to f(x) - f(b) up to the
    Riemann error (exact for a model linear in its input).
    """
    if steps < 1:
        raise ConfigError("integrated_gradients needs steps >= 1")
    b = torch.zeros_like(x) if baseline is None else baseline.expand_as(x).to(x.dtype)
    total = torch.zeros_like(x)
    with _eval(model):
        for k in range(steps):
            a = (k + 0.5) / steps
            xi = (b + a * (x - b)).detach().requires_grad_(True)
            (g,) = torch.autograd.grad(_score(model(xi, **forward_kw), target), xi)
            total += g
    return (x - b) * total / steps


def _resolve_layer(model, layer):
    if layer is None:
        layer = getattr(model, "cam_layer", None)
        if layer is None:
            raise ConfigError(f"{type(model).__name__} has no default cam_layer; pass layer=")
    if isinstance(layer, str):
        try:
            return model.get_submodule(layer)
        except AttributeError:
            raise ConfigError(f"no submodule {layer!r} in {type(model).__name__}") from None
    return layer


def _activations_and_grads(model, x, target, layer, forward_kw):
    store = {}

    def hook(mod, inp, out):
        out.retain_grad()
        store["a"] = out
    h = _resolve_layer(model, layer).register_forward_hook(hook)
    try:
        with _eval(model):
            xi = x.detach()
            with torch.enable_grad():
                score = _score(model(xi, **forward_kw), target)
                A = store["a"]
                (g,) = torch.autograd.grad(score, A)
    finally:
        h.remove()
    if A.ndim not in (3, 4):
        raise ConfigError(f"Grad-CAM needs a conv layer output (B, C, L) or (B, C, H, W); got {tuple(A.shape)}")
    return A.detach(), g.detach()


def _upsample(cam, size):
    mode = "linear" if cam.ndim == 3 else "bilinear"
    return F.interpolate(cam, size=size, mode=mode, align_corners=False)[:, 0]


def grad_cam(model, x, target=0, layer=None, upsample: bool = True, **forward_kw):
    """Grad-CAM: ReLU(sum_c w_c A_c), w_c = spatial mean of d score / d A_c.

    Works on 1-D (B, C, L) and 2-D (B, C, H, W) feature maps; ``layer`` (a
    module or dotted name) defaults to ``model.cam_layer``.  Returns (B, L) or
    (B, H, W), upsampled to the input's signal size unless ``upsample=False``.
    """
    A, g = _activations_and_grads(model, x, target, layer, forward_kw)
    dims = tuple(range(2, A.ndim))
    w = g.mean(dim=dims, keepdim=True)
    cam = F.relu((w * A).sum(1, keepdim=True))
    return _upsample(cam, x.shape[2:]) if upsample else cam[:, 0]


def grad_cam_pp(model, x, target=0, layer=None, upsample: bool = True, **forward_kw):
    """Grad-CAM++ with the usual exponential-score closed form.

    alpha = g^2 / (2 g^2 + sum_space(A) g^3), w_c = sum_space(alpha * ReLU(g)), cam = ReLU(sum_c w_c A_c).
    """
    A, g = _activations_and_grads(model, x, target, layer, forward_kw)
    dims = tuple(range(2, A.ndim))
    g2, g3 = g * g, g * g * g
    denom = 2 * g2 + A.sum(dim=dims, keepdim=True) * g3
    alpha = torch.where(denom != 0, g2 / torch.where(denom != 0, denom, torch.ones_like(denom)),
                        torch.zeros_like(denom))
    w = (alpha * F.relu(g)).sum(dim=dims, keepdim=True)
    cam = F.relu((w * A).sum(1, keepdim=True))
    return _upsample(cam, x.shape[2:]) if upsample else cam[:, 0]


def wave_saliency(saliency, fiducials: dict, *, absolute: bool = True) -> dict:
    """Mean saliency per ECG wave, as DL-AtCM's global analysis does.

    Parameters
    ----------
    saliency : array_like (n_samples,) or (n_leads, n_samples)
        A saliency map of one record; a 2-D map is averaged over leads first
        (signed), as DL-AtCM does.
    fiducials : dict
        Sample indices per beat, ``-1`` where absent: keys ``P_on``, ``P_off``,
        ``QRS_on``, ``QRS_off``, ``T_on``, ``T_off`` (as ``ecgcore.delineate()``
        returns them).
    absolute : bool
        Average |saliency| (default, DL-AtCM) or the signed values.

    Returns
    -------
    dict
        ``P`` [P_on, P_off), ``PQ`` [P_off, QRS_on), ``QRS`` [QRS_on, QRS_off),
        ``ST`` [QRS_off, T_on), ``T`` [T_on, T_off), ``TP`` [T_off, next P_on),
        pooled over beats (sum over all windows / their total length; NaN
        where no beat has the wave), plus ``all`` (the whole map) and
        ``n_beats`` (beats used per wave).

    Notes
    -----
    DL-AtCM delimits QRS by neurokit's Q and S peaks; ecgcore uses QRS onset
    and offset.  A window is used only when both of its ends exist and
    end > start.
    """
    s = torch.as_tensor(saliency).detach().cpu().double().numpy() if torch.is_tensor(saliency) else \
        np.asarray(saliency, dtype=np.float64)
    if s.ndim == 2:
        s = s.mean(0)
    if s.ndim != 1:
        raise ConfigError(f"saliency must be (n_samples,) or (n_leads, n_samples), got shape {s.shape}")
    need = ("P_on", "P_off", "QRS_on", "QRS_off", "T_on", "T_off")
    missing = [k for k in need if k not in fiducials]
    if missing:
        raise ConfigError(f"fiducials lack {missing}")
    f = {k: np.asarray(fiducials[k], dtype=np.int64).ravel() for k in need}
    nb = {len(v) for v in f.values()}
    if len(nb) != 1:
        raise ConfigError("all fiducial arrays must have one entry per beat")
    v = np.abs(s) if absolute else s
    csum = np.concatenate([[0.0], np.cumsum(v)])
    n = len(v)
    next_p = np.concatenate([f["P_on"][1:], [-1]])
    windows = {"P": (f["P_on"], f["P_off"]), "PQ": (f["P_off"], f["QRS_on"]),
               "QRS": (f["QRS_on"], f["QRS_off"]), "ST": (f["QRS_off"], f["T_on"]),
               "T": (f["T_on"], f["T_off"]), "TP": (f["T_off"], next_p)}
    out = {}
    counts = {}
    for name, (a, b) in windows.items():
        ok = (a >= 0) & (b >= 0) & (b > a) & (b <= n)
        a, b = a[ok], b[ok]
        length = (b - a).sum()
        out[name] = float((csum[b] - csum[a]).sum() / length) if length > 0 else float("nan")
        counts[name] = int(ok.sum())
    out["all"] = float(v.mean())
    out["n_beats"] = counts
    return out


class _TaskScore(torch.nn.Module):
    """One scalar per sample for a task of a trained model: the binary logit, or for a
    2-class multiclass task the logit of class 1 against class 0 (log-odds of class 1)."""

    def __init__(self, model, tasks, name):
        super().__init__()
        self.model = model
        start = 0
        self.col = None
        for t in tasks:
            n = t.get("n_classes", 2) if t["type"] == "multiclass" else 1
            if t["name"] == name:
                if t["type"] == "regression" or (t["type"] == "multiclass" and n != 2):
                    raise ConfigError(f"task {name!r}: saliency is drawn for binary (or 2-class) tasks, "
                                      f"not {t['type']} with {n} outputs")
                self.col, self.two = start, t["type"] == "multiclass"
            start += n
        if self.col is None:
            raise ConfigError(f"no task named {name!r} (tasks: {', '.join(t['name'] for t in tasks)})")
        self.tasks = tasks
        # mirror the wrapped model's mode: the explain functions restore the wrapper's mode on exit,
        # and a fresh Module is in training mode (it would switch the model's dropout on)
        self.train(model.training)

    def forward(self, x, **kw):
        out = self.model(x, **kw)
        if isinstance(out, dict):
            out = torch.cat([out[t["name"]].reshape(out[t["name"]].shape[0], -1) for t in self.tasks], 1)
        elif out.ndim == 1:
            out = out[:, None]
        if self.two:
            return out[:, self.col + 1] - out[:, self.col]
        return out[:, self.col]


def task_saliency(model, x, tasks, name, method: str = "gradient", steps: int = 32, **forward_kw):
    """Saliency of one classification task of a trained (training-engine) model.

    Parameters
    ----------
    model : torch.nn.Module
        Returns a (B, n_outputs) tensor or a dict of per-task heads.
    x : torch.Tensor (B, leads, samples)
    tasks : list of dict
        The config's tasks (``name``, ``type``, ``n_classes``), in output order.
    name : str
        A binary task (its logit) or a 2-class multiclass task (logit of class 1
        minus logit of class 0, i.e. the log-odds of class 1).
    method : {"gradient", "integrated_gradients"}
        Vanilla input gradient (DL-AtCM's saliency) or integrated gradients
        from a zero baseline with ``steps`` steps.

    Returns
    -------
    torch.Tensor shaped like ``x`` (signed attribution).
    """
    if method not in SALIENCY_METHODS:
        raise ConfigError(f"saliency method must be one of {SALIENCY_METHODS}, not {method!r}")
    wrapped = _TaskScore(model, tasks, name)
    if method == "gradient":
        return input_gradient(wrapped, x, target=0, **forward_kw)
    return integrated_gradients(wrapped, x, target=0, steps=steps, **forward_kw)

"""Evaluation figures as matplotlib ``Figure`` objects (no pyplot state).

matplotlib is imported inside each function. Save with :func:`save_figure`,
which writes atomically (temporary file, then ``os.replace``).
"""

from __future__ import annotations

import os

import numpy as np

from .._atomic import atomic_open
from ._checks import EvaluationError, as_binary, as_float, check_same_length
from .bootstrap import cluster_weights, _cluster_index
from .classification import _tie_groups, auroc, average_precision, pr_curve, roc_curve
from .calibration import calibration_curve
from .regression import bland_altman, pearson

__all__ = ["roc_figure", "pr_figure", "calibration_figure", "agreement_figure",
           "incidence_figure", "mean_waveforms", "decision_curve_figure", "saliency_figure",
           "smooth_saliency", "save_figure"]


def _figure(w, h):
    from matplotlib.figure import Figure
    return Figure(figsize=(w, h), layout="constrained")


def save_figure(fig, path, dpi: int = 150) -> str:
    """Write ``fig`` as PNG to ``path`` atomically; returns the path."""
    path = os.fspath(path)
    d = os.path.dirname(os.path.abspath(path))
    os.makedirs(d, exist_ok=True)
    with atomic_open(path, "wb") as fh:
        fig.savefig(fh, format="png", dpi=dpi)
    return path


def roc_band(y_true, y_score, groups=None, n_boot: int = 200, seed=0, level: float = 0.95,
             grid=None):
    """Pointwise bootstrap band of the ROC: TPR quantiles on a fixed FPR grid.

    Returns
    -------
    grid, low, high : ndarray
    """
    y = as_binary(y_true)
    p = as_float(y_score, "y_score")
    check_same_length(y_true=y, y_score=p)
    grid = np.linspace(0, 1, 101) if grid is None else np.asarray(grid, float)
    cluster, k = _cluster_index(groups, y.size)
    W = cluster_weights(np.random.default_rng(seed), int(n_boot), cluster, k)
    order, starts = _tie_groups(p, descending=True)
    Ws, yo = W[:, order], y[order]
    tp = np.cumsum(np.add.reduceat(Ws * yo, starts, axis=1), 1)
    fp = np.cumsum(np.add.reduceat(Ws * ~yo, starts, axis=1), 1)
    ok = (tp[:, -1] > 0) & (fp[:, -1] > 0)
    tpr = np.hstack([np.zeros((ok.sum(), 1)), tp[ok] / tp[ok, -1:]])
    fpr = np.hstack([np.zeros((ok.sum(), 1)), fp[ok] / fp[ok, -1:]])
    curves = np.stack([np.interp(grid, f, t) for f, t in zip(fpr, tpr)]) if ok.any() \
        else np.full((1, grid.size), np.nan)
    a = (1 - level) / 2
    lo, hi = np.quantile(curves, [a, 1 - a], axis=0)
    return grid, lo, hi


def roc_figure(y_true, y_score, *, groups=None, band: bool = True, n_boot: int = 200, seed=0,
               label: str = "model", auc_ci=None, title: str | None = None):
    """ROC curve with a pointwise bootstrap band and the AUROC in the legend.

    Parameters
    ----------
    auc_ci : (low, high), optional
        Printed as "AUC = x (95% CI: l–u)" when given.
    """
    fpr, tpr, _ = roc_curve(y_true, y_score)
    a = auroc(y_true, y_score)
    fig = _figure(4.5, 4.5)
    ax = fig.add_subplot()
    if band:
        g, lo, hi = roc_band(y_true, y_score, groups=groups, n_boot=n_boot, seed=seed)
        ax.fill_between(g, lo, hi, color="C0", alpha=0.2, lw=0, label="95% bootstrap band")
    txt = f"{label}: AUC = {a:.3f}"
    if auc_ci is not None:
        txt += f" (95% CI: {auc_ci[0]:.3f}\u2013{auc_ci[1]:.3f})"
    ax.plot(fpr, tpr, color="C0", lw=1.5, label=txt, drawstyle="default")
    ax.plot([0, 1], [0, 1], ls="--", color="0.6", lw=0.8)
    ax.set(xlim=(0, 1), ylim=(0, 1.01), xlabel="1 - specificity (FPR)",
           ylabel="Sensitivity (TPR)", title=title or "ROC")
    ax.set_aspect("equal")
    ax.legend(loc="lower right", fontsize=7)
    return fig


def pr_figure(y_true, y_score, *, label: str = "model", title: str | None = None):
    """Precision-recall curve (step), with AP and the prevalence baseline."""
    prec, rec, _ = pr_curve(y_true, y_score)
    ap = average_precision(y_true, y_score)
    prev = float(np.mean(as_binary(y_true)))
    fig = _figure(4.5, 4.5)
    ax = fig.add_subplot()
    ax.step(rec, prec, where="post", color="C1", lw=1.5, label=f"{label}: AP = {ap:.3f}")
    ax.axhline(prev, ls="--", color="0.6", lw=0.8, label=f"prevalence {prev:.3f}")
    ax.set(xlim=(0, 1), ylim=(0, 1.01), xlabel="Recall (sensitivity)", ylabel="Precision (PPV)",
           title=title or "Precision-recall")
    ax.legend(loc="upper right", fontsize=7)
    return fig


def calibration_figure(y_true, y_prob, *, n_bins: int = 10, strategy: str = "quantile",
                       title: str | None = None):
    """Reliability diagram (observed vs predicted per bin) over a histogram of predictions."""
    c = calibration_curve(y_true, y_prob, n_bins=n_bins, strategy=strategy)
    p = as_float(y_prob, "y_prob")
    fig = _figure(4.5, 5.2)
    ax, axh = fig.subplots(2, 1, sharex=True, height_ratios=[4, 1])
    n = c["count"]
    obs = c["observed"]
    se = np.sqrt(np.clip(obs * (1 - obs), 0, None) / n)
    ax.errorbar(c["mean_predicted"], obs, yerr=1.96 * se, fmt="o-", color="C2", ms=4, lw=1,
                capsize=2, label=f"{strategy} bins")
    ax.plot([0, 1], [0, 1], ls="--", color="0.6", lw=0.8, label="ideal")
    ax.set(xlim=(0, 1), ylim=(0, 1), ylabel="Observed fraction", title=title or "Calibration")
    ax.legend(loc="upper left", fontsize=7)
    axh.hist(p, bins=40, range=(0, 1), color="0.5")
    axh.set(xlabel="Predicted probability", ylabel="count")
    return fig


def agreement_figure(y_true, y_pred, *, units: str = "", title: str | None = None):
    """Scatter of predicted vs true (with identity line) beside a Bland-Altman plot."""
    ba = bland_altman(y_true, y_pred)
    t = as_float(y_true, "y_true")
    p = as_float(y_pred, "y_pred")
    r, _ = pearson(t, p)
    u = f" ({units})" if units else ""
    fig = _figure(9, 4.2)
    a1, a2 = fig.subplots(1, 2)
    a1.scatter(t, p, s=6, alpha=0.5, color="C0", lw=0)
    lo, hi = float(min(t.min(), p.min())), float(max(t.max(), p.max()))
    a1.plot([lo, hi], [lo, hi], ls="--", color="0.5", lw=0.8)
    a1.set(xlabel="True" + u, ylabel="Predicted" + u, title=f"r = {r:.3f}, n = {t.size}")
    a2.scatter(ba["mean"], ba["diff"], s=6, alpha=0.5, color="C0", lw=0)
    for v, name in ((ba["bias"], "bias"), (ba["loa_low"], "-1.96 SD"), (ba["loa_high"], "+1.96 SD")):
        a2.axhline(v, color="C3" if name == "bias" else "0.4", ls="-" if name == "bias" else "--",
                   lw=1)
        a2.annotate(f"{name} {v:.3g}", (1, v), xycoords=("axes fraction", "data"), ha="right",
                    va="bottom", fontsize=7)
    for key in ("loa_low_ci", "loa_high_ci", "bias_ci"):
        a2.axhspan(*ba[key], color="0.85", alpha=0.5, lw=0)
    a2.set(xlabel="Mean of true and predicted" + u, ylabel="Predicted - true" + u,
           title="Bland-Altman")
    if title:
        fig.suptitle(title)
    return fig


def incidence_figure(result: dict, *, horizon: float | None = None, time_unit: str = "days",
                     n_ticks: int = 6, title: str | None = None):
    """Kaplan-Meier cumulative incidence per risk group with numbers at risk.

    Parameters
    ----------
    result : dict
        The output of :func:`ecgcore.stats.incidence_by_group`.
    """
    groups = [g for g in result["groups"] if "km" in g]
    if not groups:
        raise EvaluationError("no non-empty risk group to plot")
    tmax = horizon or max(float(g["km"].time[-1]) for g in groups)
    ticks = np.linspace(0, tmax, n_ticks)
    fig = _figure(6, 5)
    ax, at = fig.subplots(2, 1, height_ratios=[4, 1.2])
    for i, g in enumerate(groups):
        km = g["km"]
        tt = np.r_[0.0, km.time]
        inc = np.r_[0.0, km.cumulative_incidence]
        lo, hi = km.incidence_ci
        lo = np.r_[0.0, np.nan_to_num(lo, nan=0.0)]
        hi = np.r_[0.0, np.nan_to_num(hi, nan=0.0)]
        keep = tt <= tmax
        ax.step(tt[keep], inc[keep], where="post", color=f"C{i}", lw=1.5,
                label=f"{g['label']} (n={g['n']}, events={g['events']})")
        ax.fill_between(tt[keep], lo[keep], hi[keep], step="post", color=f"C{i}", alpha=0.15, lw=0)
        nar = km.n - np.searchsorted(np.repeat(km.time, km.n_events + km.n_censored), ticks,
                                     side="left")
        for x, v in zip(ticks, nar):
            at.text(x, -i, str(int(v)), ha="center", va="center", fontsize=7, color=f"C{i}")
    lr = result.get("logrank")
    ttl = title or "Cumulative incidence (Kaplan-Meier)"
    if lr is not None:
        ttl += f"\nlog-rank chi2 = {lr.statistic:.2f} (df {lr.df}), p = {lr.p_value:.3g}"
    ax.set(xlim=(0, tmax), ylim=(0, None), ylabel="Cumulative incidence (1 - KM)", title=ttl)
    ax.legend(loc="upper left", fontsize=7)
    at.set(xlim=ax.get_xlim(), ylim=(-len(groups) + 0.5, 0.5), xticks=ticks, yticks=[],
           xlabel=f"Time ({time_unit})")
    at.set_title("Number at risk", fontsize=8, loc="left")
    return fig


def mean_waveforms(high, low, fs: float, leads, *, sd_scale: float = 1.0,
                   labels=("high risk", "low risk"), units: str = "mV", title: str | None = None):
    """Mean ± SD waveforms of two groups, one panel per lead (6 × 2 grid for 12 leads).

    Parameters
    ----------
    high, low : array_like of shape (n_beats, n_leads, n_samples)
        Aligned beats (e.g. median beats or R-aligned windows) of each group.
    fs : float
        Sampling frequency in Hz.
    leads : sequence of str
        Lead names, ``n_leads`` of them.
    sd_scale : float
        Half-width of the band in SDs (the CCTA analysis drew ± 0.5 SD).
    """
    h = np.asarray(high, float)
    lw = np.asarray(low, float)
    if h.ndim != 3 or lw.ndim != 3 or h.shape[1:] != lw.shape[1:]:
        raise EvaluationError(f"high and low must be (n_beats, n_leads, n_samples) with equal "
                              f"leads and samples, got {h.shape} and {lw.shape}")
    if h.shape[0] == 0 or lw.shape[0] == 0:
        raise EvaluationError("each group needs at least one beat")
    leads = list(leads)
    if len(leads) != h.shape[1]:
        raise EvaluationError(f"{len(leads)} lead names for {h.shape[1]} leads")
    if not fs or fs <= 0:
        raise EvaluationError(f"fs must be positive, got {fs}")
    t = np.arange(h.shape[2]) / float(fs) * 1000.0
    nl = len(leads)
    ncol = 2 if nl > 3 else 1
    nrow = int(np.ceil(nl / ncol))
    fig = _figure(8, 1.5 * nrow + 0.6)
    axes = fig.subplots(nrow, ncol, sharex=True, squeeze=False)
    for i, name in enumerate(leads):
        ax = axes[i % nrow, i // nrow]        # column-major: limb leads left, chest right
        for data, colour, lab in ((lw, "0.45", labels[1]), (h, "C3", labels[0])):
            m = np.nanmean(data[:, i], 0)
            s = np.nanstd(data[:, i], 0)
            ax.fill_between(t, m - sd_scale * s, m + sd_scale * s, color=colour, alpha=0.2, lw=0)
            ax.plot(t, m, color=colour, lw=1, label=f"{lab} (n={data.shape[0]})")
        ax.set_ylabel(name, rotation=0, ha="right", va="center")
        ax.tick_params(labelsize=7)
    for j in range(nl, nrow * ncol):
        axes[j % nrow, j // nrow].set_visible(False)
    for ax in axes[-1]:
        ax.set_xlabel("ms")
    axes[0, 0].legend(fontsize=6, loc="upper right")
    fig.suptitle(title or f"Mean \u00b1 {sd_scale:g} SD ({units})", fontsize=9)
    return fig


def decision_curve_figure(y_true, scores, *, thresholds=None, title: str | None = None,
                          ylim_low: float | None = None):
    """Decision curves (net benefit vs threshold probability) of one or more models.

    Parameters
    ----------
    y_true : array_like of 0/1
    scores : dict name -> array_like of probabilities, or one array
        Models drawn on the same cases, with treat-all and treat-none.
    thresholds : array_like, optional
        Threshold probabilities (default 0.01 ... 0.99).
    ylim_low : float, optional
        Lower y limit (default: a little below zero, since treat-all falls
        steeply and would squash the informative part).
    """
    from .decision import decision_curve
    if not isinstance(scores, dict):
        scores = {"model": scores}
    if not scores:
        raise EvaluationError("decision_curve_figure needs at least one score")
    fig = _figure(5.5, 4.2)
    ax = fig.add_subplot()
    curves = {name: decision_curve(y_true, p, thresholds) for name, p in scores.items()}
    first = next(iter(curves.values()))
    t = first["threshold"]
    ax.plot(t, first["treat_all"], color="0.4", lw=1, ls="--", label="treat all")
    ax.plot(t, first["treat_none"], color="0.2", lw=1, ls=":", label="treat none")
    top = max(first["prevalence"], 1e-3)
    for i, (name, c) in enumerate(curves.items()):
        ax.plot(t, c["net_benefit"], color=f"C{i}", lw=1.5, label=name)
    ax.set(xlim=(float(t.min()), float(t.max())),
           ylim=(-0.05 * top if ylim_low is None else ylim_low, top * 1.1),
           xlabel="Threshold probability", ylabel="Net benefit",
           title=title or f"Decision curve (prevalence {first['prevalence']:.3f}, n = {first['n']})")
    ax.legend(loc="upper right", fontsize=7)
    return fig


def smooth_saliency(saliency, sigma: float = 7.0) -> np.ndarray:
    """Display form of a (n_leads, n_samples) saliency map, as DL-AtCM draws it.

    Gaussian smoothing along time (``sigma`` samples, reflect mode), absolute
    value, then per-lead min-max scaling to [0, 1] (``/ (ptp + 1e-8)``).
    """
    from scipy.ndimage import gaussian_filter1d
    s = np.asarray(saliency, dtype=np.float64)
    if s.ndim != 2:
        raise EvaluationError(f"saliency must be (n_leads, n_samples), got shape {s.shape}")
    if sigma and sigma > 0:
        s = gaussian_filter1d(s, float(sigma), axis=1, mode="reflect")
    s = np.abs(s)
    lo = s.min(axis=1, keepdims=True)
    return (s - lo) / (np.ptp(s, axis=1, keepdims=True) + 1e-8)


def saliency_figure(signal, saliency, fs: float, leads, *, sigma: float = 7.0, units: str = "",
                    title: str | None = None, cmap: str = "Reds"):
    """ECG traces with the saliency drawn over them as a colour scale, one panel per lead.

    Parameters
    ----------
    signal : array_like (n_leads, n_samples)
        The model input (or the waveform it came from).
    saliency : array_like (n_leads, n_samples)
        Raw signed attribution (input gradient, integrated gradients); shown
        through :func:`smooth_saliency` (smoothed, absolute, per-lead min-max).
    fs : float
        Sampling frequency in Hz.
    leads : sequence of str
    """
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize
    x = np.asarray(signal, dtype=np.float64)
    if x.ndim != 2:
        raise EvaluationError(f"signal must be (n_leads, n_samples), got shape {x.shape}")
    s = np.asarray(saliency, dtype=np.float64)
    if s.shape != x.shape:
        raise EvaluationError(f"saliency shape {s.shape} differs from signal shape {x.shape}")
    leads = list(leads)
    if len(leads) != x.shape[0]:
        raise EvaluationError(f"{len(leads)} lead names for {x.shape[0]} leads")
    if not fs or fs <= 0:
        raise EvaluationError(f"fs must be positive, got {fs}")
    w = smooth_saliency(s, sigma)
    t = np.arange(x.shape[1]) / float(fs)
    nl = len(leads)
    ncol = 2 if nl > 3 else 1
    nrow = int(np.ceil(nl / ncol))
    fig = _figure(10, 1.1 * nrow + 0.8)
    axes = fig.subplots(nrow, ncol, sharex=True, squeeze=False)
    for i, name in enumerate(leads):
        ax = axes[i % nrow, i // nrow]
        # a coloured background band per sample plus the trace in black: the band carries the
        # saliency, the trace stays readable whatever the colour
        ext = [t[0], t[-1] + 1.0 / fs, 0, 1]
        ax.imshow(w[i][None, :], aspect="auto", cmap=cmap, vmin=0, vmax=1, extent=ext,
                  transform=ax.get_xaxis_transform(), alpha=0.8, interpolation="nearest")
        ax.plot(t, x[i], color="k", lw=0.5)
        lo, hi = float(np.nanmin(x[i])), float(np.nanmax(x[i]))
        pad = 0.1 * (hi - lo) + 1e-6
        ax.set_ylim(lo - pad, hi + pad)
        ax.set_xlim(t[0], t[-1])
        ax.set_ylabel(name, rotation=0, ha="right", va="center")
        ax.tick_params(labelsize=6)
    for j in range(nl, nrow * ncol):
        axes[j % nrow, j // nrow].set_visible(False)
    for ax in axes[-1]:
        ax.set_xlabel("s")
    cb = fig.colorbar(ScalarMappable(Normalize(0, 1), cmap=cmap), ax=axes, shrink=0.6, pad=0.01)
    cb.set_label("|saliency| (smoothed, per-lead min-max)", fontsize=7)
    fig.suptitle(title or "Saliency" + (f" ({units})" if units else ""), fontsize=9)
    return fig

"""The limb leads of a digitised page checked against Einthoven's and Goldberger's laws.

The six limb leads are two signals seen six ways: II = I + III and aVR + aVL + aVF = 0
hold at every instant. A page draws three limb leads side by side in time (a 3x4 column,
or all six on a 6x2 page), so the laws test both the tracing and the names the layout
gave the rows, without reading the page's labels:

* ``residual``: the RMS of II - I - III (and of aVR + aVL + aVF) over the samples where
  all three were read, relative to the RMS of the leads, each lead's median removed (a
  digitised baseline is only known up to an offset);
* the Cabrera order (aVL, I, -aVR | II, aVF, III; Scandinavian carts) puts other leads
  in the same places, and its laws in those places are 2 x row1 - 3 x row2 + 2 x row3 = 0
  and 2 x row5 - row4 - row6 = 0 (rows as the standard layout names them: I, II, III |
  aVR, aVL, aVF). A page that fails the standard laws and keeps these is renamed.
"""

from __future__ import annotations

import numpy as np

from ..record import STANDARD_12

__all__ = ["limb_residuals", "cabrera_to_standard", "check_limb_leads"]

_IX = {n: STANDARD_12.index(n) for n in ("I", "II", "III", "aVR", "aVL", "aVF")}
# Residuals measured (standard names): recorded signals themselves 0.09-0.31 (LUDB leads are
# recorded, not derived, and noisy AF strips reach 0.31); digitised ecgcore.plot pages of 6
# records, clean and blurred + noisy + JPEG + rotated, 3x4+II and 6x2: 0.08-0.32; the 35
# ecg-image-kit pages 0.02-0.34; under Cabrera's names these pages give 0.61-0.96. Pages
# drawn in the Cabrera order: 0.04-0.27 under Cabrera's names, 0.5-1.05 under the standard
# ones (0.50 for a simulated record). So: the standard laws hold up to CONSISTENT; a page is
# Cabrera when its laws hold (<= CABRERA) far better than the standard ones.
CONSISTENT = 0.5
CABRERA = 0.35
_MIN_SAMPLES_S = 0.5


def _relation(sig, fs, rows, weights):
    """RMS of sum(w * row) relative to the rows' RMS, over their common finite samples
    (medians removed); NaN when they share under half a second."""
    x = sig[list(rows)].astype(np.float64)
    ok = np.all(np.isfinite(x), axis=0)
    if ok.sum() < _MIN_SAMPLES_S * fs:
        return float("nan")
    x = x[:, ok]
    x -= np.median(x, axis=1, keepdims=True)
    w = np.asarray(weights, np.float64)[:, None]
    e = np.sqrt(np.mean(np.sum(w * x, axis=0) ** 2))
    scale = np.sqrt(np.mean((np.abs(w) * x) ** 2) * len(rows))
    return float(e / scale) if scale > 0 else float("nan")


def limb_residuals(sig, fs) -> dict:
    """Relative residuals of the limb-lead laws under the standard and the Cabrera names.

    Parameters
    ----------
    sig : array (12, n)
        The page's leads in :data:`~ecgcore.record.STANDARD_12` order, NaN where not drawn.
    fs : float
        Sampling rate, Hz.

    Returns
    -------
    dict
        ``standard`` and ``cabrera``: the mean of the two laws' residuals that could be
        tested (NaN when neither could).
    """
    i = _IX
    std = [_relation(sig, fs, (i["II"], i["I"], i["III"]), (1, -1, -1)),
           _relation(sig, fs, (i["aVR"], i["aVL"], i["aVF"]), (1, 1, 1))]
    cab = [_relation(sig, fs, (i["I"], i["II"], i["III"]), (2, -3, 2)),
           _relation(sig, fs, (i["aVL"], i["aVR"], i["aVF"]), (2, -1, -1))]
    out = {}
    for name, vals in (("standard", std), ("cabrera", cab)):
        vals = [v for v in vals if np.isfinite(v)]
        out[name] = float(np.mean(vals)) if vals else float("nan")
    return out


# true lead -> the row (as the standard layout names it) where a Cabrera page draws it;
# aVR is drawn inverted (-aVR)
_CABRERA_NAMES = {"I": "II", "II": "aVR", "III": "aVF", "aVR": "III", "aVL": "I", "aVF": "aVL"}


def cabrera_to_standard(sig) -> np.ndarray:
    """Rows named by the standard layout on a Cabrera page -> the true standard leads."""
    out = sig.copy()
    for true, row in _CABRERA_NAMES.items():
        out[_IX[true]] = sig[_IX[row]]
    out[_IX["aVR"]] *= -1
    return out


def check_limb_leads(sig, fs, conf=None, flags=None, rename=True):
    """Test the limb leads; rename a Cabrera page. Returns ``(sig, residual)``.

    ``rename=False`` (pages whose leads are named by their labels) only tests them.

    ``flags`` (dict) receives ``limb_leads_cabrera`` (renamed) or ``limb_leads_inconsistent``
    (neither order holds: a bad tracing or an unknown order); ``conf`` (lead -> confidence)
    is renamed with the leads. A page is renamed only when the Cabrera laws hold
    (residual <= ``CABRERA``) at under 0.4 times the standard residual.
    """
    r = limb_residuals(sig, fs)
    if not np.isfinite(r["standard"]):
        return sig, r["standard"]
    if rename and np.isfinite(r["cabrera"]) and r["cabrera"] <= CABRERA \
            and r["cabrera"] < 0.4 * r["standard"]:
        if flags is not None:
            flags["limb_leads_cabrera"] = True
        if conf is not None:
            old = dict(conf)
            for new, was in _CABRERA_NAMES.items():
                conf[new] = old[was]
        if flags is not None and flags.get("rhythm_leads"):
            true_name = {was: new for new, was in _CABRERA_NAMES.items()}
            flags["rhythm_leads"] = [true_name.get(n, n) for n in flags["rhythm_leads"]]
        return cabrera_to_standard(sig), r["cabrera"]
    if r["standard"] <= CONSISTENT:
        return sig, r["standard"]
    if flags is not None:
        flags["limb_leads_inconsistent"] = round(r["standard"], 3)
    return sig, r["standard"]

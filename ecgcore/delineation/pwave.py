"""P-wave indices for atrial-cardiopathy work (facts/delineation.md §5).

All functions work on one representative (median) beat in physical units (mV in,
µV out) with the P window given as sample indices on that beat. Definitions:
ARIC / ARCADIA (PTFV1), Tereshchenko 2014 (DTNPV1), Bayés de Luna 2012 (IAB),
Dilaveris 1998 (dispersion), Maheshwari 2017 (axis). Unlike the DL-AtCM code
(facts/dl_atcm.md §9), amplitudes are in µV from unscaled signals and each lead
is measured on its own samples.
"""

from __future__ import annotations

import numpy as np

__all__ = ["isoelectric", "p_morphology", "terminal_negative_phase", "interatrial_block",
           "frontal_axis", "MORPHOLOGIES"]

MORPHOLOGIES = ("positive", "negative", "biphasic+-", "biphasic-+", "notched", "flat")


def isoelectric(beat: np.ndarray, on: int, fs: float, span_s: float = 0.02) -> float:
    """Mean level over ``span_s`` just before the wave onset ``on`` (the TP/PR baseline)."""
    a = max(0, on - int(span_s * fs))
    seg = beat[a:max(a + 1, on)]
    return float(np.nanmean(seg)) if seg.size else float("nan")


def p_morphology(wave_uv: np.ndarray, fs: float, flat_uv: float = 20.0, phase_frac: float = 0.2,
                 notch_uv: float = 10.0, notch_s: float = 0.02) -> str:
    """Classify a baseline-corrected P wave (µV).

    ``flat`` when its largest excursion is under ``flat_uv``; ``biphasic+-`` / ``biphasic-+``
    when both a positive and a negative phase exceed ``phase_frac`` of the largest
    excursion (order by the time of their extremes); ``notched`` when a monophasic wave has
    two maxima at least ``notch_s`` apart with a dip of at least ``notch_uv`` between them;
    else ``positive`` / ``negative``.
    """
    v = np.asarray(wave_uv, float)
    if v.size < 3 or not np.isfinite(v).all():
        return "flat"
    hi, lo = v.max(), v.min()
    big = max(hi, -lo)
    if big < flat_uv:
        return "flat"
    if hi > phase_frac * big and -lo > phase_frac * big:
        return "biphasic+-" if np.argmax(v) < np.argmin(v) else "biphasic-+"
    s = v if hi >= -lo else -v
    peaks = np.flatnonzero((s[1:-1] > s[:-2]) & (s[1:-1] >= s[2:]) & (s[1:-1] > 0.5 * s.max())) + 1
    if peaks.size >= 2:
        a, b = peaks[0], peaks[-1]
        if (b - a) >= notch_s * fs and min(s[a], s[b]) - s[a:b + 1].min() >= notch_uv:
            return "notched"
    return "positive" if hi >= -lo else "negative"


def terminal_negative_phase(wave_uv: np.ndarray, fs: float, eps_uv: float = 5.0):
    """Depth (µV, positive) and duration (ms) of the terminal negative phase of a
    baseline-corrected P wave: from its last downward zero crossing (its onset when the
    whole wave is negative) to the offset. (0, 0) when the wave does not end negative
    (the part after the crossing must stay below ``eps_uv``)."""
    v = np.asarray(wave_uv, float)
    if v.size < 3 or not np.isfinite(v).all():
        return 0.0, 0.0
    down = np.flatnonzero((v[:-1] >= 0) & (v[1:] < 0))
    if down.size:
        start = int(down[-1]) + 1
    elif v.max() < eps_uv:
        start = 0
    else:
        return 0.0, 0.0
    seg = v[start:]
    if seg.size == 0 or seg.max() >= eps_uv or seg.min() >= 0:
        return 0.0, 0.0
    return float(-seg.min()), float(seg.size * 1000.0 / fs)


def interatrial_block(pwd_ms: float, morph_ii: str, morph_iii: str, morph_avf: str,
                      threshold_ms: float = 120.0) -> str:
    """Bayés de Luna 2012: ``advanced`` when PWD >= 120 ms and biphasic (+/-) P in II, III
    and aVF; ``partial`` when PWD >= 120 ms otherwise; ``none`` below; ``""`` unknown."""
    if not np.isfinite(pwd_ms):
        return ""
    if pwd_ms < threshold_ms:
        return "none"
    if morph_ii == morph_iii == morph_avf == "biphasic+-":
        return "advanced"
    return "partial"


def frontal_axis(area_i: float, area_avf: float) -> float:
    """Frontal-plane axis in degrees (-180..180) from net areas (or amplitudes) in I and aVF."""
    if not (np.isfinite(area_i) and np.isfinite(area_avf)) or (area_i == 0 and area_avf == 0):
        return float("nan")
    return float(np.degrees(np.arctan2(area_avf, area_i)))

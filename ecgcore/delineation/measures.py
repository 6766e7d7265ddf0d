"""Global ECG measurements and P-wave indices from a delineated record.

Intervals are medians over beats of the global (multi-lead) marks; amplitudes,
areas, axes and morphology are measured on the median beat, with the marks
mapped onto it by their median distance to R. Every value that cannot be
measured is NaN (or ``""``) and ``reasons[name]`` says why.
"""

from __future__ import annotations

import math

import numpy as np

from ..errors import ECGError
from ..record import Record
from . import pwave as _pw
from .delineation import MARKS
from .median import median_beats
from .waves import delineate

__all__ = ["measure", "measure_many", "AMPLITUDE_LEADS", "LVH_VOLTAGE", "lvh_voltage_criteria"]

AMPLITUDE_LEADS = ("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6")
_MK = {m: i for i, m in enumerate(MARKS)}

#: ECG-LVH voltage criteria (thresholds in mV and mV·ms; LVH when the value reaches them):
#: Sokolow-Lyon (Sokolow & Lyon 1949) S V1 + max(R V5, R V6) >= 3.5 mV;
#: Cornell voltage (Casale 1985) R aVL + S V3 > 2.8 mV (men) / > 2.0 mV (women);
#: Cornell product (Molloy 1992) (R aVL + S V3 [+ 0.6 mV in women]) x QRS duration >= 244 mV·ms
#: (the published 2440 mm·ms, 1 mm = 0.1 mV).
LVH_VOLTAGE = {"sokolow_lyon_mv": 3.5, "cornell_voltage_mv": {"male": 2.8, "female": 2.0},
               "cornell_product_mvms": 244.0, "cornell_product_female_add_mv": 0.6}


def _nan(out, reasons, key, why):
    out[key] = float("nan")
    reasons[key] = why


def _lead_row(beat: Record, name: str):
    if name in beat.leads:
        v = beat.signal[beat.leads.index(name)].astype(float)
        return v if np.isfinite(v).any() else None
    # limb leads follow from I and II (Einthoven, Goldberger)
    have = {n: beat.signal[i].astype(float) for i, n in enumerate(beat.leads)}
    i1, i2 = have.get("I"), have.get("II")
    if i1 is None or i2 is None:
        return None
    return {"III": i2 - i1, "aVR": -(i1 + i2) / 2, "aVL": i1 - i2 / 2, "aVF": i2 - i1 / 2}.get(name)


def measure(record, fs=None, delineation=None) -> dict:
    """Measure intervals, axes, amplitudes and P-wave indices of one record.

    Parameters
    ----------
    record : Record (or array with ``fs``; lead names are then unknown and lead-specific
        values are NaN)
    delineation : Delineation, optional
        Reuse an existing delineation.

    Returns
    -------
    dict
        Keys carry units: ``heart_rate_bpm``, ``rr_mean_ms``, ``rr_sd_ms``,
        ``pr_interval_ms`` (= ``pq_interval_ms``: global P onset to QRS onset),
        ``p_duration_ms`` (global), ``qrs_duration_ms``, ``qt_ms``, ``qtc_bazett_ms``,
        ``qtc_fridericia_ms``, ``qtc_framingham_ms``, ``qtc_hodges_ms``,
        ``p_axis_deg`` / ``qrs_axis_deg`` / ``t_axis_deg`` (net areas in I and aVF),
        ``p_amplitude_ii_uv`` (peak vs isoelectric), ``p_amplitude_ii_onset_uv`` (peak vs
        P-onset sample, as DL-AtCM), ``ptfv1_uvms``, ``dtnpv1`` (bool),
        ``interatrial_block`` (none/partial/advanced), ``p_dispersion_ms``,
        ``p_area_<lead>_uvms`` (II, V1), ``p_morphology_<lead>`` (II, III, aVF, V1),
        ``r_amp_<lead>_uv``, ``s_amp_<lead>_uv``, ``t_amp_<lead>_uv``, ``n_beats``,
        ECG-LVH voltage criteria (sex-independent forms; :func:`lvh_voltage_criteria`
        applies the sex-specific thresholds): ``sokolow_lyon_mv`` (S V1 + max(R V5, R V6)),
        ``sokolow_lyon_lvh`` (>= 3.5 mV; None when unmeasurable), ``cornell_voltage_mv``
        (R aVL + S V3), ``cornell_product_mvms`` (Cornell voltage x QRS duration, men's form),
        ``no_atrial_activity`` and ``reasons`` (dict: key -> why it is NaN).
    """
    if not isinstance(record, Record):
        if fs is None:
            raise ECGError("measure(array) needs fs=")
        a = np.atleast_2d(np.asarray(record, dtype=np.float64))
        record = Record(a, fs, [str(i) for i in range(a.shape[0])])
    fs = record.fs
    d = delineation if delineation is not None else delineate(record)
    out: dict = {}
    reasons: dict = {}
    g = d.global_marks
    # dominant beats: normal or wide (the 120-ms cut splits one morphology in borderline
    # records); premature, noisy and undelineated beats are left out when enough remain
    normal = d.beat_class <= 1
    use = normal if normal.sum() >= 2 else np.ones(d.n_beats, bool)
    out["n_beats"] = int(d.n_beats)
    out["no_atrial_activity"] = bool(d.flags.get("no_atrial_activity", False))
    r = g[:, 4]
    rr = np.diff(r) * 1000.0 / fs
    if rr.size >= 1:
        out["rr_mean_ms"] = float(rr.mean())
        out["rr_sd_ms"] = float(rr.std(ddof=1)) if rr.size >= 2 else float("nan")
        if rr.size < 2:
            reasons["rr_sd_ms"] = "fewer than 3 beats"
        out["heart_rate_bpm"] = 60000.0 / out["rr_mean_ms"]
    else:
        why = (f"sampling rate {fs:g} Hz below 25 Hz: QRS complexes not resolved"
               if d.flags.get("sampling_rate_too_low") else "fewer than 2 beats detected")
        for k in ("rr_mean_ms", "rr_sd_ms", "heart_rate_bpm"):
            _nan(out, reasons, k, why)

    def interval(a, b, key, why):
        ok = use & (g[:, _MK[a]] >= 0) & (g[:, _MK[b]] >= 0)
        if ok.sum() == 0:
            _nan(out, reasons, key, why)
        else:
            out[key] = float(np.median(g[ok, _MK[b]] - g[ok, _MK[a]]) * 1000.0 / fs)

    p_why = ("no atrial activity (AF, flutter or paced rhythm)" if out["no_atrial_activity"]
             else "no P wave found")
    interval("P_on", "QRS_on", "pr_interval_ms", p_why)
    out["pq_interval_ms"] = out["pr_interval_ms"]
    if "pr_interval_ms" in reasons:
        reasons["pq_interval_ms"] = reasons["pr_interval_ms"]
    interval("P_on", "P_off", "p_duration_ms", p_why)
    interval("QRS_on", "QRS_off", "qrs_duration_ms", "no QRS delineated")
    interval("QRS_on", "T_off", "qt_ms", "no T wave end found")
    qt, rr_s = out["qt_ms"], out.get("rr_mean_ms", float("nan")) / 1000.0
    if np.isfinite(qt) and np.isfinite(rr_s) and rr_s > 0:
        hr = 60.0 / rr_s
        out["qtc_bazett_ms"] = qt / math.sqrt(rr_s)
        out["qtc_fridericia_ms"] = qt / rr_s ** (1 / 3)
        out["qtc_framingham_ms"] = qt + 154.0 * (1.0 - rr_s)
        out["qtc_hodges_ms"] = qt + 1.75 * (hr - 60.0)
    else:
        for k in ("qtc_bazett_ms", "qtc_fridericia_ms", "qtc_framingham_ms", "qtc_hodges_ms"):
            _nan(out, reasons, k, "QT or RR not measurable")

    # ---- median beat and marks mapped onto it
    before = int(round(0.4 * fs))
    length = before + int(round(0.7 * fs))
    ok_r = use & (r >= 0)
    beat = median_beats(record, length=length, before=before, min_beats=1,
                        r_peaks=r[ok_r] if ok_r.any() else r)
    mb = {}
    for m in MARKS:
        v = g[use, _MK[m]]
        rv = r[use]
        sel = v >= 0
        mb[m] = int(before + np.median(v[sel] - rv[sel])) if sel.any() else -1
    leads_mark = {}
    for li, name in enumerate(d.leads):
        lm = {}
        for m in ("P_on", "P_off"):
            v = d.marks[li, use, _MK[m]]
            sel = v >= 0
            lm[m] = int(before + np.median(v[sel] - r[use][sel])) if sel.sum() >= max(1, use.sum() // 2) else -1
        leads_mark[name] = lm
    have_beat = beat.meta.get("n_beats", 0) > 0
    mv2uv = 1000.0

    def wave(name, a, b):
        """Baseline-corrected wave of a lead on the median beat, µV; None if unavailable."""
        v = _lead_row(beat, name)
        if v is None or a < 0 or b <= a or b >= v.size:
            return None
        iso = _pw.isoelectric(v, mb["P_on"] if mb["P_on"] >= 0 else mb["QRS_on"], fs)
        return (v[a:b + 1] - iso) * mv2uv

    def area(name, a, b):
        w = wave(name, a, b)
        return float(np.sum(w) * 1000.0 / fs) if w is not None else float("nan")

    # axes from net areas in I and aVF
    for key, a, b in (("p_axis_deg", "P_on", "P_off"), ("qrs_axis_deg", "QRS_on", "QRS_off"),
                      ("t_axis_deg", "T_on", "T_off")):
        if not have_beat or mb[a] < 0 or mb[b] < 0:
            _nan(out, reasons, key, p_why if key.startswith("p") else f"no {a[:-3]} wave")
            continue
        ax = _pw.frontal_axis(area("I", mb[a], mb[b]), area("aVF", mb[a], mb[b]))
        out[key] = ax
        if not np.isfinite(ax):
            reasons[key] = "leads I and aVF (or I and II) needed"

    # P-wave indices
    p_ok = have_beat and mb["P_on"] >= 0 and mb["P_off"] > mb["P_on"]
    wii = wave("II", mb["P_on"], mb["P_off"]) if p_ok else None
    if wii is not None and wii.size:
        k = int(np.argmax(np.abs(wii)))
        out["p_amplitude_ii_uv"] = float(wii[k])
        out["p_amplitude_ii_onset_uv"] = float(wii[k] - wii[0])
    else:
        for key in ("p_amplitude_ii_uv", "p_amplitude_ii_onset_uv"):
            _nan(out, reasons, key, p_why if not p_ok else "lead II unavailable")
    morph = {}
    for name in ("II", "III", "aVF", "V1"):
        w = wave(name, mb["P_on"], mb["P_off"]) if p_ok else None
        morph[name] = _pw.p_morphology(w, fs) if w is not None else ""
        out[f"p_morphology_{name}"] = morph[name]
    for name in ("II", "V1"):
        key = f"p_area_{name}_uvms"
        w = wave(name, mb["P_on"], mb["P_off"]) if p_ok else None
        if w is None:
            _nan(out, reasons, key, p_why if not p_ok else f"lead {name} unavailable")
        else:
            out[key] = float(np.sum(w) * 1000.0 / fs)
    wv1 = wave("V1", mb["P_on"], mb["P_off"]) if p_ok else None
    if wv1 is None:
        _nan(out, reasons, "ptfv1_uvms", p_why if not p_ok else "lead V1 unavailable")
        out["dtnpv1"] = None
        reasons["dtnpv1"] = reasons["ptfv1_uvms"]
    else:
        depth, dur = _pw.terminal_negative_phase(wv1, fs)
        out["ptfv1_uvms"] = depth * dur
        out["dtnpv1"] = bool(depth > 100.0 and morph["V1"] == "biphasic+-")
    out["interatrial_block"] = _pw.interatrial_block(out["p_duration_ms"], morph["II"], morph["III"],
                                                     morph["aVF"])
    if not out["interatrial_block"]:
        reasons["interatrial_block"] = p_why
    durs = [lm["P_off"] - lm["P_on"] for lm in leads_mark.values()
            if lm["P_on"] >= 0 and lm["P_off"] > lm["P_on"]]
    if len(durs) >= 3:
        out["p_dispersion_ms"] = float((max(durs) - min(durs)) * 1000.0 / fs)
    else:
        _nan(out, reasons, "p_dispersion_ms", p_why if not p_ok else "P measurable in fewer than 3 leads")
    # amplitudes per lead (median beat, vs isoelectric), µV
    for name in AMPLITUDE_LEADS:
        wq = wave(name, mb["QRS_on"], mb["QRS_off"]) if have_beat and mb["QRS_on"] >= 0 else None
        if wq is None:
            for k in (f"r_amp_{name}_uv", f"s_amp_{name}_uv"):
                _nan(out, reasons, k, "lead or QRS unavailable")
        else:
            out[f"r_amp_{name}_uv"] = float(max(0.0, wq.max()))
            out[f"s_amp_{name}_uv"] = float(min(0.0, wq.min()))
        wt = wave(name, mb["T_on"], mb["T_off"]) if have_beat and mb["T_on"] >= 0 else None
        if wt is None:
            _nan(out, reasons, f"t_amp_{name}_uv", "lead or T wave unavailable")
        else:
            out[f"t_amp_{name}_uv"] = float(wt[int(np.argmax(np.abs(wt)))])
    _voltage_criteria(out, reasons)
    out["reasons"] = reasons
    return out


def _voltage_criteria(out: dict, reasons: dict) -> None:
    """Sex-independent LVH voltage values (mV, mV·ms) from the per-lead R/S amplitudes (µV)."""
    def need(keys, key):
        bad = [k for k in keys if not np.isfinite(out.get(k, float("nan")))]
        if bad:
            _nan(out, reasons, key, f"{bad[0]} not measurable")
            return False
        return True

    s_v1, r_v5, r_v6 = "s_amp_V1_uv", "r_amp_V5_uv", "r_amp_V6_uv"
    # S depth is the magnitude of the negative deflection (s_amp_* <= 0 by construction)
    if need((s_v1, r_v5, r_v6), "sokolow_lyon_mv"):
        out["sokolow_lyon_mv"] = (-out[s_v1] + max(out[r_v5], out[r_v6])) / 1000.0
    out["sokolow_lyon_lvh"] = (bool(out["sokolow_lyon_mv"] >= LVH_VOLTAGE["sokolow_lyon_mv"])
                               if np.isfinite(out["sokolow_lyon_mv"]) else None)
    if need(("r_amp_aVL_uv", "s_amp_V3_uv"), "cornell_voltage_mv"):
        out["cornell_voltage_mv"] = (out["r_amp_aVL_uv"] - out["s_amp_V3_uv"]) / 1000.0
    qrs = out.get("qrs_duration_ms", float("nan"))
    if not np.isfinite(out["cornell_voltage_mv"]):
        _nan(out, reasons, "cornell_product_mvms", reasons["cornell_voltage_mv"])
    elif not np.isfinite(qrs):
        _nan(out, reasons, "cornell_product_mvms", "QRS duration not measurable")
    else:
        # the men's form; the women's adds 0.6 mV (needs sex: see lvh_voltage_criteria)
        out["cornell_product_mvms"] = out["cornell_voltage_mv"] * qrs


def lvh_voltage_criteria(measures, is_male, *, female_add_mv: float | None = None) -> dict:
    """Sex-specific ECG-LVH voltage criteria from ``measure`` outputs.

    Parameters
    ----------
    measures : dict or pandas.DataFrame
        ``measure()`` output(s) with ``sokolow_lyon_mv``, ``cornell_voltage_mv``
        and ``qrs_duration_ms`` (as ``ecgcore measure`` writes them).
    is_male : bool, 0/1 or array of them (NaN = unknown)
    female_add_mv : float, optional
        mV added to R aVL + S V3 in women for the Cornell product (default
        0.6 mV, Molloy 1992; some later studies use 0.8 mV).

    Returns
    -------
    dict of arrays (float; 1.0 = criterion met, 0.0 = not, NaN = unmeasurable or sex unknown)
        ``sokolow_lyon_lvh``, ``cornell_voltage_lvh``, ``cornell_product_lvh``,
        ``any_voltage_lvh`` (any of the three met; NaN only when none is
        measurable), plus ``cornell_product_mvms`` with the sex adjustment
        and the scores ``cornell_voltage_ratio`` = Cornell voltage divided by the
        sex threshold (usable as a continuous baseline score: > 1 is LVH).
    """
    add = LVH_VOLTAGE["cornell_product_female_add_mv"] if female_add_mv is None else float(female_add_mv)

    def col(k):
        if isinstance(measures, dict):
            v = measures.get(k, float("nan"))
        else:
            v = measures[k].to_numpy() if k in measures.columns else np.full(len(measures), np.nan)
        return np.atleast_1d(np.asarray(v, dtype=np.float64))

    sl, cv, qrs = col("sokolow_lyon_mv"), col("cornell_voltage_mv"), col("qrs_duration_ms")
    male = np.atleast_1d(np.asarray(is_male, dtype=np.float64))
    if male.size == 1 and sl.size > 1:
        male = np.full(sl.size, male[0])
    if male.size != sl.size:
        raise ECGError(f"is_male: {male.size} values for {sl.size} measurement rows")
    if not np.all(np.isin(male[np.isfinite(male)], (0.0, 1.0))):
        raise ECGError("is_male must be 0/1 (1 = male) or NaN")

    def flag(ok, cond):
        return np.where(ok, cond.astype(np.float64), np.nan)

    t = LVH_VOLTAGE
    sex_ok = np.isfinite(male)
    cv_thr = np.where(male == 1, t["cornell_voltage_mv"]["male"], t["cornell_voltage_mv"]["female"])
    prod = (cv + np.where(male == 0, add, 0.0)) * qrs
    prod[~sex_ok] = np.nan
    with np.errstate(invalid="ignore"):
        out = {"sokolow_lyon_lvh": flag(np.isfinite(sl), sl >= t["sokolow_lyon_mv"]),
               "cornell_voltage_lvh": flag(np.isfinite(cv) & sex_ok, cv > cv_thr),
               "cornell_product_lvh": flag(np.isfinite(prod), prod >= t["cornell_product_mvms"]),
               "cornell_product_mvms": prod,
               "cornell_voltage_ratio": np.where(sex_ok, cv / cv_thr, np.nan)}
    stack = np.vstack([out["sokolow_lyon_lvh"], out["cornell_voltage_lvh"], out["cornell_product_lvh"]])
    anyv = np.nanmax(np.where(np.isfinite(stack), stack, -1.0), axis=0)
    out["any_voltage_lvh"] = np.where(anyv < 0, np.nan, anyv)
    return out


def measure_many(records, workers: int = 1, as_frame: bool = True):
    """Measure many records (Records or paths); returns a pandas DataFrame when
    ``as_frame`` (and pandas is installed), else a list of dicts. Failures become rows
    with an ``error`` column instead of exceptions."""
    from ..io import read

    def one(item):
        try:
            rec = read(item) if not isinstance(item, Record) else item
            m = measure(rec)
            m["source"] = rec.source
            return m
        except (ValueError, OSError) as exc:  # ecgcore errors are ValueErrors
            return {"source": str(getattr(item, "source", item)), "error": str(exc)}

    items = list(records)
    if workers and workers > 1:
        from concurrent.futures import ProcessPoolExecutor
        from .waves import warm_kernels
        warm_kernels()  # compiled once here; the forked workers inherit the kernels
        with ProcessPoolExecutor(workers) as ex:
            rows = list(ex.map(_measure_path_row, items))
    else:
        rows = [one(it) for it in items]
    if not as_frame:
        return rows
    import pandas as pd
    flat = [{k: (str(v) if k == "reasons" else v) for k, v in row.items()} for row in rows]
    return pd.DataFrame(flat)


def _measure_path_row(item):
    from ..io import read
    try:
        rec = read(item) if not isinstance(item, Record) else item
        m = measure(rec)
        m["source"] = rec.source
        return m
    except (ValueError, OSError) as exc:
        return {"source": str(getattr(item, "source", item)), "error": str(exc)}

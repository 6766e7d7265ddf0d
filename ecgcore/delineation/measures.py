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

__all__ = ["measure", "measure_many", "AMPLITUDE_LEADS"]

AMPLITUDE_LEADS = ("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6")
_MK = {m: i for i, m in enumerate(MARKS)}


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
        for k in ("rr_mean_ms", "rr_sd_ms", "heart_rate_bpm"):
            _nan(out, reasons, k, "fewer than 2 beats detected")

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
    out["reasons"] = reasons
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

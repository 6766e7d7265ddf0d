"""12-lead wave delineation: planning around the per-lead numba kernel.

Steps: QRS detection on all leads together (``qrs.detect_qrs``); zero-phase
band-limiting (0.5-40 Hz); per-lead candidate boundaries (``_wave_kernels``;
per-lead QRS bounds from the multi-lead spatial velocity and the lead's slope, then
moved inwards where the lead's own amplitude has already settled); presence
decisions (amplitude vs QRS size and noise, beat-to-beat consistency); record-level
"no atrial activity" decision (RR irregularity and inconsistent atrial waves: AF,
flutter, paced; atrial flutter also from the periodicity of the QRS-blanked signal
at 176-250 ms); multi-lead consistency of P and T boundaries
(a lead far from the other leads' median is pulled to it; a beat's wave is
reported in every usable lead; a weak lead's P onset follows the other leads);
P offsets from the multi-lead P envelope, averaged per lead with the lead's own
amplitude offset; P onsets averaged per lead with the lead's own amplitude onset;
multi-lead fusion to global marks; last, per-lead P boundaries relative to the
beat's other leads (``P_LEAD``: onsets pulled part-way to the beat's median, weak
leads' offsets from an absolute-threshold rule).
"""

from __future__ import annotations

import warnings
from functools import lru_cache

import numpy as np
from scipy import signal as _sps

from ..errors import ECGError
from ..record import Record, normalize_leads
from . import _qrs_kernels as _qk
from . import _wave_kernels as _wk
from .delineation import Delineation
from .qrs import MIN_FS, _clean_rows, _detect_clean, _detect_clean_cols, detect_qrs

__all__ = ["delineate", "PARAMS", "PRESENCE"]

#: Constants of the per-lead kernel (seconds unless a fraction). Tuned on the LUDB
#: development split only (records in the first half of the shelf's list). The kernel
#: reads them by position (``p[i]`` in ``_wave_kernels.delineate_lead``): change values
#: freely, but add new entries at the end.
PARAMS = {
    "qrs_sig_slope": 0.2,      # a slope counts as QRS when above this fraction of the max slope
    "qrs_on_slope": 0.1,       # onset where |slope| falls below this fraction of the first slope peak
    "qrs_off_slope": 0.15,     # offset, same for the last slope peak
    "smooth_s": 0.02,          # moving average for P/T (suppresses QRS-band noise)
    "t_start_s": 0.06,         # T search starts this long after QRS offset
    "t_end_rr": 0.7,           # ... and ends at this fraction of the next RR
    "t_end_max_s": 0.65,       # ... or this long after R
    "t_trap_s": 0.08,          # trapezium span for T end
    "p_window_s": 0.30,        # P search starts this long before QRS onset
    "p_gap_s": 0.03,           # ... and ends this long before QRS onset
    "p_off_trap_s": 0.04,      # trapezium span for P offset
    "p_on_trap_s": 0.05,       # trapezium span for P onset
    "r_min_rel": 0.05,         # a positive R smaller than this fraction of QRS p-p: QS complex
    "p_lobe_rel": 1.0,         # biphasic P: bounds from both lobes when the opposite extremum >= this * |peak| (1 = off; on the dev split it did not help)
    "t_lobe_rel": 1.0,         # same for T (1 = off)
    "r_first_rel": 0.3,        # R = the first positive peak at least this fraction of the largest
    "t_trap_width": 0.0,       # ... or this many times the T peak-to-steepest-slope distance
    "qrs_sv_alpha": 0.1,       # global QRS bounds where spatial velocity falls to this fraction
    "qrs_lead_beta": 0.02,     # per-lead bounds where the lead's slope exceeds this fraction
    "qrs_lead_pad_s": 0.005,   # per-lead search starts this far outside the global bounds
    "qrs_on_shift_s": -0.005,  # the slope rule finds onsets this late vs annotators (dev split)
    # per-lead QRS offset also from the lead's amplitude (``_wave_kernels.qrs_off_amplitude``):
    # a lead's complex has ended once it stays within this fraction of its QRS p-p of the
    # level just after the offset (0 = off) ...
    "qrs_off_amp_rel": 0.12,
    "qrs_off_amp_level_s": 0.02,  # ... that level being the mean over this span
    "qrs_off_amp_shift_s": 0.02,  # ... plus this (the amplitude rule ends early vs annotators, dev split)
    "qrs_on_amp_rel": 0.05,    # same for the onset (level: the mean over the span before it) ...
    "qrs_on_amp_shift_s": 0.02,  # ... minus this
}

#: Presence thresholds (fractions of the lead's median QRS peak-to-peak, or of noise).
PRESENCE = {
    "t_rel": 0.04,             # |T| >= t_rel * QRS p-p
    "p_rel": 0.025,            # |P| >= p_rel * QRS p-p
    "p_noise": 2.5,            # |P| >= p_noise * high-frequency noise RMS
    "p_pr_tol_s": 0.04,        # a P peak within this of the lead's median P-peak-to-QRS time
    "p_lead_frac": 0.25,
    "aa_rel": 0.025,           # atrial-wave candidates for the rhythm decision: |P| >= aa_rel * QRS p-p       # a beat has a P wave when present in this fraction of usable leads
    "aa_consistency": 0.6,     # below: no organised atrial activity
    "aa_consistency_irreg": 0.8,  # below, when RR is irregular: no organised atrial activity
    "rr_irregular": 0.08,      # median |dRR| / median RR above this = irregular
    # atrial flutter: the QRS-blanked signal repeats at an atrial cycle length of
    # 176-250 ms (240-340/min) for three cycles in a row (``_wave_kernels.atrial_periodicity``),
    # whatever the conduction ratio, so flutter waves locked to the QRS still count
    "flutter_lag_s": (0.176, 0.25),
    "flutter_cycles": 3,
    "flutter_hp_hz": 2.0,      # high-pass before the test (T-wave and baseline energy)
    "flutter_lead_q": 0.75,    # score of the best quarter of the leads (F waves dominate II, III, aVF, V1)
    "flutter_score": 0.4,      # at or above: flutter, no P waves
}

#: Median-beat (template) stage.
TEMPLATE = {
    "min_beats": 3,            # fewer similar beats: every beat is delineated on its own
    "rr_tol": 0.2,             # a member's RR before and after within this fraction of the median
    "qrs_corr": 0.9,           # ... and its QRS correlates at least this much with the template
    "qrs_from_template": False,  # QRS bounds from the template too (else per beat)
    "p_proj_min": 0.35,        # a member has the template's P when its projection is above this
    "p_rel": 0.01,             # template P present when |P| >= p_rel * QRS p-p (averaged: less noise)
}

#: Multi-lead consistency of P and T boundaries (see ``_wave_kernels.consensus_marks``).
CONSENSUS = {
    "tol_p_s": 0.06,           # a lead's P boundary further than this from the leads' median is replaced
    "tol_t_s": 0.04,           # same for T end
    "min_leads": 3,            # ... when at least this many leads have the wave
    "fill_p": True,            # a beat with a P wave reports it in every usable lead
    "fill_t": True,
    "weak_rel": 0.5,           # a lead's P is weak below this fraction of the beat's median relative size
    "tol_weak_s": 0.02,        # ... and then its onset must lie within this of the leads' median
    "weak_cols": (0,),         # marks it applies to (0 P_on; with 2 P_off the global P_off got worse on dev)
}

#: Multi-lead P offset from the spatial P envelope (``_wave_kernels.p_offset_envelope``).
P_ENVELOPE = {
    "alpha": 0.3,              # offset where the envelope falls to this fraction of peak minus minimum
    "mode": "strong",          # per-lead P_off: "set" = the envelope offset in every lead; "strong" = the
                               # same, but leads with a large P keep their own offset when it is 0..tol_s
                               # later (``_apply_p_envelope``); "off" = per-lead kernel offsets only
    "tol_s": 0.02,
    # then every lead's P offset is the mean of that offset and the lead's own amplitude
    # offset (``_wave_kernels.p_offset_amplitude``: where the smoothed lead is back within
    # ``amp_rel`` of its P amplitude from the PR level; 0 = off) plus ``amp_shift_s``
    "amp_rel": 0.25,
    "amp_level_s": 0.02,       # PR level: mean over this span before the lead's QRS onset
    "amp_shift_s": 0.005,
}

#: P onset also from the lead's own amplitude (``_wave_kernels.p_onset_amplitude``,
#: ``_mix_p_onset_amplitude``): every lead's decided P onset becomes the mean of that
#: onset and the lead's amplitude onset plus ``shift_s``, where the two lie within
#: ``cap_s`` of each other (further apart, the amplitude onset has usually met the
#: preceding T wave or noise rather than the P wave's start).
P_ONSET_AMP = {
    "rel": 0.3,                # amplitude onset: smoothed lead within this fraction of its P amplitude (0 = off)
    "level_s": 0.02,           # TP level: mean over this span ...
    "gap_s": 0.008,            # ... ending this long before the decided onset
    "max_back_s": 0.1,         # search back from the P peak at most this far
    "shift_s": -0.016,         # the amplitude onset is late vs the annotators (LUDB development split)
    "cap_s": 0.1,              # (a record-130 lead II beat of LUDB val moves into the 150-ms matching
                               # window with shift -0.014 s: SD there is sensitive to that one beat)
}

#: Per-lead P boundaries relative to the beat's other leads (``_p_template_abs``,
#: ``_p_lead_stage``), applied last, after the amplitude mixes above. Chosen on LUDB dev
#: (the first 20 shelf records, split as in ``benchmarks/bench_delineate.py``); val (the
#: last 20) only reported. Why: per beat, the annotators' lead-to-lead spread of P_on /
#: P_off (SD about 17 ms) is larger than ours (about 13 ms) and only half correlated with
#: it (r = 0.4-0.5); where a lead is back within a fixed 20 µV of its PR level follows
#: their P offsets better (r = 0.52 on dev and val): they see a small P end early,
#: whatever its shape.
P_LEAD = {
    # P onset = beat median + this x (onset - beat median) (least squares on dev: 0.6-0.7;
    # val 0.5-0.7); 1 = off
    "spread_on": 0.7,
    # P offset of a lead whose P is below ``off_weak_rel`` x the leads' median amplitude on
    # the median beat: beat median + ``off_own`` x (own offset - beat median) +
    # ``off_abs`` x (the lead's absolute-threshold offset minus the leads' median, on the
    # median beat), the absolute-threshold offset being the first sample after the lead's
    # P extremum where it is within ``off_abs_mv`` of its PR level (weights: least squares
    # on dev, per beat). Larger P waves keep their offset: with the bar at 1.0-1.2 (most
    # leads) the 12 leads pooled gained 0.1-0.4 ms more on dev but lead II got worse (dev
    # SD 11.7 -> 12.5-13.2 ms). Per beat instead of on the median beat: dev 16.4, val
    # 15.6 ms, several times the time. 0 = off.
    "off_weak_rel": 0.85,
    "off_own": 0.25,
    "off_abs": 0.35,
    "off_abs_mv": 0.02,        # signal units (mV)
    "off_level_s": 0.02,       # PR level: mean over this span before the median QRS onset
    # No per-lead offset table: a dev-calibrated P-offset shift per named lead (aVL +10,
    # V1 -6 ms, ...) moved pooled P_off SD on val only from 15.2 to 15.1 ms and
    # over-corrected val's aVL (-3.2 -> +6.8 ms mean): LUDB's annotators' habits, not a
    # property of the leads.
}

#: Global (multi-lead) QRS bounds: shifts applied to the earliest onset / latest offset.
GLOBAL = {"qrs_on_shift_s": -0.012, "qrs_off_shift_s": 0.014,
          # after the multi-lead consistency step the lead extremes are less spread than
          # the annotators' (LUDB development split: +8.6 ms P_on, -7.4 ms T_off)
          "p_on_shift_s": -0.008, "t_off_shift_s": 0.007,
          # the envelope P offset estimates the leads' typical offset, the global
          # reference is the latest lead's (LUDB development split: -22.6 ms)
          "p_off_shift_s": 0.022}

#: per-beat, per-lead working values of ``_delineate_block``: 0 P peak candidate, 1 its
#: amplitude, 2 template member, 3 P projection, 4 template P amplitude, 5 flutter score
#: 6 multi-lead P offset of the beat (same in every lead), 7 the lead's amplitude P offset,
#: 8 the lead's absolute-threshold P offset minus the leads' median on the median beat
#: (samples, NaN: none), 9 the lead's P is weak on the median beat (1/0, NaN: none)
N_EXTRA = 10

CHUNK_S = 60.0       # long records are delineated in chunks of this length
# Below 50 Hz a 100-ms QRS spans under 5 samples: beats are still found (Se / PPV 99 / 98 %
# at 40 Hz on LUDB records resampled) but every mark is coarse, so the record is flagged
LOW_FS = 50.0
MARGIN_S = 3.0


@lru_cache(maxsize=32)
def _band_sos(fs: float) -> np.ndarray:
    hp = _sps.butter(1, 0.5, btype="high", fs=fs, output="sos")
    lp = _sps.butter(2, min(40.0, 0.45 * fs), btype="low", fs=fs, output="sos")
    return np.ascontiguousarray(np.vstack([hp, lp]))


@lru_cache(maxsize=32)
def _hp_sos(fs: float) -> np.ndarray:
    return np.ascontiguousarray(_sps.butter(2, PRESENCE["flutter_hp_hz"], btype="high", fs=fs, output="sos"))


def _flutter_scores(y, usable, fs, g_on, g_off):
    """Per-lead atrial periodicity at flutter cycle lengths (see ``atrial_periodicity``),
    on the band-limited leads decimated to about 120 Hz (flutter waves are below 20 Hz)."""
    st = max(1, int(fs // 120))
    f2 = fs / st
    yd = np.ascontiguousarray(y[:, ::st])
    if yd.shape[1] < int(2 * f2):
        return -np.ones(y.shape[0])
    yd = _qk.sos_filtfilt_rows(yd, _hp_sos(f2), int(f2))
    lo, hi = PRESENCE["flutter_lag_s"]
    return _wk.atrial_periodicity(yd, usable, np.where(g_on >= 0, g_on // st, -1),
                                  np.where(g_off >= 0, g_off // st, -1), int(0.02 * f2),
                                  int(lo * f2), int(round(hi * f2)), int(PRESENCE["flutter_cycles"]))


def _params_array():
    return _params_cached(tuple(PARAMS.values()))


@lru_cache(maxsize=8)
def _params_cached(values):
    a = np.array(values, dtype=np.float64)
    a.flags.writeable = False       # shared between calls
    return a


def _delineate_block(x, usable, fs, r, lazy=False, cols=False):
    """Per-lead kernels over one block; returns marks (L, nb, 9), feats (L, nb, 6),
    extra (L, nb, N_EXTRA) and, with ``lazy``, a dict of functions that fill
    ``extra[:, :, 5]`` (flutter scores) and ``extra[:, :, 6]`` (envelope P offsets) on
    demand, else those columns are filled here and the dict is empty: the flutter test
    only matters for a minority of records, the P offsets only where there are P waves.
    ``x`` is (leads, samples), or with ``cols`` a C-contiguous (samples, leads) array
    (a Fortran-ordered record's transpose, read without a copy)."""
    n_leads = x.shape[1] if cols else x.shape[0]
    nb = r.shape[0]
    marks = -np.ones((n_leads, nb, 9), np.int64)
    feats = np.zeros((n_leads, nb, _wk.N_FEATS))
    if nb == 0:
        return marks, feats, np.zeros((n_leads, 0, N_EXTRA)), {}
    if cols:
        y = _qk.sos_filtfilt_cols(x, _band_sos(fs), int(fs))
    else:
        y = _qk.sos_filtfilt_rows(x, _band_sos(fs), int(fs))
    p = _params_array()
    # QRS bounds, per-lead kernels and the working array in one call; ``extra`` keeps the
    # per-beat atrial candidates for the rhythm decision before the template stage
    # overwrites the marks of its member beats
    g_on, g_off, marks, feats, extra = _wk.delineate_block(
        y, np.ascontiguousarray(usable, dtype=np.bool_), r, float(fs), p, PARAMS["qrs_sv_alpha"],
        PARAMS["qrs_lead_beta"], PARAMS["qrs_lead_pad_s"], int(round(PARAMS["qrs_on_shift_s"] * fs)), N_EXTRA)
    tinfo = _template_stage(y, usable, fs, r, marks, feats, p)
    extra[:, :, 8:10] = np.nan
    if tinfo is not None:
        extra[:, :, 2] = tinfo["member"][None, :]
        extra[:, :, 3] = tinfo["p_proj"]
        extra[:, :, 4] = tinfo["p_amp"][:, None]
        if P_LEAD["off_weak_rel"] > 0:
            d, weak = _p_template_abs_fast(tinfo["tmpl"], tinfo["marks"][tinfo["use"]], fs)
            extra[tinfo["use"], :, 8] = d[:, None]
            extra[tinfo["use"], :, 9] = weak[:, None]
    extra[:, :, 7] = -1.0
    if P_ENVELOPE["amp_rel"] > 0:
        extra[:, :, 7] = _wk.p_offset_amplitude(y, np.ascontiguousarray(usable, dtype=np.bool_), marks,
                                                int(PARAMS["smooth_s"] * fs) | 1, int(P_ENVELOPE["amp_level_s"] * fs),
                                                float(P_ENVELOPE["amp_rel"]))

    def flutter():
        extra[:, :, 5] = _flutter_scores(y, usable, fs, g_on, g_off)[:, None]

    def p_on_amp(out):
        return _p_onset_candidates(y, usable, fs, out)

    def p_env():
        extra[:, :, 6] = _p_offset_envelope(y, usable, fs, marks, feats)[None, :]

    if lazy:
        return marks, feats, extra, {"flutter": flutter, "p_env": p_env, "p_on_amp": p_on_amp}
    flutter()
    p_env()
    return marks, feats, extra, {}


def _p_onset_candidates(y, usable, fs, out):
    """Per-lead amplitude P onsets (``_wave_kernels.p_onset_amplitude``) for the decided
    marks ``out`` (sample indices of ``y``): (L, nb), -1 where none."""
    q = P_ONSET_AMP
    return _wk.p_onset_amplitude(y, np.ascontiguousarray(usable, dtype=np.bool_), np.ascontiguousarray(out),
                                 int(PARAMS["smooth_s"] * fs) | 1, max(1, int(round(q["level_s"] * fs))),
                                 int(round(q["gap_s"] * fs)), float(q["rel"]), int(round(q["max_back_s"] * fs)))


def _mix_p_onset_amplitude(out, cand, fs):
    """In place: each lead's P onset becomes the mean of the decided onset (after the
    multi-lead consistency steps) and the lead's own amplitude onset ``cand`` plus
    ``P_ONSET_AMP["shift_s"]``, where the two are within ``cap_s``; kept at or before the
    P peak. The decided onset carries the beat's timing (the leads' consensus); the
    lead's own signal says whether its P starts earlier or later (LUDB development
    split: per-lead P_on SD 17.0 -> 16.2 ms, validation 19.2 -> 18.8). Global marks
    are not changed."""
    if cand is None or out.shape[1] == 0:
        return
    _wk.mix_p_onset(out, np.ascontiguousarray(cand, dtype=np.int64), int(round(P_ONSET_AMP["shift_s"] * fs)),
                    int(round(P_ONSET_AMP["cap_s"] * fs)))


def _p_offset_envelope(y, usable, fs, marks, feats):
    """Multi-lead P offset per beat (``_wave_kernels.p_offset_envelope``): the envelope's
    maximum is searched between the median over leads of the candidate P onsets and
    offsets, the PR level is taken before the earliest lead QRS onset."""
    if not len(usable):
        return -np.ones(marks.shape[1], np.int64)
    return _wk.p_offset_envelope_marks(y, np.ascontiguousarray(usable, dtype=np.bool_), marks, feats,
                                       float(fs), PARAMS["smooth_s"], P_ENVELOPE["alpha"])


@lru_cache(maxsize=64)
def _median_net(nm: int) -> np.ndarray:
    return _wk.median_network(nm)


def _median_windows(y, use, starts, w):
    """Sample-wise median of beat windows (``_qrs_kernels.median_windows``, same values):
    a sorting network over blocks of samples for the usual beat counts of a 10-s record,
    the nearly-sorted insertion sort for many beats or windows with NaN."""
    if 2 <= starts.size <= 24:
        out, ok = _wk.median_windows_net(y, use, starts, w, _median_net(int(starts.size)))
        if ok:
            return out
    return _qk.median_windows(y, use, starts, w)


def _template_stage(y, usable, fs, r, marks, feats, p):
    """Delineate the per-lead median beat and give its marks to the beats that match it.

    Averaging the beats of one morphology removes most of the noise that moves a
    single beat's P and T boundaries; beats that differ (ectopic, different RR,
    different QRS shape) keep their own marks. The template is three R-R intervals long
    (previous, own and next beat) so the kernel sees the same context as in the record.
    Returns ``None`` or a dict with ``member`` (beats given the template marks),
    ``p_amp`` (per lead, template P amplitude vs isoelectric), ``p_proj`` (per lead and
    beat: projection of the beat's P wave on the template's, 1 = identical).
    """
    n_leads, n = y.shape
    nb = r.size
    if nb < TEMPLATE["min_beats"]:
        return None
    rr_med, c, w, member = _wk.template_members(r, n, TEMPLATE["rr_tol"])
    if member.sum() < TEMPLATE["min_beats"]:
        return None
    use = np.flatnonzero(usable)
    starts = r[member] - c
    # QRS shape check against the median QRS (only the QRS window is needed for it, so
    # the full-length template is computed once, from the beats that pass)
    h = int(0.06 * fs)
    tq = _median_windows(y, use, starts + (c - h), 2 * h + 1)
    like = _wk.qrs_correlation(y, use, starts + (c - h), 2 * h + 1, tq) >= TEMPLATE["qrs_corr"]
    if like.sum() < TEMPLATE["min_beats"]:
        return None
    tmpl = _median_windows(y, use, starts[like], w)       # (Lu, w)
    if not like.all():
        member[np.flatnonzero(member)[~like]] = False
    tm, tf = _wk.template_delineate(tmpl, use, n_leads, c, rr_med, float(fs), p, PARAMS["qrs_sv_alpha"],
                                    PARAMS["qrs_lead_beta"], PARAMS["qrs_lead_pad_s"],
                                    int(round(PARAMS["qrs_on_shift_s"] * fs)))
    mb = np.flatnonzero(member)
    cols = np.arange(9) if TEMPLATE["qrs_from_template"] else np.array([0, 1, 2, 6, 7, 8], np.int64)
    _wk.assign_template_marks(marks, feats, tm, tf, use, mb, r, c, cols)
    # projection of every beat's P wave onto the template P (per lead)
    p_proj = _wk.p_projection(y, tmpl, use, tm[use, 0].copy(), tm[use, 2].copy(), r, c,
                              max(1, int(0.02 * fs)))
    return {"member": member, "p_amp": tf[:, 0], "p_proj": p_proj, "marks": tm, "c": c,
            "tmpl": tmpl, "use": use}


def _nanmedian_rows(a):
    """Median of each row ignoring NaN (NaN for all-NaN rows); sorts once, no warnings."""
    a = np.asarray(a, float)
    if a.shape[1] == 0:
        return np.full(a.shape[0], np.nan)
    s = np.sort(a, axis=1)                      # NaN sort last
    cnt = np.sum(~np.isnan(a), axis=1)
    lo = np.clip((cnt - 1) // 2, 0, a.shape[1] - 1)
    hi = np.clip(cnt // 2, 0, a.shape[1] - 1)
    rows = np.arange(a.shape[0])
    med = 0.5 * (s[rows, lo] + s[rows, hi])
    return np.where(cnt > 0, med, np.nan)


def _robust_extreme(v, ok, earliest: bool, tol):
    """Per beat: the earliest (or latest) value over leads, ignoring a lone lead that
    lies more than ``tol`` samples beyond the next one (an outlier, not a wave)."""
    big = np.iinfo(np.int64).max
    w = np.where(ok, v, big if earliest else -1)
    s = np.sort(w, axis=0)
    if not earliest:
        s = s[::-1]
    cnt = ok.sum(axis=0)
    first = s[0]
    if s.shape[0] > 1:
        second = s[1]
        lone = (cnt >= 3) & (np.abs(first - second) > tol)
        first = np.where(lone, second, first)
    return np.where(cnt > 0, first, -1)


def _apply_p_envelope(out, keep, env_off, fs, amp, lead_qpp):
    """In place: per-lead P offsets of beats with a P wave from the multi-lead envelope
    offset (see ``P_ENVELOPE``). With mode ``"strong"``, a lead whose P is at least as
    large (relative to its QRS) as the beat's median lead keeps its own offset when that
    lies 0 to ``tol_s`` after the envelope's: a large P is seen to its end in its own
    lead (LUDB annotators end lead II's P later than the typical lead's), a small one is
    not, and its own offset is noise."""
    mode = P_ENVELOPE["mode"]
    if mode == "off" or env_off.size == 0:
        return
    e = env_off.astype(np.int64)[None, :]
    sel = keep & (e >= 0) & (out[:, :, 2] >= 0)
    own = np.zeros_like(sel)
    if mode == "strong":
        rel = np.where(sel, np.abs(amp) / np.maximum(lead_qpp[:, None], 1e-12), np.nan)
        with np.errstate(all="ignore"):
            strong = sel & (rel >= _nanmedian_rows(rel.T)[None, :])
        d = out[:, :, 2] - e
        own = strong & (d >= 0) & (d <= P_ENVELOPE["tol_s"] * fs)
    out[:, :, 2] = np.where(sel & ~own, e, out[:, :, 2])


def _mix_p_offset_amplitude(out, extra, fs):
    """In place: each lead's P offset becomes the mean of the decided offset (mostly the
    multi-lead envelope's) and the lead's own amplitude offset (``extra[:, :, 7]``, see
    ``P_ENVELOPE["amp_*"]``) plus a shift, kept after the P peak and before the lead's
    QRS onset. The envelope gives the beat's typical offset; the lead's own signal says
    whether its P ends earlier or later (LUDB development split: per-lead P_off SD 18.7
    -> 17.1 ms). Global marks are not changed."""
    if P_ENVELOPE["amp_rel"] <= 0 or out.shape[1] == 0 or extra.shape[2] < 8:
        return
    _wk.mix_p_offset(out, extra[:, :, 7].astype(np.int64), int(round(P_ENVELOPE["amp_shift_s"] * fs)))


def _p_template_abs(tmpl, tm, fs):
    """Per lead of the median beat ``tmpl`` (rows: the usable leads; ``tm`` their marks
    on it): the lead's absolute-threshold P offset minus the median over the leads
    (samples; NaN where the lead has no P) and whether its P is weak (1/0).

    In the P window (median over the leads of the P onsets .. offsets) a lead's P
    extremum is its largest deviation from its TP level (mean 30-10 ms before the
    window), its amplitude that deviation, its absolute-threshold offset the first sample
    after the extremum where the lead is within ``P_LEAD["off_abs_mv"]`` of its PR level
    (mean over ``off_level_s`` before the median QRS onset), else the window's end (20 ms
    after the median offset). Weak: amplitude below ``off_weak_rel`` x the median over the
    leads. On the median beat (less noise than one beat, one row per lead: a few dozen
    small numpy calls per record)."""
    Lu, w = tmpl.shape
    d = np.full(Lu, np.nan)
    weak = np.full(Lu, np.nan)
    on, off, q = tm[:, 0].tolist(), tm[:, 2].tolist(), tm[:, 3].tolist()
    rows = [i for i in range(Lu) if on[i] >= 0 and off[i] >= 0]
    qq = [v for v in q if v >= 0]
    if len(rows) < 3 or not qq:
        return d, weak
    # medians of a dozen values: plain Python is several times faster than np.median here
    mon = int(_median_list([on[i] for i in rows]))
    moff = int(_median_list([off[i] for i in rows]))
    mq = int(_median_list(qq))
    a0, a1 = int(0.03 * fs), max(1, int(0.01 * fs))
    n_pr = max(1, int(P_LEAD["off_level_s"] * fs))
    end = min(moff + int(0.02 * fs), w - 1)
    # below about 67 Hz the 30-10 ms TP window holds no sample: no TP level, no rule
    if a0 - a1 < 1 or mon - a0 < 0 or mq - n_pr < 0 or end <= mon:
        return d, weak
    lo = mon - a0
    x = tmpl[:, lo:max(end + 1, mq)][rows]             # the leads with P, the window only
    tp = np.add.reduce(x[:, :a0 - a1], axis=1) / (a0 - a1)
    pr = np.add.reduce(x[:, mq - n_pr - lo:mq - lo], axis=1) / n_pr
    seg = x[:, a0:end + 1 - lo]
    dev = np.abs(seg[:, :moff - mon + 1] - tp[:, None])
    pk = dev.argmax(axis=1)
    amp = dev.max(axis=1)
    back = (np.abs(seg - pr[:, None]) < P_LEAD["off_abs_mv"]) & (_arange(seg.shape[1]) >= pk[:, None])
    t = np.where(back.any(axis=1), back.argmax(axis=1), end - mon)
    ok = np.isfinite(amp) & np.isfinite(pr)             # NaN: a gap in the lead
    if ok.sum() < 3:
        return d, weak
    rows = np.array(rows)[ok]
    t, amp = t[ok], amp[ok]
    d[rows] = t - _median_list(t.tolist())
    weak[rows] = amp < P_LEAD["off_weak_rel"] * _median_list(amp.tolist())
    return d, weak


def _p_template_abs_fast(tmpl, tm, fs):
    """:func:`_p_template_abs` in one numba call (bit-identical; ``_plead_kernels``)."""
    from . import _plead_kernels as _pk
    n_sum = max(int(0.03 * fs) - max(1, int(0.01 * fs)), int(P_LEAD["off_level_s"] * fs)) - 1
    if n_sum > _pk.PAIRWISE_MAX:   # above ~6 kHz numpy would split its sums: keep its order
        return _p_template_abs(np.asarray(tmpl), np.asarray(tm), fs)
    tm = np.asarray(tm, np.int64)
    return _pk.p_template_abs(np.ascontiguousarray(tmpl, np.float64), tm[:, 0].copy(), tm[:, 2].copy(),
                              tm[:, 3].copy(), float(fs), float(P_LEAD["off_level_s"]),
                              float(P_LEAD["off_abs_mv"]), float(P_LEAD["off_weak_rel"]))


@lru_cache(maxsize=16)
def _arange(n):
    a = np.arange(n)
    a.flags.writeable = False
    return a


def _median_list(v):
    """Median of a short non-empty list of numbers (mean of the middle two when even)."""
    v = sorted(v)
    h = len(v) // 2
    return v[h] if len(v) % 2 else 0.5 * (v[h - 1] + v[h])


def _p_lead_stage(out, extra):
    """In place: the per-lead P stage (``P_LEAD``), one numba call; the rule is written out
    in :func:`_p_lead_stage_reference`, to which it is bit-identical (tested)."""
    from . import _plead_kernels as _pk
    L, nb = out.shape[:2]
    weak_on = P_LEAD["off_weak_rel"] > 0 and extra.shape[2] >= 10
    if L == 0 or nb == 0 or (not weak_on and P_LEAD["spread_on"] == 1):
        return
    if weak_on:
        e8, e9 = np.ascontiguousarray(extra[:, :, 8]), np.ascontiguousarray(extra[:, :, 9])
    else:
        e8 = e9 = np.zeros((L, nb))
    _pk.p_lead_stage(out, e8, e9, float(P_LEAD["spread_on"]), float(P_LEAD["off_own"]),
                     float(P_LEAD["off_abs"]), bool(weak_on))


def _p_lead_stage_reference(out, extra):
    """In place: per-lead P boundaries relative to the beat's other leads (``P_LEAD``),
    every step per beat, after the multi-lead steps.

    1. Weak leads' P offsets (``extra[:, :, 8:10]``, from the median beat, see
       ``_p_template_abs``): a lead whose P is weak takes the offset median +
       ``off_own`` x (own - median) + ``off_abs`` x (its absolute-threshold offset - the
       leads' median). LUDB: the annotators see a small P end early, whatever its shape
       (12 leads pooled P_off SD dev 17.6 -> 16.7 ms, val 17.0 -> 15.2; lead II
       unchanged).
    2. P onsets: median + ``spread_on`` x (onset - median). The atria depolarise once
       for all leads: a lead's own onset carries real information (where its projection
       of the P loop starts) and noise; on LUDB dev the annotators' lead-to-lead
       differences follow ours with a slope of about 0.7 (P_on SD dev 16.2 -> 15.6 ms,
       val 18.8 -> 18.1).
    3. Onsets kept at or before the lead's P peak, offsets at or after it and before
       the lead's QRS onset.

    Medians are over the leads with a P wave in the beat, rounded to a sample (numba
    kernels for the medians and the bounds: the numpy versions cost 60 µs a record).
    Global marks are not changed."""
    L, nb = out.shape[:2]
    weak_on = P_LEAD["off_weak_rel"] > 0 and extra.shape[2] >= 10
    if L == 0 or nb == 0 or (not weak_on and P_LEAD["spread_on"] == 1):
        return
    on, off = out[:, :, 0], out[:, :, 2]
    hb = (on >= 0) & (off >= 0)
    if not hb.any():
        return
    # per-beat medians over the leads with P (rounded to a sample): the consensus kernel
    # with a negative tolerance puts the median into every such lead of a copy
    med = out.copy()
    _wk.consensus_marks(med, med, hb, hb, np.ones(nb, np.bool_), _P_COLS, -1, False, 1)
    mon, moff = med[:, :, 0], med[:, :, 2]
    new_off = off
    if weak_on:
        weak = hb & (extra[:, :, 9] > 0.5)                             # NaN compares False
        if weak.any():
            d = np.where(weak, extra[:, :, 8], 0.0)
            nv = np.rint(moff + P_LEAD["off_own"] * (off - moff) + P_LEAD["off_abs"] * d)
            new_off = np.where(weak, nv.astype(np.int64), off)
    # the mixing kernels set (mark + cand) / 2 and keep onsets at or before the P peak
    # (and >= 0), offsets at or after it and before the QRS onset: cand = 2 x new - mark
    if P_LEAD["spread_on"] != 1:
        c_on = np.rint(2.0 * (mon + P_LEAD["spread_on"] * (on - mon))).astype(np.int64) - on
        _wk.mix_p_onset(out, np.where(hb, c_on, -1), 0, 1 << 40)
    _wk.mix_p_offset(out, np.where(hb, 2 * new_off - off, -1), 0)


_P_COLS = np.array([0, 2], np.int64)


def _pull_weak_leads(out, keep, amp, lead_qpp, fs):
    """In place: in leads where a beat's P wave is weak compared with the other leads
    (relative amplitude below ``weak_rel`` times the beat's median over leads), a P
    boundary more than ``tol_weak_s`` from the leads' median is replaced by the median:
    a small P's slopes are too shallow to place its ends, and the atria depolarise
    once for all leads."""
    rel = np.where(keep, np.abs(amp) / np.maximum(lead_qpp[:, None], 1e-12), np.nan)
    with np.errstate(all="ignore"):
        med_rel = _nanmedian_rows(rel.T)
        weak = keep & (rel < CONSENSUS["weak_rel"] * med_rel[None, :])
        if not weak.any():
            return
        tol = CONSENSUS["tol_weak_s"] * fs
        for c in CONSENSUS["weak_cols"]:
            v = np.where(keep & (out[:, :, c] >= 0), out[:, :, c].astype(float), np.nan)
            med = _nanmedian_rows(v.T)
            far = weak & np.isfinite(med)[None, :] & (np.abs(v - med[None, :]) > tol)
            out[:, :, c] = np.where(far, np.round(np.nan_to_num(med))[None, :].astype(np.int64), out[:, :, c])


def _rhythm_flags(flags, extra, live, aa, irregular, nb, any_live, deferred):
    """Record-level atrial flags (shared by the kernel path and its numpy reference).

    The flutter periodicity score is computed (possibly deferred) only where the
    atrial-wave consistency is already below the bar used for irregular rhythms.
    """
    fl = float("nan")
    if any_live and aa < PRESENCE["aa_consistency_irreg"]:
        if deferred and "flutter" in deferred:
            deferred["flutter"]()
        fq = np.quantile(extra[live, :, 5], PRESENCE["flutter_lead_q"], axis=0)
        fl = float(np.median(fq))
    flutter = bool(fl >= PRESENCE["flutter_score"])
    no_aa = bool(aa < PRESENCE["aa_consistency"] or (irregular and aa < PRESENCE["aa_consistency_irreg"])
                 or flutter)
    flags["rr_irregular"] = irregular
    flags["atrial_periodicity"] = round(fl, 3)
    flags["atrial_flutter"] = bool(flutter and nb >= 3)
    flags["atrial_consistency"] = round(aa, 3)
    flags["no_atrial_activity"] = no_aa if nb >= 3 else False


def _decide(marks, feats, usable, r, fs, extra, deferred=None):
    """Presence decisions, atrial-activity decision, beat classes and global marks.

    The per-(lead, beat) work runs in three numba kernels (``_wave_kernels.decide_*``);
    between them stay the record-level rhythm decision (which may trigger the deferred
    flutter test) and the deferred envelope P offsets. Same outputs, bit for bit, as
    :func:`_decide_numpy` (the reference, also used for records without beats)."""
    n_leads, nb, _ = marks.shape
    if nb == 0 or n_leads == 0:
        return _decide_numpy(marks, feats, usable, r, fs, extra, deferred)
    usable = np.ascontiguousarray(usable, dtype=np.bool_)
    lead_qpp, t_ok, p_keep, live, n_live, aa, irr = _wk.decide_presence(
        marks, feats, extra, usable, r, PRESENCE["t_rel"], PRESENCE["p_rel"], PRESENCE["aa_rel"],
        PRESENCE["p_noise"], PRESENCE["p_pr_tol_s"] * fs)
    flags = {}
    irregular = bool(irr > PRESENCE["rr_irregular"])
    _rhythm_flags(flags, extra, live, aa, irregular, nb, bool(n_live), deferred)
    need = max(1, int(np.ceil(PRESENCE["p_lead_frac"] * max(1, n_live))))
    out, p_keep, p_amp, lead_ok = _wk.decide_p(
        marks, feats, extra, usable, lead_qpp, p_keep, t_ok, need, flags["no_atrial_activity"],
        TEMPLATE["p_rel"], TEMPLATE["p_proj_min"], int(round(CONSENSUS["tol_p_s"] * fs)),
        CONSENSUS["fill_p"], CONSENSUS["min_leads"], float(CONSENSUS["weak_rel"]),
        CONSENSUS["tol_weak_s"] * fs, np.array(CONSENSUS["weak_cols"], np.int64))
    mode = {"off": 0, "set": 1, "strong": 2}[P_ENVELOPE["mode"]]
    if deferred and "p_env" in deferred and mode and p_keep.any():
        deferred["p_env"]()
    g, cls, quality, t_ok, f_p, f_t, f_r, f_q, f_i = _wk.decide_rest(
        out, marks, feats, extra, usable, r, lead_qpp, p_keep, p_amp, t_ok, lead_ok, need, float(fs),
        mode, P_ENVELOPE["tol_s"] * fs, int(round(CONSENSUS["tol_t_s"] * fs)), CONSENSUS["fill_t"],
        CONSENSUS["min_leads"], int(round(GLOBAL["qrs_on_shift_s"] * fs)),
        int(round(GLOBAL["qrs_off_shift_s"] * fs)), int(round(GLOBAL["p_on_shift_s"] * fs)),
        int(round(GLOBAL["p_off_shift_s"] * fs)), int(round(GLOBAL["t_off_shift_s"] * fs)), irregular)
    feat_out = {"p_amp": f_p, "t_amp": f_t, "r_amp": f_r, "qrs_p2p": f_q, "iso": f_i}
    return out, g, cls, quality, flags, feat_out


def _decide_numpy(marks, feats, usable, r, fs, extra, deferred=None):
    """Reference numpy version of :func:`_decide` (records without beats or leads, and
    the regression test of the kernels)."""
    n_leads, nb, _ = marks.shape
    member = extra[0, :, 2] > 0 if n_leads else np.zeros(nb, bool)
    flags = {}
    qrs_ok = marks[:, :, 3] >= 0
    qpp = feats[:, :, 2]
    with np.errstate(all="ignore"):
        lead_qpp = _nanmedian_rows(np.where(qrs_ok, qpp, np.nan)) if nb else np.zeros(n_leads)
    lead_qpp = np.where(np.isfinite(lead_qpp), lead_qpp, 0.0)
    # T presence
    t_ok = (marks[:, :, 7] >= 0) & (np.abs(feats[:, :, 1]) >= PRESENCE["t_rel"] * lead_qpp[:, None])
    # P presence, per lead and beat
    p_amp = extra[:, :, 1]
    p_cand = (extra[:, :, 0] >= 0) & qrs_ok
    p_ok = p_cand & (np.abs(p_amp) >= PRESENCE["p_rel"] * lead_qpp[:, None]) \
        & (np.abs(p_amp) >= PRESENCE["p_noise"] * feats[:, :, 4])
    # beat-to-beat consistency of the atrial wave: same polarity and same P-peak-to-QRS
    # time. Scored on lenient candidates (fixed threshold), so that the presence
    # thresholds above do not move the rhythm decision.
    p_any = p_cand & (np.abs(p_amp) >= PRESENCE["aa_rel"] * lead_qpp[:, None]) \
        & (np.abs(p_amp) >= PRESENCE["p_noise"] * feats[:, :, 4])
    lag = (marks[:, :, 3] - extra[:, :, 0]).astype(float)
    lag = np.where(p_any, lag, np.nan)
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        med_lag = _nanmedian_rows(lag)
        pol = np.sign(np.nansum(np.where(p_any, np.sign(p_amp), 0.0), axis=1))
    tol = PRESENCE["p_pr_tol_s"] * fs
    consistent = p_any & (np.abs(lag - med_lag[:, None]) <= tol) & (np.sign(p_amp) == pol[:, None])
    # consistency score per lead = consistent beats / beats with a QRS (leads with any P)
    n_q = qrs_ok.sum(axis=1)
    score = np.where(n_q > 0, consistent.sum(axis=1) / np.maximum(n_q, 1), 0.0)
    live = usable & (n_q > 0)
    aa = float(np.median(np.sort(score[live])[::-1][: max(1, int(live.sum()) // 2)])) if live.any() else 0.0
    # RR irregularity
    rr = np.diff(r).astype(float)
    irregular = False
    if rr.size >= 3:
        irregular = bool(np.median(np.abs(np.diff(rr))) / np.median(rr) > PRESENCE["rr_irregular"])
    # atrial flutter: per beat, the score of the best quarter of the usable leads; the
    # record's score is the median over beats (chunks of a long record have their own)
    # periodicity alone also fires on a strictly regular sinus strip whose RR is a
    # multiple of the lag and whose T and P waves look alike (simulated 95/min), so it
    # is taken as evidence only where the atrial-wave consistency is already below the
    # bar used for irregular rhythms (and computed only there when it can be deferred)
    _rhythm_flags(flags, extra, live, aa, irregular, nb, bool(nb and live.any()), deferred)
    p_keep = consistent & p_ok
    # member beats: the template's P (large enough) and the beat's P projects onto it
    t_amp = extra[:, :, 4]
    t_p = (np.abs(t_amp) >= TEMPLATE["p_rel"] * lead_qpp[:, None]) & (marks[:, :, 1] >= 0) \
        & (extra[:, :, 3] >= TEMPLATE["p_proj_min"])
    p_keep = np.where(member[None, :], t_p, p_keep)
    p_amp = np.where(member[None, :], feats[:, :, 0], p_amp)
    # a beat has a P wave when enough usable leads agree
    need = max(1, int(np.ceil(PRESENCE["p_lead_frac"] * max(1, int(live.sum())))))
    beat_p = p_keep.sum(axis=0) >= need
    if flags["no_atrial_activity"]:
        beat_p[:] = False
    p_keep &= beat_p[None, :]
    out = marks.copy()
    out[:, :, 0:3] = np.where(p_keep[:, :, None], out[:, :, 0:3], -1)
    out[:, :, 6:9] = np.where(t_ok[:, :, None], out[:, :, 6:9], -1)
    out[~usable] = -1
    # multi-lead consistency: a lead's P/T boundary far from the other leads' is pulled to
    # their median; leads where a present wave was too small to be kept get the candidate
    # (or the median) so the wave is reported in every lead of a beat that has it
    lead_ok = qrs_ok & usable[:, None]
    if nb:
        p_keep = _wk.consensus_marks(out, marks, p_keep & lead_ok, lead_ok, beat_p,
                                     np.array([0, 2], np.int64), int(round(CONSENSUS["tol_p_s"] * fs)), CONSENSUS["fill_p"],
                                     CONSENSUS["min_leads"])
        if CONSENSUS["weak_rel"] > 0:
            _pull_weak_leads(out, p_keep, p_amp, lead_qpp, fs)
        if deferred and "p_env" in deferred and P_ENVELOPE["mode"] != "off" and p_keep.any():
            deferred["p_env"]()
        _apply_p_envelope(out, p_keep, extra[0, :, 6] if n_leads else np.zeros(0), fs, p_amp, lead_qpp)
        beat_t = t_ok.sum(axis=0) >= need
        t_ok = _wk.consensus_marks(out, marks, t_ok & lead_ok, lead_ok, beat_t,
                                   np.array([8], np.int64), int(round(CONSENSUS["tol_t_s"] * fs)), CONSENSUS["fill_t"],
                                   CONSENSUS["min_leads"])
        # filled leads take their own candidate peak (else the middle of the wave);
        # peaks stay inside their own boundaries; P ends before this lead's QRS
        for a, pk, z in ((0, 1, 2), (6, 7, 8)):
            miss = (out[:, :, pk] < 0) & (out[:, :, a] >= 0) & (out[:, :, z] >= 0)
            mid = (out[:, :, a] + out[:, :, z]) // 2
            out[:, :, pk] = np.where(miss, np.where(marks[:, :, pk] >= 0, marks[:, :, pk], mid), out[:, :, pk])
            okk = out[:, :, pk] >= 0
            out[:, :, pk] = np.where(okk, np.clip(out[:, :, pk], out[:, :, a], np.maximum(out[:, :, a], out[:, :, z])), -1)
        out[:, :, 2] = np.where((out[:, :, 2] >= 0) & (out[:, :, 3] >= 0),
                                np.minimum(out[:, :, 2], out[:, :, 3] - 1), out[:, :, 2])
    # global marks
    g = -np.ones((nb, 9), np.int64)
    g[:, 4] = r
    tol_s = int(0.02 * fs)
    q_ok = (out[:, :, 3] >= 0) & usable[:, None]
    # per-lead QRS bounds already sit inside the multi-lead window: plain earliest/latest
    big = 10 ** 9 * fs
    g[:, 3] = _robust_extreme(out[:, :, 3], q_ok, True, big)
    g[:, 5] = _robust_extreme(out[:, :, 5], q_ok, False, big)
    # the earliest (latest) of noisy per-lead annotations lies further out than the earliest
    # (latest) of our per-lead bounds; calibrated on the LUDB development split
    sh_on, sh_off = int(round(GLOBAL["qrs_on_shift_s"] * fs)), int(round(GLOBAL["qrs_off_shift_s"] * fs))
    g[:, 3] = np.where(g[:, 3] >= 0, np.maximum(g[:, 3] + sh_on, 0), -1)
    g[:, 5] = np.where(g[:, 5] >= 0, g[:, 5] + sh_off, -1)
    pk = out[:, :, 0] >= 0
    g[:, 0] = _robust_extreme(out[:, :, 0], pk, True, tol_s)
    g[:, 2] = _robust_extreme(out[:, :, 2], pk, False, tol_s)
    sh = int(round(GLOBAL["p_on_shift_s"] * fs))
    g[:, 0] = np.where(g[:, 0] >= 0, np.maximum(g[:, 0] + sh, 0), -1)
    if P_ENVELOPE["mode"] != "off" and n_leads:
        env = extra[0, :, 6].astype(np.int64)
        sh = int(round(GLOBAL["p_off_shift_s"] * fs))
        g[:, 2] = np.where((g[:, 2] >= 0) & (env >= 0), env + sh, g[:, 2])
    g[:, 2] = np.where((g[:, 2] >= 0) & (g[:, 3] >= 0), np.minimum(g[:, 2], g[:, 3] - 1), g[:, 2])
    tk = out[:, :, 8] >= 0
    g[:, 6] = _robust_extreme(out[:, :, 6], tk, True, tol_s)
    g[:, 8] = _robust_extreme(out[:, :, 8], tk, False, 2 * tol_s)
    sh = int(round(GLOBAL["t_off_shift_s"] * fs))
    g[:, 8] = np.where(g[:, 8] >= 0, g[:, 8] + sh, -1)
    # peaks: from the lead with the largest |amplitude| (relative to its QRS size)
    rel = lambda a: np.abs(a) / np.maximum(lead_qpp[:, None], 1e-12)
    for col, amp, ok in ((1, feats[:, :, 0], pk), (7, feats[:, :, 1], tk)):
        score_ = np.where(ok, rel(amp), -1.0)
        best = np.argmax(score_, axis=0) if n_leads else np.zeros(nb, int)
        val = out[best, np.arange(nb), col]
        g[:, col] = np.where(ok.any(axis=0), val, -1)
    # beat classes and quality
    n_use = max(1, int(usable.sum()))
    quality = q_ok.sum(axis=0) / n_use
    cls = np.zeros(nb, np.int8)
    qrs_ms = (g[:, 5] - g[:, 3]) * 1000.0 / fs
    cls[(g[:, 3] >= 0) & (qrs_ms > 120)] = 1
    if nb >= 3:
        rr_prev = np.concatenate(([np.nan], rr))
        # local RR: median of the 9 intervals around each one
        pad = np.concatenate((np.full(5, np.nan), rr, np.full(4, np.nan)))
        local = _nanmedian_rows(np.lib.stride_tricks.sliding_window_view(pad, 10)[:rr.size, 1:])
        local = np.concatenate(([np.nan], local))
        with np.errstate(invalid="ignore"):
            prem = (rr_prev < 0.8 * local) & (cls == 0)
        if not irregular:
            cls[prem] = 2
    cls[quality < 0.5] = 3
    cls[g[:, 3] < 0] = 4
    feat_out = {"p_amp": np.where(p_keep, p_amp, np.nan), "t_amp": np.where(t_ok, feats[:, :, 1], np.nan),
                "r_amp": np.where(q_ok, feats[:, :, 5], np.nan), "qrs_p2p": np.where(q_ok, qpp, np.nan),
                "iso": feats[:, :, 3]}
    return out, g, cls, quality, flags, feat_out


def _usable_leads(x, step):
    """Leads that are not flat and not mostly missing, computed chunk by chunk."""
    n_leads, n = x.shape
    finite = np.zeros(n_leads)
    lo = np.full(n_leads, np.inf)
    hi = np.full(n_leads, -np.inf)
    for a in range(0, n, step):
        c = np.asarray(x[:, a:a + step], dtype=np.float64)
        ok = np.isfinite(c)
        finite += ok.sum(axis=1)
        lo = np.minimum(lo, np.where(ok, c, np.inf).min(axis=1))
        hi = np.maximum(hi, np.where(ok, c, -np.inf).max(axis=1))
    return (finite / max(1, n) >= 0.5) & (hi - lo > 1e-6)


def _drop_marks_in_gaps(marks, x, offset):
    """In place: marks that fall into a NaN gap of their lead are not marks."""
    if marks.size == 0:
        return
    x = np.asarray(x)
    if x.dtype.kind in "iub":
        return                       # integers are always finite
    if x.dtype in (np.float32, np.float64) and marks.dtype == np.int64:
        if not x.flags.c_contiguous:   # one compiled layout (each other one compiles again)
            x = np.ascontiguousarray(x)
        _wk.drop_marks_in_gaps(marks, x, np.int64(offset))
        return
    bad = ~np.isfinite(np.asarray(x, dtype=np.float64))
    if not bad.any():
        return
    lead_idx = np.broadcast_to(np.arange(marks.shape[0])[:, None, None], marks.shape)
    inb = marks >= 0
    inside = np.zeros_like(inb)
    inside[inb] = bad[lead_idx[inb], marks[inb] - offset]
    marks[inside] = -1


def _kernel_array(a):
    # float32 or float64, C order: each other dtype or layout would compile every kernel
    # that reads the raw signal again (seconds of numba compilation on a cold cache).
    # Fortran-ordered float64 (leads, samples) records (``p_signal.T``) are left as they
    # are: ``delineate`` reads a finite one through its transpose (``_fortran64``), and
    # makes the C copy only where it needs one
    if a.dtype != np.float32 and a.dtype != np.float64:
        a = a.astype(np.float64)
    if _fortran64(a):
        return a
    return np.ascontiguousarray(a)


def _fortran64(a) -> bool:
    """A writeable 2-D float64 array in Fortran order only (its transpose is
    C-contiguous; a read-only one is copied as before: numba types it apart)."""
    return (a.ndim == 2 and a.dtype == np.float64 and a.flags.f_contiguous and not a.flags.c_contiguous
            and a.flags.writeable)


def _as_input(record_or_array, fs):
    if isinstance(record_or_array, Record):
        rec = record_or_array
        return _kernel_array(np.asarray(rec.signal)), rec.fs, rec.leads, rec.source
    if fs is None:
        raise ECGError("delineate(array) needs fs=")
    a = np.asarray(record_or_array)
    if a.ndim == 1:
        a = a[None, :]
    if a.ndim != 2:
        raise ECGError(f"delineate expects (n_leads, n_samples), got shape {a.shape}")
    fs = float(fs)
    if not np.isfinite(fs) or fs <= 0:
        raise ECGError(f"sampling rate must be positive, got {fs}")
    return _kernel_array(a), fs, tuple(str(i) for i in range(a.shape[0])), None


def warm_kernels() -> None:
    """Compile (or load from numba's cache) the detection and delineation kernels now.

    Called by batch jobs in the parent before a process pool forks, so that the
    workers inherit compiled kernels instead of each compiling the same ones at
    once on a cold cache (tens of seconds each) or each loading the cache (about
    1 s each). Runs :func:`delineate` on a short simulated 12-lead record.
    """
    from ..synthetic import simulate
    rec = simulate(n=1, fs=500, duration=4, seed=0, rhythm="sinus")[0]
    delineate(rec)


def delineate(record_or_array, fs=None, leads_usable=None, leads=None) -> Delineation:
    """Delineate P, QRS and T waves in every lead, with multi-lead (global) marks.

    Parameters
    ----------
    record_or_array : Record or array_like (n_leads, n_samples)
        The ECG (mV). NaN gaps, flat leads and saturation are tolerated.
    fs : float, optional
        Sampling rate in Hz, required for arrays.
    leads_usable : array_like of bool, optional
        Leads to ignore (False).
    leads : sequence of str, optional
        Lead names of the rows of an array (e.g. ``("I", "II", ..., "V6")``; any
        spelling :func:`ecgcore.record.normalize_lead` knows), so that
        ``d.lead("II")`` works; without them the leads are ``"0"``, ``"1"``, ....
        A Record's own names are used when not given. The marks do not depend on
        the names.

    Returns
    -------
    Delineation
        Marks ``P_on P_peak P_off QRS_on R QRS_off T_on T_peak T_off`` per lead and
        global, -1 where absent. P waves are absent (not invented) when the record
        shows no organised atrial activity (``flags["no_atrial_activity"]``).

    Notes
    -----
    Per lead, QRS boundaries follow the slope-threshold rule of wavelet delineators
    (Martínez et al., IEEE TBME 2004) on the band-limited derivative, searched inwards
    from the multi-lead bounds, then moved inwards where the lead's amplitude stays
    within a fraction of its QRS peak-to-peak of its level before (after) the complex
    (``PARAMS["qrs_*_amp_*"]``: a lead perpendicular to a wide terminal wave ends its
    complex earlier than the latest lead). A lead's P offset is the mean of the
    multi-lead P-envelope offset and the lead's own amplitude offset
    (``P_ENVELOPE["amp_*"]``); its P onset the mean of the decided onset and the
    lead's own amplitude onset (``P_ONSET_AMP``). Last, each lead's P onset keeps 0.7 of
    its deviation from the beat's median over the leads, a lead whose P is small on the
    median beat ends it where it is back within 20 µV of its PR level (weighted with its
    own offset) (``P_LEAD``). The per-lead kernel's P and T ends use the
    trapezium-area method (Vázquez-Seisdedos et al., BioMed Eng OnLine 2011) from the
    steepest slope after (before) the peak.
    """
    x, fs, names, source = _as_input(record_or_array, fs)
    n_leads, n = x.shape
    if leads is not None:
        if isinstance(leads, str):
            raise ECGError(f"leads must be a sequence of lead names, got the string {leads!r}", source)
        names = normalize_leads(leads)
        if len(names) != n_leads:
            raise ECGError(f"leads: {len(names)} names for {n_leads} signal rows", source)
    step, mg = int(CHUNK_S * fs), int(MARGIN_S * fs)
    long = n > step + 2 * mg
    # a finite Fortran-ordered float64 record (``p_signal.T``) is read through its
    # transpose ``xt``, (samples, leads) in C order, by the detector and the band filter:
    # no copy of the record (35-70 us for 12 leads x 10 s, a sixth of the detector), same
    # marks; with NaN/inf (``_clean_rows`` fills them in a copy) or long, a C copy
    xt = None
    if long:
        # long records are cleaned chunk by chunk: memory stays bounded by the chunk size
        if _fortran64(x):
            x = np.ascontiguousarray(x)   # the chunks and gap checks read C order
        xc, usable = None, _usable_leads(x, step)
    else:
        # a finite Fortran-ordered float64 record comes back as it is, not copied
        xc, usable = _clean_rows(x)
        if xc is x and _fortran64(x):
            xt = x.T
        elif _fortran64(x):
            x = np.ascontiguousarray(x)   # the gap checks read C order (one kernel signature)
    if leads_usable is not None:
        usable &= np.asarray(leads_usable, bool)
    flags = {"too_short": n < int(2 * fs), "unusable_leads": [names[i] for i in np.flatnonzero(~usable)],
             "low_sampling_rate": fs < LOW_FS}
    if fs < MIN_FS:
        # QRS complexes are not resolved (see qrs.MIN_FS): no beats rather than wrong ones
        flags["sampling_rate_too_low"] = True
        r = np.empty(0, np.int64)
    elif long:
        r = detect_qrs(x, fs, leads_usable=usable)
    elif xt is not None:
        r = _detect_clean_cols(xt, usable, fs)
    else:
        r = _detect_clean(xc, usable, fs)
    if xt is not None:
        pass                              # finite: every beat is live, no mark in a gap
    elif r.size and n_leads and not long and isinstance(x, np.ndarray) and x.dtype in (np.float32, np.float64):
        r = r[_wk.live_beats(x, r)]       # no beat whose complex sits in a gap in every lead
    elif r.size:
        # no beat whose complex sits in a gap in every lead
        dead = np.zeros(r.size, bool)
        for a0 in range(0, n, step):
            sel = (r >= a0) & (r < a0 + step)
            if sel.any():
                dead[sel] = ~np.isfinite(np.asarray(x[:, r[sel]], dtype=np.float64)).any(axis=0)
        r = r[~dead] if n_leads else r
    flags["no_qrs"] = r.size == 0
    if not long:
        if xt is not None:
            marks, feats, extra, deferred = _delineate_block(xt, usable, fs, r, lazy=True, cols=True)
        else:
            marks, feats, extra, deferred = _delineate_block(xc, usable, fs, r, lazy=True)
            _drop_marks_in_gaps(marks, x, 0)
    else:
        marks = -np.ones((n_leads, r.size, 9), np.int64)
        feats = np.zeros((n_leads, r.size, _wk.N_FEATS))
        extra = np.zeros((n_leads, r.size, N_EXTRA))
        extra[:, :, 5:8] = -1.0
        extra[:, :, 8:10] = np.nan
        deferred = {}
        for start in range(0, n, step):
            sel = np.flatnonzero((r >= start) & (r < start + step))
            if sel.size == 0:
                continue
            a, z = max(0, start - mg), min(n, start + step + mg)
            # neighbours inside the margin give the RR context of the edge beats
            ctx = np.flatnonzero((r >= a + int(0.2 * fs)) & (r < z - int(0.2 * fs)))
            xa, _ = _clean_rows(x[:, a:z])
            m, f, e, _ = _delineate_block(xa, usable, fs, r[ctx] - a)
            _drop_marks_in_gaps(m, x, -a)   # the whole record, not a slice: one kernel layout
            keep = np.isin(ctx, sel)
            m = np.where(m >= 0, m + a, -1)
            marks[:, ctx[keep]] = m[:, keep]
            feats[:, ctx[keep]] = f[:, keep]
            e[:, :, 0] = np.where(e[:, :, 0] >= 0, e[:, :, 0] + a, -1)
            e[:, :, 6] = np.where(e[:, :, 6] >= 0, e[:, :, 6] + a, -1)
            e[:, :, 7] = np.where(e[:, :, 7] >= 0, e[:, :, 7] + a, -1)
            extra[:, ctx[keep]] = e[:, keep]
    out, g, cls, quality, f2, feat_out = _decide(marks, feats, usable, r, fs, extra, deferred)
    if P_ONSET_AMP["rel"] > 0 and r.size and n_leads and (out[:, :, 0] >= 0).any():
        # amplitude P onsets need the decided onsets (their TP level sits before them)
        if not long:
            _mix_p_onset_amplitude(out, deferred["p_on_amp"](out), fs)
        else:
            # long records: the band-limited chunk again (memory stays bounded)
            cand = -np.ones((n_leads, r.size), np.int64)
            for start in range(0, n, step):
                sel = np.flatnonzero((r >= start) & (r < start + step))
                if sel.size == 0 or not (out[:, sel, 0] >= 0).any():
                    continue
                a, z = max(0, start - mg), min(n, start + step + mg)
                xa, _ = _clean_rows(x[:, a:z])
                ya = _qk.sos_filtfilt_rows(xa, _band_sos(fs), int(fs))
                o = np.where(out[:, sel] >= 0, out[:, sel] - a, -1)
                o = np.where(o < z - a, o, -1)
                c = _p_onset_candidates(ya, usable, fs, o)
                cand[:, sel] = np.where(c >= 0, c + a, -1)
            _mix_p_onset_amplitude(out, cand, fs)
    _mix_p_offset_amplitude(out, extra, fs)
    if r.size and n_leads:
        _p_lead_stage(out, extra)
    flags.update(f2)
    return Delineation(fs, names, out, g, cls, quality, flags, feat_out, source)

"""The :class:`Delineation` result: per-lead and global wave marks for each beat."""

from __future__ import annotations

import os

import numpy as np

from ..errors import ECGError
from ..io.annotations import write_annotations
from ..record import normalize_lead

__all__ = ["Delineation", "MARKS", "BEAT_CLASSES"]

#: Mark names, in the order of the last axis of ``Delineation.marks``.
MARKS = ("P_on", "P_peak", "P_off", "QRS_on", "R", "QRS_off", "T_on", "T_peak", "T_off")
#: Beat morphology/quality codes of ``Delineation.beat_class``.
BEAT_CLASSES = {0: "normal", 1: "wide_qrs", 2: "premature", 3: "noisy", 4: "undelineated"}


class Delineation:
    """Wave marks of one record.

    Attributes
    ----------
    fs : float
        Sampling rate, Hz.
    leads : tuple of str
        Lead names (``"0"``, ``"1"``, ... for unnamed arrays).
    marks : ndarray of int64, shape (n_leads, n_beats, 9)
        Per-lead sample indices of :data:`MARKS`; -1 where the wave is absent in
        that lead or the lead is unusable.
    global_marks : ndarray of int64, shape (n_beats, 9)
        Multi-lead marks: earliest onset and latest offset over the leads where the
        wave is present (after discarding a lone outlying lead), the R fiducial of
        the detector and the peak from the lead of largest amplitude. -1 when absent.
    beat_class : ndarray of int8, shape (n_beats,)
        Codes of :data:`BEAT_CLASSES` (wide QRS > 120 ms, premature < 80 % of the
        local RR, noisy, undelineated).
    beat_quality : ndarray of float, shape (n_beats,)
        Fraction of usable leads in which the QRS could be delineated.
    flags : dict
        Record-level decisions and reasons, e.g. ``no_atrial_activity`` (True for AF,
        flutter-like or paced rhythms: then every P mark is -1), ``atrial_flutter``
        (regular atrial waves at 240-340/min, see ``atrial_periodicity``: the score,
        NaN where the test was not needed), ``atrial_consistency``, ``rr_irregular``,
        ``too_short``, ``no_qrs``, ``unusable_leads``, ``low_sampling_rate`` (below
        50 Hz: coarse marks), ``sampling_rate_too_low`` (below 25 Hz: no beats
        reported, QRS complexes are not resolved).
    features : dict of ndarray
        Per lead and beat: ``p_amp``, ``t_amp``, ``r_amp``, ``qrs_p2p``, ``iso``
        (signal units, e.g. mV), kept for the measurements.
    """

    def __init__(self, fs, leads, marks, global_marks, beat_class, beat_quality, flags,
                 features=None, source=None):
        self.fs = float(fs)
        self.leads = tuple(leads)
        self.marks = np.asarray(marks, np.int64)
        self.global_marks = np.asarray(global_marks, np.int64)
        self.beat_class = np.asarray(beat_class, np.int8)
        self.beat_quality = np.asarray(beat_quality, float)
        self.flags = dict(flags)
        self.features = dict(features or {})
        self.source = source

    @property
    def n_beats(self) -> int:
        return self.global_marks.shape[0]

    @property
    def r_peaks(self) -> np.ndarray:
        """The detector's R fiducials (global)."""
        return self.global_marks[:, 4].copy()

    def __len__(self) -> int:
        return self.n_beats

    def __repr__(self) -> str:
        f = [k for k, v in self.flags.items() if v is True]
        return (f"<Delineation {self.n_beats} beats x {len(self.leads)} leads @ {self.fs:g} Hz"
                + (f" flags={f}" if f else "") + ">")

    def _lead_index(self, lead) -> int:
        if isinstance(lead, (int, np.integer)):
            if not -len(self.leads) <= lead < len(self.leads):
                raise ECGError(f"lead index {lead} out of range for {len(self.leads)} leads",
                               self.source)
            return int(lead) % len(self.leads)
        name = normalize_lead(lead)
        if name in self.leads:
            return self.leads.index(name)
        raise ECGError(f"no lead {lead!r}; the delineation has {', '.join(self.leads)}", self.source)

    def lead(self, lead) -> dict:
        """Marks of one lead (name or index): ``{mark: int64 array (n_beats,)}``."""
        i = self._lead_index(lead)
        return {m: self.marks[i, :, k].copy() for k, m in enumerate(MARKS)}

    def global_(self) -> dict:
        """Global (multi-lead) marks: ``{mark: int64 array (n_beats,)}``."""
        return {m: self.global_marks[:, k].copy() for k, m in enumerate(MARKS)}

    def beat_labels(self) -> list:
        return [BEAT_CLASSES[int(c)] for c in self.beat_class]

    def to_frame(self, leads: bool = True):
        """A long pandas DataFrame: one row per (beat, lead) with lead ``"global"`` first.

        Columns: ``beat``, ``lead``, the nine marks (sample indices, -1 absent),
        ``beat_class``, ``beat_quality``. Raises ImportError without pandas.
        """
        import pandas as pd
        rows = {"beat": [], "lead": []}
        names = ["global"] + (list(self.leads) if leads else [])
        blocks = [self.global_marks] + ([self.marks[i] for i in range(len(self.leads))] if leads else [])
        nb = self.n_beats
        data = np.concatenate(blocks, axis=0) if nb else np.zeros((0, len(MARKS)), np.int64)
        rows["beat"] = np.tile(np.arange(nb), len(names))
        rows["lead"] = np.repeat(names, nb)
        df = pd.DataFrame(rows)
        for k, m in enumerate(MARKS):
            df[m] = data[:, k]
        labels = np.array([BEAT_CLASSES[c] for c in range(len(BEAT_CLASSES))], dtype=object)
        df["beat_class"] = np.tile(labels[self.beat_class], len(names)) if nb else []
        df["beat_quality"] = np.tile(self.beat_quality, len(names))
        return df

    def to_wfdb(self, path, lead=None, extension=None) -> list:
        """Write WFDB annotation files in the LUDB convention: ``(`` onset, peak symbol
        ``p``/``N``/``t``, ``)`` offset, one triplet per present wave.

        ``path`` is the record name without extension. By default one file per lead
        (extension = lower-case lead name, as LUDB) plus ``global`` for the global
        marks; ``lead`` restricts to one lead (or ``"global"``). Returns the paths.
        """
        targets = []
        if lead is None:
            targets = [("global", self.global_marks)] + [
                (name, self.marks[i]) for i, name in enumerate(self.leads)]
        elif lead == "global":
            targets = [("global", self.global_marks)]
        else:
            i = self._lead_index(lead)
            targets = [(self.leads[i], self.marks[i])]
        written = []
        for name, m in targets:
            samples, symbols, nums = _triplets(m)
            ext = extension or str(name).lower()
            out = f"{os.fspath(path)}.{ext}"
            _write_annotations(out, samples, symbols, nums, self.fs)
            written.append(out)
        return written


def _triplets(m: np.ndarray):
    """Flatten (n_beats, 9) marks into sorted (sample, symbol, num) triplets."""
    s, y, nu = [], [], []
    for a, pk, z, sym, num in ((0, 1, 2, "p", 0), (3, 4, 5, "N", 1), (6, 7, 8, "t", 2)):
        ok = m[:, pk] >= 0
        for col, c in ((a, "("), (pk, sym), (z, ")")):
            v = m[ok, col]
            good = v >= 0
            s.append(v[good])
            y.extend([c] * int(good.sum()))
            nu.extend([num] * int(good.sum()))
    samples = np.concatenate(s) if s else np.zeros(0, np.int64)
    order = np.argsort(samples, kind="stable")
    return samples[order], [y[i] for i in order], [nu[i] for i in order]


def _write_annotations(path, samples, symbols, nums, fs):
    """Write a MIT-format annotation file with :func:`ecgcore.io.annotations.write_annotations`."""
    base, ext = os.path.splitext(os.fspath(path))
    return write_annotations(base, ext.lstrip("."), np.asarray(samples, np.int64), list(symbols),
                             num=np.asarray(nums, np.int64), fs=fs)

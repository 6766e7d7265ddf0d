"""The Record: one ECG with its sampling rate, lead names, units and provenance.

Like an MNE ``Raw`` object, a Record carries everything a function needs to
interpret its samples, so no function takes ``fs`` or lead names twice.

One place per fact: canonical lead names, their aliases and the limb-lead
derivation rules live here and nowhere else.
"""

from __future__ import annotations

import functools
import math
import os
import re
from dataclasses import dataclass, field
from typing import Iterable, Mapping, Sequence

import numpy as np

from .errors import ConfigError, ECGError

__all__ = ["Record", "STANDARD_12", "STANDARD_8", "normalize_lead", "normalize_leads",
           "QualityReport", "amplitude_quality"]

#: The canonical 12 leads, in the order every ecgcore array uses.
STANDARD_12: tuple[str, ...] = ("I", "II", "III", "aVR", "aVL", "aVF",
                                "V1", "V2", "V3", "V4", "V5", "V6")
#: The eight independent leads (limb leads III, aVR, aVL, aVF are derived from I and II).
STANDARD_8: tuple[str, ...] = ("I", "II", "V1", "V2", "V3", "V4", "V5", "V6")

_CANON_UPPER = {name.upper(): name for name in STANDARD_12}
# Aliases seen in real files (CODE-15% DI/DII/DIII, MIT-BIH MLII, DICOM/aECG codes, Frank leads).
_ALIASES = {
    "DI": "I", "DII": "II", "DIII": "III", "D1": "I", "D2": "II", "D3": "III",
    "LEAD I": "I", "LEAD II": "II", "LEAD III": "III", "ML I": "I", "MLI": "I",
    "MLII": "II", "ML II": "II", "MLIII": "III", "ML III": "III",
    "AVR": "aVR", "AVL": "aVL", "AVF": "aVF",
    "1": "I", "2": "II", "3": "III",
    "VX": "vx", "VY": "vy", "VZ": "vz",
}
_PREFIXES = re.compile(r"^(MDC_ECG_LEAD_|ECG[ _-]?LEAD[ _-]?|ECG[ _-]|LEAD[ _-]?)", re.I)


def normalize_lead(name: str) -> str:
    """Return the canonical spelling of a lead name.

    ``"avr"``, ``"AVR"``, ``"aVR "`` and ``"MDC_ECG_LEAD_AVR"`` all become
    ``"aVR"``; ``"MLII"`` and ``"DII"`` become ``"II"``; ``"v1"`` becomes
    ``"V1"``. Names that are not ECG leads are returned stripped but otherwise
    unchanged, so no information is lost.
    """
    if type(name) is str:
        # every record of a biobank repeats the same dozen spellings
        return _normalize_str(name)
    return _normalize_uncached(name)


def _normalize_uncached(name) -> str:
    raw = str(name).strip()
    key = raw.upper()
    if key in _CANON_UPPER:
        return _CANON_UPPER[key]
    if key in _ALIASES:
        return _ALIASES[key]
    stripped = _PREFIXES.sub("", raw).strip()
    if stripped != raw:
        return normalize_lead(stripped)
    return raw


_normalize_str = functools.lru_cache(maxsize=4096)(_normalize_uncached)


def normalize_leads(names: Iterable[str]) -> tuple[str, ...]:
    """Normalise a sequence of lead names (see :func:`normalize_lead`)."""
    return tuple(map(normalize_lead, names))


# Limb-lead derivations in physical units (facts: only I and II are independent).
# Each entry: target -> list of (coefficient, source) using I and II.
_DERIVE_FROM_I_II = {
    "III": ((-1.0, "I"), (1.0, "II")),
    "aVR": ((-0.5, "I"), (-0.5, "II")),
    "aVL": ((1.0, "I"), (-0.5, "II")),
    "aVF": ((-0.5, "I"), (1.0, "II")),
}
# When I or II is missing but III is present, the Einthoven triangle still closes.
_DERIVE_I_II = {
    "I": ((1.0, "II"), (-1.0, "III")),
    "II": ((1.0, "I"), (1.0, "III")),
}


@dataclass(frozen=True)
class QualityReport:
    """Per-lead quality flags of a record.

    Attributes
    ----------
    leads : tuple of str
        Lead names, aligned with every array below.
    nan_fraction : ndarray of float
        Fraction of samples that are NaN.
    flat : ndarray of bool
        The lead is constant (peak-to-peak below 1 µV) or entirely NaN.
    clipped : ndarray of bool
        More than 1 % of samples sit on the lead's extreme values (saturation).
    amplitude_mv : ndarray of float
        Robust peak-to-peak amplitude (0.1 to 99.9 percentile after removing
        baseline drift with a 0.6-s moving average), mV.
    implausible_amplitude : ndarray of bool
        The robust amplitude is outside 0.05 to 10 mV for a non-flat lead; a
        file whose scale is off by 5 to 6 times (see facts/formats.md §13) trips it.
    flags : dict
        Record-level flags, e.g. ``{"scale_suspect": True}``.
    """

    leads: tuple
    nan_fraction: np.ndarray
    flat: np.ndarray
    clipped: np.ndarray
    amplitude_mv: np.ndarray
    implausible_amplitude: np.ndarray
    flags: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True when no lead carries a flag and no record flag is set."""
        return not (np.any(self.nan_fraction > 0) or self.flat.any() or self.clipped.any()
                    or self.implausible_amplitude.any() or any(self.flags.values()))

    def lead_flags(self) -> dict[str, list[str]]:
        """Return ``{lead: [flag, ...]}`` with only the flags that are set."""
        out: dict[str, list[str]] = {}
        for i, name in enumerate(self.leads):
            f = []
            if self.nan_fraction[i] > 0:
                f.append("nan")
            if self.flat[i]:
                f.append("flat")
            if self.clipped[i]:
                f.append("clipped")
            if self.implausible_amplitude[i]:
                f.append("implausible_amplitude")
            out[name] = f
        return out

    def to_dict(self) -> dict:
        """A JSON-serialisable summary."""
        return {
            "ok": self.ok,
            "leads": {name: {"nan_fraction": float(self.nan_fraction[i]),
                             "flat": bool(self.flat[i]), "clipped": bool(self.clipped[i]),
                             "amplitude_mv": float(self.amplitude_mv[i]),
                             "implausible_amplitude": bool(self.implausible_amplitude[i])}
                      for i, name in enumerate(self.leads)},
            "flags": {k: bool(v) for k, v in self.flags.items()},
        }


def _remove_drift(x: np.ndarray, fs: float) -> np.ndarray:
    """Subtract a 0.6-s moving average (a crude high-pass near 1 Hz), NaN-safe.

    Amplitude statistics must not count baseline offset and wander as signal:
    a real CODE-15% exam with a drifting baseline spans 6 mV raw but 3.9 mV of ECG.
    """
    w = max(3, int(round(0.6 * fs)) | 1)
    n = x.shape[1]
    if n <= w:
        return x - np.nanmedian(x, axis=1, keepdims=True)
    filled = np.where(np.isnan(x), 0.0, x)
    ok = (~np.isnan(x)).astype(np.float64)
    c = np.cumsum(np.pad(filled, ((0, 0), (1, 0))), axis=1)
    k = np.cumsum(np.pad(ok, ((0, 0), (1, 0))), axis=1)
    half = w // 2
    lo = np.clip(np.arange(n) - half, 0, n)
    hi = np.clip(np.arange(n) + half + 1, 0, n)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = (c[:, hi] - c[:, lo]) / (k[:, hi] - k[:, lo])
    return x - mean


def amplitude_quality(signal: np.ndarray, leads: Sequence[str],
                      fs: float | None = None) -> QualityReport:
    """Compute per-lead quality flags of a (n_leads, n_samples) millivolt array.

    With ``fs``, amplitudes are measured after removing baseline drift.
    The work is whole-array numpy reductions; nothing loops over samples.
    """
    x = np.asarray(signal, dtype=np.float64)
    n_leads, n = x.shape
    nan = np.isnan(x)
    nan_fraction = nan.mean(axis=1) if n else np.ones(n_leads)
    all_nan = nan.all(axis=1) if n else np.ones(n_leads, bool)
    with np.errstate(all="ignore"):
        lo = np.where(all_nan, 0.0, np.nanmin(np.where(all_nan[:, None], 0.0, x), axis=1)) if n else np.zeros(n_leads)
        hi = np.where(all_nan, 0.0, np.nanmax(np.where(all_nan[:, None], 0.0, x), axis=1)) if n else np.zeros(n_leads)
        flat = all_nan | ((hi - lo) < 1e-3)
        if n:
            filled = _remove_drift(x, fs) if fs else x
            q = np.nanpercentile(np.where(all_nan[:, None], 0.0, filled), [0.1, 99.9], axis=1)
            amp = q[1] - q[0]
            at_extreme = ((x == lo[:, None]) | (x == hi[:, None])) & ~nan
            clipped = (at_extreme.mean(axis=1) > 0.01) & ~flat
        else:
            amp = np.zeros(n_leads)
            clipped = np.zeros(n_leads, bool)
    implausible = ~flat & ((amp < 0.05) | (amp > 10.0))
    flags = {}
    live = ~flat
    if live.sum() >= 3:
        med = float(np.median(amp[live]))
        # A whole record at 5-6x the physiological range is the classic scale trap.
        flags["scale_suspect"] = bool(med > 4.5 or med < 0.08)
    return QualityReport(tuple(leads), nan_fraction, flat, clipped, amp, implausible, flags)


_NO_LEADS: frozenset = frozenset()


class Record:
    """A multi-lead ECG in physical units.

    Parameters
    ----------
    signal : array_like, shape (n_leads, n_samples)
        Samples in millivolts; stored as float32, C-contiguous.
    fs : float
        Sampling rate, Hz.
    leads : sequence of str
        Lead names; aliases are normalised (``AVR`` -> ``aVR``, ``MLII`` -> ``II``).
    meta : dict, optional
        Patient, device, acquisition time, machine measurements, statements,
        and ``format`` (the reader that produced the record).
    median : Record, optional
        Median/representative beats, with their own ``fs``.
    source : str or path, optional
        The file the record came from.
    derived : iterable of str, optional
        Names of leads that were computed rather than recorded.
    units : str
        Always ``"mV"`` for records made by ecgcore readers.
    annotations : dict, optional
        Named annotation arrays (e.g. ``{"atr": {"sample": ..., "symbol": ...}}``).
    """

    __slots__ = ("signal", "fs", "leads", "meta", "median", "source", "derived", "units",
                 "annotations", "_quality")

    def __init__(self, signal, fs: float, leads: Sequence[str], meta: Mapping | None = None,
                 median: "Record | None" = None, source: "str | os.PathLike | None" = None,
                 derived: Iterable[str] = (), units: str = "mV",
                 annotations: Mapping | None = None):
        if (type(signal) is np.ndarray and signal.dtype == np.float32
                and signal.flags.c_contiguous):
            sig = signal  # what ascontiguousarray would return, without its call overhead
        else:
            sig = np.ascontiguousarray(signal, dtype=np.float32)
        if sig.ndim == 1:
            sig = sig[None, :]
        if sig.ndim != 2:
            raise ECGError(f"signal must be (n_leads, n_samples), got shape {sig.shape}", source)
        leads = normalize_leads(leads)
        if len(leads) != sig.shape[0]:
            raise ECGError(f"{len(leads)} lead names for {sig.shape[0]} signal rows", source)
        try:
            fs = float(fs)
        except (TypeError, ValueError):
            raise ECGError(f"sampling rate must be a number, got {fs!r}", source) from None
        if not math.isfinite(fs) or fs <= 0:
            raise ECGError(f"sampling rate must be positive, got {fs}", source)
        self.signal = sig
        self.fs = fs
        self.leads = leads
        self.meta = dict(meta or {})
        self.median = median
        self.source = os.fspath(source) if source is not None else None
        self.derived = (_NO_LEADS if type(derived) is tuple and not derived
                        else frozenset(normalize_leads(derived)))
        self.units = units
        self.annotations = dict(annotations or {})
        self._quality = None

    # -- basic views --------------------------------------------------------
    @property
    def n_leads(self) -> int:
        return self.signal.shape[0]

    @property
    def n_samples(self) -> int:
        return self.signal.shape[1]

    @property
    def duration(self) -> float:
        """Length in seconds."""
        return self.n_samples / self.fs

    @property
    def times(self) -> np.ndarray:
        """Sample times in seconds."""
        return np.arange(self.n_samples) / self.fs

    def __len__(self) -> int:
        return self.n_samples

    def __contains__(self, lead: str) -> bool:
        return normalize_lead(lead) in self.leads

    def index(self, lead: "str | int") -> int:
        """Row index of a lead given by name (any alias) or position."""
        if isinstance(lead, (int, np.integer)):
            if not -self.n_leads <= lead < self.n_leads:
                raise ECGError(f"lead index {lead} out of range for {self.n_leads} leads", self.source)
            return int(lead) % self.n_leads
        name = normalize_lead(lead)
        try:
            return self.leads.index(name)
        except ValueError:
            raise ECGError(f"no lead {lead!r}; the record has {', '.join(self.leads)}",
                           self.source) from None

    def __getitem__(self, lead: "str | int") -> np.ndarray:
        return self.signal[self.index(lead)]

    def __repr__(self) -> str:
        src = f", source={os.path.basename(self.source)!r}" if self.source else ""
        med = ", median" if self.median is not None else ""
        return (f"<Record {self.n_leads} leads x {self.n_samples} samples @ {self.fs:g} Hz "
                f"({self.duration:.2f} s){med}{src}>")

    def copy(self, **changes) -> "Record":
        """Return a copy, optionally replacing attributes (``signal``, ``fs``, ...)."""
        kw = dict(signal=self.signal.copy(), fs=self.fs, leads=self.leads, meta=dict(self.meta),
                  median=self.median, source=self.source, derived=self.derived, units=self.units,
                  annotations=dict(self.annotations))
        kw.update(changes)
        return Record(**kw)

    # -- quality ------------------------------------------------------------
    @property
    def quality(self) -> QualityReport:
        """Per-lead flags: NaN, flat, clipped, implausible amplitude (computed once)."""
        if self._quality is None:
            q = amplitude_quality(self.signal, self.leads, self.fs)
            extra = self.meta.get("quality_flags") or {}
            if extra:
                q = QualityReport(q.leads, q.nan_fraction, q.flat, q.clipped, q.amplitude_mv,
                                  q.implausible_amplitude, {**q.flags, **extra})
            self._quality = q
        return self._quality

    # -- lead handling ------------------------------------------------------
    def conform(self, leads: Sequence[str] = STANDARD_12, derive: bool = True,
                missing: str = "zero") -> "Record":
        """Return a record with exactly ``leads``, in that order.

        Leads are matched by name, never by position. With ``derive=True``,
        III, aVR, aVL and aVF are computed from I and II when absent (and I or
        II from the other and III). Leads still missing are filled with zeros
        (``missing="zero"``) or NaN (``missing="nan"``); ``missing="raise"``
        raises :class:`~ecgcore.errors.ECGError` instead.

        The median beats, when present, are conformed the same way.
        """
        if missing not in ("zero", "nan", "raise"):
            raise ConfigError(f"missing must be 'zero', 'nan' or 'raise', got {missing!r}")
        want = normalize_leads(leads)
        have = {name: i for i, name in enumerate(self.leads)}
        rows: dict[str, np.ndarray] = {}
        derived = set(self.derived)

        def get(name):
            if name in rows:
                return rows[name]
            if name in have:
                return self.signal[have[name]]
            return None

        if derive:
            for table in (_DERIVE_I_II, _DERIVE_FROM_I_II):
                for target, terms in table.items():
                    if target in have or target in rows:
                        continue
                    parts = [get(src) for _, src in terms]
                    if all(p is not None for p in parts):
                        acc = np.zeros(self.n_samples, np.float64)
                        for (coef, _), p in zip(terms, parts):
                            acc += coef * p.astype(np.float64)
                        rows[target] = acc.astype(np.float32)
                        derived.add(target)
        out = np.empty((len(want), self.n_samples), np.float32)
        absent = []
        for i, name in enumerate(want):
            row = get(name)
            if row is None:
                absent.append(name)
                out[i] = 0.0 if missing == "zero" else np.nan
            else:
                out[i] = row
        if absent and missing == "raise":
            raise ECGError(f"missing leads {', '.join(absent)}; the record has "
                           f"{', '.join(self.leads)}", self.source)
        meta = dict(self.meta)
        if absent:
            meta["missing_leads"] = absent
        median = self.median.conform(want, derive, missing if missing != "raise" else "nan") \
            if self.median is not None else None
        return Record(out, self.fs, want, meta=meta, median=median, source=self.source,
                      derived=[d for d in derived if d in want], units=self.units,
                      annotations=self.annotations)

    def pick(self, leads: Sequence["str | int"]) -> "Record":
        """Return a record with only the given leads (by name or index), no derivation."""
        idx = [self.index(ld) for ld in leads]
        return Record(self.signal[idx], self.fs, [self.leads[i] for i in idx], meta=self.meta,
                      median=self.median, source=self.source,
                      derived=[self.leads[i] for i in idx if self.leads[i] in self.derived],
                      units=self.units, annotations=self.annotations)

    def crop(self, tmin: float = 0.0, tmax: float | None = None) -> "Record":
        """Return the part between ``tmin`` and ``tmax`` seconds."""
        a = max(0, int(round(tmin * self.fs)))
        b = self.n_samples if tmax is None else min(self.n_samples, int(round(tmax * self.fs)))
        return self.copy(signal=self.signal[:, a:b].copy())

    def limb_residuals(self) -> dict[str, float]:
        """Max |stored - derived| in mV for each stored limb lead that can also be derived.

        Real files violate Einthoven's and Goldberger's laws (CardioSoft by up
        to 120 µV, Philips stores residuals): report the residual, never assume zero.
        """
        out = {}
        if "I" not in self.leads or "II" not in self.leads:
            return out
        i1, i2 = self["I"].astype(np.float64), self["II"].astype(np.float64)
        for target, terms in _DERIVE_FROM_I_II.items():
            if target in self.leads and target not in self.derived:
                d = sum(c * (i1 if s == "I" else i2) for c, s in terms)
                with np.errstate(invalid="ignore"):
                    out[target] = float(np.nanmax(np.abs(self[target] - d))) if self.n_samples else 0.0
        return out

    # -- conversions --------------------------------------------------------
    def to_dict(self) -> dict:
        """Summary without the samples (what ``ecgcore info --json`` prints)."""
        q = self.quality
        return {
            "source": self.source, "format": self.meta.get("format"), "fs": self.fs,
            "n_samples": self.n_samples, "duration_s": round(self.duration, 6),
            "leads": list(self.leads), "derived": sorted(self.derived), "units": self.units,
            "amplitude_range_mv": {name: [float(np.nanmin(self.signal[i])) if q.nan_fraction[i] < 1 else None,
                                          float(np.nanmax(self.signal[i])) if q.nan_fraction[i] < 1 else None]
                                   for i, name in enumerate(self.leads)} if self.n_samples else {},
            "quality": q.to_dict(),
            "median": None if self.median is None else {"fs": self.median.fs,
                                                         "n_samples": self.median.n_samples},
        }

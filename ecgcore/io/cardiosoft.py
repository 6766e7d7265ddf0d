"""GE CardioSoft / CASE ``CardiologyXML`` reader (the UK Biobank field-20205 schema).

Layout (facts/formats.md §4): the rhythm strip is ``/CardiologyXML/StripData``
(or the nested variant ``StripData/Strip``) with ``SampleRate`` (Hz),
``ChannelSampleCountTotal``, ``Resolution`` (``units="uVperLsb"``) and one
``<WaveformData lead="...">`` per lead whose text is comma-separated decimal
integers wrapped with newlines and tabs. All 12 leads are stored. The median
beats are ``RestingECGMeasurements/MedianSamples`` with the same fields plus
``FirstValid``/``LastValid``.

The integers are parsed with one vectorised :func:`numpy.fromstring` call per
lead (C speed, whitespace ignored); the number of values is checked against
the number of commas so a damaged field cannot be silently shortened.

Stored III/aVR/aVL/aVF are kept as recorded, not replaced by derivations: real
strips violate Einthoven's law by up to 24 LSB (120 µV); see
``Record.limb_residuals()``.

PHI: ``PatientInfo`` names, ``PID`` and birth date are copied into
``meta["patient"]`` only with ``keep_phi=True``; age, sex, height, weight and
pacemaker status always are.
"""

from __future__ import annotations

import os
import warnings
from datetime import datetime

import numpy as np

from ..errors import ReadError
from ..record import Record, normalize_lead
from .xmlsafe import child_text, parse_document

__all__ = ["read", "read_cardiosoft", "parse_int_list"]

_RES_TO_MV = {"UVPERLSB": 1e-3, "NVPERLSB": 1e-6, "MVPERLSB": 1.0}
_WS = str.maketrans("", "", " \t\r\n\f\v")



def _positive(elem, name: str, what: str, path, missing: str = "") -> float:
    """The positive finite number in ``elem``'s text, else a ReadError naming the field."""
    if elem is None:
        raise ReadError(f"{what} has no {name}" + (f" {missing}" if missing else ""), path)
    try:
        value = float(elem.text)
    except (TypeError, ValueError):
        raise ReadError(f"{what}: {name} {(elem.text or '').strip()!r} is not a number",
                        path) from None
    if not (np.isfinite(value) and value > 0):
        raise ReadError(f"{what}: {name} {value:g} must be positive", path)
    return value

def parse_int_list(text: str, *, path=None, what: str = "WaveformData") -> np.ndarray:
    """Parse ``"12, 13,\n\t14"`` into an int64 array with one C-level pass.

    Whitespace is removed first (``str.translate``): numpy's integer text
    parser would otherwise read a field holding only whitespace as 0. A
    trailing comma is allowed. Empty fields, letters, decimals and values
    beyond ±2**31 raise ReadError rather than shortening or corrupting the
    lead, so the value count is also checked against the comma count.
    """
    s = (text or "").translate(_WS).rstrip(",")
    if not s:
        return np.empty(0, np.int64)
    with warnings.catch_warnings():
        # numpy signals unparsable input with a DeprecationWarning and a short
        # result; turn it into an error so nothing is silently dropped.
        warnings.simplefilter("error", DeprecationWarning)
        try:
            # int64 parsing is ~10x faster than float parsing in numpy.
            values = np.fromstring(s, dtype=np.int64, sep=",")
        except (ValueError, DeprecationWarning):
            values = None
    if values is None or values.size != s.count(",") + 1:
        raise ReadError(f"{what} is not a list of comma-separated integers", path)
    if values.size and int(np.abs(values).max()) >= 2 ** 31:
        raise ReadError(f"{what} holds values beyond the 32-bit range", path)
    return values


def _num(text):
    if text is None:
        return None
    s = text.strip()
    if not s:
        return None
    try:
        return int(s)
    except ValueError:
        try:
            return float(s)
        except ValueError:
            return s


def _waveform_block(block, path, what):
    """StripData / MedianSamples element -> Record (mV) and its info dict."""
    # The nested variant keeps the WaveformData under StripData/Strip.
    holder = block
    if block.find("WaveformData") is None and block.find("Strip/WaveformData") is not None:
        holder = block.find("Strip")
    wfs = holder.findall("WaveformData")
    if not wfs:
        raise ReadError(f"{what} has no WaveformData", path)

    def field(name, el=None):
        for src in (holder, block) if el is None else (el,):
            node = src.find(name)
            if node is not None and node.text and node.text.strip():
                return node
        return None

    rate = field("SampleRate")
    fs = _positive(rate, "SampleRate", what, path)
    rate_units = (rate.get("units") or "Hz").strip().lower()
    if rate_units not in ("hz", ""):
        raise ReadError(f"{what}: SampleRate units {rate_units!r} are not Hz", path)
    res = field("Resolution")
    resolution = _positive(res, "Resolution", what, path, missing="(µV per LSB)")
    res_units = (res.get("units") or "uVperLsb").strip().upper()
    if res_units not in _RES_TO_MV:
        raise ReadError(f"{what}: Resolution units {res.get('units')!r} not understood", path)
    n_expect = None
    cnt = field("ChannelSampleCountTotal")
    if cnt is not None:
        try:
            n_expect = int(cnt.text)
        except ValueError:
            raise ReadError(f"{what}: ChannelSampleCountTotal {cnt.text.strip()!r} is not an "
                            "integer", path) from None
    names, rows = [], []
    for i, wf in enumerate(wfs):
        lead = wf.get("lead")
        if not lead or not lead.strip():
            raise ReadError(f"{what}: WaveformData #{i + 1} has no lead attribute", path)
        name = normalize_lead(lead)
        values = parse_int_list(wf.text, path=path, what=f"{what} lead {name}")
        if n_expect is not None and values.size != n_expect:
            raise ReadError(f"{what} lead {name}: ChannelSampleCountTotal says {n_expect} "
                            f"samples but the lead holds {values.size}", path)
        names.append(name)
        rows.append(values)
    if len(set(names)) != len(names):
        raise ReadError(f"{what}: duplicate lead names {names}", path)
    lengths = {r.size for r in rows}
    if len(lengths) != 1:
        raise ReadError(f"{what}: leads have different sample counts {sorted(lengths)}", path)
    if lengths.pop() == 0:
        raise ReadError(f"{what}: leads hold no samples", path)
    scale_mv = resolution * _RES_TO_MV[res_units]
    signal = (np.stack(rows) * scale_mv).astype(np.float32)
    info = {"resolution_uv_per_lsb": resolution * _RES_TO_MV[res_units] * 1e3}
    nleads = field("NumberOfLeads")
    if nleads is not None and _num(nleads.text) != len(names):
        info["declared_leads"] = _num(nleads.text)
    for key in ("FirstValid", "LastValid"):
        node = field(key)
        if node is not None:
            info[key] = _num(node.text)
    rec = Record(signal, fs, names, source=path)
    # Derive limb leads only where the file left them out (8-lead variants).
    if "I" in names and "II" in names and not {"III", "aVR", "aVL", "aVF"} <= set(names):
        rec = rec.conform([*names] + [ld for ld in ("III", "aVR", "aVL", "aVF") if ld not in names])
    return rec, info


def _measurements(rm):
    """Global RestingECGMeasurements values and their units."""
    values, units = {}, {}
    if rm is None:
        return values, units
    for child in rm:
        if len(child) or child.tag in ("MeasurementTable", "MedianSamples"):
            continue
        values[child.tag] = _num(child.text)
        if child.get("units"):
            units[child.tag] = child.get("units")
    return values, units


def _measurement_table(table):
    """MeasurementTable -> {"leads": [...], name: [float per lead, NaN if empty], "units": {...}}."""
    if table is None:
        return None
    order = child_text(table, "LeadOrder")
    if order is None:
        return None
    leads = [normalize_lead(x) for x in order.split(",")]
    out = {"leads": leads, "units": {}}
    for child in table:
        if child.tag == "LeadOrder":
            continue
        vals = []
        for field in (child.text or "").split(","):
            field = field.strip()
            try:
                vals.append(float(field) if field else float("nan"))
            except ValueError:
                vals.append(float("nan"))
        if len(vals) != len(leads):
            continue  # a malformed row is dropped rather than misaligned with the leads
        out[child.tag] = vals
        if child.get("units"):
            out["units"][child.tag] = child.get("units")
    return out


def _observation_time(root):
    el = root.find("ObservationDateTime")
    if el is None:
        return None
    parts = [_num(child_text(el, k)) for k in ("Year", "Month", "Day", "Hour", "Minute", "Second")]
    if not all(isinstance(p, int) for p in parts[:3]):
        return None
    try:
        return datetime(*[p if isinstance(p, int) else 0 for p in parts]).isoformat()
    except ValueError:
        return None


def read_cardiosoft(path: "str | os.PathLike", *, keep_phi: bool = False,
                    recover: bool = True) -> Record:
    """Read a GE CardioSoft / CASE ``CardiologyXML`` file (UK Biobank field 20205).

    Parameters
    ----------
    path : path-like
        The XML file.
    keep_phi : bool
        Copy the patient name, id and birth date into ``meta["patient"]``.
    recover : bool
        Retry a malformed file once with bare ``&``/``<`` escaped.

    Returns
    -------
    Record
        The rhythm strip in mV (value × ``Resolution`` µV/LSB), the median
        beats in ``record.median``. ``meta`` holds ``measurements`` (global,
        ``POnset``... in ms), ``measurement_units``, ``lead_measurements``
        (the per-lead ``MeasurementTable``, NaN where empty), ``statements``,
        ``acquisition_time`` (ISO 8601), ``device``, ``software``,
        ``analysis_version``, ``filters``, ``beats`` (``ArrhythmiaResults``:
        ``time_ms`` and ``class``) and ``resolution_uv_per_lsb``.

    Raises
    ------
    ReadError
        Not a CardiologyXML file, malformed XML, no StripData, non-numeric
        samples, leads whose sample count disagrees with the file.
    """
    path = os.fspath(path)
    doc = parse_document(path, recover=recover, bulk_tags=("WaveformData",))
    root = doc.root
    if root.tag != "CardiologyXML":
        raise ReadError(f"root element is {root.tag!r}, not a CardioSoft CardiologyXML", path)
    strip = root.find("StripData")
    if strip is None:
        raise ReadError("no StripData (rhythm waveforms) in CardiologyXML", path)
    rec, info = _waveform_block(strip, path, "StripData")
    rm = root.find("RestingECGMeasurements")
    median = None
    ms = rm.find("MedianSamples") if rm is not None else None
    if ms is not None and ms.find(".//WaveformData") is not None:
        median, minfo = _waveform_block(ms, path, "MedianSamples")
        median.meta.update({"format": "cardiosoft", "kind": "median", **minfo})
    values, units = _measurements(rm)
    dev = root.find("ClinicalInfo/DeviceInfo")
    meta: dict = {"format": "cardiosoft", "encoding": doc.encoding,
                  "observation_type": child_text(root, "ObservationType"),
                  "acquisition_time": _observation_time(root),
                  "device": child_text(dev, "Desc"),
                  "software": child_text(dev, "SoftwareVer"),
                  "analysis_version": child_text(dev, "AnalysisVer"),
                  "measurements": values, "measurement_units": units,
                  "lead_measurements": _measurement_table(rm.find("MeasurementTable"))
                  if rm is not None else None,
                  **info}
    if doc.recovered:
        meta["xml_recovered"] = True
    fset = root.find("FilterSetting")
    if fset is not None:
        meta["filters"] = {c.tag: _num(c.text) for c in fset if not len(c)}
        meta["filter_units"] = {c.tag: c.get("units") for c in fset if c.get("units")}
    meta["statements"] = [t.text.strip() for t in root.iterfind("Interpretation//*")
                          if not len(t) and t.tag.endswith("Text") and t.text and t.text.strip()]
    sim = child_text(root, "SimulatedPatientData")
    if sim is not None:
        meta["simulated"] = sim.lower() in ("yes", "true", "1")
    arr = strip.find("ArrhythmiaResults")
    if arr is not None:
        times = [_num(t.text) for t in arr.iterfind("Time")]
        classes = [child.text.strip() if child.text else None for child in arr.iterfind("BeatClass")]
        if len(times) == len(classes) and all(isinstance(t, (int, float)) for t in times):
            meta["beats"] = {"time_ms": np.asarray(times, dtype=np.float64), "class": classes}
    pi = root.find("PatientInfo")
    patient = {}
    if pi is not None:
        sex = (child_text(pi, "Gender") or "").upper()
        patient = {"age": _num(child_text(pi, "Age")),
                   "sex": {"MALE": "M", "FEMALE": "F"}.get(sex),
                   "height_cm": _num(child_text(pi, "Height")),
                   "weight_kg": _num(child_text(pi, "Weight")),
                   "pacemaker": child_text(pi, "PaceMaker")}
        if keep_phi:
            patient.update({"id": child_text(pi, "PID"),
                            "family_name": child_text(pi, "Name/FamilyName"),
                            "given_name": child_text(pi, "Name/GivenName"),
                            "birth_date": "-".join(filter(None, (child_text(pi, f"BirthDateTime/{k}")
                                                                 for k in ("Year", "Month", "Day"))))
                            or None})
    meta["patient"] = patient
    rec.meta.update(meta)
    rec.median = median
    return rec


read = read_cardiosoft

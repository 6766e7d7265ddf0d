"""GE MUSE XML (``RestingECG``) reader.

Layout (facts/formats.md §3): one or more ``Waveform`` blocks (``WaveformType``
``Rhythm`` or ``Median``), each with its own rate (``SampleBase`` ·
10^``SampleExponent``) and one ``LeadData`` per stored lead holding base64
little-endian int16 counts (``WaveFormData``), the scale
``LeadAmplitudeUnitsPerBit`` in ``LeadAmplitudeUnits`` (MICROVOLTS) and a
``LeadDataCRC32`` of the decoded bytes.

Only I, II and V1–V6 are stored; III, aVR, aVL and aVF are derived in float64
millivolts (facts §1: III = II − I, aVR = −(I + II)/2, aVL = I − II/2,
aVF = II − I/2) for both the rhythm and the median beats, and listed in
``record.derived``. Nothing assumes 500 Hz or 4.88 µV: both are read per file.

CRC policy: a ``LeadDataCRC32`` that does not match the decoded bytes means the
samples are corrupt, so by default (``crc="raise"``) the read fails with
:class:`~ecgcore.errors.ReadError`. ``crc="flag"`` returns the record with
``meta["quality_flags"]["crc_mismatch"] = True`` (and the leads concerned in
``meta["crc_mismatch_leads"]``); ``crc="ignore"`` skips the check.

PHI: names, patient ids and birth dates are only copied into ``meta`` with
``keep_phi=True``; age and sex always are.
"""

from __future__ import annotations

import binascii
import os
import re
import zlib
from datetime import datetime

import numpy as np

from ..errors import ConfigError, ReadError
from ..record import STANDARD_12, Record, normalize_lead
from .xmlsafe import child_text, parse_document

__all__ = ["read", "read_muse"]

# µV, mV, nV per count -> mV per count.
_UNIT_TO_MV = {"MICROVOLTS": 1e-3, "MICROVOLT": 1e-3, "UV": 1e-3, "MILLIVOLTS": 1.0,
               "MILLIVOLT": 1.0, "MV": 1.0, "NANOVOLTS": 1e-6, "NANOVOLT": 1e-6, "NV": 1e-6}
_STAFF_PHI = re.compile(r"Name|ID$|MD|Operator|Technician")
_PHI_PATIENT = {"PatientID", "PatientLastName", "PatientFirstName", "DateofBirth",
                "PatientMiddleName", "SecondaryID"}


def _num(text):
    """int or float from a text field, else the stripped text (None stays None)."""
    if text is None:
        return None
    s = text.strip()
    try:
        return int(s)
    except ValueError:
        try:
            return float(s)
        except ValueError:
            return s


def _flat_dict(el, skip=()):
    """Leaf children of ``el`` as ``{tag: number-or-text}``."""
    out = {}
    if el is None:
        return out
    for child in el:
        if len(child) or child.tag in skip:
            continue
        out[child.tag] = _num(child.text) if child.text and child.text.strip() else None
    return out


def _float_text(text, name, path, what, default=None):
    if text is None:
        if default is not None:
            return default
        raise ReadError(f"{what} has no {name}", path)
    try:
        value = float(text)
    except ValueError:
        raise ReadError(f"{what}: {name} {text!r} is not a number", path) from None
    if not np.isfinite(value):
        raise ReadError(f"{what}: {name} {text!r} is not finite", path)
    return value


def _float_field(el, name, path, what, default=None):
    return _float_text(child_text(el, name), name, path, what, default)


def _fields(el) -> dict:
    """Stripped, non-empty texts of the leaf children of ``el``, by tag (one pass)."""
    out = {}
    for c in el:
        t = c.text
        if t is not None:
            t = t.strip()
            if t:
                out[c.tag] = t
    return out


def _decode_lead(lead_el, path, what, crc_mode, bad_crc):
    """One LeadData -> (name, counts int16, mV per count)."""
    f = _fields(lead_el)
    name = f.get("LeadID")
    if name is None:
        raise ReadError(f"{what}: LeadData without LeadID", path)
    where = f"{what} lead {name}"
    b64 = f.get("WaveFormData")
    if b64 is None:
        raise ReadError(f"{where}: no WaveFormData", path)
    try:
        # The lenient C decoder skips the line breaks MUSE wraps its base64
        # with, without a copy to strip them. It also skips junk characters:
        # when the file's CRC-32 is checked below, intact samples are proven
        # anyway; otherwise the character count is checked here.
        raw = binascii.a2b_base64(b64)
    except (binascii.Error, ValueError) as exc:
        raise ReadError(f"{where}: WaveFormData is not valid base64 ({exc})", path) from None
    crc_text = f.get("LeadDataCRC32")
    if crc_mode == "ignore" or crc_text is None:
        n_chars = (len(b64) - b64.count("\n") - b64.count("\r") - b64.count(" ")
                   - b64.count("\t"))
        if n_chars % 4 or len(raw) != n_chars // 4 * 3 - b64.count("="):
            raise ReadError(f"{where}: WaveFormData is not valid base64 (characters outside "
                            "the alphabet or misplaced padding)", path)
    size = _float_text(f.get("LeadSampleSize"), "LeadSampleSize", path, where, default=2.0)
    if size != 2:
        raise ReadError(f"{where}: LeadSampleSize {size:g} is not supported (only 2-byte samples)",
                        path)
    if len(raw) % 2:
        raise ReadError(f"{where}: decoded WaveFormData has an odd byte count ({len(raw)})", path)
    counts = np.frombuffer(raw, dtype="<i2")
    n_text = f.get("LeadSampleCountTotal")
    if n_text is not None:
        try:
            n_expect = int(n_text)
        except ValueError:
            raise ReadError(f"{where}: LeadSampleCountTotal {n_text!r} is not an integer",
                            path) from None
        if n_expect != counts.size:
            raise ReadError(f"{where}: LeadSampleCountTotal says {n_expect} samples but "
                            f"WaveFormData holds {counts.size}", path)
    if crc_mode != "ignore" and crc_text is not None:
        try:
            crc_expect = int(crc_text)
        except ValueError:
            raise ReadError(f"{where}: LeadDataCRC32 {crc_text!r} is not an integer", path) from None
        crc = zlib.crc32(raw)
        if crc != crc_expect:
            if crc_mode == "raise":
                raise ReadError(f"{where}: CRC-32 of the samples is {crc}, the file says "
                                f"{crc_expect}: the waveform data are corrupt", path)
            bad_crc.append(normalize_lead(name))
    per_bit = _float_text(f.get("LeadAmplitudeUnitsPerBit"), "LeadAmplitudeUnitsPerBit", path,
                          where)
    if per_bit <= 0:
        raise ReadError(f"{where}: LeadAmplitudeUnitsPerBit {per_bit:g} must be positive", path)
    units = f.get("LeadAmplitudeUnits", "MICROVOLTS").upper()
    if units not in _UNIT_TO_MV:
        raise ReadError(f"{where}: unknown LeadAmplitudeUnits {units!r}", path)
    return normalize_lead(name), counts, per_bit * _UNIT_TO_MV[units]


def _waveform(wf, path, crc_mode, bad_crc):
    """One Waveform block -> (type, Record without meta)."""
    kind = child_text(wf, "WaveformType", "Rhythm")
    what = f"{kind} waveform"
    base = _float_field(wf, "SampleBase", path, what)
    exp = _float_field(wf, "SampleExponent", path, what, default=0.0)
    if not -6 <= exp <= 6:
        raise ReadError(f"{what}: SampleExponent {exp:g} is implausible", path)
    fs = base * 10.0 ** exp
    if not fs > 0:
        raise ReadError(f"{what}: sampling rate {fs:g} Hz must be positive", path)
    decoded = [_decode_lead(ld, path, what, crc_mode, bad_crc) for ld in wf.iterfind("LeadData")]
    if not decoded:
        raise ReadError(f"{what} has no LeadData", path)
    names = [d[0] for d in decoded]
    if len(set(names)) != len(names):
        raise ReadError(f"{what}: duplicate LeadID in {names}", path)
    lengths = {d[1].size for d in decoded}
    if len(lengths) != 1:
        raise ReadError(f"{what}: leads have different sample counts {sorted(lengths)}", path)
    n = lengths.pop()
    if n == 0:
        raise ReadError(f"{what}: leads hold no samples", path)
    scale = np.array([d[2] for d in decoded], dtype=np.float64)
    stored = {nm: j for j, nm in enumerate(names)}
    # Output rows as weights over the stored leads: scaling and the limb-lead
    # derivations (facts §1) become one float64 matrix product, exact to the
    # count, instead of a dozen temporary arrays.
    out_rows: dict[str, dict[int, float]] = {nm: {j: 1.0} for nm, j in stored.items()}
    derived = []
    if "I" in stored and "II" in stored:
        a, b = stored["I"], stored["II"]
        formulas = {"III": {a: -1.0, b: 1.0}, "aVR": {a: -0.5, b: -0.5},
                    "aVL": {a: 1.0, b: -0.5}, "aVF": {a: -0.5, b: 1.0}}
        for lead, terms in formulas.items():
            if lead not in stored:
                out_rows[lead] = terms
                derived.append(lead)
    # Canonical order first, then any non-standard leads in file order.
    order = [ld for ld in STANDARD_12 if ld in out_rows] + \
        [ld for ld in out_rows if ld not in STANDARD_12]
    weights = np.zeros((len(order), len(names)))
    for i, ld in enumerate(order):
        for j, c in out_rows[ld].items():
            weights[i, j] = c * scale[j]
    counts = np.stack([d[1] for d in decoded]).astype(np.float64)
    signal = (weights @ counts).astype(np.float32)
    info = {"scale_uv_per_count": {nm: float(s * 1e3) for nm, s in zip(names, scale)},
            "filters": {k: _num(child_text(wf, k)) for k in ("HighPassFilter", "LowPassFilter",
                                                              "ACFilter") if child_text(wf, k)},
            "stored_leads": names}
    return kind, Record(signal, fs, order, source=path, derived=derived), info


def _acquisition_time(td):
    date, time = child_text(td, "AcquisitionDate"), child_text(td, "AcquisitionTime")
    if date is None:
        return None
    for fmt in ("%m-%d-%Y %H:%M:%S", "%m-%d-%Y %H:%M", "%m/%d/%Y %H:%M:%S"):
        try:
            return datetime.strptime(f"{date} {time or '00:00:00'}", fmt).isoformat()
        except ValueError:
            continue
    return f"{date} {time or ''}".strip()  # keep what the file says rather than drop it


def _statements(el):
    if el is None:
        return []
    out = []
    for st in el.iterfind("DiagnosisStatement"):
        text = child_text(st, "StmtText")
        if text:
            out.append(text)
    return out


def read_muse(path: "str | os.PathLike", *, crc: str = "raise", keep_phi: bool = False,
              recover: bool = True) -> Record:
    """Read a GE MUSE ``RestingECG`` XML file.

    Parameters
    ----------
    path : path-like
        The XML file.
    crc : {"raise", "flag", "ignore"}
        What a ``LeadDataCRC32`` mismatch does (see module docstring).
    keep_phi : bool
        Copy patient names, ids and birth date into ``meta["patient"]``.
    recover : bool
        Retry a malformed file once with bare ``&``/``<`` escaped (MUSE
        free-text statements); ``meta["xml_recovered"]`` records it.

    Returns
    -------
    Record
        The rhythm strip in mV, 12 leads (III, aVR, aVL, aVF derived, listed in
        ``derived``), with the median beats in ``record.median``. ``meta``
        holds ``measurements`` (``RestingECGMeasurements``; ``POnset``,
        ``QOnset``... in samples of the median beat), ``original_measurements``,
        ``statements``, ``acquisition_time`` (ISO 8601), ``device``,
        ``software``, ``filters``, ``qrs_times_ms`` and the per-lead scale
        ``scale_uv_per_count``.

    Raises
    ------
    ReadError
        Not a MUSE file, malformed XML, no rhythm waveform, bad base64, a lead
        whose sample count disagrees with the file, a CRC mismatch (``crc="raise"``).
    """
    if crc not in ("raise", "flag", "ignore"):
        raise ConfigError(f"crc must be 'raise', 'flag' or 'ignore', got {crc!r}")
    path = os.fspath(path)
    doc = parse_document(path, recover=recover, bulk_tags=("WaveFormData",))
    root = doc.root
    if root.tag != "RestingECG":
        raise ReadError(f"root element is {root.tag!r}, not a GE MUSE RestingECG", path)
    bad_crc: list[str] = []
    groups: dict[str, tuple] = {}
    for wf in root.iterfind("Waveform"):
        kind, rec, info = _waveform(wf, path, crc, bad_crc)
        groups.setdefault(kind.lower(), (rec, info))   # first block of each type wins
    if "rhythm" not in groups:
        have = ", ".join(sorted(groups)) or "none"
        raise ReadError(f"no Rhythm waveform (waveforms present: {have})", path)
    rhythm, rinfo = groups["rhythm"]
    median = groups.get("median", (None, None))[0]

    td = root.find("TestDemographics")
    pd = root.find("PatientDemographics")
    meta: dict = {"format": "ge_muse", "format_version": child_text(root, "MuseInfo/MuseVersion"),
                  "encoding": doc.encoding}
    if doc.recovered:
        meta["xml_recovered"] = True
    meta["software"] = meta["format_version"]
    meta["device"] = child_text(td, "AcquisitionDevice")
    meta["acquisition_time"] = _acquisition_time(td) if td is not None else None
    if td is not None:
        # Operator/physician names and ids are PHI-adjacent: kept only on request.
        meta["test"] = {k: v for k, v in _flat_dict(td).items()
                        if k not in ("AcquisitionDate", "AcquisitionTime")
                        and (keep_phi or not _STAFF_PHI.search(k))}
    patient = {}
    if pd is not None:
        flat = _flat_dict(pd)
        patient = {"age": flat.get("PatientAge"), "age_units": flat.get("AgeUnits"),
                   "sex": {"MALE": "M", "FEMALE": "F"}.get(str(flat.get("Gender")).upper())}
        if keep_phi:
            patient.update({k: v for k, v in flat.items() if k in _PHI_PATIENT})
    meta["patient"] = patient
    meta["measurements"] = _flat_dict(root.find("RestingECGMeasurements"))
    meta["original_measurements"] = _flat_dict(root.find("OriginalRestingECGMeasurements"))
    meta["statements"] = _statements(root.find("Diagnosis"))
    meta["original_statements"] = _statements(root.find("OriginalDiagnosis"))
    qrs = root.find("QRSTimesTypes")
    if qrs is not None:
        # Times are in ms: GlobalRR 1242 beside a rate of 48/min in the sample files.
        times, types = [], []
        for q in qrs.iterfind("QRS"):
            t, ty = _num(child_text(q, "Time")), _num(child_text(q, "Type"))
            if isinstance(t, (int, float)):
                times.append(t)
                types.append(ty)
        meta["qrs_times_ms"] = np.asarray(times, dtype=np.float64)
        meta["qrs_types"] = types
    meta["filters"] = rinfo["filters"]
    meta["scale_uv_per_count"] = rinfo["scale_uv_per_count"]
    meta["stored_leads"] = rinfo["stored_leads"]
    if bad_crc:
        meta["crc_mismatch_leads"] = bad_crc
        meta["quality_flags"] = {"crc_mismatch": True}
    if median is not None:
        median.meta.update({"format": "ge_muse", "kind": "median"})
    rhythm.meta.update(meta)
    rhythm.median = median
    return rhythm


read = read_muse

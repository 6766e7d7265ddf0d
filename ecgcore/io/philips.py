"""Philips Sierra / PageWriter XML reader (SierraECG 1.03, PhilipsECG 1.04.x).

facts/formats.md §5. The rhythm sits base64-encoded in
``waveforms/parsedwaveforms``, usually XLI-compressed (decoded in Cython by
:func:`ecgcore.io._xli.decode_xli`). After XLI the stored III, aVR, aVL and
aVF are *residuals* from the values derivable from I and II, and are rebuilt
with integer floor division exactly as the writer formed them. The payload is
11 s long: its last second holds a 1 mV calibration pulse, which is measured
(to check the file's scaling) and trimmed by default.

1.03 files are UTF-8; 1.04 and later are UTF-16LE with a BOM: the XML parser
reads the encoding from the BOM and declaration.
"""

from __future__ import annotations

import base64
import binascii
import os

import numpy as np

from ..errors import ReadError
from ..record import Record, STANDARD_12, normalize_lead
from .xmlsafe import parse_xml

__all__ = ["read", "read_philips", "reconstruct_limb_leads"]

NS = "{http://www3.medical.philips.com}"

#: Only these many seconds of the payload are ECG; the rest is calibration.
ECG_SECONDS = 10.0
#: Height of the calibration pulse every Philips cart writes, mV.
CAL_PULSE_MV = 1.0


def _num(text, default=None):
    try:
        return float(text)
    except (TypeError, ValueError):
        return default


def reconstruct_limb_leads(counts: np.ndarray, labels) -> np.ndarray:
    """Rebuild III, aVR, aVL and aVF from their stored XLI residuals.

    Parameters
    ----------
    counts : ndarray of int, shape (n_leads, n_samples)
        Decoded XLI values, rows in ``labels`` order.
    labels : sequence of str
        Lead labels; must include I, II, III, aVR, aVL and aVF.

    Returns
    -------
    ndarray of int32
        The leads in raw counts. The writer formed the residuals with integer
        floor division of the counts, so the rebuild is exact:
        III = II - I - r3, aVR = -r_aVR - floor((I + II) / 2),
        aVL = floor((I - III) / 2) - r_aVL, aVF = floor((II + III) / 2) - r_aVF.
    """
    x = counts.astype(np.int32, copy=True)
    idx = {normalize_lead(n): i for i, n in enumerate(labels)}
    i1, i2 = x[idx["I"]], x[idx["II"]]
    x[idx["III"]] = i2 - i1 - x[idx["III"]]
    i3 = x[idx["III"]]
    x[idx["aVR"]] = -x[idx["aVR"]] - ((i1 + i2) // 2)
    x[idx["aVL"]] = ((i1 - i3) // 2) - x[idx["aVL"]]
    x[idx["aVF"]] = ((i2 + i3) // 2) - x[idx["aVF"]]
    return x


def _b64(text, what, path) -> bytes:
    if not text or not text.strip():
        raise ReadError(f"{what} is empty", path)
    try:
        # the payload is wrapped in whitespace; drop it before strict decoding
        return base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ReadError(f"{what} is not valid base64 ({exc})", path) from None


def _calibration_pulse(counts: np.ndarray, fs: float, res_mv: float) -> float | None:
    """Height of the calibration pulse after the first 10 s, mV (median over leads).

    Per lead: the largest upward step in the tail, the largest downward step
    after it, and the plateau between them measured against the 10 samples
    before the rise. None when no lead shows a pulse of at least 5 samples.
    """
    start = int(round(ECG_SECONDS * fs))
    tail = counts[:, start:].astype(np.int64)
    if tail.shape[1] < 16:
        return None
    d = np.diff(tail, axis=1)
    heights = []
    for row, dr in zip(tail, d):       # 12 leads, whole-array work inside
        up = int(np.argmax(dr))
        down = up + int(np.argmin(dr[up:]))
        if down - up < 5:
            continue
        plateau = np.median(row[up + 1:down + 1])
        base = np.median(row[max(0, up - 9):up + 1])
        heights.append(plateau - base)
    if not heights:
        return None
    return float(np.median(heights)) * res_mv


def _children_numbers(el) -> dict:
    out = {}
    if el is None:
        return out
    for child in el:
        v = _num(child.text)
        if v is not None:
            out[child.tag.replace(NS, "")] = v
    return out


def _statements(root) -> list:
    out = []
    for interp in root.iterfind(f"{NS}interpretations/{NS}interpretation"):
        for st in interp.iterfind(f"{NS}statement"):          # 1.03
            left = (st.findtext(f"{NS}leftstatement") or "").strip()
            right = (st.findtext(f"{NS}rightstatement") or "").strip()
            if left or right:
                out.append(f"{left} ({right})" if left and right else left or right)
        for st in interp.iter(f"{NS}unparsedstatement"):     # 1.04
            left = (st.findtext(f"{NS}lhsstatement") or "").strip()
            right = (st.findtext(f"{NS}rhsstatement") or "").strip()
            if left or right:
                out.append(f"{left} ({right})" if left and right else left or right)
        sev = interp.findtext(f"{NS}severity")
        if sev and sev.strip():
            out.append(sev.strip())
    return out


def _patient(root) -> dict:
    g = root.find(f"{NS}patient/{NS}generalpatientdata")
    if g is None:
        return {}
    out = {}
    for key, p in (("id", "patientid"), ("last_name", "name/lastname"),
                   ("first_name", "name/firstname"), ("sex", "sex"),
                   ("age_years", "age/years"), ("birth_date", "age/dateofbirth")):
        v = g.findtext("/".join(NS + part for part in p.split("/")))
        if v and v.strip():
            out[key] = v.strip()
    return out


def _repbeats(root, default_fs, default_res_uv, path):
    rb = root.find(f"{NS}waveforms/{NS}repbeats")
    if rb is None:
        return None
    fs = _num(rb.get("samplespersec") or rb.get("samplespersecond"), default_fs)
    res_uv = _num(rb.get("resolution"), default_res_uv)
    if not fs or fs <= 0 or not res_uv or res_uv <= 0:
        raise ReadError("repbeats have no valid sampling rate or resolution", path)
    names, rows, fid = [], [], {}
    for beat in rb.iterfind(f"{NS}repbeat"):
        name = normalize_lead(beat.get("leadname") or f"lead{len(names)}")
        wf = beat.find(f"{NS}waveform")
        text = wf.text if wf is not None else beat.text      # 1.04: child; 1.03: inline
        raw = _b64(text, f"repbeat {name}", path)
        if len(raw) % 2:
            raise ReadError(f"repbeat {name} has an odd byte count ({len(raw)})", path)
        rows.append(np.frombuffer(raw, "<i2"))
        names.append(name)
        f = _children_numbers(beat)
        if f:
            fid[name] = f
    if not rows:
        return None
    n = max(len(r) for r in rows)
    sig = np.full((len(rows), n), np.nan, np.float64)
    for i, r in enumerate(rows):
        sig[i, :len(r)] = r
    # The beat buffer is longer than the beat: writers fill the rest with the
    # int16 extremes (seen: 600 valid samples then 600 x 32767). Trim the fill
    # common to all leads, and mark any other extreme value missing.
    fill = (sig == 32767) | (sig == -32768) | np.isnan(sig)
    valid_cols = np.flatnonzero(~fill.all(axis=0))
    n_valid = int(valid_cols[-1]) + 1 if valid_cols.size else 0
    sig = np.where(fill, np.nan, sig)[:, :n_valid] * (res_uv * 1e-3)
    meta = {"format": "philips", "kind": "median", "resolution_uv": res_uv}
    if n_valid < n:
        meta["fill_trimmed_samples"] = n - n_valid
    if fid:
        meta["repbeat_measurements_ms"] = fid
    return Record(sig, fs, names, meta=meta)


def read(path: "str | os.PathLike", keep_calibration: bool = False, **kwargs) -> Record:
    """Read a Philips Sierra/PageWriter ECG XML file.

    Parameters
    ----------
    path : str or path-like
    keep_calibration : bool
        Keep the trailing 11th second (with its 1 mV calibration pulse).
        By default the signal is cut to the first 10 s, which is the ECG.

    Returns
    -------
    Record
        Leads in mV (counts x resolution). ``meta`` holds the document type
        and version, device, filters, patient, ``measurements``,
        ``statements``, ``calibration_pulse_mv`` (the measured pulse height,
        which should be 1.0) and ``calibration_trimmed``. ``median`` holds the
        representative beats (their own fs and resolution) when present.

    Raises
    ------
    ReadError
        Malformed/hostile XML, missing waveform, corrupt XLI stream.

    Notes
    -----
    Uncompressed (plain base64 int16) payloads are read as one block per lead
    in ``leadlabels`` order, and their limb leads taken as stored: the
    residual scheme is documented for XLI only.
    """
    path = os.fspath(path)
    root = parse_xml(path)
    if root.tag != NS + "restingecgdata":
        raise ReadError(f"root element is {root.tag!r}, not Philips restingecgdata", path)
    doctype = (root.findtext(f"{NS}documentinfo/{NS}documenttype") or "").strip()
    version = (root.findtext(f"{NS}documentinfo/{NS}documentversion") or "").strip()
    acq = root.find(f"{NS}dataacquisition")
    sc = acq.find(f"{NS}signalcharacteristics") if acq is not None else None
    pw = root.find(f"{NS}waveforms/{NS}parsedwaveforms")
    if pw is None:
        raise ReadError("no waveforms/parsedwaveforms element", path)

    def char(*names):
        for n in names:
            v = pw.get(n)
            if v is None and sc is not None:
                v = sc.findtext(NS + n)
            if v is not None and v.strip():
                return v.strip()
        return None

    fs = _num(char("samplespersecond", "samplingrate"))
    res_uv = _num(char("resolution", "signalresolution"))
    if not fs or fs <= 0 or fs > 100_000:
        raise ReadError(f"invalid sampling rate {fs!r}", path)
    if not res_uv or res_uv <= 0 or res_uv > 1e4:
        raise ReadError(f"invalid resolution {res_uv!r} uV/LSB", path)
    labels = (pw.get("leadlabels") or "").split() or list(STANDARD_12)
    n_leads = len(labels)
    compression = (pw.get("compression") or pw.get("compressmethod") or "").strip().upper()
    if (pw.get("compressflag") or "").strip().lower() == "false":
        compression = ""
    data = _b64(pw.text, "parsedwaveforms", path)

    meta = {"format": "philips", "document_type": doctype, "document_version": version,
            "resolution_uv": res_uv, "compression": compression or "none"}
    if compression == "XLI":
        from ._xli import decode_xli
        try:
            chunks = decode_xli(np.frombuffer(data, np.uint8), max_chunks=4 * max(n_leads, 16))
        except ValueError as exc:
            raise ReadError(f"corrupt XLI waveform: {exc}", path) from None
        if len(chunks) < n_leads:
            raise ReadError(f"XLI stream holds {len(chunks)} chunks for {n_leads} leads", path)
        lens = {len(c) for c in chunks[:n_leads]}
        if len(lens) != 1 or 0 in lens:
            raise ReadError(f"XLI leads have unequal or zero lengths {sorted(lens)}", path)
        if len(chunks) > n_leads:
            meta["extra_xli_chunks"] = len(chunks) - n_leads
        counts = np.stack(chunks[:n_leads])
        norm = [normalize_lead(n) for n in labels]
        if all(n in norm for n in ("I", "II", "III", "aVR", "aVL", "aVF")):
            counts = reconstruct_limb_leads(counts, labels)
            meta["limb_leads_from_residuals"] = True
    elif compression in ("", "NONE"):
        if len(data) % (2 * n_leads):
            raise ReadError(f"uncompressed waveform of {len(data)} bytes does not split into "
                            f"{n_leads} int16 leads", path)
        counts = np.frombuffer(data, "<i2").reshape(n_leads, -1).astype(np.int32)
    else:
        raise ReadError(f"unsupported waveform compression {compression!r}", path)

    pulse = _calibration_pulse(counts, fs, res_uv * 1e-3)
    n_ecg = int(round(ECG_SECONDS * fs))
    if pulse is not None:
        meta["calibration_pulse_mv"] = pulse
        # the file's own 1 mV pulse is the check on its scaling
        if not 0.9 * CAL_PULSE_MV <= pulse <= 1.1 * CAL_PULSE_MV:
            meta["quality_flags"] = {"scale_suspect": True}
    trimmed = counts.shape[1] > n_ecg and not keep_calibration
    if trimmed:
        counts = counts[:, :n_ecg]
    meta["calibration_trimmed"] = trimmed
    sig = counts * (res_uv * 1e-3)

    if sc is not None:
        filt = {}
        for key, tag in (("high_pass_hz", "hipass"), ("low_pass_hz", "lowpass"),
                         ("ac_hz", "acsetting"), ("bandwidth", "signalbandwidth")):
            v = sc.findtext(NS + tag)
            if v and v.strip():
                filt[key] = _num(v, v.strip())
        meta["filters"] = filt
        at = sc.findtext(f"{NS}acquisitiontype")
        if at:
            meta["acquisition_type"] = at.strip()
    if acq is not None:
        m = acq.find(f"{NS}machine")
        if m is not None:
            meta["device"] = {"model": (m.text or "").strip(), "machine_id": m.get("machineid"),
                              "description": m.get("detaildescription")}
        d, t = acq.get("date"), acq.get("time")
        if d:
            meta["acquisition_time"] = f"{d}T{t}" if t else d
    meta["patient"] = _patient(root)
    gm = root.find(f"{NS}interpretations/{NS}interpretation/{NS}globalmeasurements")
    if gm is None:
        gm = root.find(f"{NS}measurements/{NS}globalmeasurements")
    meta["measurements"] = _children_numbers(gm)
    meta["statements"] = _statements(root)
    median = _repbeats(root, fs, res_uv, path)
    if median is not None:
        median.source = path
    return Record(sig, fs, labels, meta=meta, median=median, source=path)


read_philips = read

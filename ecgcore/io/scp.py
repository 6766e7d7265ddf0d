"""SCP-ECG reader (EN 1064 / ISO 11073-91064, protocol versions 1.x to 3.0).

Layout (facts/formats.md §8): a CRC-CCITT and a total length, then sections
that each start with a 16-byte header (CRC, id, length, versions). Section 0
points to the others; 1 holds patient/device/acquisition tags; 2 the Huffman
tables; 3 the lead definitions; 4 the QRS locations, reference-beat
subtraction zones and protected zones; 5 the reference (median) beat; 6 the
rhythm data; 7, 8, 10, 11 the machine measurements and statements.

Decisions (documented because the standard leaves them open or real files
disagree):

* **CRC mismatches are quality flags, not errors.** A wrong file or section
  CRC sets ``meta["quality_flags"]["crc_mismatch"]`` (so ``rec.quality.ok`` is
  False) and lists the sections in ``meta["scp"]["crc_errors"]``; structural
  damage (lengths or pointers past the end, undecodable Huffman streams) is a
  :class:`~ecgcore.errors.ReadError`. Pass ``strict_crc=True`` to turn a CRC
  mismatch into a ReadError as well. Some writers store 0 or 0xFFFF as "not
  computed"; those are reported in the same way.
* **Huffman table fields** are read in the order of the standard: bits in the
  prefix, bits in the whole code, mode switch, base value, base code (bit
  reversed). A table-switch entry names its target table 1-based (value 0 is
  taken as the first table too, as some writers do); 19999 in section 2 means
  the default table.
* **0-based start samples** (non-compliant writers) are accepted; the sample
  count is ``end - start + 1`` either way.
* **Raw (non-Huffman) leads over 32767 samples** overflow the uint16 byte
  counts of section 6; when the counts disagree with section 3, the reader
  takes ``2 * n_samples`` bytes per lead if the section holds them.
* **Bimodal compression**: the decimation factor is the section-6 sample
  interval over the section-5 one; decimated values are placed at the centre
  of their block and linearly interpolated (the standard decimates by
  averaging), protected-zone samples are exact.
* **Measurements (sections 7 and 10)** are optional extras: a damaged one is
  reported in ``meta["scp"]["section_errors"]`` and the waveforms are still
  returned (``strict_measurements=True`` raises instead). "Not computed"
  values (29999 and the neighbouring codes 29997/29998; 999 for axes) become
  NaN in ``measurement_blocks`` and ``lead_measurements`` and are left out of
  the flat ``measurements`` dict. Section 7 writers may stop after any
  complete part (v1.x files end after the blocks or the spikes).
* **SCP-ECG v3.0**: sections 0-11 are read with the v2 layout (section 1
  tags unknown to this reader are skipped by their length); sections 12 and
  above (long-term rhythm data, the v3.0 annotation sections, manufacturer
  sections) are recorded in ``meta["scp"]["undecoded_sections"]`` with id,
  length and versions, not decoded.
* **Reference-beat subtraction**: inside each type-0 QRS's subtraction zone
  ``[SB, SE]`` (section 4, 1-based) the reference beat sample
  ``(s - fc) + fcM`` is added back, in physical units (section 5 AVM x beat
  plus section 6 AVM x residual).
"""

from __future__ import annotations

import datetime as _dt
import os
import struct

import numpy as np

from ..errors import ReadError
from ..record import Record

__all__ = ["read", "read_scp", "LEAD_CODES", "DEFAULT_HUFFMAN", "LEAD_MEASUREMENT_FIELDS"]

#: SCP-ECG lead codes (EN 1064 table of lead identifications) -> canonical names.
LEAD_CODES = {
    1: "I", 2: "II", 3: "V1", 4: "V2", 5: "V3", 6: "V4", 7: "V5", 8: "V6",
    9: "V7", 10: "V2R", 11: "V3R", 12: "V4R", 13: "V5R", 14: "V6R", 15: "V7R",
    16: "X", 17: "Y", 18: "Z", 19: "CC5", 20: "CM5", 21: "LA", 22: "RA", 23: "LL",
    61: "III", 62: "aVR", 63: "aVL", 64: "aVF", 65: "-aVR", 66: "V8", 67: "V9",
    68: "V8R", 69: "V9R",
}

# The default Huffman table (facts §8): (prefix bits, total bits, value, MSB-first code).
_DEF = [(1, 1, 0, 0b0)]
for _m in range(1, 9):
    _L = _m + 2
    _ones = ((1 << (_L - 2)) - 1) << 2
    _DEF.append((_L, _L, _m, _ones | 0b00))       # +m: 1..1 0 0
    _DEF.append((_L, _L, -_m, _ones | 0b01))      # -m: 1..1 0 1
_DEF.append((10, 18, 0, 0b1111111110))            # 8-bit literal follows
_DEF.append((10, 26, 0, 0b1111111111))            # 16-bit literal follows
#: The default table as (prefix_len, total_len, mode, value, code) rows.
DEFAULT_HUFFMAN = [(p, t, 1, v, c) for p, t, v, c in _DEF]

_SEX = {0: "unknown", 1: "M", 2: "F", 9: "unspecified"}
_AGE_UNITS = {0: "unspecified", 1: "years", 2: "months", 3: "weeks", 4: "days", 5: "hours"}
# Section 1 text tags: tag -> meta key (patient block under meta["patient"]).
_PATIENT_TEXT = {0: "last_name", 1: "first_name", 2: "id", 3: "second_last_name"}
_TEXT_TAGS = {10: "drugs", 13: "referral_indication", 16: "acquiring_institution",
              17: "analyzing_institution", 18: "acquiring_department",
              19: "analyzing_department", 20: "referring_physician",
              21: "confirming_physician", 22: "technician", 23: "room",
              30: "free_text", 35: "medical_history_text"}


def _u16(b, o):
    return b[o] | (b[o + 1] << 8)


def _text(raw: bytes) -> str:
    return raw.split(b"\x00", 1)[0].decode("latin-1").strip()


class _Ctx:
    """Bounds-checked little-endian access to one section's bytes."""

    __slots__ = ("buf", "start", "end", "sid", "path")

    def __init__(self, buf, start, end, sid, path):
        self.buf, self.start, self.end, self.sid, self.path = buf, start, end, sid, path

    def need(self, off, n, what):
        if off < 0 or self.start + off + n > self.end:
            raise ReadError(f"SCP section {self.sid}: {what} runs past the end of the section "
                            f"(needs bytes {off}..{off + n} of {self.end - self.start})", self.path)

    def u8(self, off, what="field"):
        self.need(off, 1, what)
        return self.buf[self.start + off]

    def u16(self, off, what="field"):
        self.need(off, 2, what)
        return _u16(self.buf, self.start + off)

    def i16(self, off, what="field"):
        v = self.u16(off, what)
        return v - 65536 if v >= 32768 else v

    def u32(self, off, what="field"):
        self.need(off, 4, what)
        return struct.unpack_from("<I", self.buf, self.start + off)[0]

    def bytes(self, off, n, what="field"):
        self.need(off, n, what)
        return bytes(self.buf[self.start + off:self.start + off + n])

    @property
    def size(self):
        return self.end - self.start


# ---------------------------------------------------------------------------
# sections
# ---------------------------------------------------------------------------

def _section1(s: _Ctx, meta: dict):
    patient, device, acq = {}, {}, {}
    off = 16
    n_tags = 0
    while off + 3 <= s.size:
        tag = s.u8(off)
        if tag == 255:
            break
        ln = s.u16(off + 1)
        if off + 3 + ln > s.size:
            raise ReadError(f"SCP section 1: tag {tag} length {ln} runs past the end of the section",
                            s.path)
        v = s.bytes(off + 3, ln)
        off += 3 + ln
        n_tags += 1
        if n_tags > 10000:
            raise ReadError("SCP section 1: more than 10000 tags", s.path)
        if tag in _PATIENT_TEXT:
            patient[_PATIENT_TEXT[tag]] = _text(v)
        elif tag == 4 and ln >= 3:
            patient["age"] = _u16(v, 0)
            patient["age_unit"] = _AGE_UNITS.get(v[2], str(v[2]))
        elif tag == 5 and ln >= 4:
            y, m, d = _u16(v, 0), v[2], v[3]
            if y or m or d:
                patient["birth_date"] = f"{y:04d}-{m:02d}-{d:02d}"
        elif tag == 6 and ln >= 3:
            patient["height"] = _u16(v, 0)
            patient["height_unit"] = {1: "cm", 2: "inch", 3: "mm"}.get(v[2], str(v[2]))
        elif tag == 7 and ln >= 3:
            patient["weight"] = _u16(v, 0)
            patient["weight_unit"] = {1: "kg", 2: "g", 3: "lb", 4: "oz"}.get(v[2], str(v[2]))
        elif tag == 8 and ln >= 1:
            patient["sex"] = _SEX.get(v[0], str(v[0]))
        elif tag == 11 and ln >= 2:
            patient["systolic_bp_mmhg"] = _u16(v, 0)
        elif tag == 12 and ln >= 2:
            patient["diastolic_bp_mmhg"] = _u16(v, 0)
        elif tag in (14, 15) and ln >= 36:
            key = "acquiring" if tag == 14 else "analyzing"
            info = {"institution_number": _u16(v, 0), "department_number": _u16(v, 2),
                    "device_id": _u16(v, 4), "device_type": {0: "cart", 1: "system"}.get(v[6], v[6]),
                    "manufacturer_code": v[7], "model": _text(v[8:14]),
                    "scp_protocol_version": v[14] / 10.0,
                    "mains_frequency_hz": {1: 50, 2: 60}.get(v[18])}
            strings = v[36:].split(b"\x00")
            names = ("analysis_program_revision", "serial_number", "software", "scp_software",
                     "manufacturer")
            for name, raw in zip(names, strings):
                t = raw.decode("latin-1").strip()
                if t:
                    info[name] = t
            device[key] = info
        elif tag == 25 and ln >= 4:
            acq["date"] = (_u16(v, 0), v[2], v[3])
        elif tag == 26 and ln >= 3:
            acq["time"] = (v[0], v[1], v[2])
        elif tag == 27 and ln >= 2:
            acq["highpass_hz"] = _u16(v, 0) / 100.0
        elif tag == 28 and ln >= 2:
            acq["lowpass_hz"] = float(_u16(v, 0))
        elif tag == 29 and ln >= 1:
            acq["filter_bits"] = v[0]
        elif tag == 31:
            acq["sequence_number"] = _text(v)
        elif tag in _TEXT_TAGS:
            t = _text(v)
            if t:
                meta.setdefault("scp", {})[_TEXT_TAGS[tag]] = t
    if "date" in acq:
        y, m, d = acq.pop("date")
        hh, mm, ss = acq.pop("time", (0, 0, 0))
        try:
            meta["acquisition_time"] = _dt.datetime(y, m, d, hh, mm, ss).isoformat()
        except ValueError:
            meta["acquisition_time_raw"] = f"{y:04d}-{m:02d}-{d:02d} {hh:02d}:{mm:02d}:{ss:02d}"
    acq.pop("time", None)
    if patient:
        meta["patient"] = patient
    if device:
        meta["device"] = device
    if acq:
        meta["acquisition"] = acq


def _section2(s: _Ctx):
    """Huffman tables as flat arrays for the kernel, or None for 'no Huffman'."""
    n_tab = s.u16(16, "number of Huffman tables")
    rows_by_table = []
    if n_tab == 19999:
        rows_by_table = [DEFAULT_HUFFMAN]
    elif n_tab == 0:
        return None
    else:
        off = 18
        for t in range(n_tab):
            n_codes = s.u16(off, f"code count of Huffman table {t + 1}")
            off += 2
            if n_codes == 0:
                raise ReadError(f"SCP section 2: Huffman table {t + 1} is empty", s.path)
            s.need(off, 9 * n_codes, f"Huffman table {t + 1}")
            rows = []
            for _ in range(n_codes):
                p, tot, mode = s.buf[s.start + off], s.buf[s.start + off + 1], s.buf[s.start + off + 2]
                val = s.i16(off + 3)
                rev = s.u32(off + 5)
                off += 9
                if p < 1 or p > 32:
                    raise ReadError(f"SCP section 2: Huffman table {t + 1} has a code with "
                                    f"{p} prefix bits (must be 1..32)", s.path)
                if mode != 0 and (tot < p or tot - p > 32):
                    raise ReadError(f"SCP section 2: Huffman table {t + 1}: code of {tot} bits "
                                    f"with a {p}-bit prefix", s.path)
                # stored bit-reversed: the first bit of the stream is the code's LSB
                code = int(f"{rev & ((1 << p) - 1):0{p}b}"[::-1], 2)
                if mode == 0:
                    # table switch; targets 1-based, 0 also taken as the first table
                    target = max(val, 1) - 1
                    if target >= n_tab:
                        raise ReadError(f"SCP section 2: Huffman table {t + 1} switches to "
                                        f"table {val} of {n_tab}", s.path)
                    val = target
                    tot = p
                rows.append((p, tot, 1 if mode else 0, val, code))
            rows_by_table.append(rows)
    starts, flat = [0], []
    for rows in rows_by_table:
        rows = sorted(rows, key=lambda r: r[0])   # the kernel stops at the first too-long prefix
        flat.extend(rows)
        starts.append(len(flat))
    arr = np.array(flat, dtype=np.int64).reshape(-1, 5)
    return (np.array(starts, np.int32), np.ascontiguousarray(arr[:, 0], np.int32),
            np.ascontiguousarray(arr[:, 1], np.int32), np.ascontiguousarray(arr[:, 2], np.int32),
            np.ascontiguousarray(arr[:, 3], np.int32), np.ascontiguousarray(arr[:, 4], np.int64))


def _section3(s: _Ctx):
    n = s.u8(16, "number of leads")
    flags = s.u8(17, "lead flags")
    if n == 0:
        raise ReadError("SCP section 3 declares no leads", s.path)
    s.need(18, 9 * n, f"definitions of {n} leads")
    leads = []
    for i in range(n):
        o = 18 + 9 * i
        start, end, code = s.u32(o), s.u32(o + 4), s.u8(o + 8)
        if end < start:
            raise ReadError(f"SCP section 3: lead {i + 1} ends (sample {end}) before it starts "
                            f"(sample {start})", s.path)
        leads.append((start, end, code))
    return {"n": n, "ref_beat_subtracted": bool(flags & 1), "simultaneous": bool(flags & 4),
            "n_simultaneous": flags >> 3, "leads": leads}


def _section4(s: _Ctx):
    length_ms = s.u16(16, "reference beat length")
    fcm = s.u16(18, "fiducial")
    nq = s.u16(20, "QRS count")
    s.need(22, 14 * nq, f"{nq} QRS subtraction zones")
    qrs = np.frombuffer(s.bytes(22, 14 * nq), dtype=np.dtype([("type", "<u2"), ("sb", "<u4"),
                                                               ("fc", "<u4"), ("se", "<u4")]))
    prot = None
    if s.size >= 22 + 14 * nq + 8 * nq and nq:
        prot = np.frombuffer(s.bytes(22 + 14 * nq, 8 * nq),
                             dtype=np.dtype([("qb", "<u4"), ("qe", "<u4")]))
    return {"length_ms": length_ms, "fcm": fcm, "qrs": qrs, "protected": prot}


def _section56(s: _Ctx, n_leads: int, sid: int):
    avm = s.u16(16, "amplitude value multiplier")
    dt_us = s.u16(18, "sample interval")
    diff = s.u8(20, "difference encoding")
    bimodal = s.u8(21) if sid == 6 else 0
    lens = [s.u16(22 + 2 * i, "lead byte counts") for i in range(n_leads)]
    if diff not in (0, 1, 2):
        raise ReadError(f"SCP section {sid}: unknown difference encoding {diff} "
                        "(0, 1 or 2 allowed)", s.path)
    if dt_us == 0:
        raise ReadError(f"SCP section {sid}: sample interval is 0 µs", s.path)
    if avm == 0:
        raise ReadError(f"SCP section {sid}: amplitude value multiplier is 0 nV", s.path)
    return {"avm_nv": avm, "dt_us": dt_us, "diff": diff, "bimodal": bool(bimodal),
            "lens": lens, "data_off": s.start + 22 + 2 * n_leads, "end": s.end}


# "Not computed" and its neighbouring reserved codes in sections 7 and 10
# (EN 1064: 29999 = not calculated; writers also use 29998/29997 for
# "rejected"/"not applicable"); axes use 999 for "undefined".
_UNDEFINED = frozenset((29997, 29998, 29999, -29999))
_AXIS_UNDEFINED = frozenset((999, -999)) | _UNDEFINED
_BLOCK_FIELDS = ("p_onset_ms", "p_offset_ms", "qrs_onset_ms", "qrs_offset_ms", "t_offset_ms")
_AXIS_FIELDS = ("p_axis_deg", "qrs_axis_deg", "t_axis_deg")
_SPIKE_TYPES = {0: "unknown", 1: "triggers neither P nor QRS", 2: "triggers QRS",
                3: "triggers P", 255: "no analysis"}
_SPIKE_SOURCES = {0: "unknown", 1: "internal", 2: "external"}
_QTC_FORMULAS = {0: "unknown", 1: "Bazett", 2: "Hodges"}
#: Section 10 per-lead measurement fields in the order of EN 1064 (int16 each;
#: durations in ms, amplitudes in µV, ST slope in µV/s, morphologies and the
#: quality code as the standard's codes). Values after these are manufacturer
#: specific and kept as ``manufacturer_specific``.
LEAD_MEASUREMENT_FIELDS = (
    "p_duration_ms", "pr_interval_ms", "qrs_duration_ms", "qt_interval_ms",
    "q_duration_ms", "r_duration_ms", "s_duration_ms", "r2_duration_ms", "s2_duration_ms",
    "q_amplitude_uv", "r_amplitude_uv", "s_amplitude_uv", "r2_amplitude_uv",
    "s2_amplitude_uv", "j_amplitude_uv", "p_pos_amplitude_uv", "p_neg_amplitude_uv",
    "t_pos_amplitude_uv", "t_neg_amplitude_uv", "st_slope_uv_per_s", "p_morphology",
    "t_morphology", "iso_segment_qrs_onset_ms", "iso_segment_qrs_end_ms",
    "intrinsicoid_deflection_ms", "quality_code", "st_j20_uv", "st_j60_uv", "st_j80_uv",
    "st_j_rr16_uv", "st_j_rr8_uv")


def _defined(v, undefined=_UNDEFINED):
    return float("nan") if v in undefined else float(v)


def _section7(s: _Ctx) -> dict:
    """Global measurements (section 7), every part of it.

    Parts, in order: header (number of measurement blocks = reference beat
    types + 1, number of pacemaker spikes, mean RR and PP in ms); 16-byte
    blocks (P on/off, QRS on/off, T off in ms from the start of the reference
    beat, P/QRS/T frontal axes in degrees); per spike its time (ms from the
    start of the rhythm) and amplitude (µV); per spike its type, source,
    triggered QRS index and pulse width (µs); the number of QRS complexes and
    the reference beat type of each; ventricular rate, atrial rate, QTc, the
    QTc formula and tagged fields. Writers may end the section after any
    complete part; a part that is cut off raises ReadError.

    Returns a dict with ``measurements`` (flat, first block, ints), plus
    ``blocks``, ``pacemaker_spikes`` and ``qrs_types`` where present.
    """
    n_blocks = s.u8(16, "number of measurement blocks")
    n_spikes = s.u8(17, "number of pacemaker spikes")
    rr, pp = s.u16(18, "mean RR interval"), s.u16(20, "mean PP interval")
    s.need(22, 16 * n_blocks, f"{n_blocks} measurement blocks")
    blocks = []
    for k in range(n_blocks):
        o = 22 + 16 * k
        blk = {nm: _defined(s.u16(o + 2 * j)) for j, nm in enumerate(_BLOCK_FIELDS)}
        for j, nm in enumerate(_AXIS_FIELDS):
            v = s.i16(o + 10 + 2 * j)
            blk[nm] = _defined(v, _AXIS_UNDEFINED) if -360 <= v <= 360 else float("nan")
        blocks.append(blk)
    out = {}
    if rr and rr not in _UNDEFINED:
        out["rr_ms"] = rr
    if pp and pp not in _UNDEFINED:
        out["pp_ms"] = pp
    if blocks:
        first = blocks[0]
        for nm in _BLOCK_FIELDS + _AXIS_FIELDS:
            if first[nm] == first[nm]:
                out[nm] = int(first[nm])
        if "qrs_onset_ms" in out and "qrs_offset_ms" in out:
            out["qrs_duration_ms"] = out["qrs_offset_ms"] - out["qrs_onset_ms"]
        if "p_onset_ms" in out and "qrs_onset_ms" in out:
            out["pr_ms"] = out["qrs_onset_ms"] - out["p_onset_ms"]
        if "p_onset_ms" in out and "p_offset_ms" in out:
            out["p_duration_ms"] = out["p_offset_ms"] - out["p_onset_ms"]
        if "qrs_onset_ms" in out and "t_offset_ms" in out:
            out["qt_ms"] = out["t_offset_ms"] - out["qrs_onset_ms"]
    res = {"measurements": out, "blocks": blocks}

    off = 22 + 16 * n_blocks
    if n_spikes:
        s.need(off, 4 * n_spikes, f"{n_spikes} pacemaker spike measurements")
        spikes = [{"time_ms": s.u16(off + 4 * k), "amplitude_uv": s.i16(off + 4 * k + 2)}
                  for k in range(n_spikes)]
        off += 4 * n_spikes
        if off < s.size:          # the spike information part is optional in old writers
            s.need(off, 6 * n_spikes, f"information on {n_spikes} pacemaker spikes")
            for k, sp in enumerate(spikes):
                o = off + 6 * k
                t, src = s.u8(o), s.u8(o + 1)
                sp["type"] = _SPIKE_TYPES.get(t, t)
                sp["source"] = _SPIKE_SOURCES.get(src, src)
                sp["qrs_index"] = s.u16(o + 2)
                sp["width_us"] = s.u16(o + 4)
            off += 6 * n_spikes
        res["pacemaker_spikes"] = spikes
    if off + 2 <= s.size:
        nq = s.u16(off, "QRS count")
        s.need(off + 2, nq, f"types of {nq} QRS complexes")
        if nq:
            res["qrs_types"] = list(s.bytes(off + 2, nq))
            out["qrs_count"] = nq
        off += 2 + nq
    rest = (("ventricular_rate_bpm", 2), ("atrial_rate_bpm", 2), ("qtc_ms", 2))
    for nm, w in rest:
        if off + w > s.size:
            break
        v = s.u16(off)
        off += w
        if v and v not in _UNDEFINED:
            out[nm] = v
    else:
        if off + 1 <= s.size:
            f = s.u8(off)
            if "qtc_ms" in out and f != 255:
                out["qtc_formula"] = _QTC_FORMULAS.get(f, f)
            off += 1
            if off + 2 <= s.size:
                n_tag = s.u16(off, "tagged-field byte count")
                s.need(off + 2, n_tag, f"{n_tag} bytes of tagged measurements")
                tags, o, end = {}, off + 2, off + 2 + n_tag
                while o + 3 <= end:
                    tag, ln = s.u8(o), s.u16(o + 1)
                    if tag == 255 or o + 3 + ln > end:
                        break
                    tags[tag] = s.bytes(o + 3, ln)
                    o += 3 + ln
                if tags:
                    res["tagged"] = tags
    if rr and rr not in _UNDEFINED and "ventricular_rate_bpm" not in out:
        out["heart_rate_bpm"] = round(60000.0 / rr, 1)
    return res


def _section10(s: _Ctx) -> dict:
    """Per-lead measurements (section 10): {canonical lead: {field: value}}.

    Layout: number of leads (uint16), a manufacturer-specific uint16, then per
    lead its lead code (uint16), the byte count of its values (uint16) and
    the values (int16 each, :data:`LEAD_MEASUREMENT_FIELDS` order). "Not
    computed" codes become NaN; a lead whose block runs past the end of the
    section raises ReadError.
    """
    n = s.u16(16, "number of leads")
    off = 20
    s.need(18, 2, "manufacturer-specific word")
    out = {}
    for k in range(n):
        code = s.u16(off, f"lead code of lead {k + 1}")
        ln = s.u16(off + 2, f"byte count of lead {k + 1}")
        s.need(off + 4, ln, f"{ln} bytes of measurements of lead {k + 1}")
        vals = np.frombuffer(s.bytes(off + 4, ln - ln % 2), "<i2").tolist()
        off += 4 + ln
        name = LEAD_CODES.get(code, f"SCP{code}")
        m = {nm: _defined(v) for nm, v in zip(LEAD_MEASUREMENT_FIELDS, vals)}
        if len(vals) > len(LEAD_MEASUREMENT_FIELDS):
            m["manufacturer_specific"] = vals[len(LEAD_MEASUREMENT_FIELDS):]
        while name in out:            # a lead measured twice keeps both
            name += "'"
        out[name] = m
    return out


def _statements(s: _Ctx, sid: int):
    """Sections 8 (text) and 11 (universal codes): list of statement strings."""
    if s.size < 16 + 9:
        return []
    n = s.u8(16 + 8)
    off = 16 + 9
    out = []
    for _ in range(n):
        if off + 3 > s.size:
            break
        ln = s.u16(off + 1)
        if off + 3 + ln > s.size:
            raise ReadError(f"SCP section {sid}: statement length {ln} runs past the end", s.path)
        raw = s.bytes(off + 3, ln)
        if sid == 11 and raw[:1] in (b"\x00", b"\x01", b"\x02"):
            raw = raw[1:]   # statement type byte
        txt = raw.replace(b"\x00", b" ").decode("latin-1").strip()
        if txt:
            out.append(txt)
        off += 3 + ln
    return out


# ---------------------------------------------------------------------------
# decoding
# ---------------------------------------------------------------------------

def _decode_leads(buf, sec, huff, counts, path, sid):
    """Decode every lead of section 5 or 6 into float64 arrays (in AVM units)."""
    from . import _scp
    n_leads = len(sec["lens"])
    lens = list(sec["lens"])
    off = sec["data_off"]
    end = sec["end"]
    if huff is None:
        need = [2 * c for c in counts]
        if lens != need and off + sum(need) <= end and all(
                (n2 & 0xFFFF) == ln or ln == 0 for n2, ln in zip(need, lens)):
            lens = need   # uint16 byte counts overflowed (leads > 32767 samples)
    if off + sum(lens) > end:
        raise ReadError(f"SCP section {sid}: lead byte counts ({sum(lens)} bytes) run past the "
                        f"end of the section ({end - off} bytes of data)", path)
    out = []
    for i in range(n_leads):
        chunk = np.frombuffer(buf, np.uint8, lens[i], off)
        off += lens[i]
        want = counts[i]
        if huff is None:
            n = min(want, lens[i] // 2)
            d = chunk[:2 * n].view("<i2").astype(np.int32)
        else:
            d, n, status, _ = _scp.huffman_decode(np.ascontiguousarray(chunk), want, *huff)
            if status == _scp.BAD_CODE:
                raise ReadError(f"SCP section {sid}, lead {i + 1}: Huffman stream holds a code "
                                f"that no table entry matches (after {n} samples)", path)
            if status == _scp.TRUNCATED:
                raise ReadError(f"SCP section {sid}, lead {i + 1}: Huffman literal runs past the "
                                f"end of the stream (after {n} samples)", path)
            if status == _scp.BAD_TABLE:
                raise ReadError(f"SCP section {sid}, lead {i + 1}: Huffman table switch to a "
                                "table that does not exist", path)
        if n < want:
            raise ReadError(f"SCP section {sid}, lead {i + 1}: data ends after {n} of {want} "
                            "samples", path)
        out.append(_scp.undo_differences(np.ascontiguousarray(d, np.int32), sec["diff"]))
    return out


def _bimodal_positions(n, prot, factor):
    """Positions (0-based, fractional) of the stored values of a bimodal lead of n samples."""
    inside = np.zeros(n, bool)
    if prot is not None:
        for qb, qe in zip(prot["qb"].astype(np.int64), prot["qe"].astype(np.int64)):
            a, b = max(int(qb) - 1, 0), min(int(qe), n)
            if b > a:
                inside[a:b] = True
    idx = np.arange(n)
    # start of the unprotected run each sample belongs to
    run_head = np.where(~inside & np.r_[True, inside[:-1]], idx, 0)
    run_start = np.maximum.accumulate(run_head)
    is_out = ~inside
    # run end (exclusive) of each sample's run
    next_in = np.where(inside, idx, n)
    run_end = np.minimum.accumulate(next_in[::-1])[::-1]
    offs = idx - run_start
    head = is_out & (offs % factor == 0)
    pos = idx.astype(np.float64)
    blk = np.minimum(factor, run_end - idx)
    pos[head] = idx[head] + (blk[head] - 1) / 2.0
    keep = inside | head
    return pos[keep]


def read(path: "str | os.PathLike", strict_crc: bool = False,
         strict_measurements: bool = False) -> Record:
    """Read an SCP-ECG file into a :class:`~ecgcore.Record` in millivolts.

    Parameters
    ----------
    path : str or path-like
        The ``.scp`` file.
    strict_crc : bool
        Raise :class:`~ecgcore.errors.ReadError` on a CRC mismatch instead of
        setting ``meta["quality_flags"]["crc_mismatch"]``.
    strict_measurements : bool
        Raise ReadError when section 7 or 10 is damaged instead of recording
        the problem in ``meta["scp"]["section_errors"]``.

    Returns
    -------
    Record
        Rhythm leads (section 6) at ``1e6 / sample_interval_us`` Hz, in the
        file's lead order, in mV (``counts x AVM nV x 1e-6``). ``median`` holds
        the section-5 reference beat at its own rate and resolution.
        ``meta`` holds ``patient``, ``device``, ``acquisition``,
        ``acquisition_time``, ``measurements`` (section 7, first block, as
        ints), ``measurement_blocks`` (section 7, one dict per reference beat
        type, NaN where not computed), ``pacemaker_spikes``, ``qrs_types``,
        ``lead_measurements`` (section 10, per canonical lead, see
        :data:`LEAD_MEASUREMENT_FIELDS`), ``statements`` (sections 8 and 11)
        and ``scp`` (versions, AVMs, encodings, CRC, ``section_errors``,
        ``undecoded_sections`` for v3.0 sections 12 and above).

    Raises
    ------
    ReadError
        Truncated, corrupt or hostile files, with the file and the problem.

    References
    ----------
    EN 1064:2005+A1:2007, *Health informatics - Standard communication
    protocol - Computer-assisted electrocardiography* (ISO 11073-91064:2009).
    """
    path = os.fspath(path)
    try:
        with open(path, "rb") as f:
            buf = f.read()
    except OSError as exc:
        raise ReadError(f"cannot open: {exc.strerror or exc}", path) from None
    return _read_bytes(buf, path, strict_crc, strict_measurements)


read_scp = read


def _read_bytes(buf: bytes, path, strict_crc=False, strict_measurements=False) -> Record:
    from . import _scp
    size = len(buf)
    if size < 6 + 16 + 10:
        raise ReadError(f"SCP file too short ({size} bytes)", path)
    mv = np.frombuffer(buf, np.uint8)
    crc_errors = []
    file_crc, total = _u16(buf, 0), struct.unpack_from("<I", buf, 2)[0]
    if total > size:
        raise ReadError(f"SCP file truncated: header declares {total} bytes, file has {size}", path)
    if total < 6 + 16:
        raise ReadError(f"SCP header declares an impossible length of {total} bytes", path)
    if _scp.crc_ccitt(mv, 2, total) != file_crc:
        crc_errors.append("file")
    # section 0 sits right after the 6-byte record header
    s0_len = struct.unpack_from("<I", buf, 6 + 4)[0]
    if _u16(buf, 6 + 2) != 0 or s0_len < 16 or 6 + s0_len > total:
        raise ReadError("SCP section 0 (pointer table) missing or its length runs past the end",
                        path)
    s0 = _Ctx(buf, 6, 6 + s0_len, 0, path)
    if _scp.crc_ccitt(mv, 8, 6 + s0_len) != _u16(buf, 6):
        crc_errors.append("section 0")
    version = {"section0": buf[6 + 8], "protocol": buf[6 + 9]}
    pointers = {}
    for k in range((s0_len - 16) // 10):
        o = 16 + 10 * k
        sid, ln, idx = s0.u16(o), s0.u32(o + 2), s0.u32(o + 6)
        if ln == 0:
            continue
        if idx < 1 or idx - 1 + ln > total or ln < 16:
            raise ReadError(f"SCP section 0 points section {sid} to bytes {idx}..{idx + ln - 1}, "
                            f"outside the {total}-byte record", path)
        pointers[sid] = (idx - 1, ln)

    secs = {}
    for sid, (start, ln) in pointers.items():
        if sid == 0:
            continue
        hdr_id = _u16(buf, start + 2)
        hdr_len = struct.unpack_from("<I", buf, start + 4)[0]
        if hdr_id != sid:
            raise ReadError(f"SCP section 0 points section {sid} at a header that says section "
                            f"{hdr_id}", path)
        if hdr_len != ln:
            ln = min(ln, hdr_len) if hdr_len >= 16 else ln
        if _scp.crc_ccitt(mv, start + 2, start + ln) != _u16(buf, start):
            crc_errors.append(f"section {sid}")
        secs[sid] = _Ctx(buf, start, start + ln, sid, path)
    if crc_errors and strict_crc:
        raise ReadError(f"SCP CRC mismatch in {', '.join(crc_errors)}", path)

    meta: dict = {"format": "scp"}
    if 1 in secs:
        _section1(secs[1], meta)
    if 3 not in secs:
        raise ReadError("SCP file has no lead definition (section 3)", path)
    if 6 not in secs:
        raise ReadError("SCP file has no rhythm data (section 6)", path)
    s3 = _section3(secs[3])
    huff = _section2(secs[2]) if 2 in secs else None
    s4 = _section4(secs[4]) if 4 in secs else None
    n_leads = s3["n"]
    s6 = _section56(secs[6], n_leads, 6)
    codes = [c for _, _, c in s3["leads"]]
    names = [LEAD_CODES.get(c, f"SCP{c}") for c in codes]
    starts = np.array([st for st, _, _ in s3["leads"]], np.int64)
    ends = np.array([en for _, en, _ in s3["leads"]], np.int64)
    counts = (ends - starts + 1)
    if counts.max() > 50_000_000:
        raise ReadError(f"SCP section 3 declares {int(counts.max())} samples per lead", path)

    # --- reference beat (section 5) -------------------------------------------------
    median = None
    ref = None
    s5 = None
    if 5 in secs and secs[5].size > 22:
        s5 = _section56(secs[5], n_leads, 5)
        if s4 is not None and s4["length_ms"]:
            n_ref = int(round(1000.0 * s4["length_ms"] / s5["dt_us"]))
        elif huff is None:
            n_ref = min(s5["lens"]) // 2
        else:
            n_ref = 0
        if n_ref > 0 and sum(s5["lens"]) > 0:
            ref = _decode_leads(buf, s5, huff, [n_ref] * n_leads, path, 5)
            med = np.stack(ref) * (s5["avm_nv"] * 1e-6)
            median = Record(med, 1e6 / s5["dt_us"], names, source=path,
                            meta={"format": "scp", "kind": "reference_beat",
                                  "fiducial_sample": s4["fcm"] if s4 else None})

    # --- rhythm (section 6) ------------------------------------------------------------
    factor = 1
    if s6["bimodal"]:
        if s5 is None or s4 is None:
            raise ReadError("SCP bimodal compression flagged but section 4 or 5 is missing", path)
        factor = s6["dt_us"] // s5["dt_us"] if s5["dt_us"] else 1
        if factor < 1 or s6["dt_us"] % s5["dt_us"]:
            raise ReadError(f"SCP bimodal compression: rhythm interval {s6['dt_us']} µs is not a "
                            f"multiple of the reference interval {s5['dt_us']} µs", path)
    if factor > 1:
        positions = [_bimodal_positions(int(c), s4["protected"], factor) for c in counts]
        stored = [len(p) for p in positions]
    else:
        stored = [int(c) for c in counts]
    raw = _decode_leads(buf, s6, huff, stored, path, 6)
    fs_dt = s5["dt_us"] if factor > 1 else s6["dt_us"]
    phys = []
    for i, x in enumerate(raw):
        if factor > 1:
            x = np.interp(np.arange(counts[i]), positions[i], x)
        phys.append(x * float(s6["avm_nv"]))   # nV

    subtracted = s3["ref_beat_subtracted"]
    if subtracted:
        if ref is None or s4 is None:
            raise ReadError("SCP reference-beat subtraction flagged but the reference beat "
                            "(sections 4/5) is missing", path)
        q = s4["qrs"]
        sel = q["type"] == 0
        if sel.any():
            sb = q["sb"][sel].astype(np.int64)
            fc = q["fc"][sel].astype(np.int64)
            se = q["se"][sel].astype(np.int64)
            lens_z = np.clip(se - sb + 1, 0, 100_000)
            rep = np.repeat(np.arange(len(sb)), lens_z)
            samp = np.arange(int(lens_z.sum())) - np.repeat(np.cumsum(lens_z) - lens_z, lens_z) \
                + sb[rep]                                   # 1-based sample numbers
            ridx = samp - fc[rep] + int(s4["fcm"]) - 1       # 0-based reference-beat index
            for i in range(n_leads):
                ok = (samp >= 1) & (samp <= counts[i]) & (ridx >= 0) & (ridx < len(ref[i]))
                np.add.at(phys[i], samp[ok] - 1, ref[i][ridx[ok]] * float(s5["avm_nv"]))

    # --- assemble on a common time base ------------------------------------------------
    t0 = int(starts.min())
    n_total = int((starts - t0 + counts).max())
    same = bool((starts == starts[0]).all() and (counts == counts[0]).all())
    if same:
        sig = np.stack(phys) * 1e-6
    else:
        sig = np.full((n_leads, n_total), np.nan)
        for i in range(n_leads):
            a = int(starts[i] - t0)
            sig[i, a:a + counts[i]] = phys[i] * 1e-6
    fs = 1e6 / fs_dt

    scp = meta.setdefault("scp", {})
    scp.update({"protocol_version": version["protocol"] / 10.0,
                "section0_version": version["section0"] / 10.0,
                "sections": sorted(secs) + [0], "lead_codes": codes,
                "avm_nv": s6["avm_nv"], "sample_interval_us": s6["dt_us"],
                "difference_encoding": s6["diff"], "bimodal": s6["bimodal"],
                "huffman": "none" if huff is None else
                ("default" if _u16(buf, secs[2].start + 16) == 19999 else "custom"),
                "reference_beat_subtracted": subtracted,
                "simultaneous_leads": s3["n_simultaneous"], "start_samples": starts.tolist()})
    scp["sections"] = sorted(scp["sections"])
    if s5 is not None:
        scp["reference_avm_nv"] = s5["avm_nv"]
        scp["reference_sample_interval_us"] = s5["dt_us"]
    if s4 is not None:
        scp["n_qrs"] = int(len(s4["qrs"]))
        if len(s4["qrs"]):
            meta["qrs_fiducials"] = (s4["qrs"]["fc"].astype(np.int64) - 1).tolist()
    # Measurements are optional extras: a damaged section 7 or 10 is reported
    # in meta["scp"]["section_errors"] (or raised with strict_measurements),
    # and the waveforms are still returned.
    for sid, parse in ((7, _section7), (10, _section10)):
        if sid not in secs:
            continue
        try:
            res = parse(secs[sid])
        except ReadError as exc:
            if strict_measurements:
                raise
            scp.setdefault("section_errors", {})[sid] = exc.args[0] if exc.args else str(exc)
            continue
        if sid == 10:
            meta["lead_measurements"] = res
            continue
        if res["measurements"]:
            meta["measurements"] = res["measurements"]
        if res["blocks"]:
            meta["measurement_blocks"] = res["blocks"]
        for key in ("pacemaker_spikes", "qrs_types"):
            if key in res:
                meta[key] = res[key]
        if "tagged" in res:
            scp["section7_tagged"] = {k: v.hex() for k, v in res["tagged"].items()}
    # Sections past 11 (SCP-ECG v3.0: 12 long-term rhythm data and the newer
    # annotation/measurement sections; 128+ manufacturer specific) are not
    # decoded; their presence is recorded so nothing is lost silently.
    extra = [{"id": sid, "length": secs[sid].size, "version": buf[secs[sid].start + 8] / 10.0,
              "protocol_version": buf[secs[sid].start + 9] / 10.0}
             for sid in sorted(secs) if sid > 11]
    if extra:
        scp["undecoded_sections"] = extra
    stm = []
    for sid in (8, 11):
        if sid in secs:
            stm += _statements(secs[sid], sid)
    if stm:
        meta["statements"] = stm
    if crc_errors:
        scp["crc_errors"] = crc_errors
        meta.setdefault("quality_flags", {})["crc_mismatch"] = True
    return Record(sig, fs, names, meta=meta, median=median, source=path)

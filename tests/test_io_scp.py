"""SCP-ECG reader: the real file, the standard's Huffman example, files written
by an independent encoder in this module (default and custom Huffman tables,
difference encodings, reference-beat subtraction, bimodal compression, raw
v1.3-style leads over 32767 samples, 0-based starts), and hostile input."""

from __future__ import annotations

import struct
import time

import numpy as np
import pytest

from ecgcore.errors import ReadError

scp = pytest.importorskip("ecgcore.io.scp", reason="ecgcore.io.scp not built")
from ecgcore.io import _scp  # noqa: E402



@pytest.fixture
def example(shared_data):
    """The ECGToolkit example (the HL7 2003 ballot ECG converted to SCP v2.0)."""
    p = shared_data / "scp_ecg" / "ecgtoolkit_Example.scp"
    if not p.exists():
        pytest.skip(f"{p} is absent from the reference shelf")
    return p

# ---------------------------------------------------------------------------
# an independent SCP-ECG writer (bit-level encoder), used only by the tests
# ---------------------------------------------------------------------------

# default table written out from the standard: (prefix bits, total bits, mode, value, code string)
DEFAULT_ROWS = [(1, 1, 1, 0, "0")]
for m in range(1, 9):
    DEFAULT_ROWS += [(m + 2, m + 2, 1, m, "1" * m + "00"), (m + 2, m + 2, 1, -m, "1" * m + "01")]
DEFAULT_ROWS += [(10, 18, 1, 0, "1111111110"), (10, 26, 1, 0, "1111111111")]

# a custom table with a different code book and a 16-bit literal escape
CUSTOM_ROWS = [(2, 2, 1, 0, "10"), (2, 2, 1, 1, "00"), (2, 2, 1, -1, "01"),
               (3, 3, 1, 2, "110"), (4, 4, 1, -2, "1110"), (4, 20, 1, 0, "1111")]


def _crc_table():
    table = []
    for i in range(256):
        c = i << 8
        for _ in range(8):
            c = ((c << 1) ^ 0x1021) if c & 0x8000 else (c << 1)
        table.append(c & 0xFFFF)
    return table


_CRC_T = _crc_table()


def crc_ccitt(data: bytes) -> int:
    """CRC-CCITT (0x1021, init 0xFFFF), written independently of the reader's kernel."""
    crc = 0xFFFF
    for byte in data:
        crc = ((crc << 8) & 0xFFFF) ^ _CRC_T[(crc >> 8) ^ byte]
    return crc


def huff_encode(values, rows) -> bytes:
    direct = {r[3]: r[4] for r in rows if r[0] == r[1] and r[2] == 1}
    literals = sorted((r[1] - r[0], r[4]) for r in rows if r[1] > r[0])
    out = []
    for v in np.asarray(values, np.int64):
        v = int(v)
        if v in direct:
            out.append(direct[v])
            continue
        for nb, code in literals:
            if -(1 << (nb - 1)) <= v < (1 << (nb - 1)):
                out.append(code + format(v & ((1 << nb) - 1), f"0{nb}b"))
                break
        else:
            raise ValueError(f"value {v} not encodable")
    bits = "".join(out)
    bits += "0" * (-len(bits) % 8)
    return bytes(int(bits[i:i + 8], 2) for i in range(0, len(bits), 8))


def diff_encode(x, order):
    x = np.asarray(x, np.int64)
    if order == 0:
        return x
    if order == 1:
        return np.r_[x[:1], np.diff(x)]
    return np.r_[x[:2], x[2:] - 2 * x[1:-1] + x[:-2]]


def section(sid, body, version=20):
    length = 16 + len(body)
    head = struct.pack("<HIBB", sid, length, version, version) + (b"SCPECG" if sid == 0 else b"\0" * 6)
    crc = crc_ccitt(head + body)
    return struct.pack("<H", crc) + head + body


def encode_leads(leads, diff, rows):
    """Section 5/6 payload: the per-lead byte streams and their byte counts."""
    streams = []
    for x in leads:
        d = diff_encode(x, diff)
        if rows is None:
            streams.append(np.asarray(d, "<i2").tobytes())
        else:
            streams.append(huff_encode(d, rows))
    return streams


def build_scp(signal, codes, *, avm=5000, dt_us=2000, diff=2, huffman="default", start=1,
              version=20, ref=None, ref_avm=None, zones=None, fcm=None, bimodal_factor=1,
              protected=None, subtract=None, section1=True, lens_override=None, statements=None,
              extra=None, s1_tags=()):
    """Write an SCP-ECG record.

    signal : (n_leads, n) int counts of the *full-rate* rhythm (before any
    subtraction or decimation), codes: SCP lead codes. extra: {section id:
    body bytes} for sections 7, 10 or v3.0 sections 12+; s1_tags: extra
    (tag, value) pairs for section 1.
    """
    signal = np.asarray(signal, np.int64)
    n_leads, n = signal.shape
    rows = {"default": DEFAULT_ROWS, "custom": CUSTOM_ROWS, None: None}[huffman]
    secs = {}
    if section1:
        body = b""
        for tag, val in [(0, b"Doe\0"), (2, b"PID-42\0"), (5, struct.pack("<HBB", 1960, 2, 29)),
                         (8, b"\x02"), (25, struct.pack("<HBB", 2021, 3, 4)), (26, bytes([13, 14, 15])),
                         (14, bytes(8) + b"CART1\0" + bytes([20, 0xA0, 0, 0xD0, 1]) + bytes(17)
                          + b"1.0\0SN77\0sw\0scp\0ACME\0")] + list(s1_tags):
            body += struct.pack("<BH", tag, len(val)) + val
        body += b"\xff\x00\x00"
        secs[1] = section(1, body, version)
    if huffman is not None:
        if huffman == "default":
            secs[2] = section(2, struct.pack("<H", 19999), version)
        else:
            body = struct.pack("<HH", 1, len(rows))
            for p, t, mode, val, code in rows:
                rev = int(code[::-1], 2)
                body += struct.pack("<BBBhI", p, t, mode, val, rev)
            secs[2] = section(2, body, version)
    if subtract is None:
        subtract = ref is not None and zones is not None
    flags = (1 if subtract else 0) | 4 | (n_leads << 3)
    body = struct.pack("<BB", n_leads, flags & 0xFF)
    for c in codes:
        body += struct.pack("<IIB", start, start + n - 1, c)
    secs[3] = section(3, body, version)
    if ref is not None:
        ref = np.asarray(ref, np.int64)
        m = ref.shape[1]
        zones = zones or []
        body = struct.pack("<HHH", int(round(m * dt_us / 1000)), fcm or 1, len(zones))
        for sb, fc, se in zones:
            body += struct.pack("<HIII", 0, sb, fc, se)
        for qb, qe in (protected or [(sb, se) for sb, _, se in zones]):
            body += struct.pack("<II", qb, qe)
        secs[4] = section(4, body, version)
        streams = encode_leads(ref, diff, rows)
        body = struct.pack("<HHBB", ref_avm or avm, dt_us, diff, 0)
        body += b"".join(struct.pack("<H", len(s)) for s in streams) + b"".join(streams)
        secs[5] = section(5, body, version)
    resid = signal.copy()
    if subtract:
        scale = (ref_avm or avm) / avm
        for sb, fc, se in zones:
            for s_ in range(sb, se + 1):
                resid[:, s_ - 1] -= np.round(ref[:, s_ - fc + fcm - 1] * scale).astype(np.int64)
    stored = resid
    if bimodal_factor > 1:
        inside = np.zeros(n, bool)
        for qb, qe in protected:
            inside[qb - 1:qe] = True
        cols, i = [], 0
        while i < n:
            if inside[i]:
                cols.append(resid[:, i])
                i += 1
            else:
                j = i
                while j < n and not inside[j] and j - i < bimodal_factor:
                    j += 1
                cols.append(np.round(resid[:, i:j].mean(axis=1)).astype(np.int64))
                i = j
        stored = np.stack(cols, axis=1)
    streams = encode_leads(stored, diff, rows)
    lens = [len(s) & 0xFFFF for s in streams] if lens_override is None else lens_override
    body = struct.pack("<HHBB", avm, dt_us * bimodal_factor, diff, 1 if bimodal_factor > 1 else 0)
    body += b"".join(struct.pack("<H", ln) for ln in lens) + b"".join(streams)
    secs[6] = section(6, body, version)
    if statements:
        body = struct.pack("<BHBBBBBB", 1, 2021, 3, 4, 13, 14, 15, len(statements))
        for k, txt in enumerate(statements):
            raw = txt.encode() + b"\0"
            body += struct.pack("<BH", k + 1, len(raw)) + raw
        secs[8] = section(8, body, version)
    for sid, body in (extra or {}).items():
        secs[sid] = section(sid, body, version)
    # section 0 then the others, with 1-based byte indices
    ids = list(range(12)) + sorted(k for k in (extra or {}) if k > 11)
    offset = 6 + 16 + 10 * len(ids)
    table = b""
    blobs = b""
    for sid in ids:
        if sid == 0:
            table += struct.pack("<HII", 0, 16 + 10 * len(ids), 7)
        elif sid in secs:
            table += struct.pack("<HII", sid, len(secs[sid]), offset + len(blobs) + 1)
            blobs += secs[sid]
        else:
            table += struct.pack("<HII", sid, 0, 0)
    s0 = section(0, table, version)
    rest = s0 + blobs
    total = 6 + len(rest)
    body = struct.pack("<I", total) + rest
    return struct.pack("<H", crc_ccitt(body)) + body


def ecg_like(rng, n_leads, n, amp=400):
    t = np.arange(n)
    base = np.sin(2 * np.pi * t / 400.0)[None, :] * amp
    walk = np.cumsum(rng.integers(-3, 4, size=(n_leads, n)), axis=1)
    return (base * rng.uniform(0.3, 1.2, (n_leads, 1)) + walk).astype(np.int64)


def write(tmp_path, blob, name="x.scp"):
    p = tmp_path / name
    p.write_bytes(blob)
    return p


# ---------------------------------------------------------------------------
# kernels
# ---------------------------------------------------------------------------

def test_standard_huffman_example_decodes():
    # The worked example of EN 1064 (default table, second differences):
    # 28 values from these bytes (the trailing 0x00 is padding).
    data = bytes([0xFF, 0x83, 0x7F, 0xE0, 0xE6, 0xF1, 0x53, 0x65, 0x59, 0xB6, 0x5B, 0x96,
                  0x4B, 0x96, 0x00])
    expected = [13, 14, 15, 14, 16, 18, 19, 20, 22, 22, 23, 23, 23, 22, 22, 20, 17, 15, 12,
                8, 6, 3, 1, 0, -2, -2, -3, -3]
    huff = scp._section2(_ctx_for(struct.pack("<H", 19999)))
    d, n, status, _ = _scp.huffman_decode(np.frombuffer(data, np.uint8).copy(), 28, *huff)
    assert status == _scp.OK and n == 28
    np.testing.assert_array_equal(_scp.undo_differences(d, 2), expected)


def _ctx_for(body, sid=2):
    blob = bytes(16) + body
    return scp._Ctx(blob, 0, len(blob), sid, "mem")


def test_crc_matches_reference_implementation(rng):
    data = rng.integers(0, 256, 3000).astype(np.uint8)
    assert _scp.crc_ccitt(data) == crc_ccitt(data.tobytes())
    assert _scp.crc_ccitt(np.frombuffer(b"123456789", np.uint8)) == 0x29B1  # CCITT-FALSE check value


def test_huffman_table_switch():
    # table 1: '0' -> 0, '1' -> switch to table 2; table 2: '0' -> 5, '1' -> back to table 1
    body = struct.pack("<H", 2)
    body += struct.pack("<H", 2) + struct.pack("<BBBhI", 1, 1, 1, 0, 0) + struct.pack("<BBBhI", 1, 1, 0, 2, 1)
    body += struct.pack("<H", 2) + struct.pack("<BBBhI", 1, 1, 1, 5, 0) + struct.pack("<BBBhI", 1, 1, 0, 1, 1)
    huff = scp._section2(_ctx_for(body))
    stream = np.array([int("01001000", 2)], np.uint8)   # 0 | sw 5 5 | sw 0 0 0
    d, n, status, _ = _scp.huffman_decode(stream, 6, *huff)
    assert status == _scp.OK
    np.testing.assert_array_equal(d, [0, 5, 5, 0, 0, 0])


# ---------------------------------------------------------------------------
# the real file
# ---------------------------------------------------------------------------

def test_example_file_header_and_shape(example):
    rec = scp.read(example)
    assert rec.fs == 500 and rec.n_samples == 5000
    assert rec.leads == ("I", "II", "V1", "V2", "V3", "V4", "V5", "V6", "III", "aVR", "aVL", "aVF")
    m = rec.meta
    assert m["scp"]["avm_nv"] == 2500 and m["scp"]["difference_encoding"] == 2
    assert m["scp"]["huffman"] == "default" and m["scp"]["protocol_version"] == 2.0
    assert "crc_errors" not in m["scp"] and "quality_flags" not in m
    assert m["patient"]["id"] == "SBJ-123" and m["patient"]["sex"] == "M"
    assert m["acquisition_time"] == "2002-11-22T09:10:00"
    assert m["device"]["acquiring"]["model"] == "ELI250"
    assert m["measurements"]["qrs_duration_ms"] == 120
    assert rec.median is not None and rec.median.n_samples == 599 and rec.median.fs == 500
    # plausible mV amplitudes and a limb-lead set that (nearly) obeys Einthoven
    assert rec.quality.ok
    assert max(rec.limb_residuals().values()) < 0.02


def test_example_sniffed_through_ecgcore_read(example):
    import ecgcore.io as io
    rec = io.read(example)
    assert rec.meta["format"] == "scp" and rec.n_leads == 12


def test_example_crc_corruption_is_flagged_or_strict(example, tmp_path):
    blob = bytearray(example.read_bytes())
    blob[200] ^= 0x01            # inside section 1 (patient text): decodable but CRC-bad
    p = write(tmp_path, bytes(blob))
    rec = scp.read(p)
    assert rec.meta["quality_flags"]["crc_mismatch"]
    assert set(rec.meta["scp"]["crc_errors"]) >= {"file", "section 1"}
    assert not rec.quality.ok
    with pytest.raises(ReadError, match="CRC"):
        scp.read(p, strict_crc=True)


# ---------------------------------------------------------------------------
# round trips through the independent writer
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("huffman", ["default", "custom", None])
@pytest.mark.parametrize("diff", [0, 1, 2])
def test_roundtrip_encodings(tmp_path, rng, huffman, diff):
    sig = ecg_like(rng, 3, 1200)
    if huffman is not None:
        sig[:, 100] += 4000          # forces the literal escapes
    p = write(tmp_path, build_scp(sig, [1, 2, 3], avm=5000, diff=diff, huffman=huffman))
    rec = scp.read(p)
    assert rec.leads == ("I", "II", "V1") and rec.fs == 500
    np.testing.assert_array_equal(np.round(rec.signal.astype(np.float64) / 5e-3), sig)
    assert rec.meta["scp"]["huffman"] == {"default": "default", "custom": "custom", None: "none"}[huffman]
    assert rec.meta["patient"]["birth_date"] == "1960-02-29" and rec.meta["patient"]["sex"] == "F"
    assert rec.meta["acquisition_time"] == "2021-03-04T13:14:15"


def test_zero_based_start_and_v13_long_raw_leads(tmp_path, rng):
    # v1.3 style: no section 2 (raw int16), 1 kHz, AVM 183 nV, 40000 samples per
    # lead (the uint16 byte counts overflow), 0-based start sample.
    n = 40000
    sig = ecg_like(rng, 8, n, amp=3000)
    blob = build_scp(sig, [1, 2, 3, 4, 5, 6, 7, 8], avm=183, dt_us=1000, diff=0, huffman=None,
                     start=0, version=13, section1=False)
    rec = scp.read(write(tmp_path, blob))
    assert rec.n_samples == n and rec.fs == 1000
    np.testing.assert_allclose(rec.signal, sig * 183e-6, rtol=1e-6, atol=1e-7)
    assert rec.meta["scp"]["protocol_version"] == 1.3


def test_reference_beat_subtraction_is_undone(tmp_path, rng):
    n, m, fcm = 2000, 300, 120
    beat = (np.sin(np.linspace(0, np.pi, m)) ** 8 * 900).astype(np.int64)
    ref = np.stack([beat, -beat // 2])
    sig = ecg_like(rng, 2, n, amp=100)
    fcs = [300, 900, 1500]
    zones = [(fc - 40, fc, fc + 50) for fc in fcs]
    for fc in fcs:                            # the rhythm really contains the beat
        sig[:, fc - fcm:fc - fcm + m] += ref
    blob = build_scp(sig, [1, 2], ref=ref, zones=zones, fcm=fcm, diff=1)
    rec = scp.read(write(tmp_path, blob))
    assert rec.meta["scp"]["reference_beat_subtracted"]
    np.testing.assert_array_equal(np.round(rec.signal.astype(np.float64) / 5e-3), sig)
    np.testing.assert_array_equal(np.round(rec.median.signal.astype(np.float64) / 5e-3), ref)
    # and reading it without the add-back would be visibly wrong
    assert np.abs(sig[:, 290:310]).max() > 500


def test_reference_beat_with_its_own_avm(tmp_path, rng):
    n, m, fcm = 1500, 200, 80
    ref = (np.sin(np.linspace(0, np.pi, m)) ** 6 * 600).astype(np.int64)[None, :]
    sig = ecg_like(rng, 1, n, amp=50)
    sig[:, 700 - fcm:700 - fcm + m] += 2 * ref          # ref stored at 2x the rhythm AVM
    blob = build_scp(sig, [2], avm=2500, ref=ref, ref_avm=5000, zones=[(660, 700, 760)], fcm=fcm)
    rec = scp.read(write(tmp_path, blob))
    np.testing.assert_array_equal(np.round(rec.signal.astype(np.float64) / 2.5e-3), sig)
    np.testing.assert_allclose(rec.median.signal[0], ref[0] * 5e-3, rtol=1e-6)


def test_bimodal_reconstruction(tmp_path, rng):
    n, factor = 2000, 4
    t = np.arange(n)
    sig = np.round(np.stack([np.sin(2 * np.pi * t / 500) * 800,
                             np.cos(2 * np.pi * t / 700) * 500])).astype(np.int64)
    protected = [(401, 480), (1201, 1290)]
    ref = np.zeros((2, 100), np.int64)
    zones = [(qb, (qb + qe) // 2, qe) for qb, qe in protected]
    blob = build_scp(sig, [1, 2], ref=ref, zones=zones, subtract=False, protected=protected,
                     bimodal_factor=factor, diff=2, fcm=50)
    rec = scp.read(write(tmp_path, blob))
    assert rec.fs == 500 and rec.n_samples == n and rec.meta["scp"]["bimodal"]
    got = rec.signal.astype(np.float64) / 5e-3
    for qb, qe in protected:                     # exact inside the protected zones
        np.testing.assert_array_equal(np.round(got[:, qb - 1:qe]), sig[:, qb - 1:qe])
    err = np.abs(got - sig).max()
    assert err < 0.03 * 800                      # interpolated outside
    assert err > 0                               # decimation really happened


def test_statements_section8(tmp_path, rng):
    sig = ecg_like(rng, 2, 500)
    blob = build_scp(sig, [1, 61], statements=["Sinus rhythm", "Normal ECG"])
    rec = scp.read(write(tmp_path, blob))
    assert rec.meta["statements"] == ["Sinus rhythm", "Normal ECG"]
    assert rec.leads == ("I", "III")


# ---------------------------------------------------------------------------
# hostile input
# ---------------------------------------------------------------------------

def test_bad_huffman_streams(tmp_path, rng):
    sig = ecg_like(rng, 2, 800)
    good = build_scp(sig, [1, 2], huffman="custom")
    rec = scp.read(write(tmp_path, good, "good.scp"))
    assert rec.n_samples == 800
    # lead byte count claims more bytes than the section holds
    bad = build_scp(sig, [1, 2], huffman="custom", lens_override=[60000, 60000])
    with pytest.raises(ReadError, match="past the end"):
        scp.read(write(tmp_path, bad, "len.scp"))
    # lead byte count too small: the stream ends before the samples do
    streams = encode_leads(sig, 2, CUSTOM_ROWS)
    short = build_scp(sig, [1, 2], huffman="custom", lens_override=[len(streams[0]) // 2, 0])
    with pytest.raises(ReadError, match="ends after|runs past the end of the stream"):
        scp.read(write(tmp_path, short, "short.scp"))


def test_stream_of_unmatched_codes_and_endless_switches():
    # a table whose codes never match the stream -> BAD_CODE, not a hang
    body = struct.pack("<HH", 1, 1) + struct.pack("<BBBhI", 2, 2, 1, 0, 0)   # only '00'
    huff = scp._section2(_ctx_for(body))
    d, n, status, _ = _scp.huffman_decode(np.full(1000, 0xFF, np.uint8), 10_000, *huff)
    assert status == _scp.BAD_CODE and n == 0
    # a table of only switches: every step eats a bit, so it stops at the end
    body = struct.pack("<HH", 1, 1) + struct.pack("<BBBhI", 1, 1, 0, 1, 0) + b""
    body = struct.pack("<HH", 1, 2) + struct.pack("<BBBhI", 1, 1, 0, 1, 0) + struct.pack("<BBBhI", 1, 1, 0, 1, 1)
    huff = scp._section2(_ctx_for(body))
    t0 = time.perf_counter()
    d, n, status, bits = _scp.huffman_decode(np.zeros(100_000, np.uint8), 10_000, *huff)
    assert n == 0 and bits == 800_000 and time.perf_counter() - t0 < 5
    # a literal that runs past the end -> TRUNCATED
    huff = scp._section2(_ctx_for(struct.pack("<H", 19999)))
    d, n, status, _ = _scp.huffman_decode(np.array([0xFF, 0xC0], np.uint8), 5, *huff)
    assert status == _scp.TRUNCATED


def test_bad_tables_rejected():
    for body in (struct.pack("<HH", 1, 1) + struct.pack("<BBBhI", 0, 0, 1, 0, 0),      # 0-bit prefix
                 struct.pack("<HH", 1, 1) + struct.pack("<BBBhI", 4, 40, 1, 0, 0),     # 36-bit literal
                 struct.pack("<HH", 1, 1) + struct.pack("<BBBhI", 1, 1, 0, 7, 0),      # switch to table 7
                 struct.pack("<HH", 2, 1) + struct.pack("<BBBhI", 1, 1, 1, 0, 0)):     # table 2 missing
        with pytest.raises(ReadError):
            scp._section2(_ctx_for(body))


@pytest.mark.parametrize("cut", [0, 5, 21, 100, 400, 5000, 34000])
def test_truncated_example(example, tmp_path, cut):
    blob = example.read_bytes()[:cut]
    p = write(tmp_path, blob)
    with pytest.raises(ReadError):
        scp.read(p)


def test_pointer_past_end_and_wrong_section_id(example, tmp_path):
    blob = bytearray(example.read_bytes())
    # section 6's pointer entry (7th entry of section 0): index far past the end
    o = 6 + 16 + 10 * 6
    assert struct.unpack_from("<H", blob, o)[0] == 6
    bad = bytearray(blob)
    struct.pack_into("<I", bad, o + 6, 10**8)
    with pytest.raises(ReadError, match="outside"):
        scp.read(write(tmp_path, bytes(bad), "a.scp"))
    bad = bytearray(blob)
    struct.pack_into("<I", bad, o + 6, 143)   # points at section 1's header
    with pytest.raises(ReadError):
        scp.read(write(tmp_path, bytes(bad), "b.scp"))


def test_fuzz_example_mutations(example, tmp_path):
    """Seeded byte mutations of the real file: ReadError or a Record, quickly."""
    base = example.read_bytes()
    rng = np.random.default_rng(1064)
    p = tmp_path / "f.scp"
    t0 = time.perf_counter()
    outcomes = {"ok": 0, "error": 0}
    for k in range(300):
        blob = bytearray(base)
        kind = k % 4
        if kind == 0:      # random byte flips anywhere
            for pos in rng.integers(0, len(blob), rng.integers(1, 20)):
                blob[pos] = rng.integers(0, 256)
        elif kind == 1:    # flips in the headers and small sections
            for pos in rng.integers(0, 480, rng.integers(1, 6)):
                blob[pos] = rng.integers(0, 256)
        elif kind == 2:    # truncation
            blob = blob[: rng.integers(0, len(blob))]
        else:              # garbage inside the Huffman streams
            a = int(rng.integers(3900, len(blob) - 300))
            blob[a:a + 200] = rng.integers(0, 256, 200).astype(np.uint8).tobytes()
        p.write_bytes(bytes(blob))
        try:
            rec = scp.read(p)
        except ReadError:
            outcomes["error"] += 1
        else:
            outcomes["ok"] += 1
            assert rec.signal.dtype == np.float32 and rec.n_leads >= 1
    assert outcomes["error"] > 0 and outcomes["ok"] > 0
    assert time.perf_counter() - t0 < 60


# ---------------------------------------------------------------------------
# sections 7 (global measurements) and 10 (per-lead measurements), v3.0
# ---------------------------------------------------------------------------

NC = 29999          # "not calculated" in sections 7 and 10


def s7_body(blocks, *, rr=NC, pp=NC, spikes=(), spike_info=True, qrs_types=None,
            rates=None, formula=None, tags=None):
    """Section 7 body written field by field from the standard's layout."""
    body = struct.pack("<BBHH", len(blocks), len(spikes), rr, pp)
    for b in blocks:
        body += struct.pack("<HHHHHhhh", *b)
    for t, a, *_ in spikes:
        body += struct.pack("<Hh", t, a)
    if spikes and spike_info:
        for _, _, typ, src, qi, w in spikes:
            body += struct.pack("<BBHH", typ, src, qi, w)
    if qrs_types is not None:
        body += struct.pack("<H", len(qrs_types)) + bytes(qrs_types)
    if rates is not None:
        body += struct.pack("<HHH", *rates)
        if formula is not None:
            body += struct.pack("<B", formula)
            raw = b"".join(struct.pack("<BH", k, len(v)) + v for k, v in (tags or {}).items())
            body += struct.pack("<H", len(raw)) + raw
    return body + b"\0" * (len(body) % 2)      # sections have an even length


def s10_body(leads):
    """Section 10 body: leads = [(lead code, [int16 values...])]."""
    body = struct.pack("<HH", len(leads), 0)
    for code, vals in leads:
        body += struct.pack("<HH", code, 2 * len(vals)) + np.asarray(vals, "<i2").tobytes()
    return body


def _lead_values(rng):
    v = rng.integers(-2000, 2000, len(scp.LEAD_MEASUREMENT_FIELDS)).astype(np.int64)
    return v


def test_section7_every_part(tmp_path, rng):
    blocks = [(286, 388, 434, 554, 854, 44, -61, 86),        # reference beat type 0
              (NC, NC, 420, 580, 900, 999, 120, NC)]          # type 1: P absent, axes undefined
    spikes = [(1204, 850, 2, 1, 3, 500), (2406, -700, 1, 2, 6, 1000)]
    body = s7_body(blocks, rr=857, pp=860, spikes=spikes, qrs_types=[0, 0, 1, 0, 0, 1, 0],
                   rates=(70, 70, 443), formula=1, tags={7: b"\x01\x02\x03"})
    sig = ecg_like(rng, 2, 1000)
    rec = scp.read(write(tmp_path, build_scp(sig, [1, 2], extra={7: body})))
    m = rec.meta["measurements"]
    assert (m["p_onset_ms"], m["qrs_onset_ms"], m["t_offset_ms"]) == (286, 434, 854)
    assert (m["pr_ms"], m["qrs_duration_ms"], m["qt_ms"], m["p_duration_ms"]) == (148, 120, 420, 102)
    assert (m["rr_ms"], m["pp_ms"], m["ventricular_rate_bpm"], m["atrial_rate_bpm"]) == (857, 860, 70, 70)
    assert m["qtc_ms"] == 443 and m["qtc_formula"] == "Bazett" and m["qrs_count"] == 7
    b1 = rec.meta["measurement_blocks"][1]
    assert np.isnan(b1["p_onset_ms"]) and np.isnan(b1["p_offset_ms"]) and np.isnan(b1["p_axis_deg"])
    assert np.isnan(b1["t_axis_deg"]) and (b1["qrs_onset_ms"], b1["qrs_axis_deg"]) == (420, 120)
    assert rec.meta["pacemaker_spikes"] == [
        {"time_ms": 1204, "amplitude_uv": 850, "type": "triggers QRS", "source": "internal",
         "qrs_index": 3, "width_us": 500},
        {"time_ms": 2406, "amplitude_uv": -700, "type": "triggers neither P nor QRS",
         "source": "external", "qrs_index": 6, "width_us": 1000}]
    assert rec.meta["qrs_types"] == [0, 0, 1, 0, 0, 1, 0]
    assert rec.meta["scp"]["section7_tagged"] == {7: "010203"}
    np.testing.assert_array_equal(np.round(rec.signal.astype(np.float64) / 5e-3), sig)


def test_section7_old_writers_stop_after_any_part(rng):
    blocks = [(286, 388, 434, 554, 854, 44, -61, 86)]
    spikes = [(100, 500, 2, 1, 0, 400)]
    # header + blocks only; + spike times without the info part; + QRS types only
    for body, spk in ((s7_body(blocks), None),
                      (s7_body(blocks, spikes=spikes, spike_info=False), {"time_ms": 100, "amplitude_uv": 500}),
                      (s7_body(blocks, qrs_types=[0, 0]), None)):
        res = scp._section7(_ctx_for(body, 7))
        assert res["measurements"]["qrs_duration_ms"] == 120
        assert "qtc_ms" not in res["measurements"]
        if spk:
            assert res["pacemaker_spikes"] == [spk]


def test_section7_truncation_raises_naming_the_section(tmp_path, rng):
    body = s7_body([(286, 388, 434, 554, 854, 44, -61, 86)] * 3,
                   spikes=[(100, 500, 2, 1, 0, 400)] * 4, qrs_types=[0] * 9,
                   rates=(70, 70, 443), formula=1, tags={1: b"abcd"})
    whole = scp._section7(_ctx_for(body, 7))
    errors = 0
    for cut in range(len(body)):
        try:
            part = scp._section7(_ctx_for(body[:cut], 7))
        except ReadError as exc:
            assert "SCP section 7" in str(exc)
            errors += 1
        else:        # cut at a part boundary: what is there agrees with the whole
            for k, v in part["measurements"].items():
                assert whole["measurements"][k] == v
    assert errors > len(body) // 2
    # a count that runs past the end: the record is read, the problem reported
    bad = bytearray(body)
    bad[0] = 200                                     # 200 measurement blocks
    sig = ecg_like(rng, 1, 600)
    p = write(tmp_path, build_scp(sig, [1], extra={7: bytes(bad)}))
    rec = scp.read(p)
    assert "section 7" in rec.meta["scp"]["section_errors"][7]
    assert "measurements" not in rec.meta and rec.n_samples == 600
    with pytest.raises(ReadError, match="SCP section 7: 200 measurement blocks"):
        scp.read(p, strict_measurements=True)


def test_section10_per_lead_measurements(tmp_path, rng):
    fields = scp.LEAD_MEASUREMENT_FIELDS
    assert len(fields) == 31
    v_i = _lead_values(rng)
    v_avr = _lead_values(rng)
    v_avr[fields.index("p_duration_ms")] = NC
    v_avr[fields.index("st_j80_uv")] = NC
    short = _lead_values(rng)[:12]                       # a writer that stops after 12 fields
    extra_vals = np.r_[v_i, [1234, -5]]                  # two manufacturer-specific values
    body = s10_body([(1, extra_vals), (62, v_avr), (5, short)])
    sig = ecg_like(rng, 3, 800)
    rec = scp.read(write(tmp_path, build_scp(sig, [1, 62, 5], extra={10: body})))
    lm = rec.meta["lead_measurements"]
    assert list(lm) == ["I", "aVR", "V3"]
    for name, vals in (("I", v_i), ("aVR", v_avr)):
        got = np.array([lm[name][f] for f in fields])
        want = np.where(vals == NC, np.nan, vals).astype(float)
        np.testing.assert_array_equal(got, want)
    assert np.isnan(lm["aVR"]["p_duration_ms"]) and np.isnan(lm["aVR"]["st_j80_uv"])
    assert lm["I"]["manufacturer_specific"] == [1234, -5]
    assert len(lm["V3"]) == 12 and lm["V3"]["q_amplitude_uv"] == short[9]
    # truncated inside the second lead
    cut = s10_body([(1, v_i), (62, v_avr)])[:-7]
    with pytest.raises(ReadError, match="SCP section 10: .*lead 2"):
        scp._section10(_ctx_for(cut, 10))
    rec = scp.read(write(tmp_path, build_scp(sig, [1, 62, 5], extra={10: cut}), "c.scp"))
    assert 10 in rec.meta["scp"]["section_errors"] and "lead_measurements" not in rec.meta


def test_v30_file_with_new_sections_and_section1_tags(tmp_path, rng):
    sig = ecg_like(rng, 4, 1500)
    # v3.0: tag 34 (time zone), 35 (free-text history), an unknown tag with a
    # long value; sections 12 (long-term rhythm) and 18, and a manufacturer one.
    tags = [(34, struct.pack("<hHB", 60, 0, 0) + b"CET\0"), (35, b"none\0"), (200, bytes(300))]
    extra = {7: s7_body([(286, 388, 434, 554, 854, 44, -61, 86)], qrs_types=[],
                        rates=(61, 61, 400), formula=2, tags={}),
             12: bytes(40), 18: b"\x01\x02" * 9, 130: b"vendor"}
    blob = build_scp(sig, [1, 2, 3, 4], version=30, extra=extra, s1_tags=tags,
                     huffman="custom", diff=1)
    rec = scp.read(write(tmp_path, blob))
    np.testing.assert_array_equal(np.round(rec.signal.astype(np.float64) / 5e-3), sig)
    sc = rec.meta["scp"]
    assert sc["protocol_version"] == 3.0 and "crc_errors" not in sc
    assert [(d["id"], d["length"], d["version"]) for d in sc["undecoded_sections"]] == [
        (12, 56, 3.0), (18, 34, 3.0), (130, 22, 3.0)]
    assert rec.meta["patient"]["id"] == "PID-42" and rec.meta["measurements"]["qtc_formula"] == "Hodges"
    assert rec.meta["device"]["acquiring"]["manufacturer"] == "ACME"


def test_example_measurements_match_the_hl7_original(example, shared_data):
    """ECGToolkit converted the HL7 2003 ballot aECG to this SCP file: its
    section 7 must give the HL7 file's interval and axis annotations."""
    rec = scp.read(example)
    m = rec.meta["measurements"]
    assert set(rec.meta["scp"]["sections"]) == {0, 1, 2, 3, 4, 5, 6, 7}   # no section 10
    assert "lead_measurements" not in rec.meta and "pacemaker_spikes" not in rec.meta
    hl7_path = shared_data / "hl7_aecg" / "hl7_2003_ballot_Example_aECG.xml"
    if not hl7_path.exists():
        pytest.skip(f"{hl7_path} is absent from the reference shelf")
    import ecgcore
    hl7 = ecgcore.read(hl7_path).meta["measurements"]
    pairs = {"MDC_ECG_TIME_PD_P": m["p_duration_ms"], "MDC_ECG_TIME_PD_PR": m["pr_ms"],
             "MDC_ECG_TIME_PD_QRS": m["qrs_duration_ms"], "MDC_ECG_TIME_PD_QT": m["qt_ms"],
             "MDC_ECG_TIME_PD_QTc": m["qtc_ms"], "MDC_ECG_ANGLE_P_FRONT": m["p_axis_deg"],
             "MDC_ECG_ANGLE_QRS_FRONT": m["qrs_axis_deg"], "MDC_ECG_ANGLE_T_FRONT": m["t_axis_deg"]}
    for code, ours in pairs.items():
        assert hl7[code]["value"] == ours, code
    # the representative-beat wave onsets of the HL7 file are block 0's onsets
    ann = ecgcore.read(hl7_path).annotations["aecg"]
    rep = {v: o for s_, c, v, o in zip(ann["series"], ann["code"], ann["value"], ann["onset_s"])
           if s_ == "REPRESENTATIVE_BEAT" and c == "MDC_ECG_WAVC"}
    assert round(rep["MDC_ECG_WAVC_PWAVE"] * 1000) == m["p_onset_ms"] == 286
    assert round(rep["MDC_ECG_WAVC_QRSWAVE"] * 1000) == m["qrs_onset_ms"] == 434
    # 13 blocks (one per annotated beat set of the HL7 file), all with the same axes
    blocks = rec.meta["measurement_blocks"]
    assert len(blocks) == 13 and all(b["qrs_axis_deg"] == -61 for b in blocks)
    assert all(np.isnan(b["p_onset_ms"]) for b in blocks[1:])


def test_fuzz_measurement_sections(tmp_path, rng):
    """Mutations confined to sections 7 and 10: a Record (errors reported in
    meta) or ReadError with strict_measurements, never another exception."""
    sig = ecg_like(rng, 2, 400)
    b7 = s7_body([(286, 388, 434, 554, 854, 44, -61, 86)] * 2, spikes=[(100, 500, 2, 1, 0, 400)],
                 qrs_types=[0, 1], rates=(70, 70, 443), formula=1, tags={1: b"ab"})
    b10 = s10_body([(1, _lead_values(rng)), (2, _lead_values(rng))])
    frng = np.random.default_rng(10)
    p = tmp_path / "m.scp"
    seen = set()
    for k in range(200):
        m7, m10 = bytearray(b7), bytearray(b10)
        tgt = m7 if k % 2 else m10
        for pos in frng.integers(0, len(tgt), frng.integers(1, 6)):
            tgt[pos] = frng.integers(0, 256)
        if k % 5 == 0:
            del tgt[frng.integers(0, len(tgt)):]
        p.write_bytes(build_scp(sig, [1, 2], extra={7: bytes(m7), 10: bytes(m10)}))
        rec = scp.read(p)
        assert rec.n_samples == 400
        seen.add(bool(rec.meta["scp"].get("section_errors")))
        try:
            scp.read(p, strict_measurements=True)
        except ReadError as exc:
            assert "SCP section 7" in str(exc) or "SCP section 10" in str(exc)
    assert seen == {True, False}

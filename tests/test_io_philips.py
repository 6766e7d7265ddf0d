"""Philips Sierra/PageWriter XML reader and the XLI decoder."""

from __future__ import annotations

import base64
import re
import time

import numpy as np
import pytest

import ecgcore
from ecgcore.errors import ReadError
from ecgcore.io import philips
from ecgcore.io._xli import decode_xli
from ecgcore.record import STANDARD_12

F103 = ("philips", "129DYPRG.XML")
F104 = ("philips", "3191723_ZZDEMOPTONLY_1-04_orig.xml")


def _need(root, *parts):
    p = root.joinpath(*parts)
    if not p.exists():
        pytest.skip(f"reference file {p} is absent")
    return p


# -- an independent XLI encoder (test-only), for round trips --------------------

def _lzw_encode(data: bytes, end_code: bool) -> bytes:
    table = {bytes([i]): i for i in range(256)}
    nxt = 256
    codes = []
    w = b""
    for b in data:
        wc = w + bytes([b])
        if wc in table:
            w = wc
            continue
        codes.append(table[w])
        if nxt <= 1022:
            table[wc] = nxt
            nxt += 1
        w = bytes([b])
    if w:
        codes.append(table[w])
    if end_code:
        codes.append(1023)
    bits = "".join(format(c, "010b") for c in codes)
    bits += "0" * (-len(bits) % 8)
    return int(bits, 2).to_bytes(len(bits) // 8, "big") if bits else b""


def _xli_encode(leads, end_code=True) -> bytes:
    out = b""
    for x in leads:
        x = np.asarray(x, np.int64)
        n = len(x)
        d = np.zeros(n, np.int64)
        d[:2] = x[:2]
        seed = 2 * x[1] - x[0] - x[2]
        # x[k+1] = 2x[k] - x[k-1] - (d[k] - 64)  for k >= 2
        d[2:n - 1] = 2 * x[2:n - 1] - x[1:n - 2] - x[3:n] + 64
        d16 = d.astype(np.int16).view(np.uint16)
        planar = bytes((d16 >> 8).astype(np.uint8)) + bytes((d16 & 0xFF).astype(np.uint8))
        payload = _lzw_encode(planar, end_code)
        out += len(payload).to_bytes(4, "little") + b"\0\0" + int(seed).to_bytes(2, "little", signed=True)
        out += payload
    return out


@pytest.mark.parametrize("end_code", [True, False])
def test_xli_round_trip(rng, end_code):
    # random walks: repetitive high bytes exercise KwKwK and the frozen dictionary
    leads = np.cumsum(rng.integers(-3, 4, size=(3, 5500)), axis=1) + rng.integers(-500, 500, (3, 1))
    got = decode_xli(_xli_encode(leads, end_code))
    assert len(got) == 3
    for a, b in zip(got, leads):
        np.testing.assert_array_equal(a, b)


def test_xli_corrupt_streams_raise(rng):
    good = _xli_encode(np.cumsum(rng.integers(-3, 4, size=(2, 800)), axis=1))
    with pytest.raises(ValueError, match="remain"):
        decode_xli(good[:-5])                                   # payload past the end
    with pytest.raises(ValueError, match="truncated"):
        decode_xli(good + b"\x01\x02\x03")                      # dangling header
    bad = bytearray(good)
    bad[0:4] = (0xFFFFFFF0).to_bytes(4, "little")
    with pytest.raises(ValueError, match="remain"):
        decode_xli(bytes(bad))
    # first code past the dictionary (1000 while only 256 entries exist)
    payload = int("1111101000" + "000000", 2).to_bytes(2, "big")
    with pytest.raises(ValueError, match="dictionary"):
        decode_xli(len(payload).to_bytes(4, "little") + b"\0\0\0\0" + payload)
    with pytest.raises(ValueError):
        decode_xli(b"")


def test_limb_reconstruction_floor_division(rng):
    i1, i2, i3 = rng.integers(-999, 999, size=(3, 400))
    avr, avl, avf = rng.integers(-999, 999, size=(3, 400))
    stored = np.stack([i1, i2, i2 - i1 - i3, -avr - (i1 + i2) // 2, (i1 - i3) // 2 - avl,
                       (i2 + i3) // 2 - avf])
    got = philips.reconstruct_limb_leads(stored, ["I", "II", "III", "aVR", "aVL", "aVF"])
    np.testing.assert_array_equal(got, np.stack([i1, i2, i3, avr, avl, avf]))


# -- real files -------------------------------------------------------------------

@pytest.mark.parametrize("parts, version", [(F103, "1.03"), (F104, "1.04")])
def test_real_files(shared_data, parts, version):
    rec = ecgcore.read(_need(shared_data, *parts))
    assert rec.meta["format"] == "philips" and rec.meta["document_version"] == version
    assert rec.leads == STANDARD_12 and rec.fs == 500.0
    assert rec.signal.shape == (12, 5000)            # 11-s payload trimmed to 10 s
    assert rec.meta["calibration_trimmed"] is True
    ptp = np.ptp(rec.signal, axis=1)
    assert np.all((ptp > 0.3) & (ptp < 6.0))
    # the file's own calibration: 1 mV pulse of 200 counts x 5 uV
    assert rec.meta["calibration_pulse_mv"] == pytest.approx(1.0, abs=1e-6)
    assert not rec.quality.flags.get("scale_suspect")
    np.testing.assert_allclose(rec.signal / 0.005, np.round(rec.signal / 0.005), atol=1e-3)


@pytest.mark.parametrize("parts", [F103, F104])
def test_calibration_pulse_kept_reads_1mv(shared_data, parts):
    rec = ecgcore.read(_need(shared_data, *parts), keep_calibration=True)
    assert rec.n_samples == 5500 and rec.meta["calibration_trimmed"] is False
    step = rec.signal[:, 5360:5440].mean(axis=1) - rec.signal[:, 5460:5490].mean(axis=1)
    np.testing.assert_allclose(step, 1.0, atol=1e-5)


@pytest.mark.parametrize("parts", [F103, F104])
def test_matches_sierraecg(shared_data, parts):
    sierraecg = pytest.importorskip("sierraecg")
    path = _need(shared_data, *parts)
    ref = sierraecg.read_file(str(path))         # int16 counts, 11 s with the pulse
    rec = ecgcore.read(path, keep_calibration=True)
    for lead in ref.leads:
        np.testing.assert_allclose(rec[lead.label], np.asarray(lead.samples) * 0.005, atol=1e-6)


def test_104_repbeats(shared_data):
    rec = ecgcore.read(_need(shared_data, *F104))
    med = rec.median
    assert med is not None and med.fs == 500.0 and med.leads == STANDARD_12
    assert med.n_samples == 600 and med.meta["resolution_uv"] == 2.5
    assert not np.isnan(med.signal).any()
    # the median beat's amplitude matches the rhythm's (same heart, 2.5 vs 5 uV)
    ratio = np.ptp(med.signal, axis=1) / np.ptp(rec.signal, axis=1)
    assert np.all((ratio > 0.6) & (ratio < 1.2))
    assert med.meta["repbeat_measurements_ms"]["I"]["qrsdur"] == 72.0
    assert rec.meta["patient"]["last_name"] == "ZZDEMOPTONLY"
    assert rec.meta["measurements"]["heartrate"] == 84.0


def test_limb_identity_residuals_small(shared_data):
    rec = ecgcore.read(_need(shared_data, *F103))
    # stored-then-rebuilt limb leads agree with the Einthoven/Goldberger values
    # to within a few LSB (5 uV each); residuals are reported, not assumed zero
    res = rec.limb_residuals()
    assert set(res) == {"III", "aVR", "aVL", "aVF"}
    assert max(res.values()) < 0.05


# -- synthetic variants of a real file ---------------------------------------------

def _with_payload(text: str, attrs: str, payload: str) -> str:
    return re.sub(r"<parsedwaveforms[^>]*>[^<]*</parsedwaveforms>",
                  f"<parsedwaveforms {attrs}>{payload}</parsedwaveforms>", text)


def test_uncompressed_variant(shared_data, tmp_path, rng):
    text = _need(shared_data, *F103).read_text("utf-8")
    x = rng.integers(-300, 300, size=(12, 5000)).astype("<i2")
    doc = _with_payload(text, 'compressflag="False" dataencoding="Base64"',
                        base64.b64encode(x.tobytes()).decode())
    p = tmp_path / "u.xml"
    p.write_text(doc, "utf-8")
    rec = ecgcore.read(p)
    assert rec.meta["compression"] == "none"
    np.testing.assert_allclose(rec.signal, x * 0.005, atol=1e-6)


def test_xli_variant_with_other_rate_and_resolution(shared_data, tmp_path, rng):
    text = _need(shared_data, *F103).read_text("utf-8")
    x = np.cumsum(rng.integers(-4, 5, size=(12, 2500)), axis=1)
    labels = "I II III aVR aVL aVF V1 V2 V3 V4 V5 V6"
    attrs = (f'compression="XLI" leadlabels="{labels}" samplespersecond="250" resolution="2.5" '
             'dataencoding="Base64"')
    doc = _with_payload(text, attrs, base64.b64encode(_xli_encode(x)).decode())
    p = tmp_path / "x.xml"
    p.write_text(doc, "utf-8")
    rec = ecgcore.read(p)
    assert rec.fs == 250.0 and rec.n_samples == 2500
    exp = philips.reconstruct_limb_leads(x, labels.split()) * 0.0025
    np.testing.assert_allclose(rec.signal, exp, atol=1e-6)


@pytest.mark.parametrize("attrs, payload, why", [
    ('compressflag="True" compressmethod="XLI"', "@@@not base64@@@", "base64"),
    ('compressflag="True" compressmethod="XLI"', base64.b64encode(b"\xff" * 40).decode(), "XLI"),
    ('compressflag="True" compressmethod="ZIP"', "AAAA", "compression"),
    ('compressflag="False"', base64.b64encode(b"\x01" * 25).decode(), "int16"),
])
def test_bad_payloads(shared_data, tmp_path, attrs, payload, why):
    text = _need(shared_data, *F103).read_text("utf-8")
    p = tmp_path / "b.xml"
    p.write_text(_with_payload(text, attrs, payload), "utf-8")
    with pytest.raises(ReadError, match=why):
        ecgcore.read(p)


def test_hostile_entities_utf16(tmp_path):
    doc = ('<?xml version="1.0" encoding="utf-16"?><!DOCTYPE r [<!ENTITY a "aaaaaaaa">]>'
           '<restingecgdata xmlns="http://www3.medical.philips.com">&a;</restingecgdata>')
    p = tmp_path / "h.xml"
    p.write_bytes(b"\xff\xfe" + doc.encode("utf-16-le"))
    with pytest.raises(ReadError, match="entities"):
        ecgcore.read(p)


def test_fuzz_xli_payload_and_xml(shared_data, tmp_path, rng):
    """Seeded mutations of the XLI bytes and of the XML: ReadError or a Record only."""
    raw = _need(shared_data, *F103).read_bytes()
    text = raw.decode("utf-8")
    b64 = re.search(r"<parsedwaveforms[^>]*>([^<]*)<", text).group(1)
    xli = bytearray(base64.b64decode(b64))
    t0 = time.perf_counter()
    n_err = 0
    for i in range(200):
        buf = bytearray(xli)
        kind = i % 3
        if kind == 0:
            for pos in rng.integers(0, len(buf), size=int(rng.integers(1, 30))):
                buf[pos] = int(rng.integers(0, 256))
        elif kind == 1:
            buf = buf[:int(rng.integers(0, len(buf)))]
        else:
            start = int(rng.integers(0, 64)) * 8 % max(len(buf) - 8, 1)
            buf[start:start + 4] = int(rng.integers(0, 2**32)).to_bytes(4, "little")
        try:
            leads = decode_xli(bytes(buf)) if buf else []
            assert all(len(x) <= (1 << 23) for x in leads)
        except ValueError:
            n_err += 1
    assert n_err > 0
    for i in range(60):
        buf = bytearray(raw)
        if i % 2:
            for pos in rng.integers(0, len(buf), size=int(rng.integers(1, 40))):
                buf[pos] = int(rng.integers(0, 256))
        else:
            buf = buf[:int(rng.integers(0, len(buf)))]
        p = tmp_path / f"f{i}.xml"
        p.write_bytes(bytes(buf))
        try:
            rec = ecgcore.read(p, format="philips")
            assert rec.signal.shape[0] == 12
        except ReadError:
            n_err += 1
    assert time.perf_counter() - t0 < 20

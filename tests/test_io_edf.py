"""EDF/EDF+/BDF reader: the Contec file against pyedflib, files written by
pyedflib (EDF+, BDF+ with annotations) and by a small writer in this module
(units, mixed rates, non-ECG channels), and hostile input."""

from __future__ import annotations

import time

import numpy as np
import pytest

from ecgcore.errors import ReadError
from ecgcore.io import edf

pyedflib = pytest.importorskip("pyedflib")


@pytest.fixture
def contec(shared_data):
    p = shared_data / "edf" / "contec_0000050.ECG.edf"
    if not p.exists():
        pytest.skip(f"{p} is absent from the reference shelf")
    return p


def write_edf(path, signals, *, labels, units, spr, duration=1.0, pmin=None, pmax=None,
              dmin=-32768, dmax=32767, n_records=None, reserved="", bdf=False):
    """Minimal EDF/BDF writer: ``signals`` are digital int arrays, one per channel."""
    ns = len(signals)
    nrec = len(signals[0]) // spr[0]
    pmin = pmin or [-3276.8] * ns
    pmax = pmax or [3276.7] * ns

    def f(v, w):
        s = str(v)[:w]
        return s.ljust(w).encode("latin-1")

    head = (b"\xffBIOSEMI" if bdf else f("0", 8)) + f("X X X X", 80) + f("Startdate X X X X", 80)
    head += f("01.01.21", 8) + f("10.00.00", 8) + f(256 * (ns + 1), 8) + f(reserved, 44)
    head += f(nrec if n_records is None else n_records, 8) + f(duration, 8) + f(ns, 4)
    for w, vals in ((16, labels), (80, [""] * ns), (8, units), (8, pmin), (8, pmax),
                    (8, [dmin] * ns), (8, [dmax] * ns), (80, [""] * ns), (8, spr), (32, [""] * ns)):
        head += b"".join(f(v, w) for v in vals)
    recs = []
    for r in range(nrec):
        for s, n in zip(signals, spr):
            blk = np.asarray(s[r * n:(r + 1) * n], np.int64)
            if bdf:
                u = (blk & 0xFFFFFF).astype("<u4").view(np.uint8).reshape(-1, 4)[:, :3]
                recs.append(u.tobytes())
            else:
                recs.append(blk.astype("<i2").tobytes())
    path.write_bytes(head + b"".join(recs))
    return path


def test_contec_matches_pyedflib_and_is_flagged(contec):
    rec = edf.read(contec)
    with pyedflib.EdfReader(str(contec)) as f:
        ref = np.array([f.readSignal(i) for i in range(f.signals_in_file)])
        labels = f.getSignalLabels()
        fs = f.getSampleFrequencies()
    assert rec.leads == tuple(labels) and rec.fs == fs[0] == 800
    assert rec.n_samples == 37855
    np.testing.assert_allclose(rec.signal, ref, rtol=1e-6, atol=1e-5)   # declared values kept
    # the declared ±1000 mV over ±32767 scaling reads ~6x too large (facts §13):
    assert 7 < rec.quality.amplitude_mv[rec.index("I")] < 12
    assert rec.meta["quality_flags"]["scale_suspect"] and rec.quality.flags["scale_suspect"]
    assert not rec.quality.ok
    assert rec.meta["edf"]["record_duration_s"] == 0.00125
    assert abs(rec.meta["edf"]["uv_per_count"][0] - 2000e3 / 65535) < 1e-6
    assert rec.meta["patient"]["raw"] == "dd-MMM-yyyy"
    # chest electrodes were off: flat leads
    assert rec.quality.flat[rec.index("V1"):].all()


def test_contec_through_ecgcore_read(contec):
    import ecgcore.io as io
    rec = io.read(contec)
    assert rec.meta["format"] == "edf" and rec.conform().n_leads == 12


@pytest.mark.parametrize("bdf", [False, True])
def test_pyedflib_written_plus_files_with_annotations(tmp_path, rng, bdf):
    fs, n = 500, 5000
    t = np.arange(n) / fs
    phys = np.stack([np.sin(2 * np.pi * 1.2 * t) * 1.1 + rng.normal(0, 0.02, n),
                     np.sin(2 * np.pi * 1.2 * t + 0.4) * 0.8 + rng.normal(0, 0.02, n),
                     rng.normal(95, 1, n)])                     # SpO2, not ECG
    p = tmp_path / ("x.bdf" if bdf else "x.edf")
    ftype = pyedflib.FILETYPE_BDFPLUS if bdf else pyedflib.FILETYPE_EDFPLUS
    w = pyedflib.EdfWriter(str(p), 3, file_type=ftype)
    dmax = 8388607 if bdf else 32767
    heads = []
    for label, unit, lo, hi in (("ECG I", "mV", -5, 5), ("EKG II", "uV", -5000, 5000),
                                ("SpO2", "%", 0, 100)):
        heads.append({"label": label, "dimension": unit, "sample_frequency": fs,
                      "physical_min": lo, "physical_max": hi, "digital_min": -dmax - 1,
                      "digital_max": dmax})
    w.setSignalHeaders(heads)
    w.writeSamples([phys[0], phys[1] * 1000, phys[2]])
    w.writeAnnotation(1.5, 0.0, "R-peak")
    w.writeAnnotation(4.25, 2.0, "artifact")
    w.close()
    rec = edf.read(p)
    assert rec.leads == ("I", "II") and rec.fs == fs
    assert rec.meta["format"] == ("bdf" if bdf else "edf")
    assert rec.meta["edf"]["variant"] == ("BDF" if bdf else "EDF+")
    tol = 10 / (2 * dmax) * 1.01           # one count
    np.testing.assert_allclose(rec.signal, phys[:2], atol=tol)
    with pyedflib.EdfReader(str(p)) as f:
        ref = np.array([f.readSignal(i) for i in range(2)])
    np.testing.assert_allclose(rec.signal, [ref[0], ref[1] / 1000], rtol=1e-5, atol=1e-6)
    ann = rec.annotations["edf"]
    assert ann["text"] == ["R-peak", "artifact"]
    np.testing.assert_allclose(ann["onset_s"], [1.5, 4.25])
    np.testing.assert_allclose(ann["duration_s"], [0.0, 2.0])
    assert ann["sample"].tolist() == [750, 2125]
    assert "SpO2" in rec.meta["edf"]["skipped"]
    assert rec.quality.ok


def test_units_mixed_rates_and_other_channels(tmp_path, rng):
    n = 2000
    d1 = rng.integers(-2000, 2000, n)
    d2 = rng.integers(-2000, 2000, n)
    d3 = rng.integers(-2000, 2000, n // 2)      # V1 at half rate
    d4 = rng.integers(-100, 100, n // 4)        # Resp
    p = write_edf(tmp_path / "m.edf", [d1, d2, d3, d4], labels=["I", "Lead II", "V1", "Resp"],
                  units=["uV", "V", "mV", "Ohm"], spr=[200, 200, 100, 50],
                  pmin=[-32768, -3.2768, -32.768, -1], pmax=[32767, 3.2767, 32.767, 1])
    rec = edf.read(p)
    assert rec.leads == ("I", "II") and rec.fs == 200
    np.testing.assert_allclose(rec.signal[0], d1 * 1e-3, atol=1e-6)     # 1 µV/count
    np.testing.assert_allclose(rec.signal[1], d2 * 0.1, rtol=1e-6, atol=1e-6)  # 100 µV/count in V
    sk = rec.meta["edf"]["skipped"]
    assert "differs" in sk["V1"]["reason"] and sk["V1"]["fs"] == 100
    assert sk["Resp"]["reason"] == "not an ECG channel"


def test_ecg_label_detection():
    yes = {"ECG I": "I", "EKG II": "II", "Lead V1": "V1", "ECG aVR": "aVR", "V6": "V6",
           "MLII": "II", "ECG-III": "III", "ECG": "ECG", "ECG1": "ECG1", "EKG 2": "EKG 2"}
    for lab, want in yes.items():
        assert edf.ecg_label(lab) == want, lab
    for lab in ("EDF Annotations", "SpO2", "Resp", "Pleth", "Temp", "EEG Fpz-Cz", "Pulse", ""):
        assert edf.ecg_label(lab) is None, lab


def test_truncated_file(tmp_path, rng):
    d = rng.integers(-500, 500, 1000)
    p = write_edf(tmp_path / "t.edf", [d, d], labels=["I", "II"], units=["uV", "uV"],
                  spr=[100, 100])
    blob = p.read_bytes()
    p.write_bytes(blob[:-50])
    with pytest.raises(ReadError, match="truncated"):
        edf.read(p)
    rec = edf.read(p, allow_truncated=True)
    assert rec.n_samples == 900 and rec.meta["quality_flags"]["truncated"]
    for cut in (0, 10, 255, 256, 600, 768):
        p.write_bytes(blob[:cut])
        with pytest.raises(ReadError):
            edf.read(p)


def test_bad_headers(tmp_path, rng):
    d = rng.integers(-500, 500, 400)
    base = write_edf(tmp_path / "b.edf", [d], labels=["I"], units=["uV"], spr=[100]).read_bytes()

    def patched(off, text):
        b = bytearray(base)
        b[off:off + len(text)] = text
        p = tmp_path / "bad.edf"
        p.write_bytes(bytes(b))
        return p

    for off, text in ((252, b"abcd"), (244, b"0       "), (244, b"-1      "),
                      (184, b"999     "), (256 + 16 + 80 + 8 + 8 + 8 + 8, b"-32768  "),
                      (256 + 16 + 80 + 8 * 5 + 80, b"-5      "), (256, b"SpO2            ")):
        with pytest.raises(ReadError):
            edf.read(patched(off, text))


def test_fuzz_contec_mutations(contec, tmp_path):
    base = contec.read_bytes()[:256 * 13 + 12 * 2 * 4000]   # header + 4000 records
    rng = np.random.default_rng(9)
    p = tmp_path / "f.edf"
    t0 = time.perf_counter()
    seen = {"ok": 0, "error": 0}
    for k in range(300):
        blob = bytearray(base)
        if k % 3 == 0:
            for pos in rng.integers(0, 256 * 13, rng.integers(1, 8)):
                blob[pos] = rng.integers(0, 256)
        elif k % 3 == 1:
            for pos in rng.integers(0, 256 * 13, rng.integers(1, 4)):
                blob[pos] = rng.choice(list(b"0123456789 -.+eE"))
        else:
            blob = blob[: rng.integers(0, len(blob))]
        p.write_bytes(bytes(blob))
        try:
            rec = edf.read(p, allow_truncated=bool(k % 2))
        except ReadError:
            seen["error"] += 1
        else:
            seen["ok"] += 1
            assert rec.signal.dtype == np.float32
    assert seen["ok"] > 0 and seen["error"] > 0
    assert time.perf_counter() - t0 < 60


@pytest.mark.parametrize("bdf", [False, True])
def test_non_adjacent_ecg_blocks_and_extreme_counts(tmp_path, rng, bdf):
    """ECG channels separated by a non-ECG one (the gather path, not the
    adjacent-block view), digital extremes included, against pyedflib."""
    lim = (1 << 23) if bdf else (1 << 15)
    n, spr = 1500, 250
    d1 = rng.integers(-lim, lim, n)
    d1[:4] = [-lim, lim - 1, -1, 0]                    # int24/int16 sign extension edges
    d2 = rng.integers(-lim, lim, n)
    d3 = rng.integers(-lim, lim, n)
    p = write_edf(tmp_path / ("g.bdf" if bdf else "g.edf"), [d1, d3, d2],
                  labels=["ECG I", "Resp", "ECG V2"], units=["uV", "Ohm", "mV"], spr=[spr] * 3,
                  pmin=[-8000, -1, -20], pmax=[8000, 1, 20], dmin=-lim, dmax=lim - 1, bdf=bdf)
    rec = edf.read(p)
    assert rec.leads == ("I", "V2") and rec.fs == spr
    with pyedflib.EdfReader(str(p)) as f:
        ref = np.array([f.readSignal(0), f.readSignal(2)])
        dig = np.array([f.readSignal(0, digital=True), f.readSignal(2, digital=True)])
    np.testing.assert_array_equal(dig, [d1, d2])       # the writer is right
    np.testing.assert_allclose(rec.signal, [ref[0] * 1e-3, ref[1]], rtol=1e-6, atol=1e-6)
    rec2 = edf.read(p, include_other=True)
    assert rec2.leads[:2] == ("I", "V2") and rec2.n_leads == 3
    np.testing.assert_allclose(rec2.signal[2], d3 / (lim - 0.5) * 1.0, atol=2.0 / (2 * lim))

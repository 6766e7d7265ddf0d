"""MIT annotation reader/writer and LUDB waves: parity with wfdb.rdann / wfdb.wrann."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest

wfdb = pytest.importorskip("wfdb")

from ecgcore.errors import ReadError  # noqa: E402
from ecgcore.io.annotations import (LUDB_EXTENSIONS, read_annotations,  # noqa: E402
                                    read_ludb_annotations, write_annotations)

# --import-mode=importlib makes conftest helpers unimportable: same rule as conftest.shared_path
_SHARED = Path(os.environ.get("ECGCORE_SHARED", Path(__file__).resolve().parent.parent.parent / "shared"))


def shared_path(*parts) -> Path:
    p = _SHARED.joinpath(*parts)
    if not p.exists():
        pytest.skip(f"reference shelf file {p} is absent (tests that need ../shared are skipped)")
    return p


def assert_same_as_rdann(stem, ext):
    ours = read_annotations(stem, ext)
    ref = wfdb.rdann(str(stem), ext)
    np.testing.assert_array_equal(ours.sample, ref.sample)
    assert list(ours.symbol) == list(ref.symbol)
    assert ours.aux_note == list(ref.aux_note)
    np.testing.assert_array_equal(ours.subtype, ref.subtype)
    np.testing.assert_array_equal(ours.chan, ref.chan)
    np.testing.assert_array_equal(ours.num, ref.num)
    assert ours.fs == ref.fs
    return ours


def test_mitdb_100_atr():
    shared_path("data", "wfdb", "100.atr")
    a = assert_same_as_rdann(shared_path("data", "wfdb") / "100", "atr")
    assert len(a) == 2274 and a.aux_note[0].startswith("(N")


@pytest.mark.parametrize("record", ["sel100", "sel14046", "sele0106", "sel30"])
def test_qtdb_annotators(record):
    d = shared_path("data", "qtdb")
    exts = [e for e in ("atr", "man", "pu", "pu0", "pu1", "q1c", "q2c", "qt1", "qt2")
            if (d / f"{record}.{e}").exists()]
    assert len(exts) >= 6
    for e in exts:
        assert_same_as_rdann(d / record, e)


def test_ludb_all_twelve_leads_and_waves():
    d = shared_path("data", "wfdb")
    shared_path("data", "wfdb", "1.i")
    for ext in LUDB_EXTENSIONS:
        assert_same_as_rdann(d / "1", ext)
    waves = read_ludb_annotations(d / "1")
    assert list(waves) == ["I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6"]
    for lead, ext in zip(waves, LUDB_EXTENSIONS):
        ref = wfdb.rdann(str(d / "1"), ext)
        sym, smp = np.array(ref.symbol), ref.sample
        for wave, peak in (("P", "p"), ("QRS", "N"), ("T", "t")):
            w = waves[lead][wave]
            np.testing.assert_array_equal(w["peak"], smp[sym == peak])
            # every wave is bracketed: onset < peak < offset, the marks taken from the file
            assert np.all(w["onset"] < w["peak"]) and np.all(w["peak"] < w["offset"])
            assert set(w["onset"]) <= set(smp[sym == "("]) and set(w["offset"]) <= set(smp[sym == ")"])
        assert len(waves[lead]["QRS"]["peak"]) >= 5  # LUDB marks the middle ~8 s only


def test_ludb_subset_waves_sane():
    d = shared_path("data", "ludb")
    stems = sorted(p[:-4] for p in os.listdir(d) if p.endswith(".hea"))[:10]
    for s in stems:
        waves = read_ludb_annotations(d / s)
        qrs = waves["II"]["QRS"]
        assert len(qrs["peak"]) > 3 and np.all(np.diff(qrs["peak"]) > 0)
        assert np.all((qrs["onset"] == -1) | (qrs["onset"] < qrs["peak"]))


def test_write_roundtrip_through_rdann(tmp_path, rng):
    n = 400
    sample = np.cumsum(rng.integers(1, 3000, n))  # gaps > 1023 need SKIP words
    symbols = np.array(["N", "V", "A", "(", ")", "p", "t", "+", "~", "|"])[rng.integers(0, 10, n)]
    sub = rng.integers(-3, 4, n)
    chan = rng.integers(0, 3, n)
    num = rng.integers(-5, 6, n)
    aux = ["" if rng.random() < 0.7 else ("(AFIB" if rng.random() < 0.5 else "noise x") for _ in range(n)]
    path = write_annotations(tmp_path / "rec", "tst", sample, symbols, subtype=sub, chan=chan,
                             num=num, aux_note=aux, fs=360)
    assert path.endswith("rec.tst") and os.listdir(tmp_path) == ["rec.tst"]
    ref = wfdb.rdann(str(tmp_path / "rec"), "tst")
    np.testing.assert_array_equal(ref.sample, sample)
    assert list(ref.symbol) == list(symbols) and list(ref.aux_note) == aux
    np.testing.assert_array_equal(ref.subtype, sub)
    np.testing.assert_array_equal(ref.chan, chan)
    np.testing.assert_array_equal(ref.num, num)
    assert ref.fs == 360
    assert_same_as_rdann(tmp_path / "rec", "tst")


def test_read_file_written_by_wrann(tmp_path, rng):
    n = 300
    sample = np.sort(rng.choice(200000, n, replace=False))
    sym = list(np.array(["N", "V", "Q", "/", "f", "x", "!", "[", "]", "e"])[rng.integers(0, 10, n)])
    wfdb.wrann("w", "ann", sample, symbol=sym, subtype=rng.integers(0, 3, n), chan=rng.integers(0, 2, n),
               num=rng.integers(0, 4, n), aux_note=[("a%d" % i if i % 7 == 0 else "") for i in range(n)],
               fs=250, write_dir=str(tmp_path))
    a = assert_same_as_rdann(tmp_path / "w", "ann")
    assert a.fs == 250 and len(a) == n


def test_bad_annotation_files(tmp_path):
    with pytest.raises(ReadError, match="no such"):
        read_annotations(tmp_path / "none", "atr")
    (tmp_path / "odd.atr").write_bytes(b"\x01\x04\x02")
    with pytest.raises(ReadError, match="odd"):
        read_annotations(tmp_path / "odd", "atr")
    # an AUX field whose text runs past the end of the file
    (tmp_path / "aux.atr").write_bytes(np.array([(1 << 10) | 5, (63 << 10) | 40, 0x4141],
                                                "<u2").tobytes())
    with pytest.raises(ReadError, match="truncated"):
        read_annotations(tmp_path / "aux", "atr")


def test_fuzz_annotation_bytes(tmp_path, rng):
    src = shared_path("data", "wfdb", "100.atr").read_bytes()[:3000]
    ludb = shared_path("data", "wfdb", "1.ii").read_bytes()
    t0 = time.perf_counter()
    outcomes = set()
    for it in range(1000):
        b = bytearray(src if it % 2 else ludb)
        for i in rng.integers(0, len(b), rng.integers(1, 10)):
            b[i] = int(rng.integers(0, 256))
        if rng.random() < 0.3:
            b = b[: int(rng.integers(0, len(b)))]
        (tmp_path / "f.atr").write_bytes(bytes(b))
        try:
            a = read_annotations(tmp_path / "f", "atr")
            assert len(a.sample) == len(a.symbol) == len(a.aux_note)
            outcomes.add("ok")
        except ReadError:
            outcomes.add("err")
    assert outcomes == {"ok", "err"}
    assert time.perf_counter() - t0 < 60

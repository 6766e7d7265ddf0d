"""WFDB reader/writer: parity with the wfdb package on real and synthetic records."""

from __future__ import annotations

import datetime
import os
import shutil
import time

import numpy as np
import pytest

from pathlib import Path

# the project runs pytest with --import-mode=importlib, so conftest helpers are
# not importable: mirror conftest.shared_path here (same ECGCORE_SHARED rule)
_SHARED = Path(os.environ.get("ECGCORE_SHARED", Path(__file__).resolve().parent.parent.parent / "shared"))


def shared_path(*parts) -> Path:
    """Path inside ../shared, skipping the calling test when it is absent."""
    p = _SHARED.joinpath(*parts)
    if not p.exists() and not p.with_name(p.name + ".hea").exists():
        pytest.skip(f"reference shelf file {p} is absent (tests that need ../shared are skipped)")
    return p


wfdb = pytest.importorskip("wfdb")

from ecgcore.errors import ReadError  # noqa: E402
from ecgcore.io.wfdb import parse_header, read, read_wfdb, write_wfdb  # noqa: E402
from ecgcore.record import Record  # noqa: E402

_TO_MV = {"mV": 1.0, "uV": 1e-3, "V": 1e3}
STANDARD = ["I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6"]


def assert_matches_wfdb(stem):
    """Our physical values equal wfdb.rdrecord's (in mV) within 1e-6 of each lead's range."""
    rec = read(stem)
    ref = wfdb.rdrecord(str(stem))
    factor = np.array([_TO_MV.get(u, 1.0) for u in ref.units])
    want = ref.p_signal.T * factor[:, None]
    assert rec.signal.shape == want.shape
    np.testing.assert_array_equal(np.isnan(rec.signal), np.isnan(want))
    for i in range(want.shape[0]):
        w = want[i]
        ok = ~np.isnan(w)
        if not ok.any():
            continue
        span = max(np.ptp(w[ok]), 1e-12)
        err = np.max(np.abs(rec.signal[i][ok] - w[ok]))
        assert err <= 1e-6 * span + 1e-9, (stem, i, err, span)
    assert rec.fs == pytest.approx(ref.fs)
    return rec, ref


WFDB_RECORDS = ["1", "100", "JS00001", "binformats", "flacformats", "s0010_re"]


@pytest.mark.parametrize("name", WFDB_RECORDS)
def test_shared_wfdb_records_match_rdrecord(name):
    shared_path("data", "wfdb", name + ".hea")
    assert_matches_wfdb(shared_path("data", "wfdb", name))


def test_ptbxl_matches_rdrecord():
    shared_path("data", "ptbxl", "00001_lr.hea")
    rec, _ = assert_matches_wfdb(shared_path("data", "ptbxl", "00001_lr"))
    assert rec.leads == tuple(STANDARD)  # AVR/AVL/AVF normalised
    assert rec.fs == 100 and rec.n_samples == 1000


def _ludb_stems():
    d = shared_path("data", "ludb")
    return sorted(p[:-4] for p in os.listdir(d) if p.endswith(".hea"))


def test_all_ludb_records_match_rdrecord():
    d = shared_path("data", "ludb")
    stems = _ludb_stems()
    assert len(stems) == 40
    for s in stems:
        rec, _ = assert_matches_wfdb(d / s)
        assert rec.leads == tuple(STANDARD)
        assert rec.meta["age"] is not None and rec.meta["sex"] in ("M", "F")


@pytest.mark.parametrize("name", ["sel100", "sel102", "sel14046", "sele0106", "sel30"])
def test_qtdb_format212_matches_rdrecord(name):
    shared_path("data", "qtdb", name + ".hea")
    assert_matches_wfdb(shared_path("data", "qtdb", name))


def test_header_metadata_from_comments():
    js = read(shared_path("data", "wfdb", "JS00001.hea"))
    assert js.meta["age"] == 85 and js.meta["sex"] == "M"
    assert js.meta["dx_codes"] == ["164889003", "59118001", "164934002"]
    assert js.meta["gains"] == [1000.0] * 12 and js.meta["units"] == ["mV"] * 12
    ludb = read(shared_path("data", "wfdb", "1"))
    assert ludb.meta["age"] == 51 and ludb.meta["sex"] == "F"
    assert ludb.meta["baselines"][0] == 6 and ludb.meta["gains"][0] == 1716.0
    mit = read(shared_path("data", "wfdb", "100"))
    assert mit.meta["age"] == 69 and mit.meta["sex"] == "M"
    assert mit.leads == ("II", "V5")  # MLII -> II
    ptb = read(shared_path("data", "wfdb", "s0010_re"))
    assert ptb.meta["age"] == 81 and ptb.meta["sex"] == "F"
    assert ptb.leads[:3] == ("I", "II", "III") and ptb.leads[-3:] == ("vx", "vy", "vz")


def test_read_via_ecgcore_read_and_stem_or_header():
    import ecgcore.io as eio
    stem = shared_path("data", "ptbxl", "00001_lr")
    a = eio.read(str(stem) + ".hea")
    b = read_wfdb(str(stem))
    np.testing.assert_array_equal(a.signal, b.signal)
    assert isinstance(a, Record) and a.meta["format"] == "wfdb"
    assert a.annotations == {}  # annotations are not loaded by default


def test_header_parser_fields():
    h = parse_header("rec/2 3 360/720(3) 0 10:20:30 01/02/2003\na 5\nb 0\n", "x.hea")
    assert h.segments == [("a", 5), ("b", 0)] and h.fs == 360 and h.counter_freq == 720
    h = parse_header("# lead comment\nr 2 250\nr.dat 16x2:3+512 200(-5)/uV 12 7 1 2 0 lead one\n"
                     "r.dat 16\n#Age: 7\n", "x.hea")
    s0, s1 = h.signals
    assert (s0.fmt, s0.spf, s0.skew, s0.offset) == (16, 2, 3, 512)
    assert (s0.gain, s0.baseline, s0.units, s0.adc_zero, s0.name) == (200, -5, "uV", 7, "lead one")
    assert (s1.gain, s1.baseline, s1.units, s1.name) == (200.0, 0, "mV", "sig1")  # defaults
    assert h.sig_len is None and h.comments == ["lead comment", "Age: 7"]


# -- synthetic records written by wfdb --------------------------------------------

def _ecg(rng, n, n_sig):
    t = np.arange(n) / 250.0
    x = np.sin(2 * np.pi * rng.uniform(0.5, 3, (n_sig, 1)) * t) * rng.uniform(0.2, 2, (n_sig, 1))
    return x + rng.normal(0, 0.05, (n_sig, n))


def test_format8_first_differences(tmp_path, rng):
    dig = np.cumsum(rng.integers(-20, 21, (200, 2)), axis=0) + np.array([5, -9])
    diffs = np.diff(np.vstack([[5, -9], dig]), axis=0).astype(np.int8)
    (tmp_path / "d.dat").write_bytes(diffs.tobytes())
    (tmp_path / "d.hea").write_text("d 2 100 200\nd.dat 8 50/mV 8 0 5 0 0 I\nd.dat 8 25(2)/mV 8 0 -9 0 0 II\n")
    rec, _ = assert_matches_wfdb(tmp_path / "d")
    np.testing.assert_allclose(rec.signal[1], (dig[:, 1] - 2) / 25.0, rtol=1e-6)


def _pack(dig, fmt):
    """Pack flat int samples into a WFDB format wfdb.wrsamp cannot write (per the spec)."""
    d = dig.astype(np.int64)
    if fmt == "61":
        return d.astype(">i2").tobytes()
    if fmt == "160":
        return (d + 32768).astype("<u2").tobytes()
    if fmt == "80":
        return (d + 128).astype("u1").tobytes()
    u = (d & 0x3FF).astype(np.uint32)
    u = np.concatenate([u, np.zeros((-len(u)) % 3, np.uint32)]).reshape(-1, 3)
    a, b, c = u[:, 0], u[:, 1], u[:, 2]
    if fmt == "310":
        words = [(a << 1) & 0xFE, ((a >> 7) & 0x07) | ((c & 0x1F) << 3),
                 (b << 1) & 0xFE, ((b >> 7) & 0x07) | (((c >> 5) & 0x1F) << 3)]
    else:  # 311
        words = [a & 0xFF, ((a >> 8) & 0x03) | ((b & 0x3F) << 2),
                 ((b >> 6) & 0x0F) | ((c & 0x0F) << 4), (c >> 4) & 0x3F]
    return np.stack(words, axis=1).astype(np.uint8).tobytes()


@pytest.mark.parametrize("fmt", ["16", "24", "32", "61", "80", "160", "212", "310", "311"])
def test_every_binary_format_with_nans_against_wfdb(tmp_path, rng, fmt):
    n, n_sig = 301, 3  # odd length exercises the packed formats' tails
    sig = _ecg(rng, n, n_sig)
    sig[1, rng.integers(0, n, 7)] = np.nan
    bits = {"80": 8, "310": 10, "311": 10, "212": 12}.get(fmt, 16)
    gain = (2 ** (bits - 1) - 2) / 4.0
    units = ["mV", "uV", "V"]
    gains = [gain, gain / 1e3, gain * 1e3]
    phys = sig.T * np.array([1.0, 1e3, 1e-3])
    if fmt in ("16", "24", "32", "212"):
        wfdb.wrsamp("r", fs=250, units=units, sig_name=["I", "II", "V1"], p_signal=phys,
                    fmt=[fmt] * n_sig, adc_gain=gains, baseline=[3, -2, 0], write_dir=str(tmp_path))
    else:
        invalid = {"80": -128, "310": -512, "311": -512}.get(fmt, -32768)
        dig = np.round(np.nan_to_num(phys) * np.array(gains)) + np.array([3, -2, 0])
        dig[np.isnan(phys)] = invalid
        (tmp_path / "r.dat").write_bytes(_pack(dig.reshape(-1), fmt))
        lines = [f"r {n_sig} 250 {n}"] + [f"r.dat {fmt} {g}({b})/{u} {bits} 0 0 0 0 {nm}" for g, b, u, nm
                                          in zip(gains, [3, -2, 0], units, ["I", "II", "V1"])]
        (tmp_path / "r.hea").write_text("\n".join(lines) + "\n")
    rec, _ = assert_matches_wfdb(tmp_path / "r")
    ok = ~np.isnan(sig)
    assert np.isnan(rec.signal[1]).sum() == np.isnan(sig[1]).sum() > 0
    # units converted to mV: all three rows are in the same physical range
    assert np.max(np.abs(rec.signal[ok] - sig[ok])) <= 0.5 / gain + 1e-6


def _pack212(flat):
    u = (np.asarray(flat, np.int64) & 0xFFF)
    u = np.concatenate([u, np.zeros(len(u) % 2, np.int64)]).reshape(-1, 2)
    out = np.stack([u[:, 0] & 0xFF, ((u[:, 0] >> 8) & 0x0F) | ((u[:, 1] >> 4) & 0xF0), u[:, 1] & 0xFF], 1)
    return out.astype(np.uint8).tobytes()[: (3 * len(flat) + 1) // 2]


def test_multiple_files_mixed_formats_skew_offset_spf(tmp_path, rng):
    n = 400
    a = rng.integers(-2000, 2000, (n, 2))
    a[rng.integers(0, n, 5), 1] = -2048  # invalid samples
    b = rng.integers(-30000, 30000, n)
    c = rng.integers(-500, 500, n)
    (tmp_path / "m.a").write_bytes(_pack212(a.reshape(-1)))
    (tmp_path / "m.b").write_bytes(b"\x00" * 6 + b.astype("<i2").tobytes())
    (tmp_path / "m.c").write_bytes(_pack(c, "311"))
    hdr = (f"m 4 250 {n}\nm.a 212 200 12 0 0 0 0 I\nm.a 212:3 150(5)/mV 12 0 0 0 0 II\n"
           "m.b 16:5+6 1000(-7)/uV 16 0 0 0 0 V1\nm.c 311 100(1)/mV 10 0 0 0 0 V2\n")
    (tmp_path / "m.hea").write_text(hdr)
    rec, _ = assert_matches_wfdb(tmp_path / "m")
    assert np.isnan(rec.signal[2, -5:]).all() and not np.isnan(rec.signal[2, :-5]).any()
    np.testing.assert_allclose(rec.signal[2, :-5], (b[5:] + 7) / 1000.0 * 1e-3, rtol=1e-6)
    np.testing.assert_allclose(rec.signal[3], (c - 1) / 100.0, rtol=1e-6)
    # samples per frame > 1 (averaged like wfdb's smooth_frames)
    sp = _ecg(rng, n, 2)
    (tmp_path / "s.dat").write_bytes(np.round(np.c_[sp[0].reshape(-1, 2) * 300, sp[1][: n // 2, None] * 300]
                                              ).astype("<i2").tobytes())
    (tmp_path / "s.hea").write_text(f"s 2 250 {n // 2}\ns.dat 16x2 300 16 0 0 0 0 I\ns.dat 16 300 16 0 0 0 0 II\n")
    assert_matches_wfdb(tmp_path / "s")


def test_header_without_length_infers_it(tmp_path, rng):
    dig = rng.integers(-2000, 2000, (100, 2)).astype("<i2")
    (tmp_path / "n.dat").write_bytes(dig.tobytes())
    (tmp_path / "n.hea").write_text("n 2 500\nn.dat 16 100/mV 16 0 0 0 0 I\nn.dat 16 0 16 0 0 0 0 II\n")
    rec = read(tmp_path / "n")
    np.testing.assert_allclose(rec.signal[0], dig[:, 0] / 100.0, rtol=1e-6)
    np.testing.assert_allclose(rec.signal[1], dig[:, 1] / 200.0, rtol=1e-6)  # gain 0 -> 200


def test_multisegment_record(tmp_path, rng):
    names = ["I", "II"]
    parts = [_ecg(rng, 120, 2), _ecg(rng, 80, 2)]
    for k, p in enumerate(parts):
        wfdb.wrsamp(f"seg{k}", fs=250, units=["mV"] * 2, sig_name=names, p_signal=p.T, fmt=["16"] * 2,
                    adc_gain=[1000.0, 500.0], baseline=[0, 0], write_dir=str(tmp_path))
    # fixed layout
    (tmp_path / "mf.hea").write_text("mf/2 2 250 200\nseg0 120\nseg1 80\n")
    rec = read(tmp_path / "mf")
    ref = wfdb.rdrecord(str(tmp_path / "mf"))
    np.testing.assert_allclose(rec.signal, ref.p_signal.T, atol=1e-6)
    assert rec.meta["n_segments"] == 2 and rec.n_samples == 200
    # variable layout: a layout header, a null gap, and a segment missing one signal
    wfdb.wrsamp("seg2", fs=250, units=["mV"], sig_name=["II"], p_signal=_ecg(rng, 30, 1).T,
                fmt=["16"], adc_gain=[400.0], baseline=[0], write_dir=str(tmp_path))
    (tmp_path / "lay.hea").write_text("lay 2 250 0\n~ 0 200 16 0 0 0 0 I\n~ 0 200 16 0 0 0 0 II\n")
    (tmp_path / "mv.hea").write_text("mv/5 2 250 280\nlay 0\nseg0 120\n~ 50\nseg1 80\nseg2 30\n")
    rec = read(tmp_path / "mv")
    ref = wfdb.rdrecord(str(tmp_path / "mv"))
    np.testing.assert_array_equal(np.isnan(rec.signal), np.isnan(ref.p_signal.T))
    np.testing.assert_allclose(rec.signal, ref.p_signal.T, atol=1e-6)
    assert np.isnan(rec.signal[:, 120:170]).all() and np.isnan(rec.signal[0, 250:]).all()


# -- writer -----------------------------------------------------------------------

@pytest.mark.parametrize("fmt", [16, 212])
def test_writer_roundtrip_through_wfdb(tmp_path, rng, fmt):
    sig = _ecg(rng, 2500, 12) * rng.uniform(0.5, 3.0, (12, 1))
    sig[3, 10:20] = np.nan
    rec = Record(sig, 500, STANDARD, meta={"age": 63, "sex": "F"})
    hea = write_wfdb(rec, tmp_path / "w", fmt=fmt)
    assert hea.endswith("w.hea")
    assert sorted(os.listdir(tmp_path)) == ["w.dat", "w.hea"]  # no temporary files left
    ours, ref = assert_matches_wfdb(tmp_path / "w")
    assert ref.fmt == [str(fmt)] * 12
    gains = np.array(ours.meta["gains"])
    ok = ~np.isnan(sig)
    err = np.abs(ours.signal - sig.astype(np.float32))
    assert np.all(err[ok] <= (np.broadcast_to(0.5 / gains[:, None], sig.shape)[ok] + 1e-6))
    np.testing.assert_array_equal(np.isnan(ours.signal), ~ok)
    assert ours.meta["age"] == 63 and ours.meta["sex"] == "F" and ours.leads == tuple(STANDARD)
    # no clipping: the largest lead still fits, and wfdb's checksums agree with the data
    dig = wfdb.rdrecord(str(tmp_path / "w"), physical=False).d_signal.astype(np.int64)
    assert [c % 65536 for c in ref.checksum] == list(dig.sum(axis=0) % 65536)


def test_writer_explicit_gain_and_range_error(tmp_path, rng):
    from ecgcore.errors import WriteError
    sig = _ecg(rng, 500, 2)
    rec = Record(sig, 250, ["I", "II"])
    write_wfdb(rec, tmp_path / "g", fmt=16, gain=2000)
    assert read(tmp_path / "g").meta["gains"] == [2000.0, 2000.0]
    with pytest.raises(WriteError):
        write_wfdb(Record(sig * 100, 250, ["I", "II"]), tmp_path / "h", fmt=212, gain=1000)


# -- bad input --------------------------------------------------------------------

def _copy_record(src_dir, name, dst):
    for f in os.listdir(src_dir):
        if f.startswith(name + "."):
            shutil.copy(os.path.join(src_dir, f), dst / f)
    return dst / name


def test_bad_inputs_raise_readerror_naming_the_file(tmp_path):
    stem = _copy_record(shared_path("data", "ptbxl"), "00001_lr", tmp_path)
    dat = tmp_path / "00001_lr.dat"
    data = dat.read_bytes()
    dat.write_bytes(data[:1000])
    with pytest.raises(ReadError, match="truncated") as ei:
        read(stem)
    assert "00001_lr.dat" in str(ei.value)
    dat.unlink()
    with pytest.raises(ReadError, match="missing"):
        read(stem)
    dat.write_bytes(data)
    hea = tmp_path / "00001_lr.hea"
    text = hea.read_text()
    hea.write_text(text.replace(" 1000\n", " 2000\n", 1))  # header longer than the data
    with pytest.raises(ReadError, match="truncated"):
        read(stem)
    for garbage in ("", "\n\n# only a comment\n", "00001_lr twelve 100 1000\n",
                    "x 2 100 10\nx.dat 16\n", "x 1 100 10\nx.dat 999 200\n", "x 1 abc 10\nx.dat 16\n",
                    "x 1 100 10\nx.dat 16 2x00(\n", "x 1 100 -5\nx.dat 16\n"):
        hea.write_text(garbage)
        with pytest.raises(ReadError) as ei:
            read(stem)
        assert "00001_lr.hea" in str(ei.value)
    with pytest.raises(ReadError, match="no such"):
        read(tmp_path / "absent")


# -- fuzz -------------------------------------------------------------------------

def _mutate(rng, data: bytes) -> bytes:
    b = bytearray(data)
    kind = rng.integers(0, 6)
    if not b:
        return bytes(rng.integers(0, 256, 8, dtype=np.uint8))
    if kind == 0:  # flip bytes
        for i in rng.integers(0, len(b), rng.integers(1, 8)):
            b[i] = int(rng.integers(0, 256))
    elif kind == 1:  # truncate
        b = b[: int(rng.integers(0, len(b)))]
    elif kind == 2:  # delete a span
        i = int(rng.integers(0, len(b)))
        del b[i:i + int(rng.integers(1, 20))]
    elif kind == 3:  # insert digits/specials (big numbers, signs, separators)
        i = int(rng.integers(0, len(b) + 1))
        junk = rng.choice([b"9999999999", b"-", b"0", b"+", b":", b"x", b"(", b"/", b" ", b"\n", b"#"])
        b[i:i] = junk
    elif kind == 4:  # duplicate a span
        i = int(rng.integers(0, len(b)))
        b[i:i] = b[i:i + int(rng.integers(1, 40))]
    else:  # random bytes
        i = int(rng.integers(0, len(b)))
        b[i:i + 4] = bytes(rng.integers(0, 256, 4, dtype=np.uint8))
    return bytes(b)


def test_fuzz_mutated_headers_and_signal_files(tmp_path, rng):
    srcs = [("ptbxl", "00001_lr"), ("wfdb", "binformats"), ("wfdb", "JS00001"), ("ludb", "1"),
            ("wfdb", "flacformats")]
    cases = []
    for sub, name in srcs:
        d = tmp_path / sub
        d.mkdir(exist_ok=True)
        stem = _copy_record(shared_path("data", sub), name, d)
        files = sorted(p for p in d.iterdir() if p.name.startswith(name + ".") and
                       p.suffix not in (".i", ".ii", ".iii", ".avr", ".avl", ".avf", ".v1", ".v2",
                                        ".v3", ".v4", ".v5", ".v6"))
        cases.append((stem, {p: p.read_bytes() for p in files}))
    t0 = time.perf_counter()
    n_ok = n_err = 0
    for it in range(1500):
        stem, files = cases[it % len(cases)]
        target = list(files)[int(rng.integers(0, len(files)))]
        if target.suffix == ".hea" or rng.random() < 0.3:
            target = stem.with_suffix(".hea") if stem.suffix == "" else target
        target.write_bytes(_mutate(rng, files[target]))
        try:
            rec = read(stem)
            assert isinstance(rec, Record)
            n_ok += 1
        except ReadError as exc:
            assert str(exc)
            n_err += 1
        target.write_bytes(files[target])
    assert n_ok > 100 and n_err > 100  # both outcomes exercised
    assert time.perf_counter() - t0 < 60  # bounded, generous for a shared machine


# -- the planned (cached header layout) route and the block decoder ---------------------

def _general_route(path):
    """The same read with the layout-plan cache bypassed (parse_header every time)."""
    import ecgcore.io.wfdb as W
    real = W._read_planned
    W._read_planned = lambda text, hea: None
    try:
        return read(path)
    finally:
        W._read_planned = real


def _biobank_like(tmp_path, rng, n, fmt, gain):
    """n records of one header layout (as a biobank writes them), with NaNs and comments."""
    stems = []
    for i in range(n):
        sig = _ecg(rng, 1000 + 7 * i, 12)  # the sample count varies, the layout does not
        sig[rng.integers(0, 12), rng.integers(0, sig.shape[1], 5)] = np.nan
        wfdb.wrsamp(f"b{i}", fs=500, units=["mV"] * 12, sig_name=STANDARD, p_signal=sig.T,
                    fmt=[str(fmt)] * 12, adc_gain=[gain] * 12, baseline=[int(b) for b in
                                                                 rng.integers(-50, 50, 12)],
                    comments=[f"Age: {20 + i}", f"Sex: {'M' if i % 2 else 'F'}", "Dx: 426783006"],
                    base_time=datetime.time(10, 20, 30), base_date=datetime.date(2003, 2, 1),
                    write_dir=str(tmp_path))
        stems.append(tmp_path / f"b{i}")
    return stems


@pytest.mark.parametrize("fmt,gain", [(16, 1000.0), (212, 200.0)])
def test_planned_route_equals_general_route_and_float32_of_wfdb(tmp_path, rng, fmt, gain):
    import ecgcore.io.wfdb as W
    stems = _biobank_like(tmp_path, rng, 4, fmt, gain)
    for stem in stems:
        ours = read(str(stem) + ".hea")
        assert W._read_planned(W._read_text(str(stem) + ".hea"), str(stem) + ".hea") is not None
        gen = _general_route(stem)
        np.testing.assert_array_equal(ours.signal, gen.signal)
        assert ours.meta == gen.meta and ours.leads == gen.leads and ours.fs == gen.fs
        assert ours.source == gen.source
        # exact float32 route: the float32 rounding of wfdb's float64 physical values, bit for bit
        ref = wfdb.rdrecord(str(stem))
        np.testing.assert_array_equal(ours.signal, ref.p_signal.T.astype(np.float32))
    assert read(stems[1]).meta["age"] == 21 and read(stems[1]).meta["sex"] == "M"
    assert read(stems[0]).meta["base_date"] == "01/02/2003"
    assert read(stems[0]).meta["base_time"].startswith("10:20:30")


def test_layout_cache_keeps_per_record_fields_apart(tmp_path, rng):
    """Headers that share all but one field must not share a plan for that field."""
    stem = _biobank_like(tmp_path, rng, 1, 16, 1000.0)[0]
    text = (tmp_path / "b0.hea").read_text()
    lines = text.splitlines()
    first = read(stem)
    variants = {
        "gain": lines[1].replace(" 1000.0(", " 500.0(", 1).replace("1000(", "500(", 1),
        "units": lines[1].replace("/mV", "/uV", 1),
        "name": lines[1].rsplit(" ", 1)[0] + " V6",
    }
    for what, new_line in variants.items():
        assert new_line != lines[1], what
        (tmp_path / "v.hea").write_text("\n".join([lines[0].replace("b0", "v", 1), new_line]
                                                  + lines[2:]) + "\n")
        (tmp_path / "v.dat").write_bytes((tmp_path / "b0.dat").read_bytes())
        ours = read(tmp_path / "v")
        gen = _general_route(tmp_path / "v")
        np.testing.assert_array_equal(ours.signal, gen.signal)
        assert ours.meta == gen.meta and ours.leads == gen.leads, what
        if what == "gain":
            np.testing.assert_allclose(ours.signal[0], 2 * first.signal[0], rtol=1e-6)
        assert_matches_wfdb(tmp_path / "v")
    # a malformed per-record field on a cached layout fails as on the general route
    bad = lines[1].split()
    bad[6] = "12x"  # checksum
    (tmp_path / "v.hea").write_text("\n".join([lines[0].replace("b0", "v", 1), " ".join(bad)]
                                              + lines[2:]) + "\n")
    with pytest.raises(ReadError, match="checksum") as ei:
        read(tmp_path / "v")
    assert "v.hea" in str(ei.value)
    # fewer frames in the file than the (per-record) sample count says
    (tmp_path / "v.hea").write_text(text.replace("b0 12 500 1000", "v 12 500 1200", 1)
                                    .replace("b0.dat", "v.dat"))
    with pytest.raises(ReadError, match="truncated.*1200 frames of 12 format-16"):
        read(tmp_path / "v.hea")


@pytest.mark.parametrize("fmt", ["16", "24", "32", "61", "80", "160", "212", "310", "311"])
def test_block_decoder_across_blocks_and_odd_frames(tmp_path, rng, fmt):
    # 5 signals per frame: blocks of 816 frames; 5003 frames end in a partial block,
    # and with an odd frame size the packed formats' groups straddle frames
    n, n_sig = 5003, 5
    bits = {"80": 8, "310": 10, "311": 10, "212": 12}.get(fmt, 16)
    lim = 2 ** (bits - 1) - 1
    dig = rng.integers(-lim, lim, (n, n_sig))
    invalid = {"80": -128, "310": -512, "311": -512, "212": -2048}.get(fmt, -32768)
    if fmt in ("24", "32"):
        invalid = {"24": -(2 ** 23), "32": -(2 ** 31)}[fmt]
    dig[rng.integers(0, n, 9), rng.integers(0, n_sig, 9)] = invalid
    flat = dig.reshape(-1)
    if fmt == "16":
        data = flat.astype("<i2").tobytes()
    elif fmt == "24":
        data = np.stack([(flat >> s) & 0xFF for s in (0, 8, 16)], 1).astype(np.uint8).tobytes()
    elif fmt == "32":
        data = flat.astype("<i4").tobytes()
    elif fmt == "212":
        data = _pack212(flat)
    else:
        data = _pack(flat, fmt)
    (tmp_path / "k.dat").write_bytes(data)
    gains = [200.0, 1000.0, 33.3, 1.0, 2000.0]  # 33.3 is not exact in float32: float64 route
    lines = [f"k {n_sig} 500 {n}"] + [f"k.dat {fmt} {g}({b})/mV {bits} 0 0 0 0 s{j}" for j, (g, b)
                                      in enumerate(zip(gains, [0, -3, 7, 0, 11]))]
    (tmp_path / "k.hea").write_text("\n".join(lines) + "\n")
    rec, ref = assert_matches_wfdb(tmp_path / "k")
    want = ref.p_signal.T
    ok = ~np.isnan(want)
    assert (~ok).sum() >= 5
    exact = [0, 1, 3, 4]  # float32-exact gains: bit-identical to float32(wfdb)
    np.testing.assert_array_equal(rec.signal[exact], want[exact].astype(np.float32))


def test_ecgcore_read_header_fast_path_keeps_errors(tmp_path):
    import ecgcore.io as eio
    with pytest.raises(ReadError, match="no such file") as ei:
        eio.read(tmp_path / "absent.hea")
    assert "absent.hea" in str(ei.value)
    (tmp_path / "dir.hea").mkdir()
    with pytest.raises(ReadError, match="directory"):
        eio.read(tmp_path / "dir.hea")
    (tmp_path / "e.hea").write_bytes(b"")
    with pytest.raises(ReadError, match="empty"):
        eio.read(tmp_path / "e.hea")

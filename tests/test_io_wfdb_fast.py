"""The WFDB reader's C-tokenised header route against its Python route.

``ecgcore.io.wfdb.read`` first tries ``_wfdb.scan_header`` (plain ASCII
headers of one signal file, tokenised in C); anything it declines goes through
the Python tokeniser and, failing that, the full header parser. Both routes
must give identical Records (or the same error) for every header, which is
checked here on real files and on seeded random mutations of a header.
"""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest

import ecgcore
from ecgcore.errors import ReadError
from ecgcore.io import _wfdb, wfdb
from ecgcore.record import STANDARD_12, Record

_SHARED = os.environ.get("ECGCORE_SHARED",
                         os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                                      "shared"))


def _python_route(path):
    """wfdb.read with the C tokeniser switched off (plans cleared: no shared state)."""
    saved = _wfdb.scan_header
    wfdb._PLANS.clear()
    wfdb._FAST_PLANS.clear()
    try:
        wfdb._wfdb.scan_header = lambda raw, m: None
        return wfdb.read(path)
    finally:
        wfdb._wfdb.scan_header = saved
        wfdb._PLANS.clear()
        wfdb._FAST_PLANS.clear()


def _outcome(fn, path):
    try:
        rec = fn(path)
    except ReadError as exc:
        return ("error", str(exc))
    return ("record", rec.signal.tobytes(), rec.signal.shape, rec.signal.dtype, rec.fs, rec.leads,
            rec.meta, rec.source, rec.derived, rec.units, rec.annotations, rec.median)


def _fast_route(path):
    wfdb._PLANS.clear()
    wfdb._FAST_PLANS.clear()
    wfdb.read(path)  # first record of a layout: plans built through the Python route
    return wfdb.read(path)  # second: the cached plan under the C key


def _same(path):
    fast, slow = _outcome(_fast_route, path), _outcome(_python_route, path)
    assert fast[0] == slow[0], (path, fast[:2], slow[:2])
    if fast[0] == "error":
        assert fast == slow
    else:
        for a, b in zip(fast[1:], slow[1:]):
            assert a == b
    return fast[0]


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    d = tmp_path_factory.mktemp("wfdbfast")
    rng = np.random.default_rng(11)
    x = (rng.standard_normal((12, 1000)) * 0.5).astype(np.float32)
    x[3, 17] = np.nan  # an invalid sample
    rec = Record(x, 500, STANDARD_12)
    hea = ecgcore.write(rec, str(d / "r1"), format="wfdb",
                        comments=["Age: 61", "Sex: F", "Dx: 426783006"])
    with open(hea, encoding="ascii") as f:
        return d, f.read()


def test_plain_header_takes_the_c_route_and_matches(base):
    d, text = base
    got = _wfdb.scan_header(text.encode(), 256)
    assert got is not None
    name, n, fname, key, comments, btime, bdate = got
    assert (name, n, fname, btime, bdate) == ("r1", 1000, "r1.dat", None, None)
    assert comments == ["Age: 61", "Sex: F", "Dx: 426783006"]
    assert _same(str(d / "r1.hea")) == "record"
    rec = wfdb.read(str(d / "r1.hea"))
    assert np.isnan(rec.signal[3, 17]) and rec.meta["age"] == 61


def test_fast_record_has_every_slot_of_the_constructors(base):
    d, _ = base
    rec = _fast_route(str(d / "r1.hea"))
    ref = Record(rec.signal, rec.fs, rec.leads, meta=rec.meta, source=rec.source)
    for slot in Record.__slots__:
        a, b = getattr(rec, slot), getattr(ref, slot)
        if isinstance(a, np.ndarray):
            assert a.dtype == b.dtype and a.flags.c_contiguous and np.array_equal(a, b,
                                                                                 equal_nan=True)
        else:
            assert a == b and type(a) is type(b), slot
    assert rec.annotations is not _fast_route(str(d / "r1.hea")).annotations  # fresh dicts


def _mutations(text: str, rng) -> str:
    body = [ln for ln in text.splitlines() if ln]
    k = int(rng.integers(0, 24))
    i = int(rng.integers(1, 13))
    if i >= len(body):  # an earlier mutation dropped lines
        return text
    t = body[i].split(" ")
    r = body[0].split(" ")
    if len(t) < 9 or len(r) < 4:  # an earlier mutation dropped tokens or moved the record line
        return text
    if k == 0:
        body.insert(int(rng.integers(0, len(body))), "# inserted comment\twith tab ")
    elif k == 1:
        return "\r\n".join(body) + "\r\n"
    elif k == 2:
        return "\r".join(body)
    elif k == 3:
        body[i] = "\t".join(t) + "  \t"
    elif k == 4:
        t[5] = rng.choice(["+5", "-0", "1_0", "abc", "", "0x1", "99999999999999999999"])
        body[i] = " ".join(t)
    elif k == 5:
        t[6] = rng.choice(["+5", "-7", "1_2", "x", "١٢"])
        body[i] = " ".join(t)
    elif k == 6:
        body[i] = " ".join(t[:int(rng.integers(1, 8))])
    elif k == 7:
        t[0] = "other.dat"
        body[i] = " ".join(t)
    elif k == 8:
        r[1] = rng.choice(["+12", "13", "0", "-1", "12x", "257"])
        body[0] = " ".join(r)
    elif k == 9:
        r[3] = rng.choice(["0", "-5", "+1000", "999", "1001", "1e3"])
        body[0] = " ".join(r)
    elif k == 10:
        body[0] += rng.choice([" 12:30:00", " 12:30:00 01/02/2003", " 12:30:00 01/02/2003 extra x",
                               "\t\t08:00:00\t31/12/1999"])
    elif k == 11:
        body[0] = "r1/2" + body[0][2:]
    elif k == 12:
        t[8] = "lead with spaces  and\ttab"
        body[i] = " ".join(t)
    elif k == 13:
        body.insert(1, "#caf\u00e9 comment")
        return "\n".join(body) + "\n"
    elif k == 14:
        body.insert(5, "")
        body.insert(2, "   ")
    elif k == 15:
        body = body[:int(rng.integers(1, 13))]
    elif k == 16:
        t[1] = rng.choice(["212", "16x2", "16:1", "16+4", "8", "0"])
        body[i] = " ".join(t)
    elif k == 17:
        t[2] = rng.choice(["200", "500(10)/uV", "0", "abc", "1000(0)/mV"])
        body[i] = " ".join(t)
    elif k == 18:
        body[i] = " ".join(t + ["extra"])
    elif k == 19:
        body.append("trailing non-comment line")
    elif k == 20:
        body = [ln + "\x0b" if j == 2 else ln for j, ln in enumerate(body)]
    elif k == 21:
        r[2] = rng.choice(["250", "500/1000", "500/1000(0)", "0", "-1", "nan", "5e2"])
        body[0] = " ".join(r)
    elif k == 22:
        body.append("# trailing comment : with colon")
        body.insert(0, "#Age: 40")
    else:
        body[0] = " " + body[0] + " "
    return "\n".join(body) + "\n"


def test_random_header_mutations_read_the_same_both_ways(base, tmp_path):
    d, text = base
    shutil.copy(d / "r1.dat", tmp_path / "r1.dat")
    shutil.copy(d / "r1.dat", tmp_path / "other.dat")
    rng = np.random.default_rng(2024)
    kinds = {"record": 0, "error": 0}
    fast_taken = 0
    for j in range(400):
        mutated = text
        for _ in range(int(rng.integers(1, 4))):
            mutated = _mutations(mutated, rng)
        hea = tmp_path / f"m{j}.hea"
        hea.write_bytes(mutated.encode("utf-8"))
        kinds[_same(str(hea))] += 1
        fast_taken += _wfdb.scan_header(mutated.encode("utf-8"), 256) is not None
    # the mutations exercise both routes and both outcomes
    assert kinds["record"] > 100 and kinds["error"] > 20, kinds
    assert 100 < fast_taken < 400, fast_taken


def test_scan_header_declines_what_it_does_not_handle(base):
    _, text = base
    raw = text.encode()
    assert _wfdb.scan_header(raw, 256) is not None
    assert _wfdb.scan_header(raw, 11) is None  # more signals than the plan limit
    assert _wfdb.scan_header(raw.replace(b"#Age", "#\u00c4ge".encode()), 256) is None
    lines = text.split("\n")
    t = lines[1].split(" ")
    t[5] = "1_" + t[5].lstrip("-")  # int() reads it, the C tokeniser leaves it to Python
    assert _wfdb.scan_header("\n".join(lines[:1] + [" ".join(t)] + lines[2:]).encode(), 256) is None
    assert _wfdb.scan_header(b"", 256) is None
    assert _wfdb.scan_header(b"# only a comment\n", 256) is None


def test_real_wfdb_files_read_the_same_both_ways():
    root = os.path.join(_SHARED, "data")
    if not os.path.isdir(root):
        pytest.skip(f"reference shelf data not found at {root}; real-file comparison skipped")
    heas = sorted(os.path.join(dp, f) for dp, _, fs in os.walk(root) for f in fs
                  if f.endswith(".hea"))
    if not heas:
        pytest.skip("no WFDB headers on the reference shelf")
    took_fast = 0
    for hea in heas:
        with open(hea, "rb") as f:
            took_fast += _wfdb.scan_header(f.read(), 256) is not None
        _same(hea)
    assert took_fast > 0


@pytest.mark.parametrize("tspf", [12, 11])
def test_decoder_equals_float32_division_with_invalid_samples(tspf):
    """12 signals of format 16 take the AVX2 kernel where the CPU has it (11: the
    generic loop); both must give float32(d - baseline) / float32(gain) exactly."""
    rng = np.random.default_rng(100 + tspf)
    for _ in range(150):
        n = int(rng.integers(1, 2500))
        d = rng.integers(-32768, 32768, size=(n, tspf)).astype(np.int16)
        if rng.random() < 0.5:
            d[rng.integers(n, size=4), rng.integers(tspf, size=4)] = -32768
        gains = rng.choice([1000.0, 200.0, 500.0, 4.8828125, 6.4, 3.0, 0.1], tspf)
        gains = gains.astype(np.float32).astype(np.float64)  # the exact route's condition
        base = rng.choice([0.0, 1024.0, -7.0, 100000.0], tspf)
        rows = (rng.permutation(tspf) if rng.random() < 0.3 else np.arange(tspf)).astype(np.int32)
        check = bool(rng.random() < 0.8)
        out = np.full((tspf, n), 7.0, np.float32)
        _wfdb.decode_into(d.tobytes(), 16, n, tspf, np.arange(tspf, dtype=np.int32),
                          np.ones(tspf, np.int32), np.zeros(tspf, np.int32), base, 1.0 / gains,
                          rows, -32768, check, out, gains)
        ref = (d.astype(np.float32) - base.astype(np.float32)) / gains.astype(np.float32)
        if check:
            ref[d == -32768] = np.nan
        want = np.empty_like(out)
        want[rows] = ref.T
        assert np.array_equal(out, want, equal_nan=True)

"""NumPy .npy/.npz and CSV readers, and the atomic .npy writer."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

import ecgcore
from ecgcore import Record
from ecgcore.errors import ReadError
from ecgcore.io import arrays


@pytest.fixture
def rec(rng):
    sig = np.cumsum(rng.normal(0, 0.03, (12, 2500)), axis=1).astype(np.float32)
    return Record(sig, 250, ecgcore.STANDARD_12, source="origin.xml", derived=["III"],
                  meta={"format": "ge_muse"})


def test_write_npy_round_trip_without_arguments(tmp_path, rec):
    path = ecgcore.write(rec, tmp_path / "r", format="npy")
    assert path.endswith("r.npy") and os.path.isfile(path + ".json")
    back = ecgcore.read(path)
    np.testing.assert_array_equal(back.signal, rec.signal)
    assert back.fs == 250 and back.leads == rec.leads and back.derived == {"III"}
    side = json.loads(open(path + ".json").read())
    assert side["units"] == "mV" and side["source"] == "origin.xml"
    assert side["format_origin"] == "ge_muse"
    # no temporary files left behind by the atomic writes
    assert sorted(os.listdir(tmp_path)) == ["r.npy", "r.npy.json"]
    # np.load agrees, in the documented (n_leads, n_samples) float32 layout
    raw = np.load(path)
    assert raw.dtype == np.float32 and raw.shape == (12, 2500)


def test_npy_orientation_and_required_fs(tmp_path, rec):
    p = tmp_path / "t.npy"
    np.save(p, rec.signal.T)                      # (samples, leads) with no sidecar
    with pytest.raises(ReadError, match="pass fs="):
        ecgcore.read(p)
    back = ecgcore.read(p, fs=250)
    np.testing.assert_array_equal(back.signal, rec.signal)
    assert back.leads == ecgcore.STANDARD_12
    eight = tmp_path / "e.npy"
    np.save(eight, rec.signal[:8])
    assert ecgcore.read(eight, fs=250).leads == ecgcore.STANDARD_8
    sq = tmp_path / "sq.npy"
    np.save(sq, np.ones((40, 60), np.float32))
    with pytest.raises(ReadError, match="cannot tell leads from samples"):
        ecgcore.read(sq, fs=100)
    np.testing.assert_array_equal(
        ecgcore.read(sq, fs=100, leads=[f"c{i}" for i in range(40)]).signal, np.ones((40, 60)))


def test_npy_units_and_bad_inputs(tmp_path, rec):
    p = tmp_path / "uv.npy"
    np.save(p, rec.signal.astype(np.float64) * 1000)
    np.testing.assert_allclose(ecgcore.read(p, fs=250, units="uV").signal, rec.signal, rtol=1e-6)
    with pytest.raises(ReadError, match="unknown units"):
        ecgcore.read(p, fs=250, units="furlong")
    with pytest.raises(ReadError, match="must be positive"):
        ecgcore.read(p, fs=-1)
    obj = tmp_path / "obj.npy"
    np.save(obj, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(ReadError, match="not a readable .npy"):
        ecgcore.read(obj, fs=1)
    trunc = tmp_path / "trunc.npy"
    trunc.write_bytes((tmp_path / "uv.npy").read_bytes()[:300])
    with pytest.raises(ReadError, match="trunc.npy"):
        ecgcore.read(trunc, fs=250)
    cube = tmp_path / "cube.npy"
    np.save(cube, np.zeros((2, 3, 4)))
    with pytest.raises(ReadError, match="shape"):
        ecgcore.read(cube, fs=1)
    bad_side = tmp_path / "bs.npy"
    np.save(bad_side, rec.signal)
    (tmp_path / "bs.npy.json").write_text("{not json")
    with pytest.raises(ReadError, match="sidecar"):
        ecgcore.read(bad_side)


def test_npz_keys(tmp_path, rec):
    p = tmp_path / "a.npz"
    np.savez(p, signal=rec.signal.T, fs=np.float64(250), leads=np.array(rec.leads))
    back = ecgcore.read(p)
    np.testing.assert_array_equal(back.signal, rec.signal)
    assert back.fs == 250 and back.meta["format"] == "npz"
    q = tmp_path / "b.npz"
    np.savez_compressed(q, ecg=rec.signal)
    with pytest.raises(ReadError, match="pass fs="):
        ecgcore.read(q)
    assert ecgcore.read(q, fs=250).n_samples == 2500
    r = tmp_path / "c.npz"
    np.savez(r, other=rec.signal)
    with pytest.raises(ReadError, match="no signal array"):
        ecgcore.read(r, fs=250)
    trunc = tmp_path / "t.npz"
    trunc.write_bytes(p.read_bytes()[:500])
    with pytest.raises(ReadError, match="t.npz"):
        ecgcore.read(trunc)


def test_csv_with_time_column(tmp_path, rec):
    t = np.arange(rec.n_samples) / rec.fs
    p = tmp_path / "x.csv"
    header = "time," + ",".join(["I", "II", "III", "AVR", "AVL", "AVF"] +
                                [f"V{i}" for i in range(1, 7)])
    np.savetxt(p, np.column_stack([t, rec.signal.T]), delimiter=",", header=header, comments="",
               fmt="%.7g")
    back = ecgcore.read(p)
    assert back.fs == 250 and back.leads == ecgcore.STANDARD_12
    np.testing.assert_allclose(back.signal, rec.signal, atol=1e-5)
    # time in milliseconds, semicolons, no fs needed
    q = tmp_path / "y.csv"
    np.savetxt(q, np.column_stack([t * 1000, rec.signal[:2].T]), delimiter=";",
               header="time_ms;I;II", comments="", fmt="%.6f")
    assert ecgcore.read(q).fs == 250 and ecgcore.read(q).leads == ("I", "II")


def test_csv_without_time_needs_fs_and_rejects_junk(tmp_path, rec):
    p = tmp_path / "n.csv"
    np.savetxt(p, rec.signal[:3].T, delimiter=",", header="I,II,V1", comments="", fmt="%.5f")
    with pytest.raises(ReadError, match="pass fs="):
        arrays.read_csv(p)
    assert arrays.read_csv(p, fs=250).leads == ("I", "II", "V1")
    bad = tmp_path / "b.csv"
    bad.write_text("I,II\n1,2\n3,x\n")
    with pytest.raises(ReadError, match="not all numbers"):
        arrays.read_csv(bad, fs=1)
    ragged = tmp_path / "r.csv"
    ragged.write_text("I,II,III\n1,2\n3,4\n")
    with pytest.raises(ReadError):
        arrays.read_csv(ragged, fs=1)
    jitter = tmp_path / "j.csv"
    jitter.write_text("time,I\n0,1\n0.004,2\n0.01,3\n0.012,4\n")
    with pytest.raises(ReadError, match="uniformly"):
        arrays.read_csv(jitter)
    empty = tmp_path / "e.csv"
    empty.write_text("I,II\n")
    with pytest.raises(ReadError, match="header row and at least one"):
        arrays.read_csv(empty, fs=1)


def test_real_record_through_npy(tmp_path, shared_data):
    rec = ecgcore.read(shared_data / "ge_muse" / "braveheart_example1.xml")
    back = ecgcore.read(arrays.write_npy(rec, tmp_path / "m.npy"))
    np.testing.assert_array_equal(back.signal, rec.signal)
    assert back.derived == rec.derived and back.fs == rec.fs


def test_unknown_rate_message_names_a_sidecar_that_works(tmp_path, rng):
    import json
    import re

    p = tmp_path / "bare.npy"
    np.save(p, rng.normal(size=(12, 2000)).astype(np.float32))
    with pytest.raises(ecgcore.ReadError, match="sampling rate is unknown") as exc:
        ecgcore.read(p)
    # the message's sidecar, written as it says, is what the reader then uses
    side = re.search(r"\((\S+\.json), e\.g\. (\{.*\})\;", str(exc.value))
    assert side.group(1) == "bare.npy.json"
    example = json.loads(side.group(2).replace(', ...', ''))
    (tmp_path / side.group(1)).write_text(json.dumps({"fs": example["fs"]}))
    rec = ecgcore.read(p)
    assert rec.fs == 500 and rec.n_samples == 2000

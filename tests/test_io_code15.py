"""CODE-15% HDF5 reader: the real sample container, its quirks, and damaged files."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

import ecgcore
from ecgcore.errors import ReadError
from ecgcore.io import code15

IDS = [1594286, 975093, 438277, 358121, 2657522]


@pytest.fixture(scope="module")
def part(shared_data):
    return shared_data / "code15" / "exams_part_sample.hdf5"


@pytest.fixture(scope="module")
def raw(part):
    with h5py.File(part, "r") as f:
        return f["tracings"][()], f["exam_id"][()]


def test_iter_skips_dummy_and_trims_padding(part, raw):
    tracings, ids = raw
    recs = list(code15.iter_code15(part, chunk=2))
    assert [r.meta["exam_id"] for r in recs] == IDS and ids[-1] == 0
    for row, r in enumerate(recs):
        x = tracings[row]
        nz = np.flatnonzero(np.any(x != 0, axis=1))
        assert r.fs == 400 and r.leads == ecgcore.STANDARD_12 and r.signal.dtype == np.float32
        # values equal the h5py slice between the first and last non-zero sample
        np.testing.assert_array_equal(r.signal, x[nz[0]:nz[-1] + 1].T)
        assert r.meta["padding"] == (int(nz[0]), 4096 - int(nz[-1]) - 1)
    assert [r.n_samples for r in recs] == [4096, 4096, 2934, 2934, 2934]
    assert recs[2].meta["padding"] == (581, 581)


def test_matches_ecgfm_org_fixtures(part, shared):
    """fairseq-signals' extracted 12 x n arrays (facts: strip zero columns, nothing else)."""
    sio = pytest.importorskip("scipy.io")
    org = shared / "fixtures" / "ecgfm_preprocess" / "org"
    if not org.is_dir():
        pytest.skip("ecgfm_preprocess fixtures absent")
    for r in code15.iter_code15(part):
        m = sio.loadmat(org / f"code_15_{r.meta['exam_id']}.mat")
        assert int(m["curr_sample_rate"].squeeze()) == r.fs
        np.testing.assert_array_equal(r.signal, m["feats"].astype(np.float32))


def test_read_one_exam_by_id_index_and_csv(part, shared_data, raw):
    rec = ecgcore.read(part, exam_id=358121, exams_csv=shared_data / "code15" / "exams_sample.csv")
    assert rec.meta["exam_id"] == 358121 and rec.meta["row"] == 3
    assert rec.meta["patient"]["age"] is not None and rec.meta["patient"]["sex"] in ("M", "F")
    assert set(rec.meta["labels"]) == {"1dAVb", "RBBB", "LBBB", "SB", "ST", "AF", "normal_ecg"}
    np.testing.assert_array_equal(ecgcore.read(part, index=3).signal, rec.signal)
    np.testing.assert_array_equal(ecgcore.read(part, index=-3).signal,
                                  ecgcore.read(part, exam_id=IDS[3]).signal)  # dummy row counts
    empty = ecgcore.read(part, exam_id=438277, exams_csv=shared_data / "code15" / "exams_sample.csv")
    assert empty.meta["outcome"] == {"death": None, "timey": None}
    assert list(code15.exam_ids(part)) == IDS
    picked = [r.meta["exam_id"] for r in code15.iter_code15(part, exam_ids=[2657522, 975093])]
    assert picked == [975093, 2657522]


def test_plausible_millivolts(part):
    """Units are mV: after removing the (un-removed, facts §10) baseline, the median lead
    peak-to-peak sits in the physiological 0.5-5 mV range, not 1000x or 5x off."""
    sig = pytest.importorskip("scipy.signal")
    sos = sig.butter(2, 0.7, "highpass", fs=400, output="sos")
    for r in code15.iter_code15(part):
        y = sig.sosfiltfilt(sos, r.signal.astype(np.float64), axis=1)
        assert 0.5 < float(np.median(np.ptp(y, axis=1))) < 5, r.meta["exam_id"]


def test_ambiguous_and_bad_requests(part):
    with pytest.raises(ReadError, match=r"holds 5 exams; address one as PATH::\d+ .*pass exam_id"):
        ecgcore.read(part)
    with pytest.raises(ReadError, match="dummy"):
        ecgcore.read(part, index=5)
    with pytest.raises(ReadError, match="not in this file"):
        ecgcore.read(part, exam_id=42)
    with pytest.raises(ReadError, match="out of range"):
        ecgcore.read(part, index=6)
    with pytest.raises(ReadError, match="not in this file"):
        list(code15.iter_code15(part, exam_ids=[1594286, 7]))


def _h5(path, **datasets):
    with h5py.File(path, "w") as f:
        for k, v in datasets.items():
            f[k] = v
    return path


def test_single_exam_file_needs_no_id(tmp_path, rng):
    x = np.zeros((2, 4096, 12), np.float32)
    x[0, 100:3996] = rng.normal(0, 0.3, (3896, 12))
    p = _h5(tmp_path / "one.hdf5", tracings=x, exam_id=np.array([77, 0]))
    rec = ecgcore.read(p)
    assert rec.meta["exam_id"] == 77 and rec.n_samples == 3896 and rec.meta["padding"] == (100, 100)
    np.testing.assert_array_equal(rec.signal, x[0, 100:3996].T)


@pytest.mark.parametrize("datasets,match", [
    ({"signals": np.zeros((2, 4096, 12), np.float32)}, "no 'tracings'"),
    ({"tracings": np.zeros((2, 4096, 8), np.float32)}, "shape"),
    ({"tracings": np.zeros((4096, 12), np.float32)}, "shape"),
    ({"tracings": np.zeros((2, 4096, 12), np.int16)}, "dtype"),
    ({"tracings": np.ones((2, 4096, 12), np.float32), "exam_id": np.arange(3)}, "entries"),
])
def test_bad_containers(tmp_path, datasets, match):
    p = _h5(tmp_path / "bad.hdf5", **datasets)
    with pytest.raises(ReadError, match=match) as info:
        ecgcore.read(p, index=0)
    assert "bad.hdf5" in str(info.value)


def test_truncated_and_empty_hdf5(tmp_path, part):
    data = part.read_bytes()
    for n in (0, 8, 2048, len(data) // 2):
        p = tmp_path / f"t{n}.hdf5"
        p.write_bytes(data[:n])
        with pytest.raises(ReadError) as info:
            ecgcore.read(p, index=0)
        assert p.name in str(info.value)

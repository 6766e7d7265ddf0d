import numpy as np
import pytest

import ecgcore
from ecgcore.synthetic import FIDUCIAL_NAMES


def test_reproducible_and_independent_of_n():
    a = ecgcore.simulate(3, seed=7)
    b = ecgcore.simulate(5, seed=7)
    for x, y in zip(a, b[:3]):
        np.testing.assert_array_equal(x.signal, y.signal)
    assert not np.array_equal(a[0].signal, a[1].signal)


@pytest.mark.parametrize("rhythm", ["sinus", "af", "flutter", "rbbb", "lbbb"])
def test_rhythms_and_fiducials(rhythm):
    recs = ecgcore.simulate(4, seed=11, rhythm=rhythm, noise="none")
    for rec in recs:
        assert rec.leads == ecgcore.STANDARD_12 and rec.fs == 500 and rec.n_samples == 5000
        f = rec.meta["fiducials"]
        assert set(f) == set(FIDUCIAL_NAMES)
        nb = len(f["R"])
        assert all(len(v) == nb and v.dtype == np.int64 for v in f.values())
        ok = (f["QRS_on"] >= 0) & (f["QRS_off"] >= 0)
        qrs_ms = (f["QRS_off"] - f["QRS_on"])[ok] / rec.fs * 1000
        if rhythm in ("rbbb", "lbbb"):
            assert qrs_ms.min() >= 120
        else:
            assert 70 <= qrs_ms.min() and qrs_ms.max() <= 115
        if rhythm in ("af", "flutter"):
            assert np.all(f["P_on"] == -1) and np.all(f["P_peak"] == -1)
        else:
            inside = f["P_on"] >= 0
            assert inside.sum() >= nb - 1
            assert np.all(f["P_on"][inside] < f["P_off"][inside])
            assert np.all(f["P_off"][inside] <= f["QRS_on"][inside])
        full = (f["QRS_on"] >= 0) & (f["T_off"] >= 0)
        assert np.all(f["QRS_on"][full] < f["R"][full]) and np.all(f["R"][full] < f["QRS_off"][full])
        assert np.all(f["QRS_off"][full] <= f["T_on"][full]) and np.all(f["T_on"][full] < f["T_off"][full])
        # the R mark sits on the largest absolute deflection of lead II's QRS neighbourhood of the dipole
        r = f["R"][full][0]
        seg = np.abs(rec.signal[:, r - 40:r + 40]).max(axis=0)
        assert abs(int(np.argmax(seg)) - 40) <= 30


def test_af_rr_is_irregular_and_sinus_regular():
    def cv(rec):
        rr = np.diff(rec.meta["fiducials"]["R"])
        return rr.std() / rr.mean()
    sinus = np.mean([cv(r) for r in ecgcore.simulate(6, seed=1, rhythm="sinus")])
    af = np.mean([cv(r) for r in ecgcore.simulate(6, seed=1, rhythm="af")])
    assert sinus < 0.06 < 0.12 < af


def test_limb_leads_obey_einthoven_with_noise():
    rec = ecgcore.simulate(1, seed=3, noise="severe")[0]
    res = rec.limb_residuals()
    assert max(res.values()) < 1e-5


def test_noise_levels_increase_deviation_from_clean():
    errs = []
    for level in ["none", "mild", "moderate", "severe"]:
        rec = ecgcore.simulate(1, seed=5, noise=level, return_clean=True)[0]
        errs.append(float(np.std(rec.signal - rec.meta["clean_signal"])))
    assert errs[0] < 1e-6 and errs[0] < errs[1] < errs[2] < errs[3]


def test_plausible_amplitudes():
    for rec in ecgcore.simulate(10, seed=9, rhythm="mixed"):
        q = rec.quality
        assert q.ok, q.lead_flags()
        assert 0.3 < np.median(q.amplitude_mv) < 4


def test_bad_arguments():
    with pytest.raises(ValueError):
        ecgcore.simulate(1, rhythm="vt")
    with pytest.raises(ValueError):
        ecgcore.simulate(1, noise="loud")
    with pytest.raises(ValueError):
        ecgcore.simulate(1, fs=0)


@pytest.mark.parametrize("rhythm", ["sinus", "af", "flutter", "mixed"])
def test_records_shorter_than_a_beat(rhythm):
    # 0.2-1 s may hold no whole beat at the slowest rates: a record, not a ValueError
    for duration in (0.2, 0.5, 1.0):
        recs = ecgcore.simulate(3, duration=duration, rhythm=rhythm, seed=4)
        for r in recs:
            assert r.n_samples == int(round(duration * r.fs))
            assert np.all(np.isfinite(r.signal))


def test_iter_simulate_gives_simulates_records_one_at_a_time():
    import types

    it = ecgcore.synthetic.iter_simulate(4, duration=3, rhythm="mixed", seed=11)
    assert isinstance(it, types.GeneratorType)
    for a, b in zip(it, ecgcore.simulate(4, duration=3, rhythm="mixed", seed=11)):
        np.testing.assert_array_equal(a.signal, b.signal)
        assert a.meta["rhythm"] == b.meta["rhythm"] and a.source == b.source
    with pytest.raises(ecgcore.ConfigError, match="rhythm"):
        ecgcore.synthetic.iter_simulate(2, rhythm="nodal")   # checked at the call

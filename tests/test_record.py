import numpy as np
import pytest

import ecgcore
from ecgcore import Record, STANDARD_12
from ecgcore.record import normalize_lead


@pytest.mark.parametrize("alias,canon", [
    ("avr", "aVR"), ("AVR", "aVR"), ("aVR ", "aVR"), ("AVL", "aVL"), ("avf", "aVF"),
    ("v1", "V1"), ("V1 ", "V1"), ("MLII", "II"), ("DII", "II"), ("DI", "I"), ("i", "I"),
    ("MDC_ECG_LEAD_AVF", "aVF"), ("MDC_ECG_LEAD_V3", "V3"), ("Lead III", "III"),
    ("ECG I", "I"), ("vx", "vx"), ("Resp", "Resp"),
])
def test_normalize_lead(alias, canon):
    assert normalize_lead(alias) == canon


def _limb_record(rng, n=1000, leads=("I", "II")):
    sig = rng.standard_normal((len(leads), n)).astype(np.float32)
    return Record(sig, 500, leads)


def test_conform_derives_limb_leads_exactly(rng):
    rec = _limb_record(rng, leads=("II", "V1", "I"))
    c = rec.conform()
    assert c.leads == STANDARD_12
    I, II = rec["I"].astype(np.float64), rec["II"].astype(np.float64)
    np.testing.assert_allclose(c["III"], II - I, atol=1e-6)
    np.testing.assert_allclose(c["aVR"], -(I + II) / 2, atol=1e-6)
    np.testing.assert_allclose(c["aVL"], I - II / 2, atol=1e-6)
    np.testing.assert_allclose(c["aVF"], II - I / 2, atol=1e-6)
    assert {"III", "aVR", "aVL", "aVF"} <= c.derived
    # reordered by name, never position
    np.testing.assert_array_equal(c["V1"], rec["V1"])
    assert np.all(c["V6"] == 0) and c.meta["missing_leads"] == ["V2", "V3", "V4", "V5", "V6"]


def test_conform_missing_nan_and_raise(rng):
    rec = _limb_record(rng, leads=("I",))
    c = rec.conform(derive=True, missing="nan")
    assert np.isnan(c["II"]).all() and np.isnan(c["III"]).all()
    with pytest.raises(ecgcore.ECGError, match="missing leads"):
        rec.conform(missing="raise")


def test_conform_derives_I_from_II_and_III(rng):
    rec = _limb_record(rng, leads=("II", "III"))
    c = rec.conform(["I", "II", "III"])
    np.testing.assert_allclose(c["I"], rec["II"] - rec["III"], atol=1e-6)


def test_conform_keeps_stored_leads_over_derivation(rng):
    rec = _limb_record(rng, leads=("I", "II", "III"))
    c = rec.conform()
    np.testing.assert_array_equal(c["III"], rec["III"])  # stored III is never replaced
    assert "III" not in c.derived
    res = rec.limb_residuals()
    assert res["III"] == pytest.approx(np.max(np.abs(rec["III"] - (rec["II"] - rec["I"]))), rel=1e-5)


def test_quality_flags(rng):
    n = 5000
    t = np.arange(n) / 500
    good = np.sin(2 * np.pi * 1.2 * t)[None] * rng.uniform(0.5, 1.5, (4, 1))
    flat = np.zeros((1, n))
    clipped = np.clip(3 * np.sin(2 * np.pi * 1.2 * t), -1, 1)[None]
    nan = good[:1].copy()
    nan[0, 100:200] = np.nan
    huge = good[:1] * 40  # 40x scale: implausible
    sig = np.vstack([good, flat, clipped, nan, huge])
    rec = Record(sig, 500, ["I", "II", "V1", "V2", "V3", "V4", "V5", "V6"])
    q = rec.quality
    assert not q.ok
    np.testing.assert_array_equal(q.flat, [0, 0, 0, 0, 1, 0, 0, 0])
    assert q.clipped[5] and not q.clipped[:5].any()
    assert q.nan_fraction[6] == pytest.approx(0.02)
    assert q.implausible_amplitude[7] and not q.implausible_amplitude[:4].any()
    flags = q.lead_flags()
    assert flags["V3"] == ["flat"] and "nan" in flags["V5"]
    d = rec.to_dict()
    assert d["quality"]["leads"]["V6"]["implausible_amplitude"] is True


def test_scale_suspect_record_flag(rng):
    rec = ecgcore.simulate(1, seed=4)[0]
    assert not rec.quality.flags.get("scale_suspect")
    big = rec.copy(signal=rec.signal * 6.1)   # the contec EDF trap: about 6x too large
    assert big.quality.flags["scale_suspect"]


def test_record_validation():
    with pytest.raises(ecgcore.ECGError, match="lead names"):
        Record(np.zeros((2, 10)), 500, ["I"])
    with pytest.raises(ecgcore.ECGError, match="positive"):
        Record(np.zeros((1, 10)), 0, ["I"])
    with pytest.raises(ecgcore.ECGError, match="no lead 'V7'"):
        Record(np.ones((1, 10)), 500, ["I"])["V7"]


def test_pick_crop_copy(rng):
    rec = ecgcore.simulate(1, seed=2)[0]
    p = rec.pick(["V2", 0])
    assert p.leads == ("V2", "I")
    np.testing.assert_array_equal(p.signal[1], rec["I"])
    c = rec.crop(1.0, 2.5)
    assert c.n_samples == 750 and c.duration == pytest.approx(1.5)
    np.testing.assert_array_equal(c.signal, rec.signal[:, 500:1250])
    assert "500 Hz" in repr(rec)


def test_errors_are_valueerrors_and_name_the_file():
    e = ecgcore.ReadError("truncated signal file", "/data/x.dat")
    assert isinstance(e, ValueError) and str(e) == "/data/x.dat: truncated signal file"
    import pickle
    e2 = pickle.loads(pickle.dumps(e))
    assert str(e2) == str(e) and e2.path == "/data/x.dat"

"""Limb leads of digitised pages against Einthoven's and Goldberger's laws: a residual in
``meta``, Cabrera-ordered raster pages renamed, pages that hold neither order flagged."""

import numpy as np
import pytest

import ecgcore
from conftest import shared_path
from ecgcore.digitization.limbs import cabrera_to_standard, check_limb_leads, limb_residuals
from ecgcore.digitization.metric import challenge_snr
from ecgcore.record import STANDARD_12, Record

pytest.importorskip("PIL")
IX = {n: STANDARD_12.index(n) for n in STANDARD_12}


def _cabrera_rows(rec):
    """A record whose standard rows hold what a Cabrera page draws there:
    aVL, I, -aVR | II, aVF, III."""
    t = rec.signal
    s = t.copy()
    s[IX["I"]], s[IX["II"]], s[IX["III"]] = t[IX["aVL"]], t[IX["I"]], -t[IX["aVR"]]
    s[IX["aVR"]], s[IX["aVL"]], s[IX["aVF"]] = t[IX["II"]], t[IX["aVF"]], t[IX["III"]]
    return Record(s, rec.fs, list(STANDARD_12))


def test_residuals_of_derived_leads(rng):
    rec = ecgcore.simulate(1, seed=4)[0].conform()     # limb leads derived: the laws hold
    r = limb_residuals(rec.signal, rec.fs)
    assert r["standard"] < 0.05 and r["cabrera"] > 0.5
    cab = _cabrera_rows(rec)
    r = limb_residuals(cab.signal, rec.fs)
    assert r["cabrera"] < 0.05 and r["standard"] > 0.4
    flags, conf = {}, {n: float(i) for i, n in enumerate(STANDARD_12)}
    out, res = check_limb_leads(cab.signal, rec.fs, conf, flags)
    assert flags == {"limb_leads_cabrera": True} and res == pytest.approx(r["cabrera"])
    np.testing.assert_allclose(out, rec.signal, atol=1e-6)
    assert conf["I"] == IX["II"] and conf["aVR"] == IX["III"]       # confidences follow the leads
    np.testing.assert_allclose(cabrera_to_standard(cab.signal), rec.signal, atol=1e-6)
    # random leads hold neither: flagged, not renamed
    noise = rng.normal(size=(12, 2000))
    flags = {}
    out, res = check_limb_leads(noise, 500.0, None, flags)
    assert out is noise and flags["limb_leads_inconsistent"] > 0.5
    # too little overlap to test: nothing said
    sparse = np.full((12, 2000), np.nan)
    flags = {}
    out, res = check_limb_leads(sparse, 500.0, None, flags)
    assert np.isnan(res) and flags == {} and out is sparse


@pytest.mark.parametrize("layout", ["3x4+II", "6x2"])
def test_cabrera_page_is_renamed(tmp_path, layout):
    rec = ecgcore.read(shared_path("data", "ptbxl", "00001_lr.hea")).conform()
    cab = _cabrera_rows(rec)
    p = tmp_path / "cab.png"
    strip = {"rhythm_leads": "II"} if layout == "3x4+II" else {}    # a strip of true lead I
    res = ecgcore.plot(cab, p, layout=layout, **strip)
    out = ecgcore.digitize(p, fs=rec.fs)
    flags = out.meta["digitize_flags"]
    assert flags["limb_leads_cabrera"] and out.meta["limb_residual"] < 0.3
    if layout == "3x4+II":
        assert flags["rhythm_leads"] == ["I"]
    # scored against the true leads, drawn where the Cabrera page drew them
    ref = cabrera_to_standard(res.reference(cab))
    est = out.conform(STANDARD_12, missing="nan").signal.astype(float)[:, :ref.shape[1]]
    snr = challenge_snr(ref, est, rec.fs)
    assert np.nanmean(snr) > 18 and np.all(snr[[IX[n] for n in ("I", "II", "III", "aVR", "aVL", "aVF")]] > 12)


def test_standard_pages_keep_their_names(tmp_path):
    rec = ecgcore.read(shared_path("data", "ludb", "51.hea")).conform()   # a noisy AF strip
    for layout, ext in (("3x4+II", "png"), ("6x2", "png"), ("3x4+II", "pdf")):
        p = tmp_path / f"s.{ext}"
        ecgcore.plot(rec, p, layout=layout)
        out = ecgcore.digitize(p, fs=rec.fs)
        flags = out.meta.get("digitize_flags", {})
        assert "limb_leads_cabrera" not in flags and "limb_leads_inconsistent" not in flags
        assert 0 <= out.meta["limb_residual"] < 0.4

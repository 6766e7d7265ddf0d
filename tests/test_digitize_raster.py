"""Raster digitisation: pages rendered by ecgcore.plot (clean and damaged), the ecg-image-kit
page set on the shelf, and bad input. Scores use the Challenge 2024 metric."""

import glob
import os

import numpy as np
import pytest

import ecgcore
from conftest import shared_path
from ecgcore.digitization.metric import challenge_snr
from ecgcore.errors import DigitizeError

PIL = pytest.importorskip("PIL")
from PIL import Image, ImageFilter  # noqa: E402


def _rec(seed=3):
    r = ecgcore.simulate(n=1, fs=500, duration=10, seed=seed)
    return (r[0] if isinstance(r, list) else r).conform()


def _masked_truth(rec, res):
    ref = rec.conform().signal.astype(float)
    drawn = np.zeros(ref.shape, bool)
    for p in res.panels:
        drawn[ecgcore.STANDARD_12.index(p.lead), p.samples] = True
    ref[~drawn] = np.nan
    return ref


def _score(rec, res, out):
    ref = _masked_truth(rec, res)
    est = out.conform(ecgcore.STANDARD_12, derive=False, missing="nan").signal.astype(float)
    e = np.full(ref.shape, np.nan)
    n = min(e.shape[1], est.shape[1])
    e[:, :n] = est[:, :n]
    return challenge_snr(ref, e, rec.fs)


@pytest.fixture(scope="module")
def sim():
    return _rec(3)


@pytest.mark.parametrize("kw,min_db,lead_db", [({}, 13.0, 5.0), ({"grid_color": "grey"}, 13.0, 5.0),
                                               ({"speed": 50, "gain": 20}, 18.0, 8.0),
                                               ({"dpi": 100}, 9.0, 1.0)])
def test_rendered_png_round_trip(tmp_path, sim, kw, min_db, lead_db):
    path = tmp_path / "page.png"
    res = ecgcore.plot(sim, path, layout="3x4+II", **kw)
    out = ecgcore.digitize(path, fs=500)
    assert out.meta["source_kind"] == "raster"
    assert out.meta["layout"] == "3x4+II"
    # the pulse, not an assumption, sets speed and gain
    assert out.meta["speed"] == kw.get("speed", 25)
    assert out.meta["gain"] == kw.get("gain", 10)
    assert out.meta["px_per_mm"][0] == pytest.approx(kw.get("dpi", 200) / 25.4, rel=0.003)
    snr = _score(sim, res, out)
    assert np.nanmean(snr) > min_db, snr
    assert np.all(snr > lead_db), snr    # every lead found and named right
    assert all(0.5 < out.meta["confidence"][n] <= 1 for n in ecgcore.STANDARD_12)


def test_layout_12x1_and_real_record(tmp_path):
    rec = ecgcore.read(shared_path("data", "ptbxl", "00001_lr.hea")).conform()
    path = tmp_path / "p.png"
    res = ecgcore.plot(rec, path, layout="3x4")
    out = ecgcore.digitize(path, fs=rec.fs)
    assert out.meta["layout"] == "3x4"
    assert np.nanmean(_score(rec, res, out)) > 14


def test_12x1_layout(tmp_path):
    rec = _rec(7)
    path = tmp_path / "p.png"
    res = ecgcore.plot(rec, path, layout="12x1")
    out = ecgcore.digitize(path, fs=500)
    assert out.meta["layout"] == "12x1"
    assert np.nanmean(_score(rec, res, out)) > 13


def _damage(path, rng, angle=0.0, blur=0.0, noise=0.0, jpeg=None, shade=0.0):
    im = Image.open(path).convert("RGB")
    if angle:
        im = im.rotate(angle, resample=Image.BILINEAR, expand=False, fillcolor=(255, 255, 255))
    if blur:
        im = im.filter(ImageFilter.GaussianBlur(blur))
    a = np.asarray(im).astype(np.float32)
    if shade:   # scanner shading: darker towards one corner
        h, w = a.shape[:2]
        g = 1 - shade * (np.linspace(0, 1, w)[None, :] * np.linspace(0.3, 1, h)[:, None])
        a *= g[..., None]
    if noise:
        a += rng.normal(0, noise, a.shape)
    im = Image.fromarray(np.clip(a, 0, 255).astype(np.uint8))
    out = str(path).replace(".png", ".jpg" if jpeg else "_d.png")
    im.save(out, quality=jpeg) if jpeg else im.save(out)
    return out


@pytest.mark.parametrize("damage", [dict(angle=3.0), dict(blur=0.8, noise=8.0, jpeg=70),
                                    dict(shade=0.35, angle=-2.0)])
def test_damaged_pages(tmp_path, sim, rng, damage):
    path = tmp_path / "page.png"
    res = ecgcore.plot(sim, path, layout="3x4+II")
    out = ecgcore.digitize(_damage(path, rng, **damage), fs=500)
    if "angle" in damage:
        # PIL rotates counter-clockwise; the pipeline reports the line slope angle
        assert abs(abs(out.meta["rotation_deg"]) - abs(damage["angle"])) < 0.3
    assert np.nanmean(_score(sim, res, out)) > 10


def _kit_scores(profile, limit=None):
    root = shared_path("data", "ecg_pages")
    vals = []
    for png in sorted(glob.glob(os.path.join(root, profile, "*.png")))[:limit]:
        rec = os.path.basename(png)[:-6]
        z = np.load(os.path.join(root, "ground_truth", profile, rec + ".npz"))
        ref = z["signal"].T.astype(float)
        fs = float(z["fs"])
        out = ecgcore.digitize(png, fs=fs)
        est = np.full(ref.shape, np.nan)
        for j, name in enumerate(str(n) for n in z["leads"]):
            e = out.signal[out.leads.index(name)].astype(float)
            n = min(len(e), ref.shape[1])
            est[j, :n] = e[:n]
        vals.append(np.nanmean(challenge_snr(ref, est, fs)))
    return np.array(vals)


def test_ecg_image_kit_clean_pages():
    """Pages from another renderer (ecg-image-kit): the clean set's mean."""
    v = _kit_scores("clean")
    assert len(v) == 8
    assert v.mean() > 13, v
    assert np.all(v > 5), v


# ---------------------------------------------------------------------------------------------
# bad input


def test_blank_page(tmp_path):
    p = tmp_path / "blank.png"
    Image.new("RGB", (800, 600), (255, 255, 255)).save(p)
    with pytest.raises(DigitizeError, match="blank"):
        ecgcore.digitize(p)


def test_noise_photo_is_refused(tmp_path, rng):
    p = tmp_path / "photo.png"
    h, w = 600, 800
    grad = np.linspace(40, 220, w)[None, :, None] * np.ones((h, 1, 3))
    img = grad + rng.normal(0, 40, (h, w, 3))
    Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(p)
    with pytest.raises(DigitizeError):
        ecgcore.digitize(p)


def test_grid_only_page_is_refused(tmp_path):
    """Empty ECG paper: a grid but no trace rows."""
    rec = _rec(1)
    rec.signal[:] = np.nan
    p = tmp_path / "empty.png"
    ecgcore.plot(rec, p, layout="3x4+II", calibration=False, labels=False)
    with pytest.raises(DigitizeError):
        ecgcore.digitize(p)


def test_single_lead_strip(tmp_path, sim):
    from ecgcore.record import Record

    one = Record(sim.signal[1:2], sim.fs, ["II"])
    p = tmp_path / "strip.png"
    ecgcore.plot(one, p, layout="12x1")
    with pytest.raises(DigitizeError, match="single-lead"):
        ecgcore.digitize(p)


def test_unknown_layout(tmp_path, sim):
    from ecgcore.record import Record

    p = tmp_path / "five.png"
    ecgcore.plot(Record(sim.signal[:5], sim.fs, sim.leads[:5]), p, layout="12x1")
    with pytest.raises(DigitizeError, match="unknown layout"):
        ecgcore.digitize(p)


def test_forced_layout_mismatch(tmp_path, sim):
    p = tmp_path / "p.png"
    ecgcore.plot(sim, p, layout="3x4")
    with pytest.raises(DigitizeError, match="expects"):
        ecgcore.digitize(p, layout="12x1")

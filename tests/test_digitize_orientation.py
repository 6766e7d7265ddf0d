"""Pages that do not lie the right way up, and black-and-white scans without a grid."""

import numpy as np
import pytest

import ecgcore

PIL = pytest.importorskip("PIL")
from PIL import Image  # noqa: E402
from test_digitize_raster import _score  # noqa: E402


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    rec = ecgcore.simulate(1, seed=5)[0].conform()
    p = tmp_path_factory.mktemp("orient") / "page.png"
    res = ecgcore.plot(rec, p, dpi=200)
    return rec, res, Image.open(p).convert("RGB")


@pytest.mark.parametrize("turn", [90, 180, 270])
def test_turned_pages_are_read_upright(tmp_path, page, turn):
    # a landscape page scanned in portrait (it once read as garbage: a "layout" across its
    # columns, with no pulse; or refused) and a page upside down (pulses at the right end)
    rec, res, im = page
    p = tmp_path / f"t{turn}.png"
    im.rotate(turn, expand=True).save(p, dpi=(200, 200))
    out = ecgcore.digitize(p, fs=500)
    assert out.meta["digitize_flags"]["page_turned_deg"] == (360 - turn) % 360
    assert out.meta["pulses"] > 0 and out.meta["gain"] == 10 and out.meta["speed"] == 25
    assert np.nanmean(_score(rec, res, out)) > 16.0


def test_upright_page_is_read_once(tmp_path, page, monkeypatch):
    from ecgcore.digitization import raster
    rec, res, im = page
    p = tmp_path / "up.png"
    im.save(p)
    calls = []
    orig = raster._digitize_upright
    monkeypatch.setattr(raster, "_digitize_upright", lambda a, **kw: calls.append(a.shape) or orig(a, **kw))
    out = ecgcore.digitize(p, fs=500)
    assert len(calls) == 1 and "page_turned_deg" not in out.meta["digitize_flags"]


@pytest.mark.parametrize("dpi", [150, 300])
def test_bilevel_scan_without_grid(tmp_path, dpi):
    # a thresholded black-and-white scan (fax, TIFF G4): the light grid is gone, the scale
    # comes from the file's dpi; a thin trace's flat baseline fills most of its pixel row
    # and must not be removed as a grid line
    rec = ecgcore.simulate(1, seed=3)[0].conform()
    png = tmp_path / "c.png"
    res = ecgcore.plot(rec, png, dpi=dpi)
    tif = tmp_path / "bw.tif"
    Image.open(png).convert("L").point(lambda v: 255 if v > 140 else 0).convert("1").save(
        tif, dpi=(dpi, dpi), compression="group4")
    out = ecgcore.digitize(tif, fs=500)
    assert out.meta["scale_source"] == "dpi" and out.meta["layout"] == "3x4+II"
    assert np.nanmean(_score(rec, res, out)) > 14.5


def test_dithered_bilevel_scan(tmp_path):
    # a 1-bit scan that dithered the light grid into dots (17 "trace rows" found, refused before):
    # read again smoothed, the dots are a grid again
    rec = ecgcore.simulate(1, seed=3)[0].conform()
    png = tmp_path / "c.png"
    res = ecgcore.plot(rec, png, dpi=200)
    tif = tmp_path / "dither.tif"
    Image.open(png).convert("1").save(tif, dpi=(200, 200), compression="group4")   # Floyd-Steinberg
    out = ecgcore.digitize(tif, fs=500)
    assert out.meta["digitize_flags"]["dithered_page_smoothed"]
    assert out.meta["scale_source"] == "grid" and out.meta["pulses"] > 0
    assert np.nanmean(_score(rec, res, out)) > 15.0


def test_half_turn_needs_evidence(tmp_path):
    """A blurred, rotated, noisy 100-dpi page loses its pulses, and its limb leads do not
    hold Einthoven's law either way up; read upside down it came out with more
    confidence and was turned (-1.6 dB). Without pulses or consistent limb leads in
    the turned reading, the page is kept as it lies (6.5 dB)."""
    from test_digitize_raster import _damage, _rec

    rec = _rec(4)
    p = tmp_path / "page.png"
    res = ecgcore.plot(rec, p, dpi=100)
    q = _damage(p, np.random.default_rng(2), blur=0.8, noise=8.0, jpeg=70, angle=3.0)
    out = ecgcore.digitize(q, fs=500)
    assert "page_turned_deg" not in out.meta["digitize_flags"]
    assert np.nanmean(_score(rec, res, out)) > 3.0

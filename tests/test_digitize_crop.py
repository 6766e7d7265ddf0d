"""Pages cropped through their traces (a scan or photo that cuts the page's edge; the
augmentation of ecg-image-kit crops too).

The time axis is anchored on the end of the ink, which such a page does not show: a row
cut 0.24 s short was read as a 9.5-s page anchored at the cut, every column window moved
by 0.06-0.3 s. scipy's binary closing also eroded the last 12 px of a trace that ran into
the image's edge."""

import numpy as np
import pytest

import ecgcore

pytest.importorskip("PIL")
from PIL import Image  # noqa: E402
from test_digitize_raster import _rec, _score  # noqa: E402


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    rec = _rec(3)
    p = tmp_path_factory.mktemp("crop") / "page.png"
    res = ecgcore.plot(rec, p)
    return rec, res, p, ecgcore.digitize(p, fs=500)


def _crop(p, left=0.0, right=0.0):
    im = Image.open(p).convert("RGB")
    w, h = im.size
    q = str(p).replace(".png", f"_{left}_{right}.png")
    im.crop((int(left * w), 0, int(w - right * w), h)).save(q)
    return q, int(left * w)


def test_page_cut_on_the_right(page):
    rec, res, p, _ = page
    q, _ = _crop(p, right=0.04)
    out = ecgcore.digitize(q, fs=500)
    flags = out.meta["digitize_flags"]
    # the last 48 px (0.244 s) of every row are cut: anchored on the start, 10 s long
    assert flags["trace_cut_at_page_edge"] == pytest.approx(0.244, abs=0.03)
    assert out.signal.shape[1] == 5000
    # against the drawing's first sample (pixel centres at integers)
    assert abs(out.meta["x_origin_px"] - (res.panels[0].x_px[0] - 0.5)) < 1.0
    # measured 19.9 dB (uncut 20.5); the tree before read 18.2 (origin 58 px off)
    assert np.nanmean(_score(rec, res, out)) > 19.5


def test_page_cut_on_the_left(page):
    """Cut through the pulses and the rows' starts: anchored on the end, 10 s."""
    rec, res, p, _ = page
    q, dx = _crop(p, left=0.07)
    out = ecgcore.digitize(q, fs=500)
    assert out.meta["pulses"] == 0
    assert "trace_cut_at_page_edge" in out.meta["digitize_flags"]
    # the tree before: origin 24 px off, 19.5 dB; now 0.05 px, 20.8 dB
    assert abs(out.meta["x_origin_px"] + dx - (res.panels[0].x_px[0] - 0.5)) < 1.0
    assert np.nanmean(_score(rec, res, out)) > 20.0


def test_uncut_page_is_not_flagged(page):
    assert "trace_cut_at_page_edge" not in page[3].meta["digitize_flags"]

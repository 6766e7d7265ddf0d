"""Specks on a page: pepper noise, scanner dust, fax speckle.

0.1 % of a 200-dpi page's pixels flipped to black used to read -3 dB: specks near a trace
row chained into one run across the page, which moved the row's first ink column (and the
pulse search window with it), and the tracer jumped to specks beside the trace."""

import numpy as np
import pytest

import ecgcore
from ecgcore.digitization.grid import remove_specks

pytest.importorskip("PIL")
from PIL import Image  # noqa: E402
from test_digitize_raster import _rec, _score  # noqa: E402


def _speckle(path, rng, share, size=1, jpeg=None):
    """Pepper (and as much salt) on ``share`` of the pixels; pepper as size x size dots."""
    from scipy.ndimage import binary_dilation

    a = np.asarray(Image.open(path).convert("RGB")).copy()
    u = rng.random(a.shape[:2])
    pepper = u < share / 2
    if size > 1:
        pepper = binary_dilation(pepper, np.ones((size, size), bool))
    a[pepper] = 0
    a[u > 1 - share / 2] = 255
    out = str(path).replace(".png", ".jpg" if jpeg else "_s.png")
    Image.fromarray(a).save(out, **({"quality": jpeg} if jpeg else {}))
    return out


@pytest.mark.parametrize("share,size,jpeg,dpi", [(0.003, 1, 80, 200), (0.003, 2, None, 200),
                                                 (0.01, 1, None, 100)])
def test_speckled_page(tmp_path, share, size, jpeg, dpi):
    rec = _rec(3)
    p = tmp_path / "page.png"
    res = ecgcore.plot(rec, p, dpi=dpi)
    q = _speckle(p, np.random.default_rng(1), share, size, jpeg)
    out = ecgcore.digitize(q, fs=500)
    assert out.meta["pulses"] == 4
    assert out.meta["digitize_flags"]["specks_removed"] > 1000
    # measured 20.3 / 17.6 / 13.9 dB (clean: 20.5 at 200 dpi, 15.6 at 100 dpi); the
    # tree before read -3.1 / -3.3 / 12.6 dB with 0 / 0 / 2 pulses
    assert np.nanmean(_score(rec, res, out)) > (16.0 if dpi == 200 else 12.0)


def test_clean_page_has_no_specks(tmp_path):
    rec = _rec(3)
    p = tmp_path / "page.png"
    ecgcore.plot(rec, p)
    out = ecgcore.digitize(p, fs=500)
    assert "specks_removed" not in out.meta["digitize_flags"]


def test_remove_specks_keeps_strokes():
    rng = np.random.default_rng(0)
    ink = np.zeros((60, 80), np.float32)
    ink[30, 5:75] = rng.uniform(0.6, 1.0, 70)     # a trace
    ink[10:22, 40] = 0.35                        # a faint steep stroke, 12 px (1.5 mm)
    ink[50:52, 10:12] = 1.0                      # a 2x2 dust speck
    ink[5, 70] = 0.9                             # a single pepper pixel
    ink[4:7, 69:72] = np.maximum(ink[4:7, 69:72], 0.15)   # with a faint JPEG halo
    ink[31:33, 20:22] = 1.0                      # a speck touching the trace: part of it
    ink[45:53, 60:62] = 0.8                      # a label stroke, 8 px (1 mm)
    wt = ink.copy()
    kept = ink.copy()
    kept[50:52, 10:12] = 0
    kept[4:7, 69:72] = 0
    n = remove_specks(ink, wt, px_per_mm=8.0)
    assert n == 4 + 9
    np.testing.assert_array_equal(ink, kept)
    np.testing.assert_array_equal(wt, kept)

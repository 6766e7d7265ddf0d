"""Faded ink: thermal ECG paper fades (and unevenly) to a light grey trace on yellowed
paper. The raster reader measures the trace's contrast per tile and scales the page's
darkness up where it is faded; a page with dark ink, or an empty region, is left alone.

Every score is against ``ecgcore.plot``'s exact drawing of the record."""

import numpy as np
import pytest

import ecgcore
from ecgcore.errors import DigitizeError

pytest.importorskip("PIL")
from PIL import Image  # noqa: E402
from test_digitize_raster import _damage, _rec, _score  # noqa: E402


@pytest.mark.parametrize("lo,hi,dpi", [(0.3, 0.3, 200), (0.25, 0.5, 200), (0.25, 1.0, 200),
                                        (0.3, 0.3, 100)])
def test_faded_pages_read(tmp_path, lo, hi, dpi):
    """Ink at 25-50 % of its darkness, or faded on one side only (25 % rising to fresh):
    the previous reader refused such pages as blank (a trace lighter than mid-grey),
    lost their calibration pulses (a page faded on its left side: 16 dB with gain and
    speed assumed) or, at half contrast, the 100-dpi page's pulses (4-5 dB). Now they
    read like a fresh page (clean: 20.5 dB at 200 dpi, 15.5 at 100 dpi for this
    record)."""
    rec = _rec(3)
    src = tmp_path / "page.png"
    res = ecgcore.plot(rec, src, dpi=dpi)
    q = _damage(src, np.random.default_rng(1), fade=(lo, hi), noise=6.0, jpeg=80)
    out = ecgcore.digitize(q, fs=500)
    flags = out.meta["digitize_flags"]
    assert lo * 0.5 < flags["faded_ink_contrast"] < hi
    assert out.meta["pulses"] >= 3
    assert "gain_assumed" not in flags and "page_turned_deg" not in flags
    assert np.nanmean(_score(rec, res, out)) > (18.0 if dpi == 200 else 13.0)


def test_dark_ink_and_empty_regions_are_left_alone(tmp_path):
    """A fresh page is not stretched, nor is one whose upper half is empty paper (its
    tiles hold only grid lines and noise: the darkness of an empty tile is not the
    ink's)."""
    from ecgcore.digitization.raster import _restore_contrast

    rec = _rec(4)
    src = tmp_path / "page.png"
    ecgcore.plot(rec, src)
    a = np.asarray(Image.open(src).convert("RGB")).astype(np.float32) / 255
    vmax, vmin = a.max(axis=2), a.min(axis=2)
    paper = float(np.median(vmax))
    assert _restore_contrast(vmax, vmin, paper)[2] is None
    tall = np.concatenate([np.full((vmax.shape[0], vmax.shape[1]), paper, np.float32), vmax])
    rng = np.random.default_rng(2)
    tall += rng.normal(0, 0.02, tall.shape).astype(np.float32)
    assert _restore_contrast(tall, tall.copy(), paper)[2] is None
    # the same page faded: measured and stretched to a dark trace
    faded = paper - (paper - vmax) * 0.3
    v2, _, c = _restore_contrast(faded.copy(), faded.copy(), paper)
    assert 0.15 < c < 0.31
    assert float(np.percentile(1 - v2 / paper, 99.9)) > 0.8


def test_blank_page_still_refused(tmp_path):
    p = tmp_path / "blank.png"
    rng = np.random.default_rng(0)
    a = np.clip(235 + rng.normal(0, 3, (1100, 1600, 3)), 0, 255).astype(np.uint8)
    Image.fromarray(a).save(p)
    with pytest.raises(DigitizeError, match="blank page"):
        ecgcore.digitize(p)

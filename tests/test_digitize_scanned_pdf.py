"""Scanned PDFs (pages that are images): rendered at the scan's own resolution, the first
page with an ECG taken, PDFium used under the process-wide lock."""

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import ecgcore
from ecgcore.errors import DigitizeError

PIL = pytest.importorskip("PIL")
pytest.importorskip("pypdfium2")
from PIL import Image  # noqa: E402
from test_digitize_raster import _score  # noqa: E402


@pytest.fixture(scope="module")
def sim():
    r = ecgcore.simulate(n=1, fs=500, duration=10, seed=3)
    return (r[0] if isinstance(r, list) else r).conform()


def _scan(tmp_path, rec, dpi, pages_before=0, name="scan.pdf"):
    """A PDF holding the page as an image at ``dpi`` (what a scanner writes: Pillow
    stores it as JPEG), after ``pages_before`` blank scanned pages."""
    png = tmp_path / f"page{dpi}.png"
    res = ecgcore.plot(rec, png, dpi=dpi)
    page = Image.open(png).convert("RGB")
    blank = [Image.new("RGB", page.size, (255, 255, 255)) for _ in range(pages_before)]
    first, rest = (blank + [page])[0], (blank + [page])[1:]
    path = tmp_path / name
    first.save(path, resolution=float(dpi), save_all=True, append_images=rest)
    return path, res


@pytest.mark.parametrize("dpi,render", [(300, 300), (150, 200)])
def test_scan_rendered_at_its_resolution(tmp_path, sim, dpi, render):
    path, res = _scan(tmp_path, sim, dpi)
    out = ecgcore.digitize(path, fs=500)
    assert out.meta["source_kind"] == "raster" and out.meta["page"] == 0
    # the grid's period says how many pixels a millimetre got: the render's resolution
    assert out.meta["px_per_mm"][0] == pytest.approx(render / 25.4, rel=0.01)
    assert np.nanmean(_score(sim, res, out)) > 17.5


def test_forced_render_resolution(tmp_path, sim):
    path, _ = _scan(tmp_path, sim, 300)
    out = ecgcore.digitize(path, fs=500, dpi=100)
    assert out.meta["px_per_mm"][0] == pytest.approx(100 / 25.4, rel=0.01)


def test_first_page_with_an_ecg_is_read(tmp_path, sim):
    path, res = _scan(tmp_path, sim, 200, pages_before=2)
    out = ecgcore.digitize(path, fs=500)
    assert out.meta["page"] == 2
    assert np.nanmean(_score(sim, res, out)) > 17.5


def test_no_page_with_an_ecg(tmp_path):
    path = tmp_path / "blank.pdf"
    pages = [Image.new("RGB", (1600, 1100), (255, 255, 255)) for _ in range(3)]
    pages[0].save(path, resolution=200.0, save_all=True, append_images=pages[1:])
    with pytest.raises(DigitizeError, match="no ECG on any of the 3 pages.*blank page"):
        ecgcore.digitize(path)


def test_threads_read_scans_alike(tmp_path, sim):
    # PDFium is not thread-safe: rendering holds ecgcore's process-wide PDFium lock
    path, _ = _scan(tmp_path, sim, 200)
    one = ecgcore.digitize(path, fs=500).signal
    with ThreadPoolExecutor(3) as pool:
        outs = list(pool.map(lambda _: ecgcore.digitize(path, fs=500).signal, range(3)))
    for o in outs:
        np.testing.assert_array_equal(o, one)


def test_large_scans_are_scaled_down_without_pillow_warnings(tmp_path, sim, monkeypatch):
    import warnings

    from ecgcore.digitization import raster

    png = tmp_path / "big.png"
    res = ecgcore.plot(sim, png, dpi=300)
    w, h = Image.open(png).size
    # a smaller pixel budget stands in for a 1200-dpi scan; Pillow's own limit is set so
    # that this page is past it (Pillow warns there, and only refuses beyond twice it)
    monkeypatch.setattr(raster, "_MAX_PIXELS", int(w * h / 2.25))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", int(w * h / 1.5))
    with warnings.catch_warnings():
        warnings.simplefilter("error")   # no DecompressionBombWarning reaches the caller
        rgb, dpi = raster.load_rgb(png)
        out = ecgcore.digitize(png, fs=500)
    assert rgb.shape[1] == pytest.approx(w / 1.5, abs=1) and dpi == pytest.approx(200, rel=0.01)
    assert out.meta["px_per_mm"][0] == pytest.approx(200 / 25.4, rel=0.01)
    assert np.nanmean(_score(sim, res, out)) > 17.5

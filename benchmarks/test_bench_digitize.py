"""pytest-benchmark: raster digitisation of one 200-dpi page rendered by ecgcore.plot."""

import numpy as np
import pytest

import ecgcore


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    rec = ecgcore.simulate(n=1, fs=500, duration=10, seed=3)
    rec = (rec[0] if isinstance(rec, list) else rec).conform()
    path = tmp_path_factory.mktemp("dig") / "page.png"
    ecgcore.plot(rec, path, layout="3x4+II", dpi=200)
    ecgcore.digitize(path)   # compile the numba kernels outside the timing
    return path


def test_bench_raster_page_200dpi(benchmark, page):
    out = benchmark(ecgcore.digitize, page, fs=500)
    assert out.meta["layout"] == "3x4+II"
    assert np.isfinite(out.signal).any()


@pytest.fixture(scope="module")
def grey():
    return np.random.default_rng(0).random((1700, 2200), dtype=np.float32)   # a 200-dpi page


@pytest.mark.parametrize("order", [3, 1])
def test_bench_rotate_page_ecgcore(benchmark, grey, order):
    from ecgcore.digitization import grid as G

    out = benchmark(G.rotate, grey, 2.0, 1.0, order=order)
    assert out.shape == grey.shape


def test_bench_rotate_page_scipy_bilinear(benchmark, grey):
    # the deskew before this kernel: scipy.ndimage.affine_transform, bilinear
    from scipy.ndimage import affine_transform

    t = np.radians(2.0)
    c, s = np.cos(t), np.sin(t)
    cy, cx = (grey.shape[0] - 1) / 2, (grey.shape[1] - 1) / 2
    mat = np.array([[c, s], [-s, c]])
    off = np.array([cy, cx]) - mat @ np.array([cy, cx])
    out = benchmark(affine_transform, grey, mat, offset=off, order=1, mode="constant", cval=1.0,
                    output=np.float32)
    assert out.shape == grey.shape

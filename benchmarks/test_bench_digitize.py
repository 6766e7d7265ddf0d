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

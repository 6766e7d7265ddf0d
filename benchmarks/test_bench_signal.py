"""pytest-benchmark timings of the ecgcore.signal kernels on one 12-lead 10 s 500 Hz record."""

import numpy as np
import pytest

import ecgcore.signal as S

pytest.importorskip("pytest_benchmark")


@pytest.fixture(scope="module")
def rec():
    rng = np.random.default_rng(0)
    return (np.cumsum(rng.standard_normal((12, 5000)), axis=-1) * 0.01).astype(np.float32)


def test_bench_chain(benchmark, rec):
    steps = [("bandpass", {"low": 0.5, "high": 40}), ("notch", {"freq": 50}), ("resample", {"fs_out": 250}),
             ("zscore", {}), ("segment", {"length_s": 5})]
    out = benchmark(S.chain, rec, 500, steps)
    assert out.shape == (2, 12, 1250)


def test_bench_bandpass(benchmark, rec):
    assert benchmark(S.bandpass, rec, 500, 0.5, 40).shape == rec.shape


def test_bench_resample_poly(benchmark, rec):
    assert benchmark(S.resample, rec, 500, 250).shape == (12, 2500)


def test_bench_median_baseline(benchmark, rec):
    # k = 201 (ECGFounder): the zmm block-sort kernel on AVX-512 machines
    assert benchmark(S.median_baseline, rec, 500, 0.4).shape == rec.shape


def test_bench_zscore(benchmark, rec):
    assert benchmark(S.zscore, rec).shape == rec.shape


def test_bench_running_median_long_window(benchmark, rec):
    # k = 501 (1 s at 500 Hz): the zmm block sort (512-sample blocks) on AVX-512 machines
    assert benchmark(S.running_median, rec, 501).shape == rec.shape


def test_bench_running_median_very_long_window(benchmark, rec):
    # k = 1001 (2 s): beyond the zmm kernel's 511, the scalar radix block sort
    assert benchmark(S.running_median, rec, 1001).shape == rec.shape


def test_bench_ecgfounder_preset(benchmark, rec):
    from ecgcore import presets
    batch = np.repeat(rec[None], 8, axis=0)
    assert benchmark(presets.preprocess_batch, batch, 500, "ecgfounder").shape == (8, 1, 12, 5000)

"""pytest-benchmark: ecgcore vs wfdb reading one 12-lead 10 s 500 Hz WFDB record.

Run with ``python -m pytest benchmarks/test_bench_read.py --benchmark-only``.
"""

from __future__ import annotations

import os
import sys

import numpy as np
import pytest

wfdb = pytest.importorskip("wfdb")
sys.path.insert(0, os.path.dirname(__file__))
from bench_read import make_records  # noqa: E402

from ecgcore.io.wfdb import read  # noqa: E402


@pytest.fixture(scope="module", params=[16, 212])
def record_path(request, tmp_path_factory):
    root = tmp_path_factory.mktemp(f"wfdb{request.param}")
    return make_records(str(root), 1, request.param)[0]


def test_ecgcore_read(benchmark, record_path):
    rec = benchmark(read, record_path)
    assert rec.signal.shape == (12, 5000)


def test_wfdb_rdrecord(benchmark, record_path):
    ref = benchmark(wfdb.rdrecord, record_path)
    assert np.allclose(read(record_path).signal, ref.p_signal.T, atol=1e-5)

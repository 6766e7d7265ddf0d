"""pytest-benchmark: forward passes of the tiny model configurations (float32, CPU, batch 8).

Full-size throughput, memory and GFLOP/s are measured by benchmarks/bench_models.py.
"""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from ecgcore import models  # noqa: E402

CASES = {"ecgfm_tiny": (12, 2500), "net1d_tiny": (12, 5000), "fcn_lvh": (8, 400), "resnet_1d_tiny": (8, 400),
         "resnet_tiny": (3, 64, 64), "efficientnet_tiny": (3, 64, 64)}


@pytest.mark.parametrize("name", list(CASES))
def test_forward_tiny(benchmark, name):
    torch.manual_seed(0)
    m = models.create(name).eval()
    x = torch.randn(8, *CASES[name])
    kw = {"clinical": torch.rand(8, m.head.n_clinical)} if getattr(m.head, "n_clinical", 0) else {}
    with torch.inference_mode():
        y = benchmark(lambda: m(x, **kw))
    assert y.shape[0] == 8


def test_matmul_reference(benchmark):
    a, b = torch.randn(8 * 156, 768), torch.randn(768, 3072)
    with torch.inference_mode():
        benchmark(lambda: a @ b)

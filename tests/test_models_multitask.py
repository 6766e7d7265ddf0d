"""Uncertainty weighting (CCTA and Kendall forms) and PCGrad against hand-computed values."""

from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch")

from ecgcore.models.multitask import UncertaintyWeighting, pcgrad, pcgrad_backward  # noqa: E402


def test_ccta_uncertainty_weighting_by_hand():
    uw = UncertaintyWeighting(2, form="ccta")
    with torch.no_grad():
        uw.log_vars.copy_(torch.tensor([0.5, -1.0]))
    w = torch.tensor([2.0, 3.0], requires_grad=True)
    L = w ** 2  # L = [4, 9]
    # model losses exp(-s) L with s detached: 4e^-0.5, 9e^1
    tl = uw.task_losses(L)
    assert torch.allclose(tl, torch.tensor([4 * math.exp(-0.5), 9 * math.e]))
    tl.sum().backward()
    assert uw.log_vars.grad is None  # no gradient reaches s along the model path
    assert torch.allclose(w.grad, torch.tensor([2 * 2 * math.exp(-0.5), 2 * 3 * math.e]))
    # L_s = sum exp(-s) stopgrad(L) + sum s; dL_s/ds = -exp(-s) L + 1; no 1/2 anywhere
    ls = uw.weight_loss(L)
    assert math.isclose(float(ls.detach()), 4 * math.exp(-0.5) + 9 * math.e + 0.5 - 1.0, rel_tol=1e-6)
    w.grad = None
    ls.backward()
    assert w.grad is None
    assert torch.allclose(uw.log_vars.grad, torch.tensor([1 - 4 * math.exp(-0.5), 1 - 9 * math.e]))


def test_ccta_stationary_point_is_log_loss():
    uw = UncertaintyWeighting(3, form="ccta")
    L = torch.tensor([0.2, 1.0, 3.0])
    with torch.no_grad():
        uw.log_vars.copy_(L.log())
    uw.weight_loss(L).backward()
    assert torch.allclose(uw.log_vars.grad, torch.zeros(3), atol=1e-6)


def test_kendall_form_has_the_half():
    uw = UncertaintyWeighting(2, form="kendall", kinds=["regression", "classification"])
    with torch.no_grad():
        uw.log_vars.copy_(torch.tensor([math.log(4.0), 0.0]))  # sigma^2 = 4, 1
    L = torch.tensor([8.0, 0.7])
    total = uw(L)
    # regression: L/(2 sigma^2) + log sigma = 8/8 + 0.5 log 4; classification: L/sigma^2 + log sigma
    assert math.isclose(float(total.detach()), 1.0 + 0.5 * math.log(4.0) + 0.7 + 0.0, rel_tol=1e-6)
    total.backward()
    assert torch.allclose(uw.log_vars.grad, torch.tensor([-0.5 * 8 / 4 + 0.5, -0.7 + 0.5]))


def test_pcgrad_fixed_order_ccta_by_hand():
    g1 = torch.tensor([1.0, 0.0])
    g2 = torch.tensor([-1.0, 1.0])
    g3 = torch.tensor([0.0, -1.0])
    out = pcgrad([g1, g2, g3], order="fixed")
    # i=0: g1.g2 = -1 < 0 -> g1 - (-1/2) g2 = [0.5, 0.5]; then with g3: 0.5*0 + 0.5*-1 = -0.5 < 0
    #      -> [0.5, 0.5] - (-0.5/1) [0, -1] = [0.5, 0]
    # i=1: g2.g3 = -1 < 0 -> g2 - (-1) g3 = [-1, 0]; g3 never projected
    expected = (torch.tensor([0.5, 0.0]) + torch.tensor([-1.0, 0.0]) + g3) / 3
    assert torch.allclose(out, expected)
    # zero-norm later task: no projection, no NaN
    out0 = pcgrad([g1, torch.zeros(2)], order="fixed")
    assert torch.allclose(out0, g1 / 2)


def test_pcgrad_random_order_yu_et_al():
    g1 = torch.tensor([1.0, 0.0])
    g2 = torch.tensor([-1.0, 1.0])
    out = pcgrad([g1, g2], order="random", generator=torch.Generator().manual_seed(0))
    # g1' = g1 - (-1/2) g2 = [0.5, 0.5]; g2' = g2 - (-1/1) g1 = [0, 1]; summed
    assert torch.allclose(out, torch.tensor([0.5, 1.5]))
    # non-conflicting gradients pass through unchanged
    assert torch.allclose(pcgrad([g1, torch.tensor([1.0, 1.0])]), torch.tensor([2.0, 1.0]))
    # 3 tasks: the visiting order matters; by hand g1' in {[.5,0], [.5,.5]}, g2' = [0,0],
    # g3' in {[-.5,-.5], [0,-.5]}, so the sum is one of four vectors
    g3 = torch.tensor([0.0, -1.0])
    outs = {tuple(pcgrad([g1, g2, g3], generator=torch.Generator().manual_seed(s)).tolist()) for s in range(12)}
    assert outs <= {(0.0, -0.5), (0.5, -0.5), (0.0, 0.0), (0.5, 0.0)} and len(outs) > 1


def test_pcgrad_backward_writes_grads():
    w = torch.nn.Parameter(torch.tensor([1.0, 2.0]))
    b = torch.nn.Parameter(torch.tensor([0.5]))
    l1 = (w * torch.tensor([1.0, 0.0])).sum()  # grad [1, 0], b unused -> zeros
    l2 = (w * torch.tensor([-1.0, 1.0])).sum() + b.sum() * 0.0
    flat = pcgrad_backward([l1, l2], [w, b], order="fixed")
    # g1 = [1,0,0], g2 = [-1,1,0]: g1 -> [0.5,0.5,0]; mean with g2 = [-0.25, 0.75, 0]
    assert torch.allclose(flat, torch.tensor([-0.25, 0.75, 0.0]))
    assert torch.allclose(w.grad, torch.tensor([-0.25, 0.75])) and torch.allclose(b.grad, torch.zeros(1))

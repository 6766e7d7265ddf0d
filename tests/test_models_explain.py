"""Saliency and CAMs against closed forms, and per-wave aggregation against a direct computation."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from ecgcore import models  # noqa: E402
from ecgcore.models import explain  # noqa: E402


class _Linear(torch.nn.Module):
    def __init__(self, w):
        super().__init__()
        self.w = torch.nn.Parameter(w)

    def forward(self, x):
        return (x * self.w).sum(dim=(1, 2)).unsqueeze(1) ** 2


def test_input_gradient_and_integrated_gradients_closed_form(rng):
    w = torch.from_numpy(rng.standard_normal((3, 50)).astype(np.float64))
    m = _Linear(w)
    x = torch.from_numpy(rng.standard_normal((2, 3, 50)))
    g = explain.input_gradient(m, x)
    s = (x * w).sum(dim=(1, 2))
    assert torch.allclose(g, 2 * s[:, None, None] * w)
    ig = explain.integrated_gradients(m, x, steps=16)
    # f = s^2 is quadratic in the path: midpoint rule is exact, completeness holds exactly
    assert torch.allclose(ig.sum(dim=(1, 2)), s ** 2)
    assert torch.allclose(ig, x * w * s[:, None, None])


def test_grad_cam_equals_cam_for_gap_linear_head(rng):
    """Target layer followed by global average pooling and a Linear: Grad-CAM = ReLU(sum_c w_c A_c) / L."""
    m = models.create("net1d_tiny").eval()
    x = torch.from_numpy(rng.standard_normal((2, 12, 1000)).astype(np.float32))
    with torch.no_grad():
        A = m.forward_features(x)
    W = m.head.fc.weight.detach()
    refs = torch.relu(torch.einsum("kc,bcl->kbl", W, A)) / A.shape[-1]
    t = int(refs.flatten(1).amax(1).argmax())  # a class whose CAM is not all zero
    cam = explain.grad_cam(m, x, target=t, upsample=False)
    assert float(refs[t].max()) > 0 and torch.allclose(cam, refs[t], atol=1e-6)
    w = W[t]
    up = explain.grad_cam(m, x, target=t)
    assert up.shape == (2, 1000) and float(up.max()) > 0
    # Grad-CAM++ on a GAP-linear head: alpha = 1 / (2 + sum_l A * w/L)... check the closed form
    pp = explain.grad_cam_pp(m, x, target=t, upsample=False)
    g = (w / A.shape[-1])[None, :, None].expand_as(A)
    denom = 2 * g ** 2 + A.sum(-1, keepdim=True) * g ** 3
    alpha = torch.where(denom != 0, g ** 2 / denom, torch.zeros_like(denom))
    wc = (alpha * torch.relu(g)).sum(-1, keepdim=True)
    assert torch.allclose(pp, torch.relu((wc * A).sum(1)), atol=1e-6)


def test_grad_cam_image_backbone(rng):
    m = models.create("resnet_tiny").eval()
    x = torch.from_numpy(rng.standard_normal((1, 3, 64, 64)).astype(np.float32))
    cam = explain.grad_cam(m, x, target=1)
    assert cam.shape == (1, 64, 64) and torch.isfinite(cam).all()
    with torch.no_grad():
        A = m.forward_features(x)
    W = m.head.fc.weight.detach()
    refs = torch.relu(torch.einsum("kc,bchw->kbhw", W, A)) / (A.shape[-1] * A.shape[-2])
    t = int(refs.flatten(1).amax(1).argmax())
    small = explain.grad_cam(m, x, target=t, upsample=False)
    assert float(refs[t].max()) > 0 and torch.allclose(small, refs[t], atol=1e-6)
    assert explain.grad_cam_pp(m, x, target=1).shape == (1, 64, 64)


def test_wave_saliency_matches_direct_loops(rng):
    n = 2500
    sal = rng.standard_normal((12, n))
    fid = {"P_on": np.array([100, 600, 1100, -1]), "P_off": np.array([150, 650, 1150, -1]),
           "QRS_on": np.array([200, 700, 1200, 1700]), "QRS_off": np.array([250, 745, 1260, 1750]),
           "T_on": np.array([350, 850, 1350, 1850]), "T_off": np.array([450, 960, -1, 1950])}
    out = explain.wave_saliency(sal, fid)
    v = np.abs(sal.mean(0))
    spans = {"P": [(100, 150), (600, 650), (1100, 1150)], "PQ": [(150, 200), (650, 700), (1150, 1200)],
             "QRS": [(200, 250), (700, 745), (1200, 1260), (1700, 1750)],
             "ST": [(250, 350), (745, 850), (1260, 1350), (1750, 1850)],
             "T": [(350, 450), (850, 960), (1850, 1950)], "TP": [(450, 600), (960, 1100)]}
    for wave, sp in spans.items():
        ref = np.concatenate([v[a:b] for a, b in sp]).mean()
        assert out[wave] == pytest.approx(ref, rel=1e-12), wave
        assert out["n_beats"][wave] == len(sp)
    assert out["all"] == pytest.approx(v.mean())
    nan = explain.wave_saliency(sal[0], {k: np.array([-1]) for k in fid})
    assert np.isnan(nan["P"]) and nan["n_beats"]["P"] == 0

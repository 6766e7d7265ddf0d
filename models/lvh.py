"""Median-beat networks of the LVH study (Naderi, Kaplan et al. 2025; facts/lvh.md section 3).

* ``fcn_lvh``: Wang et al. 2016 FCN (Fawaz 2019 style): three Conv1d('same') -> BN ->
  LeakyReLU(0.01) -> MaxPool(2, 2, padding 1) blocks (128/256/128 channels,
  kernels 8/5/3), dropout, global average pool, late fusion of 16 clinical
  variables, MLP head Linear(128+m, 128+m) -> LeakyReLU -> Dropout -> Linear.
  292,897 parameters with 16 clinical variables and one output.
* ``fcn_lvh_small``: the ZHOU2024 variant (32/32/32 channels, all kernels 3), 9,601 parameters.
* ``resnet34_1d`` / ``resnet18_1d``: Soto et al. 2022's 1-D torchvision-style ResNet
  (stem Conv k7 s2 + max-pool, BasicBlocks with k=3), 7,501,217 parameters with meta.

Input: (batch, 8, 400), leads I, II, V1-V6 of one 0.8-s median beat at 500 Hz, in mV.
"""

from __future__ import annotations

from torch import nn

from ecgcore.errors import ConfigError

from .heads import build_head, LateFusionHead, LinearHead, lvh_fusion_mlp
from .registry import ECGModel, register_model

__all__ = ["FCN1D", "ResNet1D"]

LVH_LEADS = ("I", "II", "V1", "V2", "V3", "V4", "V5", "V6")
N_CLINICAL = 16


def _lvh_head(heads, width, n_clinical, n_out, lin_dropout):
    if heads is not None:
        return build_head(heads, width)
    if n_clinical:
        return LateFusionHead(width, n_clinical, lvh_fusion_mlp(width + n_clinical, n_out, lin_dropout))
    return None


class _SameConv1d(nn.Conv1d):
    """``nn.Conv1d(..., padding="same")`` with the padding done explicitly.

    Same parameters (names included) and the same output as torch's ``"same"``
    (left pad ``(k - 1) // 2``, the rest on the right), without the warning and the
    extra padded copy torch makes for even kernels such as the FCN's first (8).
    """

    def __init__(self, c_in, c_out, k):
        super().__init__(c_in, c_out, k, padding=0)
        total = k - 1
        self._pad = (total // 2, total - total // 2)

    def forward(self, x):
        return super().forward(nn.functional.pad(x, self._pad))


class FCN1D(ECGModel):
    family = "lvh"

    def __init__(self, heads=None, channels=(128, 256, 128), kernels=(8, 5, 3), in_channels=8, n_clinical=N_CLINICAL,
                 n_out=1, conv_dropout=0.4, lin_dropout=0.6, batch_norm=True, max_pool=True, samples=400):
        super().__init__()
        if len(channels) != 3 or len(kernels) != 3:
            raise ConfigError("FCN1D has exactly three conv blocks")
        self.config = dict(channels=list(channels), kernels=list(kernels), in_channels=in_channels,
                           n_clinical=n_clinical, n_out=n_out, conv_dropout=conv_dropout,
                           lin_dropout=lin_dropout, batch_norm=batch_norm, max_pool=max_pool, samples=samples)
        c_in = in_channels
        for i, (c, k) in enumerate(zip(channels, kernels)):
            layers = [_SameConv1d(c_in, c, k),
                      nn.BatchNorm1d(c) if batch_norm else nn.Identity(), nn.LeakyReLU(0.01),
                      nn.MaxPool1d(2, 2, padding=1) if max_pool else nn.Identity()]
            setattr(self, f"in{i + 1}", nn.Sequential(*layers))
            c_in = c
        self.dropout = nn.Dropout(conv_dropout)
        self.num_features = c_in
        self.head_spec = heads
        head = _lvh_head(heads, c_in, n_clinical, n_out, lin_dropout)
        # without clinical variables the study's head is the same MLP on 128 inputs
        self.head = head if head is not None else lvh_fusion_mlp(c_in, n_out, lin_dropout)
        self.input_contract = {"leads": in_channels, "fs": 500, "samples": samples, "fixed_length": True,
                               "lead_names": LVH_LEADS if in_channels == 8 else None,
                               "preset": "lvh", "layout": "(batch, leads, samples) median beat, mV"}
        self.cam_layer = "in3"

    def forward_features(self, x):
        return self.dropout(self.in3(self.in2(self.in1(x))))


class _Block1d(nn.Module):
    def __init__(self, c_in, c_out, stride):
        super().__init__()
        self.conv1 = nn.Conv1d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm1d(c_out)
        self.relu = nn.ReLU(inplace=False)
        self.conv2 = nn.Conv1d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm1d(c_out)
        self.downsample = (nn.Sequential(nn.Conv1d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm1d(c_out))
                           if stride != 1 or c_in != c_out else None)

    def forward(self, x):
        out = self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))
        idt = x if self.downsample is None else self.downsample(x)
        return self.relu(out + idt)


class ResNet1D(ECGModel):
    family = "lvh"

    def __init__(self, heads=None, layers=(3, 4, 6, 3), widths=(64, 128, 256, 512), in_channels=8,
                 n_clinical=N_CLINICAL, n_out=1, conv_dropout=0.4, lin_dropout=0.6, samples=400):
        super().__init__()
        self.config = dict(layers=list(layers), widths=list(widths), in_channels=in_channels,
                           n_clinical=n_clinical, n_out=n_out, conv_dropout=conv_dropout,
                           lin_dropout=lin_dropout, samples=samples)
        self.conv1 = nn.Conv1d(in_channels, widths[0], 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm1d(widths[0])
        self.relu = nn.ReLU()
        self.maxpool = nn.MaxPool1d(3, 2, 1)
        c_in = widths[0]
        for i, (n, w) in enumerate(zip(layers, widths)):
            blocks = [_Block1d(c_in if j == 0 else w, w, (1 if i == 0 else 2) if j == 0 else 1) for j in range(n)]
            setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
            c_in = w
        self.n_stages = len(layers)
        self.dropout = nn.Dropout(conv_dropout)
        for m in self.modules():
            if isinstance(m, nn.Conv1d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        self.num_features = c_in
        self.head_spec = heads
        head = _lvh_head(heads, c_in, n_clinical, n_out, lin_dropout)
        self.head = head if head is not None else LinearHead(c_in, n_out)
        self.input_contract = {"leads": in_channels, "fs": 500, "samples": samples, "fixed_length": True,
                               "lead_names": LVH_LEADS if in_channels == 8 else None,
                               "preset": "lvh", "layout": "(batch, leads, samples) median beat, mV"}
        self.cam_layer = f"layer{len(layers)}"

    def forward_features(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        for i in range(self.n_stages):
            x = getattr(self, f"layer{i + 1}")(x)
        return self.dropout(x)


@register_model("fcn_lvh", family="lvh")
def fcn_lvh(heads=None, **cfg):
    """LVH study FCN (WANG2016) with late fusion of 16 clinical variables; (B, 8, 400) median beat, preset 'lvh'."""
    return FCN1D(heads=heads, **cfg)


@register_model("fcn_lvh_small", family="lvh")
def fcn_lvh_small(heads=None, **cfg):
    """LVH study small FCN (ZHOU2024: 32/32/32 channels, kernels 3)."""
    return FCN1D(heads=heads, **dict(dict(channels=(32, 32, 32), kernels=(3, 3, 3)), **cfg))


@register_model("resnet34_1d", family="lvh")
def resnet34_1d(heads=None, **cfg):
    """Soto et al. 2022 1-D ResNet34 (8 leads, k=3 BasicBlocks) with late clinical fusion."""
    return ResNet1D(heads=heads, **cfg)


@register_model("resnet18_1d", family="lvh")
def resnet18_1d(heads=None, **cfg):
    """Soto et al. 2022 1-D ResNet18."""
    return ResNet1D(heads=heads, **dict(dict(layers=(2, 2, 2, 2)), **cfg))


@register_model("resnet_1d_tiny", family="lvh")
def resnet_1d_tiny(heads=None, **cfg):
    """Tiny 1-D ResNet for tests (one block per stage, widths 8/16/16/32)."""
    return ResNet1D(heads=heads, **dict(dict(layers=(1, 1, 1, 1), widths=(8, 16, 16, 32)), **cfg))

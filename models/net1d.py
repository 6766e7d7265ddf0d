"""ECGFounder's Net1D (Li et al., "An Electrocardiogram Foundation Model Built on over 10 Million
Recordings with External Evaluation across Multiple Domains", NEJM AI 2025) in plain PyTorch.

Facts in facts/ecgfounder_ccta.md section 1; parameter names equal the
reference's (``first_conv.conv``, ``first_bn``, ``stage_list.i.block_list.j.*``)
except the classifier, ``dense`` -> ``head.fc``.  Details that matter for
parity: SAME padding with the odd extra sample on the right, a shortcut
max-pool that pads one *zero* (not -inf) on the right, channel zero-padding
centred, Swish everywhere, squeeze-and-excitation with Swish, no activation
after the residual add, no pre-activation in the very first block, and BN
modules that exist (and are stored) but are skipped when ``use_bn=False``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ecgcore.errors import ConfigError

from .heads import build_head, LinearHead
from .registry import ECGModel, register_model

__all__ = ["Net1D", "NET1D_RELEASED", "NET1D_TINY"]

STANDARD_12 = ("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6")

NET1D_RELEASED = dict(in_channels=12, base_filters=64, ratio=1, filter_list=[64, 160, 160, 400, 400, 1024, 1024],
                      m_blocks_list=[2, 2, 2, 3, 3, 4, 4], kernel_size=16, stride=2, groups_width=16,
                      n_classes=150, use_bn=False, use_do=False, samples=5000, min_samples=64)
NET1D_TINY = dict(NET1D_RELEASED, base_filters=16, filter_list=[16, 32, 32, 64], m_blocks_list=[1, 2, 1, 1],
                  n_classes=5)


def _same_pad(L: int, k: int, s: int):
    out = -(-L // s)
    p = max(0, (out - 1) * s + k - L)
    return p // 2, p - p // 2


class SameConv1d(nn.Module):
    """``MyConv1dPadSame``: zero SAME padding (extra sample right), then ``.conv``."""

    def __init__(self, c_in, c_out, k, stride, groups=1):
        super().__init__()
        self.k, self.stride = k, stride
        self.conv = nn.Conv1d(c_in, c_out, k, stride=stride, groups=groups)

    def forward(self, x):
        return self.conv(F.pad(x, _same_pad(x.shape[-1], self.k, self.stride)))


def _swish(x):
    return x * torch.sigmoid(x)


class Swish(nn.Module):
    def forward(self, x):
        return _swish(x)


class BasicBlock(nn.Module):
    def __init__(self, c_in, c_out, ratio, k, stride, groups, downsample, is_first, use_bn, use_do):
        super().__init__()
        mid = int(c_out * ratio)
        self.c_in, self.c_out, self.downsample, self.is_first = c_in, c_out, downsample, is_first
        self.stride = stride if downsample else 1
        self.use_bn, self.use_do = use_bn, use_do
        self.bn1 = nn.BatchNorm1d(c_in)
        self.conv1 = SameConv1d(c_in, mid, 1, 1)
        self.bn2 = nn.BatchNorm1d(mid)
        self.conv2 = SameConv1d(mid, mid, k, self.stride, groups=groups)
        self.bn3 = nn.BatchNorm1d(mid)
        self.conv3 = SameConv1d(mid, c_out, 1, 1)
        self.se_fc1 = nn.Linear(c_out, c_out // 2)
        self.se_fc2 = nn.Linear(c_out // 2, c_out)
        self.do = nn.Dropout(0.5)

    def _act(self, x, bn):
        if self.use_bn:
            x = bn(x)
        x = _swish(x)
        return self.do(x) if self.use_do else x

    def forward(self, x):
        identity = x
        out = x
        if not self.is_first:
            out = self._act(out, self.bn1)
        out = self.conv1(out)
        out = self.conv2(self._act(out, self.bn2))
        out = self.conv3(self._act(out, self.bn3))
        se = torch.sigmoid(self.se_fc2(_swish(self.se_fc1(out.mean(-1)))))
        out = out * se.unsqueeze(-1)
        if self.downsample:  # SAME max-pool: one zero on the right (not -inf), kernel = stride = 2
            L = identity.shape[-1]
            pad = _same_pad(L, self.stride, self.stride)
            identity = F.max_pool1d(F.pad(identity, pad), self.stride, self.stride)
        if self.c_out != self.c_in:  # centred zero channels, no projection
            front = (self.c_out - self.c_in) // 2
            identity = F.pad(identity, (0, 0, front, self.c_out - self.c_in - front))
        return out + identity


class BasicStage(nn.Module):
    def __init__(self, c_in, c_out, ratio, k, stride, groups, i_stage, m_blocks, use_bn, use_do):
        super().__init__()
        self.block_list = nn.ModuleList([
            BasicBlock(c_in if j == 0 else c_out, c_out, ratio, k, stride, groups,
                       downsample=(j == 0), is_first=(i_stage == 0 and j == 0), use_bn=use_bn, use_do=use_do)
            for j in range(m_blocks)])

    def forward(self, x):
        for b in self.block_list:
            x = b(x)
        return x


class Net1D(ECGModel):
    """Net1D; ``forward_features`` returns the last stage map (B, C, L); pooled by the mean over time."""

    family = "net1d"

    def __init__(self, heads=None, **cfg):
        super().__init__()
        unknown = set(cfg) - set(NET1D_RELEASED)
        if unknown:
            raise ConfigError(f"unknown Net1D options: {sorted(unknown)}")
        c = dict(NET1D_RELEASED)
        c.update(cfg)
        if len(c["filter_list"]) != len(c["m_blocks_list"]):
            raise ConfigError("Net1D filter_list and m_blocks_list must have the same length")
        self.config = c
        use_bn, use_do = bool(c["use_bn"]), bool(c["use_do"])
        self.first_conv = SameConv1d(c["in_channels"], c["base_filters"], c["kernel_size"], 2)
        self.first_bn = nn.BatchNorm1d(c["base_filters"])
        self.first_activation = Swish()
        stages, c_in = [], c["base_filters"]
        for i, (c_out, m) in enumerate(zip(c["filter_list"], c["m_blocks_list"])):
            if c_out % c["groups_width"]:
                raise ConfigError(f"Net1D channels {c_out} not divisible by groups_width {c['groups_width']}")
            stages.append(BasicStage(c_in, c_out, c["ratio"], c["kernel_size"], c["stride"],
                                     c_out // c["groups_width"], i, m, use_bn, use_do))
            c_in = c_out
        self.stage_list = nn.ModuleList(stages)
        self.num_features = c_in
        self.head_spec = heads
        self.head = build_head(heads, c_in, default=lambda: LinearHead(c_in, c["n_classes"]))
        self.input_contract = {"leads": c["in_channels"], "fs": 500, "samples": c["samples"],
                               "fixed_length": False, "min_samples": c["min_samples"],
                               "lead_names": STANDARD_12 if c["in_channels"] == 12 else ("I",),
                               "preset": "ecgfounder", "layout": "(batch, leads, samples)"}
        self.cam_layer = f"stage_list.{len(stages) - 1}"

    @property
    def use_bn(self):
        return self.config["use_bn"]

    def set_use_bn(self, flag: bool):
        """Switch BatchNorm execution on/off (the released models run with it off)."""
        self.config["use_bn"] = bool(flag)
        for m in self.modules():
            if isinstance(m, BasicBlock):
                m.use_bn = bool(flag)

    def forward_features(self, x):
        x = self.first_conv(x)
        if self.config["use_bn"]:
            x = self.first_bn(x)
        x = self.first_activation(x)
        for stage in self.stage_list:
            x = stage(x)
        return x

    def official_state_dict(self) -> dict:
        return {("dense." + k[len("head.fc."):] if k.startswith("head.fc.") else k): v
                for k, v in self.state_dict().items()}


def map_official_keys(sd: dict) -> dict:
    out = {}
    for k, v in sd.items():
        if k.startswith("module."):
            k = k[len("module."):]
        if k.startswith("dense."):
            k = "head.fc." + k[len("dense."):]
        out[k] = v
    return out


def config_from_state(sd: dict) -> dict:
    """Options readable from tensor shapes alone (input channels, classes)."""
    out = {}
    w = sd.get("first_conv.conv.weight")
    if w is not None and w.ndim == 3:
        out["in_channels"] = int(w.shape[1])
    d = sd.get("head.fc.weight")
    if d is not None and d.ndim == 2:
        out["n_classes"] = int(d.shape[0])
    return out


def config_from_json(cfg: dict) -> dict:
    """Accept a fixture-style ``{"net1d_kwargs": {...}}`` dict or the kwargs themselves."""
    cfg = dict(cfg.get("net1d_kwargs", cfg))
    return {k: v for k, v in cfg.items() if k in NET1D_RELEASED}


@register_model("net1d", family="net1d")
def net1d(heads=None, **cfg):
    """ECGFounder Net1D, released 12-lead configuration (30.8 M parameters, 150 labels), preset 'ecgfounder'."""
    return Net1D(heads=heads, **cfg)


@register_model("ecgfounder", family="net1d")
def ecgfounder(heads=None, **cfg):
    """Alias of 'net1d': the released 12-lead ECGFounder (use_bn=False, use_do=False)."""
    return Net1D(heads=heads, **cfg)


@register_model("ecgfounder_1lead", family="net1d")
def ecgfounder_1lead(heads=None, **cfg):
    """Released 1-lead ECGFounder (lead I)."""
    return Net1D(heads=heads, **dict({"in_channels": 1}, **cfg))


@register_model("ecgfounder_ccta", family="net1d")
def ecgfounder_ccta(heads=None, **cfg):
    """CCTA 4-vessel model: released Net1D with use_bn=True, use_do=True, 4 outputs (RCA, LM, LAD, LCx)."""
    return Net1D(heads=heads, **dict({"use_bn": True, "use_do": True, "n_classes": 4}, **cfg))


@register_model("net1d_tiny", family="net1d")
def net1d_tiny(heads=None, **cfg):
    """Net1D at the parity fixture's tiny size (filters 16/32/32/64)."""
    return Net1D(heads=heads, **dict(NET1D_TINY, **cfg))

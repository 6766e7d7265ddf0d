"""Image backbones for ECG-image models: ResNet 18/34/50, ResNet-D (``resnet34d``) and EfficientNet-B0.

Parameter names follow torchvision's and timm's published weights so a user
who has them can load them (neither library is a dependency):

* ResNet (He et al. 2016; torchvision ``resnet18/34/50`` = timm ``resnet*``):
  ``conv1``, ``bn1``, ``layer{1..4}.{i}.{conv1,bn1,conv2,bn2[,conv3,bn3]}``,
  ``downsample.{0,1}`` and the classifier ``fc`` (ours: ``head.fc``).  The
  stride of a bottleneck sits on its 3x3 conv (v1.5).
* ResNet-D (Bag of Tricks, He et al. 2019; timm ``resnet34d``): deep stem
  ``conv1.{0,1,3,4,6}`` (3x3 convs 3->32->32->64 with BN/ReLU between), and an
  average-pooled shortcut ``downsample.{1,2}`` (AvgPool2d(2, ceil_mode,
  count_include_pad=False) -> 1x1 conv -> BN).  The mtecg study used it.
* EfficientNet-B0 (Tan & Le 2019) in timm's naming: ``conv_stem``, ``bn1``,
  ``blocks.{s}.{b}.*`` (depthwise-separable ``conv_dw/bn1/se/conv_pw/bn2``;
  inverted residual ``conv_pw/bn1/conv_dw/bn2/se.conv_reduce/se.conv_expand/conv_pwl/bn3``),
  ``conv_head``, ``bn2``, classifier ``classifier`` (ours: ``head.fc``).  SiLU,
  SE width = block input channels / 4.

Input: (batch, 3, H, W) float, ImageNet-normalised; the mtecg preset resizes to 384 x 384.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import nn

from ecgcore.errors import ConfigError

from .heads import build_head, LinearHead
from .registry import ECGModel, register_model

__all__ = ["ResNet2D", "EfficientNet"]


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, c_in, width, stride, downsample):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, width, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.downsample = downsample

    def forward(self, x):
        out = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        return F.relu(out + (x if self.downsample is None else self.downsample(x)))


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, c_in, width, stride, downsample):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, width * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(width * 4)
        self.downsample = downsample

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return F.relu(out + (x if self.downsample is None else self.downsample(x)))


class ResNet2D(ECGModel):
    family = "image"

    def __init__(self, heads=None, block="basic", layers=(2, 2, 2, 2), widths=(64, 128, 256, 512),
                 deep_stem=False, stem_width=32, avg_down=False, in_chans=3, num_classes=1000,
                 image_size=384, preset="mtecg"):
        super().__init__()
        if block not in ("basic", "bottleneck"):
            raise ConfigError(f"ResNet block must be 'basic' or 'bottleneck', not {block!r}")
        self.config = dict(block=block, layers=list(layers), widths=list(widths), deep_stem=deep_stem,
                           stem_width=stem_width, avg_down=avg_down, in_chans=in_chans,
                           num_classes=num_classes, image_size=image_size, preset=preset)
        Block = BasicBlock if block == "basic" else Bottleneck
        c0 = widths[0]
        if deep_stem:
            self.conv1 = nn.Sequential(
                nn.Conv2d(in_chans, stem_width, 3, 2, 1, bias=False), nn.BatchNorm2d(stem_width), nn.ReLU(),
                nn.Conv2d(stem_width, stem_width, 3, 1, 1, bias=False), nn.BatchNorm2d(stem_width), nn.ReLU(),
                nn.Conv2d(stem_width, c0, 3, 1, 1, bias=False))
        else:
            self.conv1 = nn.Conv2d(in_chans, c0, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(c0)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        c_in = c0
        for i, (n, w) in enumerate(zip(layers, widths)):
            stride = 1 if i == 0 else 2
            blocks = []
            for j in range(n):
                s = stride if j == 0 else 1
                ds = None
                if j == 0 and (s != 1 or c_in != w * Block.expansion):
                    if avg_down:
                        pool = (nn.AvgPool2d(2, s, ceil_mode=True, count_include_pad=False) if s != 1
                                else nn.Identity())
                        ds = nn.Sequential(pool, nn.Conv2d(c_in, w * Block.expansion, 1, bias=False),
                                           nn.BatchNorm2d(w * Block.expansion))
                    else:
                        ds = nn.Sequential(nn.Conv2d(c_in, w * Block.expansion, 1, s, bias=False),
                                           nn.BatchNorm2d(w * Block.expansion))
                blocks.append(Block(c_in, w, s, ds))
                c_in = w * Block.expansion
            setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
        self.n_stages = len(layers)
        self.num_features = c_in
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        self.head_spec = heads
        self.head = build_head(heads, c_in, default=lambda: LinearHead(c_in, num_classes))
        self.input_contract = {"channels": in_chans, "height": image_size, "width": image_size,
                               "min_size": 32, "preset": preset, "layout": "(batch, 3, H, W), ImageNet-normalised"}
        self.cam_layer = f"layer{len(layers)}"

    def forward_features(self, x):
        x = self.maxpool(F.relu(self.bn1(self.conv1(x))))
        for i in range(self.n_stages):
            x = getattr(self, f"layer{i + 1}")(x)
        return x

    def official_state_dict(self) -> dict:
        """torchvision / timm names (classifier ``fc``)."""
        return {("fc." + k[len("head.fc."):] if k.startswith("head.fc.") else k): v
                for k, v in self.state_dict().items()}


class SqueezeExcite(nn.Module):
    def __init__(self, c, rd):
        super().__init__()
        self.conv_reduce = nn.Conv2d(c, rd, 1)
        self.conv_expand = nn.Conv2d(rd, c, 1)

    def forward(self, x):
        s = x.mean((2, 3), keepdim=True)
        return x * torch_sigmoid(self.conv_expand(F.silu(self.conv_reduce(s))))


def torch_sigmoid(x):
    return x.sigmoid()


class DepthwiseSeparable(nn.Module):
    def __init__(self, c_in, c_out, k, stride):
        super().__init__()
        self.conv_dw = nn.Conv2d(c_in, c_in, k, stride, k // 2, groups=c_in, bias=False)
        self.bn1 = nn.BatchNorm2d(c_in)
        self.se = SqueezeExcite(c_in, max(1, c_in // 4))
        self.conv_pw = nn.Conv2d(c_in, c_out, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.skip = stride == 1 and c_in == c_out

    def forward(self, x):
        out = self.bn2(self.conv_pw(self.se(F.silu(self.bn1(self.conv_dw(x))))))
        return out + x if self.skip else out


class InvertedResidual(nn.Module):
    def __init__(self, c_in, c_out, k, stride, expand):
        super().__init__()
        mid = c_in * expand
        self.conv_pw = nn.Conv2d(c_in, mid, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(mid)
        self.conv_dw = nn.Conv2d(mid, mid, k, stride, k // 2, groups=mid, bias=False)
        self.bn2 = nn.BatchNorm2d(mid)
        self.se = SqueezeExcite(mid, max(1, c_in // 4))
        self.conv_pwl = nn.Conv2d(mid, c_out, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(c_out)
        self.skip = stride == 1 and c_in == c_out

    def forward(self, x):
        out = F.silu(self.bn1(self.conv_pw(x)))
        out = self.se(F.silu(self.bn2(self.conv_dw(out))))
        out = self.bn3(self.conv_pwl(out))
        return out + x if self.skip else out


#: EfficientNet-B0 stages: (expand, kernel, stride, channels, repeats)
B0_STAGES = [(1, 3, 1, 16, 1), (6, 3, 2, 24, 2), (6, 5, 2, 40, 2), (6, 3, 2, 80, 3), (6, 5, 1, 112, 3),
             (6, 5, 2, 192, 4), (6, 3, 1, 320, 1)]
TINY_STAGES = [(1, 3, 1, 8, 1), (4, 3, 2, 16, 1), (4, 5, 2, 24, 1), (4, 3, 2, 32, 1)]


class EfficientNet(ECGModel):
    family = "image"

    def __init__(self, heads=None, stages=None, stem=32, head_width=1280, in_chans=3, num_classes=1000,
                 image_size=384, preset="mtecg"):
        super().__init__()
        stages = [tuple(s) for s in (stages or B0_STAGES)]
        self.config = dict(stages=[list(s) for s in stages], stem=stem, head_width=head_width, in_chans=in_chans,
                           num_classes=num_classes, image_size=image_size, preset=preset)
        self.conv_stem = nn.Conv2d(in_chans, stem, 3, 2, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(stem)
        c_in, blocks = stem, []
        for e, k, s, c, n in stages:
            stage = []
            for j in range(n):
                stride = s if j == 0 else 1
                stage.append(DepthwiseSeparable(c_in, c, k, stride) if e == 1
                             else InvertedResidual(c_in, c, k, stride, e))
                c_in = c
            blocks.append(nn.Sequential(*stage))
        self.blocks = nn.Sequential(*blocks)
        self.conv_head = nn.Conv2d(c_in, head_width, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(head_width)
        self.num_features = head_width
        self.head_spec = heads
        self.head = build_head(heads, head_width, default=lambda: LinearHead(head_width, num_classes))
        self.input_contract = {"channels": in_chans, "height": image_size, "width": image_size,
                               "min_size": 32, "preset": preset, "layout": "(batch, 3, H, W), ImageNet-normalised"}
        self.cam_layer = "bn2"

    def forward_features(self, x):
        x = F.silu(self.bn1(self.conv_stem(x)))
        return F.silu(self.bn2(self.conv_head(self.blocks(x))))

    def official_state_dict(self) -> dict:
        """timm names (classifier ``classifier``)."""
        return {("classifier." + k[len("head.fc."):] if k.startswith("head.fc.") else k): v
                for k, v in self.state_dict().items()}


def map_official_keys(sd: dict) -> dict:
    """torchvision/timm classifier names (``fc``, ``classifier``) -> ``head.fc``; drops a Lightning ``model.`` prefix."""
    out = {}
    for k, v in sd.items():
        for pre in ("fc.", "classifier."):
            if k.startswith(pre):
                k = "head.fc." + k[len(pre):]
        out[k] = v
    return out


def _resnet(heads, cfg, **arch):
    return ResNet2D(heads=heads, **dict(arch, **cfg))


@register_model("resnet18", family="image")
def resnet18(heads=None, **cfg):
    """ResNet-18 (torchvision/timm names), image input."""
    return _resnet(heads, cfg, block="basic", layers=(2, 2, 2, 2))


@register_model("resnet34", family="image")
def resnet34(heads=None, **cfg):
    """ResNet-34 (torchvision/timm names), image input."""
    return _resnet(heads, cfg, block="basic", layers=(3, 4, 6, 3))


@register_model("resnet50", family="image")
def resnet50(heads=None, **cfg):
    """ResNet-50 v1.5 (torchvision/timm names), image input."""
    return _resnet(heads, cfg, block="bottleneck", layers=(3, 4, 6, 3))


@register_model("resnet34d", family="image")
def resnet34d(heads=None, **cfg):
    """ResNet-34-D (timm names: deep stem, avg-pool shortcut), the mtecg scar/LVEF backbone."""
    return _resnet(heads, cfg, block="basic", layers=(3, 4, 6, 3), deep_stem=True, avg_down=True)


@register_model("resnet_tiny", family="image")
def resnet_tiny(heads=None, **cfg):
    """Tiny ResNet-D for tests (one block per stage, widths 8/16/24/32)."""
    return _resnet(heads, cfg, block="basic", layers=(1, 1, 1, 1), widths=(8, 16, 24, 32), deep_stem=True,
                   stem_width=8, avg_down=True, num_classes=10, image_size=64)


@register_model("efficientnet_b0", family="image")
def efficientnet_b0(heads=None, **cfg):
    """EfficientNet-B0 (timm names), image input."""
    return EfficientNet(heads=heads, **cfg)


@register_model("efficientnet_tiny", family="image")
def efficientnet_tiny(heads=None, **cfg):
    """Tiny EfficientNet for tests."""
    return EfficientNet(heads=heads, **dict(dict(stages=TINY_STAGES, stem=8, head_width=64, num_classes=10,
                                                 image_size=64), **cfg))

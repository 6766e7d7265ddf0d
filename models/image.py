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

Training-time augmentation (:class:`ImageAugment`, option ``augment=`` of every
image model here and of ``mtecg_image``): small rotation, zoom and shift,
brightness / contrast, Gaussian blur and JPEG-like compression, applied to the
batch inside ``forward`` only while the model is in training mode.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ecgcore.errors import ConfigError

from .heads import build_head, LinearHead
from .registry import ECGModel, register_model

__all__ = ["ResNet2D", "EfficientNet", "ImageAugment", "augment_images", "augment_spec", "AUGMENT_DEFAULTS"]


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
                 image_size=384, preset="mtecg", augment=None):
        super().__init__()
        if block not in ("basic", "bottleneck"):
            raise ConfigError(f"ResNet block must be 'basic' or 'bottleneck', not {block!r}")
        self.config = dict(block=block, layers=list(layers), widths=list(widths), deep_stem=deep_stem,
                           stem_width=stem_width, avg_down=avg_down, in_chans=in_chans,
                           num_classes=num_classes, image_size=image_size, preset=preset)
        self.augment = build_augment(augment)
        if self.augment is not None:  # only when set: configs of models without it stay as they were
            self.config["augment"] = dict(self.augment.spec)
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
        if self.augment is not None and self.training:
            x = self.augment(x)
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
                 image_size=384, preset="mtecg", augment=None):
        super().__init__()
        stages = [tuple(s) for s in (stages or B0_STAGES)]
        self.config = dict(stages=[list(s) for s in stages], stem=stem, head_width=head_width, in_chans=in_chans,
                           num_classes=num_classes, image_size=image_size, preset=preset)
        self.augment = build_augment(augment)
        if self.augment is not None:
            self.config["augment"] = dict(self.augment.spec)
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
        if self.augment is not None and self.training:
            x = self.augment(x)
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


# ---------------------------------------------------------------------------
# training-time image augmentation
# ---------------------------------------------------------------------------

#: Options of :class:`ImageAugment` and their defaults (0 / off): magnitudes are uniform ranges
#: around "no change"; ``blur`` and ``jpeg`` are per-image probabilities.
AUGMENT_DEFAULTS = {"rotate": 0.0, "scale": 0.0, "translate": 0.0, "brightness": 0.0, "contrast": 0.0,
                    "blur": 0.0, "blur_sigma": [0.4, 1.2], "jpeg": 0.0, "jpeg_quality": [40, 90]}

# The JPEG standard's example quantisation tables (ITU-T T.81 Annex K, K.1 luminance, K.2 chrominance),
# scaled by quality as the IJG library does; they make the compression artefacts JPEG-like.
_JPEG_LUMA = [16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55, 14, 13, 16, 24, 40, 57, 69, 56,
              14, 17, 22, 29, 51, 87, 80, 62, 18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
              49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99]
_JPEG_CHROMA = [17, 18, 24, 47, 99, 99, 99, 99, 18, 21, 26, 66, 99, 99, 99, 99, 24, 26, 56, 99, 99, 99, 99, 99,
                47, 66, 99, 99, 99, 99, 99, 99] + [99] * 32


def augment_spec(spec) -> dict:
    """Validate image-augmentation options; return the complete dict (defaults filled in).

    Parameters
    ----------
    spec : dict or None
        ``rotate`` (degrees, angle ~ U(-rotate, rotate)), ``scale`` (zoom factor
        ~ U(1 - scale, 1 + scale)), ``translate`` (shift ~ U(-t, t) of the side,
        per axis), ``brightness`` (offset ~ U(-b, b) of full scale), ``contrast``
        (gain ~ U(1 - c, 1 + c)), ``blur`` (probability of a Gaussian blur with
        sigma ~ U(*blur_sigma) pixels), ``jpeg`` (probability of JPEG-like 8 x 8
        DCT quantisation at quality ~ U(*jpeg_quality), IJG scale 1-100).

    Raises
    ------
    ConfigError
        An unknown option or a value out of range, named as ``augment.<option>``.
    """
    spec = dict(spec or {})
    unknown = sorted(set(spec) - set(AUGMENT_DEFAULTS))
    if unknown:
        raise ConfigError(f"augment: unknown option {unknown[0]!r} (known: {', '.join(AUGMENT_DEFAULTS)})")
    out = {k: (list(v) if isinstance(v, list) else v) for k, v in AUGMENT_DEFAULTS.items()}
    limits = {"rotate": 45.0, "scale": 0.5, "translate": 0.45, "brightness": 1.0, "contrast": 0.95,
              "blur": 1.0, "jpeg": 1.0}
    for k, hi in limits.items():
        if k not in spec:
            continue
        v = spec[k]
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0.0 <= float(v) <= hi:
            raise ConfigError(f"augment.{k}: expected a number in [0, {hi:g}], got {v!r}")
        out[k] = float(v)
    for k, lo_ok, hi_ok in (("blur_sigma", 0.05, 10.0), ("jpeg_quality", 1, 100)):
        if k not in spec:
            continue
        v = spec[k]
        if (not isinstance(v, (list, tuple)) or len(v) != 2
                or any(isinstance(a, bool) or not isinstance(a, (int, float)) for a in v)
                or not lo_ok <= v[0] <= v[1] <= hi_ok):
            raise ConfigError(f"augment.{k}: expected [low, high] with {lo_ok:g} <= low <= high <= {hi_ok:g}, "
                              f"got {v!r}")
        out[k] = [float(v[0]), float(v[1])]
    return out


def _rand(n, generator, lo=0.0, hi=1.0):
    # drawn on the CPU from the given (or torch's global, seeded) generator: the same seed gives the
    # same draws on every device
    return torch.rand(n, generator=generator, dtype=torch.float64) * (hi - lo) + lo


def affine_theta(angle_deg, scale, tx, ty, height: int, width: int):
    """``F.affine_grid`` matrices (n, 2, 3) of a rotation about the centre, zoom and shift.

    The output pixel at p takes the input at ``c + A^-1 (p - c - t)`` (pixel
    coordinates, ``A = scale * R(angle)``, ``t = (tx * width, ty * height)``),
    expressed in the normalised coordinates of ``align_corners=False``.
    """
    a = torch.deg2rad(torch.as_tensor(angle_deg, dtype=torch.float64))
    s = torch.as_tensor(scale, dtype=torch.float64)
    cos, sin = torch.cos(a) / s, torch.sin(a) / s
    # A^-1 = R(-angle) / scale
    ainv = torch.stack([torch.stack([cos, sin], -1), torch.stack([-sin, cos], -1)], -2)   # (n, 2, 2)
    sx, sy = width / 2.0, height / 2.0
    S = torch.tensor([[sx, 0.0], [0.0, sy]], dtype=torch.float64)
    Sinv = torch.tensor([[1 / sx, 0.0], [0.0, 1 / sy]], dtype=torch.float64)
    lin = Sinv @ ainv @ S
    t = torch.stack([torch.as_tensor(tx, dtype=torch.float64) * width,
                     torch.as_tensor(ty, dtype=torch.float64) * height], -1)[..., None]  # (n, 2, 1)
    off = -(Sinv @ ainv @ t)
    return torch.cat([lin, off], -1)


def _gaussian_blur(u, sigma):
    """Separable Gaussian blur of (n, C, H, W) with one sigma (pixels) per image; edges replicated."""
    n, c, h, w = u.shape
    r = max(1, int(math.ceil(3.0 * float(sigma.max()))))
    k = torch.arange(-r, r + 1, dtype=torch.float64)
    g = torch.exp(-0.5 * (k[None] / sigma[:, None]) ** 2)
    g = (g / g.sum(1, keepdim=True)).to(u.dtype).to(u.device)                # (n, 2r+1)
    wts = g.repeat_interleave(c, 0)                                          # (n*C, 2r+1)
    x = u.reshape(1, n * c, h, w)
    x = F.conv2d(F.pad(x, (0, 0, r, r), mode="replicate"), wts[:, None, :, None], groups=n * c)
    x = F.conv2d(F.pad(x, (r, r, 0, 0), mode="replicate"), wts[:, None, None, :], groups=n * c)
    return x.reshape(n, c, h, w)


def _dct_matrix(device, dtype):
    i = torch.arange(8, dtype=torch.float64)
    m = torch.cos((2 * i[None] + 1) * i[:, None] * math.pi / 16) * math.sqrt(2 / 8)
    m[0] = math.sqrt(1 / 8)
    return m.to(device=device, dtype=dtype)   # orthonormal DCT-II: JPEG's 8 x 8 FDCT


def jpeg_tables(quality):
    """IJG-scaled luminance and chrominance quantisation tables, (n, 8, 8) each, for qualities 1-100."""
    q = torch.as_tensor(quality, dtype=torch.float64).clamp(1, 100).round()
    scale = torch.where(q < 50, 5000.0 / q, 200.0 - 2.0 * q)[:, None]
    out = []
    for base in (_JPEG_LUMA, _JPEG_CHROMA):
        t = torch.floor((torch.tensor(base, dtype=torch.float64)[None] * scale + 50.0) / 100.0)
        out.append(t.clamp(1, 255).reshape(-1, 8, 8))
    return out


def jpeg_like(u, quality):
    """JPEG-like compression of (n, 3, H, W) RGB in [0, 1]: YCbCr, 8 x 8 DCT, quantisation, inverse.

    Full-resolution chroma (no subsampling) and float arithmetic; the tables
    and the colour transform are JPEG's (JFIF), so the block and ringing
    artefacts are those of a JPEG file saved at that quality.
    """
    n, _, h, w = u.shape
    x = u.double() * 255.0
    r, g, b = x[:, 0], x[:, 1], x[:, 2]
    ycc = torch.stack([0.299 * r + 0.587 * g + 0.114 * b,
                       -0.168736 * r - 0.331264 * g + 0.5 * b + 128.0,
                       0.5 * r - 0.418688 * g - 0.081312 * b + 128.0], 1) - 128.0
    ph, pw = (-h) % 8, (-w) % 8
    if ph or pw:
        ycc = F.pad(ycc, (0, pw, 0, ph), mode="replicate")
    H, W = ycc.shape[-2:]
    blk = ycc.reshape(n, 3, H // 8, 8, W // 8, 8).permute(0, 1, 2, 4, 3, 5)   # (n, 3, hb, wb, 8, 8)
    D = _dct_matrix(u.device, torch.float64)
    coef = D @ blk @ D.T
    luma, chroma = (t.to(u.device) for t in jpeg_tables(quality))
    q = torch.stack([luma, chroma, chroma], 1)[:, :, None, None]              # (n, 3, 1, 1, 8, 8)
    blk = D.T @ (torch.round(coef / q) * q) @ D
    ycc = blk.permute(0, 1, 2, 4, 3, 5).reshape(n, 3, H, W)[:, :, :h, :w] + 128.0
    y, cb, cr = ycc[:, 0], ycc[:, 1] - 128.0, ycc[:, 2] - 128.0
    rgb = torch.stack([y + 1.402 * cr, y - 0.344136 * cb - 0.714136 * cr, y + 1.772 * cb], 1)
    return (rgb / 255.0).clamp(0.0, 1.0).to(u.dtype)


def augment_images(x, spec: dict, generator=None):
    """One random augmentation per image of an ImageNet-normalised batch (batch, 3, H, W).

    The batch is mapped back to [0, 1] RGB, transformed, rounded to 8-bit
    levels (the pages are 8-bit images) and normalised again, in float32 with
    autocast off; shape, dtype and device are kept. Order: rotation / zoom /
    shift about the centre (bilinear, white outside the page), Gaussian blur,
    brightness / contrast, JPEG-like compression.

    Parameters
    ----------
    x : torch.Tensor
        (batch, 3, H, W) float, ImageNet-normalised (see ``image_pipeline.normalize``).
    spec : dict
        Options of :func:`augment_spec` (validated here).
    generator : torch.Generator, optional
        CPU generator for the random draws; default torch's global generator
        (seeded by the training engine, and saved in its checkpoints).
    """
    from .image_pipeline import IMAGENET_MEAN, IMAGENET_STD
    spec = augment_spec(spec)
    if x.ndim != 4 or x.shape[1] != 3:
        raise ConfigError(f"image augmentation needs (batch, 3, H, W), got {tuple(x.shape)}")
    n, _, h, w = x.shape
    if n == 0:
        return x
    dev, dt = x.device, x.dtype
    mean = torch.as_tensor(IMAGENET_MEAN, device=dev, dtype=torch.float32)[None, :, None, None]
    std = torch.as_tensor(IMAGENET_STD, device=dev, dtype=torch.float32)[None, :, None, None]
    with torch.autocast(dev.type, enabled=False):
        u = x.detach().float() * std + mean
        # every draw is made, in a fixed order, whatever is switched on: a batch's draws do not
        # depend on which other options are set
        angle = _rand(n, generator, -spec["rotate"], spec["rotate"])
        zoom = _rand(n, generator, 1.0 - spec["scale"], 1.0 + spec["scale"])
        tx = _rand(n, generator, -spec["translate"], spec["translate"])
        ty = _rand(n, generator, -spec["translate"], spec["translate"])
        gain = _rand(n, generator, 1.0 - spec["contrast"], 1.0 + spec["contrast"])
        offset = _rand(n, generator, -spec["brightness"], spec["brightness"])
        do_blur = _rand(n, generator) < spec["blur"]
        sigma = _rand(n, generator, *spec["blur_sigma"])
        do_jpeg = _rand(n, generator) < spec["jpeg"]
        quality = _rand(n, generator, *spec["jpeg_quality"])
        if spec["rotate"] or spec["scale"] or spec["translate"]:
            theta = affine_theta(angle, zoom, tx, ty, h, w).to(device=dev, dtype=torch.float32)
            grid = F.affine_grid(theta, [n, 3, h, w], align_corners=False)
            # sample (u - 1) with zero padding, then add 1 back: outside the page is white
            u = F.grid_sample(u - 1.0, grid, mode="bilinear", padding_mode="zeros", align_corners=False) + 1.0
        if bool(do_blur.any()):
            idx = torch.nonzero(do_blur).reshape(-1)
            u = u.clone()
            u[idx.to(dev)] = _gaussian_blur(u[idx.to(dev)], sigma[idx])
        if spec["contrast"] or spec["brightness"]:
            a = gain.to(dev, torch.float32)[:, None, None, None]
            b = offset.to(dev, torch.float32)[:, None, None, None]
            u = u * a + b
        u = u.clamp(0.0, 1.0)
        if bool(do_jpeg.any()):
            idx = torch.nonzero(do_jpeg).reshape(-1)
            u = u.clone()
            u[idx.to(dev)] = jpeg_like(u[idx.to(dev)], quality[idx])
        u = torch.round(u * 255.0) / 255.0
        out = (u - mean) / std
    return out.to(dt)


class ImageAugment(nn.Module):
    """Training-time augmentation of image batches; the identity in eval mode.

    A module without parameters or buffers (checkpoints are unchanged) that
    image models run on their input while ``model.training`` is true, so
    validation, evaluation, ``ECGClassifier`` and Grad-CAM++ (all in eval
    mode) never see it. Draws come from torch's global generator, which the
    training engine seeds from the config's ``seed`` and checkpoints, so runs
    and resumed runs are reproducible. See :func:`augment_spec` for options.
    """

    def __init__(self, spec: dict):
        super().__init__()
        self.spec = augment_spec(spec)

    def forward(self, x, generator=None):
        if not self.training:
            return x
        return augment_images(x, self.spec, generator)

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.spec.items() if v != AUGMENT_DEFAULTS[k])


def build_augment(spec):
    """ImageAugment for a spec, or None when the spec is empty / switches nothing on."""
    if not spec:
        return None
    full = augment_spec(spec)
    if not any(full[k] for k in ("rotate", "scale", "translate", "brightness", "contrast", "blur", "jpeg")):
        return None
    return ImageAugment(full)

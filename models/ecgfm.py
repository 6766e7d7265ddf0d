"""ECG-FM: the wav2vec 2.0 style encoder of fairseq-signals (``wav2vec2_cmsc``) in plain PyTorch.

Layer order (facts/ecgfm.md section 2, checked against the parity fixture):

1. conv feature extractor, 4 blocks of Conv1d(k 2, s 2, no bias) -> [block 0
   only: GroupNorm(C groups, C channels, fp32)] -> GELU (erf);
2. transpose -> LayerNorm(C) -> ``post_extract_proj`` Linear(C, D);
3. positional conv: Conv1d(D, D, K, padding K//2, groups G) with weight norm
   over dims (0, 1) per tap (``weight_g`` (1,1,K), ``weight_v``), drop the last
   frame, GELU, **added** to its input (DL-AtCM variant: ``pos_conv_residual=False``
   replaces the input with it);
4. zero padded frames -> ``encoder.layer_norm`` *before* the layers -> post-LN
   layers ``x = LN1(x + MHA(x)); x = LN2(x + fc2(GELU(fc1(x))))``, no final LN;
5. head: zero padded frames, sum over time / count of non-zero entries, ``proj``.

Parameter names equal fairseq-signals' under the ``encoder.`` prefix (the
fine-tuned file's layout); the head's ``proj`` is ``head.fc``.  Attention runs
through ``torch.nn.functional.scaled_dot_product_attention``.

Reference: McKeen et al., "ECG-FM: An Open Electrocardiogram Foundation Model",
arXiv:2408.05178 (2024); Baevski et al., wav2vec 2.0, NeurIPS 2020.
"""

from __future__ import annotations

import ast
import math

import torch
import torch.nn.functional as F
from torch import nn

from ecgcore.errors import ConfigError

from .heads import build_head, IdentityHead, LinearHead, PerTargetMLPHeads
from .registry import ECGModel, register_model

__all__ = ["ECGFM", "parse_conv_layers", "frame_lengths", "ECGFM_RELEASED", "ECGFM_TINY"]

STANDARD_12 = ("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6")

#: released hyper-parameters (cfg["model"] of mimic_iv_ecg_physionet_pretrained.pt)
ECGFM_RELEASED = dict(
    in_d=12, extractor_mode="default", conv_feature_layers="[(256, 2, 2)] * 4", conv_bias=False,
    encoder_layers=12, encoder_embed_dim=768, encoder_ffn_embed_dim=3072, encoder_attention_heads=12,
    layer_norm_first=False, conv_pos=128, conv_pos_groups=16,
    dropout=0.1, attention_dropout=0.1, activation_dropout=0.0, dropout_input=0.1,
    dropout_features=0.1, final_dropout=0.0,
    quantize_targets=True, latent_vars=320, latent_groups=2, latent_dim=0, final_dim=256,
    num_labels=None, pos_conv_residual=True, pretraining_params=False, samples=2500,
    fixed_length=True,
)
#: the parity fixture's tiny configuration
ECGFM_TINY = dict(ECGFM_RELEASED, conv_feature_layers="[(32, 2, 2)] * 4", encoder_layers=2,
                  encoder_embed_dim=64, encoder_ffn_embed_dim=128, encoder_attention_heads=4,
                  conv_pos=16, conv_pos_groups=4, latent_vars=8, final_dim=32)


def parse_conv_layers(spec) -> list[tuple[int, int, int]]:
    """Parse fairseq's ``conv_feature_layers`` string, e.g. ``"[(256, 2, 2)] * 4"``, without eval().

    Only list/tuple literals of ints combined with ``+`` and ``*`` are accepted.
    """
    if isinstance(spec, (list, tuple)):
        layers = [tuple(int(v) for v in t) for t in spec]
    else:
        def ev(node):
            if isinstance(node, ast.Expression):
                return ev(node.body)
            if isinstance(node, (ast.List, ast.Tuple)):
                vals = [ev(e) for e in node.elts]
                return vals if isinstance(node, ast.List) else tuple(vals)
            if isinstance(node, ast.Constant) and isinstance(node.value, int):
                return node.value
            if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Mult)):
                a, b = ev(node.left), ev(node.right)
                return a + b if isinstance(node.op, ast.Add) else a * b
            raise ValueError
        try:
            layers = [tuple(int(v) for v in t) for t in ev(ast.parse(str(spec), mode="eval"))]
        except (ValueError, SyntaxError, TypeError):
            raise ConfigError(f"conv_feature_layers {spec!r} is not a list of (dim, kernel, stride) tuples") from None
    if not layers or any(len(t) != 3 or min(t) < 1 for t in layers):
        raise ConfigError(f"conv_feature_layers {spec!r} is not a list of (dim, kernel, stride) tuples")
    return layers


def frame_lengths(lengths, conv_layers):
    """Valid frames for valid sample counts: L <- floor((L - k) / s) + 1 per conv block."""
    for _, k, s in conv_layers:
        lengths = torch.div(lengths - k, s, rounding_mode="floor") + 1
    return lengths


class _GroupNormFP32(nn.GroupNorm):
    """GroupNorm computed in float32 (fairseq's Fp32GroupNorm), so it is stable under autocast."""

    def forward(self, x):
        return F.group_norm(x.float(), self.num_groups, self.weight.float(), self.bias.float(),
                            self.eps).type_as(x)


class ConvFeatureExtractor(nn.Module):
    def __init__(self, layers, in_d: int, conv_bias: bool, mode: str = "default"):
        super().__init__()
        if mode != "default":
            raise ConfigError(f"ECG-FM extractor_mode {mode!r} is not supported (the released model uses 'default')")
        blocks, c_in = [], in_d
        for i, (dim, k, s) in enumerate(layers):
            conv = nn.Conv1d(c_in, dim, k, stride=s, bias=conv_bias)
            nn.init.kaiming_normal_(conv.weight)
            if i == 0:  # GroupNorm with one group per channel, block 0 only, before GELU
                blocks.append(nn.Sequential(conv, nn.Dropout(0.0), _GroupNormFP32(dim, dim, affine=True),
                                            nn.GELU()))
            else:
                blocks.append(nn.Sequential(conv, nn.Dropout(0.0), nn.GELU()))
            c_in = dim
        self.conv_layers = nn.ModuleList(blocks)

    def forward(self, x):
        for block in self.conv_layers:
            x = block(x)
        return x


class _WeightNormConv1d(nn.Module):
    """Conv1d whose weight is g * v / ||v||, the norm over dims (0, 1) per tap (weight_norm dim=2)."""

    def __init__(self, dim: int, kernel: int, groups: int):
        super().__init__()
        if dim % groups:
            raise ConfigError(f"encoder_embed_dim {dim} is not divisible by conv_pos_groups {groups}")
        self.kernel, self.groups = kernel, groups
        std = math.sqrt(4.0 / (kernel * dim))
        v = torch.empty(dim, dim // groups, kernel)
        nn.init.normal_(v, 0.0, std)
        # bias first: weight_norm re-registers g and v after it (official key order)
        self.bias = nn.Parameter(torch.zeros(dim))
        self.weight_g = nn.Parameter(torch.linalg.vector_norm(v, dim=(0, 1), keepdim=True))
        self.weight_v = nn.Parameter(v)

    def _compute(self):
        return self.weight_g * (self.weight_v / torch.linalg.vector_norm(self.weight_v, dim=(0, 1),
                                                                         keepdim=True))

    def weight(self):
        # Inference folds g * v / ||v|| once (13 % of a batch-1 forward otherwise); the cache is keyed
        # on the parameters' version counters, so load_state_dict or an optimiser step invalidates it.
        if torch.compiler.is_compiling() or torch.is_grad_enabled():
            return self._compute()
        key = (self.weight_g._version, self.weight_v._version, self.weight_g.data_ptr(),
               self.weight_v.data_ptr(), self.weight_v.dtype, self.weight_v.device)
        cache = self.__dict__.get("_folded")
        if cache is None or cache[0] != key:
            cache = (key, self._compute())
            self.__dict__["_folded"] = cache
        return cache[1]

    def forward(self, x):
        return F.conv1d(x, self.weight(), self.bias, padding=self.kernel // 2, groups=self.groups)


class _TrimLast(nn.Module):
    """fairseq SamePad for an even kernel: drop the last output frame."""

    def __init__(self, kernel: int):
        super().__init__()
        self.remove = 1 if kernel % 2 == 0 else 0

    def forward(self, x):
        return x[:, :, :-self.remove] if self.remove else x


class ConvPositional(nn.Module):
    """``conv_pos``: returns only the branch GELU(trim(conv(x))); the caller adds it (or not)."""

    def __init__(self, dim: int, kernel: int, groups: int):
        super().__init__()
        self.pos_conv = nn.Sequential(_WeightNormConv1d(dim, kernel, groups), _TrimLast(kernel), nn.GELU())

    def forward(self, x):  # x: (B, T, D)
        return self.pos_conv(x.transpose(1, 2)).transpose(1, 2)


class SelfAttention(nn.Module):
    def __init__(self, dim: int, heads: int, dropout: float):
        super().__init__()
        if dim % heads:
            raise ConfigError(f"encoder_embed_dim {dim} is not divisible by {heads} heads")
        self.heads, self.dropout = heads, dropout
        # registration order k, v, q, out as in fairseq's MultiheadAttention (state-dict order)
        self.k_proj = nn.Linear(dim, dim)
        self.v_proj = nn.Linear(dim, dim)
        self.q_proj = nn.Linear(dim, dim)
        self.out_proj = nn.Linear(dim, dim)

    def forward(self, x, key_padding_mask=None):
        B, T, D = x.shape
        h = self.heads

        def split(t):
            return t.view(B, T, h, D // h).transpose(1, 2)
        q, k, v = split(self.q_proj(x)), split(self.k_proj(x)), split(self.v_proj(x))
        mask = None if key_padding_mask is None else (~key_padding_mask)[:, None, None, :]
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask,
                                           dropout_p=self.dropout if self.training else 0.0)
        return self.out_proj(y.transpose(1, 2).reshape(B, T, D))


class TransformerLayer(nn.Module):
    def __init__(self, dim, ffn, heads, dropout, attention_dropout, activation_dropout, layer_norm_first):
        super().__init__()
        self.self_attn = SelfAttention(dim, heads, attention_dropout)
        self.self_attn_layer_norm = nn.LayerNorm(dim, eps=1e-5)
        self.fc1 = nn.Linear(dim, ffn)
        self.fc2 = nn.Linear(ffn, dim)
        self.final_layer_norm = nn.LayerNorm(dim, eps=1e-5)
        self.drop = nn.Dropout(dropout)
        self.act_drop = nn.Dropout(activation_dropout)
        self.layer_norm_first = layer_norm_first

    def _ffn(self, x):
        return self.drop(self.fc2(self.act_drop(F.gelu(self.fc1(x).float()).type_as(x))))

    def forward(self, x, key_padding_mask=None):
        if self.layer_norm_first:
            x = x + self.drop(self.self_attn(self.self_attn_layer_norm(x), key_padding_mask))
            return x + self._ffn(self.final_layer_norm(x))
        x = self.self_attn_layer_norm(x + self.drop(self.self_attn(x, key_padding_mask)))
        return self.final_layer_norm(x + self._ffn(x))


class TransformerEncoder(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        D = cfg["encoder_embed_dim"]
        self.layers = nn.ModuleList([
            TransformerLayer(D, cfg["encoder_ffn_embed_dim"], cfg["encoder_attention_heads"], cfg["dropout"],
                             cfg["attention_dropout"], cfg["activation_dropout"], cfg["layer_norm_first"])
            for _ in range(cfg["encoder_layers"])])
        self.layer_norm = nn.LayerNorm(D, eps=1e-5)
        self.drop = nn.Dropout(cfg["dropout"])
        self.layer_norm_first = cfg["layer_norm_first"]

    def forward(self, x, frame_mask=None):
        if frame_mask is not None:
            x = x.masked_fill(frame_mask.unsqueeze(-1), 0.0)
        if not self.layer_norm_first:  # post-LN: encoder LayerNorm *before* the first layer
            x = self.layer_norm(x)
        x = self.drop(x)
        for layer in self.layers:
            x = layer(x, frame_mask)
        if self.layer_norm_first:
            x = self.layer_norm(x)
        return x


class _Quantizer(nn.Module):
    """Gumbel vector quantizer parameters (pretraining only; kept for strict round trips)."""

    def __init__(self, in_dim, vq_dim, groups, num_vars):
        super().__init__()
        if vq_dim % groups:
            raise ConfigError(f"vq dim {vq_dim} is not divisible by latent_groups {groups}")
        self.vars = nn.Parameter(torch.empty(1, groups * num_vars, vq_dim // groups).uniform_())
        self.weight_proj = nn.Linear(in_dim, groups * num_vars)


class Wav2Vec2Encoder(nn.Module):
    """The ``wav2vec2_cmsc`` module (names as in fairseq-signals)."""

    def __init__(self, cfg):
        super().__init__()
        self.conv_layers_spec = parse_conv_layers(cfg["conv_feature_layers"])
        C = self.conv_layers_spec[-1][0]
        D = cfg["encoder_embed_dim"]
        if cfg["pretraining_params"]:
            self.mask_emb = nn.Parameter(torch.empty(D).uniform_())
        # registration order reproduces the official state-dict order
        self.encoder = TransformerEncoder(cfg)
        self.feature_extractor = ConvFeatureExtractor(self.conv_layers_spec, cfg["in_d"], cfg["conv_bias"],
                                                      cfg["extractor_mode"])
        self.post_extract_proj = nn.Linear(C, D) if C != D else None
        self.conv_pos = ConvPositional(D, cfg["conv_pos"], cfg["conv_pos_groups"])
        self.layer_norm = nn.LayerNorm(C, eps=1e-5)
        self.dropout_input = nn.Dropout(cfg["dropout_input"])
        self.pos_conv_residual = bool(cfg["pos_conv_residual"])
        if cfg["pretraining_params"]:
            final_dim = cfg["final_dim"] or D
            vq_dim = cfg["latent_dim"] or final_dim
            if cfg["quantize_targets"]:
                self.quantizer = _Quantizer(C, vq_dim, cfg["latent_groups"], cfg["latent_vars"])
                self.project_q = nn.Linear(vq_dim, final_dim)
            else:
                self.project_q = nn.Linear(C, final_dim)
            self.final_proj = nn.Linear(D, final_dim)

    def frame_mask(self, padding_mask, n_frames):
        """Frame padding mask (B, T') from a sample padding mask (B, leads, T) or (B, T)."""
        if padding_mask.ndim == 3:  # a sample is padding when it is padding in every lead
            padding_mask = padding_mask.all(1)
        valid = frame_lengths((~padding_mask).sum(-1), self.conv_layers_spec)
        return torch.arange(n_frames, device=valid.device)[None, :] >= valid[:, None]

    def forward(self, x, padding_mask=None):
        feats = self.feature_extractor(x)
        x = self.layer_norm(feats.transpose(1, 2))
        if self.post_extract_proj is not None:
            x = self.post_extract_proj(x)
        frame_mask = None if padding_mask is None else self.frame_mask(padding_mask, x.shape[1])
        if self.pos_conv_residual:
            x = self.dropout_input(x)
            x = x + self.conv_pos(x)  # the positional conv sees the unzeroed features
        else:  # DL-AtCM embedding path: no dropout_input, no residual
            x = self.conv_pos(x)
        return self.encoder(x, frame_mask), frame_mask


class ECGFM(ECGModel):
    """ECG-FM encoder plus head.  ``forward(x, padding_mask=None)``; x is (B, 12, 2500), z-scored per lead.

    ``forward_features`` returns the encoder output (B, frames, D); the head
    pools it the fairseq way (sum over frames / count of non-zero entries).
    """

    family = "ecgfm"

    def __init__(self, heads=None, **cfg):
        super().__init__()
        unknown = set(cfg) - set(ECGFM_RELEASED)
        if unknown:
            raise ConfigError(f"unknown ECG-FM options: {sorted(unknown)}")
        full = dict(ECGFM_RELEASED)
        full.update(cfg)
        self.config = full
        self.encoder = Wav2Vec2Encoder(full)
        D = full["encoder_embed_dim"]
        self.num_features = D
        self.final_dropout = nn.Dropout(full["final_dropout"])
        n_labels = full["num_labels"]
        self.head_spec = heads
        self.head = build_head(heads, D, default=(lambda: LinearHead(D, n_labels)) if n_labels
                               else IdentityHead)
        if isinstance(self.head, LinearHead) and heads is None:
            nn.init.xavier_uniform_(self.head.fc.weight)
            nn.init.zeros_(self.head.fc.bias)
        total_stride = math.prod(s for _, _, s in self.encoder.conv_layers_spec)
        self.input_contract = {"leads": full["in_d"], "fs": 500, "samples": full["samples"],
                               "fixed_length": full["fixed_length"], "min_samples": 2 * total_stride,
                               "lead_names": STANDARD_12 if full["in_d"] == 12 else None,
                               "preset": "ecgfm", "layout": "(batch, leads, samples)"}

    def forward_features(self, x, padding_mask=None):
        return self.encoder(x, padding_mask)[0]

    def pool(self, features, frame_mask=None):
        x = self.final_dropout(features)
        if frame_mask is not None:
            x = x.masked_fill(frame_mask.unsqueeze(-1), 0.0)
        # fairseq: sum over time / number of non-zero entries per feature (== mean without padding)
        count = (x != 0).sum(1).clamp_min(1).to(x.dtype)
        return x.sum(1) / count

    def forward_head(self, features, clinical=None, frame_mask=None):
        return self._apply_head(self.pool(features, frame_mask), clinical)

    def forward(self, x, padding_mask=None, clinical=None):
        self._check(x)
        feats, frame_mask = self.encoder(x, padding_mask)
        return self.forward_head(feats, clinical=clinical, frame_mask=frame_mask)

    # official <-> ecgcore names: the fine-tuned layout is ours except proj <-> head.fc
    def official_state_dict(self, layout: str = "auto", weight_norm: str = "old") -> dict:
        """State dict under fairseq-signals names.

        layout : 'pretrained' (wav2vec2_cmsc, no prefix), 'finetuned'
        (ecg_transformer_classifier, ``encoder.`` prefix + ``proj``) or 'auto'
        (pretrained when the model has no head weights).
        weight_norm : 'old' (weight_g/weight_v) or 'new' (parametrizations.weight.original0/1).
        """
        sd = self.state_dict()
        has_head = any(k.startswith("head.") for k in sd)
        if layout == "auto":
            layout = "finetuned" if has_head else "pretrained"
        out = {}
        for k, v in sd.items():
            if weight_norm == "new":
                k = k.replace("pos_conv.0.weight_g", "pos_conv.0.parametrizations.weight.original0")
                k = k.replace("pos_conv.0.weight_v", "pos_conv.0.parametrizations.weight.original1")
            if k.startswith("head."):
                if isinstance(self.head, LinearHead):
                    k = "proj." + k[len("head.fc."):]
                elif isinstance(self.head, PerTargetMLPHeads):
                    k = k[len("head."):]
            elif layout == "pretrained":
                k = k[len("encoder."):]
            out[k] = v
        return out


def map_official_keys(sd: dict) -> dict:
    """fairseq-signals / DL-AtCM key names -> ecgcore's (idempotent on ecgcore's own names)."""
    pretrained = any(k.startswith("feature_extractor.") for k in sd)
    out = {}
    for k, v in sd.items():
        k = k.replace("parametrizations.weight.original0", "weight_g")
        k = k.replace("parametrizations.weight.original1", "weight_v")
        if k.startswith("backbone."):  # DL-AtCM: backbone.<pretrained keys>
            k = "encoder." + k[len("backbone."):]
        elif k.startswith("regression_heads."):
            k = "head." + k
        elif k.startswith("proj."):
            k = "head.fc." + k[len("proj."):]
        elif pretrained:
            k = "encoder." + k
        out[k] = v
    return out


#: checkpoint keys the model may lack without error (pretraining-only parts, dropped as fairseq does)
OPTIONAL_KEYS = ("encoder.mask_emb", "encoder.quantizer.", "encoder.project_q.", "encoder.final_proj.")


def config_from_cfg(cfg_model: dict) -> dict:
    """Architecture options from a checkpoint's ``cfg['model']`` (unknown keys ignored, missing defaulted)."""
    out = {k: cfg_model[k] for k in ECGFM_RELEASED if k in cfg_model and k not in
           ("pretraining_params", "pos_conv_residual", "samples", "fixed_length")}
    if cfg_model.get("_name") == "ecg_transformer_classifier" and "num_labels" in cfg_model:
        out["num_labels"] = int(cfg_model["num_labels"])
    if "latent_temp" in out:
        out.pop("latent_temp")
    return out


@register_model("ecgfm", family="ecgfm")
def ecgfm(heads=None, **cfg):
    """ECG-FM encoder, released size (90.9 M parameters), 12 x 2500 at 500 Hz, preset 'ecgfm'."""
    return ECGFM(heads=heads, **cfg)


@register_model("ecgfm_tiny", family="ecgfm")
def ecgfm_tiny(heads=None, **cfg):
    """ECG-FM architecture at the parity fixture's tiny size (2 layers, 64 dims)."""
    return ECGFM(heads=heads, **dict(ECGFM_TINY, **cfg))


@register_model("ecgfm_dlatcm", family="ecgfm")
def ecgfm_dlatcm(heads=None, **cfg):
    """DL-AtCM variant: positional-conv output replaces the features; 4 per-target MLP heads (AC_CMR)."""
    base = dict(pos_conv_residual=False, pretraining_params=True)
    base.update(cfg)
    if heads is None:
        heads = {"type": "mlp_per_target", "n": 4, "hidden": [256, 128], "dropout": 0.3}
    return ECGFM(heads=heads, **base)

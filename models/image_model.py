"""The scar / LVEF multi-task image network (Boribalburephan et al., Sci Rep 2024), in plain PyTorch.

Architecture (facts/mtecg.md §3, §6):

* **backbone**: an image model of :mod:`ecgcore.models.image` (the study:
  ResNet-34-D) whose classifier is ``Linear(features -> 512, bias=False)``, the
  512-d *latent*;
* **image-only heads**: ``ReLU(latent)`` -> one ``Linear(512 -> n_classes)``
  per task (``scar``, ``lvef``), each returning logits;
* **late fusion of clinical variables**: one numerical column (age / 100)
  and m binary columns (female, DM, HT, smoking, dyslipidaemia) become m
  tokens ``[Embedding(2, 5)(flag_k), age]`` (one shared embedding), a
  bidirectional tanh RNN (6 -> 512, one layer, zero initial state) reads them
  sequence-first, and the two directions' final hidden states are *summed*;
  the heads then see ``concat[latent (no ReLU), clinical]`` (1024 wide).

Outputs are a dict ``{task: logits (batch, n_classes)}`` (the study's
``{"scar": (B, 2), "lvef": (B, 2)}``), or a plain (batch, n) tensor when the
head is given as an int or a ``{"type": "linear"}`` spec (the training
engine's convention).

State-dict names: the backbone lives under ``model.`` (so a timm-named
ResNet-34-D state dict fits under that prefix; the study's ``model.fc`` is
ours ``model.head.fc``), the heads under ``head.`` (``head.heads.scar``,
``head.embedding_layer``, ``head.clinical_rnn_layer``).
:func:`map_official_keys` maps the study's Lightning names (``model.*``,
``scar_head.*``, ``lvef_head.*``, ``embedding_layer.*``,
``clinical_rnn_layer.*``) onto these.

Registered as ``mtecg_image`` (ResNet-34-D, 384 x 384) and
``mtecg_image_tiny`` (a tiny ResNet-D at 64 x 64, for tests).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ecgcore.errors import ConfigError, PreprocessError

from .heads import LinearHead
from .image import build_augment
from .registry import ECGModel, model_entry, register_model

__all__ = ["MTECGImageNet", "MTECGHead", "ClinicalEncoder", "map_official_keys", "STUDY_TASKS",
           "CLINICAL_COLUMNS"]

#: The study's tasks: myocardial scar and LVEF < 50 %, both two-class.
STUDY_TASKS = {"scar": 2, "lvef": 2}
#: The study's clinical columns in model order; ``age`` is in years / 100.
CLINICAL_COLUMNS = ("age", "female_gender", "dm", "ht", "smoke", "dlp")


class ClinicalEncoder(nn.Module):
    """The study's clinical encoder: shared binary-flag embedding + (bi)RNN over flag tokens.

    Input (batch, 1 + m): column 0 numerical (age / 100), columns 1..m binary.
    Output (batch, hidden).
    """

    def __init__(self, n_clinical: int = 6, embedding_size: int = 5, hidden: int = 512,
                 rnn_type: str = "birnn"):
        super().__init__()
        if n_clinical < 2:
            raise ConfigError("the clinical encoder needs one numerical and at least one binary column")
        kinds = {"rnn": (nn.RNN, False), "birnn": (nn.RNN, True), "lstm": (nn.LSTM, False),
                 "bilstm": (nn.LSTM, True)}
        if rnn_type not in kinds:
            raise ConfigError(f"rnn_type must be one of {sorted(kinds)}, not {rnn_type!r}")
        cls, bi = kinds[rnn_type]
        self.n_clinical = int(n_clinical)
        self.embedding_layer = nn.Embedding(2, embedding_size)
        self.clinical_rnn_layer = cls(embedding_size + 1, hidden, num_layers=1, bidirectional=bi)
        self.bidirectional = bi

    def forward(self, clinical):
        age = clinical[:, :1].float()                                   # (B, 1)
        flags = clinical[:, 1:].round().clamp(0, 1).long()              # (B, m)
        emb = self.embedding_layer(flags)                               # (B, m, e)
        tokens = torch.cat([emb, age[:, None, :].expand(-1, flags.shape[1], 1)], dim=2)
        _, h = self.clinical_rnn_layer(tokens.transpose(0, 1))          # sequence-first
        if isinstance(h, tuple):                                        # LSTM: (h_n, c_n)
            h = h[0]
        # the study sums the two directions' final states
        return h.sum(0) if self.bidirectional else h[0]


class MTECGHead(nn.Module):
    """Per-task linear heads on the latent, optionally fusing clinical variables.

    Parameters
    ----------
    latent_dim : int
    tasks : dict or int
        ``{name: n_classes}`` (dict output), or an int n (one Linear, tensor output).
    n_clinical : int
        0 for image-only; else 1 + number of binary columns (the study: 6).
    """

    def __init__(self, latent_dim: int, tasks, n_clinical: int = 0, embedding_size: int = 5,
                 rnn_hidden: int = 512, rnn_type: str = "birnn", bias: bool = True):
        super().__init__()
        self.n_clinical = int(n_clinical)
        self.encoder = (ClinicalEncoder(n_clinical, embedding_size, rnn_hidden, rnn_type)
                        if self.n_clinical else None)
        width = latent_dim + (rnn_hidden if self.n_clinical else 0)
        if isinstance(tasks, int):
            self.tasks = None
            self.fc = nn.Linear(width, tasks, bias=bias)
        else:
            self.tasks = {str(k): int(v) for k, v in tasks.items()}
            self.heads = nn.ModuleDict({k: nn.Linear(width, n, bias=bias) for k, n in self.tasks.items()})

    def forward(self, latent, clinical=None):
        if self.encoder is not None:
            if clinical is None:
                raise PreprocessError(f"this model fuses {self.n_clinical} clinical variables "
                                      f"({', '.join(CLINICAL_COLUMNS[:self.n_clinical])} when built as in "
                                      f"the study); pass clinical=(batch, {self.n_clinical})")
            # the study applies ReLU on the image-only path only
            z = torch.cat([latent, self.encoder(clinical).to(latent.dtype)], dim=1)
        else:
            z = F.relu(latent)
        if self.tasks is None:
            return self.fc(z)
        return {k: h(z) for k, h in self.heads.items()}


def _parse_heads(heads):
    """heads spec -> (tasks dict or int, n_clinical)."""
    if heads is None:
        return dict(STUDY_TASKS), 0
    if isinstance(heads, bool):
        raise ConfigError("heads must be None, an int, a list of task names or a dict")
    if isinstance(heads, int):
        return int(heads), 0
    if isinstance(heads, (list, tuple)):
        return {str(t): 2 for t in heads}, 0
    if not isinstance(heads, dict):
        raise ConfigError(f"heads must be None, an int, a list or a dict, not {type(heads).__name__}")
    spec = dict(heads)
    n_clin = int(spec.pop("n_clinical", 0) or 0)
    kind = spec.pop("type", None)
    if kind == "linear":
        return int(spec.get("n", 1)), n_clin
    if kind not in (None, "multitask"):
        raise ConfigError(f"mtecg image heads: type must be 'linear' or 'multitask', not {kind!r}")
    tasks = spec.pop("tasks", None)
    if tasks is None:
        tasks = spec
    out = {}
    for name, v in tasks.items():
        if isinstance(v, dict):
            n = int(v.get("n", v.get("n_classes", 2)))
        elif isinstance(v, bool) or not isinstance(v, int):
            raise ConfigError(f"task {name!r}: give the number of classes (int), not {v!r}")
        else:
            n = int(v)
        if n < 1:
            raise ConfigError(f"task {name!r}: needs at least one output")
        out[str(name)] = n
    if not out:
        raise ConfigError("mtecg image heads: at least one task is needed")
    return out, n_clin


class MTECGImageNet(ECGModel):
    """Image backbone + latent + scar/LVEF heads (+ clinical late fusion); see the module docstring.

    Parameters
    ----------
    heads : None, int, list, or dict
        None: the study's ``{"scar": 2, "lvef": 2}``; a dict of task -> classes
        (optionally under ``"tasks"``) with ``"n_clinical"``; ``{"type": "linear",
        "n": n, "n_clinical": m}`` or an int for a tensor output.
    backbone : str
        A registered image model (``resnet34d``, ``resnet18``, ``resnet_tiny``, ...).
    latent_dim : int
        Width of the backbone's bias-free classifier (the study: 512).
    n_clinical : int
        Clinical columns fused (0 = image only; the study: 6). Also settable in ``heads``.
    image_size : int
        Side of the square input (the study: 384).
    backbone_options : dict
        Extra architecture options for the backbone builder.
    augment : dict, optional
        Training-time image augmentation (:func:`ecgcore.models.image.augment_spec`:
        ``rotate``, ``scale``, ``translate``, ``brightness``, ``contrast``, ``blur``,
        ``jpeg``); applied to the input batch only in training mode.
    """

    family = "mtecg_image"

    def __init__(self, heads=None, backbone: str = "resnet34d", latent_dim: int = 512, n_clinical: int = 0,
                 embedding_size: int = 5, rnn_hidden: int = 512, rnn_type: str = "birnn",
                 image_size: int = 384, bias_head: bool = True, backbone_options: dict | None = None,
                 preset: str = "mtecg", augment: dict | None = None):
        super().__init__()
        tasks, n_clin_heads = _parse_heads(heads)
        n_clin = int(n_clinical or n_clin_heads)
        if n_clinical and n_clin_heads and n_clinical != n_clin_heads:
            raise ConfigError(f"n_clinical={n_clinical} disagrees with heads n_clinical={n_clin_heads}")
        entry = model_entry(backbone)
        if entry["family"] != "image":
            raise ConfigError(f"backbone {backbone!r} is not an image model")
        opts = dict(backbone_options or {})
        opts["image_size"] = image_size
        self.model = entry["builder"](heads=None, **opts)
        self.model.model_name = backbone
        feat = self.model.num_features
        # the study's latent: timm classifier replaced by Linear(features -> 512, bias=False)
        self.model.head = LinearHead(feat, latent_dim, bias=False)
        self.head = MTECGHead(latent_dim, tasks, n_clin, embedding_size, rnn_hidden, rnn_type, bias_head)
        self.head_spec = ({"type": "linear", "n": tasks, "n_clinical": n_clin} if isinstance(tasks, int)
                          else {"tasks": dict(tasks), "n_clinical": n_clin})
        self.config = dict(backbone=backbone, latent_dim=latent_dim, embedding_size=embedding_size,
                           rnn_hidden=rnn_hidden, rnn_type=rnn_type, image_size=image_size,
                           bias_head=bias_head, backbone_options=dict(backbone_options or {}), preset=preset)
        # training-time augmentation of the input batch (identity in eval mode); in the config only
        # when set, so checkpoints of models without it rebuild exactly as before
        self.augment = build_augment(augment)
        if self.augment is not None:
            self.config["augment"] = dict(self.augment.spec)
        self.num_features = latent_dim
        self.input_contract = dict(self.model.input_contract)
        self.input_contract["preset"] = preset
        self.cam_layer = "model." + self.model.cam_layer
        self.tasks = tasks

    def forward_features(self, x):
        """The backbone's last feature map (batch, C, h, w): what Grad-CAM++ explains.

        In training mode the batch is first augmented (``augment=``; see
        :func:`ecgcore.models.image.augment_spec`).
        """
        if self.augment is not None and self.training:
            x = self.augment(x)
        return self.model.forward_features(x)

    def forward_head(self, features, clinical=None):
        latent = self.model.head(self.model.pool(features))
        if clinical is not None:
            if not self.head.n_clinical:
                raise PreprocessError(f"{self.model_name}: clinical variables were given but the model "
                                      f"fuses none (build it with n_clinical=6)")
            if clinical.ndim != 2 or clinical.shape != (latent.shape[0], self.head.n_clinical):
                raise PreprocessError(f"{self.model_name}: clinical must be (batch={latent.shape[0]}, "
                                      f"{self.head.n_clinical}); got {tuple(clinical.shape)}")
            if not bool(torch.isfinite(clinical).all()):
                raise PreprocessError(f"{self.model_name}: clinical variables contain NaN/inf (impute them first)")
        return self.head(latent, clinical)

    def official_state_dict(self) -> dict:
        """The study's Lightning names (``model.fc``, ``scar_head``, ``embedding_layer``, ...)."""
        out = {}
        for k, v in self.state_dict().items():
            if k.startswith("model.head.fc."):
                k = "model.fc." + k[len("model.head.fc."):]
            elif k.startswith("head.heads."):
                task, rest = k[len("head.heads."):].split(".", 1)
                k = f"{task}_head.{rest}"
            elif k.startswith("head.encoder."):
                k = k[len("head.encoder."):]
            elif k.startswith("head.fc."):
                k = "head." + k[len("head.fc."):]
            out[k] = v
        return out


def map_official_keys(sd: dict) -> dict:
    """The study's Lightning state-dict names -> ecgcore names (inverse of ``official_state_dict``)."""
    out = {}
    for k, v in sd.items():
        if k.startswith("model.fc."):
            k = "model.head.fc." + k[len("model.fc."):]
        elif k.startswith(("embedding_layer.", "clinical_rnn_layer.")):
            k = "head.encoder." + k
        elif k.startswith("head.") and not k.startswith(("head.heads.", "head.fc.", "head.encoder.")):
            k = "head.fc." + k[len("head."):]
        elif "_head." in k.split(".", 1)[0] + ".":
            task, rest = k.split(".", 1)
            k = f"head.heads.{task[:-len('_head')]}.{rest}"
        out[k] = v
    return out


@register_model("mtecg_image", family="mtecg_image")
def mtecg_image(heads=None, **cfg):
    """Scar/LVEF multi-task image network of the mtecg study (ResNet-34-D, 384 x 384, optional clinical fusion)."""
    return MTECGImageNet(heads=heads, **cfg)


@register_model("mtecg_image_tiny", family="mtecg_image")
def mtecg_image_tiny(heads=None, **cfg):
    """Tiny scar/LVEF image network for tests (tiny ResNet-D, 64 x 64, latent 32, RNN 16)."""
    base = dict(backbone="resnet_tiny", latent_dim=32, rnn_hidden=16, image_size=64)
    base.update(cfg)
    return MTECGImageNet(heads=heads, **base)

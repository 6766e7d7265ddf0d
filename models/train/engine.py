"""The training engine: one validated config in, checkpoints, logs and metrics out.

Plain PyTorch. What it guarantees (each a bug of a published pipeline that
this engine avoids, see the facts sheets):

* the best epoch and decision thresholds are chosen on the **validation**
  split, never on the reported test split or fold;
* ``pos_weight = n_neg / n_pos`` of the training split (not the inverse);
* BatchNorm layers whose parameters are frozen (and all of them with
  ``model.freeze_bn``) stay in eval mode during training, and evaluation
  never switches any module back to training mode;
* every random draw is seeded: python, numpy and torch RNGs, the DataLoader
  generator, per-item augmentation (``default_rng([epoch_seed, item])``) and
  DataLoader workers; their states are checkpointed so ``--resume``
  continues bit-for-bit;
* a new optimiser and scheduler per phase, so LR reductions do not leak from
  one unfreezing stage into the next;
* missing labels (NaN) are masked per task;
* with ``data.aggregate: attention`` training, validation and prediction run
  at the record level: a batch holds ``batch_size`` whole records (padded and
  masked when their segment counts differ), the backbone sees only real
  segments, an attention pool (``model.segment_pool``, trained with the head)
  combines each record's segment features and the head runs once per record.

Training runs as a list of *phases* (one by default): e.g. head-only warm-up
then full fine-tuning with per-group learning rates (DL-AtCM), or progressive
unfreezing from the head inwards (LVH external tuning).
"""

from __future__ import annotations

import csv
import json
import math
import os
import random
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

from ecgcore._atomic import atomic_open
from ecgcore.errors import CheckpointError, ConfigError

from . import ddp
from .checkpointing import capture_rng, load_checkpoint, restore_rng, save_checkpoint
from .data import (ClinicalScaler, RecordDataset, SegmentDataset, TargetScaler, collate_records,
                   load_store, make_splits, segments_of)
from .predict import (RecordNet, aggregate_records, as_matrix, attach_segment_pool, decode,
                      output_layout, run_records, run_segments)
from .schedules import build_scheduler

__all__ = ["train", "Trainer", "seed_everything", "build_model", "expected_preset",
           "check_preset", "pos_weights", "masked_task_losses"]

_BN = (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d, torch.nn.BatchNorm3d, torch.nn.SyncBatchNorm)


def seed_everything(seed: int, deterministic: bool = True) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False


def _worker_init(worker_id: int) -> None:
    # torch seeds each worker from the loader generator (base_seed + id); numpy and
    # random must follow, or forked workers repeat the same draws (CCTA bug 4)
    s = torch.initial_seed() % 2**32
    np.random.seed(s)
    random.seed(s)


# ---------------------------------------------------------------------------
# model and preset
# ---------------------------------------------------------------------------

def _n_outputs(tasks) -> int:
    return sum(n for _, _, n in output_layout(tasks))


def build_model(cfg):
    """Create the configured model with a head sized for the tasks (and clinical variables)."""
    from ecgcore import models
    from ecgcore.models.registry import model_entry
    m = cfg["model"]
    n_out, n_clin = _n_outputs(cfg["tasks"]), len(cfg["data"]["clinical"])
    options = dict(m["options"])
    heads = m["heads"]
    family = model_entry(m["name"])["family"]
    if heads is None:
        if family == "lvh":
            options.setdefault("n_out", n_out)
            options.setdefault("n_clinical", n_clin)
        elif m["name"] == "ecgfm_dlatcm":
            heads = {"type": "mlp_per_target", "n": n_out, "hidden": [256, 128], "dropout": 0.3}
        else:
            heads = {"type": "linear", "n": n_out, "n_clinical": n_clin} if n_clin else n_out
    try:
        model = models.create(m["name"], heads=heads, pretrained=m["pretrained"], **options)
    except TypeError as exc:
        raise ConfigError(f"model.options: {exc}") from None
    if not model.model_name:
        model.model_name = m["name"]
    got = getattr(model.head, "n_clinical", 0)
    if got != n_clin:
        raise ConfigError(f"model: the head fuses {got} clinical variables but data.clinical lists "
                          f"{n_clin}; set model.options.n_clinical or model.heads.n_clinical to {n_clin}")
    return model


def expected_preset(cfg, model) -> str | None:
    return cfg["model"]["preset"] or model.input_contract.get("preset")


def check_preset(cfg, model, preset) -> None:
    """Refuse data preprocessed with another preset than the model expects, saying which one to use."""
    from .images import is_image_preset
    want = expected_preset(cfg, model)
    have = (preset or {}).get("name") if isinstance(preset, dict) else preset
    c = model.input_contract
    if is_image_preset(preset) or "channels" in c:
        _check_image_preset(cfg, model, preset, want, have)
        return
    if want and have != want:
        raise ConfigError(
            f"the dataset was preprocessed with preset {have!r} but model {cfg['model']['name']!r} "
            f"expects preset {want!r}: re-run 'ecgcore preprocess ... --preset {want}' "
            f"(or set model.preset: {have} if the model is meant to be trained on that preset)")
    if not isinstance(preset, dict):
        return
    n_leads = len(preset.get("leads") or [])
    if n_leads and n_leads != c.get("leads"):
        raise ConfigError(f"preset {have!r} gives {n_leads} leads but {model.describe_contract()}")


def _check_image_preset(cfg, model, preset, want, have) -> None:
    """Image models need an image dataset of their preset name and image size, and signal models none."""
    from .images import is_image_preset
    name = cfg["model"]["name"]
    c = model.input_contract
    if "channels" not in c:
        raise ConfigError(f"the dataset holds images (preset {have!r}) but model {name!r} reads signals: "
                          f"{model.describe_contract()}")
    if not is_image_preset(preset):
        raise ConfigError(f"model {name!r} reads images but the dataset was preprocessed with signal preset "
                          f"{have!r}: build an image dataset with "
                          f"ecgcore.models.train.images.build_image_dataset(inputs, out, size="
                          f"{c.get('height') or 384}, name={want or 'mtecg'!r})")
    if want and have != want:
        raise ConfigError(f"the image dataset was built with preset {have!r} but model {name!r} expects "
                          f"{want!r}: rebuild it with name={want!r} (or set model.preset: {have})")
    size, h, w = preset.get("size"), c.get("height"), c.get("width")
    if (h and size != h) or (w and size != w):
        raise ConfigError(f"the image dataset holds {size} x {size} images but model {name!r} is built for "
                          f"{h} x {w}: set model.options.image_size: {size} or rebuild the dataset with "
                          f"size={h}")


# ---------------------------------------------------------------------------
# losses
# ---------------------------------------------------------------------------

def pos_weights(targets: np.ndarray, tasks) -> dict:
    """Binary pos_weight per task: 'auto' = n_neg / n_pos on the given (training) targets."""
    out = {}
    for j, t in enumerate(tasks):
        pw = t["pos_weight"]
        if t["type"] != "binary" or pw is None:
            continue
        if pw == "auto":
            col = targets[:, j][~np.isnan(targets[:, j])]
            n_pos, n_neg = float((col > 0.5).sum()), float((col <= 0.5).sum())
            if n_pos == 0:
                raise ConfigError(f"tasks[{j}] ({t['name']}): no positive label in the training split; "
                                  f"pos_weight 'auto' is undefined")
            out[t["name"]] = n_neg / n_pos
        else:
            out[t["name"]] = float(pw)
    return out


def _logcosh(d):
    # log cosh d = d + softplus(-2d) - log 2, stable for large |d|
    return d + F.softplus(-2.0 * d) - math.log(2.0)


def masked_task_losses(out: torch.Tensor, y: torch.Tensor, tasks, pos_weight: dict) -> list:
    """One scalar loss per task, over the rows whose label is not NaN (0 with a graph when none)."""
    losses = []
    for j, (name, start, n) in enumerate(output_layout(tasks)):
        t = tasks[j]
        yj = y[:, j]
        m = ~torch.isnan(yj)
        if not bool(m.any()):
            losses.append(out[:, start:start + n].sum() * 0.0)
            continue
        o = out[m, start:start + n].float()
        yt = yj[m].float()
        kind, loss = t["type"], t["loss"]
        if kind == "regression":
            d = o[:, 0] - yt
            loss = "mse" if loss == "auto" else loss
            if loss == "mse":
                v = (d * d).mean()
            elif loss == "logcosh":
                v = _logcosh(d).mean()
            elif loss == "huber":
                v = F.huber_loss(o[:, 0], yt, delta=t["huber_delta"])
            else:
                v = d.abs().mean()
        elif kind == "binary":
            pw = pos_weight.get(name)
            v = F.binary_cross_entropy_with_logits(
                o[:, 0], yt, pos_weight=None if pw is None else torch.tensor(pw, device=o.device))
        else:
            v = F.cross_entropy(o, yt.long())
        losses.append(v)
    return losses


# ---------------------------------------------------------------------------
# metrics
# ---------------------------------------------------------------------------

def _task_metrics(pred: dict, targets: np.ndarray, tasks) -> dict:
    from ecgcore import stats
    out = {}
    for j, t in enumerate(tasks):
        y = targets[:, j]
        p = pred[t["name"]]
        ok = ~np.isnan(y) & np.all(np.isfinite(p.reshape(len(p), -1)), axis=1)
        y, p = y[ok], p[ok]
        m = {"n": int(ok.sum())}
        if t["type"] == "regression":
            if len(y) >= 3:
                m.update({"r2": stats.r2(y, p), "mae": stats.mae(y, p), "rmse": stats.rmse(y, p),
                          "pearson_r": stats.pearson_r(y, p)})
        elif t["type"] == "binary":
            if len(np.unique(y)) == 2:
                m.update({"auroc": stats.auroc(y, p), "auprc": stats.auprc(y, p),
                          "brier": stats.brier_score(y, p), "prevalence": float(y.mean())})
        else:
            if len(y):
                m["accuracy"] = float((p.argmax(1) == y.astype(int)).mean())
        out[t["name"]] = m
    return out


def _summary_metric(metrics: dict, tasks, name: str, val_loss: float):
    if name == "val_loss":
        return val_loss
    if name == "val_macro_auroc":
        v = [metrics[t["name"]].get("auroc") for t in tasks if t["type"] == "binary"]
        v = [x for x in v if x is not None and np.isfinite(x)]
        return float(np.mean(v)) if v else float("nan")
    if name == "val_mean_r2":
        v = [metrics[t["name"]].get("r2") for t in tasks if t["type"] == "regression"]
        v = [x for x in v if x is not None and np.isfinite(x)]
        return float(np.mean(v)) if v else float("nan")
    if name.startswith("val_"):
        for t in tasks:
            pre = f"val_{t['name']}_"
            if name.startswith(pre):
                return float(metrics[t["name"]].get(name[len(pre):], float("nan")))
    raise ConfigError(f"train.monitor: unknown metric {name!r} (val_loss, val_macro_auroc, val_mean_r2 "
                      f"or val_<task>_<r2|mae|rmse|pearson_r|auroc|auprc|brier|accuracy>)")


def _mode_for(name: str, mode: str) -> str:
    if mode != "auto":
        return mode
    return "min" if any(name.endswith(s) for s in ("loss", "mae", "rmse", "brier")) else "max"


# ---------------------------------------------------------------------------
# the trainer
# ---------------------------------------------------------------------------

class Trainer:
    """Holds the state of one training run; :meth:`fit` runs it (see :func:`train`)."""

    def __init__(self, cfg: dict, out_dir: str, *, progress: bool | None = None):
        self.cfg = cfg
        self.out = os.fspath(out_dir)
        self.ckdir = os.path.join(self.out, "checkpoints")
        want = cfg["device"]
        if want == "auto":
            want = "cuda" if torch.cuda.is_available() else "cpu"
        if want == "cuda" and not torch.cuda.is_available():
            raise ConfigError("device: cuda requested but no CUDA device is available")
        self.device = torch.device(ddp.setup(want))
        if cfg["threads"]:
            torch.set_num_threads(cfg["threads"])
        self.progress = cfg["train"]["progress"] if progress is None else progress
        self.tasks = cfg["tasks"]
        self.amp = bool(cfg["optim"]["amp"]) and self.device.type == "cuda"
        seed_everything(cfg["seed"] + ddp.rank() * 0, cfg["deterministic"])

        # model first: its input contract decides the preset the data must have
        self.model = build_model(cfg)
        self.model_spec = self.model.export_config()
        self.record_level = cfg["data"]["aggregate"] == "attention"
        if self.record_level:  # trained with the head: 'head' phases and head_lr include it
            attach_segment_pool(self.model, cfg["data"]["attention"])
        preset = cfg["data"]["preset"] or expected_preset(cfg, self.model)
        if cfg["data"]["source"] == "simulated":
            from ecgcore.presets import get_preset
            preset = get_preset(preset)
        self.store = load_store(cfg, preset)
        self.preset = self.store.preset
        check_preset(cfg, self.model, self.preset)
        self.splits = make_splits(self.store, cfg)
        # what each split record id named at training: 'ecgcore evaluate' tells the training
        # dataset's records from an external cohort's records that happen to share their ids
        self.fingerprints = None
        if cfg["data"]["source"] != "simulated":
            from .data import ECGDatasetRows
            rows = ECGDatasetRows(cfg["data"]["dataset"])
            self.fingerprints = {str(r): rows.fingerprint(r) for r in self.store.record_ids}
        tr = self.splits["train"]
        self.target_scaler = TargetScaler.fit(self.store.targets[tr], self.tasks)
        self.clinical_scaler = None
        clin = np.zeros((self.store.n_records, 0), np.float32)
        if self.store.clinical.shape[1]:
            self.clinical_scaler = ClinicalScaler.fit(self.store.clinical[tr], cfg["data"]["clinical_impute"],
                                                      cfg["data"]["clinical_scale"])
            clin = self.clinical_scaler.transform(self.store.clinical)
        self.pos_weight = pos_weights(self.store.targets[tr], self.tasks)
        y = self.target_scaler.transform(self.store.targets.astype(np.float64))
        d = cfg["data"]
        if self.record_level:
            self.ds = {k: RecordDataset(self.store, v, y, clin, d["augment"] if k == "train" else None,
                                        d["attention"]["max_segments"] if k == "train" else None)
                       for k, v in self.splits.items() if len(v)}
        else:
            self.ds = {k: SegmentDataset(self.store, segments_of(self.store, v), y, clin,
                                         d["augment"] if k == "train" else None)
                       for k, v in self.splits.items() if len(v)}
        if len(self.ds.get("train", ())) == 0:
            raise ConfigError("data: no training record has a segment (check the dataset and preset)")
        self.generator = torch.Generator()
        self.generator.manual_seed(cfg["seed"])
        self.model.to(self.device)
        x0 = self.ds["train"][0][0]
        x0 = (x0[:1] if self.record_level else x0[None]).to(self.device)
        self.model.validate_input(x0)  # contract check once, with a clear message; then skip per batch
        self.model.check_inputs = False
        self.uw = None
        if cfg["loss"]["weighting"] == "uncertainty":
            from ecgcore.models.multitask import UncertaintyWeighting
            kinds = ["regression" if t["type"] == "regression" else "classification" for t in self.tasks]
            self.uw = UncertaintyWeighting(len(self.tasks), cfg["loss"]["uncertainty_form"], kinds).to(self.device)
        self.net = RecordNet(self.model) if self.record_level else self.model
        if ddp.is_distributed():
            self.net = torch.nn.parallel.DistributedDataParallel(
                self.net, device_ids=[self.device.index] if self.device.type == "cuda" else None,
                find_unused_parameters=True)
        self.monitor = cfg["train"]["monitor"]
        self.mode = _mode_for(self.monitor, cfg["train"]["mode"])
        self.state = {"phase": 0, "epoch_in_phase": 0, "epoch": 0, "step": 0, "best": None,
                      "best_epoch": None, "bad": 0, "history": [], "phase_done": False}
        self.thresholds: dict = {}

    # -- loaders ---------------------------------------------------------------
    def _loader(self, split: str, train: bool):
        ds = self.ds[split]
        d = self.cfg["data"]
        sampler = None
        if ddp.is_distributed():
            sampler = torch.utils.data.distributed.DistributedSampler(
                ds, num_replicas=ddp.world_size(), rank=ddp.rank(), shuffle=train, seed=self.cfg["seed"],
                drop_last=False)
            sampler.set_epoch(self.state["epoch"])
        return torch.utils.data.DataLoader(
            ds, batch_size=d["batch_size"] if train else d["eval_batch_size"],
            shuffle=train and sampler is None, sampler=sampler, num_workers=d["num_workers"],
            worker_init_fn=_worker_init, generator=self.generator if train else None,
            pin_memory=self.device.type == "cuda", drop_last=False,
            persistent_workers=False, collate_fn=collate_records if self.record_level else None)

    # -- phases ----------------------------------------------------------------
    def phases(self) -> list:
        c = self.cfg
        if c["phases"]:
            return c["phases"]
        return [{"name": "train", "epochs": c["train"]["epochs"], "trainable": ["all"], "lr": None,
                 "weight_decay": None, "scheduler": None, "early_stopping": None,
                 "select_best": True, "reload_best": False, "frozen_no_grad": True}]

    @staticmethod
    def _is_head(name: str) -> bool:
        # the attention pool sits between backbone and head and learns with the head
        return name.startswith("head.") or name.startswith("segment_pool.")

    def _head_names(self):
        return {n for n, _ in self.model.named_parameters() if self._is_head(n)}

    def _match(self, name: str, key: str) -> bool:
        if key == "all":
            return True
        if key == "head":
            return self._is_head(name)
        if key == "backbone":
            return not self._is_head(name)
        return name == key or name.startswith(key + ".")

    def _bn_param_names(self):
        names = set()
        for mn, m in self.model.named_modules():
            if isinstance(m, _BN):
                names.update(f"{mn}.{pn}" for pn, _ in m.named_parameters(recurse=False))
        return names

    def _setup_phase(self, ph):
        """Freeze/unfreeze parameters, build a fresh optimiser and scheduler with per-group LRs."""
        c, o = self.cfg, self.cfg["optim"]
        bn_names = self._bn_param_names() if c["model"]["freeze_bn"] else set()
        for key in ph["trainable"]:
            if not any(self._match(n, key) for n, _ in self.model.named_parameters()):
                raise ConfigError(f"phase {ph['name']!r}: trainable {key!r} matches no parameter of "
                                  f"{c['model']['name']!r} (module prefixes such as 'head', 'backbone', "
                                  f"'all' or a submodule name)")
        groups: dict = {}
        lr_spec, wd_spec = ph["lr"], ph["weight_decay"]
        for n, p in self.model.named_parameters():
            train_it = any(self._match(n, k) for k in ph["trainable"]) and n not in bn_names
            p.requires_grad_(train_it)
            if not train_it:
                continue
            is_head = self._is_head(n)
            default_lr = (o["head_lr"] if (is_head and o["head_lr"] is not None) else o["lr"])
            lr = self._pick(lr_spec, n, default_lr)
            wd = self._pick(wd_spec, n, o["weight_decay"])
            groups.setdefault((lr, wd), []).append(p)
        if self.uw is not None:
            groups.setdefault((self._pick(lr_spec, "head.uw", o["lr"]), o["weight_decay"]), []).extend(
                self.uw.parameters())
        if not groups:
            raise ConfigError(f"phase {ph['name']!r}: no trainable parameters")
        pg = [{"params": ps, "lr": lr, "weight_decay": wd} for (lr, wd), ps in groups.items()]
        if o["name"] == "adam":
            opt = torch.optim.Adam(pg, betas=tuple(o["betas"]))
        elif o["name"] == "adamw":
            opt = torch.optim.AdamW(pg, betas=tuple(o["betas"]))
        else:
            opt = torch.optim.SGD(pg, momentum=o["momentum"])
        self.optimizer = opt
        spec = ph["scheduler"] if ph["scheduler"] is not None else c["scheduler"]
        steps = math.ceil(len(self._loader("train", True)) / 1)
        if c["train"]["max_steps_per_epoch"]:
            steps = min(steps, c["train"]["max_steps_per_epoch"])
        self.scheduler, self.sched_interval = build_scheduler(
            opt, spec, steps_per_epoch=steps, epochs=max(ph["epochs"], 1), mode=self.mode)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp)
        self.trainable = [p for p in self.model.parameters() if p.requires_grad]

    def _pick(self, spec, name, default):
        if spec is None:
            return float(default)
        if not isinstance(spec, dict):
            return float(spec)
        # most specific key first: submodule prefixes, then head/backbone, then all
        keys = sorted(spec, key=lambda k: (k in ("head", "backbone", "all"), k == "all", -len(k)))
        for k in keys:
            if self._match(name, k) or (name == "head.uw" and k == "head"):
                return float(spec[k])
        return float(default)

    def _train_mode(self):
        self.net.train()
        for m in self.model.modules():
            if isinstance(m, _BN):
                params = list(m.parameters(recurse=False))
                if self.cfg["model"]["freeze_bn"] or (params and not any(p.requires_grad for p in params)):
                    m.eval()  # frozen BN keeps its running statistics (LVH bug 2)

    # -- one epoch ---------------------------------------------------------------
    def _step(self, batch):
        c = self.cfg
        if self.record_level:
            x, mask, y, clin, _ = batch
            mask = mask.to(self.device)
        else:
            x, y, clin, _ = batch
        x, y = x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
        clin = clin.to(self.device) if clin.shape[-1] else None
        with torch.autocast("cuda", enabled=self.amp):
            if self.record_level:
                out = self.net(x, mask, clinical=clin)
            else:
                out = self.net(x, clinical=clin) if clin is not None else self.net(x)
        out = as_matrix(out, self.tasks)
        losses = masked_task_losses(out, y, self.tasks, self.pos_weight)
        weights = [t["weight"] for t in self.tasks]
        plain = sum(losses) / len(losses)
        self.optimizer.zero_grad(set_to_none=True)
        lw = c["loss"]
        if lw["pcgrad"]:
            from ecgcore.models.multitask import pcgrad_backward
            if self.uw is not None:
                task_l = list(self.uw.task_losses(torch.stack(losses)).unbind())
            else:
                task_l = [w * l for w, l in zip(weights, losses)]
            # scaled like the plain path: scaler.step unscales every gradient (PCGrad is scale-equivariant)
            task_l = [self.scaler.scale(l) for l in task_l]
            params = [p for p in self.model.parameters() if p.requires_grad]
            pcgrad_backward(task_l, params, order=lw["pcgrad_order"], generator=None)
            ddp.all_reduce_grads(params)
            if self.uw is not None:
                self.scaler.scale(self.uw.weight_loss(torch.stack(losses))).backward()
        else:
            if self.uw is not None:
                total = self.uw(torch.stack(losses))
            elif lw["weighting"] == "sum":
                total = sum(w * l for w, l in zip(weights, losses))
            else:
                total = sum(w * l for w, l in zip(weights, losses)) / sum(weights)
            self.scaler.scale(total).backward()
        if self.uw is not None:   # the task weights live outside the DDP module: average them by hand
            ddp.all_reduce_grads(list(self.uw.parameters()))
        if c["optim"]["clip_grad_norm"]:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.trainable, c["optim"]["clip_grad_norm"])
        self.scaler.step(self.optimizer)
        self.scaler.update()
        if self.sched_interval == "step":
            self.scheduler.step()
        self.state["step"] += 1
        return float(plain.detach())

    def _train_epoch(self, ph):
        self._train_mode()
        ds = self.ds["train"]
        # one draw from the loader generator per epoch seeds all of this epoch's augmentations
        ds.epoch_seed = int(torch.randint(0, 2**62, (1,), generator=self.generator))
        loader = self._loader("train", True)
        limit = self.cfg["train"]["max_steps_per_epoch"]
        total = len(loader) if not limit else min(limit, len(loader))
        bar = None
        if self.progress and ddp.is_main():
            try:
                from tqdm.auto import tqdm
                bar = tqdm(total=total, desc=f"epoch {self.state['epoch'] + 1} ({ph['name']})",
                           leave=False, file=sys.stderr, dynamic_ncols=True)
            except ImportError:
                bar = None
        losses = []
        for i, batch in enumerate(loader):
            if i >= total:
                break
            losses.append(self._step(batch))
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{np.mean(losses):.4f}")
        if bar is not None:
            bar.close()
        return float(np.mean(losses)) if losses else float("nan")

    # -- evaluation ----------------------------------------------------------------
    def predict_split(self, split: str):
        """Record-level predictions and validation loss of a split (all ranks get the same result)."""
        ds = self.ds[split]
        idx = np.arange(len(ds))
        shard = idx[ddp.rank()::ddp.world_size()]
        sub = torch.utils.data.Subset(ds, shard)
        loader = torch.utils.data.DataLoader(sub, batch_size=self.cfg["data"]["eval_batch_size"],
                                             shuffle=False, num_workers=self.cfg["data"]["num_workers"],
                                             worker_init_fn=_worker_init,
                                             collate_fn=collate_records if self.record_level else None)
        if self.record_level:
            raw, pos = run_records(self.model, loader, self.device, self.tasks, self.amp)
        else:
            raw, pos = run_segments(self.model, loader, self.device, self.tasks, self.amp)
        parts = ddp.gather_objects((raw, pos))
        raw = np.concatenate([p[0] for p in parts if len(p[1])])
        pos = np.concatenate([p[1] for p in parts if len(p[1])])
        order = np.argsort(pos, kind="stable")
        raw, pos = raw[order], pos[order]
        rows = ds.records[pos] if self.record_level else self.store.seg_record[ds.seg_idx[pos]]
        y = torch.from_numpy(ds.targets[rows])
        with torch.no_grad():
            vl = masked_task_losses(torch.from_numpy(raw), y, self.tasks, self.pos_weight)
        val_loss = float(sum(float(v) for v in vl) / len(vl))
        # record level: one output row per record already; mean of one row is that row
        pred = aggregate_records(decode(raw, self.tasks, self.target_scaler.state()), rows,
                                 self.store.n_records,
                                 "mean" if self.record_level else self.cfg["data"]["aggregate"])
        recs = self.splits[split]
        return {k: v[recs] for k, v in pred.items()}, val_loss

    def _validate(self):
        if ddp.is_distributed():
            # every rank validates the model rank 0 checkpoints: BatchNorm running statistics
            # are per rank under DDP, so take rank 0's
            import torch.distributed as dist
            for b in self.model.buffers():
                dist.broadcast(b, 0)
        pred, loss = self.predict_split("val")
        tgt = self.store.targets[self.splits["val"]]
        metrics = _task_metrics(pred, tgt, self.tasks)
        return loss, metrics, _summary_metric(metrics, self.tasks, self.monitor, loss)

    # -- checkpoints ------------------------------------------------------------------
    def _payload(self, full: bool) -> dict:
        p = {"config": self.cfg, "model_spec": self.model_spec,
             "model_state": {k: v.detach().cpu() for k, v in self.model.state_dict().items()},
             "preset": self.preset, "expected_preset": expected_preset(self.cfg, self.model),
             "tasks": [t["name"] for t in self.tasks],
             "label_columns": [t["column"] or t["name"] for t in self.tasks],
             "output_layout": [list(x) for x in output_layout(self.tasks)],
             "target_scaler": self.target_scaler.state(),
             "clinical_cols": list(self.cfg["data"]["clinical"]),
             "clinical_scaler": self.clinical_scaler.state() if self.clinical_scaler else None,
             "pos_weight": dict(self.pos_weight), "thresholds": dict(self.thresholds),
             # best.pt holds the best epoch's weights (finish() reloads them): say which epoch that was
             "epoch": self.state["epoch"] if full else (self.state["best_epoch"] or self.state["epoch"]),
             "best_epoch": self.state["best_epoch"], "monitor": self.monitor, "best": self.state["best"],
             "uw": self.uw.state_dict() if self.uw is not None else None,
             # record ids per split: 'ecgcore evaluate' on the training dataset then scores only the
             # held-out records, never the ones the weights or the thresholds were fitted on
             "splits": {k: [str(self.store.record_ids[i]) for i in v] for k, v in self.splits.items()},
             "split_fingerprints": self.fingerprints}
        if full:
            p.update({"optimizer": self.optimizer.state_dict(),
                      "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
                      "grad_scaler": self.scaler.state_dict(),
                      "rng": capture_rng(self.generator),
                      "trainer": json.loads(json.dumps(self.state))})
        return p

    def _save(self, name: str, full: bool):
        if ddp.is_main():
            os.makedirs(self.ckdir, exist_ok=True)
            save_checkpoint(os.path.join(self.ckdir, name), self._payload(full))

    def _log(self, row: dict):
        if not ddp.is_main():
            return
        path = os.path.join(self.out, "log.csv")
        hist = self.state["history"]
        keys = list(dict.fromkeys(k for r in hist for k in r))
        # rewritten whole: a resumed run never duplicates rows
        with atomic_open(path, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=keys, restval="")
            w.writeheader()
            w.writerows(hist)
        if self._tb is not None:
            for k, v in row.items():
                if isinstance(v, (int, float)) and k != "epoch" and np.isfinite(v):
                    self._tb.add_scalar(k, v, row["epoch"])

    # -- the loop --------------------------------------------------------------------
    def resume(self):
        path = os.path.join(self.ckdir, "last.pt")
        ck = load_checkpoint(path)
        hint = f"resume with the config of that run ({os.path.join(self.out, 'config.json')})"
        spec = ck.get("model_spec") or {}
        if spec.get("name") != self.model_spec.get("name"):
            raise CheckpointError(f"the run being resumed trained model {spec.get('name')!r}, this config "
                                  f"builds {self.model_spec.get('name')!r}: {hint}", path)
        try:
            self.model.load_state_dict(ck["model_state"])
        except RuntimeError as exc:   # same model name, other options (width, heads, tasks)
            first = str(exc).strip().splitlines()
            raise CheckpointError(f"the run being resumed has a model of another shape than this config "
                                  f"builds ({first[1].strip() if len(first) > 1 else first[0]}): {hint}",
                                  path) from None
        # continuing on other records would leak held-out records into training (and the
        # epochs already run were selected on another validation split): refuse
        now = {k: [str(self.store.record_ids[i]) for i in v] for k, v in self.splits.items()}
        was = ck.get("splits")
        if was is not None and {k: list(v) for k, v in was.items()} != now:
            diff = ", ".join(f"{k}: {len(was.get(k, []))} -> {len(now.get(k, []))}" for k in ("train", "val", "test"))
            raise CheckpointError(f"the data or the split differ from the run being resumed (records per "
                                  f"split {diff}): {hint}", path)
        if self.uw is not None and ck.get("uw") is not None:
            self.uw.load_state_dict(ck["uw"])
        self.state = ck["trainer"]
        self.thresholds = ck.get("thresholds") or {}
        self._resume_ck = ck

    def fit(self, resume: bool = False, stop_after_epochs: int | None = None) -> dict:
        c = self.cfg
        os.makedirs(self.out, exist_ok=True)
        self._tb = None
        self._resume_ck = None
        if resume:
            self.resume()
        if ddp.is_main():
            with atomic_open(os.path.join(self.out, "config.json"), "w") as f:
                json.dump(c, f, indent=1)
            if c["train"]["tensorboard"]:
                try:
                    from torch.utils.tensorboard import SummaryWriter
                    self._tb = SummaryWriter(os.path.join(self.out, "tensorboard"))
                except ImportError:  # tensorboard is optional; the CSV log is always written
                    self._tb = None
        phases = self.phases()
        ran = 0
        finished_before = False
        t0 = time.perf_counter()
        while self.state["phase"] < len(phases):
            ph = phases[self.state["phase"]]
            self._setup_phase(ph)
            if self._resume_ck is not None:  # restore the optimiser etc. of the interrupted phase
                ck, self._resume_ck = self._resume_ck, None
                self.optimizer.load_state_dict(ck["optimizer"])
                if self.scheduler is not None and ck.get("scheduler") is not None:
                    self.scheduler.load_state_dict(ck["scheduler"])
                self.scaler.load_state_dict(ck["grad_scaler"])
                restore_rng(ck["rng"], self.generator)
            patience = ph["early_stopping"] if ph["early_stopping"] is not None else c["train"]["early_stopping"]
            while not self.state["phase_done"] and self.state["epoch_in_phase"] < ph["epochs"]:
                if stop_after_epochs is not None and ran >= stop_after_epochs:
                    return {"stopped": True, "epoch": self.state["epoch"]}
                te = time.perf_counter()
                tr_loss = self._train_epoch(ph)
                val_loss, metrics, value = self._validate()
                if self.sched_interval == "epoch":
                    self.scheduler.step()
                elif self.sched_interval == "plateau":
                    self.scheduler.step(value)
                self.state["epoch"] += 1
                self.state["epoch_in_phase"] += 1
                ran += 1
                improved = False
                if ph["select_best"] and np.isfinite(value):
                    best = self.state["best"]
                    improved = best is None or (value < best if self.mode == "min" else value > best)
                if improved:
                    self.state["best"], self.state["best_epoch"], self.state["bad"] = value, self.state["epoch"], 0
                    self._save("best.pt", full=False)
                elif ph["select_best"]:
                    self.state["bad"] += 1
                row = {"epoch": self.state["epoch"], "phase": ph["name"], "train_loss": tr_loss,
                       "val_loss": val_loss, self.monitor: value,
                       "lr": max(g["lr"] for g in self.optimizer.param_groups),
                       "seconds": round(time.perf_counter() - te, 3)}
                for tn, m in metrics.items():
                    for k, v in m.items():
                        if k != "n":
                            row[f"val_{tn}_{k}"] = v
                self.state["history"].append(row)
                if patience and self.state["bad"] >= patience:
                    self.state["phase_done"] = True
                if c["train"]["save_every_epoch"] or self.state["phase_done"]:
                    self._save("last.pt", full=True)
                self._log(row)
                ddp.barrier()
            if ph["reload_best"] and self.state["best_epoch"] is not None:
                self._load_best()
            self.state["phase"] += 1
            self.state["epoch_in_phase"] = 0
            self.state["phase_done"] = False
            self.state["bad"] = 0
        if self._resume_ck is None:
            self._save("last.pt", full=True)
        else:
            # resumed a run whose every phase had finished (killed while writing its metrics, or
            # resumed again): nothing left to train; last.pt is already the final state, and
            # rewriting it would need the optimiser of a phase that was never set up here
            self._resume_ck = None
            finished_before = True
        if self.state["best_epoch"] is None:   # no selectable epoch: the final weights are the best
            self._save("best.pt", full=False)
        else:
            self._load_best()
        result = self.finish()
        result["train_seconds"] = round(time.perf_counter() - t0, 2)
        if finished_before:
            # said in metrics.json too: a longer 'train.epochs' does not extend a finished run
            result["resumed_finished_run"] = (f"every phase had finished before this --resume "
                                              f"({self.state['epoch']} epochs); nothing was trained, "
                                              f"the metrics were recomputed from checkpoints/best.pt")
        if ddp.is_main():
            _write_json(os.path.join(self.out, "metrics.json"), result)
        if self._tb is not None:
            self._tb.close()
        ddp.barrier()
        return result

    def _load_best(self):
        path = os.path.join(self.ckdir, "best.pt")
        ddp.barrier()
        ck = load_checkpoint(path)
        self.model.load_state_dict(ck["model_state"])
        if self.uw is not None and ck.get("uw") is not None:
            self.uw.load_state_dict(ck["uw"])

    def finish(self) -> dict:
        """Thresholds on validation, metrics of the best model on validation and test, predictions CSV."""
        preds, metrics = {}, {}
        for split in ("val", "test"):
            if split in self.ds:
                preds[split], _ = self.predict_split(split)
                metrics[split] = _task_metrics(preds[split], self.store.targets[self.splits[split]], self.tasks)
        from ecgcore import stats
        for j, t in enumerate(self.tasks):
            two_class = t["type"] == "multiclass" and int(t.get("n_classes") or 0) == 2
            if t["type"] != "binary" and not two_class:
                continue
            yv = self.store.targets[self.splits["val"], j]
            # a 2-class softmax task is scored like a binary one, on P(class 1)
            score = (lambda p: np.asarray(p)[:, 1]) if two_class else np.asarray
            pv = score(preds["val"][t["name"]])
            ok = ~np.isnan(yv)
            if len(np.unique(yv[ok])) == 2:
                thr = stats.choose_threshold(yv[ok], pv[ok], t["threshold_rule"], t["threshold_target"])
                self.thresholds[t["name"]] = float(thr)
                if "test" in preds:
                    yt = self.store.targets[self.splits["test"], j]
                    okt = ~np.isnan(yt)
                    if len(np.unique(yt[okt])) == 2:
                        bm = stats.binary_metrics(yt[okt], score(preds["test"][t["name"]])[okt], float(thr))
                        metrics["test"][t["name"]].update(
                            {f"{k}_at_val_threshold": v for k, v in bm.items() if isinstance(v, (int, float))})
        # baselines a model must beat: the training mean (regression) and a constant score (AUROC 0.5)
        base = {}
        tr = self.splits["train"]
        for j, t in enumerate(self.tasks):
            col = self.store.targets[tr, j]
            col = col[~np.isnan(col)]
            if t["type"] == "regression" and "test" in preds and col.size:
                yt = self.store.targets[self.splits["test"], j]
                ok = ~np.isnan(yt)
                sse = float(np.sum((yt[ok] - col.mean()) ** 2))
                sst = float(np.sum((yt[ok] - yt[ok].mean()) ** 2))
                base[t["name"]] = {"train_mean": float(col.mean()),
                                   "r2_of_train_mean": 1 - sse / sst if sst > 0 else float("nan")}
            elif t["type"] == "binary" and col.size:
                base[t["name"]] = {"train_prevalence": float(col.mean()), "auroc_of_constant": 0.5}
        self._save("best.pt", full=False)   # now with the validation thresholds
        if ddp.is_main():
            self._write_predictions(preds)
            if not self.record_level:   # the attention pool is not part of the registry model
                # the best weights as a plain model file, the model.pretrained of a follow-up config
                # (lvh_external_tune starts from runs/lvh_fcn/best.safetensors)
                from ecgcore.models.checkpoint import deploy_settings, save as save_model
                # with the run's preset, scalers and thresholds: the file predicts as best.pt does
                save_model(self.model, os.path.join(self.out, "best.safetensors"),
                           deploy=deploy_settings(self._payload(full=False)))
        return {"name": self.cfg["name"], "model": self.cfg["model"]["name"],
                "monitor": self.monitor, "mode": self.mode, "best_epoch": self.state["best_epoch"],
                "best_value": self.state["best"], "epochs_run": self.state["epoch"],
                "splits": {k: {"records": int(len(v)), "patients": int(len(np.unique(self.store.patients[v])))}
                           for k, v in self.splits.items()},
                "target_scaler": self.target_scaler.state(), "pos_weight": self.pos_weight,
                "thresholds": self.thresholds, "thresholds_chosen_on": "val",
                "val": metrics.get("val"), "test": metrics.get("test"), "baselines": base,
                "checkpoints": {"best": os.path.join(self.ckdir, "best.pt"),
                                "last": os.path.join(self.ckdir, "last.pt"),
                                **({} if self.record_level else
                                   {"model": os.path.join(self.out, "best.safetensors")})}}

    def _write_predictions(self, preds):
        path = os.path.join(self.out, "predictions.csv")
        cols = ["record_id", "patient_id", "split"]
        for t in self.tasks:
            cols.append(f"{t['name']}_true")
            cols += ([f"{t['name']}_p{k}" for k in range(t["n_classes"])] if t["type"] == "multiclass"
                     else [f"{t['name']}_pred"])
        with atomic_open(path, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(cols)
            for split, pred in preds.items():
                for i, r in enumerate(self.splits[split]):
                    row = [self.store.record_ids[r], self.store.patients[r], split]
                    for j, t in enumerate(self.tasks):
                        row.append(_fmt(self.store.targets[r, j]))
                        v = pred[t["name"]][i]
                        row += [_fmt(x) for x in np.atleast_1d(v)]
                    w.writerow(row)


def _fmt(v) -> str:
    v = float(v)
    return "" if not np.isfinite(v) else repr(round(v, 6))


def _write_json(path, obj):
    # NaN/inf (an R² of a constant test target, a metric of an empty split) as null: bare NaN is
    # not JSON, and jq, JavaScript and most JSON readers refuse the whole file
    from ecgcore.stats.report import json_safe
    with atomic_open(path, "w") as f:
        json.dump(json_safe(obj), f, indent=1, default=lambda o: o.item() if hasattr(o, "item") else str(o),
                  allow_nan=False)


def train(cfg: dict, out_dir, *, resume: bool = False, progress: bool | None = None,
          stop_after_epochs: int | None = None) -> dict:
    """Train a validated config (see :func:`ecgcore.models.train.config.validate`) into ``out_dir``.

    Returns the content of ``out_dir/metrics.json``. ``stop_after_epochs``
    interrupts the run after that many epochs of *this call* (as a kill
    would, after the epoch's checkpoint); ``resume=True`` continues from
    ``out_dir/checkpoints/last.pt``.
    """
    trainer = Trainer(cfg, out_dir, progress=progress)
    return trainer.fit(resume=resume, stop_after_epochs=stop_after_epochs)

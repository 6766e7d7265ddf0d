"""Issue 7 audit: engine features checked against references, not just "it runs".

Reduce-on-plateau replayed with torch's own scheduler on the logged monitor values; gradient
clipping bounds an SGD step exactly; PCGrad + uncertainty weighting give the same step with and
without a gradient scaler (the AMP path); progressive unfreezing changes only the unfrozen blocks and
keeps BatchNorm statistics with ``freeze_bn``; every phase gets a fresh optimiser; the TensorBoard
scalars equal the CSV log; the distributed sampler shards the training split; ``--set`` reaches the
config through the CLI; grouped stratified k-fold covers every record once with an inner validation
split; every shipped config builds its model, matches its preset and its phases name real modules.
"""

from __future__ import annotations

import csv
import glob
import math
import os
import sys
import types

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from ecgcore.cli import main as cli_main
from ecgcore.errors import ConfigError
from ecgcore.models.train import load_config, train, validate
from ecgcore.models.train import ddp
from ecgcore.models.train.data import Store, make_splits
from ecgcore.models.train.engine import Trainer, build_model, check_preset, expected_preset

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _cfg(**over):
    raw = {"seed": 5, "threads": 1,
           "model": {"name": "fcn_lvh_small", "options": {"n_clinical": 0, "conv_dropout": 0.0,
                                                          "lin_dropout": 0.0}},
           "data": {"source": "simulated", "simulate": {"n": 24, "seed": 2}, "batch_size": 8},
           "tasks": [{"name": "qrs_duration_ms"}, {"name": "tachycardia", "type": "binary"}],
           "optim": {"name": "adam", "lr": 0.01},
           "train": {"epochs": 2, "tensorboard": False, "progress": False}}
    for k, v in over.items():
        raw[k] = v
    return validate(raw)


def _batch(tr):
    return next(iter(tr._loader("train", True)))


def _params(model):
    return {k: v.detach().clone() for k, v in model.named_parameters()}


# ---------------------------------------------------------------------------
# schedules, clipping, AMP scaling of PCGrad
# ---------------------------------------------------------------------------

def test_plateau_schedule_and_early_stopping_match_a_replay_of_the_logged_monitor(tmp_path):
    cfg = _cfg(optim={"name": "adam", "lr": 0.05},
               scheduler={"type": "plateau", "factor": 0.5, "patience": 0},
               train={"epochs": 12, "early_stopping": 2, "tensorboard": False, "progress": False})
    m = train(cfg, tmp_path / "r", progress=False)
    with open(tmp_path / "r" / "log.csv") as f:
        log = list(csv.DictReader(f))
    monitor = [float(r["val_loss"]) for r in log]
    logged = [float(r["lr"]) for r in log]
    # early stopping: stop at the first epoch with 2 epochs in a row without a new best
    best, bad, stop = math.inf, 0, 12
    for k, v in enumerate(monitor, start=1):
        best, bad = (v, 0) if v < best else (best, bad + 1)
        if bad >= 2:
            stop = k
            break
    assert len(log) == stop < 12, monitor          # it did stop early, where the rule says
    assert m["best_epoch"] == int(np.argmin(monitor)) + 1 and m["best_value"] == min(monitor)
    ck = torch.load(tmp_path / "r" / "checkpoints" / "best.pt", weights_only=True)
    assert {"config", "preset", "target_scaler", "label_columns", "thresholds", "model_spec"} <= set(ck)
    assert ck["epoch"] == m["best_epoch"] and ck["label_columns"] == ["qrs_duration_ms", "tachycardia"]
    # reference: torch's ReduceLROnPlateau fed the same values, one step per epoch
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.Adam([p], lr=0.05)
    ref = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="min", factor=0.5, patience=0)
    want = []
    for v in monitor:
        ref.step(v)
        want.append(opt.param_groups[0]["lr"])
    assert logged == pytest.approx(want, rel=1e-12)
    assert min(logged) < 0.05   # the replay saw at least one reduction: the check is not vacuous


@pytest.mark.parametrize("clip", [None, 1e-4])
def test_gradient_clipping_bounds_an_sgd_step(tmp_path, clip):
    cfg = _cfg(optim={"name": "sgd", "lr": 1.0, "momentum": 0.0, "clip_grad_norm": clip})
    tr = Trainer(cfg, tmp_path / "r", progress=False)
    tr._setup_phase(tr.phases()[0])
    tr.net.eval()                                  # no dropout / BN update: a pure gradient step
    batch = _batch(tr)
    before = _params(tr.model)
    # the unclipped gradient norm, computed independently
    out = tr.model(batch[0])
    from ecgcore.models.train.engine import masked_task_losses
    from ecgcore.models.train.predict import as_matrix
    ls = masked_task_losses(as_matrix(out, tr.tasks), batch[1], tr.tasks, tr.pos_weight)
    g = torch.autograd.grad(sum(ls) / len(ls), [p for p in tr.model.parameters()])
    gnorm = float(torch.sqrt(sum((x * x).sum() for x in g)))
    tr._step(batch)
    after = _params(tr.model)
    step = math.sqrt(sum(float(((after[k] - before[k]) ** 2).sum()) for k in before))
    if clip is None:
        assert step == pytest.approx(gnorm, rel=1e-4)          # lr 1: the step is the gradient
    else:
        assert gnorm > 100 * clip and step == pytest.approx(clip, rel=1e-4)


def test_pcgrad_with_uncertainty_weighting_is_unchanged_by_a_grad_scaler(tmp_path):
    """AMP on CUDA scales the loss; PCGrad gradients must be scaled too, or scaler.step divides them
    by the scale (a 65536-fold smaller step). Emulated on CPU with an enabled CPU GradScaler."""
    cfg = _cfg(tasks=[{"name": "af", "type": "binary"}, {"name": "tachycardia", "type": "binary"}],
               loss={"weighting": "uncertainty", "pcgrad": True},
               optim={"name": "sgd", "lr": 0.1, "momentum": 0.0, "clip_grad_norm": 10.0})
    steps = []
    for scaled in (False, True):
        tr = Trainer(cfg, tmp_path / f"r{int(scaled)}", progress=False)
        tr._setup_phase(tr.phases()[0])
        if scaled:
            tr.scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 12, enabled=True)
        tr.net.eval()
        batch = _batch(tr)
        before, s0 = _params(tr.model), tr.uw.log_vars.detach().clone()
        tr._step(batch)
        after = _params(tr.model)
        steps.append((np.concatenate([(after[k] - before[k]).numpy().ravel() for k in before]),
                      (tr.uw.log_vars.detach() - s0).numpy()))
    (d0, u0), (d1, u1) = steps
    assert np.abs(d0).max() > 1e-6 and np.abs(u0).max() > 1e-6     # both the model and s moved
    np.testing.assert_allclose(d1, d0, rtol=1e-4, atol=1e-9)
    np.testing.assert_allclose(u1, u0, rtol=1e-5, atol=1e-9)


# ---------------------------------------------------------------------------
# phases: progressive unfreezing, fresh optimiser, frozen BatchNorm
# ---------------------------------------------------------------------------

def test_progressive_unfreezing_from_the_head_inwards(tmp_path):
    phases = [{"name": "out", "epochs": 1, "trainable": ["head"], "lr": 0.01,
               "scheduler": {"type": "plateau", "factor": 0.1, "patience": 0}},
              {"name": "in3", "epochs": 1, "trainable": ["head", "in3"], "lr": {"head": 0.01, "in3": 0.02}},
              {"name": "in2", "epochs": 1, "trainable": ["head", "in3", "in2"],
               "lr": {"head": 0.01, "backbone": 0.03}}]
    cfg = _cfg(phases=phases, model={"name": "fcn_lvh_small", "freeze_bn": True,
                                     "options": {"n_clinical": 0}})
    tr = Trainer(cfg, tmp_path / "r", progress=False)
    allowed = [("head.",), ("head.", "in3."), ("head.", "in3.", "in2.")]
    wanted_lrs = [[0.01], [0.01, 0.02], [0.01, 0.03]]
    for ph, ok, lrs in zip(cfg["phases"], allowed, wanted_lrs):
        tr._setup_phase(ph)
        # a fresh optimiser per phase: the LRs are the phase's, whatever the last phase reduced them to
        assert sorted({g["lr"] for g in tr.optimizer.param_groups}) == lrs
        before = {k: v.clone() for k, v in tr.model.state_dict().items()}
        tr._train_epoch(ph)
        after = tr.model.state_dict()
        changed = {k for k in before if not torch.equal(before[k], after[k])}
        assert changed and all(k.startswith(ok) for k in changed), (ph["name"], changed)
        # freeze_bn: no BN affine parameter or running statistic moves, even in unfrozen blocks
        assert not any(".1." in k for k in changed), changed
        for g in tr.optimizer.param_groups:   # reduce the LR as a plateau would; the next phase resets
            g["lr"] *= 0.1


# ---------------------------------------------------------------------------
# logging: TensorBoard scalars, rank-0 only
# ---------------------------------------------------------------------------

def test_dataloader_workers_do_not_change_the_run(tmp_path):
    """Augmentation draws come from (epoch seed, segment), never from a worker's global RNG (CCTA bug 4):
    two workers give bit-identical weights to the main process, and each epoch draws anew."""
    aug = {"scale": [0.8, 1.2], "noise": 0.05, "crop": 10, "shift": 0.1, "mask": 0.5}
    states = []
    for nw in (0, 2):
        c = _cfg(data={"source": "simulated", "simulate": {"n": 24, "seed": 2}, "batch_size": 8,
                       "num_workers": nw, "augment": aug})
        train(c, tmp_path / f"w{nw}", progress=False)
        states.append(torch.load(tmp_path / f"w{nw}" / "checkpoints" / "last.pt", weights_only=True)["model_state"])
    for k in states[0]:
        assert torch.equal(states[0][k], states[1][k]), k
    tr = Trainer(_cfg(data={"source": "simulated", "simulate": {"n": 24, "seed": 2}, "augment": aug}),
                 tmp_path / "x", progress=False)
    ds = tr.ds["train"]
    ds.epoch_seed = 1
    a0, a1 = ds[0][0], ds[1][0]
    assert torch.equal(a0, ds[0][0])                          # reproducible within an epoch
    ds.epoch_seed = 2
    assert not torch.equal(a0, ds[0][0]) and not torch.equal(a1, ds[1][0])   # new draws next epoch


def test_tensorboard_scalars_equal_the_csv_log_and_a_progress_bar_runs(tmp_path, monkeypatch, capsys):
    calls, closed = [], []

    class Writer:
        def __init__(self, log_dir):
            self.log_dir = log_dir

        def add_scalar(self, tag, value, step):
            calls.append((tag, float(value), int(step)))

        def close(self):
            closed.append(self.log_dir)

    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", types.SimpleNamespace(SummaryWriter=Writer))
    cfg = _cfg(train={"epochs": 2, "tensorboard": True, "progress": True})
    train(cfg, tmp_path / "r")
    assert "epoch 2 (train)" in capsys.readouterr().err      # the per-epoch progress bar (tqdm)
    assert closed == [os.path.join(str(tmp_path / "r"), "tensorboard")]
    with open(tmp_path / "r" / "log.csv") as f:
        log = list(csv.DictReader(f))
    want = set()
    for r in log:
        for k, v in r.items():
            if k in ("epoch", "phase") or v == "":
                continue
            if math.isfinite(float(v)):
                want.add((k, int(r["epoch"])))
                got = [c[1] for c in calls if c[0] == k and c[2] == int(r["epoch"])]
                assert got == [pytest.approx(float(v), rel=1e-12)], (k, r["epoch"], got)
    assert {(c[0], c[2]) for c in calls} == want and {"train_loss", "val_loss", "lr"} <= {c[0] for c in calls}


def test_no_tensorboard_writer_and_no_log_off_rank_0(tmp_path, monkeypatch):
    cfg = _cfg(train={"epochs": 1, "tensorboard": True, "progress": False})
    tr = Trainer(cfg, tmp_path / "r", progress=False)
    monkeypatch.setattr(ddp, "rank", lambda: 1)
    tr._tb = None
    tr.state["history"].append({"epoch": 1, "val_loss": 1.0})
    tr._log({"epoch": 1, "val_loss": 1.0})
    tr._save("last.pt", full=False)
    assert not (tmp_path / "r" / "log.csv").exists() and not (tmp_path / "r" / "checkpoints").exists()


# ---------------------------------------------------------------------------
# distributed sampler
# ---------------------------------------------------------------------------

def test_distributed_sampler_shards_the_training_split(tmp_path, monkeypatch):
    tr = Trainer(_cfg(), tmp_path / "r", progress=False)
    n = len(tr.ds["train"])
    monkeypatch.setattr(ddp, "world_size", lambda: 2)
    shards = {}
    for r in (0, 1):
        monkeypatch.setattr(ddp, "rank", lambda r=r: r)
        for epoch in (0, 1):
            tr.state["epoch"] = epoch
            loader = tr._loader("train", True)
            assert isinstance(loader.sampler, torch.utils.data.distributed.DistributedSampler)
            shards[r, epoch] = list(loader.sampler)
    for epoch in (0, 1):
        a, b = shards[0, epoch], shards[1, epoch]
        assert len(a) == len(b) == math.ceil(n / 2)
        assert set(a) | set(b) == set(range(n))                 # every training item on some rank
        assert len(set(a) & set(b)) <= 2 * math.ceil(n / 2) - n   # only the padding repeats
    assert shards[0, 0] != shards[0, 1]                           # reshuffled per epoch (set_epoch)


# ---------------------------------------------------------------------------
# CLI --set, k-fold splits
# ---------------------------------------------------------------------------

def test_cli_set_overrides_are_validated_before_training(tmp_path, capsys):
    smoke = os.path.join(ROOT, "configs", "smoke.yaml")
    out = str(tmp_path / "r")
    assert cli_main(["train", "--config", smoke, "--out", out, "--check", "--set", "optim.lr=1e-4",
                     "--set", "tasks.0.loss=huber"]) == 0
    assert cli_main(["train", "--config", smoke, "--out", out, "--set", "optim.lrr=1e-4"]) == 2
    assert "optim.'lrr'" in capsys.readouterr().err
    assert cli_main(["train", "--config", smoke, "--out", out, "--set", "train.epochs=two"]) == 2
    assert "train.epochs" in capsys.readouterr().err
    assert cli_main(["train", "--config", smoke, "--out", out, "--set", "tasks.1.loss=mse"]) == 2
    assert "tasks[1].loss" in capsys.readouterr().err
    assert not os.path.exists(out)                                 # nothing built, nothing written
    cfg = load_config(smoke, ["optim.lr=1e-4", "tasks.0.loss=huber"])
    assert cfg["optim"]["lr"] == pytest.approx(1e-4) and cfg["tasks"][0]["loss"] == "huber"


def _fake_store(n_pat=50, seed=0):
    rng = np.random.default_rng(seed)
    per = rng.integers(1, 4, n_pat)
    pats = np.repeat([f"p{i:03d}" for i in range(n_pat)], per)
    y_pat = (rng.random(n_pat) < 0.3).astype(np.float32)
    y = np.repeat(y_pat, per)[:, None]
    n = len(pats)
    return Store(None, np.arange(n), [f"r{i}" for i in range(n)], pats, y,
                 np.zeros((n, 0), np.float32), {"name": "lvh"})


def test_grouped_stratified_kfold_covers_every_record_once_with_an_inner_validation_split():
    store = _fake_store()
    seen = np.zeros(store.n_records, int)
    for fold in range(5):
        cfg = validate({"model": {"name": "m"}, "data": {"dataset": "d", "split": {
            "method": "kfold", "folds": 5, "fold": fold, "seed": 7, "val_fraction": 0.25}},
            "tasks": [{"name": "y", "type": "binary"}]})
        sp = make_splits(store, cfg)
        pats = {k: set(store.patients[v]) for k, v in sp.items()}
        assert not (pats["train"] & pats["val"]) and not (pats["train"] & pats["test"])
        assert not (pats["val"] & pats["test"])                    # selection never on the reported fold
        assert len(sp["train"]) + len(sp["val"]) + len(sp["test"]) == store.n_records
        seen[sp["test"]] += 1
        # stratified: each fold's test and inner validation keep both classes
        for k in ("val", "test"):
            assert set(np.unique(store.targets[sp[k], 0])) == {0.0, 1.0}
        assert len(pats["val"]) == pytest.approx(0.25 * (len(pats["train"]) + len(pats["val"])), abs=2)
    assert (seen == 1).all()


# ---------------------------------------------------------------------------
# every shipped config builds its model and matches its preset
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("path", sorted(glob.glob(os.path.join(ROOT, "configs", "*.yaml"))),
                         ids=lambda p: os.path.basename(p))
def test_shipped_config_builds_its_model_for_its_preset(path):
    from ecgcore.models.train.predict import as_matrix, output_layout
    from ecgcore.presets import get_preset
    cfg = load_config(path, ["model.pretrained=null"])   # the published weights are downloaded separately
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    c = model.input_contract
    want = expected_preset(cfg, model)
    n_out = sum(n for _, _, n in output_layout(cfg["tasks"]))
    if "channels" in c:                                   # the image model: its own image preset
        assert want == "mtecg" and c["height"] == c["width"] == 384
        x = torch.zeros(1, c["channels"], 64, 64)
    else:
        preset = get_preset(want)
        check_preset(cfg, model, preset)                  # the shipped pair is accepted
        ic = preset["input_contract"]
        assert len(preset["leads"]) == c["leads"] and ic["fs"] == c["fs"] and ic["length"] == c["samples"]
        x = torch.zeros(2, c["leads"], c["samples"] if c["fixed_length"] else 1000)
    t = Trainer.__new__(Trainer)
    t.model = model
    names = [n for n, _ in model.named_parameters()]
    for ph in cfg["phases"]:
        for key in ph["trainable"]:
            assert any(t._match(n, key) for n in names), (ph["name"], key)
    if c.get("samples", 0) * c.get("leads", 0) > 12 * 2500 and "channels" not in c:
        return                                              # the forward of the largest nets is skipped
    kw = {}
    if cfg["data"]["clinical"]:
        kw["clinical"] = torch.zeros(x.shape[0], len(cfg["data"]["clinical"]))
    with torch.no_grad():
        out = as_matrix(model(x, **kw), cfg["tasks"])
    assert tuple(out.shape) == (x.shape[0], n_out) and torch.isfinite(out).all()


def test_shipped_config_with_the_wrong_preset_names_the_right_one():
    cfg = load_config(os.path.join(ROOT, "configs", "lvh_fcn.yaml"), ["model.pretrained=null"])
    from ecgcore.presets import get_preset
    with pytest.raises(ConfigError, match="--preset lvh"):
        check_preset(cfg, build_model(cfg), get_preset("ecgfm"))


def test_multiclass_loss_takes_logits_once_and_regression_targets_keep_their_shape(rng):
    """LVH bugs 4 and 5: no softmax before cross-entropy; a (B,) target per regression task, no broadcast."""
    from ecgcore.models.train.engine import masked_task_losses
    from ecgcore.models.train.predict import decode
    tasks = validate({"model": {"name": "m"}, "data": {"dataset": "d"},
                      "tasks": [{"name": "a"}, {"name": "b"},
                                {"name": "c", "type": "multiclass", "n_classes": 3}]})["tasks"]
    out = torch.tensor(rng.normal(size=(6, 5)), dtype=torch.float32)
    y = torch.tensor(np.c_[rng.normal(size=(6, 2)), rng.integers(0, 3, 6)], dtype=torch.float32)
    la, lb, lc = masked_task_losses(out, y, tasks, {})
    assert float(la) == pytest.approx(float(((out[:, 0] - y[:, 0]) ** 2).mean()), rel=1e-6)
    assert float(lb) == pytest.approx(float(((out[:, 1] - y[:, 1]) ** 2).mean()), rel=1e-6)
    ref = torch.nn.functional.cross_entropy(out[:, 2:5], y[:, 2].long())
    assert float(lc) == pytest.approx(float(ref), rel=1e-6)
    p = decode(out.numpy(), tasks, {"mean": [1.0, 2.0, 0.0], "std": [2.0, 3.0, 1.0]})
    np.testing.assert_allclose(p["c"], torch.softmax(out[:, 2:5].double(), 1).numpy(), rtol=1e-6)
    np.testing.assert_allclose(p["b"], out[:, 1].numpy() * 3.0 + 2.0, rtol=1e-6)


def test_regression_targets_are_standardised_with_training_split_statistics(tmp_path):
    tr = Trainer(_cfg(), tmp_path / "r", progress=False)
    col = tr.store.targets[tr.splits["train"], 0].astype(np.float64)
    col = col[~np.isnan(col)]
    assert tr.target_scaler.mean[0] == pytest.approx(col.mean()) and tr.target_scaler.std[0] == pytest.approx(col.std())
    assert (tr.target_scaler.mean[1], tr.target_scaler.std[1]) == (0.0, 1.0)    # binary: not scaled
    assert col.std() > 5 and not np.isclose(col.mean(), np.nanmean(tr.store.targets[:, 0]), rtol=1e-9)


def test_a_run_seeds_the_next_config_through_best_safetensors(tmp_path):
    """lvh_fcn -> lvh_external_tune: the first run's best weights are the second run's start."""
    first = train(_cfg(), tmp_path / "a", progress=False)
    path = first["checkpoints"]["model"]
    assert path == str(tmp_path / "a" / "best.safetensors")
    best = torch.load(tmp_path / "a" / "checkpoints" / "best.pt", weights_only=True)["model_state"]
    cfg = _cfg(model={"name": "fcn_lvh_small", "pretrained": path, "freeze_bn": True,
                      "options": {"n_clinical": 0}},
               phases=[{"name": "out", "epochs": 1, "trainable": ["head"], "lr": 1e-3, "reload_best": True}])
    tr = Trainer(cfg, tmp_path / "b", progress=False)
    start = tr.model.state_dict()
    assert best.keys() == start.keys()
    for k in best:
        assert torch.equal(best[k], start[k]), k


def test_warmup_cosine_is_stepped_per_batch_as_the_ccta_lambda(tmp_path):
    """facts/ecgfounder_ccta.md 2.5: factor step/W below W = int(0.1 total), then
    0.01 + 0.99 * 0.5 * (1 + cos(pi (step - W) / (total - W))); stepped after every batch."""
    cfg = _cfg(data={"source": "simulated", "simulate": {"n": 24, "seed": 2}, "batch_size": 4},
               optim={"name": "adamw", "lr": 3e-3, "weight_decay": 5e-4},
               scheduler={"type": "warmup_cosine", "warmup_frac": 0.3, "floor": 0.01},
               train={"epochs": 5, "tensorboard": False, "progress": False})
    m = train(cfg, tmp_path / "r", progress=False)
    per_epoch = math.ceil(m["splits"]["train"]["records"] / 4)   # one median beat per record
    total = per_epoch * 5
    w = int(0.3 * total)
    assert w >= per_epoch                                         # the first epoch is inside the warm-up

    def factor(step):
        if step < w:
            return step / w
        return 0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * (step - w) / (total - w)))
    with open(tmp_path / "r" / "log.csv") as f:
        lrs = [float(r["lr"]) for r in csv.DictReader(f)]
    assert lrs == pytest.approx([3e-3 * factor(per_epoch * e) for e in range(1, 6)], rel=1e-9)


def test_labels_csv_text_is_refused_naming_line_and_column_and_blanks_are_missing(tmp_path):
    """CCTA bug 2: a label is a number, 0/1, true/false or blank (missing); anything else is an error."""
    from ecgcore.models.train.data import read_record_labels
    p = tmp_path / "labels.csv"
    p.write_text("record_id,patient_id,RCA\nr1,p1,1\nr2,p1,\nr3,p2,NA\nr4,p3,true\n")
    t = read_record_labels(str(p), "record_id", ["RCA"], "patient_id")
    assert t["r1"] == ([1.0], "p1") and t["r4"][0] == [1.0]
    assert math.isnan(t["r2"][0][0]) and math.isnan(t["r3"][0][0])
    p.write_text("record_id,patient_id,RCA\nr1,p1,1\nr2,p1,mild and severe stenosis\n")
    with pytest.raises(ConfigError, match=r"line 3, column 'RCA'.*'mild and severe stenosis'"):
        read_record_labels(str(p), "record_id", ["RCA"], "patient_id")
    p.write_text("record_id,RCA\nr1,1\nr1,0\n")
    with pytest.raises(ConfigError, match="'r1' appears twice"):
        read_record_labels(str(p), "record_id", ["RCA"])

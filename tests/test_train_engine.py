"""Training engine: it learns (two backbones, held-out split), resumes bit-for-bit, masks NaN labels,
weights positives the right way, keeps frozen BatchNorm frozen, refuses a dataset of the wrong preset,
and evaluate/predict run on its checkpoints."""

from __future__ import annotations

import csv
import json
import os

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import ecgcore
from ecgcore.cli import main as cli_main
from ecgcore.errors import ConfigError
from ecgcore.models.train import load_config, train, validate
from ecgcore.models.train.data import grouped_split, grouped_stratified_kfold, simulated_targets
from ecgcore.models.train.engine import masked_task_losses, pos_weights
from ecgcore.record import Record

N_REC = 160


@pytest.fixture(scope="module")
def lvh_dataset(tmp_path_factory):
    """160 simulated records (sinus, wide QRS, bundle-branch blocks) -> WFDB -> 'ecgcore preprocess'
    with preset lvh; labels from the simulator's true fiducials; 2 records per patient; some NaN."""
    from ecgcore.pipeline import items_from_paths, run_pipeline
    root = tmp_path_factory.mktemp("trainds")
    recs = []
    for k, rhythm in enumerate(("sinus", "wide_qrs", "rbbb", "lbbb")):
        recs += ecgcore.simulate(n=N_REC // 4, seed=100 + k, rhythm=rhythm, noise="mild", heart_rate=(50, 110))
    paths, rows = [], []
    for i, rec in enumerate(recs):
        p = root / f"r{i:03d}"
        ecgcore.write(Record(rec.signal, rec.fs, rec.leads), str(p), format="wfdb")
        paths.append(str(p) + ".hea")
        t = simulated_targets(rec)
        qrs = t["qrs_duration_ms"]
        rows.append([f"r{i:03d}", f"p{i // 2:03d}", "" if i % 23 == 5 else f"{qrs:.3f}",
                     "" if i % 31 == 7 else int(qrs >= 120)])
    out = root / "ds"
    run_pipeline(items_from_paths(paths), "lvh", str(out), workers=1, chunk_size=64, progress=False)
    labels = root / "labels.csv"
    with open(labels, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["record_id", "patient_id", "qrs_ms", "wide_qrs"])
        w.writerows(rows)
    return root, str(out), str(labels), paths


def _write_cfg(path, text):
    path.write_text(text)
    return str(path)


def test_fcn_learns_qrs_duration_and_wide_qrs_through_the_cli(lvh_dataset, tmp_path):
    root, ds, labels, paths = lvh_dataset
    cfg = _write_cfg(tmp_path / "c.yaml", f"""
name: learn_fcn
seed: 1
threads: 2
model: {{name: fcn_lvh_small, options: {{n_clinical: 0, conv_dropout: 0.1, lin_dropout: 0.1}}}}
data: {{dataset: {ds}, labels: {labels}, patient_col: patient_id, batch_size: 16,
        split: {{method: random, fractions: [0.6, 0.2, 0.2], seed: 3}}, augment: {{scale: [0.9, 1.1], noise: 0.01}}}}
tasks:
  - {{name: qrs_ms, type: regression}}
  - {{name: wide_qrs, type: binary, pos_weight: auto}}
optim: {{name: adam, lr: 0.003, clip_grad_norm: 1.0}}
scheduler: {{type: plateau, factor: 0.5, patience: 3}}
train: {{epochs: 18, early_stopping: 8, monitor: val_loss, tensorboard: false}}
evaluate: {{n_boot: 50}}
""")
    out = tmp_path / "run"
    assert cli_main(["train", "--config", cfg, "--out", str(out), "--no-progress"]) == 0
    m = json.loads((out / "metrics.json").read_text())
    # held-out test patients; stated margins over the baselines
    assert m["test"]["qrs_ms"]["r2"] >= 0.6, m["test"]
    assert m["baselines"]["qrs_ms"]["r2_of_train_mean"] <= 0.05
    assert m["test"]["wide_qrs"]["auroc"] >= 0.9, m["test"]
    assert m["thresholds_chosen_on"] == "val" and "wide_qrs" in m["thresholds"]
    # best epoch chosen on validation: it is the epoch with the lowest val_loss in the log
    with open(out / "log.csv") as f:
        log = list(csv.DictReader(f))
    vl = [float(r["val_loss"]) for r in log]
    assert m["best_epoch"] == int(np.argmin(vl)) + 1
    # pos_weight = n_neg / n_pos on the training split
    with open(out / "predictions.csv") as f:
        pred = list(csv.DictReader(f))
    assert {r["split"] for r in pred} == {"val", "test"}
    # evaluate (dataset) and predict (raw files) from the checkpoint agree with each other
    ck = out / "checkpoints" / "best.pt"
    ev = tmp_path / "eval"
    assert cli_main(["evaluate", "--checkpoint", str(ck), "--data", ds, "--out", str(ev),
                     "--n-boot", "20", "--no-figures"]) == 0
    assert (ev / "metrics.json").exists() and (ev / "predictions.csv").exists()
    with open(ev / "predictions.csv") as f:
        evrows = {r["record_id"]: r for r in csv.DictReader(f)}
    outcsv = tmp_path / "pred.csv"
    assert cli_main(["predict", "--checkpoint", str(ck), paths[0], paths[50], "--out", str(outcsv)]) == 0
    with open(outcsv) as f:
        prow = list(csv.DictReader(f))
    assert len(prow) == 2
    assert float(prow[1]["qrs_ms"]) == pytest.approx(float(evrows["r050"]["qrs_ms_pred"]), rel=1e-4)
    # the run's model-only export is not a training checkpoint: the error says what to pass
    from ecgcore.errors import CheckpointError
    from ecgcore.models.train.checkpointing import load_checkpoint
    with pytest.raises(CheckpointError, match="pass the run folder"):
        load_checkpoint(str(out / "best.safetensors"))


def test_second_backbone_resnet_learns(tmp_path):
    cfg = load_config(os.path.join(os.path.dirname(__file__), "..", "configs", "smoke.yaml"),
                      ["model.name=resnet_1d_tiny", "model.options={n_clinical: 0, conv_dropout: 0.0}",
                       "data.simulate.n=160", "tasks=[{name: qrs_duration_ms}]", "train.epochs=15",
                       "train.tensorboard=false", "optim.lr=0.003"])
    m = train(cfg, tmp_path / "run", progress=False)
    assert m["test"]["qrs_duration_ms"]["r2"] >= 0.6, m["test"]
    assert m["baselines"]["qrs_duration_ms"]["r2_of_train_mean"] <= 0.05


def _tiny_cfg(**over):
    raw = {"seed": 5, "threads": 1, "model": {"name": "fcn_lvh_small", "options": {"n_clinical": 0}},
           "data": {"source": "simulated", "simulate": {"n": 24, "seed": 2}, "batch_size": 8,
                    "augment": {"scale": [0.8, 1.2], "noise": 0.02, "crop": 10}},
           "tasks": [{"name": "qrs_duration_ms"}, {"name": "tachycardia", "type": "binary"}],
           "optim": {"name": "adamw", "lr": 0.01, "weight_decay": 0.01, "clip_grad_norm": 1.0},
           "scheduler": {"type": "warmup_cosine", "warmup_frac": 0.2, "floor": 0.01},
           "train": {"epochs": 4, "tensorboard": False}}
    raw.update(over)
    return validate(raw)


def test_kill_and_resume_is_bit_for_bit(tmp_path):
    cfg = _tiny_cfg()
    full = train(cfg, tmp_path / "a", progress=False)
    stopped = train(cfg, tmp_path / "b", progress=False, stop_after_epochs=2)
    assert stopped["stopped"] and stopped["epoch"] == 2
    resumed = train(cfg, tmp_path / "b", progress=False, resume=True)
    a = torch.load(tmp_path / "a" / "checkpoints" / "last.pt", weights_only=True)
    b = torch.load(tmp_path / "b" / "checkpoints" / "last.pt", weights_only=True)
    assert a["model_state"].keys() == b["model_state"].keys()
    for k in a["model_state"]:
        assert torch.equal(a["model_state"][k], b["model_state"][k]), k
    assert full["best_epoch"] == resumed["best_epoch"] and full["best_value"] == resumed["best_value"]
    with open(tmp_path / "b" / "log.csv") as f:
        assert [int(r["epoch"]) for r in csv.DictReader(f)] == [1, 2, 3, 4]
    # and training did change the weights
    fresh = torch.load(tmp_path / "b" / "checkpoints" / "best.pt", weights_only=True)
    assert fresh["preset"]["name"] == "lvh" and fresh["label_columns"] == ["qrs_duration_ms", "tachycardia"]


def test_head_warmup_keeps_backbone_and_bn_frozen(tmp_path):
    cfg = _tiny_cfg(phases=[{"name": "head", "epochs": 2, "trainable": ["head"], "lr": 0.01, "select_best": False},
                            {"name": "all", "epochs": 1, "trainable": ["all"], "lr": {"backbone": 1e-3, "head": 1e-2}}])
    from ecgcore.models.train.engine import Trainer
    tr = Trainer(cfg, tmp_path / "r", progress=False)
    before = {k: v.clone() for k, v in tr.model.state_dict().items()}
    tr._setup_phase(cfg["phases"][0])
    tr._train_epoch(cfg["phases"][0])
    after = tr.model.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all(k.startswith("head.") for k in changed), changed  # BN stats included
    lrs = sorted(g["initial_lr"] for g in tr.optimizer.param_groups)
    tr._setup_phase(cfg["phases"][1])
    assert sorted({g["initial_lr"] for g in tr.optimizer.param_groups}) == [1e-3, 1e-2] and lrs == [0.01]
    tr._train_mode()
    tr._validate()
    assert not any(m.training for m in tr.model.modules())  # eval never flips back to train


def test_pos_weight_is_n_neg_over_n_pos_and_nan_is_masked():
    tasks = validate({"model": {"name": "m"}, "data": {"dataset": "d"},
                      "tasks": [{"name": "r"}, {"name": "b", "type": "binary", "pos_weight": "auto"}]})["tasks"]
    y = np.array([[1, 1], [2, 0], [3, 0], [np.nan, 0], [4, np.nan]], np.float32)
    assert pos_weights(y, tasks)["b"] == pytest.approx(3.0)  # 3 negatives / 1 positive
    rng = np.random.default_rng(0)
    out = torch.tensor(rng.standard_normal((5, 2)), dtype=torch.float32, requires_grad=True)
    losses = masked_task_losses(out, torch.from_numpy(y), tasks, {"b": 3.0})
    ok = ~np.isnan(y[:, 0])
    ref_r = np.mean((out.detach().numpy()[ok, 0] - y[ok, 0]) ** 2)
    assert float(losses[0].detach()) == pytest.approx(ref_r, rel=1e-6)
    okb = ~np.isnan(y[:, 1])
    ref_b = torch.nn.functional.binary_cross_entropy_with_logits(
        out.detach()[okb, 1], torch.from_numpy(y[okb, 1]), pos_weight=torch.tensor(3.0))
    assert float(losses[1].detach()) == pytest.approx(float(ref_b), rel=1e-6)
    sum(losses).backward()
    assert out.grad[3, 0] == 0 and out.grad[4, 1] == 0 and np.isfinite(out.grad.numpy()).all()


def test_patient_grouped_splits_and_kfold():
    rng = np.random.default_rng(1)
    groups = np.array([f"p{i}" for i in rng.integers(0, 60, 300)])
    a = grouped_split(groups, [0.6, 0.2, 0.2], 42)
    assert set(a) == set(groups) and sorted(set(a.values())) == [0, 1, 2]
    strata = {g: str(int(g[1:]) % 3 == 0) for g in set(groups)}
    fold = grouped_stratified_kfold(groups, strata, 5, 42)
    assert set(fold.values()) == set(range(5))
    for k in range(5):  # each fold keeps both strata
        assert {strata[g] for g in fold if fold[g] == k} == {"True", "False"}


def test_dataset_with_the_wrong_preset_is_refused(lvh_dataset, tmp_path):
    _, ds, labels, _ = lvh_dataset
    cfg = validate({"model": {"name": "net1d_tiny"}, "data": {"dataset": ds, "labels": labels},
                    "tasks": [{"name": "qrs_ms"}]})
    with pytest.raises(ConfigError, match="--preset ecgfounder"):
        train(cfg, tmp_path / "r", progress=False)
    bad = tmp_path / "bad.yaml"
    bad.write_text(f"model: {{name: fcn_lvh_small}}\ndata: {{dataset: {ds}}}\ntasks: [{{name: a}}]\n"
                   "train: {epochs: 1, earlystop: 3}\n")
    assert cli_main(["train", "--config", str(bad), "--out", str(tmp_path / "r2")]) == 2

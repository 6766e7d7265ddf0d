"""Record-level training with attention pooling of segment features (``data.aggregate: attention``).

Records of 4, 8 and 12 s cut into 4-s segments (1-3 per record): training runs and the loss
falls, evaluation/prediction give one row per record through the same path, padding and segment
order do not change a record's output, head-only phases train the pool with the head, and
``--resume`` continues bit-for-bit.
"""

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
from ecgcore.models.train import train, validate
from ecgcore.models.train.data import ECGDatasetRows, RecordDataset, collate_records
from ecgcore.models.train.predict import (attach_segment_pool, load_for_inference, predict_records,
                                          record_forward)
from ecgcore.record import Record

STANDARD_8 = ["I", "II", "V1", "V2", "V3", "V4", "V5", "V6"]
# 4-s windows of the 8 LVH leads at 100 Hz: the 400-sample input of the small LVH-family backbones
SEG_PRESET = {"name": "seg100", "leads": STANDARD_8, "missing_leads": "zero", "derive_leads": True,
              "steps": [{"op": "nan_to_num", "value": 0.0},
                        {"op": "resample", "fs": 100, "method": "linear"},
                        {"op": "zscore", "scope": "lead", "constant": "zero"},
                        {"op": "segment", "length": 400}]}
N_REC = 48


@pytest.fixture(scope="module")
def seg_dataset(tmp_path_factory):
    """48 simulated sinus records of 4, 8 or 12 s at 100 Hz -> WFDB -> preprocessed (1-3 segments each);
    labels: the simulator's true heart rate and HR > 100."""
    from ecgcore.pipeline import items_from_paths, run_pipeline
    root = tmp_path_factory.mktemp("attds")
    paths, rows = [], []
    for i in range(N_REC):
        dur = 4.0 * (1 + i % 3)
        rec = ecgcore.simulate(n=1, fs=100, duration=dur, seed=7000 + i, rhythm="sinus", noise="mild",
                               heart_rate=(50, 150))[0]
        p = root / f"a{i:03d}"
        ecgcore.write(Record(rec.signal, rec.fs, rec.leads), str(p), format="wfdb")
        paths.append(str(p) + ".hea")
        hr = float(rec.meta["heart_rate_bpm"])
        rows.append([f"a{i:03d}", f"{hr:.3f}", int(hr > 100)])
    out = root / "ds"
    run_pipeline(items_from_paths(paths), SEG_PRESET, str(out), workers=1, chunk_size=64, progress=False)
    labels = root / "labels.csv"
    with open(labels, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["record_id", "hr", "tachy"])
        w.writerows(rows)
    return str(out), str(labels)


def _cfg(ds, labels, **over):
    raw = {"seed": 3, "threads": 1,
           "model": {"name": "resnet_1d_tiny", "options": {"n_clinical": 0}, "preset": "seg100"},
           "data": {"dataset": ds, "labels": labels, "batch_size": 8, "eval_batch_size": 5,
                    "aggregate": "attention", "attention": {"hidden": 16},
                    "split": {"method": "random", "fractions": [0.6, 0.2, 0.2], "seed": 1},
                    "augment": {"scale": [0.9, 1.1], "noise": 0.02}},
           "tasks": [{"name": "hr"}, {"name": "tachy", "type": "binary"}],
           "optim": {"name": "adam", "lr": 0.01, "clip_grad_norm": 1.0},
           "train": {"epochs": 6, "tensorboard": False}, "evaluate": {"n_boot": 20}}
    for k, v in over.items():
        raw[k] = {**raw[k], **v} if isinstance(v, dict) and isinstance(raw.get(k), dict) else v
    return validate(raw)


def test_segment_counts_of_the_fixture(seg_dataset):
    ds, _ = seg_dataset
    rows = ECGDatasetRows(ds)
    n = sorted({len(rows.segments(r)) for r in rows.record_ids})
    assert n == [1, 2, 3] and len(rows.record_ids) == N_REC


def test_attention_training_learns_and_predicts_one_row_per_record(seg_dataset, tmp_path):
    ds, labels = seg_dataset
    cfg = _cfg(ds, labels)
    out = tmp_path / "run"
    m = train(cfg, out, progress=False)
    with open(out / "log.csv") as f:
        log = list(csv.DictReader(f))
    tl = [float(r["train_loss"]) for r in log]
    assert len(tl) == 6 and min(tl[-2:]) < 0.6 * tl[0], tl   # the loss falls
    assert np.isfinite(m["val"]["hr"]["r2"]) and m["val"]["hr"]["n"] == m["splits"]["val"]["records"]
    # checkpoint: the attention pool is part of the model state and round-trips
    ck_path = out / "checkpoints" / "best.pt"
    model, ck = load_for_inference(ck_path)
    assert any(k.startswith("segment_pool.") for k in ck["model_state"])
    assert ck["config"]["data"]["aggregate"] == "attention"
    # one prediction row per validation/test record, equal to predict_records on the dataset rows
    with open(out / "predictions.csv") as f:
        pred = {r["record_id"]: r for r in csv.DictReader(f)}
    assert len(pred) == m["splits"]["val"]["records"] + m["splits"]["test"]["records"]
    rows = ECGDatasetRows(ds)
    ids = sorted(pred)
    p = predict_records(model, ck, [rows.segments(r) for r in ids], batch_size=4)
    assert p["hr"].shape == (len(ids),) and p["tachy"].shape == (len(ids),)
    np.testing.assert_allclose(p["hr"], [float(pred[r]["hr_pred"]) for r in ids], rtol=1e-4)
    np.testing.assert_allclose(p["tachy"], [float(pred[r]["tachy_pred"]) for r in ids], rtol=1e-4, atol=1e-6)
    # the CLI evaluation goes the same way: one row per record of the dataset
    ev = tmp_path / "eval"
    assert cli_main(["evaluate", "--checkpoint", str(ck_path), "--data", ds, "--out", str(ev),
                     "--n-boot", "20", "--no-figures"]) == 0
    with open(ev / "predictions.csv") as f:
        evrows = {r["record_id"]: r for r in csv.DictReader(f)}
    assert len(evrows) == N_REC
    assert float(evrows[ids[0]]["hr_pred"]) == pytest.approx(float(pred[ids[0]]["hr_pred"]), rel=1e-4)
    assert json.loads((ev / "metrics.json").read_text())
    # and 'ecgcore predict' on the raw files (preprocessed with the checkpoint's preset) agrees
    root = os.path.dirname(ds)
    outcsv = tmp_path / "pred.csv"
    assert cli_main(["predict", "--checkpoint", str(ck_path), os.path.join(root, ids[0] + ".hea"),
                     os.path.join(root, ids[1] + ".hea"), "--out", str(outcsv)]) == 0
    with open(outcsv) as f:
        prow = list(csv.DictReader(f))
    assert [int(r["n_segments"]) for r in prow] == [len(rows.segments(i)) for i in ids[:2]]
    assert float(prow[1]["hr"]) == pytest.approx(float(pred[ids[1]]["hr_pred"]), rel=1e-4)
    # and the ECGClassifier API runs the attention pool too (not a mean of per-segment heads)
    clf = ecgcore.ECGClassifier(str(out))
    r = clf.predict(os.path.join(root, ids[1] + ".hea"))
    assert r["hr"]["value"] == pytest.approx(float(pred[ids[1]]["hr_pred"]), rel=1e-4)
    assert r["tachy"]["probability"]["positive"] == pytest.approx(float(pred[ids[1]]["tachy_pred"]),
                                                                  rel=1e-4, abs=1e-6)


def _pooled_model(rng, gated=False):
    m = ecgcore.models.create("resnet_1d_tiny", heads=2, n_clinical=0)
    attach_segment_pool(m, {"hidden": 8, "gated": gated})
    return m


@pytest.mark.parametrize("gated", [False, True])
def test_padding_and_segment_order_do_not_change_a_record(rng, gated):
    torch.manual_seed(0)
    m = _pooled_model(rng, gated).eval()
    recs = [rng.standard_normal((k, 8, 400)).astype(np.float32) for k in (1, 3, 2)]
    alone = [record_forward(m, torch.from_numpy(r)[None], torch.ones(1, len(r), dtype=torch.bool))
             for r in recs]
    # one batch padded to 5 segments, padding filled with garbage (even NaN)
    x = torch.from_numpy(rng.standard_normal((3, 5, 8, 400)).astype(np.float32))
    x[0, 4] = float("nan")
    mask = torch.zeros(3, 5, dtype=torch.bool)
    for j, r in enumerate(recs):
        x[j, :len(r)] = torch.from_numpy(r)
        mask[j, :len(r)] = True
    with torch.no_grad():
        batch = record_forward(m, x, mask)
        for j in range(3):
            torch.testing.assert_close(batch[j], alone[j][0].detach(), rtol=1e-5, atol=1e-5)
        # permuting the segments of a record leaves its output unchanged
        perm = record_forward(m, torch.from_numpy(recs[1][[2, 0, 1]])[None], torch.ones(1, 3, dtype=torch.bool))
        torch.testing.assert_close(perm[0], alone[1][0].detach(), rtol=1e-5, atol=1e-5)
        # and it is not a plain mean: the attention weights differ between segments
        z = m.pool(m.forward_features(torch.from_numpy(recs[1])))
        a = m.segment_pool.weights(z[None])
        assert float(a.std()) > 0
        assert torch.allclose(a.sum(1), torch.ones(1))
    # in training mode (BatchNorm on batch statistics) padding still never reaches the backbone
    m.train()
    x2 = x.clone()
    x2[~mask] = 0.0
    torch.manual_seed(1)
    o1 = record_forward(m, x, mask)
    torch.manual_seed(1)
    o2 = record_forward(m, x2, mask)
    torch.testing.assert_close(o1, o2)
    assert torch.isfinite(o1).all()


def test_predict_records_does_not_depend_on_the_batch_size(seg_dataset, tmp_path, rng):
    ds, labels = seg_dataset
    cfg = _cfg(ds, labels, train={"epochs": 1, "tensorboard": False})
    train(cfg, tmp_path / "r", progress=False)
    model, ck = load_for_inference(tmp_path / "r" / "checkpoints" / "best.pt")
    rows = ECGDatasetRows(ds)
    segs = [rows.segments(r) for r in rows.record_ids[:12]]
    a = predict_records(model, ck, segs, batch_size=1)
    b = predict_records(model, ck, segs, batch_size=64)
    for k in a:
        np.testing.assert_allclose(a[k], b[k], rtol=1e-5, atol=1e-6)
    # a record without segments gives NaN, the others are unchanged
    c = predict_records(model, ck, segs[:2] + [np.zeros((0, 8, 400), np.float32)] + segs[2:3], batch_size=8)
    assert np.isnan(c["hr"][2]) and np.allclose(c["hr"][[0, 1, 3]], a["hr"][[0, 1, 2]], rtol=1e-5)


def test_head_phase_trains_the_pool_and_freezes_the_backbone(seg_dataset, tmp_path):
    ds, labels = seg_dataset
    from ecgcore.models.train.engine import Trainer
    cfg = _cfg(ds, labels, phases=[{"name": "head", "epochs": 1, "trainable": ["head"], "lr": 0.01}])
    tr = Trainer(cfg, tmp_path / "r", progress=False)
    before = {k: v.clone() for k, v in tr.model.state_dict().items()}
    tr._setup_phase(cfg["phases"][0])
    tr._train_epoch(cfg["phases"][0])
    after = tr.model.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert any(k.startswith("segment_pool.") for k in changed)
    assert all(k.startswith(("head.", "segment_pool.")) for k in changed), changed


def test_record_dataset_pads_and_subsamples(seg_dataset):
    ds, labels = seg_dataset
    from ecgcore.models.train.data import load_store
    cfg = _cfg(ds, labels)
    store = load_store(cfg)
    y = np.zeros((store.n_records, 2), np.float32)
    c = np.zeros((store.n_records, 0), np.float32)
    rd = RecordDataset(store, np.arange(store.n_records), y, c)
    n = rd.n_segments
    assert sorted(set(n.tolist())) == [1, 2, 3]
    k = [int(np.flatnonzero(n == s)[0]) for s in (1, 3)]
    x, mask, yb, cb, kb = collate_records([rd[k[0]], rd[k[1]]])
    assert x.shape == (2, 3, 8, 400) and mask.tolist() == [[True, False, False], [True, True, True]]
    assert float(x[0, 1:].abs().sum()) == 0.0 and kb.tolist() == k
    sub = RecordDataset(store, np.arange(store.n_records), y, c, max_segments=2)
    sub.epoch_seed = 5
    x3 = sub[k[1]][0]
    assert x3.shape[0] == 2
    full = rd[k[1]][0]
    assert any(torch.equal(x3[0], full[j]) for j in range(3))
    assert torch.equal(sub[k[1]][0], x3)   # the subset is a function of (epoch seed, record)


def test_resume_with_attention_is_bit_for_bit(seg_dataset, tmp_path):
    ds, labels = seg_dataset
    cfg = _cfg(ds, labels, train={"epochs": 3, "tensorboard": False},
               data={"attention": {"hidden": 16, "max_segments": 2}})
    full = train(cfg, tmp_path / "a", progress=False)
    stopped = train(cfg, tmp_path / "b", progress=False, stop_after_epochs=1)
    assert stopped["stopped"] and stopped["epoch"] == 1
    resumed = train(cfg, tmp_path / "b", progress=False, resume=True)
    a = torch.load(tmp_path / "a" / "checkpoints" / "last.pt", weights_only=True)
    b = torch.load(tmp_path / "b" / "checkpoints" / "last.pt", weights_only=True)
    assert any(k.startswith("segment_pool.") for k in a["model_state"])
    for k in a["model_state"]:
        assert torch.equal(a["model_state"][k], b["model_state"][k]), k
    assert full["best_epoch"] == resumed["best_epoch"] and full["best_value"] == resumed["best_value"]


def test_attention_is_refused_for_image_models():
    m = ecgcore.models.create("mtecg_image_tiny")
    with pytest.raises(ConfigError, match="attention"):
        attach_segment_pool(m, {"hidden": 8})


@pytest.mark.slow
@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed not available")
def test_attention_under_torchrun_two_processes(seg_dataset, tmp_path):
    """DDP wraps the record-level network; records are sharded by the distributed sampler."""
    import socket
    import subprocess
    import sys
    ds, labels = seg_dataset
    cfg = tmp_path / "ddp.yaml"
    cfg.write_text(f"""
seed: 3
threads: 1
device: cpu
model: {{name: resnet_1d_tiny, options: {{n_clinical: 0}}, preset: seg100}}
data: {{dataset: {ds}, labels: {labels}, batch_size: 4, aggregate: attention, attention: {{hidden: 8}}}}
tasks: [{{name: hr}}, {{name: tachy, type: binary}}]
train: {{epochs: 2, tensorboard: false}}
evaluate: {{n_boot: 10}}
""")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = tmp_path / "run"
    env = dict(os.environ, MASTER_ADDR="127.0.0.1", OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", f"--master_port={port}",
           "--master_addr=127.0.0.1", "-m", "ecgcore", "train", "--config", str(cfg), "--out", str(out),
           "--no-progress"]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=240, env=env)
    assert res.returncode == 0, res.stderr[-3000:]
    m = json.loads((out / "metrics.json").read_text())
    assert m["epochs_run"] == 2
    with open(out / "predictions.csv") as f:
        rows = list(csv.DictReader(f))
    # every validation and test record predicted exactly once, whatever rank ran it
    assert len(rows) == len({r["record_id"] for r in rows}) == m["splits"]["val"]["records"] + m["splits"]["test"]["records"]
    ck = torch.load(out / "checkpoints" / "last.pt", weights_only=True)
    assert any(k.startswith("segment_pool.") for k in ck["model_state"])

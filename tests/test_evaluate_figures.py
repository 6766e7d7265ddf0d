"""``ecgcore evaluate`` figures: saliency overlays on the ECG of the top-scoring records and mean
waveforms of the predicted high- vs low-risk groups (valid, non-blank PNGs), a 2-class multiclass task
scored as binary (probability of class 1), and the saliency helper against autograd.

Evaluated on the dataset it was trained on, only the held-out records of the checkpoint's test split
(or, on request, its validation split) are scored and drawn; an external dataset is scored whole."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("matplotlib")
Image = pytest.importorskip("PIL.Image")

import ecgcore
from ecgcore import stats
from ecgcore.cli import main as cli_main
from ecgcore.models.train.data import simulated_targets
from ecgcore.record import Record

N = 48


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """48 simulated 10-s records (sinus / LBBB, 50-140 bpm) -> preset lvh (8 x 400 median beats, mV) ->
    fcn_lvh_small trained 2 epochs on tachycardia (binary) and wide QRS (multiclass, 2 classes)."""
    from ecgcore.models.train import load_config, train
    from ecgcore.pipeline import items_from_paths, run_pipeline
    root = tmp_path_factory.mktemp("evfig")
    recs = ecgcore.simulate(n=N // 2, seed=71, rhythm="sinus", noise="mild", heart_rate=(50, 140))
    recs += ecgcore.simulate(n=N // 2, seed=72, rhythm="lbbb", noise="mild", heart_rate=(50, 140))
    paths, rows = [], []
    for i, rec in enumerate(recs):
        p = root / f"r{i:03d}"
        ecgcore.write(Record(rec.signal, rec.fs, rec.leads), str(p), format="wfdb")
        paths.append(str(p) + ".hea")
        t = simulated_targets(rec)
        hr = t["heart_rate_bpm"]
        rows.append([f"r{i:03d}", f"p{i:03d}", int(t["tachycardia"]), int(t["qrs_duration_ms"] >= 120),
                     0 if hr < 75 else (1 if hr < 100 else 2)])
    ds = root / "ds"
    run_pipeline(items_from_paths(paths), "lvh", str(ds), workers=1, chunk_size=64, progress=False)
    labels = root / "labels.csv"
    with open(labels, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["record_id", "patient_id", "tachy", "wide", "hrband"])
        w.writerows(rows)
    cfg = root / "c.yaml"
    cfg.write_text(f"""
name: evfig
seed: 2
threads: 2
model: {{name: fcn_lvh_small, options: {{n_clinical: 0}}}}
data: {{dataset: {ds}, labels: {labels}, patient_col: patient_id, batch_size: 16,
        split: {{method: random, fractions: [0.6, 0.2, 0.2], seed: 3}}}}
tasks:
  - {{name: tachy, type: binary}}
  - {{name: wide, type: multiclass, n_classes: 2}}
  - {{name: hrband, type: multiclass, n_classes: 3}}
optim: {{name: adam, lr: 0.003}}
train: {{epochs: 2, monitor: val_loss, tensorboard: false}}
evaluate: {{n_boot: 20}}
""")
    train(load_config(str(cfg)), root / "run", progress=False)
    return root, str(ds), str(labels), root / "run" / "checkpoints" / "best.pt"


def _splits(ck):
    return torch.load(str(ck), map_location="cpu", weights_only=True)["splits"]


def _image(path):
    im = Image.open(path)
    im.verify()                                   # a valid PNG
    a = np.asarray(Image.open(path).convert("RGB"), float)
    return a


def test_evaluate_draws_saliency_and_mean_waveforms_and_scores_two_class_task(run):
    root, ds, labels, ck = run
    out = root / "eval"
    assert cli_main(["evaluate", "--checkpoint", str(ck), "--data", ds, "--labels", labels, "--figures",
                     "--n-boot", "20", "--saliency-records", "2", "--out", str(out)]) == 0
    m = json.loads((out / "metrics.json").read_text())
    # the 2-class multiclass task is scored as binary on P(class 1), on the test split only
    n_test = len(_splits(ck)["test"])
    assert 0 < n_test < N
    assert m["tasks"]["wide"]["type"] == "binary" and m["tasks"]["wide"]["n"] == n_test
    # ... with the decision threshold chosen on the validation split during training
    ckd = torch.load(str(ck), map_location="cpu", weights_only=True)
    assert 0.0 < ckd["thresholds"]["wide"] < 1.0
    assert m["tasks"]["wide"]["threshold"]["value"] == pytest.approx(ckd["thresholds"]["wide"])
    # more than 2 classes: probabilities written, task listed as not scored (no silent drop)
    assert "hrband" not in m["tasks"] and "3 classes" in m["not_scored"]["hrband"]
    with open(out / "predictions.csv") as f:
        allpred = list(csv.DictReader(f))
    assert len(allpred) == N                      # every record predicted, each marked with its split
    pred = [r for r in allpred if r["split"] == "test"]
    y = np.array([float(r["wide_true"]) for r in pred])
    p = np.array([float(r["wide_pred"]) for r in pred])
    p3 = np.array([[float(r[f"hrband_p{k}"]) for k in range(3)] for r in pred])
    np.testing.assert_allclose(p3.sum(1), 1.0, atol=1e-9)
    assert np.all((p >= 0) & (p <= 1))
    assert m["tasks"]["wide"]["auroc"]["value"] == pytest.approx(stats.auroc(y, p))
    with open(out / "metrics.csv") as f:
        assert any(r["task"] == "wide" and r["metric"] == "auroc" for r in csv.DictReader(f))
    # P(class 1) is the softmax of the model's two logits of that task
    from ecgcore.models.train.predict import load_for_inference
    from ecgcore.models.train.data import ECGDatasetRows
    model, ckd = load_for_inference(str(ck))
    rows = ECGDatasetRows(ds)
    x = torch.from_numpy(np.asarray(rows.segments(pred[5]["record_id"]), np.float32))
    with torch.no_grad():
        o = model(x)
    o = o if not isinstance(o, dict) else torch.cat([o[t["name"]] for t in ckd["config"]["tasks"]], 1)
    sm = torch.softmax(o[:, 1:3].double(), 1)[:, 1].mean().item()
    assert float(pred[5]["wide_pred"]) == pytest.approx(sm, rel=1e-4)

    figs = m["signal_figures"]
    assert set(figs) == {"tachy", "wide"}
    drawn_mw = []
    for task in ("tachy", "wide"):
        sal = figs[task]["saliency"]
        assert len(sal) == 2
        # the overlays are of the top-scoring records, in order
        top = sorted(pred, key=lambda r: -float(r[f"{task}_pred"]))[:2]
        assert [s["record_id"] for s in sal] == [r["record_id"] for r in top]
        for s in sal:
            a = _image(out / s["file"])
            assert a.shape[0] > 300 and a.shape[1] > 600
            # saliency is drawn in red: many strongly red pixels, and the traces in black
            red = (a[..., 0] > 180) & (a[..., 1] < 120) & (a[..., 2] < 120)
            dark = a.sum(-1) < 150
            assert red.mean() > 0.01 and dark.mean() > 0.002, (red.mean(), dark.mean())
        # the risk groups are the test records split at the threshold (a median-beat preset: every
        # record gives its beat); a group left empty by the 2-epoch model is reported, not drawn
        thr = m["tasks"][task]["threshold"]["value"]
        n_hi = sum(float(r[f"{task}_pred"]) >= thr for r in pred)
        if "mean_waveforms" not in figs[task]:
            assert figs[task]["mean_waveforms_skipped"] == (f"a risk group has no usable beat (high: {n_hi} "
                                                            f"records, low: {n_test - n_hi})")
            assert n_hi in (0, n_test)
            continue
        drawn_mw.append(task)
        mw = figs[task]["mean_waveforms"]
        assert mw["threshold"] == pytest.approx(thr)
        assert mw["n_high"] == n_hi and mw["n_low"] == n_test - n_hi
        a = _image(out / mw["file"])
        assert a.std() > 10 and a.shape[0] > 300
    assert drawn_mw, figs                         # at least one task splits its test records in two
    # the other figures are there too
    names = {p.name for p in out.glob("*.png")}
    assert {"roc_tachy.png", "roc_wide.png", "decision_wide.png"} <= names


def test_task_saliency_is_the_gradient_of_the_task_logit(run):
    from ecgcore.models.explain import task_saliency
    from ecgcore.models.train.predict import load_for_inference
    root, ds, labels, ck = run
    model, ckd = load_for_inference(str(ck))
    tasks = ckd["config"]["tasks"]
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 8, 400, generator=g)
    # autograd reference: d(sum of logit1 - logit0 of the 2-class task)/dx
    xr = x.clone().requires_grad_(True)
    o = model(xr)
    o = o if not isinstance(o, dict) else torch.cat([o[t["name"]] for t in tasks], 1)
    (o[:, 2] - o[:, 1]).sum().backward()
    s = task_saliency(model, x, tasks, "wide")
    torch.testing.assert_close(s, xr.grad)
    xr.grad = None
    o = model(xr)
    o = o if not isinstance(o, dict) else torch.cat([o[t["name"]] for t in tasks], 1)
    o[:, 0].sum().backward()
    torch.testing.assert_close(task_saliency(model, x, tasks, "tachy"), xr.grad)
    # integrated gradients: completeness, attributions sum to f(x) - f(0)
    ig = task_saliency(model, x[:1], tasks, "tachy", method="integrated_gradients", steps=64)
    with torch.no_grad():
        f1 = model(x[:1])
        f0 = model(torch.zeros_like(x[:1]))
    f1 = f1 if not isinstance(f1, dict) else f1["tachy"]
    f0 = f0 if not isinstance(f0, dict) else f0["tachy"]
    assert ig.sum().item() == pytest.approx((f1.reshape(-1)[0] - f0.reshape(-1)[0]).item(), rel=0.1, abs=0.05)
    with pytest.raises(ValueError, match="nope"):
        task_saliency(model, x, tasks, "nope")
    with pytest.raises(ValueError, match="3 outputs"):
        task_saliency(model, x, tasks, "hrband")


def test_record_beat_of_a_long_segment_is_an_r_aligned_median_beat():
    """Presets with 5-10 s windows: each record contributes its median beat (R at 0.25 s of 0.9 s)."""
    from ecgcore.cli.evaluate import _record_beat
    rec = ecgcore.simulate(n=1, seed=9, rhythm="sinus", noise="mild")[0]
    x = rec.signal[:, :5000]
    b = _record_beat(x, rec.fs)
    assert b.shape == (12, 450) and np.isfinite(b).all()
    k = int(np.argmax(np.abs(b).max(axis=1)))                   # the lead with the tallest QRS
    assert abs(int(np.argmax(np.abs(b[k]))) - 125) <= 10
    # a beat-length segment (median-beat presets) is used as it is
    assert _record_beat(x[:, :400], rec.fs) is not None and _record_beat(x[:, :400], rec.fs).shape == (12, 400)
    assert _record_beat(np.zeros((12, 5000)), rec.fs) is None   # no beat detected: left out


def test_task_saliency_keeps_the_model_mode(run):
    from ecgcore.models.explain import task_saliency
    from ecgcore.models.train.predict import load_for_inference
    _, _, _, ck = run
    model, ckd = load_for_inference(str(ck))
    x = torch.zeros(1, 8, 400)
    task_saliency(model, x, ckd["config"]["tasks"], "tachy")
    assert not model.training and not any(m.training for m in model.modules())
    model.train()
    task_saliency(model, x, ckd["config"]["tasks"], "tachy", method="integrated_gradients", steps=2)
    assert model.training and all(m.training for m in model.modules())


def _labels_rows(path):
    with open(path) as f:
        return {r["record_id"]: r for r in csv.DictReader(f)}


def test_training_records_are_never_scored(run):
    """On its training dataset, evaluate scores the checkpoint's test split (or val on request), equal
    to the test metrics the training run computed on the same records; training records never."""
    root, ds, labels, ck = run
    sp = _splits(ck)
    assert set(sp) == {"train", "val", "test"} and sum(map(len, sp.values())) == N
    out = root / "eval_test"
    assert cli_main(["evaluate", "--checkpoint", str(ck), "--data", ds, "--labels", labels, "--no-figures",
                     "--n-boot", "20", "--out", str(out)]) == 0
    m = json.loads((out / "metrics.json").read_text())
    assert m["scored"]["split"] == "test" and m["scored"]["n_scored"] == len(sp["test"]) == m["n_test"]
    assert m["scored"]["records_by_split"] == {k: len(sp.get(k, ())) for k in ("train", "val", "test", "other")}
    with open(out / "predictions.csv") as f:
        pred = {r["record_id"]: r for r in csv.DictReader(f)}
    role = {r: k for k, v in sp.items() for r in v}
    assert {r: row["split"] for r, row in pred.items()} == role
    # AUROC on the test records alone, and equal to the training run's own test metric
    test = [pred[r] for r in sp["test"]]
    y = np.array([float(r["tachy_true"]) for r in test])
    p = np.array([float(r["tachy_pred"]) for r in test])
    assert m["tasks"]["tachy"]["n"] == len(test)
    assert m["tasks"]["tachy"]["auroc"]["value"] == pytest.approx(stats.auroc(y, p))
    trained = json.loads((root / "run" / "metrics.json").read_text())
    assert m["tasks"]["tachy"]["auroc"]["value"] == pytest.approx(trained["test"]["tachy"]["auroc"], rel=1e-5)
    # --split val scores the validation records instead
    out = root / "eval_val"
    assert cli_main(["evaluate", "--checkpoint", str(ck), "--data", ds, "--labels", labels, "--no-figures",
                     "--n-boot", "20", "--split", "val", "--out", str(out)]) == 0
    m = json.loads((out / "metrics.json").read_text())
    assert m["scored"]["split"] == "val" and m["tasks"]["tachy"]["n"] == len(sp["val"])
    val = [pred[r] for r in sp["val"]]
    assert m["tasks"]["tachy"]["auroc"]["value"] == pytest.approx(
        stats.auroc([float(r["tachy_true"]) for r in val], [float(r["tachy_pred"]) for r in val]))
    # a checkpoint written before split membership was stored: every record is scored, and it says so
    old = root / "old.pt"
    torch.save({k: v for k, v in torch.load(str(ck), weights_only=True).items() if k != "splits"}, old)
    out = root / "eval_old"
    assert cli_main(["evaluate", "--checkpoint", str(old), "--data", ds, "--labels", labels, "--no-figures",
                     "--n-boot", "20", "--out", str(out)]) == 0
    m = json.loads((out / "metrics.json").read_text())
    assert m["tasks"]["tachy"]["n"] == N and "no split membership" in m["scored"]["reason"]


def _dataset(root, name, recs, ids):
    from ecgcore.pipeline import items_from_paths, run_pipeline
    paths = []
    for rid, rec in zip(ids, recs):
        p = root / name / rid
        p.parent.mkdir(exist_ok=True)
        ecgcore.write(Record(rec.signal, rec.fs, rec.leads), str(p), format="wfdb")
        paths.append(str(p) + ".hea")
    run_pipeline(items_from_paths(paths), "lvh", str(root / f"{name}_ds"), workers=1, chunk_size=64,
                 progress=False)
    return str(root / f"{name}_ds")


def test_external_records_are_scored_and_training_records_are_not(run, capsys):
    """A dataset of new records is scored whole; one mixing training and new records scores the new
    ones only; one holding training records only is refused, naming the split counts."""
    root, ds, labels, ck = run
    sp = _splits(ck)
    new = ecgcore.simulate(n=5, seed=91, rhythm="sinus", noise="mild", heart_rate=(50, 140))
    new += ecgcore.simulate(n=5, seed=92, rhythm="lbbb", noise="mild", heart_rate=(50, 140))
    new_ids = [f"x{i:02d}" for i in range(len(new))]
    lab = root / "ext_labels.csv"
    with open(lab, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["record_id", "patient_id", "tachy", "wide", "hrband"])
        for rid, rec in zip(new_ids, new):
            t = simulated_targets(rec)
            w.writerow([rid, "q" + rid, int(t["tachycardia"]), int(t["qrs_duration_ms"] >= 120), 0])
        w.writerows([[r["record_id"], r["patient_id"], r["tachy"], r["wide"], r["hrband"]]
                     for r in _labels_rows(labels).values()])
    # an external cohort: all of it scored
    ext = _dataset(root, "ext", new, new_ids)
    out = root / "eval_ext"
    assert cli_main(["evaluate", "--checkpoint", str(ck), "--data", ext, "--labels", str(lab), "--no-figures",
                     "--n-boot", "20", "--out", str(out)]) == 0
    m = json.loads((out / "metrics.json").read_text())
    assert m["scored"]["split"] == "all" and m["scored"]["n_scored"] == len(new) == m["n_test"]
    assert "external" in m["scored"]["reason"]
    with open(out / "predictions.csv") as f:
        assert {r["record_id"]: r["split"] for r in csv.DictReader(f)} == {r: "other" for r in new_ids}
    # training records next to new ones: only the new ones count, and no figure draws a training record
    tr_ids = sp["train"][:6]
    train_recs = [ecgcore.read(str(root / f"{r}.hea")) for r in tr_ids]
    mixed = _dataset(root, "mixed", train_recs + new, tr_ids + new_ids)
    out = root / "eval_mixed"
    assert cli_main(["evaluate", "--checkpoint", str(ck), "--data", mixed, "--labels", str(lab), "--figures",
                     "--n-boot", "20", "--saliency-records", "3", "--out", str(out)]) == 0
    m = json.loads((out / "metrics.json").read_text())
    assert m["scored"]["records_by_split"] == {"train": 6, "val": 0, "test": 0, "other": len(new)}
    assert m["tasks"]["tachy"]["n"] == len(new) == m["scored"]["n_scored"]
    with open(out / "predictions.csv") as f:
        pred = list(csv.DictReader(f))
    pred_of = {r["record_id"]: r for r in pred}
    assert {r["record_id"]: r["split"] for r in pred} == {**{r: "train" for r in tr_ids},
                                                           **{r: "other" for r in new_ids}}
    # the saliency overlays are of the top-scoring new records, though training records score higher
    drawn = [s["record_id"] for s in m["signal_figures"]["tachy"]["saliency"]]
    assert drawn == sorted(new_ids, key=lambda r: -float(pred_of[r]["tachy_pred"]))[:3]
    # training records only: nothing held out, refused
    only = _dataset(root, "only_train", train_recs[:3], tr_ids[:3])
    assert cli_main(["evaluate", "--checkpoint", str(ck), "--data", only, "--labels", str(lab),
                     "--no-figures", "--out", str(root / "eval_only")]) == 2
    err = capsys.readouterr().err
    assert "nothing held out" in err and "'train': 3" in err

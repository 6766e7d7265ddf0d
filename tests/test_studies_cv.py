"""CCTA-style grouped 5-fold CV with the engine: best epoch on each fold's inner validation split,
pooled out-of-fold predictions (each record once), normal-ECG subgroup, risk tertiles chosen on
validation with Kaplan-Meier incidence and log-rank; and `ecgcore evaluate --subgroup --figures`."""

from __future__ import annotations

import csv
import json

import numpy as np
import torch
import pytest

torch = pytest.importorskip("torch")
pd = pytest.importorskip("pandas")

import ecgcore
from ecgcore import stats
from ecgcore.cli import main as cli_main
from ecgcore.models.studies import run_cv
from ecgcore.models.train import validate
from ecgcore.models.train.data import simulated_targets
from ecgcore.record import Record

N = 60


@pytest.fixture(scope="module")
def cv_dataset(tmp_path_factory):
    """60 simulated records (sinus / wide QRS / RBBB / LBBB) -> preset lvh; 2 records per patient for
    the first 20; labels: wide QRS and LBBB (binary), normal_ecg (sinus), follow-up with a hazard
    that is 4x higher for wide QRS, censored at 700 days."""
    from ecgcore.pipeline import items_from_paths, run_pipeline
    root = tmp_path_factory.mktemp("cvds")
    recs = []
    for k, rhythm in enumerate(("sinus", "wide_qrs", "rbbb", "lbbb")):
        recs += ecgcore.simulate(n=N // 4, seed=300 + k, rhythm=rhythm, noise="mild", heart_rate=(50, 100))
    rng = np.random.default_rng(11)
    paths, rows = [], []
    for i, rec in enumerate(recs):
        p = root / f"r{i:03d}"
        ecgcore.write(Record(rec.signal, rec.fs, rec.leads), str(p), format="wfdb")
        paths.append(str(p) + ".hea")
        wide = int(simulated_targets(rec)["qrs_duration_ms"] >= 120)
        t_event = rng.exponential(400.0 if wide else 1600.0)
        time = min(t_event, 700.0)
        rows.append([f"r{i:03d}", f"p{i // 2:03d}" if i < 20 else f"p{i:03d}", wide,
                     int(rec.meta["rhythm"] == "lbbb"), rec.meta["rhythm"] == "sinus",
                     f"{time:.1f}", int(t_event <= 700.0)])
    out = root / "ds"
    run_pipeline(items_from_paths(paths), "lvh", str(out), workers=1, chunk_size=64, progress=False)
    labels = root / "labels.csv"
    with open(labels, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["record_id", "patient_id", "wide", "lbbb", "normal_ecg", "days", "event"])
        w.writerows(rows)
    return str(out), str(labels), paths


def _cfg(ds, labels):
    return validate({
        "name": "cv", "seed": 4, "threads": 2,
        "model": {"name": "fcn_lvh_small", "options": {"n_clinical": 0, "conv_dropout": 0.1, "lin_dropout": 0.1}},
        "data": {"dataset": ds, "labels": labels, "patient_col": "patient_id", "batch_size": 8,
                 "split": {"method": "random", "seed": 42, "stratify": True, "val_fraction": 0.25}},
        "tasks": [{"name": "wide", "type": "binary"}, {"name": "lbbb", "type": "binary"}],
        "optim": {"name": "adam", "lr": 0.01, "clip_grad_norm": 1.0},
        "train": {"epochs": 6, "monitor": "val_loss", "tensorboard": False, "progress": False},
        "evaluate": {"n_boot": 100}})


@pytest.mark.slow   # five folds of training: ~35 s on two cores
def test_run_cv_selects_on_inner_validation_and_pools_out_of_fold(cv_dataset, tmp_path):
    ds, labels, _ = cv_dataset
    cfg = _cfg(ds, labels)
    res = run_cv(cfg, tmp_path / "cv", folds=5, subgroup="normal_ecg", time_col="days", event_col="event",
                 horizons=[100, 300], n_boot=100)
    oof = pd.read_csv(tmp_path / "cv" / "oof_predictions.csv", dtype={"record_id": str, "patient_id": str})
    # every labelled record is reported exactly once, by the fold that never trained on it
    assert sorted(oof["record_id"]) == [f"r{i:03d}" for i in range(N)]
    assert (oof.groupby("patient_id")["fold"].nunique() == 1).all()
    for f in res["folds"]:
        k = f["fold"]
        pred = pd.read_csv(tmp_path / "cv" / f"fold_{k}" / "predictions.csv", dtype={"patient_id": str})
        val_p = set(pred.loc[pred.split == "val", "patient_id"])
        test_p = set(pred.loc[pred.split == "test", "patient_id"])
        assert val_p and test_p and not (val_p & test_p)
        # the best epoch is the lowest *validation* loss of this fold (never a test-fold number)
        with open(tmp_path / "cv" / f"fold_{k}" / "log.csv") as fh:
            log = list(csv.DictReader(fh))
        assert f["best_epoch"] == int(np.argmin([float(r["val_loss"]) for r in log])) + 1
        assert all("test" not in key for key in log[0])
    ev = res["evaluation"]
    tasks = ev["tasks"]
    # pooled OOF AUROC = the AUROC of the pooled table; thresholds chosen on inner-validation rows
    y, p = oof["wide_true"].to_numpy(), oof["wide_pred"].to_numpy()
    assert tasks["wide"]["auroc"]["value"] == pytest.approx(stats.auroc(y, p))
    assert tasks["wide"]["auroc"]["value"] >= 0.8                       # wide QRS is learnable
    assert tasks["wide"]["threshold"]["chosen_on"] == "validation"
    assert ev["macro_auroc"] == pytest.approx(np.mean([stats.auroc(oof[f"{t}_true"], oof[f"{t}_pred"])
                                                       for t in ("wide", "lbbb")]))
    # normal-ECG subgroup: metrics restricted to the labelled subgroup
    sub = {r["subgroup"]: r for r in tasks["lbbb"]["subgroups"]["normal_ecg"] if r["metric"] == "auroc"}
    assert set(sub) == {"True", "False"}
    assert sub["True"]["n"] == N // 4 and ev["subgroup"]["n"] == N // 4
    # risk tertiles: cut points are quantiles of the validation risk, KM incidence + log-rank
    rs = tasks["risk_stratification"]
    val = pd.read_csv(tmp_path / "cv" / "val_predictions.csv")
    vrisk = val[["wide_pred", "lbbb_pred"]].max(axis=1)
    np.testing.assert_allclose(rs["cuts"], stats.risk_cut_points(vrisk, 3))
    assert rs["cuts_chosen_on"] == "validation quantiles" and len(rs["groups"]) == 3
    assert 0 <= rs["logrank"]["p_value"] <= 1
    assert sum(g["n"] for g in rs["groups"]) == N
    inc = [g["incidence_at"]["incidence"][1] for g in rs["groups"]]
    assert inc[2] > inc[0]                            # the top tertile (wide QRS) has more events
    files = json.loads((tmp_path / "cv" / "cv_metrics.json").read_text())
    assert files["n_oof"] == N and (tmp_path / "cv" / "evaluation" / "metrics.csv").exists()


def test_run_cv_refuses_one_fold(cv_dataset, tmp_path):
    from ecgcore.errors import ConfigError
    ds, labels, _ = cv_dataset
    with pytest.raises(ConfigError, match="folds"):
        run_cv(_cfg(ds, labels), tmp_path / "x", folds=1)


def test_evaluate_cli_subgroup_and_figures(cv_dataset, tmp_path):
    from ecgcore.models.train import train
    ds, labels, _ = cv_dataset
    cfg = _cfg(ds, labels)
    cfg["train"]["epochs"] = 3
    train(cfg, tmp_path / "run", progress=False)
    ck = tmp_path / "run" / "checkpoints" / "best.pt"
    out = tmp_path / "eval"
    assert cli_main(["evaluate", "--checkpoint", str(ck), "--data", ds, "--labels", labels,
                     "--subgroup", "normal_ecg", "--figures", "--n-boot", "30", "--out", str(out)]) == 0
    m = json.loads((out / "metrics.json").read_text())
    # the training dataset itself: only the held-out test records are scored
    test = torch.load(ck, weights_only=True)["splits"]["test"]
    assert m["n_test"] == m["scored"]["n_scored"] == len(test) < N
    with open(out / "metrics.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert {"normal_ecg=True", "normal_ecg=False", "all"} <= {r["subgroup"] for r in rows}
    assert {"roc_wide.png", "pr_wide.png", "calibration_wide.png"} <= {p.name for p in out.glob("*.png")}
    # the decision threshold is the one chosen on validation during training
    ckd = torch.load(ck, weights_only=False)
    assert m["tasks"]["wide"]["threshold"]["value"] == pytest.approx(ckd["thresholds"]["wide"])
    assert cli_main(["evaluate", "--checkpoint", str(ck), "--data", ds, "--labels", labels,
                     "--subgroup", "nope", "--out", str(tmp_path / "e2")]) == 2

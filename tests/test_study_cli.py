"""``ecgcore study``: each seed-study analysis through ecgcore.cli.main on seeded synthetic tables whose
generating model is known (recovered AUROCs/coefficients/MAE close to the truth), the outputs
(metrics.json, tidy metrics.csv, table.csv, PNGs), and bad input (exit 2 naming the key/column)."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from scipy.special import expit

pd = pytest.importorskip("pandas")
pytest.importorskip("matplotlib")

from ecgcore import stats
from ecgcore.cli import main as cli_main


def _splits(n, rng):
    s = np.array(["train"] * n, dtype=object)
    u = rng.random(n)
    s[u >= 0.6] = "val"
    s[u >= 0.8] = "test"
    return s


def _write_yaml(path, text):
    path.write_text(text)
    return str(path)


def _rows(out):
    with open(out / "metrics.csv", newline="") as f:
        return list(csv.DictReader(f))


def _png_ok(path):
    from PIL import Image
    im = np.asarray(Image.open(path).convert("L"), float)
    return im.shape[0] > 100 and im.shape[1] > 100 and im.std() > 5


# ------------------------------------------------------------------ P-wave baseline
PW_COEF = {"p_duration_ms": 0.06, "pr_interval_ms": 0.02, "p_amplitude_ii_uv": -0.01, "p_axis_deg": 0.0}


def _pwave_tables(tmp_path, rng, n=3000):
    rid = [f"e{i:05d}" for i in range(n)]
    pid = [f"p{i // 2:05d}" for i in range(n)]          # two ECGs per patient
    f = {"p_duration_ms": rng.normal(110, 15, n), "pr_interval_ms": rng.normal(165, 25, n),
         "p_amplitude_ii_uv": rng.normal(120, 40, n), "p_axis_deg": rng.normal(55, 20, n)}
    mu = {"p_duration_ms": 110, "pr_interval_ms": 165, "p_amplitude_ii_uv": 120, "p_axis_deg": 55}
    eta = -1.2 + sum(PW_COEF[k] * (f[k] - mu[k]) for k in f)
    prob = expit(eta)
    af = (rng.random(n) < prob).astype(int)
    # split by patient so both ECGs of a patient share a split
    ps = _splits(n // 2, rng)
    split = np.repeat(ps, 2)
    labels = pd.DataFrame({"record_id": rid, "patient_id": pid, "split": split, "AF": af})
    labels.to_csv(tmp_path / "labels.csv", index=False)
    meas = pd.DataFrame({"source": [f"/data/ecg/{r}.hea" for r in rid], **f,
                         "interatrial_block": "none", "qrs_duration_ms": rng.normal(95, 10, n)})
    meas.to_csv(tmp_path / "measures.csv", index=False)
    return labels, prob


def test_pwave_baseline_recovers_the_generating_model(tmp_path, rng):
    labels, prob = _pwave_tables(tmp_path, rng)
    cfg = _write_yaml(tmp_path / "pw.yaml", """
study: pwave_baseline
measures: measures.csv
labels: labels.csv
n_boot: 200
decision_thresholds: [0.1, 0.3]
""")
    out = tmp_path / "out"
    assert cli_main(["study", "pwave_baseline", "--config", cfg, "--out", str(out)]) == 0
    m = json.loads((out / "metrics.json").read_text())
    task = m["result"]["metrics"]["tasks"]["pwi"]
    test = (labels["split"] == "test").to_numpy()
    y = labels["AF"].to_numpy()[test]
    true_auc = stats.auroc(y, prob[test])                     # the generating model's AUROC
    assert task["n"] == test.sum()
    assert abs(task["auroc"]["value"] - true_auc) < 0.02, (task["auroc"], true_auc)
    assert task["auroc"]["ci_low"] < true_auc < task["auroc"]["ci_high"]
    # coefficients recovered within 3 SE (the model reports them in original units)
    coefs = m["result"]["model"]["coefficients"]
    for k, b in PW_COEF.items():
        assert abs(coefs[k]["coef"] - b) < 3 * coefs[k]["se"] + 1e-4, (k, coefs[k], b)
    # outputs: tidy CSV with evaluation and coefficient rows, scored table, figures
    rows = _rows(out)
    kinds = {(r["task"], r["metric"]) for r in rows}
    assert ("pwi", "auroc") in kinds and ("model_pwi", "coef_p_duration_ms") in kinds
    assert ("pwi", "net_benefit_pt0.1") in kinds
    table = pd.read_csv(out / "table.csv", dtype={"record_id": str})
    assert len(table) == len(labels) and table["pwi_prob"].between(0, 1).all()
    for name in ("roc_pwi.png", "calibration_pwi.png", "decision_pwi.png", "decision_curves.png"):
        assert _png_ok(out / name), name
    # the reported net benefit is the direct formula on the test rows
    tt = table[table["split"] == "test"]
    nb = {r["metric"]: float(r["value"]) for r in rows if r["task"] == "pwi"}
    assert nb["net_benefit_pt0.3"] == pytest.approx(
        float(stats.net_benefit(tt["AF"], tt["pwi_prob"], 0.3)[0]), abs=1e-9)


def test_study_bad_input_exits_2_naming_the_problem(tmp_path, rng, capsys):
    labels, _ = _pwave_tables(tmp_path, rng, n=200)
    base = "study: pwave_baseline\nmeasures: measures.csv\nlabels: labels.csv\nn_boot: 10\n"
    out = str(tmp_path / "o")
    # a feature the measures CSV lacks
    cfg = _write_yaml(tmp_path / "a.yaml", base + "features: [p_duration_ms, ptfv1_uvms]\n")
    assert cli_main(["study", "pwave_baseline", "--config", cfg, "--out", out]) == 2
    assert "'ptfv1_uvms'" in capsys.readouterr().err
    # the outcome column is missing from the labels
    cfg = _write_yaml(tmp_path / "b.yaml", base + "outcome: incident_af\n")
    assert cli_main(["study", "pwave_baseline", "--config", cfg, "--out", out]) == 2
    assert "'incident_af'" in capsys.readouterr().err
    # unknown key, wrong type, wrong study, missing required key
    cfg = _write_yaml(tmp_path / "c.yaml", base + "n_bootstrap: 5\n")
    assert cli_main(["study", "pwave_baseline", "--config", cfg, "--out", out]) == 2
    assert "'n_bootstrap'" in capsys.readouterr().err
    assert cli_main(["study", "pwave_baseline", "--config", cfg, "--out", out,
                     "--set", "n_bootstrap=null", "--set", "seed=x"]) == 2
    cfg = _write_yaml(tmp_path / "d.yaml", base + "seed: one\n")
    assert cli_main(["study", "pwave_baseline", "--config", cfg, "--out", out]) == 2
    assert "'seed'" in capsys.readouterr().err
    assert cli_main(["study", "lvh", "--config", str(tmp_path / "d.yaml"), "--out", out]) == 2
    assert "pwave_baseline" in capsys.readouterr().err
    cfg = _write_yaml(tmp_path / "e.yaml", "study: pwave_baseline\nlabels: labels.csv\n")
    assert cli_main(["study", "pwave_baseline", "--config", cfg, "--out", out]) == 2
    assert "'measures'" in capsys.readouterr().err
    # --set reaches the config: the missing file is named
    cfg = _write_yaml(tmp_path / "f.yaml", base)
    assert cli_main(["study", "pwave_baseline", "--config", cfg, "--out", out, "--set", "labels=nope.csv"]) == 2
    assert "nope.csv" in capsys.readouterr().err


# ------------------------------------------------------------------ AF from markers
def _af_tables(tmp_path, rng, n=3000):
    rid = [f"e{i:05d}" for i in range(n)]
    split = _splits(n, rng)
    age = rng.normal(62, 9, n)
    sex = (rng.random(n) < 0.5).astype(int)
    la_max = rng.normal(39, 11, n)
    la_min = 0.4 * la_max + rng.normal(0, 5, n)
    laef = rng.normal(0.61, 0.09, n)
    ratio = rng.normal(0.49, 0.12, n)
    eta = -2.0 + 0.08 * (la_max - 39) - 6.0 * (laef - 0.61) + 0.04 * (age - 62) + 0.3 * sex
    prob = expit(eta)
    af = (rng.random(n) < prob).astype(int)
    pdur = 100 + 0.5 * (la_max - 39) + rng.normal(0, 14, n)          # the P wave sees the atrium weakly
    labels = pd.DataFrame({"record_id": rid, "patient_id": rid, "split": split, "AF": af, "age": age,
                           "sex": sex})
    labels.to_csv(tmp_path / "labels.csv", index=False)
    # the engine writes validation and test predictions only
    pv = split != "train"
    pd.DataFrame({"record_id": np.array(rid)[pv], "patient_id": np.array(rid)[pv], "split": split[pv],
                  "LA_max_pred": la_max[pv], "LA_min_pred": la_min[pv], "LAEF_pred": laef[pv],
                  "LA_LV_ratio_pred": ratio[pv]}).to_csv(tmp_path / "predictions.csv", index=False)
    pd.DataFrame({"source": [f"{r}.xml" for r in rid], "p_duration_ms": pdur,
                  "pr_interval_ms": rng.normal(160, 20, n), "p_amplitude_ii_uv": rng.normal(110, 30, n),
                  "p_axis_deg": rng.normal(50, 20, n)}).to_csv(tmp_path / "measures.csv", index=False)
    return labels, prob


def test_af_from_markers_recovers_truth_and_beats_pwave_by_delong(tmp_path, rng, capsys):
    labels, prob = _af_tables(tmp_path, rng)
    cfg = _write_yaml(tmp_path / "af.yaml", """
study: af_from_markers
predictions: predictions.csv
labels: labels.csv
measures: measures.csv
n_boot: 200
""")
    out = tmp_path / "out"
    assert cli_main(["study", "af_from_markers", "--config", cfg, "--out", str(out)]) == 0
    m = json.loads((out / "metrics.json").read_text())["result"]
    test = (labels["split"] == "test").to_numpy()
    true_auc = stats.auroc(labels["AF"].to_numpy()[test], prob[test])
    tasks = m["metrics"]["tasks"]
    assert set(tasks) == {"clinical", "pwi", "markers"}
    assert abs(tasks["markers"]["auroc"]["value"] - true_auc) < 0.025, (tasks["markers"]["auroc"], true_auc)
    assert tasks["markers"]["auroc"]["value"] > tasks["pwi"]["auroc"]["value"] + 0.1
    d = m["delong"]["markers_vs_pwi"]
    assert d["p_value"] < 1e-3 and d["diff"] > 0 and m["delong"]["n"] == test.sum()
    # fitted on validation rows only: training rows have no marker predictions at all
    assert m["fit_on"] == ["val"] and m["models"]["markers"]["n_fit"] == (labels["split"] == "val").sum()
    rows = _rows(out)
    assert any(r["task"] == "delong_markers_vs_pwi" and r["metric"] == "p_value" for r in rows)
    assert _png_ok(out / "decision_curves.png") and _png_ok(out / "roc_markers.png")
    # a clinical column that is not in the labels: exit 2 naming it
    cfg2 = _write_yaml(tmp_path / "af2.yaml", """
study: af_from_markers
predictions: predictions.csv
labels: labels.csv
measures: measures.csv
clinical: [age, sex, bmi]
""")
    assert cli_main(["study", "af_from_markers", "--config", cfg2, "--out", str(tmp_path / "o2")]) == 2
    assert "'bmi'" in capsys.readouterr().err


# ------------------------------------------------------------------ LVH
def test_lvh_study_with_voltage_baselines(tmp_path, rng):
    n = 2400
    rid = [f"r{i:05d}" for i in range(n)]
    male = (rng.random(n) < 0.5).astype(int)
    ilvm = np.where(male == 1, rng.normal(62, 12, n), rng.normal(48, 10, n))
    sd = 8.0
    pred = ilvm + rng.normal(0, sd, n)
    split = _splits(n, rng)
    labels = pd.DataFrame({"record_id": rid, "patient_id": rid, "split": split, "ilvm": ilvm, "is_male": male})
    labels.to_csv(tmp_path / "labels.csv", index=False)
    pd.DataFrame({"record_id": rid, "ilvm_pred": pred}).to_csv(tmp_path / "predictions.csv", index=False)
    # voltages: weakly related to mass (the known insensitivity of ECG voltage criteria)
    sl = 2.0 + 0.03 * (ilvm - 55) + rng.normal(0, 0.6, n)
    cv = 1.4 + 0.02 * (ilvm - 55) + rng.normal(0, 0.5, n)
    qrs = rng.normal(95, 10, n)
    sl[:40] = np.nan                                           # unmeasurable in some records
    pd.DataFrame({"source": [f"/x/{r}.hea" for r in rid], "sokolow_lyon_mv": sl, "cornell_voltage_mv": cv,
                  "qrs_duration_ms": qrs}).to_csv(tmp_path / "measures.csv", index=False)
    cfg = _write_yaml(tmp_path / "lvh.yaml", """
study: lvh
predictions: predictions.csv
labels: labels.csv
measures: measures.csv
n_boot: 200
""")
    out = tmp_path / "out"
    assert cli_main(["study", "lvh", "--config", cfg, "--out", str(out)]) == 0
    res = json.loads((out / "metrics.json").read_text())["result"]
    tasks = res["metrics"]["tasks"]
    test = split == "test"
    # MAE of Gaussian errors: sd * sqrt(2 / pi)
    assert tasks["mass"]["mae"]["value"] == pytest.approx(sd * np.sqrt(2 / np.pi), abs=0.6)
    assert tasks["mass"]["mae"]["ci_low"] < sd * np.sqrt(2 / np.pi) < tasks["mass"]["mae"]["ci_high"]
    # the voltage baselines: fixed published thresholds, sensitivity = the direct count on test rows
    lvh = np.where(male == 1, ilvm >= 70, ilvm >= 55).astype(float)
    ok = test & np.isfinite(sl)
    assert tasks["sokolow_lyon"]["threshold"]["value"] == 3.5
    assert tasks["sokolow_lyon"]["sensitivity"]["value"] == pytest.approx(np.mean(sl[ok & (lvh == 1)] >= 3.5))
    assert tasks["sokolow_lyon"]["n"] == ok.sum()
    cthr = np.where(male == 1, 2.8, 2.0)
    assert tasks["cornell_voltage"]["specificity"]["value"] == pytest.approx(np.mean(~(cv[test & (lvh == 0)] > cthr[test & (lvh == 0)])))
    prod = (cv + np.where(male == 0, 0.6, 0.0)) * qrs
    assert tasks["cornell_product"]["auroc"]["value"] == pytest.approx(stats.auroc(lvh[test], prod[test]))
    # the LR on predicted iLVM beats every voltage criterion, by DeLong on the same test cases
    for b in ("sokolow_lyon", "cornell_voltage", "cornell_product"):
        d = res["delong_vs_baselines"][b]
        assert d["diff"] > 0.05 and d["p_value"] < 1e-3, (b, d)
    assert res["delong_vs_baselines"]["sokolow_lyon"]["n"] == ok.sum()
    rows = _rows(out)
    assert any(r["task"] == "delong_lvh_lr_vs_cornell_product" for r in rows)
    assert any(r["task"] == "lvh_lr" and r["metric"] == "net_benefit_pt0.2" for r in rows)
    table = pd.read_csv(out / "table.csv")
    assert {"sokolow_lyon_lvh", "cornell_voltage_lvh", "cornell_product_lvh", "lvh_proba_lr"} <= set(table.columns)
    for name in ("agreement_mass.png", "roc_lvh_lr.png", "decision_lvh_lr.png", "roc_sokolow_lyon.png"):
        assert _png_ok(out / name), name


# ------------------------------------------------------------------ CCTA CV driver
def test_ccta_cv_driver_pools_each_record_once(tmp_path):
    pytest.importorskip("torch")
    train_cfg = _write_yaml(tmp_path / "train.yaml", """
name: cvsmoke
seed: 3
threads: 2
model: {name: fcn_lvh_small, options: {n_clinical: 0}}
data:
  source: simulated
  simulate: {n: 40, seed: 5, duration: 10, heart_rate: [50, 140], rhythm: sinus, noise: mild}
  split: {method: random, seed: 1, val_fraction: 0.25}
  batch_size: 16
tasks:
  - {name: tachycardia, type: binary}
optim: {name: adam, lr: 0.003}
train: {epochs: 2, monitor: val_loss, tensorboard: false}
""")
    cfg = _write_yaml(tmp_path / "cv.yaml", """
study: ccta_cv
config: train.yaml
folds: 5
n_boot: 30
horizons: null
decision_thresholds: [0.15]
""")
    out = tmp_path / "cv"
    assert cli_main(["study", "ccta_cv", "--config", cfg, "--out", str(out), "--set", "set=[train.epochs=1]"]) == 0
    res = json.loads((out / "metrics.json").read_text())["result"]
    oof = pd.read_csv(out / "oof_predictions.csv", dtype={"record_id": str})
    assert sorted(oof["record_id"]) == [f"sim{i:05d}" for i in range(40)] and res["n_oof"] == 40
    assert sorted(f["fold"] for f in res["folds"]) == list(range(5))
    assert all(f["selected_on"] == "inner validation split" for f in res["folds"])
    rows = _rows(out)
    assert sum(r["metric"] == "best_epoch" for r in rows) == 5
    assert all(r["value"] == "1" for r in rows if r["metric"] == "best_epoch")        # --set reached it
    assert any(r["task"] == "tachycardia" and r["metric"] == "auroc" for r in rows)
    assert any(p.name == "roc_tachycardia.png" for p in out.rglob("*.png"))


def test_shipped_example_study_configs_validate():
    import os
    from ecgcore.cli.study import STUDIES, load_study_config
    root = os.path.join(os.path.dirname(__file__), "..", "configs", "studies")
    for name in STUDIES:
        cfg = load_study_config(name, os.path.join(root, f"{name}.yaml"))
        assert cfg["study"] == name and os.path.isabs(cfg.get("labels") or cfg.get("config"))
    assert load_study_config("ccta_cv", os.path.join(root, "ccta_cv.yaml"))["config"].endswith("ccta_net1d.yaml")

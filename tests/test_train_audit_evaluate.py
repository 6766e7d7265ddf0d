"""Issue 7 audit: ``ecgcore evaluate`` risk stratification and segment-to-record aggregation.

A small FCN is trained on simulated sinus vs LBBB records (preset lvh). Follow-up times are drawn
with a higher hazard for LBBB; ``ecgcore evaluate --time --event`` must split the records at the
threshold chosen on validation during training, on the test-split records only (the dataset is the
training one), and report Kaplan-Meier groups and a log-rank test
equal to scipy's on the same predictions; a row with an event but no time is dropped, never counted
as a non-event. Record predictions are the mean (or max) of segment predictions, as pandas computes.
"""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import ecgcore
from ecgcore.cli import main as cli_main
from ecgcore.record import Record

N = 60


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    from ecgcore.models.train import load_config, train
    from ecgcore.pipeline import items_from_paths, run_pipeline
    root = tmp_path_factory.mktemp("audit_eval")
    recs = ecgcore.simulate(n=N // 2, seed=81, rhythm="sinus", noise="mild", heart_rate=(55, 100))
    recs += ecgcore.simulate(n=N // 2, seed=82, rhythm="lbbb", noise="mild", heart_rate=(55, 100))
    rng = np.random.default_rng(5)
    paths, rows = [], []
    for i, rec in enumerate(recs):
        p = root / f"r{i:03d}"
        ecgcore.write(Record(rec.signal, rec.fs, rec.leads), str(p), format="wfdb")
        paths.append(str(p) + ".hea")
        wide = int(i >= N // 2)
        t = rng.exponential(30.0 if wide else 3000.0)   # a strong contrast: 12 test records must show it
        event = int(t < 300)
        t = min(t, 300.0)
        time = "" if i == 7 else f"{t:.3f}"          # record 7: an event without follow-up time
        rows.append([f"r{i:03d}", f"p{i:03d}", wide, time, 1 if i == 7 else event])
    ds = root / "ds"
    run_pipeline(items_from_paths(paths), "lvh", str(ds), workers=1, chunk_size=64, progress=False)
    labels = root / "labels.csv"
    with open(labels, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["record_id", "patient_id", "wide", "days", "mace"])
        w.writerows(rows)
    cfg = root / "c.yaml"
    cfg.write_text(f"""
seed: 4
threads: 2
model: {{name: fcn_lvh_small, options: {{n_clinical: 0}}}}
data: {{dataset: {ds}, labels: {labels}, patient_col: patient_id, batch_size: 12,
        split: {{method: random, fractions: [0.6, 0.2, 0.2], seed: 1}}}}
tasks: [{{name: wide, type: binary}}]
optim: {{name: adam, lr: 0.003}}
train: {{epochs: 4, monitor: val_loss, tensorboard: false}}
evaluate: {{n_boot: 20}}
""")
    train(load_config(str(cfg)), root / "run", progress=False)
    return root, str(ds), str(labels), root / "run" / "checkpoints" / "best.pt"


def test_evaluate_km_groups_and_logrank_match_scipy(run):
    from scipy import stats as st
    root, ds, labels, ck = run
    out = root / "eval"
    assert cli_main(["evaluate", "--checkpoint", str(ck), "--data", ds, "--out", str(out), "--n-boot", "20",
                     "--time", "days", "--event", "mace", "--figures", "--saliency-records", "0"]) == 0
    m = json.loads((out / "metrics.json").read_text())
    res = m["tasks"]["wide_risk_groups"]
    thr = torch.load(ck, weights_only=True)["thresholds"]["wide"]
    assert res["cuts"] == [pytest.approx(thr)] and res["cuts_chosen_on"] == "given"
    with open(out / "predictions.csv") as f:
        pred = {r["record_id"]: float(r["wide_pred"]) for r in csv.DictReader(f) if r["split"] == "test"}
    test = set(torch.load(ck, weights_only=True)["splits"]["test"])
    assert set(pred) == test and m["scored"]["n_scored"] == len(test)   # held-out records only
    with open(labels) as f:
        lab = [r for r in csv.DictReader(f) if r["record_id"] in test]
    keep = [r for r in lab if r["days"] != ""]                      # record 7 dropped
    assert res["n"] == len(keep) == len(test) - ("r007" in test)
    t = np.array([float(r["days"]) for r in keep])
    e = np.array([int(r["mace"]) for r in keep])
    hi = np.array([pred[r["record_id"]] >= thr for r in keep])
    assert [g["n"] for g in res["groups"]] == [int((~hi).sum()), int(hi.sum())]
    assert [g["events"] for g in res["groups"]] == [int(e[~hi].sum()), int(e[hi].sum())]
    ref = st.logrank(st.CensoredData.right_censored(t[~hi], e[~hi] == 0),
                     st.CensoredData.right_censored(t[hi], e[hi] == 0))
    assert res["logrank"]["statistic"] == pytest.approx(ref.statistic ** 2, rel=1e-9)
    assert res["logrank"]["p_value"] == pytest.approx(ref.pvalue, rel=1e-7)
    assert res["logrank"]["p_value"] < 0.01                          # LBBB carries the hazard
    assert (out / "incidence_wide_risk_groups.png").stat().st_size > 1000
    with open(out / "metrics.csv") as f:
        tidy = list(csv.DictReader(f))
    assert any(r["task"] == "wide_risk_groups" and r["metric"] == "logrank_p" for r in tidy)


def test_evaluate_time_without_event_is_refused(run, capsys):
    root, ds, labels, ck = run
    assert cli_main(["evaluate", "--checkpoint", str(ck), "--data", ds, "--out", str(root / "e2"),
                     "--time", "days", "--no-figures"]) == 2
    assert "--event" in capsys.readouterr().err
    assert cli_main(["evaluate", "--checkpoint", str(ck), "--data", ds, "--out", str(root / "e3"),
                     "--time", "days", "--event", "nope", "--no-figures"]) == 2
    assert "'nope'" in capsys.readouterr().err


def test_segment_to_record_aggregation_is_the_mean_of_segment_predictions(run, rng):
    import pandas as pd
    from ecgcore.models.train.data import ECGDatasetRows
    from ecgcore.models.train.predict import aggregate_records, load_for_inference, predict_records
    root, ds, labels, ck = run
    model, ckd = load_for_inference(ck)
    rows = ECGDatasetRows(ds)
    segs = [rows.segments(r)[0] for r in rows.record_ids[:5]]
    single = predict_records(model, ckd, [s[None] for s in segs])["wide"]
    multi = predict_records(model, ckd, [np.stack(segs[:3]), np.stack(segs[3:])])["wide"]
    np.testing.assert_allclose(multi, [single[:3].mean(), single[3:].mean()], rtol=1e-5)
    # aggregate_records against pandas group-by, with an empty record (NaN) in the middle
    v = rng.normal(size=(40, 3))
    rec = rng.integers(0, 9, 40)
    rec[rec == 4] = 5
    for mode in ("mean", "max"):
        got = aggregate_records({"t": v}, rec, 9, mode)["t"]
        ref = getattr(pd.DataFrame(v).groupby(rec), mode)().reindex(range(9)).to_numpy()
        np.testing.assert_allclose(got, ref, rtol=1e-12)
        assert np.isnan(got[4]).all()

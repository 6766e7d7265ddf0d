"""evaluate_predictions end to end, subgroup tables and figures."""

import csv
import json
import os

import numpy as np
import pytest

from ecgcore import stats
from ecgcore.stats import EvaluationError

pytest.importorskip("matplotlib")


def _table(rng, n=900):
    pid = rng.integers(0, 400, n)
    y = (rng.random(n) < 0.3).astype(int)
    p = 1 / (1 + np.exp(-(rng.normal(size=n) + 1.5 * y - 1)))
    t = rng.exponential(300 / (1 + 2 * p))
    return {
        "patient": pid, "y": y, "p": p,
        "ref": 1 / (1 + np.exp(-(rng.normal(size=n) + 0.5 * y - 1))),
        "split": np.where(rng.random(n) < 0.3, "val", "test"),
        "mass": (m := rng.normal(100, 20, n)), "mass_pred": 0.7 * m + 30 + rng.normal(0, 10, n),
        "time": np.minimum(t, 700), "event": (t < 700).astype(int),
        "sex": np.where(rng.random(n) < 0.5, "F", "M"),
    }


TASKS = [
    {"name": "lvh", "type": "binary", "y": "y", "p": "p", "compare_to": ["ref"]},
    {"name": "ilvm", "type": "regression", "y": "mass", "p": "mass_pred", "units": "g"},
    {"name": "mi", "type": "survival", "time": "time", "event": "event", "p": "p",
     "horizons": [100, 300]},
]


def test_evaluate_predictions_writes_everything(tmp_path, rng):
    d = _table(rng)
    d["mass"][:5] = np.nan                                    # masked, not propagated
    out = tmp_path / "eval"
    res = stats.evaluate_predictions(d, TASKS, groups="patient", out_dir=out, n_boot=300, seed=1,
                                     subgroups=["sex"])
    names = sorted(os.listdir(out))
    assert names == sorted(["metrics.json", "metrics.csv", "roc_lvh.png", "pr_lvh.png",
                            "calibration_lvh.png", "decision_lvh.png", "agreement_ilvm.png",
                            "incidence_mi.png"])
    m = json.loads((out / "metrics.json").read_text())
    test = np.asarray(d["split"]) == "test"
    lvh = m["tasks"]["lvh"]
    assert lvh["n"] == test.sum()
    assert lvh["auroc"]["value"] == pytest.approx(stats.auroc(d["y"][test], d["p"][test]))
    assert lvh["auroc"]["ci_low"] < lvh["auroc"]["value"] < lvh["auroc"]["ci_high"]
    # the threshold is chosen on validation rows and applied to test rows
    val = ~test
    thr = stats.choose_threshold(d["y"][val], d["p"][val], "youden")
    assert lvh["threshold"]["value"] == float(thr) and lvh["threshold"]["chosen_on"] == "validation"
    assert lvh["sensitivity"]["value"] == pytest.approx(stats.sensitivity(d["y"][test], d["p"][test], thr))
    assert lvh["delong"]["ref"]["p_value"] < 0.05
    assert m["tasks"]["ilvm"]["dropped_missing"] == int(np.sum(test[:5]))
    assert m["tasks"]["ilvm"]["mae"]["value"] > 0
    assert m["tasks"]["mi"]["cuts_chosen_on"] == "validation quantiles"
    assert m["tasks"]["mi"]["logrank"]["p_value"] < 0.01
    assert m["warnings"] == []
    with open(out / "metrics.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == ["task", "metric", "value", "ci_low", "ci_high", "n", "subgroup"]
    assert {r["subgroup"] for r in rows if r["task"] == "lvh"} >= {"all", "sex=F", "sex=M"}
    assert not [f for f in os.listdir(out) if ".tmp" in f]  # no temporary file left
    # deterministic for a seed
    res2 = stats.evaluate_predictions(d, TASKS, groups="patient", n_boot=300, seed=1,
                                      subgroups=["sex"], figures=False)
    assert res2["rows"] == res["rows"]


def test_without_validation_threshold_metrics_are_oracle(rng):
    d = _table(rng, 300)
    del d["split"]
    res = stats.evaluate_predictions(d, TASKS[:1], n_boot=100, figures=False)
    metrics = {r["metric"] for r in res["rows"]}
    assert "oracle_sensitivity" in metrics and "sensitivity" not in metrics
    assert res["warnings"] and "oracle" in res["warnings"][0]
    res = stats.evaluate_predictions(d, [dict(TASKS[0], threshold=0.4)], n_boot=100, figures=False)
    assert "sensitivity" in {r["metric"] for r in res["rows"]} and not res["warnings"]


def test_pandas_input_and_bad_specs(rng):
    pd = pytest.importorskip("pandas")
    df = pd.DataFrame(_table(rng, 300))
    res = stats.evaluate_predictions(df, TASKS[1:2], n_boot=50, figures=False)
    assert res["tasks"]["ilvm"]["n"] == int((df["split"] == "test").sum())
    with pytest.raises(EvaluationError, match="column 'nope'"):
        stats.evaluate_predictions(df, [{"name": "x", "type": "binary", "y": "nope", "p": "p"}])
    with pytest.raises(EvaluationError, match="type"):
        stats.evaluate_predictions(df, [{"name": "x", "type": "multiclass"}])


def test_subgroup_table_rows(rng):
    y = rng.integers(0, 2, 400)
    p = rng.normal(size=400) + y
    sex = np.where(rng.random(400) < 0.5, "F", "M")
    rows = stats.subgroup_table({"auroc": stats.auroc}, y, p, subgroup=sex, n_boot=200, seed=0)
    assert [r["subgroup"] for r in rows] == ["all", "F", "M"]
    f = sex == "F"
    assert rows[1]["value"] == pytest.approx(stats.auroc(y[f], p[f])) and rows[1]["n"] == f.sum()
    assert rows[1]["ci_low"] < rows[1]["value"] < rows[1]["ci_high"]
    pd = pytest.importorskip("pandas")
    assert list(stats.to_frame(rows).columns)[:3] == ["subgroup", "metric", "value"]
    # a one-class subgroup yields NaN, not an exception
    rows = stats.subgroup_table({"auroc": stats.auroc}, np.r_[y[:10], 1, 1],
                                np.r_[p[:10], 0.1, 0.2], subgroup=np.array(["a"] * 10 + ["b", "b"]),
                                n_boot=50)
    assert np.isnan(rows[-1]["value"])


def test_mean_waveforms_and_roc_band(tmp_path, rng):
    import matplotlib.image as mpimg
    from ecgcore.stats import figures as F
    t = np.arange(450) / 500
    beat = np.exp(-((t - 0.25) / 0.01) ** 2)
    high = beat + 0.1 * rng.normal(size=(30, 12, 450))
    low = 0.5 * beat + 0.1 * rng.normal(size=(40, 12, 450))
    leads = ["I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6"]
    fig = F.mean_waveforms(high, low, 500, leads, sd_scale=0.5)
    assert len([a for a in fig.axes if a.get_visible()]) == 12
    path = F.save_figure(fig, tmp_path / "w.png", dpi=60)
    img = mpimg.imread(path)
    assert img.ndim == 3 and img.shape[0] > 100 and img[..., :3].std() > 0.05
    with pytest.raises(EvaluationError, match="lead names"):
        F.mean_waveforms(high, low, 500, leads[:6])
    y = rng.integers(0, 2, 500)
    p = rng.normal(size=500) + y
    g, lo, hi = F.roc_band(y, p, n_boot=200, seed=0)
    fpr, tpr, _ = stats.roc_curve(y, p)
    mid = np.interp(g, fpr, tpr)
    assert np.all(lo <= hi) and np.mean((lo <= mid + 1e-9) & (mid <= hi + 1e-9)) > 0.95
    assert np.mean(hi - lo) > 0.01

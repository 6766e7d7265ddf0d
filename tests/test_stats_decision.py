"""Decision-curve analysis: hand-computed net benefit, treat-all/none, references, figure, bad input."""

from __future__ import annotations

import numpy as np
import pytest

from ecgcore import stats
from ecgcore.errors import EvaluationError

Y = np.array([1, 1, 0, 1, 0, 0, 0, 1, 0, 0])
P = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1, 0.05])


def test_net_benefit_hand_computed():
    # pt = 0.2: treated p >= 0.2 -> 8 cases, TP 4, FP 4: 4/10 - 4/10 * 0.2/0.8 = 0.3
    # pt = 0.5: 5 cases, TP 3, FP 2: 0.3 - 0.2 * 1 = 0.1
    # pt = 0.7 (a tie with a score: treated at >=): TP 2, FP 1: 0.2 - 0.1 * 7/3
    # pt = 0.75: TP 2, FP 0: 0.2
    nb = stats.net_benefit(Y, P, [0.2, 0.5, 0.7, 0.75])
    assert nb == pytest.approx([0.3, 0.1, 0.2 - 0.1 * 0.7 / 0.3, 0.2], abs=1e-12)
    ta = stats.treat_all_net_benefit(0.4, [0.2, 0.5, 0.75])
    assert ta == pytest.approx([0.4 - 0.6 * 0.25, 0.4 - 0.6, 0.4 - 0.6 * 3], abs=1e-12)


def test_decision_curve_matches_direct_formula_on_random_data(rng):
    n = 400
    p = rng.uniform(0, 1, n)
    y = (rng.uniform(0, 1, n) < p).astype(int)          # calibrated by construction
    t = np.linspace(0.01, 0.99, 37)
    dc = stats.decision_curve(y, p, t)
    prev = y.mean()
    for k, pt in enumerate(t):
        treat = p >= pt
        tp = np.sum(treat & (y == 1)) / n
        fp = np.sum(treat & (y == 0)) / n
        assert dc["net_benefit"][k] == pytest.approx(tp - fp * pt / (1 - pt), abs=1e-12)
        assert dc["treat_all"][k] == pytest.approx(prev - (1 - prev) * pt / (1 - pt), abs=1e-12)
    assert np.all(dc["treat_none"] == 0) and dc["prevalence"] == pytest.approx(prev)
    assert dc["standardized_net_benefit"] == pytest.approx(dc["net_benefit"] / prev)
    # a calibrated model is never worse than both references by more than noise at mid thresholds
    mid = (t > 0.2) & (t < 0.8)
    assert np.all(dc["net_benefit"][mid] >= np.maximum(dc["treat_all"][mid], 0) - 0.03)
    assert dc["useful"][mid].mean() > 0.8


def test_perfect_and_useless_models():
    y = np.array([0, 0, 1, 1, 0, 1, 0, 0])
    t = np.array([0.1, 0.3, 0.6, 0.9])
    # perfect probabilities: every positive treated, no false positive -> NB = prevalence
    assert stats.net_benefit(y, y.astype(float), t) == pytest.approx(np.full(4, y.mean()))
    # a constant score equal to the threshold or below treats everyone: NB = treat-all
    const = np.full(y.size, 0.05)
    assert stats.net_benefit(y, const, t) == pytest.approx(np.zeros(4))   # nobody treated
    const = np.full(y.size, 0.95)
    assert stats.net_benefit(y, const, t) == pytest.approx(stats.treat_all_net_benefit(y.mean(), t))


def test_bad_input_named():
    with pytest.raises(EvaluationError, match="strictly between 0 and 1"):
        stats.net_benefit(Y, P, [0.0, 0.5])
    with pytest.raises(EvaluationError, match="probabilities"):
        stats.decision_curve(Y, P * 3)
    with pytest.raises(EvaluationError, match="binary"):
        stats.decision_curve(np.arange(10), P)
    with pytest.raises(EvaluationError, match="length"):
        stats.net_benefit(Y[:5], P, [0.5])


def test_report_rows_and_figure(tmp_path, rng):
    pytest.importorskip("matplotlib")
    from PIL import Image
    n = 300
    p = rng.uniform(0, 1, n)
    y = (rng.uniform(0, 1, n) < p).astype(float)
    res = stats.evaluate_predictions({"y": y, "p": p}, [{"name": "t", "type": "binary", "y": "y", "p": "p",
                                                         "threshold": 0.5, "decision_thresholds": [0.2, 0.5]}],
                                     out_dir=tmp_path, n_boot=20, figures=True)
    nb = {r["metric"]: r["value"] for r in res["rows"] if r["metric"].startswith("net_benefit")}
    assert nb["net_benefit_pt0.2"] == pytest.approx(float(stats.net_benefit(y, p, 0.2)[0]))
    assert nb["net_benefit_treat_all_pt0.5"] == pytest.approx(y.mean() - (1 - y.mean()))
    png = tmp_path / "decision_t.png"
    assert png.exists()
    im = np.asarray(Image.open(png).convert("L"), float)
    assert im.shape[0] > 200 and im.std() > 5          # drawn, not blank

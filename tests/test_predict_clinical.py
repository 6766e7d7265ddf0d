"""``ecgcore predict --clinical CSV``: models that fuse clinical variables (the LVH models, the
scar/LVEF image model) take them per record from a table, read as training reads its labels."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import ecgcore  # noqa: E402
from ecgcore.cli import main  # noqa: E402
from ecgcore.record import Record  # noqa: E402

N_REC = 12


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """12 simulated records -> lvh dataset, labels with two clinical columns, a 1-epoch FCN that
    fuses them."""
    from ecgcore.pipeline import items_from_paths, run_pipeline
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("clinical")
    recs = ecgcore.simulate(N_REC, seed=21, rhythm="sinus")
    paths, rows = [], []
    (root / "recs").mkdir()
    rng = np.random.default_rng(5)
    for i, rec in enumerate(recs):
        p = root / "recs" / f"r{i:02d}"
        ecgcore.write(Record(rec.signal, rec.fs, rec.leads), str(p), format="wfdb")
        paths.append(str(p) + ".hea")
        rows.append([f"r{i:02d}", f"{60 + rng.normal(0, 10):.1f}", int(i % 2), f"{rng.normal(100, 20):.1f}"])
    ds = root / "ds"
    run_pipeline(items_from_paths(paths), "lvh", str(ds), workers=1, chunk_size=64, progress=False)
    labels = root / "labels.csv"
    with open(labels, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["record_id", "age", "female", "lvm"])
        w.writerows(rows)
    cfg = root / "c.yaml"
    cfg.write_text(f"""
name: clinical
seed: 0
threads: 1
model: {{name: fcn_lvh_small, options: {{n_clinical: 2}}}}
data: {{dataset: {ds}, labels: {labels}, clinical: [age, female], batch_size: 8,
        split: {{method: random, fractions: [0.5, 0.25, 0.25], seed: 1}}}}
tasks:
  - {{name: lvm, type: regression}}
train: {{epochs: 1, tensorboard: false}}
evaluate: {{n_boot: 10}}
""")
    out = root / "run"
    assert main(["train", "--config", str(cfg), "--out", str(out), "--no-progress"]) == 0
    return {"root": root, "paths": paths, "labels": labels, "run": out}


def _read(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def test_predict_takes_each_records_clinical_row(run, tmp_path):
    from ecgcore.models.train.predict import load_for_inference, predict_records
    from ecgcore.presets import preprocess

    out = tmp_path / "p.csv"
    assert main(["predict", "--checkpoint", str(run["run"]), *run["paths"], "--out", str(out),
                 "--clinical", str(run["labels"])]) == 0
    got = {r["path"]: float(r["lvm"]) for r in _read(out)}
    assert len(got) == N_REC
    # the reference: the library call with the labels' values in the checkpoint's column order
    model, ck = load_for_inference(str(run["run"]))
    assert ck["clinical_cols"] == ["age", "female"]
    table = {r["record_id"]: [float(r["age"]), float(r["female"])] for r in _read(run["labels"])}
    segs = [preprocess(ecgcore.read(p), ck["preset"]) for p in run["paths"]]
    clin = np.array([table[f"r{i:02d}"] for i in range(N_REC)])
    ref = predict_records(model, ck, segs, clinical=clin)["lvm"]
    np.testing.assert_allclose([got[p] for p in run["paths"]], ref, rtol=1e-5)
    # the clinical values matter: other ages, other predictions
    clin2 = clin.copy()
    clin2[:, 0] += 30
    assert not np.allclose(predict_records(model, ck, segs, clinical=clin2)["lvm"], ref)


def test_missing_rows_fail_alone_and_empty_cells_are_imputed(run, tmp_path, capsys):
    rows = _read(run["labels"])
    table = tmp_path / "clin.csv"
    with open(table, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "age", "female"])
        for r in rows[1:]:                                # r00 has no row
            w.writerow([r["record_id"], "" if r["record_id"] == "r01" else r["age"], r["female"]])
    out = tmp_path / "p.csv"
    assert main(["predict", "--checkpoint", str(run["run"]), *run["paths"], "--out", str(out),
                 "--clinical", str(table), "--id-col", "id"]) == 1
    got = _read(out)
    assert len(got) == N_REC - 1 and all(np.isfinite(float(r["lvm"])) for r in got)
    errs = [json.loads(x) for x in (tmp_path / "p.errors.jsonl").read_text().splitlines()]
    assert len(errs) == 1 and errs[0]["path"].endswith("r00.hea") and "no row with id 'r00'" in errs[0]["message"]
    assert "Traceback" not in capsys.readouterr().err


def test_clinical_table_needed_and_checked(run, tmp_path, capsys):
    out = tmp_path / "p.csv"
    assert main(["predict", "--checkpoint", str(run["run"]), *run["paths"][:2], "--out", str(out)]) == 2
    assert "--clinical" in capsys.readouterr().err
    bad = tmp_path / "bad.csv"
    bad.write_text("record_id,age\nr00,60\n")
    assert main(["predict", "--checkpoint", str(run["run"]), *run["paths"][:2], "--out", str(out),
                 "--clinical", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "no column 'female'" in err and "Traceback" not in err


def test_image_model_with_clinical_features(tmp_path):
    # the scar/LVEF image model: per-input features, age divided by 100 as the study trained
    from ecgcore import models
    from ecgcore.models.classifier import ECGClassifier

    torch.manual_seed(3)
    clf = ECGClassifier(models.create("mtecg_image_tiny", heads={"scar": 2, "lvef": 2, "n_clinical": 6}).eval())
    rec = ecgcore.simulate(1, seed=2)[0]
    a, b = str(tmp_path / "a.png"), str(tmp_path / "b.png")
    ecgcore.plot(rec, a, layout="6x2", dpi=100)
    ecgcore.plot(rec, b, layout="6x2", dpi=100)
    f1 = {"age": 63, "female_gender": 1, "dm": 0, "ht": 1, "smoke": 0, "dlp": 1}
    f2 = dict(f1, age=30)
    rows, failures = clf.predict_table([a, b, "c.png"], clinical={a: f1, b: f2})
    assert [r["path"] for r in rows] == [a, b]
    # each row as predict() gives it for that input's own features
    for row, f in zip(rows, (f1, f2)):
        one = clf.predict(row["path"], clinical=f)
        assert row["scar_p1"] == pytest.approx(one["scar"]["probability"]["positive"], rel=1e-5)
        assert row["lvef_p1"] == pytest.approx(one["lvef"]["probability"]["positive"], rel=1e-5)
    assert rows[0]["scar_p1"] != rows[1]["scar_p1"]          # same page, other age
    assert len(failures) == 1 and failures[0][0] == "c.png"
    with pytest.raises(ecgcore.ConfigError, match="clinical"):
        clf.predict_table([a])

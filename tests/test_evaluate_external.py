"""``ecgcore evaluate`` on an external cohort whose records are numbered like the training data:
scored whole (the checkpoint knows its records by id and signal), not silently cut to the
ids that happen to be missing from the training splits."""

from __future__ import annotations

import csv
import json

import pytest

torch = pytest.importorskip("torch")

import ecgcore  # noqa: E402
from ecgcore.cli import main  # noqa: E402
from ecgcore.record import Record  # noqa: E402

N_REC = 12


def _cohort(root, name, seed):
    """N_REC simulated records named r00.. (the same names for every cohort) -> lvh dataset + labels."""
    from ecgcore.models.train.data import simulated_targets
    from ecgcore.pipeline import items_from_paths, run_pipeline
    d = root / name
    (d / "recs").mkdir(parents=True)
    paths, rows = [], []
    for i, rec in enumerate(ecgcore.simulate(N_REC, seed=seed, rhythm="mixed")):
        p = d / "recs" / f"r{i:02d}"
        ecgcore.write(Record(rec.signal, rec.fs, rec.leads), str(p), format="wfdb")
        paths.append(str(p) + ".hea")
        rows.append([f"r{i:02d}", f"{simulated_targets(rec)['heart_rate_bpm']:.2f}"])
    run_pipeline(items_from_paths(paths), "lvh", str(d / "ds"), workers=1, chunk_size=64, progress=False)
    with open(d / "labels.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["record_id", "hr"])
        w.writerows(rows)
    return d


@pytest.fixture(scope="module")
def cohorts(tmp_path_factory):
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("external")
    a, b = _cohort(root, "a", 31), _cohort(root, "b", 32)
    cfg = root / "c.yaml"
    cfg.write_text(f"""
name: ext
seed: 0
threads: 1
model: {{name: fcn_lvh_small, options: {{n_clinical: 0}}}}
data: {{dataset: {a / 'ds'}, labels: {a / 'labels.csv'}, batch_size: 8,
        split: {{method: random, fractions: [0.5, 0.25, 0.25], seed: 1}}}}
tasks:
  - {{name: hr, type: regression}}
train: {{epochs: 1, tensorboard: false}}
evaluate: {{n_boot: 10}}
""")
    run = root / "run"
    assert main(["train", "--config", str(cfg), "--out", str(run), "--no-progress"]) == 0
    return {"a": a, "b": b, "run": run}


def _scored(cohorts, name, tmp_path):
    out = tmp_path / name
    d = cohorts[name]
    assert main(["evaluate", "--checkpoint", str(cohorts["run"]), "--data", str(d / "ds"),
                 "--labels", str(d / "labels.csv"), "--out", str(out), "--n-boot", "10",
                 "--saliency-records", "0"]) == 0
    return json.loads((out / "metrics.json").read_text())["scored"]


def test_training_dataset_scores_its_held_out_records_only(cohorts, tmp_path):
    s = _scored(cohorts, "a", tmp_path)
    by = s["records_by_split"]
    assert s["split"] == "test" and s["n_scored"] == by["test"] + by["other"] < N_REC
    assert by["train"] > 0 and s["n_id_collisions"] == 0


def test_external_cohort_with_the_same_record_names_is_scored_whole(cohorts, tmp_path):
    s = _scored(cohorts, "b", tmp_path)
    assert s["n_scored"] == N_REC and s["records_by_split"] == {"other": N_REC}
    assert s["n_id_collisions"] == N_REC and "another cohort" in s["reason"]

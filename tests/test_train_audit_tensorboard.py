"""Issue 7 audit: the TensorBoard log of a training run holds the same scalars as log.csv.

A 3-epoch run with ``train.tensorboard: true`` must write a real event file; read back with
tensorboard's own ``EventAccumulator``, every numeric log.csv column is a scalar series with one
value per epoch (step = epoch), equal to the CSV value (TensorBoard stores float32).
"""

from __future__ import annotations

import csv
import math

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("tensorboard", reason="tensorboard is not installed (pip install tensorboard); "
                                          "the TensorBoard log of 'ecgcore train' cannot be checked")


def test_tensorboard_scalars_equal_the_csv_log(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from ecgcore.models.train import train
    from ecgcore.models.train.config import validate
    cfg = validate({"seed": 7, "threads": 1, "model": {"name": "fcn_lvh_small", "options": {"n_clinical": 0}},
                    "data": {"source": "simulated", "simulate": {"n": 20, "seed": 6}, "batch_size": 8},
                    "tasks": [{"name": "qrs_duration_ms"}, {"name": "tachycardia", "type": "binary"}],
                    "scheduler": {"type": "warmup_cosine", "warmup_frac": 0.3, "floor": 0.1},
                    "train": {"epochs": 3, "tensorboard": True}, "evaluate": {"n_boot": 10}})
    out = tmp_path / "run"
    train(cfg, out, progress=False)
    files = list((out / "tensorboard").glob("events.out.tfevents.*"))
    assert len(files) == 1 and files[0].stat().st_size > 100
    acc = EventAccumulator(str(out / "tensorboard"), size_guidance={"scalars": 0})
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    with open(out / "log.csv") as f:
        log = list(csv.DictReader(f))
    assert [int(r["epoch"]) for r in log] == [1, 2, 3]
    numeric = set()
    for col in log[0]:
        if col in ("epoch", "phase"):
            continue
        vals = [float(r[col]) for r in log if r[col] != ""]
        if len(vals) == len(log) and all(math.isfinite(v) for v in vals):
            numeric.add(col)
    # the columns a reader looks for are there, and the TensorBoard tags are exactly the numeric columns
    assert {"train_loss", "val_loss", "lr", "val_qrs_duration_ms_r2", "val_tachycardia_auroc"} <= numeric
    assert tags == numeric, (sorted(tags ^ numeric))
    for tag in sorted(tags):
        ev = acc.Scalars(tag)
        assert [e.step for e in ev] == [1, 2, 3], tag
        for e, r in zip(ev, log):
            assert e.value == pytest.approx(float(r[tag]), rel=1e-6, abs=1e-7), (tag, e.step)
    # the learning rate follows the warm-up + cosine schedule: it changes between epochs
    lrs = [e.value for e in acc.Scalars("lr")]
    assert len(set(lrs)) == 3

"""DDP: ``torchrun --nproc_per_node=2 -m ecgcore train`` on gloo over loopback, a tiny model.

Besides the plain run: PCGrad with uncertainty weighting (gradients written by hand, so the engine
must average them over ranks itself) keeps every rank's model identical, and a run killed after an
epoch and continued with ``--resume`` under torchrun ends bit-for-bit where the uninterrupted run
ends (same weights, same log, same best epoch and test metrics).
"""

from __future__ import annotations

import csv
import json
import os
import socket
import subprocess
import sys

import pytest

torch = pytest.importorskip("torch")

pytestmark = pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed not available")


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _torchrun(args, timeout=240):
    env = dict(os.environ, MASTER_ADDR="127.0.0.1", OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
           f"--master_port={_free_port()}", "--master_addr=127.0.0.1", *args]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    assert res.returncode == 0, res.stderr[-3000:]
    return res


@pytest.mark.slow
def test_torchrun_two_processes_gloo(tmp_path):
    cfg = tmp_path / "ddp.yaml"
    cfg.write_text("""
seed: 3
threads: 1
device: cpu
model: {name: fcn_lvh_small, options: {n_clinical: 0}}
data: {source: simulated, simulate: {n: 30, seed: 4}, batch_size: 8}
tasks: [{name: qrs_duration_ms}, {name: tachycardia, type: binary}]
train: {epochs: 2, tensorboard: false}
evaluate: {n_boot: 10}
""")
    out = tmp_path / "run"
    res = _torchrun(["-m", "ecgcore", "train", "--config", str(cfg), "--out", str(out), "--no-progress"])
    m = json.loads((out / "metrics.json").read_text())
    assert m["epochs_run"] == 2 and m["splits"]["train"]["records"] == 18
    ck = torch.load(out / "checkpoints" / "last.pt", weights_only=True)
    assert ck["trainer"]["epoch"] == 2
    # rank 0 alone wrote the log: one row per epoch
    assert len((out / "log.csv").read_text().strip().splitlines()) == 3
    # and rank 0 alone reports the result (both ranks ran to the end: the log says 2 epochs)
    assert res.stderr.count("ecgcore train: best epoch") == 1, res.stderr[-2000:]


# 30 simulated records -> 18 training records: 9 per rank, batches of 8 + 1 on both ranks, so both
# ranks draw the same amount of randomness (dropout) and their RNG states stay equal, which is what
# lets rank 0's checkpointed RNG state resume rank 1 too
_CFG = """
seed: 3
threads: 1
device: cpu
model: {{name: fcn_lvh_small, options: {{n_clinical: 0}}}}
data: {{source: simulated, simulate: {{n: 30, seed: 4}}, batch_size: 8}}
tasks: [{{name: qrs_duration_ms}}, {{name: tachycardia, type: binary}}]
loss: {loss}
optim: {{name: adam, lr: 0.003}}
train: {{epochs: {epochs}, tensorboard: false}}
evaluate: {{n_boot: 10}}
"""

# one torchrun launch, several runs in the same process group: each rank saves its own weights after
# an interrupted run (a finished run reloads rank 0's best.pt everywhere, which would hide a difference)
_DRIVER = """
import os, sys
import torch
from ecgcore.models.train import ddp, load_config
from ecgcore.models.train.engine import Trainer
for cfg, out, stop in [a.split(",") for a in sys.argv[1:]]:
    t = Trainer(load_config(cfg), out, progress=False)
    t.fit(stop_after_epochs=int(stop) if stop != "-" else None)
    if stop != "-":
        torch.save({"params": {k: v.detach() for k, v in t.model.named_parameters()},
                    "uw": None if t.uw is None else t.uw.log_vars.detach().clone()},
                   os.path.join(out, f"rank{ddp.rank()}.pt"))
ddp.teardown()
"""


@pytest.fixture(scope="module")
def ddp_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("ddp2")
    (root / "uw.yaml").write_text(_CFG.format(loss="{weighting: uncertainty, pcgrad: true}", epochs=2))
    (root / "pc.yaml").write_text(_CFG.format(loss="{pcgrad: true}", epochs=2))
    (root / "driver.py").write_text(_DRIVER)
    for d in ("uw", "full", "killed"):
        (root / d).mkdir()
    _torchrun([str(root / "driver.py"), f"{root / 'uw.yaml'},{root / 'uw'},1",
               f"{root / 'pc.yaml'},{root / 'full'},-", f"{root / 'pc.yaml'},{root / 'killed'},1"])
    # the killed run goes on in fresh processes, through the command line
    res = _torchrun(["-m", "ecgcore", "train", "--config", str(root / "pc.yaml"), "--out", str(root / "killed"),
                     "--resume", "--no-progress"])
    return root, res


def _ranks(d):
    return [torch.load(d / f"rank{r}.pt", weights_only=True) for r in (0, 1)]


@pytest.mark.slow
def test_ddp_pcgrad_with_uncertainty_weighting_keeps_ranks_identical(ddp_runs):
    """PCGrad combines per-task gradients by hand; the combined gradient must be averaged over the
    ranks, or each rank's model drifts. After an epoch on different shards both ranks hold the same
    parameters, the loss weights learned (s moved from 0) and the checkpoint is rank 0's model."""
    root, _ = ddp_runs
    r0, r1 = _ranks(root / "uw")
    assert r0["params"].keys() == r1["params"].keys()
    for k in r0["params"]:
        assert torch.equal(r0["params"][k], r1["params"][k]), k
    assert r0["uw"].shape == (2,) and bool((r0["uw"] != 0).all())
    ck = torch.load(root / "uw" / "checkpoints" / "last.pt", weights_only=True)
    assert ck["config"]["loss"]["pcgrad"] and ck["config"]["loss"]["weighting"] == "uncertainty"
    assert all(torch.equal(ck["model_state"][k], v) for k, v in r0["params"].items())
    assert torch.equal(ck["uw"]["log_vars"], r0["uw"])


@pytest.mark.slow
def test_ddp_uncertainty_weights_are_the_same_on_every_rank(ddp_runs):
    root, _ = ddp_runs
    r0, r1 = _ranks(root / "uw")
    assert torch.equal(r0["uw"], r1["uw"]), (r0["uw"], r1["uw"])


@pytest.mark.slow
def test_ddp_resume_after_a_kill_equals_the_uninterrupted_run(ddp_runs):
    root, res = ddp_runs
    assert res.stderr.count("ecgcore train: best epoch") == 1
    a = torch.load(root / "full" / "checkpoints" / "last.pt", weights_only=True)
    b = torch.load(root / "killed" / "checkpoints" / "last.pt", weights_only=True)
    assert a["trainer"]["epoch"] == b["trainer"]["epoch"] == 2
    assert a["model_state"].keys() == b["model_state"].keys()
    for k in a["model_state"]:
        assert torch.equal(a["model_state"][k], b["model_state"][k]), k
    for k in a["optimizer"]["state"]:
        for kk, v in a["optimizer"]["state"][k].items():
            assert torch.equal(torch.as_tensor(v), torch.as_tensor(b["optimizer"]["state"][k][kk])), (k, kk)
    # the same log, row for row (the timing column aside), written once per epoch by rank 0
    logs = []
    for d in ("full", "killed"):
        with open(root / d / "log.csv") as f:
            logs.append([{k: v for k, v in r.items() if k != "seconds"} for r in csv.DictReader(f)])
    assert [int(r["epoch"]) for r in logs[1]] == [1, 2]
    assert logs[0] == logs[1]
    ma, mb = (json.loads((root / d / "metrics.json").read_text()) for d in ("full", "killed"))
    for key in ("best_epoch", "best_value", "thresholds", "val", "test"):
        assert ma[key] == mb[key], key
    # training moved the weights away from the first epoch's
    first = torch.load(root / "killed" / "rank0.pt", weights_only=True)["params"]
    assert any(not torch.equal(first[k], b["model_state"][k]) for k in first)

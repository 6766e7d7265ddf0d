"""DDP: ``torchrun --nproc_per_node=2 -m ecgcore train`` on gloo over loopback, a tiny model."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest

torch = pytest.importorskip("torch")


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed not available")
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
    env = dict(os.environ, MASTER_ADDR="127.0.0.1", OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
           f"--master_port={_free_port()}", "--master_addr=127.0.0.1",
           "-m", "ecgcore", "train", "--config", str(cfg), "--out", str(out), "--no-progress"]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=240, env=env)
    assert res.returncode == 0, res.stderr[-3000:]
    m = json.loads((out / "metrics.json").read_text())
    assert m["epochs_run"] == 2 and m["splits"]["train"]["records"] == 18
    ck = torch.load(out / "checkpoints" / "last.pt", weights_only=True)
    assert ck["trainer"]["epoch"] == 2
    # rank 0 alone wrote the log: one row per epoch
    assert len((out / "log.csv").read_text().strip().splitlines()) == 3
    # and rank 0 alone reports the result (both ranks ran to the end: the log says 2 epochs)
    assert res.stderr.count("ecgcore train: best epoch") == 1, res.stderr[-2000:]

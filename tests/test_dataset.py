"""ECGDataset over pipeline shards: memory-mapped items, labels, record view."""

from __future__ import annotations

import csv
import subprocess
import sys

import numpy as np
import pytest

import ecgcore
from ecgcore.data import ECGDataset
from ecgcore.errors import ConfigError
from ecgcore.pipeline import items_from_paths, run_pipeline
from ecgcore.record import STANDARD_12, Record


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("dsdata")
    rng = np.random.default_rng(7)
    paths = []
    for i in range(6):
        n = 5000 if i % 3 else 7500  # 2 or 3 segments per record
        sig = (rng.standard_normal((12, n)) * 0.4).astype(np.float32)
        p = root / f"r{i}"
        ecgcore.write(Record(sig, 500, STANDARD_12), str(p), format="wfdb")
        paths.append(str(p) + ".hea")
    out = root / "ds"
    run_pipeline(items_from_paths(paths), "ecgfm", str(out), workers=1, chunk_size=4,
                 progress=False)
    labels = root / "labels.csv"
    with open(labels, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["record_id", "AF", "LVEF", "unused"])
        for i in range(5):  # r5 has no labels row
            w.writerow([f"r{i}", i % 2, "" if i == 2 else 40 + i, "x"])
    return out, labels, paths


def test_items_are_memory_mapped_segments_with_labels(dataset):
    torch = pytest.importorskip("torch")
    out, labels, paths = dataset
    ds = ECGDataset(str(out), labels=str(labels), label_cols=["AF", "LVEF"])
    assert len(ds) == 2 * 4 + 3 * 2  # r0 and r3 are 15 s: 3 segments
    x, y = ds[0]
    assert isinstance(x, torch.Tensor) and x.dtype == torch.float32 and x.shape == (12, 2500)
    assert y.shape == (2,)
    ref = ecgcore.preprocess(ecgcore.read(paths[0]), "ecgfm")
    assert np.array_equal(x.numpy(), ref[0])
    by_id = {v.record_id: v for v in ds.records()}
    assert set(by_id) == {f"r{i}" for i in range(6)}
    r3 = by_id["r3"]
    assert len(r3) == 3
    assert np.array_equal(r3.segments, ecgcore.preprocess(ecgcore.read(paths[3]), "ecgfm"))
    assert r3.labels[0] == 1 and r3.labels[1] == 43
    assert np.isnan(by_id["r2"].labels[1]) and by_id["r2"].labels[0] == 0
    assert np.isnan(by_id["r5"].labels).all()  # no labels row: NaN, not dropped
    segs, lab = by_id["r1"].tensors()
    assert segs.shape == (2, 12, 2500) and lab.shape == (2,)
    loader = torch.utils.data.DataLoader(ds, batch_size=5)
    xb, yb = next(iter(loader))
    assert xb.shape == (5, 12, 2500) and yb.shape == (5, 2)


def test_shards_load_without_ecgcore(dataset):
    out, _, _ = dataset
    code = ("import sys, numpy as np, glob; sys.modules['ecgcore'] = None; "
            f"a = [np.load(p, mmap_mode='r') for p in sorted(glob.glob({str(out)!r} + '/shard-*.npy'))]; "
            "print(sum(x.shape[0] for x in a), a[0].dtype)")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == ["14", "float32"]


def test_data_module_imports_without_torch():
    code = ("import sys; sys.modules['torch'] = None; import ecgcore.data; "
            "print('torch' in sys.modules and sys.modules['torch'] is not None)")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "False"


def test_bad_labels_are_config_errors(dataset, tmp_path):
    out, labels, _ = dataset
    with pytest.raises(ConfigError, match="LVMI"):
        ECGDataset(str(out), labels=str(labels), label_cols=["LVMI"])
    with pytest.raises(ConfigError, match="unused"):
        ECGDataset(str(out), labels=str(labels), label_cols=["unused"])
    with pytest.raises(ConfigError, match="manifest"):
        ECGDataset(str(tmp_path))
    ds = ECGDataset(str(out))
    assert ds.array(-1).shape == (12, 2500) and ds.labels.shape == (len(ds), 0)
    with pytest.raises(IndexError):
        ds.array(len(ds))

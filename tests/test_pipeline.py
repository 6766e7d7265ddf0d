"""The batch pipeline: shards, manifest, errors, resume after SIGKILL, engines."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from _procs import kill_after

import ecgcore
from ecgcore.cli import main
from ecgcore.errors import ConfigError
from ecgcore.pipeline import items_from_paths, run_pipeline
from ecgcore.record import STANDARD_12, Record

N_GOOD = 20


def _make_inputs(root: Path, rng, n=N_GOOD):
    """n good 10 s 500 Hz WFDB records (some with shuffled lead order), one short, one corrupt."""
    d = root / "in"
    (d / "sub").mkdir(parents=True)
    for i in range(n):
        sig = (rng.standard_normal((12, 5000)) * rng.uniform(0.1, 1.0, (12, 1))).astype(np.float32)
        leads = list(STANDARD_12)
        if i % 5 == 0:  # aVF before aVL, as in MIMIC-IV-ECG
            sig[[4, 5]] = sig[[5, 4]]
            leads[4], leads[5] = leads[5], leads[4]
        folder = d / "sub" if i % 2 else d
        ecgcore.write(Record(sig, 500, leads), str(folder / f"rec{i:03d}"), format="wfdb")
    ecgcore.write(Record(rng.standard_normal((12, 1000)).astype(np.float32), 500, STANDARD_12),
                  str(d / "short"), format="wfdb")
    (d / "corrupt.hea").write_text("this is not a header\n")
    return d


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    rng = np.random.default_rng(20261122)
    return _make_inputs(tmp_path_factory.mktemp("pipe"), rng)


def _files(out: Path) -> dict[str, bytes]:
    """Every dataset file except summary.json, sidecars without their timings."""
    res = {}
    for p in sorted(out.iterdir()):
        if p.name == "summary.json":
            continue
        data = p.read_bytes()
        if p.name.startswith("shard-") and p.suffix == ".json":
            d = json.loads(data)
            d.pop("timings")
            data = json.dumps(d, sort_keys=True).encode()
        res[p.name] = data
    return res


def _cli(inputs, out, *extra):
    return main(["preprocess", str(inputs), "--preset", "ecgfm", "--out", str(out),
                 "--no-progress", *extra])


def test_local_run_outputs(inputs, tmp_path):
    out = tmp_path / "ds"
    assert _cli(inputs, out, "--workers", "1", "--chunk-size", "7") == 1  # 2 records fail
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n_inputs"] == N_GOOD + 2
    assert summary["n_records_ok"] == N_GOOD and summary["n_records_failed"] == 2
    assert summary["n_segments"] == 2 * N_GOOD and summary["n_shards"] == 4
    assert summary["preset"]["name"] == "ecgfm" and summary["preset"]["steps"]
    assert summary["versions"]["numpy"] == np.__version__
    assert summary["started"] <= summary["finished"]
    errors = [json.loads(line) for line in (out / "errors.jsonl").read_text().splitlines()]
    assert sorted(Path(e["path"]).name for e in errors) == ["corrupt.hea", "short.hea"]
    assert {e["error"] for e in errors} == {"ReadError", "PreprocessError"}
    assert all(e["message"] for e in errors)
    with open(out / "manifest.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2 * N_GOOD
    # every manifest row points at the right segment of the right record
    shards = {}
    for row in rows:
        arr = shards.setdefault(row["shard"], np.load(out / row["shard"], mmap_mode="r"))
        assert arr.dtype == np.float32 and arr.shape[1:] == (12, 2500)
        ref = ecgcore.preprocess(ecgcore.read(row["source"]), "ecgfm")
        assert np.array_equal(arr[int(row["offset"])], ref[int(row["segment_index"])])
    ids = {r["record_id"] for r in rows}
    assert "rec000" in ids and "sub/rec001" in ids
    # chunk i = sorted inputs[i*K:(i+1)*K]
    side = json.loads((out / "shard-000000.json").read_text())
    assert side["n_inputs"] == 7


def test_two_workers_and_float16(inputs, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    assert _cli(inputs, a, "--workers", "1", "--chunk-size", "5") == 1
    assert _cli(inputs, b, "--workers", "2", "--chunk-size", "5") == 1
    assert _files(a) == _files(b)
    h = tmp_path / "h"
    assert _cli(inputs, h, "--workers", "1", "--chunk-size", "5", "--dtype", "float16") == 1
    s32, s16 = np.load(a / "shard-000001.npy"), np.load(h / "shard-000001.npy")
    assert s16.dtype == np.float16 and np.abs(s16.astype(np.float32) - s32).max() < 5e-3


def test_existing_dataset_needs_resume_and_same_plan(inputs, tmp_path):
    out = tmp_path / "ds"
    assert _cli(inputs, out, "--workers", "1") == 1
    assert _cli(inputs, out, "--workers", "1") == 2  # exists, no --resume
    assert main(["preprocess", str(inputs), "--preset", "ccta", "--out", str(out),
                 "--no-progress", "--resume", "--workers", "1"]) == 2
    assert _cli(inputs, out, "--workers", "1", "--resume") == 1  # nothing to redo
    summary = json.loads((out / "summary.json").read_text())
    assert summary["shards_resumed"] == 1 and summary["shards_written"] == 0


def test_sigkill_then_resume_equals_uninterrupted_run(inputs, tmp_path):
    ref = tmp_path / "ref"
    assert _cli(inputs, ref, "--workers", "1", "--chunk-size", "2") == 1
    n_chunks = json.loads((ref / "plan.json").read_text())["n_chunks"]
    assert n_chunks == 11
    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "ecgcore", "preprocess", str(inputs), "--preset", "ecgfm",
           "--out", str(out), "--chunk-size", "2", "--workers", "1", "--no-progress"]
    env = dict(os.environ, ECGCORE_PIPELINE_CHUNK_DELAY="0.25")
    done = kill_after(cmd, env, out, "shard-*.json", 3)
    assert 3 <= done < n_chunks
    assert not (out / "manifest.csv").exists()
    # a torn write: a stale temporary must not survive the resume
    (out / f"shard-{done:06d}.npy.tmp-99999").write_bytes(b"partial")
    rc = subprocess.run(cmd + ["--resume"], stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL, timeout=300).returncode
    assert rc == 1
    summary = json.loads((out / "summary.json").read_text())
    assert summary["shards_resumed"] == done and summary["shards_written"] == n_chunks - done
    assert _files(out) == _files(ref)


def test_manifest_csv_input_with_labels(inputs, tmp_path):
    man = tmp_path / "man.csv"
    paths = sorted(inputs.glob("rec00*.hea"))
    with open(man, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "record_id", "AF", "age"])
        for i, p in enumerate(paths):
            w.writerow([os.path.relpath(p, tmp_path), f"patient{i}", i % 2, "" if i == 1 else 50 + i])
        w.writerow(["missing.hea", "ghost", 1, 1])
    out = tmp_path / "ds"
    assert main(["preprocess", str(man), "--preset", "ecgfm", "--out", str(out),
                 "--no-progress", "--workers", "1"]) == 1
    with open(out / "manifest.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert {r["record_id"] for r in rows} == {f"patient{i}" for i in range(len(paths))}
    assert rows[0]["AF"] == "0" and "age" in rows[0]
    err = json.loads((out / "errors.jsonl").read_text())
    assert err["record_id"] == "ghost" and err["error"] == "ReadError"


def test_bad_options_are_config_errors(inputs, tmp_path):
    items = items_from_paths([str(p) for p in inputs.glob("*.hea")])
    with pytest.raises(ConfigError, match="chunk size"):
        run_pipeline(items, "ecgfm", str(tmp_path / "x"), chunk_size=0, progress=False)
    with pytest.raises(ConfigError, match="fixed output length"):
        run_pipeline(items, {"name": "varlen", "steps": [{"op": "zscore"}]},
                     str(tmp_path / "y"), progress=False)
    with pytest.raises(ConfigError, match="unknown preset"):
        run_pipeline(items, "nope", str(tmp_path / "z"), progress=False)


def test_dask_engine_on_loopback_cluster(inputs, tmp_path):
    distributed = pytest.importorskip("distributed")
    ref = tmp_path / "ref"
    assert _cli(inputs, ref, "--workers", "1", "--chunk-size", "6") == 1
    with distributed.LocalCluster(n_workers=1, threads_per_worker=2, processes=False,
                                  host="127.0.0.1", protocol="tcp://",
                                  dashboard_address=":0") as cluster:
        out = tmp_path / "dask"
        assert _cli(inputs, out, "--engine", "dask", "--scheduler", cluster.scheduler_address,
                    "--chunk-size", "6") == 1
    assert _files(out) == _files(ref)
    assert json.loads((out / "summary.json").read_text())["engine"] == "dask"


def test_streamed_shard_is_byte_identical_to_np_save(tmp_path, rng):
    from ecgcore.pipeline.shards import write_npy_parts_atomic
    a = rng.standard_normal((7, 12, 50)).astype(np.float32)
    for dtype in ("float32", "float16"):
        write_npy_parts_atomic(str(tmp_path / "a.npy"), [a[:3], a[3:4], a[4:]], a.shape, dtype)
        np.save(tmp_path / "b.npy", a.astype(dtype))
        assert (tmp_path / "a.npy").read_bytes() == (tmp_path / "b.npy").read_bytes()
    with pytest.raises(ValueError, match="rows"):
        write_npy_parts_atomic(str(tmp_path / "c.npy"), [a[:3]], a.shape, "float32")
    assert not list(tmp_path.glob("c.npy*"))


def test_worker_crash_is_reported_and_resumable(inputs, tmp_path, monkeypatch, capsys):
    # the engines run worker.process_chunk_summary, which looks process_chunk up at call time
    import ecgcore.pipeline.worker as eng
    calls = {"n": 0}
    real = eng.process_chunk

    def flaky(task):
        calls["n"] += 1
        if calls["n"] == 3:
            raise OSError(28, "No space left on device")
        return real(task)

    monkeypatch.setattr(eng, "process_chunk", flaky)
    out = tmp_path / "ds"
    assert _cli(inputs, out, "--workers", "1", "--chunk-size", "5") == 1
    assert "--resume" in capsys.readouterr().err
    assert len(list(out.glob("shard-*.json"))) == 2
    monkeypatch.setattr(eng, "process_chunk", real)
    assert _cli(inputs, out, "--workers", "1", "--chunk-size", "5", "--resume") == 1
    ref = tmp_path / "ref"
    assert _cli(inputs, ref, "--workers", "1", "--chunk-size", "5") == 1
    assert _files(out) == _files(ref)


def test_quality_flags_in_manifest(tmp_path, rng):
    from ecgcore.pipeline.worker import _quality
    d = tmp_path / "in"
    d.mkdir()
    sig = (rng.standard_normal((12, 5000)) * 0.5).astype(np.float32)
    sig[8] = 0.0                                   # V3 flat
    sig[0] = np.clip(sig[0], -0.2, 0.2)            # I clipped (many samples at the extremes)
    sig[11] *= 40                                  # V6 implausibly large (about 100 mV)
    ecgcore.write(Record(sig, 500, STANDARD_12), str(d / "q"), format="wfdb")
    for mode, want, not_want in (("basic", {"flat:V3"}, {"clipped:I", "amplitude:V6"}),
                                 ("full", {"flat:V3", "clipped:I", "amplitude:V6"}, set())):
        out = tmp_path / mode
        assert _cli(d, out, "--workers", "1", "--quality", mode) == 0
        with open(out / "manifest.csv", newline="") as f:
            flags = set(next(csv.DictReader(f))["quality_flags"].split(";"))
        assert want <= flags and not (not_want & flags), (mode, flags)
    x = sig[None].copy()
    x[0, 2, 100] = np.nan
    assert "nan:III" in _quality(x, STANDARD_12)[0].split(";")
    assert "nan:III" in _quality(x, STANDARD_12, 500.0, True)[0].split(";")


def test_shard_writer_is_byte_identical_and_atomic(tmp_path, rng, monkeypatch):
    from ecgcore.pipeline import shards
    a = rng.standard_normal((9, 12, 50)).astype(np.float32)
    for dtype in ("float32", "float16"):
        with shards.ShardWriter(str(tmp_path / f"a{dtype}.npy"), (12, 50), dtype) as w:
            assert not (tmp_path / f"a{dtype}.npy").exists()  # only a temporary file until closed
            for part in (a[:4], a[4:4], a[4:5], a[5:]):
                w.append(part)
        np.save(tmp_path / "b.npy", a.astype(dtype))
        assert (tmp_path / f"a{dtype}.npy").read_bytes() == (tmp_path / "b.npy").read_bytes()
    # a header whose length changes with the row count (numpy pads it so that it never
    # does today): close() shifts the rows behind the longer header
    real = shards._npy_header
    monkeypatch.setattr(shards, "_npy_header", lambda shape, dtype: real(shape, dtype)
                        + (b"" if shape[0] == 0 else b"#" * 64))
    with shards.ShardWriter(str(tmp_path / "c.npy"), (12, 50), "float32") as w:
        w.append(a)
    data = (tmp_path / "c.npy").read_bytes()
    np.testing.assert_array_equal(np.frombuffer(data[-a.nbytes:], np.float32).reshape(a.shape), a)
    assert data[:-a.nbytes] == real(a.shape, np.dtype("float32")) + b"#" * 64
    monkeypatch.undo()
    # an error inside the block leaves neither the shard nor a temporary file
    with pytest.raises(ValueError, match="does not fit"):
        with shards.ShardWriter(str(tmp_path / "d.npy"), (12, 50), "float32") as w:
            w.append(a[:2])
            w.append(a[:, :6])
    assert not list(tmp_path.glob("d.npy*"))


@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_streamed_chunk_equals_batched_chunk(inputs, tmp_path, monkeypatch, dtype):
    """The per-record streaming route (light presets) and the batch route give the
    same shard bytes and the same sidecar, bad records included."""
    from ecgcore import presets
    from ecgcore.pipeline import worker
    paths = sorted(str(p) for p in inputs.rglob("*.hea"))
    items = [(p, os.path.basename(p)[:-4], (("label", str(i % 3)),)) for i, p in enumerate(paths)]
    p = presets.get_preset("ecgfm")
    assert worker._is_light(p)
    sidecars = {}
    for route in ("stream", "batch"):
        out = tmp_path / route
        out.mkdir()
        if route == "batch":
            monkeypatch.setattr(worker, "_is_light", lambda preset: False)
        sidecars[route] = worker.process_chunk({"chunk": 3, "items": items, "preset": p,
                                                "out_dir": str(out), "dtype": dtype,
                                                "shape": (12, 2500)})
        monkeypatch.undo()
    a, b = sidecars["stream"], sidecars["batch"]
    for s in (a, b):
        s.pop("timings")
    assert a == b
    assert len(a["errors"]) == 2 and len(a["records"]) == N_GOOD
    assert ((tmp_path / "stream" / "shard-000003.npy").read_bytes()
            == (tmp_path / "batch" / "shard-000003.npy").read_bytes())
    assert not list(tmp_path.rglob("*.tmp-*"))


def test_ids_from_paths_keep_the_suffix_only_where_two_formats_share_a_name(tmp_path):
    from ecgcore.pipeline import items_from_paths
    from ecgcore.pipeline.discover import sort_items
    d = tmp_path / "db"
    (d / "sub").mkdir(parents=True)
    paths = [d / "a.hea", d / "a.npz", d / "b.hea", d / "sub" / "a.hea", d / "c.xml"]
    for p in paths:
        p.write_bytes(b"x")
    items = sort_items(items_from_paths([str(p) for p in paths] + [str(d / "b.hea")]))
    assert [(it.path.replace(str(d) + "/", ""), it.record_id) for it in items] == [
        ("a.hea", "a.hea"), ("a.npz", "a.npz"), ("b.hea", "b"), ("c.xml", "c"), ("sub/a.hea", "sub/a")]
    # ids a manifest gives stay the user's: a clash there is still an error
    from ecgcore.pipeline.discover import InputItem
    with pytest.raises(ConfigError, match="used by both"):
        sort_items([InputItem(str(d / "a.hea"), "x"), InputItem(str(d / "b.hea"), "x")])

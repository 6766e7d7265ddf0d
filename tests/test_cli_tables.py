"""Chunked `ecgcore delineate` / `ecgcore measure` batches: parts, order, resume, dask."""

from __future__ import annotations

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

pd = pytest.importorskip("pandas")

N_REC = 7


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """N_REC short simulated 12-lead WFDB records and one corrupt header."""
    from ecgcore.synthetic import simulate
    d = tmp_path_factory.mktemp("tables") / "in"
    d.mkdir()
    for i, rec in enumerate(simulate(n=N_REC, fs=500, duration=4, seed=20261207,
                                     rhythm="sinus", noise="mild")):
        ecgcore.write(rec, str(d / f"r{i:02d}"), format="wfdb")
    (d / "r03x.hea").write_text("this is not a header\n")  # sorts between r03 and r04
    return d


def _paths(inputs):
    return [str(p) for p in sorted(inputs.glob("*.hea"))]


def _run(kind, inputs, out, *extra):
    return main([kind, *_paths(inputs), "--out", str(out), "--no-progress", *extra])


def _reference_marks(paths):
    """The table built record by record with the library API, in input order."""
    from ecgcore.delineation import delineate
    frames = []
    for p in paths:
        try:
            rec = ecgcore.read(p)
        except ecgcore.errors.ReadError:
            continue
        d = delineate(rec)
        df = d.to_frame()
        df.insert(0, "source", p)
        df["fs"] = rec.fs
        frames.append(df)
    return pd.concat(frames, ignore_index=True)


def test_two_tables_in_one_folder_keep_their_own_errors(inputs, tmp_path):
    # measure then delineate into one folder: the second run used to empty the first's list
    m, d = tmp_path / "measures.csv", tmp_path / "marks.csv"
    assert _run("measure", inputs, m) == 1
    assert _run("delineate", inputs, d) == 1
    for out in (m, d):
        errs = [json.loads(x) for x in out.with_suffix(".errors.jsonl").read_text().splitlines()]
        assert [Path(e["path"]).name for e in errs] == ["r03x.hea"]
    assert not (tmp_path / "errors.jsonl").exists()


def test_chunks_give_the_record_by_record_table(inputs, tmp_path):
    paths = _paths(inputs)
    ref = _reference_marks(paths)
    a, b = tmp_path / "a" / "marks.csv", tmp_path / "b" / "marks.csv"
    assert _run("delineate", inputs, a, "--chunk", "1") == 1
    assert _run("delineate", inputs, b, "--chunk", "3", "--workers", "2") == 1
    assert a.read_bytes() == b.read_bytes()  # chunking and workers do not change the table
    assert not (tmp_path / "a" / "marks.csv.parts").exists()
    got = pd.read_csv(a)
    assert list(got.columns[:len(ref.columns)]) == list(ref.columns)
    pd.testing.assert_frame_equal(got[ref.columns], ref, check_dtype=False)
    errs = [json.loads(x) for x in (tmp_path / "a" / "marks.errors.jsonl").read_text().splitlines()]
    assert [Path(e["path"]).name for e in errs] == ["r03x.hea"]
    assert errs[0]["error"] == "ReadError" and errs[0]["message"]
    # parquet: the same table, assembled part by part
    pq_out = tmp_path / "c" / "marks.parquet"
    assert _run("delineate", inputs, pq_out, "--chunk", "2") == 1
    pd.testing.assert_frame_equal(pd.read_parquet(pq_out), pd.read_csv(a), check_dtype=False)


def test_sigkill_then_resume_equals_uninterrupted_run(inputs, tmp_path):
    ref = tmp_path / "ref" / "measures.csv"
    assert _run("measure", inputs, ref, "--chunk", "1") == 1
    out = tmp_path / "killed" / "measures.csv"
    out.parent.mkdir()
    parts = Path(str(out) + ".parts")
    cmd = [sys.executable, "-m", "ecgcore", "measure", *_paths(inputs), "--out", str(out),
           "--chunk", "1", "--workers", "1", "--no-progress"]
    env = dict(os.environ, ECGCORE_TABLES_CHUNK_DELAY="0.4")
    done = kill_after(cmd, env, parts, "part-*.json", 3)
    n_inputs = len(_paths(inputs))
    assert 3 <= done < n_inputs
    assert not out.exists()
    (parts / "part-000099.csv.tmp-1-2").write_text("source,fs\ntorn")  # an interrupted write
    res = subprocess.run(cmd + ["--resume"], stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE, text=True, timeout=300)
    assert res.returncode == 1  # the corrupt header, whichever run met it
    assert f"{done} from the interrupted run's parts" in res.stderr  # kept, not redone
    assert out.read_bytes() == ref.read_bytes()
    assert out.with_suffix(".errors.jsonl").read_text() == ref.with_suffix(".errors.jsonl").read_text()
    assert not parts.exists()


def test_resume_adds_new_inputs_and_ignores_stale_parts(inputs, tmp_path):
    from ecgcore.cli._tables import process_table_chunk
    paths = _paths(inputs)
    full = tmp_path / "full.parquet"
    assert main(["delineate", *paths, "--out", str(full), "--no-progress"]) == 1
    out = tmp_path / "marks.parquet"
    assert main(["delineate", *paths[:3], "--out", str(out), "--no-progress"]) == 0
    # a run killed after renaming its table and before removing its parts
    parts = Path(str(out) + ".parts")
    parts.mkdir()
    process_table_chunk({"kind": "delineate", "part": 0, "paths": paths[:2],
                         "parts_dir": str(parts), "fmt": "parquet"})
    assert main(["delineate", *paths, "--out", str(out), "--resume", "--no-progress",
                 "--chunk", "2"]) == 1
    pd.testing.assert_frame_equal(pd.read_parquet(out), pd.read_parquet(full))


def test_resume_from_parts_finished_out_of_order(inputs, tmp_path):
    # a pool finishes chunks in any order: a killed run may leave two chunks
    # behind, with gaps; the resumed run must still give the rows in input order
    from ecgcore.cli._tables import process_table_chunk
    paths = _paths(inputs)
    full = tmp_path / "full" / "m.csv"
    assert main(["measure", *paths, "--out", str(full), "--no-progress", "--chunk", "2"]) == 1
    out = tmp_path / "resumed" / "m.csv"
    parts = Path(str(out) + ".parts")
    parts.mkdir(parents=True)
    for part, sl in ((0, slice(1, 3)), (1, slice(5, 7))):
        process_table_chunk({"kind": "measure", "part": part, "paths": paths[sl],
                             "parts_dir": str(parts), "fmt": "csv"})
    assert main(["measure", *paths, "--out", str(out), "--no-progress", "--chunk", "3",
                 "--resume"]) == 1
    assert out.read_bytes() == full.read_bytes()
    assert out.with_suffix(".errors.jsonl").read_text() == full.with_suffix(".errors.jsonl").read_text()


def test_parquet_parts_with_different_types_match_one_concat(tmp_path):
    from ecgcore.cli._tables import _assemble_parquet
    rng = np.random.default_rng(5)
    frames = [pd.DataFrame({"source": ["a", "a"], "n": [1, 2], "x": [None, None]}),
              pd.DataFrame({"source": ["b"], "n": [np.nan], "x": ["t"]}),
              pd.DataFrame({"source": ["c"] * 3, "n": rng.integers(0, 9, 3), "x": [None] * 3})]
    files = []
    for i, f in enumerate(frames):
        files.append(str(tmp_path / f"p{i}.parquet"))
        f.to_parquet(files[-1], index=False)
    _assemble_parquet(files, str(tmp_path / "all.parquet"))
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "all.parquet"),
                                  pd.concat(frames, ignore_index=True))


def test_dask_engine_on_loopback_cluster(inputs, tmp_path):
    distributed = pytest.importorskip("distributed")
    ref = tmp_path / "ref" / "measures.parquet"
    assert _run("measure", inputs, ref, "--chunk", "3") == 1
    with distributed.LocalCluster(n_workers=1, threads_per_worker=2, processes=False,
                                  host="127.0.0.1", protocol="tcp://",
                                  dashboard_address=":0") as cluster:
        out = tmp_path / "dask" / "measures.parquet"
        assert _run("measure", inputs, out, "--chunk", "3", "--engine", "dask",
                    "--scheduler", cluster.scheduler_address) == 1
    pd.testing.assert_frame_equal(pd.read_parquet(out), pd.read_parquet(ref))
    assert out.with_suffix(".errors.jsonl").read_text() == ref.with_suffix(".errors.jsonl").read_text()


@pytest.mark.parametrize("extra", [["--chunk", "0"], ["--workers", "0"],
                                   ["--scheduler", "tcp://127.0.0.1:1"]])
def test_usage_errors_exit_2(inputs, tmp_path, extra):
    assert _run("measure", inputs, tmp_path / "m.csv", *extra) == 2
    assert not (tmp_path / "m.csv").exists()

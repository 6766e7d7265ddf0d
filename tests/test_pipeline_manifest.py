"""The streamed manifest merge and the driver's light per-chunk summaries.

The reference for the manifest is the table written the straightforward way
(one dict per segment row, ``csv.DictWriter``; pyarrow from those dicts),
which is what the pipeline wrote before it streamed the sidecars from disk.
"""

from __future__ import annotations

import csv
import io
import json
import random

import numpy as np
import pytest

from ecgcore.pipeline import run_pipeline
from ecgcore.pipeline import worker
from ecgcore.pipeline.manifest import (MANIFEST_COLUMNS, SidecarFiles, build_manifest, render_chunk,
                                       write_outputs)
from ecgcore.pipeline.shards import sidecar_name, write_json_atomic
from ecgcore.record import STANDARD_12, Record


def _random_sidecars(seed: int, n_chunks: int = 6, same_labels: bool = False):
    """Sidecars with uneven label columns (some chunks without any, new columns late,
    a label named like a manifest column), odd text and failed records; with
    ``same_labels`` every record has the columns ``dx, code`` and ``age``."""
    rnd = random.Random(seed)
    out = []
    for c in range(n_chunks):
        records, errors, offset = [], [], 0
        for k in range(rnd.randint(0, 7)):
            if rnd.random() < 0.2:
                errors.append({"path": f"/d/bad {c}-{k}.hea", "record_id": f"b{c}{k}",
                               "error": rnd.choice(["ReadError", "PreprocessError"]),
                               "message": 'a "quoted", comma\nmessage'})
                continue
            n = rnd.randint(1, 3)
            cols = rnd.sample(["age", "sex", "dx, code", "record_id"], rnd.randint(0, 3)) \
                if c % 3 else []
            if same_labels:
                cols = ["dx, code", "age"]
            records.append({"record_id": f"r{c},{k}", "source": f"/d/r \"{c}\" {k}.hea",
                            "offset": offset, "n_segments": n, "fs": rnd.choice([500.0, 400.5]),
                            "n_samples": rnd.randint(1000, 9000), "format": "wfdb",
                            "quality_flags": rnd.choice(["", "flat:V1", "nan:I;flat:V1"]),
                            "labels": [[col, str(rnd.randint(0, 99))] for col in cols]})
            offset += n
        out.append({"chunk": c, "shard": f"shard-{c:06d}.npy", "n_segments": offset,
                    "n_inputs": len(records) + len(errors), "records": records,
                    "errors": errors,
                    "timings": {"read_s": rnd.random(), "preprocess_s": rnd.random(),
                                "write_s": rnd.random(), "cpu_s": rnd.random()}})
    return out


def _reference_csv(sidecars) -> str:
    label_cols = []
    for s in sorted(sidecars, key=lambda s: s["chunk"]):
        for r in s["records"]:
            for c, _v in r["labels"]:
                if c not in label_cols and c not in MANIFEST_COLUMNS:
                    label_cols.append(c)
    rows = []
    for s in sorted(sidecars, key=lambda s: s["chunk"]):
        for r in s["records"]:
            labels = dict(tuple(p) for p in r["labels"])
            for j in range(r["n_segments"]):
                row = {"record_id": r["record_id"], "source": r["source"], "segment_index": j,
                       "n_segments": r["n_segments"], "shard": s["shard"],
                       "offset": r["offset"] + j, "fs": r["fs"], "n_samples": r["n_samples"],
                       "format": r["format"], "quality_flags": r["quality_flags"]}
                row.update({c: labels.get(c, "") for c in label_cols})
                rows.append(row)
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=MANIFEST_COLUMNS + label_cols, lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    return buf.getvalue()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_streamed_manifest_equals_reference(tmp_path, seed):
    sidecars = _random_sidecars(seed)
    ref = _reference_csv(sidecars)
    errors_ref = "".join(json.dumps(e, sort_keys=True) + "\n"
                         for s in sidecars for e in s["errors"])
    results = {}
    for route in ("memory", "files", "files+labels"):
        d = tmp_path / route
        d.mkdir()
        if route == "memory":
            shuffled = list(sidecars)
            random.Random(seed).shuffle(shuffled)  # any order in, chunk order out
            results[route] = write_outputs(str(d), shuffled, "csv")
        else:
            for s in sidecars:
                write_json_atomic(str(d / sidecar_name(s["chunk"])), s)
            labels = None
            if route == "files+labels":  # what the driver passes: the rendered parts' columns
                labels = []
                for s in sidecars:
                    for c in render_chunk(s)["label_cols"]:
                        if c not in labels and c not in MANIFEST_COLUMNS:
                            labels.append(c)
            results[route] = write_outputs(
                str(d), SidecarFiles(str(d), [s["chunk"] for s in sidecars][::-1], labels),
                "csv")
        assert (d / "manifest.csv").read_text(encoding="utf-8") == ref, route
        assert (d / "errors.jsonl").read_text(encoding="utf-8") == errors_ref, route
        assert not list(d.glob("*.tmp-*"))
    counts = results["memory"]
    assert results["files"] == counts == results["files+labels"]
    n_err = sum(len(s["errors"]) for s in sidecars)
    assert counts["n_records_failed"] == n_err
    assert sum(counts["errors_by_type"].values()) == n_err
    assert counts["n_records_ok"] == sum(len(s["records"]) for s in sidecars)
    assert counts["n_segments"] == ref.count("\n") - 1 - sum(
        r["source"].count("\n") for s in sidecars for r in s["records"])
    assert counts["n_shards"] == len(sidecars)
    assert counts["timings_sum_s"]["read_s"] == pytest.approx(
        sum(s["timings"]["read_s"] for s in sidecars))
    rows, cols = build_manifest(sidecars)
    assert list(csv.DictReader(io.StringIO(ref))) == [
        {c: str(v) for c, v in r.items()} for r in rows]


def test_streamed_parquet_equals_reference(tmp_path):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    sidecars = _random_sidecars(5)
    for s in sidecars:
        write_json_atomic(str(tmp_path / sidecar_name(s["chunk"])), s)
    write_outputs(str(tmp_path), SidecarFiles(str(tmp_path), range(len(sidecars))), "parquet")
    rows, cols = build_manifest(sidecars)
    ref = pa.table({c: [r[c] for r in rows] for c in cols})
    assert pq.read_table(tmp_path / "manifest.parquet").equals(ref)


def test_summary_reports_parent_cpu_and_chunk_spans(tmp_path, rng):
    from ecgcore.io import write
    paths = []
    for i in range(6):
        x = (rng.standard_normal((12, 5000)) * 0.5).astype(np.float32)
        write(Record(x, 500, STANDARD_12), str(tmp_path / f"r{i}"), format="wfdb")
        paths.append(str(tmp_path / f"r{i}.hea"))
    s = run_pipeline(paths, out=str(tmp_path / "ds"), workers=1, chunk_size=2, progress=False)
    t = s["timings"]
    assert t["engine_cpu_s"] >= 0 and t["manifest_cpu_s"] >= 0 and t["manifest_s"] >= 0
    spans = []
    for i in range(3):
        with open(tmp_path / "ds" / sidecar_name(i)) as f:
            tm = json.load(f)["timings"]
        assert tm["start"] <= tm["end"]
        spans.append((tm["start"], tm["end"]))
    # --workers 1 runs the chunks one after another, in order
    assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:]))


@pytest.mark.parametrize("same_labels", [True, False])
@pytest.mark.parametrize("seed", [3, 4])
def test_manifest_stream_out_of_order_with_resumed_chunks(tmp_path, seed, same_labels):
    """Parts arriving in any order, resumed chunks read from disk in their turn: the
    stream writes the reference bytes, or gives up (None) when label columns differ."""
    sidecars = _random_sidecars(seed, n_chunks=9, same_labels=same_labels)
    for s in sidecars:
        write_json_atomic(str(tmp_path / sidecar_name(s["chunk"])), s)
    rnd = random.Random(seed)
    resumed = set(rnd.sample(range(9), 4)) | {8}  # the last chunk too: drained by finish()
    new = [s for s in sidecars if s["chunk"] not in resumed]
    rnd.shuffle(new)
    from ecgcore.pipeline.manifest import ManifestStream
    stream = ManifestStream(str(tmp_path), 9, resumed)
    for s in new:
        stream.add(worker.summarize(s, render=True))
    counts = stream.finish()
    has_records = [s for s in sidecars if s["records"]]
    consistent = len({tuple(render_chunk(s)["label_cols"]) for s in has_records}) <= 1
    if same_labels:
        assert consistent
    if not consistent:
        assert counts is None
        assert not (tmp_path / "manifest.csv").exists()
        assert not list(tmp_path.glob("*.tmp-*"))
        return
    assert (tmp_path / "manifest.csv").read_text(encoding="utf-8") == _reference_csv(sidecars)
    ref_dir = tmp_path / "ref"
    ref_dir.mkdir()
    assert counts == write_outputs(str(ref_dir), sidecars, "csv")
    assert (tmp_path / "errors.jsonl").read_bytes() == (ref_dir / "errors.jsonl").read_bytes()
    assert not list(tmp_path.glob("*.tmp-*"))


def test_pipeline_manifest_with_differing_label_columns(tmp_path, rng):
    """Inputs whose label columns differ between chunks take the rebuild route, equal
    columns the stream; both write the reference manifest."""
    from ecgcore.io import write
    from ecgcore.pipeline import InputItem
    paths = []
    for i in range(6):
        x = (rng.standard_normal((12, 5000)) * 0.5).astype(np.float32)
        write(Record(x, 500, STANDARD_12), str(tmp_path / f"r{i}"), format="wfdb")
        paths.append(str(tmp_path / f"r{i}.hea"))
    cases = {"same": [(("age", str(50 + i)), ("sex", "F")) for i in range(6)],
             "differ": [(("age", "50"),), (("age", "51"),), (("sex", "F"), ("age", "52")),
                        (), (), (("dx", "LVH"),)]}
    for case, labels in cases.items():
        items = [InputItem(p, f"id{i}", labels[i]) for i, p in enumerate(paths)]
        out = tmp_path / f"ds_{case}"
        run_pipeline(items, out=str(out), workers=1, chunk_size=2, progress=False)
        sidecars = [json.loads(p.read_text()) for p in sorted(out.glob("shard-*.json"))]
        assert len(sidecars) == 3
        cols = {tuple(render_chunk(s)["label_cols"]) for s in sidecars}
        assert (len(cols) == 1) == (case == "same")
        text = (out / "manifest.csv").read_text(encoding="utf-8")
        assert text == _reference_csv(sidecars)
        assert text.splitlines()[0].endswith(",age,sex" if case == "same" else ",age,sex,dx")


def test_worker_renders_its_parts_from_what_it_writes(tmp_path, rng):
    """The parts a chunk returns are the rendering of the sidecar it wrote; the file
    itself holds no parts."""
    from ecgcore import presets
    from ecgcore.io import write
    from ecgcore.pipeline.manifest import render_chunk
    items = []
    for i in range(4):
        x = (rng.standard_normal((12, 5000)) * 0.5).astype(np.float32)
        if i == 2:
            x[3] = 0.0  # a flat lead: a quality flag in the manifest
        write(Record(x, 500, STANDARD_12), str(tmp_path / f"r{i}"), format="wfdb")
        items.append((str(tmp_path / f"r{i}.hea"), f"id{i}", (("age", str(40 + i)),)))
    items.append((str(tmp_path / "missing.hea"), "gone", (("age", "1"),)))
    out = tmp_path / "ds"
    out.mkdir()
    task = {"chunk": 0, "items": items, "preset": presets.get_preset("ecgfm"),
            "out_dir": str(out), "dtype": "float32", "shape": (12, 2500), "render": True}
    got = worker.process_chunk(task)
    on_disk = json.loads((out / sidecar_name(0)).read_text())
    assert "parts" not in on_disk and got["parts"] == render_chunk(on_disk)
    assert "flat:aVR" in got["parts"]["csv"] and len(on_disk["errors"]) == 1
    assert json.loads(got["parts"]["errors"])["record_id"] == "gone"

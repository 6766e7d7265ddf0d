"""The manifest table, errors.jsonl and summary counts, rebuilt from the shard sidecars."""

from __future__ import annotations

import csv
import io
import json
import os

from .shards import write_text_atomic

__all__ = ["MANIFEST_COLUMNS", "build_manifest", "write_outputs"]

MANIFEST_COLUMNS = ["record_id", "source", "segment_index", "n_segments", "shard", "offset",
                    "fs", "n_samples", "format", "quality_flags"]


def _rows(sidecars):
    label_cols: list[str] = []
    for s in sidecars:
        for r in s["records"]:
            for c, _v in r.get("labels", ()):
                if c not in label_cols and c not in MANIFEST_COLUMNS:
                    label_cols.append(c)
    rows = []
    for s in sidecars:
        for r in s["records"]:
            labels = dict(tuple(p) for p in r.get("labels", ()))
            for j in range(r["n_segments"]):
                row = {"record_id": r["record_id"], "source": r["source"], "segment_index": j,
                       "n_segments": r["n_segments"], "shard": s["shard"],
                       "offset": r["offset"] + j, "fs": r["fs"], "n_samples": r["n_samples"],
                       "format": r["format"], "quality_flags": r["quality_flags"]}
                for c in label_cols:
                    row[c] = labels.get(c, "")
                rows.append(row)
    return rows, MANIFEST_COLUMNS + label_cols


def build_manifest(sidecars) -> tuple[list[dict], list[str]]:
    """One row per segment, in shard order then offset order; columns."""
    return _rows(sorted(sidecars, key=lambda s: s["chunk"]))


def write_outputs(out_dir: str, sidecars, fmt: str = "csv") -> dict:
    """Write manifest.csv (or .parquet), errors.jsonl; return the counts."""
    sidecars = sorted(sidecars, key=lambda s: s["chunk"])
    rows, cols = build_manifest(sidecars)
    if fmt == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq
        table = pa.table({c: [r[c] for r in rows] for c in cols})
        tmp = os.path.join(out_dir, f"manifest.parquet.tmp-{os.getpid()}")
        pq.write_table(table, tmp)
        os.replace(tmp, os.path.join(out_dir, "manifest.parquet"))
    else:
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=cols, lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
        write_text_atomic(os.path.join(out_dir, "manifest.csv"), buf.getvalue())
    errors = [e for s in sidecars for e in s["errors"]]
    write_text_atomic(os.path.join(out_dir, "errors.jsonl"),
                      "".join(json.dumps(e, sort_keys=True) + "\n" for e in errors))
    by_type: dict[str, int] = {}
    for e in errors:
        by_type[e["error"]] = by_type.get(e["error"], 0) + 1
    return {"n_inputs": sum(s["n_inputs"] for s in sidecars),
            "n_records_ok": sum(len(s["records"]) for s in sidecars),
            "n_records_failed": len(errors), "errors_by_type": by_type,
            "n_segments": len(rows), "n_shards": len(sidecars),
            "timings_sum_s": {k: sum(s["timings"][k] for s in sidecars)
                              for k in ("read_s", "preprocess_s", "write_s")}}

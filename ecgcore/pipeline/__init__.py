"""The batch pipeline: many ECG files to a sharded, memory-mappable dataset.

Layout of a dataset directory (everything readable without ecgcore)::

    plan.json              what this dataset is: preset, chunk size, dtype, input hash
    shard-000000.npy       float32 (or float16) array (n_segments, leads, samples)
    shard-000000.json      sidecar: one entry per record of the chunk (and its errors)
    manifest.csv           one row per segment: record_id, source, segment_index, shard, offset, ...
    errors.jsonl           one line per failed record: path, error type, message
    summary.json           counts, timings, the full preset, versions, start/finish times

Chunk ``i`` is ``inputs[i*K:(i+1)*K]`` of the sorted inputs and becomes shard
``i``. A shard and then its sidecar are written atomically (temporary file +
``os.replace``); a sidecar exists only for a finished shard, so ``--resume``
skips exactly the finished chunks, and the manifest, errors and summary are
rebuilt from the sidecars. A killed and resumed run therefore writes the same
bytes as an uninterrupted one.

Modules: :mod:`.discover` (inputs and manifests), :mod:`.worker` (one chunk:
read, preprocess, write), :mod:`.shards` (atomic files, sidecars),
:mod:`.manifest` (merging sidecars), :mod:`.engine_local` (process pool),
:mod:`.engine_dask` (dask.distributed), :mod:`.run` (the driver).
"""

from __future__ import annotations

from .discover import InputItem, items_from_paths, read_manifest, is_manifest_csv
from .run import run_pipeline

__all__ = ["InputItem", "items_from_paths", "read_manifest", "is_manifest_csv", "run_pipeline"]

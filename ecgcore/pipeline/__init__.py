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

The driver holds no sidecar: each worker returns its chunk's counts and its
manifest rows already rendered as CSV text, which the driver appends in chunk
order while the run goes on (resumed chunks are rendered from their sidecar
files in their turn; label columns that differ between chunks, or a parquet
manifest, fall back to one streamed pass over the sidecar files at the end).
So the driver's memory and CPU stay flat with the dataset size and the
workers never wait on it. Sidecar ``timings`` hold the chunk's ``cpu_s``
and its wall-clock ``start``/``end``; ``summary.json`` adds the driver's own
CPU time while the engine ran (``engine_cpu_s``) and while finishing the
manifest (``manifest_cpu_s``).

Modules: :mod:`.discover` (inputs and manifests), :mod:`.worker` (one chunk:
read, preprocess, write), :mod:`.shards` (atomic files, sidecars),
:mod:`.manifest` (merging sidecars), :mod:`.engine_local` (process pool),
:mod:`.engine_dask` (dask.distributed), :mod:`.run` (the driver).
"""

from __future__ import annotations

from .discover import InputItem, items_from_paths, read_manifest, is_manifest_csv
from .run import run_pipeline

__all__ = ["InputItem", "items_from_paths", "read_manifest", "is_manifest_csv", "run_pipeline"]

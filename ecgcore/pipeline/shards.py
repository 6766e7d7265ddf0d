"""Shard and sidecar files, written atomically (temporary name + ``os.replace``)."""

from __future__ import annotations

import glob
import json
import os

import numpy as np

from .._atomic import TMP_TAG, atomic_open, temporary_name

__all__ = ["shard_name", "sidecar_name", "write_npy_atomic", "write_npy_parts_atomic",
           "write_json_atomic", "ShardWriter",
           "read_sidecar", "completed_chunks", "remove_temporaries"]

_TMP_TAG = TMP_TAG  # every temporary name holds it (ecgcore._atomic)


def shard_name(i: int) -> str:
    return f"shard-{i:06d}.npy"


def sidecar_name(i: int) -> str:
    return f"shard-{i:06d}.json"


def _tmp(path: str) -> str:
    return temporary_name(path)


def write_npy_atomic(path: str, array: np.ndarray) -> None:
    """Write a ``.npy`` file that appears whole or not at all (a killed writer
    leaves only a temporary file, which :func:`remove_temporaries` clears)."""
    with atomic_open(path, "wb") as f:
        np.save(f, np.ascontiguousarray(array), allow_pickle=False)


def write_npy_parts_atomic(path: str, parts, shape: tuple, dtype) -> None:
    """Write a ``.npy`` file of ``shape`` from C-ordered ``parts`` that follow each other
    along axis 0, without concatenating them in memory; atomic like :func:`write_npy_atomic`.

    The file is byte-identical to ``np.save`` of the concatenation.
    """
    dtype = np.dtype(dtype)
    n = 0
    with atomic_open(path, "wb") as f:
        np.lib.format.write_array_header_1_0(
            f, {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False,
                "shape": tuple(int(s) for s in shape)})
        for part in parts:
            part = np.ascontiguousarray(part, dtype=dtype)
            if part.shape[1:] != tuple(shape[1:]):
                raise ValueError(f"part of shape {part.shape} does not fit {shape}")
            f.write(memoryview(part).cast("B"))
            n += part.shape[0]
        if n != shape[0]:
            raise ValueError(f"parts hold {n} rows, header says {shape[0]}")


def _npy_header(shape: tuple, dtype: np.dtype) -> bytes:
    """The exact header ``np.save`` writes (format 1.0) for a C-ordered array."""
    import io
    f = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        f, {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False,
            "shape": tuple(int(s) for s in shape)})
    return f.getvalue()


class ShardWriter:
    """Append rows to a ``.npy`` file as they are computed; atomic like :func:`write_npy_atomic`.

    The rows go to a temporary file straight after a reserved header, so a
    chunk's outputs never gather in memory (nor in a fresh shard-sized array,
    whose first touch costs a page fault per 4 kB); :meth:`close` writes the
    header for the final row count and moves the file into place. The file
    is byte-identical to ``np.save`` of the concatenated rows. The header
    length depends on the row count only through padding to 64 bytes, so it
    practically never changes; if it does, :meth:`close` rewrites the file.

    Use as a context manager: leaving the block by an exception removes the
    temporary file.
    """

    def __init__(self, path: str, row_shape: tuple, dtype):
        self.path = path
        self.row_shape = tuple(int(s) for s in row_shape)
        self.dtype = np.dtype(dtype)
        self.rows = 0
        self._tmp = _tmp(path)
        self._reserved = len(_npy_header((0,) + self.row_shape, self.dtype))
        self._f = open(self._tmp, "wb")
        self._f.seek(self._reserved)

    def append(self, part: np.ndarray) -> None:
        """Write rows (shape ``(n, *row_shape)``), cast to the shard dtype."""
        if part.shape[1:] != self.row_shape:
            raise ValueError(f"part of shape {part.shape} does not fit rows of {self.row_shape}")
        if part.size:  # (a view of zero rows cannot be cast to bytes)
            part = np.ascontiguousarray(part, dtype=self.dtype)
            self._f.write(memoryview(part).cast("B"))
        self.rows += part.shape[0]

    def close(self) -> None:
        """Write the header and move the shard into place."""
        header = _npy_header((self.rows,) + self.row_shape, self.dtype)
        f = self._f
        if len(header) == self._reserved:
            f.seek(0)
            f.write(header)
            f.close()
        else:  # the row count's digits crossed a 64-byte padding step: shift the data
            f.close()
            moved = self._tmp + "-h"
            with open(self._tmp, "rb") as src, open(moved, "wb") as dst:
                src.seek(self._reserved)
                dst.write(header)
                while True:
                    block = src.read(1 << 24)
                    if not block:
                        break
                    dst.write(block)
            os.replace(moved, self._tmp)
        os.replace(self._tmp, self.path)

    def abort(self) -> None:
        """Close and remove the temporary file."""
        try:
            self._f.close()
        finally:
            try:
                os.remove(self._tmp)
            except OSError:
                pass

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.close()
        else:
            self.abort()
        return False


def write_json_atomic(path: str, obj) -> None:
    # json.dumps, not json.dump: only the one-shot encoder runs in C (dump
    # iterates in Python, ~0.3 ms per record of a sidecar); same bytes
    text = json.dumps(obj, indent=None, sort_keys=True, separators=(",", ":"), default=str)
    with atomic_open(path, "w", encoding="utf-8") as f:
        f.write(text)
        f.write("\n")


def write_text_atomic(path: str, text: str) -> None:
    with atomic_open(path, "w", encoding="utf-8", newline="") as f:
        f.write(text)


def read_sidecar(out_dir: str, i: int) -> dict | None:
    """The sidecar of chunk ``i`` if both it and its shard are complete, else None."""
    side = os.path.join(out_dir, sidecar_name(i))
    if not (os.path.isfile(side) and os.path.isfile(os.path.join(out_dir, shard_name(i)))):
        return None
    try:
        with open(side, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError):
        return None
    return data if data.get("chunk") == i else None


def completed_chunks(out_dir: str, n_chunks: int) -> dict[int, dict]:
    """{chunk index: sidecar} of the chunks a previous run finished."""
    done = {}
    for i in range(n_chunks):
        s = read_sidecar(out_dir, i)
        if s is not None:
            done[i] = s
    return done


def remove_temporaries(out_dir: str) -> int:
    """Delete the temporary files a killed run left behind; return how many."""
    n = 0
    for p in glob.glob(os.path.join(glob.escape(out_dir), f"*{_TMP_TAG}*")):
        try:
            os.remove(p)
            n += 1
        except OSError:
            pass
    return n

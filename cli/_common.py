"""Helpers shared by subcommands: input expansion and error reporting."""

from __future__ import annotations

import glob
import json
import os
import sys

from ecgcore._atomic import atomic_open

__all__ = ["expand_inputs", "output_names", "report_failure", "write_json_atomic", "os_error_line"]

# Files that are parts of another record, never records themselves.
_SKIP_SUFFIXES = {".dat", ".atr", ".xyz", ".mat", ".d0", ".d1", ".d2", ".d3", ".d4", ".d5",
                  ".d6", ".d7", ".d8", ".d9", ".md", ".txt", ".json", ".jsonl", ".tsv",
                  ".q1c", ".q2c", ".pu", ".pu0", ".pu1", ".man", ".qt1", ".qt2", ".i", ".ii",
                  ".iii", ".avr", ".avl", ".avf", ".v1", ".v2", ".v3", ".v4", ".v5", ".v6"}


# Files found in a folder with one of these suffixes are taken as records without
# opening them (the common case at biobank scale costs no extra read); any other
# file found in a folder is opened and kept only when its first bytes are those
# of an ECG format (RECORDS, checksums, metadata CSVs and viewer settings next to
# the records are skipped, not reported as failed records).
_RECORD_SUFFIXES = {".hea", ".xml", ".scp", ".dcm", ".edf", ".bdf", ".h5", ".hdf5", ".npy", ".npz",
                    ".pdf", ".png", ".jpg", ".jpeg", ".tif", ".tiff", ".webp", ".bmp"}


def expand_inputs(items, containers: bool = True, quiet: bool = False, kinds=None) -> list[str]:
    """Expand files, directories (recursively) and glob patterns into record paths.

    Inside directories, WFDB records are taken by their ``.hea`` files and
    their signal/annotation files are skipped; other files that are not in a
    known ECG format (by their first bytes: ``RECORDS``, checksum lists,
    metadata CSVs) are skipped too, with one line on stderr that counts them
    (unless ``quiet``). Files named explicitly are always kept, so reading them
    reports what is wrong. ``kinds`` (format names of
    :func:`ecgcore.io.sniff.sniff`, e.g. ``{"pdf", "image"}``) narrows what is
    taken from folders. With ``containers=True``, a file holding many
    records (a CODE-15% HDF5 part) becomes one ``path::exam_id`` address per
    record.
    """
    skipped: list[str] = []
    out = _expand_files(items, skipped, kinds)
    if skipped and not quiet:
        what = "ECG records" if kinds is None else " or ".join(sorted(kinds)) + " files"
        print(f"ecgcore: skipped {len(skipped)} file(s) in the input folders that are not {what} "
              f"(e.g. {skipped[0]}); name a file to read it anyway", file=sys.stderr)
    if not containers:
        return out
    from ecgcore.errors import ReadError
    from ecgcore.io import list_records
    expanded: list[str] = []
    for p in out:
        try:
            expanded.extend(list_records(p))
        except ReadError:
            expanded.append(p)  # reading it later reports the problem with the file named
    return expanded


def _is_record_file(path: str, kinds=None) -> bool:
    """Whether a file found in a folder is an ECG record (by suffix, else by its bytes),
    of one of ``kinds`` when given (always by its bytes)."""
    if kinds is None and os.path.splitext(path)[1].lower() in _RECORD_SUFFIXES:
        return True
    from ecgcore.errors import ReadError
    from ecgcore.io.sniff import sniff
    try:
        kind = sniff(path)
    except ReadError:
        return False
    return kinds is None or kind in kinds


def _expand_files(items, skipped: list, kinds=None) -> list[str]:
    out: list[str] = []
    for item in items:
        if os.path.isdir(item):
            for root, dirs, files in os.walk(item):
                dirs.sort()
                for f in sorted(files):
                    if os.path.splitext(f)[1].lower() in _SKIP_SUFFIXES or f.startswith("."):
                        continue
                    p = os.path.join(root, f)
                    if _is_record_file(p, kinds):
                        out.append(p)
                    else:
                        skipped.append(p)
        elif any(ch in item for ch in "*?[") and not os.path.exists(item):
            out.extend(sorted(glob.glob(item, recursive=True)))
        else:
            out.append(item)
    return out


def output_names(paths) -> list[str]:
    """One output name per input record, relative to the output folder (``/``-separated,
    no suffix): the record's path relative to the inputs' common folder, without its
    format suffix, so records of one name in different folders (or several records of
    one container file, ``part.hdf5::123`` -> ``part/123``) never overwrite each other.
    Where two inputs differ only by their suffix (``p1.pdf``, ``p1.png``), they keep it.
    """
    from collections import Counter

    from ecgcore.pipeline.discover import items_from_paths
    ids = [it.record_id for it in items_from_paths(paths)]
    stems = [_strip_suffix(i) for i in ids]
    n_stem = Counter(stems)
    return [st if n_stem[st] == 1 else i for i, st in zip(ids, stems)]


def _strip_suffix(record_id: str) -> str:
    head, _, last = record_id.rpartition("/")
    stem = os.path.splitext(last)[0] or last
    return f"{head}/{stem}" if head else stem


def report_failure(path: str, error: Exception) -> None:
    print(f"ecgcore: {error}" if str(path) in str(error) else f"ecgcore: {path}: {error}",
          file=sys.stderr)


def write_json_atomic(obj, path: str) -> None:
    with atomic_open(path, "w") as f:
        json.dump(obj, f, indent=2, default=str)


def os_error_line(exc: OSError, out) -> str:
    """One line for an OSError: 'cannot write X' when X is the output (or in it), else 'X: reason'."""
    where = os.fspath(exc.filename) if exc.filename is not None else None
    reason = exc.strerror or str(exc)
    if out is not None and (where is None or os.path.abspath(where).startswith(os.path.abspath(out))):
        return f"cannot write {where or out}: {reason}"
    return f"{where}: {reason}"

"""Pipeline inputs: record paths with ids and optional labels, in a deterministic order."""

from __future__ import annotations

import csv
import os
from typing import Iterable, NamedTuple

from ..errors import ConfigError

__all__ = ["InputItem", "items_from_paths", "read_manifest", "is_manifest_csv", "sort_items",
           "record_id_for"]

_STRIP_SUFFIXES = (".hea", ".xml", ".npy", ".npz", ".csv", ".edf", ".bdf", ".dcm", ".scp",
                   ".hdf5", ".h5", ".mat", ".json")


class InputItem(NamedTuple):
    """One record to process: where it is, what to call it, and its labels (strings)."""

    path: str
    record_id: str
    labels: tuple = ()  # ((column, value), ...), hashable and picklable


def record_id_for(path: str, root: str | None, strip: bool = True) -> str:
    """A record id from a path: relative to ``root`` and without its format suffix
    (with ``strip=False``, with it)."""
    key = ""
    if "::" in path and not os.path.exists(path):   # a record inside a container file
        path, key = path.rsplit("::", 1)
    rel = os.path.relpath(path, root) if root else os.path.basename(path)
    for suf in _STRIP_SUFFIXES if strip else ():
        if rel.lower().endswith(suf):
            rel = rel[: -len(suf)]
            break
    rel = rel.replace(os.sep, "/")
    return f"{rel}/{key}" if key else rel


def items_from_paths(paths: Iterable[str]) -> list[InputItem]:
    """Items for plain record paths; ids are paths relative to their common folder,
    without the format suffix unless two files differ only by it."""
    paths = [os.path.abspath(p) for p in paths]
    if not paths:
        return []
    root = os.path.commonpath([os.path.dirname(p.rsplit("::", 1)[0] if "::" in p else p)
                               for p in paths])
    ids = [record_id_for(p, root) for p in paths]
    # one name in two formats (a WFDB record beside its .npz export): those ids keep
    # their suffix, so each file still has its own id instead of stopping the run
    owners: dict[str, set] = {}
    for p, i in zip(paths, ids):
        owners.setdefault(i, set()).add(p)
    return [InputItem(p, i if len(owners[i]) == 1 else record_id_for(p, root, strip=False))
            for p, i in zip(paths, ids)]


def is_manifest_csv(path: str) -> bool:
    """True for a CSV whose header has a ``path`` column (an ECG CSV has lead names)."""
    if not path.lower().endswith(".csv") or not os.path.isfile(path):
        return False
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            header = next(csv.reader(f), [])
    except (OSError, UnicodeDecodeError):
        return False
    return "path" in [h.strip() for h in header]


def read_manifest(path: str) -> list[InputItem]:
    """Items from a manifest CSV: ``path`` (relative to the CSV's folder unless
    absolute), optional ``record_id`` and any other columns as labels."""
    base = os.path.dirname(os.path.abspath(path))
    items = []
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            cols = [c.strip() for c in (reader.fieldnames or [])]
            if "path" not in cols:
                raise ConfigError("manifest CSV has no 'path' column", path)
            label_cols = [c for c in cols if c not in ("path", "record_id")]
            for line, row in enumerate(reader, start=2):
                row = {(k or "").strip(): (v or "").strip() for k, v in row.items() if k}
                p = row.get("path", "")
                if not p:
                    raise ConfigError(f"line {line}: empty 'path'", path)
                full = p if os.path.isabs(p) else os.path.join(base, p)
                rid = row.get("record_id") or record_id_for(full, base)
                items.append(InputItem(os.path.normpath(full), rid,
                                       tuple((c, row.get(c, "")) for c in label_cols)))
    except OSError as exc:
        raise ConfigError(f"cannot read manifest: {exc.strerror or exc}", path) from None
    except (UnicodeDecodeError, csv.Error) as exc:
        raise ConfigError(f"manifest is not a readable CSV: {exc}", path) from None
    return items


def sort_items(items: Iterable[InputItem]) -> list[InputItem]:
    """Sorted by path then id, exact duplicates dropped; duplicate ids are an error."""
    out = sorted(set(items), key=lambda it: (it.path, it.record_id, it.labels))
    seen = {}
    for it in out:
        if it.record_id in seen and seen[it.record_id] != it.path:
            raise ConfigError(f"record id {it.record_id!r} is used by both {seen[it.record_id]} "
                              f"and {it.path}; give unique ids in a manifest CSV")
        seen[it.record_id] = it.path
    return out

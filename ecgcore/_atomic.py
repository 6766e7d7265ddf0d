"""Files that appear whole or not at all.

Every writer in ecgcore (dataset shards and sidecars, delineation and measurement
tables, reports, figures, WFDB/annotation/array files, plots, training checkpoints)
writes under a temporary name in the target's own folder and then moves the file into
place with :func:`os.replace`, which is atomic within one filesystem. A reader, or a
job resumed after a kill, therefore never sees half a file under the final name; a
write that raises removes its temporary file; a write that was killed leaves a file
whose name contains :data:`TMP_TAG`, which the resuming job deletes
(``ecgcore.pipeline.shards.remove_temporaries``).

Only the standard library is imported here: every layer may use it.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time

__all__ = ["TMP_TAG", "temporary_name", "atomic_path", "atomic_open"]

#: Part of every temporary name (leftovers of killed writers are found by it).
TMP_TAG = ".tmp-"


def temporary_name(path, suffix: str = "") -> str:
    """A temporary name beside ``path``: ``path + TMP_TAG + pid-thread-clock + suffix``.

    Process id, thread id and a monotonic clock make the name unique: a resumed run
    beside a dying one, or two threads of the web service drawing the same page, never
    write to the same temporary file. It stays in the target's folder (``os.replace``
    is atomic only within a filesystem) and is not hidden, so that a glob for
    ``*.tmp-*`` finds the leftovers of a killed writer. ``suffix`` keeps an extension
    for writers that choose the format from the name.
    """
    return f"{os.fspath(path)}{TMP_TAG}{os.getpid()}-{threading.get_ident()}-{time.monotonic_ns()}{suffix}"


@contextlib.contextmanager
def atomic_path(path, suffix: str = ""):
    """Yield a temporary name to write ``path`` under (see :func:`temporary_name`).

    When the block ends normally, the temporary file is moved to ``path``; when it
    raises (or is interrupted), the temporary file is removed and the exception
    propagates. Nest two of these to publish a pair of files in a fixed order: the
    inner block's file is moved first.
    """
    tmp = temporary_name(path, suffix)
    try:
        yield tmp
        os.replace(tmp, os.fspath(path))
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise


@contextlib.contextmanager
def atomic_open(path, mode: str = "wb", fsync: bool = False, **kwargs):
    """Open a temporary file for writing, yield it, then move it to ``path``.

    Parameters
    ----------
    path : str or os.PathLike
        The final name.
    mode : str
        A write mode of :func:`open` (``"wb"``, ``"w"``).
    fsync : bool
        Flush the data to the device before the move, so that after a power loss the
        final name holds either the old or the new content, never an empty file.
        Costs a disk round trip; used for files that are the only copy (exported
        arrays), not for outputs a resumed job can rebuild.
    **kwargs
        Passed to :func:`open` (``encoding``, ``newline``).
    """
    with atomic_path(path) as tmp:
        with open(tmp, mode, **kwargs) as f:
            yield f
            if fsync:
                f.flush()
                os.fsync(f.fileno())

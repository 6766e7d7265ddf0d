"""Analysis functions the service tests hand to its worker processes.

They live in a plain module on the tests' ``pythonpath`` rather than in a test
file: a spawned worker unpickles the function by module name, and test files
imported by pytest (``--import-mode=importlib``) are not importable by name in
a child started from the ``pytest`` entry script.
"""

import os
import time

HANG, CRASH = b"HANG-FOREVER", b"CRASH-NOW"


def hang_or_analyze(path, workdir, **kwargs):
    """Uploads starting with HANG never return, CRASH kills the process, the rest are analysed."""
    with open(path, "rb") as f:
        head = f.read(16)
    if head.startswith(HANG):
        open(os.path.join(workdir, "hanging"), "w").close()   # proof that the analysis did start
        while True:
            time.sleep(1)
    if head.startswith(CRASH):
        os._exit(70)                                           # as a segfault in a reader would
    from ecgcore.cli.service_app import analyze_path
    return analyze_path(path, workdir, **kwargs)

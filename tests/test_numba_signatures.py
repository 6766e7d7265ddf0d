"""Each numba kernel of detection and delineation compiles one signature.

A kernel called with a Python constant, a float32 array or another layout compiles
again, with everything it calls: that once doubled the cold first call of
``ecgcore.delineate`` (about a minute on a fresh install). The typical entry points
run in a fresh interpreter (the on-disk cache makes it quick) and every dispatcher
must then hold one signature (the sort helpers two: float and integer keys).
"""

import json
import subprocess
import sys

SCRIPT = r"""
import json, numpy as np, ecgcore
from ecgcore.delineation import _qrs_kernels as q, _wave_kernels as w, _plead_kernels as p
from numba.core.registry import CPUDispatcher
rec = ecgcore.simulate(n=1, fs=500, duration=10, seed=1, rhythm="mixed")[0]
x = np.asarray(rec.signal)
ecgcore.detect_qrs(x[1], rec.fs)
ecgcore.detect_qrs(x[1].astype(np.float32), rec.fs)
ecgcore.detect_qrs(x, rec.fs)
ecgcore.delineate(rec)
ecgcore.delineate(x.astype(np.float32), rec.fs)
ecgcore.delineate(x.astype(np.float64), rec.fs)
ecgcore.delineate(np.asfortranarray(x), rec.fs)
ecgcore.delineate(np.round(x * 1000).astype(np.int16), rec.fs)
ecgcore.delineate(ecgcore.simulate(n=1, fs=250, duration=130, seed=2)[0])   # chunked path
ecgcore.measure(rec)
ecgcore.median_beats(rec)
out = {}
for mod in (q, w, p):
    for name in dir(mod):
        f = getattr(mod, name)
        if isinstance(f, CPUDispatcher) and f.signatures:
            out[f"{mod.__name__.rsplit('.', 1)[1]}.{name}"] = [str(s) for s in f.signatures]
print(json.dumps(out))
"""

# float and integer keys; the raw signal's float32 or float64 samples
TWO_OK = {"_qrs_kernels._isort", "_plead_kernels._median",
          "_wave_kernels.drop_marks_in_gaps", "_wave_kernels.live_beats"}


def test_every_kernel_compiles_one_signature():
    res = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    sigs = json.loads(res.stdout.strip().splitlines()[-1])
    assert len(sigs) > 20, sorted(sigs)          # the entry points did reach the kernels
    extra = {k: v for k, v in sigs.items() if len(v) > (2 if k in TWO_OK else 1)}
    assert not extra, json.dumps(extra, indent=1)

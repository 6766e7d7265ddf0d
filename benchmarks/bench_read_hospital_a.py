"""Side-by-side read speed: HL7 aECG, Philips XML and DICOM waveform, one run.

Peers (each asked for the same thing: every rhythm lead in physical units):

* HL7 aECG: ecgdatakit 2.x ``FileParser.parse`` (+ per-lead arrays); if it
  is not installed, a minimal xmltodict decode (digits split and scaled).
* Philips: sierraecg ``read_file`` (int16 counts x resolution), and
  ecgdatakit when installed.
* DICOM: pydicom ``dcmread`` + ``waveform_array`` for every multiplex group
  (pydicom applies sensitivity, correction and baseline; we scale to mV).

Usage::

    python benchmarks/bench_read_hospital_a.py [--repeat 30] [--shared ../shared]

Prints per-file median CPU milliseconds, records/s per core and the ratio
peer / ecgcore (> 1 means ecgcore is faster). ``ecgcore`` is ``ecgcore.read``
with default options (HL7: annotations decoded lazily, on first use; DICOM:
annotations decoded). Extra rows show HL7 with annotations decoded eagerly
or lazily-then-used, and DICOM without annotations.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import numpy as np


def _time(fn, repeat):
    """Median CPU seconds of this process per call (``time.process_time``).

    CPU time, not wall time: the benchmark machine is shared, and every reader
    here is single-threaded, so CPU time is the per-core cost and is far less
    sensitive to other load than wall time.
    """
    fn()                                   # warm-up (imports, caches, page cache)
    out = []
    for _ in range(repeat):
        t0 = time.process_time()
        fn()
        out.append(time.process_time() - t0)
    return statistics.median(out)


def ecgcore_read(path):
    from ecgcore.io import read
    rec = read(path)
    return rec.signal


def edk_read(path):
    from ecgdatakit import FileParser
    rec = FileParser().parse(str(path))
    return [np.asarray(ld.samples, float) for ld in rec.leads]


def xmltodict_hl7(path):
    """Minimal aECG decode with xmltodict: digits x scale of every rhythm lead."""
    import xmltodict
    doc = xmltodict.parse(Path(path).read_bytes())
    series = doc["AnnotatedECG"]["component"]
    series = series if isinstance(series, list) else [series]
    out = []
    for comp in series:
        sets = comp["series"]["component"]
        sets = sets if isinstance(sets, list) else [sets]
        for s in sets:
            for c in s["sequenceSet"]["component"]:
                v = c["sequence"]["value"]
                if "digits" in v:
                    out.append(np.array(v["digits"].split(), float) * float(v["scale"]["@value"]) * 1e-3)
    return out


def sierra_read(path):
    import sierraecg
    f = sierraecg.read_file(str(path))
    return [np.asarray(ld.samples, float) * 0.005 for ld in f.leads]


def pydicom_read(path):
    import pydicom
    ds = pydicom.dcmread(str(path))
    return [ds.waveform_array(i).T * 1e-3 for i in range(len(ds.WaveformSequence))]


def _have(mod):
    try:
        __import__(mod)
        return True
    except ImportError:
        return False


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=30)
    ap.add_argument("--shared", default=os.environ.get(
        "ECGCORE_SHARED", str(Path(__file__).resolve().parents[1].parent / "shared")))
    args = ap.parse_args(argv)
    data = Path(args.shared) / "data"
    cases = [
        ("hl7_aecg", data / "hl7_aecg" / "hl7_2003_ballot_Example_aECG.xml",
         [("ecgdatakit", edk_read)] if _have("ecgdatakit") else [("xmltodict", xmltodict_hl7)]),
        ("hl7_aecg", data / "hl7_aecg" / "liryc_hl7aecg_example.xml",
         [("ecgdatakit", edk_read)] if _have("ecgdatakit") else [("xmltodict", xmltodict_hl7)]),
        ("philips", data / "philips" / "129DYPRG.XML",
         ([("sierraecg", sierra_read)] if _have("sierraecg") else [])
         + ([("ecgdatakit", edk_read)] if _have("ecgdatakit") else [])),
        ("philips", data / "philips" / "3191723_ZZDEMOPTONLY_1-04_orig.xml",
         ([("sierraecg", sierra_read)] if _have("sierraecg") else [])
         + ([("ecgdatakit", edk_read)] if _have("ecgdatakit") else [])),
        ("dicom", data / "dicom" / "pydicom_waveform_ecg.dcm", [("pydicom+scaling", pydicom_read)]),
    ]
    print(f"{'format':9s} {'file':36s} {'reader':16s} {'ms':>8s} {'rec/s':>8s} {'peer/ecgcore':>12s}")
    for fmt, path, peers in cases:
        if not path.exists():
            print(f"{fmt:9s} {path.name:36s} (absent, skipped)")
            continue
        repeat = args.repeat
        t_ours = _time(lambda: ecgcore_read(path), repeat)
        print(f"{fmt:9s} {path.name[:36]:36s} {'ecgcore':16s} {t_ours * 1e3:8.2f} {1 / t_ours:8.1f} {'':>12s}")
        if fmt == "dicom":
            t_fast = _time(lambda: __import__("ecgcore.io.dicom", fromlist=["read"]).read(
                str(path), annotations=False), repeat)
            print(f"{'':9s} {'':36s} {'ecgcore (no ann.)':16s} {t_fast * 1e3:8.2f} {1 / t_fast:8.1f}")
        if fmt == "hl7_aecg":
            # the default decodes annotations lazily; these two lines show the
            # cost when they are decoded at once, or decoded and then used
            hl7 = __import__("ecgcore.io.hl7", fromlist=["read"])
            t_eager = _time(lambda: hl7.read(str(path), annotations=True), repeat)
            t_used = _time(lambda: len(hl7.read(str(path)).meta.get("statements", ())), repeat)
            print(f"{'':9s} {'':36s} {'ecgcore (eager)':16s} {t_eager * 1e3:8.2f} {1 / t_eager:8.1f}")
            print(f"{'':9s} {'':36s} {'ecgcore (lazy+use)':16s} {t_used * 1e3:8.2f} {1 / t_used:8.1f}")
        for name, fn in peers:
            # the slow pure-Python peers get fewer repeats; the median is still stable
            t_peer = _time(lambda: fn(path), max(3, repeat // 5 if name == "sierraecg" else repeat))
            print(f"{'':9s} {'':36s} {name:16s} {t_peer * 1e3:8.2f} {1 / t_peer:8.1f} "
                  f"{t_peer / t_ours:11.1f}x")


if __name__ == "__main__":
    main()

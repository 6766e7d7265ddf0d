"""Side-by-side read speed of GE MUSE and GE CardioSoft XML: ecgcore vs xmltodict parsing.

    python benchmarks/bench_read_xml.py [--repeat 200] [--shared PATH]

There is no maintained dedicated reader for either format (facts/formats.md
§3, §4, §12); the common approach in public code is ``xmltodict.parse`` and a
walk over the resulting dicts. The peer here does exactly that, with the
decoding itself vectorised as a careful user would write it (``np.frombuffer``
on the base64 bytes for MUSE, ``np.array(text.split(","), int)`` for
CardioSoft), and produces the same output as ecgcore: 12 leads in mV (MUSE
limb leads derived), rhythm and median beats. Both read from the file each
time (page cache warm). Reported: files/s on one core by process CPU time
(robust on a shared machine) and by wall clock, best of 5 rounds, and the
ecgcore/peer ratios.
"""

from __future__ import annotations

import argparse
import base64
import os
import sys
import time
from pathlib import Path

import numpy as np

SHARED = Path(os.environ.get("ECGCORE_SHARED", Path(__file__).resolve().parents[1].parent / "shared"))


# ---------------------------------------------------------------- peers (xmltodict)
def _as_list(x):
    return x if isinstance(x, list) else [x]


def peer_muse(path):
    import xmltodict
    with open(path, "rb") as fh:
        doc = xmltodict.parse(fh.read())["RestingECG"]
    out = {}
    for wf in _as_list(doc["Waveform"]):
        fs = float(wf["SampleBase"]) * 10 ** float(wf.get("SampleExponent") or 0)
        leads = {}
        for ld in _as_list(wf["LeadData"]):
            raw = base64.b64decode(ld["WaveFormData"])
            leads[ld["LeadID"]] = (np.frombuffer(raw, "<i2") * float(ld["LeadAmplitudeUnitsPerBit"])
                                   / 1000.0)
        i1, i2 = leads["I"], leads["II"]
        leads.update({"III": i2 - i1, "aVR": -(i1 + i2) / 2, "aVL": i1 - i2 / 2, "aVF": i2 - i1 / 2})
        out[wf["WaveformType"]] = (np.stack(list(leads.values())).astype(np.float32), fs)
    return out


def peer_cardiosoft(path):
    import xmltodict
    with open(path, "rb") as fh:
        doc = xmltodict.parse(fh.read())["CardiologyXML"]

    def block(b):
        res = float(b["Resolution"]["#text"])
        rows = [np.array(w["#text"].replace("\n", "").replace("\t", "").strip(",").split(","),
                         dtype=np.int64) * res / 1000.0 for w in _as_list(b["WaveformData"])]
        return np.stack(rows).astype(np.float32), float(b["SampleRate"]["#text"])

    return {"Rhythm": block(doc["StripData"]),
            "Median": block(doc["RestingECGMeasurements"]["MedianSamples"])}


# ---------------------------------------------------------------- timing
def rate(fn, path, repeat, clock=time.process_time):
    """Files per second: best of 5 rounds of ``repeat`` reads, by ``clock``."""
    fn(path)
    best = float("inf")
    for _ in range(5):
        t0 = clock()
        for _ in range(repeat):
            fn(path)
        best = min(best, (clock() - t0) / repeat)
    return 1.0 / best


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=200)
    ap.add_argument("--shared", type=Path, default=SHARED)
    a = ap.parse_args(argv)
    from ecgcore.io import cardiosoft, muse
    data = a.shared / "data"
    cases = [("GE MUSE", muse.read_muse, peer_muse, data / "ge_muse" / "braveheart_example1.xml"),
             ("GE MUSE", muse.read_muse, peer_muse, data / "ge_muse" / "braveheart_example2.xml"),
             ("CardioSoft", cardiosoft.read_cardiosoft, peer_cardiosoft,
              data / "ukb_cardiosoft" / "onyx_cardiosoft_v651_Ecg.XML")]
    print(f"{'format':<11} {'file':<30} {'ecgcore/s cpu':>13} {'peer/s cpu':>10} {'ratio':>6}"
          f" {'ecgcore/s wall':>14} {'peer/s wall':>11} {'ratio':>6}")
    for name, ours, peer, path in cases:
        if not path.exists():
            print(f"{name:<11} {path.name:<32} (missing; skipped)")
            continue
        # same samples: the comparison is only meaningful if both decode alike
        rec, ref = ours(path), peer(path)
        np.testing.assert_allclose(rec.conform().signal,
                                   _reorder(ref["Rhythm"][0], rec, name), atol=1e-5)
        n_peer = max(1, a.repeat // 4)
        c_ours, c_peer = rate(ours, path, a.repeat), rate(peer, path, n_peer)
        w_ours = rate(ours, path, a.repeat, time.perf_counter)
        w_peer = rate(peer, path, n_peer, time.perf_counter)
        print(f"{name:<11} {path.name:<30} {c_ours:>13.0f} {c_peer:>10.0f} {c_ours / c_peer:>6.1f}"
              f" {w_ours:>14.0f} {w_peer:>11.0f} {w_ours / w_peer:>6.1f}")
    return 0


def _reorder(peer_signal, rec, name):
    if name == "GE MUSE":   # peer order: I, II, V1..V6, III, aVR, aVL, aVF
        order = ["I", "II", "V1", "V2", "V3", "V4", "V5", "V6", "III", "aVR", "aVL", "aVF"]
    else:                   # CardioSoft stores the standard order
        order = list(rec.leads)
    idx = [order.index(ld) for ld in rec.conform().leads]
    return peer_signal[idx]


if __name__ == "__main__":
    sys.exit(main())

"""Cross-format identities: the same ECG stored in two formats must read the same.

* HL7 aECG 2003 ballot example == ECGToolkit's SCP conversion of it: all 12
  rhythm leads (5000 samples) and all 12 representative beats (599 samples)
  agree sample for sample (HL7 scale 2.5 µV, SCP AVM 2500 nV).

The HL7 side is parsed here independently of ``ecgcore.io.hl7`` (ElementTree +
numpy: origin + scale x digits), so the SCP decoder is validated even before
the HL7 reader exists; a second test compares the two ecgcore readers and
skips while ``ecgcore.io.hl7`` is not importable.
"""

from __future__ import annotations

import importlib
import xml.etree.ElementTree as ET

import numpy as np
import pytest

from ecgcore.record import STANDARD_12

H = "{urn:hl7-org:v3}"


@pytest.fixture
def pair(shared_data):
    x = shared_data / "hl7_aecg" / "hl7_2003_ballot_Example_aECG.xml"
    s = shared_data / "scp_ecg" / "ecgtoolkit_Example.scp"
    for p in (x, s):
        if not p.exists():
            pytest.skip(f"{p} is absent from the reference shelf")
    return x, s


def _hl7_series(series):
    """{lead: (µV values, scale µV)} of one HL7 series (direct sequences only)."""
    out = {}
    for seq in series.findall(f"{H}component/{H}sequenceSet/{H}component/{H}sequence"):
        code = seq.find(f"{H}code").get("code")
        if not code.startswith("MDC_ECG_LEAD_"):
            continue
        v = seq.find(f"{H}value")
        origin, scale = v.find(f"{H}origin"), v.find(f"{H}scale")
        assert origin.get("unit") == "uV" and scale.get("unit") == "uV"
        digits = np.array(v.find(f"{H}digits").text.split(), dtype=np.int64)
        name = {"AVR": "aVR", "AVL": "aVL", "AVF": "aVF"}.get(code[13:], code[13:])
        out[name] = (float(origin.get("value")) + float(scale.get("value")) * digits,
                     float(scale.get("value")))
    return out


def test_scp_equals_hl7_digits_sample_for_sample(pair):
    from ecgcore.io import scp
    xml_path, scp_path = pair
    root = ET.parse(xml_path).getroot()
    rhythm = _hl7_series(next(root.iter(f"{H}series")))
    beat = _hl7_series(next(root.iter(f"{H}derivedSeries")))
    assert sorted(rhythm) == sorted(STANDARD_12) and sorted(beat) == sorted(STANDARD_12)

    rec = scp.read(scp_path).conform()
    assert rec.fs == 500 and not rec.derived       # all 12 stored, none derived
    for tgt, ref, n in ((rec, rhythm, 5000), (rec.median, beat, 599)):
        for lead in STANDARD_12:
            uv, scale = ref[lead]
            got = tgt[lead].astype(np.float64) * 1000.0          # mV -> µV
            assert got.size == uv.size == n
            # identical counts (the float32 mV store is exact to < 0.01 count)
            np.testing.assert_array_equal(np.round(got / scale), np.round(uv / scale))
            assert np.abs(got - uv).max() < 0.01 * scale
    # not a trivially equal pair of flat lines
    assert np.ptp(rhythm["V2"][0]) > 1000


def test_ecgcore_hl7_reader_equals_scp_reader(pair):
    try:
        hl7 = importlib.import_module("ecgcore.io.hl7")
    except ImportError as exc:
        pytest.skip(f"ecgcore.io.hl7 is not importable yet ({exc}); the SCP side is checked "
                    "against hand-parsed HL7 digits above")
    from ecgcore.io import scp
    xml_path, scp_path = pair
    a = hl7.read(str(xml_path)).conform()
    b = scp.read(scp_path).conform()
    assert a.fs == b.fs and a.n_samples == b.n_samples
    np.testing.assert_allclose(a.signal, b.signal, atol=1e-6)
    if a.median is not None and b.median is not None:
        np.testing.assert_allclose(a.median.signal, b.median.signal, atol=1e-6)

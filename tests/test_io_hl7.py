"""HL7 v3 aECG reader: real files, synthetic variants, hostile input, fuzz."""

from __future__ import annotations

import re
import time

import numpy as np
import pytest

import ecgcore
from ecgcore.errors import ReadError
from ecgcore.io import hl7
from ecgcore.record import STANDARD_12

EX2003 = ("hl7_aecg", "hl7_2003_ballot_Example_aECG.xml")


def _need(root, *parts):
    """A file of the shared shelf, skipping the test when it is absent."""
    p = root.joinpath(*parts)
    if not p.exists():
        pytest.skip(f"reference file {p} is absent")
    return p

LIRYC = ("hl7_aecg", "liryc_hl7aecg_example.xml")


def _regex_lead(text: str, code: str) -> np.ndarray:
    """Independent oracle: the digits of one lead, found with a regex (no XML parser)."""
    within = r"(?:(?!</sequence>).)*?"      # stay inside this lead's sequence
    m = re.search(rf'code="{code}"{within}<scale value="([-\d.]+)" unit="uV"{within}'
                  r'<digits>([^<]*)</digits>', text, re.S)
    assert m, code
    return np.array(m.group(2).split(), float) * float(m.group(1)) * 1e-3


def test_2003_example_shape_and_values(shared_data):
    path = _need(shared_data, *EX2003)
    rec = ecgcore.read(path)
    assert rec.meta["format"] == "hl7_aecg"
    assert rec.signal.shape == (12, 5000) and rec.fs == 500.0
    assert set(rec.leads) == set(STANDARD_12)
    # the file stores I, II, V1..V6, III, aVR, aVL, aVF: leads mapped by code
    assert rec.leads[:3] == ("I", "II", "V1")
    text = path.read_text("utf-8")
    for code, name in (("MDC_ECG_LEAD_I", "I"), ("MDC_ECG_LEAD_AVF", "aVF"),
                       ("MDC_ECG_LEAD_V6", "V6"), ("MDC_ECG_LEAD_III", "III")):
        np.testing.assert_allclose(rec[name], _regex_lead(text, code), atol=1e-6)
    # 2.5 uV scale: every sample is a multiple of 0.0025 mV
    np.testing.assert_allclose(rec.signal / 0.0025, np.round(rec.signal / 0.0025), atol=1e-3)
    assert rec.meta["scale_mv"]["I"] == pytest.approx(0.0025)
    # amplitudes plausible: QRS peak-to-peak 0.3 - 5 mV
    ptp = np.ptp(rec.signal, axis=1)
    assert np.all((ptp > 0.3) & (ptp < 5.0))
    # conform to the canonical order keeps the stored III (not derived)
    c = rec.conform()
    assert c.leads == STANDARD_12 and not c.derived
    np.testing.assert_array_equal(c["III"], rec["III"])


def test_2003_example_median_meta_annotations(shared_data):
    rec = ecgcore.read(_need(shared_data, *EX2003))
    med = rec.median
    assert med is not None and med.fs == 500.0 and med.signal.shape == (12, 599)
    assert set(med.leads) == set(STANDARD_12)
    assert rec.meta["device"]["model"] == "ELI250"
    assert rec.meta["filters"]["low_pass_hz"] == 150.0
    assert rec.meta["filters"]["notch_hz"] == 60.0
    assert rec.meta["patient"]["sex"] == "M"
    assert rec.meta["acquisition_time"] == "2002-11-22T09:10:00"
    ann = rec.annotations["aecg"]
    assert len(ann["code"]) == 167
    assert rec.meta["measurements"]["MDC_ECG_TIME_PD_QT"]["value"] == 420.0
    assert rec.meta["measurements"]["MDC_ECG_TIME_PD_QT"]["unit"] == "ms"
    assert "Sinus Rhythm" in rec.meta["statements"]
    # first P wave: 091000.122 -> 091000.224, relative to the series head 091000.000
    i = next(k for k, (c, v) in enumerate(zip(ann["code"], ann["value"]))
             if c == "MDC_ECG_WAVC" and v == "MDC_ECG_WAVC_PWAVE")
    assert ann["onset_s"][i] == pytest.approx(0.122, abs=1e-6)
    assert ann["offset_s"][i] == pytest.approx(0.224, abs=1e-6)
    assert ann["parent"][i] >= 0 and ann["code"][ann["parent"][i]] == "MDC_ECG_BEAT"


def test_2003_example_matches_scp_twin(shared_data):
    """The HL7 2003 example and the ECGToolkit SCP file are the same ECG (SOURCES.md)."""
    pytest.importorskip("ecgcore.io.scp", reason="SCP reader not available yet")
    a = ecgcore.read(_need(shared_data, *EX2003)).conform()
    b = ecgcore.read(_need(shared_data, "scp_ecg", "ecgtoolkit_Example.scp")).conform()
    assert a.fs == b.fs and a.signal.shape == b.signal.shape
    np.testing.assert_allclose(a.signal, b.signal, atol=1e-6)


def test_liryc_example(shared_data):
    rec = ecgcore.read(_need(shared_data, *LIRYC))
    assert rec.signal.shape == (12, 1000) and rec.fs == 100.0
    assert rec.leads == STANDARD_12
    assert rec.median is not None and rec.median.n_samples == 500
    assert rec.meta["device"]["model"] == "BeneHeart R12"
    assert rec.meta["filters"] == {"low_pass_hz": 35.0, "high_pass_hz": 0.56, "notch_hz": 50.0}
    np.testing.assert_allclose(rec.signal / 0.005, np.round(rec.signal / 0.005), atol=1e-3)


def test_matches_ecgdatakit_oracle(shared_data):
    edk = pytest.importorskip("ecgdatakit")
    path = _need(shared_data, *EX2003)
    ref = edk.FileParser().parse(str(path))
    rec = ecgcore.read(path)
    for lead in ref.leads:
        np.testing.assert_allclose(rec[lead.label], np.asarray(lead.samples, float), atol=1e-6)


# -- synthetic files ------------------------------------------------------------

def _aecg(sets, rhythm_code="RHYTHM", extra_series=""):
    """A minimal aECG document. sets: list of (time_kind, head, inc, inc_unit, leads)
    where leads is a list of (code, origin, origin_unit, scale, scale_unit, digits)."""
    comps = []
    for kind, head, inc, inc_unit, leads in sets:
        if kind == "TIME_ABSOLUTE":
            tv = f'<value xsi:type="GLIST_TS"><head value="{head}"/><increment value="{inc}" unit="{inc_unit}"/></value>'
        else:
            tv = f'<value xsi:type="GLIST_PQ"><head value="{head}" unit="s"/><increment value="{inc}" unit="{inc_unit}"/></value>'
        seqs = [f'<component><sequence><code code="{kind}"/>{tv}</sequence></component>']
        for code, o, ou, s, su, d in leads:
            seqs.append(
                f'<component><sequence><code code="{code}" codeSystem="2.16.840.1.113883.6.24"/>'
                f'<value xsi:type="SLIST_PQ"><origin value="{o}" unit="{ou}"/><scale value="{s}" unit="{su}"/>'
                f'<digits>{" ".join(str(int(v)) for v in d)}</digits></value></sequence></component>')
        comps.append(f"<component><sequenceSet>{''.join(seqs)}</sequenceSet></component>")
    return (f'<?xml version="1.0" encoding="UTF-8"?>\n<AnnotatedECG xmlns="urn:hl7-org:v3" '
            f'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><component><series>'
            f'<code code="{rhythm_code}"/>{"".join(comps)}{extra_series}</series></component></AnnotatedECG>')


def test_synthetic_relative_time_units_and_several_sets(tmp_path, rng):
    d = rng.integers(-400, 400, size=(4, 300))
    sets = [("TIME_RELATIVE", "0", "4", "ms", [          # 250 Hz from a ms increment
                ("MDC_ECG_LEAD_II", 0, "uV", 5, "uV", d[0]),
                ("MDC_ECG_LEAD_I", 10, "uV", 1, "uV", d[1])]),
            ("TIME_RELATIVE", "0.4", "0.004", "s", [      # second group starts 100 samples later
                ("MDC_ECG_LEAD_V1", 0.1, "mV", 0.002, "mV", d[2]),
                ("MDC_ECG_LEAD_AVR", 0, "uV", 2.5, "uV", d[3])])]
    p = tmp_path / "syn.xml"
    p.write_text(_aecg(sets))
    rec = ecgcore.read(p)
    assert rec.fs == pytest.approx(250.0)
    assert rec.leads == ("II", "I", "V1", "aVR")
    assert rec.n_samples == 400
    np.testing.assert_allclose(rec["II"][:300], d[0] * 0.005, atol=1e-6)
    np.testing.assert_allclose(rec["I"][:300], 0.010 + d[1] * 0.001, atol=1e-6)
    np.testing.assert_allclose(rec["V1"][100:], 0.1 + d[2] * 0.002, atol=1e-6)
    np.testing.assert_allclose(rec["aVR"][100:], d[3] * 0.0025, atol=1e-6)
    assert np.isnan(rec["V1"][:100]).all() and np.isnan(rec["I"][300:]).all()


def test_synthetic_absolute_time_offsets(tmp_path, rng):
    d = rng.integers(-300, 300, size=(2, 200))
    sets = [("TIME_ABSOLUTE", "20200101120000.000", "0.001", "s", [("MDC_ECG_LEAD_I", 0, "uV", 1, "uV", d[0])]),
            ("TIME_ABSOLUTE", "20200101120000.050", "1", "ms", [("MDC_ECG_LEAD_II", 0, "uV", 1, "uV", d[1])])]
    p = tmp_path / "abs.xml"
    p.write_text(_aecg(sets))
    rec = ecgcore.read(p)
    assert rec.fs == pytest.approx(1000.0) and rec.n_samples == 250
    np.testing.assert_allclose(rec["II"][50:], d[1] * 1e-3, atol=1e-7)
    assert rec.meta["acquisition_time"] == "2020-01-01T12:00:00"


def test_numeric_mdc_codes():
    assert hl7.lead_name_from_code("131073") == "I"
    assert hl7.lead_name_from_code("131136") == "aVF"
    assert hl7.lead_name_from_code("MDC_ECG_LEAD_AVL") == "aVL"
    assert hl7.lead_name_from_code("TIME_ABSOLUTE") is None


# -- bad input ------------------------------------------------------------------

@pytest.mark.parametrize("doc, why", [
    ('<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;">]>'
     '<AnnotatedECG xmlns="urn:hl7-org:v3">&lol2;</AnnotatedECG>', "entities"),
    ('<?xml version="1.0"?><!DOCTYPE x [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'
     '<AnnotatedECG xmlns="urn:hl7-org:v3">&xxe;</AnnotatedECG>', "entities"),
    ('<AnnotatedECG xmlns="urn:hl7-org:v3"><component><series>', "malformed"),
    ('<AnnotatedECG xmlns="urn:hl7-org:v3"></AnnotatedECG>', "RHYTHM"),
])
def test_hostile_and_broken_xml(tmp_path, doc, why):
    p = tmp_path / "bad.xml"
    p.write_text(doc)
    with pytest.raises(ReadError, match=why):
        ecgcore.read(p)


def test_billion_laughs_utf16_refused_fast(tmp_path):
    ents = "".join(f'<!ENTITY l{i} "{"&l%d;" % (i - 1) * 10 if i else "lol"}">' for i in range(10))
    doc = f'<?xml version="1.0" encoding="utf-16"?><!DOCTYPE a [{ents}]><AnnotatedECG xmlns="urn:hl7-org:v3">&l9;</AnnotatedECG>'
    p = tmp_path / "laughs.xml"
    p.write_bytes(b"\xff\xfe" + doc.encode("utf-16-le"))
    t = time.perf_counter()
    with pytest.raises(ReadError, match="entities"):
        hl7.read(str(p))
    assert time.perf_counter() - t < 5.0


@pytest.mark.parametrize("mutate, why", [
    (lambda s: s.replace('<digits>', '<digits>1 2 x ', 1), "not numbers"),
    (lambda s: s.replace('value="4" unit="ms"', 'value="0" unit="ms"', 1), "positive"),
    (lambda s: s.replace('value="4" unit="ms"', 'value="4" unit="kg"', 1), "time unit"),
    (lambda s: s.replace('unit="uV"', 'unit="mmHg"', 1), "voltage"),
    (lambda s: s.replace('<code code="RHYTHM"/>', '<code code="OTHER"/>'), "RHYTHM"),
])
def test_bad_values(tmp_path, rng, mutate, why):
    d = rng.integers(-100, 100, size=50)
    doc = _aecg([("TIME_RELATIVE", "0", "4", "ms", [("MDC_ECG_LEAD_I", 0, "uV", 5, "uV", d)])])
    p = tmp_path / "v.xml"
    p.write_text(mutate(doc))
    with pytest.raises(ReadError, match=why):
        ecgcore.read(p)


def test_truncated_file(tmp_path, shared_data):
    data = _need(shared_data, *LIRYC).read_bytes()
    for cut in (10, 1000, len(data) // 2, len(data) - 20):
        p = tmp_path / f"t{cut}.xml"
        p.write_bytes(data[:cut])
        with pytest.raises(ReadError):
            ecgcore.read(p)


def test_fuzz_mutations(tmp_path, rng, shared_data):
    """Seeded byte mutations of a real file: only ReadError or a Record, quickly."""
    data = bytearray(_need(shared_data, *LIRYC).read_bytes())
    t0 = time.perf_counter()
    outcomes = {"ok": 0, "err": 0}
    for i in range(120):
        buf = bytearray(data)
        kind = i % 4
        if kind == 0:
            for pos in rng.integers(0, len(buf), size=rng.integers(1, 20)):
                buf[pos] = int(rng.integers(0, 256))
        elif kind == 1:
            a = int(rng.integers(0, len(buf)))
            del buf[a:a + int(rng.integers(1, 2000))]
        elif kind == 2:
            # numbers into attributes and digits
            for pos in rng.integers(0, len(buf), size=10):
                buf[pos:pos + 1] = [b"-", b"9", b"e", b" ", b"."][int(rng.integers(0, 5))]
        else:
            buf = buf[:int(rng.integers(0, len(buf)))]
        p = tmp_path / f"f{i}.xml"
        p.write_bytes(bytes(buf))
        try:
            rec = ecgcore.read(p, format="hl7_aecg")
            assert rec.signal.ndim == 2
            outcomes["ok"] += 1
        except ReadError:
            outcomes["err"] += 1
    assert outcomes["err"] > 0
    assert time.perf_counter() - t0 < 60


# -- the byte-level fast path: lazy annotations, cut-out digits -------------------

def _same_annotations(a, b):
    assert set(a) == set(b)
    for k in b:
        if isinstance(b[k], np.ndarray):
            np.testing.assert_array_equal(np.asarray(a[k]), b[k])
        else:
            assert list(a[k]) == list(b[k]), k


@pytest.mark.parametrize("which", [EX2003, LIRYC])
def test_lazy_annotations_equal_eager(shared_data, which):
    import copy
    import pickle
    path = _need(shared_data, *which)
    lazy, eager, none = (hl7.read(path), hl7.read(path, annotations=True),
                         hl7.read(path, annotations=False))
    assert isinstance(lazy.annotations["aecg"], hl7.LazyDict)
    assert isinstance(eager.annotations["aecg"], dict)
    assert "aecg" not in none.annotations and "measurements" not in none.meta
    for r in (lazy, none):
        np.testing.assert_array_equal(r.signal, eager.signal)
        np.testing.assert_array_equal(r.median.signal, eager.median.signal)
    _same_annotations(lazy.annotations["aecg"], eager.annotations["aecg"])
    assert lazy.meta["measurements"] == eager.meta["measurements"]
    assert lazy.meta["statements"] == eager.meta["statements"]
    rest = [k for k in eager.meta if k not in ("measurements", "statements")]
    assert {k: lazy.meta[k] for k in rest} == {k: eager.meta[k] for k in rest}
    # pickles and copies as the plain containers it stands for
    m = pickle.loads(pickle.dumps(lazy.meta))
    assert type(m["measurements"]) is dict and type(m["statements"]) is list
    assert m["measurements"] == eager.meta["measurements"]
    assert copy.deepcopy(lazy.meta)["statements"] == eager.meta["statements"]


_ANN = ('<subjectOf><annotationSet><component><annotation><code code="MDC_ECG_TIME_PD_QT"/>'
        '<value xsi:type="PQ" value="{qt}" unit="ms"/></annotation></component>'
        '</annotationSet></subjectOf>')


def _doc_with(rng, extra, head=""):
    d = rng.integers(-500, 500, size=120)
    doc = _aecg([("TIME_RELATIVE", "0", "2", "ms", [("MDC_ECG_LEAD_I", 0, "uV", 5, "uV", d)])],
                extra_series=extra)
    return doc.replace("<AnnotatedECG", head + "<AnnotatedECG", 1), d


@pytest.mark.parametrize("extra, head, qt", [
    (_ANN.format(qt=401), "", 401.0),
    # a set hidden in a comment is no element: the real one must win
    ("<!-- " + _ANN.format(qt=999) + " -->" + _ANN.format(qt=402), "", 402.0),
    # digits inside a comment are not a lead
    ("<!-- <digits>1 2 3</digits> -->" + _ANN.format(qt=403), "<!-- a comment -->\n", 403.0),
    # a namespace declared below the root: the cut is not safe, parsed whole
    (_ANN.format(qt=404).replace("<subjectOf>", '<subjectOf xmlns:q="urn:x">'), "", 404.0),
])
def test_fast_path_matches_whole_parse(tmp_path, rng, extra, head, qt):
    doc, d = _doc_with(rng, extra, head)
    p = tmp_path / "a.xml"
    p.write_text(doc)
    for mode in ("lazy", True):
        rec = hl7.read(p, annotations=mode)
        np.testing.assert_allclose(rec["I"], d * 0.005, atol=1e-7)
        assert rec.meta["measurements"]["MDC_ECG_TIME_PD_QT"]["value"] == qt
        assert len(rec.annotations["aecg"]["code"]) == 1


def test_broken_annotation_set_fails_at_read_time(tmp_path, rng):
    """The lazily decoded sets are still checked while reading."""
    doc, _ = _doc_with(rng, _ANN.format(qt=400).replace("</annotation>", "</annotationX>"))
    p = tmp_path / "b.xml"
    p.write_text(doc)
    for mode in ("lazy", False, True):
        with pytest.raises(ReadError, match="malformed"):
            hl7.read(p, annotations=mode)


def test_decimal_and_plus_digits(tmp_path, rng):
    d = rng.integers(-500, 500, size=60)
    doc = _aecg([("TIME_RELATIVE", "0", "2", "ms", [("MDC_ECG_LEAD_I", 0, "uV", 5, "uV", d)])])
    text = " ".join(str(int(v)) for v in d)
    dec = " ".join(f"{v}.5" for v in d[:5]) + " " + " ".join(f"+{abs(v)}" for v in d[5:])
    p = tmp_path / "c.xml"
    p.write_text(doc.replace(text, dec))
    # "-3.5" is -3.5 and "+7" is 7: the general tokenizer takes what the scanner rejects
    want = np.r_[[float(f"{v}.5") for v in d[:5]], np.abs(d[5:])]
    np.testing.assert_allclose(hl7.read(p)["I"], want * 0.005, atol=1e-7)


def test_int_scanner_matches_numpy(rng):
    scan = pytest.importorskip("ecgcore.io._xmlscan")
    v = rng.integers(-10**12, 10**12, size=5000)
    seps = np.array([" ", "  ", "\n", "\t", "\r\n", "\n        "])
    text = "".join(f"{x}{seps[i]}" for x, i in zip(v, rng.integers(0, len(seps), size=v.size)))
    data = ("\n  " + text).encode()
    got = scan.ints_at(data, 0, len(data))
    np.testing.assert_array_equal(got, np.fromstring(text, dtype=np.int64, sep=" ").astype(float))
    assert scan.ints_at(b"", 0, 0).size == 0
    for bad in (b"1 2.5", b"1-2", b"- 1", b"1 x", b"9" * 19, b"-", b"1e3"):
        assert scan.ints_at(bad, 0, len(bad)) is None, bad

"""XML readers: the safe front end, GE MUSE and GE CardioSoft, on real files and hostile input."""

from __future__ import annotations

import base64
import re
import xml.etree.ElementTree as ET
import zlib

import numpy as np
import pytest

import ecgcore
from ecgcore.errors import ReadError
from ecgcore.io import cardiosoft, muse, xmlsafe

MUSE_FILES = ["braveheart_example1.xml", "braveheart_example2.xml"]
CS_FILE = ("ukb_cardiosoft", "onyx_cardiosoft_v651_Ecg.XML")


_REQUEST = None


@pytest.fixture(autouse=True)
def _remember_request(request):
    # Helpers below fetch the ``shared_data`` fixture lazily (it skips the
    # test with a clear message when ../shared is absent).
    global _REQUEST
    _REQUEST = request
    yield
    _REQUEST = None


def _shared(*parts):
    return _REQUEST.getfixturevalue("shared_data").joinpath(*parts)


def _muse(name):
    return _shared("ge_muse", name)


def _independent_muse(path, kind="Rhythm"):
    """Decode a MUSE waveform with plain regex + base64 + numpy (no ecgcore code)."""
    text = path.read_bytes().decode("latin-1")
    block = next(b for b in re.findall(r"<Waveform>(.*?)</Waveform>", text, re.S)
                 if f"<WaveformType>{kind}</WaveformType>" in b)
    out = {}
    for ld in re.findall(r"<LeadData>(.*?)</LeadData>", block, re.S):
        name = re.search(r"<LeadID>(.*?)</LeadID>", ld).group(1)
        upb = float(re.search(r"<LeadAmplitudeUnitsPerBit>(.*?)<", ld).group(1))
        raw = base64.b64decode(re.search(r"<WaveFormData>(.*?)</WaveFormData>", ld, re.S).group(1))
        crc = int(re.search(r"<LeadDataCRC32>(\d+)<", ld).group(1))
        out[name] = (np.frombuffer(raw, "<i2").astype(np.float64) * upb / 1000.0, crc, raw)
    fs = float(re.search(r"<SampleBase>(.*?)<", block).group(1))
    return out, fs


# -- xmlsafe -----------------------------------------------------------------------
BILLION_LAUGHS = (b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
                  + b"".join(b'<!ENTITY lol%d "%s">' % (i, b"".join([b"&lol%d;" % (i - 1)] * 10)
                                                           if i > 1 else b"&lol;" * 10)
                             for i in range(1, 10))
                  + b"]><RestingECG>&lol9;</RestingECG>")
XXE = (b'<?xml version="1.0"?><!DOCTYPE RestingECG [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'
       b"<RestingECG>&xxe;</RestingECG>")
PARAM_XXE = (b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY % p SYSTEM "http://127.0.0.1:1/x.dtd">%p;]>'
             b"<r/>")


@pytest.mark.parametrize("doc", [BILLION_LAUGHS, XXE, PARAM_XXE,
                                 BILLION_LAUGHS.decode().encode("utf-16")],
                         ids=["billion_laughs", "xxe", "parameter_entity", "utf16_entities"])
def test_entity_declarations_are_refused(doc):
    with pytest.raises(ReadError, match="entit"):
        xmlsafe.parse_xml(doc, path="hostile.xml")


def test_plain_doctype_is_accepted_and_not_fetched():
    doc = (b'<?xml version="1.0" encoding="ISO-8859-1"?>\n'
           b'<!DOCTYPE RestingECG SYSTEM "http://127.0.0.1:1/restecg.dtd">\n<RestingECG><a>\xe9</a>'
           b"</RestingECG>")
    root = xmlsafe.parse_xml(doc, path="m.xml")
    assert root.tag == "RestingECG" and root.find("a").text == "\u00e9"


@pytest.mark.parametrize("enc,bom", [("utf-8", b""), ("utf-8", b"\xef\xbb\xbf"),
                                     ("utf-16-le", b"\xff\xfe"), ("utf-16-be", b"\xfe\xff"),
                                     ("iso-8859-1", b""), ("cp1252", b"")])
def test_encodings(enc, bom):
    decl = {"utf-16-le": "UTF-16", "utf-16-be": "UTF-16", "cp1252": "windows-1252"}.get(enc, enc)
    text = f'<?xml version="1.0" encoding="{decl}"?><r><s>Überprüfung café</s></r>'
    doc = xmlsafe.parse_document(bom + text.encode(enc), path="e.xml")
    assert doc.root.find("s").text == "Überprüfung café"


@pytest.mark.parametrize("doc,match", [
    (b"", "empty"),
    (b"   \n", "empty"),
    (b"<RestingECG><Waveform>", "truncated"),
    (b"<RestingECG></Waveform>", "malformed"),
    ('<?xml version="1.0" encoding="UTF-8"?><r>caf\xe9</r>'.encode("latin-1"), "not valid UTF-8"),
    (b'<?xml version="1.0" encoding="no-such-codec"?><r/>', "unknown encoding"),
    (b"<r>&undefined;</r>", "malformed"),
])
def test_bad_xml_raises_readerror_naming_file(doc, match):
    with pytest.raises(ReadError, match=match) as info:
        xmlsafe.parse_xml(doc, path="bad_file.xml")
    assert "bad_file.xml" in str(info.value)


def test_recover_escapes_bare_ampersand_and_lt():
    doc = b"<r><StmtText>A & B < C &amp; D</StmtText></r>"
    with pytest.raises(ReadError):
        xmlsafe.parse_xml(doc, path="x.xml")
    res = xmlsafe.parse_document(doc, path="x.xml", recover=True)
    assert res.recovered and res.root.find("StmtText").text == "A & B < C & D"


def test_iterparse_matches_parse_and_refuses_entities(tmp_path):
    p = _muse(MUSE_FILES[0])
    tags = [el.tag for _, el in xmlsafe.iterparse_xml(p, chunk_size=1000)]
    assert tags == [el.tag for el in ET.fromstring(p.read_bytes()).iter()][::-1] or \
        sorted(tags) == sorted(el.tag for el in ET.fromstring(p.read_bytes()).iter())
    # an entity keyword split across the chunk boundary is still found
    bad = tmp_path / "split.xml"
    bad.write_bytes(b"<!-- " + b"x" * 995 + b" -->" + BILLION_LAUGHS[21:])
    with pytest.raises(ReadError, match="entit"):
        list(xmlsafe.iterparse_xml(bad, chunk_size=1003))


def test_namespace_helpers():
    root = xmlsafe.parse_xml(b'<a xmlns="urn:x"><b><c>1</c></b></a>', path="n.xml")
    assert xmlsafe.localname(root.tag) == "a"
    xmlsafe.strip_namespaces(root)
    assert xmlsafe.child_text(root, "b/c") == "1" and xmlsafe.child_text(root, "b/z", "d") == "d"


# -- MUSE ------------------------------------------------------------------------------
@pytest.mark.parametrize("name", MUSE_FILES)
def test_muse_matches_independent_decode(name):
    path = _muse(name)
    ref, fs = _independent_muse(path)
    rec = ecgcore.read(path)
    assert rec.meta["format"] == "ge_muse" and rec.fs == fs == 500
    assert rec.leads == ecgcore.STANDARD_12 and rec.n_samples == 5000
    for lead, (mv, crc, raw) in ref.items():
        assert zlib.crc32(raw) == crc                      # the file's own integrity value
        np.testing.assert_allclose(rec[lead], mv, rtol=0, atol=1e-6)
    assert set(ref) == {"I", "II", "V1", "V2", "V3", "V4", "V5", "V6"}
    assert rec.meta["scale_uv_per_count"]["I"] == pytest.approx(4.88)


@pytest.mark.parametrize("name", MUSE_FILES)
def test_muse_limb_leads_follow_einthoven_goldberger(name):
    rec = ecgcore.read(_muse(name))
    for r in (rec, rec.median):
        i1, i2 = r["I"].astype(np.float64), r["II"].astype(np.float64)
        assert r.derived == {"III", "aVR", "aVL", "aVF"}
        np.testing.assert_allclose(r["III"], i2 - i1, atol=1e-6)
        np.testing.assert_allclose(r["aVR"], -(i1 + i2) / 2, atol=1e-6)
        np.testing.assert_allclose(r["aVL"], i1 - i2 / 2, atol=1e-6)
        np.testing.assert_allclose(r["aVF"], i2 - i1 / 2, atol=1e-6)


@pytest.mark.parametrize("name", MUSE_FILES)
def test_muse_median_measurements_and_amplitudes(name):
    path = _muse(name)
    rec = ecgcore.read(path)
    ref, fs = _independent_muse(path, "Median")
    assert rec.median.fs == fs and rec.median.n_samples == 600
    np.testing.assert_allclose(rec.median["V2"], ref["V2"][0], atol=1e-6)
    m = rec.meta["measurements"]
    assert {"VentricularRate", "PRInterval", "QRSDuration", "QTInterval", "QTCorrected",
            "POnset", "QOnset", "TOffset"} <= set(m)
    # QRS onset/offset are median-beat sample indices: the QRS must be there
    qrs = rec.median["V2"][m["QOnset"]:m["QOffset"]]
    assert np.ptp(qrs) > 0.5 * np.ptp(rec.median["V2"])
    # the reported QRS duration equals (QOffset - QOnset) samples at fs
    assert abs((m["QOffset"] - m["QOnset"]) * 1000 / rec.median.fs - m["QRSDuration"]) <= 4
    # plausible mV amplitudes: QRS peak-to-peak 0.3-5 mV in the chest leads, record not scale-suspect
    assert 0.3 < np.ptp(rec["V2"]) < 8 and not rec.quality.flags["scale_suspect"]
    # measured RR from the QRS times matches the vendor's rate
    rr = np.median(np.diff(rec.meta["qrs_times_ms"]))
    assert abs(60000 / rr - m["VentricularRate"]) < 3
    assert rec.meta["filters"]["LowPassFilter"] == 150


def _muse_bytes(name):
    return _muse(name).read_bytes()


def _write(tmp_path, data, name="bad.xml"):
    p = tmp_path / name
    p.write_bytes(data)
    return p


def test_muse_scale_and_rate_are_read_per_file(tmp_path):
    """A site exporting 250 Hz-labelled data at 2.44 µV/bit must not be read as 500 Hz / 4.88."""
    data = _muse_bytes(MUSE_FILES[0])
    data = data.replace(b"<SampleBase>500</SampleBase>", b"<SampleBase>25</SampleBase>")
    data = data.replace(b"<SampleExponent>0</SampleExponent>", b"<SampleExponent>1</SampleExponent>")
    data = data.replace(b"<LeadAmplitudeUnitsPerBit>4.88<", b"<LeadAmplitudeUnitsPerBit>2.44<")
    ref = ecgcore.read(_muse(MUSE_FILES[0]))
    rec = ecgcore.read(_write(tmp_path, data))
    assert rec.fs == 250 and rec.median.fs == 250
    np.testing.assert_allclose(rec.signal, ref.signal / 2, atol=1e-6)


def test_muse_crc_policy(tmp_path):
    data = _muse_bytes(MUSE_FILES[0])
    m = re.search(rb"<LeadDataCRC32>(\d+)</LeadDataCRC32>", data)
    bad = data[:m.start(1)] + str(int(m.group(1)) ^ 1).encode() + data[m.end(1):]
    p = _write(tmp_path, bad)
    with pytest.raises(ReadError, match="CRC"):
        ecgcore.read(p)
    rec = ecgcore.read(p, crc="flag")
    assert rec.meta["quality_flags"]["crc_mismatch"] and rec.meta["crc_mismatch_leads"] == ["I"]
    assert not rec.quality.ok
    assert "crc_mismatch" not in ecgcore.read(p, crc="ignore").meta.get("quality_flags", {})


def _mutate_first_lead(data, old, new):
    i = data.index(old)
    return data[:i] + new + data[i + len(old):]


@pytest.mark.parametrize("change,match", [
    ((b"<LeadSampleCountTotal>600<", b"<LeadSampleCountTotal>601<"), "LeadSampleCountTotal"),
    ((b"<WaveFormData>", b"<WaveFormData>*!"), "base64"),
    ((b"<LeadAmplitudeUnitsPerBit>4.88<", b"<LeadAmplitudeUnitsPerBit>abc<"), "not a number"),
    ((b"<LeadAmplitudeUnits>MICROVOLTS<", b"<LeadAmplitudeUnits>FURLONGS<"), "LeadAmplitudeUnits"),
    ((b"<SampleBase>500<", b"<SampleBase>-500<"), "positive"),
    ((b"<LeadSampleSize>2<", b"<LeadSampleSize>4<"), "LeadSampleSize"),
    ((b"<RestingECG>", b"<RestingEKG>"), "malformed"),
])
def test_muse_bad_fields(tmp_path, change, match):
    p = _write(tmp_path, _mutate_first_lead(_muse_bytes(MUSE_FILES[0]), *change))
    with pytest.raises(ReadError, match=match) as info:
        muse.read_muse(p, crc="ignore")
    assert "bad.xml" in str(info.value)


def test_muse_base64_junk(tmp_path):
    """Junk inside base64 is refused unless the CRC-32 proves the samples intact."""
    data = _muse_bytes(MUSE_FILES[0])
    p = _write(tmp_path, _mutate_first_lead(data, b"<WaveFormData>", b"<WaveFormData>*!"))
    np.testing.assert_array_equal(muse.read_muse(p).signal,
                                  muse.read_muse(_muse(MUSE_FILES[0])).signal)
    m = re.search(rb"<WaveFormData>(.*?)</WaveFormData>", data, re.S)
    body = bytearray(m.group(1))
    body[40] = ord("A") if body[40] != ord("A") else ord("B")     # a changed sample
    with pytest.raises(ReadError, match="CRC"):
        muse.read_muse(_write(tmp_path, data[:m.start(1)] + bytes(body) + data[m.end(1):], "c.xml"))
    for junk in (b"AAA", b"A=AA"):                                  # bad length / padding
        q = _write(tmp_path, data[:m.start(1)] + junk + data[m.start(1):], "j.xml")
        with pytest.raises(ReadError):
            muse.read_muse(q)


def test_muse_wrong_sample_count_against_decoded_data(tmp_path):
    """Drop one sample from a lead's base64 (and fix its CRC): the count check still fires."""
    data = _muse_bytes(MUSE_FILES[0])
    m = re.search(rb"<WaveFormData>(.*?)</WaveFormData>", data, re.S)
    raw = base64.b64decode(m.group(1))[:-2]
    data = data[:m.start(1)] + base64.b64encode(raw) + data[m.end(1):]
    with pytest.raises(ReadError, match="holds 599"):
        muse.read_muse(_write(tmp_path, data), crc="ignore")


def test_muse_missing_rhythm_and_wrong_root(tmp_path):
    data = _muse_bytes(MUSE_FILES[0]).replace(b"<WaveformType>Rhythm<", b"<WaveformType>Other<")
    with pytest.raises(ReadError, match="no Rhythm"):
        muse.read_muse(_write(tmp_path, data))
    card = _shared(*CS_FILE)
    with pytest.raises(ReadError, match="not a GE MUSE"):
        muse.read_muse(card)


def test_muse_truncated_and_non_utf8(tmp_path):
    data = _muse_bytes(MUSE_FILES[1])
    with pytest.raises(ReadError, match="truncated"):
        ecgcore.read(_write(tmp_path, data[: len(data) // 2]))
    utf8 = data.replace(b'encoding="ISO-8859-1"', b'encoding="UTF-8"').replace(
        b"<MuseVersion>", b"<MuseVersion>\xe9", 1)
    with pytest.raises(ReadError, match="UTF-8"):
        ecgcore.read(_write(tmp_path, utf8, "u.xml"))
    with pytest.raises(ReadError, match="empty"):
        ecgcore.read(_write(tmp_path, b"", "e.xml"))


def test_muse_free_text_recovery_and_meta(tmp_path):
    data = _muse_bytes(MUSE_FILES[0])
    extra = (b"<TestDemographics><AcquisitionDevice>MAC55</AcquisitionDevice>"
             b"<AcquisitionDate>03-07-2019</AcquisitionDate><AcquisitionTime>14:05:09</AcquisitionTime>"
             b"<OperatorLastName>Smith</OperatorLastName><Site>3</Site>"
             b"</TestDemographics><PatientDemographics><PatientID>123</PatientID><PatientAge>61"
             b"</PatientAge><Gender>FEMALE</Gender></PatientDemographics>"
             b"<Diagnosis><DiagnosisStatement><StmtFlag>ENDSLINE</StmtFlag><StmtText>Sinus rhythm"
             b"</StmtText></DiagnosisStatement><DiagnosisStatement><StmtText>ST & T abnormality, "
             b"QTc < 450</StmtText></DiagnosisStatement></Diagnosis>")
    data = data.replace(b"<RestingECGMeasurements>", extra + b"<RestingECGMeasurements>", 1)
    rec = ecgcore.read(_write(tmp_path, data))
    assert rec.meta["xml_recovered"]
    assert rec.meta["statements"] == ["Sinus rhythm", "ST & T abnormality, QTc < 450"]
    assert rec.meta["acquisition_time"] == "2019-03-07T14:05:09"
    assert rec.meta["device"] == "MAC55"
    assert rec.meta["patient"] == {"age": 61, "age_units": None, "sex": "F"}
    assert rec.meta["test"] == {"AcquisitionDevice": "MAC55", "Site": 3}     # no staff names
    assert muse.read_muse(tmp_path / "bad.xml", keep_phi=True).meta["patient"]["PatientID"] == 123
    with pytest.raises(ReadError):
        muse.read_muse(tmp_path / "bad.xml", recover=False)


# -- CardioSoft ----------------------------------------------------------------------------
def _independent_cardiosoft(path, block="StripData"):
    text = path.read_bytes().decode("latin-1")
    part = re.search(rf"<{block}>(.*?)</{block}>", text, re.S).group(1)
    res = float(re.search(r'<Resolution units="uVperLsb">(.*?)<', part).group(1))
    return {lead: np.array([int(v) for v in body.replace("\n", "").replace("\t", "").split(",")
                            if v.strip()], dtype=np.float64) * res / 1000
            for lead, body in re.findall(r'<WaveformData lead="(.*?)">(.*?)</WaveformData>', part,
                                         re.S)}


def test_cardiosoft_strip_matches_independent_decode():
    path = _shared(*CS_FILE)
    rec = ecgcore.read(path)
    ref = _independent_cardiosoft(path)
    assert rec.meta["format"] == "cardiosoft"
    assert rec.leads == ecgcore.STANDARD_12 and rec.n_samples == 5000 and rec.fs == 500
    assert rec.derived == frozenset()
    assert rec.meta["resolution_uv_per_lsb"] == 5
    for lead, mv in ref.items():
        np.testing.assert_allclose(rec[lead], mv, atol=1e-6)
    # stored III disagrees with II - I by up to 24 LSB (facts §1): reported, not hidden
    res = rec.limb_residuals()
    assert round(res["III"] / 0.005) == 24
    assert 0.3 < np.ptp(rec["V3"]) < 5 and not rec.quality.flags["scale_suspect"]


def test_cardiosoft_median_and_measurements():
    path = _shared(*CS_FILE)
    rec = ecgcore.read(path)
    ref = _independent_cardiosoft(path, "MedianSamples")
    med = rec.median
    assert med.n_samples == 600 and med.fs == 500 and med.meta["LastValid"] == 538
    np.testing.assert_allclose(med["aVL"], ref["aVL"], atol=1e-6)
    m, u = rec.meta["measurements"], rec.meta["measurement_units"]
    assert m["VentricularRate"] == 86 and m["QRSDuration"] == 90 and u["QOnset"] == "ms"
    # QOnset/QOffset in ms bound the median QRS: its largest slope lies inside
    q0, q1 = (int(m[k] * med.fs / 1000) for k in ("QOnset", "QOffset"))
    slope = np.abs(np.diff(med["V2"]))
    assert q0 <= int(np.argmax(slope)) <= q1
    lm = rec.meta["lead_measurements"]
    assert lm["leads"] == list(ecgcore.STANDARD_12)
    assert lm["RAmplitude"][0] == 976 and np.isnan(lm["QDuration"][1])
    assert rec.meta["device"] == "CardioSoft" and rec.meta["software"] == "V6.51"
    assert rec.meta["acquisition_time"] == "2008-09-23T10:48:34"
    assert rec.meta["filters"]["HighPass"] == 0.05
    assert rec.meta["beats"]["time_ms"].size == m["QRSNum"] == 14
    assert "Tremblay" not in repr(rec.meta) and rec.meta["patient"]["sex"] == "M"
    assert cardiosoft.read_cardiosoft(path, keep_phi=True).meta["patient"]["family_name"] == "Tremblay"


def test_cardiosoft_nested_strip_variant(tmp_path):
    data = _shared(*CS_FILE).read_bytes()
    i = data.index(b"<StripData>") + len(b"<StripData>")
    j = data.index(b"<ArrhythmiaResults>")
    k = data.index(b'<WaveformData lead="I">', i)
    nested = data[:k] + b"<Strip>" + data[k:j] + b"</Strip>" + data[j:]
    rec = ecgcore.read(_write(tmp_path, nested, "n.XML"))
    np.testing.assert_array_equal(rec.signal, ecgcore.read(_shared(*CS_FILE)).signal)


def _first_strip_lead(text: bytes) -> slice:
    i = text.index(b"<StripData>")
    m = re.compile(rb'<WaveformData lead="I">(.*?)</WaveformData>', re.S).search(text, i)
    return slice(m.start(1), m.end(1))


@pytest.mark.parametrize("edit,match", [
    (lambda body: body.replace(b",", b",,", 1), "comma-separated integers"),
    (lambda body: body.replace(b",", b",1x,", 1), "comma-separated integers"),
    (lambda body: body[body.index(b",") + 1:], "holds 4999"),
    (lambda body: b"", "holds 0"),
], ids=["empty_field", "letters", "one_short", "empty_lead"])
def test_cardiosoft_bad_samples(tmp_path, edit, match):
    data = _shared(*CS_FILE).read_bytes()
    sl = _first_strip_lead(data)
    p = _write(tmp_path, data[:sl.start] + edit(data[sl]) + data[sl.stop:])
    with pytest.raises(ReadError, match=match) as info:
        ecgcore.read(p)
    assert "bad.xml" in str(info.value) and "lead I" in str(info.value)


@pytest.mark.parametrize("change,match", [
    ((b'<Resolution units="uVperLsb">5<', b'<Resolution units="uVperLsb">0<'), "positive"),
    ((b'<Resolution units="uVperLsb">5<', b'<Resolution units="parsecs">5<'), "units"),
    ((b'<SampleRate units="Hz">500<', b'<SampleRate units="Hz">fast<'), "not a number"),
    ((b"<StripData>", b"<StripDatum>"), "malformed"),
])
def test_cardiosoft_bad_fields(tmp_path, change, match):
    data = _shared(*CS_FILE).read_bytes()
    i = data.index(b"<StripData>")
    p = _write(tmp_path, data[:i] + data[i:].replace(*change, 1))
    with pytest.raises(ReadError, match=match) as info:
        ecgcore.read(p)
    assert "bad.xml" in str(info.value)


def test_cardiosoft_without_strip(tmp_path):
    data = _shared(*CS_FILE).read_bytes()
    data = re.sub(rb"<StripData>.*</StripData>", b"", data, flags=re.S)
    with pytest.raises(ReadError, match="no StripData"):
        ecgcore.read(_write(tmp_path, data))


def test_cardiosoft_eight_lead_variant_derives_limb_leads(tmp_path):
    data = _shared(*CS_FILE).read_bytes()
    i = data.index(b"<StripData>")
    head, tail = data[:i], data[i:]
    for lead in (b"III", b"aVR", b"aVL", b"aVF"):
        tail = re.sub(rb'<WaveformData lead="' + lead + rb'">.*?</WaveformData>', b"", tail,
                      count=1, flags=re.S)
    rec = ecgcore.read(_write(tmp_path, head + tail))
    assert rec.derived == {"III", "aVR", "aVL", "aVF"} and rec.n_leads == 12
    np.testing.assert_allclose(rec["aVF"], rec["II"] - rec["I"] / 2, atol=1e-6)


def test_parse_int_list_vectorised_edge_cases(rng):
    v = rng.integers(-3000, 3000, 997)
    text = ",\n\t\t".join(map(str, v)) + ",\n"
    np.testing.assert_array_equal(cardiosoft.parse_int_list(text), v)
    assert cardiosoft.parse_int_list("  \n ").size == 0
    with pytest.raises(ReadError):
        cardiosoft.parse_int_list("1,2,nan,4")


def _tree(el):
    return (el.tag, (el.text or "").replace("\r\n", "\n"), sorted(el.attrib.items()),
            [_tree(c) for c in el])


@pytest.mark.parametrize("parts,tag", [(("ge_muse", MUSE_FILES[0]), "WaveFormData"),
                                       (CS_FILE, "WaveformData")])
def test_bulk_fast_path_builds_the_same_tree(parts, tag):
    data = _shared(*parts).read_bytes()
    assert xmlsafe._split_bulk(data, (tag,)) is not None           # the fast path applies
    fast = xmlsafe.parse_xml(data, path="f.xml", bulk_tags=(tag,))
    assert _tree(fast) == _tree(xmlsafe.parse_xml(data, path="f.xml"))


@pytest.mark.parametrize("doc", [
    b"<r><W>QUJD</W><!-- <W>ignored</W> --><W>REVG</W></r>",      # stub hidden in a comment
    b"<r><W>QU&amp;JD</W><W/><W a='1'>x</W></r>",                  # entity in a payload
    b"<r><W>caf\xc3\xa9</W></r>",                                    # non-ASCII payload
    b"<r><W>abc</W><Wx>y</Wx><W>d<b/>e</W></r>",                    # markup in a payload
])
def test_bulk_fast_path_falls_back_to_the_full_parse(doc):
    fast = xmlsafe.parse_xml(doc, path="f.xml", bulk_tags=("W",))
    assert _tree(fast) == _tree(xmlsafe.parse_xml(doc, path="f.xml"))


def test_bulk_fast_path_reports_errors_like_the_full_parse():
    doc = b"<r><W>QUJD</W><W>REVG</W>"
    with pytest.raises(ReadError, match="truncated"):
        xmlsafe.parse_xml(doc, path="t.xml", bulk_tags=("W",))


@pytest.mark.parametrize("enc,bom", [("utf-16-le", b"\xff\xfe"), ("utf-8", b"\xef\xbb\xbf"),
                                     ("iso-8859-1", b"")])
def test_iterparse_encodings_in_small_chunks(tmp_path, enc, bom, rng):
    decl = "UTF-16" if enc.startswith("utf-16") else enc
    vals = rng.integers(-500, 500, 300)
    body = "".join(f"<v n='{i}'>{v}é</v>" for i, v in enumerate(vals))
    p = tmp_path / "s.xml"
    p.write_bytes(bom + f'<?xml version="1.0" encoding="{decl}"?><r>{body}</r>'.encode(enc))
    got = [el.text for _, el in xmlsafe.iterparse_xml(p, chunk_size=37) if el.tag == "v"]
    assert got == [f"{v}é" for v in vals]
    assert [el.text for el in xmlsafe.parse_xml(p).iter("v")] == got

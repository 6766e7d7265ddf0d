"""HL7 aECG fast path: byte searches, whole lead sequences cut before expat.

The reader cuts plain lead ``<sequence>`` elements out of the document and
reads them from the bytes (ecgcore.io.hl7._split). These tests check that
against independent routes: bytes.find for the compiled searches, a whole
xml.etree parse of the document for the values, and the same reader with the
lead cut switched off for error messages on broken documents.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

import numpy as np
import pytest

from ecgcore.errors import ReadError
from ecgcore.io import hl7

NS = "{urn:hl7-org:v3}"
FILES = ("hl7_2003_ballot_Example_aECG.xml", "liryc_hl7aecg_example.xml")


def _shelf(shared_data, name):
    p = shared_data / "hl7_aecg" / name
    if not p.exists():
        pytest.skip(f"reference file {p} is absent")
    return p


def _etree_rhythm(doc: bytes) -> dict:
    """Independent oracle: lead -> mV samples of the first RHYTHM sequenceSet, by xml.etree.

    Every lead is taken as origin + digits x scale in uV (what the shelf
    files and the variants below hold) and converted to mV here.
    """
    root = ET.fromstring(doc)
    out = {}
    for series in root.iter(NS + "series"):
        if series.find(NS + "code").get("code") != "RHYTHM":
            continue
        sset = series.find(f"{NS}component/{NS}sequenceSet")
        for seq in sset.iterfind(f"{NS}component/{NS}sequence"):
            code = seq.find(NS + "code")
            code = None if code is None else code.get("code")
            if code is None or code.startswith("TIME_"):      # not a lead
                continue
            val = seq.find(NS + "value")
            o, s = val.find(NS + "origin"), val.find(NS + "scale")
            assert (o is None or o.get("unit") == "uV") and s.get("unit") == "uV"
            digits = np.array("".join(val.find(NS + "digits").itertext()).split(), float)
            origin = 0.0 if o is None else float(o.get("value"))
            out[hl7.lead_name_from_code(code)] = (origin + digits * float(s.get("value"))) * 1e-3
        return out
    raise AssertionError("no RHYTHM series")


def _no_block_cut(monkeypatch):
    """The reader with whole-sequence cutting off (digits are still cut)."""
    monkeypatch.setattr(hl7, "_SEQ_OPEN", b"<not-a-sequence-tag>")


# -- the compiled byte searches against bytes.find ------------------------------------------

def test_find_and_spans_match_bytes_find(rng):
    scan = pytest.importorskip("ecgcore.io._xmlscan")
    alphabet = np.frombuffer(b"<</>digts ab\n", np.uint8)
    for _ in range(300):
        data = alphabet[rng.integers(0, alphabet.size, rng.integers(0, 200))].tobytes()
        needle = alphabet[rng.integers(0, alphabet.size, rng.integers(1, 5))].tobytes()
        lo = int(rng.integers(-250, 250))
        hi = int(rng.integers(-250, 250))
        want = data.find(needle, lo, hi if hi != -1 else len(data))
        assert scan.find(data, needle, lo, hi) == want, (data, needle, lo, hi)
        assert scan.find(data, needle) == data.find(needle)
        # element spans: the bytes.find loop they replace
        got: list = []
        scan.element_spans(data, b"<d>", b"</d>", 0, len(data), got)
        ref, pos = [], 0
        while True:
            s = data.find(b"<d>", pos)
            if s < 0:
                break
            e = data.find(b"</d>", s + 3)
            if e < 0:
                break
            ref.append((s, s + 3, e, e + 4))
            pos = e + 4
        assert got == ref
    with pytest.raises(ValueError):
        scan.find(b"abc", b"")


def _ints_reference(text: bytes):
    """The scanner's rule written plainly: whitespace-separated [+-]digits (1-18 digits)
    as float64, or None when any token is something else."""
    toks = text.split()
    if not all(re.fullmatch(rb"[+-]?[0-9]{1,18}", t) for t in toks):
        return None
    return np.array([int(t) for t in toks], np.int64).astype(float)


def test_ints_at_matches_a_plain_reference_on_slices(rng):
    scan = pytest.importorskip("ecgcore.io._xmlscan")
    v = rng.integers(-10**6, 10**6, size=400)
    text = ("<x>" + " ".join(map(str, v)) + " \n</x>").encode()
    a, b = 3, text.index(b"</x>")
    np.testing.assert_array_equal(scan.ints_at(text, a, b), np.asarray(v, float))
    for lo, hi in ((0, len(text)), (a, a), (a + 1, b - 2), (b, a), (-5, 10**9)):
        got = scan.ints_at(text, lo, hi)
        ref = _ints_reference(text[lo:hi])    # ints_at clamps as slicing does
        if ref is None:
            assert got is None, (lo, hi)
        else:
            np.testing.assert_array_equal(got, ref)
    # random token soups: signs, junk, long numbers, tabs and CRs
    pieces = [b"12", b"-7", b"+3", b"1.5", b"x", b"9" * 19, b"-", b"0", b"\t", b"\r\n", b" "]
    for _ in range(300):
        soup = b" ".join(pieces[i] for i in rng.integers(0, len(pieces), rng.integers(0, 12)))
        got, ref = scan.ints_at(soup, 0, len(soup)), _ints_reference(soup)
        assert (got is None) == (ref is None), soup
        if ref is not None:
            np.testing.assert_array_equal(got, ref)


# -- values: the shelf files and variants against a whole xml.etree parse ----------------------

_VARIANTS = {
    "as_is": lambda d: d,
    # comments inside the lead sequences (allowed in the cut) and with markup (not cut)
    "comments": lambda d: d.replace(b'<value xsi:type="SLIST_PQ">',
                                    b'<value xsi:type="SLIST_PQ"><!-- a-b -->', 5)
                           .replace(b"</value>", b"</value><!-- <x/> -->", 3),
    # attributes in another order, self-closing and spaced tags: read, maybe not cut
    "attr_order": lambda d: re.sub(rb'<origin value="([^"]*)" unit="([^"]*)"\s*(/>|></origin>)',
                                   rb'<origin unit="\2"   value="\1" />', d, count=4),
    "scale_only": lambda d: re.sub(rb"<origin[^>]*?(/>|>\s*</origin>)\s*", b"", d, count=5),
    "origin_shift": lambda d: re.sub(rb'<origin value="0"', b'<origin value="-12.5"', d, count=7),
    "sequence_attr": lambda d: d.replace(b"<sequence>", b'<sequence classCode="OBS">', 6),
    "single_quotes": lambda d: re.sub(rb'<scale value="([^"]*)"', rb"<scale value='\1'", d, count=3),
    "lead_order": lambda d: _swap_first_leads(d),
    "dropped": lambda d: re.sub(rb"<component>\s*<sequence>\s*<code code=\"MDC_ECG_LEAD_V[35]\".*?"
                                rb"</sequence>\s*</component>", b"", d, flags=re.S),
    # a whole lead hidden in a CDATA section is text, not a lead
    "cdata": lambda d: d.replace(b"<sequence>", b'<sequence><![CDATA[<sequence><code code="MDC_ECG_'
                                 b'LEAD_V9"/></sequence>]]>', 1),
    "marker_literal": lambda d: d.replace(b"</sequence>", b'</sequence><sequence ecgcore_seq="0"/>', 1),
}


def _variant_file(tmp_path, shared_data, table, name, variant):
    """(bytes, path) of shelf file ``name`` changed by ``table[variant]``, written to tmp_path."""
    doc = table[variant](_shelf(shared_data, name).read_bytes())
    p = tmp_path / f"{variant}.xml"
    p.write_bytes(doc)
    return doc, p


def _swap_first_leads(d: bytes) -> bytes:
    blocks = list(re.finditer(rb"<component>\s*<sequence>\s*<code code=\"MDC_ECG_LEAD_.*?"
                              rb"</sequence>\s*</component>", d, re.S))
    a, b = blocks[0], blocks[3]
    return d[:a.start()] + b.group(0) + d[a.end():b.start()] + a.group(0) + d[b.end():]


@pytest.mark.parametrize("name", FILES)
@pytest.mark.parametrize("variant", sorted(_VARIANTS))
def test_values_match_etree(tmp_path, shared_data, monkeypatch, name, variant):
    doc, p = _variant_file(tmp_path, shared_data, _VARIANTS, name, variant)
    want = _etree_rhythm(doc)
    rec = hl7.read(p)
    assert list(rec.leads) == list(want)
    for lead, x in want.items():
        # the Record keeps float32: equal to its rounding
        np.testing.assert_allclose(rec[lead][:x.size], x, rtol=2e-7, atol=1e-9)
    # and identical, meta and median included, to the reader without the lead cut
    _no_block_cut(monkeypatch)
    ref = hl7.read(p, annotations=True)
    got = rec
    np.testing.assert_array_equal(got.signal, ref.signal)
    assert got.fs == ref.fs and got.leads == ref.leads
    np.testing.assert_array_equal(got.median.signal, ref.median.signal)
    assert got.median.leads == ref.median.leads
    assert {k: got.meta[k] for k in ref.meta} == ref.meta


# -- broken documents: the same error, whichever way the skeleton was cut ----------------------

_BROKEN = {
    "dup_attr": lambda d: d.replace(b'codeSystemName="MDC"', b'codeSystemName="MDC" codeSystemName="M"', 2),
    "dup_code": lambda d: re.sub(rb'<code code="(MDC_ECG_LEAD_II)"', rb'<code code="\1" code="X"', d, count=1),
    "bad_comment": lambda d: d.replace(b'<value xsi:type="SLIST_PQ">',
                                       b'<value xsi:type="SLIST_PQ"><!-- a--b -->', 1),
    "lt_in_attr": lambda d: d.replace(b'codeSystemName="MDC"', b'codeSystemName="M<C"', 1),
    "unbound_xsi": lambda d: re.sub(rb'\s+xmlns:xsi="[^"]*"', b"", d, count=1),
    "unbound_attr": lambda d: re.sub(rb'<code code="(MDC_ECG_LEAD_II)"', rb'<code code="\1" q:r="1"', d,
                                     count=1),
    "mismatch_after": lambda d: d.replace(b"</sequenceSet>", b"</sequenceSetX>", 1),
    "truncated": lambda d: d[:len(d) * 2 // 3],
    "bad_scale": lambda d: re.sub(rb'<scale value="[^"]*"', b'<scale value="1e"', d, count=1),
    "inf_origin": lambda d: re.sub(rb'<origin value="[^"]*"', b'<origin value="inf"', d, count=1),
    "bad_unit": lambda d: re.sub(rb'<scale value="([^"]*)" unit="[^"]*"', rb'<scale value="\1" unit="Hz"',
                                 d, count=1),
}


@pytest.mark.parametrize("name", FILES)
@pytest.mark.parametrize("variant", sorted(_BROKEN))
def test_broken_documents_same_error(tmp_path, shared_data, monkeypatch, name, variant):
    doc, p = _variant_file(tmp_path, shared_data, _BROKEN, name, variant)
    errors = []
    for cut in (True, False):
        if not cut:
            _no_block_cut(monkeypatch)
        for mode in ("lazy", True, False):
            with pytest.raises(ReadError) as ei:
                hl7.read(p, annotations=mode)
            errors.append(str(ei.value))
    assert len(set(errors)) == 1, errors
    assert str(p) in errors[0] or p.name in errors[0]
    try:
        ET.fromstring(doc)
        well_formed = True
    except ET.ParseError:
        well_formed = False
    # expat's verdict decides the kind of error: malformed XML, or a bad value
    assert ("malformed" in errors[0]) == (not well_formed), errors[0]

"""Format detection decides from content, never from the file name."""

import shutil

import pytest

import ecgcore
from ecgcore.io.sniff import sniff, xml_root

EXPECTED = {
    "wfdb/100.hea": "wfdb",
    "wfdb/100": "wfdb",                       # a record named without suffix
    "ptbxl/00001_lr.hea": "wfdb",
    "ge_muse/braveheart_example1.xml": "ge_muse",
    "ukb_cardiosoft/onyx_cardiosoft_v651_Ecg.XML": "cardiosoft",
    "hl7_aecg/hl7_2003_ballot_Example_aECG.xml": "hl7_aecg",
    "hl7_aecg/liryc_hl7aecg_example.xml": "hl7_aecg",
    "philips/129DYPRG.XML": "philips",
    "philips/3191723_ZZDEMOPTONLY_1-04_orig.xml": "philips",   # UTF-16LE with BOM
    "dicom/pydicom_waveform_ecg.dcm": "dicom",
    "scp_ecg/ecgtoolkit_Example.scp": "scp",
    "edf/contec_0000050.ECG.edf": "edf",
    "code15/exams_part_sample.hdf5": "code15",
    "pdf/cardiosoft_testmann.pdf": "pdf",
    "ecg_pages/clean/ecg_00001-0.png": "image",
}


@pytest.mark.parametrize("rel,fmt", sorted(EXPECTED.items()))
def test_sniff_real_files(shared_data, rel, fmt):
    assert sniff(shared_data / rel) == fmt


@pytest.mark.parametrize("rel,fmt", [(k, v) for k, v in sorted(EXPECTED.items())
                                     if "/" in k and not k.endswith((".hea", "100"))])
def test_sniff_ignores_misleading_suffix(shared_data, tmp_path, rel, fmt):
    dst = tmp_path / "renamed.txt"
    shutil.copy(shared_data / rel, dst)
    assert sniff(dst) == fmt


def test_sniff_errors(tmp_path):
    with pytest.raises(ecgcore.ReadError, match="no such file"):
        sniff(tmp_path / "nope.xml")
    with pytest.raises(ecgcore.ReadError, match="directory"):
        sniff(tmp_path)
    (tmp_path / "e").write_bytes(b"")
    with pytest.raises(ecgcore.ReadError, match="empty file"):
        sniff(tmp_path / "e")
    (tmp_path / "x.xml").write_bytes(b"<?xml version='1.0'?><html><body/></html>")
    with pytest.raises(ecgcore.ReadError, match="root element 'html'"):
        sniff(tmp_path / "x.xml")
    (tmp_path / "b.bin").write_bytes(bytes(range(256)) * 4)
    with pytest.raises(ecgcore.ReadError, match="unknown format"):
        ecgcore.read(tmp_path / "b.bin")
    # a WFDB signal file named instead of its record: the error says which header to read
    rec = ecgcore.simulate(1, seed=3)[0]
    ecgcore.write(rec, str(tmp_path / "r1.hea"), format="wfdb")
    with pytest.raises(ecgcore.ReadError, match=r"WFDB signal file: read the record by its header, r1\.hea"):
        ecgcore.read(tmp_path / "r1.dat")
    (tmp_path / "lone.dat").write_bytes(bytes(range(256)) * 4)
    with pytest.raises(ecgcore.ReadError, match="unknown format"):
        ecgcore.read(tmp_path / "lone.dat")


def test_xml_root_skips_prolog_comments_and_doctype():
    doc = (b'<?xml version="1.0" encoding="ISO-8859-1"?>\n<!-- c <RestingECG> -->\n'
           b'<!DOCTYPE RestingECG SYSTEM "restecg.dtd">\n<RestingECG><x/></RestingECG>')
    assert xml_root(doc) == "RestingECG"
    utf16 = '\ufeff<?xml version="1.0" encoding="utf-16"?><restingecgdata xmlns="x"/>'.encode("utf-16-le")
    assert xml_root(utf16) == "restingecgdata"
    assert xml_root(b"<hl7:AnnotatedECG xmlns:hl7='urn:hl7-org:v3'/>") == "AnnotatedECG"

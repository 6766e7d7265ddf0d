"""Container files (CODE-15% HDF5 parts) address each record as ``path::exam_id``."""

import numpy as np
import pytest

import ecgcore
from ecgcore.cli import main
from ecgcore.io import list_records
from ecgcore.io.code15 import read_code15


def test_list_and_read_addresses(shared_data):
    path = shared_data / "code15" / "exams_part_sample.hdf5"
    addrs = list_records(path)
    assert len(addrs) == 5 and all("::" in a for a in addrs)   # dummy row excluded
    exam = int(addrs[1].rsplit("::", 1)[1])
    rec = ecgcore.read(addrs[1])
    ref = read_code15(path, exam_id=exam)
    np.testing.assert_array_equal(rec.signal, ref.signal)
    assert rec.source == addrs[1] and rec.meta["exam_id"] == exam
    # a real recording in mV with a drifting baseline is not flagged as mis-scaled
    assert not rec.quality.flags["scale_suspect"]


def test_bad_addresses(shared_data, tmp_path):
    path = shared_data / "code15" / "exams_part_sample.hdf5"
    with pytest.raises(ecgcore.ReadError, match="not in this file"):
        ecgcore.read(f"{path}::12345")
    with pytest.raises(ecgcore.ReadError, match="not an integer"):
        ecgcore.read(f"{path}::abc")
    hea = shared_data / "ptbxl" / "00001_lr.hea"
    with pytest.raises(ecgcore.ReadError, match="hold one record"):
        ecgcore.read(f"{hea}::3")
    assert list_records(hea) == [str(hea)]


def test_info_and_preprocess_expand_containers(shared_data, tmp_path, capsys):
    path = shared_data / "code15" / "exams_part_sample.hdf5"
    assert main(["info", "--json", str(path)]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 5
    out = tmp_path / "ds"
    assert main(["preprocess", str(path), "--preset", "ecgfm", "--out", str(out),
                 "--workers", "1"]) == 0
    manifest = (out / "manifest.csv").read_text().splitlines()
    ids = {ln.split(",")[0] for ln in manifest[1:]}
    assert len(ids) == 5 and all(i.startswith("exams_part_sample/") for i in ids)

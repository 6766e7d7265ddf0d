"""Input expansion shared by every subcommand: folders yield their ECG records only.

A database folder holds more than records (``RECORDS``, checksum lists, metadata
CSVs, viewer settings). Those are skipped by their first bytes, counted on stderr,
never reported as failed records; files named explicitly are always read, so their
problem is reported.
"""

import csv
import json

import numpy as np

import ecgcore
from ecgcore.cli import main
from ecgcore.cli._common import expand_inputs


def _folder(tmp_path):
    recs = ecgcore.simulate(2, seed=3, rhythm="sinus")
    d = tmp_path / "db"
    (d / "sub").mkdir(parents=True)
    ecgcore.write(recs[0], str(d / "r1.hea"), format="wfdb")
    ecgcore.write(recs[1], str(d / "sub" / "r2.hea"), format="wfdb")
    # a numeric CSV array is an ECG record (its bytes say so), wherever it sits
    rng = np.random.default_rng(4)
    np.savetxt(d / "sub" / "arr.csv", rng.standard_normal((1000, 3)) * 0.2, delimiter=",",
               header="I,II,III", comments="")
    (d / "RECORDS").write_text("r1\nsub/r2\n")
    (d / "SHA256SUMS").write_text("0" * 64 + "  r1.dat\n")
    (d / "meta.csv").write_text('id,sex,rhythm\n1,"F","sinus"\n2,"M","AF"\n')
    (d / "r1.xws").write_text("-r r1 -a atr\n")
    return d


def test_folder_yields_records_and_counts_the_rest(tmp_path, capsys):
    d = _folder(tmp_path)
    got = expand_inputs([str(d)])
    assert sorted(p.replace(str(d) + "/", "") for p in got) == ["r1.hea", "sub/arr.csv", "sub/r2.hea"]
    err = capsys.readouterr().err
    assert "skipped 4 file(s)" in err and "not ECG records" in err
    assert expand_inputs([str(d)], quiet=True) == got and capsys.readouterr().err == ""


def test_named_non_ecg_file_is_still_read_and_reported(tmp_path, capsys):
    d = _folder(tmp_path)
    assert expand_inputs([str(d / "meta.csv")]) == [str(d / "meta.csv")]
    assert "skipped" not in capsys.readouterr().err


def test_measure_over_a_database_folder_reports_records_only(tmp_path, capsys):
    d = _folder(tmp_path)
    out = tmp_path / "m.csv"
    # the CSV array is an ECG without a sampling rate: reported; the non-ECG files are not
    assert main(["measure", str(d), "--out", str(out), "--workers", "1"]) == 1
    with open(out) as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2
    err_file = tmp_path / "m.errors.jsonl"
    e = [json.loads(line) for line in err_file.read_text().splitlines()]
    assert len(e) == 1 and e[0]["path"].endswith("arr.csv") and e[0]["error"] == "ReadError"
    assert "sampling rate is unknown" in e[0]["message"]
    # a non-ECG file named explicitly fails with its name and the reason
    assert main(["measure", str(d / "meta.csv"), "--out", str(tmp_path / "m2.csv"), "--workers", "1"]) == 1
    e = [json.loads(line) for line in (tmp_path / "m2.errors.jsonl").read_text().splitlines()]
    assert len(e) == 1 and e[0]["path"].endswith("meta.csv") and "unknown format" in e[0]["message"]


def test_convert_keeps_records_of_one_name_apart(tmp_path):
    recs = ecgcore.simulate(2, seed=6, rhythm="sinus")
    for i, sub in enumerate(("a", "b")):
        (tmp_path / "in" / sub).mkdir(parents=True)
        ecgcore.write(recs[i], str(tmp_path / "in" / sub / "r1.hea"), format="wfdb")
    out = tmp_path / "out"
    assert main(["convert", str(tmp_path / "in"), "--to", "npy", "--out", str(out), "--no-progress"]) == 0
    for i, sub in enumerate(("a", "b")):
        back = ecgcore.read(out / sub / "r1.npy")
        ref = ecgcore.read(tmp_path / "in" / sub / "r1.hea")
        np.testing.assert_array_equal(back.signal, ref.signal)
    assert not np.array_equal(ecgcore.read(out / "a" / "r1.npy").signal, ecgcore.read(out / "b" / "r1.npy").signal)


def test_convert_writes_each_record_of_a_container(tmp_path):
    from conftest import shared_path
    from ecgcore.io import list_records
    src = shared_path("data", "code15", "exams_part_sample.hdf5")
    addrs = list_records(str(src))
    out = tmp_path / "out"
    assert main(["convert", str(src), "--to", "npy", "--out", str(out), "--no-progress"]) == 0
    for a in addrs:
        exam = a.rsplit("::", 1)[1]
        np.testing.assert_array_equal(ecgcore.read(out / "exams_part_sample" / f"{exam}.npy").signal,
                                      ecgcore.read(a).signal)

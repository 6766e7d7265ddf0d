import json
import subprocess
import sys

import numpy as np
import pytest

import ecgcore
from ecgcore.cli import main


def test_version_and_help(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0
    assert ecgcore.__version__ in capsys.readouterr().out
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    for cmd in ("info", "convert", "simulate", "demo"):
        assert cmd in out


def test_usage_error_exits_2(capsys):
    with pytest.raises(SystemExit) as e:
        main(["info"])  # missing FILE
    assert e.value.code == 2
    with pytest.raises(SystemExit) as e:
        main(["no-such-command"])
    assert e.value.code == 2
    assert main([]) == 2


def test_python_dash_m_is_the_same_cli():
    out = subprocess.run([sys.executable, "-m", "ecgcore", "--version"], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == f"ecgcore {ecgcore.__version__}"


@pytest.fixture
def sim_dir(tmp_path):
    rc = main(["simulate", "--n", "3", "--out", str(tmp_path / "sim"), "--seed", "5"])
    assert rc == 0
    return tmp_path / "sim"


def test_simulate_info_roundtrip(sim_dir, capsys):
    recs = ecgcore.simulate(3, seed=5, rhythm="mixed", noise="mild")
    back = ecgcore.read(sim_dir / "sim_00001.hea")
    assert back.leads == ecgcore.STANDARD_12 and back.fs == 500
    # format 16 at the writer's gain: within one quantisation step
    assert np.max(np.abs(back.signal - recs[1].signal)) < 2e-3
    capsys.readouterr()
    assert main(["info", "--json", str(sim_dir)]) == 0
    lines = [json.loads(ln) for ln in capsys.readouterr().out.splitlines()]
    assert len(lines) == 3 and all(d["format"] == "wfdb" and d["fs"] == 500 for d in lines)
    assert lines[0]["quality"]["ok"] is True
    fid = [json.loads(ln) for ln in (sim_dir / "fiducials.jsonl").read_text().splitlines()]
    assert fid[1]["R"] == recs[1].meta["fiducials"]["R"].tolist()


def test_info_names_bad_files_and_exits_1(sim_dir, tmp_path, capsys):
    bad = tmp_path / "garbage.bin"
    bad.write_bytes(b"\x00\x01not an ecg" * 10)
    empty = tmp_path / "empty.xml"
    empty.write_bytes(b"")
    rc = main(["info", str(sim_dir / "sim_00000.hea"), str(bad), str(empty)])
    err = capsys.readouterr().err
    assert rc == 1
    assert "garbage.bin" in err and "unknown format" in err
    assert "empty.xml" in err and "empty file" in err


def test_convert_to_npy_roundtrip(sim_dir, tmp_path):
    out = tmp_path / "npy"
    assert main(["convert", str(sim_dir), "--to", "npy", "--out", str(out)]) == 0
    a = ecgcore.read(sim_dir / "sim_00002.hea")
    b = ecgcore.read(out / "sim_00002.npy")
    np.testing.assert_array_equal(a.signal, b.signal)
    assert b.fs == a.fs and b.leads == a.leads

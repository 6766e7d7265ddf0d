"""The import contract: fast, no torch, no numba compilation, one namespace."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest


def _run(code):
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, timeout=120)


def test_import_is_light_and_fast():
    out = _run("""
        import sys, time
        t = time.perf_counter(); import ecgcore; dt = time.perf_counter() - t
        heavy = [m for m in ("torch", "numba", "scipy", "h5py", "pydicom", "matplotlib")
                 if m in sys.modules]
        print(dt, heavy)
    """)
    assert out.returncode == 0, out.stderr
    dt, heavy = out.stdout.split(" ", 1)
    assert heavy.strip() == "[]", f"import ecgcore pulled in {heavy}"
    # generous against a loaded machine; the contract is 0.5 s
    assert float(dt) < 0.5 * 3


def test_public_names_resolve():
    import ecgcore
    assert ecgcore.STANDARD_12[6:] == ("V1", "V2", "V3", "V4", "V5", "V6")
    assert callable(ecgcore.simulate) and callable(ecgcore.read)
    assert issubclass(ecgcore.ReadError, ValueError)
    with pytest.raises(AttributeError):
        ecgcore.does_not_exist


def test_only_ecgcore_namespace_installed():
    """models/ and cli/ are installed as ecgcore.models and ecgcore.cli, nothing else."""
    import ecgcore.cli
    import ecgcore.models
    assert Path(ecgcore.models.__file__).parent.name == "models"
    assert Path(ecgcore.cli.__file__).parent.name == "cli"
    out = _run("import importlib.util as u; print(u.find_spec('models'), u.find_spec('cli'))")
    # running from a neutral directory: top-level 'models'/'cli' must not be importable
    res = subprocess.run([sys.executable, "-c",
                          "import importlib.util as u; print(u.find_spec('models') is None, "
                          "u.find_spec('cli') is None)"], capture_output=True, text=True,
                         cwd=os.path.expanduser("~") if os.path.isdir(os.path.expanduser("~")) else "/")
    assert res.stdout.split() == ["True", "True"], res.stdout + res.stderr

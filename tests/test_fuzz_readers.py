"""Seeded byte-level fuzzing of every reader behind ``ecgcore.read``.

Each format's real sample files (from ``../shared/data``; the ``.npy`` case is
written here from seeded data) are mutated with bit flips, interesting-byte
overwrites, truncations, chunk deletions and duplications and random byte
insertions, and read back. A mutated file must either read into a Record or
raise :class:`ecgcore.ReadError` *raised by the reader itself*: a ReadError
that ``ecgcore.read`` had to synthesise from another exception (its generic
"could not read ... file: KeyError ..." wrapper) counts as a failure, because
it means the reader leaked a bare exception.

Every format runs in a child process (this file is also a script), so a
crash in compiled code (HDF5, EDF, the Cython decoders) or a hang fails the
test for that format, with the seed, iteration and mutation needed to
reproduce it, instead of taking the test session down. Each read must finish
within ``ECGCORE_FUZZ_CALL_LIMIT`` seconds (default 5; a hang guard, not a
speed test) and the child within the subprocess timeout.

Readers written by other modules (HL7, Philips, DICOM, SCP, EDF, WFDB) are
fuzzed automatically when their module exists; absent ones are skipped.

Knobs: ``ECGCORE_FUZZ_ITER`` (mutations per format, default 250),
``ECGCORE_FUZZ_SEED`` (default 20261122). Reproduce one failure with::

    python tests/test_fuzz_readers.py FORMAT --seed S --iter N --only K
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path

import numpy as np
import pytest

HERE = Path(__file__).resolve()
ITER = int(os.environ.get("ECGCORE_FUZZ_ITER", "250"))
SEED = int(os.environ.get("ECGCORE_FUZZ_SEED", "20261122"))
CALL_LIMIT = float(os.environ.get("ECGCORE_FUZZ_CALL_LIMIT", "5"))

# format -> (reader module, list of sample "units"); a unit is the list of
# files (relative to shared/data) that must sit together, the first being
# the path given to ecgcore.read.
_WFDB_UNITS = [["wfdb/1.hea", "wfdb/1.dat"],
               ["ptbxl/00001_lr.hea", "ptbxl/00001_lr.dat"],
               ["wfdb/binformats.hea"] + [f"wfdb/binformats.d{i}" for i in range(10)],
               ["wfdb/JS00001.hea", "wfdb/JS00001.mat"],
               ["wfdb/flacformats.hea", "wfdb/flacformats.d0", "wfdb/flacformats.d1",
                "wfdb/flacformats.d2"]]
FORMATS = {
    "wfdb": ("ecgcore.io.wfdb", _WFDB_UNITS),
    "ge_muse": ("ecgcore.io.muse", [["ge_muse/braveheart_example1.xml"],
                                    ["ge_muse/braveheart_example2.xml"]]),
    "cardiosoft": ("ecgcore.io.cardiosoft", [["ukb_cardiosoft/onyx_cardiosoft_v651_Ecg.XML"]]),
    "code15": ("ecgcore.io.code15", [["code15/exams_part_sample.hdf5"]]),
    "npy": ("ecgcore.io.arrays", [["<generated npy>"]]),
    "npz": ("ecgcore.io.arrays", [["<generated npz>"]]),
    "csv": ("ecgcore.io.arrays", [["<generated csv>"]]),
    "hl7_aecg": ("ecgcore.io.hl7", [["hl7_aecg/liryc_hl7aecg_example.xml"],
                                    ["hl7_aecg/hl7_2003_ballot_Example_aECG.xml"]]),
    "philips": ("ecgcore.io.philips", [["philips/129DYPRG.XML"],
                                       ["philips/3191723_ZZDEMOPTONLY_1-04_orig.xml"]]),
    "dicom": ("ecgcore.io.dicom", [["dicom/pydicom_waveform_ecg.dcm"]]),
    "scp": ("ecgcore.io.scp", [["scp_ecg/ecgtoolkit_Example.scp"]]),
    "edf": ("ecgcore.io.edf", [["edf/contec_0000050.ECG.edf"]]),
}
_INTERESTING = np.frombuffer(b"\x00\xff\x7f\x80\x01<>&,-/=\"'0 9\n", dtype=np.uint8)


# -- mutation engine (pure numpy, deterministic for a given generator) ---------
def _pos(rng, n, head=2048):
    """A position biased to the first ``head`` bytes (headers) half of the time."""
    if n <= 0:
        return 0
    if rng.random() < 0.5:
        return int(rng.integers(0, min(n, head)))
    return int(rng.integers(0, n))


def mutate(data: bytes, rng: np.random.Generator) -> tuple[bytes, list[str]]:
    """Apply 1-3 random byte-level mutations; return the bytes and a description."""
    buf = bytearray(data)
    done = []
    for _ in range(int(rng.integers(1, 4))):
        n = len(buf)
        op = int(rng.integers(0, 6))
        if n == 0:
            op = 5
        if op == 0:                                     # bit flips
            k = int(rng.integers(1, 9))
            for _ in range(k):
                p = _pos(rng, n)
                buf[p] ^= 1 << int(rng.integers(0, 8))
            done.append(f"flip{k}")
        elif op == 1:                                   # interesting byte overwrite
            p = _pos(rng, n)
            k = int(rng.integers(1, 5))
            for j in range(p, min(n, p + k)):
                buf[j] = int(rng.choice(_INTERESTING))
            done.append(f"set@{p}x{k}")
        elif op == 2:                                   # truncation
            p = int(rng.integers(0, n))
            del buf[p:]
            done.append(f"trunc@{p}")
        elif op == 3:                                   # chunk deletion
            p = _pos(rng, n)
            k = int(rng.integers(1, min(256, n) + 1))
            del buf[p:p + k]
            done.append(f"del@{p}x{k}")
        elif op == 4:                                   # chunk duplication
            p = _pos(rng, n)
            k = int(rng.integers(1, min(256, n) + 1))
            q = _pos(rng, n)
            buf[q:q] = buf[p:p + k]
            done.append(f"dup@{p}x{k}->{q}")
        else:                                           # random insertion
            p = _pos(rng, n) if n else 0
            k = int(rng.integers(1, 17))
            buf[p:p] = rng.integers(0, 256, k, dtype=np.uint8).tobytes()
            done.append(f"ins@{p}x{k}")
    return bytes(buf), done


def _generated(kind: str, folder: Path, seed: int) -> list[Path]:
    """A seeded 12-lead array written as .npy (+ sidecar), .npz or CSV with a time column."""
    from ecgcore import Record
    from ecgcore.io.arrays import write_npy
    rng = np.random.default_rng(seed)
    sig = np.cumsum(rng.normal(0, 0.02, (12, 1000)), axis=1).astype(np.float32)
    leads = [f"V{i}" for i in range(1, 7)] + ["I", "II", "III", "aVR", "aVL", "aVF"]
    if kind == "npy":
        p = Path(write_npy(Record(sig, 500, leads), folder / "gen.npy"))
        return [p, Path(str(p) + ".json")]
    if kind == "npz":
        p = folder / "gen.npz"
        np.savez(p, signal=sig, fs=500.0, leads=np.array(leads))
        return [p]
    p = folder / "gen.csv"
    t = np.arange(sig.shape[1]) / 500.0
    np.savetxt(p, np.column_stack([t, sig.T]), delimiter=",", header="time," + ",".join(leads),
               comments="", fmt="%.6g")
    return [p]


# -- child process: fuzz one format, print one JSON line per finding -----------
def _child(fmt: str, data_dir: Path, n_iter: int, seed: int, only: int | None) -> int:
    import ecgcore
    from ecgcore.errors import ReadError
    from ecgcore.io import sniff

    rng = np.random.default_rng([seed, zlib.crc32(fmt.encode())])
    work = Path(tempfile.mkdtemp(prefix=f"ecgfuzz-{fmt}-"))
    units = []
    for unit in FORMATS[fmt][1]:
        if unit[0].startswith("<generated "):
            units.append(_generated(unit[0][11:-1], work, seed))
            continue
        dst = []
        for rel in unit:
            src = data_dir / rel
            if not src.exists():
                break
            shutil.copyfile(src, work / src.name)
            dst.append(work / src.name)
        else:
            units.append(dst)
    if not units:
        print(json.dumps({"skip": f"no sample files for {fmt}"}), flush=True)
        return 0
    originals = {p: p.read_bytes() for unit in units for p in unit}
    stats = {"ok": 0, "read_error": 0, "max_s": 0.0}
    for it in range(n_iter):
        unit = units[int(rng.integers(0, len(units)))]
        # header/first file half the time, any file of the unit otherwise
        target = unit[0] if rng.random() < 0.5 else unit[int(rng.integers(0, len(unit)))]
        blob, ops = mutate(originals[target], rng)
        kwargs = {}
        if fmt == "code15":
            kwargs = {"index": int(rng.integers(-1, 6))}
        elif fmt == "ge_muse":
            # most byte damage lands in the samples and the CRC stops it; reading
            # past the CRC exercises the rest of the reader too
            kwargs = {"crc": ("raise", "flag", "ignore")[int(rng.integers(0, 3))]}
        if only is not None and it != only:
            continue
        target.write_bytes(blob)
        what = {"iter": it, "file": target.name, "ops": ops}
        print(json.dumps({"begin": what}), flush=True)
        t0 = time.perf_counter()
        try:
            try:
                kw = kwargs if sniff(str(unit[0])) == fmt else {}
            except ReadError:
                kw = {}
            rec = ecgcore.read(str(unit[0]), **kw)
            if not isinstance(rec, ecgcore.Record):
                print(json.dumps({"fail": what, "why": f"returned {type(rec).__name__}"}), flush=True)
            else:
                stats["ok"] += 1
        except ReadError as exc:
            cause = exc.__cause__
            if (cause is not None and not isinstance(cause, ReadError)
                    and str(exc.reason).startswith("could not read")):
                print(json.dumps({"fail": what, "why": f"reader leaked {type(cause).__name__}: "
                                  f"{str(cause)[:300]}"}), flush=True)
            else:
                stats["read_error"] += 1
        except BaseException as exc:  # noqa: BLE001 - the point is to catch everything
            print(json.dumps({"fail": what, "why": f"{type(exc).__name__}: {str(exc)[:300]}"}),
                  flush=True)
        dt = time.perf_counter() - t0
        stats["max_s"] = max(stats["max_s"], dt)
        if dt > CALL_LIMIT:
            print(json.dumps({"fail": what, "why": f"read took {dt:.2f} s > {CALL_LIMIT} s"}),
                  flush=True)
        target.write_bytes(originals[target])
    print(json.dumps({"stats": stats}), flush=True)
    shutil.rmtree(work, ignore_errors=True)
    return 0


# -- pytest side ----------------------------------------------------------------
def _present(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_fuzz_reader(fmt, shared_data):
    module = FORMATS[fmt][0]
    if not _present(module):
        pytest.skip(f"reader module {module} is not present yet")
    env = dict(os.environ, PYTHONFAULTHANDLER="1")
    timeout = max(120.0, ITER * CALL_LIMIT * 0.2)
    try:
        proc = subprocess.run([sys.executable, str(HERE), fmt, "--data", str(shared_data),
                               "--iter", str(ITER), "--seed", str(SEED)],
                              capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout.decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        last = [ln for ln in out.splitlines() if ln.startswith('{"begin"')][-1:]
        pytest.fail(f"{fmt}: fuzz child hung > {timeout:.0f} s; last mutation {last}")
    lines = [json.loads(ln) for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if any("skip" in ln for ln in lines):
        pytest.skip(next(ln["skip"] for ln in lines if "skip" in ln))
    fails = [ln for ln in lines if "fail" in ln]
    stats = next((ln["stats"] for ln in lines if "stats" in ln), None)
    if stats is None:
        begun = [ln["begin"] for ln in lines if "begin" in ln]
        pytest.fail(f"{fmt}: fuzz child died (rc {proc.returncode}) at mutation "
                    f"{begun[-1] if begun else None}; reproduce with `python {HERE.name} {fmt} "
                    f"--seed {SEED} --iter {ITER} --only "
                    f"{begun[-1]['iter'] if begun else 0}`\n{proc.stderr[-3000:]}")
    msg = "\n".join(f"iter {f['fail']['iter']} {f['fail']['file']} {f['fail']['ops']}: {f['why']}"
                    for f in fails[:15])
    assert not fails, (f"{fmt}: {len(fails)} of {ITER} mutated files broke the contract "
                       f"(seed {SEED}):\n{msg}")
    # The fuzzing must have exercised both outcomes, or it tested nothing.
    assert stats["ok"] + stats["read_error"] == ITER
    assert stats["read_error"] > 0, f"{fmt}: no mutation was rejected; is the reader checking input?"


def test_mutate_is_deterministic_and_changes_bytes():
    data = bytes(range(256)) * 8
    a = [mutate(data, np.random.default_rng(s)) for s in range(50)]
    b = [mutate(data, np.random.default_rng(s)) for s in range(50)]
    assert a == b
    assert sum(m[0] != data for m in a) >= 45   # a duplicated chunk may reproduce the input


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description="fuzz one ecgcore reader (child of the pytest test)")
    ap.add_argument("format", choices=list(FORMATS))
    ap.add_argument("--data", default=str(HERE.parent.parent.parent / "shared" / "data"))
    ap.add_argument("--iter", type=int, default=ITER)
    ap.add_argument("--seed", type=int, default=SEED)
    ap.add_argument("--only", type=int, default=None, help="run only this iteration")
    a = ap.parse_args()
    sys.exit(_child(a.format, Path(a.data), a.iter, a.seed, a.only))

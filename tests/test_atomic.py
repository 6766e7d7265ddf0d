"""ecgcore._atomic: the one temporary-file-then-rename writer every output goes through."""

import os
import threading

import numpy as np
import pytest

from ecgcore._atomic import TMP_TAG, atomic_open, atomic_path, temporary_name


def _leftovers(d):
    return sorted(f for f in os.listdir(d) if TMP_TAG in f)


def test_write_appears_whole(tmp_path):
    p = tmp_path / "out.bin"
    data = np.random.default_rng(0).integers(0, 256, 100_000, dtype=np.uint8).tobytes()
    with atomic_open(p, "wb") as f:
        f.write(data[:50_000])
        # nothing under the final name while the write is in progress
        assert not p.exists()
        assert len(_leftovers(tmp_path)) == 1
        f.write(data[50_000:])
    assert p.read_bytes() == data
    assert _leftovers(tmp_path) == []


@pytest.mark.parametrize("fsync", [False, True])
def test_failed_write_keeps_old_file_and_removes_temporary(tmp_path, fsync):
    p = tmp_path / "table.csv"
    p.write_text("old\n")
    with pytest.raises(RuntimeError, match="disk gone"):
        with atomic_open(p, "w", fsync=fsync, encoding="utf-8") as f:
            f.write("new, half written")
            raise RuntimeError("disk gone")
    assert p.read_text() == "old\n"
    assert _leftovers(tmp_path) == []


def test_keyboard_interrupt_removes_temporary(tmp_path):
    p = tmp_path / "x.npy"
    with pytest.raises(KeyboardInterrupt):
        with atomic_path(p, suffix=".npy") as tmp:
            assert tmp.endswith(".npy") and TMP_TAG in tmp
            np.save(tmp, np.arange(5))
            raise KeyboardInterrupt
    assert not p.exists() and _leftovers(tmp_path) == []


def test_nested_pair_inner_file_moves_first(tmp_path, monkeypatch):
    order = []
    real = os.replace

    def spy(a, b):
        order.append(os.path.basename(b))
        real(a, b)

    monkeypatch.setattr(os, "replace", spy)
    with atomic_open(tmp_path / "r.hea", "w") as h, atomic_open(tmp_path / "r.dat", "wb") as d:
        d.write(b"\x01\x02")
        h.write("r 1 500 1\n")
    assert order == ["r.dat", "r.hea"]
    assert (tmp_path / "r.dat").read_bytes() == b"\x01\x02"


def test_temporary_names_unique_across_threads(tmp_path):
    names = []
    lock = threading.Lock()

    def work():
        for _ in range(50):
            n = temporary_name(tmp_path / "page.png")
            with lock:
                names.append(n)

    ts = [threading.Thread(target=work) for _ in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert len(set(names)) == len(names) == 200
    assert all(os.path.dirname(n) == str(tmp_path) for n in names)


def test_killed_writer_leftover_is_found_by_resume_cleanup(tmp_path):
    from ecgcore.pipeline.shards import remove_temporaries, write_npy_atomic
    # a writer killed mid-write leaves its temporary name behind
    open(temporary_name(tmp_path / "shard-000001.npy"), "wb").close()
    write_npy_atomic(str(tmp_path / "shard-000000.npy"), np.arange(6, dtype=np.float32).reshape(2, 3))
    assert len(_leftovers(tmp_path)) == 1
    assert remove_temporaries(str(tmp_path)) == 1
    assert _leftovers(tmp_path) == []
    np.testing.assert_array_equal(np.load(tmp_path / "shard-000000.npy"),
                                  np.arange(6, dtype=np.float32).reshape(2, 3))


def test_parts_writer_row_mismatch_leaves_nothing(tmp_path):
    from ecgcore.pipeline.shards import write_npy_parts_atomic
    p = str(tmp_path / "s.npy")
    with pytest.raises(ValueError, match="parts hold 2 rows"):
        write_npy_parts_atomic(p, [np.zeros((2, 3), np.float32)], (3, 3), np.float32)
    assert os.listdir(tmp_path) == []
    rng = np.random.default_rng(1)
    a, b = rng.standard_normal((2, 3)), rng.standard_normal((1, 3))
    write_npy_parts_atomic(p, [a, b], (3, 3), np.float32)
    np.testing.assert_array_equal(np.load(p), np.concatenate([a, b]).astype(np.float32))

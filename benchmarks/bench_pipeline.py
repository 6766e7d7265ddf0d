"""Side-by-side speed of the presets and the pipeline (one run, ratios printed).

    python benchmarks/bench_pipeline.py [--records 2000] [--files 2000]

Measures, on 12-lead 10 s 500 Hz records (one core unless stated):

1. the ``ecgfm`` preset on in-memory records (``preprocess_batch``), records/s,
   and a plain float32 memory copy of the same bytes (the hardware ceiling);
2. the ``ecgfounder`` preset against its scipy reference chain (iirnotch + butter
   (b, a) filtfilt, medfilt, whole-array z-score) in two forms, both ratios printed:
   as published (per-channel loops, ``scipy_ecgfounder_published``; the target's
   reference) and vectorised over the leads (``scipy_ecgfounder_vectorised``);
3. ``ecgcore preprocess`` end to end from WFDB files (format 16), with
   ``--workers 1`` and ``--workers 2``: wall-clock rates, and records/s/core
   from the CPU time the chunks report (``cpu_s`` in the shard sidecars), which
   a machine shared with other jobs does not inflate the way it does the wall;
   the engine's throughput between the first chunk's start and the last
   chunk's end (the sidecars' wall-clock ``start``/``end``: start-up and
   imports, a fixed cost per run, left out) and the parent's CPU seconds while
   the workers ran (``engine_cpu_s``: the collection loop; near zero unless
   the workers wait on the parent; it includes appending each chunk's
   manifest rows, which the workers render). ``--warmup N`` (default 1) first runs
   the CLI N times untimed, so the timed runs do not include the VM's first-touch
   cost of the output pages (see ``--help``). ``--cli-repeat N`` runs the pair N times,
   alternating the order, and prints the worst and median rates;
   ``--cli-only`` skips sections 1-2; ``--breakdown N`` then also times each
   stage of a worker's streaming loop in this process (N passes: CPU
   microseconds per record for the header, the signal file, decoding,
   preparing, quality flags, preset steps, shard write and manifest row,
   against ``process_chunk`` on the same files). Both runs pay the same fixed start-up S
   (about 0.3 s of interpreter and imports, 1 s while numba was imported: in the process with
   ``--workers 1``, in the pool's forkserver with 2), so the wall-clock ratio
   is (S + N c) / (S + N c / 2) for N records of c seconds: with the default
   2,000 files it measures mostly S; it nears 1.8 only from about 8 S / c
   records (30,000 and more), whereas the first-chunk-start to last-chunk-end
   ratio measures the record work alone.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402

import ecgcore  # noqa: E402
from ecgcore import presets  # noqa: E402
from ecgcore.record import STANDARD_12, Record  # noqa: E402


def best_of(fn, repeat=3, clock=time.perf_counter):
    """Shortest of ``repeat`` runs of ``fn`` on ``clock`` (seconds)."""
    best = float("inf")
    for _ in range(repeat):
        t = clock()
        fn()
        best = min(best, clock() - t)
    return best


def best_of_cpu(fn, repeat=3):
    """:func:`best_of` in this process's CPU time (other jobs on a shared machine count less)."""
    return best_of(fn, repeat, time.process_time)


def records(n, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 12, 5000), dtype=np.float32)
    x *= 0.3
    x += np.sin(np.linspace(0, 60, 5000, dtype=np.float32))  # some low-frequency content
    return x


def bench_memcopy(x):
    dst = np.empty_like(x)
    t = best_of(lambda: np.copyto(dst, x))
    return x.shape[0] / t


def bench_ecgfm(x, batch=64):
    def run():
        for a in range(0, x.shape[0], batch):
            presets.preprocess_batch(x[a:a + batch], 500, "ecgfm")
    run()  # warm-up (kernel load)
    return x.shape[0] / best_of(run)


def scipy_ecgfounder_published(x, fs=500):
    """ECGFounder's official chain in the published form (facts/ecgfounder_ccta.md section 1.4:
    ``dataset.py`` + ``util.filter_bandpass``): every ``filtfilt`` and ``medfilt`` loops over
    the channels into ``zeros_like`` buffers, on float64 as ``wfdb.rdsamp`` returns it."""
    from scipy import signal as ss
    x = np.nan_to_num(x.astype(np.float64))
    b, a = ss.iirnotch(50, 30, fs=fs)
    y = np.zeros_like(x)
    for c in range(x.shape[0]):
        y[c] = ss.filtfilt(b, a, x[c])
    b, a = ss.butter(N=4, Wn=[0.67, 40], btype="bandpass", fs=fs)
    for c in range(y.shape[0]):
        y[c] = ss.filtfilt(b, a, y[c])
    base = np.zeros_like(y)
    k = int(0.4 * fs) + 1
    for c in range(y.shape[0]):
        base[c] = ss.medfilt(y[c], k)
    y = y - base
    return ((y - np.mean(y)) / (np.std(y) + 1e-8)).astype(np.float32)


def scipy_ecgfounder_vectorised(x, fs=500):
    """The same steps with each scipy call over all leads at once (not the published form:
    20-25% faster than it, so ratios against it understate ours)."""
    from scipy import signal as ss
    x = np.nan_to_num(x.astype(np.float64))
    b, a = ss.iirnotch(50, 30, fs=fs)
    x = ss.filtfilt(b, a, x, axis=-1)
    b, a = ss.butter(4, [0.67, 40], btype="bandpass", fs=fs)
    x = ss.filtfilt(b, a, x, axis=-1)
    k = int(0.4 * fs) + 1
    x = x - np.stack([ss.medfilt(r, k) for r in x])
    return ((x - x.mean()) / (x.std() + 1e-8)).astype(np.float32)


def bench_ecgfounder(x, n_ref=8, batch=32):
    """Records/s of the preset and of both scipy references (CPU time, so other jobs on a
    shared machine inflate the ratios less), and the largest difference to the published one."""
    ref = x[:n_ref]
    t_pub = best_of_cpu(lambda: [scipy_ecgfounder_published(r) for r in ref], repeat=2)
    t_vec = best_of_cpu(lambda: [scipy_ecgfounder_vectorised(r) for r in ref], repeat=2)

    def run():
        for a in range(0, x.shape[0], batch):
            presets.preprocess_batch(x[a:a + batch], 500, "ecgfounder")
    run()
    t = best_of_cpu(run, repeat=2)
    ours = presets.preprocess_batch(ref, 500, "ecgfounder")[:, 0]
    err = max(float(np.abs(ours[i] - scipy_ecgfounder_published(ref[i])).max()) for i in range(n_ref))
    return x.shape[0] / t, n_ref / t_pub, n_ref / t_vec, err


def write_wfdb_files(folder, n):
    x = records(min(n, 200), seed=1)
    for i in range(n):
        rec = Record(x[i % x.shape[0]], 500, STANDARD_12)
        ecgcore.write(rec, os.path.join(folder, f"r{i:06d}"), format="wfdb")


def bench_cli(folder, workers, chunk, tmp=None):
    """One ``ecgcore preprocess`` run in a fresh process.

    Returns records/s (wall, start to exit), records/s in the engine, the
    summed chunk timings, the records written, the summed CPU seconds of the
    chunks (``cpu_s`` in each shard sidecar, whichever process ran them), the
    CPU seconds of the CLI process itself (with ``--workers 1`` that is the
    whole run, start-up and imports included) and the load average at the start.
    """
    out = tempfile.mkdtemp(prefix="bench_ds_", dir=tmp)
    os.rmdir(out)
    cmd = [sys.executable, "-m", "ecgcore", "preprocess", folder, "--preset", "ecgfm",
           "--out", out, "--workers", str(workers), "--chunk-size", str(chunk), "--no-progress"]
    load = os.getloadavg()[0]
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    subprocess.run(cmd, check=True, stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - t
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    with open(os.path.join(out, "summary.json")) as f:
        s = json.load(f)
    chunk_cpu = 0.0
    steady = [0, 0.0]  # records and CPU seconds of the chunks after chunk 0
    span = [float("inf"), float("-inf")]  # first chunk start, last chunk end (epoch s)
    for name in os.listdir(out):
        if name.startswith("shard-") and name.endswith(".json"):
            with open(os.path.join(out, name)) as f:
                side = json.load(f)
            cpu = side["timings"].get("cpu_s", 0.0)
            chunk_cpu += cpu
            span[0] = min(span[0], side["timings"].get("start", float("nan")))
            span[1] = max(span[1], side["timings"].get("end", float("nan")))
            if side["chunk"] != 0:  # chunk 0 of --workers 1 paid the imports before the warm-up
                steady[0] += len(side["records"])
                steady[1] += cpu
    shutil.rmtree(out)
    proc_cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
    extra = {"span_rate": s["n_records_ok"] / (span[1] - span[0]) if span[1] > span[0]
             else float("nan"),
             "engine_cpu_s": s["timings"].get("engine_cpu_s", float("nan")),
             "manifest_cpu_s": s["timings"].get("manifest_cpu_s", float("nan"))}
    return (s["n_records_ok"] / wall, s["timings"]["records_per_s"], s["timings_sum_s"],
            s["n_records_ok"], chunk_cpu, proc_cpu, load,
            steady[0] / steady[1] if steady[1] else float("nan"), extra)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--records", type=int, default=1024)
    ap.add_argument("--files", type=int, default=2000)
    ap.add_argument("--chunk", type=int, default=250)
    ap.add_argument("--skip-cli", action="store_true")
    ap.add_argument("--cli-only", action="store_true", help="only section 3")
    ap.add_argument("--cli-repeat", type=int, default=1,
                    help="run the --workers 1 / 2 pair this many times (order alternating)")
    ap.add_argument("--breakdown", type=int, default=0, metavar="N",
                    help="also time each stage of a worker's streaming loop in this process, "
                         "N passes over the files (CPU time per record)")
    ap.add_argument("--warmup", type=int, default=1, metavar="N",
                    help="untimed `ecgcore preprocess --workers 2` runs before the timed ones "
                         "(default 1): a VM's first writes into memory it has not touched "
                         "recently pay the host's page faults, 2-3x the steady cost of the "
                         "shard writes on the development VM; 0 times the cold first run too")
    ap.add_argument("--tmp", default=None,
                    help="folder for the WFDB inputs and the datasets (e.g. /dev/shm to take "
                         "the disk out of the measurement)")
    args = ap.parse_args()
    print(f"ecgcore {ecgcore.__version__}, numpy {np.__version__}, {os.cpu_count()} CPUs")
    if not args.cli_only:
        bench_kernels(args)
    if args.skip_cli:
        return
    bench_section3(args)


def bench_kernels(args):
    x = records(args.records)
    mc = bench_memcopy(x)
    print(f"plain float32 copy of 12x5000 records: {mc:10.0f} records/s")
    fm = bench_ecgfm(x)
    print(f"ecgfm preset (preprocess_batch):      {fm:10.0f} records/s/core "
          f"= {fm / mc:.2f} x memory copy")
    ours, pub, vec, err = bench_ecgfounder(x[:256])
    print(f"ecgfounder preset:                    {ours:10.0f} records/s/core (CPU time) = "
          f"{ours / mc:.3f} x memory copy")
    print(f"    vs the published scipy chain (per-channel loops): {pub:6.0f} records/s -> "
          f"{ours / pub:.1f}x (max |diff| {err:.2e})")
    print(f"    vs the same chain vectorised over leads:         {vec:6.0f} records/s -> "
          f"{ours / vec:.1f}x")


def bench_section3(args):
    folder = tempfile.mkdtemp(prefix="bench_wfdb_", dir=args.tmp)
    t = time.perf_counter()
    write_wfdb_files(folder, args.files)
    print(f"(wrote {args.files} WFDB records in {time.perf_counter() - t:.1f} s)")
    per_core = {1: [], 2: []}
    ratios = []
    try:
        for _ in range(max(0, args.warmup)):
            t = time.perf_counter()
            bench_cli(folder, 2, args.chunk, args.tmp)
            print(f"(untimed warm-up run, --workers 2: {time.perf_counter() - t:.1f} s)")
        for rep in range(max(1, args.cli_repeat)):
            res = {}
            for w in ((1, 2) if rep % 2 == 0 else (2, 1)):
                res[w] = _cli_line(folder, w, args)
                per_core[w].append(res[w]["per_core"])
            ratios.append((res[2]["wall"] / res[1]["wall"], res[2]["engine"] / res[1]["engine"],
                           res[2]["span"] / res[1]["span"]))
            print(f"2 workers / 1 worker: {ratios[-1][0]:.2f}x wall, {ratios[-1][1]:.2f}x engine, "
                  f"{ratios[-1][2]:.2f}x first-chunk-start to last-chunk-end (load average "
                  f"{res[1]['load']:.2f} / {res[2]['load']:.2f} at the starts, on "
                  f"{os.cpu_count()} CPUs)")
        if args.breakdown:
            bench_breakdown(folder, args.breakdown, args.chunk, args.tmp)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    if len(ratios) > 1:
        for w in (1, 2):
            v = sorted(per_core[w])
            print(f"--workers {w}, {len(v)} runs: chunk CPU records/s/core worst {v[0]:.0f}, "
                  f"median {v[len(v) // 2]:.0f}, best {v[-1]:.0f}")
        sp = sorted(r[2] for r in ratios)
        print(f"2 / 1 workers first-chunk-start to last-chunk-end: worst {sp[0]:.2f}x, "
              f"median {sp[len(sp) // 2]:.2f}x, best {sp[-1]:.2f}x")


def bench_breakdown(folder, passes, chunk, tmp=None):
    """CPU microseconds per record of each stage of the light-preset worker loop.

    Replays ``worker._stream_chunk`` on the WFDB files in this process (after
    one warm-up pass, as the forkserver does, and with the worker's malloc
    settings), timing each stage with ``time.process_time`` (clock calls
    included: about 1 µs a record in all): header = the ``.hea`` read and its
    tokenising, signal file = open + pread of the ``.dat``, decode = the
    Cython decoding and the Record, prepare = ``presets._prepare``, then the
    quality flags, the preset steps, the shard append (the page-cache copy),
    the manifest row; "whole chunk" is ``process_chunk`` itself over the same
    files (sidecar, rendering and the shard's rename included).
    """
    import glob
    from ecgcore.io import wfdb as W
    from ecgcore.pipeline import worker, _preload  # noqa: F401
    from ecgcore.pipeline.shards import ShardWriter
    from ecgcore.pipeline.discover import items_from_paths, sort_items

    items = [tuple(it) for it in sort_items(items_from_paths(sorted(glob.glob(
        os.path.join(folder, "*.hea")))))]
    p = presets.get_preset("ecgfm")
    _, leads_n, length = presets.output_shape(p)
    steps, leads = p["steps"], p["leads"]
    out = tempfile.mkdtemp(prefix="bench_bd_", dir=tmp)
    worker._tune_malloc()
    clk = time.process_time
    names = ("header", "signal file", "decode + Record", "prepare", "quality flags",
             "preset steps", "shard write", "manifest row")

    def one_pass():
        acc = [0.0] * len(names)
        for c in range(0, len(items), chunk):
            with ShardWriter(os.path.join(out, f"s{c}.npy"), (leads_n, length), "float32") as w:
                offset = 0
                for item in items[c:c + chunk]:
                    hea = item[0]
                    t0 = clk()
                    raw = W._read_raw(hea)
                    name, n, fname, key, comments, bt, bd = W._wfdb.scan_header(raw, 256)
                    plan = W._FAST_PLANS.get(key)
                    t1 = clk()
                    buf = W._read_bytes(os.path.join(os.path.dirname(hea), fname), fname, hea,
                                        plan.offset, W._bytes_needed(plan.fmt, n * plan.tspf))
                    t2 = clk()
                    rec = W._planned_record(plan, buf, hea, n, name, comments, bt, bd)
                    t3 = clk()
                    x, fs, crec = presets._prepare(rec, p)
                    t4 = clk()
                    q = worker._quality(x[None], leads, fs)[0]
                    t5 = clk()
                    res = presets._run_steps(x[None], fs, steps, where=hea)[0]
                    t6 = clk()
                    w.append(res)
                    t7 = clk()
                    worker._record_row(item, offset, res.shape[0], fs, "wfdb", n,
                                       worker._all_flags(q, crec))
                    offset += res.shape[0]
                    t8 = clk()
                    for k, (a, b) in enumerate(((t0, t1), (t1, t2), (t2, t3), (t3, t4), (t4, t5),
                                                (t5, t6), (t6, t7), (t7, t8))):
                        acc[k] += b - a
        return [a / len(items) * 1e6 for a in acc]

    def whole():
        # a fresh folder, as a run has: replacing the last pass's shards would add
        # the freeing of their pages (about 15 µs a record on tmpfs)
        shutil.rmtree(os.path.join(out, "whole"), ignore_errors=True)
        os.makedirs(os.path.join(out, "whole"))
        t = clk()
        for i, c in enumerate(range(0, len(items), chunk)):
            worker.process_chunk({"chunk": i, "items": items[c:c + chunk], "preset": p,
                                  "out_dir": os.path.join(out, "whole"), "dtype": "float32",
                                  "shape": (leads_n, length), "quality": "basic",
                                  "render": True})
        return (clk() - t) / len(items) * 1e6

    try:
        for it in items:
            W.read(it[0])  # every layout's plan
        one_pass()
        whole()
        runs = [one_pass() for _ in range(passes)]
        chunks = [whole() for _ in range(passes)]
    finally:
        shutil.rmtree(out, ignore_errors=True)
    med = [sorted(r[k] for r in runs)[len(runs) // 2] for k in range(len(names))]
    print(f"per-record CPU of the worker loop, median of {passes} passes over {len(items)} "
          f"files (load average {os.getloadavg()[0]:.2f}):")
    for nm, v in zip(names, med):
        print(f"    {nm:16s} {v:6.1f} us")
    print(f"    {'sum':16s} {sum(med):6.1f} us; whole chunk (process_chunk) "
          f"{sorted(chunks)[len(chunks) // 2]:.1f} us")


def _cli_line(folder, w, args):
    wall_rate, engine_rate, sums, n, chunk_cpu, proc_cpu, load, steady, extra = bench_cli(
        folder, w, args.chunk, args.tmp)
    busy = sum(sums.values())
    print(f"ecgcore preprocess --workers {w} (load average {load:.2f}): "
          f"{wall_rate:6.0f} records/s wall (process start to exit), {engine_rate:6.0f} "
          f"records/s in the engine, {extra['span_rate']:6.0f} from first chunk start to last "
          f"chunk end; chunk CPU {chunk_cpu:.2f} s = "
          f"{n / chunk_cpu:.0f} records/s/core ({steady:.0f} without chunk 0); "
          f"summed chunk time read "
          f"{sums['read_s']:.2f} s + preprocess {sums['preprocess_s']:.2f} s + write "
          f"{sums['write_s']:.2f} s = {n / busy:.0f} records/s per busy worker")
    print(f"    parent CPU while the engine ran {extra['engine_cpu_s']:.3f} s"
          + (" (the chunks run in it, after the same warm-up the pool's forkserver does)"
             if w == 1 else " (collecting results)")
          + f", finishing the manifest after the last chunk {extra['manifest_cpu_s']:.3f} s "
          f"= {extra['manifest_cpu_s'] / n * 1e6:.1f} us/record")
    if w == 1:
        print(f"    whole --workers 1 run in CPU time (interpreter start, imports, "
              f"planning, manifest included): {proc_cpu:.2f} s = "
              f"{n / proc_cpu:.0f} records/s/core")
    return {"wall": wall_rate, "engine": engine_rate, "span": extra["span_rate"],
            "load": load, "per_core": n / chunk_cpu}

if __name__ == "__main__":
    main()

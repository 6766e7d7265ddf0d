"""Forward throughput, peak memory and achieved GFLOP/s of the ecgcore.models backbones (float32, CPU).

Usage::

    python benchmarks/bench_models.py                 # all backbones, prints a markdown table
    python benchmarks/bench_models.py --quick         # smaller batches
    python benchmarks/bench_models.py --one ecgfm 8   # one measurement (used internally)

Each (model, batch) runs in a fresh subprocess so that the peak resident
memory (ru_maxrss: weights + activations + the interpreter) belongs to it
alone.  FLOPs are counted with torch.utils.flop_counter on one forward pass;
GFLOP/s is FLOPs / median wall time.  The reference is a plain float32
matrix product of the ECG-FM feed-forward shape ((batch*156) x 768 @ 768 x 3072)
timed in the same process.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

CASES = [  # name, input shape per sample, batches (full), batches (quick)
    ("ecgfm", (12, 2500), [1, 16], [1, 4]),
    ("net1d", (12, 5000), [1, 64], [1, 8]),
    ("fcn_lvh", (8, 400), [1, 64], [1, 64]),
    ("resnet34_1d", (8, 400), [1, 64], [1, 64]),
    ("resnet34d", (3, 384, 384), [1, 8], [1, 4]),
    ("efficientnet_b0", (3, 384, 384), [1, 8], [1, 4]),
]


def _time(fn, min_time=2.0, min_reps=3):
    fn()  # warm-up
    ts = []
    t_end = time.perf_counter() + min_time
    while len(ts) < min_reps or time.perf_counter() < t_end:
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
        if len(ts) >= 50:
            break
    return statistics.median(ts)


def one(name, batch):
    import torch
    from torch.utils.flop_counter import FlopCounterMode
    from ecgcore import models
    shape = next(c[1] for c in CASES if c[0] == name)
    torch.manual_seed(0)
    m = models.create(name).eval()
    x = torch.randn(batch, *shape)
    kw = {}
    if getattr(m.head, "n_clinical", 0):
        kw["clinical"] = torch.rand(batch, m.head.n_clinical)
    with torch.inference_mode():
        with FlopCounterMode(display=False) as fc:
            m(x, **kw)
        flops = fc.get_total_flops()
        t = _time(lambda: m(x, **kw))
        a = torch.randn(batch * 156, 768)
        b = torch.randn(768, 3072)
        tm = _time(lambda: torch.mm(a, b), min_time=1.0)
    mm_flops = 2 * a.shape[0] * 768 * 3072
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"model": name, "batch": batch, "params_M": m.num_parameters() / 1e6, "s_per_batch": t,
            "segments_per_s": batch / t, "gflop_per_sample": flops / batch / 1e9, "gflops": flops / t / 1e9,
            "matmul_gflops": mm_flops / tm / 1e9, "peak_rss_mb": peak_mb, "threads": torch.get_num_threads()}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--one", nargs=2, metavar=("MODEL", "BATCH"))
    ap.add_argument("--json", default=None, help="also write the rows to this JSON file")
    args = ap.parse_args(argv)
    if args.one:
        print(json.dumps(one(args.one[0], int(args.one[1]))))
        return 0
    rows = []
    for name, _, full, quick in CASES:
        for batch in (quick if args.quick else full):
            out = subprocess.run([sys.executable, __file__, "--one", name, str(batch)], capture_output=True,
                                 text=True, env=dict(os.environ))
            if out.returncode:
                print(f"{name} batch {batch} failed:\n{out.stderr[-2000:]}", file=sys.stderr)
                continue
            r = json.loads(out.stdout.strip().splitlines()[-1])
            rows.append(r)
            print(f"| {r['model']} | {r['batch']} | {r['params_M']:.2f} | {r['segments_per_s']:.2f} | "
                  f"{r['gflop_per_sample']:.3f} | {r['gflops']:.1f} | {r['matmul_gflops']:.1f} | "
                  f"{r['gflops'] / r['matmul_gflops']:.2f} | {r['peak_rss_mb']:.0f} |", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    return 0


if __name__ == "__main__":
    print("| model | batch | params (M) | segments/s | GFLOP/sample | GFLOP/s | matmul GFLOP/s | ratio | peak RSS MB |")
    print("|---|---|---|---|---|---|---|---|---|")
    sys.exit(main())

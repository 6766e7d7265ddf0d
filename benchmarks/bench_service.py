"""Load check of ``ecgcore serve``: 200 sequential and 20 concurrent uploads on loopback.

Starts ``python -m ecgcore serve`` in a subprocess on a free port (by default
no model: read, quality, delineation, measurements and the rendered page;
``--model DIR`` adds predictions and the Grad-CAM++ heat map), uploads real
files from ../shared/data, and reports latency percentiles, the server's CPU
time per request (robust to a loaded machine), errors, and the server's
resident memory (the server and its analysis worker processes together)
after warm-up, after 100 and 200 requests and after the concurrent burst.

Pass/fail (exit status 1 on failure): zero errors in both phases (with the
default queue of 32 the 20-client burst must be admitted whole, so a 503 counts
as an error), and memory that does not grow with the number of requests: RSS
after the second half of the sequential phase at most ``--max-growth-mib``
(default 16 MiB) above RSS after the first half.

Run: ``python benchmarks/bench_service.py [--n 200] [--concurrent 20] [--file PATH] [--model DIR]
[--isolation process|thread]``
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("ECGCORE_SHARED", REPO.parent / "shared"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mb(pid: int) -> float:
    """Resident memory of the server and all its processes (analysis workers included), MiB."""
    import psutil
    root = psutil.Process(pid)
    total = root.memory_info().rss
    for child in root.children(recursive=True):
        try:
            total += child.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return total / 2**20


def cpu_s(pid: int) -> float:
    """CPU time (user + system) of the server and its live processes, s."""
    import psutil
    root = psutil.Process(pid)
    total = sum(root.cpu_times()[:2])
    for child in root.children(recursive=True):
        try:
            total += sum(child.cpu_times()[:2])
        except psutil.NoSuchProcess:
            pass
    return total


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--concurrent", type=int, default=20)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--queue", type=int, default=32, help="server queue (20 concurrent fit: no 503)")
    ap.add_argument("--file", default=str(SHARED / "data" / "ge_muse" / "braveheart_example1.xml"))
    ap.add_argument("--model", default=None, help="checkpoint for predictions (default: none)")
    ap.add_argument("--isolation", choices=("process", "thread"), default="process",
                    help="the server's --isolation (default process: analyses in worker processes)")
    ap.add_argument("--max-jobs-per-worker", type=int, default=None,
                    help="the server's --max-jobs-per-worker (default: the server's default, 500)")
    ap.add_argument("--max-growth-mib", type=float, default=16.0,
                    help="allowed RSS growth between the middle and the end of the sequential phase")
    args = ap.parse_args(argv)
    import psutil
    import httpx
    data = Path(args.file).read_bytes()
    port = free_port()
    # queue large enough that the concurrent burst waits instead of getting 503
    cmd = [sys.executable, "-m", "ecgcore", "serve", "--port", str(port),
           "--workers", str(args.workers), "--queue", str(args.queue), "--isolation", args.isolation]
    if args.model:
        cmd += ["--model", args.model]
    if args.max_jobs_per_worker is not None:
        cmd += ["--max-jobs-per-worker", str(args.max_jobs_per_worker)]
    proc = subprocess.Popen(cmd,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=str(REPO))
    base = f"http://127.0.0.1:{port}"
    try:
        with httpx.Client(timeout=120) as c:
            deadline = time.time() + 60
            while True:
                try:
                    if c.get(base + "/api/v1/health").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.time() > deadline or proc.poll() is not None:
                    print(proc.stderr.read().decode()[-2000:])
                    raise SystemExit("server did not start")
                time.sleep(0.2)

            def post(client):
                t = time.perf_counter()
                r = client.post(base + "/api/v1/analyze", files={"file": ("x", data)})
                ok = r.status_code == 200 and r.json()["measurements"]["values"] is not None
                if ok:  # fetch the rendered page as the web page does
                    ok = client.get(base + r.json()["links"]["ecg"]).status_code == 200
                return time.perf_counter() - t, ok, r.status_code

            for _ in range(5):  # warm-up: numba kernels, matplotlib fonts
                post(c)
            mem = {"after warm-up": rss_mb(proc.pid)}
            server = psutil.Process(proc.pid)
            workers0 = sorted(c.pid for c in server.children(recursive=True))
            cpu0 = cpu_s(proc.pid)
            lat, errors = [], 0
            t0 = time.perf_counter()
            for i in range(args.n):
                dt, ok, _ = post(c)
                lat.append(dt)
                errors += not ok
                if i + 1 == args.n // 2:
                    mem[f"after {i + 1} sequential"] = rss_mb(proc.pid)
            seq_wall = time.perf_counter() - t0
            seq_cpu = cpu_s(proc.pid) - cpu0
            workers1 = sorted(c.pid for c in server.children(recursive=True))
            recycled = c.get(base + "/api/v1/health").json().get("workers_recycled", 0)
            mem[f"after {args.n} sequential"] = rss_mb(proc.pid)

        codes = []
        t0 = time.perf_counter()
        # 20 clients at once; the server's pool admits workers + queue and answers 503 beyond
        with ThreadPoolExecutor(args.concurrent) as ex:
            clients = [httpx.Client(timeout=120) for _ in range(args.concurrent)]
            res = list(ex.map(post, clients))
            for cl in clients:
                cl.close()
        conc_wall = time.perf_counter() - t0
        mem["after concurrent burst"] = rss_mb(proc.pid)
        clat = [r[0] for r in res if r[1]]
        codes = [r[2] for r in res]
    finally:
        proc.terminate()
        proc.wait(10)

    def pct(v):
        v = np.asarray(v) * 1e3
        return f"p50 {np.percentile(v, 50):.0f} ms, p90 {np.percentile(v, 90):.0f} ms, p99 {np.percentile(v, 99):.0f} ms, max {v.max():.0f} ms"
    conc_ok = sum(r[1] for r in res)
    n503 = codes.count(503)
    conc_errors = args.concurrent - conc_ok
    growth = mem[f"after {args.n} sequential"] - mem[f"after {args.n // 2} sequential"]
    print(f"file: {Path(args.file).name} ({len(data) / 1024:.0f} KiB), server workers={args.workers}, "
          f"queue={args.queue}, isolation={args.isolation}, model={args.model or 'none'}; "
          f"load average {os.getloadavg()[0]:.1f}")
    print(f"server child processes: {len(workers0)} after warm-up, "
          f"{'the same' if workers0 == workers1 else 'changed'} after the sequential phase; "
          f"{recycled} recycled by --max-jobs-per-worker / --max-worker-mb (otherwise a worker is "
          f"only replaced after a timeout or a crash)")
    print(f"sequential: {args.n} uploads, {errors} errors, {args.n / seq_wall:.2f} req/s; {pct(lat)}; "
          f"server CPU (all its processes) {seq_cpu / args.n * 1e3:.0f} ms/request")
    print(f"concurrent: {args.concurrent} at once, {conc_ok} ok, {conc_errors} errors (of which {n503} x 503), "
          f"wall {conc_wall:.1f} s; ok latencies {pct(clat) if clat else '-'}")
    for k, v in mem.items():
        print(f"RSS (server + workers) {k}: {v:.0f} MiB")
    print(f"RSS growth over requests {args.n // 2 + 1}-{args.n}: {growth:+.1f} MiB "
          f"(limit {args.max_growth_mib:g} MiB)")
    failed = []
    if errors:
        failed.append(f"{errors} sequential errors")
    if conc_errors:
        failed.append(f"{conc_errors} concurrent errors")
    if workers0 != workers1 and not recycled:
        failed.append("worker processes were replaced during the sequential phase (not by recycling)")
    if growth > args.max_growth_mib:
        failed.append(f"memory grew by {growth:.1f} MiB")
    print("PASS" if not failed else "FAIL: " + "; ".join(failed))
    return 0 if not failed else 1


if __name__ == "__main__":
    raise SystemExit(main())

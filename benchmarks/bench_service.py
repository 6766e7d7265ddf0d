"""Load check of ``ecgcore serve``: 200 sequential and 20 concurrent uploads on loopback.

Starts ``python -m ecgcore serve`` in a subprocess on a free port (no model:
read, quality, delineation, measurements and the rendered page), uploads real
files from ../shared/data, and reports latency percentiles, errors, and the
server's resident memory after warm-up, after 100 and 200 requests and after
the concurrent burst (it must not grow with the number of requests).

Run: ``python benchmarks/bench_service.py [--n 200] [--concurrent 20] [--file PATH]``
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
    import psutil
    return psutil.Process(pid).memory_info().rss / 2**20


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--concurrent", type=int, default=20)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--queue", type=int, default=32, help="server queue (20 concurrent fit: no 503)")
    ap.add_argument("--file", default=str(SHARED / "data" / "ge_muse" / "braveheart_example1.xml"))
    args = ap.parse_args(argv)
    import httpx
    data = Path(args.file).read_bytes()
    port = free_port()
    # queue large enough that the concurrent burst waits instead of getting 503
    proc = subprocess.Popen([sys.executable, "-m", "ecgcore", "serve", "--port", str(port),
                             "--workers", str(args.workers), "--queue", str(args.queue)],
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
            lat, errors = [], 0
            t0 = time.perf_counter()
            for i in range(args.n):
                dt, ok, _ = post(c)
                lat.append(dt)
                errors += not ok
                if i + 1 == args.n // 2:
                    mem[f"after {i + 1} sequential"] = rss_mb(proc.pid)
            seq_wall = time.perf_counter() - t0
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
    print(f"file: {Path(args.file).name} ({len(data) / 1024:.0f} KiB), server workers={args.workers}, queue={args.queue}")
    print(f"sequential: {args.n} uploads, {errors} errors, {args.n / seq_wall:.2f} req/s; {pct(lat)}")
    n503 = codes.count(503)
    print(f"concurrent: {args.concurrent} at once, {sum(r[1] for r in res)} ok, {n503} x 503 (busy, by design), "
          f"{len(codes) - sum(r[1] for r in res) - n503} errors, wall {conc_wall:.1f} s; ok latencies {pct(clat) if clat else '-'}")
    for k, v in mem.items():
        print(f"RSS {k}: {v:.0f} MiB")
    return 0 if errors == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())

"""``ecgcore serve [--host 127.0.0.1] [--port 8000] [--model DIR]``: the screening web service.

Serves the single web page at ``/`` and the JSON API at ``/api/v1`` (OpenAPI
docs at ``/docs``). It listens on loopback only unless ``--host`` says
otherwise.
"""

from __future__ import annotations

import sys


def add_parser(sub):
    p = sub.add_parser("serve", help="run the screening web service (web page + JSON API)",
                       description=__doc__)
    p.add_argument("--host", default="127.0.0.1",
                   help="interface to bind (default 127.0.0.1: this machine only; 0.0.0.0 exposes it)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--model", metavar="DIR", default=None,
                   help="checkpoint (run directory, best.pt or .safetensors) for predictions")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--threshold", default="checkpoint", metavar="checkpoint|P",
                   help="decision threshold of binary tasks: 'checkpoint' (default: the ones the training "
                        "run chose on validation, as 'ecgcore predict' uses; 0.5 where none was chosen) or "
                        "a probability for every task (0.5: the MTECG study's argmax)")
    p.add_argument("--workers", type=int, default=2,
                   help="uploads analysed at once: worker processes, each with its own model (default 2)")
    p.add_argument("--queue", type=int, default=None,
                   help="uploads allowed to wait for a worker before 503 (default 2 x workers)")
    p.add_argument("--max-upload-mb", type=float, default=20.0, help="upload size limit (default 20 MB)")
    p.add_argument("--max-image-mpx", type=float, default=50.0,
                   help="largest image upload, in megapixels, refused before decoding (default 50)")
    p.add_argument("--timeout", type=float, default=120.0,
                   help="per-request limit, s (default 120); an overrunning worker process is killed")
    p.add_argument("--isolation", choices=("process", "thread"), default="process",
                   help="run each analysis in one of --workers worker processes, killed and replaced "
                        "on a timeout (default), or in threads of the server process (faster start, "
                        "but a timed-out analysis runs on)")
    p.add_argument("--max-jobs-per-worker", type=int, default=500,
                   help="replace a worker process after this many analyses (default 500; 0: never)")
    p.add_argument("--max-worker-mb", type=float, default=4096.0,
                   help="replace a worker process whose resident memory exceeds this many MiB after an "
                        "analysis (default 4096; 0: no limit)")
    return p


def run(args) -> int:
    try:
        import uvicorn
        from .service_app import create_app
    except ImportError as exc:
        print(f"ecgcore serve needs fastapi, uvicorn and python-multipart ({exc})", file=sys.stderr)
        return 2
    import ecgcore
    import math
    bad = None
    if not 0 < args.port < 65536:
        bad = f"--port {args.port} is not a TCP port"
    elif args.workers < 1:
        bad = f"--workers must be >= 1, got {args.workers}"
    elif args.queue is not None and args.queue < 0:
        bad = f"--queue must be >= 0, got {args.queue}"
    elif args.max_jobs_per_worker < 0:
        bad = f"--max-jobs-per-worker must be >= 0 (0: never replace), got {args.max_jobs_per_worker}"
    else:
        # a zero or negative limit would refuse every upload (413) or time every analysis out (504)
        for opt, v, zero_ok in (("--timeout", args.timeout, False), ("--max-upload-mb", args.max_upload_mb, False),
                                ("--max-image-mpx", args.max_image_mpx, False),
                                ("--max-worker-mb", args.max_worker_mb, True)):
            if not (math.isfinite(v) and (v > 0 or (zero_ok and v == 0))):
                bad = f"{opt} must be {'>= 0' if zero_ok else 'positive'}, got {v:g}"
                break
    threshold = args.threshold
    if not bad and threshold != "checkpoint":
        try:
            threshold = float(threshold)
        except ValueError:
            threshold = float("nan")
        if not 0.0 <= threshold <= 1.0:
            bad = f"--threshold must be 'checkpoint' or a probability in [0, 1], got {args.threshold!r}"
    if bad:
        print(f"ecgcore serve: {bad}", file=sys.stderr)
        return 2
    try:
        app = create_app(args.model, device=args.device, workers=args.workers, queue=args.queue,
                         max_upload_bytes=int(args.max_upload_mb * 2**20), timeout_s=args.timeout,
                         max_image_pixels=int(args.max_image_mpx * 1e6), isolation=args.isolation,
                         max_jobs_per_worker=args.max_jobs_per_worker, max_worker_rss_mb=args.max_worker_mb,
                         threshold=threshold)
    except ecgcore.ECGError as exc:
        print(f"ecgcore serve: cannot load the model: {exc}", file=sys.stderr)
        return 1
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        print(f"warning: listening on {args.host}: other machines can reach this service", file=sys.stderr)
    uvicorn.run(app, host=args.host, port=args.port, log_level="info", access_log=False)
    return 0

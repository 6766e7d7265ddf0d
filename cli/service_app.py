"""The screening web service behind ``ecgcore serve``: a FastAPI app built on the public ecgcore API.

Endpoints (OpenAPI at ``/docs`` and ``/openapi.json``):

* ``GET /`` - the single web page (``cli/static``), ``GET /static/*`` its script and style;
* ``GET /api/v1/health`` - status, version, loaded model and limits;
* ``POST /api/v1/analyze`` - multipart field ``file``: any ECG file ecgcore reads
  (signal formats, PDFs and images, which are digitised; a WFDB record as a
  ``.zip`` of its ``.hea`` and ``.dat``; optional query parameter ``record``:
  the exam id within a multi-record CODE-15 file) -> record summary, per-lead quality,
  delineation-based measurements and P-wave indices, predictions when a model
  is loaded, and links to the rendered ECG and the heat map;
* ``GET /api/v1/images/{id}.png`` - rendered pages and heat maps, kept in a
  bounded in-memory cache under random ids that expire.

Limits and safety: an upload larger than ``max_upload_bytes`` is refused with
413 (from ``Content-Length`` before the body is read, and by counting the
streamed body), and an image whose header declares more than
``max_image_pixels`` is refused before it is decoded (decompression bombs);
the format is sniffed from the saved bytes, never from the client's file
name or content type, and the name is never used on disk; every upload is processed in
its own temporary directory, removed when the work ends; a bounded pool of
worker processes (or threads, ``isolation="thread"``) with a bounded queue
answers 503 when saturated, so a burst cannot exhaust memory; each request has
a timeout (504), at which an overrunning worker process is killed and replaced,
so one pathological file cannot hold a worker; bad files get a 4xx
with a readable reason (415 unknown type, 422 unreadable ECG) that never
contains server paths.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
import math
import os
import re
import secrets
import shutil
import tempfile
import threading
import time
import zipfile
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from fastapi import FastAPI, File, Form, HTTPException, Query, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles

import ecgcore

__all__ = ["create_app", "ImageCache", "analyze_path", "UploadRejected"]

STATIC_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "static")
API = "/api/v1"
_log = logging.getLogger("ecgcore.serve")
_ZIP_MAX_MEMBERS = 64
_MULTI_RECORD = ("code15",)  # formats whose files hold several records
_MAX_LISTED_RECORDS = 2000  # a CODE-15 part file holds ~20,000 exams; the rest are typed in
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,120}$")


class UploadRejected(Exception):
    """A bad upload: HTTP status and a human-readable reason."""

    def __init__(self, status: int, reason: str, extra: dict | None = None):
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.extra = dict(extra or {})  # more JSON fields for the client (e.g. the record ids)

    def payload(self) -> dict:
        return dict(self.extra, detail=self.reason)


class ImageCache:
    """Bounded, expiring, thread-safe store of PNG bytes under random ids."""

    def __init__(self, max_items: int = 64, max_bytes: int = 64 << 20, ttl_s: float = 600.0):
        self.max_items, self.max_bytes, self.ttl_s = int(max_items), int(max_bytes), float(ttl_s)
        self._items: collections.OrderedDict = collections.OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def _evict(self, now: float) -> None:
        for key in [k for k, (_, exp) in self._items.items() if exp <= now]:
            self._bytes -= len(self._items.pop(key)[0])
        while self._items and (len(self._items) > self.max_items or self._bytes > self.max_bytes):
            _, (data, _) = self._items.popitem(last=False)
            self._bytes -= len(data)

    def put(self, data: bytes) -> str:
        key = secrets.token_urlsafe(18)
        with self._lock:
            self._items[key] = (bytes(data), time.monotonic() + self.ttl_s)
            self._bytes += len(data)
            self._evict(time.monotonic())
        return key

    def get(self, key: str):
        with self._lock:
            self._evict(time.monotonic())
            hit = self._items.get(key)
            return None if hit is None else hit[0]

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)

    @property
    def nbytes(self) -> int:
        return self._bytes


def _scrub(text: str, workdir: str) -> str:
    """Remove server paths from a message shown to the client."""
    text = text.replace(workdir + os.sep, "").replace(workdir, "<upload>")
    return re.sub(r"(/[\w.\-]+){2,}", "<path>", text)


def _jsonable(v):
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, (np.bool_, bool)):
        return bool(v)
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (np.floating, float)):
        f = float(v)
        return f if math.isfinite(f) else None
    if isinstance(v, np.ndarray):
        return _jsonable(v.tolist())
    if v is None or isinstance(v, (str, int)):
        return v
    return str(v)


def _unpack_wfdb_zip(path: str, workdir: str, limit: int) -> str:
    """Extract a .zip holding one WFDB record (.hea + signal files) safely; return the .hea path."""
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise UploadRejected(422, f"damaged zip archive ({exc})") from None
    with zf:
        members = [m for m in zf.infolist() if not m.is_dir()]
        if len(members) > _ZIP_MAX_MEMBERS:
            raise UploadRejected(422, f"zip archive holds {len(members)} files; at most {_ZIP_MAX_MEMBERS} "
                                      f"are accepted")
        out_dir = os.path.join(workdir, "wfdb")
        os.mkdir(out_dir)
        total, heads = 0, []
        for m in members:
            name = os.path.basename(m.filename.replace("\\", "/"))
            if not _SAFE_NAME.match(name):
                continue  # never write a name we did not vet (no paths, no hidden files)
            dest = os.path.join(out_dir, name)
            if os.path.exists(dest):
                raise UploadRejected(422, f"zip archive holds two files named {name!r}")
            try:
                with zf.open(m) as src, open(dest, "wb") as dst:
                    while True:
                        chunk = src.read(1 << 20)
                        if not chunk:
                            break
                        total += len(chunk)
                        if total > 4 * limit:  # a zip bomb: stop counting on the header's word
                            raise UploadRejected(413, f"zip archive expands beyond {4 * limit >> 20} MB")
                        dst.write(chunk)
            except UploadRejected:
                raise
            except (zipfile.BadZipFile, OSError, EOFError, RuntimeError, NotImplementedError) as exc:
                raise UploadRejected(422, f"damaged or encrypted zip member {name!r} "
                                          f"({type(exc).__name__})") from None
            if name.lower().endswith(".hea"):
                heads.append(dest)
        if len(heads) != 1:
            raise UploadRejected(422, "a .zip upload must hold exactly one WFDB record (one .hea file "
                                      f"with its signal files); found {len(heads)} .hea files")
        return heads[0]


def _zip_has_wfdb(path: str) -> bool:
    try:
        with zipfile.ZipFile(path) as zf:
            return any(n.lower().endswith(".hea") for n in zf.namelist())
    except (zipfile.BadZipFile, OSError):
        return False


def _check_image_size(path: str, max_pixels: int) -> None:
    """Refuse a decompression bomb before decoding it.

    A few kB of PNG can declare a page of 20,000 x 20,000 pixels (1.2 GB as RGB);
    Pillow itself only warns below 179 Mpx. The header alone gives the size, so a
    huge page is refused without decoding a pixel.
    """
    import warnings
    from PIL import Image
    try:
        with warnings.catch_warnings():  # Pillow warns above 89 Mpx; the limit below decides
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                w, h = img.size
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise UploadRejected(422, f"damaged image ({type(exc).__name__})") from None
    if w * h > max_pixels:
        raise UploadRejected(413, f"the image is {w} x {h} pixels; at most {max_pixels / 1e6:g} megapixels "
                                  f"are accepted (a 300-dpi A4 page is about 8.7)")


def _record_ids(path: str) -> list:
    """The record ids of a multi-record (CODE-15% HDF5) file, [] when they cannot be listed."""
    try:
        from ecgcore.io.code15 import exam_ids
        return [int(i) for i in exam_ids(path)]
    except Exception:  # noqa: BLE001 - a damaged file: the reader's own reason is reported instead
        return []


def _record_summary(rec, fmt: str) -> dict:
    meta = rec.meta or {}
    return {"format": meta.get("format", fmt), "fs": float(rec.fs), "leads": list(rec.leads),
            "n_leads": int(rec.n_leads), "n_samples": int(rec.n_samples),
            "duration_s": round(float(rec.duration), 3),
            "digitized": fmt in ("pdf", "image"),
            "source_kind": meta.get("source_kind")}


def _measure(rec) -> tuple:
    """(delineation or None, measurements dict) — failures are reported, not raised."""
    try:
        d = ecgcore.delineate(rec)
        m = ecgcore.measure(rec, delineation=d)
    except Exception as exc:  # delineation is best effort: the record itself was read fine
        return None, {"values": None, "reasons": {},
                      "error": f"measurement failed: {getattr(exc, 'reason', None) or exc}"}
    m = dict(m)
    reasons = m.pop("reasons", {}) or {}
    values = _jsonable(m)
    for k, v in m.items():  # say why a value is missing even where the measurer did not
        if values.get(k) is None and k not in reasons and isinstance(v, float):
            reasons[k] = "not measurable"
    return d, {"values": values, "reasons": _jsonable(reasons), "n_beats": int(d.n_beats),
               "flags": _jsonable({k: v for k, v in d.flags.items() if isinstance(v, (bool, np.bool_, int, str))})}


def analyze_path(path: str, workdir: str, *, classifier=None, cache: ImageCache | None = None,
                 max_bytes: int = 20 << 20, plot_dpi: float = 100.0, explain: bool = True,
                 explain_lock: threading.Lock | None = None, max_image_pixels: int = 50_000_000,
                 record: int | None = None, clinical: dict | None = None) -> dict:
    """Analyse one saved upload (the work of ``POST /api/v1/analyze``); raises UploadRejected.

    ``record`` picks one record of a multi-record file (a CODE-15 exam id); ``clinical``
    holds the patient's clinical variables for a model that fuses them (``/health`` lists
    the model's ``clinical`` columns).
    """
    t0 = time.perf_counter()
    timing = {}
    try:
        fmt = ecgcore.sniff(path)
    except ecgcore.ReadError as exc:
        if "empty" in exc.reason:
            raise UploadRejected(422, "the uploaded file is empty") from None
        raise UploadRejected(415, f"not a recognised ECG file: {_scrub(exc.reason, workdir)}. Supported: "
                                  "WFDB (as a .zip of .hea + .dat), GE MUSE XML, HL7 aECG, Philips XML, "
                                  "CardioSoft XML, DICOM, SCP-ECG, EDF/BDF, CODE-15 HDF5, NPY/NPZ/CSV, "
                                  "PDF and PNG/JPEG/TIFF pages") from None
    read_path = path
    if fmt == "image":
        _check_image_size(path, max_image_pixels)
    if fmt == "npz" and _zip_has_wfdb(path):
        read_path, fmt = _unpack_wfdb_zip(path, workdir, max_bytes), "wfdb"
    # the reader's own container address; an int, so nothing else gets into the path
    address = read_path if record is None else f"{read_path}::{int(record)}"
    try:
        if fmt in ("pdf", "image"):
            from ecgcore.models.image_pipeline import PDFIUM_LOCK  # pdfium is not thread-safe
            with PDFIUM_LOCK:
                rec = ecgcore.read(address, format=fmt)
        else:
            rec = ecgcore.read(address, format=fmt)
    except ecgcore.ECGError as exc:
        hint, extra = "", {}
        if fmt in _MULTI_RECORD and record is None:
            ids = _record_ids(read_path)
            if len(ids) > 1:
                # the page offers these in a picker and sends the choice back as ?record=ID
                hint = (f" (this file holds {len(ids)} records: choose one with the query parameter "
                        f"?record=<exam id>)")
                extra = {"records": ids[:_MAX_LISTED_RECORDS], "n_records": len(ids)}
        raise UploadRejected(422, f"could not read this {fmt} file: {_scrub(exc.reason, workdir)}{hint}",
                             extra) from None
    if rec.n_samples == 0 or rec.n_leads == 0:
        raise UploadRejected(422, f"the {fmt} file holds no samples")
    timing["read_ms"] = round((time.perf_counter() - t0) * 1e3, 1)
    out = {"record": _record_summary(rec, fmt)}
    q = rec.quality
    out["quality"] = dict(_jsonable(q.to_dict()), lead_flags=q.lead_flags())
    t1 = time.perf_counter()
    d, out["measurements"] = _measure(rec)
    timing["measure_ms"] = round((time.perf_counter() - t1) * 1e3, 1)
    links = {"ecg": None, "heatmap": None}
    if cache is not None:
        t1 = time.perf_counter()
        png = os.path.join(workdir, "ecg.png")
        layout = "3x4+II" if rec.n_leads >= 8 else "12x1"
        ecgcore.plot(rec, png, layout=layout, dpi=plot_dpi, marks=d)
        with open(png, "rb") as f:
            links["ecg"] = f"{API}/images/{cache.put(f.read())}.png"
        timing["plot_ms"] = round((time.perf_counter() - t1) * 1e3, 1)
    out["predictions"] = None
    if classifier is not None:
        t1 = time.perf_counter()
        x = read_path if (fmt in ("pdf", "image") and classifier.is_image) else rec
        try:
            if classifier.is_image:  # draw / render the page once for both predict and explain
                x = classifier.prepare(x)
            out["predictions"] = _jsonable(classifier.predict(x, clinical=clinical))
            if explain and cache is not None and classifier.is_image:
                with explain_lock or threading.Lock():  # Grad-CAM hooks the shared model
                    e = classifier.explain(x, clinical=clinical)
                links["heatmap"] = f"{API}/images/{cache.put(e.overlay_png)}.png"
                out["explained_task"] = e.task
        except ecgcore.ECGError as exc:
            out["prediction_error"] = _scrub(exc.reason, workdir)
        timing["predict_ms"] = round((time.perf_counter() - t1) * 1e3, 1)
    out["links"] = links
    timing["total_ms"] = round((time.perf_counter() - t0) * 1e3, 1)
    out["timing"] = timing
    return out


def _clinical_form(text):
    """The ``clinical`` form field: a JSON object of names to numbers (null: unknown), or None;
    anything else is a 422 naming the problem."""
    if text is None or not text.strip():
        return None
    try:
        obj = json.loads(text)
    except ValueError as exc:
        raise HTTPException(422, f"clinical: not JSON ({exc})") from None
    if not isinstance(obj, dict):
        raise HTTPException(422, "clinical: expected a JSON object of variable names to numbers")
    bad = [k for k, v in obj.items()
           if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)))]
    if bad:
        raise HTTPException(422, f"clinical: {', '.join(map(repr, bad[:3]))} must be numbers (or null)")
    return {str(k): (None if v is None else float(v)) for k, v in obj.items()}


class _Collect:
    """Stand-in for :class:`ImageCache` inside a worker process: keeps the PNGs to send back."""

    def __init__(self):
        self.images: list = []

    def put(self, data: bytes) -> str:
        self.images.append(bytes(data))
        return f"{_IMG_TOKEN}{len(self.images) - 1}"


_IMG_TOKEN = "__ecgcore_img_"


def _worker_main(conn, model_dir, device: str, analysis, threshold=0.5) -> None:
    """Body of one analysis process: answer jobs from ``conn`` until the parent goes away.

    The model is loaded once, lazily, at the first job (a worker that is killed
    on a timeout is replaced by a fresh one that loads it again). Replies are
    plain tuples: exceptions with custom constructors do not survive pickling.
    """
    import signal
    # Ctrl-C at the terminal reaches the whole process group: the server shuts its workers down itself
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    classifier = None
    while True:
        try:
            job = conn.recv()
        except (EOFError, OSError, KeyboardInterrupt):
            return  # the parent closed the pipe or died: nothing left to serve
        if job is None:
            return
        path, workdir, kwargs = job
        try:
            if classifier is None and model_dir is not None:
                classifier = ecgcore.ECGClassifier(model_dir, device=device, threshold=threshold)
            sink = _Collect()
            out = (analysis or analyze_path)(path, workdir, classifier=classifier, cache=sink, **kwargs)
            reply = ("ok", out, sink.images)
        except UploadRejected as exc:
            reply = ("rejected", exc.status, exc.reason, exc.extra)
        except BaseException as exc:  # noqa: BLE001 - reported to the parent, which logs it
            import traceback
            reply = ("error", f"{type(exc).__name__}: {exc}", traceback.format_exc())
        try:
            conn.send(reply)
        except (OSError, ValueError):
            return


class _AnalysisTimeout(Exception):
    pass


class _WorkerDied(Exception):
    pass


class _Worker:
    """One analysis process and its pipe; killed and replaced when a job overruns."""

    def __init__(self, ctx, model_dir, device, analysis, threshold=0.5):
        self._ctx, self._args = ctx, (model_dir, device, analysis, threshold)
        self.proc = None
        self.conn = None
        self.jobs = 0  # jobs answered by the current process

    def start(self) -> None:
        if self.proc is not None and self.proc.is_alive():
            return
        self.stop()
        parent, child = self._ctx.Pipe(duplex=True)
        self.proc = self._ctx.Process(target=_worker_main, args=(child, *self._args),
                                      name="ecgcore-serve-worker", daemon=True)
        self.proc.start()
        child.close()  # only the worker holds this end: its death reads as EOF here
        self.conn = parent
        self.jobs = 0

    @property
    def pid(self):
        return None if self.proc is None else self.proc.pid

    def run(self, job, deadline: float):
        """Send one job, wait until ``deadline`` (time.monotonic); kill the process past it."""
        self.start()
        try:
            self.conn.send(job)
            ready = self.conn.poll(max(0.0, deadline - time.monotonic()))
            if not ready:
                self.stop()  # a Python thread cannot be stopped; a process can
                raise _AnalysisTimeout()
            reply = self.conn.recv()
            self.jobs += 1
            return reply
        except (EOFError, OSError, BrokenPipeError) as exc:
            code = self.proc.exitcode if self.proc is not None else None
            self.stop()
            raise _WorkerDied(f"the analysis process ended unexpectedly (exit code {code}; {exc!r})") from None

    def rss_mb(self):
        """Resident memory of the process in MiB (Linux ``/proc``, else psutil if present), or None."""
        pid = self.pid
        if pid is None:
            return None
        try:
            with open(f"/proc/{pid}/statm") as f:
                return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
        except (OSError, ValueError, IndexError, AttributeError):
            pass
        try:
            import psutil
            return psutil.Process(pid).memory_info().rss / 2**20
        except Exception:  # noqa: BLE001 - no psutil, or the process is gone: no measurement
            return None

    def retire(self) -> None:
        """Ask the process to exit after its last job and start a fresh one at once.

        The old process is reaped in a background thread, so the request that
        triggered the recycling does not wait for it.
        """
        proc, conn = self.proc, self.conn
        self.proc = self.conn = None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.send(None)  # the worker's loop returns on None

        def reap():
            if proc is not None:
                proc.join(30)
                if proc.is_alive():
                    proc.kill()
                    proc.join(10)
            if conn is not None:
                with contextlib.suppress(Exception):
                    conn.close()
        threading.Thread(target=reap, name="ecgcore-serve-reaper", daemon=True).start()
        self.start()

    def stop(self) -> None:
        proc, conn = self.proc, self.conn
        self.proc = self.conn = None
        if proc is not None:
            if proc.is_alive():
                proc.kill()
            proc.join(10)
            with contextlib.suppress(Exception):
                proc.close()
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()


class _ProcessPool:
    """``workers`` analysis processes behind ``workers`` dispatch threads.

    A job waits for an idle process; past its deadline the process is killed (its
    memory and any file handles go with it) and a fresh one takes its place.
    """

    def __init__(self, workers: int, model_dir, device: str, analysis=None,
                 max_jobs: int | None = None, max_rss_mb: float | None = None, threshold=0.5):
        import multiprocessing
        import queue as _queue
        # spawn: no fork of a threaded server (uvicorn, torch, numba threads) into the workers
        ctx = multiprocessing.get_context("spawn")
        self.workers = [_Worker(ctx, model_dir, device, analysis, threshold) for _ in range(workers)]
        self._idle: "_queue.Queue[_Worker]" = _queue.Queue()
        for w in self.workers:
            self._idle.put(w)
        self._closed = False
        self.max_jobs = max_jobs if max_jobs and max_jobs > 0 else None
        self.max_rss_mb = max_rss_mb if max_rss_mb and max_rss_mb > 0 else None
        self.recycled = 0

    def start(self) -> None:
        for w in self.workers:  # boot in the background: imports take seconds
            w.start()

    def pids(self) -> list:
        return [w.pid for w in self.workers if w.pid is not None]

    def run(self, job, deadline: float):
        w = self._idle.get()  # at most `workers` dispatch threads: one is always free for us
        try:
            if self._closed:
                raise _WorkerDied("the service is shutting down")
            if time.monotonic() >= deadline:
                raise _AnalysisTimeout()
            return w.run(job, deadline)
        finally:
            if not self._closed and w.proc is not None and self._worn(w):
                w.retire()
                self.recycled += 1
            self._idle.put(w)

    def _worn(self, w: "_Worker") -> bool:
        # Long-lived analysis processes keep what the allocator, numba, torch and matplotlib
        # caches grew to on their largest upload; replacing them bounds the service's memory.
        if self.max_jobs is not None and w.jobs >= self.max_jobs:
            return True
        if self.max_rss_mb is not None:
            rss = w.rss_mb()
            return rss is not None and rss > self.max_rss_mb
        return False

    def close(self) -> None:
        self._closed = True
        for w in self.workers:
            with contextlib.suppress(Exception):
                if w.conn is not None:
                    w.conn.send(None)
            w.stop()


class _Guard:
    """Pure ASGI middleware: size limit on uploads, early 503 when saturated, security headers."""

    def __init__(self, app, state):
        self.app = app
        self.state = state

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def send_headers(message):
            if message["type"] == "http.response.start":
                h = list(message.get("headers", []))
                h += [(b"x-content-type-options", b"nosniff"), (b"referrer-policy", b"no-referrer"),
                      (b"x-frame-options", b"DENY")]
                message["headers"] = h
            await send(message)

        if scope["method"] == "POST" and scope["path"] == f"{API}/analyze":
            st = self.state
            body_limit = st.max_upload_bytes + 64 * 1024  # multipart boundaries and part headers
            length = dict(scope.get("headers") or []).get(b"content-length")
            if length is not None and length.isdigit() and int(length) > body_limit:
                return await _reply(send_headers, 413, _too_large(st.max_upload_bytes), receive)
            if st.saturated():
                return await _reply(send_headers, 503, "the server is busy analysing other uploads; "
                                                       "try again in a few seconds", receive, retry=True)
            seen = 0

            async def limited_receive():
                nonlocal seen
                message = await receive()
                if message["type"] == "http.request":
                    seen += len(message.get("body", b""))
                    if seen > body_limit:
                        raise HTTPException(413, _too_large(st.max_upload_bytes))
                return message
            return await self.app(scope, limited_receive, send_headers)
        return await self.app(scope, receive, send_headers)


def _too_large(limit: int) -> str:
    return f"the upload exceeds the limit of {limit / 2**20:g} MB"


async def _reply(send, status: int, detail: str, receive, retry: bool = False):
    body = json.dumps({"detail": detail}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
               (b"connection", b"close")]
    if retry:
        headers.append((b"retry-after", b"2"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class _State:
    def __init__(self, workers: int, queue: int, max_upload_bytes: int):
        self.capacity = workers + queue
        self.max_upload_bytes = max_upload_bytes
        self.in_flight = 0
        self.served = 0
        self.rejected_busy = 0
        self._lock = threading.Lock()

    def saturated(self) -> bool:
        with self._lock:
            return self.in_flight >= self.capacity

    def acquire(self) -> bool:
        with self._lock:
            if self.in_flight >= self.capacity:
                self.rejected_busy += 1
                return False
            self.in_flight += 1
            return True

    def release(self) -> None:
        with self._lock:
            self.in_flight -= 1
            self.served += 1


def create_app(model_dir=None, *, classifier=None, device: str = "cpu", max_upload_bytes: int = 20 << 20,
               workers: int = 2, queue: int | None = None, timeout_s: float = 120.0, cache_items: int = 64,
               cache_bytes: int = 64 << 20, cache_ttl_s: float = 600.0, plot_dpi: float = 100.0,
               explain: bool = True, tmp_root: str | None = None, max_image_pixels: int = 50_000_000,
               isolation: str | None = None, analysis=None, max_jobs_per_worker: int | None = 500,
               max_worker_rss_mb: float | None = 4096.0, threshold=0.5):
    """Build the FastAPI application.

    Parameters
    ----------
    model_dir : path, optional
        A checkpoint for :class:`ecgcore.ECGClassifier`; without it (and without
        ``classifier``) the service reads, measures and draws but does not predict.
    classifier : ECGClassifier, optional
        An already built classifier (tests, embedding).
    max_upload_bytes : int
        Larger uploads get 413 (default 20 MB).
    workers : int
        Uploads analysed at once (worker processes, or threads with ``isolation="thread"``).
    queue : int, optional
        Uploads allowed to wait for a worker (default ``2 * workers``); beyond it 503.
    timeout_s : float
        Per-request limit, s (the wait for a worker included); a slower analysis
        answers 504. With process isolation the worker process is killed at that
        moment and replaced; with threads it finishes in the background, still
        counted against the pool.
    cache_items, cache_bytes, cache_ttl_s
        Bounds of the image cache (rendered ECGs and heat maps).
    tmp_root : str, optional
        Where the per-request temporary directories are made (default: the system's).
    max_image_pixels : int
        Image uploads declaring more pixels than this get 413 before they are
        decoded (default 50 Mpx; a 600-dpi A4 page is 35 Mpx).
    isolation : {"process", "thread"}, optional
        ``"process"`` (the default with ``model_dir`` or no model): each analysis runs in
        one of ``workers`` spawned processes, each loading the model once, lazily; a
        process that overruns ``timeout_s`` is killed, so a pathological file cannot
        hold a worker. ``"thread"`` (the default when ``classifier`` is given, since a
        built classifier stays in this process): analyses run in threads of this
        process; faster to start, for tests and embedding, but a timed-out analysis
        runs on until it returns.
    analysis : callable, optional
        Replaces :func:`analyze_path` (same signature); for tests (a hanging analysis).
        With process isolation it must be picklable (a module-level function).
    max_jobs_per_worker : int, optional
        With process isolation, a worker process is replaced by a fresh one after this
        many analyses (default 500; None or 0: never), so memory kept by the allocator
        and the libraries' caches after a large upload is returned.
    max_worker_rss_mb : float, optional
        With process isolation, a worker whose resident memory exceeds this many MiB
        after an analysis is replaced (default 4096; None or 0: no limit). A worker
        holds about 200 MiB plus its model.
    threshold : float, dict or "checkpoint"
        Decision threshold of binary (and 2-class) tasks, passed to
        :class:`ecgcore.ECGClassifier` with ``model_dir`` (default 0.5, the study's
        argmax; ``"checkpoint"``: the thresholds the training run chose on
        validation, as ``ecgcore predict`` uses). ``/health`` lists the ones in use.
    """
    if isolation is None:
        isolation = "thread" if classifier is not None else "process"
    if isolation not in ("process", "thread"):
        raise ecgcore.ConfigError(f"isolation={isolation!r}: expected 'process' or 'thread'")
    if isolation == "process" and classifier is not None:
        raise ecgcore.ConfigError("a built classifier cannot be shared with worker processes: pass model_dir, "
                                  "or isolation='thread'")
    model_info = None
    if classifier is None and model_dir is not None:
        # loaded here too, so that a bad checkpoint fails at start-up and /health can describe it;
        # with process isolation each worker loads its own copy and this one is dropped
        built = ecgcore.ECGClassifier(model_dir, device=device, threshold=threshold)
        model_info = built.describe()
        # the decision thresholds in use: API users see why a probability is called 1 or 0
        model_info["thresholds"] = dict(built.thresholds) or {"*": 0.5}
        if isolation == "thread":
            classifier = built
        del built
    elif classifier is not None:
        model_info = classifier.describe()
        if isinstance(getattr(classifier, "thresholds", None), dict):
            model_info["thresholds"] = dict(classifier.thresholds) or {"*": 0.5}
    workers = max(1, int(workers))
    queue = 2 * workers if queue is None else max(0, int(queue))
    state = _State(workers, queue, int(max_upload_bytes))
    cache = ImageCache(cache_items, cache_bytes, cache_ttl_s)
    # with process isolation these threads only dispatch to the processes and wait on them
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ecgcore-serve")
    procs = (_ProcessPool(workers, None if model_dir is None else os.fspath(model_dir), device, analysis,
                          max_jobs=max_jobs_per_worker, max_rss_mb=max_worker_rss_mb, threshold=threshold)
             if isolation == "process" else None)
    explain_lock = threading.Lock()
    analyse = analysis or analyze_path

    @contextlib.asynccontextmanager
    async def lifespan(_app):
        if procs is not None:
            procs.start()
        yield
        pool.shutdown(wait=False, cancel_futures=True)
        if procs is not None:
            procs.close()

    app = FastAPI(
        lifespan=lifespan,
        title="ecgcore screening service",
        version=ecgcore.__version__,
        description="Upload a 12-lead ECG (any format ecgcore reads, or a PDF/image page) and get its "
                    "quality, delineation-based measurements, P-wave indices and, with a model loaded, "
                    "scar / LVEF predictions with a Grad-CAM++ heat map.")

    @app.exception_handler(RequestValidationError)
    async def readable_validation_error(_request, exc: RequestValidationError):
        # FastAPI's default is a list of dicts; the page and API users get one readable sentence
        parts = []
        for err in exc.errors():
            where = ".".join(str(p) for p in err.get("loc", ()) if p not in ("body", "query"))
            if where == "file" and err.get("type") == "missing":
                parts.append("no file was sent: upload the ECG as the multipart/form-data field 'file'")
            else:
                parts.append(f"{where or 'request'}: {err.get('msg', 'invalid')}")
        return JSONResponse({"detail": "; ".join(parts) or "invalid request"}, status_code=422)

    app.state.ecg = state
    app.state.cache = cache
    app.state.pool = pool
    app.state.classifier = classifier
    app.state.processes = procs  # None with thread isolation

    @app.get("/", include_in_schema=False)
    def index():
        return FileResponse(os.path.join(STATIC_DIR, "index.html"), media_type="text/html")

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    @app.get(f"{API}/health", summary="Service status, version, loaded model and limits")
    def health():
        return {"status": "ok", "version": ecgcore.__version__,
                "model": model_info,
                "limits": {"max_upload_bytes": state.max_upload_bytes, "workers": workers, "queue": queue,
                           "timeout_s": timeout_s, "max_image_pixels": int(max_image_pixels),
                           "isolation": isolation,
                           "max_jobs_per_worker": None if procs is None else procs.max_jobs,
                           "max_worker_rss_mb": None if procs is None else procs.max_rss_mb},
                "in_flight": state.in_flight, "served": state.served, "cached_images": len(cache),
                "workers_recycled": 0 if procs is None else procs.recycled}

    @app.get(f"{API}/images/{{key}}.png", summary="A rendered ECG or heat map (expires)",
             responses={200: {"content": {"image/png": {}}}, 404: {"description": "unknown or expired id"}})
    def image(key: str):
        data = cache.get(key) if re.fullmatch(r"[A-Za-z0-9_\-]{8,64}", key) else None
        if data is None:
            raise HTTPException(404, "no such image (ids expire; analyse the file again)")
        return Response(data, media_type="image/png", headers={"Cache-Control": "private, max-age=600"})

    @app.post(f"{API}/analyze", summary="Analyse one uploaded ECG file",
              responses={413: {"description": "upload too large"}, 415: {"description": "not an ECG file"},
                         422: {"description": "unreadable ECG"}, 503: {"description": "server busy"},
                         504: {"description": "analysis timed out"}})
    async def analyze(file: UploadFile = File(..., description="the ECG file (signal formats, PDF, PNG/JPEG/"
                                                                "TIFF; a WFDB record as a .zip)"),
                      record: int | None = Query(None, ge=0, description="which record of a multi-record "
                                                 "file (a CODE-15 exam id); other files hold one"),
                      clinical: str | None = Form(None, description="the patient's clinical variables as a "
                                                  "JSON object, for a model that fuses them (the columns "
                                                  "/health lists under model.clinical), e.g. "
                                                  '{"age": 63, "female_gender": 1, "dm": 0, "ht": 1, '
                                                  '"smoke": 0, "dlp": 1}')):
        clinical_values = _clinical_form(clinical)
        if not state.acquire():
            return JSONResponse({"detail": "the server is busy analysing other uploads; try again in a few "
                                           "seconds"}, status_code=503, headers={"Retry-After": "2"})
        released = False
        workdir = tempfile.mkdtemp(prefix="ecgcore-serve-", dir=tmp_root)
        try:
            # the client's file name is never used: the bytes go to a fixed name
            path = os.path.join(workdir, "upload")
            size = 0
            with open(path, "wb") as f:
                while True:
                    chunk = await file.read(1 << 20)
                    if not chunk:
                        break
                    size += len(chunk)
                    if size > state.max_upload_bytes:
                        raise HTTPException(413, _too_large(state.max_upload_bytes))
                    f.write(chunk)

            kwargs = dict(max_bytes=state.max_upload_bytes, plot_dpi=plot_dpi, explain=explain,
                          max_image_pixels=max_image_pixels, record=record, clinical=clinical_values)
            deadline = time.monotonic() + timeout_s

            def job():
                try:
                    if procs is None:
                        return analyse(path, workdir, classifier=classifier, cache=cache,
                                       explain_lock=explain_lock, **kwargs)
                    reply = procs.run((path, workdir, kwargs), deadline)
                    if reply[0] == "rejected":
                        raise UploadRejected(reply[1], reply[2], reply[3])
                    if reply[0] == "error":
                        raise RuntimeError(f"analysis process: {reply[1]}\n{reply[2]}")
                    out, images = reply[1], reply[2]
                    links = out.get("links") or {}
                    for k, v in list(links.items()):  # the worker's image tokens -> ids in our cache
                        hit = re.search(_IMG_TOKEN + r"(\d+)", v) if isinstance(v, str) else None
                        if hit is not None:
                            links[k] = f"{API}/images/{cache.put(images[int(hit.group(1))])}.png"
                    return out
                finally:
                    # the process is done or killed by now: nothing writes here any more
                    shutil.rmtree(workdir, ignore_errors=True)
                    state.release()
            fut = pool.submit(job)
            released = True  # the job owns the slot and the directory from here on
            # with processes the job itself ends at the deadline (killing the overrunning process),
            # so wait a little past it to answer only once the worker is gone
            wait_s = timeout_s if procs is None else timeout_s + 30.0
            try:
                result = await asyncio.wait_for(asyncio.wrap_future(fut), wait_s)
            except (asyncio.TimeoutError, _AnalysisTimeout):
                raise HTTPException(504, f"the analysis took longer than {timeout_s:g} s") from None
            except UploadRejected as exc:
                return JSONResponse(exc.payload(), status_code=exc.status)
            except Exception:  # a bug, not a bad file: logged here, a plain sentence for the client
                _log.exception("analysis failed")
                return JSONResponse({"detail": "internal error while analysing this file (logged on the "
                                               "server)"}, status_code=500)
            result["upload_bytes"] = size
            return result
        finally:
            if not released:
                shutil.rmtree(workdir, ignore_errors=True)
                state.release()

    app.add_middleware(_Guard, state=state)  # outermost of the user middleware
    return app

"""The screening web service (``ecgcore serve``) through the ASGI test client, with real files."""

from __future__ import annotations

import io
import os
import threading
import time
import zipfile

import numpy as np
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("multipart")
torch = pytest.importorskip("torch")

import ecgcore  # noqa: E402
from fastapi.testclient import TestClient  # noqa: E402

from ecgcore.cli.service_app import ImageCache, create_app  # noqa: E402

from conftest import shared_path  # noqa: E402

LIMIT = 3 << 20


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    return tmp_path_factory.mktemp("serve-work")


@pytest.fixture(scope="module")
def client(work):
    """No model: read, measure, draw."""
    # timeout well above a cold numba cache compiling the delineator inside the first request
    # (90-100 s seen on a loaded 2-core machine); the 504 path has its own test below
    # threads here (fast to start); the worker processes of `ecgcore serve` have their own tests below
    app = create_app(max_upload_bytes=LIMIT, workers=2, queue=6, timeout_s=900, tmp_root=str(work),
                     isolation="thread")
    with TestClient(app) as c:
        yield c


@pytest.fixture(scope="module")
def model_client(tmp_path_factory):
    from ecgcore import models
    import ecgcore.models.image_model  # noqa: F401
    torch.manual_seed(11)
    m = models.create("mtecg_image_tiny").eval()
    d = tmp_path_factory.mktemp("serve-model")
    models.save(m, d / "model.safetensors")
    # worker processes, as `ecgcore serve` runs: the model is loaded in the worker, PNGs come back by pipe
    app = create_app(str(d), max_upload_bytes=LIMIT, workers=1, timeout_s=900, isolation="process")
    with TestClient(app) as c:
        yield c


def _post(c, data: bytes, name="upload.bin"):
    return c.post("/api/v1/analyze", files={"file": (name, data, "application/octet-stream")})


def _no_server_path(text: str):
    assert "/tmp" not in text and "ecgcore-serve" not in text and "/work" not in text


def test_health_and_openapi(client):
    h = client.get("/api/v1/health").json()
    assert h["status"] == "ok" and h["version"] == ecgcore.__version__ and h["model"] is None
    assert h["limits"]["max_upload_bytes"] == LIMIT
    spec = client.get("/openapi.json").json()
    assert "/api/v1/analyze" in spec["paths"] and "/api/v1/health" in spec["paths"]
    page = client.get("/")
    assert page.status_code == 200 and 'id="file"' in page.text
    assert client.get("/static/app.js").status_code == 200
    assert page.headers["x-content-type-options"] == "nosniff"


REAL = [("ge_muse", "braveheart_example1.xml"), ("dicom", "pydicom_waveform_ecg.dcm"),
        ("scp_ecg", "ecgtoolkit_Example.scp"), ("edf", "contec_0000050.ECG.edf"),
        ("hl7_aecg", "liryc_hl7aecg_example.xml"), ("pdf", "dicomecgplot_anonymous_ecg_3x4_1.pdf")]


@pytest.mark.parametrize("folder,name", REAL)
def test_analyze_real_files(client, work, folder, name):
    path = shared_path("data", folder, name)
    r = _post(client, path.read_bytes(), name="../../../etc/" + name)   # a hostile client name is ignored
    assert r.status_code == 200, r.text
    j = r.json()
    rec = ecgcore.read(path)
    assert j["record"]["format"] == rec.meta["format"]
    assert j["record"]["fs"] == rec.fs and j["record"]["leads"] == list(rec.leads)
    assert j["record"]["n_samples"] == rec.n_samples
    assert set(j["quality"]["lead_flags"]) == set(rec.leads)
    assert j["quality"]["ok"] == rec.quality.ok
    m = j["measurements"]
    assert m["values"] is not None, m
    ref = ecgcore.measure(rec)
    for key in ("heart_rate_bpm", "qrs_duration_ms", "pr_interval_ms", "ptfv1_uvms"):
        if np.isfinite(ref[key]):
            assert m["values"][key] == pytest.approx(ref[key], rel=1e-9)
        else:
            assert m["values"][key] is None and key in m["reasons"]
    png = client.get(j["links"]["ecg"])
    assert png.status_code == 200 and png.content[:8] == b"\x89PNG\r\n\x1a\n"
    assert j["predictions"] is None and j["links"]["heatmap"] is None
    assert not os.listdir(work)                       # the per-request directory is gone


def test_wfdb_record_as_zip(client):
    hea = shared_path("data", "ptbxl", "00001_lr.hea")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.write(hea, "rec/00001_lr.hea")
        z.write(hea.with_suffix(".dat"), "rec/00001_lr.dat")
        z.writestr("../../evil.sh", b"#!/bin/sh\n")   # path traversal: never written
    r = _post(client, buf.getvalue(), "x.zip")
    assert r.status_code == 200, r.text
    rec = ecgcore.read(hea)
    assert r.json()["record"]["format"] == "wfdb" and r.json()["record"]["n_samples"] == rec.n_samples
    # a lone header is not enough, and the message says how to send WFDB
    r = _post(client, hea.read_bytes(), "00001_lr.hea")
    assert r.status_code == 415 and ".zip" in r.json()["detail"]


def test_predictions_and_heatmap(model_client):
    h = model_client.get("/api/v1/health").json()
    assert h["model"]["model"] == "mtecg_image_tiny" and [t["name"] for t in h["model"]["tasks"]] == ["scar", "lvef"]
    for folder, name in [("pdf", "dicomecgplot_anonymous_ecg_3x4_1.pdf"), ("scp_ecg", "ecgtoolkit_Example.scp")]:
        j = _post(model_client, shared_path("data", folder, name).read_bytes()).json()
        p = j["predictions"]
        assert set(p) == {"scar", "lvef"}
        for r in p.values():
            assert r["prediction"] in (0, 1)
            assert r["probability"]["negative"] + r["probability"]["positive"] == pytest.approx(1.0)
        heat = model_client.get(j["links"]["heatmap"])
        assert heat.status_code == 200 and heat.content[:4] == b"\x89PNG"


def test_bad_files(client, rng):
    dcm = shared_path("data", "dicom", "pydicom_waveform_ecg.dcm").read_bytes()
    cases = {
        "random bytes": (rng.integers(0, 256, 5000, dtype=np.uint8).tobytes(), 415),
        "text": (b"just some notes about a patient\nnothing else\n", 415),
        "unknown xml": (b"<?xml version='1.0'?><Invoice><n>1</n></Invoice>", 415),
        "truncated dicom": (dcm[:3000], 422),
        "empty": (b"", 422),
        "png without ecg": (_blank_png(), 422),
    }
    for what, (data, status) in cases.items():
        r = _post(client, data)
        assert r.status_code == status, (what, r.status_code, r.text)
        detail = r.json()["detail"]
        assert isinstance(detail, str) and len(detail) > 10
        _no_server_path(detail)


def _blank_png():
    from PIL import Image
    buf = io.BytesIO()
    Image.fromarray(np.full((120, 200, 3), 255, np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def test_hostile_xml_is_refused_quickly(client):
    lol = "".join(f'<!ENTITY l{i} "&l{i - 1};&l{i - 1};&l{i - 1};&l{i - 1};&l{i - 1};">' for i in range(1, 12))
    bomb = (f'<?xml version="1.0"?><!DOCTYPE RestingECG [<!ENTITY l0 "lol">{lol}]>'
            f"<RestingECG><PatientDemographics>&l11;</PatientDemographics></RestingECG>").encode()
    t = time.perf_counter()
    r = _post(client, bomb)
    assert r.status_code == 422, r.text
    assert time.perf_counter() - t < 20
    ext = (b'<?xml version="1.0"?><!DOCTYPE RestingECG [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
           b"<RestingECG><MuseInfo>&x;</MuseInfo></RestingECG>")
    r = _post(client, ext)
    assert r.status_code == 422 and "root:" not in r.text


def test_oversize_upload(client, work):
    big = b"0" * (LIMIT + 100_000)
    r = _post(client, big)
    assert r.status_code == 413 and "limit" in r.json()["detail"]
    # without Content-Length (chunked), the streamed body is counted
    def gen():
        head = (b"--B\r\nContent-Disposition: form-data; name=\"file\"; filename=\"x\"\r\n"
                b"Content-Type: application/octet-stream\r\n\r\n")
        yield head
        for _ in range(8):
            yield b"1" * (LIMIT // 4)
        yield b"\r\n--B--\r\n"
    r = client.post("/api/v1/analyze", content=gen(), headers={"content-type": "multipart/form-data; boundary=B"})
    assert r.status_code == 413
    assert not os.listdir(work)


def test_concurrent_uploads(client, work):
    data = shared_path("data", "scp_ecg", "ecgtoolkit_Example.scp").read_bytes()
    out = []

    def one():
        out.append(_post(client, data).status_code)
    threads = [threading.Thread(target=one) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert out == [200] * 6
    assert client.get("/api/v1/health").json()["in_flight"] == 0
    assert not os.listdir(work)


def test_saturation_gives_503(client):
    st = client.app.state.ecg
    saved = st.in_flight
    st.in_flight = st.capacity
    try:
        r = _post(client, b"anything")
        assert r.status_code == 503 and "busy" in r.json()["detail"] and r.headers.get("retry-after")
    finally:
        st.in_flight = saved


def test_timeout_gives_504_and_cleans_up(tmp_path):
    app = create_app(timeout_s=0.001, tmp_root=str(tmp_path), isolation="thread")
    with TestClient(app) as c:
        r = _post(c, shared_path("data", "ge_muse", "braveheart_example1.xml").read_bytes())
        assert r.status_code == 504
        deadline = time.time() + 30
        while os.listdir(tmp_path) and time.time() < deadline:   # the worker finishes in the background
            time.sleep(0.05)
        assert not os.listdir(tmp_path)
        assert app.state.ecg.in_flight == 0


def test_image_cache_bounds_and_expiry(client):
    c = ImageCache(max_items=2, max_bytes=1 << 20, ttl_s=60)
    a, b, d = c.put(b"a" * 10), c.put(b"b" * 10), c.put(b"d" * 10)
    assert c.get(a) is None and c.get(b) == b"b" * 10 and c.get(d) == b"d" * 10 and len(c) == 2
    small = ImageCache(max_items=10, max_bytes=25, ttl_s=60)
    ids = [small.put(b"x" * 10) for _ in range(3)]
    assert small.get(ids[0]) is None and small.nbytes <= 25
    gone = ImageCache(ttl_s=0.0)
    k = gone.put(b"png")
    assert gone.get(k) is None
    assert client.get("/api/v1/images/notarealid123.png").status_code == 404
    assert client.get("/api/v1/images/..%2F..%2Fetc%2Fpasswd.png").status_code == 404


from _service_analyses import CRASH, HANG, hang_or_analyze  # noqa: E402 (importable by the workers)


def test_timed_out_worker_process_is_killed_and_replaced(tmp_path):
    """A hanging analysis: 504 within the timeout, its process gone, the next upload analysed.

    Also a crashing one: 500, and the next upload analysed.
    """
    psutil = pytest.importorskip("psutil")
    muse = shared_path("data", "ge_muse", "braveheart_example1.xml")
    ecgcore.measure(ecgcore.read(muse))    # the delineator's numba cache is fresh for the new processes
    timeout = 20.0
    app = create_app(timeout_s=timeout, workers=1, queue=2, tmp_root=str(tmp_path), isolation="process",
                     analysis=hang_or_analyze)
    with TestClient(app) as c:
        assert c.get("/api/v1/health").json()["limits"]["isolation"] == "process"
        # a first upload boots the worker (imports) so that the hang below starts inside its time
        r = _post(c, muse.read_bytes())
        assert r.status_code == 200, r.text
        assert c.get(r.json()["links"]["ecg"]).content[:4] == b"\x89PNG"   # the PNG came back by pipe
        [pid] = app.state.processes.pids()
        worker = psutil.Process(pid)
        assert worker.is_running() and worker.ppid() == os.getpid()
        seen = []

        def watch():   # the hanging analysis did start in the worker (its marker file appears)
            deadline = time.time() + timeout
            while time.time() < deadline and not seen:
                seen.extend(n for d in os.listdir(tmp_path) if os.path.isdir(tmp_path / d)
                            for n in os.listdir(tmp_path / d) if n == "hanging")
                time.sleep(0.05)
        w = threading.Thread(target=watch)
        w.start()
        t = time.perf_counter()
        r = _post(c, HANG + b" " * 100)
        took = time.perf_counter() - t
        w.join()
        assert r.status_code == 504, r.text
        assert "longer than 20 s" in r.json()["detail"]
        assert seen == ["hanging"]
        assert timeout - 1 < took < timeout + 10, took
        # the hanging process was killed before the answer, and its directory removed
        assert not psutil.pid_exists(pid) or worker.status() == psutil.STATUS_ZOMBIE
        assert not os.listdir(tmp_path)
        assert c.get("/api/v1/health").json()["in_flight"] == 0
        # a worker that dies mid-analysis: a readable 500, and it is replaced too
        r = _post(c, CRASH)
        assert r.status_code == 500 and "internal error" in r.json()["detail"], r.text
        assert not os.listdir(tmp_path)
        # the next upload runs in a fresh process
        r = _post(c, muse.read_bytes())
        assert r.status_code == 200, r.text
        assert r.json()["measurements"]["values"]["heart_rate_bpm"] == pytest.approx(
            ecgcore.measure(ecgcore.read(muse))["heart_rate_bpm"], rel=1e-9)
        [pid2] = app.state.processes.pids()
        assert pid2 != pid and psutil.Process(pid2).is_running()
    assert not psutil.pid_exists(pid2) or psutil.Process(pid2).status() == psutil.STATUS_ZOMBIE
    assert not os.listdir(tmp_path)


def test_worker_processes_are_recycled_after_max_jobs_and_memory(tmp_path):
    """After N analyses (or above an RSS ceiling) a worker is replaced; answers stay the same."""
    psutil = pytest.importorskip("psutil")
    muse = shared_path("data", "ge_muse", "braveheart_example1.xml")
    want = ecgcore.measure(ecgcore.read(muse))["heart_rate_bpm"]  # numba cache warm for the workers
    app = create_app(workers=1, queue=2, tmp_root=str(tmp_path), isolation="process",
                     max_jobs_per_worker=2, max_worker_rss_mb=None)
    with TestClient(app) as c:
        pids = []
        for _ in range(3):
            r = _post(c, muse.read_bytes())
            assert r.status_code == 200, r.text
            assert r.json()["measurements"]["values"]["heart_rate_bpm"] == pytest.approx(want, rel=1e-9)
            pids.append(app.state.processes.pids()[0])
        # the process that answered jobs 1 and 2 was replaced right after job 2
        assert pids[0] != pids[1] == pids[2]
        old = psutil.Process(pids[0]) if psutil.pid_exists(pids[0]) else None
        deadline = time.time() + 30
        while old is not None and old.is_running() and old.status() != psutil.STATUS_ZOMBIE \
                and time.time() < deadline:
            time.sleep(0.1)
        assert old is None or not old.is_running() or old.status() == psutil.STATUS_ZOMBIE
        health = c.get("/api/v1/health").json()
        assert health["workers_recycled"] == 1 and health["limits"]["max_jobs_per_worker"] == 2
    # a memory ceiling below any Python process's size replaces the worker after every job
    app = create_app(workers=1, queue=2, tmp_root=str(tmp_path), isolation="process",
                     max_jobs_per_worker=0, max_worker_rss_mb=1.0)
    with TestClient(app) as c:
        seen = set()
        for _ in range(2):
            assert _post(c, muse.read_bytes()).status_code == 200
            seen.add(app.state.processes.pids()[0])
        assert len(seen) == 2
        assert c.get("/api/v1/health").json()["workers_recycled"] == 2
    assert not os.listdir(tmp_path)


def test_multi_record_file_lists_its_record_ids(client, work):
    """A CODE-15% file without ?record=: 422 with the exam ids, which the page offers in a picker."""
    from ecgcore.io.code15 import exam_ids
    h5 = shared_path("data", "code15", "exams_part_sample.hdf5")
    r = _post(client, h5.read_bytes(), "exams.hdf5")
    assert r.status_code == 422, r.text
    j = r.json()
    want = [int(i) for i in exam_ids(h5)]
    assert j["records"] == want and j["n_records"] == len(want) > 1
    assert "?record=" in j["detail"] and f"{len(want)} records" in j["detail"]
    r = client.post(f"/api/v1/analyze?record={want[-1]}", files={"file": ("x", h5.read_bytes())})
    assert r.status_code == 200, r.text
    assert r.json()["record"]["n_samples"] == ecgcore.read(f"{h5}::{want[-1]}").n_samples
    # a one-record file's 422 carries no list (nothing to pick)
    r = _post(client, shared_path("data", "dicom", "pydicom_waveform_ecg.dcm").read_bytes()[:3000])
    assert r.status_code == 422 and "records" not in r.json()
    assert not os.listdir(work)


def test_page_offers_the_records_of_a_multi_record_file(client):
    """Without a browser: the page has the picker and its script re-submits with ?record=ID."""
    page = client.get("/").text
    for elem in ('id="picker"', 'id="record-select"', 'id="record-id"', 'id="record-go"'):
        assert elem in page
    js = client.get("/static/app.js").text
    assert 'Array.isArray(data.records)' in js and "showPicker(file, data)" in js
    assert '"?record=" + encodeURIComponent' in js and "fetch(recordUrl(record)" in js

"""The screening page in a real headless Chromium: upload a record and a PDF, see the ECG and the table.

Needs Debian's ``chromium`` and ``chromium-driver`` packages and the ``selenium``
Python package; Selenium Manager is never asked to download anything (the
browser and driver paths are given). Skipped, with the reason, when they are absent.

The record goes in through the file picker and the PDF is dropped on the drop
zone (a real ``drop`` event carrying the file, as a drag from the desktop
delivers it). Screenshots of both results are kept as test artefacts in
``$ECGCORE_TEST_ARTIFACTS`` (default ``build/test-artifacts/``, ignored by git).
"""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
torch = pytest.importorskip("torch")

from conftest import shared_path  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
ARTIFACTS = Path(os.environ.get("ECGCORE_TEST_ARTIFACTS") or REPO / "build" / "test-artifacts")
CHROMIUM = next((p for p in (os.environ.get("ECGCORE_CHROMIUM"), "/usr/bin/chromium", "/usr/bin/chromium-browser",
                             shutil.which("chromium") or "") if p and os.path.isfile(p)), None)
DRIVER = next((p for p in (os.environ.get("ECGCORE_CHROMEDRIVER"), "/usr/bin/chromedriver",
                           shutil.which("chromedriver") or "") if p and os.path.isfile(p)), None)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    import uvicorn
    from ecgcore import models
    import ecgcore.models.image_model  # noqa: F401
    from ecgcore.cli.service_app import create_app
    import ecgcore
    # compile the delineator before the browser waits on it: a cold numba cache takes longer
    # than the page's waits on a loaded machine
    ecgcore.measure(ecgcore.read(shared_path("data", "ge_muse", "braveheart_example1.xml")))
    torch.manual_seed(0)
    d = tmp_path_factory.mktemp("browser-model")
    models.save(models.create("mtecg_image_tiny").eval(), d / "model.safetensors")
    port = _free_port()
    srv = uvicorn.Server(uvicorn.Config(create_app(str(d), timeout_s=900), host="127.0.0.1", port=port,
                                        log_level="warning"))
    th = threading.Thread(target=srv.run, daemon=True)
    th.start()
    deadline = time.time() + 30
    while not srv.started and time.time() < deadline:
        time.sleep(0.05)
    assert srv.started, "the server did not start"
    yield f"http://127.0.0.1:{port}"
    srv.should_exit = True
    th.join(10)


@pytest.fixture(scope="module")
def browser():
    if CHROMIUM is None or DRIVER is None:
        pytest.skip("no Chromium/chromedriver installed (Debian: apt-get install chromium chromium-driver)")
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install selenium)")
    from selenium.webdriver.chrome.service import Service
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
              "--window-size=1400,2200", "--no-first-run", "--disable-extensions"):
        opts.add_argument(a)
    drv = webdriver.Chrome(service=Service(executable_path=DRIVER), options=opts)
    drv.set_page_load_timeout(30)
    yield drv
    drv.quit()


def _wait(fn, timeout=60.0, what=""):
    deadline = time.time() + timeout
    while time.time() < deadline:
        v = fn()
        if v:
            return v
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def _wait_for_result(browser, before, name):
    from selenium.webdriver.common.by import By
    _wait(lambda: browser.execute_script(
        "const i = document.getElementById('ecg'); const r = document.getElementById('result');"
        "return !r.hidden && i.complete && i.naturalWidth > 0 && i.src !== arguments[0];", before),
        what=f"the rendered ECG of {name} (message: {browser.find_element(By.ID, 'message').text!r})")
    return browser.find_elements(By.CSS_SELECTOR, "#measurements tbody tr")


def _upload_and_wait(browser, path):
    from selenium.webdriver.common.by import By
    before = browser.execute_script("return document.getElementById('ecg').src")
    browser.find_element(By.ID, "file").send_keys(str(path))
    return _wait_for_result(browser, before, path.name)


def _drop_and_wait(browser, path):
    """Drop a file on the drop zone: dragenter/dragover (the zone lights up), then drop."""
    from selenium.webdriver.common.by import By
    before = browser.execute_script("return document.getElementById('ecg').src")
    # a file can only enter the page through a file input; a probe input outside the page's own
    # controls hands it to a DataTransfer, which the drop event then carries as the desktop would
    browser.execute_script("const p = document.createElement('input'); p.type = 'file'; p.id = 'dnd-probe';"
                           "document.body.appendChild(p);")
    browser.find_element(By.ID, "dnd-probe").send_keys(str(path))
    over = browser.execute_script("""
        const probe = document.getElementById('dnd-probe');
        const dt = new DataTransfer(); dt.items.add(probe.files[0]); probe.remove();
        const zone = document.getElementById('drop');
        for (const t of ['dragenter', 'dragover'])
          zone.dispatchEvent(new DragEvent(t, {bubbles: true, cancelable: true, dataTransfer: dt}));
        const lit = zone.classList.contains('over');
        zone.dispatchEvent(new DragEvent('drop', {bubbles: true, cancelable: true, dataTransfer: dt}));
        return [lit, zone.classList.contains('over')];""")
    assert over == [True, False], over            # highlighted while dragging, cleared on drop
    return _wait_for_result(browser, before, path.name)


def _screenshot(browser, name):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / name
    assert browser.save_screenshot(str(shot)) and shot.stat().st_size > 10_000
    print(f"screenshot artefact: {shot}")
    return shot


@pytest.mark.slow
def test_upload_record_and_drop_pdf_in_chromium(browser, server, tmp_path):   # browser first: skip early
    from selenium.webdriver.common.by import By
    browser.get(server + "/")
    assert "ECG screening" in browser.title
    _wait(lambda: "Model:" in browser.find_element(By.ID, "model-info").text, 20, "the health call")

    rows = _upload_and_wait(browser, shared_path("data", "ge_muse", "braveheart_example1.xml"))
    table = {r.find_elements(By.TAG_NAME, "td")[0].text: r.find_elements(By.TAG_NAME, "td")[1].text for r in rows}
    assert "heart rate bpm" in table and float(table["heart rate bpm"]) > 20
    assert "12 leads" in browser.find_element(By.ID, "record-line").text
    preds = browser.find_elements(By.CSS_SELECTOR, "#predictions tbody tr")
    assert [r.find_elements(By.TAG_NAME, "td")[0].text for r in preds] == ["scar", "lvef"]
    _wait(lambda: browser.execute_script("const h = document.getElementById('heatmap');"
                                         "return h.complete && h.naturalWidth > 0;"), 30, "the heat map")

    _screenshot(browser, "service_record.png")
    heat_before = browser.execute_script("return document.getElementById('heatmap').src")

    rows = _drop_and_wait(browser, shared_path("data", "pdf", "dicomecgplot_anonymous_ecg_3x4_1.pdf"))
    assert len(rows) > 10
    assert "Digitised pdf" in browser.find_element(By.ID, "record-title").text
    assert "Analysed dicomecgplot_anonymous_ecg_3x4_1.pdf" in browser.find_element(By.ID, "message").text
    _wait(lambda: browser.execute_script("const h = document.getElementById('heatmap');"
                                         "return h.src !== arguments[0] && h.complete && h.naturalWidth > 0;",
                                         heat_before), 30, "the PDF's heat map")
    shot = _screenshot(browser, "service_screenshot.png")
    out = os.environ.get("ECGCORE_SCREENSHOT")   # opt-in extra copy for the record (benchmarks/results)
    if out:
        shutil.copyfile(shot, out)

    # a rejected file: a clear message, no result
    bad = tmp_path / "notes.xml"
    bad.write_text("<Invoice>not an ECG</Invoice>")
    browser.find_element(By.ID, "file").send_keys(str(bad))
    msg = _wait(lambda: (lambda t: t if t.startswith("Rejected") else None)(
        browser.find_element(By.ID, "message").text), 20, "the rejection message")
    assert "415" in msg and "not a recognised ECG file" in msg
    assert not browser.find_element(By.ID, "picker").is_displayed()


@pytest.mark.slow
def test_multi_record_file_offers_a_record_picker_in_chromium(browser, server):
    """A CODE-15% HDF5 file holds several exams: the page lists them and analyses the one picked."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select
    from ecgcore.io.code15 import exam_ids
    import ecgcore
    h5 = shared_path("data", "code15", "exams_part_sample.hdf5")
    ids = [str(int(i)) for i in exam_ids(h5)]
    browser.get(server + "/")
    picker = browser.find_element(By.ID, "picker")
    assert not picker.is_displayed()
    browser.find_element(By.ID, "file").send_keys(str(h5))
    _wait(picker.is_displayed, 60, "the record picker")
    assert "422" in browser.find_element(By.ID, "message").text
    assert f"holds {len(ids)} records" in browser.find_element(By.ID, "picker-line").text
    select = Select(browser.find_element(By.ID, "record-select"))
    assert [o.get_attribute("value") for o in select.options] == ids
    pick = ids[1]
    select.select_by_value(pick)
    before = browser.execute_script("return document.getElementById('ecg').src")
    browser.find_element(By.ID, "record-go").click()
    rows = _wait_for_result(browser, before, f"{h5.name} record {pick}")
    assert f"(record {pick})" in browser.find_element(By.ID, "message").text
    assert not picker.is_displayed()
    rec = ecgcore.read(f"{h5}::{pick}")
    assert browser.find_element(By.ID, "record-title").text == "code15 record"
    assert f"{rec.n_leads} leads" in browser.find_element(By.ID, "record-line").text and len(rows) > 10
    _screenshot(browser, "service_record_picker.png")

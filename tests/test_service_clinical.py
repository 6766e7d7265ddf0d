"""The screening service with a model that fuses clinical variables: the patient's values come
with the upload (form field ``clinical``, JSON), ``/health`` names the columns."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("multipart")
torch = pytest.importorskip("torch")

import ecgcore  # noqa: E402
from fastapi.testclient import TestClient  # noqa: E402

from ecgcore.cli.service_app import create_app  # noqa: E402

COLS = ["age", "female_gender", "dm", "ht", "smoke", "dlp"]


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    from ecgcore import models
    from ecgcore.models.classifier import ECGClassifier

    torch.manual_seed(3)
    clf = ECGClassifier(models.create("mtecg_image_tiny", heads={"scar": 2, "lvef": 2, "n_clinical": 6}).eval())
    work = tmp_path_factory.mktemp("svc_clin")
    page = work / "page.png"
    ecgcore.plot(ecgcore.simulate(1, seed=2)[0], page, layout="6x2", dpi=100)
    app = create_app(classifier=clf, workers=1, timeout_s=600, tmp_root=str(work), explain=False)
    with TestClient(app) as c:
        yield c, page.read_bytes(), clf, page


def _post(c, data, clinical=None):
    form = {"clinical": clinical} if clinical is not None else None
    return c.post("/api/v1/analyze", files={"file": ("page.png", data)}, data=form)


def test_health_names_the_clinical_columns(client):
    c, *_ = client
    assert c.get("/api/v1/health").json()["model"]["clinical"] == COLS


def test_predictions_use_the_uploaded_values(client):
    c, data, clf, page = client
    feats = {"age": 63, "female_gender": 1, "dm": 0, "ht": 1, "smoke": 0, "dlp": 1}
    r = _post(c, data, json.dumps(feats))
    assert r.status_code == 200, r.text
    got = r.json()["predictions"]
    want = clf.predict(str(page), clinical=feats)
    for task in ("scar", "lvef"):
        assert got[task]["probability"]["positive"] == pytest.approx(want[task]["probability"]["positive"],
                                                                     rel=1e-5)
    older = _post(c, data, json.dumps(dict(feats, age=30))).json()["predictions"]
    assert older["scar"]["probability"]["positive"] != got["scar"]["probability"]["positive"]


def test_missing_or_bad_clinical_values(client):
    c, data, *_ = client
    r = _post(c, data)              # no values: the analysis still answers, with the reason
    assert r.status_code == 200 and r.json()["predictions"] is None
    assert "clinical" in r.json()["prediction_error"]
    for bad, word in (("{age: 63}", "not JSON"), ("[63, 1]", "JSON object"), ('{"age": "old"}', "numbers")):
        r = _post(c, data, bad)
        assert r.status_code == 422 and word in r.json()["detail"], r.text

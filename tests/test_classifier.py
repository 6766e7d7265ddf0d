"""The mtecg image pipeline, the multi-task image network and ECGClassifier (issue 9)."""

from __future__ import annotations

import io
import os

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import ecgcore  # noqa: E402
from ecgcore import models  # noqa: E402
from ecgcore.models import image_model, image_pipeline as ip  # noqa: E402
from ecgcore.models.classifier import ECGClassifier  # noqa: E402

from conftest import shared_path  # noqa: E402


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(7)
    m = models.create("mtecg_image_tiny")
    # BN statistics of a fresh model are trivial; give them non-trivial values so the test means something
    for mod in m.modules():
        if isinstance(mod, torch.nn.BatchNorm2d):
            mod.running_mean.uniform_(-0.1, 0.1)
            mod.running_var.uniform_(0.5, 1.5)
    return m.eval()


@pytest.fixture(scope="module")
def tiny_file(tiny, tmp_path_factory):
    d = tmp_path_factory.mktemp("mtecg")
    models.save(tiny, d / "model.safetensors")
    return d


def _page(rng, h=300, w=500):
    img = np.full((h, w, 3), 255, np.uint8)
    img[::10, :, :] = (240, 150, 140)                 # a red grid
    img[:, ::10, :] = (240, 150, 140)
    t = np.arange(w)
    y = (h / 2 + 40 * np.sin(t / 9.0) + rng.normal(0, 2, w)).astype(int).clip(0, h - 1)
    img[y, t] = 0                                       # a black trace
    return img


# ---------------------------------------------------------------------------------------------
# image pipeline
# ---------------------------------------------------------------------------------------------

def test_resize_matches_torch_bilinear(rng):
    img = rng.integers(0, 256, (97, 211, 3), dtype=np.uint8)
    for h, w in [(64, 64), (384, 384), (40, 300)]:
        ours = ip.resize_bilinear(img, h, w).astype(int)
        ref = torch.nn.functional.interpolate(torch.from_numpy(img).permute(2, 0, 1)[None].double(), size=(h, w),
                                              mode="bilinear", align_corners=False, antialias=False)
        ref = ref[0].permute(1, 2, 0).round().clamp(0, 255).numpy().astype(int)
        assert np.abs(ours - ref).max() <= 1
        assert (ours == ref).mean() > 0.99


def test_normalize_is_imagenet(rng):
    img = rng.integers(0, 256, (8, 9, 3), dtype=np.uint8)
    x = ip.normalize(img)
    assert x.shape == (3, 8, 9) and x.dtype == np.float32
    ref = (img[..., 1] / 255.0 - 0.456) / 0.224
    np.testing.assert_allclose(x[1], ref, rtol=1e-5, atol=1e-5)


def test_rearrange_3x4_to_6x2_tile_order():
    # label each of the 12 study tiles with its column-major index
    img = np.full((1050, 2918, 3), 255, np.uint8)
    k = 0
    for x in (0, 740, 1478, 2217):
        for y in (0, 350, 700):
            img[y:y + 350, x:x + 701] = k
            k += 1
    out = ip.rearrange_3x4_to_6x2(img)
    assert out.shape == (2100, 1402, 3)
    left = [out[350 * i + 175, 350, 0] for i in range(6)]
    right = [out[350 * i + 175, 701 + 350, 0] for i in range(6)]
    assert left == [0, 1, 2, 3, 4, 5]            # I, II, III, aVR, aVL, aVF
    assert right == [6, 7, 8, 9, 10, 11]         # V1 ... V6


def test_find_lead_area_and_grid_removal(rng):
    page = np.full((600, 900, 3), 255, np.uint8)
    page[20:40, 30:400] = 0                        # header text above the grid
    page[150:520, 100:820] = _page(rng, 370, 720)
    left, top, right, bottom = ip.find_lead_area(page)
    assert abs(top - 150) <= 12 and abs(bottom - 520) <= 12
    assert abs(left - 100) <= 12 and abs(right - 820) <= 12
    clean = ip.remove_grid(page)
    assert (clean[150:520, 100:820] == (240, 150, 140)).all(axis=2).sum() == 0
    assert (clean == 0).all(axis=2).sum() == (page == 0).all(axis=2).sum()   # ink kept


def test_load_page_rgba_png_and_pdf(tmp_path, rng):
    from PIL import Image
    rgba = np.zeros((20, 30, 4), np.uint8)
    rgba[..., 3] = 0                               # fully transparent -> white
    rgba[5, 5] = (0, 0, 0, 255)
    p = tmp_path / "x.bin"                         # the suffix is irrelevant: bytes decide
    Image.fromarray(rgba, "RGBA").save(p, format="PNG")
    img = ip.load_page(p)
    assert img.shape == (20, 30, 3) and (img[0, 0] == 255).all() and (img[5, 5] == 0).all()
    pdf = shared_path("data", "pdf", "dicomecgplot_anonymous_ecg_3x4_1.pdf")
    page = ip.load_page(pdf, dpi=150)
    import pypdfium2 as pdfium
    w_pt, h_pt = pdfium.PdfDocument(str(pdf))[0].get_size()
    assert abs(page.shape[1] - w_pt * 150 / 72) <= 2 and abs(page.shape[0] - h_pt * 150 / 72) <= 2
    with pytest.raises(ecgcore.ReadError):
        ip.load_page(shared_path("data", "scp_ecg", "ecgtoolkit_Example.scp"))


# ---------------------------------------------------------------------------------------------
# the network
# ---------------------------------------------------------------------------------------------

def test_mtecg_image_architecture():
    m = models.create("mtecg_image")            # the study's ResNet-34-D, 384 x 384
    assert m.model.head.fc.weight.shape == (512, 512) and m.model.head.fc.bias is None
    assert m.head.heads["scar"].weight.shape == (2, 512)
    mc = models.create("mtecg_image", heads={"scar": 2, "lvef": 2, "n_clinical": 6})
    assert mc.head.heads["lvef"].weight.shape == (2, 1024)     # concat[latent, clinical]
    enc = mc.head.encoder
    assert enc.embedding_layer.weight.shape == (2, 5)
    assert enc.clinical_rnn_layer.weight_ih_l0.shape == (512, 6) and enc.clinical_rnn_layer.bidirectional
    keys = set(mc.official_state_dict())
    for k in ("model.fc.weight", "scar_head.weight", "lvef_head.bias", "embedding_layer.weight",
              "clinical_rnn_layer.weight_hh_l0_reverse", "model.conv1.0.weight", "model.layer4.2.bn2.weight"):
        assert k in keys
    back = image_model.map_official_keys(mc.official_state_dict())
    assert set(back) == set(mc.state_dict())


def test_clinical_encoder_matches_manual(rng):
    torch.manual_seed(1)
    m = models.create("mtecg_image_tiny", heads={"scar": 2, "lvef": 2, "n_clinical": 6}).eval()
    c = torch.tensor([[0.63, 1, 0, 1, 0, 1], [0.41, 0, 1, 0, 1, 0]], dtype=torch.float32)
    enc = m.head.encoder
    got = enc(c)
    # the study's recipe written out: 5 tokens [emb(flag), age], sequence-first birnn, sum of final states
    rnn = enc.clinical_rnn_layer
    want = []
    for b in range(2):
        toks = torch.cat([enc.embedding_layer(c[b, 1:].long()), c[b, :1].expand(5, 1)], 1)
        h_f = torch.zeros(rnn.hidden_size)
        for t in range(5):
            h_f = torch.tanh(toks[t] @ rnn.weight_ih_l0.T + rnn.bias_ih_l0 + h_f @ rnn.weight_hh_l0.T + rnn.bias_hh_l0)
        h_b = torch.zeros(rnn.hidden_size)
        for t in reversed(range(5)):
            h_b = torch.tanh(toks[t] @ rnn.weight_ih_l0_reverse.T + rnn.bias_ih_l0_reverse
                             + h_b @ rnn.weight_hh_l0_reverse.T + rnn.bias_hh_l0_reverse)
        want.append(h_f + h_b)
    torch.testing.assert_close(got, torch.stack(want), rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------------------------------------
# ECGClassifier
# ---------------------------------------------------------------------------------------------

def _reference(model, img):
    x = torch.from_numpy(ip.prepare_image(img, size=64).tensor[None])
    with torch.no_grad():
        out = model(x)
    return {k: torch.softmax(v.double(), 1)[0].numpy() for k, v in out.items()}


def test_predict_structure_and_reference(tiny, tiny_file, rng):
    img = _page(rng)
    clf = ECGClassifier(tiny_file)
    res = clf.predict(img)
    assert set(res) == {"scar", "lvef"}
    ref = _reference(tiny, img)
    for task, r in res.items():
        assert set(r) == {"prediction", "probability"} and r["prediction"] in (0, 1)
        p = r["probability"]
        assert set(p) == {"negative", "positive"}
        assert p["negative"] + p["positive"] == pytest.approx(1.0, abs=1e-9)
        np.testing.assert_allclose([p["negative"], p["positive"]], ref[task], atol=1e-5)
        assert r["prediction"] == int(np.argmax(ref[task]))
    # deterministic, and the in-process model gives the same as the checkpoint
    assert clf.predict(img) == res
    again = ECGClassifier(tiny).predict(img)
    for task in res:
        assert again[task]["probability"]["positive"] == pytest.approx(res[task]["probability"]["positive"],
                                                                       abs=1e-6)
    # a batch gives the same as one at a time
    batch = clf.predict([img, _page(np.random.default_rng(3))])
    assert len(batch) == 2 and batch[0]["scar"]["prediction"] == res["scar"]["prediction"]
    assert batch[0]["scar"]["probability"]["positive"] == pytest.approx(res["scar"]["probability"]["positive"],
                                                                        abs=1e-6)


def test_round_probabilities_and_threshold(tiny_file, rng):
    img = _page(rng)
    exact = ECGClassifier(tiny_file).predict(img)
    rounded = ECGClassifier(tiny_file, round_probabilities=True).predict(img)
    for task in exact:
        p = rounded[task]["probability"]
        assert p["positive"] == round(exact[task]["probability"]["positive"], 2)
        assert round(p["negative"] + p["positive"], 9) == 1.0
        assert p["positive"] * 100 == pytest.approx(round(p["positive"] * 100))
    low = ECGClassifier(tiny_file, threshold=0.0).predict(img)
    high = ECGClassifier(tiny_file, threshold=1.0).predict(img)
    assert all(low[t]["prediction"] == 1 for t in low)
    assert all(high[t]["prediction"] == 0 for t in high)
    with pytest.raises(ecgcore.ConfigError):
        ECGClassifier(tiny_file, threshold=1.5)


def test_inputs_pdf_record_and_signal_file(tiny_file):
    clf = ECGClassifier(tiny_file)
    pdf = shared_path("data", "pdf", "dicomecgplot_anonymous_ecg_3x4_1.pdf")
    xml = shared_path("data", "ge_muse", "braveheart_example1.xml")
    r_pdf = clf.predict(str(pdf))
    r_file = clf.predict(xml)
    r_rec = clf.predict(ecgcore.read(xml))
    assert r_file == r_rec                         # a signal path is read then drawn, like the Record
    for r in (r_pdf, r_file):
        assert set(r) == {"scar", "lvef"}
        assert sum(r["scar"]["probability"].values()) == pytest.approx(1.0)
    with pytest.raises(ecgcore.PreprocessError):
        clf.predict(np.zeros((12, 5000), np.float32)[None])   # a bare 3-D array is no image


def test_clinical_model_requires_features_and_scales_age(rng):
    torch.manual_seed(3)
    m = models.create("mtecg_image_tiny", heads={"scar": 2, "lvef": 2, "n_clinical": 6}).eval()
    clf = ECGClassifier(m)
    img = _page(rng)
    with pytest.raises(ecgcore.PreprocessError, match="clinical"):
        clf.predict(img)
    feats = {"age": 63, "female_gender": 1, "dm": 0, "ht": 1, "smoke": 0, "dlp": 1}
    a = clf.predict(img, clinical=feats)
    b = clf.predict(img, clinical=[0.63, 1, 0, 1, 0, 1])    # model units: age / 100
    assert a == b
    c = clf.predict(img, clinical=dict(feats, age=30))
    assert c["scar"]["probability"] != a["scar"]["probability"]
    with pytest.raises(ecgcore.PreprocessError, match="lack"):
        clf.predict(img, clinical={"age": 60})


def test_training_checkpoint_directory(tiny, tmp_path, rng):
    from ecgcore.models.train.checkpointing import save_checkpoint
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    tasks = [{"name": "scar", "type": "multiclass", "n_classes": 2},
             {"name": "lvef", "type": "multiclass", "n_classes": 2}]
    save_checkpoint(str(run / "checkpoints" / "best.pt"),
                    {"config": {"tasks": tasks, "data": {"aggregate": "mean"}}, "model_spec": tiny.export_config(),
                     "model_state": tiny.state_dict(), "preset": "mtecg", "tasks": ["scar", "lvef"],
                     "target_scaler": {"mean": [0.0, 0.0], "std": [1.0, 1.0]}, "clinical_cols": [],
                     "clinical_scaler": None, "thresholds": {"scar": 0.0, "lvef": 1.0}})
    img = _page(rng)
    clf = ECGClassifier(run)
    res = clf.predict(img)
    ref = _reference(tiny, img)
    for task in ref:
        assert res[task]["probability"]["positive"] == pytest.approx(ref[task][1], abs=1e-5)
    tuned = ECGClassifier(run, threshold="checkpoint").predict(img)
    assert tuned["scar"]["prediction"] == 1 and tuned["lvef"]["prediction"] == 0
    with pytest.raises(ecgcore.CheckpointError):
        ECGClassifier(tmp_path / "nothing-here")


def test_linear_head_and_signal_models(rng):
    torch.manual_seed(5)
    lin = models.create("mtecg_image_tiny", heads={"type": "linear", "n": 1}).eval()
    r = ECGClassifier(lin).predict(_page(rng))
    assert set(r) == {"output"} and sum(r["output"]["probability"].values()) == pytest.approx(1.0)
    reg = ECGClassifier(lin, tasks=[{"name": "lvef_value", "type": "regression"}]).predict(_page(rng))
    assert set(reg["lvef_value"]) == {"value"}


def test_explain_gradcam_pp(tiny, tiny_file, rng):
    from PIL import Image
    from ecgcore.models.explain import grad_cam_pp
    img = _page(rng, 240, 600)
    clf = ECGClassifier(tiny_file)
    e = clf.explain(img, task="lvef")
    prep = ip.prepare_image(img, size=64)
    assert e.heatmap.shape == prep.image.shape[:2]          # the square squash undone
    assert e.heatmap.dtype == np.float32 and e.heatmap.min() >= 0 and e.heatmap.max() <= 1
    assert e.heatmap.max() == pytest.approx(1.0) or e.heatmap.max() == 0
    cam = grad_cam_pp(tiny, torch.from_numpy(prep.tensor[None]), target=("lvef", 1), upsample=False)[0]
    np.testing.assert_allclose(e.cam, cam.numpy(), rtol=1e-5, atol=1e-7)
    assert (e.cam >= 0).all()
    png = Image.open(io.BytesIO(e.overlay_png))
    assert png.format == "PNG" and png.size == (prep.image.shape[1], prep.image.shape[0])
    with pytest.raises(ecgcore.ConfigError):
        clf.explain(img, task="nope")


def test_registry_save_load_roundtrip(tiny, tmp_path, rng):
    models.save(tiny, tmp_path / "m.safetensors")
    back = models.load(tmp_path / "m.safetensors")
    x = torch.from_numpy(rng.normal(size=(2, 3, 64, 64)).astype(np.float32))
    with torch.no_grad():
        a, b = tiny(x), back(x)
    for k in a:
        torch.testing.assert_close(a[k], b[k])
    assert os.path.getsize(tmp_path / "m.safetensors") > 0


def test_image_ms_lvef_config_builds_the_study_model():
    pytest.importorskip("yaml")
    from ecgcore.models.train import load_config
    from ecgcore.models.train.engine import build_model
    from conftest import REPO
    cfg = load_config(REPO / "configs" / "image_ms_lvef.yaml")
    assert [t["weight"] for t in cfg["tasks"]] == [0.7, 0.3] and cfg["optim"]["lr"] == 5e-3
    m = build_model(cfg)
    assert isinstance(m, image_model.MTECGImageNet) and m.tasks == {"scar": 2, "lvef": 2}
    assert m.input_contract["height"] == 384 and m.config["backbone"] == "resnet34d"

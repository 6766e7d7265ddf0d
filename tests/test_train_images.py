"""Image datasets for image models, and the image_ms_lvef config trained end to end (issues 7 and 9)."""

from __future__ import annotations

import csv
import json
import os

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import ecgcore  # noqa: E402
from ecgcore import ConfigError  # noqa: E402
from ecgcore.models import image_pipeline as ip  # noqa: E402
from ecgcore.models.train import images  # noqa: E402

CONFIG = os.path.join(os.path.dirname(__file__), os.pardir, "configs", "image_ms_lvef.yaml")
# small, fast pages: 25 dpi drawing with a trace thick enough to survive the 96-px squash
RENDER = {"dpi": 25, "line_width": 1.2}
SIZE = 96


def _png(path, img):
    from PIL import Image
    Image.fromarray(img).save(path, format="PNG")
    return str(path)


@pytest.fixture(scope="module")
def small_dataset(tmp_path_factory):
    d = tmp_path_factory.mktemp("imgds")
    recs = ecgcore.simulate(n=3, seed=5, rhythm="mixed")
    page = ip.render_record(ecgcore.simulate(n=1, seed=9)[0], dpi=40)
    png = _png(d / "page.png", page)
    bad = d / "notes.png"
    bad.write_text("not an image at all")
    inputs = [("rec_a", recs[0]), ("rec_b", recs[1]), ("rec_c", recs[2]), png, str(bad)]
    s = images.build_image_dataset(inputs, d / "ds", size=40, render=RENDER, chunk_size=2)
    return d, recs, png, inputs, s


def test_dataset_layout_errors_and_bit_identical_items(small_dataset):
    d, recs, png, _, s = small_dataset
    root = d / "ds"
    assert s["n_inputs"] == 5 and s["n_records_ok"] == 4 and s["n_records_failed"] == 1
    assert s["dtype"] == "uint8" and s["shape"] == [3, 40, 40] and s["preset"]["kind"] == "image"
    assert sorted(p for p in os.listdir(root) if p.endswith(".npy")) == [
        "shard-000000.npy", "shard-000001.npy", "shard-000002.npy"]
    errs = [json.loads(x) for x in (root / "errors.jsonl").read_text().splitlines()]
    assert len(errs) == 1 and errs[0]["record_id"] == "notes" and errs[0]["error"] == "ReadError"
    from ecgcore.data import ECGDataset
    ds = ECGDataset(str(root))
    assert ds.record_ids == ["page", "rec_a", "rec_b", "rec_c"]
    assert np.load(root / "shard-000000.npy").dtype == np.uint8
    arr = images.ImageArrays(ds)
    opts = images.prepare_options(s["preset"])
    # the training item is exactly what the classifier's preprocessing gives for the same input
    for i, x in [(0, png), (1, recs[0]), (3, recs[2])]:
        ref = ip.prepare_image(x, **opts).tensor
        got = arr.array(i)
        assert got.dtype == np.float32 and got.shape == (3, 40, 40)
        np.testing.assert_array_equal(got, ref)
    assert not np.array_equal(arr.array(1), arr.array(2))   # different records, different images
    # 'ecgcore evaluate' reads datasets record by record: the same normalised images
    from ecgcore.models.train.data import ECGDatasetRows
    rows = ECGDatasetRows(str(root))
    np.testing.assert_array_equal(rows.segments("rec_b"), arr.array(2)[None])


def test_resume_redoes_only_missing_shards(small_dataset):
    d, _, _, inputs, _ = small_dataset
    root = d / "ds"
    before = np.load(root / "shard-000001.npy")
    with pytest.raises(ConfigError, match="resume"):
        images.build_image_dataset(inputs, root, size=40, render=RENDER, chunk_size=2)
    os.remove(root / "shard-000001.json")          # as if killed before the sidecar of chunk 1
    s = images.build_image_dataset(inputs, root, size=40, render=RENDER, chunk_size=2, resume=True)
    assert s["shards_resumed"] == 2 and s["shards_written"] == 1 and s["n_records_ok"] == 4
    np.testing.assert_array_equal(np.load(root / "shard-000001.npy"), before)
    with pytest.raises(ConfigError, match="differs"):
        images.build_image_dataset(inputs, root, size=48, render=RENDER, chunk_size=2, resume=True)


def test_bad_options_and_inputs(tmp_path):
    with pytest.raises(ConfigError, match="crop_box"):
        images.image_preset(crop_box="middle")
    with pytest.raises(ConfigError, match="render"):
        images.image_preset(render={"colour": "red"})
    with pytest.raises(ConfigError, match="size"):
        images.image_preset(size=4)
    rec = ecgcore.simulate(n=1, seed=1)[0]
    with pytest.raises(ConfigError, match="used by two inputs"):
        images.build_image_dataset([("x", rec), ("x", rec)], tmp_path / "o")
    with pytest.raises(ConfigError, match="expected a path"):
        images.build_image_dataset([42], tmp_path / "o2")


def test_engine_refuses_mismatched_image_datasets(small_dataset, tmp_path):
    from ecgcore.models.train import load_config, train
    d, *_ = small_dataset
    labels = tmp_path / "labels.csv"
    labels.write_text("record_id,scar_cad,lvef_le_50,split\npage,1,0,train\nrec_a,0,1,train\n"
                      "rec_b,1,1,val\nrec_c,0,0,test\n")
    base = [f"data.dataset={d / 'ds'}", f"data.labels={labels}", "model.name=mtecg_image_tiny",
            "device=cpu", "train.epochs=1"]
    # the dataset holds 40-px images, the tiny model is built for 64 px
    cfg = load_config(CONFIG, base)
    with pytest.raises(ConfigError, match="model.options.image_size: 40"):
        train(cfg, tmp_path / "r1", progress=False)
    cfg = load_config(CONFIG, base + ["model.options={image_size: 40}", "model.preset=other"])
    with pytest.raises(ConfigError, match="preset 'mtecg' but model"):
        train(cfg, tmp_path / "r2", progress=False)
    cfg = load_config(CONFIG, base + ["model.options={image_size: 40}", "data.augment.noise=0.1"])
    with pytest.raises(ConfigError, match="data.augment.noise"):
        train(cfg, tmp_path / "r3", progress=False)
    # a signal model on an image dataset is refused, naming the mismatch
    cfg = load_config(CONFIG, base + ["model.name=net1d_tiny", "model.heads=null", "model.preset=null",
                                      "model.options={}"])
    with pytest.raises(ConfigError, match="holds images"):
        train(cfg, tmp_path / "r4", progress=False)


def _auroc(y, p):
    from ecgcore import stats
    return stats.auroc(np.asarray(y, float), np.asarray(p, float))


def test_image_ms_lvef_trains_on_simulated_pages_and_classifier_predicts(tmp_path):
    """120 simulated records drawn as pages: wide QRS (RBBB/LBBB vs sinus) as the 'scar' task and
    heart rate > 90 bpm as the 'lvef' task; held-out AUROC >= 0.85 and >= 0.75 (chance: 0.5)."""
    recs = []
    for k, (rhythm, n) in enumerate([("sinus", 60), ("rbbb", 30), ("lbbb", 30)]):
        rs = ecgcore.simulate(n=n, seed=100 + k, rhythm=rhythm, heart_rate=(55, 125), noise="mild")
        recs += [(f"{rhythm}{i:03d}", r) for i, r in enumerate(rs)]
    s = images.build_image_dataset(recs, tmp_path / "ds", size=SIZE, render=RENDER, chunk_size=64)
    assert s["n_records_ok"] == 120
    perm = np.random.default_rng(0).permutation(len(recs))
    split = np.empty(len(recs), object)
    split[perm[:70]], split[perm[70:90]], split[perm[90:]] = "train", "val", "test"
    with open(tmp_path / "labels.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["record_id", "scar_cad", "lvef_le_50", "split"])
        for (rid, r), sp in zip(recs, split):
            w.writerow([rid, int(r.meta["rhythm"] != "sinus"), int(r.meta["heart_rate_bpm"] > 90), sp])
    run = tmp_path / "run"
    sets = [f"data.dataset={tmp_path / 'ds'}", f"data.labels={tmp_path / 'labels.csv'}",
            "model.name=mtecg_image_tiny", f"model.options={{image_size: {SIZE}}}", "device=cpu",
            "threads=1", "seed=1", "train.epochs=10", "train.early_stopping=0", "train.tensorboard=false",
            "optim.lr=3e-3", "scheduler.warmup_frac=0.1"]
    argv = ["train", "--config", CONFIG, "--out", str(run), "--no-progress"]
    for x in sets:
        argv += ["--set", x]
    from ecgcore.cli import main
    assert main(argv) == 0
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["splits"]["test"]["records"] == 30
    rows = [r for r in csv.DictReader(open(run / "predictions.csv")) if r["split"] == "test"]
    auc_scar = _auroc([r["scar_true"] for r in rows], [r["scar_p1"] for r in rows])
    auc_lvef = _auroc([r["lvef_true"] for r in rows], [r["lvef_p1"] for r in rows])
    assert auc_scar >= 0.85, auc_scar
    assert auc_lvef >= 0.75, auc_lvef

    # the trained run directory through the public classifier
    from ecgcore.models.train.checkpointing import load_checkpoint
    preset = load_checkpoint(run / "checkpoints" / "best.pt")["preset"]
    assert images.is_image_preset(preset) and preset["size"] == SIZE
    opts = images.prepare_options(preset)
    opts.pop("size")
    clf = ecgcore.ECGClassifier(str(run))      # the preset's options are the classifier's defaults
    assert {k: clf.image_options[k] for k in opts} == opts
    assert clf.describe()["image_size"] == [SIZE, SIZE] and clf.describe()["preset"] == "mtecg"
    rid = rows[0]["record_id"]
    rec = dict(recs)[rid]
    out_rec = clf.predict(rec)
    assert set(out_rec) == {"scar", "lvef"}
    for task in ("scar", "lvef"):
        res = out_rec[task]
        assert set(res) == {"prediction", "probability"} and res["prediction"] in (0, 1)
        p = res["probability"]
        assert set(p) == {"negative", "positive"} and abs(p["negative"] + p["positive"] - 1) < 1e-9
        # same pixels, same network: the classifier agrees with the training run's own prediction
        assert abs(p["positive"] - float(rows[0][f"{task}_p1"])) < 1e-5
        assert res["prediction"] == int(p["positive"] >= 0.5)
    # a PNG of the same drawn page (no crop: records are never cropped) gives the same answer
    png = _png(tmp_path / "page.png", ip.render_record(rec, **RENDER))
    clf_png = ecgcore.ECGClassifier(str(run), image_options=dict(opts, crop_box=None))
    out_png = clf_png.predict(png)
    for task in ("scar", "lvef"):
        assert abs(out_png[task]["probability"]["positive"] - out_rec[task]["probability"]["positive"]) < 1e-5
    # and with the default lead-area crop the PNG still gets a well-formed answer
    out_auto = clf.predict(png)
    assert set(out_auto) == {"scar", "lvef"} and 0 <= out_auto["scar"]["probability"]["positive"] <= 1


# ---------------------------------------------------------------------------------------------
# training-time image augmentation (models.image.augment_images / ImageAugment)
# ---------------------------------------------------------------------------------------------

from ecgcore.models import image as imaug  # noqa: E402

AUG = {"rotate": 4.0, "scale": 0.08, "translate": 0.05, "brightness": 0.2, "contrast": 0.2,
       "blur": 0.5, "jpeg": 0.5}


@pytest.fixture(scope="module")
def pages():
    """Four drawn ECG pages (real content: traces, labels, white margins) as a normalised batch."""
    recs = ecgcore.simulate(n=4, seed=21, rhythm="mixed")
    imgs = [ip.resize_bilinear(ip.render_record(r, dpi=30, grid=True), 56, 72) for r in recs]
    return imgs, torch.from_numpy(np.stack([ip.normalize(i) for i in imgs]))


def _to_pixels(x):
    mean = torch.as_tensor(ip.IMAGENET_MEAN)[None, :, None, None]
    std = torch.as_tensor(ip.IMAGENET_STD)[None, :, None, None]
    return ((x.double() * std + mean) * 255.0).numpy()


def test_augment_seeded_shapes_and_8bit_levels(pages):
    _, x = pages
    g = torch.Generator().manual_seed(11)
    a = imaug.augment_images(x, AUG, g)
    b = imaug.augment_images(x, AUG, torch.Generator().manual_seed(11))
    c = imaug.augment_images(x, AUG, torch.Generator().manual_seed(12))
    assert a.shape == x.shape and a.dtype == torch.float32
    torch.testing.assert_close(a, b, rtol=0, atol=0)                 # same seed, same batch
    assert not torch.equal(a, c) and not torch.equal(a, x)
    # the global generator (what the training engine seeds and checkpoints) is used by default
    torch.manual_seed(5)
    d = imaug.augment_images(x, AUG)
    torch.manual_seed(5)
    torch.testing.assert_close(imaug.augment_images(x, AUG), d, rtol=0, atol=0)
    # pixels stay 8-bit levels in [0, 255] once the normalisation is undone
    px = _to_pixels(a)
    assert px.min() > -1e-3 and px.max() < 255 + 1e-3
    assert np.abs(px - np.round(px)).max() < 2e-3
    # other dtypes and shapes are kept
    h = imaug.augment_images(x.double()[:, :, :40, :], AUG, torch.Generator().manual_seed(1))
    assert h.dtype == torch.float64 and h.shape == (4, 3, 40, 72)
    with pytest.raises(ConfigError, match="augment: unknown option 'rotation'"):
        imaug.augment_images(x, {"rotation": 3})
    with pytest.raises(ConfigError, match="augment.jpeg_quality"):
        imaug.augment_spec({"jpeg_quality": [90, 40]})
    with pytest.raises(ConfigError, match="augment.scale"):
        imaug.augment_spec({"scale": 2})


def test_augment_geometry_matches_scipy_affine(pages):
    from scipy import ndimage
    imgs, x = pages
    spec = {"rotate": 8.0, "scale": 0.1, "translate": 0.06}
    out = _to_pixels(imaug.augment_images(x, spec, torch.Generator().manual_seed(3)))
    # the draws, in the documented order, from the same seed
    g = torch.Generator().manual_seed(3)
    n = len(imgs)
    draws = [torch.rand(n, generator=g, dtype=torch.float64) for _ in range(4)]
    angle = (draws[0] * 16 - 8).numpy()
    zoom = (draws[1] * 0.2 + 0.9).numpy()
    tx, ty = (draws[2] * 0.12 - 0.06).numpy(), (draws[3] * 0.12 - 0.06).numpy()
    h, w = imgs[0].shape[:2]
    c = np.array([(h - 1) / 2, (w - 1) / 2])
    for i in range(n):
        a = np.deg2rad(angle[i])
        # output (row, col) -> input (row, col): c + A^-1 (p - c - t), A = zoom * R(angle) in (x, y)
        ainv_xy = np.array([[np.cos(a), np.sin(a)], [-np.sin(a), np.cos(a)]]) / zoom[i]
        m = ainv_xy[::-1, ::-1]                                    # (x, y) -> (row, col) order
        t = np.array([ty[i] * h, tx[i] * w])
        off = c - m @ (c + t)
        for ch in range(3):
            src = imgs[i][:, :, ch].astype(np.float64) / 255.0
            ref = ndimage.affine_transform(src, m, offset=off, order=1, mode="grid-constant", cval=1.0)
            ref = np.round(np.clip(ref, 0, 1) * 255.0)
            d = np.abs(out[i, ch] - ref)
            assert d.max() <= 1.0 + 1e-3, (i, ch, d.max())          # a rounding level at most
            assert (d < 0.5).mean() > 0.98
    assert np.abs(out - _to_pixels(x)).mean() > 5                   # and it did move the pages


def test_augment_blur_and_jpeg_match_references(pages):
    import io as _io
    from PIL import Image
    from scipy import ndimage
    imgs, x = pages
    u = torch.from_numpy(np.stack(imgs)).permute(0, 3, 1, 2).double() / 255.0
    sig = torch.tensor([0.5, 0.8, 1.1, 1.4], dtype=torch.float64)
    got = imaug._gaussian_blur(u, sig).numpy()
    r = int(np.ceil(3 * 1.4))
    for i in range(4):
        for ch in range(3):
            ref = ndimage.gaussian_filter(u[i, ch].numpy(), float(sig[i]), mode="nearest",
                                          truncate=r / float(sig[i]))
            np.testing.assert_allclose(got[i, ch], ref, atol=1e-9)
    # JPEG-like compression against a real JPEG codec (Pillow/libjpeg, 4:4:4) at the same quality:
    # about as far from the original as the codec, and much closer to the codec than to the original
    for q in (40, 75):
        mine = imaug.jpeg_like(u, torch.full((4,), float(q))).numpy() * 255.0
        for i in range(4):
            buf = _io.BytesIO()
            Image.fromarray(imgs[i]).save(buf, format="JPEG", quality=q, subsampling=0)
            pil = np.asarray(Image.open(buf)).astype(np.float64).transpose(2, 0, 1)
            orig = imgs[i].astype(np.float64).transpose(2, 0, 1)
            e_codec, e_mine = np.abs(pil - orig).mean(), np.abs(mine[i] - orig).mean()
            assert e_codec > 0.5 and abs(e_mine - e_codec) < 0.25 * e_codec, (q, e_mine, e_codec)
            assert np.abs(mine[i] - pil).mean() < 0.5 * e_codec


def test_augment_applies_in_training_only():
    torch.manual_seed(2)
    plain = ecgcore.models.create("mtecg_image_tiny", image_size=48)
    aug = ecgcore.models.create("mtecg_image_tiny", image_size=48, augment=AUG)
    assert aug.export_config()["config"]["augment"]["rotate"] == 4.0
    assert "augment" not in plain.export_config()["config"]
    aug.load_state_dict(plain.state_dict(), strict=True)          # no parameters or buffers added
    rebuilt = ecgcore.models.create("mtecg_image_tiny", heads=aug.export_config()["heads"],
                                    **aug.export_config()["config"])
    assert rebuilt.augment is not None and rebuilt.augment.spec == aug.augment.spec
    seen = []
    aug.model.conv1.register_forward_pre_hook(lambda m, a: seen.append(a[0].detach().clone()))
    x = torch.from_numpy(np.stack([ip.normalize(ip.resize_bilinear(
        ip.render_record(r, dpi=30), 48, 48)) for r in ecgcore.simulate(n=3, seed=4)]))
    plain.eval()
    aug.eval()
    with torch.no_grad():
        ref = plain(x)
        out = aug(x)
    assert torch.equal(seen[-1], x)                                # eval: the input untouched
    for k in ref:
        torch.testing.assert_close(out[k], ref[k], rtol=0, atol=0)
    aug.train()
    torch.manual_seed(9)
    with torch.no_grad():
        aug(x)
    first = seen[-1]
    assert first.shape == x.shape and first.dtype == x.dtype and not torch.equal(first, x)
    torch.manual_seed(9)
    with torch.no_grad():
        aug(x)
    torch.testing.assert_close(seen[-1], first, rtol=0, atol=0)   # seeded: the same batch again
    # explain() and the classifier run in eval mode even if handed a model left in training mode
    clf = ecgcore.ECGClassifier(aug)
    assert not aug.training
    r1 = clf.predict(ip.render_record(ecgcore.simulate(n=1, seed=4)[0], dpi=30))
    assert set(r1) == {"scar", "lvef"}


def test_inputs_sharing_a_file_name_get_their_folder_in_front(tmp_path):
    recs = ecgcore.simulate(n=3, seed=2)
    for sub, r in zip(("site1", "site2"), recs):
        (tmp_path / "in" / sub).mkdir(parents=True)
        ecgcore.write(r, str(tmp_path / "in" / sub / "p1.hea"), format="wfdb")
    ecgcore.write(recs[2], str(tmp_path / "in" / "site2" / "p2.hea"), format="wfdb")
    paths = sorted(str(p) for p in (tmp_path / "in").rglob("*.hea"))
    got = [it[0] for it in images._items(paths)]
    assert got == ["p2", "site1/p1", "site2/p1"]      # unique names keep the plain id
    # ids the caller gives are the caller's: a clash there is still an error
    with pytest.raises(ConfigError, match="used by two inputs"):
        images._items([("p1", paths[0]), ("p1", paths[1])])

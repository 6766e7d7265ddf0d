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
    cfg = load_config(CONFIG, base + ["model.name=net1d_tiny", "model.heads=null", "model.preset=null"])
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
    clf = ecgcore.ECGClassifier(str(run), image_options=opts)
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

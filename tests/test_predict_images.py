"""Image models end to end through the CLI (issue 9): ``ecgcore images`` builds a dataset with
non-default options, the image_ms_lvef config trains a tiny model on it (augmentation on), and
``ecgcore predict`` / ``ECGClassifier`` reuse the options stored in the checkpoint."""

from __future__ import annotations

import csv
import json
import os

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import ecgcore  # noqa: E402
from ecgcore.cli import main  # noqa: E402
from ecgcore.models import image_pipeline as ip  # noqa: E402
from ecgcore.models.classifier import ECGClassifier, checkpoint_input_kind  # noqa: E402
from ecgcore.models.train import images  # noqa: E402

CONFIG = os.path.join(os.path.dirname(__file__), os.pardir, "configs", "image_ms_lvef.yaml")
SIZE = 40
# deliberately not prepare_image's defaults: 3x4+II drawing at 25 dpi with thick traces, no crop
IMAGES_ARGS = ["--layout", "3x4+II", "--dpi", "25", "--line-width", "1.2", "--size", str(SIZE),
               "--crop", "none", "--chunk-size", "4", "--no-progress"]
# prepare_image's own defaults, spelled out
STUDY_DEFAULTS = {"crop_box": "auto", "grid": "keep", "rearrange": False, "dpi": 300.0, "render": None}


def _save(path, img, **kw):
    from PIL import Image
    Image.fromarray(img).save(path, **kw)
    return str(path)


@pytest.fixture(scope="module")
def flow(tmp_path_factory):
    d = tmp_path_factory.mktemp("imgflow")
    recdir = d / "records"
    recdir.mkdir()
    recs = {}
    for k, (rhythm, n) in enumerate([("sinus", 5), ("rbbb", 4)]):
        for i, r in enumerate(ecgcore.simulate(n=n, seed=40 + k, rhythm=rhythm, heart_rate=(55, 120))):
            rid = f"{rhythm}{i}"
            ecgcore.write(r, str(recdir / rid))
            recs[rid] = r
    page_rec = ecgcore.simulate(n=1, seed=77, rhythm="lbbb")[0]
    png = _save(d / "page.png", ip.render_record(page_rec, layout="3x4+II", dpi=25, line_width=1.2))
    bad = d / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)   # a PNG signature, then nothing decodable
    ids = sorted(recs) + ["page"]
    splits = {rid: ("val" if rid in ("sinus3", "rbbb2") else "test" if rid in ("sinus4", "rbbb3") else "train")
              for rid in ids}
    labels = d / "labels.csv"
    with open(labels, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["record_id", "scar_cad", "lvef_le_50", "split"])
        for rid in ids:
            w.writerow([rid, int(not rid.startswith("sinus")), int(rid in ("sinus1", "rbbb0", "page", "rbbb2",
                                                                          "sinus4")), splits[rid]])
    ds = d / "ds"
    rc = main(["images", str(recdir), png, str(bad), "--out", str(ds), "--labels", str(labels)] + IMAGES_ARGS)
    run = d / "run"
    sets = [f"data.dataset={ds}", f"data.labels={labels}", "model.name=mtecg_image_tiny",
            f"model.options={{image_size: {SIZE}, augment: {{rotate: 3, scale: 0.05, translate: 0.03, "
            f"brightness: 0.1, contrast: 0.1, blur: 0.3, jpeg: 0.3}}}}",
            "device=cpu", "threads=1", "seed=3", "train.epochs=2", "train.early_stopping=0",
            "train.tensorboard=false", "data.batch_size=4", "evaluate.n_boot=10"]
    argv = ["train", "--config", CONFIG, "--out", str(run), "--no-progress"]
    for s in sets:
        argv += ["--set", s]
    rc_train = main(argv)
    return {"dir": d, "recdir": recdir, "recs": recs, "page_rec": page_rec, "png": png, "bad": str(bad),
            "labels": labels, "ds": ds, "rc": rc, "run": run, "rc_train": rc_train, "sets": sets}


def _preset(flow):
    from ecgcore.models.train.checkpointing import load_checkpoint
    return load_checkpoint(flow["run"] / "checkpoints" / "best.pt")


# ---------------------------------------------------------------------------------------------
# ecgcore images
# ---------------------------------------------------------------------------------------------

def test_images_cli_builds_labelled_dataset(flow, capsys):
    ds = flow["ds"]
    assert flow["rc"] == 1                                  # one input failed, the rest went on
    summary = json.loads((ds / "summary.json").read_text())
    assert summary["n_inputs"] == 11 and summary["n_records_ok"] == 10 and summary["n_records_failed"] == 1
    assert summary["shape"] == [3, SIZE, SIZE] and summary["dtype"] == "uint8"
    preset = summary["preset"]
    assert preset["prepare"]["render"] == {"layout": "3x4+II", "dpi": 25.0, "line_width": 1.2, "grid": False}
    assert preset["prepare"]["crop_box"] is None and preset["size"] == SIZE
    assert summary["labels"]["n_labelled"] == 10 and summary["labels"]["n_unlabelled"] == 1
    errs = [json.loads(x) for x in (ds / "errors.jsonl").read_text().splitlines()]
    assert [e["record_id"] for e in errs] == ["broken"] and errs[0]["error"] == "ReadError"
    rows = list(csv.DictReader(open(ds / "manifest.csv")))
    assert [r["record_id"] for r in rows] == sorted(list(flow["recs"]) + ["page"])
    by = {r["record_id"]: r for r in rows}
    assert by["rbbb0"]["scar_cad"] == "1" and by["sinus3"]["split"] == "val" and by["page"]["lvef_le_50"] == "1"
    # each stored image is what prepare_image gives with the preset's options for that input
    from ecgcore.data import ECGDataset
    arr = images.ImageArrays(ECGDataset(str(ds)))
    opts = images.prepare_options(preset)
    for rid, src in [("rbbb1", str(flow["recdir"] / "rbbb1.hea")), ("page", flow["png"])]:
        i = arr.record_ids.index(rid)
        np.testing.assert_array_equal(arr.array(i), ip.prepare_image(src, **opts).tensor)
    # resume: every complete shard kept, the same failure reported again
    capsys.readouterr()
    rc = main(["images", str(flow["recdir"]), flow["png"], flow["bad"], "--out", str(ds),
               "--labels", str(flow["labels"]), "--resume"] + IMAGES_ARGS)
    err = capsys.readouterr().err
    assert rc == 1 and "3 resumed" in err and "1 failed" in err
    assert json.loads((ds / "summary.json").read_text())["shards_resumed"] == 3


def test_images_cli_usage_errors(flow, tmp_path, capsys):
    assert main(["images", flow["png"], "--out", str(tmp_path / "a"), "--crop", "1,2"]) == 2
    assert "--crop" in capsys.readouterr().err
    bad_labels = tmp_path / "l.csv"
    bad_labels.write_text("id,scar\npage,1\n")
    assert main(["images", flow["png"], "--out", str(tmp_path / "b"), "--labels", str(bad_labels)]) == 2
    err = capsys.readouterr().err
    assert "'record_id'" in err and "l.csv" in err
    # an existing dataset is not overwritten without --resume
    assert main(["images", flow["png"], "--out", str(flow["ds"])] + IMAGES_ARGS) == 2
    assert "resume" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------
# training with augmentation, and ECGClassifier defaults from the checkpoint
# ---------------------------------------------------------------------------------------------

def test_trained_run_stores_preset_and_augmentation(flow):
    assert flow["rc_train"] == 0
    ck = _preset(flow)
    assert images.is_image_preset(ck["preset"]) and ck["preset"]["prepare"]["render"]["layout"] == "3x4+II"
    assert ck["model_spec"]["config"]["augment"]["jpeg"] == 0.3
    assert checkpoint_input_kind(flow["run"]) == "image"


def _last_state(run):
    return torch.load(run / "checkpoints" / "last.pt", weights_only=True)["model_state"]


def test_augmented_training_is_seeded_and_resumes_bit_for_bit(flow, tmp_path):
    from ecgcore.models.train import load_config, train
    cfg = load_config(CONFIG, flow["sets"])
    stopped = train(cfg, tmp_path / "b", progress=False, stop_after_epochs=1)
    assert stopped["stopped"] and stopped["epoch"] == 1
    train(cfg, tmp_path / "b", progress=False, resume=True)
    a, b = _last_state(flow["run"]), _last_state(tmp_path / "b")
    for k in a:                     # the CLI run and the killed-and-resumed run: the same weights
        assert torch.equal(a[k], b[k]), k
    # without augmentation the same seed trains to other weights: the augmentation was applied
    plain = load_config(CONFIG, flow["sets"] + [f"model.options={{image_size: {SIZE}}}"])
    train(plain, tmp_path / "c", progress=False)
    c = _last_state(tmp_path / "c")
    assert any(not torch.equal(a[k], c[k]) for k in a if a[k].is_floating_point())


def test_classifier_defaults_image_options_from_checkpoint(flow):
    run = flow["run"]
    preset = _preset(flow)["preset"]
    explicit = images.prepare_options(preset)
    clf = ECGClassifier(str(run))
    clf_explicit = ECGClassifier(str(run), image_options=explicit)
    clf_study = ECGClassifier(str(run), image_options=STUDY_DEFAULTS)
    rec = flow["recs"]["rbbb3"]
    for x in (rec, flow["png"]):
        a, b, c = clf.predict(x), clf_explicit.predict(x), clf_study.predict(x)
        for task in ("scar", "lvef"):
            assert a[task]["probability"]["positive"] == b[task]["probability"]["positive"]
            assert abs(a[task]["probability"]["positive"] - c[task]["probability"]["positive"]) > 1e-6
        np.testing.assert_array_equal(clf.prepare(x).tensor, ip.prepare_image(x, **explicit).tensor)
    # the defaults reproduce the training run's own (evaluation-mode) predictions of its test records
    rows = {r["record_id"]: r for r in csv.DictReader(open(run / "predictions.csv"))}
    for rid in ("rbbb3", "sinus4"):
        got = clf.predict(str(flow["recdir"] / f"{rid}.hea"))
        for task in ("scar", "lvef"):
            assert abs(got[task]["probability"]["positive"] - float(rows[rid][f"{task}_p1"])) < 1e-5
    # an option given explicitly still wins over the checkpoint's
    over = ECGClassifier(str(run), image_options={"render": STUDY_DEFAULTS["render"]})
    assert over.image_options["crop_box"] is None and over.image_options["render"] is None
    with pytest.raises(ecgcore.ConfigError, match="image_options: unknown option 'crop'"):
        ECGClassifier(str(run), image_options={"crop": None})


# ---------------------------------------------------------------------------------------------
# ecgcore predict on an image checkpoint
# ---------------------------------------------------------------------------------------------

def test_predict_cli_routes_image_checkpoint(flow, tmp_path, capsys):
    run = flow["run"]
    page = ip.render_record(flow["page_rec"], layout="3x4+II", dpi=25, line_width=1.2)
    jpg = _save(tmp_path / "page.jpg", page, quality=95)
    tif = _save(tmp_path / "page.tiff", page)
    pdf = str(tmp_path / "page.pdf")
    ecgcore.plot(flow["recs"]["sinus2"], pdf, layout="3x4+II", dpi=50)
    hea = str(flow["recdir"] / "rbbb3.hea")
    out = tmp_path / "pred.csv"
    inputs = [flow["png"], jpg, tif, pdf, hea, flow["bad"]]
    rc = main(["predict", "--checkpoint", str(run / "checkpoints" / "best.pt"), *inputs, "--out", str(out),
               "--batch-size", "2"])
    err = capsys.readouterr().err
    assert rc == 1 and "broken.png" in err and "5 records" in err and "1 failed" in err
    rows = list(csv.DictReader(open(out)))
    assert list(rows[0]) == ["path", "n_segments", "scar_p0", "scar_p1", "lvef_p0", "lvef_p1"]
    assert [r["path"] for r in rows] == inputs[:5] and all(r["n_segments"] == "1" for r in rows)
    clf = ECGClassifier(str(run))
    for r, x in zip(rows, inputs[:5]):
        ref = clf.predict(x)
        for task in ("scar", "lvef"):
            assert abs(float(r[f"{task}_p1"]) - ref[task]["probability"]["positive"]) < 1e-6
            assert abs(float(r[f"{task}_p0"]) + float(r[f"{task}_p1"]) - 1) < 1e-9
    # the signal file drawn as in the dataset gives the training run's own test prediction
    train_rows = {r["record_id"]: r for r in csv.DictReader(open(run / "predictions.csv"))}
    assert abs(float(rows[4]["scar_p1"]) - float(train_rows["rbbb3"]["scar_p1"])) < 1e-5
    # a run directory works as the checkpoint; all inputs fine -> exit 0
    assert main(["predict", "--checkpoint", str(run), flow["png"], "--out", str(tmp_path / "p2.csv")]) == 0
    assert main(["predict", "--checkpoint", str(tmp_path / "nothing.pt"), flow["png"],
                 "--out", str(tmp_path / "p3.csv")]) == 2
    assert "nothing.pt" in capsys.readouterr().err


def test_checkpoint_input_kind_of_model_files(tmp_path):
    img = ecgcore.models.create("mtecg_image_tiny")
    sig = ecgcore.models.create("net1d_tiny")
    ecgcore.models.save(img, tmp_path / "img.safetensors")
    ecgcore.models.save(sig, tmp_path / "sig.safetensors")
    assert checkpoint_input_kind(tmp_path / "img.safetensors") == "image"
    assert checkpoint_input_kind(tmp_path / "sig.safetensors") == "signal"
    with pytest.raises(ecgcore.CheckpointError):
        checkpoint_input_kind(tmp_path / "none")

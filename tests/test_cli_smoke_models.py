"""Smoke sweep of the model-side commands (simulate, presets, train, evaluate, predict, study,
convert-checkpoint, serve) on tiny simulated data: bad numbers, unwritable or misplaced outputs, a
--resume of a finished or a different run, non-binary outcome columns and boolean event columns end
in one ``ecgcore ...`` line and exit 1/2 (never a traceback), before any long computation."""

from __future__ import annotations

import csv
import glob
import json
import os

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import ecgcore  # noqa: E402
from ecgcore.cli import main  # noqa: E402
from ecgcore.errors import ConfigError  # noqa: E402
from ecgcore.record import Record  # noqa: E402
from conftest import shared_path  # noqa: E402

N_REC = 16


def _lines(text):
    return [ln for ln in text.splitlines() if ln.strip()]


def _no_traceback(err):
    assert "Traceback" not in err, err


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """16 simulated records (WFDB) -> preset lvh dataset, a labels CSV, and a 1-epoch FCN run on it."""
    from ecgcore.models.train.data import simulated_targets
    from ecgcore.pipeline import items_from_paths, run_pipeline
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("smoke_models")
    recs = (ecgcore.simulate(N_REC // 2, seed=11, rhythm="sinus", heart_rate=(55, 100))
            + ecgcore.simulate(N_REC // 2, seed=12, rhythm="wide_qrs", heart_rate=(55, 100)))
    paths, rows = [], []
    (root / "recs").mkdir()
    for i, rec in enumerate(recs):
        p = root / "recs" / f"r{i:02d}"
        ecgcore.write(Record(rec.signal, rec.fs, rec.leads), str(p), format="wfdb")
        paths.append(str(p) + ".hea")
        qrs = simulated_targets(rec)["qrs_duration_ms"]
        # event as True/False text, as spreadsheets write it; follow-up time in days
        rows.append([f"r{i:02d}", f"p{i:02d}", f"{qrs:.2f}", int(qrs >= 120), 100 + 7 * i,
                     "True" if i % 3 == 0 else "False"])
    ds = root / "ds"
    run_pipeline(items_from_paths(paths), "lvh", str(ds), workers=1, chunk_size=64, progress=False)
    labels = root / "labels.csv"
    with open(labels, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["record_id", "patient_id", "qrs_ms", "wide", "fu_days", "event"])
        w.writerows(rows)
    cfg = root / "c.yaml"
    cfg.write_text(f"""
name: smoke_models
seed: 0
threads: 1
model: {{name: fcn_lvh_small, options: {{n_clinical: 0}}}}
data: {{dataset: {ds}, labels: {labels}, patient_col: patient_id, batch_size: 8,
        split: {{method: random, fractions: [0.5, 0.25, 0.25], seed: 1}}}}
tasks:
  - {{name: qrs_ms, type: regression}}
  - {{name: wide, type: binary}}
train: {{epochs: 1, tensorboard: false}}
evaluate: {{n_boot: 10}}
""")
    run = root / "run"
    assert main(["train", "--config", str(cfg), "--out", str(run), "--no-progress"]) == 0
    return {"root": root, "ds": str(ds), "labels": str(labels), "cfg": str(cfg), "run": run, "paths": paths}


# ------------------------------------------------------------------------------------ simulate / presets
@pytest.mark.parametrize("extra, word", [(["--duration", "0.5"], "--duration"), (["--duration", "-1"], "--duration"),
                                          (["--fs", "nan"], "--fs"), (["--fs", "0"], "--fs"),
                                          (["--n", "0"], "--n"), (["--seed", "-1"], "--seed")])
def test_simulate_bad_numbers_exit_2_on_stderr(tmp_path, capsys, extra, word):
    assert main(["simulate", "--n", "2", "--out", str(tmp_path / "s")] + extra) == 2
    out, err = capsys.readouterr()
    _no_traceback(err)
    assert word in err and not out
    assert not (tmp_path / "s").exists()


def test_simulate_out_that_is_a_file(tmp_path, capsys):
    f = tmp_path / "f"
    f.write_text("x")
    assert main(["simulate", "--n", "2", "--out", str(f)]) == 2
    assert "not a directory" in capsys.readouterr().err
    under = tmp_path / "f" / "sub"     # a folder below a file cannot be made
    assert main(["simulate", "--n", "2", "--out", str(under)]) == 1
    err = capsys.readouterr().err
    _no_traceback(err)
    assert "cannot write" in err


def test_simulate_refuses_to_leave_an_older_runs_records_beside_its_own(tmp_path, capsys):
    out = str(tmp_path / "s")
    assert main(["simulate", "--n", "3", "--out", out]) == 0
    assert main(["simulate", "--n", "3", "--out", out, "--seed", "4"]) == 0     # same files: rewritten
    capsys.readouterr()
    for argv in (["--n", "2"], ["--n", "3", "--to", "npy"]):
        assert main(["simulate", "--out", out] + argv) == 2
        assert "earlier simulation" in capsys.readouterr().err
    with open(os.path.join(out, "fiducials.jsonl")) as f:
        assert len(f.readlines()) == 3
    assert len(glob.glob(os.path.join(out, "sim_*.hea"))) == 3


def test_info_counts_failures_at_the_end(tiny, tmp_path, capsys):
    junk = tmp_path / "junk.xml"
    junk.write_text("not an ECG")
    assert main(["info", tiny["paths"][0], str(junk), tiny["paths"][1]]) == 1
    out, err = capsys.readouterr()
    assert out.count("format    wfdb") == 2
    assert _lines(err)[-1] == "ecgcore info: 2 described, 1 failed (named above)"


def test_presets_help_names_only_real_options(capsys):
    with pytest.raises(SystemExit):
        main(["presets", "--help"])
    text = capsys.readouterr().out
    assert "--add" not in text and "--json" in text


# ------------------------------------------------------------------------------------ train
def _train(tiny, out, *sets, resume=False):
    argv = ["train", "--config", tiny["cfg"], "--out", str(out), "--no-progress"]
    for s in sets:
        argv += ["--set", s]
    return main(argv + (["--resume"] if resume else []))


def test_resume_of_a_finished_run_recomputes_and_says_so(tiny, tmp_path, capsys):
    import shutil
    run = tmp_path / "run"
    shutil.copytree(tiny["run"], run)
    before = (run / "checkpoints" / "last.pt").read_bytes()
    capsys.readouterr()
    assert _train(tiny, run, "train.epochs=3", resume=True) == 0
    err = capsys.readouterr().err
    _no_traceback(err)
    assert "nothing was trained" in err
    m = json.loads((run / "metrics.json").read_text())
    assert "resumed_finished_run" in m and m["best_epoch"] == 1
    # the finished run's last state is kept as it was
    assert (run / "checkpoints" / "last.pt").read_bytes() == before
    with open(run / "log.csv") as f:
        assert len(list(csv.DictReader(f))) == 1


def test_resume_with_another_model_or_other_data_is_refused(tiny, tmp_path, capsys):
    import shutil
    run = tmp_path / "run"
    shutil.copytree(tiny["run"], run)
    capsys.readouterr()
    assert _train(tiny, run, "model.name=resnet_1d_tiny", "model.options={n_clinical: 0}", resume=True) == 2
    err = capsys.readouterr().err
    _no_traceback(err)
    assert "fcn_lvh_small" in err and "resnet_1d_tiny" in err and "config.json" in err
    assert _train(tiny, run, "data.split.seed=7", resume=True) == 2
    err = capsys.readouterr().err
    _no_traceback(err)
    assert "split differ" in err


def test_train_metrics_json_is_strict_json(tmp_path):
    """A one-record test split has a constant target: its R² is undefined, written as null, not NaN."""
    smoke = os.path.join(os.path.dirname(__file__), os.pardir, "configs", "smoke.yaml")
    out = tmp_path / "run"
    assert main(["train", "--config", smoke, "--out", str(out), "--no-progress", "--set", "data.simulate.n=6",
                 "--set", "train.epochs=1", "--set", "threads=1", "--set", "train.tensorboard=false"]) == 0

    def refuse(const):
        raise ValueError(f"bare {const} in metrics.json")
    m = json.loads((out / "metrics.json").read_text(), parse_constant=refuse)
    assert m["baselines"]["qrs_duration_ms"]["r2_of_train_mean"] is None


def test_train_zero_epochs_says_no_epoch_was_selected(tmp_path, capsys):
    smoke = os.path.join(os.path.dirname(__file__), os.pardir, "configs", "smoke.yaml")
    assert main(["train", "--config", smoke, "--out", str(tmp_path / "r"), "--no-progress", "--set",
                 "data.simulate.n=10", "--set", "train.epochs=0", "--set", "train.tensorboard=false"]) == 0
    err = capsys.readouterr().err
    assert "no epoch was selected" in err and "best epoch None" not in err


@pytest.mark.parametrize("override, key", [("train.early_stopping=-3", "train.early_stopping"),
                                           ("train.epochs=-1", "train.epochs"),
                                           ("evaluate.n_boot=0", "evaluate.n_boot"),
                                           ("threads=-2", "threads")])
def test_config_refuses_negative_counts(tiny, override, key):
    from ecgcore.models.train import load_config
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_config(tiny["cfg"], [override])


def test_train_out_not_writable(tiny, tmp_path, capsys):
    f = tmp_path / "f"
    f.write_text("x")
    assert _train(tiny, f) == 2
    assert "not a directory" in capsys.readouterr().err
    assert _train(tiny, f / "run") == 1
    err = capsys.readouterr().err
    _no_traceback(err)
    assert "cannot write" in err and str(f) in err


# ------------------------------------------------------------------------------------ evaluate
def test_evaluate_bad_options_and_outputs(tiny, tmp_path, capsys):
    run, ds = str(tiny["run"]), tiny["ds"]
    assert main(["evaluate", "--checkpoint", run, "--data", ds, "--n-boot", "0", "--out", str(tmp_path / "e")]) == 2
    assert "--n-boot" in capsys.readouterr().err
    f = tmp_path / "f"
    f.write_text("x")
    assert main(["evaluate", "--checkpoint", run, "--data", ds, "--no-figures", "--out", str(f / "sub")]) == 1
    err = capsys.readouterr().err
    _no_traceback(err)
    assert "cannot write" in err
    assert main(["evaluate", "--checkpoint", run, "--data", ds, "--device", "gpu7", "--out", str(tmp_path / "e")]) == 2
    err = capsys.readouterr().err
    _no_traceback(err)
    assert "gpu7" in err


def test_evaluate_default_out_beside_a_loose_checkpoint(tiny, tmp_path, capsys):
    import shutil
    d = tmp_path / "models" / "m"
    d.mkdir(parents=True)
    ck = d / "model.pt"
    shutil.copy(tiny["run"] / "checkpoints" / "best.pt", ck)
    assert main(["evaluate", "--checkpoint", str(ck), "--data", tiny["ds"], "--no-figures", "--n-boot", "5"]) == 0
    want = d / ("eval-" + os.path.basename(tiny["ds"]))
    assert (want / "metrics.json").is_file()
    assert not (tmp_path / "models" / want.name).exists()   # not one folder up
    err = capsys.readouterr().err
    assert str(want / "metrics.json") in err
    assert not glob.glob(str(want / "*.tmp-*"))
    # the summary line counts what was scored, out of what the dataset holds
    m = json.loads((want / "metrics.json").read_text())
    assert f"{m['scored']['n_scored']} of {N_REC} records scored" in err
    assert m["scored"]["n_scored"] < N_REC


def test_evaluate_default_out_keeps_same_named_datasets_apart(tiny, tmp_path, capsys):
    import shutil
    run = tmp_path / "run"
    shutil.copytree(tiny["run"], run)
    a, b = tmp_path / "a" / "cohort", tmp_path / "b" / "cohort"
    shutil.copytree(tiny["ds"], a)
    shutil.copytree(tiny["ds"], b)
    for d in (a, b, a):
        assert main(["evaluate", "--checkpoint", str(run), "--data", str(d), "--no-figures", "--n-boot", "5"]) == 0
    first, second = run / "eval-cohort", run / "eval-cohort-2"
    assert json.loads((first / "metrics.json").read_text())["dataset"] == str(a)
    assert json.loads((second / "metrics.json").read_text())["dataset"] == str(b)
    assert not (run / "eval-cohort-3").exists()        # re-evaluating a goes back to its own folder
    err = capsys.readouterr().err
    assert str(second / "metrics.json") in err


# ------------------------------------------------------------------------------------ predict
def test_predict_checks_its_output_before_predicting(tiny, tmp_path, capsys):
    run, rec = str(tiny["run"]), tiny["paths"][0]
    assert main(["predict", "--checkpoint", run, rec, "--out", str(tmp_path)]) == 2
    assert "is a directory" in capsys.readouterr().err
    f = tmp_path / "f"
    f.write_text("x")
    assert main(["predict", "--checkpoint", run, rec, "--out", str(f / "p.csv")]) == 2
    err = capsys.readouterr().err
    _no_traceback(err)
    assert str(f) in err
    out = tmp_path / "new" / "deeper" / "p.csv"     # a missing folder is made
    assert main(["predict", "--checkpoint", run, rec, "--out", str(out)]) == 0
    with open(out) as fh:
        assert len(list(csv.DictReader(fh))) == 1
    assert main(["predict", "--checkpoint", run, rec, "--out", str(out), "--device", "gpu7"]) == 2
    err = capsys.readouterr().err
    _no_traceback(err)
    assert "gpu7" in err


def test_predict_lists_failed_inputs_beside_its_csv(tiny, tmp_path, capsys):
    run, good = str(tiny["run"]), tiny["paths"][0]
    junk = tmp_path / "junk.xml"
    junk.write_text("not an ECG")
    out = tmp_path / "o" / "pred.csv"
    assert main(["predict", "--checkpoint", run, good, str(junk), str(tmp_path / "gone.hea"), "--out", str(out)]) == 1
    err_file = tmp_path / "o" / "pred.errors.jsonl"
    assert str(err_file) in capsys.readouterr().err
    lines = [json.loads(x) for x in err_file.read_text().splitlines()]
    assert [d["path"] for d in lines] == [str(junk), str(tmp_path / "gone.hea")]
    assert all(d["message"] for d in lines)
    with open(out) as f:
        assert [r["path"] for r in csv.DictReader(f)] == [good]
    assert main(["predict", "--checkpoint", run, good, "--out", str(out)]) == 0   # a clean rerun: list emptied
    assert err_file.read_text() == ""


def test_predict_files_holds_one_chunk_at_a_time(tiny, monkeypatch):
    from ecgcore.models.train import predict as P
    paths = tiny["paths"][:5] + [str(tiny["root"] / "missing.hea")] + tiny["paths"][5:7]
    whole, fail_whole = P.predict_files(paths, str(tiny["run"]))
    seen = []
    real = P.predict_records

    def spy(model, ck, segs, **kw):
        seen.append(len(segs))
        return real(model, ck, segs, **kw)
    monkeypatch.setattr(P, "predict_records", spy)
    rows, fails = P.predict_files(paths, str(tiny["run"]), chunk_records=3)
    assert seen == [3, 3, 1]
    assert [r["path"] for r in rows] == [r["path"] for r in whole] and len(rows) == 7
    for a, b in zip(rows, whole):
        assert a.keys() == b.keys()
        assert all(a[k] == b[k] if isinstance(a[k], str) else a[k] == pytest.approx(b[k], rel=1e-5) for k in a)
    assert fails == fail_whole and len(fails) == 1


# ------------------------------------------------------------------------------------ convert-checkpoint
def test_convert_checkpoint_run_dir_and_bad_outputs(tiny, tmp_path, capsys):
    from ecgcore import models
    run = str(tiny["run"])
    out = tmp_path / "m.safetensors"
    assert main(["convert-checkpoint", run, str(out)]) == 0
    m = models.load(str(out))
    ref = torch.load(tiny["run"] / "checkpoints" / "best.pt", weights_only=True)["model_state"]
    for k, v in m.state_dict().items():
        assert torch.equal(v, ref[k]), k
    assert not glob.glob(str(tmp_path / "*.tmp-*"))
    capsys.readouterr()
    assert main(["convert-checkpoint", run, str(tmp_path)]) == 1        # OUT is a folder
    err = capsys.readouterr().err
    _no_traceback(err)
    assert "is a directory" in err
    assert main(["convert-checkpoint", run, str(tmp_path / "no" / "m.safetensors")]) == 1
    err = capsys.readouterr().err
    _no_traceback(err)
    assert "cannot write" in err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["convert-checkpoint", str(empty), str(tmp_path / "x.safetensors")]) == 2
    assert "checkpoints/best.pt" in capsys.readouterr().err


def test_convert_checkpoint_hints_name_command_line_options(tmp_path, capsys):
    ck = shared_path("fixtures", "net1d_tiny", "checkpoint.pth")
    cfg = shared_path("fixtures", "net1d_tiny", "config.json")
    assert main(["convert-checkpoint", str(ck), str(tmp_path / "a.safetensors")]) == 1
    assert "--config" in capsys.readouterr().err
    assert main(["convert-checkpoint", str(ck), str(tmp_path / "b.safetensors"), "--model", "ecgfm",
                 "--config", str(cfg)]) == 1
    assert "leave --model out" in capsys.readouterr().err
    assert main(["convert-checkpoint", str(ck), str(tmp_path / "c.safetensors"), "--config", str(cfg)]) == 0


# ------------------------------------------------------------------------------------ serve
@pytest.mark.parametrize("extra, word", [(["--timeout", "0"], "--timeout"), (["--workers", "0"], "--workers"),
                                          (["--max-upload-mb", "-1"], "--max-upload-mb"),
                                          (["--max-image-mpx", "0"], "--max-image-mpx"),
                                          (["--queue", "-1"], "--queue")])
def test_serve_refuses_limits_that_refuse_every_upload(monkeypatch, capsys, extra, word):
    uvicorn = pytest.importorskip("uvicorn")
    pytest.importorskip("fastapi")
    started = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: started.append(kw))
    assert main(["serve", "--port", "18999", "--isolation", "thread"] + extra) == 2
    assert word in capsys.readouterr().err
    assert not started


def test_serve_decides_with_the_runs_thresholds_like_predict(tiny, tmp_path, monkeypatch, capsys):
    uvicorn = pytest.importorskip("uvicorn")
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient
    seen = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: seen.update(app=app))
    run, rec = str(tiny["run"]), tiny["paths"][0]
    thr = json.loads((tiny["run"] / "metrics.json").read_text())["thresholds"]["wide"]
    pred_csv = tmp_path / "p.csv"
    assert main(["predict", "--checkpoint", run, rec, "--out", str(pred_csv)]) == 0
    with open(pred_csv) as f:
        row = next(csv.DictReader(f))
    assert main(["serve", "--model", run, "--isolation", "thread"]) == 0
    with TestClient(seen["app"]) as c:
        assert c.get("/api/v1/health").json()["model"]["thresholds"] == {"wide": pytest.approx(thr)}
        base = rec[:-4]
        import io
        import zipfile
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as z:
            z.write(base + ".hea", os.path.basename(base) + ".hea")
            z.write(base + ".dat", os.path.basename(base) + ".dat")
        r = c.post("/api/v1/analyze", files={"file": ("r.zip", buf.getvalue(), "application/zip")})
        assert r.status_code == 200, r.text
        wide = r.json()["predictions"]["wide"]
    assert wide["probability"]["positive"] == pytest.approx(float(row["wide_prob"]), rel=1e-4)
    assert wide["prediction"] == int(row["wide_pred"])
    # the study's argmax on request
    assert main(["serve", "--model", run, "--isolation", "thread", "--threshold", "0.5"]) == 0
    with TestClient(seen["app"]) as c:
        assert c.get("/api/v1/health").json()["model"]["thresholds"] == {"*": 0.5}
    assert main(["serve", "--model", run, "--threshold", "1.5"]) == 2
    assert "--threshold" in capsys.readouterr().err


# ------------------------------------------------------------------------------------ study
def _study_tables(tmp_path, outcome_values, n=40):
    rng = np.random.default_rng(5)
    ids = [f"e{i:03d}" for i in range(n)]
    split = np.array(["train", "train", "val", "test"] * (n // 4))
    with open(tmp_path / "labels.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["record_id", "patient_id", "split", "AF", "is_male", "ilvm"])
        for i in range(n):
            w.writerow([ids[i], f"p{i}", split[i], outcome_values[i % len(outcome_values)], i % 2,
                        60 + rng.normal(0, 15)])
    with open(tmp_path / "measures.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["source", "p_duration_ms", "pr_interval_ms", "p_amplitude_ii_uv", "p_axis_deg"])
        for i in range(n):
            w.writerow([f"/x/{ids[i]}.hea", *rng.normal([110, 165, 120, 55], [15, 25, 40, 20]).round(1)])
    with open(tmp_path / "pred.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["record_id", "ilvm_pred"])
        for i in range(n):
            w.writerow([ids[i], 60 + rng.normal(0, 15)])


@pytest.mark.parametrize("values", [["no", "yes"], [0, 1, 2]])
def test_study_outcome_that_is_not_0_1(tmp_path, capsys, values):
    _study_tables(tmp_path, values)
    cfg = tmp_path / "pw.yaml"
    cfg.write_text("study: pwave_baseline\nmeasures: measures.csv\nlabels: labels.csv\nn_boot: 10\n"
                   "figures: false\n")
    assert main(["study", "pwave_baseline", "--config", str(cfg), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    _no_traceback(err)
    assert "'AF'" in err and "0/1" in err


def test_study_text_in_a_numeric_lvh_column_and_bad_out(tmp_path, capsys):
    _study_tables(tmp_path, [0, 1])
    cfg = tmp_path / "lvh.yaml"
    cfg.write_text("study: lvh\npredictions: pred.csv\nlabels: labels.csv\nn_boot: 10\nfigures: false\n"
                   "sex_col: split\n")
    assert main(["study", "lvh", "--config", str(cfg), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    _no_traceback(err)
    assert "'split'" in err and "not numeric" in err
    cfg.write_text("study: lvh\npredictions: pred.csv\nlabels: labels.csv\nn_boot: 0\n")
    assert main(["study", "lvh", "--config", str(cfg), "--out", str(tmp_path / "o")]) == 2
    assert "n_boot must be >= 1" in capsys.readouterr().err
    cfg.write_text("study: lvh\npredictions: pred.csv\nlabels: labels.csv\nn_boot: 10\nfigures: false\n")
    f = tmp_path / "f"
    f.write_text("x")
    assert main(["study", "lvh", "--config", str(cfg), "--out", str(f)]) == 2
    assert main(["study", "lvh", "--config", str(cfg), "--out", str(f / "sub")]) == 1
    err = capsys.readouterr().err
    _no_traceback(err)
    assert "cannot write" in err


def test_ccta_cv_folds_and_boolean_events(tiny, tmp_path, capsys):
    base = f"study: ccta_cv\nconfig: {tiny['cfg']}\nn_boot: 5\nfigures: false\n"
    cfg = tmp_path / "cv.yaml"
    cfg.write_text(base + "folds: 40\n")
    assert main(["study", "ccta_cv", "--config", str(cfg), "--out", str(tmp_path / "o1")]) == 2
    err = capsys.readouterr().err
    assert f"only {N_REC} patients" in err
    assert not (tmp_path / "o1" / "fold_0" / "checkpoints").exists()   # refused before any training
    cfg.write_text(base + "folds: 2\ntime_col: fu_days\nevent_col: event\nn_groups: 2\n")
    assert main(["study", "ccta_cv", "--config", str(cfg), "--out", str(tmp_path / "o2")]) == 0
    m = json.loads((tmp_path / "o2" / "metrics.json").read_text())
    rs = m["result"]["evaluation"]["tasks"]["risk_stratification"]
    with open(tiny["labels"]) as f:
        n_events = sum(r["event"] == "True" for r in csv.DictReader(f))
    assert rs["n"] == N_REC and rs["events"] == n_events

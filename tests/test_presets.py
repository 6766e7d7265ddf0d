"""Presets: validation, registry, parity with the published pipelines."""

from __future__ import annotations

import numpy as np
import pytest

import ecgcore
from ecgcore import presets as P
from ecgcore.errors import ConfigError, PreprocessError
from ecgcore.record import STANDARD_12, STANDARD_8, Record

try:
    from conftest import shared_path
except ImportError:  # --import-mode=importlib: conftest is not on sys.path
    import os
    from pathlib import Path

    def shared_path(*parts):
        root = Path(os.environ.get("ECGCORE_SHARED",
                                   Path(__file__).resolve().parent.parent.parent / "shared"))
        p = root.joinpath(*parts)
        if not p.exists():
            pytest.skip(f"reference shelf file {p} is absent")
        return p

FIXTURE_IDS = ["1594286", "975093", "438277", "358121", "2657522"]


def _tol(expected):
    # fixtures/README.md: max |a - e| <= 1e-5 * max(1, max |e|)
    return 1e-5 * max(1.0, float(np.abs(expected).max()))


def _loadmat(path):
    from scipy.io import loadmat
    return loadmat(str(path))


# -- ecgfm parity with fairseq-signals ---------------------------------------------------

_ECGFM_NOSEG = {"name": "ecgfm_unsegmented", "leads": list(STANDARD_12),
                "steps": [{"op": "trim_zero_padding"},
                          {"op": "resample", "fs": 500, "method": "linear"},
                          {"op": "zscore", "scope": "lead", "constant": "zero"}]}


@pytest.mark.parametrize("exam", FIXTURE_IDS)
def test_ecgfm_reproduces_fairseq_signals_from_org(exam):
    base = shared_path("fixtures", "ecgfm_preprocess")
    org = _loadmat(base / "org" / f"code_15_{exam}.mat")
    pre = _loadmat(base / "preprocessed" / f"code_15_{exam}.mat")
    rec = Record(org["feats"], float(org["curr_sample_rate"][0, 0]), STANDARD_12)
    # the unsegmented stage: linear 400 -> 500 Hz, per-lead z-score (population std)
    whole = ecgcore.preprocess(rec, _ECGFM_NOSEG)
    assert whole.dtype == np.float32 and whole.shape == (1,) + pre["feats"].shape
    assert np.abs(whole[0] - pre["feats"]).max() <= _tol(pre["feats"])
    # the model input: non-overlapping 2500-sample windows, tail dropped
    out = ecgcore.preprocess(rec, "ecgfm")
    segs = sorted((base / "segmented").glob(f"code_15_{exam}_*.mat"))
    assert out.shape == (len(segs), 12, 2500) and out.dtype == np.float32
    assert len(segs) == pre["feats"].shape[1] // 2500
    for path in segs:
        s = _loadmat(path)
        i = int(s["segment_i"][0, 0])
        assert np.abs(out[i] - s["feats"]).max() <= _tol(s["feats"])


def test_ecgfm_rule_is_float64_population_std_on_resampled_signal():
    """The stored mean/std are those of the resampled signal with ddof 0."""
    base = shared_path("fixtures", "ecgfm_preprocess")
    org = _loadmat(base / "org" / "code_15_2657522.mat")
    pre = _loadmat(base / "preprocessed" / "code_15_2657522.mat")
    x = org["feats"].astype(np.float64)
    T = x.shape[1]
    M = int(T * 500 / 400)
    assert M == pre["feats"].shape[1] == 3667
    y = np.stack([np.interp(np.arange(M), np.linspace(0, M - 1, T), r) for r in x])
    assert np.allclose(y.mean(1, keepdims=True), pre["mean"], atol=1e-9)
    assert np.allclose(y.std(1, keepdims=True), pre["std"], rtol=1e-7)
    # ddof=1 is measurably different, so the test above can fail
    assert not np.allclose(y.std(1, ddof=1, keepdims=True), pre["std"], rtol=1e-7)


def test_ecgfm_trims_code15_padding_before_resampling():
    """A zero-padded 4096-sample tracing gives the same input as the trimmed one."""
    base = shared_path("fixtures", "ecgfm_preprocess")
    org = _loadmat(base / "org" / "code_15_438277.mat")
    x = org["feats"]
    assert x.shape[1] == 2934
    padded = np.zeros((12, 4096), np.float32)
    padded[:, 581:581 + 2934] = x
    a = ecgcore.preprocess(Record(x, 400, STANDARD_12), "ecgfm")
    b = ecgcore.preprocess(Record(padded, 400, STANDARD_12), "ecgfm")
    assert a.shape == b.shape == (1, 12, 2500)
    assert np.array_equal(a, b)
    # without trimming the padded record would give 2 segments, so the trim is tested
    no_trim = {**P.get_preset("ecgfm"), "name": "nt"}
    no_trim["steps"] = no_trim["steps"][1:]
    assert ecgcore.preprocess(Record(padded, 400, STANDARD_12), no_trim).shape[0] == 2


@pytest.mark.parametrize("exam", FIXTURE_IDS)
def test_ecgfm_from_code15_hdf5(exam):
    h5 = shared_path("data", "code15", "exams_part_sample.hdf5")
    code15 = pytest.importorskip("ecgcore.io.code15", reason="CODE-15% reader not available")
    base = shared_path("fixtures", "ecgfm_preprocess")
    rec = code15.read_code15(h5, exam_id=int(exam))
    out = ecgcore.preprocess(rec, "ecgfm")
    segs = sorted((base / "segmented").glob(f"code_15_{exam}_*.mat"))
    assert out.shape[0] == len(segs)
    for path in segs:
        s = _loadmat(path)
        assert np.abs(out[int(s["segment_i"][0, 0])] - s["feats"]).max() <= _tol(s["feats"])


def test_ecgfm_batch_equals_per_record_and_reorders_by_name(rng):
    x = rng.standard_normal((5, 12, 5000)).astype(np.float32) * 0.5
    x[2, 4] = 0.3  # a constant lead becomes 0
    one = np.stack([ecgcore.preprocess(Record(r, 500, STANDARD_12), "ecgfm") for r in x])
    batch = P.preprocess_batch(x, 500, "ecgfm")
    assert batch.shape == (5, 2, 12, 2500)
    assert np.array_equal(batch, one)
    assert np.all(batch[2, :, 4] == 0) and np.abs(batch[2, :, 3]).max() > 0.5
    # MIMIC-IV-ECG stores aVF before aVL: rows are matched by name, never by position
    perm = [0, 1, 2, 3, 5, 4] + list(range(6, 12))
    names = [STANDARD_12[i] for i in perm]
    assert np.array_equal(P.preprocess_batch(x[:, perm], 500, "ecgfm", leads=names), batch)
    # per-lead z-score over the whole record, not per segment
    z = (x[0].astype(np.float64) - x[0].mean(1, keepdims=True)) / x[0].std(1, keepdims=True)
    assert np.abs(batch[0, 1] - z[:, 2500:]).max() < 1e-5


def test_ecgfm_batch_with_padded_and_unpadded_records(rng):
    x = rng.standard_normal((3, 12, 4400)).astype(np.float32)  # 5500 at 500 Hz
    x[1, :, :500] = 0
    x[1, :, -700:] = 0  # 3200 samples left -> 4000 at 500 Hz -> 1 segment
    with pytest.raises(PreprocessError, match="different output shapes"):
        P.preprocess_batch(x, 400, "ecgfm")
    x[1] = rng.standard_normal((12, 4400))
    x[1, :, :200] = 0  # 4200 samples left -> 5250 at 500 Hz -> still 2 segments
    out = P.preprocess_batch(x, 400, "ecgfm")
    ref = ecgcore.preprocess(Record(x[1], 400, STANDARD_12), "ecgfm")
    assert out.shape == (3, 2, 12, 2500) and np.array_equal(out[1], ref)
    untrimmed = ecgcore.preprocess(Record(x[1, :, 200:], 400, STANDARD_12), "ecgfm")
    assert np.array_equal(ref, untrimmed)


def test_too_short_record_is_a_preprocess_error(rng):
    rec = Record(rng.standard_normal((12, 2000)), 500, STANDARD_12, source="short.hea")
    with pytest.raises(PreprocessError, match="short.hea"):
        ecgcore.preprocess(rec, "ecgfm")


def test_missing_leads_are_zero_and_limb_leads_derived(rng):
    sig = rng.standard_normal((8, 5000)).astype(np.float32)
    rec = Record(sig, 500, STANDARD_8)
    out = ecgcore.preprocess(rec, "ecgfm")
    iii = sig[1].astype(np.float64) - sig[0]
    z = (iii - iii.mean()) / iii.std()
    assert np.abs(out[0, 2] - z[:2500]).max() < 1e-4
    only_i = Record(sig[:1], 500, ["I"])
    out = ecgcore.preprocess(only_i, "ecgfm")
    assert np.all(out[:, 1:] == 0) and np.abs(out[:, 0]).max() > 0


# -- ECGFounder / CCTA -----------------------------------------------------------------

def _ecgfounder_scipy(x, fs=500):
    """The published chain (facts/ecgfounder_ccta.md §1.4 variant 1), with scipy."""
    from scipy import signal as ss
    x = np.nan_to_num(x.astype(np.float64))
    b, a = ss.iirnotch(50, 30, fs=fs)
    x = ss.filtfilt(b, a, x, axis=-1)
    b, a = ss.butter(4, [0.67, 40], btype="bandpass", fs=fs)
    x = ss.filtfilt(b, a, x, axis=-1)
    k = int(0.4 * fs) + 1
    x = x - np.stack([ss.medfilt(r, k) for r in x])
    return (x - x.mean()) / (x.std() + 1e-8)


def test_ecgfounder_matches_published_chain_on_real_record():
    from ecgcore.io import read
    rec = read(shared_path("data", "wfdb", "JS00001.hea"))
    rec = rec.conform()
    assert rec.fs == 500 and rec.n_samples == 5000
    out = ecgcore.preprocess(rec, "ecgfounder")
    ref = _ecgfounder_scipy(rec.signal)
    assert out.shape == (1, 12, 5000)
    # the published (b, a) filtfilt chain, edges included
    assert np.abs(out[0] - ref).max() <= 1e-4 * max(1.0, np.abs(ref).max())
    # whole-array statistics: overall mean 0, std 1 (not per lead)
    assert abs(float(out.mean())) < 1e-4 and abs(float(out.std()) - 1) < 1e-3
    assert np.ptp(out[0].std(axis=1)) > 0.05


def test_ccta_and_ptbxl_eval_zscore_rules(rng):
    x = (rng.standard_normal((12, 5000)) * rng.uniform(0.1, 2, (12, 1))).astype(np.float32)
    rec = Record(x, 500, STANDARD_12)
    x64 = x.astype(np.float64)
    lead = (x64 - x64.mean(1, keepdims=True)) / (x64.std(1, keepdims=True) + 1e-8)
    whole = (x64 - x64.mean()) / (x64.std() + 1e-8)
    assert np.abs(ecgcore.preprocess(rec, "ccta")[0] - lead).max() < 1e-5
    assert np.abs(ecgcore.preprocess(rec, "ecgfounder_ptbxl_eval")[0] - whole).max() < 1e-5
    # 250 Hz input: linear resample to 500 Hz, crop or pad to 5000
    short = Record(x[:, :1500], 250, STANDARD_12)
    assert ecgcore.preprocess(short, "ccta").shape == (1, 12, 5000)


# -- LVH median beats ------------------------------------------------------------------

def _beats(rng, fs=500, n=5000, rr=0.8, jitter=0.03):
    """Synthetic 8-lead rhythm: a known QRS-T template at known beat times."""
    t = np.arange(-150, 250) / fs
    amps = rng.uniform(0.5, 2.0, 8)
    tmpl = (np.exp(-(t / 0.012) ** 2) - 0.25 * np.exp(-((t - 0.03) / 0.01) ** 2)
            + 0.3 * np.exp(-((t - 0.3) / 0.05) ** 2))[None] * amps[:, None]
    x = np.zeros((8, n))
    r, beats = int(0.4 * fs), []
    while r + 250 < n:
        x[:, r - 150: r + 250] += tmpl
        beats.append(r)
        r += int((rr + rng.uniform(-jitter, jitter)) * fs)
    x += 0.01 * rng.standard_normal(x.shape)
    return x.astype(np.float32), tmpl.astype(np.float32), np.array(beats)


def test_lvh_median_beat_recovers_template(rng):
    x, tmpl, _ = _beats(rng)
    out = ecgcore.preprocess(Record(x, 500, STANDARD_8), "lvh")
    assert out.shape == (1, 8, 400) and out.dtype == np.float32
    beat = out[0]
    # aligned to within a few samples and in mV (amplitude kept)
    lag = int(np.argmax(np.correlate(beat[0], tmpl[0], "full"))) - 399
    assert abs(lag) <= 8, lag
    shifted = np.roll(tmpl, lag, axis=1)
    for i in range(8):
        c = np.corrcoef(beat[i, 20:380], shifted[i, 20:380])[0, 1]
        assert c > 0.95, (i, c)
    assert np.allclose(np.ptp(beat, axis=1), np.ptp(tmpl, axis=1), rtol=0.15)


def test_lvh_uses_device_median_when_present(rng):
    x, tmpl, _ = _beats(rng)
    med = np.zeros((8, 600), np.float32)
    med[:, 100:500] = tmpl * 2  # a different beat, so the source is visible
    rec = Record(x, 500, STANDARD_8, median=Record(med, 500, STANDARD_8))
    auto = ecgcore.preprocess(rec, "lvh")
    assert np.ptp(auto[0, 0]) > 1.7 * np.ptp(tmpl[0])
    computed = {**P.get_preset("lvh"), "name": "lvh_computed"}
    computed["steps"] = [dict(s, source="computed") if s["op"] == "median_beats" else s
                         for s in computed["steps"]]
    assert np.ptp(ecgcore.preprocess(rec, computed)[0, 0]) < 1.3 * np.ptp(tmpl[0])
    device = {**P.get_preset("lvh"), "name": "lvh_device"}
    device["steps"] = [dict(s, source="device") if s["op"] == "median_beats" else s
                       for s in device["steps"]]
    with pytest.raises(PreprocessError, match="device median"):
        ecgcore.preprocess(Record(x, 500, STANDARD_8), device)


def test_lvh_flat_record_fails_cleanly():
    with pytest.raises(PreprocessError, match="beats"):
        ecgcore.preprocess(Record(np.zeros((8, 5000)), 500, STANDARD_8), "lvh")


# -- registry and validation -----------------------------------------------------------

def test_list_and_get_presets_are_copies():
    names = P.list_presets()
    for n in ("ecgfm", "ecgfounder", "ecgfounder_ptbxl_eval", "ccta", "lvh"):
        assert n in names
    p = P.get_preset("ecgfm")
    p["steps"].clear()
    assert P.get_preset("ecgfm")["steps"]
    assert P.output_shape("ecgfm") == (None, 12, 2500)
    assert P.output_shape("ecgfounder") == (1, 12, 5000)
    assert P.output_shape("lvh") == (1, 8, 400)


@pytest.mark.parametrize("bad, key", [
    ({"name": "x", "steps": [{"op": "wavelet"}]}, "wavelet"),
    ({"name": "x", "steps": [{"op": "zscore", "scop": "lead"}]}, "scop"),
    ({"name": "x", "steps": [{"op": "resample", "method": "linear"}]}, "fs"),
    ({"name": "x", "steps": [{"op": "zscore", "scope": "global"}]}, "scope"),
    ({"name": "x", "steps": [{"op": "segment", "length": 2.5}]}, "length"),
    ({"name": "x", "steps": [], "lead": ["I"]}, "lead"),
    ({"name": "x", "steps": [{"op": "zscore"}, {"op": "trim_zero_padding"}]}, "trim_zero_padding"),
    ({"steps": []}, "name"),
    ({"name": "x", "steps": [{"op": "zscore", "eps": "1e-8"}]}, "eps"),
    ({"name": "x", "steps": [{"op": "zscore", "eps": -1.0}]}, "eps"),
    ({"name": "x", "steps": [{"op": "nan_to_num", "value": None}]}, "value"),
    ({"name": "x", "steps": [{"op": "nan_to_num", "value": float("nan")}]}, "value"),
    ({"name": "x", "steps": [{"op": "lowpass", "cutoff": 40, "order": 2.5}]}, "order"),
    ({"name": "x", "steps": [{"op": "lowpass", "cutoff": 40, "order": 0}]}, "order"),
    ({"name": "x", "steps": [{"op": "notch", "zero_phase": "yes"}]}, "zero_phase"),
    ({"name": "x", "steps": [{"op": "segment", "length": 10, "drop_last": 1}]}, "drop_last"),
])
def test_invalid_presets_name_the_key(bad, key):
    with pytest.raises(ConfigError, match=key):
        P.validate_preset(bad)


def test_register_user_preset_dict_and_yaml(tmp_path, rng):
    mine = {"name": "test_user_250", "leads": ["I", "II"],
            "steps": [{"op": "resample", "fs": 250, "method": "poly"},
                      {"op": "zscore", "scope": "record"},
                      {"op": "segment", "length": 500, "stride": 250}]}
    P.register_preset(mine, overwrite=True)
    assert "test_user_250" in P.list_presets()
    rec = Record(rng.standard_normal((12, 5000)), 500, STANDARD_12)
    out = ecgcore.preprocess(rec, "test_user_250")
    assert out.shape == (9, 2, 500)
    with pytest.raises(ConfigError, match="already registered"):
        P.register_preset(mine)
    with pytest.raises(ConfigError, match="built in"):
        P.register_preset({**mine, "name": "ecgfm"})
    path = tmp_path / "mine.yaml"
    path.write_text("name: test_yaml\nleads: [I, II, III]\nsteps:\n"
                    "  - {op: zscore, scope: lead}\n  - {op: segment, length: 1000}\n")
    P.register_preset(str(path), overwrite=True)
    assert ecgcore.preprocess(rec, "test_yaml").shape == (5, 3, 1000)
    assert ecgcore.preprocess(rec, str(path)).shape == (5, 3, 1000)
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: b\nsteps:\n  - {op: notch, freqq: 60}\n")
    with pytest.raises(ConfigError, match="freqq") as exc:
        P.register_preset(str(bad))
    assert "bad.yaml" in str(exc.value)


def test_presets_cli_lists_shapes(capsys):
    from ecgcore.cli import main
    assert main(["presets"]) == 0
    out = capsys.readouterr().out
    assert "ecgfm" in out and "(n, 12, 2500)" in out and "(1, 8, 400)" in out
    assert main(["presets", "ecgfounder"]) == 0
    assert "median_baseline" in capsys.readouterr().out
    assert main(["presets", "nope"]) == 2


@pytest.mark.parametrize("scope", ["lead", "record"])
@pytest.mark.parametrize("constant", ["zero", "nan", "keep"])
def test_fused_zscore_segment_equals_signal_kernels(rng, scope, constant):
    from ecgcore.signal.normalize import zscore_segments as zscore_segment
    import ecgcore.signal as S
    x = (rng.standard_normal((4, 12, 5300)) * rng.uniform(0.05, 3, (4, 12, 1))
         + rng.uniform(-2, 2, (4, 12, 1))).astype(np.float32)
    x[1, 3] = 0.7    # constant lead
    x[2] = -0.25     # constant record
    x[3, 5, 17] = np.nan
    got = zscore_segment(x, 2500, scope, constant)
    ref = S.segment(S.zscore(x, scope=scope, constant=constant), 2500)
    assert got.shape == ref.shape == (4, 2, 12, 2500) and got.dtype == np.float32
    np.testing.assert_allclose(got, ref, rtol=0, atol=2e-6)
    assert np.isnan(got[3, :, 5]).all()
    eps = zscore_segment(x[:1], 1000, scope, constant, eps=1e-8)
    assert np.abs(eps - S.segment(S.zscore(x[:1], scope=scope, constant=constant, eps=1e-8),
                                  1000)).max() < 2e-6


def test_interim_median_beat_route_without_delineation(rng, monkeypatch):
    x, tmpl, beats = _beats(rng)
    r = P.detect_r_interim(x, 500)
    assert len(r) == len(beats)
    assert np.abs(r - beats).max() <= 15  # QRS-energy centre, near the R peak
    monkeypatch.setattr(P, "_delineate_median_beats", lambda: None)
    out = ecgcore.preprocess(Record(x, 500, STANDARD_8), "lvh")
    assert out.shape == (1, 8, 400)
    lag = int(np.argmax(np.correlate(out[0, 0], tmpl[0], "full"))) - 399
    assert abs(lag) <= 15
    c = np.corrcoef(out[0, 0], np.roll(tmpl[0], lag))[0, 1]
    assert c > 0.9, c
    with pytest.raises(PreprocessError, match="beats"):
        ecgcore.preprocess(Record(np.zeros((8, 5000)), 500, STANDARD_8), "lvh")


@pytest.mark.parametrize("preset", ["ecgfm", "ecgfounder", "ecgfounder_ptbxl_eval", "ccta", "lvh"])
def test_preprocess_leaves_the_record_untouched(preset):
    # nan_to_num skips its copy on finite input, so no later step may write into the record
    for rec in ecgcore.simulate(n=2, seed=3):
        before = rec.signal.copy()
        ecgcore.preprocess(rec, preset)
        np.testing.assert_array_equal(rec.signal, before)

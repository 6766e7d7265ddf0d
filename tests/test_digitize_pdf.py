"""Vector-PDF digitisation against pages with known truth, plus bad input."""

import matplotlib
import numpy as np
import pytest

import ecgcore
from conftest import shared_path
from ecgcore.digitization.metric import challenge_snr


@pytest.fixture(scope="module")
def sim():
    rec = ecgcore.simulate(n=1, fs=500, duration=10, seed=5)
    return rec[0] if isinstance(rec, list) else rec


def _masked_truth(rec, res):
    ref = rec.conform().signal.astype(float)
    drawn = np.zeros(ref.shape, bool)
    for p in res.panels:
        drawn[ecgcore.STANDARD_12.index(p.lead), p.samples] = True
    ref[~drawn] = np.nan
    return ref


@pytest.mark.parametrize("layout,speed,gain", [("3x4+II", 25, 10), ("3x4", 50, 20),
                                               ("6x2", 25, 5), ("12x1", 25, 10)])
def test_rendered_pdf_round_trip(tmp_path, sim, layout, speed, gain):
    path = tmp_path / "page.pdf"
    # matplotlib simplifies long paths (drops vertices); turn it off so the page holds the truth
    with matplotlib.rc_context({"path.simplify": False}):
        res = ecgcore.plot(sim, path, layout=layout, speed=speed, gain=gain)
    out = ecgcore.digitize(path, fs=500)
    assert out.meta["source_kind"] == "vector"
    assert out.meta["speed"] == speed and out.meta["gain"] == pytest.approx(gain)
    ref = _masked_truth(sim, res)
    est = out.conform(ecgcore.STANDARD_12, derive=False, missing="nan").signal.astype(float)
    est = est[:, :ref.shape[1]]
    snr = challenge_snr(ref, est, 500, align=False)
    assert np.all(snr > 40), snr
    # NaN where nothing was drawn (the renderer draws one extra joining sample per column)
    diff = (np.isfinite(est) != np.isfinite(ref)).sum(axis=1)
    assert np.all(diff <= 1), diff


def test_resampling_to_another_fs(tmp_path, sim):
    path = tmp_path / "p.pdf"
    with matplotlib.rc_context({"path.simplify": False}):
        ecgcore.plot(sim, path, layout="12x1")
    out = ecgcore.digitize(path, fs=250)
    # the drawn curve is sampled at k / 250 s, i.e. every second 500-Hz sample
    ref = sim.conform().signal.astype(float)[:, ::2]
    assert out.n_samples == ref.shape[1]
    snr = challenge_snr(ref, out.signal[:12].astype(float), 250, align=False)
    assert np.all(snr > 40), snr


def test_cardiosoft_pdf_leads_and_scale():
    path = shared_path("data", "pdf", "cardiosoft_testmann.pdf")
    rec = ecgcore.digitize(path, fs=500)
    assert rec.leads[:12] == ecgcore.STANDARD_12
    assert set(rec.leads[12:]) == {"V3R", "V4R", "V7"}
    assert rec.meta["speed"] == 50 and rec.meta["gain"] == pytest.approx(10, rel=0.01)
    # Einthoven: I + III = II holds only if names, signs and scale are all right
    resid = np.nanstd(rec["I"] + rec["III"] - rec["II"])
    assert resid < 0.05 * np.nanstd(rec["II"])
    ptp = np.nanmax(rec.signal[:12], 1) - np.nanmin(rec.signal[:12], 1)
    assert np.all((ptp > 0.2) & (ptp < 5))
    assert np.nanmax(rec["II"]) > -np.nanmin(rec["II"])   # upright R in II


def test_dicom_plot_pdf_matches_dicom():
    pdf = shared_path("data", "pdf", "dicomecgplot_anonymous_ecg_3x4_1.pdf")
    ref = ecgcore.read(shared_path("data", "dicom", "pydicom_waveform_ecg.dcm"))
    est = ecgcore.digitize(pdf, fs=ref.fs)
    assert est.meta["speed"] == 25 and est.meta["gain"] == 10
    e = est.conform(ecgcore.STANDARD_12, derive=False, missing="nan").signal.astype(float)
    r = ref.conform().signal.astype(float)
    E = np.full(r.shape, np.nan)
    E[:, :e.shape[1]] = e[:, :r.shape[1]]
    # column windows: short leads cover a quarter each, lead II all 10 s
    assert np.isfinite(E[ecgcore.STANDARD_12.index("II")]).mean() > 0.99
    assert 0.24 < np.isfinite(E[ecgcore.STANDARD_12.index("V1")]).mean() < 0.26
    r[np.isnan(E)] = np.nan
    snr = challenge_snr(r, E, ref.fs)
    # the renderer low-passed and simplified the trace, so this is not lossless (see report)
    assert np.nanmean(snr) > 12, snr


@pytest.mark.parametrize("content,reason", [(b"", "empty"), (b"hello world\n" * 10, "neither"),
                                            (b"%PDF-1.4\ngarbage", "PDF")])
def test_bad_input_raises_digitize_error(tmp_path, content, reason):
    p = tmp_path / "bad.bin"
    p.write_bytes(content)
    with pytest.raises(ecgcore.DigitizeError, match=reason):
        ecgcore.digitize(p)


def test_pdf_without_ecg_and_blank_image(tmp_path):
    from matplotlib.figure import Figure
    fig = Figure(figsize=(4, 3))
    fig.text(0.1, 0.5, "no ECG here")
    fig.savefig(tmp_path / "text.pdf")
    with pytest.raises(ecgcore.DigitizeError, match="no vector ECG"):
        ecgcore.digitize(tmp_path / "text.pdf")
    from PIL import Image
    Image.new("RGB", (400, 300), "white").save(tmp_path / "blank.png")
    with pytest.raises(ecgcore.DigitizeError, match="blank"):
        ecgcore.digitize(tmp_path / "blank.png")
    with pytest.raises(ecgcore.DigitizeError, match="layout"):
        ecgcore.digitize(tmp_path / "text.pdf", layout="5x5")


def test_cli_digitize(tmp_path, sim):
    from ecgcore.cli import digitize as cli
    import argparse
    good = tmp_path / "good.pdf"
    ecgcore.plot(sim, good, layout="12x1")
    bad = tmp_path / "bad.pdf"
    bad.write_bytes(b"%PDF-1.4 nope")
    parser = argparse.ArgumentParser()
    cli.add_parser(parser.add_subparsers())
    args = parser.parse_args(["digitize", str(good), str(bad), "--out", str(tmp_path / "o"),
                              "--to", "npy"])
    assert cli.run(args) == 1
    lines = (tmp_path / "o" / "errors.jsonl").read_text().splitlines()
    assert len(lines) == 1 and "bad.pdf" in lines[0]
    assert any(f.startswith("good") for f in __import__("os").listdir(tmp_path / "o"))

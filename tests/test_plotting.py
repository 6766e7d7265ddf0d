import numpy as np
import pytest

import ecgcore

mpimg = pytest.importorskip("matplotlib.image")


def _darkness_at(img, panel):
    g = img[..., :3].mean(-1)
    ok = ~np.isnan(panel.y_px)
    x = np.floor(panel.x_px[ok]).astype(int)
    y = np.floor(panel.y_px[ok]).astype(int)
    return g[np.clip(y, 0, g.shape[0] - 1), np.clip(x, 0, g.shape[1] - 1)]


@pytest.mark.parametrize("layout,n_panels", [("3x4+II", 13), ("3x4", 12), ("6x2", 12), ("12x1", 12)])
def test_pixel_ground_truth_is_on_the_trace(tmp_path, layout, n_panels):
    rec = ecgcore.simulate(1, seed=8, noise="none")[0]
    out = tmp_path / f"p_{layout}.png"
    res = ecgcore.plot(rec, out, layout=layout, dpi=100, line_width=1.0)
    img = mpimg.imread(out)
    assert img.shape[:2] == (res.height_px, res.width_px)
    assert len(res.panels) == n_panels
    for p in res.panels:
        # every drawn sample lies on a dark (trace) pixel
        assert np.mean(_darkness_at(img, p) < 0.55) > 0.97, p.lead
    # positions follow paper geometry: 25 mm/s and 10 mm/mV at 100 dpi
    p = res.panels[0]
    px_mm = 100 / 25.4
    np.testing.assert_allclose(np.diff(p.x_px), 25 / rec.fs * px_mm, rtol=1e-9)
    y_mv = (p.baseline_px - p.y_px) / (10 * px_mm)
    np.testing.assert_allclose(y_mv, rec[p.lead][p.samples], atol=1e-5)


def test_random_offsets_are_not_on_the_trace(tmp_path):
    """The check above can fail: shifted positions mostly land on paper, not ink."""
    rec = ecgcore.simulate(1, seed=8, noise="none")[0]
    out = tmp_path / "p.png"
    res = ecgcore.plot(rec, out, dpi=100, line_width=1.0)
    img = mpimg.imread(out)
    p = res.panels[0]
    p.y_px = p.y_px + 40
    assert np.mean(_darkness_at(img, p) < 0.55) < 0.5


def test_formats_and_bad_args(tmp_path):
    rec = ecgcore.simulate(1, seed=1)[0]
    for ext in ("svg", "pdf"):
        res = ecgcore.plot(rec, tmp_path / f"x.{ext}")
        head = (tmp_path / f"x.{ext}").read_bytes()[:5]
        assert head in (b"%PDF-",) or b"<?xml" in (tmp_path / f"x.{ext}").read_bytes()[:100]
        assert res.path.endswith(ext)
    with pytest.raises(ecgcore.ConfigError, match="layout"):
        ecgcore.plot(rec, layout="4x3")
    with pytest.raises(ecgcore.ConfigError, match="positive"):
        ecgcore.plot(rec, speed=float("nan"))
    with pytest.raises(ecgcore.WriteError, match="unsupported output") as err:
        ecgcore.plot(rec, tmp_path / "x.bmpx")
    assert "x.bmpx" in str(err.value)


def test_missing_leads_blank_and_nan_not_drawn(tmp_path):
    rec = ecgcore.simulate(1, seed=1)[0].pick(["I", "II", "V1"])
    rec.signal[0, 100:200] = np.nan
    res = ecgcore.plot(rec)
    pos = res.positions()
    assert np.isnan(pos["V6"][1]).all()          # absent lead: nothing drawn
    iii = pos["III"][1]                           # derived from I and II: NaN only where I is NaN
    idx = pos["III"][2]
    assert np.isnan(iii[(idx >= 100) & (idx < 200)]).all()
    assert np.isfinite(iii[(idx < 100) | (idx >= 200)]).all()
    assert np.isnan(pos["I"][1][100:200]).all() and np.isfinite(pos["I"][1][:100]).all()


def test_contiguous_6x2_layout(tmp_path):
    """layout="6x2c": limb leads over the first half, chest leads over the second half of
    the record on the same time axis (a chest lead starts where its row's limb lead
    ends), a separator tick at the join, every drawn sample on the trace."""
    rec = ecgcore.simulate(1, seed=8, noise="none")[0]
    out = tmp_path / "p6c.png"
    res = ecgcore.plot(rec, out, layout="6x2c", dpi=100, line_width=1.0)
    img = mpimg.imread(out)
    assert img.shape[:2] == (res.height_px, res.width_px)
    assert len(res.panels) == 12
    by = {p.lead: p for p in res.panels}
    n, fs = rec.n_samples, rec.fs
    px_mm = 100 / 25.4
    for limb, chest in zip(ecgcore.STANDARD_12[:6], ecgcore.STANDARD_12[6:]):
        a, b = by[limb], by[chest]
        assert a.t0 == 0 and a.t1 == pytest.approx(rec.duration / 2)
        assert b.t0 == pytest.approx(rec.duration / 2) and b.t1 == pytest.approx(rec.duration)
        assert a.samples[0] == 0 and b.samples[-1] == n - 1
        assert b.samples[0] == n // 2
        assert a.baseline_px == b.baseline_px                      # same row
        # one time axis: sample k of either lead sits at x0 + k / fs * speed
        x0 = a.x_px[0]
        np.testing.assert_allclose(b.x_px, x0 + b.samples / fs * 25 * px_mm, rtol=0, atol=1e-9)
        for p in (a, b):
            assert np.mean(_darkness_at(img, p) < 0.55) > 0.97, p.lead
    # narrower than the side-by-side 6x2, which draws both halves over the full record
    wide = ecgcore.plot(rec, layout="6x2", dpi=100)
    assert res.width_px < wide.width_px - 25 * rec.duration * px_mm * 0.9


def test_plot_reference_is_the_drawn_part_of_the_record():
    # a 3x4+II page draws each lead over its 2.5-s column and lead II over 10 s as well
    rec = ecgcore.simulate(n=1, fs=500, duration=10, seed=5)
    rec = (rec[0] if isinstance(rec, list) else rec).conform()
    res = ecgcore.plot(rec, None, layout="3x4+II")
    ref = res.reference(rec)
    assert ref.shape == rec.signal.shape
    shown = np.isfinite(ref)
    assert np.array_equal(ref[shown], rec.signal.astype(np.float64)[shown])
    ii = ecgcore.STANDARD_12.index("II")
    assert shown[ii].all()
    counts = shown.sum(axis=1)
    others = np.delete(counts, ii)
    # 1250 samples per column (+1 joining sample where a column meets the next)
    assert np.all((others >= 1250) & (others <= 1252)), counts
    # the columns follow I-III, aVR-aVF, V1-V3, V4-V6 at 0, 2.5, 5, 7.5 s
    v4 = ecgcore.STANDARD_12.index("V4")
    assert not shown[v4, :3750].any() and shown[v4, 3751:].all()

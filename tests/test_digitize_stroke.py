"""The stroke's width on raster pages: the flanks of spikes a thick trace merges, and the
time origin read from the sub-pixel ends of the ink.

Every check is against the renderer's exact pixel position of each drawn sample
(``ecgcore.plot``'s ground truth), not against the tracer itself."""

import numpy as np
import pytest

import ecgcore

pytest.importorskip("PIL")
from test_digitize_raster import _rec, _snr_db, _trace_panel_window  # noqa: E402


def _half_width(lw_pt, dpi=200.0):
    return lw_pt / 72.0 * dpi / 2.0


def _page_ink(path, ppm):
    from ecgcore.digitization import grid as G
    from ecgcore.digitization.raster import load_rgb

    rgb, _ = load_rgb(path)
    vmax = rgb.max(axis=2).astype(np.float32) / 255
    vmin = rgb.min(axis=2).astype(np.float32) / 255
    return G.trace_ink(vmax, vmin, G.background(vmax), soft=True, period_y=ppm)


def _trace_panel(ink, wt, panel, ppm, half_width, rho):
    """(SNR in dB of the traced centre line against the drawn rows, rho used) for one
    panel traced by the kernels on a window round its pixel ground truth."""
    _, _, m, est, used = _trace_panel_window(ink, wt, panel, ppm, half_width, rho)
    err = est - panel.y_px[m]
    err -= np.median(err)
    return _snr_db(panel.y_px[m], err), used


def test_flanks_of_spikes_merged_by_a_thick_stroke(tmp_path):
    """A 1.6-pt stroke (4.4 px at 200 dpi) merges the two flanks of every narrow QRS
    spike into one blob. Reading each flank from the blob's boundary moved in by the
    measured half width puts the centre line within reach of a thin trace's (21-23 dB
    here); without the flanks the blob's column centres, which lie between the flanks,
    gave 13-15 dB."""
    rec = _rec(3)
    path = tmp_path / "thick.png"
    res = ecgcore.plot(rec, path, line_width=1.6)
    ink, wt = _page_ink(path, res.px_per_mm)
    half = 2.0   # the binary run's (5 px) half less a pixel, as the reader passes it
    for p in res.panels:
        if p.lead in ("II", "aVR", "V2") and not p.rhythm:
            with_flanks, rho = _trace_panel(ink, wt, p, res.px_per_mm, half, -1.0)
            without, _ = _trace_panel(ink, wt, p, res.px_per_mm, half, 0.0)
            assert rho == pytest.approx(_half_width(1.6), abs=0.08), (p.lead, rho)
            assert with_flanks > 19.5 and with_flanks > without + 5.0, \
                (p.lead, with_flanks, without)


@pytest.mark.parametrize("lw", [0.6, 1.0, 1.6])
def test_half_width_measured_on_steep_flanks(tmp_path, lw):
    """The half width between the half-darkness boundaries, read across near-vertical
    flanks, against the drawn line width (a column's run on a flat stretch also holds
    the signal's jitter within the column: it read 0.2-0.8 px wide on these pages)."""
    rec = _rec(3)
    path = tmp_path / "p.png"
    ecgcore.plot(rec, path, line_width=lw)
    out = ecgcore.digitize(path, fs=500)
    assert out.meta["stroke"]["half_width_px"] == pytest.approx(_half_width(lw), abs=0.08)


def test_time_origin_from_the_subpixel_ends_of_the_ink(tmp_path):
    """The first sample's column, against the drawing's, on 1.0 and 1.6-pt pages with
    and without calibration pulses: within 0.35 px, 0.2 px on average (measured: 0.0-0.11
    px without a pulse, where both ends of the ink are read; 0.19-0.29 px early with
    one, where only the end is: ``ecgcore.plot``'s round caps reach a little less far
    past the last sample than the projecting caps the constant was set on). Before the
    ends were read to a sub-pixel, a page without a pulse carried no cap model at its
    start (0.6 and 1.6 px early) and its duration came out 3-6 samples long."""
    errs = []
    for seed in (3, 4):
        rec = _rec(seed)
        for lw in (1.0, 1.6):
            for calibration in (True, False):
                path = tmp_path / f"p{seed}{lw}{calibration}.png"
                res = ecgcore.plot(rec, path, line_width=lw, calibration=calibration)
                out = ecgcore.digitize(path, fs=500)
                true_x0 = res.panels[0].x_px[0] - 0.5     # pixel centres at integers
                errs.append(out.meta["x_origin_px"] - true_x0)
                assert out.signal.shape[1] == 5000, (seed, lw, calibration)
    errs = np.abs(errs)
    assert errs.max() < 0.35 and errs.mean() < 0.2, errs

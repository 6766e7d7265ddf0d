"""Faint thin strokes: a 100-dpi page blurred, rotated and compressed.

A 0.6-pt trace at 100 dpi is under one pixel wide; blurred by 0.8 px its steep QRS flanks
and the calibration pulse's edges peak at ink 0.3-0.5, under the tracer's and the pulse
finder's half-ink thresholds. The page stays readable by eye, and was read with its QRS
complexes cut off and its pulses lost (6.2-6.5 dB on simulated records)."""

import numpy as np
import pytest

import ecgcore

pytest.importorskip("PIL")
from test_digitize_raster import _damage, _rec, _score  # noqa: E402


@pytest.mark.parametrize("seed,angle", [(3, 1.0), (4, -3.0)])
def test_blurred_rotated_100_dpi_page(tmp_path, seed, angle):
    rec = _rec(seed)
    p = tmp_path / "page.png"
    res = ecgcore.plot(rec, p, dpi=100)
    q = _damage(p, np.random.default_rng(seed), blur=0.8, noise=8.0, jpeg=70, angle=angle)
    out = ecgcore.digitize(q, fs=500)
    flags = out.meta["digitize_flags"]
    # the pulses are found, so speed and gain are read, not assumed
    assert out.meta["pulses"] == 4
    assert "speed_assumed" not in flags and "gain_assumed" not in flags
    assert out.meta["speed"] == 25.0 and out.meta["gain"] == 10.0
    # measured 9.4 / 10.8 dB (6.2 / 6.5 on the tree before: pulses lost, QRS cut)
    assert np.nanmean(_score(rec, res, out)) > 8.5


def _faint_spike_map(peak_ink):
    """An ink map: a dark baseline (row 60) broken by a narrow spike up to row 10, drawn
    by a faint one-pixel stroke of ``peak_ink`` (up over columns 38-41, down over 41-44,
    as a QRS at 100 dpi), with an anti-aliased fringe at a third of it on both sides."""
    ink = np.zeros((80, 90), np.float32)
    ink[60, :38] = 1.0
    ink[60, 45:] = 1.0
    for r in range(10, 61):
        for c in (int(round(41 - 3 * (r - 10) / 50)), int(round(41 + 3 * (r - 10) / 50))):
            ink[r, c - 1] = max(ink[r, c - 1], peak_ink / 3)
            ink[r, c + 1] = max(ink[r, c + 1], peak_ink / 3)
            ink[r, c] = peak_ink
    return ink


@pytest.mark.parametrize("peak_ink", [0.3, 0.4, 0.8])
def test_dp_follows_a_faint_spike(peak_ink):
    from ecgcore.digitization._trace_kernels import dp_trace

    ink = _faint_spike_map(peak_ink)
    path, _ = dp_trace(ink, 60.0, 40.0, 0.3, 0.5, 0.01)
    # the path climbs onto the spike's strokes (at the half-ink rule it crossed the paper
    # columns under the spike on the baseline); the run from the path up to the tip is
    # column_points' work
    assert (path[39:44] < 55).all()
    assert path[:37].tolist() == [60] * 37 and path[46:].tolist() == [60] * 44


def _shares(ink, c):
    from ecgcore.digitization._trace_kernels import _column_shares

    out = np.empty(ink.shape[0])
    _column_shares(*(np.ascontiguousarray(ink[:, k]) for k in (c - 1, c, c + 1)), out)
    return out


def test_dp_does_not_follow_a_faint_fringe():
    """The quarter-ink rule applies to a stroke's centre only: an anti-aliased fringe
    (weaker than its neighbour) keeps the half-ink rule, so a path does not slide along
    the fringe beside a stroke instead of the stroke."""
    ink = _faint_spike_map(0.9)
    c = int(np.argmax(ink[30, :41]))                            # the up-flank's centre
    assert _shares(ink, c)[30] == 1.0
    assert _shares(ink, c - 1)[30] == pytest.approx(0.3 / 0.5)  # fringe: half-ink rule
    faint = _faint_spike_map(0.3)
    assert _shares(faint, c)[30] == pytest.approx(1.0)          # ridge: quarter rule
    assert _shares(faint, c - 1)[30] == pytest.approx(0.1 / 0.5)
    assert _shares(faint, c)[70] == 0.0                         # paper

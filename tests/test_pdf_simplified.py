"""Vector pages and path simplification.

ecgcore.plot must write every sample to PDF and SVG (matplotlib simplifies paths by
default); pages that other writers saved simplified must have their dropped samples
rebuilt from what the simplifier guarantees (facts: matplotlib's PathSimplifier, a
greedy forward merge of samples within 1/9 device unit of a run's line).
"""

import re

import matplotlib
import numpy as np
import pytest
from matplotlib.path import Path

import ecgcore
import ecgcore.digitization.pdf_vector as pv
from conftest import shared_path
from ecgcore.digitization.metric import challenge_snr
from test_digitize_pdf import _mpl_page, _read_12

TOL = 1.0 / 9.0                       # matplotlib's default path.simplify_threshold (pt)


@pytest.fixture(scope="module")
def sim():
    rec = ecgcore.simulate(n=1, fs=500, duration=10, seed=5)
    return rec[0] if isinstance(rec, list) else rec


def _polyline_lengths_pdf(path):
    import pypdfium2 as pdfium
    doc = pdfium.PdfDocument(str(path))
    try:
        lines, _, _ = pv.extract_page_content(doc[0])
    finally:
        doc.close()
    return sorted(len(p) for p, col in lines if pv._is_dark(col) and len(p) > 100)


def _polyline_lengths_svg(path):
    text = path.read_text()
    # one <path d="M x y L x y ..."> per trace; count its vertices
    return sorted(n for n in (len(re.findall(r"[ML]", d)) for d in
                              re.findall(r'<path d="([^"]*)"', text)) if n > 100)


@pytest.mark.parametrize("layout", ["3x4+II", "6x2"])
def test_plot_writes_every_sample(tmp_path, sim, layout):
    """With matplotlib's default (path.simplify on) PDF and SVG keep every drawn sample."""
    with matplotlib.rc_context({"path.simplify": True, "path.simplify_threshold": 1 / 9}):
        res = ecgcore.plot(sim, tmp_path / "p.pdf", layout=layout)
        ecgcore.plot(sim, tmp_path / "p.svg", layout=layout)
    want = sorted(len(p.samples) for p in res.panels)
    assert _polyline_lengths_pdf(tmp_path / "p.pdf") == want
    assert _polyline_lengths_svg(tmp_path / "p.svg") == want
    # every sample a vertex, yet the files stay small (about 8 bytes a vertex in PDF)
    n = sum(want)
    assert (tmp_path / "p.pdf").stat().st_size < 20 * n + 100_000
    assert (tmp_path / "p.svg").stat().st_size < 50 * n + 200_000


def test_plot_pdf_reads_back_exactly(tmp_path, sim):
    """A page of ecgcore.plot holds the samples themselves: > 90 dB with no alignment."""
    path = tmp_path / "p.pdf"
    res = ecgcore.plot(sim, path, layout="3x4+II")
    ref = res.reference(sim)
    out = ecgcore.digitize(path, fs=500)
    est = out.conform(ecgcore.STANDARD_12, derive=False, missing="nan").signal.astype(float)
    snr = challenge_snr(ref, est[:, :ref.shape[1]], 500, align=False)
    assert np.all(snr > 90), snr


def _simplify(v, fs, speed=25.0, gain=10.0):
    """Kept sample indices of a trace drawn in pt and simplified as matplotlib does."""
    x = np.arange(len(v)) / fs * speed * pv.PT_PER_MM
    y = v * gain * pv.PT_PER_MM
    with matplotlib.rc_context({"path.simplify": True, "path.simplify_threshold": TOL}):
        kept = Path(np.column_stack([x, y])).cleaned(simplify=True).vertices
    return np.unique(np.round(kept[:, 0] / (x[1] - x[0])).astype(np.int64)), x, y


def _rebuild(v, fs, fill=True, speed=25.0, gain=10.0):
    k, x, y = _simplify(v, fs, speed, gain)
    k = k[k < len(v)]
    curve = pv._prepare_curve(k / fs, v[k])
    if fill:
        curve = pv._fill_dropped(curve, 1 / fs, speed * pv.PT_PER_MM, gain * pv.PT_PER_MM)
    return k, pv._eval_curve(curve, np.arange(len(v)) / fs), x, y


def _leads():
    """(record, least mean gain in dB): a smooth simulated record gains little (its long
    runs are what cubics already follow), a real one (noise, sharp QRS) gains more."""
    rec = ecgcore.simulate(n=1, fs=500, duration=10, seed=3)
    out = [((rec[0] if isinstance(rec, list) else rec).conform(), 0.1)]
    try:
        out.append((ecgcore.read(shared_path("data", "wfdb", "JS00001.hea")).conform(), 1.0))
    except pytest.skip.Exception:
        pass
    return out


def test_rebuilt_samples_obey_the_simplifier():
    """Kept vertices stay exact; every rebuilt sample lies where the simplifier allows a
    dropped one (within 2 tolerances of its chord, across the line); and the rebuilt
    trace is closer to the truth than shape-preserving cubics alone."""
    for rec, need in _leads():
        for lead in (1, 7, 10):                              # II, V2, V5
            v = rec.signal[lead].astype(np.float64)
            k, est, x, y = _rebuild(v, rec.fs)
            assert len(k) < 0.8 * len(v)                     # the simplifier did drop samples
            np.testing.assert_allclose(est[k], v[k], atol=1e-9)
            ye = est * 10 * pv.PT_PER_MM
            j = np.arange(len(v))
            run = np.searchsorted(k, j, side="right") - 1
            inner = (run >= 0) & (run < len(k) - 1)
            a, b = k[run[inner]], k[run[inner] + 1]
            dxc, dyc = x[b] - x[a], ye[b] - ye[a]
            perp = np.abs((x[j[inner]] - x[a]) * dyc - (ye[j[inner]] - ye[a]) * dxc) \
                / np.hypot(dxc, dyc)
            assert np.all(perp <= 2 * TOL + 1e-9), perp.max()
        # over the leads of a record the rebuild gains (single leads may lose a little)
        v = rec.signal[:12].astype(np.float64)
        e1 = np.array([_rebuild(v[i], rec.fs)[1] for i in range(12)])
        e0 = np.array([_rebuild(v[i], rec.fs, fill=False)[1] for i in range(12)])
        g = np.mean(challenge_snr(v, e1, rec.fs, align=False)) \
            - np.mean(challenge_snr(v, e0, rec.fs, align=False))
        assert g > need, g


def test_complete_or_off_lattice_curves_are_left_alone():
    rng = np.random.default_rng(0)
    t = np.arange(200) / 500.0
    v = np.cumsum(rng.normal(0, 0.05, 200))
    curve = pv._prepare_curve(t, v)
    assert pv._fill_dropped(curve, 1 / 500, 71, 28) is curve          # nothing missing
    tj = np.sort(t[::3] + rng.uniform(0, 0.3 / 500, len(t[::3])))     # not on a lattice
    curve = pv._prepare_curve(tj, v[::3])
    assert pv._fill_dropped(curve, 1 / 500, 71, 28) is curve


def test_simplified_pages_gain(tmp_path, sim, monkeypatch):
    """Whole pages (second generator) saved with default simplification: the reader's
    rebuild beats cubics alone, on a real 500-Hz record and a simulated one."""
    recs = [sim.conform()]
    try:
        recs.append(ecgcore.read(shared_path("data", "wfdb", "JS00001.hea")).conform())
    except pytest.skip.Exception:
        pass
    for rec in recs:
        sig = rec.signal.astype(float)
        truth = _mpl_page(sig, rec.fs, tmp_path / "s.pdf", simplify=True)
        _, E1 = _read_12(tmp_path / "s.pdf", rec.fs, sig.shape)
        with monkeypatch.context() as m:
            m.setattr(pv, "_fill_dropped", lambda curve, *a: curve)
            _, E0 = _read_12(tmp_path / "s.pdf", rec.fs, sig.shape)
        s1 = np.mean(challenge_snr(truth, E1, rec.fs, align=False))
        s0 = np.mean(challenge_snr(truth, E0, rec.fs, align=False))
        assert s1 > s0 + 0.3, (s0, s1)
        # same samples present, the kept vertices untouched
        assert np.array_equal(np.isfinite(E1), np.isfinite(E0))
        assert np.mean(np.abs(E1 - E0)[np.isfinite(E1)] < 1e-9) > 0.15

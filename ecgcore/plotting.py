"""Paper-style ECG plots with pixel ground truth.

The page is drawn in millimetres of paper: the axes span the whole figure and
their data coordinates are millimetres, so ``speed`` (mm/s) and ``gain``
(mm/mV) map samples onto paper exactly, and paper maps onto pixels by
``dpi / 25.4``. That makes the pixel position of every drawn sample exact,
which is what digitisation training and tests need as ground truth.

Layouts
-------
``"3x4+II"``  three rows of four 2.5-s columns (I II III | aVR aVL aVF | V1 V2 V3 |
              V4 V5 V6), plus a full-length lead-II rhythm strip (the standard page)
``"3x4"``     the same without the rhythm strip
``"3x4+2"``   the 3x4 grid plus two full-length rhythm strips, V1 and II by default
``"3x4+3"``   the 3x4 grid plus three full-length rhythm strips, V1, II and V5 by default
              (the GE/Marquette page)
``"6x2"``     six rows of two columns (limb leads left, chest leads right), each the full
              record, the halves side by side (both from t = 0)
``"6x2c"``    six rows of two contiguous columns, as carts print them: limb leads over the
              first half of the record (0-5 s of a 10-s record), chest leads over the
              second half (5-10 s) continuing the same time axis, a separator tick at the
              join
``"12x1"``    one full-length row per lead
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np

from ._atomic import atomic_path
from .errors import ConfigError, WriteError
from .record import Record, STANDARD_12

__all__ = ["plot", "PlotResult", "LAYOUTS"]

LAYOUTS = ("3x4+II", "3x4", "3x4+2", "3x4+3", "6x2", "6x2c", "12x1")
# the rhythm strips each layout draws below its 3x4 grid, unless the caller names others
RHYTHM_DEFAULT = {"3x4+II": ("II",), "3x4": (), "3x4+2": ("V1", "II"),
                  "3x4+3": ("V1", "II", "V5")}
_MARK_COLOURS = {"P": "#1f77b4", "QRS": "#d62728", "T": "#2ca02c"}


@dataclass
class Panel:
    """One drawn trace: a lead over a time window, with its exact pixel positions."""
    lead: str
    t0: float                 # s, start of the window in the record
    t1: float                 # s, end of the window
    samples: np.ndarray       # int64 sample indices drawn
    x_px: np.ndarray          # float pixel column of each sample (0 = left edge of the image)
    y_px: np.ndarray          # float pixel row of each sample (0 = top edge), NaN where not drawn
    baseline_px: float        # pixel row of 0 mV
    x0_mm: float              # paper position of t0
    rhythm: bool = False


@dataclass
class PlotResult:
    """What :func:`plot` returns: the figure and the ground truth of the drawing."""
    figure: object
    panels: list = field(default_factory=list)
    width_px: int = 0
    height_px: int = 0
    dpi: float = 200.0
    speed: float = 25.0
    gain: float = 10.0
    layout: str = "3x4+II"
    path: str | None = None

    @property
    def px_per_mm(self) -> float:
        return self.dpi / 25.4

    def positions(self) -> dict:
        """``{panel_name: (x_px, y_px, samples)}``; a rhythm strip is named ``"<lead> (rhythm)"``
        (``"II (rhythm)"`` on the standard page)."""
        return {(p.lead + " (rhythm)" if p.rhythm else p.lead): (p.x_px, p.y_px, p.samples)
                for p in self.panels}

    def reference(self, record) -> np.ndarray:
        """The page's ground truth: ``record`` in the standard 12-lead order (float64, its
        units), NaN at every sample no panel drew, so a digitized page can be scored
        against what it actually shows (a 3x4 page shows 2.5 s of most leads)."""
        ref = record.conform(STANDARD_12, derive=True, missing="nan").signal.astype(np.float64)
        drawn = np.zeros(ref.shape, bool)
        for p in self.panels:
            drawn[STANDARD_12.index(p.lead), p.samples] = True
        ref[~drawn] = np.nan
        return ref


def _panels_for(layout: str, leads, duration: float, rhythm_leads=()):
    """(lead, row, t0, t1, rhythm) for each panel, and the number of rows."""
    out = []
    if layout in RHYTHM_DEFAULT:
        cols = [("I", "II", "III"), ("aVR", "aVL", "aVF"), ("V1", "V2", "V3"), ("V4", "V5", "V6")]
        w = duration / 4
        for c, names in enumerate(cols):
            for r, name in enumerate(names):
                out.append((name, r, c * w, (c + 1) * w, False))
        for k, name in enumerate(rhythm_leads):
            out.append((name, 3 + k, 0.0, duration, True))
        return out, 3 + len(rhythm_leads)
    if layout == "6x2":
        for i, name in enumerate(STANDARD_12[:6]):
            out.append((name, i, 0.0, duration, False))
        for i, name in enumerate(STANDARD_12[6:]):
            out.append((name, i, 0.0, duration, False))
        return out, 6
    if layout == "6x2c":
        half = duration / 2
        for i, name in enumerate(STANDARD_12[:6]):
            out.append((name, i, 0.0, half, False))
        for i, name in enumerate(STANDARD_12[6:]):
            out.append((name, i, half, duration, False))
        return out, 6
    if layout == "12x1":
        for i, name in enumerate(leads):
            out.append((name, i, 0.0, duration, False))
        return out, len(leads)
    raise ConfigError(f"unknown layout {layout!r}; use one of {LAYOUTS}")


def rhythm_leads_for(layout, rhythm_leads):
    """The rhythm strips' lead names for ``layout`` (the caller's, checked, else the
    layout's standard ones), as a tuple; ConfigError for a wrong count or name."""
    if rhythm_leads is None:
        return RHYTHM_DEFAULT.get(layout, ())
    names = (rhythm_leads,) if isinstance(rhythm_leads, str) else tuple(rhythm_leads)
    want = len(RHYTHM_DEFAULT.get(layout, ()))
    if want == 0:
        raise ConfigError(f"layout {layout!r} draws no rhythm strip; rhythm_leads= is for "
                          "'3x4+II' (one strip), '3x4+2' (two) and '3x4+3' (three)")
    if len(names) != want:
        raise ConfigError(f"layout {layout!r} draws {want} rhythm strip(s), "
                          f"rhythm_leads= names {len(names)}: {names}")
    bad = [n for n in names if n not in STANDARD_12]
    if bad:
        raise ConfigError(f"rhythm_leads= names unknown leads {bad}; use the standard 12 "
                          f"({', '.join(STANDARD_12)})")
    return names


def _marks_dict(marks):
    if marks is None:
        return None
    if hasattr(marks, "global_"):
        marks = marks.global_()
    return {k: np.asarray(v, np.int64) for k, v in dict(marks).items()}


def plot(record: Record, path_or_ax=None, layout: str = "3x4+II", speed: float = 25.0,
         gain: float = 10.0, dpi: float = 200.0, grid: bool = True, marks=None,
         title: str | None = None, grid_color: str = "red", line_width: float = 0.6,
         calibration: bool = True, labels: bool = True, rhythm_leads=None) -> PlotResult:
    """Draw a record on ECG paper.

    Parameters
    ----------
    record : Record
        Any record; missing standard leads are left blank.
    path_or_ax : str, path, matplotlib Axes or None
        A file (``.png``, ``.svg``, ``.pdf``, ``.jpg``) to write, an Axes to draw
        into, or None to only return the figure.
    layout : {"3x4+II", "3x4", "3x4+2", "3x4+3", "6x2", "6x2c", "12x1"}
        Page layout (see the module docstring); ``"6x2c"`` is the contiguous 6x2
        of carts (limb leads 0 to D/2, chest leads D/2 to D); ``"3x4+2"`` and
        ``"3x4+3"`` add two (V1, II) or three rhythm strips (V1, II, V5) to the
        3x4 grid.
    speed : float
        Paper speed, mm/s (25 or 50 are usual).
    gain : float
        Amplitude scale, mm/mV (5, 10 or 20 are usual).
    dpi : float
        Resolution of raster output, dots per inch.
    grid : bool
        Draw the 1 mm / 5 mm grid.
    marks : Delineation or dict of int arrays, optional
        Fiducial marks (``P_on``, ``QRS_on``, ``T_off``, ...; sample indices, -1
        absent) drawn as short ticks on every trace.
    grid_color : {"red", "grey", "green", "blue"}
        Colour family of the grid; ``"grey"`` gives a black-and-white page.
    rhythm_leads : str or sequence of str, optional
        The leads of the full-length rhythm strips of ``"3x4+II"`` (one),
        ``"3x4+2"`` (two) and ``"3x4+3"`` (three), e.g. ``"V1"`` or
        ``("II", "V1", "V5")``; default II, V1 and II, and V1, II, V5.

    Returns
    -------
    PlotResult
        The figure and, for every panel, the exact pixel position of each drawn
        sample (``y_px`` is NaN where the sample is NaN).
    """
    # matplotlib.figure.Figure needs no GUI backend (no pyplot state, thread-safe enough for pools)
    from matplotlib.collections import LineCollection
    from matplotlib.figure import Figure

    if not isinstance(record, Record):
        raise TypeError("plot() takes an ecgcore.Record")
    if layout not in LAYOUTS:
        raise ConfigError(f"unknown layout {layout!r}; use one of {LAYOUTS}")
    if not (speed > 0 and gain > 0 and dpi > 0):
        raise ConfigError(f"speed, gain and dpi must be positive (got {speed}, {gain}, {dpi})")
    strips = rhythm_leads_for(layout, rhythm_leads)
    rec = record if layout == "12x1" else record.conform(STANDARD_12, derive=True, missing="nan")
    duration = rec.duration
    specs, n_rows = _panels_for(layout, rec.leads, duration, strips)
    n_cols_mm = duration * speed if layout != "6x2" else 2 * duration * speed + 10
    margin_l, margin_r, margin_t, margin_b = 15.0, 5.0, 12.0 if title else 6.0, 6.0
    pitch = max(25.0, 3.0 * gain) if layout in ("6x2", "6x2c", "12x1") or len(strips) > 1 \
        else max(30.0, 4.0 * gain)
    cal_w = 0.2 * speed + 4.0 if calibration else 0.0
    width_mm = margin_l + cal_w + n_cols_mm + margin_r
    height_mm = margin_t + n_rows * pitch + margin_b
    # Snap the page to whole pixels so mm -> px is exact.
    px_per_mm = dpi / 25.4
    width_px = int(np.ceil(width_mm * px_per_mm))
    height_px = int(np.ceil(height_mm * px_per_mm))
    width_mm, height_mm = width_px / px_per_mm, height_px / px_per_mm

    if path_or_ax is not None and hasattr(path_or_ax, "plot"):
        ax = path_or_ax
        fig = ax.figure
    else:
        fig = Figure(figsize=(width_mm / 25.4, height_mm / 25.4), dpi=dpi)
        ax = fig.add_axes([0, 0, 1, 1])
    ax.set_xlim(0, width_mm)
    ax.set_ylim(height_mm, 0)  # y grows downwards, like image rows
    ax.set_axis_off()
    colours = {"red": ("#f7c6c6", "#e88a8a"), "grey": ("#dddddd", "#aaaaaa"),
               "green": ("#cfeccf", "#8fce8f"), "blue": ("#cfe0f5", "#8fb4e6")}
    minor_c, major_c = colours.get(grid_color, colours["red"])
    if grid:
        xs = np.arange(0, width_mm + 1e-9, 1.0)
        ys = np.arange(0, height_mm + 1e-9, 1.0)
        for step, col, lw in ((1, minor_c, 0.25), (5, major_c, 0.6)):
            vx = xs[::step]
            hy = ys[::step]
            segs = [((x, 0), (x, height_mm)) for x in vx] + [((0, y), (width_mm, y)) for y in hy]
            ax.add_collection(LineCollection(segs, colors=col, linewidths=lw, zorder=0))
    if title:
        ax.text(margin_l, margin_t - 5, title, fontsize=8, va="bottom", ha="left")
    ax.text(width_mm - margin_r, height_mm - 1.5,
            f"{speed:g} mm/s  {gain:g} mm/mV  {rec.fs:g} Hz", fontsize=6, ha="right", va="bottom")

    md = _marks_dict(marks)
    result = PlotResult(fig, [], width_px, height_px, dpi, speed, gain, layout)
    x_start = margin_l + cal_w
    half_cols = duration * speed + 10  # 6x2: second column offset
    trace_segments = []
    for name, row, t0, t1, rhythm in specs:
        col_shift = half_cols if (layout == "6x2" and name in STANDARD_12[6:]) else 0.0
        base_mm = margin_t + (row + 0.6) * pitch
        a = int(np.floor(t0 * rec.fs + 1e-9))
        b = min(rec.n_samples, int(np.ceil(t1 * rec.fs - 1e-9)) + (1 if t1 < duration else 0))
        idx = np.arange(a, b, dtype=np.int64)
        y = rec.signal[rec.index(name), a:b].astype(np.float64) if name in rec.leads \
            else np.full(len(idx), np.nan)
        x_mm = x_start + col_shift + (idx / rec.fs) * speed
        y_mm = base_mm - y * gain
        trace_segments.append(np.column_stack([x_mm, y_mm]))
        x0_mm = x_mm[0] if len(x_mm) else x_start
        if labels:
            ax.text(x0_mm + 1.0, base_mm - 0.55 * pitch + 4, name, fontsize=7, ha="left", va="top")
        if calibration and (t0 == 0.0 or layout == "6x2") and col_shift == 0.0:
            cx = margin_l + 1.0
            w = 0.2 * speed
            ax.plot([cx, cx + 1, cx + 1, cx + 1 + w, cx + 1 + w, cx + 2 + w],
                    [base_mm, base_mm, base_mm - gain, base_mm - gain, base_mm, base_mm],
                    color="black", lw=line_width, solid_joinstyle="miter")
        if md is not None and len(idx):
            for key, v in md.items():
                wave = key.split("_")[0]
                if wave not in _MARK_COLOURS or key.endswith("peak") or key == "R":
                    continue
                s = v[(v >= a) & (v < b)]
                if len(s):
                    xm = x_start + col_shift + (s / rec.fs) * speed
                    ax.vlines(xm, base_mm - 0.35 * pitch, base_mm - 0.25 * pitch,
                              colors=_MARK_COLOURS[wave], lw=0.5)
        # pixel ground truth: paper mm -> image pixels (rows from the top)
        result.panels.append(Panel(name, t0, min(t1, duration), idx, x_mm * px_per_mm,
                                   y_mm * px_per_mm, base_mm * px_per_mm, x0_mm, rhythm))
        if (layout in RHYTHM_DEFAULT or layout == "6x2c") and not rhythm and t0 > 0:
            # separator tick between columns, as on carts
            ax.vlines(x0_mm, base_mm - 2.5, base_mm + 2.5, colors="black", lw=line_width)
    traces = LineCollection(trace_segments, colors="black", linewidths=line_width,
                            capstyle="round", joinstyle="round", zorder=3)
    # matplotlib decides on path simplification when a Path is created (from the rcParam at
    # that moment), not when it is saved: switch it off on the trace paths themselves so
    # vector output keeps every sample (the digitisation ground truth depends on it).
    for p in traces.get_paths():
        p.should_simplify = False
    ax.add_collection(traces)
    if isinstance(path_or_ax, (str, os.PathLike)):
        path = os.fspath(path_or_ax)
        ext = os.path.splitext(path)[1].lower()
        if ext not in (".png", ".svg", ".pdf", ".jpg", ".jpeg", ".tif", ".tiff"):
            raise WriteError(f"unsupported output {ext!r}: use .png, .svg, .pdf, .jpg or .tif", path)
        fmt = {".jpg": "jpeg", ".tif": "tiff"}.get(ext, ext.lstrip("."))
        # no rc_context here: rcParams are process-global (not thread-safe), and the trace
        # paths already refuse simplification themselves (should_simplify above); the
        # temporary name is unique per thread too (the web service draws from several)
        with atomic_path(path, suffix=ext) as tmp:
            fig.savefig(tmp, dpi=dpi, format=fmt)
        result.path = path
    return result

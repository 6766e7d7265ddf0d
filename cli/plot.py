"""``ecgcore plot INPUT --out ecg.png``: draw a record on ECG paper (PNG, SVG, PDF)."""

from __future__ import annotations

import ecgcore
from ecgcore.plotting import LAYOUTS

from ._common import report_failure


def add_parser(sub):
    p = sub.add_parser("plot", help="draw an ECG on paper (PNG/SVG/PDF)", description=__doc__)
    p.add_argument("input", metavar="INPUT")
    p.add_argument("--out", required=True, help="output file: .png, .svg, .pdf or .jpg")
    p.add_argument("--layout", choices=LAYOUTS, default="3x4+II")
    p.add_argument("--rhythm-leads", metavar="LEADS",
                   help="comma-separated leads of the rhythm strips: one for 3x4+II (e.g. V1), "
                        "two for 3x4+2 (default V1,II), three for 3x4+3 (default V1,II,V5)")
    p.add_argument("--speed", type=float, default=25.0, help="mm/s (default 25)")
    p.add_argument("--gain", type=float, default=10.0, help="mm/mV (default 10)")
    p.add_argument("--dpi", type=float, default=200.0)
    p.add_argument("--no-grid", action="store_true")
    p.add_argument("--marks", action="store_true", help="draw fiducial marks from ecgcore.delineate")
    return p


def _leads(text):
    return None if not text else [t.strip() for t in text.split(",") if t.strip()]


def run(args) -> int:
    try:
        rec = ecgcore.read(args.input)
    except ecgcore.ECGError as exc:
        report_failure(args.input, exc)
        return 1
    marks = None
    if args.marks:
        marks = ecgcore.delineate(rec)
    try:
        ecgcore.plot(rec, args.out, layout=args.layout, speed=args.speed, gain=args.gain,
                     dpi=args.dpi, grid=not args.no_grid, marks=marks,
                     title=f"{rec.source}  ({rec.meta.get('format')})",
                     rhythm_leads=_leads(args.rhythm_leads))
    except ecgcore.ECGError as exc:
        report_failure(args.out, exc)
        return 2
    print(f"wrote {args.out}")
    return 0

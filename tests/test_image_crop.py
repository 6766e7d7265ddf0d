"""Automatic crop to the lead area (issue 9, gap G1): versioned detector, grey/dotted/no-grid pages."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import ecgcore  # noqa: E402
from ecgcore.models import image_pipeline as ip  # noqa: E402

from conftest import shared_path  # noqa: E402

CARDIOSOFT = ("data", "pdf", "cardiosoft_testmann.pdf")
DICOMPLOT = ("data", "pdf", "dicomecgplot_anonymous_ecg_3x4_1.pdf")
# CardioSoft page at 100 dpi, measured by hand on the rendering: the lead frame (dotted 1-mm grid)
# spans rows 241-773 and columns 88-1072; above it the measurement box (rows 110-241, text to
# row ~215) and the patient header; below it the footer text (rows ~778-800).
CS_FRAME = (88, 241, 1073, 774)
CS_MEASUREMENT_TEXT_BOTTOM = 216
CS_FOOTER_TOP = 776


def _near(box, ref, tol):
    return all(abs(a - b) <= tol for a, b in zip(box, ref))


def test_cardiosoft_grey_dotted_grid_excludes_header_and_measurements():
    pdf = shared_path(*CARDIOSOFT)
    for dpi in (100, 300):
        page = ip.load_page(pdf, dpi=dpi)
        s = dpi / 100.0
        left, top, right, bottom = ip.find_lead_area(page)               # version 2 is the default here
        frame = tuple(v * s for v in CS_FRAME)
        assert _near((left, top, right, bottom), frame, 4.2 * s), (dpi, (left, top, right, bottom))  # 1 mm
        assert top > CS_MEASUREMENT_TEXT_BOTTOM * s and bottom < CS_FOOTER_TOP * s
    # a JPEG of the page at another resolution (compression noise, a 1-mm pitch of 5.9 px)
    import io
    from PIL import Image
    buf = io.BytesIO()
    Image.fromarray(ip.load_page(pdf, dpi=150)).save(buf, format="JPEG", quality=75)
    jpg = np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))
    box = ip.find_lead_area(jpg)
    assert _near(box, tuple(v * 1.5 for v in CS_FRAME), 1.5 * 5.9), box                 # 1.5 mm
    assert box[1] > CS_MEASUREMENT_TEXT_BOTTOM * 1.5 and box[3] < CS_FOOTER_TOP * 1.5
    # the same page on plain paper (grid dots erased; frames, boxes and text kept): the traces'
    # box, from the calibration pulse (x 25-75) to the trace ends, below the measurement box
    plain = ip.load_page(pdf, dpi=100).copy()
    plain[plain.min(axis=2) >= 150] = 255
    left, top, right, bottom = ip.find_lead_area(plain)
    assert CS_FRAME[1] < top < 290 and 700 < bottom < CS_FOOTER_TOP, (left, top, right, bottom)
    assert left < 30 and right > 1065
    # version 1 (what stored "auto" means) keeps the old ink box: header and measurements included
    assert ip.find_lead_area(ip.load_page(pdf, dpi=100), version=1) == (11, 21, 1088, 817)


def test_dicom_ecg_plot_red_grid_matches_the_vector_grid():
    import pypdfium2 as pdfium
    from ecgcore.digitization.pdf_vector import extract_page_content
    pdf = shared_path(*DICOMPLOT)
    doc = pdfium.PdfDocument(str(pdf))
    try:
        pg = doc[0]
        _, h_pt = pg.get_size()
        lines, _, _ = extract_page_content(pg)
    finally:
        doc.close()
    # the grid frame from the PDF's own vector paths: the red grid lines, in 100-dpi pixels
    grid = np.concatenate([p for p, col in lines if col == (212, 61, 26)])
    ref = (grid[:, 0].min() * 100 / 72, (h_pt - grid[:, 1].max()) * 100 / 72,
           grid[:, 0].max() * 100 / 72, (h_pt - grid[:, 1].min()) * 100 / 72)
    page = ip.load_page(pdf, dpi=100)
    assert _near(ip.find_lead_area(page), ref, 2.5), (ip.find_lead_area(page), ref)
    # version 1 keeps its box for this page (it was right there: header above the grid cut off)
    v1 = ip.find_lead_area(page, version=1)
    assert v1 == (79, 118, 1073, 787)
    assert _near(ip.find_lead_area(page), v1, 14)


def _plotted_page(grid_color, dpi, header_rows):
    """An ecgcore.plot page with a block of header text pasted above it, and its trace pixels."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from PIL import Image, ImageDraw
    rec = ecgcore.simulate(n=1, seed=11)[0]
    res = ecgcore.plot(rec, None, layout="3x4+II", dpi=dpi, grid=grid_color is not None,
                       grid_color=grid_color or "red")
    fig = res.figure
    canvas = FigureCanvasAgg(fig)
    fig.set_dpi(dpi)
    canvas.draw()
    page = np.ascontiguousarray(np.asarray(canvas.buffer_rgba())[:, :, :3])
    w = page.shape[1]
    hdr = Image.new("RGB", (w, header_rows), "white")
    d = ImageDraw.Draw(hdr)
    for i in range(4):
        d.text((20, 8 + i * header_rows // 5), "Patient 123456  HR 75/min  PR 158 ms  QRS 100 ms  QT/QTc 366/408 ms"
               * (1 + i % 2), fill=(0, 0, 0))
    full = np.concatenate([np.asarray(hdr), page], axis=0)
    xs, ys = [], []
    for x_px, y_px, _ in res.positions().values():
        ok = np.isfinite(y_px)
        xs.append(np.asarray(x_px)[ok])
        ys.append(np.asarray(y_px)[ok] + header_rows)
    return full, np.concatenate(xs), np.concatenate(ys)


@pytest.mark.parametrize("grid_color", ["red", "grey", None])
def test_plotted_pages_with_a_header_block(grid_color):
    dpi, hdr = 100, 170
    page, xs, ys = _plotted_page(grid_color, dpi, hdr)
    left, top, right, bottom = ip.find_lead_area(page)
    assert top >= hdr - 1                                   # the header text is cut off
    inside = (xs >= left) & (xs < right) & (ys >= top) & (ys < bottom)
    assert inside.mean() >= 0.99, (grid_color, (left, top, right, bottom), inside.mean())
    if grid_color is not None:                              # the grid fills the plotted page
        assert top <= hdr + 4 and bottom >= page.shape[0] - 10
    else:                                                   # the traces, with a 1 % margin
        assert top >= ys.min() - 12 and bottom <= ys.max() + 12
    v1 = ip.find_lead_area(page, version=1)
    if grid_color == "red":
        assert abs(v1[1] - hdr) <= 16                       # version 1 handled coloured grids
    else:
        assert v1[1] < hdr / 2                              # ... and kept the header on the others


def test_black_and_white_grid_page_below_a_header_band():
    """An ecg-image-kit page with a black-and-white grid over the whole sheet, a text band added above."""
    from PIL import Image, ImageDraw
    page = ip.load_page(shared_path("data", "ecg_pages", "scan", "ecg_00000-0.png"))
    assert (page.max(axis=2).astype(int) - page.min(axis=2)).max() < 40        # really no colour
    band = Image.new("RGB", (page.shape[1], 200), "white")
    ImageDraw.Draw(band).text((30, 40), "Name: X   ID 1234   HR 70 bpm   QRS 98 ms", fill=(0, 0, 0))
    full = np.concatenate([np.asarray(band), page], axis=0)
    left, top, right, bottom = ip.find_lead_area(full)
    assert 200 <= top <= 200 + 8 and bottom >= full.shape[0] - 8           # within 1 mm (7.9 px)
    assert left <= 8 and right >= full.shape[1] - 8
    assert ip.find_lead_area(full, version=1)[1] < 200                     # version 1 kept the band


def test_blank_page_and_unknown_version():
    blank = np.full((300, 400, 3), 250, np.uint8)
    with pytest.raises(ecgcore.PreprocessError, match="blank"):
        ip.find_lead_area(blank)
    with pytest.raises(ecgcore.PreprocessError, match="blank"):
        ip.prepare_image(blank, size=32, crop_box="auto2")
    assert ip.find_lead_area(blank, version=1) == (0, 0, 400, 300)      # version 1: the whole page
    assert ip.prepare_image(blank, size=32).box == (0, 0, 400, 300)     # "auto" is still version 1
    with pytest.raises(ecgcore.PreprocessError, match="version"):
        ip.find_lead_area(blank, version=3)
    with pytest.raises(ecgcore.PreprocessError, match="auto2"):
        ip.prepare_image(blank, size=32, crop_box="auto3")
    # ink that is neither a grid nor a trace (a page of text only): the whole page, documented
    from PIL import Image, ImageDraw
    im = Image.new("RGB", (400, 300), "white")
    ImageDraw.Draw(im).text((20, 20), "just some words", fill=(0, 0, 0))
    assert ip.find_lead_area(np.asarray(im)) == (0, 0, 400, 300)


def test_classifier_on_an_old_checkpoint_sees_the_old_crop(tmp_path):
    """Checkpoints store crop_box="auto": ECGClassifier must feed them exactly the version-1 input."""
    from ecgcore import models
    from ecgcore.models.classifier import ECGClassifier
    from ecgcore.models.train.checkpointing import save_checkpoint
    from ecgcore.models.train.images import image_preset
    torch.manual_seed(3)
    tiny = models.create("mtecg_image_tiny").eval()
    size = int(tiny.input_contract["height"])
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    tasks = [{"name": "scar", "type": "multiclass", "n_classes": 2}]
    # new presets record the detector version; a checkpoint made before it existed says "auto"
    assert image_preset(size=size, dpi=100.0)["prepare"]["crop_box"] == "auto2"
    old_preset = image_preset(size=size, dpi=100.0)
    old_preset["prepare"]["crop_box"] = "auto"
    save_checkpoint(str(run / "checkpoints" / "best.pt"),
                    {"config": {"tasks": tasks, "data": {"aggregate": "mean"}}, "model_spec": tiny.export_config(),
                     "model_state": tiny.state_dict(), "preset": old_preset,
                     "tasks": ["scar"], "target_scaler": {"mean": [0.0], "std": [1.0]}, "clinical_cols": [],
                     "clinical_scaler": None, "thresholds": {}})
    pdf = shared_path(*CARDIOSOFT)
    page = ip.load_page(pdf, dpi=100)
    legacy = (11, 21, 1088, 817)            # the box every "auto" model was trained with (before version 2)
    for clf in (ECGClassifier(run), ECGClassifier(tiny)):   # stored preset "auto"; no preset at all
        got = clf.prepare(pdf) if clf.ck is not None else clf.prepare(page)
        assert got.box == legacy
        ref = ip.normalize(ip.resize_bilinear(page[21:817, 11:1088], got.tensor.shape[1], got.tensor.shape[2]))
        np.testing.assert_array_equal(got.tensor, ref)
    # asking for the new detector explicitly gives the lead frame
    new = ECGClassifier(run, image_options={"crop_box": "auto2"}).prepare(pdf)
    assert _near(new.box, CS_FRAME, 4.2)

"""The projective resampling kernel (``_kernels.warp``) behind deskew and perspective correction."""

import numpy as np
import pytest
from scipy.ndimage import map_coordinates

from ecgcore.digitization import grid as G

H = np.array([[0.99, -0.03, 5.2], [0.031, 0.985, -3.1], [1.2e-5, -2.1e-5, 1.0]])


def _points(shape):
    yy, xx = np.mgrid[0:shape[0], 0:shape[1]].astype(np.float64)
    q = H[2, 0] * xx + H[2, 1] * yy + H[2, 2]
    return (H[1, 0] * xx + H[1, 1] * yy + H[1, 2]) / q, (H[0, 0] * xx + H[0, 1] * yy + H[0, 2]) / q


def test_bilinear_and_spline_match_scipy(rng):
    a = rng.random((300, 400), dtype=np.float32)
    ys, xs = _points((280, 380))
    inner = (xs > 3) & (xs < 396) & (ys > 3) & (ys < 296)
    ref1 = map_coordinates(a, [ys, xs], order=1, mode="nearest", output=np.float32)
    out1 = G.remap(a, H, (280, 380), order=1, fill=-1.0)
    np.testing.assert_allclose(out1[inner], ref1[inner], atol=1e-6)
    ref3 = map_coordinates(a, [ys, xs], order=3, mode="nearest", output=np.float32)
    out3 = G.remap(a, H, (280, 380), order="spline", fill=-1.0)
    np.testing.assert_allclose(out3[inner], ref3[inner], atol=2e-3)   # random data: worst case
    outside = (xs < -0.01) | (xs > 399.01) | (ys < -0.01) | (ys > 299.01)
    assert outside.any() and np.all(out1[outside] == -1.0)


def test_cubic_convolution_interpolates_smooth_images():
    h, w = 300, 400
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    f = lambda x, y: np.sin(x / 7.0) * np.cos(y / 9.0) + 0.01 * x   # noqa: E731
    a = f(xx, yy).astype(np.float32)
    np.testing.assert_array_equal(G.remap(a, np.eye(3), (h, w), order=3), a)   # identity
    ys, xs = _points((280, 380))
    inner = (xs > 3) & (xs < w - 4) & (ys > 3) & (ys < h - 4)
    for order, tol in ((3, 3e-4), ("spline", 3e-4), (1, 5e-3)):
        out = G.remap(a, H, (280, 380), order=order)
        err = np.abs(out[inner] - f(xs, ys)[inner]).max()
        assert err < tol, (order, err)


def test_field_moves_pixels_like_a_shift(rng):
    a = rng.random((120, 160), dtype=np.float32)
    field = {"coef": ([0.37, 0, 0, 0, 0, 0], [-1.25, 0, 0, 0, 0, 0]), "centre": (80.0, 60.0),
             "norm": 80.0}
    moved = G.remap(a, np.eye(3), (120, 160), order=1, field=field)
    shifted = G.remap(a, [[1, 0, 0.37], [0, 1, -1.25], [0, 0, 1]], (120, 160), order=1)
    np.testing.assert_array_equal(moved, shifted)


def test_rotation_matches_the_old_bilinear_convention(rng):
    from scipy.ndimage import affine_transform

    a = rng.random((200, 260), dtype=np.float32)
    t = np.radians(2.5)
    c, s = np.cos(t), np.sin(t)
    cy, cx = 99.5, 129.5
    mat = np.array([[c, s], [-s, c]])
    ref = affine_transform(a, mat, offset=np.array([cy, cx]) - mat @ np.array([cy, cx]), order=1,
                           mode="constant", cval=1.0, output=np.float32)
    out = G.rotate(a, 2.5, 1.0, order=1)
    np.testing.assert_allclose(out[10:-10, 10:-10], ref[10:-10, 10:-10], atol=1e-6)


def test_bad_maps_are_refused(rng):
    a = rng.random((20, 30), dtype=np.float32)
    with pytest.raises(ValueError, match="non-finite"):
        G.remap(a, [[1, 0, np.nan], [0, 1, 0], [0, 0, 1]], (20, 30))
    with pytest.raises(ValueError, match="order"):
        G.remap(a, np.eye(3), (20, 30), order=2)

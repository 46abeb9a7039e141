"""Metrics against values counted by hand or known in closed form."""

from __future__ import annotations

import math

import numpy as np
import pytest

from sdpm_cli.evaluate import metrics as M


def box(shape, lo, hi):
    m = np.zeros(shape, dtype=bool)
    m[tuple(slice(a, b) for a, b in zip(lo, hi))] = True
    return m


def test_dice_iou_hand_counted():
    # pred 4 voxels, truth 6 voxels, 3 shared: Dice = 6/10, IoU = 3/7
    p = np.zeros((1, 3, 4), bool)
    t = np.zeros((1, 3, 4), bool)
    p[0, 0, 0:4] = True
    t[0, 0, 1:4] = True
    t[0, 1, 0:3] = True
    assert M.dice(p, t) == pytest.approx(0.6)
    assert M.iou(p, t) == pytest.approx(3 / 7)


def test_empty_conventions():
    z = np.zeros((2, 3, 3), bool)
    one = z.copy()
    one[1, 1, 1] = True
    assert M.dice(z, z) == 1.0 and M.iou(z, z) == 1.0 and M.hd95(z, z, (1, 1, 1)) == 0.0
    assert M.dice(one, z) == 0.0 and M.iou(z, one) == 0.0
    assert math.isnan(M.hd95(one, z, (1, 1, 1))) and math.isnan(M.hd95(z, one, (1, 1, 1)))


def test_shape_mismatch_is_refused():
    with pytest.raises(ValueError, match="shape"):
        M.dice(np.zeros((2, 2, 2)), np.zeros((2, 2, 3)))


def test_hd95_single_voxels_anisotropic():
    # one voxel each, offset (dz, dy, dx) = (2, 1, 3) with spacing x=0.5, y=0.8, z=5 mm
    p = np.zeros((5, 5, 6), bool)
    t = np.zeros((5, 5, 6), bool)
    p[0, 0, 0] = True
    t[2, 1, 3] = True
    expected = math.sqrt((2 * 5.0) ** 2 + (1 * 0.8) ** 2 + (3 * 0.5) ** 2)
    assert M.hd95(p, t, (0.5, 0.8, 5.0)) == pytest.approx(expected)


@pytest.mark.parametrize("axis,spacing,expected", [(0, (0.7, 0.9, 4.0), 2 * 4.0), (2, (0.7, 0.9, 4.0), 2 * 0.7)])
def test_hd95_translated_box_is_the_shift(axis, spacing, expected):
    # B = A translated by 2 voxels: every surface voxel is within the shift, and a whole face
    # (36 of 152 surface voxels, > 5%) is exactly at it, so HD95 equals the shift in mm.
    shape = (12, 12, 12)
    lo = [2, 2, 2]
    a = box(shape, lo, [x + 6 for x in lo])
    lo_b = list(lo)
    lo_b[axis] += 2
    b = box(shape, lo_b, [x + 6 for x in lo_b])
    assert M.hd95(a, b, spacing) == pytest.approx(expected)
    assert M.hd95(b, a, spacing) == pytest.approx(expected)


def test_hd95_ignores_a_rare_outlier_but_max_would_not():
    t = box((20, 20, 20), (2, 2, 2), (8, 8, 8))  # 152 surface voxels
    p = t.copy()
    p[18, 18, 18] = True  # one stray voxel: 1 of 153 prediction surface voxels (< 5%)
    assert M.hd95(p, t, (1, 1, 1)) == pytest.approx(0.0)


def test_hd95_concentric_spheres_close_to_radius_difference():
    zz, yy, xx = np.mgrid[:41, :41, :41] - 20
    r = np.sqrt(zz**2 + yy**2 + xx**2)
    small, big = r <= 10, r <= 14
    # surfaces are 4 voxels apart everywhere, up to discretisation of one voxel
    assert M.hd95(small, big, (1, 1, 1)) == pytest.approx(4.0, abs=1.0)


def test_volume_ml():
    m = np.zeros((3, 4, 5), bool)
    m[0, :2, :3] = True  # 6 voxels of 0.5 x 0.5 x 5 mm = 1.25 mm^3 each
    assert M.volume_ml(m, (0.5, 0.5, 5.0)) == pytest.approx(6 * 1.25 / 1000)
    with pytest.raises(ValueError):
        M.volume_ml(m, (1.0, 1.0))


def test_pearson_hand_calculation():
    vp, vt = [1.0, 2.0, 4.0], [1.0, 3.0, 5.0]
    # means 7/3 and 3; deviations (-4/3,-1/3,5/3) and (-2,0,2)
    # sum xy = 8/3 + 0 + 10/3 = 6; sum x^2 = 42/9; sum y^2 = 8
    expected = 6 / math.sqrt(42 / 9 * 8)
    assert M.pearson_vc(vp, vt) == pytest.approx(expected)
    assert M.pearson_vc(vp, vt) == pytest.approx(np.corrcoef(vp, vt)[0, 1])
    assert math.isnan(M.pearson_vc([1.0], [2.0]))
    assert math.isnan(M.pearson_vc([1.0, 2.0], [3.0, 3.0]))


def test_vdp_leaves_lesion_free_truths_out():
    # |12-10|/10 = 20%, |3-4|/4 = 25%; the Vt = 0 case is not part of VDP
    assert M.vdp([12.0, 3.0, 7.0], [10.0, 4.0, 0.0]) == pytest.approx(22.5)
    assert math.isnan(M.vdp([1.0], [0.0]))


def test_bland_altman_hand_calculation():
    vp, vt = [11.0, 9.0, 14.0, 6.0], [10.0, 10.0, 10.0, 10.0]
    # differences 1, -1, 4, -4: bias 0, sample sd = sqrt(34/3)
    bias, lo, hi = M.bland_altman(vp, vt)
    sd = math.sqrt(34 / 3)
    assert bias == pytest.approx(0.0)
    assert lo == pytest.approx(-1.96 * sd) and hi == pytest.approx(1.96 * sd)
    b1, l1, h1 = M.bland_altman([3.0], [1.0])
    assert b1 == 2.0 and math.isnan(l1) and math.isnan(h1)


def test_lesion_detection_counts_components():
    t = np.zeros((3, 10, 10), bool)
    p = np.zeros_like(t)
    t[1, 1:3, 1:3] = True  # lesion A: hit by one voxel
    t[1, 6:8, 6:8] = True  # lesion B: missed
    t[0, 0, 9] = True  # lesion C: hit
    t[1, 1, 8] = True  # lesion D: diagonally touching C across a slice -> same lesion as C (26-conn)
    p[1, 2, 2] = True
    p[0, 0, 9] = True
    p[2, 5, 0:3] = True  # false positive
    p[2, 9, 9] = True  # another false positive
    tp, fn, fp = M.lesion_detection(p, t)
    assert (tp, fn, fp) == (2, 1, 2)
    assert M.lesion_detection(np.zeros_like(t), np.zeros_like(t)) == (0, 0, 0)


def test_hd95_matches_brute_force_on_random_blobs():
    # pairwise distances between surface voxels, computed naively on the whole array
    rng = np.random.default_rng(0)
    spacing = (0.7, 1.1, 3.0)
    for _ in range(5):
        p = np.zeros((8, 14, 16), bool)
        t = np.zeros_like(p)
        for m in (p, t):
            z, y, x = rng.integers(1, 6), rng.integers(1, 10), rng.integers(1, 12)
            m[z : z + rng.integers(1, 3), y : y + rng.integers(2, 5), x : x + rng.integers(2, 5)] = True
        sp, st = np.argwhere(M.surface(p)), np.argwhere(M.surface(t))
        scale = np.array(spacing[::-1])
        d = np.linalg.norm((sp[:, None, :] - st[None, :, :]) * scale, axis=-1)
        expected = max(np.percentile(d.min(axis=1), 95), np.percentile(d.min(axis=0), 95))
        assert M.hd95(p, t, spacing) == pytest.approx(expected)

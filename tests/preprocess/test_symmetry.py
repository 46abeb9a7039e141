"""The mid-sagittal plane on the model grid and the mirror channel: a rolled head's plane is followed
slice by slice, a symmetric head is its own mirror, a one-sided lesion appears at its mirror position."""

from __future__ import annotations

import numpy as np
import pytest

from sdpm_cli.preprocess.symmetry import Midline, midline, mirror_image, plane_lines

SP = (1.25, 1.25)


def _rolled_head(angle_deg: float, shift_per_slice: float, n: int = 24, size: int = 128, seed: int = 0):
    """Slices of a left-right symmetric brain (ventricles, sulcal texture mirrored) whose symmetry
    axis is the vertical axis rotated by `angle_deg` and moved sideways by `shift_per_slice` voxels per
    slice (a head rolled about its antero-posterior axis). Returns hu [Z, Y, X], brain, true centres."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(float)
    a = np.deg2rad(angle_deg)
    # a symmetric texture: a random field made even in the across-axis coordinate
    tex = rng.normal(0.0, 1.0, (size, size // 2))
    hu, brain, centres = [], [], []
    for z in range(n):
        d = shift_per_slice * (z - n / 2)  # across the axis (its normal is (sin a, cos a) in (y, x))
        cy, cx = size / 2 + 2.0 + d * np.sin(a), size / 2 - 3.0 + d * np.cos(a)
        ry, rx = yy - cy, xx - cx
        u, v = ry * np.cos(a) - rx * np.sin(a), ry * np.sin(a) + rx * np.cos(a)  # along / across the axis
        # egg-shaped (wider at the back, u > 0) with frontal horns in front: symmetric across the
        # midline only, as a head is (a doubly symmetric ellipse would fit its other axis as well)
        b = (u / 50) ** 2 + (v / (40 * (1 + 0.15 * u / 50))) ** 2 < 1
        h = 33.0 + 4.0 * tex[np.clip(np.rint(u + size / 2), 0, size - 1).astype(int),
                            np.clip(np.rint(np.abs(v)), 0, size // 2 - 1).astype(int)]
        h[((u + 10) / 14) ** 2 + ((np.abs(v) - 9) / 4) ** 2 < 1] = 5.0
        h[(np.abs(v) > 30) & (np.abs(v) < 33)] = 8.0  # sulcal CSF lines, both sides
        hu.append(np.where(b, h, 0.0))
        brain.append(b)
        centres.append((cy, cx))
    return np.array(hu, np.float32), np.array(brain), centres


def _distance(line: Midline, y: float, x: float) -> float:
    return abs(-(y - line.cy) * line.dx + (x - line.cx) * line.dy)


@pytest.mark.parametrize("angle,shift", [(0.0, 0.0), (12.0, 0.4), (-20.0, -0.3), (88.0, 0.35)])  # 88: lying sideways
def test_plane_lines_follow_a_rolled_head_slice_by_slice(angle, shift):
    hu, brain, centres = _rolled_head(angle, shift)
    lines = plane_lines(hu, brain, SP)
    assert lines is not None and len(lines) == hu.shape[0]
    found = np.rad2deg(np.arctan2(-lines[0].dx, lines[0].dy))
    assert abs((found - angle + 90) % 180 - 90) < 1.5  # a line's direction is defined modulo 180 degrees
    # every slice's line passes within a voxel of that slice's own centre (the study line alone
    # misses the outer slices by up to 0.4 x 12 = 5 voxels)
    worst = max(_distance(ln, *c) for ln, c in zip(lines, centres))
    assert worst < 1.0, worst
    study = midline(hu, brain, SP)
    if shift:
        assert max(_distance(study, *c) for c in centres) > 3.0


def test_mirror_image_of_a_symmetric_head_is_the_head_and_carries_a_one_sided_lesion():
    hu, brain, _ = _rolled_head(10.0, 0.3)
    x = np.where(brain, (np.clip(hu, -20, 100) + 20) / 60 - 1, -1).astype(np.float32)
    lines = plane_lines(hu, brain, SP)
    m = mirror_image(x, brain, lines)
    assert m.shape == x.shape and m.dtype == np.float32
    assert np.all(m[~brain] == -1.0)
    inner = brain & (np.abs(x - m) < 10)  # within the brain, away from its edge
    from scipy import ndimage
    inner &= ndimage.binary_erosion(brain, iterations=3, structure=np.ones((1, 3, 3)))
    assert np.median(np.abs(x - m)[inner]) < 0.06  # ~2 HU: interpolation of the texture only
    # a darker patch on one side shows in the mirror image at the reflected position, not in place
    z, cy, cx = 12, 66, 45
    les = np.zeros_like(brain)
    les[z, cy - 4:cy + 5, cx - 4:cx + 5] = True
    x2 = np.where(les, x - 0.3, x)
    m2 = mirror_image(x2, brain, lines)
    ry, rx = lines[z].reflect(np.array([float(cy)]), np.array([float(cx)]))
    ry, rx = int(round(ry[0])), int(round(rx[0]))
    assert m2[z, ry, rx] < m[z, ry, rx] - 0.2
    assert abs(m2[z, cy, cx] - m[z, cy, cx]) < 1e-6


def test_no_midline_means_no_mirror_evidence():
    x = np.zeros((2, 20, 20), np.float32)
    assert plane_lines(np.zeros((2, 20, 20)), np.zeros((2, 20, 20), bool), SP) is None
    assert np.all(mirror_image(x, np.ones((2, 20, 20), bool), None) == -1.0)


def test_shifted_moves_a_line_along_its_normal():
    line = Midline(50.0, 40.0, 1.0, 0.0, 0.0)
    s = line.shifted(3.0)
    assert (s.cy, s.cx, s.dy, s.dx) == (50.0, 43.0, 1.0, 0.0)
    assert _distance(s, 10.0, 40.0) == pytest.approx(3.0)



def _doubly_symmetric_head_with_a_hemisphere_lesion(angle_deg: float, size: int = 128, seed: int = 0):
    """An elliptical brain (100 x 82 voxels: long axis front to back, the vertical axis rotated by
    `angle_deg` as in `_rolled_head`) with a texture symmetric about both its axes, and a dark strip
    along the whole length of its left hemisphere: the front-back reflection maps the head onto
    itself exactly, the true (left-right) one does not - the trap a large one-sided lesion sets."""
    rng = np.random.default_rng(seed)
    tex = rng.normal(0.0, 10.0, (size // 2, size // 2))
    yy, xx = np.mgrid[0:size, 0:size].astype(float)
    a = np.deg2rad(angle_deg)
    ry, rx = yy - size / 2, xx - size / 2
    u, v = ry * np.cos(a) - rx * np.sin(a), ry * np.sin(a) + rx * np.cos(a)  # along / across the long axis
    b = (u / 50) ** 2 + (v / 41) ** 2 < 1
    h = 35.0 + tex[np.clip(np.rint(np.abs(u)), 0, size // 2 - 1).astype(int), np.clip(np.rint(np.abs(v)), 0, size // 2 - 1).astype(int)]
    h = np.where((v < -14) & (v > -30), h - 15.0, h)
    return np.repeat(np.where(b, h, 0.0)[None], 6, 0).astype(np.float32), np.repeat(b[None], 6, 0)


def _angle(line: Midline) -> float:
    return float(np.rad2deg(np.arctan2(-line.dx, line.dy)))  # `_rolled_head`'s convention


def _off(found: float, angle: float) -> float:
    return abs((found - angle + 90) % 180 - 90)  # a line's direction is defined modulo 180 degrees


@pytest.mark.parametrize("angle", [0.0, 90.0, 30.0])
def test_long_axis_of_an_ellipse_is_its_axis_and_its_ratio(angle):
    from sdpm_cli.preprocess.symmetry import long_axis

    _, brain = _doubly_symmetric_head_with_a_hemisphere_lesion(angle)
    found, elongation = long_axis(brain, SP)
    assert _off(-found, angle) < 1.0  # long_axis measures the angle the other way round
    assert elongation == pytest.approx(50 / 41, rel=0.02)  # a filled ellipse's moments: (a/2)^2 and (b/2)^2


@pytest.mark.parametrize("angle", [0.0, 90.0, -25.0])
def test_midline_runs_along_the_long_axis_when_a_lesion_makes_front_back_fit_better(angle):
    from sdpm_cli.preprocess import symmetry

    hu, brain = _doubly_symmetric_head_with_a_hemisphere_lesion(angle)
    assert _off(_angle(midline(hu, brain, SP)), angle) < 2.0
    # searched over every orientation (a round brain), the front-back reflection wins: the trap is real
    everywhere = midline(hu, brain, SP, axis_window_deg=90.0)
    assert _off(_angle(everywhere), angle + 90.0) < 2.0

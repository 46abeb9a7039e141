"""ABC/2 against closed forms: exact on boxes, the pi/6 ellipsoid relation on ellipsoids."""

from __future__ import annotations

import math

import numpy as np
import pytest

from sdpm_cli.postprocess.abc2 import abc2_ml, diameters_mm


@pytest.mark.parametrize("shape", [(4, 6, 10), (1, 1, 1), (3, 2, 7)])
def test_box_is_exact(shape):
    # a W x H x C box: A = diagonal, B = 2WH/A, so ABC/2 = W*H*C, the box volume
    nz, ny, nx = shape
    m = np.zeros((nz + 4, ny + 4, nx + 4), bool)
    m[2 : 2 + nz, 2 : 2 + ny, 2 : 2 + nx] = True
    sx, sy, sz = 0.5, 0.8, 5.0
    expected = (nx * sx) * (ny * sy) * (nz * sz) / 1000
    assert abc2_ml(m, (sx, sy, sz)) == pytest.approx(expected, rel=1e-9)


def ellipsoid(a, b, c, spacing, angle_deg=0.0):
    sx, sy, sz = spacing
    nx, ny, nz = (int(math.ceil(r / s)) + 2 for r, s in zip((max(a, b),) * 2 + (c,), spacing))
    z, y, x = np.meshgrid(np.arange(-nz, nz + 1) * sz, np.arange(-ny, ny + 1) * sy, np.arange(-nx, nx + 1) * sx, indexing="ij")
    t = math.radians(angle_deg)
    xr, yr = x * math.cos(t) + y * math.sin(t), -x * math.sin(t) + y * math.cos(t)
    return (xr / a) ** 2 + (yr / b) ** 2 + (z / c) ** 2 <= 1.0


@pytest.mark.parametrize("angle", [0.0, 30.0, 90.0])
def test_ellipsoid_follows_pi_over_six(angle):
    a, b, c = 20.0, 12.0, 15.0  # semi-axes in mm
    spacing = (0.25, 0.25, 0.5)
    m = ellipsoid(a, b, c, spacing, angle)
    est = abc2_ml(m, spacing)
    # ABC/2 with A=2a, B=2b, C=2c is 4abc; the true volume is (4/3) pi abc = (pi/3) * ABC/2.
    # Calipers on voxels read up to one voxel long per axis (here about 1% each): 4% tolerance.
    assert est == pytest.approx(4 * a * b * c / 1000, rel=0.04)
    voxel_volume = m.sum() * np.prod(spacing) / 1000
    assert est * math.pi / 3 == pytest.approx(voxel_volume, rel=0.04)


def test_diameters_of_a_rotated_ellipse():
    a, b = 20.0, 8.0
    m = ellipsoid(a, b, 1.0, (0.25, 0.25, 1.0), 45.0)
    sl = m[m.shape[0] // 2]
    A, B = diameters_mm(sl, (0.25, 0.25))
    assert A == pytest.approx(2 * a, abs=0.75) and B == pytest.approx(2 * b, abs=0.75)


def test_empty_and_bad_input():
    assert abc2_ml(np.zeros((3, 4, 4), bool), (1, 1, 1)) == 0.0
    with pytest.raises(ValueError):
        abc2_ml(np.zeros((4, 4), bool), (1, 1, 1))

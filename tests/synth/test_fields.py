"""Numerical building blocks against closed forms."""

from __future__ import annotations

import numpy as np
import pytest

from sdpm_cli.synth.fields import Grid, ellipsoid, rot_matrix, soft_in, upsample2
from sdpm_cli.synth.scanner import _upsample2_inplane


@pytest.mark.parametrize("r", [(10.0, 10.0, 10.0), (6.0, 14.0, 9.0)])
def test_soft_ellipsoid_volume_matches_closed_form(r):
    g = Grid(origin=(-20.0, -20.0, -20.0), h=0.5, shape=(81, 81, 81))
    sl, d = ellipsoid(g, (0.3, -0.2, 0.1), r, rot_matrix(10, 20, 30))
    vol = soft_in(d, g.h).sum() * g.h ** 3
    assert vol == pytest.approx(4 / 3 * np.pi * np.prod(r), rel=0.02)


def test_inplane_upsampling_reproduces_a_linear_ramp_at_fine_pixel_centres():
    # coarse pixel j centred at fine coordinate 2j + 0.5; a linear field must be reproduced exactly
    j = np.arange(16, dtype=np.float32)
    coarse = np.broadcast_to(3.0 * (2 * j + 0.5), (1, 16, 16)).astype(np.float32).copy()
    fine = _upsample2_inplane(coarse)
    i = np.arange(32)
    assert np.allclose(fine[0, 5, 1:-1], 3.0 * i[1:-1], atol=1e-4)


def test_upsample2_keeps_coarse_samples():
    a = np.random.default_rng(0).random((5, 6, 7)).astype(np.float32)
    b = upsample2(a)
    assert np.array_equal(b[::2, ::2, ::2], a)
    assert np.allclose(b[1, 0, 0], 0.5 * (a[0, 0, 0] + a[1, 0, 0]))


def test_rotation_is_proper():
    R = rot_matrix(5, -4, 3)
    assert np.allclose(R @ R.T, np.eye(3)) and np.isclose(np.linalg.det(R), 1.0)

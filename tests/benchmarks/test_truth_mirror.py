"""benchmarks/accuracy/truth_mirror.py: the contrast of a true bleed against its mirror, on a symmetric
phantom where it is known in closed form."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "benchmarks" / "accuracy"))

import truth_mirror as tm  # noqa: E402

SPACING = (0.8, 0.8, 4.0)  # x, y, z mm
SHAPE = (12, 128, 128)


def _head():
    z, y, x = np.meshgrid(*(np.arange(n, dtype=float) for n in SHAPE), indexing="ij")
    yc, xc, zc = (SHAPE[1] - 1) / 2, (SHAPE[2] - 1) / 2, (SHAPE[0] - 1) / 2
    # egg-shaped (wider at the back): left-right is its only mirror symmetry, as in a real head
    yy = (y - yc) * SPACING[1] / 46
    r = np.sqrt(((x - xc) * SPACING[0] / (40 * (1 + 0.15 * yy))) ** 2 + yy**2 + ((z - zc) * SPACING[2] / 60) ** 2)
    hu = np.full(SHAPE, -1000.0)
    hu[(r >= 1.0) & (r < 1.15)] = 1000.0
    hu[r < 1.0] = 30.0
    blob = (np.hypot((x - xc - 18 / SPACING[0]) * SPACING[0], (y - yc) * SPACING[1]) < 6) & (np.abs(z - zc) < 3)
    return hu, blob


@pytest.mark.parametrize("blood_hu", [38.0, 60.0])
def test_contrast_is_blood_minus_mirror_tissue(blood_hu):
    hu, blob = _head()
    hu[blob] = blood_hu
    rows = tm.truth_contrasts(hu.astype(np.int16), blob, SPACING, min_ml=0.1)
    assert len(rows) == 1
    assert rows[0]["contrast_hu"] == pytest.approx(blood_hu - 30.0, abs=0.5)
    assert rows[0]["ml"] == pytest.approx(blob.sum() * np.prod(SPACING) / 1000, abs=1e-3)


def test_components_below_the_volume_bound_are_not_counted():
    hu, blob = _head()
    hu[blob] = 60.0
    ml = blob.sum() * np.prod(SPACING) / 1000
    assert tm.truth_contrasts(hu.astype(np.int16), blob, SPACING, min_ml=ml * 1.01) == []
    assert tm.truth_contrasts(hu.astype(np.int16), np.zeros_like(blob), SPACING, min_ml=0.0) == []

"""benchmarks/accuracy/rim_growth.py (a probe, not in the pipeline): a bleed against the brain mask's
edge goes out to the inner table and nothing else moves - so that its measurement means what it says."""

import sys
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks" / "accuracy"))

from rim_growth import RimGrowth, grow_slice, grow_to_inner_table  # noqa: E402

SP = (0.5, 0.5)  # mm per pixel (y, x)


def _head(n: int = 200, r_brain: float = 60.0, blur_px: float = 2.0):
    """One slice: brain disk (40 HU) of radius r_brain px, then a 3 mm subdural (80 HU) on the right,
    then bone (1000 HU), blurred so that the bone's edge is a ramp; the 'brain mask' stops where the
    blurred HU passes 130, as the skull-based mask does."""
    yy, xx = np.mgrid[:n, :n]
    r = np.hypot(yy - n / 2, xx - n / 2)
    hu = np.full((n, n), -1000.0)
    hu[r < r_brain + 20] = 1000.0  # skull
    inner = r < r_brain + 6  # the inner table at r_brain + 6 px (3 mm of subdural on the right)
    hu[inner] = 40.0
    sdh = inner & (r >= r_brain) & (xx > n / 2 + 20)
    hu[sdh] = 80.0
    hu = ndimage.gaussian_filter(hu, blur_px)
    brain = ((hu >= -40) & (hu <= 130) & inner).astype(np.uint8)
    return hu, brain, sdh


def test_a_subdural_cut_by_the_mask_is_carried_to_the_inner_table():
    hu, brain, sdh = _head()
    labels = np.where(sdh & (brain > 0), 2, 0).astype(np.uint8)  # what the network can label: inside the mask
    assert (sdh & (brain == 0)).sum() > 0.2 * sdh.sum()  # the test's premise: the mask cuts the bleed
    rule = RimGrowth(max_hu=500.0, max_mm=3.0)
    grown = grow_to_inner_table(labels[None], hu[None], brain[None], (SP[1], SP[0], 5.0), rule)[0]
    d0 = 2 * (labels == 2)[sdh].sum() / ((labels == 2).sum() + sdh.sum())
    d1 = 2 * (grown == 2)[sdh].sum() / ((grown == 2).sum() + sdh.sum())
    assert d1 > d0 + 0.1 and d1 > 0.9
    # never into bone, never beyond max_mm of the mask, never onto another label
    added = (grown == 2) & (labels != 2)
    assert hu[added].max() <= 500.0
    assert ndimage.distance_transform_edt(brain == 0, sampling=SP)[added].max() <= 3.0
    assert not (added & (brain > 0)).any()


def test_no_bleed_at_the_edge_no_change():
    hu, brain, sdh = _head()
    labels = np.zeros_like(brain)
    labels[95:105, 95:105] = 2  # a deep bleed, far from the mask's edge
    labels[60:64, 100] = 1  # an infarct touching nothing
    out = grow_to_inner_table(labels[None], hu[None], brain[None], (0.5, 0.5, 5.0), RimGrowth())[0]
    np.testing.assert_array_equal(out, labels)
    assert grow_slice(np.zeros_like(labels), hu, brain, SP, RimGrowth()).sum() == 0


def test_an_infarct_at_the_edge_is_not_grown_and_none_rule_is_identity():
    hu, brain, sdh = _head()
    labels = np.where(sdh & (brain > 0), 1, 0).astype(np.uint8)
    out = grow_to_inner_table(labels[None], hu[None], brain[None], (0.5, 0.5, 5.0), RimGrowth(max_hu=500.0))[0]
    np.testing.assert_array_equal(out, labels)
    lab2 = np.where(sdh & (brain > 0), 2, 0).astype(np.uint8)
    np.testing.assert_array_equal(grow_to_inner_table(lab2[None], hu[None], brain[None], (0.5, 0.5, 5.0), None)[0], lab2)


def test_growth_stays_behind_its_own_bleed():
    """The strip is taken only where the nearest brain pixel is the bleed: no creeping along the rim."""
    hu, brain, sdh = _head()
    labels = np.where(sdh & (brain > 0), 2, 0).astype(np.uint8)
    out = grow_to_inner_table(labels[None], hu[None], brain[None], (0.5, 0.5, 5.0), RimGrowth(max_hu=500.0))[0]
    cols = np.flatnonzero((labels == 2).any(axis=0))
    added = (out == 2) & (labels != 2)
    assert np.flatnonzero(added.any(axis=0)).min() >= cols.min() - 6  # 3 mm of round-off at most


@pytest.mark.parametrize("bad", [dict(max_hu=0.0, min_hu=10.0), dict(max_mm=0.0), dict(max_hu=float("nan"))])
def test_rule_validation(bad):
    with pytest.raises(ValueError):
        RimGrowth(**bad)


def test_header_round_trip():
    r = RimGrowth(max_hu=300.0, max_mm=2.0)
    assert RimGrowth.from_dict(r.to_dict()) == r
    assert RimGrowth.from_dict(None) is None and RimGrowth.from_dict({}) is None

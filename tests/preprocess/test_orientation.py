"""A head whose header is wrong about its orientation: detected from the anatomy, shown to the network
upright by an exact quarter turn, never by half a turn, and the outputs stay on the source grid."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from sdpm_cli.preprocess import PreprocessPlan, label_to_model, prepare, to_native
from sdpm_cli.preprocess.grid import Canon
from sdpm_cli.preprocess.orientation import OrientationRules, check_image, check_orientation, quarter_turned

from .phantoms import build_head


def egg_head(size=200, spacing=1.2, half_len_mm=95.0, half_width_mm=78.0, holder=True, n=3) -> np.ndarray:
    """HU [n, rows, cols] in the display orientation: an upright head (long front to back, wider at the
    back, i.e. towards the last row), air around it, and a curved holder behind it."""
    yy, xx = (np.mgrid[0:size, 0:size] - (size - 1) / 2.0) * spacing
    width = half_width_mm * (1.0 + 0.12 * yy / half_len_mm)  # the back is wider
    head = (yy / half_len_mm) ** 2 + (xx / width) ** 2 < 1.0
    hu = np.where(head, 35.0, -1000.0)
    if holder:
        r = np.hypot(yy + 40.0, xx)  # an arc concentric with a point in front of the head, below its back
        hu[(r > half_len_mm + 52.0) & (r < half_len_mm + 58.0) & (np.abs(xx) < 60.0)] = 200.0
    return np.repeat(hu[None], n, axis=0).astype(np.float32)


SP = (1.2, 1.2)


def test_an_upright_head_is_believed():
    c = check_orientation(egg_head(), SP)
    assert c.quarter_turns == 0 and not c.suspect
    assert c.holder_deg == pytest.approx(0.0, abs=5.0) and c.axis_deg < 10 and c.elongation > 1.1


@pytest.mark.parametrize("k", [1, 3])
def test_a_head_stored_sideways_is_turned_back_exactly(k):
    upright = egg_head()
    c = check_orientation(np.rot90(upright, k, axes=(1, 2)), SP)
    assert c.turned and (c.quarter_turns + k) % 4 == 0 and not c.suspect, c
    assert np.array_equal(np.rot90(np.rot90(upright, k, axes=(1, 2)), c.quarter_turns, axes=(1, 2)), upright)


@pytest.mark.parametrize("k", [1, 3])
def test_without_a_holder_a_sideways_head_is_suspect_but_not_turned(k):
    """The outline gives the axis but not which end is the front: a warning, not a guess."""
    c = check_orientation(np.rot90(egg_head(holder=False), k, axes=(1, 2)), SP)
    assert c.quarter_turns == 0 and c.suspect and "no holder" in c.reason


def test_never_half_a_turn():
    """A head upside down (or a prone scan, holder in front) is not turned: the header is believed."""
    c = check_orientation(np.rot90(egg_head(), 2, axes=(1, 2)), SP)
    assert c.quarter_turns == 0


def test_contradicting_cues_leave_the_header_and_say_so():
    """A holder at the side of a head that is long front to back: no turn, but a suspect verdict."""
    hu = egg_head(holder=False)
    hu[:, 20:180, 5:12] = 200.0  # a pad beside the head, on the patient's right
    c = check_orientation(hu, SP)
    assert c.quarter_turns == 0 and c.suspect and "disagree" in c.reason


def test_a_round_head_is_not_judged_by_its_outline():
    """A near-round outline (length/width below min_elongation) neither turns nor contradicts."""
    hu = egg_head(half_len_mm=80.0, half_width_mm=78.0)
    c = check_orientation(hu, SP)
    assert c.quarter_turns == 0 and not c.suspect and c.elongation < 1.1


def test_nothing_to_judge():
    c = check_orientation(np.full((2, 50, 50), -1000.0, np.float32), SP)
    assert c.quarter_turns == 0 and "no head" in c.reason
    with pytest.raises(ValueError):
        check_orientation(np.zeros((50, 50)), SP)
    assert OrientationRules().sideways_tol_deg < 45.0  # a sideways holder never counts as along the axis too


@pytest.mark.parametrize("t", [False, True])
@pytest.mark.parametrize("fr", [False, True])
@pytest.mark.parametrize("fc", [False, True])
def test_canon_turned_is_the_quarter_turn_after_the_canon(t, fr, fc):
    a = np.random.default_rng(0).random((2, 5, 7))
    c = Canon(t, fr, fc)
    for k in range(4):
        n = c.turned(k)
        assert np.array_equal(n.forward(a), np.rot90(c.forward(a), k, axes=(-2, -1)))
        assert np.array_equal(n.inverse(n.forward(a)), a)
        ij = np.array([[3.0, 1.0], [0.0, 4.0]])  # index maps stay each other's inverse
        assert np.allclose(n.display_index(n.sampled_index(ij, 9), 9), ij)


def test_prepare_shows_a_sideways_head_upright_and_maps_back_to_the_source_grid():
    # an upright head: longer front to back (rows) than wide, the head rest behind it
    h = build_head(shape=(4, 300, 300), radii_mm=(88.0, 72.0))  # 240 mm field: the head rest inside it
    plan = PreprocessPlan(spacing_mm=2.0, size=112)
    up = prepare(h.image, plan)
    assert up.orientation is not None and up.orientation.quarter_turns == 0 and not up.warnings
    side_img = quarter_turned(h.image, 1)
    side = prepare(side_img, plan)
    assert side.orientation.quarter_turns == 3
    assert any("90 degrees" in w for w in side.warnings)
    # the network sees the same upright head (same model grid content, up to the grid's rounding)
    assert np.abs(side.x - up.x).mean() < 0.02
    assert (side.brain != up.brain).mean() < 0.01
    # and the mask goes back onto the sideways source grid, voxel for voxel with the sideways bleed
    bleed_side = np.rot90(h.bleed, 1, axes=(1, 2)).astype(np.uint8)
    label = sitk.GetImageFromArray(np.ascontiguousarray(bleed_side) * 2)
    label.CopyInformation(side_img)
    back = sitk.GetArrayFromImage(to_native(label_to_model(label, side), side))
    inter = ((back == 2) & (bleed_side > 0)).sum()
    assert 2 * inter / ((back == 2).sum() + (bleed_side > 0).sum()) > 0.95
    # believing the header: no turn, no warning
    plain = prepare(side_img, plan, orientation="header")
    assert plain.orientation is None and not any("90 degrees" in w for w in plain.warnings)
    with pytest.raises(ValueError):
        prepare(side_img, plan, orientation="sideways")


def test_real_slices_stored_on_their_side_are_found(real_ich_slices):
    """The CT-ICH fixture slices lost their orientation (stored lying on their side; one quarter turn
    stands them upright): measured, 9 of 12 are turned, each the right way, and none once upright."""
    turned, wrong, upright_turned = 0, 0, 0
    for p in sorted(real_ich_slices.glob("*_ct.nii.gz")):
        img = sitk.ReadImage(str(p))
        c = check_image(img)
        turned += c.turned
        wrong += c.turned and c.quarter_turns != 1
        upright_turned += check_image(quarter_turned(img, 1)).turned
    assert turned >= 9 and wrong == 0 and upright_turned == 0

"""Left-right symmetry: the fitted midline of a rotated, shifted head; mirror contrast against closed
forms; the lesion filter's mirror criterion keeps an asymmetric bleed and drops a symmetric mimic."""

from __future__ import annotations

import numpy as np
import pytest

from sdpm_cli.postprocess.components import ComponentRule, LesionFilter, component_keep, filter_class_masks
from sdpm_cli.postprocess.symmetry import MirrorContext, midline, mirror_context, mirror_contrasts


def _head(angle_deg: float, centre=(105.0, 95.0), shape=(6, 200, 200)) -> tuple[np.ndarray, np.ndarray]:
    """A brain ellipse whose symmetry axis is the image's vertical axis rotated by `angle_deg`
    (parenchyma 35 HU, two symmetric ventricles 5 HU); 0.5 mm voxels."""
    yy, xx = np.mgrid[0:shape[1], 0:shape[2]].astype(float)
    a = np.deg2rad(angle_deg)
    ry, rx = yy - centre[0], xx - centre[1]
    u, v = ry * np.cos(a) + rx * np.sin(a), -ry * np.sin(a) + rx * np.cos(a)  # along / across the axis
    brain = (u / 80) ** 2 + (v / (60 * (1 + 0.15 * u / 80))) ** 2 < 1  # egg-shaped: wider at the back
    hu = np.full(shape[1:], 35.0)
    hu[((u + 15) / 25) ** 2 + ((np.abs(v) - 14) / 6) ** 2 < 1] = 5.0  # frontal horns in front
    return np.repeat(hu[None], shape[0], 0), np.repeat(brain[None], shape[0], 0)


@pytest.mark.parametrize("angle", [0.0, 20.0, -33.0])
def test_midline_recovers_the_symmetry_axis_of_a_rotated_head(angle):
    hu, brain = _head(angle)
    line = midline(hu, brain, (0.5, 0.5))
    assert line is not None
    assert abs(np.rad2deg(np.arctan2(line.dx, line.dy)) - angle) < 1.0
    # the centre of the ellipse lies on the line (distance in voxels)
    d = abs(-(105.0 - line.cy) * line.dx + (95.0 - line.cx) * line.dy)
    assert d < 2.0
    # reflecting twice is the identity; a point on the far side maps onto its mirror
    y, x = np.array([40.0, 150.0]), np.array([60.0, 130.0])
    assert np.allclose(line.reflect(*line.reflect(y, x)), (y, x))


def test_midline_needs_a_brain():
    assert midline(np.zeros((3, 50, 50)), np.zeros((3, 50, 50), bool), (1.0, 1.0)) is None


def test_mirror_contrast_closed_form_and_unknown_on_the_midline():
    hu, brain = _head(0.0)
    line = midline(hu, brain, (0.5, 0.5))
    lab = np.zeros(hu.shape, np.int32)
    hu = hu.copy()
    hu[:, 60:70, 60:70] = 75.0  # a bleed on the left only: 40 HU brighter than its mirror (35 HU)
    lab[:, 60:70, 60:70] = 1
    hu[:, 140:146, 70:76] = 70.0
    hu[:, 140:146, 114:120] = 70.0  # a symmetric bright pair; only one of them is predicted
    lab[:, 140:146, 70:76] = 2
    lab[:, 100:104, 90:101] = 3  # straddles the midline: its mirror is (almost all) itself -> unknown
    c = mirror_contrasts(lab, hu, brain, line)
    assert c[0] == pytest.approx(40.0)
    assert c[1] == pytest.approx(0.0)
    assert np.isnan(c[2])
    ctx = MirrorContext.with_line(hu, brain, line)
    assert ctx.contrasts(lab, 2)[0] == pytest.approx(40.0)  # blood: brighter is positive
    assert ctx.contrasts(lab, 1)[0] == pytest.approx(-40.0)  # infarct: darker is positive


def test_mirror_criterion_drops_a_symmetric_mimic_and_keeps_a_bleed_found_on_both_sides():
    hu, brain = _head(12.0)
    hu = hu.copy()
    ctx0 = mirror_context(hu, brain, (0.5, 0.5))
    assert not ctx0.tried  # fitted on first use
    line = ctx0.line
    assert line is not None and ctx0.tried

    def square(y0, x0):
        ys, xs = np.mgrid[y0:y0 + 8, x0:x0 + 8]
        ry, rx = (np.rint(v).astype(int) for v in line.reflect(ys.astype(float), xs.astype(float)))
        return (ys, xs), (ry, rx)

    m = np.zeros(hu.shape, bool)
    for y0, x0 in ((60, 60), (140, 70)):  # two asymmetric bleeds
        (ys, xs), _ = square(y0, x0)
        hu[:, ys, xs] = 80.0
        m[:, ys, xs] = True
    (ys, xs), (ry, rx) = square(100, 50)
    hu[:, ys, xs] = hu[:, ry, rx] = 70.0  # a symmetric bright pair (a bilateral calcification) ...
    m[:, ys, xs] = True  # ... the network called on one side only
    ctx = MirrorContext.with_line(hu, brain, line)
    rule = ComponentRule(min_mirror_contrast_hu=5.0)
    keep = component_keep(m, rule, 0.001, 5.0, mirror=ctx, label=2)
    assert keep[:, 60:68, 60:68].all() and keep[:, 140:148, 70:78].all()
    assert not keep[:, 100:108, 50:58].any()
    # found on both sides, the pair is compared with neither side and kept (a bilateral bleed)
    m2 = m.copy()
    m2[:, ry, rx] = True
    assert component_keep(m2, rule, 0.001, 5.0, mirror=ctx, label=2)[:, 100:108, 50:58].all()
    # without the study's HU the criterion is not applied
    assert np.array_equal(component_keep(m, rule, 0.001, 5.0), m)
    # per class through the filter, and in the header form
    flt = LesionFilter.from_dict({"hemorrhage": {"min_mirror_contrast_hu": 5.0}})
    assert flt.judges_mirror and not LesionFilter.from_dict({"hemorrhage": {"min_ml": 1.0}}).judges_mirror
    assert flt.to_dict() == {"hemorrhage": {"min_ml": 0.0, "min_extent_mm": 0.0, "min_mirror_contrast_hu": 5.0}}
    assert LesionFilter.from_dict(flt.to_dict()) == flt
    out = filter_class_masks(np.stack([m, m]), flt, 0.001, 5.0, mirror=ctx)
    assert np.array_equal(out[0], m)  # infarct: no rule
    assert np.array_equal(out[1], keep)
    with pytest.raises(ValueError):
        ComponentRule(min_mirror_contrast_hu=float("nan"))

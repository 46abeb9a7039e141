"""Brain extraction, window, prepare(), plan serialisation and label recovery from probabilities."""

from __future__ import annotations

import time

import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage

from sdpm_cli.errors import InputRejected, ModelError
from sdpm_cli.preprocess import (
    PreprocessPlan,
    apply_window,
    undo_window,
    brain_mask,
    label_to_model,
    labels_from_probs,
    prepare,
    to_native,
)

from .phantoms import build_head, oblique_direction


@pytest.mark.parametrize("gap_mm", [0.0, 8.0])
def test_brain_mask_covers_the_interior_and_nothing_outside(gap_mm):
    h = build_head(gap_mm=gap_mm)
    m = sitk.GetArrayFromImage(brain_mask(h.image)).astype(bool)
    assert sitk.GetArrayFromImage(brain_mask(h.image)).dtype == np.uint8
    assert brain_mask(h.image).GetOrigin() == h.image.GetOrigin()
    assert m.sum() == pytest.approx(h.interior.sum(), rel=0.01)
    assert not (m & h.skull).any() and not (m & h.headrest).any()
    extra = m & ~h.interior
    if gap_mm == 0:
        assert not extra.any()
    else:  # the closing plugs the foramen: only soft tissue in and just around the gap, and little of it
        _, yy, xx = np.nonzero(extra)
        sy, sx = h.image.GetSpacing()[1], h.image.GetSpacing()[0]
        assert np.all(np.abs(xx - 127.5) * sx <= gap_mm / 2 + 2 * PreprocessPlan().skull_close_mm)  # disk diameter
        assert np.all(yy > 127.5 + 60 / sy)
        assert extra.sum() < 0.01 * m.sum()
    assert m[h.bleed].all() and m[h.calc].all()  # hemorrhage and calcification are intracranial


def test_fill_holes_is_scipys_exactly():
    """The labelling fill (brain mask, head checks) is scipy's binary_fill_holes pixel for pixel:
    speckle, opened blobs, rings touching the border, empty and full masks."""
    from sdpm_cli.preprocess.brainmask import fill_holes

    rng = np.random.default_rng(0)
    masks = [np.zeros((5, 7), bool), np.ones((5, 7), bool)]
    for i in range(200):
        shape = tuple(int(v) for v in rng.integers(1, 48, 2))
        m = rng.random(shape) < rng.uniform(0.1, 0.9)
        masks.append(ndimage.binary_opening(m) if i % 2 else m)
    yy, xx = np.mgrid[:64, :64]
    masks.append((np.hypot(yy - 40, xx - 40) > 20) & (np.hypot(yy - 40, xx - 40) < 26))  # ring cut by the border
    for m in masks:
        np.testing.assert_array_equal(fill_holes(m), ndimage.binary_fill_holes(m))


def test_brain_mask_without_skull_is_empty():
    img = sitk.GetImageFromArray(np.full((3, 64, 64), 30, np.int16))
    assert sitk.GetArrayFromImage(brain_mask(img)).sum() == 0


def test_window_closed_form():
    hu = np.array([-1000, -20, 10, 40, 70, 100, 3000], np.int16)
    np.testing.assert_allclose(apply_window(hu, 40, 120), [-1, -1, -0.5, 0, 0.5, 1, 1], atol=1e-6)
    # the inverse is exact inside the window and clips to its edges outside
    np.testing.assert_allclose(undo_window(apply_window(hu, 40, 120), 40, 120), [-20, -20, 10, 40, 70, 100, 100], atol=1e-4)


def test_prepare_shapes_values_and_noise():
    h = build_head(noise_hu=10.0, spacing=(0.45, 0.45, 5.0), shape=(5, 440, 460), radii_mm=(75.0, 60.0))
    plan = PreprocessPlan()
    p = prepare(h.image, plan)
    assert p.x.shape == (5, 160, 160) and p.x.dtype == np.float32
    assert p.brain.shape == (5, 160, 160) and p.brain.dtype == np.uint8
    assert p.x.min() >= -1 and p.x.max() <= 1
    assert np.all(p.x[p.brain == 0] == -1)
    np.testing.assert_array_equal(p.brain_slices, np.arange(5))
    assert p.warnings == []
    # true brain volume: ellipse area x slice count x slice thickness
    true_ml = np.pi * 75 * 60 * 5 * 5.0 / 1000
    assert p.brain_volume_ml == pytest.approx(true_ml, rel=0.03)
    model_ml = p.brain.sum() * 1.25 * 1.25 * 5.0 / 1000
    assert model_ml == pytest.approx(p.brain_volume_ml, rel=0.02)
    # plain brain (30 HU) -> window value (30 - (-20)) / 120 * 2 - 1, noise averaged like a bigger pixel
    ref = label_to_model(_as_label(h, ~(h.bleed | h.calc) & h.interior), p)
    core = ndimage.binary_erosion((ref == 1) & (p.brain == 1), iterations=2)  # away from bone blur
    assert p.x[core].mean() == pytest.approx(-1 / 6, abs=0.01)
    native_sd = 10.0 / 60.0  # 10 HU in window units
    assert p.x[core].std() < 0.4 * native_sd  # a 2.8x larger pixel alone would give 1/2.8 = 0.36


def _as_label(h, mask):
    img = sitk.GetImageFromArray(mask.astype(np.uint8))
    img.CopyInformation(h.image)
    return img


def test_prepare_oblique_round_trip_of_the_brain():
    h = build_head(direction=oblique_direction(25.0), origin=(-90.0, 130.0, -500.0), spacing=(0.6, 0.7, 5.0), shape=(4, 320, 300))
    p = prepare(h.image)
    back = to_native(p.brain, p)
    assert back.GetOrigin() == h.image.GetOrigin() and back.GetDirection() == h.image.GetDirection()
    assert back.GetSpacing() == h.image.GetSpacing() and back.GetSize() == h.image.GetSize()
    native = sitk.GetArrayFromImage(brain_mask(h.image)).astype(bool)
    agree = sitk.GetArrayFromImage(back).astype(bool) == native
    assert agree.mean() > 0.995


def test_prepare_rejects_a_scan_without_a_head():
    img = sitk.GetImageFromArray(np.full((3, 64, 64), -1000, np.int16))
    with pytest.raises(InputRejected, match="no intracranial region"):
        prepare(img)


def test_prepare_warns_when_the_brain_exceeds_the_field_of_view():
    h = build_head(spacing=(1.0, 1.0, 5.0), shape=(3, 200, 200), radii_mm=(80.0, 80.0))
    p = prepare(h.image, PreprocessPlan(size=100))  # 125 mm field of view for a 160 mm brain
    assert len(p.warnings) == 1 and "exceeds the model field of view" in p.warnings[0]
    assert p.x.shape == (3, 100, 100)
    assert p.brain[:, 50, :].all() and p.brain[:, :, 50].all()  # centred on the brain, which spans the grid


def test_plan_round_trip_and_bad_headers():
    plan = PreprocessPlan(spacing_mm=1.0, size=128)
    assert PreprocessPlan.from_dict(plan.to_dict()) == plan
    assert PreprocessPlan.from_dict({"size": 96}).size == 96
    with pytest.raises(ModelError, match="unknown fields: gamma"):
        PreprocessPlan.from_dict({**plan.to_dict(), "gamma": 2})
    with pytest.raises(ModelError, match="invalid"):
        PreprocessPlan.from_dict({"spacing_mm": -1})
    mirror = PreprocessPlan(mirror_channel=True)
    assert PreprocessPlan.from_dict(mirror.to_dict()) == mirror and mirror.condition_channels == 1
    assert PreprocessPlan.from_dict({"size": 96}).condition_channels == 0  # a plan from before the field
    with pytest.raises(ModelError, match="expected true or false"):
        PreprocessPlan.from_dict({"mirror_channel": 1.0})
    both = PreprocessPlan(mirror_channel=True, context_slices=2)
    assert PreprocessPlan.from_dict(both.to_dict()) == both and both.condition_channels == 5
    with pytest.raises(ModelError, match="invalid"):
        PreprocessPlan.from_dict({"context_slices": -1})


def test_context_stack_takes_the_neighbours_and_repeats_the_edge_slice():
    from sdpm_cli.preprocess.prepare import context_offsets, context_stack

    x = np.arange(5, dtype=np.float32)[:, None, None] * np.ones((1, 2, 2), np.float32)
    assert context_offsets(2) == [-2, -1, 1, 2]
    got = context_stack(x, [0, 2, 4], 2)[:, :, 0, 0]
    np.testing.assert_array_equal(got, [[0, 0, 1, 2], [0, 1, 3, 4], [2, 3, 4, 4]])
    assert context_stack(x, 3, 1).shape == (1, 2, 2, 2)


def test_prepare_gives_the_neighbouring_slices_after_the_mirror_when_the_plan_asks():
    h = build_head(spacing=(0.8, 0.8, 5.0), shape=(4, 256, 256))
    p = prepare(h.image, PreprocessPlan(context_slices=1))
    c = p.condition([0, 2])
    assert c.shape == (2, 2, 160, 160) and c.dtype == np.float32
    np.testing.assert_array_equal(c[0, 0], p.x[0])  # below the first slice: itself
    np.testing.assert_array_equal(c[0, 1], p.x[1])
    np.testing.assert_array_equal(c[1, 0], p.x[1])
    np.testing.assert_array_equal(c[1, 1], p.x[3])
    pm = prepare(h.image, PreprocessPlan(mirror_channel=True, context_slices=1))
    cm = pm.condition([2])
    assert cm.shape == (1, 3, 160, 160)
    np.testing.assert_array_equal(cm[0, 0], pm.mirror[2])
    np.testing.assert_array_equal(cm[0, 1:], c[1])


def test_prepare_gives_the_mirror_channel_only_when_the_plan_asks():
    # longer front to back than wide, as a head is (the midline is searched about the long axis)
    h = build_head(spacing=(0.8, 0.8, 5.0), shape=(4, 256, 256), radii_mm=(85.0, 70.0))
    plain = prepare(h.image)
    assert plain.mirror is None and plain.condition([0, 1]) is None and plain.midline is None
    p = prepare(h.image, PreprocessPlan(mirror_channel=True))
    np.testing.assert_array_equal(p.x, plain.x)  # the image channel is unchanged
    assert p.mirror.shape == p.x.shape and np.all(p.mirror[p.brain == 0] == -1)
    assert p.condition([1, 3]).shape == (2, 1, 160, 160) and p.condition([1, 3]).dtype == np.float32
    # the head is symmetric about its vertical axis except for its bleed: the mirror channel equals
    # the image away from the bleed, the bleed's edge and the brain's edge (interpolation and noise)
    assert abs(p.midline.dx) < 0.02 and abs(p.midline.cx - 79.5) < 1.0
    inner = ndimage.binary_erosion(p.brain > 0, iterations=3, structure=np.ones((1, 3, 3)))
    bleed = label_to_model(_as_label(h, h.bleed | h.calc), p) > 0
    near = ndimage.binary_dilation(bleed | bleed[:, :, ::-1], iterations=3, structure=np.ones((1, 3, 3)))
    diff = np.abs(p.x - p.mirror)[inner & ~near]
    assert np.median(diff) < 0.05


def test_labels_from_probs():
    p = np.zeros((2, 1, 2, 3), np.float32)
    p[0, 0] = [[0.6, 0.2, 0.5], [0.4, 0.7, 0.49]]
    p[1, 0] = [[0.3, 0.8, 0.1], [0.45, 0.71, 0.2]]
    np.testing.assert_array_equal(labels_from_probs(p), [[[1, 2, 1], [0, 2, 0]]])
    np.testing.assert_array_equal(labels_from_probs(p, threshold=0.75), [[[0, 2, 0], [0, 0, 0]]])
    assert labels_from_probs(p).dtype == np.uint8


@pytest.mark.fixtures
def test_real_ct_smoke(dcm_qa_ct):
    """A real head phantom (Philips, 5 mm): no crash, and the mask holds only soft tissue inside bone."""
    folder = dcm_qa_ct / "Philips_S21570" / "S2010"
    if not folder.is_dir():
        pytest.skip("Philips_S21570/S2010 is absent")
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder)))
    img = reader.Execute()
    t = time.perf_counter()
    p = prepare(img)
    assert time.perf_counter() - t < 10.0
    assert p.x.shape == (img.GetSize()[2], 160, 160) and len(p.brain_slices) > 0
    hu = sitk.GetArrayFromImage(img)
    m = sitk.GetArrayFromImage(brain_mask(img)).astype(bool)
    plan = PreprocessPlan()
    assert np.mean((hu[m] >= plan.soft_min_hu) & (hu[m] <= plan.soft_max_hu)) > 0.95
    assert not (m & (hu > 500)).any()


@pytest.mark.slow
def test_brain_mask_on_a_synthetic_study():
    """On a synthetic head (tissue truth known): the visible brain is covered, little else is."""
    from sdpm_cli.synth.config import SynthConfig
    from sdpm_cli.synth.generate import generate_case

    # a typical adult head: randomised skulls (thin, low density) can open the skull-base ring
    case = generate_case(1, SynthConfig(matrix=256, with_tissue=True, domain="clinical"))
    hu = sitk.GetArrayFromImage(case.image)
    tissue = sitk.GetArrayFromImage(case.tissue)
    lesion = sitk.GetArrayFromImage(case.label) > 0
    m = sitk.GetArrayFromImage(brain_mask(case.image)).astype(bool)
    brain = np.isin(tissue, [1, 2, 3, 6, 7, 8])  # csf, cortex, white matter, other brain, deep grey, ventricle
    plan = PreprocessPlan()
    visible = brain & (hu >= plan.soft_min_hu) & (hu <= plan.soft_max_hu)  # not blurred into bone
    assert (visible & ~m).sum() < 0.03 * visible.sum()
    assert (m & ~brain).sum() < 0.01 * brain.sum()
    assert lesion.any() and (m & lesion).sum() > 0.93 * lesion.sum()


def _ring_head(shift_px: int, n: int = 128):
    """Slices of a round head (scalp 40 HU, skull 1000 HU, brain 30 HU) shifted towards the image edge."""
    yy, xx = np.mgrid[0:n, 0:n]
    r = np.hypot(yy - n / 2, xx - n / 2 - shift_px)
    sl = np.full((n, n), -1000, np.int16)
    sl[r < 56] = 40
    sl[r < 52] = 1000
    sl[r < 48] = 30
    img = sitk.GetImageFromArray(np.repeat(sl[None], 12, axis=0))
    img.SetSpacing((1.6, 1.6, 5.0))
    return img, r < 48


def test_brain_mask_closes_a_skull_cut_by_the_field_of_view():
    img, brain = _ring_head(40)  # the right side of the head runs off the image
    m = sitk.GetArrayFromImage(brain_mask(img)).astype(bool)[6]
    visible = brain & (np.arange(128)[None, :] < 126)
    assert m[visible].mean() > 0.95 and not m[~brain].any()
    img2, brain2 = _ring_head(8)  # only the scalp touches the edge: the plain method's answer stands
    m2 = sitk.GetArrayFromImage(brain_mask(img2)).astype(bool)[6]
    assert m2.sum() == pytest.approx(brain2.sum(), rel=0.02) and not (m2 & ~brain2).any()


@pytest.mark.parametrize("code", ["RAS", "LAS", "RPS", "PLS", "ARS", "ALS", "PRS"])
def test_the_model_sees_the_same_head_whatever_the_files_storage_order(code):
    """A head stored bottom-up (a NIfTI's usual order), mirrored or transposed is given to the network in
    the display orientation the models were trained on, sampled at the same physical points, and its
    label map goes back onto the file's own grid: the standard order's answer, reordered, voxel for voxel."""
    h = build_head()
    std = h.image
    img = sitk.DICOMOrient(std, code)
    a, b = prepare(std), prepare(img)
    assert a.grid.canon.identity and not b.grid.canon.identity
    np.testing.assert_array_equal(a.brain, b.brain)
    np.testing.assert_allclose(a.x, b.x, atol=1e-6)
    back_std, back = to_native(a.brain, a), to_native(a.brain, b)
    assert back.GetSize() == img.GetSize() and back.GetDirection() == img.GetDirection()
    assert back.GetOrigin() == pytest.approx(img.GetOrigin(), abs=1e-9)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(back), sitk.GetArrayFromImage(sitk.DICOMOrient(back_std, code)))


def test_a_skull_stripped_brain_reaches_the_network_as_if_its_skull_were_there():
    """Stripped (air right outside the brain), the brain's edge pixels would mix with air and look
    hypodense; with the bone shell painted where there is air, the model input equals the unstripped
    head's inside the brain, edge included - and a user mask on an ordinary CT is not painted over."""
    from sdpm_cli.preprocess.prepare import SHELL_HU, skull_where_air

    h = build_head(spacing=(0.8, 0.8, 5.0), shape=(4, 256, 256), noise_hu=0.0)
    brain = h.interior.astype(np.uint8)
    arr = sitk.GetArrayFromImage(h.image)
    stripped = sitk.GetImageFromArray(np.where(h.interior, arr, -1000).astype(np.int16))
    stripped.CopyInformation(h.image)
    whole, strip = prepare(h.image, brain=brain), prepare(stripped, brain=brain)
    inside = whole.brain > 0
    assert np.abs(strip.x - whole.x)[inside].max() < 1e-5
    # without the shell the edge would be darker: the painted shell is what makes the difference
    painted = skull_where_air(sitk.GetArrayViewFromImage(stripped), brain, (0.8, 0.8, 5.0))
    assert (painted == SHELL_HU).any() and np.array_equal(painted[h.interior], arr[h.interior])
    real = skull_where_air(arr, brain, (0.8, 0.8, 5.0))  # skull and scalp around the mask: no air there
    assert np.array_equal(np.asarray(real)[h.interior | h.skull], arr[h.interior | h.skull])

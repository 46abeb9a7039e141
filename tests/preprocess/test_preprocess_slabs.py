"""Thin series are read as slabs (HU mean of k slices) and every result goes back to every source slice."""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk

from sdpm_cli.preprocess import PreprocessPlan, prepare
from sdpm_cli.preprocess.prepare import Slabs, label_to_model, probs_to_native, slab_image, to_native


def test_slab_factor():
    plan = PreprocessPlan()
    assert plan.slab_factor(5.0) == 1 and plan.slab_factor(2.5) == 1 and plan.slab_factor(2.0) == 1
    assert plan.slab_factor(1.0) == 5 and plan.slab_factor(0.625) == 8 and plan.slab_factor(1.25) == 4
    assert PreprocessPlan(thin_slice_mm=0).slab_factor(0.625) == 1


def test_slabs_reduce_and_expand_closed_form():
    s = Slabs.of(sitk.Image(1, 1, 7, sitk.sitkUInt8), 3)
    a = np.arange(7, dtype=np.float32)[:, None]
    assert s.n_slabs == 3
    np.testing.assert_allclose(s.reduce(a)[:, 0], [1.0, 4.0, 6.0])  # the last slab holds one slice
    assert s.expand(np.array([10, 20, 30])).tolist() == [10, 10, 10, 20, 20, 20, 30]
    p = np.zeros((2, 3, 1, 1))
    p[1, 2] = 1.0
    assert s.expand(p, axis=1)[1, :, 0, 0].tolist() == [0, 0, 0, 0, 0, 0, 1]


def test_slab_image_geometry_sits_at_the_centre_of_its_slices():
    img = sitk.GetImageFromArray(np.arange(10 * 4 * 4, dtype=np.float32).reshape(10, 4, 4))
    img.SetSpacing((0.5, 0.7, 1.0))
    img.SetOrigin((3.0, -2.0, 10.0))
    d = sitk.VersorTransform((0.1, 0.2, 0.3), 0.4).GetMatrix()
    img.SetDirection(d)
    sl = slab_image(img, 5)
    assert sl.GetSize() == (4, 4, 2) and sl.GetSpacing() == (0.5, 0.7, 5.0)
    mid = np.mean([img.TransformIndexToPhysicalPoint((1, 2, k)) for k in range(5, 10)], axis=0)
    np.testing.assert_allclose(sl.TransformIndexToPhysicalPoint((1, 2, 1)), mid, atol=1e-9)
    np.testing.assert_allclose(sitk.GetArrayFromImage(sl)[1], sitk.GetArrayFromImage(img)[5:].mean(axis=0))


def _thin_head(dz=1.0, n=130):
    from sdpm_cli.synth import SynthConfig, generate_case

    case = generate_case(2, SynthConfig(matrix=128, thicknesses_mm=(dz,), thickness_weights=(1.0,), lesion="hemorrhage"))
    return case.image, case.label


def test_thin_study_is_prepared_in_slabs_and_maps_back_to_every_slice():
    image, label = _thin_head()
    plan = PreprocessPlan(spacing_mm=2.5, size=96)
    k = plan.slab_factor(image.GetSpacing()[2])
    prep = prepare(image, plan)
    assert prep.slabs is not None and prep.slabs.k == k == 5
    assert prep.x.shape[0] == -(-image.GetSize()[2] // k)
    assert any("slabs of 5 slices" in w for w in prep.warnings)
    assert abs(prep.model_dz_mm - 5.0 * image.GetSpacing()[2]) < 1e-9
    # a label goes to the model grid (slab majority) and back onto the source grid
    y = label_to_model(label, prep)
    back = to_native(y, prep)
    assert back.GetSize() == image.GetSize() and back.GetSpacing() == image.GetSpacing()
    assert back.GetOrigin() == image.GetOrigin() and back.GetDirection() == image.GetDirection()
    truth, got = sitk.GetArrayFromImage(label) > 0, sitk.GetArrayFromImage(back) > 0
    dice = 2 * (truth & got).sum() / (truth.sum() + got.sum())
    assert dice > 0.8, dice  # coarse (5 mm slabs at 2.5 mm pixels) but the same lesion
    # every source slice of a slab carries that slab's answer
    for z in range(image.GetSize()[2]):
        assert np.array_equal(sitk.GetArrayFromImage(back)[z], sitk.GetArrayFromImage(back)[(z // k) * k])
    pr = probs_to_native(np.stack([y == 1, y == 2]).astype(np.float32), prep)
    assert pr.shape[1:] == truth.shape


def test_sparse_resampling_of_masks_is_exact():
    """Resampling only the slices that hold a mask gives the same native array as resampling them all."""
    image, label = _thin_head(dz=5.0)
    prep = prepare(image, PreprocessPlan(spacing_mm=2.5, size=96))
    y = label_to_model(label, prep)
    m = np.stack([y == 1, y == 2]).astype(np.float32)
    assert 0 < m.any(axis=(0, 2, 3)).sum() < m.shape[1]  # some slices empty: the sparse path is used
    np.testing.assert_array_equal(probs_to_native(m, prep, sparse=True), probs_to_native(m, prep))


def _native_probs_reads_like_probs_to_native(dz: float, with_brain: bool):
    from sdpm_cli.preprocess.prepare import NativeProbs

    image, _ = _thin_head(dz=dz)
    prep = prepare(image, PreprocessPlan(spacing_mm=2.5, size=96))
    p = np.random.default_rng(1).random((2,) + prep.x.shape).astype(np.float32)
    full = probs_to_native(p, prep)
    inside = None
    if with_brain:
        inside = np.zeros(full.shape[1:], bool)
        inside[:, 20:100, 10:90] = True
        full = full * inside[None]
    view = NativeProbs(p, prep, inside)
    assert view.shape == full.shape and full.shape[1:] == sitk.GetArrayViewFromImage(image).shape
    Z = full.shape[1]
    for c in (0, 1):
        np.testing.assert_array_equal(view[c][2:7, 30:60, 5:50], full[c][2:7, 30:60, 5:50])
        np.testing.assert_array_equal(view[c][Z - 1], full[c][Z - 1])
        np.testing.assert_array_equal(view[c][3:4], full[c][3:4])
    np.testing.assert_array_equal(np.asarray(view), full)
    np.testing.assert_array_equal(np.asarray(view[1]), full[1])
    return prep


def test_native_probs_read_per_slice_equal_the_whole_resampled_volume():
    """The report reads a lesion's own slices; they must be the numbers of the full native volume."""
    assert _native_probs_reads_like_probs_to_native(5.0, with_brain=False).slabs is None
    assert _native_probs_reads_like_probs_to_native(5.0, with_brain=True).slabs is None


def test_native_probs_of_a_thin_series_read_its_slabs_on_every_source_slice():
    assert _native_probs_reads_like_probs_to_native(1.0, with_brain=False).slabs is not None
    assert _native_probs_reads_like_probs_to_native(1.0, with_brain=True).slabs is not None

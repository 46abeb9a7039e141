"""Model grid geometry: forward and inverse against closed forms and against SimpleITK's own resampler."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage

from sdpm_cli.preprocess import ModelGrid, label_to_model, probs_to_native, to_model_array, to_native
from sdpm_cli.preprocess.grid import Canon

from .phantoms import oblique_direction


def native_image(arr: np.ndarray, spacing, direction=(1, 0, 0, 0, 1, 0, 0, 0, 1), origin=(0.0, 0.0, 0.0)) -> sitk.Image:
    img = sitk.GetImageFromArray(arr)
    img.SetSpacing(spacing)
    img.SetDirection(direction)
    img.SetOrigin(origin)
    return img


def lesion_labels(shape, spacing, seed=0) -> np.ndarray:
    """Two ellipsoids (labels 1 and 2) and a small blob, in native index space."""
    Z, Y, X = shape
    zz, yy, xx = np.mgrid[0:Z, 0:Y, 0:X].astype(float)
    lab = np.zeros(shape, np.uint8)
    e1 = ((xx - X * 0.4) * spacing[0] / 14) ** 2 + ((yy - Y * 0.45) * spacing[1] / 9) ** 2 + ((zz - Z / 2) / 2.2) ** 2 < 1
    e2 = ((xx - X * 0.62) * spacing[0] / 6) ** 2 + ((yy - Y * 0.6) * spacing[1] / 11) ** 2 + ((zz - Z / 2) / 1.6) ** 2 < 1
    lab[e1] = 1
    lab[e2] = 2
    return lab


def test_exact_crop_when_spacing_matches(tmp_path):
    """(a) model spacing == native spacing, integer offset: native -> model -> native is the identity."""
    sp = (1.25, 1.25, 5.0)
    lab = lesion_labels((5, 90, 110), sp)
    img = native_image(lab, sp, oblique_direction(), origin=(-40.0, 12.5, 300.0))
    grid = ModelGrid.centred(img, (55.3, 44.6), size=64, spacing_mm=1.25)
    assert grid.scale == (1.0, 1.0) and all(float(o).is_integer() for o in grid.offset)
    model = label_to_model(img, grid)
    ox, oy = int(grid.offset[0]), int(grid.offset[1])
    assert grid.canon == Canon(flip_rows=True)  # its rows run anterior (display orientation: posterior)
    np.testing.assert_array_equal(model, lab[:, oy : oy + 64, ox : ox + 64][:, ::-1])
    back = sitk.GetArrayFromImage(to_native(model, grid))
    assert np.count_nonzero(back != lab) == 0
    assert sitk.GetArrayFromImage(to_native(model, grid)).dtype == np.uint8


@pytest.mark.parametrize(
    "spacing,direction,origin",
    [
        ((0.45, 0.45, 5.0), (1, 0, 0, 0, 1, 0, 0, 0, 1), (0.0, 0.0, 0.0)),
        ((0.43, 0.52, 3.0), oblique_direction(20.0, flip_y=True), (-117.3, 88.1, -402.5)),  # (c)
    ],
)
def test_round_trip_boundaries_and_centroid(spacing, direction, origin):
    """(b) downsampled round trip: disagreement only within one model pixel of a boundary, and each
    lesion's physical centroid moves < 0.5 model pixel; (c) holds for oblique/flipped axes too."""
    shape = (7, 230, 260)
    lab = lesion_labels(shape, spacing)
    img = native_image(lab, spacing, direction, origin)
    grid = ModelGrid.centred(img, (130.0, 115.0), size=96, spacing_mm=1.25)
    back = sitk.GetArrayFromImage(to_native(label_to_model(img, grid), grid))
    assert back.shape == lab.shape
    mism = back != lab
    # in-plane distance (mm) from each voxel to the nearest voxel of another label
    dist = np.zeros(shape)
    for z in range(shape[0]):
        for v in np.unique(lab[z]):
            inside = lab[z] == v
            dist[z][inside] = ndimage.distance_transform_edt(inside, sampling=(spacing[1], spacing[0]))[inside]
    assert mism.sum() > 0  # downsampling does change boundaries ...
    assert dist[mism].max() <= 1.25 + 1e-6  # ... but only within one model pixel of them
    out_img = native_image(back, spacing, direction, origin)
    for v in (1, 2):
        c_true = centroid_mm(img, lab == v)
        c_back = centroid_mm(out_img, back == v)
        assert np.linalg.norm(c_true - c_back) < 0.5 * 1.25


def centroid_mm(img: sitk.Image, mask: np.ndarray) -> np.ndarray:
    zyx = np.argwhere(mask).mean(axis=0)
    return np.array(img.TransformContinuousIndexToPhysicalPoint(tuple(float(v) for v in zyx[::-1])))


def test_model_reference_matches_the_grid_mapping():
    """Model pixel (i, j, k) sits at the native continuous index offset + (i, j) * scale."""
    sp = (0.47, 0.5, 2.5)
    img = native_image(np.zeros((4, 300, 280), np.uint8), sp, oblique_direction(33.0), (10.0, -20.0, 5.0))
    grid = ModelGrid.centred(img, (140.0, 150.0), 80, 1.25)
    ref = grid.model_reference()
    D = np.reshape(img.GetDirection(), (3, 3)) * [1, -1, 1]  # its rows are reversed into display orientation
    assert ref.GetSize() == (80, 80, 4) and ref.GetDirection() == pytest.approx(tuple(D.ravel()))
    for i, j, k in [(0, 0, 0), (79, 0, 1), (13, 57, 3), (79, 79, 2)]:
        xy = grid.model_to_native_index(np.array([i, j]))
        expect = img.TransformContinuousIndexToPhysicalPoint((xy[0], xy[1], float(k)))
        assert ref.TransformIndexToPhysicalPoint((i, j, k)) == pytest.approx(expect, abs=1e-9)
    np.testing.assert_allclose(grid.native_to_model_index(grid.model_to_native_index([[3.5, 7.25]])), [[3.5, 7.25]])


def test_forward_and_inverse_agree_with_sitk_resample():
    """Our nearest forward/inverse equal SimpleITK's nearest Resample onto the same physical grids."""
    rng = np.random.default_rng(1)
    sp = (0.61, 0.57, 4.0)
    lab = (rng.random((3, 120, 130)) < 0.3).astype(np.uint8) * rng.integers(1, 3, (3, 120, 130)).astype(np.uint8)
    img = native_image(lab, sp, oblique_direction(-12.0), (5.0, 6.0, 7.0))
    grid = ModelGrid.centred(img, (64.0, 61.0), 48, 1.25)
    ours = to_model_array(lab, grid, order=0).astype(np.uint8)
    ref = sitk.Resample(img, grid.model_reference(), sitk.Transform(), sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)
    assert np.mean(ours != sitk.GetArrayFromImage(ref)) < 1e-3  # only exact .5 ties may round differently
    model_img = sitk.GetImageFromArray(ours)
    model_img.CopyInformation(grid.model_reference())
    theirs = sitk.Resample(model_img, img, sitk.Transform(), sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)
    back = sitk.GetArrayFromImage(to_native(ours, grid))
    assert np.mean(back != sitk.GetArrayFromImage(theirs)) < 1e-3


def test_probs_to_native_is_linear_and_zero_outside():
    sp = (0.5, 0.5, 5.0)
    img = native_image(np.zeros((2, 200, 240), np.int16), sp)
    grid = ModelGrid.centred(img, (120.0, 100.0), 64, 1.25)
    i = np.arange(64, dtype=np.float32)
    ramp = np.broadcast_to(i[None, None, :] / 63.0, (2, 64, 64))  # p = i / 63 along the model x axis
    probs = np.stack([ramp, np.full((2, 64, 64), 0.7, np.float32)])
    out = probs_to_native(probs, grid)
    assert out.shape == (2, 2, 200, 240) and out.dtype == np.float32
    x = np.arange(240)
    im = (x - grid.offset[0]) / grid.scale[0]  # model continuous index of each native column
    y = np.arange(200)
    jm = (y - grid.offset[1]) / grid.scale[1]
    cols = (im >= 0) & (im <= 63)
    rows = (jm >= 0) & (jm <= 63)
    np.testing.assert_allclose(out[0, 1][np.ix_(rows, cols)], np.broadcast_to(im[cols] / 63.0, (rows.sum(), cols.sum())), atol=1e-5)
    np.testing.assert_allclose(out[1, 0][np.ix_(rows, cols)], 0.7, atol=1e-6)
    far = (im < -1) | (im > 64)
    assert np.all(out[:, :, :, far] == 0)


ORIENTATIONS = ["LPS", "RPS", "LAS", "RAS", "PLS", "ALS", "PRS", "ARS"]  # every in-plane storage order


@pytest.mark.parametrize("code", ORIENTATIONS)
def test_every_storage_order_reaches_the_model_in_display_orientation(code):
    """The same head stored in any of the 8 in-plane orders (a bottom-up NIfTI, a transposed series) gives
    the model the same array as the DICOM-standard order, and the way back lands voxel for voxel on
    the source grid of that order."""
    sp = (0.5, 0.6, 5.0)
    lab = lesion_labels((3, 150, 170), sp)
    std = native_image(lab, sp, origin=(-40.0, -30.0, 10.0))  # identity direction: rows A->P, columns R->L
    img = sitk.DICOMOrient(std, code)
    assert (img.GetDirection() == std.GetDirection()) == (code == "LPS")
    centre_mm = std.TransformContinuousIndexToPhysicalPoint((85.0, 75.0, 0.0))
    centre = img.TransformPhysicalPointToContinuousIndex(centre_mm)[:2]
    ref_grid = ModelGrid.centred(std, (85.0, 75.0), 64, 1.25)
    grid = ModelGrid.centred(img, centre, 64, 1.25)
    assert grid.canon.identity == (code == "LPS")
    # the model sees exactly what it sees on the standard order, at the same physical points
    m_std, m = label_to_model(std, ref_grid), label_to_model(img, grid)
    np.testing.assert_array_equal(m, m_std)
    ref_phys, here_phys = ref_grid.model_reference(), grid.model_reference()
    assert here_phys.GetDirection() == pytest.approx(ref_phys.GetDirection(), abs=1e-12)
    assert here_phys.GetOrigin() == pytest.approx(ref_phys.GetOrigin(), abs=1e-9)
    # and back onto this order's own grid: the standard order's round trip, reordered voxel for voxel
    back = sitk.GetArrayFromImage(to_native(m, grid))
    np.testing.assert_array_equal(back, sitk.GetArrayFromImage(sitk.DICOMOrient(to_native(m_std, ref_grid), code)))


def test_canon_round_trip_and_index_maps():
    rng = np.random.default_rng(0)
    a = rng.random((2, 5, 5))
    for t in (False, True):
        for fr in (False, True):
            for fc in (False, True):
                c = Canon(t, fr, fc)
                np.testing.assert_array_equal(c.inverse(c.forward(a)), a)
                # model (column i, row j) holds the sampled array's value at sampled_index(i, j)
                f = c.forward(a)
                for i, j in [(0, 0), (4, 1), (2, 3)]:
                    si, sj = c.sampled_index(np.array([i, j]), 5).astype(int)
                    assert f[0, j, i] == a[0, sj, si]

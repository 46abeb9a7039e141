"""Lesion measurement against volumes, centroids and boxes computed by hand."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import SimpleITK as sitk

from sdpm_cli.errors import InputRejected
from sdpm_cli.postprocess.lesions import CSV_COLUMNS, measure_lesions, report_csv, voxel_volume_ml

SPACING = (0.7, 0.9, 4.0)
ORIGIN = (-50.0, 20.0, 100.0)


def rot_flip(deg: float) -> np.ndarray:
    a = np.deg2rad(deg)
    return np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]]) @ np.diag([1, -1, 1])


D = rot_flip(30.0)


def image(arr: np.ndarray, dtype=None, spacing=SPACING, direction=D, origin=ORIGIN) -> sitk.Image:
    img = sitk.GetImageFromArray(arr if dtype is None else arr.astype(dtype))
    img.SetSpacing(spacing)
    img.SetDirection(tuple(np.asarray(direction, float).ravel()))
    img.SetOrigin(origin)
    return img


def physical(idx_xyz) -> np.ndarray:
    """Index -> patient mm by hand: origin + D . diag(spacing) . index."""
    return np.asarray(ORIGIN) + D @ (np.asarray(SPACING) * np.asarray(idx_xyz, float))


def test_box_on_an_anisotropic_oblique_grid():
    a = np.zeros((6, 20, 16), np.uint8)
    a[2:4, 10:14, 5:8] = 1  # z 2..3, y 10..13, x 5..7: 2 x 4 x 3 = 24 voxels
    rep = measure_lesions(image(a))
    voxel_ml = 0.7 * 0.9 * 4.0 / 1000
    assert rep.voxel_ml == pytest.approx(voxel_ml)
    assert rep.volume_ml(1) == pytest.approx(24 * voxel_ml) == pytest.approx(0.06048)
    assert rep.volume_ml(2) == 0.0
    (les,) = rep.lesions
    assert (les.label, les.name, les.id, les.n_voxels) == (1, "infarct", 1, 24)
    assert les.centroid_index == pytest.approx((6.0, 11.5, 2.5))
    np.testing.assert_allclose(les.centroid_mm, physical((6.0, 11.5, 2.5)), atol=1e-9)
    assert les.bbox_index == ((5, 10, 2), (7, 13, 3))
    assert les.slices == (2, 3)
    corners = np.array([physical(c) for c in itertools.product((5, 7), (10, 13), (2, 3))])
    np.testing.assert_allclose(les.bbox_mm[0], corners.min(axis=0), atol=1e-9)
    np.testing.assert_allclose(les.bbox_mm[1], corners.max(axis=0), atol=1e-9)


def test_separate_and_touching_lesions_two_labels():
    a = np.zeros((4, 12, 12), np.uint8)
    a[0:2, 0:2, 0:2] = 1  # 8 voxels
    a[2, 2, 2] = 1  # touches the first only at a corner: same lesion with 26-connectivity
    a[0, 8:11, 8:11] = 1  # 9 voxels, separate
    a[3, 5:7, 0:3] = 2  # hemorrhage, 6 voxels
    a[3, 7, 3] = 2  # corner-adjacent to it in-plane: same lesion
    a[0, 0, 5] = 2  # a lone voxel
    rep = measure_lesions(image(a))
    vox = rep.voxel_ml
    assert [(v.label, v.n_voxels, v.n_lesions) for v in rep.labels] == [(1, 18, 2), (2, 8, 2)]
    assert rep.volume_ml(1) == pytest.approx(18 * vox) and rep.volume_ml(2) == pytest.approx(8 * vox)
    got = [(les.label, les.id, les.n_voxels) for les in rep.lesions]
    assert got == [(1, 1, 9), (1, 2, 9), (2, 1, 7), (2, 2, 1)]
    # the two 9-voxel infarcts are told apart by position: the corner-joined one has centroid
    # ((8*0.5 + 2) / 9, same, same) in index space
    corner = next(les for les in rep.lesions if les.label == 1 and les.bbox_index[0] == (0, 0, 0))
    assert corner.centroid_index == pytest.approx((6 / 9, 6 / 9, 6 / 9))
    assert corner.bbox_index == ((0, 0, 0), (2, 2, 2))


def test_other_labels_are_reported_by_number_and_empty_is_zero():
    a = np.zeros((2, 5, 5), np.uint16)
    rep = measure_lesions(image(a))
    assert [(v.label, v.volume_ml, v.n_lesions) for v in rep.labels] == [(1, 0.0, 0), (2, 0.0, 0)]
    assert rep.lesions == []
    a[1, 1:3, 1:3] = 7
    rep = measure_lesions(image(a))
    assert [v.label for v in rep.labels] == [1, 2, 7] and rep.labels[2].name == "label 7"
    assert rep.volume_ml(7) == pytest.approx(4 * rep.voxel_ml)


def test_min_voxels_drops_specks_but_not_label_volume():
    a = np.zeros((2, 6, 6), np.uint8)
    a[0, 0:2, 0:2] = 1
    a[1, 5, 5] = 1
    rep = measure_lesions(image(a), min_voxels=2)
    assert len(rep.lesions) == 1 and rep.labels[0].n_voxels == 5


def test_float_images():
    a = np.zeros((2, 4, 4), np.float32)
    a[0, 1, 1] = 1.0
    a[1, 2, 2] = 2.0
    rep = measure_lesions(image(a))
    assert rep.volume_ml(1) == pytest.approx(rep.voxel_ml) and "floating point" in rep.notes[0]
    a[1, 2, 2] = 0.5
    with pytest.raises(InputRejected, match=r"mask is not a label image \(non-integer values\)"):
        measure_lesions(image(a))
    a[1, 2, 2] = np.nan
    with pytest.raises(InputRejected, match="non-integer"):
        measure_lesions(image(a))


def test_rejects_vectors_2d_and_negative():
    vec = sitk.GetImageFromArray(np.zeros((2, 3, 3, 2), np.uint8), isVector=True)
    with pytest.raises(InputRejected, match="2 values per voxel"):
        measure_lesions(vec)
    with pytest.raises(InputRejected, match="3-D"):
        measure_lesions(sitk.GetImageFromArray(np.zeros((3, 3), np.uint8)))
    with pytest.raises(InputRejected, match="negative"):
        measure_lesions(image(np.full((2, 2, 2), -1, np.int16)))


def test_voxel_volume_uses_the_direction_determinant():
    img = image(np.zeros((1, 1, 1), np.uint8), spacing=(0.5, 2.0, 3.0), direction=rot_flip(71.0))
    assert voxel_volume_ml(img) == pytest.approx(0.003)


def test_csv_rows():
    a = np.zeros((3, 5, 5), np.uint8)
    a[1, 1:3, 1:3] = 2
    lines = report_csv(measure_lesions(image(a))).splitlines()
    assert lines[0].split(",") == CSV_COLUMNS
    assert len(lines) == 1 + 2 + 1  # header, two labels, one lesion
    row = dict(zip(CSV_COLUMNS, lines[3].split(",")))
    assert row["kind"] == "lesion" and row["name"] == "hemorrhage" and row["slice_first"] == row["slice_last"] == "1"
    assert float(row["volume_ml"]) == pytest.approx(4 * 0.7 * 0.9 * 4.0 / 1000)


def _whole_array_reference(arr: np.ndarray, min_voxels: int = 1) -> list[tuple]:
    """Components as measure_lesions found them before label_components: the whole array labelled
    per value, numbered largest first (ties by z, y, x of the box corner), centroid from all voxels."""
    from scipy import ndimage

    from sdpm_cli.labels import CONNECTIVITY_26

    out = []
    for v in sorted(int(x) for x in np.unique(arr) if x != 0):
        comp, _ = ndimage.label(arr == v, structure=CONNECTIVITY_26)
        found = []
        for k, sl in enumerate(ndimage.find_objects(comp), start=1):
            zyx = np.nonzero(comp == k)
            n = zyx[0].size
            if n < min_voxels:
                continue
            lo = (sl[2].start, sl[1].start, sl[0].start)
            hi = (sl[2].stop - 1, sl[1].stop - 1, sl[0].stop - 1)
            cen = tuple(float(zyx[a].astype(np.float64).sum() / n) for a in (2, 1, 0))
            found.append((n, lo, hi, cen))
        found.sort(key=lambda f: (-f[0], f[1][::-1]))
        out += [(v, i, n, lo, hi, cen) for i, (n, lo, hi, cen) in enumerate(found, start=1)]
    return out


def test_components_inside_the_lesion_box_equal_labelling_the_whole_array():
    """label_components labels only the box of the non-zero voxels; ids, sizes, boxes and centroids
    must be those of labelling the whole array (every report consumer keys lesions by them)."""
    from sdpm_cli.postprocess.components import label_components

    rng = np.random.default_rng(5)
    for trial in range(6):
        arr = np.zeros((9, 40, 50), np.uint8)
        sub = (rng.random((5, 21, 27)) < 0.08 + 0.04 * trial) * rng.integers(1, 4, (5, 21, 27))
        z, y, x = rng.integers(0, 4), rng.integers(0, 19), rng.integers(0, 23)
        arr[z : z + 5, y : y + 21, x : x + 27] = sub
        arr[z + 1, y + 1, x + 1] = arr[z + 3, y + 1, x + 1] = 2  # two single voxels: a size tie
        for min_vox in (1, 2):
            comps = label_components(arr, min_vox)
            ref = _whole_array_reference(arr, min_vox)
            assert [(c.label, c.id, c.n_voxels, c.lo, c.hi) for c in comps] == [r[:5] for r in ref]
            for c in comps:
                full = np.zeros(arr.shape, bool)
                full[c.crop][c.mask] = True
                assert np.all(arr[full] == c.label)
            img = sitk.GetImageFromArray(arr)
            rep = measure_lesions(img, min_voxels=min_vox)
            assert [(les.label, les.id, les.n_voxels, les.centroid_index) for les in rep.lesions] == \
                [(r[0], r[1], r[2], r[5]) for r in ref]
    assert label_components(np.zeros((3, 4, 5), np.uint8)) == []

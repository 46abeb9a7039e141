"""Geometry is sacred: volume voxels and masks line up with every source slice by physical position."""

from __future__ import annotations

import math

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk

from sdpm_cli.ingest import load_study
from sdpm_cli.ingest.geometry import stack_geometry
from sdpm_cli.outputs.atomic import write_image

from .dicom_factory import BLEED, SeriesSpec, phantom_hu, write_series


def _rot(axis: str, deg: float) -> np.ndarray:
    t = math.radians(deg)
    c, s = math.cos(t), math.sin(t)
    return {"x": np.array([[1, 0, 0], [0, c, -s], [0, s, c]]), "z": np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])}[axis]


_R = _rot("z", 17.0) @ _rot("x", 11.0)
OBLIQUE = tuple(np.concatenate([_R[:, 0], _R[:, 1]]))

CASES = {
    "plain": {},
    "oblique": {"iop": OBLIQUE},
    "flipped": {"iop": (-1.0, 0.0, 0.0, 0.0, -1.0, 0.0)},
    "reversed_instances": {"instance_order": "reversed"},
    "shuffled_files": {"instance_order": "shuffled", "file_names": "shuffled", "seed": 3},
    "thin_signed": {"spacing": 2.5, "n_slices": 40, "signed": True, "intercept": 0.0, "pixel_spacing": (3.1, 4.7)},
}


def _source_hu(path) -> tuple[np.ndarray, pydicom.Dataset]:
    """Independent reader: pydicom pixels and rescale."""
    ds = pydicom.dcmread(path)
    return ds.pixel_array.astype(np.float64) * float(ds.RescaleSlope) + float(ds.RescaleIntercept), ds


def _labels(hu: np.ndarray) -> np.ndarray:
    lab = np.zeros(hu.shape, np.uint8)
    lab[(hu >= 50) & (hu < 500)] = 2  # the bleed
    lab[(hu >= 0) & (hu < 20)] = 1  # the ventricle
    return lab


@pytest.mark.parametrize("case", list(CASES))
def test_round_trip_mask_onto_every_source_slice(tmp_path, case):
    paths = write_series(tmp_path / "dcm", SeriesSpec(**CASES[case]))
    st = load_study(tmp_path / "dcm")
    assert st.warnings == []
    img = st.image
    assert img.GetPixelID() == sitk.sitkInt16
    assert len(st.slices) == len(paths) == img.GetSize()[2]
    # Every voxel holds the phantom value of its own physical point (geometry of the volume itself).
    arr = sitk.GetArrayFromImage(img)
    z, y, x = np.meshgrid(*[np.arange(n) for n in arr.shape], indexing="ij")
    D = np.array(img.GetDirection()).reshape(3, 3)
    idx = np.stack([x, y, z], -1) * np.array(img.GetSpacing())
    pts = np.array(img.GetOrigin()) + idx @ D.T
    assert int((phantom_hu(pts) != arr).sum()) == 0
    # Mask NIfTI round trip, then back onto each source slice's own pixel grid.
    mask = sitk.GetImageFromArray(_labels(arr))
    mask.CopyInformation(img)
    write_image(mask, tmp_path / "mask.nii.gz")
    back = st.to_source_slices(sitk.ReadImage(str(tmp_path / "mask.nii.gz")))
    assert len(back) == len(st.slices)
    mismatched = 0
    for ref, lab in zip(st.slices, back):
        hu, ds = _source_hu(ref.path)
        assert lab.shape == (ds.Rows, ds.Columns)
        mismatched += int((lab != _labels(hu)).sum())
    assert mismatched == 0
    assert sum(int((b == 2).sum()) for b in back) > 20  # the bleed is really there on the source slices
    # slices are in volume order: ascending along the normal
    n = D[:, 2]
    proj = [float(np.dot(s.ipp, n)) for s in st.slices]
    assert proj == sorted(proj)


@pytest.mark.parametrize("case", ["plain", "oblique", "flipped"])
def test_same_geometry_as_simpleitk_for_a_clean_series(tmp_path, case):
    write_series(tmp_path, SeriesSpec(**CASES[case]))
    st = load_study(tmp_path)
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(tmp_path)))
    ref = reader.Execute()
    assert st.image.GetSize() == ref.GetSize()
    np.testing.assert_allclose(st.image.GetOrigin(), ref.GetOrigin(), atol=1e-4)
    np.testing.assert_allclose(st.image.GetSpacing(), ref.GetSpacing(), atol=1e-4)
    np.testing.assert_allclose(st.image.GetDirection(), ref.GetDirection(), atol=1e-6)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(st.image), sitk.GetArrayFromImage(ref))


@pytest.mark.parametrize("case", ["plain", "flipped", "reversed_instances"])  # shuffled InstanceNumbers make dicom2nifti see time points
def test_dicom2nifti_as_independent_second_reader(tmp_path, case):
    dicom2nifti = pytest.importorskip("dicom2nifti")
    import dicom2nifti.convert_dicom as cd

    write_series(tmp_path / "dcm", SeriesSpec(**CASES[case]))
    st = load_study(tmp_path / "dcm")
    cd.dicom_series_to_nifti(str(tmp_path / "dcm"), str(tmp_path / "d2n.nii.gz"), reorient_nifti=False)
    other = sitk.ReadImage(str(tmp_path / "d2n.nii.gz"))
    # same voxels at the same physical points, whatever axis order dicom2nifti chose
    res = sitk.Resample(other, st.image, sitk.Transform(), sitk.sitkNearestNeighbor, -5000.0)
    a, b = sitk.GetArrayFromImage(st.image), sitk.GetArrayFromImage(res)
    assert int((b == -5000).sum()) == 0
    np.testing.assert_array_equal(a, b.astype(np.int64))


def test_stack_geometry_closed_forms():
    # 5 mm slices along z, tilted plane (about x by 20 degrees): tilt angle and normal spacing known exactly
    t = math.radians(20.0)
    iop = (1, 0, 0, 0, math.cos(t), -math.sin(t))
    ipps = [(0, 0, 5.0 * k) for k in (3, 0, 2, 1, 4)]  # shuffled on purpose
    g = stack_geometry(ipps, iop, (1.0, 1.0))
    assert g.order == [1, 3, 2, 0, 4]
    assert g.tilt_deg == pytest.approx(20.0, abs=1e-9)
    assert g.spacing == pytest.approx(5.0 * math.cos(t), abs=1e-9)
    assert g.tilted and g.even
    # a missing slice: one 10 mm step among 5 mm steps, reported where it is
    g = stack_geometry([(0, 0, z) for z in (0, 5, 10, 20, 25, 30)], (1, 0, 0, 0, 1, 0), (1.0, 1.0))
    assert not g.even and g.gaps == [(10.0, 20.0, 10.0)]
    assert not g.tilted and g.tilt_deg == 0.0
    # duplicates are found by position, not by name or instance number
    g = stack_geometry([(0, 0, 0), (0, 0, 5), (0, 0, 5.001), (0, 0, 10)], (1, 0, 0, 0, 1, 0), (1.0, 1.0))
    assert g.duplicates == [(1, 2)] and g.unique == [0, 1, 3]


def test_tilt_corrected_series_maps_back_exactly(tmp_path):
    spec = SeriesSpec(tilt_deg=20.0, n_slices=22)
    write_series(tmp_path, spec)
    st = load_study(tmp_path, correct_tilt=True)
    assert st.corrected == ["tilt"] and any("tilt" in w for w in st.warnings)
    img = st.image
    np.testing.assert_allclose(np.array(img.GetDirection()).reshape(3, 3), np.eye(3), atol=1e-9)  # untilted grid
    # the resampled volume puts the bleed where it is in space (naive stacking would shift it by ~20 mm)
    arr = sitk.GetArrayFromImage(img)
    z, y, x = np.meshgrid(*[np.arange(n) for n in arr.shape], indexing="ij")
    pts = np.array(img.GetOrigin()) + np.stack([x, y, z], -1) * np.array(img.GetSpacing())
    core = np.linalg.norm(pts - BLEED[0], axis=-1) < BLEED[1] - 6.0
    assert core.sum() >= 5 and np.all(np.abs(arr[core] - 65) <= 1)
    reader = sitk.ImageSeriesReader()  # what SimpleITK alone does with a tilted series
    reader.SetFileNames(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(tmp_path)))
    naive = sitk.GetArrayFromImage(sitk.Resample(reader.Execute(), img, sitk.Transform(), sitk.sitkNearestNeighbor, -1000))
    assert np.any(np.abs(naive[core] - 65) > 1)  # misplaced by SimpleITK on its own
    # a label map on the corrected grid that differs from every neighbour...
    z, y, x = np.meshgrid(*[np.arange(n) for n in arr.shape], indexing="ij")
    code = ((x + 2 * y + 4 * z) % 7 + 1).astype(np.uint8)
    mask = sitk.GetImageFromArray(code)
    mask.CopyInformation(img)
    back = st.to_source_slices(mask)
    # ...lands on each source pixel exactly as SimpleITK's own point->index says it should
    mismatched = 0
    for ref, lab in zip(st.slices, back):
        ds = pydicom.dcmread(ref.path, stop_before_pixels=True)
        r, c = np.array(ds.ImageOrientationPatient[:3], float), np.array(ds.ImageOrientationPatient[3:], float)
        ipp = np.array(ds.ImagePositionPatient, float)
        dy, dx = (float(v) for v in ds.PixelSpacing)
        for j in range(ds.Rows):
            for i in range(ds.Columns):
                p = ipp + i * dx * r + j * dy * c
                k = mask.TransformPhysicalPointToIndex(tuple(p))
                inside = all(0 <= k[a] < mask.GetSize()[a] for a in range(3))
                mismatched += int(lab[j, i] != (mask[k] if inside else 0))
    assert mismatched == 0
    # every source pixel of the head lies inside the corrected grid
    assert all((b > 0).all() for b in back)

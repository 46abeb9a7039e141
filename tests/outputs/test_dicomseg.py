"""DICOM SEG: written with highdicom, read back (highdicom and plain pydicom) to the same voxels."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/, for the shared DICOM factory
from ingest.dicom_factory import write_series  # noqa: E402

from sdpm_cli.errors import InputRejected, UsageError  # noqa: E402
from sdpm_cli.outputs.dicomseg import read_dicom_seg, write_dicom_seg  # noqa: E402

N = 8


def native_grid(paths: list[Path]) -> sitk.Image:
    """An empty uint8 image on the series' own grid (slices in the given order), from the headers."""
    ds = [pydicom.dcmread(str(p), stop_before_pixels=True) for p in paths]
    iop = np.array(ds[0].ImageOrientationPatient, float)
    r, c = iop[:3], iop[3:]
    n = np.cross(r, c)
    ipp0, ipp1 = np.array(ds[0].ImagePositionPatient, float), np.array(ds[1].ImagePositionPatient, float)
    dz = float(np.dot(ipp1 - ipp0, n))
    img = sitk.Image([int(ds[0].Columns), int(ds[0].Rows), len(ds)], sitk.sitkUInt8)
    img.SetOrigin(tuple(ipp0))
    img.SetSpacing((float(ds[0].PixelSpacing[1]), float(ds[0].PixelSpacing[0]), abs(dz)))
    img.SetDirection(tuple(np.stack([r, c, n * np.sign(dz)], axis=1).ravel()))
    return img


def with_lesions(grid: sitk.Image) -> tuple[sitk.Image, np.ndarray]:
    arr = np.zeros(sitk.GetArrayViewFromImage(grid).shape, np.uint8)
    arr[2:5, 10:20, 30:40] = 1  # infarct on three slices
    arr[5, 3:6, 4:7] = 2  # small hemorrhage on one slice
    arr[6, 30:33, 50:54] = 1  # second infarct lesion
    img = sitk.GetImageFromArray(arr)
    img.CopyInformation(grid)
    return img, arr


def decode_with_pydicom(seg_path: Path, paths: list[Path]) -> np.ndarray:
    """Independent decoder: frame -> (source SOP UID, segment number) from the functional groups."""
    seg = pydicom.dcmread(str(seg_path))
    frames = seg.pixel_array.reshape(int(seg.NumberOfFrames), int(seg.Rows), int(seg.Columns))
    code_of = {int(s.SegmentNumber): str(s.SegmentedPropertyTypeCodeSequence[0].CodeValue) for s in seg.SegmentSequence}
    label_of_code = {"55641003": 1, "50960005": 2}
    index = {str(pydicom.dcmread(str(p), stop_before_pixels=True).SOPInstanceUID): i for i, p in enumerate(paths)}
    ds0 = pydicom.dcmread(str(paths[0]), stop_before_pixels=True)
    out = np.zeros((len(paths), int(ds0.Rows), int(ds0.Columns)), np.uint8)
    for f, fg in zip(frames, seg.PerFrameFunctionalGroupsSequence):
        src = fg.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID
        number = int(fg.SegmentIdentificationSequence[0].ReferencedSegmentNumber)
        out[index[str(src)]][f > 0] = label_of_code[code_of[number]]
    return out


@pytest.mark.parametrize(
    "series",
    [
        dict(),  # axial, anisotropic pixels, non-integer origin
        dict(instance_order="reversed", file_names="shuffled", origin=(-101.3, -87.9, -33.3)),
        dict(iop=(-1.0, 0.0, 0.0, 0.0, -1.0, 0.0), pixel_spacing=(0.9, 1.3), spacing=3.0),  # flipped rows/cols
    ],
)
def test_seg_reads_back_to_the_same_voxels(tmp_path, series):
    paths = write_series(tmp_path / "ct", n_slices=N, **series)
    labels, arr = with_lesions(native_grid(paths))
    dest = write_dicom_seg(labels, paths, tmp_path / "seg.dcm", algorithm_name="sdpm-test", algorithm_version="9.9")
    assert np.array_equal(read_dicom_seg(dest, paths), arr)
    assert np.array_equal(decode_with_pydicom(dest, paths), arr)


def test_seg_header_codes_and_references(tmp_path):
    paths = write_series(tmp_path / "ct", n_slices=N)
    labels, _ = with_lesions(native_grid(paths))
    seg = pydicom.dcmread(str(write_dicom_seg(labels, paths, tmp_path / "seg.dcm", algorithm_name="sdpm", algorithm_version="1")))
    src = pydicom.dcmread(str(paths[0]), stop_before_pixels=True)
    assert seg.Modality == "SEG" and seg.SegmentationType == "BINARY"
    segs = {s.SegmentLabel: s for s in seg.SegmentSequence}
    assert set(segs) == {"infarct", "hemorrhage"}
    for name, code in (("infarct", "55641003"), ("hemorrhage", "50960005")):
        s = segs[name]
        assert s.SegmentedPropertyTypeCodeSequence[0].CodeValue == code
        assert s.SegmentedPropertyTypeCodeSequence[0].CodingSchemeDesignator == "SCT"
        assert s.SegmentedPropertyCategoryCodeSequence[0].CodeValue == "49755003"
        assert s.SegmentAlgorithmType == "AUTOMATIC" and s.SegmentAlgorithmName == "sdpm"
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == src.SeriesInstanceUID
    assert seg.StudyInstanceUID == src.StudyInstanceUID and seg.FrameOfReferenceUID == src.FrameOfReferenceUID
    assert seg.SeriesInstanceUID != src.SeriesInstanceUID
    # nothing identifying beyond the patient/study module a SEG must copy
    assert "InstitutionName" not in seg
    # only frames that hold a lesion are stored: 3 + 1 infarct frames, 1 hemorrhage frame
    assert int(seg.NumberOfFrames) == 5


def test_empty_mask_gives_a_valid_seg(tmp_path):
    paths = write_series(tmp_path / "ct", n_slices=N)
    labels = native_grid(paths)  # all zero
    dest = write_dicom_seg(labels, paths, tmp_path / "seg.dcm")
    seg = pydicom.dcmread(str(dest))
    assert len(seg.SegmentSequence) == 2
    assert not read_dicom_seg(dest, paths).any()


def test_mask_on_a_finer_grid_is_sampled_by_position(tmp_path):
    # labels on a grid twice as fine in-plane over the same region: each source pixel takes the
    # label at its own centre
    paths = write_series(tmp_path / "ct", n_slices=N)
    grid = native_grid(paths)
    fine = sitk.Image([grid.GetSize()[0] * 2, grid.GetSize()[1] * 2, N], sitk.sitkUInt8)
    sx, sy, sz = grid.GetSpacing()
    fine.SetSpacing((sx / 2, sy / 2, sz))
    fine.SetDirection(grid.GetDirection())
    fine.SetOrigin(grid.GetOrigin())  # source pixel (i, j) centre = fine pixel (2i, 2j) centre
    arr = np.zeros(sitk.GetArrayViewFromImage(fine).shape, np.uint8)
    arr[3, 20:41, 60:81] = 2
    f = sitk.GetImageFromArray(arr)
    f.CopyInformation(fine)
    dest = write_dicom_seg(f, paths, tmp_path / "seg.dcm")
    expected = np.zeros((N, grid.GetSize()[1], grid.GetSize()[0]), np.uint8)
    expected[3, 10:21, 30:41] = 2
    assert np.array_equal(read_dicom_seg(dest, paths), expected)


def test_foreign_series_is_refused_and_nothing_written(tmp_path):
    paths = write_series(tmp_path / "ct", n_slices=N)
    labels, _ = with_lesions(native_grid(paths))
    elsewhere = write_series(tmp_path / "other", n_slices=N, origin=(0.0, 0.0, 500.0), series_number=3)
    with pytest.raises(InputRejected, match="outside the mask volume"):
        write_dicom_seg(labels, elsewhere, tmp_path / "seg.dcm")
    with pytest.raises(InputRejected, match="series"):
        write_dicom_seg(labels, paths[:4] + elsewhere[4:], tmp_path / "seg.dcm")
    assert not (tmp_path / "seg.dcm").exists()


def test_no_overwrite_without_force(tmp_path):
    paths = write_series(tmp_path / "ct", n_slices=N)
    labels, _ = with_lesions(native_grid(paths))
    dest = tmp_path / "seg.dcm"
    dest.write_text("keep")
    with pytest.raises(UsageError):
        write_dicom_seg(labels, paths, dest)
    assert dest.read_text() == "keep"
    write_dicom_seg(labels, paths, dest, force=True)
    assert pydicom.dcmread(str(dest)).Modality == "SEG"


def test_study_slices_from_the_ingest_line_up(tmp_path):
    """The real hand-over: Study.image is the labels' grid, Study.slices[i].path the source files."""
    ingest = pytest.importorskip("sdpm_cli.ingest")
    write_series(tmp_path / "ct", n_slices=24, instance_order="shuffled", file_names="shuffled")
    study = ingest.load_study(tmp_path / "ct")
    grid = sitk.Image(study.image.GetSize(), sitk.sitkUInt8)
    grid.CopyInformation(study.image)
    labels, arr = with_lesions(grid)
    paths = [s.path for s in study.slices]
    dest = write_dicom_seg(labels, paths, tmp_path / "seg.dcm")
    assert np.array_equal(read_dicom_seg(dest, paths), arr)

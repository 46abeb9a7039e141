"""Every input fault is acted on: refused with one line naming it (exit 3), or fixed with a warning."""

from __future__ import annotations

import os
import shutil

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk

from sdpm_cli.errors import InputRejected
from sdpm_cli.ingest import load_study, survey_study
from sdpm_cli.outputs.atomic import write_image

from .dicom_factory import (
    DOSE_SR,
    ENHANCED_CT,
    MR_IMAGE,
    SECONDARY_CAPTURE,
    SeriesSpec,
    phantom_hu,
    write_dicomdir,
    write_localizer,
    write_object,
    write_series,
)


def refused(path, *words, **kw) -> str:
    with pytest.raises(InputRejected) as exc:
        load_study(path, **kw)
    msg = str(exc.value)
    assert "\n" not in msg
    for w in words:
        assert w.lower() in msg.lower(), msg
    return msg


def test_empty_folder_and_missing_path(tmp_path):
    refused(tmp_path, "no files")
    refused(tmp_path / "nope", "no such file")


def test_folder_without_dicom(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / "image.png").write_bytes(b"\x89PNG\r\n")
    refused(tmp_path, "no dicom", "2 not dicom")


def test_not_ct_and_no_image_objects(tmp_path):
    write_object(tmp_path / "mr" / "1.dcm", MR_IMAGE, image=np.zeros((8, 8)), modality="MR")
    write_object(tmp_path / "sr.dcm", DOSE_SR, modality="SR")
    write_object(tmp_path / "sc.dcm", SECONDARY_CAPTURE, image=np.zeros((8, 8)), modality="OT")
    msg = refused(tmp_path, "no CT image series", "MR")
    s = survey_study(tmp_path)
    assert s.ignored["non_image"] == 1 and s.ignored["secondary_capture"] == 1 and s.ignored["other_modality"] == 1
    assert s.refusal == msg


def test_enhanced_ct_is_refused_clearly(tmp_path):
    write_object(tmp_path / "e.dcm", ENHANCED_CT, image=np.zeros((8, 8)))
    refused(tmp_path, "Enhanced CT", "not supported")


def test_too_few_slices_and_too_little_coverage(tmp_path):
    write_series(tmp_path / "few", n_slices=6)
    refused(tmp_path / "few", "only 6 slices", "minimum 10")
    write_series(tmp_path / "short", n_slices=12, spacing=5.0)
    refused(tmp_path / "short", "covers only 60 mm", "80 mm")


def test_only_non_axial_series(tmp_path):
    write_series(tmp_path, iop=(1.0, 0.0, 0.0, 0.0, 0.0, -1.0), n_slices=24)  # coronal
    refused(tmp_path, "no axial CT series", "coronal")


def test_mixed_matrix_sizes_refused_naming_files(tmp_path):
    spec = SeriesSpec()
    write_series(tmp_path, spec)
    odd = write_series(tmp_path / "odd", spec.replace(rows=32, cols=32, n_slices=5, series_number=2, origin=(0, 0, 300.0)))
    msg = refused(tmp_path, "mixes image sizes", "32x32")
    assert odd[0].name in msg


def test_localizer_like_outlier_dropped_with_warning(tmp_path):
    spec = SeriesSpec()
    write_series(tmp_path, spec)
    write_localizer(tmp_path / "scout.dcm", series_uid=spec.series_uid)  # ImageType LOCALIZER, same series
    write_series(tmp_path / "odd", spec.replace(rows=20, cols=20, n_slices=1, origin=(0, 0, 400.0)))  # no LOCALIZER flag
    st = load_study(tmp_path)
    assert st.image.GetSize() == (56, 40, 24)
    assert any("localizer-like" in w and "2 " in w for w in st.warnings), st.warnings


def test_exact_duplicate_dropped_with_warning(tmp_path):
    paths = write_series(tmp_path)
    shutil.copy(paths[7], tmp_path / "copy_of_7.dcm")
    st = load_study(tmp_path)
    assert st.image.GetSize()[2] == 24
    assert any("exact duplicate" in w and ("copy_of_7.dcm" in w or paths[7].name in w) for w in st.warnings)


def test_duplicate_position_with_different_pixels_refused(tmp_path):
    paths = write_series(tmp_path)
    ds = pydicom.dcmread(paths[5])
    arr = ds.pixel_array.copy()
    arr[10, 10] += 100
    ds.PixelData = arr.tobytes()
    ds.SOPInstanceUID = pydicom.uid.generate_uid()
    ds.save_as(tmp_path / "other.dcm")
    refused(tmp_path, "two different images at the same position", "other.dcm", paths[5].name)


def test_missing_slice_refused_with_position_or_resampled(tmp_path):
    spec = SeriesSpec(skip=(9,))
    paths = write_series(tmp_path, spec)
    z8, z10 = (float(pydicom.dcmread(p, stop_before_pixels=True).ImagePositionPatient[2]) for p in paths[8:10])
    msg = refused(tmp_path, "uneven slice spacing", "missing slice", f"{z8:.2f}", f"{z10:.2f}", "--resample-gaps")
    st = load_study(tmp_path, resample_gaps=True)
    assert st.corrected == ["gaps"] and any("resampled" in w for w in st.warnings)
    img = st.image
    assert img.GetSpacing()[2] == pytest.approx(5.0) and img.GetSize()[2] == 24
    # the filled slice is interpolated halfway between its neighbours, at the right place
    arr = sitk.GetArrayFromImage(img)
    src8, src10 = (pydicom.dcmread(p).pixel_array.astype(float) - 1024 for p in paths[8:10])
    np.testing.assert_allclose(arr[9], np.rint((src8 + src10) / 2), atol=0.5)
    assert img.TransformIndexToPhysicalPoint((0, 0, 9))[2] == pytest.approx((z8 + z10) / 2)
    assert msg


def test_tilt_refused_naming_angle(tmp_path):
    write_series(tmp_path, tilt_deg=15.0)
    refused(tmp_path, "gantry tilt of 15.0 degrees", "--correct-tilt")


def test_truncated_file_refused_naming_it(tmp_path):
    paths = write_series(tmp_path)
    data = paths[11].read_bytes()
    paths[11].write_bytes(data[: len(data) - 700])
    refused(tmp_path, "cannot decode", paths[11].name)


def test_missing_rescale(tmp_path):
    # signed values already in HU: accepted with a warning because the HU check passes
    write_series(tmp_path / "hu", write_rescale=False, signed=True)
    st = load_study(tmp_path / "hu")
    assert any("rescale" in w for w in st.warnings)
    # stored values offset by +1024 and no rescale: the HU check fails, refused
    write_series(tmp_path / "raw", write_rescale=False, signed=False, hu_offset=1024.0)
    refused(tmp_path / "raw", "rescale slope/intercept missing", "air")


def test_hu_check_failure_refused(tmp_path):
    write_series(tmp_path, hu_offset=300.0)
    refused(tmp_path, "HU check failed", "air at -700")


def test_pixel_padding_set_to_air(tmp_path):
    write_series(tmp_path / "a", signed=True, intercept=0.0, padding_value=-2000)
    write_series(tmp_path / "b", padding_value=0)  # stored 0 = -1024 HU: a plausible value, padded by tag only
    for sub in ("a", "b"):
        st = load_study(tmp_path / sub)
        arr = sitk.GetArrayFromImage(st.image)
        rows, cols = arr.shape[1:]
        jj, ii = np.meshgrid(np.arange(rows), np.arange(cols), indexing="ij")
        out = ((jj - rows / 2) / (rows / 2)) ** 2 + ((ii - cols / 2) / (cols / 2)) ** 2 > 1.0
        assert np.all(arr[:, out] == -1000)
        assert arr.min() == -1000


def test_contrast_agent_warns(tmp_path):
    write_series(tmp_path, contrast="IOHEXOL")
    st = load_study(tmp_path)
    assert any("contrast agent recorded" in w and "IOHEXOL" in w for w in st.warnings)


@pytest.mark.parametrize("syntax", ["rle", "jpegls", "jpeg2000", "jpeg_lossless"])
def test_compressed_transfer_syntaxes_decode(tmp_path, syntax):
    if syntax != "rle":
        pytest.importorskip("gdcm", reason="python-gdcm (the test encoder) is absent")
    paths = write_series(tmp_path, transfer_syntax=syntax, signed=True, intercept=0.0)
    ts = pydicom.dcmread(paths[0], stop_before_pixels=True).file_meta.TransferSyntaxUID
    assert ts.is_compressed
    st = load_study(tmp_path)
    arr = sitk.GetArrayFromImage(st.image)
    img = st.image
    z, y, x = np.meshgrid(*[np.arange(n) for n in arr.shape], indexing="ij")
    pts = np.array(img.GetOrigin()) + np.stack([x, y, z], -1) * np.array(img.GetSpacing())
    assert int((phantom_hu(pts) != arr).sum()) == 0


def test_several_patients_refused_unless_series_given(tmp_path):
    a = SeriesSpec(series_number=2)
    write_series(tmp_path / "p1", a)
    write_series(tmp_path / "p2", SeriesSpec(series_number=3, patient_id="OTHER", study_uid="1.2.3.4"))
    msg = refused(tmp_path, "2 patients", "--series")
    assert "OTHER" not in msg and "SDPM-TEST" not in msg
    st = load_study(tmp_path, series_uid=a.series_uid)
    assert st.series.uid == a.series_uid


def test_pacs_export_mess_symlink_loop_and_counts(tmp_path):
    spec = SeriesSpec()
    write_series(tmp_path / "DICOM" / "S1" / "deep", spec)
    write_localizer(tmp_path / "DICOM" / "S0" / "scout.dcm")
    write_object(tmp_path / "DICOM" / "S9" / "dose.dcm", DOSE_SR, modality="SR")
    write_object(tmp_path / "DICOM" / "S8" / "summary.dcm", SECONDARY_CAPTURE, image=np.zeros((8, 8)))
    write_dicomdir(tmp_path / "DICOMDIR")
    (tmp_path / "autorun.inf").write_text("x")
    os.symlink(tmp_path / "DICOM", tmp_path / "DICOM" / "S1" / "loop")  # a symlink loop
    st = load_study(tmp_path)
    assert st.series.uid == spec.series_uid and st.image.GetSize()[2] == 24
    s = st.survey
    assert s.ignored == {"directory": 1, "not_dicom": 1, "non_image": 1, "secondary_capture": 1, "localizer": 1}
    assert s.n_files == 24 + 5


def test_single_file_means_its_series(tmp_path):
    write_series(tmp_path, SeriesSpec(series_number=2, kernel="H30s"))
    bone = write_series(tmp_path, SeriesSpec(series_number=3, kernel="H70h"))
    assert load_study(tmp_path).series.kernel == "H30s"  # the folder: soft kernel chosen
    assert load_study(bone[3]).series.kernel == "H70h"  # one file: its own series


def test_nifti_input_hu_checked(tmp_path):
    write_series(tmp_path / "dcm")
    st = load_study(tmp_path / "dcm")
    write_image(st.image, tmp_path / "ct.nii.gz")
    st2 = load_study(tmp_path / "ct.nii.gz")
    np.testing.assert_array_equal(sitk.GetArrayFromImage(st2.image), sitk.GetArrayFromImage(st.image))
    assert st2.series.source == "nifti" and len(st2.slices) == 24
    back = st2.to_source_slices(st2.image)
    np.testing.assert_array_equal(np.stack(back), sitk.GetArrayFromImage(st.image))
    raw = sitk.Cast(st.image, sitk.sitkFloat32) + 1024.0  # not HU
    write_image(raw, tmp_path / "raw.nii.gz")
    refused(tmp_path / "raw.nii.gz", "HU check failed")
    cor = sitk.PermuteAxes(st.image, [0, 2, 1])  # slices become coronal
    write_image(cor, tmp_path / "cor.nii.gz")
    refused(tmp_path / "cor.nii.gz", "coronal slices, not axial")

"""DICOM series of a synthetic case: valid CT Image Storage, readable by SimpleITK and by our ingest."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk

from sdpm_cli.synth.writers import CT_IMAGE_STORAGE, write_dicom_series
from tests.synth.conftest import cached_case


@pytest.fixture(scope="module")
def series(tmp_path_factory):
    c = cached_case(3)
    d = tmp_path_factory.mktemp("dcm") / "study"
    write_dicom_series(c.image, c.meta, d, case_number=3)
    return c, d


def test_headers_are_ct_image_storage_without_real_identifiers(series):
    c, d = series
    files = sorted(d.glob("*.dcm"))
    assert len(files) == c.image.GetSize()[2]
    ds = pydicom.dcmread(files[0])
    assert ds.SOPClassUID == CT_IMAGE_STORAGE and ds.file_meta.MediaStorageSOPClassUID == CT_IMAGE_STORAGE
    assert list(ds.ImageType) == ["ORIGINAL", "PRIMARY", "AXIAL"]
    assert ds.Modality == "CT" and float(ds.RescaleSlope) == 1 and float(ds.RescaleIntercept) == -1024
    assert float(ds.SliceThickness) == c.meta["protocol"]["slice_thickness_mm"]
    assert ds.ConvolutionKernel == c.meta["protocol"]["kernel"]
    assert str(ds.PatientName) == "SYNTH^CASE0003" and ds.PatientBirthDate == "" and ds.AccessionNumber == ""
    assert "InstitutionName" not in ds
    uids = {pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID for f in files}
    assert len(uids) == len(files)


def test_uids_are_deterministic(series, tmp_path):
    c, d = series
    write_dicom_series(c.image, c.meta, tmp_path / "again", case_number=3)
    for f in sorted(d.glob("*.dcm"))[:3]:
        assert (tmp_path / "again" / f.name).read_bytes() == f.read_bytes()


def test_simpleitk_reads_the_series_with_the_same_geometry(series):
    c, d = series
    r = sitk.ImageSeriesReader()
    r.SetFileNames(r.GetGDCMSeriesFileNames(str(d)))
    img = r.Execute()
    assert np.array_equal(sitk.GetArrayFromImage(img), sitk.GetArrayFromImage(c.image))
    assert np.allclose(img.GetOrigin(), c.image.GetOrigin(), atol=1e-6)
    assert np.allclose(img.GetSpacing(), c.image.GetSpacing(), atol=1e-9)
    assert np.allclose(img.GetDirection(), c.image.GetDirection())


def test_ingest_loads_the_series_on_the_label_grid(series):
    ingest = pytest.importorskip("sdpm_cli.ingest")
    if not hasattr(ingest, "load_study"):
        pytest.skip("sdpm_cli.ingest.load_study not available")
    c, d = series
    study = ingest.load_study(d)
    img = study.image
    assert img.GetSize() == c.label.GetSize()
    assert np.allclose(img.GetOrigin(), c.label.GetOrigin(), atol=1e-6)
    assert np.allclose(img.GetSpacing(), c.label.GetSpacing(), atol=1e-9)
    assert np.allclose(img.GetDirection(), c.label.GetDirection())
    assert np.array_equal(sitk.GetArrayFromImage(img), sitk.GetArrayFromImage(c.image))
    assert study.series.thickness_mm == c.meta["protocol"]["slice_thickness_mm"]


def test_rle_compressed_series_round_trips(tmp_path):
    c = cached_case(3)
    d = write_dicom_series(c.image, c.meta, tmp_path / "rle", compress=True)
    ds = pydicom.dcmread(sorted(d.glob("*.dcm"))[4])
    assert ds.file_meta.TransferSyntaxUID == pydicom.uid.RLELossless
    again = write_dicom_series(c.image, c.meta, tmp_path / "rle2", compress=True)
    assert (again / "IM0005.dcm").read_bytes() == (d / "IM0005.dcm").read_bytes()  # deterministic UIDs too
    assert ds.SOPInstanceUID == ds.file_meta.MediaStorageSOPInstanceUID
    expect = sitk.GetArrayFromImage(c.image)[4].astype(np.int32)
    hu = ds.pixel_array.astype(np.int32) * int(ds.RescaleSlope) + int(ds.RescaleIntercept)
    assert np.array_equal(hu, expect)

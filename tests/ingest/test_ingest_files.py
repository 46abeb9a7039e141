"""Single-file studies: NIfTI faults SimpleITK hides (truncation, NaN voxels, shear), NRRD / MetaImage
input, and a zipped DICOM folder (read voxel-exact; traversal and bombs bounded)."""

from __future__ import annotations

import gzip
import zipfile

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk

from sdpm_cli.ingest import load_study
from sdpm_cli.ingest.files import study_name
from sdpm_cli.ingest.rules import IngestRules

from .dicom_factory import phantom_hu, write_series
from .test_ingest_headers import assert_voxel_exact, refused


@pytest.fixture()
def head_image(tmp_path):
    """The factory's head as an int16 image on its DICOM grid (what `sdpm convert` writes)."""
    write_series(tmp_path / "dcm")
    return load_study(tmp_path / "dcm").image


def _write_like(head_image, arr, path):
    """`arr` written to `path` with the head's geometry."""
    img = sitk.GetImageFromArray(arr)
    img.CopyInformation(head_image)
    sitk.WriteImage(img, str(path))
    return path


def test_truncated_nifti_gz_refused_as_truncated(tmp_path, head_image):
    full = tmp_path / "head.nii.gz"
    sitk.WriteImage(head_image, str(full), useCompression=True)
    raw = full.read_bytes()
    for frac in (0.9, 0.33):
        cut = tmp_path / f"cut{int(frac * 100)}.nii.gz"
        cut.write_bytes(raw[: int(len(raw) * frac)])
        msg = refused(cut, "truncated")
        assert "HU check" not in msg
    # an uncompressed file cut short too
    nii = tmp_path / "head.nii"
    sitk.WriteImage(head_image, str(nii))
    short = tmp_path / "short.nii"
    short.write_bytes(nii.read_bytes()[:-5000])
    refused(short, "truncated")
    # and the intact files still load voxel-exact
    assert_voxel_exact(load_study(full))
    assert_voxel_exact(load_study(nii))


def test_gzip_trailer_size_is_not_trusted_alone(tmp_path, head_image):
    """A cut whose last 4 bytes happen to differ from the size is decompressed to be sure; an intact
    file with a trailing junk byte is not called truncated."""
    full = tmp_path / "head.nii.gz"
    sitk.WriteImage(head_image, str(full), useCompression=True)
    junk = tmp_path / "junk.nii.gz"
    junk.write_bytes(full.read_bytes() + b"\0")
    with gzip.open(junk) as g:  # python's gzip stops at the padding: the data are complete
        assert len(g.read()) > 0
    load_study(junk)


def test_nan_voxels_refused_with_count(tmp_path, head_image):
    arr = sitk.GetArrayFromImage(head_image).astype(np.float32)
    arr[12, 20, 28] = np.nan  # in the brain
    arr[0, 0, :3] = np.inf  # in the air
    p = _write_like(head_image, arr, tmp_path / "nan.nii.gz")
    refused(p, "4 voxel(s) are NaN or infinite", "first at voxel 0,0,0")


def test_sheared_affine_named_as_shear(tmp_path):
    arr = np.full((30, 40, 40), -1000, np.int16)
    aff = np.diag([1.0, 1.0, 5.0, 1.0])
    aff[0, 2] = 1.5  # the slice axis leans into x: a sheared (gantry-tilt-like) grid
    img = nib.Nifti1Image(np.transpose(arr, (2, 1, 0)), aff)
    img.set_sform(aff, code=1)
    p = tmp_path / "shear.nii.gz"
    nib.save(img, str(p))
    msg = refused(p, "shear")
    assert "corrupt" not in msg


@pytest.mark.parametrize("suffix", [".nrrd", ".mha", ".mhd"])
def test_nrrd_and_metaimage_accepted_voxel_exact(tmp_path, head_image, suffix):
    p = tmp_path / f"head{suffix}"
    sitk.WriteImage(head_image, str(p))
    st = load_study(p)
    assert st.series.source in ("nrrd", "metaimage")
    assert_voxel_exact(st)
    assert study_name(p) == "head"


def test_nrrd_hu_check_still_applies(tmp_path, head_image):
    arr = sitk.GetArrayFromImage(head_image).astype(np.int16) + 1024  # stored values, not HU
    p = _write_like(head_image, arr, tmp_path / "raw.nrrd")
    refused(p, "NRRD raw.nrrd", "HU check failed")


def test_values_shifted_by_1024_are_named_as_such(tmp_path, head_image):
    """Unsigned storage that lost its rescale intercept (air 0, brain ~1060): the refusal says what to do."""
    arr = sitk.GetArrayFromImage(head_image).astype(np.int32) + 1024
    arr = np.clip(arr, 0, None).astype(np.uint16)
    p = _write_like(head_image, arr, tmp_path / "shifted.nii.gz")
    refused(p, "shifted.nii.gz", "shifted by +1024")


def test_zip_of_a_dicom_folder_read_voxel_exact(tmp_path):
    paths = write_series(tmp_path / "dcm")
    z = tmp_path / "study.zip"
    with zipfile.ZipFile(z, "w", zipfile.ZIP_DEFLATED) as zf:
        for p in paths:
            zf.write(p, f"PATIENT/STUDY/SERIES/{p.name}")
        zf.writestr("PATIENT/README.txt", "not dicom")
    st = load_study(z)
    assert st.series.n_slices == 24
    assert_voxel_exact(st)
    assert all(s.path.exists() for s in st.slices)  # SEG / report can still read the source files
    assert study_name(z) == "study"


def test_zip_member_names_cannot_escape(tmp_path):
    paths = write_series(tmp_path / "dcm")
    z = tmp_path / "evil.zip"
    with zipfile.ZipFile(z, "w") as zf:
        for k, p in enumerate(paths):
            zf.write(p, f"../../escaped_{k}.dcm" if k == 0 else f"/abs/{p.name}" if k == 1 else p.name)
    st = load_study(z)
    assert st.series.n_slices == 24
    assert not (tmp_path / "escaped_0.dcm").exists() and not list(tmp_path.parent.glob("escaped_*"))


def test_zip_bounds_and_corrupt_zip(tmp_path):
    paths = write_series(tmp_path / "dcm")
    z = tmp_path / "big.zip"
    with zipfile.ZipFile(z, "w", zipfile.ZIP_DEFLATED) as zf:
        for p in paths:
            zf.write(p, p.name)
    refused(z, "24 files in the zip", "at most 10", rules=IngestRules(max_zip_members=10))
    refused(z, "unpacks to", rules=IngestRules(max_zip_bytes=10_000))
    bad = tmp_path / "bad.zip"
    bad.write_bytes(b"PK\x03\x04 this is not really a zip")
    refused(bad, "not a readable zip")
    cut = tmp_path / "cut.zip"
    cut.write_bytes(z.read_bytes()[: len(z.read_bytes()) // 2])
    refused(cut, "zip")


def test_phantom_is_what_the_files_hold(head_image):
    """Guard for the tests above: the fixture really is the factory's head on its own grid."""
    arr = sitk.GetArrayFromImage(head_image)
    assert arr.shape == (24, 40, 56)
    assert (arr > 500).any() and (arr == -1000).any()
    assert phantom_hu(np.array([[0.0, 10.0, 60.0]]))[0] == 35.0


def test_nan_voxels_in_nrrd_refused(tmp_path, head_image):
    arr = sitk.GetArrayFromImage(head_image).astype(np.float32)
    arr[3, 4, 5] = np.nan
    p = _write_like(head_image, arr, tmp_path / "nan.nrrd")
    refused(p, "1 voxel(s) are NaN", "5,4,3")

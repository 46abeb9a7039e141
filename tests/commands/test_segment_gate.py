"""Red-team check of the input gate through `sdpm segment`: every refused input exits 3 with one line
and leaves nothing behind; every accepted odd input gives a mask that lies on the source grid at
every voxel's physical point."""

from __future__ import annotations

import shutil
import zipfile
from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk

from sdpm_cli.ingest import geometry

from tests.ingest.dicom_factory import write_series
from tests.ingest.test_ingest_headers import edit


def _dicom(tmp: Path, **tags) -> Path:
    folder = tmp / "study"
    paths = write_series(folder)
    if tags:
        edit(paths, **tags)
    return folder


def _nifti_from_dicom(tmp: Path) -> sitk.Image:
    from sdpm_cli.ingest import load_study

    return load_study(_dicom(tmp / "src")).image


def make_refused(kind: str, tmp: Path) -> Path:
    if kind == "iop_zero":
        return _dicom(tmp, ImageOrientationPatient=[0, 0, 0, 0, 0, 0])
    if kind == "iop_skew":
        return _dicom(tmp, ImageOrientationPatient=[1, 0, 0, 0.2, 0.98, 0])
    if kind == "spacing_zero":
        return _dicom(tmp, PixelSpacing=[0, 0])
    if kind == "spacing_mixed":
        folder = tmp / "study"
        edit(write_series(folder), k=4, PixelSpacing=[6.0, 4.0])
        return folder
    if kind == "slope_zero":
        return _dicom(tmp, RescaleSlope="0")
    if kind == "lossy_strict":
        return _dicom(tmp, LossyImageCompression="01")
    img = _nifti_from_dicom(tmp)
    p = tmp / "study.nii.gz"
    if kind == "nifti_nan":
        arr = sitk.GetArrayFromImage(img).astype(np.float32)
        arr[10, 20, 20] = np.nan
        nan = sitk.GetImageFromArray(arr)
        nan.CopyInformation(img)
        sitk.WriteImage(nan, str(p))
    elif kind == "nifti_truncated":
        sitk.WriteImage(img, str(p), useCompression=True)
        raw = p.read_bytes()
        p.write_bytes(raw[: int(0.9 * len(raw))])
    else:
        raise KeyError(kind)
    return p


REFUSED = {
    "iop_zero": "ImageOrientationPatient",
    "iop_skew": "not orthogonal",
    "spacing_zero": "PixelSpacing",
    "spacing_mixed": "PixelSpacing differs",
    "slope_zero": "RescaleSlope",
    "lossy_strict": "lossy",
    "nifti_nan": "NaN",
    "nifti_truncated": "truncated",
}


@pytest.mark.parametrize("kind", sorted(REFUSED))
def test_refused_input_leaves_nothing_behind(run_cli, tiny_model, tmp_path, kind):
    study = make_refused(kind, tmp_path / "in")
    out = tmp_path / "out"
    out.mkdir()
    extra = ["--refuse-lossy"] if kind == "lossy_strict" else []
    code, _, err = run_cli("segment", study, "--model", tiny_model, "--out", out / "mask.nii.gz",
                           "--report", out / "r.json", "--csv", out / "l.csv", "--preview", out / "qc.png",
                           "--probabilities", out / "p.nii.gz", "--quiet", *extra)
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code == 3, err
    assert len(lines) == 1 and lines[0].startswith("error:") and REFUSED[kind].lower() in lines[0].lower(), err
    assert "Traceback" not in err and "nan mL" not in err
    assert list(out.iterdir()) == []


def make_accepted(kind: str, tmp: Path) -> tuple[Path, Path]:
    """(study to segment, DICOM folder whose slices define the grid the mask must lie on)."""
    src = _dicom(tmp / "src")
    if kind == "no_preamble":
        bare = tmp / "bare"
        bare.mkdir()
        for p in sorted(src.iterdir()):
            ds = pydicom.dcmread(p)
            ds.preamble = None
            del ds.file_meta
            pydicom.dcmwrite(bare / p.name, ds, implicit_vr=True, little_endian=True, enforce_file_format=False)
        return bare, src
    if kind == "zip":
        z = tmp / "study.zip"
        with zipfile.ZipFile(z, "w", zipfile.ZIP_DEFLATED) as zf:
            for p in sorted(src.iterdir()):
                zf.write(p, f"export/{p.name}")
        return z, src
    if kind in ("nrrd", "mha"):
        from sdpm_cli.ingest import load_study

        p = tmp / f"study.{kind}"
        sitk.WriteImage(load_study(src).image, str(p))
        return p, src
    if kind == "lossy_flag":
        edit(sorted(src.iterdir()), LossyImageCompression="01")
        return src, src
    raise KeyError(kind)


@pytest.mark.parametrize("kind", ["no_preamble", "zip", "nrrd", "mha", "lossy_flag"])
def test_accepted_input_mask_on_the_source_grid_at_every_voxel(run_cli, tiny_model, tmp_path, kind):
    study, src = make_accepted(kind, tmp_path / "in")
    mask = tmp_path / "mask.nii.gz"
    code, _, err = run_cli("segment", study, "--model", tiny_model, "--out", mask, "--quiet")
    assert code == 0, err
    if kind == "lossy_flag":
        assert "lossy" in err
    m = sitk.ReadImage(str(mask))
    files = sorted(src.iterdir())
    assert m.GetSize()[2] == len(files)
    for p in files:
        ds = pydicom.dcmread(p, stop_before_pixels=True)
        spacing = [float(x) for x in ds.PixelSpacing]
        pts = geometry.physical_points(np.array(ds.ImagePositionPatient, float),
                                       geometry.direction_matrix([float(v) for v in ds.ImageOrientationPatient]),
                                       (spacing[1], spacing[0]), (ds.Rows, ds.Columns))
        idx = geometry.to_continuous_index(pts, m.GetOrigin(), m.GetDirection(), m.GetSpacing())
        jj, ii = np.meshgrid(np.arange(ds.Rows), np.arange(ds.Columns), indexing="ij")
        assert np.abs(idx[..., 0] - ii).max() < 1e-3 and np.abs(idx[..., 1] - jj).max() < 1e-3
        k = idx[..., 2]
        assert np.abs(k - np.rint(k)).max() < 1e-3 and np.ptp(k) < 1e-3  # one mask slice per source slice
    shutil.rmtree(tmp_path / "in", ignore_errors=True)

"""Header faults that would silently misplace or misscale voxels are refused naming the tag; lossy
pixel data are warned about (or refused); files without the DICOM preamble are read."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk

from sdpm_cli.ingest import load_study

from .dicom_factory import phantom_hu, write_series
from .test_ingest_faults import refused


def edit(paths, k=None, **tags) -> None:
    """Set tags on every file (or only on file k)."""
    for i, p in enumerate(paths):
        if k is not None and i != k:
            continue
        ds = pydicom.dcmread(p)
        for name, value in tags.items():
            setattr(ds, name, value)
        ds.save_as(p, enforce_file_format=True)


def assert_voxel_exact(st) -> None:
    """Every voxel holds the phantom's value at its physical point."""
    arr = sitk.GetArrayFromImage(st.image)
    img = st.image
    z, y, x = np.meshgrid(*[np.arange(n) for n in arr.shape], indexing="ij")
    D = np.array(img.GetDirection()).reshape(3, 3)
    idx = np.stack([x, y, z], -1) * np.array(img.GetSpacing())
    pts = np.array(img.GetOrigin()) + idx @ D.T
    assert int((phantom_hu(pts) != arr).sum()) == 0


@pytest.mark.parametrize("iop, words", [
    ([0, 0, 0, 0, 0, 0], ("ImageOrientationPatient", "zero")),
    (["nan", 0, 0, 0, 1, 0], ("ImageOrientationPatient", "finite")),
    ([1, 0, 0, 0.2, 0.98, 0], ("ImageOrientationPatient", "not orthogonal")),
    ([2, 0, 0, 0, 2, 0], ("ImageOrientationPatient", "unit")),
])
def test_bad_orientation_refused(tmp_path, iop, words, capfd):
    paths = write_series(tmp_path)
    edit(paths, ImageOrientationPatient=iop)
    msg = refused(tmp_path, *words)
    assert "nan mL" not in msg
    assert "coerced" not in capfd.readouterr().err  # nothing from ITK leaks


def test_orientation_broken_in_one_slice_refused(tmp_path):
    paths = write_series(tmp_path)
    edit(paths, k=5, ImageOrientationPatient=[1, 0, 0, 0.05, 0.9987, 0])
    refused(tmp_path, "ImageOrientationPatient", "orthogonal")


def test_pixel_spacing_differing_between_slices_refused_not_called_tilt(tmp_path):
    paths = write_series(tmp_path)
    edit(paths, k=7, PixelSpacing=[6.5, 4.7])
    msg = refused(tmp_path, "PixelSpacing differs", "5.5", "6.5")
    assert "tilt" not in msg
    # --correct-tilt does not "correct" it either
    refused(tmp_path, "PixelSpacing differs", correct_tilt=True, resample_gaps=True)


@pytest.mark.parametrize("spacing", [[0, 0], [5.5, 0], ["nan", 4]])
def test_pixel_spacing_zero_or_nan_refused(tmp_path, spacing):
    paths = write_series(tmp_path)
    edit(paths, PixelSpacing=spacing)
    with _no_runtime_warning():
        refused(tmp_path, "PixelSpacing", "not a positive size")


class _no_runtime_warning:
    def __enter__(self):
        import warnings

        self._ctx = warnings.catch_warnings()
        self._ctx.__enter__()
        warnings.simplefilter("error", RuntimeWarning)  # a numpy division warning would fail the test

    def __exit__(self, *exc):
        return self._ctx.__exit__(*exc)


@pytest.mark.parametrize("slope", ["0", "nan"])
def test_rescale_slope_zero_or_nan_refused(tmp_path, slope):
    paths = write_series(tmp_path)
    edit(paths, k=3, RescaleSlope=slope)
    refused(tmp_path, "RescaleSlope", "HU")


def test_rgb_refused_naming_photometric_interpretation(tmp_path):
    paths = write_series(tmp_path)
    for p in paths:
        ds = pydicom.dcmread(p)
        gray = ds.pixel_array.astype(np.uint16)
        rgb = np.repeat((gray // 16).astype(np.uint8)[..., None], 3, axis=-1)
        ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PlanarConfiguration = 3, "RGB", 0
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
        ds.PixelData = rgb.tobytes()
        ds.save_as(p, enforce_file_format=True)
    msg = refused(tmp_path, "PhotometricInterpretation RGB", "colour")
    assert "HU check" not in msg


def test_lossy_flag_warns_or_refuses(tmp_path):
    paths = write_series(tmp_path)
    edit(paths, LossyImageCompression="01", LossyImageCompressionMethod="ISO_10918_1")
    st = load_study(tmp_path)
    assert any("lossy-compressed" in w and "ISO_10918_1" in w and "--refuse-lossy" in w for w in st.warnings)
    refused(tmp_path, "lossy", "--refuse-lossy", refuse_lossy=True)


@pytest.mark.parametrize("syntax, name", [("jlsnear", "JPEG-LS near-lossless"), ("j2k", "JPEG 2000")])
def test_lossy_transfer_syntaxes_warn(tmp_path, syntax, name):
    gdcm = pytest.importorskip("gdcm", reason="python-gdcm (the test encoder) is absent")
    ts = {"jlsnear": gdcm.TransferSyntax.JPEGLSNearLossless, "j2k": gdcm.TransferSyntax.JPEG2000}[syntax]
    paths = write_series(tmp_path, signed=True, intercept=0.0)
    for p in paths[:2]:
        reader = gdcm.ImageReader()
        reader.SetFileName(str(p))
        assert reader.Read()
        change = gdcm.ImageChangeTransferSyntax()
        change.SetTransferSyntax(gdcm.TransferSyntax(ts))
        change.SetInput(reader.GetImage())
        assert change.Change()
        writer = gdcm.ImageWriter()
        writer.SetFileName(str(p))
        writer.SetFile(reader.GetFile())
        writer.SetImage(change.GetOutput())
        assert writer.Write()
    st = load_study(tmp_path)
    assert any(f"2 of 24 slice(s) lossy-compressed ({name}" in w for w in st.warnings), st.warnings
    refused(tmp_path, "lossy", refuse_lossy=True)


def test_lossless_study_has_no_lossy_warning(tmp_path):
    write_series(tmp_path)
    assert not any("lossy" in w for w in load_study(tmp_path).warnings)


def test_files_without_preamble_are_read_voxel_exact(tmp_path):
    paths = write_series(tmp_path / "in")
    bare = tmp_path / "bare"
    bare.mkdir()
    for p in paths:
        ds = pydicom.dcmread(p)
        out = bare / p.name
        # a bare data set: no preamble, no "DICM", no file meta (implicit VR little endian)
        ds.preamble = None
        del ds.file_meta
        pydicom.dcmwrite(out, ds, implicit_vr=True, little_endian=True, enforce_file_format=False)
        assert open(out, "rb").read(132)[128:132] != b"DICM"
    st = load_study(bare)
    assert st.series.n_slices == 24
    assert_voxel_exact(st)


def test_random_bytes_starting_like_a_tag_are_not_dicom(tmp_path):
    (tmp_path / "junk.bin").write_bytes(b"\x08\x00" + bytes(range(256)) * 4)
    refused(tmp_path, "no DICOM image")


@pytest.mark.parametrize("kw", [
    dict(transfer_syntax="explicit"), dict(transfer_syntax="implicit"), dict(transfer_syntax="rle"),
    dict(transfer_syntax="explicit", signed=True, intercept=0.0), dict(transfer_syntax="rle", signed=True, intercept=0.0),
    dict(transfer_syntax="explicit", slope=0.5, intercept=-1000.0), dict(transfer_syntax="explicit", write_rescale=False, signed=True),
])
def test_numpy_and_gdcm_decoders_agree(tmp_path, kw):
    """The fast path (pydicom, numpy only) gives exactly GDCM's values for the syntaxes it takes."""
    from sdpm_cli.ingest.volume import _NUMPY_SYNTAXES, _decode_gdcm, _decode_pydicom

    paths = write_series(tmp_path, n_slices=3, **kw)
    for p in paths:
        ts = str(pydicom.dcmread(p, stop_before_pixels=True).file_meta.TransferSyntaxUID)
        assert ts in _NUMPY_SYNTAXES
        np.testing.assert_array_equal(_decode_pydicom(p, False), _decode_gdcm(p))


def test_rle_is_decoded_by_the_compiled_plugin():
    """pydicom falls back to its own numpy RLE decoder (9x slower per slice) without pylibjpeg-rle."""
    from pydicom.pixels.decoders import RLELosslessDecoder

    assert "pylibjpeg" in RLELosslessDecoder.available_plugins

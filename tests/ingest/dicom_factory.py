"""Write tiny head-like CT series with pydicom at test time (reusable by every stage's tests).

The phantom is a pure function of physical position (mm, patient LPS), so any test can check that
a voxel holds the value that belongs at its physical point, whatever the orientation or order:
air -1000 HU around an ellipsoidal head with a ~1000 HU skull shell, ~35 HU brain, a 5 HU
ventricle and a 65 HU "bleed" off-centre (so left/right and up/down flips are visible).
Images are non-square (40 rows x 56 columns) with anisotropic pixels (5.5 mm between rows, 4 mm
between columns) and 24 slices of 5 mm: 120 mm of coverage.
"""

from __future__ import annotations

import dataclasses
import math
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    CTImageStorage,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    RLELossless,
    generate_uid,
)

HEAD_CENTRE = np.array([0.0, 10.0, 60.0])
HEAD_RADII = np.array([70.0, 85.0, 62.0])  # inner skull surface (brain) radii
SKULL_MM = 7.0
VENTRICLE = (np.array([-12.0, 5.0, 70.0]), 14.0)
BLEED = (np.array([30.0, -20.0, 55.0]), 12.0)
SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"
DOSE_SR = "1.2.840.10008.5.1.4.1.1.88.67"
ENHANCED_CT = "1.2.840.10008.5.1.4.1.1.2.1"
MR_IMAGE = "1.2.840.10008.5.1.4.1.1.4"

SYNTAXES = {
    "explicit": ExplicitVRLittleEndian,
    "implicit": ImplicitVRLittleEndian,
    "rle": RLELossless,
    "jpegls": JPEGLSLossless,
    "jpeg2000": JPEG2000Lossless,
    "jpeg_lossless": JPEGLosslessSV1,
}


def phantom_hu(points: np.ndarray) -> np.ndarray:
    """HU at physical points (..., 3)."""
    p = np.asarray(points, float)
    q = (p - HEAD_CENTRE) / HEAD_RADII
    rho = np.sqrt((q**2).sum(-1))
    outer = np.sqrt((((p - HEAD_CENTRE) / (HEAD_RADII + SKULL_MM)) ** 2).sum(-1))
    hu = np.full(p.shape[:-1], -1000.0)
    hu[outer <= 1.0] = 1000.0
    hu[rho <= 1.0] = 35.0
    for (c, r), v in ((VENTRICLE, 5.0), (BLEED, 65.0)):
        hu[(np.linalg.norm(p - c, axis=-1) <= r) & (rho <= 1.0)] = v
    return hu


@dataclass
class SeriesSpec:
    """Everything a test may vary about a series; defaults make a clean axial head CT."""

    rows: int = 40
    cols: int = 56
    pixel_spacing: tuple[float, float] = (5.5, 4.0)  # DICOM order: between rows (y), between columns (x)
    n_slices: int = 24
    spacing: float = 5.0
    thickness: Optional[float] = None  # SliceThickness tag (defaults to spacing)
    origin: Optional[tuple[float, float, float]] = None  # IPP of the first slice (default: centred grid)
    iop: tuple[float, ...] = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)
    tilt_deg: float = 0.0  # gantry tilt: plane rotated about x, slices still stacked along z
    positions: Optional[Sequence[Sequence[float]]] = None  # explicit IPPs (overrides the above)
    skip: tuple[int, ...] = ()  # slice indices left out (missing slices)
    instance_order: str = "ascending"  # or "reversed", "shuffled"
    file_names: str = "instance"  # or "shuffled", "uid"
    transfer_syntax: str = "explicit"
    slope: float = 1.0
    intercept: float = -1024.0
    write_rescale: bool = True
    signed: bool = False
    padding_value: Optional[int] = None  # stored value written outside a circle (scanner FOV padding)
    hu_offset: float = 0.0  # shifts every HU value (to fail the HU check)
    kernel: str = "H30s"
    description: str = "HEAD 5mm"
    image_type: tuple[str, ...] = ("ORIGINAL", "PRIMARY", "AXIAL")
    series_number: int = 2
    series_uid: Optional[str] = None
    study_uid: Optional[str] = None
    patient_id: str = "SDPM-TEST-001"
    patient_name: str = "Phantom^Test"
    contrast: Optional[str] = None
    modality: str = "CT"
    sop_class: str = CTImageStorage
    seed: int = 0

    def __post_init__(self) -> None:
        self.series_uid = self.series_uid or generate_uid()
        self.study_uid = self.study_uid or "1.2.826.0.1.3680043.8.498.1"

    def replace(self, **kw) -> "SeriesSpec":
        return dataclasses.replace(self, **kw)


def plane(spec: SeriesSpec) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Row direction, column direction and the direction slices are stacked along."""
    if spec.tilt_deg:
        t = math.radians(spec.tilt_deg)
        r, c = np.array([1.0, 0, 0]), np.array([0.0, math.cos(t), -math.sin(t)])
        return r, c, np.array([0.0, 0, 1])
    r, c = np.array(spec.iop[:3], float), np.array(spec.iop[3:], float)
    return r, c, np.cross(r, c)


def slice_positions(spec: SeriesSpec) -> list[np.ndarray]:
    if spec.positions is not None:
        return [np.asarray(p, float) for p in spec.positions]
    r, c, d = plane(spec)
    if spec.origin is None:
        # centre the in-plane grid on the head and start below it
        w, h = (spec.cols - 1) * spec.pixel_spacing[1], (spec.rows - 1) * spec.pixel_spacing[0]
        centre = HEAD_CENTRE.copy()
        start = centre - r * w / 2 - c * h / 2 - d * (spec.n_slices - 1) * spec.spacing / 2
        origin = start + np.array([0.3, -0.7, 0.0])  # a non-trivial, non-integer origin
    else:
        origin = np.asarray(spec.origin, float)
    return [origin + k * spec.spacing * d for k in range(spec.n_slices) if k not in spec.skip]


def slice_hu(spec: SeriesSpec, ipp: np.ndarray) -> np.ndarray:
    """The phantom sampled on one slice's pixel centres, [rows, cols]."""
    r, c, _ = plane(spec)
    jj, ii = np.meshgrid(np.arange(spec.rows), np.arange(spec.cols), indexing="ij")
    pts = ipp + (ii * spec.pixel_spacing[1])[..., None] * r + (jj * spec.pixel_spacing[0])[..., None] * c
    return phantom_hu(pts) + spec.hu_offset


def _dataset(spec: SeriesSpec, ipp: np.ndarray, instance: int) -> Dataset:
    r, c, _ = plane(spec)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = spec.sop_class
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian if spec.transfer_syntax != "implicit" else ImplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = spec.sop_class
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.PatientName = spec.patient_name
    ds.PatientID = spec.patient_id
    ds.PatientBirthDate = "19500101"
    ds.AccessionNumber = "ACC-SECRET-42"
    ds.InstitutionName = "Secret Hospital"
    ds.StudyInstanceUID = spec.study_uid
    ds.SeriesInstanceUID = spec.series_uid
    ds.FrameOfReferenceUID = spec.study_uid + ".1"
    ds.Modality = spec.modality
    ds.Manufacturer = "SDPM test factory"
    ds.SeriesNumber = spec.series_number
    ds.SeriesDescription = spec.description
    ds.InstanceNumber = instance
    ds.ImageType = list(spec.image_type)
    if spec.kernel:
        ds.ConvolutionKernel = spec.kernel
    ds.SliceThickness = spec.thickness if spec.thickness is not None else spec.spacing
    ds.ImagePositionPatient = [round(float(x), 6) for x in ipp]
    ds.ImageOrientationPatient = [round(float(x), 8) for x in np.concatenate([r, c])]
    ds.PixelSpacing = list(spec.pixel_spacing)
    if spec.tilt_deg:
        ds.GantryDetectorTilt = spec.tilt_deg
    if spec.contrast:
        ds.ContrastBolusAgent = spec.contrast
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = spec.rows, spec.cols
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 16, 15
    ds.PixelRepresentation = 1 if spec.signed else 0
    if spec.write_rescale:
        ds.RescaleSlope = spec.slope
        ds.RescaleIntercept = spec.intercept
        ds.RescaleType = "HU"
    hu = slice_hu(spec, ipp)
    stored = np.rint((hu - (spec.intercept if spec.write_rescale else 0.0)) / (spec.slope if spec.write_rescale else 1.0))
    if spec.padding_value is not None:
        ds.PixelPaddingValue = spec.padding_value
        jj, ii = np.meshgrid(np.arange(spec.rows), np.arange(spec.cols), indexing="ij")
        out = ((jj - spec.rows / 2) / (spec.rows / 2)) ** 2 + ((ii - spec.cols / 2) / (spec.cols / 2)) ** 2 > 1.0
        stored[out] = spec.padding_value
    dtype = np.int16 if spec.signed else np.uint16
    info = np.iinfo(dtype)
    ds.PixelData = np.clip(stored, info.min, info.max).astype(dtype).tobytes()
    return ds


def write_series(folder: Path | str, spec: Optional[SeriesSpec] = None, **overrides) -> list[Path]:
    """Write one series as files in `folder`; returns the paths in spatial (ascending) order."""
    spec = (spec or SeriesSpec()).replace(**overrides) if overrides else (spec or SeriesSpec())
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    positions = slice_positions(spec)
    n = len(positions)
    rng = random.Random(spec.seed)
    instances = list(range(1, n + 1))
    if spec.instance_order == "reversed":
        instances.reverse()
    elif spec.instance_order == "shuffled":
        rng.shuffle(instances)
    names = [f"IM{inst:04d}.dcm" for inst in instances]
    if spec.file_names == "shuffled":
        names = [f"{x:04d}.dcm" for x in rng.sample(range(1000, 9999), n)]
    paths = []
    for k, ipp in enumerate(positions):
        ds = _dataset(spec, ipp, instances[k])
        name = f"{ds.SOPInstanceUID}.dcm" if spec.file_names == "uid" else names[k]
        path = folder / f"s{spec.series_number}_{name}"
        pydicom.dcmwrite(path, ds, enforce_file_format=True)
        if spec.transfer_syntax not in ("explicit", "implicit"):
            compress(path, spec.transfer_syntax)
        paths.append(path)
    return paths


def compress(path: Path, syntax: str) -> None:
    """Re-encode a file losslessly: RLE with pydicom, the JPEG family with python-gdcm (BSD)."""
    if syntax == "rle":
        ds = pydicom.dcmread(path)
        ds.compress(RLELossless, encoding_plugin="pydicom")
        ds.save_as(path, enforce_file_format=True)
        return
    import gdcm  # noqa: PLC0415 - optional test dependency (python-gdcm)

    ts = {
        "jpegls": gdcm.TransferSyntax.JPEGLSLossless,
        "jpeg2000": gdcm.TransferSyntax.JPEG2000Lossless,
        "jpeg_lossless": gdcm.TransferSyntax.JPEGLosslessProcess14_1,
    }[syntax]
    reader = gdcm.ImageReader()
    reader.SetFileName(str(path))
    if not reader.Read():
        raise RuntimeError(f"gdcm cannot read {path}")
    change = gdcm.ImageChangeTransferSyntax()
    change.SetTransferSyntax(gdcm.TransferSyntax(ts))
    change.SetInput(reader.GetImage())
    if not change.Change():
        raise RuntimeError(f"gdcm cannot encode {syntax}")
    writer = gdcm.ImageWriter()
    writer.SetFileName(str(path))
    writer.SetFile(reader.GetFile())
    writer.SetImage(change.GetOutput())
    if not writer.Write():
        raise RuntimeError(f"gdcm cannot write {path}")


def write_object(path: Path | str, sop_class: str, *, image: Optional[np.ndarray] = None, series_uid: Optional[str] = None,
                 image_type: Sequence[str] = ("DERIVED", "SECONDARY"), modality: str = "CT", series_number: int = 99,
                 study_uid: str = "1.2.826.0.1.3680043.8.498.1", iop=None, ipp=None, spacing=(1.0, 1.0)) -> Path:
    """A non-series object: secondary capture, dose SR (no pixels), localizer, MR image..."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = sop_class, meta.MediaStorageSOPInstanceUID
    ds.PatientID, ds.PatientName = "SDPM-TEST-001", "Phantom^Test"
    ds.StudyInstanceUID, ds.SeriesInstanceUID = study_uid, series_uid or generate_uid()
    ds.Modality, ds.SeriesNumber, ds.InstanceNumber = modality, series_number, 1
    ds.ImageType = list(image_type)
    if image is not None:
        img = np.asarray(image, dtype=np.uint16)
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.Rows, ds.Columns = img.shape
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
        ds.RescaleSlope, ds.RescaleIntercept = 1, -1024
        if iop is not None:
            ds.ImageOrientationPatient, ds.ImagePositionPatient, ds.PixelSpacing = list(iop), list(ipp), list(spacing)
        ds.PixelData = img.tobytes()
    pydicom.dcmwrite(path, ds, enforce_file_format=True)
    return path


def write_localizer(path: Path | str, series_uid: Optional[str] = None, rows: int = 30, cols: int = 64) -> Path:
    """A lateral scout (CT Image Storage, ImageType LOCALIZER)."""
    return write_object(path, CTImageStorage, image=np.full((rows, cols), 1024), series_uid=series_uid,
                        image_type=("ORIGINAL", "PRIMARY", "LOCALIZER"), series_number=1,
                        iop=(0, 1, 0, 0, 0, -1), ipp=(0.0, -120.0, 200.0), spacing=(2.0, 4.0))


def write_dicomdir(path: Path | str) -> Path:
    """A minimal directory file (Media Storage Directory Storage), as PACS exports include."""
    path = Path(path)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.1.3.10"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.FileSetID = "SDPM"
    pydicom.dcmwrite(path, ds, enforce_file_format=True)
    return path

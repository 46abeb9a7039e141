"""Writers for synthetic studies: a CT Image Storage DICOM series and NIfTI files.

The DICOM series carries no real identifiers (PatientName SYNTH^CASE0001 ...), and every UID is derived
from the case seed, so rewriting a case gives byte-identical files.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from sdpm_cli.outputs.atomic import write_image

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
STUDY_DATE = "20240101"


def _uid(seed: int, *parts: object) -> str:
    from pydicom.uid import generate_uid

    return generate_uid(entropy_srcs=["sdpm-synth", str(int(seed)), *[str(p) for p in parts]])


def dicom_datasets(image: sitk.Image, meta: dict, case_number: int, compress: bool = False):
    """One pydicom Dataset per axial slice (volume order, inferior to superior)."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, PYDICOM_IMPLEMENTATION_UID, RLELossless

    arr = sitk.GetArrayViewFromImage(image)
    if image.GetDirection() != (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0):
        raise ValueError("synthetic DICOM writer expects an axial image with identity direction")
    seed = int(meta["seed"])
    prot = meta["protocol"]
    sx, sy, sz = image.GetSpacing()
    ox, oy, oz = image.GetOrigin()
    study_uid, series_uid, for_uid = _uid(seed, "study"), _uid(seed, "series"), _uid(seed, "frame")
    stored = (np.asarray(arr, np.int32) + 1024).clip(0, 4095).astype(np.uint16)
    name = f"SYNTH^CASE{case_number:04d}"
    for k in range(arr.shape[0]):
        sop_uid = _uid(seed, "sop", k)
        fm = FileMetaDataset()
        fm.MediaStorageSOPClassUID = CT_IMAGE_STORAGE
        fm.MediaStorageSOPInstanceUID = sop_uid
        fm.TransferSyntaxUID = ExplicitVRLittleEndian
        fm.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
        ds = Dataset()
        ds.file_meta = fm
        ds.SpecificCharacterSet = "ISO_IR 100"
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.SOPClassUID = CT_IMAGE_STORAGE
        ds.SOPInstanceUID = sop_uid
        ds.StudyDate = ds.SeriesDate = ds.ContentDate = ds.AcquisitionDate = STUDY_DATE
        ds.StudyTime = ds.SeriesTime = "120000"
        ds.ContentTime = ds.AcquisitionTime = f"1200{k % 60:02d}"
        ds.AccessionNumber = ""
        ds.Modality = "CT"
        ds.Manufacturer = "sdpm synth"
        ds.ManufacturerModelName = "head phantom"
        ds.ReferringPhysicianName = ""
        ds.StudyDescription = "CT HEAD WO CONTRAST (synthetic)"
        ds.SeriesDescription = f"Head {prot['slice_thickness_mm']:g}mm {prot['kernel']}"
        ds.PatientName = name
        ds.PatientID = f"SYNTH{case_number:04d}"
        ds.PatientBirthDate = ""
        ds.PatientSex = "O"
        ds.BodyPartExamined = "HEAD"
        ds.SliceThickness = f"{prot['slice_thickness_mm']:g}"
        ds.SpacingBetweenSlices = f"{sz:g}"
        ds.KVP = str(prot["kvp"])
        ds.ConvolutionKernel = prot["kernel"]
        ds.ReconstructionDiameter = f"{prot['fov_mm']:.4f}"
        ds.GantryDetectorTilt = "0"
        ds.PatientPosition = "HFS"
        ds.StudyInstanceUID = study_uid
        ds.SeriesInstanceUID = series_uid
        ds.StudyID = "1"
        ds.SeriesNumber = 2
        ds.AcquisitionNumber = 1
        ds.InstanceNumber = k + 1
        z = oz + k * sz
        ds.ImagePositionPatient = [f"{ox:.10g}", f"{oy:.10g}", f"{round(z, 6):.10g}"]
        ds.ImageOrientationPatient = ["1", "0", "0", "0", "1", "0"]
        ds.FrameOfReferenceUID = for_uid
        ds.PositionReferenceIndicator = ""
        ds.SliceLocation = f"{round(z, 6):.10g}"
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.Rows, ds.Columns = int(arr.shape[1]), int(arr.shape[2])
        ds.PixelSpacing = [f"{sy:.10g}", f"{sx:.10g}"]  # row spacing (y), column spacing (x)
        ds.BitsAllocated = 16
        ds.BitsStored = 12
        ds.HighBit = 11
        ds.PixelRepresentation = 0
        ds.RescaleIntercept = "-1024"
        ds.RescaleSlope = "1"
        ds.RescaleType = "HU"
        ds.WindowCenter = "40"
        ds.WindowWidth = "80"
        ds.PixelData = stored[k].tobytes()
        if compress:
            ds.compress(RLELossless, stored[k], encoding_plugin="pydicom", generate_instance_uid=False)
        yield ds


def write_dicom_series(image: sitk.Image, meta: dict, out_dir: str | os.PathLike, case_number: int = 1,
                       force: bool = False, compress: bool = False) -> Path:
    """Write the series into out_dir (IM0001.dcm ...) via a temporary sibling folder renamed into place."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not force:
        from sdpm_cli.errors import UsageError

        raise UsageError(f"output exists: {out_dir} (use --force to overwrite)")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".part", dir=out_dir.parent))
    try:
        for k, ds in enumerate(dicom_datasets(image, meta, case_number, compress)):
            ds.save_as(tmp / f"IM{k + 1:04d}.dcm", enforce_file_format=True)
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.replace(tmp, out_dir)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return out_dir


def write_nifti(image: sitk.Image, dest: str | os.PathLike, force: bool = False) -> Path:
    return write_image(image, dest, force=force)

"""Find DICOM files under a folder and read the header fields the ingest needs (never pixels).

PACS exports nest folders and mix in DICOMDIR files, dose reports, secondary captures, localizers
and stray files; each file is classified once here and everything that is not a CT image is counted
by kind so the user can see what was left out.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import pydicom
from pydicom.errors import InvalidDicomError

log = logging.getLogger(__name__)

CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"
ENHANCED_CT = {"1.2.840.10008.5.1.4.1.1.2.1", "1.2.840.10008.5.1.4.1.1.2.2"}  # enhanced, legacy converted
SECONDARY_CAPTURE_PREFIX = "1.2.840.10008.5.1.4.1.1.7"
DIRECTORY_SOP = "1.2.840.10008.1.3.10"
# Storage SOP classes that carry no image (SR incl. dose reports, presentation states, raw data,
# waveforms, encapsulated documents, key objects, registrations, segmentations...).
NON_IMAGE_PREFIXES = (
    "1.2.840.10008.5.1.4.1.1.88.",  # structured reports (radiation dose SR 88.67)
    "1.2.840.10008.5.1.4.1.1.11.",  # presentation states
    "1.2.840.10008.5.1.4.1.1.66",  # raw data, registrations, segmentations, surfaces
    "1.2.840.10008.5.1.4.1.1.9.",  # waveforms
    "1.2.840.10008.5.1.4.1.1.104.",  # encapsulated PDF/CDA
    "1.2.840.10008.5.1.4.1.1.481.",  # RT objects
)

# Kinds of files that are left out, as shown to the user.
IGNORED_KINDS = {
    "not_dicom": "not DICOM",
    "directory": "DICOMDIR / directory file",
    "non_image": "non-image object (dose report, SR, presentation state...)",
    "secondary_capture": "secondary capture",
    "localizer": "localizer / scout",
    "other_modality": "image of another modality",
    "unreadable": "unreadable DICOM header",
    "no_pixels": "image without pixel data",
}

# Only these tags are parsed; everything else (and all PHI beyond a one-way subject key) is skipped.
_TAGS = [
    "SOPClassUID", "SOPInstanceUID", "Modality", "SeriesInstanceUID", "StudyInstanceUID",
    "SeriesNumber", "SeriesDescription", "ImageType", "ConvolutionKernel", "SliceThickness",
    "ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing", "Rows", "Columns",
    "InstanceNumber", "RescaleSlope", "RescaleIntercept", "PixelPaddingValue", "PixelPaddingRangeLimit",
    "ContrastBolusAgent", "ContrastBolusRoute", "BitsAllocated", "PixelRepresentation", "NumberOfFrames",
    "SamplesPerPixel", "PhotometricInterpretation", "LossyImageCompression", "LossyImageCompressionMethod",
    "PatientAge", "BodyPartExamined", "PatientPosition", "PatientID", "PatientName", "PatientBirthDate", "Manufacturer", "PixelData",
]

# Transfer syntaxes whose pixel data may have lost information (HU values approximate). JPEG 2000
# (.91) and HTJ2K (.203) may be either; the LossyImageCompression tag decides when it is present.
LOSSY_SYNTAXES = {
    "1.2.840.10008.1.2.4.50": "JPEG baseline",
    "1.2.840.10008.1.2.4.51": "JPEG extended",
    "1.2.840.10008.1.2.4.81": "JPEG-LS near-lossless",
    "1.2.840.10008.1.2.4.91": "JPEG 2000 (lossy allowed)",
    "1.2.840.10008.1.2.4.93": "JPEG 2000 Part 2 (lossy allowed)",
    "1.2.840.10008.1.2.4.203": "HTJ2K (lossy allowed)",
    "1.2.840.10008.1.2.4.100": "MPEG-2",
    "1.2.840.10008.1.2.4.102": "MPEG-4",
}
_MAYBE_LOSSY = {"1.2.840.10008.1.2.4.91", "1.2.840.10008.1.2.4.93", "1.2.840.10008.1.2.4.203"}


@dataclass(frozen=True)
class Header:
    """One image file's header, reduced to what the ingest uses. No patient identifiers."""

    path: Path
    kind: str  # "ct", "enhanced_ct", "localizer", "secondary_capture", "other_modality", ...
    sop_class: str
    sop_instance: str
    series_uid: str
    study_uid: str
    subject_key: str  # one-way hash of patient ID/name/birth date: tells patients apart, reveals nothing
    series_number: Optional[int]
    description: str
    modality: str
    image_type: tuple[str, ...]
    kernel: str
    thickness: Optional[float]
    ipp: Optional[tuple[float, float, float]]
    iop: Optional[tuple[float, ...]]
    pixel_spacing: Optional[tuple[float, float]]  # DICOM order: (between rows, between columns)
    rows: int
    cols: int
    instance_number: Optional[int]
    transfer_syntax: str
    slope: Optional[float]
    intercept: Optional[float]
    padding_value: Optional[int]
    padding_limit: Optional[int]
    contrast: str
    manufacturer: str
    n_frames: int
    samples_per_pixel: int = 1
    photometric: str = ""
    lossy: str = ""  # why the pixel data are lossy-compressed ("" when lossless or uncompressed)
    no_preamble: bool = False  # read with force=True: no 128-byte preamble / "DICM" marker
    age: str = ""  # PatientAge (DICOM AS, e.g. "045Y"): the anatomy checks warn on children
    body_part: str = ""  # BodyPartExamined: the anatomy checks refuse a non-head body part
    patient_position: str = ""  # PatientPosition (HFS, HFP, HFDL, ...): a decubitus head lies on its side


@dataclass
class Discovery:
    """Every image header found, plus counts (and example paths) of what was ignored."""

    root: Path
    headers: list[Header] = field(default_factory=list)
    ignored: Counter = field(default_factory=Counter)
    examples: dict[str, list[Path]] = field(default_factory=dict)
    n_files: int = 0

    def ignore(self, kind: str, path: Path) -> None:
        self.ignored[kind] += 1
        self.examples.setdefault(kind, [])
        if len(self.examples[kind]) < 3:
            self.examples[kind].append(path)


def walk_files(root: Path) -> list[Path]:
    """All regular files under root, following symlinked folders but never visiting one twice."""
    root = Path(root)
    if root.is_file():
        return [root]
    seen: set[tuple[int, int]] = set()
    files: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        try:
            st = os.stat(dirpath)
        except OSError:
            dirnames[:] = []
            continue
        key = (st.st_dev, st.st_ino)
        if key in seen:  # a symlink loop or a second link to a folder already walked
            dirnames[:] = []
            continue
        seen.add(key)
        dirnames.sort()
        for name in sorted(filenames):
            p = Path(dirpath) / name
            if p.is_file():
                files.append(p)
    return files


def _float(v) -> Optional[float]:
    try:
        return None if v is None or v == "" else float(v)
    except (TypeError, ValueError):
        return None


def _int(v) -> Optional[int]:
    try:
        return None if v is None or v == "" else int(v)
    except (TypeError, ValueError):
        return None


def _floats(v, n: int) -> Optional[tuple[float, ...]]:
    try:
        vals = tuple(float(x) for x in v)
    except (TypeError, ValueError):
        return None
    return vals if len(vals) == n else None


def _subject_key(ds) -> str:
    raw = "|".join(str(ds.get(t, "")) for t in ("PatientID", "PatientName", "PatientBirthDate"))
    return hashlib.sha256(raw.encode()).hexdigest()[:16]


def _classify(ds, sop_class: str, image_type: tuple[str, ...], has_pixels: bool) -> str:
    modality = str(ds.get("Modality", "")).upper()
    if sop_class == DIRECTORY_SOP:
        return "directory"
    if sop_class.startswith(NON_IMAGE_PREFIXES):
        return "non_image"
    if sop_class.startswith(SECONDARY_CAPTURE_PREFIX):
        return "secondary_capture"
    if not has_pixels:
        return "non_image"
    if sop_class == CT_IMAGE or sop_class in ENHANCED_CT or (not sop_class and modality == "CT"):
        if "LOCALIZER" in image_type or "SCOUT" in image_type or "TOPOGRAM" in image_type:
            return "localizer"
        return "enhanced_ct" if sop_class in ENHANCED_CT else "ct"
    return "other_modality"


def _looks_like_bare_dataset(path: Path) -> bool:
    """A file without the 128-byte preamble that starts with a little-endian group 0002/0008 element
    (some PACS exports write them): worth a forced read. Anything else is not DICOM."""
    try:
        with open(path, "rb") as f:
            head = f.read(6)
    except OSError:
        return False
    return len(head) == 6 and head[:2] in (b"\x02\x00", b"\x08\x00")


def _lossy(ds, transfer_syntax: str) -> str:
    flag = str(ds.get("LossyImageCompression", "") or "").strip()
    if flag == "01":
        method = ds.get("LossyImageCompressionMethod", "")
        method = "\\".join(str(m) for m in method) if isinstance(method, pydicom.multival.MultiValue) else str(method or "")
        return "LossyImageCompression 01" + (f" ({method})" if method else "")
    if transfer_syntax in LOSSY_SYNTAXES and not (transfer_syntax in _MAYBE_LOSSY and flag == "00"):
        return f"{LOSSY_SYNTAXES[transfer_syntax]} transfer syntax"
    return ""


def read_header(path: Path) -> tuple[str, Optional[Header]]:
    """Classify one file from its header; returns (kind, Header for image files else None)."""
    forced = False
    try:
        ds = pydicom.dcmread(path, stop_before_pixels=False, specific_tags=_TAGS, defer_size=64)
    except InvalidDicomError:
        if not _looks_like_bare_dataset(path):
            return "not_dicom", None
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=False, specific_tags=_TAGS, defer_size=64, force=True)
        except Exception as exc:  # noqa: BLE001
            log.debug("unreadable header %s (no preamble): %s", path, exc)
            return "unreadable", None
        if not (ds.get("SOPClassUID") or ds.get("Modality")):
            return "not_dicom", None
        forced = True
    except Exception as exc:  # noqa: BLE001 - a broken header is reported as unreadable, never fatal
        log.debug("unreadable header %s: %s", path, exc)
        return "unreadable", None
    meta = getattr(ds, "file_meta", None)
    sop_class = str(ds.get("SOPClassUID", "") or (meta.get("MediaStorageSOPClassUID", "") if meta else ""))
    image_type = tuple(str(x).upper() for x in (ds.get("ImageType") or []))
    has_pixels = "PixelData" in ds or (0x7FE0, 0x0008) in ds or (0x7FE0, 0x0009) in ds
    kind = _classify(ds, sop_class, image_type, has_pixels)
    if kind in ("directory", "non_image"):
        return kind, None
    kernel = ds.get("ConvolutionKernel", "")
    if isinstance(kernel, (list, tuple, pydicom.multival.MultiValue)):
        kernel = "\\".join(str(k) for k in kernel)
    ps = _floats(ds.get("PixelSpacing"), 2)
    header = Header(
        path=Path(path),
        kind=kind,
        sop_class=sop_class,
        sop_instance=str(ds.get("SOPInstanceUID", "")),
        series_uid=str(ds.get("SeriesInstanceUID", "")) or f"(no series UID: {Path(path).parent.name})",
        study_uid=str(ds.get("StudyInstanceUID", "")),
        subject_key=_subject_key(ds),
        series_number=_int(ds.get("SeriesNumber")),
        description=str(ds.get("SeriesDescription", "") or ""),
        modality=str(ds.get("Modality", "") or ""),
        image_type=image_type,
        kernel=str(kernel or ""),
        thickness=_float(ds.get("SliceThickness")),
        ipp=_floats(ds.get("ImagePositionPatient"), 3),
        iop=_floats(ds.get("ImageOrientationPatient"), 6),
        pixel_spacing=ps,
        rows=_int(ds.get("Rows")) or 0,
        cols=_int(ds.get("Columns")) or 0,
        instance_number=_int(ds.get("InstanceNumber")),
        transfer_syntax=str(meta.get("TransferSyntaxUID", "")) if meta else "",
        slope=_float(ds.get("RescaleSlope")),
        intercept=_float(ds.get("RescaleIntercept")),
        padding_value=_int(ds.get("PixelPaddingValue")),
        padding_limit=_int(ds.get("PixelPaddingRangeLimit")),
        contrast=str(ds.get("ContrastBolusAgent", "") or ds.get("ContrastBolusRoute", "") or "").strip(),
        manufacturer=str(ds.get("Manufacturer", "") or ""),
        n_frames=_int(ds.get("NumberOfFrames")) or 1,
        samples_per_pixel=_int(ds.get("SamplesPerPixel")) or 1,
        photometric=str(ds.get("PhotometricInterpretation", "") or "").strip().upper(),
        lossy=_lossy(ds, str(meta.get("TransferSyntaxUID", "")) if meta else ""),
        no_preamble=forced,
        age=str(ds.get("PatientAge", "") or "").strip(),
        body_part=str(ds.get("BodyPartExamined", "") or "").strip(),
        patient_position=str(ds.get("PatientPosition", "") or "").strip().upper(),
    )
    return kind, header


def discover(root: Path) -> Discovery:
    """Read every file's header under root (a folder or one file)."""
    found = Discovery(root=Path(root))
    for path in walk_files(Path(root)):
        found.n_files += 1
        kind, header = read_header(path)
        if header is not None:
            found.headers.append(header)
        else:
            found.ignore(kind, path)
    return found

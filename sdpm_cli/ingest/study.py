"""The ingest's results: Study (a loaded volume) and Survey (every series and why it was or wasn't chosen)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np
import SimpleITK as sitk

from sdpm_cli.ingest import geometry


@dataclass(frozen=True)
class SliceRef:
    """One source slice: where its pixels are in space (and the file they came from)."""

    path: Path
    ipp: tuple[float, float, float]
    iop: tuple[float, ...]
    pixel_spacing: tuple[float, float]  # DICOM order: (between rows, between columns)
    rows: int
    cols: int
    instance_number: Optional[int] = None
    sop_instance_uid: str = ""
    sop_class_uid: str = ""


@dataclass
class SeriesInfo:
    """What a user needs to recognise a series. No patient identifiers."""

    uid: str
    number: Optional[int]
    description: str
    kernel: str
    kernel_class: str  # "soft", "bone" or "unknown"
    thickness_mm: Optional[float]
    n_slices: int
    spacing: tuple[float, float, float]  # x (between columns), y (between rows), z (between slices) in mm
    tilt_deg: float
    orientation: str
    image_type: tuple[str, ...] = ()
    coverage_mm: float = 0.0
    rows: int = 0
    cols: int = 0
    manufacturer: str = ""
    transfer_syntax: str = ""
    source: str = "dicom"  # or the volume file format: "nifti", "nrrd", "metaimage"
    patient_position: str = ""  # DICOM PatientPosition (HFS, HFP, HFDL, ...; "" when unknown)

    @property
    def decubitus(self) -> bool:
        """The patient lay on one side (HFDL, HFDR, FFDL, FFDR): the head holder is beside the head by design."""
        return self.patient_position[-2:] in ("DL", "DR")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["image_type"] = list(self.image_type)
        d["spacing"] = [round(float(s), 4) for s in self.spacing]
        d["tilt_deg"] = round(float(self.tilt_deg), 2)
        d["coverage_mm"] = round(float(self.coverage_mm), 1)
        return d

    @property
    def label(self) -> str:
        num = f"series {self.number}" if self.number is not None else "series"
        return f"{num} ({self.description})" if self.description else num


@dataclass
class SeriesRow:
    """One row of `sdpm series`: a series, whether it was chosen, and why (not)."""

    info: SeriesInfo
    kind: str
    chosen: bool = False
    reason: str = ""  # why chosen, or why left out
    needs: list[str] = field(default_factory=list)  # corrections it would need (tilt, gaps...)

    def to_dict(self) -> dict:
        return {"chosen": self.chosen, "kind": self.kind, "reason": self.reason, "needs": list(self.needs), **self.info.to_dict()}


@dataclass
class Survey:
    """Every series found, the chosen one, and counts of the files left out by kind."""

    root: Path
    rows: list[SeriesRow]
    ignored: dict[str, int]
    n_files: int
    refusal: Optional[str] = None  # set when no series can be chosen (the load would refuse with this)
    warnings: list[str] = field(default_factory=list)

    @property
    def chosen(self) -> Optional[SeriesRow]:
        return next((r for r in self.rows if r.chosen), None)

    def to_dict(self) -> dict:
        return {
            "n_files": self.n_files,
            "ignored": dict(self.ignored),
            "chosen": self.chosen.info.uid if self.chosen else None,
            "refusal": self.refusal,
            "series": [r.to_dict() for r in self.rows],
            "warnings": list(self.warnings),
        }


@dataclass
class Study:
    """A validated CT volume in HU and the source slices it came from."""

    image: sitk.Image  # int16 HU, native geometry (or the untilted/regular grid when corrected)
    series: SeriesInfo
    warnings: list[str]
    slices: list[SliceRef]  # one per source slice, in volume order
    survey: Optional[Survey] = None
    hu: dict = field(default_factory=dict)  # HU-check measurements (air level, soft-tissue peak)
    corrected: list[str] = field(default_factory=list)  # "tilt", "gaps" when resampled
    domain: dict = field(default_factory=dict)  # anatomy checks: out-of-domain flags + measures (ingest.anatomy)
    brain: Optional[np.ndarray] = None  # uint8 [Z, Y, X] brain mask when not skull-based (skull-stripped input)
    # one-way hash of the patient's ID/name/birth date from the DICOM headers (None: a volume file);
    # tells two studies' patients apart, never written to any output
    subject_key: Optional[str] = None

    def to_source_slices(self, mask: sitk.Image) -> list[np.ndarray]:
        """Sample `mask` (nearest, by physical position) on every source slice's own pixel grid."""
        return map_to_slices(mask, self.slices)


def map_to_slices(mask: sitk.Image, slices: list[SliceRef]) -> list[np.ndarray]:
    """Nearest-neighbour value of `mask` at each source pixel centre; 0 outside the mask's extent."""
    arr = sitk.GetArrayViewFromImage(mask)  # [z, y, x]
    origin = np.array(mask.GetOrigin())
    direction = np.array(mask.GetDirection()).reshape(3, 3)
    spacing = np.array(mask.GetSpacing())
    size = np.array(mask.GetSize())
    out: list[np.ndarray] = []
    for s in slices:
        D = geometry.direction_matrix(s.iop)
        pts = geometry.physical_points(np.array(s.ipp), D, (s.pixel_spacing[1], s.pixel_spacing[0]), (s.rows, s.cols))
        idx = np.floor(geometry.to_continuous_index(pts, origin, direction, spacing) + 0.5).astype(np.int64)
        inside = np.all((idx >= 0) & (idx < size), axis=-1)
        res = np.zeros((s.rows, s.cols), dtype=arr.dtype)
        sel = idx[inside]
        res[inside] = arr[sel[:, 2], sel[:, 1], sel[:, 0]]
        out.append(res)
    return out

"""Lesion volumes per label and per connected lesion, measured on the mask's own grid.

Pure functions over a SimpleITK label image, shared by `sdpm volume`, the segmentation report and
the pipeline. Conventions:
- a lesion is a 26-connected component (faces, edges and corners touch) of one label value;
- volume mL = voxel count x |det(direction . diag(spacing))| / 1000 (exact for any orthonormal or
  oblique grid);
- positions are patient coordinates in mm as SimpleITK/DICOM define them (LPS: x to the patient's
  left, y to the posterior, z to the head), from TransformContinuousIndexToPhysicalPoint;
- bounding boxes are inclusive voxel index ranges (x, y, z) and the physical box spanned by those
  voxels' centres; slices are the z index range (0-based, in the image's own order).
"""

from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass, field
from typing import Optional

import numpy as np
import SimpleITK as sitk

from sdpm_cli.labels import CLASSES, CONNECTIVITY_26, as_label_array, voxel_volume_ml  # noqa: F401 - re-exported
from sdpm_cli.postprocess.components import Component, label_components, label_counts

CONNECTIVITY = 26


@dataclass
class Lesion:
    label: int
    name: str
    id: int  # 1-based, per label, largest first
    n_voxels: int
    volume_ml: float
    centroid_mm: tuple[float, float, float]  # patient LPS mm
    centroid_index: tuple[float, float, float]  # continuous (x, y, z)
    bbox_index: tuple[tuple[int, int, int], tuple[int, int, int]]  # inclusive (x, y, z) min, max
    bbox_mm: tuple[tuple[float, float, float], tuple[float, float, float]]  # min, max corner (voxel centres)
    slices: tuple[int, int]  # first, last z index (inclusive)
    # set by add_locations (postprocess.location) when the CT is known; left out of to_dict otherwise
    location: Optional[str] = None
    location_reason: Optional[str] = None
    location_evidence: Optional[dict] = None

    @property
    def key(self) -> tuple:
        """(label, inclusive x/y/z box, voxels), as `Component.key` and `LocationResult.key`."""
        return (self.label, tuple(tuple(b) for b in self.bbox_index), self.n_voxels)


@dataclass
class LabelVolume:
    label: int
    name: str
    n_voxels: int
    volume_ml: float
    n_lesions: int


@dataclass
class LesionReport:
    voxel_ml: float
    size: tuple[int, int, int]
    spacing: tuple[float, float, float]
    labels: list[LabelVolume]
    lesions: list[Lesion]
    connectivity: int = CONNECTIVITY
    notes: list[str] = field(default_factory=list)

    def volume_ml(self, label: int) -> float:
        return next((v.volume_ml for v in self.labels if v.label == label), 0.0)

    def to_dict(self) -> dict:
        return {
            "coordinates": "patient LPS (DICOM) millimetres",
            "connectivity": self.connectivity,
            "voxel_ml": self.voxel_ml,
            "size": list(self.size),
            "spacing_mm": list(self.spacing),
            "labels": [asdict(v) for v in self.labels],
            "lesions": [_jsonable({k: v for k, v in asdict(les).items() if v is not None or not k.startswith("location")})
                        for les in self.lesions],
            "notes": list(self.notes),
        }


def _jsonable(obj):
    if isinstance(obj, dict):
        return {k: _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    return obj


def _bbox_mm(image: sitk.Image, lo: tuple[int, ...], hi: tuple[int, ...]) -> tuple[tuple[float, ...], tuple[float, ...]]:
    corners = np.array(
        [image.TransformContinuousIndexToPhysicalPoint([float(v) for v in c]) for c in itertools.product(*zip(lo, hi))]
    )
    return tuple(float(v) for v in corners.min(axis=0)), tuple(float(v) for v in corners.max(axis=0))


def measure_lesions(label: sitk.Image, *, min_voxels: int = 1, classes: Optional[dict[int, str]] = None,
                    components: Optional[list[Component]] = None) -> LesionReport:
    """Volume per label (the lesion classes always listed, 0 mL if absent; other labels by number)
    and every 26-connected lesion with at least `min_voxels` voxels (`components`: those of
    `label_components(label's array, min_voxels)`, when the caller has them already)."""
    arr, notes = as_label_array(label)
    classes = CLASSES if classes is None else classes
    voxel_ml = voxel_volume_ml(label)
    counts = label_counts(arr)
    values = sorted(set(classes) | set(counts))
    comps = label_components(arr, min_voxels, list(counts)) if components is None else components
    labels: list[LabelVolume] = []
    lesions: list[Lesion] = []
    by_label: dict[int, list[Component]] = {}
    for c in comps:  # grouped once (the list is ordered by label, then id)
        by_label.setdefault(c.label, []).append(c)
    for v in values:
        n_total = counts.get(v, 0)
        found: list[Lesion] = []
        for c in by_label.get(v, []):
            zyx = np.nonzero(c.mask)
            c_xyz = tuple(float((zyx[a].sum() + c.n_voxels * c.crop[a].start) / c.n_voxels) for a in (2, 1, 0))
            found.append(
                Lesion(
                    label=v,
                    name=classes.get(v, f"label {v}"),
                    id=c.id,
                    n_voxels=c.n_voxels,
                    volume_ml=c.n_voxels * voxel_ml,
                    centroid_mm=tuple(float(p) for p in label.TransformContinuousIndexToPhysicalPoint(c_xyz)),
                    centroid_index=c_xyz,
                    bbox_index=(c.lo, c.hi),
                    bbox_mm=_bbox_mm(label, c.lo, c.hi),
                    slices=(c.lo[2], c.hi[2]),
                )
            )
        lesions += found
        labels.append(LabelVolume(v, classes.get(v, f"label {v}"), n_total, n_total * voxel_ml, len(found)))
    return LesionReport(
        voxel_ml=voxel_ml,
        size=tuple(int(s) for s in label.GetSize()),  # type: ignore[arg-type]
        spacing=tuple(float(s) for s in label.GetSpacing()),  # type: ignore[arg-type]
        labels=labels,
        lesions=lesions,
        notes=notes,
    )


CSV_COLUMNS = [
    "kind", "label", "name", "lesion", "n_lesions", "voxels", "volume_ml",
    "centroid_x_mm", "centroid_y_mm", "centroid_z_mm",
    "bbox_x0", "bbox_y0", "bbox_z0", "bbox_x1", "bbox_y1", "bbox_z1",
    "bbox_xmin_mm", "bbox_ymin_mm", "bbox_zmin_mm", "bbox_xmax_mm", "bbox_ymax_mm", "bbox_zmax_mm",
    "slice_first", "slice_last", "location",
]  # fmt: skip


def report_rows(report: LesionReport) -> list[dict]:
    """Flat rows (one per label, then one per lesion) for CSV: label rows leave lesion columns empty."""
    rows: list[dict] = []
    for v in report.labels:
        rows.append({"kind": "label", "label": v.label, "name": v.name, "n_lesions": v.n_lesions,
                     "voxels": v.n_voxels, "volume_ml": round(v.volume_ml, 6)})  # fmt: skip
    for les in report.lesions:
        (x0, y0, z0), (x1, y1, z1) = les.bbox_index
        lo_mm, hi_mm = les.bbox_mm
        row = {"kind": "lesion", "label": les.label, "name": les.name, "lesion": les.id,
               "voxels": les.n_voxels, "volume_ml": round(les.volume_ml, 6)}  # fmt: skip
        row.update(zip(("centroid_x_mm", "centroid_y_mm", "centroid_z_mm"), (round(c, 3) for c in les.centroid_mm)))
        row.update(zip(("bbox_x0", "bbox_y0", "bbox_z0", "bbox_x1", "bbox_y1", "bbox_z1"), (x0, y0, z0, x1, y1, z1)))
        row.update(zip(("bbox_xmin_mm", "bbox_ymin_mm", "bbox_zmin_mm"), (round(c, 3) for c in lo_mm)))
        row.update(zip(("bbox_xmax_mm", "bbox_ymax_mm", "bbox_zmax_mm"), (round(c, 3) for c in hi_mm)))
        row.update(slice_first=les.slices[0], slice_last=les.slices[1], location=les.location or "")
        rows.append(row)
    return [{c: r.get(c, "") for c in CSV_COLUMNS} for r in rows]


def report_csv(report: LesionReport) -> str:
    import csv
    import io

    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=CSV_COLUMNS, lineterminator="\n")
    w.writeheader()
    w.writerows(report_rows(report))
    return buf.getvalue()


def add_locations(report: LesionReport, label: sitk.Image, image_hu: sitk.Image, brain: Optional[sitk.Image] = None) -> LesionReport:
    """Fill each lesion's location, reason and evidence (`postprocess.location`) from the CT on the
    mask's grid; returns the same report."""
    from sdpm_cli.postprocess.location import classify_lesions

    if not report.lesions:
        return report
    found = {r.key: r for r in classify_lesions(label, image_hu, brain)}
    for les in report.lesions:
        r = found.get(les.key)
        if r is not None:
            les.location, les.location_reason, les.location_evidence = r.location, r.reason, dict(r.evidence)
    return report

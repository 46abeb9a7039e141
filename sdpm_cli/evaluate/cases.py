"""Finding the cases to evaluate and reading their label maps safely.

Two layouts are understood:
* prediction folder + truth folder, nnU-Net style: `case_0001.nii.gz` in both, matched by name;
* a dataset to segment first, read by `sdpm_cli.dataset` (the reader `sdpm train` uses too): an
  nnU-Net raw folder (imagesTs/labelsTs, or imagesTr/labelsTr with split "train") or a CSV.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import SimpleITK as sitk

from sdpm_cli.dataset import LABEL_SUFFIXES, SPLITS, case_name, label_files, read_dataset
from sdpm_cli.errors import InputRejected
from sdpm_cli.labels import CLASSES

__all__ = ["CasePair", "LABEL_SUFFIXES", "SPLITS", "case_name", "pair_folders", "dataset_cases", "grid_mismatch",
           "read_header", "check_same_grid", "read_labels"]

# Geometry tolerances: same rounding slack the ingest allows between slices (0.01 mm / 1e-4 cosines).
_TOL_MM = 1e-2
_TOL_DIR = 1e-4


@dataclass
class CasePair:
    case: str
    truth: Path
    pred: Optional[Path] = None  # folder mode: None means the prediction is missing
    image: Optional[Path] = None  # dataset mode: what to segment


def pair_folders(pred_dir: Path, truth_dir: Path) -> tuple[list[CasePair], list[str]]:
    """Match predictions to truths by case name.

    Returns the pairs (pred None where the prediction is missing) and the prediction cases that
    have no truth (reported, not scored).
    """
    truths = label_files(Path(truth_dir), "TRUTH_DIR")
    preds = label_files(Path(pred_dir), "PRED_DIR")
    if not truths:
        raise InputRejected(f"no label files ({', '.join(LABEL_SUFFIXES)}) in TRUTH_DIR {truth_dir}")
    pairs = [CasePair(case=c, truth=t, pred=preds.get(c)) for c, t in truths.items()]
    extra = sorted(set(preds) - set(truths))
    return pairs, extra


def dataset_cases(data: Path, split: str = "test") -> list[CasePair]:
    """Image/label pairs of a dataset to segment first (sdpm_cli.dataset.read_dataset)."""
    return [CasePair(case=c.case, truth=c.label, image=c.image) for c in read_dataset(Path(data), split)]


def grid_mismatch(a: sitk.Image, b: sitk.Image) -> Optional[str]:
    """Why two images are not on the same voxel grid, or None when they are."""
    if a.GetDimension() != b.GetDimension() or a.GetSize() != b.GetSize():
        return f"size {tuple(a.GetSize())} vs {tuple(b.GetSize())}"
    if not np.allclose(a.GetSpacing(), b.GetSpacing(), atol=_TOL_MM, rtol=0):
        return f"spacing {_fmt(a.GetSpacing())} vs {_fmt(b.GetSpacing())} mm"
    if not np.allclose(a.GetOrigin(), b.GetOrigin(), atol=_TOL_MM, rtol=0):
        return f"origin {_fmt(a.GetOrigin())} vs {_fmt(b.GetOrigin())} mm"
    if not np.allclose(a.GetDirection(), b.GetDirection(), atol=_TOL_DIR, rtol=0):
        return "orientation differs"
    return None


def _fmt(v) -> str:
    return "(" + ", ".join(f"{x:g}" for x in v) + ")"


def read_header(path: Path, case: str, what: str) -> "_Geometry":
    """The geometry of an image file without reading its voxels (cheap checks before long work)."""
    r = sitk.ImageFileReader()
    r.SetFileName(str(path))
    try:
        r.ReadImageInformation()
    except RuntimeError as exc:
        raise InputRejected(f"case {case}: cannot read {what} {path.name}: {_last_line(exc)}") from None
    return _Geometry(r.GetSize(), r.GetSpacing(), r.GetOrigin(), r.GetDirection())


def _last_line(exc: Exception) -> str:
    lines = [ln.strip() for ln in str(exc).strip().splitlines() if ln.strip()]
    return lines[-1] if lines else type(exc).__name__


class _Geometry:
    """Duck-typed geometry holder (GetSize/GetSpacing/GetOrigin/GetDirection/GetDimension)."""

    def __init__(self, size, spacing, origin, direction):
        self._v = (tuple(size), tuple(spacing), tuple(origin), tuple(direction))

    def GetSize(self):  # noqa: N802 - mirrors SimpleITK
        return self._v[0]

    def GetSpacing(self):  # noqa: N802
        return self._v[1]

    def GetOrigin(self):  # noqa: N802
        return self._v[2]

    def GetDirection(self):  # noqa: N802
        return self._v[3]

    def GetDimension(self):  # noqa: N802
        return len(self._v[0])


def check_same_grid(pred, truth, case: str, what: str = "prediction") -> None:
    """Refuse (exit 3) when a prediction is not on its truth's voxel grid: scores would be meaningless."""
    why = grid_mismatch(pred, truth)
    if why:
        raise InputRejected(f"case {case}: {what} and truth are on different grids ({why})")


def read_labels(path: Path, case: str, what: str) -> sitk.Image:
    """Read a label map and refuse values other than 0 and the class labels."""
    try:
        img = sitk.ReadImage(str(path))
    except RuntimeError as exc:
        raise InputRejected(f"case {case}: cannot read {what} {path.name}: {_last_line(exc)}") from None
    if img.GetNumberOfComponentsPerPixel() != 1 or img.GetDimension() != 3:
        raise InputRejected(f"case {case}: {what} {path.name} is not a 3-D single-channel label map")
    arr = sitk.GetArrayViewFromImage(img)
    values = np.unique(arr)
    allowed = {0, *CLASSES}
    bad = [v for v in values.tolist() if v not in allowed]
    if bad:
        shown = ", ".join(f"{v:g}" for v in bad[:5])
        raise InputRejected(
            f"case {case}: {what} {path.name} holds values other than 0/{'/'.join(map(str, CLASSES))} ({shown})"
        )
    return sitk.Cast(img, sitk.sitkUInt8)

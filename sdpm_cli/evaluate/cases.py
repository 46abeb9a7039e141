"""Finding the cases to evaluate and reading their label maps safely.

Two layouts are understood:
* prediction folder + truth folder, nnU-Net style: `case_0001.nii.gz` in both, matched by name;
* a dataset to segment first: an nnU-Net raw folder (`imagesTs/case_0001_0000.nii.gz` with
  `labelsTs/case_0001.nii.gz`, or imagesTr/labelsTr with split "train") or a CSV of image,label pairs.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import SimpleITK as sitk

from sdpm_cli.errors import InputRejected, UsageError
from sdpm_cli.ingest.files import VOLUME_SUFFIXES
from sdpm_cli.labels import CLASSES

LABEL_SUFFIXES = VOLUME_SUFFIXES  # labels come in the same single-file formats as studies
SPLITS = {"test": ("imagesTs", "labelsTs"), "train": ("imagesTr", "labelsTr")}

# Geometry tolerances: same rounding slack the ingest allows between slices (0.01 mm / 1e-4 cosines).
_TOL_MM = 1e-2
_TOL_DIR = 1e-4


@dataclass
class CasePair:
    case: str
    truth: Path
    pred: Optional[Path] = None  # folder mode: None means the prediction is missing
    image: Optional[Path] = None  # dataset mode: what to segment


def case_name(path: Path) -> Optional[str]:
    """`case_0001.nii.gz` -> `case_0001`; None for files that are not label images."""
    for suf in LABEL_SUFFIXES:
        if path.name.endswith(suf) and len(path.name) > len(suf):
            return path.name[: -len(suf)]
    return None


def _label_files(folder: Path, what: str) -> dict[str, Path]:
    if not folder.is_dir():
        raise InputRejected(f"{what} is not a folder: {folder}")
    found: dict[str, Path] = {}
    for p in sorted(folder.iterdir()):
        name = case_name(p)
        if name is None or name.startswith("."):
            continue
        if name in found:
            raise InputRejected(f"{what} holds two files for case {name}: {found[name].name} and {p.name}")
        found[name] = p
    return found


def pair_folders(pred_dir: Path, truth_dir: Path) -> tuple[list[CasePair], list[str]]:
    """Match predictions to truths by case name.

    Returns the pairs (pred None where the prediction is missing) and the prediction cases that
    have no truth (reported, not scored).
    """
    truths = _label_files(Path(truth_dir), "TRUTH_DIR")
    preds = _label_files(Path(pred_dir), "PRED_DIR")
    if not truths:
        raise InputRejected(f"no label files ({', '.join(LABEL_SUFFIXES)}) in TRUTH_DIR {truth_dir}")
    pairs = [CasePair(case=c, truth=t, pred=preds.get(c)) for c, t in truths.items()]
    extra = sorted(set(preds) - set(truths))
    return pairs, extra


def _image_case(path: Path) -> Optional[str]:
    name = case_name(path)
    if name is None:
        return None
    # nnU-Net images carry a 4-digit channel suffix; CT has one channel, _0000
    if len(name) > 5 and name[-5] == "_" and name[-4:].isdigit():
        return name[:-5] if name.endswith("_0000") else None
    return name


def dataset_cases(data: Path, split: str = "test") -> list[CasePair]:
    """Image/label pairs from an nnU-Net raw folder or a CSV with `image` and `label` columns."""
    data = Path(data)
    if data.is_file():
        return _csv_cases(data)
    if not data.is_dir():
        raise InputRejected(f"--data does not exist: {data}")
    if split not in SPLITS:
        raise UsageError(f"unknown split '{split}' (use {' or '.join(SPLITS)})")
    img_name, lab_name = SPLITS[split]
    images_dir, labels_dir = data / img_name, data / lab_name
    if not images_dir.is_dir() or not labels_dir.is_dir():
        other = "train" if split == "test" else "test"
        raise InputRejected(
            f"{data} has no {img_name}/ and {lab_name}/ folders (nnU-Net raw layout; try --split {other})"
        )
    labels = _label_files(labels_dir, lab_name)
    pairs: list[CasePair] = []
    for p in sorted(images_dir.iterdir()):
        case = _image_case(p)
        if case is None:
            continue
        if case not in labels:
            raise InputRejected(f"case {case}: no label {case}.nii.gz in {labels_dir}")
        pairs.append(CasePair(case=case, truth=labels[case], image=p))
    if not pairs:
        raise InputRejected(f"no images (case_XXXX_0000.nii.gz) in {images_dir}")
    return pairs


def _csv_cases(path: Path) -> list[CasePair]:
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        cols = [c.strip().lower() for c in (reader.fieldnames or [])]
        if "image" not in cols or "label" not in cols:
            raise InputRejected(f"{path}: a CSV needs a header with 'image' and 'label' columns")
        rows = [{(k or "").strip().lower(): (v or "").strip() for k, v in r.items()} for r in reader]
    pairs: list[CasePair] = []
    seen: set[str] = set()
    for i, r in enumerate(rows, start=2):
        if not r.get("image") and not r.get("label"):
            continue
        image, label = path.parent / r["image"], path.parent / r["label"]
        case = r.get("case") or case_name(label) or label.name
        if case in seen:
            raise InputRejected(f"{path} line {i}: case {case} appears twice")
        seen.add(case)
        if not image.exists():
            raise InputRejected(f"{path} line {i}: image not found: {r['image']}")
        if not label.is_file():
            raise InputRejected(f"{path} line {i}: label not found: {r['label']}")
        pairs.append(CasePair(case=case, truth=label, image=image))
    if not pairs:
        raise InputRejected(f"{path} lists no cases")
    return pairs


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

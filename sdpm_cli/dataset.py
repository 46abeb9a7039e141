"""The one reader of labelled datasets, for `sdpm train` and `sdpm evaluate --data` alike.

Two layouts, read into one typed list of cases (so a dataset that trains also evaluates, and a
fault in it is named the same way by both commands):
* an nnU-Net raw folder: `imagesTr/case_0001_0000.nii.gz` with `labelsTr/case_0001.nii.gz` (split
  "train"), or imagesTs/labelsTs (split "test"); an image may also be a DICOM folder
  (`imagesTr/case_0001_0000/` or `imagesTr/case_0001/`); `dataset.json` is not needed;
* a CSV with `image` and `label` columns (optional `case`), paths relative to the CSV file.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from sdpm_cli.errors import InputRejected, UsageError
from sdpm_cli.ingest.files import VOLUME_SUFFIXES

LABEL_SUFFIXES = VOLUME_SUFFIXES  # labels come in the same single-file formats as studies
SPLITS = {"test": ("imagesTs", "labelsTs"), "train": ("imagesTr", "labelsTr")}


@dataclass(frozen=True)
class Case:
    """One labelled case: the image (a volume file or a DICOM folder) and its label map."""

    case: str
    image: Path
    label: Path


def case_name(path: Path) -> Optional[str]:
    """`case_0001.nii.gz` -> `case_0001`; None for files that are not label images."""
    for suf in LABEL_SUFFIXES:
        if path.name.endswith(suf) and len(path.name) > len(suf):
            return path.name[: -len(suf)]
    return None


def image_case(path: Path) -> Optional[str]:
    """nnU-Net image name -> case (`case_0001_0000.nii.gz` -> `case_0001`; CT has one channel, so any
    other channel is not an image of ours); a DICOM folder `case_0001_0000/` or `case_0001/` too."""
    if path.is_dir():
        if path.name.startswith("."):
            return None
        return path.name[:-5] if path.name.endswith("_0000") else path.name
    name = case_name(path)
    if name is None:
        return None
    if len(name) > 5 and name[-5] == "_" and name[-4:].isdigit():
        return name[:-5] if name.endswith("_0000") else None
    return name


def label_files(folder: Path, what: str) -> dict[str, Path]:
    """Case name -> label file in `folder`; two files for one case are refused (which one is meant?)."""
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


def read_dataset(data: Path, split: str = "test", *, what: str = "--data", other_split_hint: bool = True) -> list[Case]:
    """The cases of an nnU-Net raw folder (`split` picks imagesTs/labelsTs or imagesTr/labelsTr) or of a
    CSV file. `what` names the argument in messages; `other_split_hint` suggests the other --split."""
    data = Path(data)
    if data.is_file():
        return read_csv(data)
    if not data.is_dir():
        raise InputRejected(f"{what} does not exist: {data}")
    if split not in SPLITS:
        raise UsageError(f"unknown split '{split}' (use {' or '.join(SPLITS)})")
    img_name, lab_name = SPLITS[split]
    images_dir, labels_dir = data / img_name, data / lab_name
    if not images_dir.is_dir() or not labels_dir.is_dir():
        hint = f"; try --split {'train' if split == 'test' else 'test'}" if other_split_hint else ""
        raise InputRejected(f"{data} has no {img_name}/ and {lab_name}/ folders (nnU-Net raw layout) and is not a CSV{hint}")
    labels = label_files(labels_dir, lab_name)
    cases: list[Case] = []
    for p in sorted(images_dir.iterdir()):
        case = image_case(p)
        if case is None:
            continue
        if case not in labels:
            raise InputRejected(f"case {case}: no label {case}.nii.gz in {labels_dir}")
        cases.append(Case(case, p, labels[case]))
    if not cases:
        raise InputRejected(f"no images (case_XXXX_0000.nii.gz or DICOM folders) in {images_dir}")
    return cases


def read_csv(path: Path) -> list[Case]:
    """Cases listed in a CSV (`image`, `label`, optional `case` columns; paths relative to the CSV)."""
    path = Path(path)
    if path.suffix.lower() != ".csv":
        raise InputRejected(f"{path} is neither an nnU-Net raw folder nor a .csv of image,label pairs")
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        cols = [c.strip().lower() for c in (reader.fieldnames or [])]
        if "image" not in cols or "label" not in cols:
            raise InputRejected(f"{path}: a CSV needs a header with 'image' and 'label' columns")
        rows = [{(k or "").strip().lower(): (v or "").strip() for k, v in r.items()} for r in reader]
    cases: list[Case] = []
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
        cases.append(Case(case, image, label))
    if not cases:
        raise InputRejected(f"{path} lists no cases")
    return cases

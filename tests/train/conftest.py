"""Tiny CT phantoms in nnU-Net raw layout, built at test time (no committed binaries)."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

SPACING = (5.0, 5.0, 5.0)  # x, y, z mm: 24 slices x 5 mm = 120 mm head-feet (above the ingest minimum)
SHAPE = (24, 32, 40)  # z, y, x


def phantom(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A head (air, skull ring, brain at 35 HU) with an infarct (18 HU) and a hemorrhage (70 HU) blob."""
    rng = np.random.default_rng(seed)
    z, y, x = np.mgrid[: SHAPE[0], : SHAPE[1], : SHAPE[2]].astype(np.float32)
    cz, cy, cx = (SHAPE[0] - 1) / 2, (SHAPE[1] - 1) / 2, (SHAPE[2] - 1) / 2
    r = np.sqrt(((z - cz) / 13.0) ** 2 + ((y - cy) / 13.5) ** 2 + ((x - cx) / 17.0) ** 2)
    hu = np.full(SHAPE, -1000.0, np.float32)
    hu[r < 1.0] = 1000.0  # skull
    brain = r < 0.78
    hu[brain] = 35.0
    lab = np.zeros(SHAPE, np.uint8)
    for value, hu_val in ((1, 18.0), (2, 70.0)):
        c = (rng.uniform(cz - 4, cz + 4), rng.uniform(cy - 4, cy + 4), rng.uniform(cx - 6, cx + 6) + (-5 if value == 1 else 5))
        rad = rng.uniform(2.0, 3.0)
        blob = brain & (((z - c[0]) / 1.5) ** 2 + ((y - c[1]) / rad) ** 2 + ((x - c[2]) / rad) ** 2 < 1.0)
        hu[blob] = hu_val
        lab[blob] = value
    hu += rng.normal(0, 3.0, SHAPE).astype(np.float32)
    return np.clip(np.rint(hu), -1024, 3000).astype(np.int16), lab


def _image(arr: np.ndarray) -> sitk.Image:
    img = sitk.GetImageFromArray(arr)
    img.SetSpacing(SPACING)
    img.SetOrigin((-100.0, -80.0, -60.0))
    return img


def write_dataset(root: Path, n_cases: int = 2, seed: int = 0) -> Path:
    (root / "imagesTr").mkdir(parents=True)
    (root / "labelsTr").mkdir()
    for i in range(n_cases):
        hu, lab = phantom(seed + i)
        sitk.WriteImage(_image(hu), str(root / "imagesTr" / f"case_{i:04d}_0000.nii.gz"))
        sitk.WriteImage(_image(lab), str(root / "labelsTr" / f"case_{i:04d}.nii.gz"))
    return root


@pytest.fixture
def tiny_dataset(tmp_path) -> Path:
    return write_dataset(tmp_path / "Dataset900_Tiny", n_cases=2)


@pytest.fixture
def tiny_csv(tmp_path) -> Path:
    root = write_dataset(tmp_path / "csvdata", n_cases=2, seed=5)
    path = root / "pairs.csv"
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["image", "label"])
        for i in range(2):
            w.writerow([f"imagesTr/case_{i:04d}_0000.nii.gz", f"labelsTr/case_{i:04d}.nii.gz"])
    return path

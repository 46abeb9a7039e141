"""Lesion classes shared by every stage (label values in masks, channels in the network), and the two
facts about a label image every stage needs: the volume of one voxel, and its voxels as integers."""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk

from sdpm_cli.errors import InputRejected

CLASSES: dict[int, str] = {1: "infarct", 2: "hemorrhage"}
# Where a lesion lies, as the lesion table, the SR and the synthetic truth name it (the label map stays 0/1/2)
LOCATION_CLASSES = ("intra-axial", "intraventricular", "extra-axial", "subarachnoid")
NUM_CLASSES = len(CLASSES)
# Which way a lesion departs from the tissue it replaces on NCCT: an acute infarct is darker
# (hypodense), acute blood brighter (hyperdense). Criteria that compare a lesion with reference
# tissue (postprocess.symmetry) read the contrast in this direction.
LESION_CONTRAST_SIGN: dict[int, float] = {1: -1.0, 2: +1.0}

# What one lesion is: voxels touching by a face, edge or corner (26-connectivity). Every stage that
# counts, filters, scores or locates lesions uses this one structure, so they count the same lesions.
CONNECTIVITY_26 = np.ones((3, 3, 3), dtype=bool)
CONNECTIVITY_26.setflags(write=False)


def voxel_ml(spacing_xyz) -> float:
    """Volume of one voxel of an orthogonal grid in mL (1 mL = 1000 mm^3)."""
    return float(np.prod([float(s) for s in spacing_xyz])) / 1000.0


def voxel_volume_ml(image: sitk.Image) -> float:
    """|det(direction . diag(spacing))| / 1000: the volume of one voxel of `image` in mL (equals
    `voxel_ml(spacing)` for the orthonormal directions the ingest accepts)."""
    n = image.GetDimension()
    d = np.reshape(image.GetDirection(), (n, n))
    return float(abs(np.linalg.det(d @ np.diag(image.GetSpacing())))) / 1000.0


def as_label_array(image: sitk.Image) -> tuple[np.ndarray, list[str]]:
    """The voxels of a label image as integers, or InputRejected with the reason it is not one.

    Floating-point images whose values are all whole numbers (a common way masks get saved) are
    accepted with a note; anything else non-integer is refused rather than guessed at.
    """
    notes: list[str] = []
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise InputRejected(
            f"mask is not a label image ({image.GetNumberOfComponentsPerPixel()} values per voxel; expected 1)"
        )
    if image.GetDimension() != 3:
        raise InputRejected(f"mask is not a 3-D label image ({image.GetDimension()}-D)")
    arr = sitk.GetArrayViewFromImage(image)
    if np.issubdtype(arr.dtype, np.floating):
        finite = np.isfinite(arr)
        if not finite.all() or not np.array_equal(arr, np.round(arr)):
            raise InputRejected("mask is not a label image (non-integer values)")
        notes.append("mask is stored as floating point with whole-number values; read as labels")
        arr = arr.astype(np.int64)
    elif not np.issubdtype(arr.dtype, np.integer):
        raise InputRejected(f"mask is not a label image (pixel type {image.GetPixelIDTypeAsString()})")
    if arr.size and arr.min() < 0:
        raise InputRejected("mask is not a label image (negative values)")
    return arr, notes

"""Pure geometry of a slice stack from ImagePositionPatient / ImageOrientationPatient.

Order and spacing come from positions projected on the slice normal, never from InstanceNumber,
file names, SliceThickness or SpacingBetweenSlices; tilt comes from where the slice origins lie,
never from the GantryDetectorTilt tag (vendors fill it inconsistently).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np


def orientation_fault(iop: Sequence[float], max_skew_deg: float = 0.1, length_tol: float = 0.01) -> str:
    """Why ImageOrientationPatient cannot define an image plane ('' when it can).

    ITK would silently coerce non-orthogonal cosines to orthogonal ones (moving pixels) and turns a zero
    vector into NaN spacing; both are refused here instead.
    """
    v = np.asarray(iop, dtype=float).ravel()
    if v.size != 6 or not np.all(np.isfinite(v)):
        return "ImageOrientationPatient is not six finite numbers (NaN or missing values)"
    nr, nc = float(np.linalg.norm(v[:3])), float(np.linalg.norm(v[3:]))
    if nr < 1e-6 or nc < 1e-6:
        return "ImageOrientationPatient has a zero row or column direction (all zeros?)"
    if abs(nr - 1.0) > length_tol or abs(nc - 1.0) > length_tol:
        return f"ImageOrientationPatient directions are not unit vectors (lengths {nr:.3f} and {nc:.3f})"
    ang = math.degrees(math.acos(max(-1.0, min(1.0, float(v[:3] @ v[3:]) / (nr * nc)))))
    if abs(ang - 90.0) > max_skew_deg:
        return f"ImageOrientationPatient row and column directions are not orthogonal ({ang:.2f} degrees apart)"
    return ""


def plane_axes(iop: Sequence[float]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Unit row direction (along a row, +column index), column direction (+row index) and normal."""
    r = np.asarray(iop[:3], dtype=float)
    c = np.asarray(iop[3:6], dtype=float)
    r = r / np.linalg.norm(r)
    c = c / np.linalg.norm(c)
    n = np.cross(r, c)
    return r, c, n / np.linalg.norm(n)


def angle_deg(a: np.ndarray, b: np.ndarray) -> float:
    cosv = abs(float(np.dot(a, b))) / (np.linalg.norm(a) * np.linalg.norm(b))
    return math.degrees(math.acos(min(1.0, cosv)))


def orientation_name(iop: Sequence[float], max_axial_angle_deg: float = 45.0) -> str:
    """'axial', 'coronal' or 'sagittal' from the normal's dominant patient axis."""
    _, _, n = plane_axes(iop)
    if angle_deg(n, np.array([0.0, 0.0, 1.0])) <= max_axial_angle_deg:
        return "axial"
    return "coronal" if abs(n[1]) >= abs(n[0]) else "sagittal"


def same_orientation(a: Sequence[float], b: Sequence[float], tol: float = 1e-3) -> bool:
    return bool(np.allclose(np.asarray(a, float), np.asarray(b, float), atol=tol))


@dataclass
class StackGeometry:
    """How a set of slices of one orientation lies in space (all lengths in mm)."""

    order: list[int]  # indices into the input, sorted by position along the normal (ascending)
    positions: np.ndarray  # projection of each sorted IPP on the normal
    duplicates: list[tuple[int, int]]  # (kept, other) input indices sharing one position
    unique: list[int]  # sorted input indices with duplicates removed (first of each position kept)
    steps: np.ndarray  # differences between consecutive unique positions
    spacing: float  # median step (0 for one slice)
    even: bool
    gaps: list[tuple[float, float, float]] = field(default_factory=list)  # (from, to, step) that break evenness
    tilt_deg: float = 0.0  # angle between the stacking direction and the slice normal
    shear_px: float = 0.0  # largest in-plane offset of a slice origin from the untilted stack, in pixels
    tilted: bool = False

    @property
    def coverage_mm(self) -> float:
        """Head-feet extent the slices cover: first to last centre plus one slice."""
        if len(self.unique) < 2:
            return 0.0
        return float(self.positions_unique[-1] - self.positions_unique[0] + self.spacing)

    @property
    def positions_unique(self) -> np.ndarray:
        idx = [self.order.index(u) for u in self.unique]
        return self.positions[idx]


def stack_geometry(
    ipps: Sequence[Sequence[float]],
    iop: Sequence[float],
    pixel_spacing: Sequence[float],
    *,
    duplicate_mm: float = 0.01,
    tol_mm: float = 0.1,
    tol_rel: float = 0.05,
    max_shear_px: float = 0.1,
) -> StackGeometry:
    """Sort slices along the normal, find duplicates, uneven steps and tilt (shear)."""
    r, c, n = plane_axes(iop)
    P = np.asarray(ipps, dtype=float).reshape(-1, 3)
    proj = P @ n
    order = [int(i) for i in np.argsort(proj, kind="stable")]
    pos = proj[order]
    unique = [order[0]]
    duplicates: list[tuple[int, int]] = []
    for k in range(1, len(order)):
        if pos[k] - proj[unique[-1]] <= duplicate_mm:
            duplicates.append((unique[-1], order[k]))
        else:
            unique.append(order[k])
    upos = proj[unique]
    steps = np.diff(upos)
    spacing = float(np.median(steps)) if len(steps) else 0.0
    tol = max(tol_mm, tol_rel * spacing)
    gaps = [(float(upos[k]), float(upos[k + 1]), float(steps[k])) for k in range(len(steps)) if abs(steps[k] - spacing) > tol]
    # Tilt: where the slice origins sit in-plane relative to the first one.
    tilt = 0.0
    shear_px = 0.0
    if len(unique) >= 2:
        d = P[unique[-1]] - P[unique[0]]
        tilt = angle_deg(d, n)
        rel = P[unique] - P[unique[0]]
        inplane = np.stack([rel @ r, rel @ c], axis=1)  # mm along row / column directions
        ps = np.asarray(pixel_spacing, float)  # (between rows -> along c, between columns -> along r)
        shear_px = float(np.max(np.abs(inplane / np.array([ps[1], ps[0]]))))
    return StackGeometry(
        order=order,
        positions=pos,
        duplicates=duplicates,
        unique=unique,
        steps=steps,
        spacing=spacing,
        even=not gaps,
        gaps=gaps,
        tilt_deg=tilt,
        shear_px=shear_px,
        tilted=shear_px > max_shear_px,
    )


def direction_matrix(iop: Sequence[float]) -> np.ndarray:
    """3x3 matrix whose columns are the row, column and normal directions (SimpleITK's convention)."""
    r, c, n = plane_axes(iop)
    return np.stack([r, c, n], axis=1)


def physical_points(origin: np.ndarray, direction: np.ndarray, spacing: Sequence[float], shape_yx: tuple[int, int]) -> np.ndarray:
    """Physical (x, y, z) of every pixel centre of one slice, shape [rows, cols, 3]."""
    rows, cols = shape_yx
    jj, ii = np.meshgrid(np.arange(rows), np.arange(cols), indexing="ij")  # jj: row index, ii: column index
    return (
        np.asarray(origin, float)[None, None, :]
        + (ii * spacing[0])[..., None] * direction[:, 0][None, None, :]
        + (jj * spacing[1])[..., None] * direction[:, 1][None, None, :]
    )


def to_continuous_index(points: np.ndarray, origin, direction, spacing) -> np.ndarray:
    """Inverse of the image geometry for many points: physical (..., 3) -> continuous index (x, y, z)."""
    D = np.asarray(direction, float).reshape(3, 3)
    rel = np.asarray(points, float) - np.asarray(origin, float)
    return (rel @ np.linalg.inv(D).T) / np.asarray(spacing, float)

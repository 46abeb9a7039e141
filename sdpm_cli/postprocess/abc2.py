"""ABC/2: the bedside volume estimate clinicians use for hemorrhage, computed on a lesion mask.

Reported beside the segmented volume so a reader can sanity-check the mask against the number a
neuroradiologist would measure with calipers:
  A = largest in-plane diameter on the slice with the largest lesion area,
  B = largest diameter perpendicular to A on that slice,
  C = number of slices with lesion x slice spacing;
  ABC/2 approximates the ellipsoid volume (pi/6)·A·B·C with pi taken as 3.

Diameters are caliper (Feret) widths of the union of the lesion's pixel squares, so a lesion one
pixel wide measures one pixel spacing, and a W x H rectangle gives A = its diagonal and
B = 2WH/A, i.e. ABC/2 = W·H·C exactly for a box.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np


def _pixel_corners(mask_yx: np.ndarray, sx: float, sy: float) -> np.ndarray:
    """Physical (x, y) corners of the lesion's pixel squares (only those on the hull matter)."""
    ys, xs = np.nonzero(mask_yx)
    offsets = np.array([[-0.5, -0.5], [0.5, -0.5], [-0.5, 0.5], [0.5, 0.5]])
    pts = (np.stack([xs, ys], axis=1)[:, None, :] + offsets[None]).reshape(-1, 2)
    pts = np.unique(pts, axis=0) * np.array([sx, sy])
    if len(pts) > 8:
        from scipy.spatial import ConvexHull

        pts = pts[ConvexHull(pts).vertices]
    return pts


def diameters_mm(mask_yx: np.ndarray, spacing_xy: Sequence[float]) -> tuple[float, float]:
    """(A, B) in mm on one slice: the largest caliper diameter and the width perpendicular to it."""
    sx, sy = float(spacing_xy[0]), float(spacing_xy[1])
    pts = _pixel_corners(np.asarray(mask_yx, dtype=bool), sx, sy)
    if len(pts) == 0:
        return 0.0, 0.0
    diff = pts[:, None, :] - pts[None, :, :]
    d2 = np.einsum("ijk,ijk->ij", diff, diff)
    i, j = np.unravel_index(int(np.argmax(d2)), d2.shape)
    a = float(np.sqrt(d2[i, j]))
    u = (pts[j] - pts[i]) / a
    perp = np.array([-u[1], u[0]])
    proj = pts @ perp
    return a, float(proj.max() - proj.min())


def abc2_ml(lesion_mask_zyx: np.ndarray, spacing_xyz: Sequence[float]) -> float:
    """ABC/2 volume estimate in mL of one lesion ([z, y, x] boolean mask; spacing (x, y, z) mm)."""
    m = np.asarray(lesion_mask_zyx, dtype=bool)
    if m.ndim != 3:
        raise ValueError("abc2_ml needs a 3-D [z, y, x] mask")
    area = m.reshape(m.shape[0], -1).sum(axis=1)
    if not area.any():
        return 0.0
    k = int(np.argmax(area))  # first slice of largest area
    a_mm, b_mm = diameters_mm(m[k], spacing_xyz[:2])
    c_mm = int(np.count_nonzero(area)) * float(spacing_xyz[2])
    return a_mm * b_mm * c_mm / 2.0 / 1000.0

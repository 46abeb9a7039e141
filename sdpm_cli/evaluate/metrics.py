"""Segmentation and volumetry metrics as pure numpy functions.

Conventions (the same everywhere in `sdpm evaluate`, and written into summary.json):

* Masks are boolean numpy arrays in SimpleITK index order `[z, y, x]`; spacings are given in
  SimpleITK order `(x, y, z)` in mm (what `image.GetSpacing()` returns), so callers never reorder.
* Empty cases are decided explicitly, because lesion-free scans are common in stroke work:
  - Dice / IoU: both empty -> 1.0 (perfect agreement on absence); one empty -> 0.0.
  - HD95: both empty -> 0.0; exactly one empty -> NaN (a distance to nothing is undefined).
    Aggregates average HD95 over the cases where it is defined and report how many were not;
    the missed or hallucinated lesion is still penalised by Dice and by lesion detection.
  - VDP (volume difference percentage) averages |Vp - Vt| / Vt over cases with Vt > 0 only;
    lesion-free truths enter the false-positive volume instead (`fp_volume_ml`).
* Lesions are 26-connected components (any voxel sharing a face, edge or corner joins a lesion).
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
from scipy import ndimage

from sdpm_cli.labels import CONNECTIVITY_26, voxel_ml

# 26-connectivity: a lesion that touches diagonally across slices is one lesion.

Spacing = Sequence[float]


def _pair(pred: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    p = np.asarray(pred, dtype=bool)
    t = np.asarray(truth, dtype=bool)
    if p.shape != t.shape:
        raise ValueError(f"prediction shape {p.shape} differs from truth shape {t.shape}")
    return p, t


def _zyx(spacing_xyz: Spacing, ndim: int) -> tuple[float, ...]:
    s = tuple(float(v) for v in spacing_xyz)
    if len(s) != ndim:
        raise ValueError(f"spacing has {len(s)} values for a {ndim}-D mask")
    return s[::-1]


def dice(pred: np.ndarray, truth: np.ndarray) -> float:
    """Dice = 2|P∩T| / (|P|+|T|); 1.0 when both are empty."""
    p, t = _pair(pred, truth)
    denom = int(p.sum()) + int(t.sum())
    if denom == 0:
        return 1.0
    return 2.0 * int(np.logical_and(p, t).sum()) / denom


def iou(pred: np.ndarray, truth: np.ndarray) -> float:
    """Jaccard index |P∩T| / |P∪T|; 1.0 when both are empty."""
    p, t = _pair(pred, truth)
    union = int(np.logical_or(p, t).sum())
    if union == 0:
        return 1.0
    return int(np.logical_and(p, t).sum()) / union


def surface(mask: np.ndarray) -> np.ndarray:
    """Voxels of the mask with a face-neighbour outside it (the array edge counts as outside)."""
    m = np.asarray(mask, dtype=bool)
    eroded = ndimage.binary_erosion(m, structure=ndimage.generate_binary_structure(m.ndim, 1), border_value=0)
    return m & ~eroded


def _bbox(mask: np.ndarray, margin: int) -> tuple[slice, ...]:
    idx = np.nonzero(mask)
    return tuple(slice(max(int(i.min()) - margin, 0), min(int(i.max()) + margin + 1, n)) for i, n in zip(idx, mask.shape))


def _directed_surface_distances(src: np.ndarray, dst: np.ndarray, spacing_zyx: tuple[float, ...]) -> np.ndarray:
    # distance (mm) from every surface voxel of src to the nearest surface voxel of dst
    dt = ndimage.distance_transform_edt(~dst, sampling=spacing_zyx)
    return dt[src]


def hd95(pred: np.ndarray, truth: np.ndarray, spacing_xyz: Spacing) -> float:
    """95th-percentile Hausdorff distance in mm between the two surfaces.

    HD95 = max(P95 of distances pred-surface -> truth-surface, P95 of truth-surface -> pred-surface),
    the symmetric definition used by MONAI. Anisotropic spacing is honoured by the distance
    transform. Both empty -> 0.0; exactly one empty -> NaN.
    """
    p, t = _pair(pred, truth)
    has_p, has_t = bool(p.any()), bool(t.any())
    if not has_p and not has_t:
        return 0.0
    if has_p != has_t:
        return math.nan
    sp = _zyx(spacing_xyz, p.ndim)
    # work in the bounding box of both masks plus one voxel: every surface voxel lies inside it, so
    # distances are unchanged, and a small lesion no longer costs a whole-volume distance transform
    box = _bbox(p | t, margin=1)
    p, t = p[box], t[box]
    sp_surf, st_surf = surface(p), surface(t)
    d_pt = _directed_surface_distances(sp_surf, st_surf, sp)
    d_tp = _directed_surface_distances(st_surf, sp_surf, sp)
    return float(max(np.percentile(d_pt, 95), np.percentile(d_tp, 95)))


def volume_ml(mask: np.ndarray, spacing_xyz: Spacing) -> float:
    """Mask volume in mL."""
    m = np.asarray(mask, dtype=bool)
    _zyx(spacing_xyz, m.ndim)  # checks the length
    return int(m.sum()) * voxel_ml(spacing_xyz)


def _vectors(vp: Sequence[float], vt: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    a = np.asarray(vp, dtype=float).ravel()
    b = np.asarray(vt, dtype=float).ravel()
    if a.shape != b.shape:
        raise ValueError(f"{a.size} predicted volumes for {b.size} true volumes")
    return a, b


def pearson_vc(vp: Sequence[float], vt: Sequence[float]) -> float:
    """Volume correlation: Pearson r between predicted and true volumes over cases.

    NaN with fewer than two cases or when either set of volumes is constant (r is undefined).
    """
    a, b = _vectors(vp, vt)
    if a.size < 2:
        return math.nan
    da, db = a - a.mean(), b - b.mean()
    denom = math.sqrt(float(np.sum(da * da)) * float(np.sum(db * db)))
    if denom == 0.0:
        return math.nan
    return float(np.sum(da * db)) / denom


def vdp(vp: Sequence[float], vt: Sequence[float]) -> float:
    """Volume difference percentage: mean of 100·|Vp − Vt| / Vt over cases with Vt > 0.

    Lesion-free truths (Vt = 0) are left out (the ratio is undefined); NaN if no case has Vt > 0.
    """
    a, b = _vectors(vp, vt)
    keep = b > 0
    if not keep.any():
        return math.nan
    return float(np.mean(100.0 * np.abs(a[keep] - b[keep]) / b[keep]))


def bland_altman(vp: Sequence[float], vt: Sequence[float]) -> tuple[float, float, float]:
    """Bland–Altman bias and 95% limits of agreement of Vp − Vt: (bias, bias − 1.96·sd, bias + 1.96·sd).

    sd is the sample standard deviation (n − 1); with fewer than two cases the limits are NaN.
    """
    a, b = _vectors(vp, vt)
    if a.size == 0:
        return math.nan, math.nan, math.nan
    d = a - b
    bias = float(d.mean())
    if d.size < 2:
        return bias, math.nan, math.nan
    sd = float(d.std(ddof=1))
    return bias, bias - 1.96 * sd, bias + 1.96 * sd


def components(mask: np.ndarray) -> tuple[np.ndarray, int]:
    """26-connected components: (label array, count)."""
    m = np.asarray(mask, dtype=bool)
    structure = CONNECTIVITY_26 if m.ndim == 3 else np.ones((3,) * m.ndim, dtype=bool)
    lab, n = ndimage.label(m, structure=structure)
    return lab, int(n)


def lesion_detection(pred: np.ndarray, truth: np.ndarray) -> tuple[int, int, int]:
    """Lesion-wise counts (tp, fn, fp).

    A true lesion is detected (tp) if any predicted voxel overlaps it, else missed (fn); a
    predicted lesion that overlaps no true lesion is a false positive (fp).
    """
    p, t = _pair(pred, truth)
    t_lab, n_t = components(t)
    p_lab, n_p = components(p)
    hit_t = np.unique(t_lab[p & (t_lab > 0)])
    hit_p = np.unique(p_lab[t & (p_lab > 0)])
    tp = int(hit_t.size)
    return tp, n_t - tp, n_p - int(hit_p.size)


def safe_ratio(num: float, den: float) -> float:
    """num / den, NaN when den is 0 (e.g. sensitivity with no true lesions)."""
    return float(num) / float(den) if den else math.nan

"""Classical CT brain extraction: HU thresholds, morphology, hole filling, connected components.

No network: the mask must work on any head CT (and on the synthetic phantoms) and be explainable.
It covers the intracranial contents (parenchyma, CSF, ventricles and any hemorrhage inside the skull)
and excludes skull, scalp, head rest and air. Slice by slice:

1. skull = HU > bone_hu (optionally dilated by skull_dilate_mm; 0 by default, because on the
   synthetic heads any dilation cost 2-3 % of the visible brain at the inner table);
2. the skull is closed with a skull_close_mm disk (bridges small gaps and foramina) and its interior
   filled: intracranial = filled(closed skull) minus the skull itself;
3. intracranial soft tissue = intracranial and soft_min_hu <= HU <= soft_max_hu;
then the 3-D connected components (6-connected) of at least min_component_ml (always the largest),
and holes filled per slice (calcifications, choroid plexus).
Slices whose skull ring is open wider than the closing (low skull base, vertex caps) get no brain,
with one exception: a head cut by the reconstruction circle or the image border (head off-centre, or a
small field of view) has its ring closed along that edge, and the result is kept when it recovers
clearly more brain than the plain method (so an intact skull with only the scalp on the edge is not
changed).
"""

from __future__ import annotations

from typing import Optional

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from sdpm_cli.preprocess.plan import PreprocessPlan
from sdpm_cli.threads import map_slices


def _disk(r_mm: float, spacing_yx: tuple[float, float]) -> np.ndarray:
    ry, rx = (int(np.floor(r_mm / s)) for s in spacing_yx)
    dy, dx = np.mgrid[-ry : ry + 1, -rx : rx + 1]
    return (dy * spacing_yx[0]) ** 2 + (dx * spacing_yx[1]) ** 2 <= r_mm**2


def _dilate(mask: np.ndarray, r_mm: float, spacing_yx: tuple[float, float]) -> np.ndarray:
    """Dilate a 2-D mask by a disk of r_mm: a footprint when small, else the Euclidean distance
    transform (cost independent of the radius)."""
    if r_mm <= 0 or not mask.any():
        return mask.copy()
    if r_mm / min(spacing_yx) <= 3.0:
        return ndimage.binary_dilation(mask, structure=_disk(r_mm, spacing_yx))
    return ndimage.distance_transform_edt(~mask, sampling=spacing_yx) <= r_mm


def _erode(mask: np.ndarray, r_mm: float, spacing_yx: tuple[float, float]) -> np.ndarray:
    if r_mm <= 0 or not mask.any():
        return mask.copy()
    # pad so that the image border does not count as background (a head cut by the FOV stays closed)
    pad = np.pad(mask, 1, mode="edge")
    return (ndimage.distance_transform_edt(pad, sampling=spacing_yx) > r_mm)[1:-1, 1:-1]


_CROSS = ndimage.generate_binary_structure(2, 1)


def fill_holes(mask: np.ndarray) -> np.ndarray:
    """`scipy.ndimage.binary_fill_holes` of a 2-D mask, exactly (holes: background pieces, 4-connected,
    that do not touch the border), by one labelling instead of scipy's iterated dilation (the fills
    of a 32-slice 512 x 512 study's brain mask about 3x faster, the whole mask about 1.3x)."""
    mask = np.asarray(mask, dtype=bool)
    lab, n = ndimage.label(~mask, structure=_CROSS)
    if n == 0:
        return mask.copy()
    outside = np.zeros(n + 1, dtype=bool)
    for edge in (lab[0], lab[-1], lab[:, 0], lab[:, -1]):
        outside[edge] = True
    outside[0] = True  # label 0 is the mask itself
    return ~outside[lab] | mask


def _bbox2d(mask: np.ndarray, margin: int, shape: tuple[int, int]) -> Optional[tuple[slice, slice]]:
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(mask.any(axis=0))
    return (
        slice(max(0, rows[0] - margin), min(shape[0], rows[-1] + margin + 1)),
        slice(max(0, cols[0] - margin), min(shape[1], cols[-1] + margin + 1)),
    )


def field_edge(shape: tuple[int, int]) -> np.ndarray:
    """The rim of the reconstruction circle (inscribed in the matrix) and the image border; bool [Y, X]."""
    ny, nx = shape
    yy, xx = np.ogrid[:ny, :nx]
    r = np.sqrt((yy - (ny - 1) / 2.0) ** 2 + (xx - (nx - 1) / 2.0) ** 2)
    rad = min(ny, nx) / 2.0
    edge = (r >= rad - 2.0) & (r <= rad)
    edge[:2, :] = edge[-2:, :] = True
    edge[:, :2] = edge[:, -2:] = True
    return edge


def intracranial_slice(hu: np.ndarray, spacing_yx: tuple[float, float], plan: PreprocessPlan,
                       edge: Optional[np.ndarray] = None) -> np.ndarray:
    """Soft tissue inside the (closed) skull ring of one axial slice; bool [Y, X].

    `edge` (field_edge): where the head meets it, it may close a ring the field of view cut open.
    """
    bone = hu > plan.bone_hu
    out = _enclosed(hu, bone, spacing_yx, plan)
    # only where there is a skull to close (>= 2 cm^2 of bone on the slice): no skull, no brain
    if edge is not None and bone.sum() * spacing_yx[0] * spacing_yx[1] >= 200.0:
        cut = edge & (hu > -300.0)
        if cut.any():
            rescued = _enclosed(hu, bone | cut, spacing_yx, plan) & ~cut
            if rescued.sum() > 1.3 * out.sum() + 200:
                return rescued
    return out


def _enclosed(hu: np.ndarray, bone: np.ndarray, spacing_yx: tuple[float, float], plan: PreprocessPlan) -> np.ndarray:
    out = np.zeros(hu.shape, dtype=bool)
    margin = int(np.ceil((plan.skull_close_mm + plan.skull_dilate_mm) / min(spacing_yx))) + 2
    box = _bbox2d(bone, margin, hu.shape)
    if box is None:
        return out
    bone = bone[box]
    skull = _dilate(bone, plan.skull_dilate_mm, spacing_yx)
    closed = _erode(_dilate(skull, plan.skull_close_mm, spacing_yx), plan.skull_close_mm, spacing_yx) | skull
    # the closing only decides what is enclosed; subtracting the skull itself (not the closed skull)
    # keeps narrow brain pockets between bony ridges (orbital roofs, sphenoid wings)
    inside = fill_holes(closed) & ~skull
    h = hu[box]
    out[box] = inside & (h >= plan.soft_min_hu) & (h <= plan.soft_max_hu)
    return out


def brain_mask_array(hu: np.ndarray, spacing_xyz: tuple[float, float, float], plan: Optional[PreprocessPlan] = None) -> np.ndarray:
    """The brain mask of a [Z, Y, X] HU array (uint8)."""
    plan = plan or PreprocessPlan()
    spacing_yx = (float(spacing_xyz[1]), float(spacing_xyz[0]))
    mask = np.zeros(hu.shape, dtype=bool)
    edge = field_edge(hu.shape[1:])
    for z, m in enumerate(map_slices(lambda z: intracranial_slice(hu[z], spacing_yx, plan, edge), range(hu.shape[0]))):
        mask[z] = m
    if not mask.any():
        return mask.astype(np.uint8)
    # 6-connectivity: a thin diagonal bridge does not join regions. uint16 labels keep thin-slice
    # studies (hundreds of 512 x 512 slices) small; more than 65535 pieces falls back to int32.
    try:
        lab, n = ndimage.label(mask, output=np.uint16)
    except RuntimeError:
        lab, n = ndimage.label(mask)
    if n > 1:
        # keep the largest piece and every piece of at least min_component_ml: the posterior fossa can
        # be cut off from the cerebrum by the skull base on thick slices, and must not be lost
        sizes = np.bincount(lab.ravel())
        sizes[0] = 0
        voxel_ml = float(np.prod(spacing_xyz)) / 1000.0
        keep = sizes * voxel_ml >= plan.min_component_ml
        keep[int(np.argmax(sizes))] = True
        keep[0] = False
        mask = keep[lab]
    del lab
    zs = np.flatnonzero(mask.any(axis=(1, 2)))
    for z, m in zip(zs, map_slices(lambda z: fill_holes(mask[z]), zs)):
        mask[z] = m
    return mask.astype(np.uint8)


def brain_mask(image_hu: sitk.Image, plan: Optional[PreprocessPlan] = None) -> sitk.Image:
    """uint8 intracranial mask on the image's own grid (see the module docstring for the method)."""
    hu = sitk.GetArrayViewFromImage(image_hu)
    out = sitk.GetImageFromArray(brain_mask_array(hu, image_hu.GetSpacing(), plan))
    out.CopyInformation(image_hu)
    return out

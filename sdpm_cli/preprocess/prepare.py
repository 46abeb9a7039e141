"""Native CT -> model input (`prepare`) and model outputs -> native grid (the inverse).

Memory stays small: the native HU volume is read once as float32 only inside the cropped window the
model grid covers; masks are uint8; per-class float arrays are made one class at a time.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Optional, Union

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from sdpm_cli.errors import InputRejected
from sdpm_cli.preprocess.brainmask import brain_mask_array
from sdpm_cli.preprocess.grid import Canon, ModelGrid, native_slices, to_model_array, to_native_array
from sdpm_cli.preprocess.orientation import ORIENTATIONS, OrientationCheck, check_image
from sdpm_cli.preprocess.plan import PreprocessPlan
from sdpm_cli.preprocess.symmetry import Midline, midline, mirror_image, plane_lines
from sdpm_cli.preprocess.window import apply_window, undo_window

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Slabs:
    """A thin series read as slabs: every `k` consecutive source slices are one model slice (the last
    slab may hold fewer). `reduce` averages source slices into slabs; `expand` gives every source
    slice its slab's value, so a mask lands on every source slice of the study."""

    k: int
    n_source: int
    # the source grid's geometry (origin, spacing, direction): outputs are stamped with it
    source_geometry: tuple = ()

    @classmethod
    def of(cls, image: sitk.Image, k: int) -> "Slabs":
        return cls(k, int(image.GetSize()[2]), (image.GetOrigin(), image.GetSpacing(), image.GetDirection()))

    def set_source_geometry(self, image: sitk.Image) -> sitk.Image:
        origin, spacing, direction = self.source_geometry
        image.SetOrigin(origin)
        image.SetSpacing(spacing)
        image.SetDirection(direction)
        return image

    @property
    def n_slabs(self) -> int:
        return -(-self.n_source // self.k)

    def reduce(self, arr: np.ndarray, axis: int = 0) -> np.ndarray:
        arr = np.moveaxis(np.asarray(arr, dtype=np.float32), axis, 0)
        out = np.stack([arr[i * self.k : (i + 1) * self.k].mean(axis=0) for i in range(self.n_slabs)])
        return np.moveaxis(out, 0, axis)

    def expand(self, arr: np.ndarray, axis: int = 0) -> np.ndarray:
        return np.take(arr, np.arange(self.n_source) // self.k, axis=axis)


class NativeProbs:
    """Model-grid probabilities [C, Z, size, size] read as float32 [C, Z, Y, X] on the native grid
    (the source slices of a thin series), made on first read: `a[c][z0:z1, ys, xs]` resamples only
    the model slices behind source slices z0:z1 (z maps to z, or to its slab), each once, so the
    report's per-lesion lookups cost their own slices instead of every class at 512 x 512 (1.9 s for
    a 32-slice study on 2 cores; 543 MB for 259 thin slices x 2 classes). The values are the ones
    `probs_to_native` gives, times `inside` (a native bool [Z, Y, X] brain mask) where one is given;
    `np.asarray(a)` makes the whole array (for a probability NIfTI)."""

    def __init__(self, probs_model: np.ndarray, prepared: "GridLike", inside: Optional[np.ndarray] = None) -> None:
        self._m = np.asarray(probs_model)
        if self._m.ndim != 4:
            raise ValueError(f"expected [C, Z, size, size] probabilities, got shape {self._m.shape}")
        self._prepared, self._grid = prepared, _grid(prepared)
        self._slabs = prepared.slabs if isinstance(prepared, Prepared) else None
        n = self._grid.native_shape[0] if self._slabs is None else self._slabs.n_source
        self.shape = (self._m.shape[0], n) + tuple(self._grid.native_shape[1:])
        if inside is not None and np.shape(inside) != self.shape[1:]:
            raise ValueError(f"brain mask shape {np.shape(inside)} does not match the native grid {self.shape[1:]}")
        self._inside = inside
        self.dtype, self.ndim = np.dtype(np.float32), 4
        self._cache: dict[tuple[int, int], np.ndarray] = {}

    def __getitem__(self, c: int) -> "_NativeClass":
        return _NativeClass(self, int(c))

    def source_slices(self, c: int, zs: np.ndarray) -> np.ndarray:
        """float32 [len(zs), Y, X]: class c on these source slices."""
        zs = np.asarray(zs, dtype=int)
        gz = zs if self._slabs is None else zs // self._slabs.k
        missing = sorted({int(z) for z in gz} - {z for (cc, z) in self._cache if cc == c})
        if missing:
            part = native_slices(np.ascontiguousarray(self._m[c], dtype=np.float32), self._grid, missing, order=1)
            self._cache.update({(c, z): part[i] for i, z in enumerate(missing)})
        out = np.stack([self._cache[(c, int(z))] for z in gz]) if len(gz) else np.zeros((0,) + self.shape[2:], np.float32)
        if self._inside is not None:
            out *= self._inside[zs]
        return out

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        out = probs_to_native(self._m, self._prepared)
        if self._inside is not None:
            out *= self._inside[None]
        return out if dtype is None else out.astype(dtype)


class _NativeClass:
    def __init__(self, owner: NativeProbs, c: int) -> None:
        self._owner, self._c = owner, c
        self.shape = owner.shape[1:]

    def __getitem__(self, key) -> np.ndarray:
        key = key if isinstance(key, tuple) else (key,)
        zs = np.arange(self.shape[0])[key[0]]
        vals = self._owner.source_slices(self._c, np.atleast_1d(zs))
        return vals[(0,) + tuple(key[1:])] if np.ndim(zs) == 0 else vals[(slice(None),) + tuple(key[1:])]

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        return self[:] if dtype is None else self[:].astype(dtype)


def slab_image(image: sitk.Image, k: int) -> sitk.Image:
    """The HU mean of every k consecutive slices, on a grid of k x the slice spacing whose first
    plane sits at the centre of the first k source slices."""
    arr = sitk.GetArrayViewFromImage(image)
    slabs = Slabs.of(image, k)
    out = sitk.GetImageFromArray(slabs.reduce(arr))
    out.SetDirection(image.GetDirection())
    out.SetOrigin(image.TransformContinuousIndexToPhysicalPoint((0.0, 0.0, (k - 1) / 2.0)))
    sx, sy, sz = image.GetSpacing()
    out.SetSpacing((sx, sy, sz * k))
    return out


@dataclass
class Prepared:
    """Model input for one study, and the geometry to put results back on its native grid."""

    x: np.ndarray  # float32 [Z, size, size] in [-1, 1]; outside the brain = -1
    brain: np.ndarray  # uint8 [Z, size, size]
    grid: ModelGrid
    brain_slices: np.ndarray  # int z indices that contain brain (the model can skip the rest)
    plan: PreprocessPlan
    brain_volume_ml: float = 0.0  # native-grid brain mask volume (a QC figure)
    warnings: list[str] = field(default_factory=list)
    slabs: Optional[Slabs] = None  # thin series read as slabs (grid.native_* are then the slab grid)
    brain_native: Optional[np.ndarray] = field(default=None, repr=False)  # uint8 [Z, Y, X] on grid.native_*
    # float32 [Z, size, size]: x reflected across the head's mid-sagittal plane (plan.mirror_channel)
    mirror: Optional[np.ndarray] = field(default=None, repr=False)
    midline: Optional[Midline] = None  # the study's mid-sagittal line on the model grid, where it was fitted
    orientation: Optional[OrientationCheck] = None  # the anatomy's verdict on the header (None: not checked)

    def condition(self, idx) -> Optional[np.ndarray]:
        """float32 [B, K, size, size]: the network's conditioning channels on model slices `idx`
        (None when the plan asks for none): the mirror image first, then the neighbouring slices."""
        if self.plan.condition_channels == 0:
            return None
        idx = np.atleast_1d(np.asarray(idx, dtype=np.int64))
        parts = []
        if self.plan.mirror_channel:
            if self.mirror is None:
                raise ValueError("the plan asks for a mirror channel but none was prepared")
            parts.append(self.mirror[idx][:, None].astype(np.float32, copy=False))
        if self.plan.context_slices:
            parts.append(context_stack(self.x, idx, self.plan.context_slices))
        return parts[0] if len(parts) == 1 else np.concatenate(parts, axis=1)

    def set_source_geometry(self, image: sitk.Image) -> sitk.Image:
        """Stamp the source grid's geometry (what every output is written on) on a source-shape image."""
        return self.slabs.set_source_geometry(image) if self.slabs is not None else self.grid.set_native_geometry(image)

    @property
    def model_dz_mm(self) -> float:
        """Thickness a model slice stands for (the slab thickness for a thin series)."""
        return float(self.grid.native_spacing[2])


def context_offsets(k: int) -> list[int]:
    """Slice offsets of the context channels, in channel order: -k .. -1, then 1 .. k."""
    return [d for d in range(-k, k + 1) if d != 0]


def context_stack(x: np.ndarray, idx, k: int) -> np.ndarray:
    """float32 [B, 2k, H, W]: for each model slice in `idx`, the slices at `context_offsets(k)` from it
    in x [Z, H, W], the first or last slice repeated past either end of the volume (one rule for
    training and inference: `Prepared.condition` and the training cases both call it)."""
    idx = np.atleast_1d(np.asarray(idx, dtype=np.int64))
    near = np.clip(idx[:, None] + np.asarray(context_offsets(k), dtype=np.int64)[None, :], 0, x.shape[0] - 1)
    return np.asarray(x[near], dtype=np.float32)


GridLike = Union[Prepared, ModelGrid]


def _grid(p: GridLike) -> ModelGrid:
    return p.grid if isinstance(p, Prepared) else p


def _check_image(image: sitk.Image) -> None:
    if image.GetDimension() != 3 or image.GetNumberOfComponentsPerPixel() != 1:
        raise InputRejected("expected a 3-D single-channel CT volume")
    if min(image.GetSize()) < 1:
        raise InputRejected("the CT volume is empty")


SHELL_MM = 5.0  # the painted skull's thickness: wider than the model grid's anti-aliasing reach
SHELL_HU = 1000.0  # cortical bone; anything above the window's top reads the same


def skull_where_air(hu: np.ndarray, brain: np.ndarray, spacing) -> np.ndarray:
    """A copy of `hu` [Z, Y, X] with a bone shell painted in-plane around `brain` where the image is air.

    Why: a skull-stripped volume has air right outside its brain; resampled to the model grid (with
    anti-aliasing), its edge pixels mix brain with air and look hypodense, which the network has
    only ever seen next to bone: measured on family C stripped, 2.8 mL more false infarct outside
    the patient's own finding per case than on the same heads with their skull (BENCHMARKS.md,
    "Skull-stripped input"). With bone painted where there was air, the edge mixes brain with bone,
    as in every head the model was trained on. Voxels that are not air (a user's brain mask on an
    ordinary CT: real CSF, skull) are left alone; the brain itself is never changed."""
    air = np.asarray(hu) < -500.0
    inside = np.asarray(brain) > 0
    if not air.any() or not inside.any():
        return hu
    r = max(1, int(round(SHELL_MM / float(min(spacing[0], spacing[1])))))
    ys, xs = np.flatnonzero(inside.any(axis=(0, 2))), np.flatnonzero(inside.any(axis=(0, 1)))
    box = (slice(None), slice(max(0, ys[0] - r - 1), ys[-1] + r + 2), slice(max(0, xs[0] - r - 1), xs[-1] + r + 2))
    cross = np.zeros((3, 3, 3), bool)
    cross[1] = ndimage.generate_binary_structure(2, 1)  # in-plane only: slices are thick
    shell = ndimage.binary_dilation(inside[box], cross, iterations=r) & air[box] & ~inside[box]
    out = np.array(hu, dtype=np.float32)
    out[box][shell] = SHELL_HU
    return out


def prepare(image_hu: sitk.Image, plan: PreprocessPlan | None = None, brain: np.ndarray | None = None,
            orientation: str = "anatomy") -> Prepared:
    """Brain mask, window, crop to the brain box and in-plane resample to the model grid.

    CT is clipped to the window first (so bone cannot bleed into the brain), smoothed with the
    anti-aliasing Gaussian when downsampling, then sampled linearly. The brain mask is carried over
    by area fraction (>= 0.5). A study with no intracranial region at all is rejected.
    `brain` (uint8 [Z, Y, X] on the image grid) replaces the skull-based mask: a user mask or the
    foreground of a skull-stripped volume. `orientation` "anatomy": a head whose anatomy lies at 90
    degrees to its header's orientation is shown to the network upright (preprocess.orientation; a
    warning says so; the outputs stay on the source grid); "header": the header is believed.
    """
    plan = plan or PreprocessPlan()
    if orientation not in ORIENTATIONS:
        raise ValueError(f"orientation must be one of {ORIENTATIONS}, got {orientation!r}")
    _check_image(image_hu)
    warnings: list[str] = []
    slabs = None
    k = plan.slab_factor(float(image_hu.GetSpacing()[2]))
    if k > 1 and image_hu.GetSize()[2] > 1:
        slabs = Slabs.of(image_hu, k)
        sz = image_hu.GetSpacing()[2]
        warnings.append(f"thin slices ({sz:.2f} mm) read as {sz * k:.1f} mm slabs of {k} slices (the model was "
                        "trained on 2.5-5 mm slices); the mask is given on every source slice")
        image_hu = slab_image(image_hu, k)
        if brain is not None:
            brain = (slabs.reduce(brain) >= 0.5).astype(np.uint8)
    hu = sitk.GetArrayViewFromImage(image_hu)
    spacing = image_hu.GetSpacing()
    brain_native = brain_mask_array(hu, spacing, plan) if brain is None else (np.asarray(brain) > 0).astype(np.uint8)
    n_brain = int(np.count_nonzero(brain_native))
    if n_brain == 0:
        raise InputRejected("no intracranial region found (is this a non-contrast head CT?)")
    if brain is not None:
        hu = skull_where_air(hu, brain_native, spacing)
    zs, ys, xs = (np.flatnonzero(brain_native.any(axis=a)) for a in ((1, 2), (0, 2), (0, 1)))
    centre = ((xs[0] + xs[-1]) / 2.0, (ys[0] + ys[-1]) / 2.0)
    canon, check = Canon.from_direction(image_hu.GetDirection()), None
    if orientation == "anatomy" and brain is None:  # a skull-stripped volume has no holder or scalp to judge
        check = check_image(image_hu, hu)
        canon = canon.turned(check.quarter_turns)
        if check.warning:
            warnings.append(check.warning)
    grid = ModelGrid.centred(image_hu, centre, plan.size, plan.spacing_mm, canon=canon)
    box_mm = ((xs[-1] - xs[0] + 1) * spacing[0], (ys[-1] - ys[0] + 1) * spacing[1])
    if max(box_mm) > grid.extent_mm():
        warnings.append(
            f"brain box {box_mm[0]:.0f} x {box_mm[1]:.0f} mm exceeds the model field of view "
            f"{grid.extent_mm():.0f} mm: the grid is centred on the brain and its outer edge is not segmented"
        )

    x = to_model_array(hu, grid, order=1, smooth=True, edge="nearest", clip=plan.window)
    apply_window(x, plan.window_level, plan.window_width, out=x)
    brain = (to_model_array(brain_native, grid, order=1, smooth=True) >= 0.5).astype(np.uint8)
    x[brain == 0] = -1.0
    brain_slices = np.flatnonzero(brain.any(axis=(1, 2)))
    mirror, line = None, None
    if plan.mirror_channel:
        hu_model = undo_window(x, plan.window_level, plan.window_width)
        line = midline(hu_model, brain, (plan.spacing_mm, plan.spacing_mm))
        lines = plane_lines(hu_model, brain, (plan.spacing_mm, plan.spacing_mm), line)
        mirror = mirror_image(x, brain, lines)
        if lines is None:
            warnings.append("no mid-sagittal plane could be fitted: the model sees no mirror image")
    log.debug("brain %d native voxels, %d model slices, box %.0fx%.0f mm", n_brain, len(brain_slices), *box_mm)
    voxel_ml = abs(np.linalg.det(np.reshape(image_hu.GetDirection(), (3, 3)))) * float(np.prod(spacing)) / 1000.0
    return Prepared(
        x=x,
        brain=brain,
        grid=grid,
        brain_slices=brain_slices,
        plan=plan,
        brain_volume_ml=n_brain * voxel_ml,
        warnings=warnings,
        slabs=slabs,
        brain_native=brain_native,
        mirror=mirror,
        midline=line,
        orientation=check,
    )


def label_to_model(label: sitk.Image, prepared: GridLike) -> np.ndarray:
    """A native label map (0 background, 1, 2, ...) on the model grid, uint8 [Z, size, size].

    Majority by area: each label's fraction of a model pixel is estimated (anti-aliasing Gaussian +
    linear sampling) and the largest fraction, background included, wins. So a training target keeps
    the lesion area that the image shows, rather than whatever single native pixel nearest sampling hits.
    """
    grid = _grid(prepared)
    slabs = prepared.slabs if isinstance(prepared, Prepared) else None
    arr = sitk.GetArrayViewFromImage(label)
    want = grid.native_shape if slabs is None else (slabs.n_source,) + grid.native_shape[1:]
    if arr.shape != want:
        raise InputRejected(f"label size {label.GetSize()} does not match the image size {want[::-1]}")
    values = [int(v) for v in np.unique(arr) if v != 0]
    best = np.zeros(grid.model_shape, dtype=np.float32)
    out = np.zeros(grid.model_shape, dtype=np.uint8)
    remaining = np.ones(grid.model_shape, dtype=np.float32)  # background fraction
    for v in values:
        native = (arr == v).view(np.uint8) if slabs is None else slabs.reduce(arr == v)  # a slab's fraction
        frac = to_model_array(native, grid, order=1, smooth=True)
        remaining -= frac
        win = frac > best
        best[win] = frac[win]
        out[win] = v
    out[remaining >= best] = 0
    return out


def to_native(labels_model: np.ndarray, prepared: GridLike) -> sitk.Image:
    """A model-grid label map (uint8 [Z, size, size]) as a uint8 image on the native grid (nearest)."""
    grid = _grid(prepared)
    arr = to_native_array(np.ascontiguousarray(labels_model, dtype=np.uint8), grid, order=0)
    if isinstance(prepared, Prepared) and prepared.slabs is not None:
        return prepared.slabs.set_source_geometry(sitk.GetImageFromArray(prepared.slabs.expand(arr)))
    return grid.set_native_geometry(sitk.GetImageFromArray(arr))


def probs_to_native(probs_model: np.ndarray, prepared: GridLike, sparse: bool = False, expand: bool = True) -> np.ndarray:
    """Per-class probabilities [C, Z, size, size] -> float32 [C, Z, Y, X] on the native grid (linear).

    One class at a time; the result is the only full-size float array (about 63 MB per class for
    512 x 512 x 60 slices) and 0 outside the model grid. `sparse`: the input is mostly zero (masks),
    so only slices holding a value are resampled (same result, a fraction of the time). `expand`
    False: a thin series' result stays on its slab grid (expand later with `prepared.slabs.expand`).
    """
    grid = _grid(prepared)
    probs_model = np.asarray(probs_model)
    if probs_model.ndim != 4:
        raise ValueError(f"expected [C, Z, size, size] probabilities, got shape {probs_model.shape}")
    slabs = prepared.slabs if isinstance(prepared, Prepared) else None
    out = np.zeros((probs_model.shape[0],) + grid.native_shape, dtype=np.float32)
    for c in range(probs_model.shape[0]):
        # sparse (masks): only the slices holding a value (z maps to z, so nothing else changes)
        zs = np.flatnonzero(np.asarray(probs_model[c]).reshape(probs_model.shape[1], -1).any(axis=1)) if sparse else None
        to_native_array(np.ascontiguousarray(probs_model[c], dtype=np.float32), grid, order=1, out=out[c], slices=zs)
    return out if slabs is None or not expand else slabs.expand(out, axis=1)


def labels_from_probs(probs_native: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """uint8 [Z, Y, X]: class c+1 with the highest probability where that probability >= threshold.

    Slice by slice so the int64 argmax never spans the whole volume.
    """
    probs_native = np.asarray(probs_native)
    C, Z = probs_native.shape[:2]
    out = np.zeros(probs_native.shape[1:], dtype=np.uint8)
    for z in range(Z):
        p = probs_native[:, z]
        best = np.argmax(p, axis=0)
        keep = np.take_along_axis(p, best[None], axis=0)[0] >= threshold
        out[z] = np.where(keep, best + 1, 0)
    return out

"""The model grid: a crop + in-plane resampling of the native image, and its exact inverse.

The model grid keeps the acquired slices (no resampling along z). In-plane it is `size x size`
pixels of `spacing_mm`, with the native image's own row/column directions, so the mapping from
model pixel (i, j) to native continuous index is separable and affine:

    x_native = offset_x + i * scale_x        y_native = offset_y + j * scale_y      z unchanged

with scale = spacing_mm / native spacing. `ModelGrid` stores exactly these numbers plus the native
geometry, so forward (native -> model) and inverse (model -> native) sample the same physical
points.

The sampled array is then put in the **display orientation** every model was trained on (rows run
anterior -> posterior, columns patient right -> left, as a standard axial DICOM stores them) by a
transpose and/or flips of its two in-plane axes (`Canon`, chosen from the native direction). They
are exact and undone exactly on the way back, so a volume stored any other way (a NIfTI written
bottom-up, a series stored transposed) reaches the network as the heads it was validated on, and
its mask still lines up voxel for voxel with the source. `model_reference` gives the result's
physical geometry as a SimpleITK image.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Optional

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from sdpm_cli.threads import map_slices


@dataclass(frozen=True)
class Canon:
    """The in-plane transpose / flips that take an array sampled along the native axes into the display
    orientation (model rows along patient posterior, columns along patient left). Applied in this order:
    transpose, then flip the rows, then flip the columns."""

    transpose: bool = False
    flip_rows: bool = False
    flip_cols: bool = False

    @classmethod
    def from_direction(cls, direction) -> "Canon":
        """From a SimpleITK direction (row-major 3 x 3, column c = index axis c in LPS mm): the native
        axis closest to left-right becomes the columns, the one closest to front-back the rows."""
        D = np.asarray(direction, dtype=np.float64).reshape(3, 3)
        swap = abs(D[0, 1]) + abs(D[1, 0]) > abs(D[0, 0]) + abs(D[1, 1])
        to_left, to_post = (D[0, 1], D[1, 0]) if swap else (D[0, 0], D[1, 1])  # native axes after transposing
        return cls(transpose=bool(swap), flip_rows=bool(to_post < 0), flip_cols=bool(to_left < 0))

    def turned(self, quarter_turns: int) -> "Canon":
        """This canon followed by `quarter_turns` counter-clockwise quarter turns of the result
        (`np.rot90(forward(a), k, axes=(-2, -1))`): the head shown upright when its header is wrong
        about it (preprocess.orientation). Still one transpose and two flips, so still exact."""
        k = int(quarter_turns) % 4
        probe = np.arange(6).reshape(2, 3)
        want = np.rot90(self.forward(probe), k, axes=(-2, -1))
        for t in (False, True):
            for fr in (False, True):
                for fc in (False, True):
                    c = Canon(t, fr, fc)
                    got = c.forward(probe)
                    if got.shape == want.shape and np.array_equal(got, want):
                        return c
        raise AssertionError("unreachable: the quarter turns of a transpose/flip are one")  # pragma: no cover

    @property
    def identity(self) -> bool:
        return not (self.transpose or self.flip_rows or self.flip_cols)

    def forward(self, a: np.ndarray) -> np.ndarray:
        """[..., rows, cols] sampled along the native axes -> display orientation (a view)."""
        if self.transpose:
            a = np.swapaxes(a, -2, -1)
        if self.flip_rows:
            a = a[..., ::-1, :]
        if self.flip_cols:
            a = a[..., ::-1]
        return a

    def inverse(self, a: np.ndarray) -> np.ndarray:
        """Display orientation -> along the native axes (a view); `inverse(forward(a))` is `a`."""
        if self.flip_cols:
            a = a[..., ::-1]
        if self.flip_rows:
            a = a[..., ::-1, :]
        if self.transpose:
            a = np.swapaxes(a, -2, -1)
        return a

    def sampled_index(self, ij: np.ndarray, size: int) -> np.ndarray:
        """Model continuous (i = column, j = row) [..., 2] -> the same point's (column, row) in the
        array as sampled along the native axes."""
        ij = np.array(ij, dtype=np.float64)
        i, j = ij[..., 0], ij[..., 1]
        i = size - 1 - i if self.flip_cols else i
        j = size - 1 - j if self.flip_rows else j
        return np.stack((j, i) if self.transpose else (i, j), axis=-1)

    def display_index(self, xy: np.ndarray, size: int) -> np.ndarray:
        """The inverse of `sampled_index`: (column, row) in the sampled array -> model (i, j)."""
        xy = np.array(xy, dtype=np.float64)
        i, j = (xy[..., 1], xy[..., 0]) if self.transpose else (xy[..., 0], xy[..., 1])
        i = size - 1 - i if self.flip_cols else i
        j = size - 1 - j if self.flip_rows else j
        return np.stack((i, j), axis=-1)


@dataclass
class ModelGrid:
    """Geometry of one study's model grid; everything the inverse needs, nothing else."""

    size: int
    spacing_mm: float
    offset: tuple[float, float]  # native continuous index (x, y) of model pixel (0, 0)
    scale: tuple[float, float]  # native pixels per model pixel along x and y
    native_size: tuple[int, int, int]  # (X, Y, Z) as SimpleITK reports it
    native_spacing: tuple[float, float, float]
    native_origin: tuple[float, float, float]
    native_direction: tuple[float, ...]
    canon: Canon = field(default_factory=Canon)  # native axes -> display orientation (exact)
    _reference: Optional[sitk.Image] = field(default=None, repr=False, compare=False)

    @classmethod
    def centred(cls, image: sitk.Image, centre_xy: tuple[float, float], size: int, spacing_mm: float,
                canon: Optional[Canon] = None) -> "ModelGrid":
        """A grid whose centre falls on `centre_xy` (native continuous index), offset rounded to whole
        native pixels so that a grid with the native spacing is an exact crop (rounded in the display
        orientation, so a file stored in another order samples the same physical points). `canon`:
        the display orientation (default: the header's, `Canon.from_direction`)."""
        sp = image.GetSpacing()
        scale = (spacing_mm / sp[0], spacing_mm / sp[1])
        half = (size - 1) / 2.0
        canon = canon if canon is not None else Canon.from_direction(image.GetDirection())
        reversed_xy = (canon.flip_rows, canon.flip_cols) if canon.transpose else (canon.flip_cols, canon.flip_rows)
        offset = []
        for c, s, n, rev in zip(centre_xy, scale, image.GetSize()[:2], reversed_xy):
            if rev:  # rounded in the reversed frame: the physical points a standard-order file would give
                offset.append(float((n - 1) - round((n - 1 - c) - half * s) - (size - 1) * s))
            else:
                offset.append(float(round(c - half * s)))
        return cls(
            size=int(size),
            spacing_mm=float(spacing_mm),
            offset=tuple(offset),  # type: ignore[arg-type]
            scale=scale,
            native_size=tuple(int(v) for v in image.GetSize()),  # type: ignore[arg-type]
            native_spacing=tuple(float(v) for v in sp),  # type: ignore[arg-type]
            native_origin=tuple(float(v) for v in image.GetOrigin()),  # type: ignore[arg-type]
            native_direction=tuple(float(v) for v in image.GetDirection()),
            canon=canon,
        )

    @property
    def n_slices(self) -> int:
        return self.native_size[2]

    @property
    def native_shape(self) -> tuple[int, int, int]:
        """Numpy shape [Z, Y, X] of native arrays."""
        X, Y, Z = self.native_size
        return (Z, Y, X)

    @property
    def model_shape(self) -> tuple[int, int, int]:
        return (self.n_slices, self.size, self.size)

    def set_native_geometry(self, image: sitk.Image) -> sitk.Image:
        """Stamp the native origin/spacing/direction onto an image built from a native-shape array."""
        image.SetOrigin(self.native_origin)
        image.SetSpacing(self.native_spacing)
        image.SetDirection(self.native_direction)
        return image

    @property
    def reference(self) -> sitk.Image:
        """An empty uint8 image with the native geometry (for CopyInformation / sitk.Resample)."""
        if self._reference is None:
            self._reference = self.set_native_geometry(sitk.Image(list(self.native_size), sitk.sitkUInt8))
        return self._reference

    def model_reference(self) -> sitk.Image:
        """An empty image with the model grid's physical geometry (z as acquired; in-plane axes the
        native ones transposed / reversed by `canon`)."""
        ref = sitk.Image([self.size, self.size, self.n_slices], sitk.sitkUInt8)
        D = np.asarray(self.native_direction, dtype=np.float64).reshape(3, 3)
        (x0, y0), (x1, y1), (x2, y2) = self.model_to_native_index([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
        cols = []
        for dx, dy in ((x1 - x0, y1 - y0), (x2 - x0, y2 - y0)):  # unit steps along model i and j
            n = np.array([dx / self.scale[0], dy / self.scale[1]])  # +-1 along one native axis
            cols.append(D[:, 0] * n[0] + D[:, 1] * n[1])
        ref.SetOrigin(self.reference.TransformContinuousIndexToPhysicalPoint((x0, y0, 0.0)))
        ref.SetSpacing((self.spacing_mm, self.spacing_mm, self.native_spacing[2]))
        ref.SetDirection(tuple(np.stack([cols[0], cols[1], D[:, 2]], axis=1).ravel()))
        return ref

    def model_to_native_index(self, ij: np.ndarray) -> np.ndarray:
        """Model continuous (i, j) = (column, row) -> native continuous (x, y); arrays of shape [..., 2]."""
        return np.asarray(self.offset) + self.canon.sampled_index(ij, self.size) * np.asarray(self.scale)

    def native_to_model_index(self, xy: np.ndarray) -> np.ndarray:
        xy = np.asarray(xy, dtype=np.float64)
        return self.canon.display_index((xy - np.asarray(self.offset)) / np.asarray(self.scale), self.size)

    def native_window(self, margin: float = 0.0) -> tuple[slice, slice]:
        """Native (y, x) index slices that hold every pixel the model grid samples (plus a margin)."""
        out = []
        for ax, n in ((1, self.native_size[1]), (0, self.native_size[0])):
            o, s = self.offset[ax], self.scale[ax]
            lo = max(0, int(math.floor(o - s - margin)))
            hi = min(n, int(math.ceil(o + self.size * s + margin)) + 1)
            out.append(slice(lo, max(lo, hi)))
        return out[0], out[1]

    def extent_mm(self) -> float:
        return self.size * self.spacing_mm

    def anti_alias_sigma(self) -> tuple[float, float]:
        """Gaussian sigma (native pixels, y and x) applied before downsampling: half the
        downsampling factor, so noise and partial volume average as in a real larger pixel."""
        return tuple(s / 2.0 if s > 1.0 else 0.0 for s in (self.scale[1], self.scale[0]))  # type: ignore[return-value]


def to_model_array(
    native: np.ndarray,
    grid: ModelGrid,
    *,
    order: int,
    smooth: bool = False,
    cval: float = 0.0,
    edge: str = "constant",
    clip: Optional[tuple[float, float]] = None,
    chunk: int = 16,
) -> np.ndarray:
    """Sample a native [Z, Y, X] array on the model grid ([Z, size, size]).

    order 1 = linear, 0 = nearest. `smooth` applies the anti-aliasing Gaussian first (for CT and
    label fractions when downsampling). Outside the native image: `cval` ("constant") or the edge
    value ("nearest"). `clip` bounds values before smoothing (CT: the window, so bone cannot bleed
    into the brain). Only the native window the grid covers is touched, so big images stay cheap.
    """
    if native.shape != grid.native_shape:
        raise ValueError(f"array shape {native.shape} does not match the native grid {grid.native_shape}")
    sig = grid.anti_alias_sigma() if smooth else (0.0, 0.0)
    margin = 4.0 * max(sig) + 2.0
    ys, xs = grid.native_window(margin)
    out = np.empty(grid.model_shape, dtype=np.float32)
    if ys.stop <= ys.start or xs.stop <= xs.start:
        out.fill(cval)
        return out
    def one_chunk(z0: int) -> None:  # z is never mixed: chunks bound the float32 working set and run side by side
        crop = np.array(native[z0 : z0 + chunk, ys, xs], dtype=np.float32)
        sampled = None if grid.canon.identity else np.empty((crop.shape[0], grid.size, grid.size), np.float32)
        if clip is not None:
            np.clip(crop, clip[0], clip[1], out=crop)
        if max(sig) > 0:
            ndimage.gaussian_filter(crop, sigma=(0.0, sig[0], sig[1]), mode="nearest", truncate=4.0, output=crop)
        ndimage.affine_transform(
            crop,
            np.array([1.0, grid.scale[1], grid.scale[0]]),
            offset=(0.0, grid.offset[1] - ys.start, grid.offset[0] - xs.start),
            output_shape=(crop.shape[0], grid.size, grid.size),
            output=out[z0 : z0 + chunk] if grid.canon.identity else sampled,
            order=order,
            mode="grid-constant" if edge == "constant" else edge,
            cval=cval,
            prefilter=False,
        )
        if not grid.canon.identity:
            out[z0 : z0 + chunk] = grid.canon.forward(sampled)

    map_slices(one_chunk, range(0, grid.n_slices, chunk))
    return out


def to_native_array(model: np.ndarray, grid: ModelGrid, *, order: int, out: Optional[np.ndarray] = None,
                    slices: Optional[np.ndarray] = None) -> np.ndarray:
    """Sample a model-grid [Z, size, size] array at every native pixel centre ([Z, Y, X]).

    Native pixels outside the model grid get 0. With order 1 the value fades to 0 over one model
    pixel past the grid's edge pixels (the grid is larger than the brain, so nothing is lost).
    `slices`: only these z are computed (the others are 0) - z maps to z, so this is exact and a
    sparse mask costs only its own slices. `out`: an array of ZEROS to write into (a fresh np.zeros,
    whose untouched pages cost nothing; filling it again cost 0.6 s per `union` study at 512 x 512).
    """
    if model.shape != grid.model_shape:
        raise ValueError(f"array shape {model.shape} does not match the model grid {grid.model_shape}")
    if out is None:
        out = np.zeros(grid.native_shape, dtype=model.dtype)
    ys, xs = grid.native_window()
    if ys.stop <= ys.start or xs.stop <= xs.start:
        return out
    sy, sx = grid.scale[1], grid.scale[0]
    if slices is not None:
        slices = np.asarray(slices, dtype=int)
        if len(slices) == 0:
            return out
        if len(slices) < grid.n_slices:
            out[slices] = native_slices(model, grid, slices, order=order, dtype=out.dtype)
            return out
    if not grid.canon.identity:  # back to the native axes (exact)
        model = np.ascontiguousarray(grid.canon.inverse(model))
    sub = out[:, ys, xs]
    ndimage.affine_transform(
        model,
        np.array([1.0, 1.0 / sy, 1.0 / sx]),
        offset=(0.0, (ys.start - grid.offset[1]) / sy, (xs.start - grid.offset[0]) / sx),
        output_shape=sub.shape,
        output=sub,
        order=order,
        mode="grid-constant",
        cval=0,
        prefilter=False,
    )
    return out


def native_slices(model: np.ndarray, grid: ModelGrid, slices, *, order: int, dtype=None) -> np.ndarray:
    """[len(slices), Y, X]: `to_native_array` of only these model slices (z maps to z, so the values
    are the ones the whole volume would give; a per-lesion lookup costs its own slices)."""
    slices = np.asarray(slices, dtype=int)
    part = np.zeros((len(slices),) + tuple(grid.native_shape[1:]), dtype=model.dtype if dtype is None else dtype)
    if len(slices) == 0:
        return part
    small = dataclasses.replace(grid, native_size=(grid.native_size[0], grid.native_size[1], len(slices)))
    return to_native_array(np.ascontiguousarray(model[slices]), small, order=order, out=part)

"""The head's mid-sagittal plane on the model grid, and the mirror image it gives the network.

A radiologist reads an acute infarct as tissue darker than the same tissue on the other side of the
head, and fresh blood as brighter: the mirror image carries the study's own grey-white values,
noise, beam hardening and atrophy. A small convolutional network cannot compare a pixel with one
15 cm away, so a model whose plan asks for it (`PreprocessPlan.mirror_channel`) gets the mirror
image as a second input channel, pixel-aligned with the first.

`midline` fits one in-plane reflection line per study (yaw: its angle; the mean left-right
position: its offset). A head rolled about its antero-posterior axis moves the mid-sagittal plane
sideways from slice to slice, linearly in z (the plane meets parallel axial planes in parallel
lines): `plane_lines` refits the offset on every slice with enough brain and fits a robust straight
line through them. Pure functions on arrays [Z, Y, X] with square in-plane voxels (reflections are
taken in voxel coordinates).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Optional

import numpy as np
from scipy import ndimage

_WINDOW = (0.0, 80.0)  # HU clipped to the brain window: bone and air do not steer the fit


@dataclass(frozen=True)
class Midline:
    """A reflection line in the slice plane, in voxel coordinates: through (cy, cx), along the unit
    direction (dy, dx) (anterior-posterior); `cost` is the mean |HU - mirrored HU| at the optimum."""

    cy: float
    cx: float
    dy: float
    dx: float
    cost: float

    def reflect(self, y: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Mirror images of in-plane voxel coordinates (float arrays)."""
        ry, rx = y - self.cy, x - self.cx
        t = ry * self.dy + rx * self.dx
        return self.cy + 2.0 * t * self.dy - ry, self.cx + 2.0 * t * self.dx - rx

    def shifted(self, offset: float) -> "Midline":
        """The parallel line `offset` voxels away along the normal (+x side when the line is vertical)."""
        return replace(self, cy=self.cy - offset * self.dx, cx=self.cx + offset * self.dy)


def _voxels_per_sample(fine: tuple[int, ...], coarse: tuple[int, ...]) -> tuple[float, ...]:
    """Input voxels per sample of `ndimage.zoom` along each axis (zoom maps the first and last samples
    of the input and the output onto each other)."""
    return tuple((n - 1) / max(k - 1, 1) for n, k in zip(fine, coarse))


def _reflection_cost(img: np.ndarray, msk: np.ndarray, yy: np.ndarray, xx: np.ndarray, line: Midline) -> float:
    ry, rx = line.reflect(yy, xx)
    mi = ndimage.map_coordinates(img, [ry, rx], order=1, mode="constant", cval=0.0)
    mm = ndimage.map_coordinates(msk, [ry, rx], order=1, mode="constant", cval=0.0)
    both = (msk > 0.5) & (mm > 0.5)
    if both.sum() < 20:
        return np.inf
    # intensity mismatch where both sides are brain, plus the shape mismatch (in window units)
    return float(np.abs(img - mi)[both].mean() + 40.0 * np.abs(msk - mm).mean() / max(msk.mean(), 1e-6))


def _fit_slices(brain: np.ndarray) -> np.ndarray:
    """The slices a study's midline is fitted on: those with at least half the largest brain area."""
    area = brain.reshape(brain.shape[0], -1).sum(1)
    return area >= 0.5 * area.max()


def long_axis(brain: np.ndarray, spacing_yx: tuple[float, float]) -> Optional[tuple[float, float]]:
    """(angle in degrees of the brain's long axis from the image's vertical axis, in [-90, 90); its
    elongation, the square root of the ratio of the brain's second moments along and across it),
    over the slices `midline` fits on; None without brain. The mid-sagittal plane of a head runs
    along its long axis (front to back), whatever a large lesion does to the reflection cost."""
    brain = np.asarray(brain, dtype=bool)
    if not brain.any():
        return None
    return _share_axis(brain[_fit_slices(brain)].mean(0), spacing_yx)


def _share_axis(b: np.ndarray, spacing_yx: tuple[float, float]) -> tuple[float, float]:
    """`principal_axis` of a per-pixel brain share [Y, X] (the fitted slices' mean mask), weighted by it."""
    yy, xx = np.nonzero(b)
    return principal_axis(yy * float(spacing_yx[0]), xx * float(spacing_yx[1]), b[yy, xx].astype(np.float64))


def fold_angle(deg):
    """An undirected line's angle (degrees, scalar or array) folded into [-90, 90)."""
    return (deg + 90.0) % 180.0 - 90.0


def principal_axis(y: np.ndarray, x: np.ndarray, w: Optional[np.ndarray] = None) -> tuple[float, float]:
    """(angle in degrees from the vertical (y) axis, in [-90, 90); sqrt of the larger to the smaller
    second moment) of points (y, x) in mm, weighted by `w`: a shape's long axis and how long it is
    for its width (`long_axis` here, the head outline in `preprocess.orientation`)."""
    my, mx = np.average(y, weights=w), np.average(x, weights=w)
    dy, dx = y - my, x - mx
    cyy, cxx, cxy = np.average(dy * dy, weights=w), np.average(dx * dx, weights=w), np.average(dy * dx, weights=w)
    vals, vecs = np.linalg.eigh(np.array([[cyy, cxy], [cxy, cxx]]))
    vy, vx = vecs[:, 1]  # the larger moment's direction, as (dy, dx)
    angle = float(fold_angle(np.degrees(np.arctan2(vx, vy))))
    return angle, float(np.sqrt(vals[1] / max(vals[0], 1e-9)))


# A brain at least this elongated has a long axis to search about (`midline`): the roundest of 91
# validation phantoms measured 1.06 (its long axis 34 degrees off its midline), every other one and
# every real slice 1.09 or more (benchmarks/accuracy/midline_angle.py)
MIN_ELONGATION = 1.08
AXIS_WINDOW_DEG = 45.0


def midline(hu: np.ndarray, brain: np.ndarray, spacing_yx: tuple[float, float], grid_mm: float = 2.0,
            max_shift_mm: float = 15.0, axis_window_deg: float = AXIS_WINDOW_DEG) -> Optional[Midline]:
    """The study's mid-sagittal line: the in-plane reflection that best maps the brain (and its
    windowed HU, averaged over the slices with at least half the largest brain area) onto itself.

    Searched over the angle and the shift perpendicular to it (+-`max_shift_mm` about the brain's
    centroid), coarse to fine, on a `grid_mm` grid; None where the study holds too little brain.
    The angle: within +-`axis_window_deg` of the brain's long axis (`long_axis`) where the brain is
    at least MIN_ELONGATION long for its width, every orientation otherwise (a head may lie rotated
    in its image: the CT-ICH slices of the fixtures lie at 90 degrees). A reflection across the
    left-right axis (front onto back) can fit as well as the true one - a large one-sided lesion or
    a round slice tips the cost - and lies 90 degrees off the long axis: with a search over every
    orientation it won on 2 of 91 validation phantoms and 3 of the 12 real slices (measured). The
    premise, as in `preprocess.orientation`: a head is longer front to back than side to side; a
    brain more than 1.08 times as wide as long (no adult head measured so far) would get a wrong line."""
    brain = np.asarray(brain, dtype=bool)
    if brain.reshape(brain.shape[0], -1).sum(1).max() < 200:
        return None
    use = _fit_slices(brain)
    share = brain[use].mean(0)  # float64: the long axis below is weighted by it
    b = share.astype(np.float32)
    h = np.where(brain[use], np.clip(np.asarray(hu, dtype=np.float32)[use], *_WINDOW), 0.0).sum(0)
    h = h / np.maximum(brain[use].sum(0), 1)
    f = (spacing_yx[0] / grid_mm, spacing_yx[1] / grid_mm)
    img = ndimage.zoom(h, f, order=1).astype(np.float32)
    msk = ndimage.zoom(b, f, order=1).astype(np.float32)
    yy, xx = np.mgrid[0:img.shape[0], 0:img.shape[1]].astype(np.float32)
    w = msk.sum()
    cy, cx = float((yy * msk).sum() / w), float((xx * msk).sum() / w)

    def line(angle: float, shift: float) -> Midline:
        a = np.deg2rad(angle)
        dy, dx = np.cos(a), np.sin(a)  # the vertical image axis rotated by `angle`
        return Midline(cy - shift * dx, cx + shift * dy, dy, dx, np.inf)  # shifted along the normal

    # the coarse angles: every 5 degrees (the same grid whatever the window), those within the window
    axis_deg, elongation = _share_axis(share, spacing_yx)  # the long axis of the slices fitted here
    coarse = np.arange(-90.0, 90.0 + 1e-6, 5.0)
    if elongation >= MIN_ELONGATION:
        coarse = coarse[np.abs(fold_angle(coarse - axis_deg)) <= axis_window_deg]
    best = (np.inf, 0.0, 0.0)
    smax = max_shift_mm / grid_mm
    for step_a, step_s, span_a, span_s in ((5.0, 2.0, None, smax), (1.0, 0.5, 5.0, 2.0), (0.25, 0.25, 1.0, 0.5)):
        a0, s0 = (0.0, 0.0) if np.isinf(best[0]) else best[1:]
        angles = coarse if span_a is None else np.arange(a0 - span_a, a0 + span_a + 1e-6, step_a)
        for a in angles:
            for s in np.arange(s0 - span_s, s0 + span_s + 1e-6, step_s):
                c = _reflection_cost(img, msk, yy, xx, line(a, s))
                if c < best[0]:
                    best = (c, float(a), float(s))
    if np.isinf(best[0]):
        return None
    m = line(best[1], best[2])
    sy, sx = _voxels_per_sample(h.shape, img.shape)  # back to the voxel grid of the input
    dy, dx = m.dy * sy, m.dx * sx
    n = float(np.hypot(dy, dx))
    return Midline(m.cy * sy, m.cx * sx, dy / n, dx / n, best[0])


def _slice_offset(img: np.ndarray, msk: np.ndarray, line: Midline, span: float, step: float) -> tuple[float, float]:
    """(offset, cost): the best shift (voxels, along the line's normal) of `line` on one slice,
    coarse (4 x step over +-span) then fine (step over +-4 x step)."""
    yy, xx = np.mgrid[0:img.shape[0], 0:img.shape[1]].astype(np.float32)
    best = (np.inf, 0.0)
    centre = 0.0
    for st, sp in ((step * 4, span), (step, step * 4)):
        for s in np.arange(centre - sp, centre + sp + 1e-6, st):
            c = _reflection_cost(img, msk, yy, xx, line.shifted(float(s)))
            if c < best[0]:
                best = (c, float(s))
        centre = best[1]
    return best[1], best[0]


def plane_lines(hu: np.ndarray, brain: np.ndarray, spacing_yx: tuple[float, float], line: Optional[Midline] = None,
                max_offset_mm: float = 12.0, min_area_share: float = 0.3, grid_mm: float = 2.5,
                max_fit_slices: int = 24) -> Optional[list[Midline]]:
    """One reflection line per slice [Z]: the study's `midline` (fitted here when not given) shifted
    by an offset linear in z, fitted (Theil-Sen: robust to slices the fit gets wrong, such as the
    skull base) to the best per-slice offsets (on a `grid_mm` grid, to 0.5 mm) of up to
    `max_fit_slices` evenly spaced slices holding at least `min_area_share` of the largest brain
    area. None where no midline can be fitted."""
    brain = np.asarray(brain, dtype=bool)
    line = line if line is not None else midline(hu, brain, spacing_yx)
    if line is None:
        return None
    Z = brain.shape[0]
    area = brain.reshape(Z, -1).sum(1)
    zs = np.flatnonzero(area >= max(200, min_area_share * area.max()))
    if len(zs) > max_fit_slices:
        zs = zs[np.linspace(0, len(zs) - 1, max_fit_slices).round().astype(int)]
    f = (spacing_yx[0] / grid_mm, spacing_yx[1] / grid_mm)
    coarse_shape = tuple(int(round(n * z)) for n, z in zip(brain.shape[1:], f))  # ndimage.zoom's output shape
    sy, sx = _voxels_per_sample(brain.shape[1:], coarse_shape)
    dy, dx = line.dy / sy, line.dx / sx
    norm = float(np.hypot(dy, dx))
    coarse = replace(line, cy=line.cy / sy, cx=line.cx / sx, dy=dy / norm, dx=dx / norm)
    offsets = []
    for z in zs:
        img = ndimage.zoom(np.where(brain[z], np.clip(np.asarray(hu[z], dtype=np.float32), *_WINDOW), 0.0), f, order=1)
        msk = ndimage.zoom(brain[z].astype(np.float32), f, order=1)
        off, cost = _slice_offset(img.astype(np.float32), msk, coarse, max_offset_mm / grid_mm, 0.5 / grid_mm)
        if np.isfinite(cost):
            offsets.append((float(z), off * sx))  # back to input voxels (square voxels: sx == sy)
    if len(offsets) >= 3:
        z_o, o = np.array(offsets).T
        i, j = np.triu_indices(len(z_o), 1)
        slope = float(np.median((o[j] - o[i]) / (z_o[j] - z_o[i])))
        icpt = float(np.median(o - slope * z_o))
    elif offsets:
        slope, icpt = 0.0, float(np.median([o for _, o in offsets]))
    else:
        slope, icpt = 0.0, 0.0
    return [line.shifted(icpt + slope * z) for z in range(Z)]


def mirror_image(x: np.ndarray, brain: np.ndarray, lines: Optional[list[Midline]], fill: float = -1.0) -> np.ndarray:
    """float32 [Z, Y, X]: each slice of `x` reflected across its line (linear interpolation), `fill`
    outside the brain of the slice itself and where the reflection leaves the grid. With no lines
    (no midline could be fitted) every pixel is `fill`: the network then sees no mirror evidence."""
    x = np.asarray(x, dtype=np.float32)
    out = np.full(x.shape, fill, dtype=np.float32)
    if lines is None:
        return out
    brain = np.asarray(brain, dtype=bool)
    yy, xx = np.mgrid[0:x.shape[1], 0:x.shape[2]].astype(np.float64)
    for z in np.flatnonzero(brain.reshape(brain.shape[0], -1).any(1)):
        ry, rx = lines[z].reflect(yy, xx)
        m = ndimage.map_coordinates(x[z], [ry, rx], order=1, mode="constant", cval=fill)
        out[z] = np.where(brain[z], m, fill)
    return out

"""Left-right symmetry: the head's mid-sagittal line and a lesion's contrast against its mirror image.

A radiologist reads an acute infarct as tissue darker than the same tissue on the other side: the
mirror image is the reference that carries the study's own grey-white values, noise, beam hardening
and atrophy. Symmetric structures (peripheral CSF in an atrophic head, the falx, the ventricles'
edges, the skull base's partial volume) have no contrast against their mirror, whatever their HU.

`midline` finds one in-plane reflection line per study (the slices of a head share it up to the
tilt the ingest corrects); `mirror_contrasts` compares each component's median HU with the median
HU of its mirror voxels inside the brain. Pure functions on arrays [Z, Y, X] with square in-plane
voxels (the reflection is taken in voxel coordinates).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Optional

import numpy as np
from scipy import ndimage

from sdpm_cli.labels import LESION_CONTRAST_SIGN

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


def _reflection_cost(img: np.ndarray, msk: np.ndarray, yy: np.ndarray, xx: np.ndarray, line: Midline) -> float:
    ry, rx = line.reflect(yy, xx)
    mi = ndimage.map_coordinates(img, [ry, rx], order=1, mode="constant", cval=0.0)
    mm = ndimage.map_coordinates(msk, [ry, rx], order=1, mode="constant", cval=0.0)
    both = (msk > 0.5) & (mm > 0.5)
    if both.sum() < 20:
        return np.inf
    # intensity mismatch where both sides are brain, plus the shape mismatch (in window units)
    return float(np.abs(img - mi)[both].mean() + 40.0 * np.abs(msk - mm).mean() / max(msk.mean(), 1e-6))


def midline(hu: np.ndarray, brain: np.ndarray, spacing_yx: tuple[float, float], grid_mm: float = 2.0,
            max_angle_deg: float = 45.0, max_shift_mm: float = 15.0) -> Optional[Midline]:
    """The study's mid-sagittal line: the in-plane reflection that best maps the brain (and its
    windowed HU, averaged over the slices with at least half the largest brain area) onto itself.

    Searched over the angle (+-`max_angle_deg` about the image's vertical axis) and the shift
    perpendicular to it (+-`max_shift_mm` about the brain's centroid), coarse to fine, on a
    `grid_mm` grid. None where the study holds too little brain to fit a line."""
    brain = np.asarray(brain, dtype=bool)
    area = brain.reshape(brain.shape[0], -1).sum(1)
    if area.max() < 200:
        return None
    use = area >= 0.5 * area.max()
    b = brain[use].mean(0).astype(np.float32)
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

    best = (np.inf, 0.0, 0.0)
    smax = max_shift_mm / grid_mm
    for step_a, step_s, span_a, span_s in ((5.0, 2.0, max_angle_deg, smax), (1.0, 0.5, 5.0, 2.0), (0.25, 0.25, 1.0, 0.5)):
        a0, s0 = (0.0, 0.0) if np.isinf(best[0]) else best[1:]
        for a in np.arange(a0 - span_a, a0 + span_a + 1e-6, step_a):
            for s in np.arange(s0 - span_s, s0 + span_s + 1e-6, step_s):
                c = _reflection_cost(img, msk, yy, xx, line(a, s))
                if c < best[0]:
                    best = (c, float(a), float(s))
    if np.isinf(best[0]):
        return None
    m = line(best[1], best[2])
    # back to the voxel grid of the input (zoom maps the first and last samples onto each other)
    sy, sx = ((n - 1) / max(k - 1, 1) for n, k in zip(h.shape, img.shape))
    dy, dx = m.dy * sy, m.dx * sx
    n = float(np.hypot(dy, dx))
    return Midline(m.cy * sy, m.cx * sx, dy / n, dx / n, best[0])


def mirror_contrasts(lab: np.ndarray, hu: np.ndarray, brain: np.ndarray, line: Midline,
                     exclude: Optional[np.ndarray] = None, min_share: float = 0.2) -> np.ndarray:
    """Per component k = 1..lab.max() of a label array [Z, Y, X]: its median HU minus the median HU
    of its mirror voxels (positive: brighter than the other side, as blood is; negative: darker,
    as an infarct is). Mirror voxels count only inside the brain and outside `exclude` (default:
    every component of `lab`, so a bilateral lesion found on both sides is not compared with
    itself). NaN where fewer than `min_share` of a component's voxels have a usable mirror (a
    lesion on the midline, or one whose mirror is not brain): the contrast is then unknown."""
    lab = np.asarray(lab)
    n = int(lab.max()) if lab.size else 0
    out = np.full(n, np.nan)
    if n == 0:
        return out
    z, y, x = np.nonzero(lab)
    k = lab[z, y, x]
    ry, rx = line.reflect(y.astype(np.float64), x.astype(np.float64))
    ry, rx = np.rint(ry).astype(np.int64), np.rint(rx).astype(np.int64)
    ok = (ry >= 0) & (ry < lab.shape[1]) & (rx >= 0) & (rx < lab.shape[2])
    ry, rx = np.where(ok, ry, 0), np.where(ok, rx, 0)
    excl = lab > 0 if exclude is None else np.asarray(exclude, dtype=bool)
    ok &= np.asarray(brain, dtype=bool)[z, ry, rx] & ~excl[z, ry, rx]
    own, mirrored = hu[z, y, x], hu[z, ry, rx]
    order = np.argsort(k, kind="stable")
    bounds = np.searchsorted(k[order], np.arange(1, n + 2))
    for j in range(n):
        idx = order[bounds[j]:bounds[j + 1]]
        use = idx[ok[idx]]
        if idx.size and use.size >= max(1, min_share * idx.size):
            out[j] = float(np.median(own[idx]) - np.median(mirrored[use]))
    return out


@dataclass(frozen=True, eq=False)
class MirrorContext:
    """What the mirror criterion needs of one study, on the grid of the masks it judges. The
    midline is fitted on first use: a study whose filter has no lesion left to judge pays nothing."""

    hu: np.ndarray  # [Z, Y, X]
    brain: np.ndarray  # bool [Z, Y, X]
    spacing_yx: tuple[float, float]

    @classmethod
    def with_line(cls, hu: np.ndarray, brain: np.ndarray, line: Optional[Midline],
                  spacing_yx: tuple[float, float] = (1.0, 1.0)) -> "MirrorContext":
        """A context whose midline is already known (no fit)."""
        ctx = cls(np.asarray(hu, dtype=np.float32), np.asarray(brain, dtype=bool), spacing_yx)
        ctx.__dict__["line"] = line  # what cached_property would store
        return ctx

    @cached_property
    def line(self) -> Optional[Midline]:
        """The study's midline (None: none could be fitted, and no lesion is judged)."""
        return midline(self.hu, self.brain, self.spacing_yx)

    @property
    def tried(self) -> bool:
        """Whether the midline was needed (fitted, or found impossible to fit)."""
        return "line" in self.__dict__

    def contrasts(self, lab: np.ndarray, label: int, exclude: Optional[np.ndarray] = None) -> np.ndarray:
        """Per component of `lab`: the contrast against its mirror in class `label`'s direction
        (positive: darker for an infarct, brighter for blood; NaN unknown). `exclude`: see
        `mirror_contrasts` (default: every component of `lab`)."""
        n = int(np.max(lab)) if np.size(lab) else 0
        if n == 0 or self.line is None:
            return np.full(n, np.nan)
        return LESION_CONTRAST_SIGN[label] * mirror_contrasts(lab, self.hu, self.brain, self.line, exclude=exclude)


def mirror_context(hu: np.ndarray, brain: np.ndarray, spacing_yx: tuple[float, float]) -> MirrorContext:
    """The study's MirrorContext (its midline fitted on first use; `.line` None: the criterion is off)."""
    return MirrorContext(np.asarray(hu, dtype=np.float32), np.asarray(brain, dtype=bool), tuple(spacing_yx))

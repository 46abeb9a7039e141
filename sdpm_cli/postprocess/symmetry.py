"""Left-right symmetry: the head's mid-sagittal line and a lesion's contrast against its mirror image.

A radiologist reads an acute infarct as tissue darker than the same tissue on the other side: the
mirror image is the reference that carries the study's own grey-white values, noise, beam hardening
and atrophy. Symmetric structures (peripheral CSF in an atrophic head, the falx, the ventricles'
edges, the skull base's partial volume) have no contrast against their mirror, whatever their HU.

`midline` (sdpm_cli.preprocess.symmetry, which also gives the network its mirror channel) finds
one in-plane reflection line per study (the slices of a head share it up to the tilt the ingest
corrects); `mirror_contrasts` compares each component's median HU with the median
HU of its mirror voxels inside the brain. Pure functions on arrays [Z, Y, X] with square in-plane
voxels (the reflection is taken in voxel coordinates).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Optional

import numpy as np

from sdpm_cli.labels import LESION_CONTRAST_SIGN
from sdpm_cli.preprocess.symmetry import Midline, midline

__all__ = ["Midline", "MirrorContext", "midline", "mirror_context", "mirror_contrasts"]


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

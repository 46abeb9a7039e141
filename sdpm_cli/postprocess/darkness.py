"""Is a found infarct as dark as CSF? A warning, not a filter.

An acute infarct on non-contrast CT is a few HU darker than the same tissue elsewhere (cytotoxic
oedema: 2-10 HU in the first hours). An old infarct (encephalomalacia) has lost its tissue and is
nearly as dark as CSF, 15-30 HU below the brain around it. The network labels both as infarct: it
was never shown the difference well enough (model card, "More lesion-free validation studies": old
infarct mimics on validation phantoms called 50-75 mL of acute infarct; the real GE head's
old-looking hypodensity called 21 mL). A confident false infarct volume is the worst answer this
tool can print, so each reported infarct is measured against the study's own parenchyma and one
much darker than an acute infarct can be gets a warning the user sees. It is not removed: a later
(subacute) infarct is darker too, and dropping it silently would be a second wrong answer.

The measure is the share of the infarct's voxels whose local HU (the mean over a 2.5 mm in-plane
square, so that noise does not decide) lies more than 15 HU below the median HU of the brain mask's
parenchyma (its voxels in (-5, 90) HU: air and bone left out) - CSF density - while the voxel's
mirror image across the study's midline is not (sulci and ventricles are dark on both sides, lost
tissue on one; without a midline the plain share is judged). The infarct's median
alone did not separate them (an old infarct found by the network is only 5-14 HU below in median,
its rim being brain; a found acute one up to 11). The bound on the share is chosen on validation
data (`benchmarks/accuracy/dark_infarct.py`, BENCHMARKS.md "Infarcts as dark as CSF").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np
from scipy import ndimage

from sdpm_cli.labels import CONNECTIVITY_26

INFARCT = 1
PARENCHYMA_HU = (-5.0, 90.0)
CSF_BELOW_HU = 15.0  # local HU this far below the parenchyma median counts as CSF-dark
SMOOTH_MM = 2.5  # side of the in-plane square the local HU is averaged over
DARK_SHARE = 0.15  # a found infarct with at least this share of CSF-dark voxels is flagged (validation)
MAX_SAMPLED_SLICES = 40  # the parenchyma median and the midline fit read at most this many slices


@dataclass(frozen=True)
class DarkInfarct:
    """One reported infarct (26-connected component) measured against the study's parenchyma."""

    volume_ml: float
    median_hu: float
    parenchyma_hu: float
    csf_share: float  # share of its voxels whose local HU is CSF-dark (> CSF_BELOW_HU below the parenchyma)
    slices: tuple[int, int]  # first, last z index of the study grid (0-based, inclusive)
    # the share of its voxels CSF-dark while their mirror image across the midline is not (sulci and
    # ventricles are CSF on both sides; tissue lost to an old infarct is not); None: no midline
    asymmetric_share: Optional[float] = None

    @property
    def share(self) -> float:
        """What the warning judges: the asymmetric share where a midline was fitted, else the plain one."""
        return self.csf_share if self.asymmetric_share is None else self.asymmetric_share

    def warning(self) -> str:
        side = "" if self.asymmetric_share is None else ", where the other side of the head is not,"
        return (f"an infarct of {self.volume_ml:.1f} mL (slices {self.slices[0] + 1}-{self.slices[1] + 1}) is "
                f"{100 * self.share:.0f}% as dark as CSF{side} as an old infarct (encephalomalacia) is: this model "
                f"cannot tell old from acute - check the scan before using its infarct volume")

    def to_dict(self) -> dict:
        return {"volume_ml": round(self.volume_ml, 3), "median_hu": round(self.median_hu, 1),
                "parenchyma_hu": round(self.parenchyma_hu, 1), "csf_dark_share": round(self.csf_share, 3),
                "asymmetric_csf_dark_share": None if self.asymmetric_share is None else round(self.asymmetric_share, 3),
                "slices": list(self.slices)}


def parenchyma_median_hu(hu: np.ndarray, brain: np.ndarray, step: int = 1) -> Optional[float]:
    """Median HU of the brain mask's voxels in PARENCHYMA_HU (None when the mask holds none); `step`
    takes every step-th voxel along each in-plane axis (millions of voxels: a sample gives the same median)."""
    lo, hi = PARENCHYMA_HU
    zstep = _slice_step(hu.shape[0]) if step > 1 else 1  # and at most MAX_SAMPLED_SLICES of a thin study
    hu, brain = hu[::zstep, ::step, ::step], brain[::zstep, ::step, ::step]
    sel = hu[(brain > 0) & (hu > lo) & (hu < hi)]
    return float(np.median(sel)) if sel.size else None


def _slice_step(n_slices: int) -> int:
    return max(1, -(-n_slices // MAX_SAMPLED_SLICES))


def study_midline(hu: np.ndarray, brain: np.ndarray, pixel_mm: tuple[float, float]):
    """The study's midline on its own grid (`preprocess.symmetry.midline`), fitted on at most
    MAX_SAMPLED_SLICES of its slices at about 1 mm and scaled back: the fit averages over slices on a 2 mm grid anyway (a
    thin study's 238 slices of 0.45 mm took 3.6 s at full size, 0.3-0.6 s so)."""
    import dataclasses

    from sdpm_cli.preprocess.symmetry import midline

    step = _slice_step(hu.shape[0])
    ds = max(1, int(1.0 / max(min(pixel_mm), 1e-6)))
    line = midline(np.asarray(hu[::step, ::ds, ::ds], dtype=np.float32), np.asarray(brain[::step, ::ds, ::ds]) > 0,
                   (pixel_mm[0] * ds, pixel_mm[1] * ds))
    if line is not None and ds > 1:
        line = dataclasses.replace(line, cy=line.cy * ds, cx=line.cx * ds)
    return line


def infarct_darkness(labels: np.ndarray, hu: np.ndarray, brain: np.ndarray, voxel_ml: float,
                     pixel_mm: tuple[float, float] = (1.0, 1.0), line=None) -> list[DarkInfarct]:
    """Every infarct component of `labels` [Z, Y, X] measured against the parenchyma, largest first;
    [] without infarct or without parenchyma to compare with. `pixel_mm` = in-plane (y, x) spacing;
    `line` = the study's midline (`preprocess.symmetry.Midline`, voxel coordinates of this grid) for
    the asymmetric share."""
    inf = labels == INFARCT
    if not inf.any():
        return []
    ref = parenchyma_median_hu(hu, brain, step=4)
    if ref is None:
        return []
    # only the infarct's bounding box is labelled and the slices that hold one measured (a thin
    # study has hundreds of others)
    (z0, z1), (ya, yb), (xa, xb) = [(int(a.min()), int(a.max()) + 1) for a in
                                    (np.flatnonzero(inf.any(axis=(1, 2))), np.flatnonzero(inf.any(axis=(0, 2))),
                                     np.flatnonzero(inf.any(axis=(0, 1))))]
    hu, brain, inf = hu[z0:z1], brain[z0:z1], inf[z0:z1]
    # an odd window (centred) of about SMOOTH_MM: 3 pixels at 1 mm, 5 at 0.5 mm, 7 at 0.39-0.45 mm
    size = tuple(2 * int(round(SMOOTH_MM / (2 * max(p, 1e-6)))) + 1 for p in pixel_mm)
    comp, n = ndimage.label(inf[:, ya:yb, xa:xb], structure=CONNECTIVITY_26)
    z, y, x = np.nonzero(comp)  # only the infarct voxels are looked at, and their mirror images
    k = comp[z, y, x] - 1
    y, x = y + ya, x + xa

    def dark_at(zz: np.ndarray, yy: np.ndarray, xx: np.ndarray) -> np.ndarray:
        """CSF-dark local HU at these voxels, the local mean taken over their padded in-plane box only."""
        y0, y1 = max(0, int(yy.min()) - size[0]), min(hu.shape[1], int(yy.max()) + size[0] + 1)
        x0, x1 = max(0, int(xx.min()) - size[1]), min(hu.shape[2], int(xx.max()) + size[1] + 1)
        local = ndimage.uniform_filter(hu[:, y0:y1, x0:x1].astype(np.float32), size=(1, *size), mode="nearest")
        return local[zz, yy - y0, xx - x0] < ref - CSF_BELOW_HU

    d = dark_at(z, y, x)
    count = np.bincount(k, minlength=n)
    n_dark = np.bincount(k, weights=d, minlength=n)
    n_asym = None
    if line is not None:
        ry, rx = line.reflect(y.astype(np.float64), x.astype(np.float64))
        ry, rx = np.rint(ry).astype(np.int64), np.rint(rx).astype(np.int64)
        ok = (ry >= 0) & (ry < hu.shape[1]) & (rx >= 0) & (rx < hu.shape[2])
        ry, rx = np.where(ok, ry, y), np.where(ok, rx, x)
        # the mirror voxel is "CSF-dark too" when it is dark, or not a usable brain voxel outside any infarct
        usable = ok & (brain[z, ry, rx] > 0) & ~inf[z, ry, rx]
        n_asym = np.bincount(k, weights=d & usable & ~dark_at(z, ry, rx), minlength=n)
    order = np.argsort(k, kind="stable")
    bounds = np.searchsorted(k[order], np.arange(n + 1))
    out = []
    for j in range(n):
        idx = order[bounds[j]:bounds[j + 1]]
        if not idx.size:
            continue
        out.append(DarkInfarct(volume_ml=float(count[j] * voxel_ml), median_hu=float(np.median(hu[z[idx], y[idx], x[idx]])),
                               parenchyma_hu=ref, csf_share=float(n_dark[j] / count[j]),
                               slices=(z0 + int(z[idx].min()), z0 + int(z[idx].max())),
                               asymmetric_share=None if n_asym is None else float(n_asym[j] / count[j])))
    return sorted(out, key=lambda d: -d.volume_ml)


def dark_infarcts(labels: np.ndarray, hu: np.ndarray, brain: np.ndarray, voxel_ml: float,
                  pixel_mm: tuple[float, float] = (1.0, 1.0), line=None,
                  min_share: float = DARK_SHARE) -> list[DarkInfarct]:
    """The infarct components whose (asymmetric, where `line` is given) CSF-dark share reaches `min_share`."""
    return [d for d in infarct_darkness(labels, hu, brain, voxel_ml, pixel_mm, line) if d.share >= min_share]

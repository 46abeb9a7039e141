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
parenchyma (its voxels in (-5, 90) HU: air and bone left out) - CSF density. The infarct's median
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


def parenchyma_median_hu(hu: np.ndarray, brain: np.ndarray) -> Optional[float]:
    """Median HU of the brain mask's voxels in PARENCHYMA_HU (None when the mask holds none)."""
    lo, hi = PARENCHYMA_HU
    sel = hu[(brain > 0) & (hu > lo) & (hu < hi)]
    return float(np.median(sel)) if sel.size else None


def infarct_darkness(labels: np.ndarray, hu: np.ndarray, brain: np.ndarray, voxel_ml: float,
                     pixel_mm: tuple[float, float] = (1.0, 1.0), line=None) -> list[DarkInfarct]:
    """Every infarct component of `labels` [Z, Y, X] measured against the parenchyma, largest first;
    [] without infarct or without parenchyma to compare with. `pixel_mm` = in-plane (y, x) spacing;
    `line` = the study's midline (`preprocess.symmetry.Midline`, voxel coordinates of this grid) for
    the asymmetric share."""
    inf = labels == INFARCT
    if not inf.any():
        return []
    ref = parenchyma_median_hu(hu, brain)
    if ref is None:
        return []
    # an odd window (centred) of about SMOOTH_MM: 3 pixels at 1 mm, 5 at 0.5 mm, 7 at 0.39-0.45 mm
    size = tuple(2 * int(round(SMOOTH_MM / (2 * max(p, 1e-6)))) + 1 for p in pixel_mm)
    dark = ndimage.uniform_filter(hu.astype(np.float32), size=(1, *size), mode="nearest") < ref - CSF_BELOW_HU
    mirror_dark = None
    if line is not None:
        yy, xx = np.indices(hu.shape[1:], dtype=np.float64)
        ry, rx = line.reflect(yy, xx)
        ry, rx = np.rint(ry).astype(np.int64), np.rint(rx).astype(np.int64)
        ok = (ry >= 0) & (ry < hu.shape[1]) & (rx >= 0) & (rx < hu.shape[2])
        ry, rx = np.where(ok, ry, 0), np.where(ok, rx, 0)
        # the mirror voxel is "CSF-dark too" when it is dark, or not a usable brain voxel outside any infarct
        usable = (brain > 0)[:, ry, rx] & ~inf[:, ry, rx] & ok[None]
        mirror_dark = dark[:, ry, rx] | ~usable
    comp, _ = ndimage.label(inf, structure=CONNECTIVITY_26)
    out = []
    for i, box in enumerate(ndimage.find_objects(comp), start=1):
        if box is None:
            continue
        m = comp[box] == i
        d = dark[box][m]
        asym = None if mirror_dark is None else float((d & ~mirror_dark[box][m]).mean())
        out.append(DarkInfarct(volume_ml=float(m.sum() * voxel_ml), median_hu=float(np.median(hu[box][m])),
                               parenchyma_hu=ref, csf_share=float(d.mean()),
                               slices=(int(box[0].start), int(box[0].stop - 1)), asymmetric_share=asym))
    return sorted(out, key=lambda d: -d.volume_ml)


def dark_infarcts(labels: np.ndarray, hu: np.ndarray, brain: np.ndarray, voxel_ml: float,
                  pixel_mm: tuple[float, float] = (1.0, 1.0), line=None,
                  min_share: float = DARK_SHARE) -> list[DarkInfarct]:
    """The infarct components whose (asymmetric, where `line` is given) CSF-dark share reaches `min_share`."""
    return [d for d in infarct_darkness(labels, hu, brain, voxel_ml, pixel_mm, line) if d.share >= min_share]

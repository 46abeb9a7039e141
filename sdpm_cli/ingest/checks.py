"""Value checks on decoded slices: pixel padding, out-of-field values and the HU sanity check."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from sdpm_cli.ingest.rules import IngestRules


@dataclass(frozen=True)
class HUCheck:
    """Where air and soft tissue sit in the histogram, and whether that looks like HU."""

    air_hu: Optional[float]
    tissue_peak_hu: Optional[float]
    air_fraction: float
    tissue_fraction: float
    passed: bool
    reason: str

    def to_dict(self) -> dict:
        return {
            "air_hu": None if self.air_hu is None else round(self.air_hu, 1),
            "soft_tissue_peak_hu": None if self.tissue_peak_hu is None else round(self.tissue_peak_hu, 1),
            "air_fraction": round(self.air_fraction, 4),
            "soft_tissue_fraction": round(self.tissue_fraction, 4),
            "passed": self.passed,
            "reason": self.reason,
        }


def padding_mask(hu_slice: np.ndarray, padding_hu: Optional[float], padding_limit_hu: Optional[float], rules: IngestRules) -> np.ndarray:
    """Pixels that hold no measurement: the declared padding value (or range) and out-of-field values."""
    mask = hu_slice < rules.min_valid_hu
    if padding_hu is not None:
        if padding_limit_hu is not None:
            lo, hi = sorted((padding_hu, padding_limit_hu))
            mask |= (hu_slice >= lo) & (hu_slice <= hi)
        else:
            mask |= hu_slice == padding_hu
    return mask


def slice_stride(slice_mm: float, n_slices: int, rules: IngestRules) -> int:
    """Every how many slices the ingest's checks look, so that they sit ~rules.check_slice_mm apart."""
    return max(1, int(rules.check_slice_mm // slice_mm)) if slice_mm > 0 and n_slices > 1 else 1


def hu_sample(vol: np.ndarray, pad: np.ndarray, slice_mm: float, rules: IngestRules) -> np.ndarray:
    """The measured (not padded) voxels the HU check looks at: every 2nd pixel in-plane and slices at
    least rules.check_slice_mm apart - the histogram's air and soft-tissue peaks do not move, and a
    0.625 mm study no longer copies all its voxels for it."""
    t = slice_stride(slice_mm, vol.shape[0], rules)
    return vol[::t, ::2, ::2][~pad[::t, ::2, ::2]]


def hu_check(values: np.ndarray, rules: IngestRules) -> HUCheck:
    """Air near -1000 HU and a soft-tissue histogram peak at 0-80 HU (the rules' ranges)."""
    v = np.asarray(values, dtype=np.float32).ravel()
    if v.size == 0:
        return HUCheck(None, None, 0.0, 0.0, False, "no pixel values")
    air = v[(v < -500) & (v > -1500)]
    tissue = v[(v >= -100) & (v <= 200)]
    air_frac, tissue_frac = air.size / v.size, tissue.size / v.size
    air_hu = float(np.median(air)) if air.size else None
    peak = None
    if tissue.size:
        hist, edges = np.histogram(tissue, bins=np.arange(-100, 202, 2))
        hist = np.convolve(hist, np.ones(5) / 5, mode="same")  # 10 HU smoothing against noise
        k = int(np.argmax(hist))
        peak = float((edges[k] + edges[k + 1]) / 2)
    lo_a, hi_a = rules.air_hu_range
    lo_t, hi_t = rules.soft_tissue_peak_range
    problems = []
    if air_frac < rules.min_air_fraction or air_hu is None:
        problems.append(f"no air around the head (expected values near -1000 HU; lowest value {float(v.min()):.0f})")
    elif not lo_a <= air_hu <= hi_a:
        problems.append(f"air at {air_hu:.0f} HU (expected {lo_a:.0f} to {hi_a:.0f})")
    if tissue_frac < rules.min_tissue_fraction or peak is None:
        problems.append("no soft tissue between -100 and 200 HU")
    elif not lo_t <= peak <= hi_t:
        problems.append(f"soft-tissue peak at {peak:.0f} HU (expected {lo_t:.0f} to {hi_t:.0f})")
    return HUCheck(air_hu, peak, air_frac, tissue_frac, not problems, "; ".join(problems) or "ok")

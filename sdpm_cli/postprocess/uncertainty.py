"""Volume intervals that cover the true lesion volume: a split-conformal error model.

The diffusion samples alone describe sampler noise (about +-1% on the demo) while the error
against truth is larger (+11% there, several-fold off our generator). So the interval is an error
model calibrated on validation studies whose truth is known:

    scale s = band_ml + rel * V + floor_ml
    r       = (V_true - V) / s                  (signed, normalised residual)
    interval = [V + q_lo * s, V + q_hi * s]     (clipped at 0)

V is the point volume the user receives; band_ml is the volume where the class probability lies
in the uncertain band [0.2, 0.8) (a lesion's blurred rim, and every voxel where the diffusion
samples disagree: their mean probability is then mid-range), so a model that is unsure of a
voxel widens its own interval. q_lo / q_hi are the finite-sample conformal quantiles of r over
the calibration studies (Vovk et al.; Lei et al. 2018, "locally weighted" split conformal): if
a new study is exchangeable with them, P(V_true in interval) >= level. q_lo <= 0 <= q_hi, so
every interval contains its point volume by construction.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Mapping, Optional, Sequence

import numpy as np

PROB_BAND = (0.2, 0.8)  # probabilities in [lo, hi) count as uncertain voxels
DEFAULT_LEVEL = 0.95
DEFAULT_REL = 0.1  # the error grows with the volume: 10% of V joins the scale
DEFAULT_FLOOR_ML = 0.5  # a lesion the model misses entirely still has an upper bound above 0
# low_confidence: the interval is wider than this times the point volume, or the lesion's mean
# probability is below MIN_MEAN_PROB (README "Volumes and their intervals")
WIDE_RELATIVE = 1.0
MIN_MEAN_PROB = 0.65


@dataclass(frozen=True)
class ClassCalibration:
    """Conformal quantiles of the normalised residual for one class and inference mode."""

    q_lo: float
    q_hi: float
    n: int  # calibration studies
    rel: float = DEFAULT_REL
    floor_ml: float = DEFAULT_FLOOR_ML

    def scale(self, volume_ml: float, band_ml: float) -> float:
        return float(band_ml) + self.rel * float(volume_ml) + self.floor_ml

    def interval(self, volume_ml: float, band_ml: float) -> tuple[float, float]:
        """The interval for the true volume; always contains volume_ml."""
        s = self.scale(volume_ml, band_ml)
        lo = max(0.0, float(volume_ml) + min(self.q_lo, 0.0) * s)
        hi = float(volume_ml) + max(self.q_hi, 0.0) * s
        return (min(lo, float(volume_ml)), max(hi, float(volume_ml)))


@dataclass(frozen=True)
class VolumeCalibration:
    """Per mode and class calibrations, as stored in a checkpoint header (postprocess.volume_calibration)."""

    level: float
    source: str  # what it was calibrated on, said in every report
    classes: Mapping[str, Mapping[str, ClassCalibration]]  # mode -> class name -> calibration

    def get(self, mode: str, name: str) -> Optional[ClassCalibration]:
        return (self.classes.get(mode) or {}).get(name)

    def to_dict(self) -> dict:
        return {"level": self.level, "source": self.source,
                "classes": {m: {c: asdict(k) for c, k in v.items()} for m, v in self.classes.items()}}

    @classmethod
    def from_dict(cls, d: Optional[Mapping]) -> Optional["VolumeCalibration"]:
        if not d:
            return None
        level = float(d["level"])
        if not 0.0 < level < 1.0:
            raise ValueError(f"calibration level {level} is not between 0 and 1")
        classes = {str(m): {str(c): ClassCalibration(**k) for c, k in v.items()} for m, v in d["classes"].items()}
        return cls(level=level, source=str(d.get("source", "")), classes=classes)


def conformal_quantiles(residuals: Sequence[float], level: float = DEFAULT_LEVEL) -> tuple[float, float]:
    """(q_lo, q_hi): the two-sided split-conformal quantiles of the residuals at `level`.

    With n residuals the upper one is the ceil((n+1)(1 - a/2))-th smallest and the lower one the
    floor((n+1) a/2)-th (a = 1 - level); where n is too small for the level those ranks fall
    outside 1..n and the quantile is infinite: no finite interval can promise that coverage.
    """
    r = np.sort(np.asarray(residuals, dtype=float))
    n = r.size
    if n == 0:
        return -math.inf, math.inf
    a = 1.0 - level
    k_hi = math.ceil((n + 1) * (1.0 - a / 2.0) - 1e-9)  # (the epsilon absorbs 1 - 0.95 != 0.05 in floats)
    k_lo = math.floor((n + 1) * a / 2.0 + 1e-9)
    q_hi = float(r[k_hi - 1]) if k_hi <= n else math.inf
    q_lo = float(r[k_lo - 1]) if k_lo >= 1 else -math.inf
    return min(q_lo, 0.0), max(q_hi, 0.0)


def calibrate_class(v_pred: Sequence[float], v_true: Sequence[float], band: Sequence[float], *,
                    level: float = DEFAULT_LEVEL, rel: float = DEFAULT_REL,
                    floor_ml: float = DEFAULT_FLOOR_ML) -> ClassCalibration:
    """Fit one class's error model on calibration studies (their point volume, truth and band)."""
    v_pred, v_true, band = (np.asarray(a, dtype=float) for a in (v_pred, v_true, band))
    if not (v_pred.shape == v_true.shape == band.shape):
        raise ValueError("v_pred, v_true and band must have one value per study")
    s = band + rel * v_pred + floor_ml
    q_lo, q_hi = conformal_quantiles((v_true - v_pred) / s, level)
    if not (math.isfinite(q_lo) and math.isfinite(q_hi)):
        raise ValueError(f"{v_pred.size} calibration studies are too few for a {level:.0%} interval")
    return ClassCalibration(q_lo=q_lo, q_hi=q_hi, n=int(v_pred.size), rel=rel, floor_ml=floor_ml)


def coverage(cal: ClassCalibration, v_pred, v_true, band) -> float:
    """Fraction of studies whose true volume lies inside their interval."""
    hits = [lo - 1e-9 <= t <= hi + 1e-9 for p, t, b in zip(v_pred, v_true, band)
            for lo, hi in [cal.interval(p, b)]]
    return float(np.mean(hits)) if hits else math.nan


def band_voxels(prob: np.ndarray) -> np.ndarray:
    """Boolean mask of voxels whose probability is in the uncertain band."""
    lo, hi = PROB_BAND
    return (prob >= lo) & (prob < hi)


def low_confidence(volume_ml: float, interval: Optional[tuple[float, float]], mean_prob: Optional[float]) -> bool:
    """True when the interval is wide relative to the volume or the lesion's probability is low."""
    if mean_prob is not None and mean_prob < MIN_MEAN_PROB:
        return True
    if interval is None:
        return False
    return (interval[1] - interval[0]) > WIDE_RELATIVE * max(volume_ml, 1e-9)

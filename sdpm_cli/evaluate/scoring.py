"""Per-case, per-class scores and their aggregation over cases (one summary per mode and class)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Iterable, Optional, Sequence

import numpy as np

from sdpm_cli.evaluate import metrics as M
from sdpm_cli.labels import CLASSES

STATUS_OK = "ok"
STATUS_MISSING = "missing"  # no prediction file for a truth case
STATUS_FAILED = "failed"  # the model could not segment the case


@dataclass
class CaseScore:
    """One row of per_case.csv: one case, one class, one mode (or method)."""

    mode: str
    case: str
    label: int
    lesion_class: str
    status: str = STATUS_OK
    reason: str = ""
    dice: float = math.nan
    iou: float = math.nan
    hd95_mm: float = math.nan
    vol_pred_ml: float = math.nan
    vol_truth_ml: float = math.nan
    abs_vol_err_ml: float = math.nan
    lesions_true: int = 0
    lesions_detected: int = 0
    lesions_fp: int = 0
    # when the model segmented the case (evaluate --data): the uncertain band and the calibrated
    # interval of the predicted volume (postprocess.uncertainty), the raw material of calibration
    band_ml: float = math.nan
    ci_lo_ml: float = math.nan
    ci_hi_ml: float = math.nan

    @classmethod
    def columns(cls) -> list[str]:
        return [f.name for f in fields(cls)]

    def as_dict(self) -> dict:
        return asdict(self)


def score_case(
    pred: np.ndarray,
    truth: np.ndarray,
    spacing_xyz: Sequence[float],
    *,
    case: str,
    mode: str,
    classes: Optional[dict[int, str]] = None,
) -> list[CaseScore]:
    """Score one case's label maps ([z, y, x], values 0/1/2) class by class."""
    classes = classes or CLASSES
    pred = np.asarray(pred)
    truth = np.asarray(truth)
    rows = []
    for label, name in classes.items():
        p, t = pred == label, truth == label
        vp, vt = M.volume_ml(p, spacing_xyz), M.volume_ml(t, spacing_xyz)
        tp, fn, fp = M.lesion_detection(p, t)
        rows.append(
            CaseScore(
                mode=mode,
                case=case,
                label=label,
                lesion_class=name,
                dice=M.dice(p, t),
                iou=M.iou(p, t),
                hd95_mm=M.hd95(p, t, spacing_xyz),
                vol_pred_ml=vp,
                vol_truth_ml=vt,
                abs_vol_err_ml=abs(vp - vt),
                lesions_true=tp + fn,
                lesions_detected=tp,
                lesions_fp=fp,
            )
        )
    return rows


def failed_case(case: str, mode: str, status: str, reason: str, classes: Optional[dict[int, str]] = None) -> list[CaseScore]:
    """Rows that record a case that could not be scored (kept in the CSV, counted in the summary)."""
    classes = classes or CLASSES
    return [CaseScore(mode=mode, case=case, label=k, lesion_class=v, status=status, reason=reason) for k, v in classes.items()]


def _mean_sd(values: Iterable[float]) -> tuple[float, float, int]:
    v = np.asarray([x for x in values if not math.isnan(x)], dtype=float)
    if v.size == 0:
        return math.nan, math.nan, 0
    sd = float(v.std(ddof=1)) if v.size > 1 else math.nan
    return float(v.mean()), sd, int(v.size)


def summarize_class(rows: Sequence[CaseScore]) -> dict:
    """Aggregate the scored rows of one mode and class (rows that failed are counted, not scored)."""
    ok = [r for r in rows if r.status == STATUS_OK]
    vp = [r.vol_pred_ml for r in ok]
    vt = [r.vol_truth_ml for r in ok]
    dice_m, dice_sd, _ = _mean_sd(r.dice for r in ok)
    iou_m, iou_sd, _ = _mean_sd(r.iou for r in ok)
    # HD95 is averaged where both masks have a lesion: the 0 of agreeing empty masks would flatter it
    both = [r for r in ok if r.vol_truth_ml > 0 and r.vol_pred_ml > 0]
    hd_m, hd_sd, hd_n = _mean_sd(r.hd95_mm for r in both)
    err_m, err_sd, _ = _mean_sd(r.abs_vol_err_ml for r in ok)
    bias, lo, hi = M.bland_altman(vp, vt)
    n_true = sum(r.lesions_true for r in ok)
    n_det = sum(r.lesions_detected for r in ok)
    lesion_free = [r for r in ok if r.vol_truth_ml == 0]
    with_lesion = [r for r in ok if r.vol_truth_ml > 0]
    fp_m, _, _ = _mean_sd(r.vol_pred_ml for r in lesion_free)
    return {
        "n_cases": len(ok),
        "n_failed": len(rows) - len(ok),
        "n_with_lesion": len(with_lesion),
        "n_lesion_free": len(lesion_free),
        "dice_mean": dice_m,
        "dice_sd": dice_sd,
        "dice_mean_with_lesion": _mean_sd(r.dice for r in with_lesion)[0],
        "iou_mean": iou_m,
        "iou_sd": iou_sd,
        "hd95_mm_mean": hd_m,
        "hd95_mm_sd": hd_sd,
        "hd95_n_defined": hd_n,
        "hd95_n_undefined": sum(1 for r in ok if (r.vol_truth_ml > 0) != (r.vol_pred_ml > 0)),
        "vc_pearson": M.pearson_vc(vp, vt),
        "vdp_percent": M.vdp(vp, vt),
        "abs_vol_err_ml_mean": err_m,
        "abs_vol_err_ml_sd": err_sd,
        "ba_bias_ml": bias,
        "ba_loa_low_ml": lo,
        "ba_loa_high_ml": hi,
        "lesions_true": n_true,
        "lesions_detected": n_det,
        "lesions_fp": sum(r.lesions_fp for r in ok),
        "lesion_sensitivity": M.safe_ratio(n_det, n_true),
        "fp_volume_ml_mean_lesion_free": fp_m,
        "n_lesion_free_with_fp": sum(1 for r in lesion_free if r.vol_pred_ml > 0),
    }


def summarize(rows: Sequence[CaseScore]) -> dict[str, dict[str, dict]]:
    """{mode: {class name: aggregate}} in the order modes and classes first appear."""
    out: dict[str, dict[str, dict]] = {}
    for mode in dict.fromkeys(r.mode for r in rows):
        out[mode] = {}
        for cls in dict.fromkeys(r.lesion_class for r in rows if r.mode == mode):
            out[mode][cls] = summarize_class([r for r in rows if r.mode == mode and r.lesion_class == cls])
    return out


CONVENTIONS = {
    "dice_iou_both_empty": 1.0,
    "dice_iou_one_empty": 0.0,
    "hd95": "max of the two directed 95th-percentile surface distances (mm); per case 0 when both are "
    "empty and undefined (empty cell) when exactly one is; the mean is over cases where both have a "
    "lesion (hd95_n_defined), one-sided cases are counted in hd95_n_undefined",
    "vc": "Pearson r of predicted vs true volume over cases (including lesion-free ones)",
    "vdp_percent": "mean of 100*|Vp-Vt|/Vt over cases with Vt > 0; lesion-free truths are reported "
    "as fp_volume_ml_mean_lesion_free instead",
    "bland_altman": "difference Vp - Vt (mL); limits = bias -/+ 1.96 sample sd",
    "lesions": "26-connected components; a true lesion is detected if any predicted voxel overlaps it",
    "failed_cases": "missing or failed predictions are listed and counted (n_failed), not scored",
}

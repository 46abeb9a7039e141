"""Per-case rows and aggregates against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest

from sdpm_cli.evaluate.scoring import STATUS_MISSING, failed_case, score_case, summarize


def _case(infarct_vox: int, hem_vox: int, shape=(4, 10, 10)) -> np.ndarray:
    a = np.zeros(shape, np.uint8)
    a.reshape(-1)[:infarct_vox] = 1
    a.reshape(-1)[200 : 200 + hem_vox] = 2
    return a


def test_score_case_per_class():
    spacing = (0.5, 0.5, 4.0)  # 1 mm^3 voxels
    truth = _case(100, 0)
    pred = _case(50, 10)
    rows = score_case(pred, truth, spacing, case="c1", mode="out")
    inf, hem = rows
    assert (inf.lesion_class, hem.lesion_class) == ("infarct", "hemorrhage")
    assert inf.dice == pytest.approx(2 * 50 / 150)
    assert inf.vol_pred_ml == pytest.approx(0.05) and inf.vol_truth_ml == pytest.approx(0.1)
    assert inf.abs_vol_err_ml == pytest.approx(0.05)
    assert (inf.lesions_true, inf.lesions_detected, inf.lesions_fp) == (1, 1, 0)
    # hemorrhage: lesion-free truth, predicted 10 voxels -> Dice 0, HD95 undefined, one FP lesion
    assert hem.dice == 0.0 and math.isnan(hem.hd95_mm) and hem.lesions_fp == 1 and hem.lesions_true == 0


def test_summarize_by_hand():
    spacing = (1.0, 1.0, 1.0)
    rows = []
    # infarct volumes (mL): truth 0.1, 0.2, 0.0 ; pred 0.1, 0.1, 0.05
    rows += score_case(_case(100, 0), _case(100, 0), spacing, case="a", mode="m")
    rows += score_case(_case(100, 0), _case(200, 0), spacing, case="b", mode="m")
    rows += score_case(_case(50, 0), _case(0, 0), spacing, case="c", mode="m")
    rows += failed_case("d", "m", STATUS_MISSING, "no prediction")
    s = summarize(rows)["m"]["infarct"]
    assert s["n_cases"] == 3 and s["n_failed"] == 1
    assert s["n_with_lesion"] == 2 and s["n_lesion_free"] == 1
    assert s["dice_mean"] == pytest.approx((1.0 + 2 * 100 / 300 + 0.0) / 3)
    assert s["dice_mean_with_lesion"] == pytest.approx((1.0 + 2 / 3) / 2)
    # VDP over cases with a lesion: |0.1-0.1|/0.1 = 0, |0.1-0.2|/0.2 = 50% -> 25%
    assert s["vdp_percent"] == pytest.approx(25.0)
    vp, vt = [0.1, 0.1, 0.05], [0.1, 0.2, 0.0]
    assert s["vc_pearson"] == pytest.approx(np.corrcoef(vp, vt)[0, 1])
    d = np.subtract(vp, vt)
    assert s["ba_bias_ml"] == pytest.approx(d.mean())
    assert s["ba_loa_high_ml"] - s["ba_bias_ml"] == pytest.approx(1.96 * d.std(ddof=1))
    assert s["fp_volume_ml_mean_lesion_free"] == pytest.approx(0.05) and s["n_lesion_free_with_fp"] == 1
    assert s["lesion_sensitivity"] == pytest.approx(1.0) and s["lesions_fp"] == 1
    assert s["hd95_n_defined"] == 2 and s["hd95_n_undefined"] == 1
    # hemorrhage: nowhere in truth or prediction -> Dice 1 everywhere, sensitivity undefined
    h = summarize(rows)["m"]["hemorrhage"]
    assert h["dice_mean"] == 1.0 and math.isnan(h["lesion_sensitivity"]) and math.isnan(h["vdp_percent"])

"""benchmarks/accuracy/familyC_score.py: the family-C figures against hand-counted masks, with and
without the background's ignore region."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "benchmarks" / "accuracy"))

import familyC_score as fc  # noqa: E402


def _case(pred, truth, ignore, name="c", kinds=()):
    return {"case": name, "free": name.startswith("free_"), "blood_kinds": list(kinds),
            "scores": fc.case_scores(pred, truth, ignore, voxel_ml=0.5)}


def test_case_scores_leave_the_ignore_region_out_of_both_readings():
    truth = np.zeros((1, 4, 10), np.uint8)
    truth[0, :, :2] = 2                      # 8 voxels of blood
    pred = np.zeros_like(truth)
    pred[0, :, :2] = 2                       # found exactly ...
    pred[0, :, 6:] = 1                       # ... plus 16 voxels of "infarct", half of them in the finding
    ignore = np.zeros(truth.shape, bool)
    ignore[0, :, 8:] = True
    s = fc.case_scores(pred, truth, ignore, voxel_ml=0.5)
    assert s[2]["dice"] == 1.0 and s[2]["true_ml"] == 4.0 and s[2]["pred_ml"] == 4.0
    assert s[1]["true_ml"] == 0.0 and s[1]["pred_ml"] == 8.0 and s[1]["pred_ml_ign"] == 4.0


def test_summarise_means_over_the_right_cases():
    z = np.zeros((1, 2, 4), np.uint8)
    none = np.zeros(z.shape, bool)
    t1 = z.copy(); t1[0, 0, :] = 2           # 4 voxels blood
    p1 = z.copy(); p1[0, 0, :2] = 2          # half found: Dice 2*2/(2+4) = 2/3
    fp = z.copy(); fp[0, 1, :] = 1           # 4 voxels false infarct = 2 mL
    rows = [_case(p1, t1, none, "a", ["subdural"]), _case(fp, z, none, "free_b"), _case(z, z, none, "c")]
    s = fc.summarise(rows)
    assert s["hemorrhage"]["n"] == 1 and s["hemorrhage"]["dice"] == pytest.approx(2 / 3)
    assert s["infarct"]["n"] == 0 and s["infarct"]["dice"] is None
    assert s["infarct"]["fp_ml"] == pytest.approx(2.0 / 3)     # over the 3 cases without infarct
    assert s["hemorrhage"]["fp_ml"] == pytest.approx(0.0)      # the 2 without blood found none
    assert s["free_fp_ml"] == pytest.approx(2.0)               # the one lesion-free case
    assert s["hemorrhage_dice_by_kind"] == {"subdural": {"n": 1, "dice": pytest.approx(2 / 3)}}

"""benchmarks/accuracy/score_candidate.py: the candidate table's row from the files the steps write."""

from __future__ import annotations

import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "benchmarks" / "accuracy"))

import score_candidate as sc  # noqa: E402

HEADER = "mode,case,label,lesion_class,status,reason,dice,vol_pred_ml,vol_truth_ml\n"


def _evaluate_folder(path: Path, infarct: float, hemorrhage: float, rows: list[str]) -> None:
    path.mkdir(parents=True)
    (path / "summary.json").write_text(json.dumps({"modes": {"out": {
        "infarct": {"dice_mean_with_lesion": infarct},
        "hemorrhage": {"dice_mean_with_lesion": hemorrhage}}}}))
    (path / "per_case.csv").write_text(HEADER + "".join(r + "\n" for r in rows))


def test_false_lesion_is_summed_over_classes_per_study_then_averaged_over_lesion_free_studies(tmp_path):
    _evaluate_folder(tmp_path / "valA", 0.5, 0.25, [
        "out,free_a,1,infarct,ok,,0,3.0,0",
        "out,free_a,2,hemorrhage,ok,,0,1.0,0",   # free_a: 4 mL of false lesion
        "out,free_b,1,infarct,ok,,1,0,0",
        "out,free_b,2,hemorrhage,ok,,1,0,0",     # free_b: none
        "out,synth_1,1,infarct,ok,,0.5,40.0,35.0",  # a study with lesion: not a false-lesion study
    ])
    infarct, hemorrhage, fp = sc.validation_row(tmp_path / "valA")
    assert (infarct, hemorrhage) == (0.5, 0.25)
    assert fp == 2.0


def test_row_and_markdown_carry_every_figure(tmp_path):
    _evaluate_folder(tmp_path / "valA", 0.6, 0.4, ["out,free_a,1,infarct,ok,,0,1.5,0"])
    _evaluate_folder(tmp_path / "valB", 0.3, 0.7, ["out,free_a,2,hemorrhage,ok,,0,8.25,0"])
    (tmp_path / "real_up.json").write_text(json.dumps(
        {"mean_dice": {"out": 0.639}, "pooled_dice": {"out": 0.852}}))
    (tmp_path / "familyC.json").write_text(json.dumps({"results": [{"summary": {
        "infarct": {"fp_ml": 29.5, "fp_ml_ign": 6.4},
        "hemorrhage": {"dice": 0.863},
        "hemorrhage_dice_by_kind": {"subdural": {"dice": 0.654}}}}]}))
    r = sc.row(tmp_path)
    assert r["val_A"]["fp_ml_lesion_free"] == 1.5 and r["val_B"]["fp_ml_lesion_free"] == 8.25
    line = sc.markdown("cand", r)
    assert line == ("| cand | 0.600 · 0.400 | 1.50 | 0.300 · 0.700 | 8.25 | 0.639 / 0.852 "
                    "| 0.863 · 0.654 | 29.50 (6.40) |")


def test_lesion_free_figures_pool_every_set_and_split_the_classes(tmp_path):
    _evaluate_folder(tmp_path / "valA", 0.5, 0.5, [
        "out,free_a,1,infarct,ok,,0,6.0,0",
        "out,free_a,2,hemorrhage,ok,,0,1.0,0",
        "out,synth_1,1,infarct,ok,,0.5,40.0,35.0",  # has a lesion: not counted
    ])
    _evaluate_folder(tmp_path / "freeA", 0, 0, [
        "out,free_a,1,infarct,ok,,1,0,0",  # the same name in another set is another study
        "out,free_a,2,hemorrhage,ok,,0,2.0,0",
        "out,free_b,1,infarct,ok,,1,0,0",
        "union,free_b,1,infarct,ok,,0,99.0,0",  # another mode: not counted
    ])
    f = sc.lesion_free_by_class([tmp_path / "valA", tmp_path / "freeA", tmp_path / "absent"])
    assert f == {"n": 3, "fp_infarct_ml": 2.0, "fp_hemorrhage_ml": 1.0, "fp_ml": 3.0, "n_with_false_infarct": 1}
    assert sc.lesion_free_by_class([tmp_path / "absent"]) == {"n": 0}


def _row(inf_a=1.0, inf_b=1.0, fp_a=2.0, fp_b=2.0, dice=0.5, real=0.6, n=30):
    fam = lambda i, f: {"n": n, "fp_infarct_ml": i, "fp_hemorrhage_ml": f - i, "fp_ml": f}  # noqa: E731
    val = {"infarct_dice": dice, "hemorrhage_dice": dice}
    return {"val_A": dict(val), "val_B": dict(val), "lesion_free_A": fam(inf_a, fp_a),
            "lesion_free_B": fam(inf_b, fp_b), "real_upright": {"mean": real}}


def test_the_rule_never_trades_false_infarct_for_less_false_blood():
    default = _row(inf_a=1.0, inf_b=1.0, fp_a=3.0, fp_b=3.0)
    # p3avg's case: less false lesion in sum (more false infarct on B, much less false blood), better Dice
    cand = _row(inf_a=1.0, inf_b=2.0, fp_a=2.5, fp_b=2.5, dice=0.55, real=0.65)
    why = sc.judge(cand, default)
    assert len(why) == 1 and why[0].startswith("family B: false infarct 2.00 > 1.00")
    # within the tolerance, and less false lesion on the mean: it may replace the default
    assert sc.judge(_row(inf_a=1.05, inf_b=0.5, fp_a=3.5, fp_b=2.0), default) == []


def test_the_rule_asks_for_less_false_lesion_and_level_dice():
    default = _row()
    assert sc.judge(default, default) == ["false lesion not lower: A 2.00 vs 2.00, B 2.00 vs 2.00 mL per lesion-free study"]
    worse_dice = sc.judge(_row(fp_a=1.0, fp_b=1.0, dice=0.48), default)
    assert len(worse_dice) == 4 and all("Dice 0.480 < 0.500" in w for w in worse_dice)
    assert sc.judge(_row(fp_a=1.0, fp_b=1.0, dice=0.495, real=0.58), default) == [
        "real slices mean Dice 0.580 < 0.600 - 0.01"]
    # scored on other lesion-free studies than the default: not comparable, said so
    why = sc.judge(_row(fp_a=1.0, fp_b=1.0, n=6), default)
    assert len(why) == 2 and all("differ or are missing (6 against 30)" in w for w in why)

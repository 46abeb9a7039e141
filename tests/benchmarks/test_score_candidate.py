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

"""benchmarks/accuracy/infarct_floor.py: which studies a faint-infarct floor drops from a training list."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "benchmarks" / "accuracy"))

import infarct_floor as fl  # noqa: E402


def _dataset(root: Path, name: str, lesions: dict[str, list[dict]]) -> None:
    (root / name / "imagesTr").mkdir(parents=True)
    cases = [{"id": cid, "lesions": les} for cid, les in lesions.items()]
    (root / name / "manifest.json").write_text(json.dumps({"cases": cases}))


def _write_list(path: Path, rows: list[tuple[str, str]]) -> None:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["case", "image", "label"])
        for case, ds in rows:
            cid = case.split("_", 1)[1]
            w.writerow([case, f"{ds}/imagesTr/{cid}_0000.nii.gz", f"{ds}/labelsTr/{cid}.nii.gz"])


def _read(path: Path) -> list[str]:
    with open(path, newline="") as f:
        return [r["case"] for r in csv.DictReader(f)]


def _setup(tmp_path: Path) -> Path:
    inf = lambda d: {"class": 1, "kind": "territorial", "delta_hu": d}  # noqa: E731
    blood = {"class": 2, "kind": "subdural", "hu": 70.0}
    _dataset(tmp_path, "trainC", {"synth_0000": [inf(2.5)], "synth_0001": [inf(4.0)], "synth_0002": [blood]})
    _dataset(tmp_path, "trainM", {"synth_0000": [blood, inf(3.9)], "synth_0001": [], "synth_0002": [inf(12.0)]})
    lst = tmp_path / "mix.csv"
    _write_list(lst, [("C_synth_0000", "trainC"), ("C_synth_0001", "trainC"), ("C_synth_0002", "trainC"),
                      ("M_synth_0000", "trainM"), ("M_synth_0001", "trainM"), ("M_synth_0002", "trainM")])
    return lst


def test_a_study_goes_when_any_infarct_lies_below_the_floor_and_only_then(tmp_path):
    lst = _setup(tmp_path)
    assert fl.main([str(lst), "--min-delta-hu", "4", "--out", str(tmp_path / "d4.csv")]) == 0
    # 2.5 and 3.9 HU go (the 3.9 HU one with its blood); 4.0 HU is at the floor and stays
    assert _read(tmp_path / "d4.csv") == ["C_synth_0001", "C_synth_0002", "M_synth_0001", "M_synth_0002"]


def test_the_control_drops_as_many_other_studies_reproducibly(tmp_path):
    lst = _setup(tmp_path)
    for k in (1, 2):
        fl.main([str(lst), "--min-delta-hu", "4", "--control", "3", "--out", str(tmp_path / f"c{k}.csv")])
    kept = _read(tmp_path / "c1.csv")
    assert kept == _read(tmp_path / "c2.csv")
    assert len(kept) == 4 and {"C_synth_0000", "M_synth_0000"} <= set(kept)

"""Where does the study's midline fit go wrong? Its angle against the head's own long axis and the truth.

    python benchmarks/accuracy/midline_angle.py --set A=data/valA --set A=data/valA_none --set A=data/valA_free \
        --set B=data/valB --set B=data/valB_none --set B=data/valB_free --real --cache runs/rim_cache \
        --out runs/midline_val.json

For every study: the midline `darkness.study_midline` fits (the darkness warning's mirror term), the
brain's principal (long) axis over the same slices (second moments of the brain mask in mm), how
elongated the brain is (sqrt of the moments' ratio), and - for phantoms - the generator's yaw
(`manifest.json`, where the folder has one; every family-A/B yaw lies within 16 degrees of the
image's vertical axis, so a fitted line more than 45 degrees off it reflects front onto back). The real slices lie at 90 degrees
in their images; their truth is their long axis checked by eye (docs/results). VALIDATION data only
unless a test set is named, and then only to report.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/common.py
sys.path.insert(0, str(Path(__file__).resolve().parent))  # cached_out.py beside this file
from cached_out import phantom_studies, real_slices  # noqa: E402
from common import dump  # noqa: E402

from sdpm_cli.postprocess.darkness import study_midline  # noqa: E402
from sdpm_cli.preprocess.symmetry import fold_angle, long_axis  # noqa: E402


def _yaws(folder: Path) -> dict[str, float]:
    f = folder / "manifest.json"
    if not f.exists():
        return {}
    return {c["id"]: float(c.get("pose", {}).get("yaw_deg", 0.0)) for c in json.loads(f.read_text())["cases"]}


def row(name: str, case: str, hu: np.ndarray, brain: np.ndarray, pixel_mm: tuple[float, float], yaw) -> dict:
    line = study_midline(hu, brain, pixel_mm)
    axis = long_axis(brain, pixel_mm)
    fitted = None if line is None else float(fold_angle(np.degrees(np.arctan2(line.dx * pixel_mm[1], line.dy * pixel_mm[0]))))
    r = {"set": name, "case": case, "fitted_deg": fitted,
         "long_axis_deg": None if axis is None else round(axis[0], 2),
         "elongation": None if axis is None else round(axis[1], 4), "yaw_deg": yaw}
    if fitted is not None and axis is not None:
        r["fit_vs_axis_deg"] = round(abs(float(fold_angle(fitted - axis[0]))), 2)
    if fitted is not None and name != "real":  # a phantom: its yaw lies within 16 degrees of vertical
        r["fit_vs_vertical_deg"] = round(abs(fitted), 2)
    return r


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--set", action="append", default=[], help="FAMILY=FOLDER (repeatable)")
    ap.add_argument("--real", action="store_true", help="also the 12 real slices (validation)")
    ap.add_argument("--model", default=None, help="for studies not in --cache (default: the shipped model)")
    ap.add_argument("--cache", default="runs/rim_cache")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()

    import SimpleITK as sitk

    from sdpm_cli.pipeline import load_model

    lm = load_model(args.model, "cpu")[0]
    cache = Path(args.cache)
    rows = []
    for spec in args.set:
        fam, folder = spec.split("=", 1)
        yaws = _yaws(Path(folder))
        for name, case, img, _truth, d in phantom_studies(lm, [f"{fam}={folder}"], cache):
            sx, sy = img.GetSpacing()[:2]
            r = row(name, case, sitk.GetArrayViewFromImage(img), d["brain"], (sy, sx), yaws.get(case))
            rows.append(r)
            print(json.dumps(r), flush=True)
    if args.real:
        for case, col, _truth, d in real_slices(lm, cache):
            sx, sy = col.GetSpacing()[:2]
            r = row("real", case, sitk.GetArrayViewFromImage(col), d["brain"], (sy, sx), None)
            rows.append(r)
            print(json.dumps(r), flush=True)
    phantoms = [r for r in rows if r.get("fit_vs_vertical_deg") is not None]
    summary = {
        "phantoms": len(phantoms),
        "front_back_fits": [r["case"] for r in phantoms if r["fit_vs_vertical_deg"] > 45.0],
        "long_axis_off_vertical_max_deg": max((abs(r["long_axis_deg"]) for r in phantoms), default=None),
        "elongation_min": min((r["elongation"] for r in rows if r["elongation"] is not None), default=None),
        "fit_vs_axis_max_deg_true_fits": max((r["fit_vs_axis_deg"] for r in phantoms if r["fit_vs_vertical_deg"] <= 45.0),
                                             default=None),
    }
    print(json.dumps(summary))
    dump({"rows": rows, "summary": summary}, Path(args.out))


if __name__ == "__main__":
    main()

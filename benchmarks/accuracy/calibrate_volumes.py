"""Calibrate the volume interval of a model on validation studies, and measure its coverage elsewhere.

    # 1. segment validation studies of both phantom families with the model (all modes in one pass)
    sdpm evaluate --data data/val_setA --model M.pt --modes out,salient,infer,union --out runs/cal/valA
    sdpm evaluate --data data/val_setB --model M.pt --modes out,salient,infer,union --out runs/cal/valB
    # 2. fit the split-conformal error model per mode and class, write it into the checkpoint
    python benchmarks/accuracy/calibrate_volumes.py --calibrate runs/cal/valA,runs/cal/valB \
        --source "validation phantoms of families A and B (44 studies)" --write M.pt
    # 2b. or with the 12 real slices in the calibration too (their coverage then leave-one-patient-out)
    python benchmarks/accuracy/calibrate_volumes.py --calibrate runs/cal/valA,runs/cal/valB \
        --calibrate-real runs/real.json --source "..." --write M.pt
    # 3. coverage on held-out sets (evaluate folders) and on the real slices (real_slices.py JSON)
    python benchmarks/accuracy/calibrate_volumes.py --model M.pt --check "A=runs/testA" --check "B=runs/testB" \
        --real runs/real.json --out runs/coverage.json

The error model is postprocess.uncertainty (interval = V + [q_lo, q_hi] * (band + 0.1 V + 0.5 mL)).
Coverage is the fraction of (study, class) pairs whose true volume lies inside the interval, given
over every study and over the studies that hold the class; with n pairs a coverage p has a binomial
standard error sqrt(p (1 - p) / n), printed beside it.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))

from sdpm_cli.labels import CLASSES  # noqa: E402
from sdpm_cli.postprocess.uncertainty import (  # noqa: E402
    DEFAULT_LEVEL,
    ClassCalibration,
    VolumeCalibration,
    calibrate_class,
    coverage,
)


def read_rows(folder: Path) -> list[dict]:
    """Rows of an evaluate folder's per_case.csv with a band (i.e. segmented by the model), ok status."""
    with open(Path(folder) / "per_case.csv", newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r["status"] == "ok" and r.get("band_ml") not in (None, "")]
    for r in rows:
        for k in ("vol_pred_ml", "vol_truth_ml", "band_ml"):
            r[k] = float(r[k])
    return rows


def fit(rows: list[dict], level: float, source: str, floors: dict | None = None) -> VolumeCalibration:
    """Per mode and class; `floors` (class name -> mL) replaces the scale's default floor for a class."""
    floors = floors or {}
    classes: dict[str, dict[str, ClassCalibration]] = {}
    for mode in sorted({r["mode"] for r in rows}):
        for name in CLASSES.values():
            sel = [r for r in rows if r["mode"] == mode and r["lesion_class"] == name]
            if sel:
                classes.setdefault(mode, {})[name] = calibrate_class(
                    [r["vol_pred_ml"] for r in sel], [r["vol_truth_ml"] for r in sel], [r["band_ml"] for r in sel],
                    level=level, **({"floor_ml": floors[name]} if name in floors else {}))
    return VolumeCalibration(level=level, source=source, classes=classes)


def coverage_table(cal: VolumeCalibration, sets: dict[str, list[dict]]) -> list[dict]:
    """Per set, mode and class: coverage over all studies and over studies holding the class."""
    out = []
    for set_name, rows in sets.items():
        for mode in sorted({r["mode"] for r in rows}):
            for name in CLASSES.values():
                c = cal.get(mode, name)
                sel = [r for r in rows if r["mode"] == mode and r["lesion_class"] == name]
                if c is None or not sel:
                    continue
                pos = [r for r in sel if r["vol_truth_ml"] > 0]
                cols = lambda rs: ([r["vol_pred_ml"] for r in rs], [r["vol_truth_ml"] for r in rs],  # noqa: E731
                                   [r["band_ml"] for r in rs])
                widths = sorted(np.subtract(*c.interval(r["vol_pred_ml"], r["band_ml"])[::-1]) for r in pos)
                out.append({"set": set_name, "mode": mode, "class": name, "n": len(sel),
                            "coverage": coverage(c, *cols(sel)),
                            "n_with_class": len(pos),
                            "coverage_with_class": coverage(c, *cols(pos)) if pos else None,
                            "median_width_ml_with_class": float(widths[len(widths) // 2]) if pos else None})
    return out


def real_rows(path: Path) -> list[dict]:
    """real_slices.py JSON -> rows like read_rows (hemorrhage only: the slices' masks hold no infarct)."""
    res = json.loads(Path(path).read_text())
    res = res.get("real", res)  # generalisation.py's results.json holds it under "real"
    rows = []
    for case in res["cases"]:
        for k in case:
            if k.startswith("band_"):
                m = k[len("band_"):]
                rows.append({"mode": m, "case": case["case"], "lesion_class": "hemorrhage",
                             "vol_pred_ml": float(case[f"vol_{m}"]), "vol_truth_ml": float(case["vol_truth_ml"]),
                             "band_ml": float(case[k])})
    return rows


def patient_of(case: str) -> str:
    """CT-ICH slices are named PPP_SS (patient, slice): slices of one patient are held out together."""
    return case.split("/")[-1].split("_")[0]


def leave_one_patient_out(phantom_rows: list[dict], real: list[dict], level: float, floors: dict | None = None) -> list[dict]:
    """Coverage on the real slices when each patient's slices are left out of the calibration (fitted
    on the phantoms and the other patients): the honest figure for a calibration that uses them."""
    held = []
    for p in sorted({patient_of(r["case"]) for r in real}):
        rest = [r for r in real if patient_of(r["case"]) != p]
        cal = fit(phantom_rows + rest, level, "", floors)
        mine = [r for r in real if patient_of(r["case"]) == p]
        for r in mine:
            c = cal.get(r["mode"], r["lesion_class"])
            lo, hi = c.interval(r["vol_pred_ml"], r["band_ml"])
            held.append({**r, "covered": coverage(c, [r["vol_pred_ml"]], [r["vol_truth_ml"]], [r["band_ml"]]) == 1.0,
                         "width_ml": hi - lo})
    out = []
    for mode in sorted({r["mode"] for r in held}):
        sel = [r for r in held if r["mode"] == mode]
        widths = sorted(r["width_ml"] for r in sel)
        cov = float(np.mean([r["covered"] for r in sel]))
        out.append({"set": "real slices, leave one patient out", "mode": mode, "class": "hemorrhage", "n": len(sel),
                    "coverage": cov, "n_with_class": len(sel), "coverage_with_class": cov,
                    "median_width_ml_with_class": float(widths[len(widths) // 2])})
    return out


def _fmt(row: dict) -> str:
    def cov(p, n):
        return "-" if p is None else f"{p:.3f} ± {math.sqrt(max(p * (1 - p), 1e-12) / n):.3f} (n {n})"

    w = row["median_width_ml_with_class"]
    return (f"| {row['set']} | {row['mode']} | {row['class']} | {cov(row['coverage'], row['n'])} | "
            f"{cov(row['coverage_with_class'], row['n_with_class'])} | {'-' if w is None else f'{w:.1f}'} |")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--calibrate", default=None, help="comma-separated evaluate folders to fit on")
    ap.add_argument("--level", type=float, default=DEFAULT_LEVEL)
    ap.add_argument("--source", default="", help="what the calibration studies are (said in every report)")
    ap.add_argument("--write", default=None, help="write the calibration into this checkpoint")
    ap.add_argument("--floor-ml", action="append", default=[], metavar="CLASS=ML",
                    help="the scale's floor for a class (default 0.5 mL): what a '0 mL' answer may have missed")
    ap.add_argument("--merge", action="store_true",
                    help="with --write: keep the checkpoint's calibration of the modes not fitted here (say both in --source)")
    ap.add_argument("--model", default=None, help="read the calibration from this checkpoint (instead of fitting)")
    ap.add_argument("--check", action="append", default=[], help="NAME=evaluate folder to measure coverage on")
    ap.add_argument("--real", default=None, help="real_slices.py JSON to measure coverage on")
    ap.add_argument("--calibrate-real", default=None,
                    help="real_slices.py (or generalisation.py) JSON whose slices join the calibration; their "
                         "coverage is then measured leaving one patient out at a time")
    ap.add_argument("--out", default=None, help="write the coverage table (JSON) here")
    a = ap.parse_args(argv)

    real_cal: list[dict] = []  # real slices in the calibration (--calibrate-real)
    if a.calibrate:
        rows = [{**r, "case": f"{f}/{r['case']}"} for f in a.calibrate.split(",") for r in read_rows(Path(f))]
        if a.calibrate_real:
            real_cal = [{**r, "case": f"real/{r['case']}"} for r in real_rows(Path(a.calibrate_real))]
        floors = {k: float(v) for k, _, v in (f.partition("=") for f in a.floor_ml)}
        cal = fit(rows + real_cal, a.level, a.source or a.calibrate, floors)
        print(f"calibrated on {len({r['case'] for r in rows + real_cal})} studies: {cal.source}")
        for m, per in cal.classes.items():
            for name, c in per.items():
                print(f"  {m:8s} {name:11s} q_lo {c.q_lo:+.3f}  q_hi {c.q_hi:+.3f}  (n {c.n})")
        if a.write:
            from sdpm_cli.model.checkpoint import read_header, update_header

            post = dict(read_header(a.write).get("postprocess") or {})
            if a.merge:  # refit some modes only: the checkpoint's other modes keep their calibration
                old = VolumeCalibration.from_dict(post.get("volume_calibration"))
                if old is not None:
                    if old.level != cal.level:
                        raise SystemExit("--merge: the checkpoint's calibration has another level")
                    cal = VolumeCalibration(level=cal.level, source=cal.source,
                                            classes={**dict(old.classes), **dict(cal.classes)})
            post["volume_calibration"] = cal.to_dict()
            update_header(a.write, {"postprocess": post}, force=True)
            print(f"wrote the calibration into {a.write}")
    elif a.model:
        from sdpm_cli.model.checkpoint import read_header

        cal = VolumeCalibration.from_dict((read_header(a.model).get("postprocess") or {}).get("volume_calibration"))
        if cal is None:
            print(f"{a.model} carries no volume calibration", file=sys.stderr)
            return 2
    else:
        ap.error("give --calibrate FOLDERS or --model M.pt")

    sets = {}
    for spec in a.check:
        name, _, folder = spec.partition("=")
        sets[name] = read_rows(Path(folder))
    if a.real:
        sets["real slices"] = real_rows(Path(a.real))
    if sets or real_cal:
        table = coverage_table(cal, sets)
        if real_cal:
            table += leave_one_patient_out(rows, real_cal, a.level, floors)
        print("\n| data | mode | class | coverage, all studies | coverage, studies with the class | median width mL |")
        print("|---|---|---|---|---|---|")
        for row in table:
            print(_fmt(row))
        if a.out:
            Path(a.out).write_text(json.dumps({"level": cal.level, "source": cal.source, "coverage": table}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

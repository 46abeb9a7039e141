"""Choose a model's lesion filter (postprocess.components) on VALIDATION studies, never the test set.

    python benchmarks/accuracy/postprocess.py --model models/sdpm-default.pt \
        --data data/val,data/val_none --mode out --write models/sdpm-default.pt

Segments every case once with the filter off, then scores each candidate rule per class on the
native grid: mean Dice over the cases that have the class, mean false-positive mL of that class on
studies without it, and the share of true-positive volume kept. The rule chosen per class is the one
with the lowest false-positive volume among those whose mean Dice is within --dice-tolerance of the
best candidate's (ties: the smallest thresholds). `--write` stores it in the checkpoint header
(`postprocess.lesion_filter`; the weights and their sha256 are unchanged).
"""

from __future__ import annotations

import argparse
import itertools
import json
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import torch

from sdpm_cli.evaluate.cases import dataset_cases
from sdpm_cli.labels import CLASSES
from sdpm_cli.model.checkpoint import update_header
from sdpm_cli.pipeline import load_model, segment_study
from sdpm_cli.postprocess.components import ComponentRule, LesionFilter, component_keep, filter_class_masks


def _floats(s: str) -> list[float]:
    return [float(v) for v in s.split(",") if v.strip()]


def apply_folder(flt: LesionFilter, src: Path, dst: Path) -> None:
    """Filter every label file of `src` into `dst` (the same rule the pipeline applies to SDPM)."""
    dst.mkdir(parents=True, exist_ok=True)
    for f in sorted(src.glob("*.nii.gz")):
        img = sitk.ReadImage(str(f))
        lab = sitk.GetArrayFromImage(img)
        masks = np.stack([lab == c for c in CLASSES])
        keep = filter_class_masks(masks, flt, float(np.prod(img.GetSpacing())) / 1000.0, float(img.GetSpacing()[2]))
        out = np.zeros_like(lab)
        for i, c in enumerate(CLASSES):
            out[keep[i]] = c
        o = sitk.GetImageFromArray(out)
        o.CopyInformation(img)
        sitk.WriteImage(o, str(dst / f.name), useCompression=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None, help="checkpoint (default: the shipped model)")
    ap.add_argument("--data", required=True, help="comma-separated nnU-Net folders (imagesTs/labelsTs) of validation studies")
    ap.add_argument("--mode", default="out")
    ap.add_argument("--pred", default=None,
                    help="comma-separated folders of predicted label files, one per --data folder (e.g. a MONAI "
                         "baseline's predictions): score these instead of segmenting with --model")
    ap.add_argument("--min-ml", default="0,0.5,1,2,5", help="candidate volume thresholds (mL)")
    ap.add_argument("--min-extent-mm", default="0,10,15,20,25", help="candidate slice-extent thresholds (mm)")
    ap.add_argument("--dice-tolerance", type=float, default=0.01)
    ap.add_argument("--out", default="runs/postprocess.json", help="the full table as JSON")
    ap.add_argument("--write", default=None, help="write the chosen filter into this checkpoint (may be --model)")
    ap.add_argument("--apply-to", default=None, help="a folder of predicted label files (e.g. a baseline's test "
                    "predictions) to filter with the chosen rule ...")
    ap.add_argument("--apply-out", default=None, help="... into this folder (same file names)")
    args = ap.parse_args()
    torch.set_num_threads(2)
    lm = None if args.pred else load_model(args.model, "cpu")[0]
    pred_dirs = args.pred.split(",") if args.pred else [None] * len(args.data.split(","))
    cands = [ComponentRule(min_ml=a, min_extent_mm=b) for a, b in itertools.product(_floats(args.min_ml), _floats(args.min_extent_mm))]
    # per class, per candidate: lists of per-case Dice (cases with the class) and FP mL (cases without)
    dice = {c: [[] for _ in cands] for c in CLASSES}
    fp = {c: [[] for _ in cands] for c in CLASSES}
    kept = {c: np.zeros(len(cands)) for c in CLASSES}
    tp_total = {c: 0.0 for c in CLASSES}
    t0 = time.perf_counter()
    n = 0
    for folder, pred_dir in zip(args.data.split(","), pred_dirs):
        for pair in dataset_cases(Path(folder), "test"):
            if pred_dir is None:
                labels = segment_study(pair.image, model=lm, mode=args.mode, seed=0, lesion_filter={}).labels
            else:
                labels = sitk.ReadImage(str(Path(pred_dir) / f"{pair.case}.nii.gz"))
            pred = sitk.GetArrayFromImage(labels)
            truth = sitk.GetArrayFromImage(sitk.ReadImage(str(pair.truth)))
            voxel_ml = float(np.prod(labels.GetSpacing())) / 1000.0
            dz = float(labels.GetSpacing()[2])
            for c in CLASSES:
                t = truth == c
                tp_total[c] += np.count_nonzero(t & (pred == c)) * voxel_ml
                for i, rule in enumerate(cands):
                    p = component_keep(pred == c, rule, voxel_ml, dz)
                    if t.any():
                        dice[c][i].append(2 * np.count_nonzero(p & t) / (np.count_nonzero(p) + np.count_nonzero(t)))
                    else:
                        fp[c][i].append(np.count_nonzero(p) * voxel_ml)
                    kept[c][i] += np.count_nonzero(p & t) * voxel_ml
            n += 1
            print(f"{folder}/{pair.case} done ({time.perf_counter() - t0:.0f} s)", flush=True)
    table, chosen = {}, {}
    for c, name in CLASSES.items():
        rows = []
        for i, rule in enumerate(cands):
            rows.append({"min_ml": rule.min_ml, "min_extent_mm": rule.min_extent_mm,
                         "dice": float(np.mean(dice[c][i])) if dice[c][i] else None,
                         "fp_ml": float(np.mean(fp[c][i])) if fp[c][i] else None,
                         "tp_kept": float(kept[c][i] / tp_total[c]) if tp_total[c] else None,
                         "n_with": len(dice[c][i]), "n_without": len(fp[c][i])})
        table[name] = rows
        best = max((r["dice"] or 0.0) for r in rows)
        ok = [r for r in rows if (r["dice"] or 0.0) >= best - args.dice_tolerance]
        pick = min(ok, key=lambda r: ((r["fp_ml"] or 0.0), r["min_ml"], r["min_extent_mm"]))
        chosen[name] = {"min_ml": pick["min_ml"], "min_extent_mm": pick["min_extent_mm"]}
        print(f"\n{name}: {'min mL':>7} {'min mm':>7} {'Dice':>6} {'FP mL':>7} {'TP kept':>8}")
        for r in rows:
            mark = " <- chosen" if r is pick else ""
            print(f"{'':{len(name) + 1}} {r['min_ml']:7.1f} {r['min_extent_mm']:7.0f} {r['dice'] or 0:6.3f} "
                  f"{r['fp_ml'] or 0:7.2f} {r['tp_kept'] or 0:8.3f}{mark}")
    result = {"model": str(lm.path) if lm else None, "pred": args.pred, "sha256": lm.sha256 if lm else None, "data": args.data, "mode": args.mode, "n_cases": n,
              "dice_tolerance": args.dice_tolerance, "chosen": chosen, "table": table}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1))
    print(f"\nchosen: {json.dumps(chosen)}; table in {args.out}")
    if args.apply_to and args.apply_out:
        apply_folder(LesionFilter.from_dict(chosen), Path(args.apply_to), Path(args.apply_out))
        print(f"filtered {args.apply_to} -> {args.apply_out}")
    if args.write and lm is not None:
        post = dict(lm.header.get("postprocess") or {})
        post["lesion_filter"] = chosen
        post["lesion_filter_chosen_on"] = {"data": [Path(d).name for d in args.data.split(",")], "mode": args.mode,
                                           "n_cases": n, "rule": f"lowest FP mL with Dice within {args.dice_tolerance} of the best"}
        update_header(lm.path, {"postprocess": post}, out=args.write, force=True)
        print(f"wrote the filter into {args.write}")


if __name__ == "__main__":
    main()

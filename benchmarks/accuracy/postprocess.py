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
from typing import Optional

import numpy as np
import SimpleITK as sitk
import torch

from sdpm_cli.errors import InputRejected
from sdpm_cli.evaluate.cases import dataset_cases
from sdpm_cli.labels import CLASSES
from sdpm_cli.model.checkpoint import update_header
from sdpm_cli.pipeline import load_model, segment_study
from sdpm_cli.postprocess.components import ComponentRule, LesionFilter, component_table, filter_class_masks
from sdpm_cli.postprocess.symmetry import mirror_context


N_COLS = 5  # voxels, extent mm, peak probability, mirror contrast HU, voxels shared with the truth


def _floats(s: str) -> list[float]:
    return [float(v) for v in s.split(",") if v.strip()]


def _optional_floats(s: str) -> list[Optional[float]]:
    """'none,0,5' -> [None, 0.0, 5.0] (none: the criterion off)."""
    return [None if v.strip().lower() == "none" else float(v) for v in s.split(",") if v.strip()]


def _old_table(comps: list) -> np.ndarray:
    """A component table of an earlier --out JSON; 4-column tables predate the mirror column."""
    a = np.array(comps, float)
    if a.size and a.reshape(len(a), -1).shape[1] == 4:
        a = np.insert(a.reshape(len(a), 4), 3, np.nan, axis=1)
    return a.reshape(-1, N_COLS)


def _components(pred: np.ndarray, truth: np.ndarray, prob, voxel_ml: float, dz: float, mirror=None, label: int = 0) -> dict:
    """Per component of `pred` (postprocess.components.component_table): [voxels, slice extent mm,
    peak probability (NaN without `prob`), mirror contrast in the class's direction (NaN without
    `mirror` or unknown), voxels also in `truth`]; and the truth's size."""
    lab, stats = component_table(pred, dz, prob, mirror, label)
    shared = np.bincount(lab[truth].ravel(), minlength=len(stats) + 1)[1:]
    return {"comps": np.column_stack([stats, shared]) if len(stats) else np.zeros((0, N_COLS)),
            "truth_vox": int(np.count_nonzero(truth)), "voxel_ml": voxel_ml}


def _score(cases: list[dict], rule: ComponentRule) -> tuple[list[float], list[float], float]:
    """One rule on a class's component tables: Dice per case with the class, false-positive mL per
    case without it, and the true-positive mL kept."""
    dice, fp, kept = [], [], 0.0
    for case in cases:
        comps, vml = case["comps"], case["voxel_ml"]
        keep = np.array([rule.passes(int(k[0]), vml, k[1], None if np.isnan(k[2]) else float(k[2]), float(k[3]))
                         for k in comps], bool)
        p_vox, tp = float(comps[keep, 0].sum()), float(comps[keep, 4].sum())
        if case["truth_vox"]:
            dice.append(2 * tp / (p_vox + case["truth_vox"]))
        else:
            fp.append(p_vox * vml)
        kept += tp * vml
    return dice, fp, kept


def _fmt(v: dict) -> str:
    dice = "-" if v["dice"] is None else f"{v['dice']:.3f}"
    fp = "-" if v["fp_ml"] is None else f"{v['fp_ml']:.2f}"
    return f"Dice {dice} (n {v['n_with']}), FP {fp} mL (n {v['n_without']})"


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
    ap.add_argument("--min-peak-prob", default="0,0.6,0.7,0.8,0.9",
                    help="candidate peak-probability thresholds (the component's most confident voxel)")
    ap.add_argument("--min-mirror-contrast", default="none",
                    help="candidate mirror-contrast thresholds in HU (postprocess.symmetry; 'none' = off), e.g. none,0,5,10; "
                         "'CLASS:none,0,5' gives them to one class only (the others: off)")
    ap.add_argument("--from-tables", default=None, help="an earlier --out JSON: score its components again (no segmenting)")
    ap.add_argument("--dice-tolerance", type=float, default=0.01)
    ap.add_argument("--device", default="cpu", help="where the model runs (cpu | cuda | auto)")
    ap.add_argument("--out", default="runs/postprocess.json", help="the full table as JSON")
    ap.add_argument("--write", default=None, help="write the chosen filter into this checkpoint (may be --model)")
    ap.add_argument("--apply-to", default=None, help="a folder of predicted label files (e.g. a baseline's test "
                    "predictions) to filter with the chosen rule ...")
    ap.add_argument("--apply-out", default=None, help="... into this folder (same file names)")
    args = ap.parse_args()
    if args.device == "cpu":
        torch.set_num_threads(2)
    lm = None if args.pred else load_model(args.model, args.device)[0]  # (--from-tables: its header is still written)
    pred_dirs = args.pred.split(",") if args.pred else [None] * len(args.data.split(","))
    peaks = _floats(args.min_peak_prob) if lm is not None else [0.0]  # label files carry no probability
    only, _, spec = args.min_mirror_contrast.rpartition(":")
    mirrors = _optional_floats(spec) if lm is not None else [None]  # label files carry no HU
    cands = [ComponentRule(min_ml=a, min_extent_mm=b, min_peak_prob=q, min_mirror_contrast_hu=y)
             for a, b, q, y in itertools.product(_floats(args.min_ml), _floats(args.min_extent_mm), peaks, mirrors)]
    judge_mirror = any(y is not None for y in mirrors)

    def candidates(name: str) -> list[ComponentRule]:
        return cands if not only or only == name else [r for r in cands if r.min_mirror_contrast_hu is None]
    # one table per class: every predicted component of every case (size, extent, peak probability,
    # voxels shared with the truth) and every case's truth size; a candidate is then a lookup
    tables = {c: [] for c in CLASSES}
    t0 = time.perf_counter()
    n = 0
    refused: list[str] = []
    if args.from_tables:  # an earlier run's components: try other candidates without segmenting again
        old = json.loads(Path(args.from_tables).read_text())
        tables = {c: [{**case, "comps": _old_table(case["comps"])} for case in old["components"][name]]
                  for c, name in CLASSES.items()}
        n, refused = old["n_cases"], old.get("refused", [])
    for folder, pred_dir in ([] if args.from_tables else zip(args.data.split(","), pred_dirs)):
        for pair in dataset_cases(Path(folder), "test"):
            prob = None
            if pred_dir is None:
                try:
                    seg = segment_study(pair.image, model=lm, mode=args.mode, seed=0, lesion_filter={})
                except InputRejected as exc:  # the product refuses it: nothing to choose a filter on
                    refused.append(f"{pair.case}: {exc}")
                    print(f"{folder}/{pair.case} refused by the ingest: {exc}", flush=True)
                    continue
                labels, prob = seg.labels, np.asarray(seg.probs)
                # the mirror contrast on the native grid (the pipeline measures it on the model grid;
                # re-measure a chosen rule end to end)
                mirror = (mirror_context(sitk.GetArrayFromImage(seg.study.image), sitk.GetArrayFromImage(seg.brain) > 0,
                                         seg.labels.GetSpacing()[1::-1]) if judge_mirror else None)
            else:
                labels = sitk.ReadImage(str(Path(pred_dir) / f"{pair.case}.nii.gz"))
                mirror = None
            pred = sitk.GetArrayFromImage(labels)
            truth = sitk.GetArrayFromImage(sitk.ReadImage(str(pair.truth)))
            voxel_ml = float(np.prod(labels.GetSpacing())) / 1000.0
            dz = float(labels.GetSpacing()[2])
            for c in CLASSES:
                tables[c].append({**_components(pred == c, truth == c, None if prob is None else prob[c - 1], voxel_ml, dz,
                                                mirror, c),
                                  "folder": folder})
            n += 1
            print(f"{folder}/{pair.case} done ({time.perf_counter() - t0:.0f} s)", flush=True)
    per_class = {c: candidates(name) for c, name in CLASSES.items()}
    dice = {c: [[] for _ in per_class[c]] for c in CLASSES}
    fp = {c: [[] for _ in per_class[c]] for c in CLASSES}
    kept = {c: np.zeros(len(per_class[c])) for c in CLASSES}
    tp_total = {c: sum(float(case["comps"][:, 4].sum()) * case["voxel_ml"] for case in tables[c]) for c in CLASSES}
    for c in CLASSES:
        for i, rule in enumerate(per_class[c]):
            dice[c][i], fp[c][i], kept[c][i] = _score(tables[c], rule)
    table, chosen = {}, {}
    for c, name in CLASSES.items():
        rows = []
        for i, rule in enumerate(per_class[c]):
            rows.append({"min_ml": rule.min_ml, "min_extent_mm": rule.min_extent_mm, "min_peak_prob": rule.min_peak_prob,
                         "min_mirror_contrast_hu": rule.min_mirror_contrast_hu,
                         "dice": float(np.mean(dice[c][i])) if dice[c][i] else None,
                         "fp_ml": float(np.mean(fp[c][i])) if fp[c][i] else None,
                         "tp_kept": float(kept[c][i] / tp_total[c]) if tp_total[c] else None,
                         "n_with": len(dice[c][i]), "n_without": len(fp[c][i])})
        table[name] = rows
        best = max((r["dice"] or 0.0) for r in rows)
        ok = [r for r in rows if (r["dice"] or 0.0) >= best - args.dice_tolerance]
        pick = min(ok, key=lambda r: ((r["fp_ml"] or 0.0), r["min_ml"], r["min_extent_mm"], r["min_peak_prob"],
                                      -np.inf if r["min_mirror_contrast_hu"] is None else r["min_mirror_contrast_hu"]))
        chosen[name] = ComponentRule(pick["min_ml"], pick["min_extent_mm"], pick["min_peak_prob"], pick["min_mirror_contrast_hu"])
        print(f"\n{name}: {'min mL':>7} {'min mm':>7} {'peak p':>6} {'mirror':>6} {'Dice':>6} {'FP mL':>7} {'TP kept':>8}")
        for r in rows:
            mark = " <- chosen" if r is pick else ""
            y = "off" if r["min_mirror_contrast_hu"] is None else f"{r['min_mirror_contrast_hu']:.0f}"
            print(f"{'':{len(name) + 1}} {r['min_ml']:7.1f} {r['min_extent_mm']:7.0f} {r['min_peak_prob']:6.2f} {y:>6} {r['dice'] or 0:6.3f} "
                  f"{r['fp_ml'] or 0:7.2f} {r['tp_kept'] or 0:8.3f}{mark}")
    by_folder = {}  # the chosen rule on each data folder alone (families apart)
    for c, name in CLASSES.items():
        for folder in dict.fromkeys(case.get("folder") for case in tables[c]):
            if folder is None:
                continue  # tables of an earlier run without folders
            d, f, _ = _score([case for case in tables[c] if case.get("folder") == folder], chosen[name])
            by_folder.setdefault(folder, {})[name] = {"dice": float(np.mean(d)) if d else None, "n_with": len(d),
                                                      "fp_ml": float(np.mean(f)) if f else None, "n_without": len(f)}
    if by_folder:
        print("\nthe chosen rules per data folder (Dice over studies with the class; FP mL over studies without):")
        for folder, per in by_folder.items():
            print(f"  {folder}: " + "; ".join(f"{name} {_fmt(v)}" for name, v in per.items()))
    chosen = LesionFilter(chosen).to_dict()  # the header's form (no peak criterion: no key)
    result = {"model": str(lm.path) if lm else None, "pred": args.pred, "sha256": lm.sha256 if lm else None, "data": args.data, "mode": args.mode, "n_cases": n,
              "dice_tolerance": args.dice_tolerance, "chosen": chosen, "table": table, "by_folder": by_folder, "refused": refused,
              "components": {name: [{**case, "comps": case["comps"].tolist()} for case in tables[c]] for c, name in CLASSES.items()}}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1))
    print(f"\nchosen: {json.dumps(chosen)}; table in {args.out}" + (f"; {len(refused)} study(ies) refused by the ingest" if refused else ""))
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

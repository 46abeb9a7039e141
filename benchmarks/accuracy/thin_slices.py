"""Thin slices: the same synthetic heads scanned at 1 mm and at 5 mm, segmented with the shipped model.

For each seed, `sdpm synth`'s generator makes the same head, pose and lesions at two slice
thicknesses (its random streams are independent of the protocol). Each scan is segmented (`out`)
three ways: 1 mm read in 5 mm slabs (the default), 1 mm read slice by slice (slabs off, what the
previous release did), and the 5 mm scan itself. Reported per case: Dice against that scan's own
truth, volume error, and time. Data family: synthetic phantoms from the training generator.

    python benchmarks/accuracy/thin_slices.py --seeds 900-905 --matrix 256 --out runs/thin.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))


def dice(a: np.ndarray, b: np.ndarray) -> float:
    s = int(a.sum()) + int(b.sum())
    return float("nan") if s == 0 else 2.0 * int((a & b).sum()) / s


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", default="900-905")
    ap.add_argument("--matrix", type=int, default=256)
    ap.add_argument("--domain", default="clinical")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--model", default=None)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    from sdpm_cli.ingest import load_study
    from sdpm_cli.labels import CLASSES
    from sdpm_cli.pipeline import load_model, segment_study
    from sdpm_cli.synth import SynthConfig, generate_case

    lo, hi = (int(v) for v in args.seeds.split("-"))
    lm, _ = load_model(args.model, "cpu")
    lm_noslab = dataclasses.replace(lm, plan=dataclasses.replace(lm.plan, thin_slice_mm=0.0))
    rows = []
    tmp = args.out.parent / "thin_cases"
    tmp.mkdir(parents=True, exist_ok=True)
    for seed in range(lo, hi + 1):
        for thk in (1.0, 5.0):
            cfg = SynthConfig(matrix=args.matrix, thicknesses_mm=(thk,), thickness_weights=(1.0,), domain=args.domain)
            case = generate_case(seed, cfg)
            p = tmp / f"s{seed}_{thk:g}mm.nii.gz"
            sitk.WriteImage(case.image, str(p))
            truth = sitk.GetArrayFromImage(case.label)
            voxel_ml = float(np.prod(case.image.GetSpacing())) / 1000.0
            study = load_study(p)
            for how, model in (("slabs", lm), ("slice by slice", lm_noslab)) if thk < 2 else (("native", lm),):
                t0 = time.perf_counter()
                seg = segment_study(study, model=model, mode="out", seed=0)
                dt = time.perf_counter() - t0
                got = sitk.GetArrayFromImage(seg.labels)
                row = {"seed": seed, "thickness_mm": thk, "read": how, "time_s": dt, "n_slices": int(truth.shape[0])}
                for label, name in CLASSES.items():
                    row[f"{name}_dice"] = dice(truth == label, got == label)
                    row[f"{name}_true_ml"] = float((truth == label).sum() * voxel_ml)
                    row[f"{name}_ml"] = float(seg.volumes[name].volume_ml)
                rows.append(row)
                print(json.dumps({k: (round(v, 3) if isinstance(v, float) else v) for k, v in row.items()}), flush=True)
    args.out.write_text(json.dumps(rows, indent=2))
    print("\n| scan | read as | cases | infarct Dice | hemorrhage Dice | mean abs volume error (mL) | time per study (s) |")
    print("|---|---|---|---|---|---|---|")
    for key in dict.fromkeys((r["thickness_mm"], r["read"]) for r in rows):
        rs = [r for r in rows if (r["thickness_mm"], r["read"]) == key]
        d = {n: np.nanmean([r[f"{n}_dice"] for r in rs]) for n in CLASSES.values()}
        err = np.mean([abs(r[f"{n}_ml"] - r[f"{n}_true_ml"]) for r in rs for n in CLASSES.values()])
        print(f"| {key[0]:g} mm | {key[1]} | {len(rs)} | {d['infarct']:.3f} | {d['hemorrhage']:.3f} | {err:.2f} | "
              f"{np.mean([r['time_s'] for r in rs]):.1f} |")


if __name__ == "__main__":
    main()

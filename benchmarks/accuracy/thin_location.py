"""Thin series: does the lesion location class need a brain mask of every thin source slice?

    python benchmarks/accuracy/thin_location.py --seeds 920-939 --matrix 256 --out runs/thin_location.json

A thin series (< 2 mm) is read in ~5 mm slabs; the report's location classes (postprocess.location)
need an intracranial mask on the source grid. Computed on every thin source slice it costs most of a
thin study's report (5.9 s of 7.0 on a 259-slice 512 x 512 study); the mask `prepare` already made on
the slabs, expanded to their source slices, costs nothing. For each seed, `sdpm synth` makes a thin
head (1 mm, hemorrhage of every kind and infarcts: the training generator's family, clinical domain)
and every TRUE lesion is classified with both masks (no model involved): the classes are compared
lesion by lesion, with the time of each mask.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/common.py
from common import dump  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", default="920-939")
    ap.add_argument("--matrix", type=int, default=256)
    ap.add_argument("--thickness", type=float, default=1.0)
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args()
    from sdpm_cli.postprocess.location import classify_lesions
    from sdpm_cli.preprocess import PreprocessPlan, prepare
    from sdpm_cli.preprocess.brainmask import brain_mask_array
    from sdpm_cli.synth import SynthConfig, generate_case

    lo, hi = (int(v) for v in a.seeds.split("-"))
    rows, t_full, t_slab = [], [], []
    for seed in range(lo, hi + 1):
        cfg = SynthConfig(matrix=a.matrix, thicknesses_mm=(a.thickness,), thickness_weights=(1.0,), domain="clinical")
        case = generate_case(seed, cfg)
        img, lab = case.image, case.label
        if not sitk.GetArrayViewFromImage(lab).any():
            continue
        hu = sitk.GetArrayViewFromImage(img)
        t = time.perf_counter()
        full = brain_mask_array(hu, img.GetSpacing())
        t_full.append(time.perf_counter() - t)
        t = time.perf_counter()
        prep = prepare(img, PreprocessPlan())  # what segment already has: the mask of the slabs
        slab = prep.slabs.expand(prep.brain_native) if prep.slabs is not None else prep.brain_native
        t_slab.append(time.perf_counter() - t)
        masks = {}
        for name, m in (("per_slice", full), ("slabs", slab)):
            b = sitk.GetImageFromArray(np.ascontiguousarray(m, dtype=np.uint8))
            b.CopyInformation(img)
            masks[name] = {r.key: r for r in classify_lesions(lab, img, b)}
        for key, r in masks["per_slice"].items():
            s = masks["slabs"].get(key)
            rows.append({"seed": seed, "label": key[0], "n_voxels": r.n_voxels, "per_slice": r.location,
                         "slabs": s.location if s else None})
    same = sum(r["per_slice"] == r["slabs"] for r in rows)
    out = {"lesions": len(rows), "same_class": same, "rows": rows,
           "median_s_per_slice_mask": float(np.median(t_full)) if t_full else None,
           "median_s_prepare": float(np.median(t_slab)) if t_slab else None}
    print(f"{same} of {len(rows)} lesions get the same location class; per-slice mask {out['median_s_per_slice_mask']:.2f} s "
          f"(median), prepare {out['median_s_prepare']:.2f} s")
    for r in rows:
        if r["per_slice"] != r["slabs"]:
            print("differs:", r)
    dump(out, a.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

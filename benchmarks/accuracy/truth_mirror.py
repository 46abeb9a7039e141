"""How far above its mirror does TRUE blood lie? (chooses the mirror criterion's bound; validation data)

    python benchmarks/accuracy/truth_mirror.py --real --set data/valA --set data/valB --out runs/truth_mirror.json

For every connected component of the manual / generator hemorrhage mask (26-connected, at least
--min-ml: the shipped filter's hemorrhage volume bound, below which a component goes anyway; the real
slices' components are measured over their 20-slice column, as the filter sees them), the contrast the lesion filter's mirror
criterion would compute for it: median HU of the component minus the median HU of its mirror voxels
inside the brain, across the study's fitted mid-sagittal line (`postprocess.symmetry.mirror_context`,
on the study's own grid, brain = the classical brain mask). A bound on `min_mirror_contrast_hu`
above the dimmest true component would delete true blood once the network finds it. NaN: not judged
(the mirror lies outside the brain or in the lesion). `--real` adds the 12 real CT-ICH slices
(each repeated into a 20-slice column, as real_slices.py scores them).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


def truth_contrasts(hu: np.ndarray, truth: np.ndarray, spacing_xyz, min_ml: float) -> list[dict]:
    """[{ml, contrast_hu}] for the components of `truth` (bool [Z, Y, X]) in the hemorrhage direction."""
    from sdpm_cli.postprocess.components import CONNECTIVITY_26
    from sdpm_cli.postprocess.symmetry import mirror_context
    from sdpm_cli.preprocess.brainmask import brain_mask_array

    brain = brain_mask_array(hu, spacing_xyz) > 0
    ctx = mirror_context(hu.astype(np.float32), brain, (float(spacing_xyz[1]), float(spacing_xyz[0])))
    lab, n = ndimage.label(truth, structure=CONNECTIVITY_26)
    if not n:
        return []
    ml = np.bincount(lab.ravel(), minlength=n + 1)[1:] * float(np.prod(spacing_xyz)) / 1000.0
    con = ctx.contrasts(lab, 2)
    return [{"ml": round(float(v), 3), "contrast_hu": None if np.isnan(c) else round(float(c), 2)}
            for v, c in zip(ml, con) if v >= min_ml]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--set", action="append", default=[], help="an nnU-Net folder (imagesTs/labelsTs); repeat")
    ap.add_argument("--real", action="store_true", help="also the 12 real CT-ICH slices")
    ap.add_argument("--min-ml", type=float, default=0.5, help="smallest component counted (mL) [0.5]")
    ap.add_argument("--out", default=None)
    a = ap.parse_args(argv)
    res: dict[str, dict] = {}
    if a.real:
        from real_slices import FIXTURES, N_REPEAT, cases, column

        if not FIXTURES.is_dir():
            print(f"no real slices at {FIXTURES}", file=sys.stderr)
            return 3
        rows = {}
        for name, ct, mask in cases():
            col = column(sitk.ReadImage(str(ct)))
            t = np.repeat(sitk.GetArrayFromImage(sitk.ReadImage(str(mask)))[:1] > 0, N_REPEAT, axis=0)
            rows[name] = truth_contrasts(sitk.GetArrayFromImage(col), t, col.GetSpacing(), a.min_ml)
        res["real slices"] = rows
    for folder in a.set:
        from sdpm_cli.evaluate.cases import dataset_cases

        rows = {}
        for c in dataset_cases(Path(folder)):
            img = sitk.ReadImage(str(c.image))
            t = sitk.GetArrayFromImage(sitk.ReadImage(str(c.truth))) == 2
            if t.any():
                rows[c.case] = truth_contrasts(sitk.GetArrayFromImage(img), t, img.GetSpacing(), a.min_ml)
        res[folder] = rows
    for name, rows in res.items():
        judged = [r["contrast_hu"] for comps in rows.values() for r in comps if r["contrast_hu"] is not None]
        print(f"{name}: {sum(len(v) for v in rows.values())} true components, {len(judged)} judged; "
              f"dimmest {min(judged) if judged else '-'} HU above the mirror")
        dim = sorted((r["contrast_hu"], r["ml"], case) for case, comps in rows.items() for r in comps if r["contrast_hu"] is not None)
        print("  dimmest five (HU, mL, case):", dim[:5])
    if a.out:
        Path(a.out).parent.mkdir(parents=True, exist_ok=True)
        Path(a.out).write_text(json.dumps(res, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

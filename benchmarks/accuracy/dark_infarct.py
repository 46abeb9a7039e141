"""How dark are the infarcts the model reports, true and false? Chooses `postprocess.darkness`'s bound.

    python benchmarks/accuracy/dark_infarct.py --set A=data/valA --set A=data/valA_none --set A=data/valA_free \
        --set B=data/valB --set B=data/valB_none --set B=data/valB_free --cache runs/rim_cache --out runs/dark_infarct.json

VALIDATION data only (every figure names its family). Each study is segmented once (`out`, the
model's own lesion filter; cached by cached_out.py), then every reported infarct component is
measured as the product measures it (`darkness.infarct_darkness`: the share of its voxels whose
local HU is CSF-dark where its mirror image is not, with the study's midline fitted as the pipeline
fits it; also the plain CSF-dark share and the median HU below the parenchyma) and called true
when at least 10% of it lies in the truth's infarct, else false; for a false one the study's
generator manifest says whether it holds an old-infarct mimic. The 12 real slices (validation; no
infarct in their truth) are added unless --no-real. For each candidate
share: the true infarcts (count, mL) that would be flagged and the false infarct mL flagged.
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

from sdpm_cli.postprocess.darkness import infarct_darkness, study_midline  # noqa: E402

SHARES = (0.05, 0.1, 0.15, 0.2, 0.25, 0.3)


def _old_infarct_cases(folder: Path) -> set[str]:
    f = folder / "manifest.json"
    if not f.exists():
        return set()
    return {c["id"] for c in json.loads(f.read_text())["cases"]
            if any(m.get("kind") == "old_infarct" for m in c.get("mimics", []))}


def components(fam: str, case: str, hu: np.ndarray, truth: np.ndarray, pred: np.ndarray, brain: np.ndarray,
               voxel_ml: float, pixel_mm: tuple[float, float], old: bool) -> list[dict]:
    """One row per reported infarct component, measured as the pipeline measures it."""
    from scipy import ndimage

    from sdpm_cli.labels import CONNECTIVITY_26

    line = study_midline(hu, brain, pixel_mm) if (pred == 1).any() else None
    # each component's share inside the truth's infarct, keyed as a DarkInfarct can be matched to it
    comp, _ = ndimage.label(pred == 1, structure=CONNECTIVITY_26)
    truth_share: dict[tuple, list[float]] = {}
    for i, box in enumerate(ndimage.find_objects(comp), start=1):
        if box is not None:
            m = comp[box] == i
            key = (int(m.sum()), int(box[0].start), int(box[0].stop - 1))
            truth_share.setdefault(key, []).append(float((truth[box][m] == 1).mean()))
    rows = []
    for d in infarct_darkness(pred, hu, brain, voxel_ml, pixel_mm, line):
        shares = truth_share.get((int(round(d.volume_ml / voxel_ml)), *d.slices))
        rows.append({"family": fam, "case": case, "volume_ml": round(d.volume_ml, 3), "share": round(d.share, 4),
                     "csf_share": round(d.csf_share, 4), "median_below_hu": round(d.parenchyma_hu - d.median_hu, 2),
                     "true": (shares.pop(0) if shares else 0.0) >= 0.1, "old_infarct_mimic": old})
    return rows


def summarise(rows: list[dict], n_studies: dict[str, int]) -> list[dict]:
    out = []
    for b in SHARES:
        for fam in sorted({r["family"] for r in rows} | set(n_studies)):
            rs = [r for r in rows if r["family"] == fam]
            t = [r for r in rs if r["true"]]
            f = [r for r in rs if not r["true"]]
            flag = lambda r: r["share"] >= b  # noqa: E731 - darkness.dark_infarcts' test
            out.append({"min_share": b, "family": fam, "studies": n_studies.get(fam, 0),
                        "true_infarcts": len(t), "true_flagged": sum(map(flag, t)),
                        "true_ml_flagged": round(sum(r["volume_ml"] for r in t if flag(r)), 2),
                        "false_ml": round(sum(r["volume_ml"] for r in f), 2),
                        "false_ml_flagged": round(sum(r["volume_ml"] for r in f if flag(r)), 2),
                        "false_old_mimic_ml": round(sum(r["volume_ml"] for r in f if r["old_infarct_mimic"]), 2),
                        "false_old_mimic_ml_flagged": round(sum(r["volume_ml"] for r in f
                                                                if r["old_infarct_mimic"] and flag(r)), 2)})
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default=None, help="checkpoint (default: the shipped model, its own lesion filter)")
    ap.add_argument("--set", action="append", default=[], help="FAMILY=FOLDER (sdpm synth test folder); repeatable")
    ap.add_argument("--no-real", action="store_true")
    ap.add_argument("--cache", default=None, help="folder of cached masks (cached_out.py); same model only")
    ap.add_argument("--out", required=True)
    a = ap.parse_args(argv)

    import SimpleITK as sitk

    from sdpm_cli.pipeline import load_model

    lm = load_model(a.model, "cpu")[0]
    cache = Path(a.cache) if a.cache else None
    rows: list[dict] = []
    n_studies: dict[str, int] = {}
    old = {spec.split("=", 1)[1]: _old_infarct_cases(Path(spec.split("=", 1)[1])) for spec in a.set}
    for spec in a.set:
        fam, folder = spec.split("=", 1)
        for name, case, image, truth, d in phantom_studies(lm, [spec], cache):
            hu = sitk.GetArrayFromImage(image).astype(np.float32)
            vml = float(np.prod(image.GetSpacing())) / 1000.0
            n_studies[fam] = n_studies.get(fam, 0) + 1
            sx, sy = image.GetSpacing()[:2]
            rows += components(fam, f"{Path(folder).name}/{case}", hu, truth, d["pred"], d["brain"], vml, (sy, sx),
                               case in old[folder])
    if not a.no_real:
        for case, img, truth, d in real_slices(lm, cache):
            hu = sitk.GetArrayFromImage(img).astype(np.float32)
            vml = float(np.prod(img.GetSpacing())) / 1000.0
            n_studies["real"] = n_studies.get("real", 0) + 1
            sx, sy = img.GetSpacing()[:2]
            rows += components("real", case, hu, np.zeros_like(d["pred"]), d["pred"], d["brain"], vml, (sy, sx), False)
    res = {"model": a.model or "default", "sets": a.set, "n_studies": n_studies, "components": rows,
           "by_bound": summarise(rows, n_studies)}
    dump(res, Path(a.out))
    for r in res["by_bound"]:
        print(json.dumps(r))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

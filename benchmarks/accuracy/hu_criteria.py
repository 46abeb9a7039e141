"""Can HU physics fix what the network gets wrong? Three offline measurements on VALIDATION data.

    python benchmarks/accuracy/hu_criteria.py --model models/sdpm-default.pt \
        --set A=data/valA --set A=data/valA_none --set B=data/valB --set B=data/valB_none \
        --cache runs/hu_cache --out runs/hu_criteria.json

Each study is segmented once (`out`, lesion filter off) and its HU, brain mask, truth, label map and
class probabilities cached (`--cache`; a second run reads the cache); the 12 real CT-ICH slices
(validation, as in real_slices.py: a 20-slice column, the middle slice scored) are family "real".
Then, per data family (every figure names its family; none is a test result):

1. the ceiling: Dice of the truth cut to the brain mask, i.e. the best any method that labels only
   inside the classical brain mask can score (phantom truth follows the partial-volume rule and puts
   extra-axial blood into voxels the image shows as bone, > 130 HU, which the mask excludes);
2. growth: each kept hemorrhage (after the model's lesion filter) grown in-plane by up to R mm into
   brain voxels whose smoothed HU lies in [parenchyma median + D, H] (the blood range, relative to
   the study's own parenchyma);
3. component criteria on top of the filter: drop a hemorrhage whose share of voxels above 100 HU
   exceeds Q (bone partial volume, calcification), drop an infarct whose median HU lies more than X
   below the parenchyma median (CSF-like: atrophy, old infarct);
4. the mirror criterion: drop an infarct less than Y HU darker than its mirror image across the
   study's mid-sagittal line (postprocess.symmetry), or a hemorrhage less than Y HU brighter.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from sdpm_cli.labels import CLASSES  # noqa: E402
from sdpm_cli.postprocess.components import component_table  # noqa: E402
from sdpm_cli.postprocess.symmetry import mirror_context  # noqa: E402

MID = 10  # the scored slice of a real-slice column (real_slices.N_REPEAT // 2)
_PLANE = np.zeros((3, 3, 3), bool)
_PLANE[1] = ndimage.generate_binary_structure(2, 1)


def cache_cases(model, sets: list[tuple[str, Path]], cache: Path, real: bool) -> None:
    """Segment what is not cached yet (out, filter off) and store uint8 probabilities (x 250)."""
    import real_slices as rs
    from sdpm_cli.errors import InputRejected
    from sdpm_cli.evaluate.cases import dataset_cases
    from sdpm_cli.pipeline import load_model, segment_study

    cache.mkdir(parents=True, exist_ok=True)
    lm = None

    def run(key: str, study, truth: np.ndarray, hu: np.ndarray) -> None:
        nonlocal lm
        f = cache / f"{key}.npz"
        if f.exists():
            return
        lm = lm or load_model(model, "cpu")[0]
        try:
            seg = segment_study(study, model=lm, mode="out", seed=0, lesion_filter={})
        except InputRejected as exc:
            print(f"{key}: refused by the ingest ({exc})", flush=True)
            return
        hu = sitk.GetArrayFromImage(seg.study.image) if hu is None else hu
        np.savez_compressed(f, hu=hu.astype(np.int16), prob=(np.asarray(seg.probs) * 250).round().astype(np.uint8),
                            brain=sitk.GetArrayFromImage(seg.brain).astype(np.uint8), truth=truth.astype(np.uint8),
                            spacing=np.array(seg.labels.GetSpacing()), pred=sitk.GetArrayFromImage(seg.labels).astype(np.uint8))
        print(f"{key} cached", flush=True)

    for fam, folder in sets:
        for pair in dataset_cases(folder, "test"):
            run(f"{fam}__{folder.name}__{pair.case}", pair.image, sitk.GetArrayFromImage(sitk.ReadImage(str(pair.truth))), None)
    if real and rs.FIXTURES.is_dir():
        for name, ct, mask in rs.cases():
            col = rs.column(sitk.ReadImage(str(ct)))
            truth = np.repeat(sitk.GetArrayFromImage(sitk.ReadImage(str(mask)))[:1] > 0, rs.N_REPEAT, axis=0) * 2
            run(f"real__{name}", rs._ColumnStudy(col, name), truth, sitk.GetArrayFromImage(col))


def _filtered(mask: np.ndarray, rule, vml: float, dz: float) -> np.ndarray:
    """Component labels of `mask` with the components the rule drops set to 0 (the pipeline's filter)."""
    lab, stats = component_table(mask, dz)
    keep = np.zeros(len(stats) + 1, bool)
    keep[1:] = [rule.passes(int(v), vml, e) for v, e, *_ in stats]
    return np.where(keep[lab], lab, 0)


def load_cases(cache: Path, flt) -> list[dict]:
    cases = []
    for f in sorted(cache.glob("*.npz")):
        d = np.load(f)
        fam = f.stem.split("__")[0]
        hu = d["hu"].astype(np.float32)
        brain = d["brain"] > 0
        sp = d["spacing"]
        vml, dz, px = float(np.prod(sp)) / 1000.0, float(sp[2]), float(sp[0])
        c = {"key": f.stem, "fam": fam, "hu": hu, "brain": brain, "vml": vml, "px": px,
             "ref": float(np.median(hu[brain & (hu > -5) & (hu < 90)])), "truth": d["truth"]}
        c["kept"] = {k: _filtered(d["pred"] == k, flt.rule(k), vml, dz) for k in CLASSES}
        cases.append(c)
    return cases


def _scored(c: dict, cls: int, pred: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    t = c["truth"] == cls
    if c["fam"] == "real":
        return pred[MID], (t[MID] if cls == 2 else np.zeros_like(t[MID]))
    return pred, t


def summarise(cases: list[dict], cls: int, predict) -> dict:
    """Per family: mean Dice over studies with the class, mean false-positive mL over those without
    (real slices: false-positive pixels of the scored slice)."""
    out = {}
    for fam in dict.fromkeys(c["fam"] for c in cases):
        dice, fp = [], []
        for c in (c for c in cases if c["fam"] == fam):
            p, t = _scored(c, cls, predict(c))
            if t.any():
                dice.append(2.0 * float((p & t).sum()) / float(p.sum() + t.sum()))
            else:
                fp.append(float(p.sum()) * (1.0 if fam == "real" else c["vml"]))
        out[fam] = {"dice": round(float(np.mean(dice)), 3) if dice else None, "n_with": len(dice),
                    "fp": round(float(np.mean(fp)), 2) if fp else None, "n_without": len(fp)}
    return out


def grow(c: dict, d_hu: float, hi_hu: float, r_mm: float) -> np.ndarray:
    m = c["kept"][2] > 0
    if not m.any():
        return m
    if "hu_s" not in c:  # in-plane smoothing against noise (sigma 0.6 mm)
        c["hu_s"] = ndimage.gaussian_filter(c["hu"], sigma=(0, 0.6 / c["px"], 0.6 / c["px"]))
    k = int(round(r_mm / c["px"]))
    zz, yy, xx = np.nonzero(m)
    sl = (slice(zz.min(), zz.max() + 1), slice(max(0, yy.min() - k - 1), yy.max() + k + 2),
          slice(max(0, xx.min() - k - 1), xx.max() + k + 2))
    cand = c["brain"][sl] & (c["hu_s"][sl] >= c["ref"] + d_hu) & (c["hu_s"][sl] <= hi_hu)
    out = m.copy()
    out[sl] = ndimage.binary_dilation(m[sl], structure=_PLANE, iterations=max(1, k), mask=cand | m[sl])
    return out


def component_criterion(c: dict, cls: int, keep) -> np.ndarray:
    lab = c["kept"][cls]
    if not lab.any():
        return lab > 0
    idx = np.unique(lab[lab > 0])
    ok = np.zeros(int(lab.max()) + 1, bool)
    objs = ndimage.find_objects(lab)
    for k in idx:
        sl = objs[k - 1]
        h = c["hu"][sl][lab[sl] == k]
        ok[k] = keep(h, c)
    return ok[lab]


def contrasts(c: dict, cls: int) -> dict[int, float | None]:
    """Mirror contrast of every kept component of `cls` in the class's own direction (HU; positive:
    darker than the other side for an infarct, brighter for a bleed); None where unknown."""
    key = f"mirror{cls}"
    if key not in c:
        if "mirror" not in c:  # one context (and midline fit) per case
            c["mirror"] = mirror_context(c["hu"], c["brain"], (c["px"], c["px"]))
        lab = c["kept"][cls]
        ks = np.unique(lab[lab > 0]) if lab.any() else []
        v = c["mirror"].contrasts(lab, cls)
        c[key] = {int(k): None if np.isnan(v[k - 1]) else float(v[k - 1]) for k in ks}
    return c[key]


def mirror_criterion(c: dict, cls: int, y: float) -> np.ndarray:
    """Keep a component whose mirror contrast (in its class's direction) reaches y HU; unknown keeps it."""
    lab = c["kept"][cls]
    if not lab.any():
        return lab > 0
    ok = np.zeros(int(lab.max()) + 1, bool)
    for k, v in contrasts(c, cls).items():
        ok[k] = v is None or v >= y
    return ok[lab]


def contrast_table(cases: list[dict], cls: int) -> list[dict]:
    """Every kept component: family, case, mL, whether it overlaps the truth (>= 30% of its voxels), contrast."""
    rows = []
    for c in cases:
        lab = c["kept"][cls]
        t = c["truth"] == cls
        for k, v in contrasts(c, cls).items():
            m = lab == k
            if c["fam"] == "real":
                m, tt = m[MID], t[MID]
            else:
                tt = t
            if not m.any():
                continue
            rows.append({"fam": c["fam"], "case": c["key"], "ml": round(float(m.sum()) * c["vml"], 2),
                         "true": bool((m & tt).sum() >= 0.3 * m.sum()),
                         "contrast": None if v is None else round(v, 1)})
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None, help="checkpoint (default: the shipped model; its lesion filter is used)")
    ap.add_argument("--set", action="append", default=[], help="FAMILY=FOLDER (nnU-Net imagesTs/labelsTs); repeatable")
    ap.add_argument("--no-real", action="store_true", help="leave out the 12 real slices")
    ap.add_argument("--cache", default="runs/hu_cache")
    ap.add_argument("--out", default="runs/hu_criteria.json")
    ap.add_argument("--only-mirror", action="store_true", help="score only the mirror-contrast criterion (4.)")
    a = ap.parse_args(argv)
    import torch

    from sdpm_cli.pipeline import load_model

    torch.set_num_threads(2)
    sets = [(s.split("=", 1)[0], Path(s.split("=", 1)[1])) for s in a.set]
    cache_cases(a.model, sets, Path(a.cache), not a.no_real)
    flt = load_model(a.model, "cpu")[0].lesion_filter
    cases = load_cases(Path(a.cache), flt)
    res: dict = {"model": a.model or "default", "sets": a.set, "n_cases": len(cases)}

    res["ceiling_dice_inside_brain_mask"] = {
        CLASSES[k]: summarise([c for c in cases if c["fam"] != "real"], k,
                              lambda c, k=k: (c["truth"] == k) & c["brain"]) for k in CLASSES}
    print("ceiling (truth cut to the brain mask):", json.dumps(res["ceiling_dice_inside_brain_mask"]))
    res["hemorrhage_base"] = summarise(cases, 2, lambda c: c["kept"][2] > 0)
    print("hemorrhage, the model's filter:", json.dumps(res["hemorrhage_base"]))
    res["hemorrhage_growth"] = []
    grid = () if a.only_mirror else itertools.product((12.0, 18.0, 24.0), (100.0, 115.0), (1.5, 3.0, 6.0))
    for d_hu, hi, r in grid:
        row = {"d_hu": d_hu, "hi_hu": hi, "r_mm": r, **summarise(cases, 2, lambda c: grow(c, d_hu, hi, r))}
        res["hemorrhage_growth"].append(row)
        print(" grown:", json.dumps(row), flush=True)
    res["hemorrhage_bright_share"] = []
    for q in () if a.only_mirror else (0.1, 0.2, 0.3, 0.4):
        row = {"max_share_above_100_hu": q,
               **summarise(cases, 2, lambda c: component_criterion(c, 2, lambda h, c: float((h > 100).mean()) <= q))}
        res["hemorrhage_bright_share"].append(row)
        print(" bright share:", json.dumps(row), flush=True)
    res["infarct_base"] = summarise(cases, 1, lambda c: c["kept"][1] > 0)
    print("infarct, the model's filter:", json.dumps(res["infarct_base"]))
    res["infarct_contrast"] = []
    for x in () if a.only_mirror else (8.0, 10.0, 12.0, 14.0, 16.0):
        row = {"max_hu_below_parenchyma": x,
               **summarise(cases, 1, lambda c: component_criterion(c, 1, lambda h, c: c["ref"] - float(np.median(h)) <= x))}
        res["infarct_contrast"].append(row)
        print(" infarct contrast:", json.dumps(row), flush=True)
    for cls, ys in ((1, (0.0, 1.0, 2.0, 3.0, 4.0, 6.0)), (2, (0.0, 5.0, 10.0, 15.0, 20.0))):
        name = CLASSES[cls]
        res[f"{name}_mirror_components"] = contrast_table(cases, cls)
        for r in res[f"{name}_mirror_components"]:
            print(f" {name} component:", json.dumps(r))
        res[f"{name}_mirror"] = []
        for y in ys:
            row = {"min_mirror_contrast_hu": y, **summarise(cases, cls, lambda c: mirror_criterion(c, cls, y))}
            res[f"{name}_mirror"].append(row)
            print(f" {name} mirror contrast:", json.dumps(row), flush=True)
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(res, indent=1) + "\n")
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

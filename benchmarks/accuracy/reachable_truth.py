"""How much of a phantom's truth lies where the model cannot look: outside the skull-based brain mask.

    python benchmarks/accuracy/reachable_truth.py --set "A held-out=data/test_setA" \
        --set "B atlas=data/test_setB" --real --cache runs/rim_cache --out runs/reachable_test.json

The phantoms' label rule counts a voxel as lesion when the lesion fills half of it *before* the
scanner's point-spread; the image is blurred after. Against the skull, a subdural's outer 1-3 mm then
reads hundreds of HU (bone blur), the brain mask (<= 130 HU) stops short of it, and the network
never sees it - yet the truth counts it. Real manual masks do not: on the 12 CT-ICH slices 0.6% of
the hemorrhage pixels lie outside the same mask (`--real`). Per set and class this prints the share
of truth volume outside the mask, the standard Dice (`sdpm evaluate`'s: mean over the studies with
the class) and the Dice against the truth inside the mask - a second, labelled figure that
separates what the model misses from what the label convention puts out of its reach. It never
replaces the standard one. Each study is segmented once (`out`, the model's own lesion filter).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/common.py
sys.path.insert(0, str(Path(__file__).resolve().parent))  # cached_out.py, rim_growth.py beside this file
from cached_out import phantom_studies, real_slices  # noqa: E402
from common import dump  # noqa: E402
from rim_growth import _dice  # noqa: E402


def case_row(pred: np.ndarray, truth: np.ndarray, brain: np.ndarray, voxel_ml: float, classes) -> dict:
    """Per class: truth mL, truth mL outside the brain mask, Dice, Dice against the truth inside it
    (None where the study has no such truth)."""
    row = {}
    inside = brain > 0
    for c, name in classes.items():
        t, p = truth == c, pred == c
        row[f"{name}_truth_ml"] = float(t.sum()) * voxel_ml
        row[f"{name}_outside_ml"] = float((t & ~inside).sum()) * voxel_ml
        row[f"{name}_dice"] = _dice(p, t) if t.any() else None
        row[f"{name}_dice_in_mask"] = _dice(p, t & inside) if (t & inside).any() else None
    return row


def summary(rows: list[dict], classes) -> dict:
    out = {}
    for name in classes.values():
        with_c = [r for r in rows if r[f"{name}_truth_ml"] > 0]
        tot = sum(r[f"{name}_truth_ml"] for r in with_c)
        out[name] = {
            "n": len(with_c),
            "truth_ml": tot,
            "outside_share": sum(r[f"{name}_outside_ml"] for r in with_c) / tot if tot else None,
            "dice": float(np.mean([r[f"{name}_dice"] for r in with_c])) if with_c else None,
            "dice_in_mask": float(np.mean([r[f"{name}_dice_in_mask"] or 0.0 for r in with_c])) if with_c else None,
        }
    return out


def main(argv=None) -> int:
    import torch

    from sdpm_cli.labels import CLASSES
    from sdpm_cli.pipeline import load_model

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None, help="checkpoint (default: the shipped model)")
    ap.add_argument("--set", action="append", default=[], help="NAME=FOLDER (nnU-Net layout); a name may repeat")
    ap.add_argument("--real", action="store_true", help="also the 12 real slices (hemorrhage only, as stored)")
    ap.add_argument("--cache", type=Path, default=None, help="each study's out mask and brain mask (cached_out.py; shared with rim_growth.py)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    lm = load_model(a.model, "cpu")[0]
    rows: dict[str, list] = {}
    for name, case, img, truth, d in phantom_studies(lm, a.set, a.cache):
        vml = float(np.prod(img.GetSpacing())) / 1000.0
        rows.setdefault(name, []).append({"set": name, "case": case, **case_row(d["pred"], truth, d["brain"], vml, CLASSES)})
    for case, img, truth, d in (real_slices(lm, a.cache) if a.real else ()):
        vml = float(np.prod(img.GetSpacing())) / 1000.0
        rows.setdefault("real slices", []).append(
            {"set": "real slices", "case": case, **case_row(d["pred"][0], truth.astype(np.uint8) * 2, d["brain"][0], vml, {2: "hemorrhage"})})
    table = {name: summary(rs_, CLASSES if name != "real slices" else {2: "hemorrhage"}) for name, rs_ in rows.items()}
    print("| set | class | studies with it | truth mL | share outside the brain mask | Dice | Dice vs the truth inside the mask |")
    print("|---|---|---|---|---|---|---|")
    for name, t in table.items():
        for cname, s in t.items():
            print(f"| {name} | {cname} | {s['n']} | {s['truth_ml']:.1f} | {100 * (s['outside_share'] or 0):.1f}% | "
                  f"{s['dice']:.3f} | {s['dice_in_mask']:.3f} |")
    dump({"model": a.model or "default", "summary": table, "cases": rows}, a.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

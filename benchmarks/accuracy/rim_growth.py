"""Probe (not in the pipeline): would carrying a bleed out to the inner table raise hemorrhage Dice?

    python benchmarks/accuracy/rim_growth.py --set A=data/valA --set A=data/valA_none \
        --set B=data/valB --set B=data/valB_none --real --cache runs/rim_cache --out runs/rim_growth.json

Why it was tried: the skull-based brain mask stops where the skull's blur lifts the HU above
`soft_max_hu` (130), so the 1-3 mm strip of a subdural against the inner table lies outside it and
the network never sees it; the phantoms' truth (partial-volume fraction >= 0.5 of the lesion, drawn
before the scanner's point-spread) counts that strip (a 121 mL family-B subdural: 35% of its voxels
outside the mask). The rule below gives each hemorrhage pixel at the brain mask's edge the non-brain
pixels behind it: at most `max_mm` from the mask, HU in (`min_hu`, `max_hu`] (more blood than bone),
whose nearest brain pixel is that hemorrhage, connected to it through such pixels.

Measured on validation data only (model card, "Carrying a bleed to the inner table"): +0.003-0.009
hemorrhage Dice on the phantoms, -0.01 to -0.03 on the 12 real slices, whose manual masks stop short
of the blurred edge. Not adopted; kept so the measurement can be repeated with another model.
Each study is segmented once (`out`, the model's own lesion filter); the rules are applied to the
cached masks.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Mapping, Optional

import numpy as np
from scipy import ndimage

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/common.py
sys.path.insert(0, str(Path(__file__).resolve().parent))  # cached_out.py beside this file
from cached_out import phantom_studies, real_slices  # noqa: E402
from common import dump  # noqa: E402

HEMORRHAGE = 2
_CROSS = ndimage.generate_binary_structure(2, 1)


@dataclass(frozen=True)
class RimGrowth:
    """How far a hemorrhage at the brain mask's edge is carried towards the inner table."""

    max_hu: float = 400.0  # the blurred edge counts as bone above this
    max_mm: float = 3.0  # at most this far from the brain mask
    min_hu: float = 0.0  # air, fat and CSF-dark pixels are never blood

    def __post_init__(self) -> None:
        if not (np.isfinite(self.max_hu) and np.isfinite(self.min_hu) and self.min_hu < self.max_hu):
            raise ValueError("RimGrowth needs finite min_hu < max_hu")
        if not (np.isfinite(self.max_mm) and self.max_mm > 0):
            raise ValueError("RimGrowth needs max_mm > 0")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Optional[Mapping]) -> Optional["RimGrowth"]:
        """A rule from its dict (None or {}: no growth)."""
        if not d:
            return None
        return cls(**{k: float(v) for k, v in dict(d).items()})


def grow_slice(labels: np.ndarray, hu: np.ndarray, brain: np.ndarray, spacing_yx: tuple[float, float],
               rule: RimGrowth) -> np.ndarray:
    """The pixels of one axial slice that join the hemorrhage (bool [Y, X]); `labels` is not changed."""
    hem = labels == HEMORRHAGE
    inside = brain > 0
    # only a bleed that reaches the brain mask's edge has a strip behind it
    edge = hem & ~ndimage.binary_erosion(inside, structure=_CROSS, border_value=1)
    if not edge.any():
        return np.zeros(hem.shape, dtype=bool)
    reach = int(np.ceil(rule.max_mm / min(spacing_yx))) + 2
    ys, xs = np.nonzero(edge)
    box = (slice(max(0, ys.min() - reach), min(hem.shape[0], ys.max() + reach + 1)),
           slice(max(0, xs.min() - reach), min(hem.shape[1], xs.max() + reach + 1)))
    b, h, e, v, lab = inside[box], hem[box], edge[box], hu[box], labels[box]
    if b.all():
        return np.zeros(hem.shape, dtype=bool)
    dist, (iy, ix) = ndimage.distance_transform_edt(~b, sampling=spacing_yx, return_indices=True)
    cand = (~b) & (dist <= rule.max_mm) & e[iy, ix] & (v > rule.min_hu) & (v <= rule.max_hu) & (lab == 0)
    if not cand.any():
        return np.zeros(hem.shape, dtype=bool)
    # connected to the bleed through the strip itself (never across bone)
    grown = ndimage.binary_dilation(h, structure=_CROSS, iterations=reach, mask=cand | h) & cand
    out = np.zeros(hem.shape, dtype=bool)
    out[box] = grown
    return out


def grow_to_inner_table(labels: np.ndarray, hu: np.ndarray, brain: np.ndarray, spacing_xyz: tuple[float, float, float],
                        rule: Optional[RimGrowth]) -> np.ndarray:
    """A copy of the [Z, Y, X] label map with every hemorrhage at the brain's edge carried out to the inner
    table (see the module's docstring); the labels unchanged where `rule` is None."""
    out = np.array(labels, copy=True)
    if rule is None:
        return out
    spacing_yx = (float(spacing_xyz[1]), float(spacing_xyz[0]))
    for z in np.flatnonzero((out == HEMORRHAGE).reshape(out.shape[0], -1).any(axis=1)):
        out[z][grow_slice(out[z], hu[z], brain[z], spacing_yx, rule)] = HEMORRHAGE
    return out


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    from sdpm_cli.evaluate.metrics import dice  # the one Dice

    return float(dice(a, b))


def main(argv=None) -> int:
    import SimpleITK as sitk
    import torch

    from sdpm_cli.pipeline import load_model

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None, help="checkpoint (default: the shipped model)")
    ap.add_argument("--set", action="append", default=[], help="NAME=FOLDER (nnU-Net layout, imagesTs/labelsTs); "
                    "a name may repeat (its folders are pooled)")
    ap.add_argument("--real", action="store_true", help="also the 12 real slices (real_slices.py, as stored)")
    ap.add_argument("--max-hu", default="200,300,400,500,700")
    ap.add_argument("--max-mm", default="2,3,4")
    ap.add_argument("--cache", type=Path, default=None, help="keep each study's out mask and brain mask here")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    lm = load_model(a.model, "cpu")[0]
    rules = [None] + [RimGrowth(max_hu=float(h), max_mm=float(m)) for h in a.max_hu.split(",") for m in a.max_mm.split(",")]
    names = ["none" if r is None else f"{r.max_hu:g}HU/{r.max_mm:g}mm" for r in rules]
    scores: dict = {n: {} for n in names}
    per_case = []
    for name, case, img, labels, d in phantom_studies(lm, a.set, a.cache):
        hu = sitk.GetArrayViewFromImage(img)
        truth = labels == HEMORRHAGE
        vml = float(np.prod(img.GetSpacing())) / 1000.0
        row = {"set": name, "case": case, "truth_ml": float(truth.sum()) * vml,
               "truth_outside_brain": float((truth & (d["brain"] == 0)).sum() / max(1, truth.sum()))}
        for n, r in zip(names, rules):
            p = grow_to_inner_table(d["pred"], hu, d["brain"], img.GetSpacing(), r) == HEMORRHAGE
            v = _dice(p, truth) if truth.any() else float(p.sum()) * vml
            row[n] = v
            scores[n].setdefault(f"{name} Dice" if truth.any() else f"{name} FP mL", []).append(v)
        per_case.append(row)
        print(name, case, f"truth {row['truth_ml']:.1f} mL, {100 * row['truth_outside_brain']:.0f}% outside the brain mask:",
              " ".join(f"{n} {row[n]:.3f}" for n in names[:4]), flush=True)
    for case, img, truth, d in (real_slices(lm, a.cache) if a.real else ()):
        hu = sitk.GetArrayViewFromImage(img)
        row = {"set": "real", "case": case}
        for n, r in zip(names, rules):
            row[n] = _dice(grow_to_inner_table(d["pred"], hu, d["brain"], img.GetSpacing(), r)[0] == HEMORRHAGE, truth)
            scores[n].setdefault("real Dice", []).append(row[n])
        per_case.append(row)
        print("real", case, " ".join(f"{n} {row[n]:.3f}" for n in names[:4]), flush=True)
    table = {n: {k: float(np.mean(v)) for k, v in sorted(s.items())} for n, s in scores.items()}
    for n in names:
        print(f"{n:>12}", "  ".join(f"{k} {v:.4f}" for k, v in table[n].items()))
    dump({"model": a.model or "default", "rules": {n: (r.to_dict() if r else None) for n, r in zip(names, rules)},
          "mean": table, "cases": per_case}, a.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

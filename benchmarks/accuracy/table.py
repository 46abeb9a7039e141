"""Merge `sdpm evaluate` outputs of several methods into one Table-1-shaped Markdown table.

    python benchmarks/accuracy/table.py runs/eval_unet runs/eval_segresnet runs/eval_sdpm > table.md

Columns follow the paper's Table 1 (Dice, VC, VDP per class). Dice is the mean over the cases whose
truth has that class (the paper's convention); VDP is a fraction (|Vp - Vt| / Vt, mean over those
cases) as in the paper. A last column gives the mean total lesion volume predicted on the studies
that have no lesion at all (cases named free_*), the false-positive burden a user would see.
"""

from __future__ import annotations

import csv
import json
import sys
from collections import defaultdict
from pathlib import Path


def lesion_free_volumes(per_case: Path) -> dict[str, dict[str, dict[str, float]]]:
    """{mode: {case: {class: predicted mL}}} over the lesion-free studies (named `free_...`) of an
    `sdpm evaluate` per_case.csv: every volume there is false lesion."""
    vols: dict[str, dict[str, dict[str, float]]] = defaultdict(lambda: defaultdict(lambda: defaultdict(float)))
    for r in csv.DictReader(per_case.open()):
        if r["case"].startswith("free_") and r["status"] == "ok":
            vols[r["mode"]][r["case"]][r["lesion_class"]] += float(r["vol_pred_ml"] or 0)
    return vols


def fp_on_lesion_free(per_case: Path) -> dict[str, float]:
    """Mean false lesion (every class summed) per lesion-free study, per mode."""
    return {m: sum(sum(c.values()) for c in v.values()) / len(v)
            for m, v in lesion_free_volumes(per_case).items() if v}


def rows(run: Path) -> list[str]:
    s = json.loads((run / "summary.json").read_text())
    fp = fp_on_lesion_free(run / "per_case.csv")
    out = []
    for mode, classes in s["modes"].items():
        cells = [mode if s["source"].get("kind") == "folders" else f"SDPM-{mode}"]
        for cls in ("infarct", "hemorrhage"):
            c = classes[cls]
            cells += [f"{c['dice_mean_with_lesion']:.3f}", f"{c['vc_pearson']:.3f}", f"{c['vdp_percent'] / 100:.3f}"]
        cells.append(f"{fp.get(mode, float('nan')):.2f}")
        out.append("| " + " | ".join(cells) + " |")
    return out


def main() -> None:
    print("| Method | Infarct Dice | Infarct VC | Infarct VDP | Hemorrhage Dice | Hemorrhage VC | Hemorrhage VDP | FP mL, lesion-free studies |")
    print("|---|---|---|---|---|---|---|---|")
    for run in sys.argv[1:]:
        print("\n".join(rows(Path(run))))


if __name__ == "__main__":
    main()

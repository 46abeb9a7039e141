"""Make docs/synth_montage.png: a few `sdpm synth` studies in brain window (W80/L40) with truth contours.

    python docs/make_synth_montage.py            # writes docs/synth_montage.png (about a minute)

Rows are cases (seeds below), columns are slices: skull base, the slice with the most lesion, and two
above it. Yellow = infarct truth (label 1), red = hemorrhage truth (label 2).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import SimpleITK as sitk

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sdpm_cli.synth import SynthConfig, generate_case  # noqa: E402

# (seed, lesion mode, slice thickness): chosen to show each lesion kind and protocol
CASES = [(11, "hemorrhage", 5.0), (12, "infarct", 5.0), (23, "both", 2.5), (4, "none", 5.0)]


def main(out: Path = ROOT / "docs" / "synth_montage.png") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(CASES), 4, figsize=(16, 4.2 * len(CASES)), facecolor="black")
    for row, (seed, lesion, thk) in enumerate(CASES):
        case = generate_case(seed, SynthConfig(lesion=lesion, thicknesses_mm=(thk,), thickness_weights=(1.0,)))
        img = sitk.GetArrayFromImage(case.image)
        lab = sitk.GetArrayFromImage(case.label)
        n = img.shape[0]
        area = (lab > 0).sum(axis=(1, 2))
        k_les = int(np.argmax(area)) if area.max() > 0 else int(0.55 * n)
        step = max(1, int(round(12.0 / thk)))
        k_les = int(np.clip(k_les, int(0.2 * n) + step, n - 1 - step))
        ks = [int(0.15 * n), k_les - step, k_les, k_les + step]
        for col, k in enumerate(ks):
            ax = axes[row, col]
            ax.imshow(img[k], cmap="gray", vmin=0, vmax=80, interpolation="bilinear")
            for cls, colour in ((1, "yellow"), (2, "red")):
                if (lab[k] == cls).any():
                    ax.contour(lab[k] == cls, levels=[0.5], colors=colour, linewidths=0.9)
            ax.set_axis_off()
            m = case.meta
            vol = ", ".join(f"{k2} {v:.1f} mL" for k2, v in m["volume_ml"].items() if v > 0) or "no lesion"
            ax.set_title(f"seed {seed} · {m['protocol']['name']} · slice {k + 1}/{n}\n{vol}" if col == 0
                         else f"slice {k + 1}/{n}", color="white", fontsize=10)
    fig.suptitle("sdpm synth phantoms, brain window W80/L40 (yellow infarct, red hemorrhage truth)",
                 color="white", fontsize=13)
    fig.tight_layout()
    fig.savefig(out, dpi=80, facecolor="black")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()

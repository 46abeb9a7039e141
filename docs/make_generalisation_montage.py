"""Make docs/generalisation_montage.png: the shipped model on three data families, truth beside prediction.

    python docs/make_generalisation_montage.py [--model models/sdpm-default.pt]   # a few minutes on 2 cores

Row 1: family A (`sdpm synth`, randomised domain: the training generator, held-out seeds);
row 2: family B (`sdpm synth --family atlas`, never trained on); row 3: real NCCT slices
(../shared/fixtures/real_ich_slices, validation only). Brain window W80/L40. Solid contours = truth
(yellow infarct, red hemorrhage), dashed = the model's `out` mask (cyan infarct, magenta hemorrhage).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import SimpleITK as sitk

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks" / "accuracy"))

# (family, seed, forced lesion kinds, slice thickness): one of each kind of blood and an infarct
SYNTH = {
    "analytic": [(901, ("subdural",), 5.0), (902, ("territorial",), 5.0), (903, ("epidural", "contusion"), 2.5),
                 (904, ("subarachnoid",), 5.0)],
    "atlas": [(911, ("subdural",), 5.0), (912, ("territorial",), 5.0), (913, ("lobar",), 2.5), (914, ("epidural",), 5.0)],
}
REAL = ["052_17", "075_30", "051_31", "073_28"]  # two found, two hard (missed lying sideways; upright 0.62 / 0.27): not a best-of


def _draw(ax, img, truth, pred, title):
    ax.imshow(img, cmap="gray", vmin=0, vmax=80, interpolation="bilinear")
    for cls, c_truth, c_pred in ((1, "yellow", "cyan"), (2, "red", "magenta")):
        if (truth == cls).any():
            ax.contour(truth == cls, levels=[0.5], colors=c_truth, linewidths=1.0)
        if (pred == cls).any():
            ax.contour(pred == cls, levels=[0.5], colors=c_pred, linewidths=1.0, linestyles="dashed")
    ax.set_title(title, color="white", fontsize=9)
    ax.set_axis_off()


def _crop(img, *others):
    ys, xs = np.nonzero(img > -300)
    if ys.size == 0:
        return (img, *others)
    sl = (slice(max(0, ys.min() - 5), ys.max() + 6), slice(max(0, xs.min() - 5), xs.max() + 6))
    return tuple(a[sl] for a in (img, *others))


def main(argv=None) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from real_slices import FIXTURES, N_REPEAT, _ColumnStudy, column, read_slice
    from sdpm_cli.pipeline import load_model, segment_study
    from sdpm_cli.synth import SynthConfig, generate_case

    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=None)
    ap.add_argument("--out", default=str(ROOT / "docs" / "generalisation_montage.png"))
    a = ap.parse_args(argv)
    lm = load_model(a.model, "cpu")[0]
    fig, axes = plt.subplots(3, 4, figsize=(16, 12.6), facecolor="black")
    for row, family in enumerate(("analytic", "atlas")):
        for col, (seed, plan, thk) in enumerate(SYNTH[family]):
            cfg = SynthConfig(family=family, lesion="both", thicknesses_mm=(thk,), thickness_weights=(1.0,))
            case = generate_case(seed, cfg, plan=plan)
            seg = segment_study(_ColumnStudy(case.image, f"{family}{seed}"), model=lm, mode="out")
            img, lab = sitk.GetArrayFromImage(case.image), sitk.GetArrayFromImage(case.label)
            pred = sitk.GetArrayFromImage(seg.labels)
            k = int(np.argmax((lab > 0).sum(axis=(1, 2))))
            name = "family A" if family == "analytic" else "family B (atlas)"
            _draw(axes[row, col], *_crop(img[k], lab[k], pred[k]), f"{name} · {'+'.join(plan)} · {thk:g} mm")
    fixtures = Path(FIXTURES)
    for col, name in enumerate(REAL):
        ct = fixtures / f"{name}_ct.nii.gz"
        if not ct.is_file():
            axes[2, col].set_axis_off()
            continue
        # stood upright: the fixtures are stored lying on their side (real_slices.read_slice)
        col_img = column(read_slice(ct, quarter_turns=1))
        truth = sitk.GetArrayFromImage(read_slice(fixtures / f"{name}_mask.nii.gz", quarter_turns=1))[0].astype(np.uint8) * 2
        seg = segment_study(_ColumnStudy(col_img, name), model=lm, mode="out")
        pred = sitk.GetArrayFromImage(seg.labels)[N_REPEAT // 2]
        img = sitk.GetArrayFromImage(col_img)[N_REPEAT // 2]
        _draw(axes[2, col], *_crop(img, truth, pred), f"real CT-ICH slice {name}, upright (validation)")
    fig.suptitle(f"{lm.name}: truth solid (yellow infarct, red blood), model dashed (cyan, magenta); W80/L40",
                 color="white", fontsize=12)
    fig.tight_layout()
    fig.savefig(a.out, dpi=75, facecolor="black")
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()

"""Side-by-side QC picture: the baseline and the registered follow-up, slice for slice, with contours.

Both are shown on the baseline grid (the follow-up resampled through the registration: HU linear,
labels nearest), in the radiological convention of outputs.preview (patient left on image right).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from sdpm_cli.labels import CLASSES
from sdpm_cli.outputs.preview import (CLASS_COLOURS, CONVENTION_NOTE, WINDOW_LEVEL, WINDOW_WIDTH, choose_slices,
                                      display_volume, draw_slice, save_figure)


def render_compare(cmp, doc: dict, max_slices: int = 6):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    base = display_volume(cmp.baseline.image_hu, cmp.baseline.labels)
    foll = display_volume(cmp.followup_hu_on_baseline, cmp.followup_labels_on_baseline)
    both = np.maximum(base.labels, foll.labels)
    slices = choose_slices(both, max_slices)
    fig, axes = plt.subplots(len(slices), 2, figsize=(6.4, 3.2 * len(slices) + 1.2), squeeze=False)
    fig.patch.set_facecolor("black")
    for row, k in zip(axes, slices):
        for ax, vol, tag in ((row[0], base, "baseline"), (row[1], foll, "follow-up (registered)")):
            ax.axis("off")
            draw_slice(ax, vol, k, f"{tag}, z {vol.z_mm[k]:.1f} mm")
    reg = doc["registration"]
    title = "\n".join(f"{n}: {e['baseline_ml']:.1f} -> {e['followup_ml']:.1f} mL ({e['change_ml']:+.1f}; "
                       f"{'expansion' if n == 'hemorrhage' else 'growth'} {e['expansion_call']})"
                       for n, e in doc["classes"].items())
    fig.suptitle(title + f"\nregistration: brain Dice {reg['brain_dice']:.3f}, rotation {reg['angle_deg']:.1f} deg, "
                 f"shift {reg['shift_mm']:.1f} mm", color="white", fontsize=9)
    fig.legend(handles=[Patch(facecolor="none", edgecolor=CLASS_COLOURS[c], label=n) for c, n in CLASSES.items()],
               loc="lower left", ncol=2, frameon=False, labelcolor="white", fontsize=8)
    fig.text(0.99, 0.01, f"{CONVENTION_NOTE}; window W{WINDOW_WIDTH:g} L{WINDOW_LEVEL:g}", color="0.8", fontsize=6,
             ha="right", va="bottom")
    fig.tight_layout(rect=(0, 0.03, 1, 1 - 0.55 / fig.get_figheight()))
    return fig


def write_compare_preview(cmp, doc: dict, dest, force: bool = False) -> Path:
    import matplotlib.pyplot as plt

    fig = render_compare(cmp, doc)
    try:
        return save_figure(fig, dest, force)
    finally:
        plt.close(fig)

"""QC preview PNG: an axial montage of the lesion slices with class contours and the volumes.

Display convention (stated on the image): radiological — the patient's left is on the image's
right, anterior at the top, slices from inferior to superior. Both volumes are reoriented to LPS
(x towards patient left, y towards posterior, z towards superior) before display, so the picture
does not depend on how the source stored its axes. Brain window: W80 L40 (0–80 HU).
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

import numpy as np
import SimpleITK as sitk

from sdpm_cli.errors import InputRejected
from sdpm_cli.labels import CLASSES, LOCATION_CLASSES
from sdpm_cli.outputs.atomic import atomic_path, check_writable

WINDOW_LEVEL = 40.0
WINDOW_WIDTH = 80.0
CLASS_COLOURS = {1: "#00d0ff", 2: "#ff2a2a"}  # infarct cyan, hemorrhage red: distinct on grey
CONVENTION_NOTE = "radiological display: patient left on image right, anterior up"
EMPTY_SLICES = 4


@dataclass
class DisplayVolume:
    """Image and labels reoriented to LPS, as [z, y, x] arrays ready to show row by row."""

    hu: np.ndarray
    labels: np.ndarray
    aspect: float  # row spacing / column spacing for imshow
    z_mm: np.ndarray  # superior position (mm) of each displayed slice


def display_volume(image_hu: sitk.Image, labels: sitk.Image) -> DisplayVolume:
    """Reorient to LPS so array column 0 is the patient's right and row 0 is anterior."""
    from sdpm_cli.evaluate.cases import grid_mismatch

    if image_hu.GetDimension() != 3 or labels.GetDimension() != 3:
        raise InputRejected("preview needs a 3-D image and a 3-D label map")
    why = grid_mismatch(labels, image_hu)
    if why:
        raise InputRejected(f"preview: the labels are not on the image grid ({why})")
    img = sitk.DICOMOrient(image_hu, "LPS")
    lab = sitk.DICOMOrient(labels, "LPS")
    sx, sy, _ = img.GetSpacing()
    z_mm = np.array([img.TransformIndexToPhysicalPoint((0, 0, k))[2] for k in range(img.GetSize()[2])])
    return DisplayVolume(
        hu=sitk.GetArrayFromImage(img).astype(np.float32),
        labels=sitk.GetArrayFromImage(lab).astype(np.uint8),
        aspect=sy / sx,
        z_mm=z_mm,
    )


def choose_slices(labels_zyx: np.ndarray, max_slices: int = 12) -> list[int]:
    """Slices with lesion (evenly thinned to max_slices, always keeping the largest one);
    a few central slices when there is no lesion."""
    if max_slices < 1:
        raise ValueError("max_slices must be at least 1")
    area = (labels_zyx > 0).reshape(labels_zyx.shape[0], -1).sum(axis=1)
    lesion = np.flatnonzero(area)
    nz = labels_zyx.shape[0]
    if lesion.size == 0:
        n = min(EMPTY_SLICES, max_slices, nz)
        start = max(0, nz // 2 - n // 2)
        return list(range(start, start + n))
    if lesion.size <= max_slices:
        return lesion.tolist()
    pick = set(lesion[np.round(np.linspace(0, lesion.size - 1, max_slices)).astype(int)].tolist())
    biggest = int(lesion[np.argmax(area[lesion])])
    if biggest not in pick:
        # replace the picked slice nearest to the biggest one, keeping the count
        nearest = min(pick, key=lambda k: abs(k - biggest))
        pick.discard(nearest)
        pick.add(biggest)
    return sorted(pick)


def draw_slice(ax, vol: DisplayVolume, k: int, title: str) -> None:
    """One slice in the brain window with each class's contour (the QC montage and the compare preview)."""
    lo, hi = WINDOW_LEVEL - WINDOW_WIDTH / 2, WINDOW_LEVEL + WINDOW_WIDTH / 2
    ax.imshow(vol.hu[k], cmap="gray", vmin=lo, vmax=hi, aspect=vol.aspect, interpolation="nearest")
    for c in CLASSES:
        m = vol.labels[k] == c
        if m.any():
            ax.contour(m.astype(np.float32), levels=[0.5], colors=[CLASS_COLOURS[c]], linewidths=1.2)
    ax.set_title(title, color="white", fontsize=8)


def volume_text(v: Any, digits: int = 1, long: bool = False) -> str:
    """One class volume as people read it: '24.3 mL (95% 17.9-67.0, LOW CONFIDENCE)', or with
    `long` '24.32 mL (95% interval of the true volume 17.9-67.0)  LOW CONFIDENCE' (the console line).
    `v` is a float (mL) or the pipeline's ClassVolume (its calibrated interval and flag are shown)."""
    if isinstance(v, (int, float)):
        return f"{v:.{digits}f} mL"
    level = f"{(getattr(v, 'level', None) or 0.95):.0%}"
    ci = getattr(v, "ci95_ml", None)
    flag = bool(getattr(v, "low_confidence", False))
    text = f"{v.volume_ml:.{digits}f} mL"
    if long:
        ci_text = f" ({level} interval of the true volume {ci[0]:.1f}-{ci[1]:.1f})" if ci else ""
        return text + ci_text + ("  LOW CONFIDENCE" if flag else "")
    extra = ([f"{level} {ci[0]:.1f}-{ci[1]:.1f}"] if ci else []) + (["LOW CONFIDENCE"] if flag else [])
    return text + (f" ({', '.join(extra)})" if extra else "")


def volumes_line(volumes_ml: Mapping[str, Any]) -> str:
    """'infarct: 0.0 mL   hemorrhage: 24.3 mL (95% 17.9-67.0, LOW CONFIDENCE)' (floats or ClassVolumes)."""
    return "   ".join(f"{name}: {volume_text(v)}" for name, v in volumes_ml.items())


def legend_label(name: str, lesions: Optional[Sequence[Mapping]] = None) -> str:
    """'hemorrhage (1 extra-axial, 2 subarachnoid)': the class and its lesions' locations, when known."""
    if not lesions:
        return name
    counts = Counter(r["location"] for r in lesions if r.get("class") == name and r.get("location"))
    parts = [f"{counts[loc]} {loc}" for loc in LOCATION_CLASSES if counts[loc]]
    unsure = sum(1 for r in lesions if r.get("class") == name and r.get("low_confidence"))
    if unsure:
        parts.append(f"{unsure} low confidence")
    return f"{name} (" + ", ".join(parts) + ")" if parts else name


def render_preview(image_hu: sitk.Image, labels: sitk.Image, *, volumes_ml: dict[str, float], max_slices: int = 12,
                   lesions: Optional[Sequence[Mapping]] = None, banner: str = "", note: str = ""):
    """Build the montage figure (matplotlib, Agg); the caller saves or closes it. lesions: report rows
    (`outputs.report.lesion_rows`); their locations are counted in the legend. note: the model's
    intended use (model_note), printed first in the footer."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    vol = display_volume(image_hu, labels)
    slices = choose_slices(vol.labels, max_slices)
    n = len(slices)
    ncols = min(4, n)
    nrows = math.ceil(n / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.2 * ncols, 3.2 * nrows + 1.0), squeeze=False)
    fig.patch.set_facecolor("black")
    for ax in axes.ravel():
        ax.axis("off")
    for ax, k in zip(axes.ravel(), slices):
        draw_slice(ax, vol, k, f"z {vol.z_mm[k]:.1f} mm")
        ax.text(0.01, 0.5, "R", color="yellow", fontsize=9, transform=ax.transAxes, va="center", ha="left")
        ax.text(0.99, 0.5, "L", color="yellow", fontsize=9, transform=ax.transAxes, va="center", ha="right")
    empty = not (vol.labels > 0).any()
    title = volumes_line(volumes_ml) + ("   (no lesion segmented: central slices shown)" if empty else "")
    fig.suptitle(title, color="white", fontsize=11)
    if banner:  # out-of-domain input: a red line under the title, impossible to miss on the montage
        fig.text(0.5, 0.955, banner, color="white", backgroundcolor="#b00020", fontsize=10, ha="center",
                 va="top", weight="bold")
    handles = [Patch(facecolor="none", edgecolor=CLASS_COLOURS[c], label=legend_label(name, lesions))
               for c, name in CLASSES.items()]
    fig.legend(handles=handles, loc="lower left", ncol=len(handles), frameon=False, labelcolor="white", fontsize=9)
    footer = f"{CONVENTION_NOTE}; window W{WINDOW_WIDTH:g} L{WINDOW_LEVEL:g}"
    fig.text(0.99, 0.01, f"{note}; {footer}" if note else footer, color="0.8", fontsize=7, ha="right",
             va="bottom")
    fig.tight_layout(rect=(0, 0.04, 1, 0.95))
    return fig


def domain_banner(domain: Optional[Mapping]) -> str:
    """The QC banner for a study outside the validated domain ("" when inside it)."""
    from sdpm_cli.ingest.anatomy import flags_set

    on = flags_set(dict(domain) if domain else None)
    if not on:
        return ""
    return "OUTSIDE VALIDATED DOMAIN: " + ", ".join(f.replace("_", " ") for f in on) + " (see report warnings)"


def model_note(model) -> str:
    """The footer's word on the model that drew the contours ("" when its header says nothing of its
    intended use): a montage passed around without its report still says what it may be used for."""
    v = getattr(model, "validation", None)
    use = v.intended_use if v is not None else ""
    return f"model {getattr(model, 'name', '?')}: {use} use only (report: model.caveat)" if use else ""


def save_figure(fig, dest, force: bool = False, dpi: int = 110) -> Path:
    """Save a matplotlib figure as PNG atomically (never a half-written file at dest)."""
    with atomic_path(dest, force) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi, facecolor=fig.get_facecolor())
    return Path(dest)


def write_preview(
    image_hu: sitk.Image,
    labels: sitk.Image,
    dest,
    *,
    volumes_ml: Optional[dict[str, float]] = None,
    force: bool = False,
    max_slices: int = 12,
    lesions: Optional[Sequence[Mapping]] = None,
    banner: str = "",
    note: str = "",
) -> Path:
    """Write the QC montage PNG; volumes_ml defaults to the volumes counted from the labels.
    banner: a red warning line (out-of-domain input, see domain_banner); note: model_note."""
    import matplotlib.pyplot as plt

    check_writable(dest, force)
    if volumes_ml is None:
        from sdpm_cli.postprocess.lesions import measure_lesions

        measured = measure_lesions(labels)
        volumes_ml = {name: measured.volume_ml(c) for c, name in CLASSES.items()}
    fig = render_preview(image_hu, labels, volumes_ml=volumes_ml, max_slices=max_slices, lesions=lesions, banner=banner,
                         note=note)
    try:
        return save_figure(fig, dest, force)
    finally:
        plt.close(fig)

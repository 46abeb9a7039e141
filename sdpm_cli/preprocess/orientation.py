"""Does the head's anatomy agree with the orientation its header states?

Every model was trained and validated on heads in the display orientation (rows anterior ->
posterior, columns patient right -> left; `grid.Canon`), which the model grid takes from the image
header. Research data often loses that header: the CT-ICH slices of `../shared/fixtures` are stored
lying on their side, and the shipped model scores them 0.47 mean hemorrhage Dice as stored against
0.64 stood upright (models/MODEL_CARD.md, "The real slices' orientation"). A head cannot lie at 90
degrees to the scanner's front-back axis in an axial CT (the patient lies on a head holder), so when
the anatomy says it does, the header is wrong, and the network should be shown the head upright.

Two cues, measured on the slices where the head is largest (at about 1 mm per pixel):
* the **head holder**: objects outside the head (above `air_hu`) lie behind a supine patient; their
  direction from the head's centre points posterior;
* the **head outline**: the head is longer front to back than side to side (its long axis).
The head is turned only by a quarter turn (exact, undone exactly: the mask stays on the source
grid), only when the cues say it lies sideways and none contradicts that, only where a holder
tells front from back (the egg shape of the outline, wider at the back, does on real heads but not
on the randomised phantoms), and never by half a turn (a prone scan's holder lies in front of the
head); the pipeline does not ask for a decubitus DICOM series (`SeriesInfo.decubitus`: the holder
is beside the head by design; `anatomy_may_judge`). A head that seems to lie sideways but is not
turned is `suspect`: the user is warned. Measured on 480 phantoms of families A, B and C and the 12
real slices, correctly stored and turned (BENCHMARKS.md, "Heads whose header is wrong about their
orientation": no false turn, none the wrong way).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from sdpm_cli.preprocess.grid import Canon
from sdpm_cli.preprocess.symmetry import principal_axis


# what the network is shown: the head as the anatomy says ("anatomy": turned upright when the header
# is found wrong, with a warning) or exactly as the header says ("header")
ORIENTATIONS = ("anatomy", "header")


@dataclass(frozen=True)
class OrientationRules:
    """Thresholds of the check (mm, HU, degrees). Directions are in the display frame: 0 = posterior
    (towards the last row), +90 = patient left (the last column), 180 = anterior."""

    air_hu: float = -300.0  # head, holder and pads are above this; air below
    pixel_mm: float = 1.0  # the cues are measured at about this pixel size
    head_share: float = 0.8  # slices whose head area is at least this share of the largest
    max_slices: int = 5
    min_head_cm2: float = 80.0  # a smaller largest cross-section is not a head to judge
    holder_min_cm2: float = 1.0  # objects outside the head, together at least this large ...
    holder_radii: tuple[float, float] = (0.6, 1.8)  # ... with their centre this far from the head's (head radii)
    sideways_tol_deg: float = 30.0  # holder within this of +-90 degrees: the head lies sideways
    along_tol_deg: float = 45.0  # holder within this of 0 or 180: it agrees with the header's front-back axis
    axis_sideways_deg: float = 60.0  # long axis at least this far from front-back ...
    axis_upright_deg: float = 30.0  # ... or at most this far (the outline agrees with the header)
    min_elongation: float = 1.10  # the outline counts only when this elongated (length / width)
    min_elongation_alone: float = 1.15  # ... and this elongated when the holder lies neither behind nor beside


@dataclass(frozen=True)
class OrientationCheck:
    """The evidence and the verdict. `quarter_turns` (0, 1 or 3) counter-clockwise turns of the display-
    oriented slice (`np.rot90(a, k, axes=(-2, -1))`) stand the head upright; 0: the header is believed."""

    quarter_turns: int
    holder_deg: Optional[float]  # direction of the objects outside the head; None: none found
    axis_deg: Optional[float]  # the outline's long axis, degrees from front-back (0-90)
    elongation: Optional[float]  # length / width of the outline (second moments)
    reason: str
    suspect: bool = False  # not turned, but a cue says the head may lie sideways (worth a warning)

    @property
    def turned(self) -> bool:
        return self.quarter_turns % 4 != 0

    @property
    def warning(self) -> Optional[str]:
        """What the user is told (segment, qc), or None when the anatomy agrees with the header."""
        if self.turned:
            return (f"the head lies at 90 degrees to the orientation in the file's header ({self.reason}): the network "
                    "is shown it upright (--orientation header to believe the header); masks stay on the source grid, "
                    "but the header's left/right and front/back may be wrong")
        if self.suspect:
            return (f"the head may lie at 90 degrees to the orientation in the file's header ({self.reason}); check "
                    "the header: the model was validated on heads as a DICOM series shows them")
        return None

    def to_dict(self) -> dict:
        r = lambda v, n: None if v is None else round(float(v), n)  # noqa: E731
        return {"quarter_turns": self.quarter_turns, "holder_deg": r(self.holder_deg, 1), "axis_deg": r(self.axis_deg, 1),
                "elongation": r(self.elongation, 3), "suspect": self.suspect, "reason": self.reason}


def _largest(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    lab, n = ndimage.label(mask)
    if n == 0:
        return np.zeros_like(mask), lab, 0
    sizes = np.bincount(lab.ravel())[1:]
    k = int(np.argmax(sizes)) + 1
    return lab == k, lab, k


def _angle_diff(a: float, b: float) -> float:
    return abs((a - b + 180.0) % 360.0 - 180.0)


def anatomy_may_judge(study) -> bool:
    """Whether a loaded study's anatomy may overrule its header: not a skull-stripped volume (no holder
    or scalp left to judge) nor a decubitus DICOM series (its holder lies beside the head by design)."""
    series = getattr(study, "series", None)
    return getattr(study, "brain", None) is None and not getattr(series, "decubitus", False)


def quarter_turned(image: sitk.Image, k: int) -> sitk.Image:
    """The same voxels turned k counter-clockwise quarter turns in-plane under the same header: what a
    file that lost its orientation looks like (for checks and benchmarks)."""
    arr = np.ascontiguousarray(np.rot90(sitk.GetArrayFromImage(image), k, axes=(1, 2)))
    out = sitk.GetImageFromArray(arr)
    out.SetSpacing(image.GetSpacing())
    out.SetOrigin(image.GetOrigin())
    out.SetDirection(image.GetDirection())
    return out


def check_image(image_hu: sitk.Image, hu: Optional[np.ndarray] = None,
                rules: OrientationRules = OrientationRules()) -> OrientationCheck:
    """`check_orientation` of a CT image in the display orientation its header states (`hu`: its voxel
    array [Z, Y, X] where the caller already has it)."""
    canon = Canon.from_direction(image_hu.GetDirection())
    sp = image_hu.GetSpacing()
    arr = sitk.GetArrayViewFromImage(image_hu) if hu is None else hu
    return check_orientation(canon.forward(arr), (sp[0], sp[1]) if canon.transpose else (sp[1], sp[0]), rules)


def check_orientation(hu_display: np.ndarray, spacing_rc: tuple[float, float],
                      rules: OrientationRules = OrientationRules()) -> OrientationCheck:
    """Judge a head CT in the display orientation: float HU [Z, rows, cols] (a view is fine), pixel
    spacing (rows, cols) in mm. Pure: reads the array, returns the verdict."""
    a = np.asarray(hu_display)
    if a.ndim != 3 or a.shape[0] == 0:
        raise ValueError(f"expected a [Z, rows, cols] volume, got shape {a.shape}")
    sr, sc = (float(s) for s in spacing_rc)
    step_r, step_c = max(1, int(round(rules.pixel_mm / sr))), max(1, int(round(rules.pixel_mm / sc)))
    sr, sc = sr * step_r, sc * step_c
    small = a[:, ::step_r, ::step_c]
    # the head's largest cross-sections (air threshold, largest object, holes filled)
    coarse = (small[:, ::4, ::4] > rules.air_hu).reshape(small.shape[0], -1).sum(axis=1)
    order = np.argsort(-coarse, kind="stable")
    cand = [int(z) for z in order if coarse[z] >= rules.head_share * coarse[order[0]]][: rules.max_slices]
    holder_vecs, axes, elongs, areas = [], [], [], []
    for z in cand:
        outside = small[z] > rules.air_hu
        head, lab, k = _largest(outside)
        if k == 0:
            continue
        head = ndimage.binary_fill_holes(head)
        area_mm2 = float(head.sum()) * sr * sc
        yy, xx = np.nonzero(head)
        y, x = yy * sr, xx * sc
        cy, cx = float(y.mean()), float(x.mean())
        angle, elongation = principal_axis(y, x)
        axes.append(abs(angle))  # degrees from front-back, 0-90
        elongs.append(elongation)
        areas.append(area_mm2)
        # objects outside the head: holder, pads, table
        other = outside & ~head & (lab != k)
        oy, ox = np.nonzero(other)
        o_area = len(oy) * sr * sc
        if o_area >= rules.holder_min_cm2 * 100.0:
            vy, vx = float((oy * sr - cy).mean()), float((ox * sc - cx).mean())
            radius = math.sqrt(area_mm2 / math.pi)
            if rules.holder_radii[0] <= math.hypot(vy, vx) / radius <= rules.holder_radii[1]:
                holder_vecs.append((vy * o_area, vx * o_area))
    if not areas or max(areas) < rules.min_head_cm2 * 100.0:
        return OrientationCheck(0, None, None, None, "no head cross-section large enough to judge")
    axis, elong = float(np.mean(axes)), float(np.mean(elongs))
    holder = None
    if holder_vecs:
        vy, vx = np.sum(holder_vecs, axis=0)
        holder = math.degrees(math.atan2(vx, vy))
    shaped = elong >= rules.min_elongation
    shape_sideways, shape_upright = shaped and axis >= rules.axis_sideways_deg, shaped and axis <= rules.axis_upright_deg
    holder_sideways = holder is not None and min(_angle_diff(holder, 90.0), _angle_diff(holder, -90.0)) <= rules.sideways_tol_deg
    holder_along = holder is not None and min(_angle_diff(holder, 0.0), _angle_diff(holder, 180.0)) <= rules.along_tol_deg

    def verdict(k: int, why: str, suspect: bool = False) -> OrientationCheck:
        return OrientationCheck(k, holder, axis, elong, why, suspect)

    if holder_sideways and not shape_upright:
        # the holder is behind the head: turn it to the bottom (a holder on the left of the image -> k = 1)
        k = 1 if holder < 0 else 3
        return verdict(k, f"the head holder lies at {holder:.0f} degrees from posterior"
                          + (f" and the head's long axis at {axis:.0f} degrees from front-back" if shape_sideways else ""))
    if shape_sideways and not holder_along and (holder_sideways or elong >= rules.min_elongation_alone):
        why = f"the head's long axis lies at {axis:.0f} degrees from front-back (length/width {elong:.2f})"
        if holder is not None:  # which end is the back: the holder's side
            return verdict(1 if holder < 0 else 3, why + f", the holder at {holder:.0f} degrees")
        # nothing tells front from back (the egg shape does not on family-A phantoms: wrong on 13 of 960)
        return verdict(0, why + ", but no holder tells front from back: the header is believed", suspect=True)
    if holder_sideways or (shape_sideways and holder is None):
        return verdict(0, "the cues disagree (holder " + ("none" if holder is None else f"{holder:.0f} degrees")
                          + f", long axis {axis:.0f} degrees): the header is believed", suspect=True)
    # a holder behind the head (or in front: prone) outweighs an outline that is wider than long
    # (a swollen scalp, a slice near the vertex)
    return verdict(0, "the anatomy agrees with the header")

"""Rigid registration of a follow-up scan to its baseline, with the measures that say whether it worked.

Two CTs of one head differ by a rigid motion (the patient lies differently) plus the lesion's
change, so a 6-parameter Euler transform is the right model: anything more flexible could absorb
the very growth we want to measure. Mattes mutual information over the head (clipped HU: air,
brain and bone all carry the fit), multi-resolution, started from the brain masks' centres of mass.

The transform maps baseline physical points to follow-up points (ITK's fixed -> moving
convention), so `sitk.Resample(followup, baseline, transform)` puts the follow-up on the baseline
grid. Whether to trust it is decided on a measure that does not come from the optimiser: the Dice
of the two brain masks after registration (`preprocess.brainmask`); below
`RegistrationRules.min_brain_dice` the comparison is refused (different heads, no overlap, or a
failed fit), never silently reported.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import numpy as np
import SimpleITK as sitk

from sdpm_cli.errors import InputRejected
from sdpm_cli.evaluate.metrics import dice  # the one Dice of the package


@dataclass(frozen=True)
class RegistrationRules:
    """Registration settings and the refusal threshold, as data."""

    min_brain_dice: float = 0.85  # brain-mask Dice after registration below this: refused
    hu_clip: tuple[float, float] = (-200.0, 1500.0)  # soft tissue to bone; deep air carries nothing
    histogram_bins: int = 48
    sampling_fraction: float = 0.2  # of the head voxels, on a regular lattice (deterministic)
    shrink_factors: tuple[int, ...] = (4, 2, 1)
    smoothing_mm: tuple[float, ...] = (2.0, 1.0, 0.0)
    iterations: int = 150
    learning_rate: float = 1.0
    head_margin_mm: float = 15.0  # the metric is sampled within the baseline brain grown by this


@dataclass(frozen=True)
class Registration:
    """The rigid transform (baseline -> follow-up points) and how well it fits."""

    transform: sitk.Euler3DTransform
    rotation_deg: tuple[float, float, float]  # Euler angles about x, y, z
    translation_mm: tuple[float, float, float]  # displacement of the baseline brain's centre
    angle_deg: float  # the rotation's total angle (axis-angle)
    brain_dice: float  # baseline brain mask vs the registered follow-up brain mask
    brain_dice_before: float  # the same with the identity transform (scanner coordinates only)
    mutual_information: float  # final Mattes MI (nats; higher = better), the optimiser's own measure
    iterations: int
    stop_reason: str
    rules: RegistrationRules

    @property
    def passed(self) -> bool:
        return self.brain_dice >= self.rules.min_brain_dice

    def to_dict(self) -> dict:
        return {
            "method": "rigid (Euler 3-D), Mattes mutual information, multi-resolution "
                      f"{'/'.join(str(s) for s in self.rules.shrink_factors)}, initialised on brain-mask centres",
            "rotation_deg": [round(a, 3) for a in self.rotation_deg],
            "translation_mm": [round(t, 3) for t in self.translation_mm],
            "angle_deg": round(self.angle_deg, 3),
            "shift_mm": round(float(np.linalg.norm(self.translation_mm)), 3),
            "brain_dice": round(self.brain_dice, 4),
            "brain_dice_before": round(self.brain_dice_before, 4),
            "mutual_information": round(self.mutual_information, 4),
            "min_brain_dice": self.rules.min_brain_dice,
            "passed": self.passed,
            "iterations": self.iterations,
            "stop_reason": self.stop_reason,
        }




def resample_to(image: sitk.Image, reference: sitk.Image, transform: sitk.Transform, *, labels: bool,
                default: float = 0.0) -> sitk.Image:
    """`image` on `reference`'s grid through `transform` (reference points -> image points);
    nearest neighbour for labels (values stay labels), linear for HU."""
    interp = sitk.sitkNearestNeighbor if labels else sitk.sitkLinear
    return sitk.Resample(image, reference, transform, interp, default, image.GetPixelID())


def angle_of(transform: sitk.Euler3DTransform) -> float:
    """Total rotation angle (degrees) of a rigid transform's matrix."""
    R = np.asarray(transform.GetMatrix()).reshape(3, 3)
    return math.degrees(math.acos(float(np.clip((np.trace(R) - 1.0) / 2.0, -1.0, 1.0))))


def _prepared(image_hu: sitk.Image, rules: RegistrationRules) -> sitk.Image:
    img = sitk.Cast(image_hu, sitk.sitkFloat32)
    return sitk.Clamp(img, sitk.sitkFloat32, rules.hu_clip[0], rules.hu_clip[1])


def _centre(mask: sitk.Image) -> Optional[tuple[float, float, float]]:
    arr = sitk.GetArrayViewFromImage(mask)
    idx = np.argwhere(arr > 0)
    if idx.size == 0:
        return None
    zyx = idx.mean(axis=0)
    return mask.TransformContinuousIndexToPhysicalPoint((float(zyx[2]), float(zyx[1]), float(zyx[0])))


def register_rigid(baseline_hu: sitk.Image, followup_hu: sitk.Image, *, baseline_brain: Optional[sitk.Image] = None,
                   followup_brain: Optional[sitk.Image] = None, rules: RegistrationRules = RegistrationRules()) -> Registration:
    """Register the follow-up to the baseline; the brain masks are computed when not given.

    Raises InputRejected when either scan has no brain or the masks cannot be brought to overlap;
    a poor fit is returned with `passed` False (the caller refuses it, naming the Dice)."""
    from sdpm_cli.preprocess.brainmask import brain_mask

    bb = baseline_brain if baseline_brain is not None else brain_mask(baseline_hu)
    fb = followup_brain if followup_brain is not None else brain_mask(followup_hu)
    cb, cf = _centre(bb), _centre(fb)
    if cb is None or cf is None:
        raise InputRejected(f"registration: no brain found in the {'baseline' if cb is None else 'follow-up'} scan")
    fixed, moving = _prepared(baseline_hu, rules), _prepared(followup_hu, rules)

    init = sitk.Euler3DTransform()
    init.SetCenter(cb)
    init.SetTranslation(tuple(float(f - b) for f, b in zip(cf, cb)))

    reg = sitk.ImageRegistrationMethod()
    reg.SetMetricAsMattesMutualInformation(numberOfHistogramBins=rules.histogram_bins)
    reg.SetMetricSamplingStrategy(reg.REGULAR)
    reg.SetMetricSamplingPercentage(rules.sampling_fraction, seed=1)
    margin = max(1, int(round(rules.head_margin_mm / max(baseline_hu.GetSpacing()[:2]))))
    head = sitk.BinaryDilate(sitk.Cast(bb, sitk.sitkUInt8), [margin, margin, max(1, margin // 3)])
    reg.SetMetricFixedMask(head)
    reg.SetInterpolator(sitk.sitkLinear)
    reg.SetOptimizerAsRegularStepGradientDescent(learningRate=rules.learning_rate, minStep=1e-4,
                                                 numberOfIterations=rules.iterations, relaxationFactor=0.6,
                                                 gradientMagnitudeTolerance=1e-6)
    reg.SetOptimizerScalesFromPhysicalShift()
    reg.SetShrinkFactorsPerLevel(list(rules.shrink_factors))
    reg.SetSmoothingSigmasPerLevel(list(rules.smoothing_mm))
    reg.SmoothingSigmasAreSpecifiedInPhysicalUnitsOn()
    reg.SetInitialTransform(init, inPlace=True)
    try:
        reg.Execute(fixed, moving)
    except RuntimeError as exc:  # ITK: e.g. "All samples map outside moving image buffer"
        raise InputRejected(f"registration failed: the scans do not overlap ({str(exc).splitlines()[-1][:120]})") from None
    tx = sitk.Euler3DTransform(init)
    mi = -float(reg.GetMetricValue())

    bb_arr = sitk.GetArrayViewFromImage(bb) > 0
    moved = sitk.GetArrayViewFromImage(resample_to(fb, bb, tx, labels=True)) > 0
    ident = sitk.GetArrayViewFromImage(resample_to(fb, bb, sitk.Euler3DTransform(), labels=True)) > 0
    return Registration(
        transform=tx,
        rotation_deg=tuple(math.degrees(a) for a in (tx.GetAngleX(), tx.GetAngleY(), tx.GetAngleZ())),
        translation_mm=tuple(float(t) for t in tx.GetTranslation()),
        angle_deg=angle_of(tx),
        brain_dice=dice(bb_arr, moved),
        brain_dice_before=dice(bb_arr, ident),
        mutual_information=mi,
        iterations=int(reg.GetOptimizerIteration()),
        stop_reason=reg.GetOptimizerStopConditionDescription().split(":")[-1].strip()[:120],
        rules=rules,
    )


def check_registration(reg: Registration) -> None:
    """Refuse (InputRejected, exit 3) a registration that did not bring the brains together."""
    if reg.passed:
        return
    why = "the brains do not overlap" if reg.brain_dice < 0.05 else "the scans may be of different heads, or the fit failed"
    raise InputRejected(f"registration failed: brain-mask Dice {reg.brain_dice:.2f} after rigid registration "
                        f"(needs >= {reg.rules.min_brain_dice:.2f}); {why}")

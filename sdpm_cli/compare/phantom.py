"""Synthetic scan pairs with known change: the same phantom head scanned twice, moved, lesion grown.

Used by the tests and benchmarks/accuracy/compare_pairs.py. The follow-up is the baseline
phantom (sdpm synth, family A) with its lesion grown by `grow_mm` (dilated inside the brain, the
new voxels given the lesion's own HU plus the scan's noise), then moved by a known rigid
motion and resampled onto an axial grid like the baseline's (image linear, truth nearest), with
fresh noise. The true change is counted on each scan's own truth label.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import numpy as np
import SimpleITK as sitk

from sdpm_cli.postprocess.lesions import voxel_volume_ml


@dataclass(frozen=True)
class PairSpec:
    """How the follow-up differs from the baseline."""

    rotation_deg: tuple[float, float, float] = (0.0, 0.0, 0.0)  # about x, y, z through the head centre
    shift_mm: tuple[float, float, float] = (0.0, 0.0, 0.0)
    grow_mm: float = 0.0  # dilation radius of the grown class (0: unchanged)
    grow_label: int = 2  # the class that grows (2 hemorrhage, 1 infarct)
    noise_hu: float = 3.0  # fresh noise on the follow-up (a second acquisition)
    seed: int = 0


@dataclass
class Pair:
    baseline: sitk.Image
    baseline_label: sitk.Image
    followup: sitk.Image
    followup_label: sitk.Image
    motion: sitk.Euler3DTransform  # baseline points -> follow-up points (what registration should find)
    meta: dict


def class_volumes_ml(label: sitk.Image) -> dict[int, float]:
    arr = sitk.GetArrayViewFromImage(label)
    v = voxel_volume_ml(label)
    return {c: float(np.count_nonzero(arr == c)) * v for c in (1, 2)}


def grow_lesion(image: sitk.Image, label: sitk.Image, grow_mm: float, cls: int, rng: np.random.Generator,
                noise_hu: float) -> tuple[sitk.Image, sitk.Image]:
    """Dilate class `cls` by grow_mm (ellipsoidal, in mm) inside the brain, painting its HU there."""
    from scipy import ndimage

    from sdpm_cli.preprocess.brainmask import brain_mask

    hu = sitk.GetArrayFromImage(image).astype(np.float32)
    lab = sitk.GetArrayFromImage(label)
    les = lab == cls
    if grow_mm <= 0 or not les.any():
        return image, label
    sx, sy, sz = image.GetSpacing()
    r = [max(0, int(math.floor(grow_mm / s))) for s in (sz, sy, sx)]
    zz, yy, xx = np.ogrid[-r[0]:r[0] + 1, -r[1]:r[1] + 1, -r[2]:r[2] + 1]
    ball = (zz * sz) ** 2 + (yy * sy) ** 2 + (xx * sx) ** 2 <= grow_mm**2
    brain = ndimage.binary_erosion(sitk.GetArrayViewFromImage(brain_mask(image)) > 0, iterations=2)
    new = ndimage.binary_dilation(les, structure=ball) & brain & (lab == 0)
    level = float(np.median(hu[les]))
    hu[new] = level + rng.normal(0.0, noise_hu, int(new.sum()))
    lab = lab.copy()
    lab[new] = cls
    out_img = sitk.GetImageFromArray(np.round(hu).astype(np.int16))
    out_img.CopyInformation(image)
    out_lab = sitk.GetImageFromArray(lab.astype(np.uint8))
    out_lab.CopyInformation(label)
    return out_img, out_lab


def rigid_motion(image: sitk.Image, rotation_deg, shift_mm) -> sitk.Euler3DTransform:
    """The motion about the image centre: baseline points -> follow-up points."""
    size = np.asarray(image.GetSize(), float)
    centre = image.TransformContinuousIndexToPhysicalPoint(tuple((size - 1) / 2.0))
    t = sitk.Euler3DTransform()
    t.SetCenter(centre)
    t.SetRotation(*(math.radians(a) for a in rotation_deg))
    t.SetTranslation(tuple(float(s) for s in shift_mm))
    return t


def make_pair(case, spec: PairSpec) -> Pair:
    """A follow-up of `case` (a synth.SynthCase) moved and grown as `spec` says."""
    rng = np.random.default_rng(spec.seed)
    img, lab = grow_lesion(case.image, case.label, spec.grow_mm, spec.grow_label, rng, spec.noise_hu)
    motion = rigid_motion(case.image, spec.rotation_deg, spec.shift_mm)
    # the follow-up scan at point p shows what the baseline head held at motion^-1(p)
    inv = motion.GetInverse()
    f_img = sitk.Resample(img, case.image, inv, sitk.sitkLinear, -1000.0, sitk.sitkFloat32)
    arr = sitk.GetArrayFromImage(f_img)
    arr = np.where(arr > -990, arr + rng.normal(0.0, spec.noise_hu, arr.shape), arr)
    f_img2 = sitk.GetImageFromArray(np.round(arr).astype(np.int16))
    f_img2.CopyInformation(case.image)
    f_lab = sitk.Resample(lab, case.image, inv, sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)
    vb, vf = class_volumes_ml(case.label), class_volumes_ml(f_lab)
    meta = {"rotation_deg": list(spec.rotation_deg), "shift_mm": list(spec.shift_mm), "grow_mm": spec.grow_mm,
            "grow_label": spec.grow_label, "baseline_ml": vb, "followup_ml": vf,
            "true_change_ml": {c: vf[c] - vb[c] for c in vb}}
    return Pair(case.image, case.label, f_img2, f_lab, motion, meta)


def target_error_mm(found: sitk.Transform, truth: sitk.Transform, image: sitk.Image, radius_mm: float = 60.0,
                    n: int = 200, seed: int = 0) -> float:
    """Mean distance between where two transforms send points in a ball about the image centre (TRE)."""
    rng = np.random.default_rng(seed)
    size = np.asarray(image.GetSize(), float)
    c = np.asarray(image.TransformContinuousIndexToPhysicalPoint(tuple((size - 1) / 2.0)))
    d = rng.normal(size=(n, 3))
    pts = c + d / np.linalg.norm(d, axis=1, keepdims=True) * radius_mm * rng.uniform(0, 1, (n, 1)) ** (1 / 3)
    return float(np.mean([np.linalg.norm(np.subtract(found.TransformPoint(tuple(p)), truth.TransformPoint(tuple(p))))
                          for p in pts]))


def default_case(seed: int, matrix: int = 128, thickness_mm: float = 5.0, lesion: str = "hemorrhage",
                 plan: Optional[list] = None):
    """A small clinical-domain family A phantom (tests: matrix 128 keeps them seconds)."""
    from sdpm_cli.synth import SynthConfig, generate_case

    cfg = SynthConfig(matrix=matrix, thicknesses_mm=(thickness_mm,), thickness_weights=(1.0,), lesion=lesion,
                      domain="clinical", max_rotation_deg=(4.0, 4.0, 4.0), streak_prob=0.0)
    return generate_case(seed, cfg, plan=plan)


def write_demo_pair(out_dir, seed: int = 3, matrix: int = 256, spec: Optional[PairSpec] = None, patient: int = 7) -> dict:
    """Write a pair as two DICOM series of one synthetic patient (out_dir/baseline, out_dir/followup)."""
    import copy
    from pathlib import Path

    from sdpm_cli.synth.writers import write_dicom_series

    out_dir = Path(out_dir)
    case = default_case(seed, matrix=matrix)
    pair = make_pair(case, spec or PairSpec(rotation_deg=(3.0, -2.0, 4.0), shift_mm=(5.0, -4.0, 3.0), grow_mm=4.0))
    write_dicom_series(pair.baseline, case.meta, out_dir / "baseline", case_number=patient)
    meta = copy.deepcopy(case.meta)
    meta["seed"] = int(meta["seed"]) + 10**6  # the second scan's own UIDs
    write_dicom_series(pair.followup, meta, out_dir / "followup", case_number=patient)
    return pair.meta


if __name__ == "__main__":  # python -m sdpm_cli.compare.phantom OUT_DIR: the README's example pair
    import json
    import sys

    print(json.dumps(write_demo_pair(sys.argv[1]), indent=1, default=float))

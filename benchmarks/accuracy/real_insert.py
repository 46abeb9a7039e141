"""Family C (TEST ONLY): real head CT backgrounds with synthetic lesions blended in physically.

    python benchmarks/accuracy/real_insert.py --out data/test_setC --cases 24 --seed 70 [--fixtures DIR] [--force]

Neither `sdpm synth` family made these: the anatomy, noise, beam hardening and reconstruction are a
real scanner's (../shared/fixtures/dcm_qa_ct, BSD 2-Clause, Chris Rorden), and each lesion is defined
relative to the tissue it replaces:

* blood (parenchymal hematoma, subdural crescent, epidural lens): `hu = (1 - f) hu + f (blood_hu + noise)`,
  blood_hu ~ U(50, 80) per lesion, noise Gaussian with the background's own level and texture (below),
  times U(0.8, 1.2); f is restricted to the brain mask (the blood displaces brain: simply replaced);
* infarct: `hu = hu - f delta`, delta ~ U(3, 10) HU, on parenchyma voxels only (CSF and bone untouched);
* f is a partial-volume fraction in [0, 1]: the lesion's shape is evaluated on 5 sub-slices across
  the slab (max(slice thickness, slice spacing)) and averaged, then blurred by 0.7 voxel in-plane;
* labels (uint8, the background's grid): 2 where the blood fraction is >= 0.5 inside the brain, 1 where
  the infarct fraction is >= 0.5 on parenchyma and not blood (the `sdpm synth` rule: "a voxel is lesion
  when the lesion's partial-volume fraction in it is >= 0.5"); volume_ml = label voxels x voxel volume.

Brain = `brain_mask_array` (intracranial contents); parenchyma = brain & 15 <= HU <= 50 after a
1x3x3 median; CSF = brain & HU < 15; distance to the inner table = the in-plane distance transform of
the brain slice (subdural/epidural thickness) or the 3-D one (hematoma depth >= 10 mm).

Noise: the level is measured on parenchyma as the robust (4-sigma clipped) standard deviation of
HU - median3x3(HU), and the texture as that residual's lag-1 correlations along z, y, x. The noise
put into blood is white Gaussian noise smoothed by a Gaussian fitted so that the same residual
statistics (level and correlations) come out as the background's. (The plain 1.4826 x MAD of that
residual is quantised on integer HU - exactly 1.4826 on GE - and is recorded, not used.)

Shapes (all in the array's own frame; +x is the patient's left on these LPS-aligned grids):
* parenchymal hematoma: U_log(3, 60) mL, a lobulated ellipsoid centred on parenchyma >= 10 mm (3-D) from
  the inner table, on slices holding >= 40 % of the largest brain slice (so cerebellar ones occur);
* subdural: in-plane distance to the inner table < t, t <= U(4, 15) mm tapering to 0 over a U(60, 150)
  degree sector of one convexity (kept within 80 degrees of lateral) and a U(4, 12) cm span in z;
* epidural: a lens t = U(8, 25) mm x (1 - u^2 - v^2) at the table, U(4, 8) cm wide, mostly temporo-parietal;
* infarct: U_log(10, 150) mL, a lobulated wedge from a deep apex out to the cortex (MCA 60 %, ACA 20 %,
  PCA 20 %) in one supratentorial hemisphere, the volume set exactly by a quantile of the wedge's
  opening over that hemisphere's parenchyma;
* infarct + hematoma: the hematoma sits inside the infarct (a hemorrhagic transformation), at most half
  its volume.
The inner table of the subdural/epidural is the brain slice's outline closed by a 4 mm disk (notches of the
mask are not table). No mass effect is modelled: blood replaces brain, nothing is displaced.

Real findings of the background: GE is a real patient with a large hypodensity of its own in the +x
(patient-left) temporo-occipital parenchyma (~90 mL by a mirror-asymmetry heuristic, ~26 vs ~36 HU; an
older or a subacute infarct - not labelled, its age unknown) and periventricular white-matter hypodensity.
`asymmetric_hypodensity` finds it; the manifest lists it (backgrounds[].unlabelled_findings, and per case
unlabelled_background_findings_ml); inserted infarcts go to the other hemisphere and hematomas avoid it
(5 mm margin). Any score on these cases must allow for it: a model that calls it infarct is scored as a
false positive, also on the free_* cases.

Cases cycle through parenchymal hematoma, subdural, epidural, infarct, infarct + hematoma; about one
in eight is lesion-free (named free_*, as evalset.py expects; a free case is the background, possibly
mirrored, unchanged). Each case draws everything from `np.random.default_rng([seed, index])`: the
background, a left-right mirror with probability 0.5 (the array only; geometry stays the background's),
the lesion parameters and the noise.

Backgrounds:
* GE: a real head (28 tilted, unevenly spaced slices), read with `load_study(correct_tilt=True,
  resample_gaps=True)`: 512 x 486 x 56 at 0.488 x 0.488 x 4.22 mm (4 mm slices), brain ~1520 mL. Used.
* Philips_S21570: SKIPPED. It is a physical head phantom: `load_study` refuses it (soft-tissue peak at
  97 HU); with the HU range relaxed and the anatomy checks off it loads, but `brain_mask_array` finds
  ~21 mL of "brain" in it (< 300 mL): its skull holds test inserts, not brain-like tissue. The check runs
  every time, so a background that qualifies would be used.
With one background the set has one anatomy, seen mirrored or not: it tests lesions on real anatomy and
real noise, not anatomical variety.

Output: OUT/imagesTs/<case>_0000.nii.gz (int16 HU), OUT/labelsTs/<case>.nii.gz (uint8), OUT/ignoreTs/<case>.nii.gz
(uint8: the background's real unlabelled finding, dilated 5 mm - familyC_score.py leaves it out), OUT/manifest.json,
OUT/dataset.json (nnU-Net style, as `sdpm synth` writes; `sdpm evaluate --data OUT` reads the folder).
These cases are for testing only: never train on them.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from sdpm_cli.labels import CLASSES

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO.parent / "shared" / "fixtures" / "dcm_qa_ct"
BACKGROUNDS = ("GE", "Philips_S21570")
GENERATOR = "benchmarks/accuracy/real_insert.py"
FAMILY = "C: real head CT (dcm_qa_ct) + physically blended synthetic lesions"
PARENCHYMA_HU = (15.0, 50.0)
MIN_BRAIN_ML = 300.0
LESION_KINDS = ("hematoma", "subdural", "epidural", "infarct", "infarct+hematoma")
SUBSLICES = 5
INPLANE_BLUR_PX = 0.7
MIN_FRACTION = 1e-3  # fractions below this are set to 0 (blur tails)
LABEL_RULE = ("a voxel is lesion when the lesion's partial-volume fraction in it (averaged over the slab of the "
              "slice, then blurred 0.7 voxel in-plane) is >= 0.5: hemorrhage inside the brain mask, infarct on "
              "parenchyma and not hemorrhage; volume_ml = label voxels x voxel volume")


# ----------------------------------------------------------------------------- tissue and geometry


def tissue_masks(hu: np.ndarray, brain: np.ndarray, lo: float = PARENCHYMA_HU[0], hi: float = PARENCHYMA_HU[1]):
    """(parenchyma, csf) of a [Z, Y, X] HU array: brain & lo <= median3x3(HU) <= hi, brain & median < lo."""
    brain = np.asarray(brain, bool)
    med = ndimage.median_filter(np.asarray(hu), size=(1, 3, 3))
    par = brain & (med >= lo) & (med <= hi)
    csf = brain & (med < lo)
    return par, csf


def _bbox(mask: np.ndarray, pad: int, shape) -> tuple:
    nz = np.nonzero(mask)
    return tuple(slice(max(0, int(i.min()) - pad), min(n, int(i.max()) + pad + 1)) for i, n in zip(nz, shape))


def inner_table_distance(brain: np.ndarray, spacing, in_plane: bool = True, close_mm: float = 4.0) -> np.ndarray:
    """Distance (mm, float32) of each brain voxel to the inner table: per slice in-plane (to the nearest
    voxel outside the slice's brain mask closed by a close_mm disk, so that notches of the mask - a vessel, a
    suture, partial volume with bone - do not count as table; 0 outside the brain), or 3-D (to the nearest
    non-brain voxel; the top and bottom of the field of view are not a table). `spacing` is (x, y, z) mm."""
    brain = np.asarray(brain, bool)
    sx, sy, sz = (float(s) for s in spacing)
    out = np.zeros(brain.shape, np.float32)
    if not brain.any():
        return out
    pad = int(math.ceil(close_mm / min(sx, sy))) + 2
    box = _bbox(brain, pad, brain.shape)
    b = brain[box]
    if not in_plane:
        padded = np.pad(b, ((1, 1), (0, 0), (0, 0)), mode="edge")
        out[box] = ndimage.distance_transform_edt(padded, sampling=(sz, sy, sx))[1:-1]
        return out
    flat = (1e4, sy, sx)  # a huge z step keeps every nearest point in its own slice
    m = b
    if close_mm > 0:  # closing by a disk, as two distance thresholds
        dil = ndimage.distance_transform_edt(~b, sampling=flat) <= close_mm
        m = (ndimage.distance_transform_edt(dil, sampling=flat) > close_mm) | b
    out[box] = ndimage.distance_transform_edt(m, sampling=flat) * b
    return out


@dataclass
class BrainGeometry:
    """Per-slice brain area (mm^2), centroid (y, x in mm) and equivalent radius; the midline x (mm)."""

    area: np.ndarray
    cy: np.ndarray
    cx: np.ndarray
    radius: np.ndarray
    midline_x: float
    spacing: tuple

    def slices(self, min_area_frac: float) -> np.ndarray:
        return np.flatnonzero(self.area >= min_area_frac * self.area.max())

    def level(self, frac: float, min_area_frac: float = 0.4) -> float:
        """z (mm) at a fractional height of the slices holding >= min_area_frac of the largest brain slice."""
        zs = self.slices(min_area_frac)
        sz = self.spacing[2]
        return float((zs[0] + frac * (zs[-1] - zs[0])) * sz)


def brain_geometry(brain: np.ndarray, spacing) -> BrainGeometry:
    brain = np.asarray(brain, bool)
    sx, sy, sz = (float(s) for s in spacing)
    nz = brain.shape[0]
    area = brain.sum(axis=(1, 2)).astype(float) * sx * sy
    cy, cx = np.zeros(nz), np.zeros(nz)
    for z in np.flatnonzero(area > 0):
        yy, xx = np.nonzero(brain[z])
        cy[z], cx[z] = yy.mean() * sy, xx.mean() * sx
    big = area >= 0.4 * area.max() if area.max() > 0 else area > 0
    xs = [np.nonzero(brain[z])[1].mean() * sx for z in np.flatnonzero(big)]
    return BrainGeometry(area, cy, cx, np.sqrt(area / math.pi), float(np.mean(xs)) if xs else 0.0, (sx, sy, sz))


# ----------------------------------------------------------------------------- noise


def _residual(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float32)
    return x - ndimage.median_filter(x, size=(1, 3, 3))


def robust_sigma(r: np.ndarray) -> float:
    """Standard deviation of r clipped at 4 robust sigmas (MAD, floored at 0.5) about the median."""
    r = np.asarray(r, np.float64).ravel()
    if r.size < 2:
        return 0.0
    med = float(np.median(r))
    mad = 1.4826 * float(np.median(np.abs(r - med)))
    keep = np.abs(r - med) <= 4.0 * max(mad, 0.5)
    return float(np.std(r[keep]))


def residual_stats(x: np.ndarray, mask: Optional[np.ndarray] = None) -> dict:
    """Level (robust sigma, and the raw 1.4826 x MAD) and lag-1 correlations (z, y, x) of x - median3x3(x)."""
    r = _residual(x)
    m = np.ones(r.shape, bool) if mask is None else np.asarray(mask, bool)
    vals = r[m]
    med = float(np.median(vals))
    out = {"sigma": robust_sigma(vals), "mad_sigma": 1.4826 * float(np.median(np.abs(vals - med)))}
    corr = []
    for ax in range(3):
        a = [slice(None)] * 3
        b = [slice(None)] * 3
        a[ax], b[ax] = slice(1, None), slice(None, -1)
        pair = m[tuple(a)] & m[tuple(b)]
        if pair.sum() < 100:
            corr.append(0.0)
            continue
        u, v = r[tuple(a)][pair], r[tuple(b)][pair]
        keep = (np.abs(u - med) < 4 * max(out["sigma"], 0.5)) & (np.abs(v - med) < 4 * max(out["sigma"], 0.5))
        corr.append(float(np.corrcoef(u[keep], v[keep])[0, 1]))
    out["corr_zyx"] = corr
    return out


def fit_noise_texture(target: dict, block=(12, 64, 64), iters: int = 3) -> dict:
    """Gaussian smoothing (voxels, z y x) and gain that make smoothed white noise show `target`'s residual
    statistics (sigma, lag-1 correlations). Deterministic (fixed block of noise)."""
    white = np.random.default_rng(12345).standard_normal(block).astype(np.float32)
    sig = np.array([0.3, 0.3, 0.3])

    def stats(s):
        return residual_stats(ndimage.gaussian_filter(white, s, mode="wrap"))

    for _ in range(iters):
        for ax in range(3):
            want = float(target["corr_zyx"][ax])
            lo, hi = 0.0, 2.0
            if stats(np.where(np.arange(3) == ax, 0.0, sig))["corr_zyx"][ax] >= want:
                sig[ax] = 0.0
                continue
            for _ in range(10):
                mid = 0.5 * (lo + hi)
                s = sig.copy()
                s[ax] = mid
                if stats(s)["corr_zyx"][ax] < want:
                    lo = mid
                else:
                    hi = mid
            sig[ax] = 0.5 * (lo + hi)
    got = stats(sig)
    gain = float(target["sigma"]) / max(got["sigma"], 1e-6)  # multiplies the smoothed unit white noise
    return {"smooth_vox_zyx": [round(float(x), 3) for x in sig], "gain": round(gain, 4),
            "check_corr_zyx": [round(c, 3) for c in got["corr_zyx"]]}


def noise_field(shape, where: np.ndarray, texture: dict, factor: float, rng: np.random.Generator) -> np.ndarray:
    """Textured Gaussian noise (float32, `shape`) on `where` (zero elsewhere): white noise on its bounding box,
    smoothed by texture["smooth_vox_zyx"] times texture["gain"] x factor, so that its residual level is
    the background's times `factor`."""
    out = np.zeros(shape, np.float32)
    where = np.asarray(where, bool)
    if not where.any():
        return out
    pad = 4
    nz = np.nonzero(where)
    box = tuple(slice(max(0, int(i.min()) - pad), min(n, int(i.max()) + pad + 1)) for n, i in zip(shape, nz))
    w = rng.standard_normal(tuple(b.stop - b.start for b in box)).astype(np.float32)
    s = np.asarray(texture["smooth_vox_zyx"], float)
    smoothed = ndimage.gaussian_filter(w, s, mode="reflect") if s.any() else w
    out[box] = smoothed * np.float32(texture["gain"] * factor)
    out[~where] = 0.0
    return out


# ----------------------------------------------------------------------------- blending and labels


def blend_blood(hu, f, blood_hu, noise=0.0) -> np.ndarray:
    """Partial-volume replacement by blood: (1 - f) hu + f (blood_hu + noise), float32."""
    hu = np.asarray(hu, np.float32)
    f = np.asarray(f, np.float32)
    return (np.float32(1.0) - f) * hu + f * (np.float32(blood_hu) + np.asarray(noise, np.float32))


def blend_infarct(hu, f, delta, parenchyma) -> np.ndarray:
    """Infarct hypodensity: hu - f delta on parenchyma voxels, hu elsewhere (CSF, bone untouched), float32."""
    hu = np.asarray(hu, np.float32)
    f = np.asarray(f, np.float32)
    return np.where(np.asarray(parenchyma, bool), hu - f * np.float32(delta), hu).astype(np.float32)


def labels_from_fractions(f_blood, f_infarct, brain, parenchyma) -> np.ndarray:
    """uint8 labels: 2 where f_blood >= 0.5 in the brain; 1 where f_infarct >= 0.5 on parenchyma and not 2."""
    brain = np.asarray(brain, bool)
    blood = (np.asarray(f_blood) >= 0.5) & brain
    infarct = (np.asarray(f_infarct) >= 0.5) & np.asarray(parenchyma, bool) & ~blood
    lab = np.zeros(brain.shape, np.uint8)
    lab[infarct] = 1
    lab[blood] = 2
    return lab


def to_int16(x) -> np.ndarray:
    return np.clip(np.rint(np.asarray(x, np.float32)), -32768, 32767).astype(np.int16)


# ----------------------------------------------------------------------------- shapes


def _pv_field(shape, zs, box_yx, inside: Callable, spacing, slab_mm: float, blur_px: float = INPLANE_BLUR_PX):
    """Partial-volume fraction: `inside(z_index, z_mm, Y_mm, X_mm) -> bool [ny, nx]` averaged over
    SUBSLICES positions across the slab of each slice in `zs`, on the in-plane box, then blurred in-plane."""
    sx, sy, sz = spacing
    (y0, y1), (x0, x1) = box_yx
    Y = (np.arange(y0, y1, dtype=np.float32) * sy)[:, None]
    X = (np.arange(x0, x1, dtype=np.float32) * sx)[None, :]
    offsets = ((np.arange(SUBSLICES) + 0.5) / SUBSLICES - 0.5) * slab_mm
    out = np.zeros(shape, np.float32)
    for z in zs:
        acc = np.zeros((y1 - y0, x1 - x0), np.float32)
        for off in offsets:
            acc += inside(int(z), float(z * sz + off), Y, X)
        out[z, y0:y1, x0:x1] = acc / SUBSLICES
    if blur_px > 0:
        zsl = slice(int(min(zs)), int(max(zs)) + 1) if len(zs) else slice(0, 0)
        y0b, y1b = max(0, y0 - 4), min(shape[1], y1 + 4)
        x0b, x1b = max(0, x0 - 4), min(shape[2], x1 + 4)
        out[zsl, y0b:y1b, x0b:x1b] = ndimage.gaussian_filter(out[zsl, y0b:y1b, x0b:x1b], (0, blur_px, blur_px))
    return out


def _finish(f: np.ndarray, restrict: np.ndarray) -> np.ndarray:
    f = f * np.asarray(restrict, bool)
    f[f < MIN_FRACTION] = 0.0
    return np.clip(f, 0.0, 1.0).astype(np.float32)


def _wrap(a):
    return (a + np.pi) % (2 * np.pi) - np.pi


def _wave_sum(vec: np.ndarray, scale: np.ndarray, ph: np.ndarray, w: np.ndarray) -> Callable:
    """g(a, b, c) = sum_i w_i cos(scale_i (vec_i . (a, b, c)) + ph_i): a smooth field in [-1, 1] (w sums to 1)."""

    def g(a, b, c):
        s = 0.0
        for i in range(len(w)):
            s = s + w[i] * np.cos(scale[i] * (vec[i, 0] * a + vec[i, 1] * b + vec[i, 2] * c) + ph[i])
        return s

    return g


def _random_waves(rng: np.random.Generator, n: int, scale_of) -> Callable:
    """n plane waves with random unit directions, scales `scale_of(rng, n)`, phases and weights."""
    vec = rng.standard_normal((n, 3))
    vec /= np.linalg.norm(vec, axis=1, keepdims=True)
    scale = scale_of(rng, n)
    ph = rng.uniform(0, 2 * np.pi, n)
    w = rng.uniform(0.5, 1.0, n)
    return _wave_sum(vec, scale, ph, w / w.sum())


def _angular_noise(rng: np.random.Generator, n: int = 4, fmax: float = 3.0):
    """A smooth function of a direction (ux, uy, uz) with values in [-1, 1] (sum of random plane waves)."""
    return _random_waves(rng, n, lambda r, k: r.uniform(1.0, fmax, k))


def _spatial_noise(rng: np.random.Generator, n: int = 6, wavelength_mm=(12.0, 35.0)):
    """A smooth function of position (z, y, x mm) with values in [-1, 1] (sum of random plane waves of the
    given wavelengths): lobulates a boundary at the scale of gyri rather than of the whole lesion."""
    return _random_waves(rng, n, lambda r, k: 2 * np.pi / r.uniform(*wavelength_mm, k))


def _side_sector(rng, geo_side: int, centre_deg: float, jitter_deg: tuple) -> float:
    """Polar angle (rad; 0 = +x, +90 deg = +y) of a direction on one side: side +1 (+x) or -1 (-x);
    centre_deg/jitter are measured from lateral towards +y (posterior in LPS)."""
    a = math.radians(centre_deg + rng.uniform(*jitter_deg))
    return a if geo_side > 0 else math.pi - a


def _band_box(mask2d_any: np.ndarray, shape, pad: int = 6):
    yy = np.flatnonzero(mask2d_any.any(axis=1))
    xx = np.flatnonzero(mask2d_any.any(axis=0))
    return ((max(0, yy[0] - pad), min(shape[1], yy[-1] + pad + 1)), (max(0, xx[0] - pad), min(shape[2], xx[-1] + pad + 1)))


def _table_field(brain, spacing, dist2d, slab_mm, thickness_fn, zs, geo):
    """Fraction of a collection hugging the inner table: voxels whose in-plane distance to the table is below
    thickness_fn(z_index, z_mm, theta) (theta: polar angle about the slice's brain centroid)."""
    brain = np.asarray(brain, bool)
    near = ndimage.binary_dilation(brain[zs].any(axis=0), iterations=4)
    box = _band_box(near, brain.shape)

    def inside(z, zmm, Y, X):
        theta = np.arctan2(Y - geo.cy[z], X - geo.cx[z])
        t = thickness_fn(z, zmm, theta)
        d = dist2d[z, box[0][0]:box[0][1], box[1][0]:box[1][1]]
        return (d < t) & (t > 0)

    f = _pv_field(brain.shape, zs, box, inside, spacing, slab_mm)
    return _finish(f, brain)


def _slab(spacing, slab_mm):
    return float(slab_mm) if slab_mm else float(spacing[2])


def _prof(s, p: float = 1.0):
    return np.clip(1.0 - np.asarray(s) ** 2, 0.0, None) ** p


def subdural_field(brain, spacing, rng: np.random.Generator, *, dist2d=None, slab_mm=None, geo=None):
    """Convexity crescent (fraction field, info): in-plane distance to the inner table < t, t up to
    U(4, 15) mm tapering to 0 at the ends of a U(60, 150) degree sector of the polar angle about the slice's
    brain centroid on one side (kept within 80 degrees of lateral: it does not cross the midline) and of a
    U(4, 12) cm span in z (clipped to the brain slices)."""
    brain = np.asarray(brain, bool)
    geo = geo or brain_geometry(brain, spacing)
    dist2d = inner_table_distance(brain, spacing) if dist2d is None else dist2d
    sz = float(spacing[2])
    tmax = rng.uniform(4.0, 15.0)
    side = 1 if rng.random() < 0.5 else -1
    rel = rng.uniform(-35.0, 35.0)  # sector centre, degrees from lateral towards +y
    half_deg = min(rng.uniform(60.0, 150.0) / 2, 80.0)
    rel = float(np.clip(rel, -(80.0 - half_deg), 80.0 - half_deg))  # the sector stays on its side of the falx
    theta0 = _side_sector(rng, side, rel, (0.0, 0.0))
    half = math.radians(half_deg)
    span = rng.uniform(40.0, 120.0)
    zc = geo.level(rng.uniform(0.35, 0.75))
    mod = _angular_noise(rng, 3, 2.0)
    allowed = geo.slices(0.15)
    zs = [int(z) for z in allowed if abs(z * sz - zc) < span / 2 + sz]

    def thickness(z, zmm, theta):
        u = _wrap(theta - theta0) / half
        v = (zmm - zc) / (span / 2)
        m = mod(np.cos(theta), np.sin(theta), v)  # [-1, 1]
        return tmax * _prof(u, 0.8) * _prof(v, 0.8) * (0.85 + 0.15 * m)

    f = _table_field(brain, spacing, dist2d, _slab(spacing, slab_mm), thickness, zs, geo)
    info = {"kind": "subdural", "max_thickness_mm": round(tmax, 2), "sector_deg": round(math.degrees(2 * half), 1),
            "span_z_mm": round(span, 1), "centre_z_mm": round(zc, 1), "side_x": "+x" if side > 0 else "-x",
            "theta0_deg": round(math.degrees(theta0), 1)}
    return f, info


def epidural_field(brain, spacing, rng: np.random.Generator, *, dist2d=None, slab_mm=None, geo=None):
    """Biconvex lens at the inner table (fraction field, info): thickness U(8, 25) mm x (1 - u^2 - v^2),
    u along the table (width U(4, 8) cm of arc), v along z (0.6-1.0 x the width); one side, temporo-parietal."""
    brain = np.asarray(brain, bool)
    geo = geo or brain_geometry(brain, spacing)
    dist2d = inner_table_distance(brain, spacing) if dist2d is None else dist2d
    sz = float(spacing[2])
    tmax = rng.uniform(8.0, 25.0)
    width = rng.uniform(40.0, 80.0)
    height = width * rng.uniform(0.6, 1.0)
    side = 1 if rng.random() < 0.5 else -1
    theta0 = _side_sector(rng, side, 5.0, (-25.0, 25.0))
    zc = geo.level(rng.uniform(0.25, 0.65))
    allowed = geo.slices(0.15)
    zs = [int(z) for z in allowed if abs(z * sz - zc) < height / 2 + sz]
    radius = {z: max(float(geo.radius[z]), 20.0) for z in zs}

    def thickness(z, zmm, theta):
        u = _wrap(theta - theta0) * radius[z] / (width / 2)
        v = (zmm - zc) / (height / 2)
        return tmax * np.clip(1.0 - u ** 2 - v ** 2, 0.0, None)

    f = _table_field(brain, spacing, dist2d, _slab(spacing, slab_mm), thickness, zs, geo)
    info = {"kind": "epidural", "max_thickness_mm": round(tmax, 2), "width_mm": round(width, 1),
            "height_mm": round(height, 1), "centre_z_mm": round(zc, 1), "side_x": "+x" if side > 0 else "-x",
            "theta0_deg": round(math.degrees(theta0), 1)}
    return f, info


def _blob_field(brain, spacing, rng, centre_mm, axes, rot, amp, volume_ml, candidates, restrict, slab_mm, kind):
    """An irregular ellipsoid about centre_mm (z, y, x) whose size makes its coarse-grid voxels in
    `candidates` hold volume_ml; normalised radius rho = |R (x - c) / axes| / (1 + amp n(direction) + amp/2 m(x))
    (n: smooth in the direction, m: lobulation at 10-25 mm)."""
    sx, sy, sz = spacing
    shape = brain.shape
    noise = _angular_noise(rng, 5, 3.0)
    lobes = _spatial_noise(rng, 6, (10.0, 25.0))
    wig = 0.5 * amp
    axes = np.asarray(axes, float) / float(np.prod(axes)) ** (1 / 3)
    ca, sa = math.cos(rot), math.sin(rot)
    voxel_ml = sx * sy * sz / 1000.0
    n_target = max(1, int(round(volume_ml / voxel_ml)))
    cz, cy, cx = centre_mm

    def rho(zmm, Y, X):
        dz, dy, dx = zmm - cz, Y - cy, X - cx
        u = (ca * dx + sa * dy) / axes[2]
        v = (-sa * dx + ca * dy) / axes[1]
        w = dz / axes[0] + 0.0 * u
        r = np.sqrt(u * u + v * v + w * w) + 1e-6
        return r / (1.0 + amp * noise(u / r, v / r, w / r) + wig * lobes(zmm, Y, X))

    exc = amp + wig  # the largest relative radial excursion, for the extents below
    reach = 2.0 * (3 * volume_ml * 1000 / (4 * math.pi)) ** (1 / 3)
    s = None
    for _ in range(8):
        span = reach * float(axes.max()) * (1 + exc)
        z0, z1 = max(0, int((cz - span) / sz)), min(shape[0], int((cz + span) / sz) + 2)
        y0, y1 = max(0, int((cy - span) / sy)), min(shape[1], int((cy + span) / sy) + 2)
        x0, x1 = max(0, int((cx - span) / sx)), min(shape[2], int((cx + span) / sx) + 2)
        whole = (z0, y0, x0, z1, y1, x1) == (0, 0, 0, *shape)
        Z = (np.arange(z0, z1) * sz)[:, None, None]
        Y = (np.arange(y0, y1) * sy)[None, :, None]
        X = (np.arange(x0, x1) * sx)[None, None, :]
        cand = np.asarray(candidates[z0:z1, y0:y1, x0:x1], bool)
        vals = rho(Z, Y, X)[cand]
        if vals.size == 0 and whole:
            raise ValueError("no candidate voxel for the lesion")
        if vals.size > n_target:
            s = float(np.partition(vals, n_target - 1)[n_target - 1])
            if whole or s * float(axes.max()) * (1 + exc) < 0.9 * span:
                break
        elif whole:
            s = float(vals.max())
            break
        reach *= 1.6
    ext = s * float(axes.max()) * (1 + exc) + 2 * max(sx, sy) + 3
    zs = [z for z in range(shape[0]) if abs(z * sz - cz) < ext + sz]
    box = ((max(0, int((cy - ext) / sy)), min(shape[1], int((cy + ext) / sy) + 2)),
           (max(0, int((cx - ext) / sx)), min(shape[2], int((cx + ext) / sx) + 2)))

    def inside(z, zmm, Y, X):
        return rho(zmm, Y, X) < s

    f = _pv_field(shape, zs, box, inside, spacing, _slab(spacing, slab_mm))
    f = _finish(f, restrict)
    info = {"kind": kind, "target_ml": round(volume_ml, 3), "centre_mm_zyx": [round(c, 1) for c in centre_mm],
            "axes_rel_zyx": [round(a, 2) for a in axes], "irregularity": round(amp, 3), "lobulation": round(wig, 3)}
    return f, info


def _pick_voxel(mask: np.ndarray, rng: np.random.Generator, spacing) -> tuple:
    idx = np.flatnonzero(mask)
    if idx.size == 0:
        raise ValueError("no voxel to place the lesion in")
    z, y, x = np.unravel_index(int(idx[rng.integers(idx.size)]), mask.shape)
    sx, sy, sz = spacing
    return float(z * sz), float((y + rng.uniform(-0.5, 0.5)) * sy), float((x + rng.uniform(-0.5, 0.5)) * sx)


def hematoma_field(brain, spacing, rng: np.random.Generator, *, parenchyma=None, dist3d=None, slab_mm=None,
                   geo=None, volume_ml=None, min_depth_mm: float = 10.0, within=None, avoid=None):
    """Parenchymal hematoma (fraction field, info): an irregular blob of U_log(3, 60) mL centred on
    parenchyma >= min_depth_mm from the inner table (3-D distance; inside `within` where it can be - the
    infarct, for a hemorrhagic transformation; never in `avoid` where it can be helped), restricted to the brain."""
    brain = np.asarray(brain, bool)
    geo = geo or brain_geometry(brain, spacing)
    par = brain if parenchyma is None else np.asarray(parenchyma, bool)
    dist3d = inner_table_distance(brain, spacing, in_plane=False) if dist3d is None else dist3d
    vol = float(volume_ml) if volume_ml else float(math.exp(rng.uniform(math.log(3.0), math.log(60.0))))
    levels = np.zeros(brain.shape[0], bool)
    levels[geo.slices(0.4)] = True
    cand = par & (dist3d >= min_depth_mm) & levels[:, None, None]
    if avoid is not None and (cand & ~avoid).any():
        cand = cand & ~avoid
    if within is not None and (cand & within).any():
        cand = cand & within
    if not cand.any():
        cand = par & (dist3d >= min_depth_mm)
    centre = _pick_voxel(cand, rng, spacing)
    axes = (rng.uniform(0.7, 1.2), rng.uniform(0.6, 1.0), 1.0)
    f, info = _blob_field(brain, spacing, rng, centre, axes, rng.uniform(0, np.pi), rng.uniform(0.15, 0.35), vol,
                          brain, brain, slab_mm, "hematoma")
    return f, info


def _cone_field(brain, spacing, rng, apex_mm, theta, elev, kw, amp, volume_ml, candidates, restrict, slab_mm, kind):
    """A wedge (cone) from a deep apex towards the cortex whose opening makes its coarse-grid voxels in
    `candidates` hold volume_ml: rho = |(angle in-plane, angle out-of-plane / kw)| about the axis (theta
    in-plane, elev upwards) / (1 + amp n(direction) + amp m(x)) (m: lobulation at 15-40 mm); the wedge is what
    of rho < s lies in `restrict`."""
    sx, sy, sz = spacing
    shape = brain.shape
    noise = _angular_noise(rng, 5, 3.0)
    lobes = _spatial_noise(rng, 6, (15.0, 40.0))
    ax = np.array([math.cos(theta) * math.cos(elev), math.sin(theta) * math.cos(elev), math.sin(elev)])  # x y z
    bx = np.array([-math.sin(theta), math.cos(theta), 0.0])
    cx_ = np.cross(ax, bx)
    az, ay, axx = apex_mm

    def rho(zmm, Y, X):
        d = (X - axx, Y - ay, zmm - az)
        along = ax[0] * d[0] + ax[1] * d[1] + ax[2] * d[2]
        t = bx[0] * d[0] + bx[1] * d[1]
        w = cx_[0] * d[0] + cx_[1] * d[1] + cx_[2] * d[2]
        at, aw = np.arctan2(t, along), np.arctan2(w, along) / kw
        r = np.sqrt(at * at + aw * aw) + 1e-6
        n = np.sqrt(along * along + t * t + w * w) + 1e-6
        return r / (1.0 + amp * noise(along / n, t / n, w / n) + amp * lobes(zmm, Y, X))

    voxel_ml = sx * sy * sz / 1000.0
    n_target = max(1, int(round(volume_ml / voxel_ml)))
    zz, yy, xx = np.nonzero(candidates)
    if zz.size == 0:
        raise ValueError("no candidate voxel for the lesion")
    vals = rho(zz * sz, yy * sy, xx * sx)
    s = float(np.partition(vals, min(n_target, vals.size) - 1)[min(n_target, vals.size) - 1])
    rz, ry, rx = np.nonzero(restrict)
    near = rho(rz * sz, ry * sy, rx * sx) < 1.3 * s
    rz, ry, rx = rz[near], ry[near], rx[near]
    pad = 6
    zs = list(range(max(0, int(rz.min()) - 1), min(shape[0], int(rz.max()) + 2)))
    box = ((max(0, int(ry.min()) - pad), min(shape[1], int(ry.max()) + pad + 1)),
           (max(0, int(rx.min()) - pad), min(shape[2], int(rx.max()) + pad + 1)))

    def inside(z, zmm, Y, X):
        return rho(zmm, Y, X) < s

    f = _finish(_pv_field(shape, zs, box, inside, spacing, _slab(spacing, slab_mm)), restrict)
    info = {"kind": kind, "target_ml": round(volume_ml, 3), "apex_mm_zyx": [round(c, 1) for c in apex_mm],
            "axis_deg": round(math.degrees(theta), 1), "elevation_deg": round(math.degrees(elev), 1),
            "half_angle_deg": round(math.degrees(s), 1), "out_of_plane_ratio": round(kw, 2), "irregularity": round(amp, 3)}
    return f, info


def _territory(name: str, rng: np.random.Generator):
    """(towards-the-side mm, towards +y mm, axis deg from lateral towards +y, elevation deg, z level, kw)."""
    if name == "MCA":
        return rng.uniform(12, 20), rng.uniform(-5, 5), rng.uniform(-20, 20), rng.uniform(-10, 20), rng.uniform(0.35, 0.6), rng.uniform(0.8, 1.3)
    if name == "ACA":
        return rng.uniform(4, 8), rng.uniform(-15, -5), -90 + rng.uniform(-15, 15), rng.uniform(20, 50), rng.uniform(0.45, 0.7), rng.uniform(1.0, 1.5)
    return rng.uniform(6, 12), rng.uniform(5, 15), 90 + rng.uniform(-20, 15), rng.uniform(-15, 10), rng.uniform(0.2, 0.45), rng.uniform(0.8, 1.2)


def infarct_field(brain, spacing, rng: np.random.Generator, *, parenchyma=None, slab_mm=None, geo=None,
                  volume_ml=None, side: Optional[int] = None, avoid=None):
    """Territory-like infarct (fraction field, info): a wedge of U_log(10, 150) mL of one hemisphere's
    supratentorial parenchyma from a deep apex out to the cortex (MCA 60 %: lateral; ACA 20 %: anterior-
    superior, parasagittal; PCA 20 %: posterior, low), zero beyond the midline. `avoid` (a real unlabelled finding
    of the background): the infarct goes to the other hemisphere when that one holds > 5 mL of it, and
    never onto it."""
    brain = np.asarray(brain, bool)
    sx, sy, sz = spacing
    geo = geo or brain_geometry(brain, spacing)
    par = brain if parenchyma is None else np.asarray(parenchyma, bool)
    vol = float(volume_ml) if volume_ml else float(math.exp(rng.uniform(math.log(10.0), math.log(150.0))))
    name = str(rng.choice(["MCA", "ACA", "PCA"], p=[0.6, 0.2, 0.2]))
    lat, ant, ang, elev, zf, kw = _territory(name, rng)
    side = side or (1 if rng.random() < 0.5 else -1)
    X = np.arange(brain.shape[2]) * sx

    def hemi_of(sd):
        return np.broadcast_to(((X - geo.midline_x) * sd > 2.0)[None, None, :], brain.shape)

    if avoid is not None and avoid.any():
        voxel_ml = sx * sy * sz / 1000.0
        if (avoid & hemi_of(side)).sum() * voxel_ml > 5.0:
            side = -side
    hemi = hemi_of(side)
    # supratentorial: from the lowest slice holding >= 55 % of the largest brain slice up (a territory wedge
    # must not run through the tentorium into the cerebellum)
    supra = np.zeros(brain.shape[0], bool)
    supra[int(geo.slices(0.55)[0]):] = True
    restrict = hemi & brain & supra[:, None, None]
    cand = par & restrict
    if avoid is not None and avoid.any():
        restrict = restrict & ~avoid
        cand = cand & ~avoid
    zc = geo.level(zf)
    z = int(np.clip(round(zc / sz), 0, brain.shape[0] - 1))
    if geo.area[z] <= 0:
        z = int(np.argmax(geo.area))
    apex = (float(z * sz), float(geo.cy[z] + ant), float(geo.cx[z] + side * lat))
    theta = _side_sector(rng, side, ang, (0.0, 0.0))
    f, info = _cone_field(brain, spacing, rng, apex, theta, math.radians(elev), kw, rng.uniform(0.15, 0.3), vol,
                          cand, restrict, slab_mm, "infarct")
    info.update({"territory": name, "side_x": "+x" if side > 0 else "-x"})
    return f, info


def asymmetric_hypodensity(hu, brain, parenchyma, spacing, geo=None, drop_hu: float = 4.0, min_ml: float = 40.0,
                           smooth_mm: float = 3.0) -> np.ndarray:
    """Real, unlabelled hypodense regions of a background: parenchyma whose smoothed HU lies > drop_hu below
    the mirror image about the midline, in connected pieces of >= min_ml (a heuristic, for avoiding and
    reporting them; bool [Z, Y, X])."""
    par = np.asarray(parenchyma, bool)
    sx, sy, sz = spacing
    geo = geo or brain_geometry(brain, spacing)
    sig = (0, smooth_mm / sy, smooth_mm / sx)
    num = ndimage.gaussian_filter(np.where(par, np.asarray(hu, np.float32), 0).astype(np.float32), sig)
    den = ndimage.gaussian_filter(par.astype(np.float32), sig)
    sm = np.where(den > 0.3, num / np.maximum(den, 1e-3), np.nan).astype(np.float32)
    mid = geo.midline_x / sx
    src = np.clip(np.rint(2 * mid - np.arange(hu.shape[2])).astype(int), 0, hu.shape[2] - 1)
    with np.errstate(invalid="ignore"):
        low = par & ((sm - sm[:, :, src]) < -drop_hu)
    lab, n = ndimage.label(low)
    if n == 0:
        return low
    sizes = np.bincount(lab.ravel()) * (sx * sy * sz / 1000.0)
    sizes[0] = 0
    return np.isin(lab, np.flatnonzero(sizes >= min_ml))


# ----------------------------------------------------------------------------- backgrounds


@dataclass
class Background:
    name: str
    image: sitk.Image  # geometry reference (CopyInformation)
    hu: np.ndarray  # int16 [Z, Y, X]
    spacing: tuple  # x, y, z mm
    slab_mm: float
    brain: np.ndarray
    parenchyma: np.ndarray
    csf: np.ndarray
    dist2d: np.ndarray
    dist3d: np.ndarray
    geo: BrainGeometry
    noise: dict
    texture: dict
    avoid: np.ndarray  # real unlabelled findings (asymmetric_hypodensity), dilated 5 mm in-plane
    findings: list = field(default_factory=list)
    source: dict = field(default_factory=dict)
    _mirror: Optional["Background"] = None

    @property
    def brain_ml(self) -> float:
        return float(self.brain.sum()) * float(np.prod(self.spacing)) / 1000.0

    def variant(self, mirrored: bool) -> "Background":
        if not mirrored:
            return self
        if self._mirror is None:
            fl = {k: np.ascontiguousarray(getattr(self, k)[:, :, ::-1])
                  for k in ("hu", "brain", "parenchyma", "csf", "dist2d", "dist3d", "avoid")}
            self._mirror = Background(self.name, self.image, spacing=self.spacing, slab_mm=self.slab_mm,
                                      geo=brain_geometry(fl["brain"], self.spacing), noise=self.noise,
                                      texture=self.texture, findings=self.findings, source=self.source, **fl)
        return self._mirror


def prepare_background(name: str, image: sitk.Image, thickness_mm: Optional[float] = None, source=None) -> Background:
    """Masks, distances, geometry and noise of one background volume (SimpleITK HU image)."""
    from sdpm_cli.preprocess.brainmask import brain_mask_array

    hu = sitk.GetArrayFromImage(image)
    hu = to_int16(hu) if hu.dtype != np.int16 else hu
    spacing = tuple(float(s) for s in image.GetSpacing())
    brain = brain_mask_array(hu, spacing) > 0
    par, csf = tissue_masks(hu, brain)
    noise = residual_stats(hu, par) if par.sum() > 1000 else {"sigma": 0.0, "mad_sigma": 0.0, "corr_zyx": [0.0] * 3}
    geo = brain_geometry(brain, spacing)
    found = asymmetric_hypodensity(hu, brain, par, spacing, geo) if par.any() else np.zeros(hu.shape, bool)
    findings, avoid = [], np.zeros(hu.shape, bool)
    voxel_ml = float(np.prod(spacing)) / 1000.0
    if found.any():
        lab, n = ndimage.label(found)
        src = np.clip(np.rint(2 * geo.midline_x / spacing[0] - np.arange(hu.shape[2])).astype(int), 0, hu.shape[2] - 1)
        for i, sl in enumerate(ndimage.find_objects(lab), start=1):
            m = lab[sl] == i
            findings.append({"what": "asymmetric parenchymal hypodensity (real, unlabelled)",
                             "volume_ml": round(float(m.sum()) * voxel_ml, 1),
                             "bbox_zyx": [[int(a.start), int(a.stop) - 1] for a in sl],
                             "side_x": "+x" if (sl[2].start + sl[2].stop) / 2 * spacing[0] > geo.midline_x else "-x",
                             "mean_hu": round(float(hu[sl][m].mean()), 1),
                             "mirror_mean_hu": round(float(hu[:, :, src][sl][m].mean()), 1)})
        box = _bbox(found, int(math.ceil(5.0 / min(spacing[:2]))) + 1, found.shape)
        avoid[box] = ndimage.distance_transform_edt(~found[box], sampling=(1e4, spacing[1], spacing[0])) <= 5.0
    return Background(
        name=name, image=image, hu=hu, spacing=spacing, slab_mm=max(float(thickness_mm or 0.0), spacing[2]),
        brain=brain, parenchyma=par, csf=csf, dist2d=inner_table_distance(brain, spacing),
        dist3d=inner_table_distance(brain, spacing, in_plane=False), geo=geo, noise=noise,
        texture=fit_noise_texture(noise) if noise["sigma"] > 0 else {"smooth_vox_zyx": [0, 0, 0], "gain": 0.0},
        avoid=avoid, findings=findings, source=dict(source or {}))


def load_backgrounds(fixtures: Path, names=BACKGROUNDS, log=print) -> tuple[list[Background], list[dict]]:
    """The usable backgrounds and the skipped ones (name, reason)."""
    from sdpm_cli.errors import InputRejected
    from sdpm_cli.ingest import load_study
    from sdpm_cli.ingest.rules import IngestRules

    used, skipped = [], []
    for name in names:
        path = Path(fixtures) / name
        if not path.exists():
            skipped.append({"name": name, "reason": f"absent ({path})"})
            log(f"skip {name}: absent")
            continue
        how, study, why = "load_study(correct_tilt=True, resample_gaps=True)", None, []
        try:
            study = load_study(path, correct_tilt=True, resample_gaps=True)
        except InputRejected as exc:
            why.append(f"refused: {exc}")
            try:  # the options: HU sanity range relaxed, anatomy checks off
                study = load_study(path, correct_tilt=True, resample_gaps=True, anatomy=False,
                                   rules=IngestRules(soft_tissue_peak_range=(-50.0, 150.0)))
                how += " with soft_tissue_peak_range=(-50, 150), anatomy=False"
            except InputRejected as exc2:
                why.append(f"refused with relaxed rules too: {exc2}")
        if study is None:
            skipped.append({"name": name, "reason": "; ".join(why)})
            log(f"skip {name}: {'; '.join(why)}")
            continue
        src = {"path": str(path), "loaded_with": how, "series": study.series.description,
               "thickness_mm": study.series.thickness_mm, "corrected": list(study.corrected), "ingest_notes": why}
        bg = prepare_background(name, study.image, study.series.thickness_mm, src)
        if bg.brain_ml < MIN_BRAIN_ML:
            reason = "; ".join(why + [f"brain_mask_array finds {bg.brain_ml:.0f} mL of brain (< {MIN_BRAIN_ML:.0f} mL): not a brain-like background"])
            skipped.append({"name": name, "reason": reason})
            log(f"skip {name}: {reason}")
            continue
        used.append(bg)
        found = ", ".join(f"{x['volume_ml']} mL on {x['side_x']}" for x in bg.findings) or "none found"
        log(f"background {name}: {study.image.GetSize()} at {tuple(round(s, 3) for s in bg.spacing)} mm, brain "
            f"{bg.brain_ml:.0f} mL, parenchyma noise {bg.noise['sigma']:.2f} HU (corr z/y/x "
            f"{'/'.join(f'{c:.2f}' for c in bg.noise['corr_zyx'])}); real unlabelled hypodensity: {found})")
    return used, skipped


# ----------------------------------------------------------------------------- cases


def case_plan(n: int) -> list[str]:
    """Lesion kind per case: about one in eight lesion-free ('free', spread out; none below 3 cases), the rest
    cycling through LESION_KINDS."""
    n_free = 0 if n < 3 else max(1, int(round(n / 8)))
    free = {min(n - 1, int((k + 0.5) * n / n_free)) for k in range(n_free)}
    plan, j = [], 0
    for i in range(n):
        if i in free:
            plan.append("free")
        else:
            plan.append(LESION_KINDS[j % len(LESION_KINDS)])
            j += 1
    return plan


def case_name(index: int, kind: str) -> str:
    return f"{'free_' if kind == 'free' else ''}realC_{index:04d}"


def make_case(backgrounds: list[Background], seed: int, index: int, kind: str) -> tuple[np.ndarray, np.ndarray, dict, Background]:
    """(int16 HU, uint8 labels, manifest entry, background) of one case; deterministic in (seed, index)."""
    rng = np.random.default_rng([seed, index])
    bg0 = backgrounds[int(rng.integers(len(backgrounds)))]
    mirrored = bool(rng.random() < 0.5)
    bg = bg0.variant(mirrored)
    hu = bg.hu.astype(np.float32)
    shape = hu.shape
    f_blood = np.zeros(shape, np.float32)
    f_inf = np.zeros(shape, np.float32)
    lesions = []
    common = {"slab_mm": bg.slab_mm, "geo": bg.geo}
    if "infarct" in kind:
        f, info = infarct_field(bg.brain, bg.spacing, rng, parenchyma=bg.parenchyma, avoid=bg.avoid, **common)
        info.update(cls=1, delta_hu=round(float(rng.uniform(3.0, 10.0)), 2))
        hu = blend_infarct(hu, f, info["delta_hu"], bg.parenchyma)
        f_inf = np.maximum(f_inf, f)
        lesions.append((info, f))
    blood_kind = "hematoma" if "hematoma" in kind else kind if kind in ("subdural", "epidural") else None
    if blood_kind:
        if blood_kind == "hematoma":
            vol = float(math.exp(rng.uniform(math.log(3.0), math.log(60.0))))
            if "infarct" in kind:  # a hemorrhagic transformation: at most half the infarct
                vol = min(vol, max(3.0, 0.5 * float((f_inf >= 0.5).sum()) * float(np.prod(bg.spacing)) / 1000.0))
            f, info = hematoma_field(bg.brain, bg.spacing, rng, parenchyma=bg.parenchyma, dist3d=bg.dist3d, volume_ml=vol,
                                     within=(f_inf >= 0.5) if "infarct" in kind else None, avoid=bg.avoid, **common)
        else:
            maker = subdural_field if blood_kind == "subdural" else epidural_field
            f, info = maker(bg.brain, bg.spacing, rng, dist2d=bg.dist2d, **common)
        blood_hu = float(rng.uniform(50.0, 80.0))
        factor = float(rng.uniform(0.8, 1.2))
        noise = noise_field(shape, f > 0, bg.texture, factor, rng)
        info.update(cls=2, blood_hu=round(blood_hu, 2), noise_factor=round(factor, 3),
                    noise_sigma_hu=round(bg.noise["sigma"] * factor, 3))
        hu = blend_blood(hu, f, blood_hu, noise)
        f_blood = np.maximum(f_blood, f)
        lesions.append((info, f))
    labels = labels_from_fractions(f_blood, f_inf, bg.brain, bg.parenchyma)
    voxel_ml = float(np.prod(bg.spacing)) / 1000.0
    out_lesions = []
    for info, f in lesions:
        c = info.pop("cls")
        vox = int(((f >= 0.5) & (labels == c)).sum())
        out_lesions.append({"class": c, "name": CLASSES[c], **info, "voxels": vox, "volume_ml": round(vox * voxel_ml, 4)})
    vox = {CLASSES[c]: int((labels == c).sum()) for c in CLASSES}
    name = case_name(index, kind)
    entry = {
        "id": name, "index": index, "split": "test", "image": f"imagesTs/{name}_0000.nii.gz",
        "label": f"labelsTs/{name}.nii.gz", "ignore": f"ignoreTs/{name}.nii.gz", "family": "C", "background": bg.name, "mirrored": mirrored,
        "plan": kind, "lesions": out_lesions,
        "volume_ml": {k: round(v * voxel_ml, 4) for k, v in vox.items()}, "voxels": vox,
        "voxel_ml": round(voxel_ml, 10), "spacing_mm": [round(s, 4) for s in bg.spacing],
        "noise_sigma_hu": round(bg.noise["sigma"], 3),
        "unlabelled_background_findings_ml": round(sum(x["volume_ml"] for x in bg.findings), 1),
        "unlabelled_background_findings_side_x": sorted({({"+x": "-x", "-x": "+x"}[x["side_x"]] if mirrored else x["side_x"])
                                                         for x in bg.findings}),
    }
    return to_int16(hu), labels, entry, bg


def _write(arr: np.ndarray, ref: sitk.Image, path: Path) -> None:
    img = sitk.GetImageFromArray(arr)
    img.CopyInformation(ref)
    sitk.WriteImage(img, str(path), useCompression=True)


def dataset_json(n: int, seed: int, backgrounds: list[Background]) -> dict:
    return {
        "name": "SDPMRealInsert",
        "description": (f"family C (seed {seed}): real head CT backgrounds ({', '.join(b.name for b in backgrounds)}) "
                        "with synthetic infarct/hemorrhage blended in physically; TEST ONLY"),
        "channel_names": {"0": "CT"},
        "labels": {"background": 0, **{name: c for c, name in CLASSES.items()}},
        "numTraining": 0,
        "numTest": n,
        "file_ending": ".nii.gz",
        "overwrite_image_reader_writer": "SimpleITKIO",
        "licence": ("backgrounds from dcm_qa_ct (BSD 2-Clause, Copyright (c) Chris Rorden); lesions synthetic; "
                    "see ../shared/fixtures/dcm_qa_ct/LICENSE"),
    }


def generate(out: Path, n_cases: int, seed: int, fixtures: Path, log=print) -> dict:
    backgrounds, skipped = load_backgrounds(fixtures, log=log)
    if not backgrounds:
        raise RuntimeError("no usable background: " + "; ".join(f"{s['name']}: {s['reason']}" for s in skipped))
    (out / "imagesTs").mkdir(parents=True, exist_ok=True)
    (out / "labelsTs").mkdir(parents=True, exist_ok=True)
    (out / "ignoreTs").mkdir(parents=True, exist_ok=True)
    entries = []
    for i, kind in enumerate(case_plan(n_cases)):
        t0 = time.time()
        hu, lab, entry, bg = make_case(backgrounds, seed, i, kind)
        _write(hu, bg.image, out / entry["image"])
        _write(lab, bg.image, out / entry["label"])
        _write(bg.avoid.astype(np.uint8), bg.image, out / entry["ignore"])  # the real unlabelled finding
        entries.append(entry)
        les = ", ".join(f"{l['kind']} {l['volume_ml']:.1f} mL" for l in entry["lesions"]) or "lesion-free"
        log(f"{entry['id']}: {bg.name}{' mirrored' if entry['mirrored'] else ''}: {les} ({time.time() - t0:.1f} s)")
    manifest = {
        "generator": GENERATOR, "seed": seed, "family": FAMILY, "n_cases": n_cases, "format": "nifti",
        "test_fraction": 1.0, "test_only": True, "classes": {str(c): n for c, n in CLASSES.items()},
        "label_rule": LABEL_RULE,
        "blending": {"blood": "(1 - f) hu + f (blood_hu + noise), blood_hu U(50, 80), noise textured Gaussian at the "
                              "background's level x U(0.8, 1.2)",
                     "infarct": "hu - f delta on parenchyma, delta U(3, 10) HU",
                     "parenchyma_hu": list(PARENCHYMA_HU), "subslices": SUBSLICES, "inplane_blur_px": INPLANE_BLUR_PX},
        "backgrounds": [{"name": b.name, **b.source, "size_xyz": list(b.image.GetSize()),
                         "spacing_mm": [round(s, 4) for s in b.spacing], "slab_mm": round(b.slab_mm, 3),
                         "brain_ml": round(b.brain_ml, 1),
                         "parenchyma_ml": round(float(b.parenchyma.sum()) * float(np.prod(b.spacing)) / 1000, 1),
                         "noise": {k: (round(v, 3) if isinstance(v, float) else [round(x, 3) for x in v])
                                   for k, v in b.noise.items()},
                         "noise_texture": b.texture, "unlabelled_findings": b.findings} for b in backgrounds],
        "skipped_backgrounds": skipped,
        "cases": entries,
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    (out / "dataset.json").write_text(json.dumps(dataset_json(n_cases, seed, backgrounds), indent=2) + "\n")
    return manifest


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="output folder (nnU-Net imagesTs/labelsTs layout)")
    ap.add_argument("--cases", type=int, default=24)
    ap.add_argument("--seed", type=int, default=70)
    ap.add_argument("--fixtures", default=str(FIXTURES), help="the dcm_qa_ct folder")
    ap.add_argument("--force", action="store_true", help="replace imagesTs/, labelsTs/, manifest.json, dataset.json in OUT")
    a = ap.parse_args(argv)
    fixtures, out = Path(a.fixtures), Path(a.out)
    if not fixtures.is_dir():
        print(f"no fixtures at {fixtures} (the dcm_qa_ct folder of ../shared/fixtures)", file=sys.stderr)
        return 3
    if a.cases < 1:
        print("--cases must be at least 1", file=sys.stderr)
        return 2
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        if not a.force:
            print(f"{out} exists and is not empty (use --force to replace it)", file=sys.stderr)
            return 2
        if not out.is_dir():
            print(f"{out} is not a folder", file=sys.stderr)
            return 2
        for sub in ("imagesTs", "labelsTs", "ignoreTs"):
            for p in (out / sub).glob("*.nii.gz") if (out / sub).is_dir() else []:
                p.unlink()
        for p in ("manifest.json", "dataset.json"):
            (out / p).unlink(missing_ok=True)
    try:
        m = generate(out, a.cases, a.seed, fixtures)
    except RuntimeError as exc:
        print(str(exc), file=sys.stderr)
        return 3
    vol = {k: sum(c["volume_ml"][k] for c in m["cases"]) for k in CLASSES.values()}
    print(f"{len(m['cases'])} cases in {out} (backgrounds: {', '.join(b['name'] for b in m['backgrounds'])}; "
          f"total infarct {vol['infarct']:.1f} mL, hemorrhage {vol['hemorrhage']:.1f} mL)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

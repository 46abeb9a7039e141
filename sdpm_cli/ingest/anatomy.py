"""Is it an adult, non-contrast head? Image and header checks run once on every loaded study.

The model was trained and validated on adult non-contrast head CT only. A chest or abdomen, or a
volume without a skull, is refused (InputRejected, exit 3): measuring "lesions" there is meaningless.
Inputs that are heads but outside what the model was validated on (a child, contrast, a skull defect,
metal, a cut brain) are measured with a warning and a flag in `Study.domain` that the report and the
QC picture show. Skull-stripped research volumes (constant background, no skull) are recognised and
turned back into HU with air outside the brain, the brain being the non-background tissue.

Everything is measured on a copy subsampled to ~1.5 mm in-plane (nearest): the decisions need
millimetres, not pixels, and this keeps the checks well under a second on a 512 x 512 study.
All thresholds are in IngestRules (the "anatomy checks" block), with the numbers they came from.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Iterable, Optional

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from sdpm_cli.errors import InputRejected
from sdpm_cli.ingest.checks import slice_stride
from sdpm_cli.ingest.rules import IngestRules
from sdpm_cli.preprocess.brainmask import brain_mask_array, fill_holes
from sdpm_cli.threads import map_slices

# The out-of-domain flags, in the order the report, console and QC picture list them.
DOMAIN_FLAGS = ("child", "infant_attenuation", "contrast", "skull_defect", "metal", "incomplete_coverage",
                "body_part", "skull_stripped", "user_brain_mask", "header_orientation_wrong")


@dataclass(frozen=True)
class HeadMeasures:
    """What the image says about the anatomy (the numbers behind every flag, for the report)."""

    ring_slices: int  # axial slices where a bone ring encloses (mostly) soft tissue
    ring_mm: float  # ... as head-feet extent
    intracranial_ml: float  # the project's skull-based brain mask (sdpm_cli.preprocess.brainmask)
    parenchyma_median_hu: Optional[float]  # median HU inside that mask
    dense_vessel_ml: float  # intracranial voxels at contrast-vessel density, away from bone
    open_arc_slices: int  # upper-cranium slices whose skull ring is open over a long arc
    max_open_arc_deg: float
    metal_ml: float  # voxels at metal density
    top_brain_fraction: float  # brain area on the top slice / the largest brain slice area

    def to_dict(self) -> dict:
        d = {k: (round(v, 2) if isinstance(v, float) else v) for k, v in self.__dict__.items()}
        return d


@dataclass
class HeadAssessment:
    """Flags (True = outside the validated domain), their warnings, and the measurements."""

    flags: dict[str, bool] = field(default_factory=lambda: {k: False for k in DOMAIN_FLAGS})
    warnings: list[str] = field(default_factory=list)
    measures: Optional[HeadMeasures] = None
    age_years: Optional[float] = None
    body_part: str = ""

    def flag(self, name: str, warning: str) -> None:
        self.flags[name] = True
        self.warnings.append(warning)

    def to_dict(self) -> dict:
        return {**{k: bool(v) for k, v in self.flags.items()},
                "age_years": None if self.age_years is None else round(self.age_years, 2),
                "body_part_examined": self.body_part,
                "measures": self.measures.to_dict() if self.measures else None}


# ------------------------------------------------------------------------------------------- headers
_AGE = re.compile(r"^\s*(\d{1,3})\s*([DWMY])\s*$", re.IGNORECASE)
_AGE_UNIT_YEARS = {"D": 1 / 365.25, "W": 7 / 365.25, "M": 1 / 12, "Y": 1.0}


def parse_age(value: str) -> Optional[float]:
    """DICOM AS ("007Y", "018M", "020W", "005D") in years; None when absent or malformed."""
    m = _AGE.match(value or "")
    if not m:
        return None
    return int(m.group(1)) * _AGE_UNIT_YEARS[m.group(2).upper()]


def _norm_part(value: str) -> str:
    return re.sub(r"[^A-Z]", "", (value or "").upper())


def check_headers(ages: Iterable[str], body_parts: Iterable[str], rules: IngestRules, label: str,
                  out: HeadAssessment) -> None:
    """BodyPartExamined (refuse a known non-head body part) and PatientAge (warn under adult age)."""
    parts = sorted({_norm_part(p) for p in body_parts if _norm_part(p)})
    out.body_part = ",".join(parts)
    bad = [p for p in parts if p in rules.refused_body_parts]
    if bad:
        raise InputRejected(f"{label}: not a head: BodyPartExamined is {bad[0]} (the model reads head CT only)")
    odd = [p for p in parts if p not in rules.head_body_parts]
    if odd:
        out.flag("body_part", f"BodyPartExamined is {odd[0]}, not HEAD: check this is a head CT "
                              "(the model is validated on adult head CT only)")
    years = [a for a in (parse_age(v) for v in ages) if a is not None]
    if years:
        out.age_years = min(years)
        if out.age_years < rules.adult_age_years:
            age = f"{out.age_years:.0f} years" if out.age_years >= 2 else f"{out.age_years * 12:.0f} months"
            out.flag("child", f"child ({age} old, PatientAge): the model is validated on adults only; "
                              "a child's brain attenuation and size differ and lesion volumes may be wrong")


# --------------------------------------------------------------------------------------------- image
def _stride(spacing_xy: tuple[float, float], target_mm: float) -> int:
    return max(1, int(np.floor(target_mm / max(min(spacing_xy), 1e-6))))


def _disk(r_mm: float, sp: tuple[float, float]) -> np.ndarray:
    ry, rx = (max(1, int(np.floor(r_mm / s))) for s in sp)
    dy, dx = np.mgrid[-ry: ry + 1, -rx: rx + 1]
    return (dy * sp[0]) ** 2 + (dx * sp[1]) ** 2 <= r_mm ** 2


def _ring_slice(hu2: np.ndarray, sp: tuple[float, float], rules: IngestRules) -> bool:
    """A bone ring (closed over small gaps) around at least min_ring_area_cm2 of mostly soft tissue."""
    bone = hu2 > rules.ring_bone_hu
    if bone.sum() * sp[0] * sp[1] < 100.0:  # < 1 cm^2 of bone: no ring to speak of
        return False
    # a head cut by the image border (small field of view) has its ring closed along that border
    rim = np.zeros_like(bone)
    rim[[0, -1], :] = rim[:, [0, -1]] = True
    bone = bone | (rim & (hu2 > -300))
    k = _disk(rules.ring_close_mm, sp)
    closed = ndimage.binary_closing(np.pad(bone, k.shape[0]), structure=k)[k.shape[0]:-k.shape[0], k.shape[0]:-k.shape[0]]
    inside = fill_holes(closed | bone) & ~(closed | bone)
    area = inside.sum() * sp[0] * sp[1] / 100.0
    if area < rules.min_ring_area_cm2:
        return False
    v = hu2[inside]
    soft = np.count_nonzero((v >= -30) & (v <= 100)) / v.size
    return soft >= rules.min_ring_soft_fraction


def _open_arc_deg(bone2: np.ndarray, centre: tuple[float, float], sp: tuple[float, float]) -> float:
    """The widest angle (degrees) around `centre` with no bone at any distance (5 degree bins)."""
    ys, xs = np.nonzero(bone2)
    if ys.size == 0:
        return 360.0
    ang = np.degrees(np.arctan2((ys - centre[0]) * sp[0], (xs - centre[1]) * sp[1])) % 360.0
    hit = np.zeros(72, bool)
    hit[(ang // 5).astype(int) % 72] = True
    if hit.all():
        return 0.0
    run, best = 0, 0
    for h in np.concatenate([hit, hit]):  # circular: the longest run of empty bins
        run = 0 if h else run + 1
        best = max(best, run)
    return float(min(best, 72) * 5)


def measure_head(hu: np.ndarray, spacing_xyz: tuple[float, float, float], rules: IngestRules,
                 brain: Optional[np.ndarray] = None) -> HeadMeasures:
    """The anatomy measurements of a [Z, Y, X] HU array (see HeadMeasures); `brain` overrides the mask."""
    s = _stride(spacing_xyz[:2], rules.anatomy_pixel_mm)
    # thin series: every t-th slice (~check_slice_mm apart) measures the same head at a fraction of the cost
    t = slice_stride(float(spacing_xyz[2]), hu.shape[0], rules)
    sub = np.ascontiguousarray(hu[::t, ::s, ::s], dtype=np.float32)
    sp = (float(spacing_xyz[1]) * s, float(spacing_xyz[0]) * s)  # (y, x) mm
    sz = float(spacing_xyz[2]) * t
    vox_ml = sp[0] * sp[1] * sz / 1000.0
    rings = [z for z, ring in enumerate(map_slices(lambda z: _ring_slice(sub[z], sp, rules), range(sub.shape[0]))) if ring]
    if brain is None:
        mask = brain_mask_array(sub, (sp[1], sp[0], sz)).astype(bool)
    else:
        mask = np.ascontiguousarray(brain[::t, ::s, ::s]).astype(bool)
    n = int(mask.sum())
    med = float(np.median(sub[mask])) if n else None
    # dense vessels: a plateau (every in-plane neighbour too) at contrast density inside the brain's
    # envelope (the mask closed over sinus_depth_mm, so the sinuses in its notches count); the plateau
    # test drops the partial-volume rim of the inner table, which is a gradient, not a plateau
    dense_ml, arc_slices, max_arc, top_frac = 0.0, 0, 0.0, 0.0
    if n:
        lo, hi = rules.vessel_hu_range
        k = _disk(rules.sinus_depth_mm, sp)
        pad = k.shape[0]
        count = 0
        for z in np.flatnonzero(mask.any(axis=(1, 2))):
            env = ndimage.binary_closing(np.pad(mask[z], pad), structure=k)[pad:-pad, pad:-pad]
            env = fill_holes(env)
            core = ndimage.binary_erosion((sub[z] >= lo) & (sub[z] <= hi), structure=np.ones((3, 3), bool))
            count += int(np.count_nonzero(env & core))
        dense_ml = count * vox_ml
        area = mask.sum(axis=(1, 2)).astype(float)
        zs = np.flatnonzero(area > 0)
        top = zs[-1] if hu.shape[0] > 1 else zs[0]
        top_frac = float(area[top] / area.max())
        # skull defect: on the upper-cranium slices (brain extent, head at least 60 % of its largest
        # cross-section) the widest angle around the head centre with no bone
        head = sub > -300
        harea = head.sum(axis=(1, 2))
        zlo, zhi = zs[0], zs[-1]
        # slices above the brain's top (a craniectomy loses the mask there) up to the head's top
        zhead = np.flatnonzero(harea > 0)
        zhi = max(zhi, int(zhead[-1]) if zhead.size else zhi)
        for z in range(zlo, zhi + 1):
            if harea[z] < rules.defect_head_fraction * harea.max() or not head[z].any():
                continue
            lab, nl = ndimage.label(head[z])
            if nl == 0:
                continue
            big = lab == (1 + int(np.argmax(np.bincount(lab.ravel())[1:])))
            big = fill_holes(big)
            cy, cx = (float(c.mean()) for c in np.nonzero(big))
            arc = _open_arc_deg(big & (sub[z] > rules.ring_bone_hu), (cy, cx), sp)
            max_arc = max(max_arc, arc)
            arc_slices += arc >= rules.defect_arc_deg
    metal_ml = float(np.count_nonzero(sub >= rules.metal_hu)) * vox_ml
    return HeadMeasures(ring_slices=len(rings), ring_mm=len(rings) * sz, intracranial_ml=n * vox_ml,
                        parenchyma_median_hu=med, dense_vessel_ml=dense_ml, open_arc_slices=int(arc_slices),
                        max_open_arc_deg=max_arc, metal_ml=metal_ml, top_brain_fraction=top_frac)


def judge(m: HeadMeasures, rules: IngestRules, label: str, out: HeadAssessment, *, stripped: bool = False) -> None:
    """Refuse what is not a head; flag (warn) what is a head outside the validated domain."""
    out.measures = m
    if not stripped:
        if m.ring_mm < rules.min_ring_mm:
            raise InputRejected(
                f"{label}: not a head: a skull ring around soft tissue on {m.ring_slices} slice(s) "
                f"({m.ring_mm:.0f} mm; a head shows at least {rules.min_ring_mm:.0f} mm)")
    lo, hi = rules.intracranial_ml_range
    if not lo <= m.intracranial_ml <= hi:
        raise InputRejected(
            f"{label}: not an adult head: intracranial volume {m.intracranial_ml:.0f} mL "
            f"(heads the model reads measure {lo:.0f}-{hi:.0f} mL)")
    if m.parenchyma_median_hu is not None and m.parenchyma_median_hu < rules.min_parenchyma_hu:
        out.flag("infant_attenuation",
                 f"brain attenuation is infant-like (median {m.parenchyma_median_hu:.0f} HU inside the skull, "
                 f"adults {rules.min_parenchyma_hu:.0f} HU or more): the model is validated on adults only")
    if m.dense_vessel_ml > rules.max_dense_vessel_ml:
        out.flag("contrast",
                 f"dense vessels/sinuses look contrast-enhanced ({m.dense_vessel_ml:.1f} mL at "
                 f"{rules.vessel_hu_range[0]:.0f}-{rules.vessel_hu_range[1]:.0f} HU inside the skull): the model "
                 "expects non-contrast CT; enhancing vessels may be read as hemorrhage")
    if not stripped and m.open_arc_slices >= rules.defect_min_slices:
        out.flag("skull_defect",
                 f"large skull defect (ring open over up to {m.max_open_arc_deg:.0f} degrees on {m.open_arc_slices} "
                 "slices): post-operative/craniectomy heads are outside the validated domain; the brain mask "
                 "may miss brain under the defect")
    if m.metal_ml > rules.max_metal_ml:
        out.flag("metal",
                 f"metal ({m.metal_ml:.1f} mL at {rules.metal_hu:.0f} HU or more): streak artefacts may be read "
                 "as lesions")
    if m.top_brain_fraction > rules.max_top_brain_fraction:
        out.flag("incomplete_coverage",
                 f"the brain is cut at the top of the scan (top slice holds {m.top_brain_fraction:.0%} of the "
                 "largest brain cross-section): lesions above it are not measured")


# -------------------------------------------------------------------------------------- skull-stripped
def background_of(arr: np.ndarray) -> tuple[Optional[float], np.ndarray]:
    """The constant value of the image border and where it reaches from the border (bool)."""
    border = np.concatenate([arr[:, 0, :].ravel(), arr[:, -1, :].ravel(), arr[:, :, 0].ravel(), arr[:, :, -1].ravel()])
    vals, counts = np.unique(border, return_counts=True)
    v = float(vals[int(np.argmax(counts))])
    if counts.max() < 0.9 * border.size:
        return None, np.zeros(arr.shape, bool)
    same = arr == v
    out = np.zeros(arr.shape, bool)
    for z in range(arr.shape[0]):  # per slice: background is what the border value reaches in-plane
        lab, _ = ndimage.label(same[z])
        edge = np.unique(np.concatenate([lab[0], lab[-1], lab[:, 0], lab[:, -1]]))
        out[z] = np.isin(lab, edge[edge > 0])
    return v, out


def looks_skull_stripped(arr: np.ndarray, rules: IngestRules) -> tuple[bool, np.ndarray, str]:
    """(stripped?, brain mask, why not): constant background, no skull, brain-like tissue inside."""
    v, bg = background_of(arr)
    if v is None:
        return False, bg, "the image border is not one constant value"
    tissue = ~bg
    n = int(tissue.sum())
    if bg.mean() < rules.stripped_min_background or n == 0:
        return False, tissue, "too little constant background"
    t = arr[tissue]
    bone = np.count_nonzero(t > rules.ring_bone_hu) / n
    air = np.count_nonzero(t < -200) / n
    med = float(np.median(t))
    if bone > rules.stripped_max_bone_fraction or air > rules.stripped_max_bone_fraction:
        return False, tissue, f"{bone:.1%} bone and {air:.1%} air inside the foreground (a skull-stripped brain has neither)"
    if not -10.0 <= med <= 80.0:
        return False, tissue, f"foreground median {med:.0f} HU is not brain"
    for z in np.flatnonzero(tissue.any(axis=(1, 2))):
        tissue[z] = fill_holes(tissue[z])
    return True, tissue, ""


def unstrip(arr: np.ndarray, rules: IngestRules, label: str, forced: bool) -> tuple[np.ndarray, Optional[np.ndarray]]:
    """A skull-stripped volume (detected, or `forced` by --skull-stripped) with air outside its brain.

    Returns (array, brain mask) — the mask None when the volume is an ordinary CT. Forced on a volume
    that is not skull-stripped: refused with the reason.
    """
    ok, brain, why = looks_skull_stripped(arr, rules)
    if not ok:
        if forced:
            raise InputRejected(f"{label}: --skull-stripped given but the volume is not skull-stripped: {why}")
        return arr, None
    out = arr.copy()
    out[~brain] = rules.air_hu
    return out, brain.astype(np.uint8)


def assess(image: sitk.Image, rules: IngestRules, label: str, *, ages: Iterable[str] = (),
           body_parts: Iterable[str] = (), brain: Optional[np.ndarray] = None) -> HeadAssessment:
    """Headers then image: refuses (InputRejected) what is not a head, else the flags and warnings."""
    out = HeadAssessment()
    check_headers(ages, body_parts, rules, label, out)
    hu = sitk.GetArrayViewFromImage(image)
    m = measure_head(hu, image.GetSpacing(), rules, brain=brain)
    stripped = brain is not None
    judge(m, rules, label, out, stripped=stripped)
    if stripped:
        out.flag("skull_stripped", "skull-stripped volume detected (constant background, no skull): the brain "
                                   "mask is the non-background tissue, not the skull-based extraction")
    return out


def read_brain_mask(path, image: sitk.Image) -> np.ndarray:
    """A user's binary brain mask (NIfTI) on exactly `image`'s grid, as uint8 [Z, Y, X]; else refused."""
    from pathlib import Path

    p = Path(path)
    try:
        m = sitk.ReadImage(str(p))
    except Exception as exc:  # noqa: BLE001 - the reader's message is long; the name is what matters
        raise InputRejected(f"--brain-mask {p}: cannot read it as an image (truncated or not NIfTI)") from exc
    if m.GetDimension() != 3 or m.GetNumberOfComponentsPerPixel() != 1:
        raise InputRejected(f"--brain-mask {p}: expected a 3-D scalar mask")
    same = (m.GetSize() == image.GetSize()
            and np.allclose(m.GetSpacing(), image.GetSpacing(), atol=1e-3)
            and np.allclose(m.GetOrigin(), image.GetOrigin(), atol=1e-2)
            and np.allclose(m.GetDirection(), image.GetDirection(), atol=1e-4))
    if not same:
        raise InputRejected(
            f"--brain-mask {p}: its grid differs from the image's (size {m.GetSize()} vs {image.GetSize()}, "
            f"spacing {tuple(round(s, 3) for s in m.GetSpacing())} vs {tuple(round(s, 3) for s in image.GetSpacing())}); "
            "resample it onto the CT first")
    arr = sitk.GetArrayFromImage(m)
    values = np.unique(arr)
    if not set(values.tolist()) <= {0, 1}:
        raise InputRejected(f"--brain-mask {p}: not binary (values {values[:5].tolist()}...; expected 0 and 1)")
    if not arr.any():
        raise InputRejected(f"--brain-mask {p}: the mask is empty")
    return arr.astype(np.uint8)


def flags_set(domain: Optional[dict]) -> list[str]:
    """The out-of-domain flags that are on, in DOMAIN_FLAGS order (for the QC banner and summaries)."""
    return [k for k in DOMAIN_FLAGS if (domain or {}).get(k)]

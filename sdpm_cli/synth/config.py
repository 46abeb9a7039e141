"""Configuration of the phantom generator and the per-case random draws that depend only on a seed."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

LESION_CHOICES = ("both", "infarct", "hemorrhage", "none")
# Phantom families, built independently so that over-fitting to one generator shows in our numbers:
# "analytic" (family A, the training generator: analytic anatomy, sdpm_cli.synth.anatomy) and
# "atlas" (family B, held out: real cortical anatomy from the MNI ICBM152 atlas, sdpm_cli.synth.atlas).
FAMILY_CHOICES = ("analytic", "atlas")
DOMAIN_CHOICES = ("randomised", "clinical")
FORMAT_CHOICES = ("nifti", "dicom", "both")

# Noise sigma (HU) ranges by slice thickness: thinner slices are noisier at the same dose; all within
# the clinical 3-8 HU band of head NCCT.
NOISE_BY_THICKNESS = {5.0: (3.0, 5.0), 2.5: (4.0, 6.5), 1.0: (5.5, 8.0)}
KERNELS = ("H31s", "J40s", "FC21", "STANDARD", "UB", "Hr38")


@dataclass(frozen=True)
class DomainRanges:
    """Every nuisance property a case draws, as (low, high) ranges: the domain is data.

    "randomised" follows SynthSeg (Billot et al. 2023): each property is drawn per case over a range far
    wider than clinical practice, so that the only stable cue left is what defines a lesion - an infarct
    is darker than the same tissue elsewhere, blood brighter than the brain around it. "clinical" keeps
    typical adult NCCT values (demos, statistics tests). Lesion contrasts are always relative to the
    tissue they replace, in both domains.
    """

    wm_hu: tuple[float, float]
    gm_wm_contrast_hu: tuple[float, float]
    flat_contrast_prob: float             # share of cases with (almost) no grey-white contrast (< 2 HU)
    csf_hu: tuple[float, float]
    csf_below_wm_hu: float                # CSF is at least this much darker than white matter
    vessel_above_wm_hu: tuple[float, float]  # venous sinuses / vessels (dense sinus mimic when high)
    falx_hu: tuple[float, float]
    calcification_hu: tuple[float, float]
    cortical_hu: tuple[float, float]
    diploe_hu: tuple[float, float]
    dense_bone_hu: tuple[float, float]
    scalp_hu: tuple[float, float]
    muscle_hu: tuple[float, float]
    fat_hu: tuple[float, float]
    blood_hu: tuple[float, float]         # acute blood, absolute ...
    blood_above_brain_hu: float           # ... and at least this much brighter than white matter
    infarct_delta_hu: tuple[float, float]  # hypodensity relative to the replaced tissue
    atrophy_beta: tuple[float, float]     # atrophy = scale * Beta(a, b): 0 none .. >1 severe
    atrophy_scale: float
    head_scale: tuple[float, float]
    skull_mm: tuple[float, float]
    scalp_mm: tuple[float, float]
    shape_sd: float                       # random deformation of the skull envelope
    rotation_deg: tuple[float, float, float]
    shift_mm: float                       # head position in the field of view
    fov_mm: tuple[float, float] | None    # None: SynthConfig.fov_mm
    noise_hu: tuple[float, float]         # at 5 mm; log-uniform, grows for thinner slices
    psf_mm: tuple[float, float]
    psf_tail: tuple[float, float]         # long-tailed PSF share (skull blooming), see Protocol
    edge_boost: tuple[float, float]       # sharp-kernel overshoot, see Protocol
    infarct_edge_mm: tuple[float, float]  # blur of an infarct's HU change at its margin (sharp .. ill-defined)
    nps_f0: tuple[float, float]           # noise texture (kernel): low = smooth/blotchy, high = sharp/fine
    streak_hu: tuple[float, float]
    deform_mm: tuple[float, float]        # smooth non-linear deformation of the anatomy (max displacement)
    bias_hu: tuple[float, float]          # low-frequency shading / cupping inside the head
    motion_prob: float
    metal_prob: float
    old_infarct_prob: float               # encephalomalacia: CSF-like, never labelled
    basal_calc_prob: float
    extra_pad_prob: float                 # extra foam pads / straps beside the head


DOMAINS: dict[str, DomainRanges] = {
    "clinical": DomainRanges(
        wm_hu=(25.0, 30.0), gm_wm_contrast_hu=(7.0, 11.0), flat_contrast_prob=0.0, csf_hu=(3.0, 10.0),
        csf_below_wm_hu=12.0, vessel_above_wm_hu=(15.0, 25.0), falx_hu=(55.0, 90.0),
        calcification_hu=(150.0, 450.0), cortical_hu=(1100.0, 1600.0), diploe_hu=(350.0, 700.0),
        dense_bone_hu=(1600.0, 2000.0), scalp_hu=(38.0, 50.0), muscle_hu=(45.0, 58.0), fat_hu=(-105.0, -80.0),
        blood_hu=(50.0, 90.0), blood_above_brain_hu=15.0, infarct_delta_hu=(3.0, 12.0),
        atrophy_beta=(1.6, 3.0), atrophy_scale=1.0, head_scale=(0.92, 1.08), skull_mm=(5.0, 7.5),
        scalp_mm=(4.0, 7.0), shape_sd=0.015, rotation_deg=(6.0, 4.0, 4.0), shift_mm=10.0, fov_mm=None,
        noise_hu=(3.0, 5.0), psf_mm=(0.3, 0.5), psf_tail=(0.0, 0.0), edge_boost=(0.0, 0.0), infarct_edge_mm=(0.0, 0.0), nps_f0=(0.25, 0.4), streak_hu=(8.0, 25.0), deform_mm=(0.0, 0.0),
        bias_hu=(0.0, 0.0), motion_prob=0.0, metal_prob=0.0, old_infarct_prob=0.05, basal_calc_prob=0.05,
        extra_pad_prob=0.0,
    ),
    "randomised": DomainRanges(
        wm_hu=(14.0, 42.0), gm_wm_contrast_hu=(0.0, 16.0), flat_contrast_prob=0.15, csf_hu=(-8.0, 18.0),
        csf_below_wm_hu=6.0, vessel_above_wm_hu=(8.0, 45.0), falx_hu=(35.0, 120.0),
        calcification_hu=(90.0, 1000.0), cortical_hu=(500.0, 2200.0), diploe_hu=(150.0, 1000.0),
        dense_bone_hu=(1200.0, 2600.0), scalp_hu=(10.0, 75.0), muscle_hu=(25.0, 80.0), fat_hu=(-140.0, -40.0),
        blood_hu=(40.0, 95.0), blood_above_brain_hu=8.0, infarct_delta_hu=(2.0, 16.0),
        atrophy_beta=(1.1, 1.6), atrophy_scale=1.6, head_scale=(0.84, 1.16), skull_mm=(2.5, 10.0),
        scalp_mm=(1.5, 11.0), shape_sd=0.035, rotation_deg=(16.0, 14.0, 12.0), shift_mm=25.0, fov_mm=(170.0, 320.0),
        noise_hu=(1.2, 12.0), psf_mm=(0.2, 1.2), psf_tail=(0.0, 0.4), edge_boost=(0.0, 0.8), infarct_edge_mm=(0.0, 3.0), nps_f0=(0.1, 0.75), streak_hu=(5.0, 60.0), deform_mm=(0.0, 8.0),
        bias_hu=(0.0, 8.0), motion_prob=0.12, metal_prob=0.1, old_infarct_prob=0.15, basal_calc_prob=0.15,
        extra_pad_prob=0.4,
    ),
}


@dataclass(frozen=True)
class SynthConfig:
    """What kind of studies to generate. Defaults are the realistic clinical mix."""

    matrix: int = 512                                   # in-plane matrix (rows = cols)
    fov_mm: tuple[float, float] = (200.0, 250.0)        # reconstruction field of view range
    thicknesses_mm: tuple[float, ...] = (5.0, 2.5, 1.0)  # slice thickness = spacing (contiguous)
    thickness_weights: tuple[float, ...] = (0.6, 0.3, 0.1)
    lesion: str = "both"                                # both | infarct | hemorrhage | none
    lesion_free_fraction: float = 0.1                   # share of lesion-free studies when lesion="both"
    anatomy_mm: float = 1.25                            # head model resolution (~ a soft-kernel PSF; 1.0 is finer, 2x slower)
    work_factor: int = 2                                # anatomy is sampled at matrix/work_factor, then interpolated
    max_rotation_deg: tuple[float, float, float] | None = None  # pitch, yaw, roll (uniform +-); None = the domain's
    streak_prob: float = 0.5                            # beam-hardening streaks near the skull base
    domain: str = "randomised"                          # randomised (training: SynthSeg-style wide nuisance
                                                        # ranges, DOMAINS) | clinical (typical adult NCCT values)
    with_tissue: bool = False                           # also return the tissue class map (tests, QC)
    family: str = "analytic"                            # analytic (family A) | atlas (family B); see FAMILY_CHOICES
    shapeless_infarct_prob: float = 0.0                 # family A: share of territorial infarcts drawn as blobs
                                                        # of no vascular shape, anywhere (lesions._shapeless)

    def __post_init__(self) -> None:
        if self.lesion not in LESION_CHOICES:
            raise ValueError(f"lesion must be one of {LESION_CHOICES}")
        if self.family not in FAMILY_CHOICES:
            raise ValueError(f"family must be one of {FAMILY_CHOICES}")
        if self.domain not in DOMAIN_CHOICES:
            raise ValueError(f"domain must be one of {DOMAIN_CHOICES}")
        if len(self.thicknesses_mm) != len(self.thickness_weights) or not self.thicknesses_mm:
            raise ValueError("thicknesses_mm and thickness_weights must have the same, non-zero length")
        if self.work_factor not in (1, 2):
            raise ValueError("work_factor must be 1 or 2")
        if self.matrix < 64 or self.matrix % self.work_factor:
            raise ValueError("matrix must be >= 64 and divisible by work_factor")
        if any(t <= 0 for t in self.thicknesses_mm):
            raise ValueError("slice thickness must be positive")
        if not 0.0 <= self.shapeless_infarct_prob <= 1.0:
            raise ValueError("shapeless_infarct_prob must lie in [0, 1]")

    @property
    def ranges(self) -> "DomainRanges":
        return DOMAINS[self.domain]

    @property
    def rotation_deg(self) -> tuple[float, float, float]:
        return self.max_rotation_deg if self.max_rotation_deg is not None else self.ranges.rotation_deg


def case_rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(int(seed)))


def case_streams(seed: int, n: int = 10) -> list[np.random.SeedSequence]:
    """Independent child seeds of one case (head, protocol, pose, plan, anatomy, lesions, scanner,
    deformation, artefacts, mimics). Child k does not depend on n, so adding streams keeps the others."""
    return np.random.SeedSequence(int(seed)).spawn(n)


def case_seed(dataset_seed: int, index: int) -> int:
    """The seed of case `index` in a data set: a function of (seed, index) only, so subsets reproduce."""
    state = np.random.SeedSequence([int(dataset_seed), int(index)]).generate_state(2, np.uint32)
    return int((int(state[0]) << 31) ^ int(state[1]))


@dataclass(frozen=True)
class Protocol:
    thickness_mm: float
    fov_mm: float
    matrix: int
    noise_sigma: float
    kernel: str
    kvp: int
    psf_sigma_mm: float
    nps_f0: float          # cycles/mm; the noise power spectrum peaks at f0/sqrt(2)
    streaks: bool
    psf_tail: float = 0.0      # share of a long-tailed (Lorentzian) point spread: bone "blooms" into the brain
    psf_tail_mm: float = 1.0   # its half width
    edge_boost: float = 0.0    # edge-enhancing kernel: mid-frequency gain (overshoot / ringing at the inner table)

    @property
    def pixel_mm(self) -> float:
        return self.fov_mm / self.matrix

    @property
    def name(self) -> str:
        return f"head-{self.thickness_mm:g}mm"


def _loguniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(np.exp(rng.uniform(np.log(lo), np.log(hi))))


def draw_protocol(rng: np.random.Generator, cfg: SynthConfig) -> Protocol:
    w = np.asarray(cfg.thickness_weights, float)
    thk = float(cfg.thicknesses_mm[int(rng.choice(len(w), p=w / w.sum()))])
    r = cfg.ranges
    if cfg.domain == "clinical":
        lo, hi = NOISE_BY_THICKNESS.get(thk, (3.0 + 2.5 / np.sqrt(thk), 5.0 + 3.0 / np.sqrt(thk)))
        noise = float(rng.uniform(max(3.0, lo), min(8.0, hi)))
    else:  # thinner slices are noisier at the same dose (sigma ~ 1/sqrt(thickness))
        noise = _loguniform(rng, *r.noise_hu) * float(np.clip(np.sqrt(5.0 / thk), 1.0, 2.0))
    fov = r.fov_mm or cfg.fov_mm
    return Protocol(
        thickness_mm=thk,
        # pixel spacing with 4 decimals, so DICOM's decimal strings carry the geometry exactly
        fov_mm=round(float(rng.uniform(*fov)) / cfg.matrix, 4) * cfg.matrix,
        matrix=cfg.matrix,
        noise_sigma=noise,
        kernel=str(rng.choice(KERNELS)),
        kvp=int(rng.choice([100, 120, 120, 120, 140])),
        psf_sigma_mm=float(rng.uniform(*r.psf_mm)),
        nps_f0=float(rng.uniform(*r.nps_f0)),
        streaks=bool(rng.random() < cfg.streak_prob),
        psf_tail=float(rng.uniform(*r.psf_tail)) if r.psf_tail[1] > 0 else 0.0,
        psf_tail_mm=float(rng.uniform(0.5, 3.0)) if r.psf_tail[1] > 0 else 1.0,
        edge_boost=float(rng.uniform(*r.edge_boost)) if r.edge_boost[1] > 0 and rng.random() < 0.5 else 0.0,
    )


@dataclass
class HeadParams:
    """Random anatomy of one head (mm, HU); positions are in the canonical head frame."""

    scale: float
    a: float            # brain half-width (left-right)
    b_ant: float        # half-length, frontal
    b_post: float       # half-length, occipital
    c_up: float         # height above the origin
    c_down: float
    egg: float          # wider at the back
    shape_coef: np.ndarray
    skull_t: float      # mean calvarial thickness
    skull_coef: np.ndarray
    scalp_t: float
    atrophy: float      # 0 young .. 1 marked atrophy (wider sulci, larger ventricles)
    midline_bend: float
    hu: dict = field(default_factory=dict)
    flags: dict = field(default_factory=dict)


def _u(rng: np.random.Generator, lohi: tuple[float, float]) -> float:
    return float(rng.uniform(*lohi))


def draw_head(rng: np.random.Generator, domain: str = "clinical") -> HeadParams:
    """One head's anatomy and tissue HU, drawn from the domain's ranges (config.DOMAINS)."""
    r = DOMAINS[domain]
    s = _u(rng, r.head_scale)
    wm = _u(rng, r.wm_hu)
    if domain == "clinical":  # the original clinical draw: GM 35-40 HU, 7-11 HU above WM
        gm = float(np.clip(wm + _u(rng, r.gm_wm_contrast_hu), 35.0, 40.0))
    elif rng.random() < r.flat_contrast_prob:  # infant-like / elderly: grey and white matter nearly equal
        gm = wm + float(rng.uniform(0.0, 2.0))
    else:
        gm = wm + _u(rng, r.gm_wm_contrast_hu)
    csf = min(_u(rng, r.csf_hu), wm - r.csf_below_wm_hu)
    hu = {
        "air": -1000.0,
        "fat": _u(rng, r.fat_hu),
        "soft": _u(rng, r.scalp_hu),
        "muscle": _u(rng, r.muscle_hu),
        "csf": float(csf),
        "gm": float(gm),
        "wm": float(wm),
        "deep_gm": float(gm - rng.uniform(0.0, 2.0) * (1.0 if gm - wm > 2.0 else 0.3)),
        "blood_vessel": float(wm + _u(rng, r.vessel_above_wm_hu)),
        "falx": _u(rng, r.falx_hu),
        "cortical": _u(rng, r.cortical_hu),
        "diploe": _u(rng, r.diploe_hu),
        "dense_bone": _u(rng, r.dense_bone_hu),
        "globe": float(rng.uniform(5, 15)),
        "lens": float(rng.uniform(80, 110)),
        "calcification": _u(rng, r.calcification_hu),
    }
    sd = r.shape_sd
    return HeadParams(
        scale=s,
        a=66.0 * s * float(rng.uniform(0.94, 1.06)),
        b_ant=84.0 * s * float(rng.uniform(0.95, 1.05)),
        b_post=88.0 * s * float(rng.uniform(0.95, 1.05)),
        c_up=70.0 * s * float(rng.uniform(0.94, 1.06)),
        c_down=74.0 * s,
        egg=float(rng.uniform(0.0, 0.08)),
        shape_coef=rng.normal(0.0, sd, size=9),
        skull_t=_u(rng, r.skull_mm),
        skull_coef=rng.normal(0.0, 0.6, size=6),
        scalp_t=_u(rng, r.scalp_mm),
        atrophy=float(r.atrophy_scale * rng.beta(*r.atrophy_beta)),
        midline_bend=float(rng.uniform(-1.5, 1.5) * (1.0 if domain == "clinical" else 2.5)),
        hu=hu,
        flags={
            "choroid_calc": bool(rng.random() < 0.6),
            "pineal_calc": bool(rng.random() < 0.6),
            "falx_calc": bool(rng.random() < 0.15),
            "wm_disease": bool(rng.random() < 0.3),
            "frontal_sinus": bool(rng.random() < 0.8),
            "basal_calc": bool(rng.random() < r.basal_calc_prob),
        },
    )

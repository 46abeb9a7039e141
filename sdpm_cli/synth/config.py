"""Configuration of the phantom generator and the per-case random draws that depend only on a seed."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

LESION_CHOICES = ("both", "infarct", "hemorrhage", "none")
# Phantom families, built independently so that over-fitting to one generator shows in our numbers:
# "analytic" (family A, the training generator: analytic anatomy, sdpm_cli.synth.anatomy) and
# "atlas" (family B, held out: real cortical anatomy from the MNI ICBM152 atlas, sdpm_cli.synth.atlas).
FAMILY_CHOICES = ("analytic", "atlas")
FORMAT_CHOICES = ("nifti", "dicom", "both")

# Noise sigma (HU) ranges by slice thickness: thinner slices are noisier at the same dose; all within
# the clinical 3-8 HU band of head NCCT.
NOISE_BY_THICKNESS = {5.0: (3.0, 5.0), 2.5: (4.0, 6.5), 1.0: (5.5, 8.0)}
KERNELS = ("H31s", "J40s", "FC21", "STANDARD", "UB", "Hr38")


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
    max_rotation_deg: tuple[float, float, float] = (6.0, 4.0, 4.0)  # pitch, yaw, roll (uniform +-)
    streak_prob: float = 0.5                            # beam-hardening streaks near the skull base
    with_tissue: bool = False                           # also return the tissue class map (tests, QC)
    family: str = "analytic"                            # analytic (family A) | atlas (family B); see FAMILY_CHOICES

    def __post_init__(self) -> None:
        if self.lesion not in LESION_CHOICES:
            raise ValueError(f"lesion must be one of {LESION_CHOICES}")
        if self.family not in FAMILY_CHOICES:
            raise ValueError(f"family must be one of {FAMILY_CHOICES}")
        if len(self.thicknesses_mm) != len(self.thickness_weights) or not self.thicknesses_mm:
            raise ValueError("thicknesses_mm and thickness_weights must have the same, non-zero length")
        if self.work_factor not in (1, 2):
            raise ValueError("work_factor must be 1 or 2")
        if self.matrix < 64 or self.matrix % self.work_factor:
            raise ValueError("matrix must be >= 64 and divisible by work_factor")
        if any(t <= 0 for t in self.thicknesses_mm):
            raise ValueError("slice thickness must be positive")


def case_rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(int(seed)))


def case_streams(seed: int, n: int = 7) -> list[np.random.SeedSequence]:
    """Independent child seeds of one case (head, protocol, pose, plan, anatomy, lesions, scanner)."""
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

    @property
    def pixel_mm(self) -> float:
        return self.fov_mm / self.matrix

    @property
    def name(self) -> str:
        return f"head-{self.thickness_mm:g}mm"


def draw_protocol(rng: np.random.Generator, cfg: SynthConfig) -> Protocol:
    w = np.asarray(cfg.thickness_weights, float)
    thk = float(cfg.thicknesses_mm[int(rng.choice(len(w), p=w / w.sum()))])
    lo, hi = NOISE_BY_THICKNESS.get(thk, (3.0 + 2.5 / np.sqrt(thk), 5.0 + 3.0 / np.sqrt(thk)))
    lo, hi = max(3.0, lo), min(8.0, hi)
    return Protocol(
        thickness_mm=thk,
        # pixel spacing with 4 decimals, so DICOM's decimal strings carry the geometry exactly
        fov_mm=round(float(rng.uniform(*cfg.fov_mm)) / cfg.matrix, 4) * cfg.matrix,
        matrix=cfg.matrix,
        noise_sigma=float(rng.uniform(lo, hi)),
        kernel=str(rng.choice(KERNELS)),
        kvp=int(rng.choice([100, 120, 120, 120, 140])),
        psf_sigma_mm=float(rng.uniform(0.3, 0.5)),
        nps_f0=float(rng.uniform(0.25, 0.4)),
        streaks=bool(rng.random() < cfg.streak_prob),
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


def draw_head(rng: np.random.Generator) -> HeadParams:
    s = float(rng.uniform(0.92, 1.08))
    wm = float(rng.uniform(25.0, 30.0))
    gm = float(np.clip(wm + rng.uniform(7.0, 11.0), 35.0, 40.0))
    hu = {
        "air": -1000.0,
        "fat": float(rng.uniform(-105, -80)),
        "soft": float(rng.uniform(38, 50)),
        "muscle": float(rng.uniform(45, 58)),
        "csf": float(rng.uniform(3.0, 10.0)),
        "gm": gm,
        "wm": wm,
        "deep_gm": float(gm - rng.uniform(0.0, 2.0)),
        "blood_vessel": float(rng.uniform(42, 55)),
        "falx": float(rng.uniform(55, 90)),
        "cortical": float(rng.uniform(1100, 1600)),
        "diploe": float(rng.uniform(350, 700)),
        "dense_bone": float(rng.uniform(1600, 2000)),
        "globe": float(rng.uniform(5, 15)),
        "lens": float(rng.uniform(80, 110)),
        "calcification": float(rng.uniform(150, 450)),
    }
    return HeadParams(
        scale=s,
        a=66.0 * s * float(rng.uniform(0.94, 1.06)),
        b_ant=84.0 * s * float(rng.uniform(0.95, 1.05)),
        b_post=88.0 * s * float(rng.uniform(0.95, 1.05)),
        c_up=70.0 * s * float(rng.uniform(0.94, 1.06)),
        c_down=74.0 * s,
        egg=float(rng.uniform(0.0, 0.08)),
        shape_coef=rng.normal(0.0, 0.015, size=9),
        skull_t=float(rng.uniform(5.0, 7.5)),
        skull_coef=rng.normal(0.0, 0.6, size=6),
        scalp_t=float(rng.uniform(4.0, 7.0)),
        atrophy=float(rng.beta(1.6, 3.0)),
        midline_bend=float(rng.uniform(-1.5, 1.5)),
        hu=hu,
        flags={
            "choroid_calc": bool(rng.random() < 0.6),
            "pineal_calc": bool(rng.random() < 0.6),
            "falx_calc": bool(rng.random() < 0.15),
            "wm_disease": bool(rng.random() < 0.3),
            "frontal_sinus": bool(rng.random() < 0.8),
        },
    )

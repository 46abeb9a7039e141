"""Every threshold the input gate uses, in one place, with the reason for each default."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class IngestRules:
    """Clinical and technical limits of the ingest (defaults suit routine non-contrast head CT)."""

    # A routine 5 mm head CT has ~25-32 slices over ~130-160 mm; 10 slices / 80 mm is the least that
    # still holds the supratentorial brain, below that a lesion volume is not measurable.
    min_slices: int = 10
    min_coverage_mm: float = 80.0
    # The shipped model is trained on 5 mm (and 2.5 mm) axial slices: prefer the closest thickness.
    preferred_thickness_mm: float = 5.0
    # Thickness differences below this are treated as equal when ranking series.
    thickness_step_mm: float = 0.5
    # Slice spacing is "even" when every step is within max(abs, rel x median) of the median step.
    spacing_tolerance_mm: float = 0.1
    spacing_tolerance_rel: float = 0.05
    # Two slices closer than this along the normal share a position (duplicates).
    duplicate_position_mm: float = 0.01
    # A stack is "tilted" (sheared) when a slice origin leaves the untilted stack in-plane by more than
    # this fraction of a pixel: below it nearest-neighbour mapping back to the slices cannot change.
    max_shear_px: float = 0.1
    # A plane is axial when its normal is within this angle of the patient's head-feet axis
    # (gantry tilts reach ~30 degrees; coronal/sagittal reformats are ~90 degrees away).
    max_axial_angle_deg: float = 45.0
    # HU sanity (after rescale): air must sit near -1000 and soft tissue must peak between 0 and 80 HU.
    air_hu_range: tuple[float, float] = (-1100.0, -900.0)
    soft_tissue_peak_range: tuple[float, float] = (0.0, 80.0)
    # Voxels below this are outside the reconstruction circle (vendors write -2048, -3024...): air.
    min_valid_hu: float = -1024.0
    air_hu: int = -1000
    # At least this fraction of voxels must be air, and this fraction soft tissue (-100..200 HU),
    # for the HU check to have anything to measure.
    min_air_fraction: float = 0.02
    min_tissue_fraction: float = 0.02
    # Row and column cosines must be orthogonal within this angle: DICOM writes them to ~6 decimals
    # (a skew of ~1e-4 degrees); 0.1 degrees displaces the far edge of a 512-pixel row by under a pixel.
    max_orientation_skew_deg: float = 0.1
    # (The same limit holds for the axes of a NIfTI/NRRD affine: a sheared grid is refused.)
    # A zipped DICOM folder is unpacked only within these bounds (a 0.625 mm head study is ~0.3 GB in
    # ~300 files; whole-body exams stay well below): anything larger is a zip bomb or the wrong file.
    max_zip_bytes: int = 8 * 2**30
    max_zip_members: int = 50_000
    # PixelSpacing must agree between the slices of one series within this fraction (0.025 mm on a
    # 250 mm field of view): a series is one grid, and one value is applied to every slice.
    pixel_spacing_tolerance_rel: float = 1e-4
    # Size/orientation groups of at most this many images inside a larger series are localizer-like
    # outliers and are dropped with a warning; larger ones make the series "mixed".
    max_outlier_images: int = 2

    # --- is it an adult, non-contrast head (anatomy checks)
    # Measured on a copy subsampled to about this pixel size: the checks need millimetres, not pixels.
    anatomy_pixel_mm: float = 1.5
    # ... and along z at least this far apart (a 0.625 mm series is measured on every 3rd slice), for
    # these checks and for the HU check: the head's size, ring, brain volume and HU histogram do not
    # change at that scale, the cost falls 3x.
    check_slice_mm: float = 2.0
    # BodyPartExamined: these are refused as "not a head"; anything else not in head_body_parts warns.
    refused_body_parts: tuple[str, ...] = (
        "CHEST", "THORAX", "LUNG", "HEART", "ABDOMEN", "PELVIS", "ABDOMENPELVIS", "CHESTABDOMEN",
        "CHESTABDOMENPELVIS", "CAP", "LIVER", "KIDNEY", "BREAST", "EXTREMITY", "ARM", "LEG", "HAND",
        "FOOT", "KNEE", "HIP", "SHOULDER", "ANKLE", "WRIST", "ELBOW", "LSPINE", "TSPINE")
    head_body_parts: tuple[str, ...] = ("HEAD", "BRAIN", "SKULL", "CRANIUM", "HEADNECK", "NEURO")
    # Under this PatientAge a "child" warning: the model was validated on adults only.
    adult_age_years: float = 18.0
    # Skull ring: bone above ring_bone_hu (cortical bone is >= 500 HU, the diploe >= ~300 HU; lesions,
    # calcified falx and contrast vessels stay below), closed over ring_close_mm (foramina, sutures)...
    ring_bone_hu: float = 300.0
    ring_close_mm: float = 8.0
    # ... enclosing at least this much (a small adult vertex slice is ~20 cm^2) of which at least this
    # share is soft tissue (-30..100 HU): a rib cage closes around lungs (-800) and fat and fails here.
    min_ring_area_cm2: float = 10.0
    min_ring_soft_fraction: float = 0.8
    # A head shows a skull ring over at least this head-feet extent (synthetic heads 35-115 mm, the real
    # GE head 93 mm, examples/demo_study 115 mm; a chest, abdomen or a brain without skull shows 0).
    min_ring_mm: float = 20.0
    # The project's skull-based brain mask: heads measured 1045-1731 mL (synthetic, 128/256 matrix), the
    # real GE head 1454 mL, examples/demo_study 1334 mL; wide limits (partial coverage, small adults)
    # refuse only what no head can be (a neonate's brain is ~350 mL).
    intracranial_ml_range: tuple[float, float] = (300.0, 2600.0)
    # Median HU inside the brain mask: adults 28-30 HU (synthetic clinical heads), 31 HU (GE head and
    # examples/demo_study); unmyelinated infant white matter (~15-22 HU) pulls it below this. The
    # randomised training domain (white matter 14-42 HU on purpose) measures 16-22 HU and is flagged.
    min_parenchyma_hu: float = 22.0
    # Contrast: dense-vessel plateau (voxels in vessel_hu_range whose 8 in-plane neighbours are too)
    # inside the brain mask closed over sinus_depth_mm. Measured (mL): synthetic non-contrast heads
    # 0.0-1.4 (clinical) and 0.0-3.5 (randomised), real GE head 1.35, examples/demo_study 0.03; the
    # skull's partial-volume rim is a gradient and does not count. Enhanced dural sinuses (~10 mL in
    # adults) exceed 5 mL. The generator's own 'dense sinus' mimics (+150-220 HU over white matter)
    # are too thin to pass the plateau test: this statistic catches thick enhancing structures only.
    vessel_hu_range: tuple[float, float] = (130.0, 350.0)
    sinus_depth_mm: float = 5.0
    max_dense_vessel_ml: float = 5.0
    # Skull defect: on slices where the head is at least defect_head_fraction of its largest cross-
    # section, the skull must surround the head centre; an arc of defect_arc_deg without bone on
    # defect_min_slices slices is a craniectomy-sized defect (intact heads: at most 45 degrees on the
    # GE head and demo study; synthetic heads up to 115 degrees on 1 slice, 65 degrees on 3 slices).
    defect_head_fraction: float = 0.6
    defect_arc_deg: float = 90.0
    defect_min_slices: int = 3
    # Metal (clips, coils, electrodes, dental work): voxels at or above metal_hu (cortical/petrous bone
    # reaches ~2600 HU; scanners saturate metal at 3071) over more than max_metal_ml.
    metal_hu: float = 3000.0
    max_metal_ml: float = 0.1
    # Coverage: the top slice holding more than this share of the largest brain cross-section means the
    # scan stops inside the upper cerebrum (complete heads taper to 0-10 % at their top slice: synthetic
    # heads, GE head, demo study; a scan ending 2 cm below the vertex of an ellipsoid head holds ~53 %).
    max_top_brain_fraction: float = 0.6
    # Skull-stripped: at least this share of voxels is the constant border value, and the foreground
    # holds less than this share of bone (> ring_bone_hu) and of air (< -200 HU).
    stripped_min_background: float = 0.2
    stripped_max_bone_fraction: float = 0.01


@dataclass(frozen=True)
class IngestOptions:
    """What the user asked for: a series override and the corrections they allow."""

    series_uid: str | None = None
    correct_tilt: bool = False
    resample_gaps: bool = False
    # Lossy-compressed pixel data (JPEG baseline, JPEG-LS near-lossless, lossy JPEG 2000) alter HU values
    # near edges: warned about by default, refused with --refuse-lossy.
    refuse_lossy: bool = False
    rules: IngestRules = field(default_factory=IngestRules)

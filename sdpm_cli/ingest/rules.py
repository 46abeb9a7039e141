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
